// The durable mail queue: message writers, the group-commit thread (one
// syncfs() per batch of commits), the incoming/ pickup thread, recovery at
// start and the delivery scheduler. File formats: see spool_format.h.
#include "queue/queue.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>

#include "common/file_io.h"
#include "common/unique_fd.h"
#include "queue/crc32c.h"
#include "queue/file_pool.h"
#include "queue/finisher.h"
#include "queue/local.h"
#include "queue/queue_id.h"
#include "queue/remote.h"
#include "queue/spool_format.h"

namespace tern::queue {
namespace {

// Messages up to this size stay in memory until Commit writes them with one
// writev(); beyond it the writer streams to the spool file.
constexpr size_t kMemoryLimit = 64 * 1024;
constexpr size_t kDeliveryBatch = 32;
constexpr auto kPickupInterval = std::chrono::seconds(1);
// Hidden temp files in incoming/ older than this belong to a `tern
// sendmail` that died before its rename; younger ones may still be written.
constexpr int64_t kStaleIncomingSeconds = 24 * 3600;
constexpr mode_t kDirMode = 0700;

std::string ErrnoText(int err) { return std::system_category().message(err); }

bool IsHidden(const std::string& name) {
  return !name.empty() && name[0] == '.';
}

// The spool directories, shared by the queue and its writers so a writer
// that outlives Stop() can still remove its file.
struct Spool {
  UniqueFd msg_fd;
  UniqueFd state_fd;
  UniqueFd incoming_fd;
  UniqueFd free_fd;
  std::unique_ptr<FilePool> pool;  // thread-safe; set once in OpenSpool
};

class WriterImpl final : public Writer {
 public:
  WriterImpl(std::shared_ptr<const Spool> spool, std::string id,
             std::string encoded_envelope, UniqueFd fd, uint64_t old_size)
      : spool_(std::move(spool)),
        id_(std::move(id)),
        envelope_(std::move(encoded_envelope)),
        fd_(std::move(fd)),
        old_size_(old_size) {}

  ~WriterImpl() override {
    // Not committed (RSET, dropped connection, failed write): the file was
    // never acknowledged, so it must not be delivered.
    if (!committed_) spool_->pool->Remove(id_);
  }

  const std::string& id() const override { return id_; }
  uint64_t size() const override { return size_; }
  int error() const override { return error_; }

