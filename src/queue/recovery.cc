// Opening the spool and recovering it at start: torn or never-committed
// message files are discarded, stray state and stale incoming/ temp files
// removed, and every valid message scheduled with its saved retry time or
// put back on hold.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <set>
#include <string>

#include "common/file_io.h"
#include "common/mutex.h"
#include "queue/file_pool.h"
#include "queue/queue_id.h"
#include "queue/queue_impl.h"
#include "queue/spool_format.h"

namespace tern::queue::internal {

Result<void> QueueImpl::OpenSpool() {
  const std::string queue_dir = options_.data_dir + "/queue";
  for (const char* sub : {"/msg", "/state", "/incoming", "/free"}) {
    if (auto made = io::MkdirAll(queue_dir + sub, kDirMode); !made) return made;
  }
  auto spool = std::make_shared<Spool>();
  struct {
    UniqueFd* fd;
    std::string path;
  } dirs[] = {{&spool->msg_fd, queue_dir + "/msg"},
              {&spool->state_fd, queue_dir + "/state"},
              {&spool->incoming_fd, queue_dir + "/incoming"},
              {&spool->free_fd, queue_dir + "/free"}};
  for (auto& d : dirs) {
    auto fd = io::OpenDir(d.path);
    if (!fd) return tl::unexpected(fd.error());
    *d.fd = std::move(*fd);
  }
  spool->pool = std::make_unique<FilePool>(
      spool->msg_fd.get(), spool->free_fd.get(), FilePool::Limits{});
  spool->pool->Load();
  spool_ = std::move(spool);
  return {};
}

Result<void> QueueImpl::Recover() {
  auto names = io::ListDir(spool_->msg_fd.get());
  if (!names) return tl::unexpected(names.error());
  std::sort(names->begin(), names->end());  // ids sort by time
  std::set<std::string> valid;
  std::set<std::string> quarantined;  // on hold unless a state file says otherwise
  for (const std::string& name : *names) {
    if (IsHidden(name) || !IsValidQueueId(name)) {
      spdlog::warn("queue: ignoring stray file msg/{}", name);
      continue;
    }
    UniqueFd fd(
        ::openat(spool_->msg_fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return io::ErrnoErr("queue: open msg/" + name, errno);
    auto file = ReadAndVerifyMessage(fd.get());
    if (!file || file->envelope.id != name) {
      // Torn by a crash before its commit sync, or a reused file whose new
      // bytes never reached the disk (it still holds an earlier message
      // under another id): never acknowledged.
      spdlog::warn("queue: discarding incomplete message {}: {}", name,
                   file ? "reused file not rewritten" : file.error().message);
      spool_->pool->Remove(name);
      ::unlinkat(spool_->state_fd.get(), name.c_str(), 0);
      continue;
    }
    valid.insert(name);
    if (!file->envelope.quarantine.empty()) quarantined.insert(name);
  }
  if (auto states = io::ListDir(spool_->state_fd.get()); states) {
    for (const std::string& name : *states) {
      // Hidden files are interrupted state updates; others without a
      // message were left by a crash between the two removals.
      if (IsHidden(name) || (IsValidQueueId(name) && !valid.count(name))) {
        ::unlinkat(spool_->state_fd.get(), name.c_str(), 0);
      }
    }
  }
  if (auto incoming = io::ListDir(spool_->incoming_fd.get()); incoming) {
    const int64_t now = std::time(nullptr);
    for (const std::string& name : *incoming) {
      struct stat st;
      if (IsHidden(name) && name.ends_with(".tmp") &&
          ::fstatat(spool_->incoming_fd.get(), name.c_str(), &st,
                    AT_SYMLINK_NOFOLLOW) == 0 &&
          now - st.st_mtime > kStaleIncomingSeconds) {
        ::unlinkat(spool_->incoming_fd.get(), name.c_str(), 0);
      }
    }
  }
  if (!valid.empty())
    spdlog::info("queue: recovered {} message(s)", valid.size());
  // Retry times and holds survive a restart: they are in the state files.
  const int64_t now = std::time(nullptr);
  size_t held = 0;
  for (const std::string& id : valid) {
    int err = 0;
    auto raw = io::ReadSmallFileAt(spool_->state_fd.get(), id, 64u << 20, &err);
    int64_t next = 0;
    bool is_held = quarantined.count(id) > 0;
    if (raw) {
      if (auto state = DecodeState(*raw)) {
        next = state->next_attempt;
        is_held = state->held;
      }
    }
    MutexLock lock(sched_mu_);
    if (is_held) {
      held_.insert(id);
      ++held;
    } else {
      ScheduleLocked(id, Clock::now() + std::chrono::seconds(
                                            std::max<int64_t>(next - now, 0)));
    }
  }
  if (held > 0) spdlog::info("queue: {} message(s) on hold", held);
  PickupOnce();
  return {};
}

}  // namespace tern::queue::internal
