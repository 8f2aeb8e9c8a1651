// The committer thread: group commit, one syncfs() for a whole batch of
// finished messages (and for the Maildir flushes that share it), then the
// sessions' callbacks and scheduling for delivery.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/file_io.h"
#include "common/mutex.h"
#include "queue/file_pool.h"
#include "queue/queue_impl.h"

namespace tern::queue::internal {

// Maildir copies on the spool's file system are flushed by the committer's
// next syncfs() rather than one of their own: a delivery step and a commit
// batch then share one flush (measured: about 3 syncfs() per message
// before, with small batches at a few thousand messages per second).
// Blocks until a flush that started after this call has finished.
int QueueImpl::SharedSync(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_dev != spool_dev_) {
    return ::syncfs(fd) == 0 ? 0 : errno;
  }
  MutexLock lock(commit_mu_);
  if (committer_stop_) {
    lock.Unlock();
    return ::syncfs(fd) == 0 ? 0 : errno;
  }
  const uint64_t want = syncs_started_ + 1;
  ++sync_waiters_;
  commit_cv_.NotifyOne();
  while (syncs_done_ < want) synced_cv_.Wait(commit_mu_);
  --sync_waiters_;
  return sync_error_;
}

int QueueImpl::SyncBatch(std::vector<PendingCommit>& batch) {
  // One syncfs() makes every file of the batch durable, data and directory
  // entries (ext4: writeback plus a journal commit). Since Linux 5.8 it
  // reports writeback errors seen since this descriptor was opened.
  if (::syncfs(spool_->msg_fd.get()) == 0) return 0;
  int err = errno;
  spdlog::warn("queue: syncfs: {}; syncing {} file(s) one by one",
               ErrnoText(err), batch.size());
  // Find out which files are affected: fsync reports errors per file.
  bool some_ok = false;
  for (PendingCommit& pc : batch) {
    if (!pc.fd) continue;
    if (::fsync(pc.fd.get()) != 0) {
      pc.error_code = errno;
      pc.error = "queue sync " + pc.id + ": " + ErrnoText(pc.error_code);
      pc.fd.Reset();
    } else {
      some_ok = true;
    }
  }
  if (some_ok && ::fsync(spool_->msg_fd.get()) != 0) {
    const int code = errno;
    std::string text = ErrnoText(code);
    for (PendingCommit& pc : batch) {
      if (!pc.fd) continue;
      pc.error_code = code;
      pc.error = "queue sync " + pc.id + ": " + text;
      pc.fd.Reset();
    }
  }
  return err;
}

void QueueImpl::QueueRest(PendingCommit& pc, const std::vector<size_t>& rest) {
  // Only the recipients left over go into the spool file.
  Envelope& env = pc.writer->envelope();
  std::vector<Recipient> keep;
  for (size_t i : rest) {
    if (i < env.recipients.size()) keep.push_back(env.recipients[i]);
  }
  env.recipients = std::move(keep);
  pc.direct.reset();
  if (int err = pc.writer->Finish(); err != 0) {
    pc.error_code = err;
    pc.error = "queue write " + pc.id + ": " + ErrnoText(err);
  } else {
    pc.fd = pc.writer->Take();
  }
  pc.writer.reset();
}

Result<void> QueueImpl::OpenDirectLog() {
  // Both logs are replayed whole: a record whose copy is already in new/
  // (or moved on to cur/) is skipped, so replaying too much is harmless.
  // They are opened for writing only when a direct delivery needs them
  // (AppendIntents), so a server that makes none holds no file open here.
  std::string log;
  bool any = false;
  for (int i = 0; i < 2; ++i) {
    const std::string path = DirectLogPath(i);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) continue;
      return io::ErrnoErr("queue: open " + path, errno);
    }
    any = true;
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
      return io::ErrnoErr("queue: stat " + path, errno);
    if (st.st_size > 0) {
      std::string part(static_cast<size_t>(st.st_size), '\0');
      if (int e = io::PreadAll(fd.get(), part.data(), part.size(), 0); e != 0) {
        return io::ErrnoErr("queue: read " + path, e);
      }
      log += part;
    }
  }
  if (!any || log.empty()) return {};
  const size_t moved = options_.local->ReplayDirect(log);
  spdlog::info("queue: intent log replayed, {} copy(ies) moved into new/", moved);
  // The moves must be durable before the records go.
  if (::syncfs(spool_->msg_fd.get()) != 0)
    return io::ErrnoErr("queue: syncfs after replaying the intent log", errno);
  for (int i = 0; i < 2; ++i) {
    const std::string path = DirectLogPath(i);
    if (::truncate(path.c_str(), 0) != 0 && errno != ENOENT)
      return io::ErrnoErr("queue: truncate " + path, errno);
  }
  return {};
}

std::string QueueImpl::DirectLogPath(int i) const {
  return options_.data_dir + "/queue/direct." + std::to_string(i);
}