  bool Write(std::string_view data) override {
    if (error_ != 0) return false;
    crc_ = Crc32c(crc_, data);
    size_ += data.size();
    if (!spilled_) {
      if (buffer_.size() + data.size() <= kMemoryLimit) {
        buffer_.append(data);
        return true;
      }
      // Too big for memory: a zeroed header (so the file is invalid until
      // Finish writes the real one), the envelope and what we have so far.
      spilled_ = true;
      char zero[kMessageHeaderSize] = {};
      struct iovec iov[3] = {{zero, sizeof zero},
                             {envelope_.data(), envelope_.size()},
                             {buffer_.data(), buffer_.size()}};
      if ((error_ = io::WritevAll(fd_.get(), iov, 3)) != 0) return false;
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

  // Completes the file; returns 0 or an errno value.
  int Finish() {
    if (error_ != 0) return error_;
    auto header = EncodeMessageHeader(envelope_, size_, crc_);
    if (!spilled_) {
      struct iovec iov[3] = {{header.data(), header.size()},
                             {envelope_.data(), envelope_.size()},
                             {buffer_.data(), buffer_.size()}};
      error_ = io::WritevAll(fd_.get(), iov, 3);
    } else if ((error_ = Flush()) == 0) {
      // The valid header goes last: until it is written the file is invalid.
      error_ = io::PwriteAll(fd_.get(), header.data(), header.size(), 0);
    }
    // A reused file may be longer than this message: cut the old tail (the
    // header's lengths must match the file size).
    const uint64_t total = kMessageHeaderSize + envelope_.size() + size_;
    if (error_ == 0 && old_size_ > total &&
        ::ftruncate(fd_.get(), static_cast<off_t>(total)) != 0) {
      error_ = errno;
    }
    if (error_ == ENOSPC || error_ == EDQUOT) spool_->pool->Drain();
    return error_;
  }

  // Hands the file over to the committer, which removes it on failure.
  UniqueFd Take() {
    committed_ = true;
    return std::move(fd_);
  }

 private:
  int Flush() {
    int err = io::WriteAll(fd_.get(), buffer_.data(), buffer_.size());
    buffer_.clear();
    if (err == ENOSPC || err == EDQUOT) spool_->pool->Drain();
    return err;
  }

  std::shared_ptr<const Spool> spool_;
  std::string id_;
  std::string envelope_;  // encoded
  UniqueFd fd_;
  std::string buffer_;
  bool spilled_ = false;
  uint64_t old_size_ = 0;  // size of the reused file before this message
  bool committed_ = false;
  int error_ = 0;
  uint64_t size_ = 0;
  uint32_t crc_ = 0;
};

struct PendingCommit {
  std::string id;
  UniqueFd fd;  // invalid when `error` is set
  std::function<void(Result<void>)> done;
  std::string error;
};

class QueueImpl final : public Queue {
 public:
  explicit QueueImpl(Options options) : options_(std::move(options)) {}
  ~QueueImpl() override { Stop(); }

  Result<void> Start() override;
  void Stop() override;
  Result<std::unique_ptr<Writer>> Begin(Envelope env) override;
  void Commit(std::unique_ptr<Writer> writer,
              std::function<void(Result<void>)> done) override;

  Result<std::string> Flush() override;
  Result<std::string> Retry(const std::string& id) override;
  Result<std::string> Hold(const std::string& id) override;
  Result<std::string> Release(const std::string& id) override;
  Result<std::string> Delete(const std::string& id) override;
  Result<std::string> Bounce(const std::string& id) override;

 private:
  using Clock = std::chrono::steady_clock;
  enum class Op { kNone, kHold, kRelease, kDelete, kBounce };

  // Scheduler bookkeeping, all guarded by sched_mu_. A message id is in at
  // most one of waiting_ (with its due time in due_), inflight_ (a delivery
  // thread or the remote sender has it) and held_, so no two threads ever
  // work on one message.
  void ScheduleLocked(const std::string& id, Clock::time_point when);
  void DoneLocked(const std::string& id, bool retry, int64_t retry_at);
  Result<std::string> RequestOp(const std::string& id, Op op);
  void RunOp(const std::string& id, Op op);
  void ApplyRemote(RemoteReport report);
  void SubmitRemote(const LocalOutcome& outcome);
  Result<std::string> EnqueueInternal(Envelope env, std::string message);
  Result<void> OpenSpool();
  Result<void> Recover();
  void PickupOnce();
  bool Reinject(int fd, const MessageFile& file);
  void CommitterLoop();
  int SyncBatch(std::vector<PendingCommit>& batch);
  int SharedSync(int fd);
  void PickupLoop();
  void DeliveryLoop();
  void Schedule(const std::string& id);

  Options options_;
  std::shared_ptr<Spool> spool_;
  std::unique_ptr<Finisher> finisher_;
  LocalSpool local_spool_;  // lent to options_.local, set in Start
  bool started_ = false;
  bool stopped_ = false;
  std::atomic<bool> accepting_{false};

  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::vector<PendingCommit> commits_;  // guarded by commit_mu_
  bool committer_stop_ = false;         // guarded by commit_mu_
  // Flushes shared with the Maildir writer (SharedSync), guarded by
  // commit_mu_: flushes started and finished (numbered), the last result,
  // and how many callers wait.
  std::condition_variable synced_cv_;
  uint64_t syncs_started_ = 0;
  uint64_t syncs_done_ = 0;
  int sync_error_ = 0;
  size_t sync_waiters_ = 0;
  dev_t spool_dev_ = 0;

  std::mutex pickup_mu_;
  std::condition_variable pickup_cv_;
  bool pickup_stop_ = false;  // guarded by pickup_mu_
  bool pickup_now_ = false;   // guarded by pickup_mu_

  std::mutex sched_mu_;
  std::condition_variable sched_cv_;
  std::map<std::string, Clock::time_point> waiting_;
  std::set<std::pair<Clock::time_point, std::string>> due_;
  std::unordered_set<std::string> inflight_;
  std::unordered_set<std::string> held_;
  std::map<std::string, Op> ops_;      // requested while in flight
  std::deque<RemoteReport> reports_;   // from the remote sender
  bool delivery_stop_ = false;

  std::thread committer_;
  std::thread pickup_;
  std::vector<std::thread> delivery_threads_;
};

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
    bool is_held = false;
    if (raw) {
      if (auto state = DecodeState(*raw)) {
        next = state->next_attempt;
        is_held = state->held;
      }
    }
    std::lock_guard lock(sched_mu_);
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

Result<void> QueueImpl::Start() {
  if (started_) return Err("queue: already started");
  started_ = true;
  if (auto opened = OpenSpool(); !opened) return opened;
  local_spool_.msg_dir_fd = spool_->msg_fd.get();
  local_spool_.state_dir_fd = spool_->state_fd.get();
  RetryPolicy policy;
  policy.first = options_.retry_seconds;
  policy.max = std::max(options_.max_retry_seconds, options_.retry_seconds);
  policy.lifetime = options_.max_lifetime;
  policy.delay_warning = options_.delay_warning;
  finisher_ = std::make_unique<Finisher>(
      spool_->msg_fd.get(), spool_->state_fd.get(), options_.hostname, policy,
      [this](Envelope env, std::string message) {
        return EnqueueInternal(std::move(env), std::move(message));
      },
      spool_->pool.get(), options_.postmaster);
  local_spool_.finisher = finisher_.get();
  struct stat spool_st;
  if (::fstat(spool_->msg_fd.get(), &spool_st) == 0) {
    spool_dev_ = spool_st.st_dev;
    local_spool_.sync = [this](int fd) { return SharedSync(fd); };
  }
  // Creates spdlog's default logger here, before our threads exist: its
  // lazy static initialisation in the (uninstrumented) shared library is
  // otherwise reported as a race by ThreadSanitizer.
  spdlog::default_logger_raw();
  if (auto recovered = Recover(); !recovered) return recovered;

  committer_ = std::thread([this] { CommitterLoop(); });
  pickup_ = std::thread([this] { PickupLoop(); });
  for (uint32_t i = 0; i < options_.delivery_threads; ++i) {
    delivery_threads_.emplace_back([this] { DeliveryLoop(); });
  }
  accepting_.store(true, std::memory_order_release);
  return {};
}

void QueueImpl::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  accepting_.store(false, std::memory_order_release);
  {
    std::lock_guard lock(pickup_mu_);
    pickup_stop_ = true;
  }
  pickup_cv_.notify_all();
  if (pickup_.joinable()) pickup_.join();
  {
    // Commits already handed over are still synced and answered.
    std::lock_guard lock(commit_mu_);
    committer_stop_ = true;
  }
  commit_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  // No remote report may arrive once the delivery threads are gone.
  if (options_.remote != nullptr) options_.remote->Stop();
  {
    std::lock_guard lock(sched_mu_);
    delivery_stop_ = true;
  }
  sched_cv_.notify_all();
  for (std::thread& t : delivery_threads_) t.join();
  delivery_threads_.clear();
}

Result<std::unique_ptr<Writer>> QueueImpl::Begin(Envelope env) {
  if (!accepting_.load(std::memory_order_acquire))
    return Err("queue is not running");
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
  return std::make_unique<WriterImpl>(spool_, std::move(id),
                                      EncodeEnvelope(env), std::move(file.fd),
                                      file.old_size);
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
  // The session thread writes the bytes (to the page cache: cheap); only
  // the sync is left to the committer.
  if (int err = impl->Finish(); err != 0) {
    pc.error = "queue write " + pc.id + ": " + ErrnoText(err);
  } else {
    pc.fd = impl->Take();
  }
  {
    std::unique_lock lock(commit_mu_);
    if (!committer_stop_ && started_) {
      commits_.push_back(std::move(pc));
      lock.unlock();
      commit_cv_.notify_one();
      return;
    }
  }
  // Not running: no queue thread is left to answer, so answer here.
  if (pc.fd) spool_->pool->Remove(pc.id);
  pc.done(Err("queue is not running"));
}

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
  std::unique_lock lock(commit_mu_);
  if (committer_stop_) {
    lock.unlock();
    return ::syncfs(fd) == 0 ? 0 : errno;
  }
  const uint64_t want = syncs_started_ + 1;
  ++sync_waiters_;
  commit_cv_.notify_one();
  synced_cv_.wait(lock, [&] { return syncs_done_ >= want; });
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
      pc.error = "queue sync " + pc.id + ": " + ErrnoText(errno);
      pc.fd.Reset();
    } else {
      some_ok = true;
    }
  }
  if (some_ok && ::fsync(spool_->msg_fd.get()) != 0) {
    std::string text = ErrnoText(errno);
    for (PendingCommit& pc : batch) {
      if (!pc.fd) continue;
      pc.error = "queue sync " + pc.id + ": " + text;
      pc.fd.Reset();
    }
  }
  return err;
}

