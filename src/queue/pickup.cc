// The incoming/ directory: `tern sendmail` and the queue's own DSNs write
// complete, synced messages there (Inject); the pickup thread moves them
// into the spool and schedules them.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/file_io.h"
#include "common/mutex.h"
#include "common/unique_fd.h"
#include "queue/crc32c.h"
#include "queue/queue.h"
#include "queue/queue_id.h"
#include "queue/queue_impl.h"
#include "queue/spool_format.h"

namespace tern::queue {
namespace internal {

void QueueImpl::PickupOnce() {
  auto names = io::ListDir(spool_->incoming_fd.get());
  if (!names) {
    spdlog::error("queue: scanning incoming: {}", names.error().message);
    return;
  }
  std::sort(names->begin(), names->end());
  std::vector<std::string> moved;
  for (const std::string& name : *names) {
    if (IsHidden(name)) continue;  // being written by `tern sendmail`
    UniqueFd fd(::openat(spool_->incoming_fd.get(), name.c_str(),
                         O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    auto file = ReadAndVerifyMessage(fd.get());
    if (!file || !IsValidQueueId(name)) {
      // Injected files are synced before they get a visible name, so this
      // is damage or a foreign file: keep it for the operator, out of the way.
      spdlog::error(
          "queue: incoming/{} is not a valid message; renamed to .bad-{}", name,
          name);
      std::string bad = ".bad-" + name;
      ::renameat(spool_->incoming_fd.get(), name.c_str(),
                 spool_->incoming_fd.get(), bad.c_str());
      continue;
    }
    // The file name is the id, and the envelope must say the same (that is
    // how recovery tells reused spool files apart, see file_pool.h).
    if (file->envelope.id != name) {
      spdlog::error(
          "queue: incoming/{} names another id ({}); renamed to .bad-{}", name,
          file->envelope.id, name);
      std::string bad = ".bad-" + name;
      ::renameat(spool_->incoming_fd.get(), name.c_str(),
                 spool_->incoming_fd.get(), bad.c_str());
      continue;
    }
    if (::renameat2(spool_->incoming_fd.get(), name.c_str(),
                    spool_->msg_fd.get(), name.c_str(),
                    RENAME_NOREPLACE) != 0) {
      int err = errno;
      if (err == EEXIST) {
        // The id is taken by a queued message: copy the message under a
        // fresh id (through incoming/, synced) and drop this file.
        if (Reinject(fd.get(), *file)) {
          ::unlinkat(spool_->incoming_fd.get(), name.c_str(), 0);
        }
        continue;
      }
      spdlog::error("queue: moving incoming/{}: {}", name, ErrnoText(err));
      continue;
    }
    moved.push_back(name);
  }
  if (moved.empty()) return;
  // Make the moves durable before delivery can remove the files; otherwise
  // a crash could bring them back into incoming/ (delivered twice).
  if (::fsync(spool_->msg_fd.get()) != 0 ||
      ::fsync(spool_->incoming_fd.get()) != 0) {
    spdlog::warn("queue: sync after pickup: {}", ErrnoText(errno));
  }
  for (const std::string& id : moved) {
    spdlog::info("queue {}: picked up from incoming", id);
    Schedule(id);
  }
}

bool QueueImpl::Reinject(int fd, const MessageFile& file) {
  std::string body(file.body_len, '\0');
  if (int err = io::PreadAll(fd, body.data(), body.size(),
                             static_cast<off_t>(file.body_offset));
      err != 0) {
    spdlog::error("queue: reading incoming/{}: {}", file.envelope.id,
                  ErrnoText(err));
    return false;
  }
  Envelope env = file.envelope;
  const std::string old_id = env.id;
  env.id = NewQueueId();
  auto id = Inject(options_.data_dir, std::move(env), body);
  if (!id) {
    spdlog::error("queue: re-queueing incoming/{}: {}", old_id,
                  id.error().message);
    return false;
  }
  spdlog::warn("queue: incoming/{} clashed with a queued id; re-queued as {}",
               old_id, *id);
  return true;
}

void QueueImpl::PickupLoop() {
  MutexLock lock(pickup_mu_);
  while (!pickup_stop_) {
    const auto deadline = std::chrono::steady_clock::now() + kPickupInterval;
    while (!pickup_stop_ && !pickup_now_) {
      if (pickup_cv_.WaitUntil(pickup_mu_, deadline) ==
          std::cv_status::timeout) {
        break;
      }
    }
    if (pickup_stop_) break;
    pickup_now_ = false;
    lock.Unlock();
    PickupOnce();
    lock.Lock();
  }
}

// DSNs go through incoming/ like `tern sendmail` mail: written and synced
// before the caller records them as sent, picked up at once.
Result<std::string> QueueImpl::EnqueueInternal(Envelope env,
                                               std::string message) {
  auto id = Inject(options_.data_dir, std::move(env), message);
  if (id) {
    {
      MutexLock lock(pickup_mu_);
      pickup_now_ = true;
    }
    pickup_cv_.NotifyAll();
  }
  return id;
}

}  // namespace internal

Result<std::string> Inject(const std::string& data_dir, Envelope env,
                           std::string_view message) {
  const std::string dir = data_dir + "/queue/incoming";
  if (auto made = io::MkdirAll(dir, internal::kDirMode); !made)
    return tl::unexpected(made.error());
  auto dir_fd = io::OpenDir(dir);
  if (!dir_fd) return tl::unexpected(dir_fd.error());
  // A caller may name the id beforehand (sendmail writes it into the
  // Received: header before the message is injected).
  if (!IsValidQueueId(env.id)) env.id = NewQueueId();
  if (env.received_at == 0) env.received_at = std::time(nullptr);
  std::string encoded = EncodeEnvelope(env);
  auto header =
      EncodeMessageHeader(encoded, message.size(), Crc32c(0, message));
  // Hidden while incomplete: the pickup thread ignores dot files.
  const std::string tmp = "." + env.id + ".tmp";
  UniqueFd fd(::openat(dir_fd->get(), tmp.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return io::ErrnoErr("inject: create " + tmp, errno);
  struct iovec iov[3] = {{header.data(), header.size()},
                         {const_cast<char*>(message.data()), message.size()},
                         {encoded.data(), encoded.size()}};
  int err = io::WritevAll(fd.get(), iov, 3);
  // Data durable before the name becomes visible, and the name durable
  // before we report success.
  if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
  if (err == 0 && ::renameat(dir_fd->get(), tmp.c_str(), dir_fd->get(),
                             env.id.c_str()) != 0) {
    err = errno;
  }
  if (err != 0) {
    ::unlinkat(dir_fd->get(), tmp.c_str(), 0);
    return io::ErrnoErr("inject " + env.id, err);
  }
  if (::fsync(dir_fd->get()) != 0)
    return io::ErrnoErr("inject: sync incoming", errno);
  return env.id;
}

}  // namespace tern::queue
