// A pool of spent queue message files, reused for new messages.
//
// Why: every accepted message used to create an inode in queue/msg/ and
// free it again after delivery. On ext4 (most of all without a journal)
// allocating an inode right after others were freed is expensive: the
// allocator skips recently deleted inodes, and under load that search was
// half of Tern's CPU time (docs/performance.md). A delivered file is
// instead renamed into queue/free/ and renamed back into msg/ under the
// next message's id, where the writer overwrites it from offset 0 and
// truncates the rest.
//
// Crash safety: a reused file may reach the disk under its new name while
// its old bytes (a complete, valid earlier message) are still there. Every
// writer puts the message's id into its envelope, so recovery and listing
// treat a file whose envelope id differs from its name as never written
// (see Recover() in recovery.cc).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "common/unique_fd.h"

namespace tern::queue {

class FilePool {
 public:
  struct Limits {
    size_t max_files = 1024;
    uint64_t max_bytes = 64ull << 20;    // data kept in pooled files
    uint64_t max_file_bytes = 1ull << 20;  // bigger files are deleted
  };

  FilePool(int msg_dir_fd, int free_dir_fd, Limits limits);
  FilePool(const FilePool&) = delete;
  FilePool& operator=(const FilePool&) = delete;

  // Takes stock of free/ (at start, before any other call). Files that do
  // not look like ours are removed.
  void Load() EXCLUDES(mu_);

  struct Created {
    UniqueFd fd;           // open for writing at offset 0
    uint64_t old_size = 0; // bytes of a previous message: truncate them
  };
  // Creates msg/<id> exclusively: a pooled file renamed into place, or a
  // new file. On failure `fd` is invalid and errno tells why (EEXIST: the
  // name is taken).
  Created Create(const std::string& id) EXCLUDES(mu_);

  // Removes msg/<id>, keeping its inode when the pool has room. Returns 0
  // or an errno value (ENOENT when it was already gone).
  int Remove(const std::string& id) EXCLUDES(mu_);

  // Deletes every pooled file (the disk is full: give the space back).
  void Drain() EXCLUDES(mu_);

  size_t size() const EXCLUDES(mu_);

 private:
  struct Entry {
    std::string name;
    uint64_t size = 0;
  };
  int msg_dir_fd_;
  int free_dir_fd_;
  Limits limits_;
  mutable Mutex mu_;
  std::vector<Entry> free_ GUARDED_BY(mu_);
  uint64_t bytes_ GUARDED_BY(mu_) = 0;
  uint64_t next_ GUARDED_BY(mu_) = 0;
};

}  // namespace tern::queue