void QueueImpl::CommitterLoop() {
  std::vector<PendingCommit> batch;
  while (true) {
    uint64_t number = 0;
    {
      std::unique_lock lock(commit_mu_);
      commit_cv_.wait(lock, [&] {
        return !commits_.empty() || sync_waiters_ > 0 || committer_stop_;
      });
      if (commits_.empty() && sync_waiters_ == 0) return;  // stopping, drained
      batch.swap(commits_);
      number = ++syncs_started_;
    }
    const int err = SyncBatch(batch);
    {
      std::lock_guard lock(commit_mu_);
      syncs_done_ = number;
      sync_error_ = err;
    }
    synced_cv_.notify_all();
    for (PendingCommit& pc : batch) {
      if (!pc.error.empty()) {
        spdlog::error("queue: commit failed: {}", pc.error);
        ::unlinkat(spool_->msg_fd.get(), pc.id.c_str(), 0);
        spool_->pool->Drain();  // a failed sync: likely no space
      }
      pc.fd.Reset();
    }
    for (PendingCommit& pc : batch) {
      if (pc.error.empty()) {
        pc.done(Result<void>{});
      } else {
        pc.done(Err(pc.error));
      }
    }
    for (PendingCommit& pc : batch) {
      if (pc.error.empty()) Schedule(pc.id);
    }
    batch.clear();
  }
}

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
      spdlog::error("queue: incoming/{} names another id ({}); renamed to .bad-{}",
                    name, file->envelope.id, name);
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
  std::unique_lock lock(pickup_mu_);
  while (!pickup_stop_) {
    pickup_cv_.wait_for(lock, kPickupInterval,
                        [&] { return pickup_stop_ || pickup_now_; });
    if (pickup_stop_) break;
    pickup_now_ = false;
    lock.unlock();
    PickupOnce();
    lock.lock();
  }
}

