// The one source of numbers for names this process must never repeat:
// Maildir file names, queue ids and hidden temp files each add it to their
// own format (time, pid, host), so a new kind of name cannot forget it or
// start a counter of its own.
#pragma once

#include <cstdint>

namespace tern {

// A process-wide sequence number, thread-safe: 0, 1, 2, ... No two calls in
// one process return the same value (names made in different processes
// differ by their pid or random part, and O_EXCL catches the rest).
uint64_t NextUniqueNumber();

}  // namespace tern
