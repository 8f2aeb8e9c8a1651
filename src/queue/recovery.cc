// Opening the spool and recovering it at start: torn or never-committed
// message files are discarded, stray state and stale incoming/ temp files
// removed, and every valid message scheduled with its saved retry time or
// put back on hold. Only the list of names is taken before the server
// accepts mail; the messages are read in the background (RecoveryLoop).
#include <dirent.h>
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

namespace {

// The queue ids among a directory's names, sorted (ids sort by time), and
// the hidden names (interrupted writes). Read with readdir rather than
// io::ListDir: a million 16-character names as std::strings would cost
// ~64 MB at their peak, as keys 16 MB.
Result<std::vector<QueueKey>> ListIds(int dir_fd,
                                      std::vector<std::string>* hidden,
                                      std::vector<std::string>* stray) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io::ErrnoErr("queue: open directory", errno);
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int err = errno;
    ::close(fd);
    return io::ErrnoErr("queue: open directory", err);
  }
  std::vector<QueueKey> ids;
  errno = 0;
  while (const struct dirent* e = ::readdir(dir)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (IsValidQueueId(name)) {
      ids.push_back(KeyOf(name));
    } else if (name[0] == '.' && hidden != nullptr) {
      hidden->emplace_back(name);
    } else if (stray != nullptr) {
      stray->emplace_back(name);
    }
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return io::ErrnoErr("queue: read directory", err);
  std::sort(ids.begin(), ids.end(), QueueKeyLess{});
  return ids;
}

}  // namespace

// The part of recovery that must happen before new mail can be accepted:
// the names in msg/ and state/ now are those of an earlier run (a new
// message can only appear once Start has returned, and its id is new:
// files are created exclusively, queue_writer.cc), so they are taken as the
// list of work for RecoveryLoop. Clean-ups that go by name (orphaned and
// half-written state files) are done here too, where no new file of the
// same name can exist yet.
Result<void> QueueImpl::Recover() {
  std::vector<std::string> stray;
  auto ids = ListIds(spool_->msg_fd.get(), nullptr, &stray);
  if (!ids) return tl::unexpected(ids.error());
  for (const std::string& name : stray)
    spdlog::warn("queue: ignoring stray file msg/{}", name);
  std::vector<std::string> hidden_states;
  auto states = ListIds(spool_->state_fd.get(), &hidden_states, nullptr);
  recover_has_state_.assign(ids->size(), false);
  if (states) {
    // Hidden files are interrupted state updates; others without a
    // message were left by a crash between the two removals.
    for (const std::string& name : hidden_states)
      ::unlinkat(spool_->state_fd.get(), name.c_str(), 0);
    size_t i = 0;
    for (const QueueKey& key : *states) {
      while (i < ids->size() && QueueKeyLess{}((*ids)[i], key)) ++i;
      if (i < ids->size() && (*ids)[i] == key) {
        recover_has_state_[i] = true;
      } else {
        ::unlinkat(spool_->state_fd.get(), IdOf(key).c_str(), 0);
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
  recover_ids_ = std::move(*ids);
  if (!recover_ids_.empty()) {
    spdlog::info("queue: recovering {} message(s) in the background",
                 recover_ids_.size());
  }
  PickupOnce();
  return {};
}

// Reads what scheduling needs of each message found at start, while the
// server already accepts mail: the header and envelope (never the
// message bytes when a state file exists, see below) and the state file's
// retry time and hold flag.
void QueueImpl::RecoveryLoop() {
  const auto start = Clock::now();
  const int64_t now = std::time(nullptr);
  const size_t total = recover_ids_.size();
  // See kRecoverySpreadPerSecond.
  const double rate = std::max<double>(
      kRecoverySpreadPerSecond,
      static_cast<double>(total) /
          std::max<double>(options_.max_retry_seconds, 1));
  size_t valid = 0, held = 0, spread = 0, discarded = 0;
  constexpr size_t kBatch = 256;
  struct Ready {
    QueueKey key;
    bool held;
    Clock::time_point when;
  };
  std::vector<Ready> ready;
  ready.reserve(kBatch);
  auto publish = [&] {
    if (ready.empty()) return;
    {
      MutexLock lock(sched_mu_);
      for (const Ready& r : ready) {
        std::string id = IdOf(r.key);
        // The operator or a delivery may have got to it first: they win.
        if (inflight_.count(id) || held_.count(id)) continue;
        if (r.held) {
          if (!waiting_.count(r.key)) held_.insert(std::move(id));
        } else {
          ScheduleKeyLocked(r.key, r.when);
        }
      }
    }
    ready.clear();
    sched_cv_.NotifyAll();
  };
  for (size_t i = 0; i < total; ++i) {
    if (recovery_stop_.load(std::memory_order_relaxed)) break;
    const std::string name = IdOf(recover_ids_[i]);
    UniqueFd fd(
        ::openat(spool_->msg_fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      // Delivered or deleted meanwhile (it may have been retried by the
      // operator before we got to it).
      if (errno != ENOENT)
        spdlog::error("queue: open msg/{}: {}", name, ErrnoText(errno));
      continue;
    }
    // A state file is written only after a delivery attempt, and a message
    // is delivered only after its commit sync: its bytes reached the disk
    // whole, so only the header and envelope are read (and checked). A
    // message without one may have been torn by a crash before its sync:
    // its bytes are read and checked as well.
    auto file = recover_has_state_[i] ? ReadMessageMeta(fd.get())
                                      : ReadAndVerifyMessage(fd.get());
    if (!file || file->envelope.id != name) {
      // Torn by a crash before its commit sync, or a reused file whose new
      // bytes never reached the disk (it still holds an earlier message
      // under another id): never acknowledged.
      spdlog::warn("queue: discarding incomplete message {}: {}", name,
                   file ? "reused file not rewritten" : file.error().message);
      spool_->pool->Remove(name);
      ::unlinkat(spool_->state_fd.get(), name.c_str(), 0);
      ++discarded;
      continue;
    }
    fd.Reset();
    ++valid;
    int64_t next = 0;
    bool is_held = !file->envelope.quarantine.empty();
    if (recover_has_state_[i]) {
      int err = 0;
      auto raw =
          io::ReadSmallFileAt(spool_->state_fd.get(), name, 64u << 20, &err);
      if (raw) {
        if (auto state = DecodeState(*raw)) {
          next = state->next_attempt;
          is_held = state->held;
        }
      }
    }
    Clock::time_point when;
    if (next > now) {
      when = start + std::chrono::seconds(next - now);
    } else {
      when = start + std::chrono::microseconds(static_cast<int64_t>(
                         1e6 * static_cast<double>(spread) / rate));
      ++spread;
    }
    if (is_held) ++held;
    ready.push_back({recover_ids_[i], is_held, when});
    if (ready.size() >= kBatch) publish();
  }
  publish();
  recover_ids_ = {};
  recover_has_state_ = {};
  const double secs =
      std::chrono::duration<double>(Clock::now() - start).count();
  if (total > 0) {
    spdlog::info(
        "queue: recovered {} message(s) in {:.1f}s ({} on hold, {} due now "
        "spread over {:.0f}s, {} discarded)",
        valid, secs, held, spread, static_cast<double>(spread) / rate,
        discarded);
  }
}

}  // namespace tern::queue::internal