// DSNs go through incoming/ like `tern sendmail` mail: written and synced
// before the caller records them as sent, picked up at once.
Result<std::string> QueueImpl::EnqueueInternal(Envelope env,
                                               std::string message) {
  auto id = Inject(options_.data_dir, std::move(env), message);
  if (id) {
    {
      std::lock_guard lock(pickup_mu_);
      pickup_now_ = true;
    }
    pickup_cv_.notify_all();
  }
  return id;
}

void QueueImpl::Schedule(const std::string& id) {
  {
    std::lock_guard lock(sched_mu_);
    ScheduleLocked(id, Clock::now());
  }
  sched_cv_.notify_one();
}

void QueueImpl::ScheduleLocked(const std::string& id, Clock::time_point when) {
  if (inflight_.count(id) || held_.count(id)) return;
  auto it = waiting_.find(id);
  if (it != waiting_.end()) {
    if (it->second <= when) return;
    due_.erase({it->second, id});
    it->second = when;
  } else {
    waiting_.emplace(id, when);
  }
  due_.emplace(when, id);
}

void QueueImpl::DoneLocked(const std::string& id, bool retry,
                           int64_t retry_at) {
  inflight_.erase(id);
  if (ops_.count(id)) {
    ScheduleLocked(id, Clock::now());  // the operator's request comes next
  } else if (retry) {
    int64_t wait = std::max<int64_t>(retry_at - std::time(nullptr), 0);
    ScheduleLocked(id, Clock::now() + std::chrono::seconds(wait));
  }
  // Otherwise finished, or waiting for nothing we can do (no remote
  // sender): forgotten until the next start or `tern queue retry`.
}