int QueueImpl::AppendIntents(std::vector<PendingCommit>& batch, uint64_t round) {
  std::string records;
  for (PendingCommit& pc : batch) {
    if (pc.direct) records += pc.direct->Intent();
  }
  if (records.empty()) return 0;
  for (int i = 0; i < 2; ++i) {
    if (direct_log_[i]) continue;
    const std::string path = DirectLogPath(i);
    direct_log_[i].Reset(::open(path.c_str(),
                                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!direct_log_[i]) {
      const int e = errno;
      spdlog::warn("queue: open {}: {}", path, ErrnoText(e));
      return e;
    }
  }
  constexpr uint64_t kSwitchSize = 1u << 20;
  const int other = 1 - direct_log_cur_;
  if (direct_log_size_[direct_log_cur_] >= kSwitchSize &&
      direct_log_round_[other] + 2 <= round) {
    if (::ftruncate(direct_log_[other].get(), 0) == 0) {
      direct_log_cur_ = other;
      direct_log_size_[other] = 0;
    }
  }
  const int cur = direct_log_cur_;
  if (int e = io::WriteAll(direct_log_[cur].get(), records.data(), records.size());
      e != 0) {
    spdlog::warn("queue: intent log write: {}", ErrnoText(e));
    return e;
  }
  direct_log_size_[cur] += records.size();
  direct_log_round_[cur] = round;
  return 0;
}

void QueueImpl::CommitterLoop() {
  std::vector<PendingCommit> batch;
  // Direct deliveries between their two flushes, and those that fell back
  // to the queue: they go into the next round.
  std::vector<PendingCommit> again;
  // Direct deliveries linked into new/ after the flush of the round they
  // carry: their tmp/ names go after a later flush succeeded.
  std::vector<std::pair<uint64_t, std::unique_ptr<DirectDelivery>>> linked;
  while (true) {
    uint64_t number = 0;
    {
      MutexLock lock(commit_mu_);
      for (PendingCommit& pc : again) commits_.push_back(std::move(pc));
      again.clear();
      bool tidy = false;  // a flush only to drop tmp/ names of linked copies
      while (commits_.empty() && sync_waiters_ == 0 && !committer_stop_) {
        if (linked.empty()) {
          commit_cv_.Wait(commit_mu_);
        } else if (commit_cv_.WaitUntil(commit_mu_, std::chrono::steady_clock::now() +
                                                        std::chrono::milliseconds(200)) ==
                   std::cv_status::timeout) {
          tidy = true;
          break;
        }
      }
      if (!tidy && commits_.empty() && sync_waiters_ == 0) {  // stopping, drained
        lock.Unlock();
        if (!linked.empty() && ::syncfs(spool_->msg_fd.get()) == 0) {
          for (auto& l : linked) l.second->Cleanup();
        }
        return;
      }
      batch.swap(commits_);
      number = ++syncs_started_;
    }
    if (AppendIntents(batch, number) != 0) {
      // Without their intents the copies could not be finished after a
      // crash: these messages take the queue, in this same flush.
      for (PendingCommit& pc : batch) {
        if (!pc.direct) continue;
        std::vector<size_t> all(pc.writer->envelope().recipients.size());
        for (size_t i = 0; i < all.size(); ++i) all[i] = i;
        QueueRest(pc, all);
      }
    }
    const int err = SyncBatch(batch);
    {
      MutexLock lock(commit_mu_);
      syncs_done_ = number;
      sync_error_ = err;
    }
    synced_cv_.NotifyAll();
    if (err == 0) {
      size_t kept = 0;
      for (auto& l : linked) {
        if (l.first < number) {
          l.second->Cleanup();
        } else {
          linked[kept++] = std::move(l);
        }
      }
      linked.resize(kept);
    }
    // Direct deliveries: this flush made their copies and intents durable;
    // move the copies into new/ and answer. What cannot be finished (a
    // failed flush or move) goes to the queue and waits for the next flush.
    for (PendingCommit& pc : batch) {
      if (!pc.direct) continue;
      if (err != 0) {
        spdlog::warn("queue {}: direct delivery not synced ({}): queued",
                     pc.id, ErrnoText(err));
        std::vector<size_t> all(pc.writer->envelope().recipients.size());
        for (size_t i = 0; i < all.size(); ++i) all[i] = i;
        QueueRest(pc, all);
      } else {
        pc.direct->Link();
        std::vector<size_t> rest = pc.direct->Complete();
        if (rest.empty()) {
          linked.emplace_back(number, std::move(pc.direct));
          pc.writer.reset();
          pc.delivered = true;  // answered below; nothing to schedule
          continue;
        }
        spdlog::warn("queue {}: {} recipient(s) left to the queue after "
                     "direct delivery", pc.id, rest.size());
        linked.emplace_back(number, std::move(pc.direct));
        QueueRest(pc, rest);
      }
      if (!pc.error.empty()) continue;  // answered below
      // bool members keep their value in the moved-from entry.
      pc.next_round = true;
      again.push_back(std::move(pc));
      again.back().next_round = false;
    }
    for (PendingCommit& pc : batch) {
      if (pc.next_round) continue;
      if (!pc.error.empty()) {
        spdlog::error("queue: commit failed: {}", pc.error);
        ::unlinkat(spool_->msg_fd.get(), pc.id.c_str(), 0);
        spool_->pool->Drain();  // a failed sync: likely no space
      }
      pc.fd.Reset();
    }
    for (PendingCommit& pc : batch) {
      if (pc.next_round) continue;
      if (pc.error.empty()) {
        pc.done(Result<void>{});
      } else {
        pc.done(Err(pc.error, pc.error_code));
      }
    }
    for (PendingCommit& pc : batch) {
      if (pc.next_round || !pc.error.empty()) continue;
      if (pc.delivered) continue;  // in the Maildirs, nothing queued
      if (pc.quarantined) {
        MutexLock lock(sched_mu_);
        held_.insert(pc.id);
      } else {
        Schedule(pc.id);
      }
    }
    batch.clear();
  }
}

}  // namespace tern::queue::internal
