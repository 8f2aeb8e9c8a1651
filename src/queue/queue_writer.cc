// Receiving a message into the spool: the writer keeps small messages in
// memory and streams large ones to their file; Begin creates the file (from
// the pool of spent ones) and Commit hands the finished file to the committer.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/file_io.h"
#include "common/mutex.h"
#include "queue/crc32c.h"
#include "queue/queue_id.h"
#include "queue/queue_impl.h"
#include "queue/spool_format.h"

namespace tern::queue::internal {

WriterImpl::WriterImpl(std::shared_ptr<const Spool> spool, std::string id,
                       Envelope envelope, UniqueFd fd, uint64_t old_size)
    : spool_(std::move(spool)),
      id_(std::move(id)),
      envelope_(std::move(envelope)),
      fd_(std::move(fd)),
      has_file_(static_cast<bool>(fd_)),
      old_size_(old_size) {}

WriterImpl::~WriterImpl() {
  // Not committed (RSET, dropped connection, failed write): the file was
  // never acknowledged, so it must not be delivered.
  if (!committed_ && has_file_) spool_->pool->Remove(id_);
}

int WriterImpl::EnsureFile() {
  if (has_file_) return 0;
  FilePool::Created file = spool_->pool->Create(id_);
  if (!file.fd) {
    const int err = errno != 0 ? errno : EIO;
    if (err == ENOSPC || err == EDQUOT) spool_->pool->Drain();
    return err;
  }
  fd_ = std::move(file.fd);
  old_size_ = file.old_size;
  has_file_ = true;
  return 0;
}

bool WriterImpl::Write(std::string_view data) {
  if (error_ != 0) return false;
  crc_ = Crc32c(crc_, data);
  size_ += data.size();
  if (!spilled_) {
    if (buffer_.size() + data.size() <= kMemoryLimit) {
      buffer_.append(data);
      return true;
    }
    // Too big for memory: a zeroed header (so the file is invalid until
    // Finish writes the real one) and what we have so far; the envelope
    // follows the message.
    if ((error_ = EnsureFile()) != 0) return false;
    spilled_ = true;
    char zero[kMessageHeaderSize] = {};
    struct iovec iov[2] = {{zero, sizeof zero}, {buffer_.data(), buffer_.size()}};
    if ((error_ = io::WritevAll(fd_.get(), iov, 2)) != 0) return false;
    buffer_.clear();
  }
  if (buffer_.size() + data.size() > kMemoryLimit) {
    if ((error_ = Flush()) != 0) return false;
    if (data.size() >= kMemoryLimit) {
      error_ = io::WriteAll(fd_.get(), data.data(), data.size());
      return error_ == 0;
    }
  }
  buffer_.append(data);
  return true;
}

bool WriterImpl::Restart() {
  if (error_ != 0) return false;
  if (spilled_) {
    // The file keeps what was written; Finish cuts any old tail.
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) != 0) {
      error_ = errno;
      return false;
    }
    old_size_ = std::max<uint64_t>(old_size_, static_cast<uint64_t>(st.st_size));
    spilled_ = false;
  }
  buffer_.clear();
  size_ = 0;
  crc_ = 0;
  return true;
}

int WriterImpl::Finish() {
  if (error_ != 0) return error_;
  if ((error_ = EnsureFile()) != 0) return error_;
  const std::string envelope = EncodeEnvelope(envelope_);
  auto header = EncodeMessageHeader(envelope, size_, crc_);
  if (!spilled_) {
    struct iovec iov[3] = {{header.data(), header.size()},
                           {buffer_.data(), buffer_.size()},
                           {const_cast<char*>(envelope.data()), envelope.size()}};
    error_ = io::WritevAll(fd_.get(), iov, 3);
  } else if ((error_ = Flush()) == 0 &&
             (error_ = io::WriteAll(fd_.get(), envelope.data(), envelope.size())) == 0) {
    // The valid header goes last: until it is written the file is invalid.
    error_ = io::PwriteAll(fd_.get(), header.data(), header.size(), 0);
  }
  // A reused file may be longer than this message: cut the old tail (the
  // header's lengths must match the file size).
  const uint64_t total = kMessageHeaderSize + envelope.size() + size_;
  if (error_ == 0 && old_size_ > total &&
      ::ftruncate(fd_.get(), static_cast<off_t>(total)) != 0) {
    error_ = errno;
  }
  if (error_ == ENOSPC || error_ == EDQUOT) spool_->pool->Drain();
  return error_;
}