void QueueImpl::SubmitRemote(const LocalOutcome& o) {
  RemoteJob job;
  job.id = o.id;
  job.envelope = o.envelope;
  job.path = options_.data_dir + "/queue/msg/" + o.id;
  job.body_offset = o.body_offset;
  job.body_len = o.body_len;
  job.rcpts = o.remote;
  options_.remote->Send(std::move(job), [this](RemoteReport report) {
    {
      std::lock_guard lock(sched_mu_);
      reports_.push_back(std::move(report));
    }
    sched_cv_.notify_one();
  });
}

void QueueImpl::ApplyRemote(RemoteReport report) {
  const std::string id = report.id;
  bool retry = false;
  int64_t retry_at = 0;
  auto loaded =
      LoadMessage(spool_->msg_fd.get(), spool_->state_fd.get(), report.id);
  if (!loaded) {
    spdlog::error("queue {}: cannot record remote results: {}", id,
                  loaded.error().message);
  } else {
    UniqueFd fd(loaded->fd);
    MessageState& state = loaded->state;
    bool deferred = false;
    for (const RemoteOutcome& o : report.rcpts) {
      if (o.index >= state.recipients.size()) continue;
      RecipientRecord& rec = state.recipients[o.index];
      if (rec.recipient.address != o.address ||
          rec.state != RecipientState::kPending) {
        continue;
      }
      rec.state = o.state;
      rec.error = o.reply;
      rec.status = o.status;
      rec.remote_mta = o.remote_mta;
      rec.dsn_passed = o.dsn_passed;
      if (o.state == RecipientState::kPending) {
        deferred = true;
        state.last_error = o.reply;
      }
    }
    for (Attempt& a : report.attempts) state.log.push_back(std::move(a));
    if (state.log.size() > kMaxAttemptLog) {
      state.log.erase(state.log.begin(),
                      state.log.end() - static_cast<long>(kMaxAttemptLog));
    }
    FinishOutcome fin = finisher_->Finish(id, fd.get(), loaded->file, state,
                                          deferred, std::time(nullptr));
    retry = fin.retry;
    retry_at = fin.retry_at;
  }
  std::lock_guard lock(sched_mu_);
  DoneLocked(id, retry, retry_at);
}

void QueueImpl::RunOp(const std::string& id, Op op) {
  bool retry = false;
  int64_t retry_at = 0;
  auto loaded =
      LoadMessage(spool_->msg_fd.get(), spool_->state_fd.get(), id);
  if (!loaded) {
    spdlog::warn("queue {}: operator request dropped: {}", id,
                 loaded.error().message);
    std::lock_guard lock(sched_mu_);
    inflight_.erase(id);
    return;
  }
  UniqueFd fd(loaded->fd);
  MessageState& state = loaded->state;
  const int64_t now = std::time(nullptr);
  bool hold = false;
  switch (op) {
    case Op::kDelete:
      spool_->pool->Remove(id);
      ::unlinkat(spool_->state_fd.get(), id.c_str(), 0);
      spdlog::warn("queue {}: deleted by the operator (from=<{}>)", id,
                   loaded->file.envelope.sender);
      break;
    case Op::kBounce: {
      spdlog::warn("queue {}: returned to the sender by the operator", id);
      FinishOutcome fin = finisher_->FailAll(
          id, fd.get(), loaded->file, state,
          "550 5.0.0 message returned by the postmaster", now);
      retry = fin.retry;
      retry_at = fin.retry_at;
      break;
    }
    case Op::kHold:
    case Op::kRelease:
      hold = op == Op::kHold;
      state.held = hold;
      if (!hold) state.next_attempt = now;
      if (auto saved = io::AtomicWriteAt(spool_->state_fd.get(), id,
                                         EncodeState(state), true);
          !saved) {
        spdlog::error("queue {}: saving state: {}", id, saved.error().message);
      }
      spdlog::info("queue {}: {} by the operator", id,
                   hold ? "held" : "released");
      retry = !hold;
      retry_at = now;
      break;
    case Op::kNone:
      break;
  }
  std::lock_guard lock(sched_mu_);
  inflight_.erase(id);
  if (hold) {
    held_.insert(id);
  } else if (retry) {
    ScheduleLocked(id, Clock::now() + std::chrono::seconds(std::max<int64_t>(
                                          retry_at - now, 0)));
  }
}

