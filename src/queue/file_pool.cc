// The pool of spent spool files: renames between queue/msg/ and
// queue/free/ under one mutex for the bookkeeping (why: file_pool.h).
#include "queue/file_pool.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <system_error>

#include "common/file_io.h"
#include "common/mutex.h"

namespace tern::queue {
namespace {

// Pooled files are named "f" followed by a decimal counter.
bool ParsePoolName(const std::string& name, uint64_t* n) {
  if (name.size() < 2 || name.size() > 21 || name[0] != 'f') return false;
  const char* end = name.data() + name.size();
  auto [p, ec] = std::from_chars(name.data() + 1, end, *n);
  return ec == std::errc() && p == end;
}

}  // namespace

FilePool::FilePool(int msg_dir_fd, int free_dir_fd, Limits limits)
    : msg_dir_fd_(msg_dir_fd), free_dir_fd_(free_dir_fd), limits_(limits) {}

void FilePool::Load() {
  auto names = io::ListDir(free_dir_fd_);
  if (!names) {
    spdlog::warn("queue: listing free/: {}", names.error().message);
    return;
  }
  MutexLock lock(mu_);
  for (const std::string& name : *names) {
    uint64_t n = 0;
    struct stat st;
    if (!ParsePoolName(name, &n) ||
        ::fstatat(free_dir_fd_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || free_.size() >= limits_.max_files ||
        bytes_ + static_cast<uint64_t>(st.st_size) > limits_.max_bytes) {
      ::unlinkat(free_dir_fd_, name.c_str(), 0);
      continue;
    }
    free_.push_back({name, static_cast<uint64_t>(st.st_size)});
    bytes_ += static_cast<uint64_t>(st.st_size);
    if (n >= next_) next_ = n + 1;
  }
}

FilePool::Created FilePool::Create(const std::string& id) {
  Created out;
  while (true) {
    Entry e;
    {
      MutexLock lock(mu_);
      if (free_.empty()) break;
      e = std::move(free_.back());
      free_.pop_back();
      bytes_ -= e.size;
    }
    if (::renameat2(free_dir_fd_, e.name.c_str(), msg_dir_fd_, id.c_str(),
                    RENAME_NOREPLACE) != 0) {
      int err = errno;
      if (err == EEXIST) {
        MutexLock lock(mu_);
        free_.push_back(std::move(e));
        bytes_ += free_.back().size;
        errno = EEXIST;
        return out;
      }
      spdlog::warn("queue: reusing free/{}: {}", e.name,
                   std::system_category().message(err));
      ::unlinkat(free_dir_fd_, e.name.c_str(), 0);
      continue;  // try the next one
    }
    out.fd.Reset(::openat(msg_dir_fd_, id.c_str(), O_WRONLY | O_CLOEXEC));
    if (!out.fd) {
      int err = errno;
      ::unlinkat(msg_dir_fd_, id.c_str(), 0);
      errno = err;
      return out;
    }
    out.old_size = e.size;
    return out;
  }
  out.fd.Reset(::openat(msg_dir_fd_, id.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  return out;
}

int FilePool::Remove(const std::string& id) {
  struct stat st;
  if (::fstatat(msg_dir_fd_, id.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::string name;
  {
    MutexLock lock(mu_);
    if (S_ISREG(st.st_mode) && st.st_nlink == 1 &&
        size <= limits_.max_file_bytes && free_.size() < limits_.max_files &&
        bytes_ + size <= limits_.max_bytes) {
      name = "f" + std::to_string(next_++);
      // Counted now so concurrent removals respect the limits.
      bytes_ += size;
    }
  }
  if (!name.empty()) {
    if (::renameat2(msg_dir_fd_, id.c_str(), free_dir_fd_, name.c_str(),
                    RENAME_NOREPLACE) == 0) {
      MutexLock lock(mu_);
      free_.push_back({std::move(name), size});
      return 0;
    }
    MutexLock lock(mu_);
    bytes_ -= size;
  }
  return ::unlinkat(msg_dir_fd_, id.c_str(), 0) == 0 ? 0 : errno;
}

void FilePool::Drain() {
  std::vector<Entry> drained;
  {
    MutexLock lock(mu_);
    drained.swap(free_);
    bytes_ = 0;
  }
  for (const Entry& e : drained) ::unlinkat(free_dir_fd_, e.name.c_str(), 0);
  if (!drained.empty())
    spdlog::warn("queue: disk full: released {} pooled spool file(s)",
                 drained.size());
}

size_t FilePool::size() const {
  MutexLock lock(mu_);
  return free_.size();
}

}  // namespace tern::queue