int WriterImpl::Flush() {
  int err = io::WriteAll(fd_.get(), buffer_.data(), buffer_.size());
  buffer_.clear();
  if (err == ENOSPC || err == EDQUOT) spool_->pool->Drain();
  return err;
}

Result<std::unique_ptr<Writer>> QueueImpl::Begin(Envelope env) {
  if (!accepting_.load(std::memory_order_acquire))
    return Err("queue is not running");
  // The file waits until the message needs one (EnsureFile): mail for
  // local mailboxes only never gets one. A spool that is full, out of
  // inodes or read-only still refuses here (the session answers before
  // the client sends the message), so it is checked first.
  struct statvfs vfs;
  if (options_.direct_local && ::fstatvfs(spool_->msg_fd.get(), &vfs) == 0 &&
      (vfs.f_flag & ST_RDONLY) == 0 &&
      (vfs.f_files == 0 || vfs.f_favail > 0) &&  // btrfs counts no inodes
      vfs.f_bavail > kMemoryLimit / (vfs.f_frsize > 0 ? vfs.f_frsize : 4096)) {
    env.id = NewQueueId();
    if (env.received_at == 0) env.received_at = std::time(nullptr);
    std::string id = env.id;
    return std::make_unique<WriterImpl>(spool_, std::move(id), std::move(env),
                                        UniqueFd(), 0);
  }
  FilePool::Created file;
  std::string id;
  // Exclusive creation makes a clash with another process's id an error,
  // not an overwrite; a fresh id then almost surely differs.
  for (int attempt = 0; attempt < 4 && !file.fd; ++attempt) {
    id = NewQueueId();
    file = spool_->pool->Create(id);
    if (!file.fd && errno != EEXIST) {
      int err = errno;
      if (err == ENOSPC || err == EDQUOT) spool_->pool->Drain();
      return io::ErrnoErr("queue: create message file", err);
    }
  }
  if (!file.fd) return io::ErrnoErr("queue: create message file", EEXIST);
  // The id in the envelope is what tells a rewritten reused file from a
  // stale one after a crash (see file_pool.h).
  env.id = id;
  if (env.received_at == 0) env.received_at = std::time(nullptr);
  return std::make_unique<WriterImpl>(spool_, std::move(id), std::move(env),
                                      std::move(file.fd), file.old_size);
}

void QueueImpl::Commit(std::unique_ptr<Writer> writer,
                       std::function<void(Result<void>)> done) {
  auto* impl = dynamic_cast<WriterImpl*>(writer.get());
  if (impl == nullptr) {
    done(Err("queue: commit of a writer this queue did not create"));
    return;
  }
  PendingCommit pc;
  pc.id = impl->id();
  pc.done = std::move(done);
  pc.quarantined = !impl->envelope().quarantine.empty();
  if (options_.direct_local && !pc.quarantined && impl->in_memory() &&
      spool_dev_ != 0) {
    // Direct local delivery, unless the sender asked for a success DSN
    // (RFC 3461 NOTIFY=SUCCESS), which only the queue sends.
    const Envelope& env = impl->envelope();
    bool eligible = !env.recipients.empty();
    for (const Recipient& r : env.recipients) {
      if (NotifyWants(r.notify, "SUCCESS")) eligible = false;
    }
    std::unique_ptr<DirectDelivery> direct;
    if (eligible) {
      direct = options_.local->PrepareDirect(env, impl->buffer(), spool_dev_);
    }
    if (direct) {
      pc.direct = std::move(direct);
      writer.release();
      pc.writer.reset(impl);
      MutexLock lock(commit_mu_);
      if (!committer_stop_ && started_) {
        commits_.push_back(std::move(pc));
        lock.Unlock();
        commit_cv_.NotifyOne();
        return;
      }
      lock.Unlock();
      pc.direct.reset();  // removes the copies from tmp/
      pc.done(Err("queue is not running"));
      return;
    }
  }
  // The session thread writes the bytes (to the page cache: cheap); only
  // the sync is left to the committer.
  if (int err = impl->Finish(); err != 0) {
    pc.error_code = err;
    pc.error = "queue write " + pc.id + ": " + ErrnoText(err);
  } else {
    pc.fd = impl->Take();
  }
  {
    MutexLock lock(commit_mu_);
    if (!committer_stop_ && started_) {
      commits_.push_back(std::move(pc));
      lock.Unlock();
      commit_cv_.NotifyOne();
      return;
    }
  }
  // Not running: no queue thread is left to answer, so answer here.
  if (pc.fd) spool_->pool->Remove(pc.id);
  pc.done(Err("queue is not running"));
}

}  // namespace tern::queue::internal