void QueueImpl::DeliveryLoop() {
  std::unique_lock lock(sched_mu_);
  while (!delivery_stop_) {
    if (!reports_.empty()) {
      RemoteReport report = std::move(reports_.front());
      reports_.pop_front();
      lock.unlock();
      ApplyRemote(std::move(report));
      lock.lock();
      continue;
    }
    auto now = Clock::now();
    std::vector<std::string> ids;
    std::vector<std::pair<std::string, Op>> ops;
    while (!due_.empty() && due_.begin()->first <= now &&
           ids.size() < kDeliveryBatch) {
      std::string id = due_.begin()->second;
      due_.erase(due_.begin());
      waiting_.erase(id);
      inflight_.insert(id);
      if (auto op = ops_.find(id); op != ops_.end()) {
        ops.emplace_back(id, op->second);
        ops_.erase(op);
      } else {
        ids.push_back(std::move(id));
      }
    }
    if (ids.empty() && ops.empty()) {
      if (due_.empty()) {
        sched_cv_.wait(lock);
      } else {
        // A copy: wait_until reads the time point again after waking, when
        // another delivery thread may have erased that node of due_.
        const auto when = due_.begin()->first;
        sched_cv_.wait_until(lock, when);
      }
      continue;
    }
    lock.unlock();
    for (auto& [id, op] : ops) RunOp(id, op);
    std::vector<LocalOutcome> outcomes;
    if (!ids.empty())
      outcomes = options_.local->DeliverBatch(local_spool_, ids);
    std::vector<const LocalOutcome*> remote;
    for (const LocalOutcome& o : outcomes) {
      if (!o.remote.empty() && options_.remote != nullptr) remote.push_back(&o);
    }
    lock.lock();
    for (const LocalOutcome& o : outcomes) {
      // Handed to the remote sender: stays in flight until its report.
      if (!o.remote.empty() && options_.remote != nullptr) continue;
      DoneLocked(o.id, o.retry, o.retry_at);
    }
    if (!remote.empty()) {
      lock.unlock();
      for (const LocalOutcome* o : remote) SubmitRemote(*o);
      lock.lock();
    }
    // Retries may have become due for another thread's wait.
    if (!due_.empty() || !reports_.empty()) sched_cv_.notify_one();
  }
}

Result<std::string> QueueImpl::Flush() {
  size_t n = 0;
  {
    std::lock_guard lock(sched_mu_);
    std::vector<std::string> ids;
    for (const auto& [id, when] : waiting_) ids.push_back(id);
    for (const std::string& id : ids) {
      auto it = waiting_.find(id);
      due_.erase({it->second, id});
      waiting_.erase(it);
      ScheduleLocked(id, Clock::now());
      ++n;
    }
  }
  sched_cv_.notify_all();
  return "flushing " + std::to_string(n) + " message(s)";
}

Result<std::string> QueueImpl::RequestOp(const std::string& id, Op op) {
  if (!IsValidQueueId(id)) return Err("no such message: " + id);
  struct stat st;
  if (::fstatat(spool_->msg_fd.get(), id.c_str(), &st, 0) != 0)
    return Err("no such message: " + id);
  std::string note;
  {
    std::lock_guard lock(sched_mu_);
    if (held_.count(id)) {
      if (op == Op::kHold) return std::string("already on hold");
      held_.erase(id);
    } else if (op == Op::kRelease) {
      return Err("message " + id + " is not on hold");
    }
    ops_[id] = op;
    if (inflight_.count(id)) {
      note = " (after the delivery attempt in progress)";
    } else {
      auto it = waiting_.find(id);
      if (it != waiting_.end()) {
        due_.erase({it->second, id});
        waiting_.erase(it);
      }
      ScheduleLocked(id, Clock::now());
    }
  }
  sched_cv_.notify_one();
  const char* what = op == Op::kHold      ? "held"
                     : op == Op::kRelease ? "released"
                     : op == Op::kDelete  ? "deleted"
                                          : "bounced";
  return id + ": " + what + note;
}

