// Giving freed heap memory back to the operating system.
#pragma once

namespace tern {

// Called when a connection is about to wait for a long time (IMAP IDLE)
// after freeing what it held. glibc's malloc keeps freed memory that lies
// between live allocations; malloc_trim(0) returns those pages to the
// kernel. The trim walks every arena, so it runs at most once a second in
// the whole process; a call within that second does nothing (what it
// freed is given back by a later one, or reused). Thread-safe.
void TrimHeapSoon();

// Called once at server start. glibc serves blocks of 128 KiB and more
// with their own mmap(), but after freeing one it raises that threshold
// (up to 32 MiB), so later large blocks (an IMAP session's view of a big
// folder, a long FETCH piece) come from the heap and leave holes between
// long-lived small blocks when freed; idle IMAP sessions then cost twice
// their live memory in resident pages (measured: 34 against 17 KiB per
// connection in IDLE on a 10,000-message folder). Fixing the threshold at
// 128 KiB keeps large blocks out of the heap. The environment's
// MALLOC_MMAP_THRESHOLD_ (glibc's tunable), when set, wins.
void SetHeapPolicy();

}  // namespace tern