Result<std::string> QueueImpl::Retry(const std::string& id) {
  if (!IsValidQueueId(id)) return Err("no such message: " + id);
  struct stat st;
  if (::fstatat(spool_->msg_fd.get(), id.c_str(), &st, 0) != 0)
    return Err("no such message: " + id);
  {
    std::lock_guard lock(sched_mu_);
    if (held_.count(id)) return Err("message " + id + " is on hold (release it)");
    if (inflight_.count(id)) return id + ": delivery in progress";
    auto it = waiting_.find(id);
    if (it != waiting_.end()) {
      due_.erase({it->second, id});
      waiting_.erase(it);
    }
    ScheduleLocked(id, Clock::now());
  }
  sched_cv_.notify_one();
  return id + ": retrying now";
}

Result<std::string> QueueImpl::Hold(const std::string& id) {
  return RequestOp(id, Op::kHold);
}
Result<std::string> QueueImpl::Release(const std::string& id) {
  return RequestOp(id, Op::kRelease);
}
Result<std::string> QueueImpl::Delete(const std::string& id) {
  return RequestOp(id, Op::kDelete);
}
Result<std::string> QueueImpl::Bounce(const std::string& id) {
  return RequestOp(id, Op::kBounce);
}

}  // namespace

Result<std::unique_ptr<Queue>> Queue::Open(const Options& options) {
  if (options.data_dir.empty()) return Err("queue: data_dir is empty");
  if (options.local == nullptr) return Err("queue: no local deliverer");
  return std::unique_ptr<Queue>(std::make_unique<QueueImpl>(options));
}

Result<std::string> Inject(const std::string& data_dir, Envelope env,
                           std::string_view message) {
  const std::string dir = data_dir + "/queue/incoming";
  if (auto made = io::MkdirAll(dir, kDirMode); !made)
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
                         {encoded.data(), encoded.size()},
                         {const_cast<char*>(message.data()), message.size()}};
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

Result<std::vector<Entry>> List(const std::string& data_dir) {
  std::vector<Entry> entries;
  auto msg_fd = io::OpenDir(data_dir + "/queue/msg");
  if (!msg_fd) {
    struct stat st;
    if (::stat((data_dir + "/queue/msg").c_str(), &st) != 0 &&
        errno == ENOENT) {
      return entries;  // nothing was ever queued
    }
    return tl::unexpected(msg_fd.error());
  }
  auto state_fd = io::OpenDir(data_dir + "/queue/state");
  auto names = io::ListDir(msg_fd->get());
  if (!names) return tl::unexpected(names.error());
  std::sort(names->begin(), names->end());
  for (const std::string& name : *names) {
    if (!IsValidQueueId(name)) continue;
    UniqueFd fd(::openat(msg_fd->get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;  // delivered meanwhile
    // Messages still being received (or torn) fail this check: skip them.
    auto file = ReadMessageMeta(fd.get());
    // A reused file still holding an earlier message: not written yet.
    if (!file || file->envelope.id != name) continue;
    Entry entry;
    entry.envelope = std::move(file->envelope);
    entry.envelope.id = name;
    entry.size = file->body_len;
    MessageState state = InitialState(entry.envelope);
    if (state_fd) {
      auto raw = io::ReadSmallFileAt(state_fd->get(), name, 64u << 20);
      if (raw) {
        if (auto decoded = DecodeState(*raw)) state = std::move(*decoded);
      }
    }
    entry.envelope.recipients.clear();
    for (RecipientRecord& r : state.recipients) {
      entry.envelope.recipients.push_back(std::move(r.recipient));
      entry.state.push_back(r.state);
      entry.errors.push_back(std::move(r.error));
    }
    entry.held = state.held;
    entry.log = std::move(state.log);
    entry.attempts = state.attempts;
    entry.next_attempt = state.next_attempt;
    entry.last_error = std::move(state.last_error);
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace tern::queue
