// The queue's insides, shared by the files that implement its parts (not
// for use outside src/queue/): the spool directories, the message writer
// and QueueImpl, whose members are grouped by the part that uses them.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "common/unique_fd.h"
#include "queue/file_pool.h"
#include "queue/finisher.h"
#include "queue/local.h"
#include "queue/queue.h"
#include "queue/remote.h"
#include "queue/spool_format.h"

namespace tern::queue::internal {

// Messages up to this size stay in memory until Commit writes them with one
// writev(); beyond it the writer streams to the spool file.
inline constexpr size_t kMemoryLimit = 64 * 1024;
inline constexpr size_t kDeliveryBatch = 32;
// The most messages in delivery at once (handed to the local deliverer or
// waiting for the remote sender's report). Without a cap, a million
// deferred messages that all become due together (a restart after an
// outage, `tern queue flush`) would all be handed to the remote sender in
// one go: a million jobs in its memory and a burst of connections at
// hosts that are likely still down. Postfix has the same kind of limit:
// its queue manager moves messages from the incoming and deferred queues
// into an in-memory "active" queue only while that holds fewer than
// qmgr_message_active_limit (20,000) messages, and the rest stay on disk
// until there is room.
inline constexpr size_t kActiveLimit = 10000;
// Recovery spreads the messages that are already due (their retry time
// passed while the server was down, or they never had a first attempt)
// instead of making them all due at once: the k-th of them (oldest first)
// becomes due k / rate seconds after the start, the rate being this many
// per second, or higher when the queue is so big that spreading it at
// this rate would take longer than the longest retry interval.
inline constexpr size_t kRecoverySpreadPerSecond = 500;
inline constexpr auto kPickupInterval = std::chrono::seconds(1);
// Hidden temp files in incoming/ older than this belong to a `tern
// sendmail` that died before its rename; younger ones may still be written.
inline constexpr int64_t kStaleIncomingSeconds = 24 * 3600;
inline constexpr mode_t kDirMode = 0700;

inline std::string ErrnoText(int err) {
  return std::system_category().message(err);
}

inline bool IsHidden(const std::string& name) {
  return !name.empty() && name[0] == '.';
}

// A queue id in 16 bytes (ids are 16 base32 characters, queue_id.h): the
// scheduler keeps one per queued message, so not a std::string (whose
// 16 characters would need a heap block of their own).
using QueueKey = std::array<char, 16>;
inline QueueKey KeyOf(std::string_view id) {
  QueueKey key{};
  std::memcpy(key.data(), id.data(), std::min(id.size(), key.size()));
  return key;
}
inline std::string IdOf(const QueueKey& key) {
  return std::string(key.data(), key.size());
}
// Ids order by time; memcmp is much faster than std::array's element-wise
// comparison for sorting a million of them.
struct QueueKeyLess {
  bool operator()(const QueueKey& a, const QueueKey& b) const {
    return std::memcmp(a.data(), b.data(), a.size()) < 0;
  }
};

// The spool directories, shared by the queue and its writers so a writer
// that outlives Stop() can still remove its file.
struct Spool {
  UniqueFd msg_fd;
  UniqueFd state_fd;
  UniqueFd incoming_fd;
  UniqueFd free_fd;
  std::unique_ptr<FilePool> pool;  // thread-safe; set once in OpenSpool
};

// One message being received (queue_writer.cc).
class WriterImpl final : public Writer {
 public:
  // Without `fd` (direct local delivery on) the spool file is made when
  // the message first needs it: when it spills or is committed to the queue.
  WriterImpl(std::shared_ptr<const Spool> spool, std::string id,
             Envelope envelope, UniqueFd fd, uint64_t old_size);
  ~WriterImpl() override;

  const std::string& id() const override { return id_; }
  uint64_t size() const override { return size_; }
  int error() const override { return error_; }

  bool Write(std::string_view data) override;
  void SetPrepend(std::string header_lines) override {
    envelope_.prepend = std::move(header_lines);
  }
  Envelope& envelope() override { return envelope_; }
  bool Restart() override;

  // Completes the file; returns 0 or an errno value.
  int Finish();

  // Hands the file over to the committer, which removes it on failure.
  UniqueFd Take() {
    committed_ = true;
    return std::move(fd_);
  }

  // The whole message is still in memory (no spool file written yet).
  bool in_memory() const { return !spilled_ && error_ == 0; }
  const std::string& buffer() const { return buffer_; }

 private:
  int Flush();
  // Creates the spool file when there is none yet: 0 or an errno value.
  int EnsureFile();

  std::shared_ptr<const Spool> spool_;
  std::string id_;
  Envelope envelope_;  // encoded at Finish, after the message (format 2)
  UniqueFd fd_;
  bool has_file_ = false;  // msg/<id> exists (until handed over)
  std::string buffer_;
  bool spilled_ = false;
  uint64_t old_size_ = 0;  // size of the reused file before this message
  bool committed_ = false;
  int error_ = 0;
  uint64_t size_ = 0;
  uint32_t crc_ = 0;
};

struct DueEntry {
  std::chrono::steady_clock::time_point when;
  QueueKey id;
};
// Orders the due_ heap so that its front is the earliest entry.
struct DueLater {
  bool operator()(const DueEntry& a, const DueEntry& b) const {
    return a.when != b.when ? a.when > b.when : QueueKeyLess{}(b.id, a.id);
  }
};

struct PendingCommit {
  std::string id;
  UniqueFd fd;  // invalid when `error` is set
  std::function<void(Result<void>)> done;
  std::string error;
  int error_code = 0;  // errno of the failure, for Error::code
  bool quarantined = false;  // held, not scheduled (Envelope::quarantine)
  // Direct local delivery: the copies, and the writer that still holds the
  // message in case some recipient must be queued after all.
  std::unique_ptr<DirectDelivery> direct;
  std::unique_ptr<WriterImpl> writer;
  bool delivered = false;   // every recipient done directly
  bool next_round = false;  // this entry moved on to the next flush
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

  Result<std::string> Flush() override EXCLUDES(sched_mu_);
  Result<std::string> Retry(const std::string& id) override EXCLUDES(sched_mu_);
  Result<std::string> Hold(const std::string& id) override;
  Result<std::string> Release(const std::string& id) override;
  Result<std::string> Delete(const std::string& id) override;
  Result<std::string> Bounce(const std::string& id) override;
  Stats GetStats() override EXCLUDES(sched_mu_);

 private:
  using Clock = std::chrono::steady_clock;
  enum class Op { kNone, kHold, kRelease, kDelete, kBounce };

  // Recovery (recovery.cc): Recover takes stock of the spool's names
  // (before any new message can be written), RecoveryLoop then reads each
  // message's envelope and state in the background and schedules it.
  Result<void> OpenSpool();
  Result<void> Recover();
  void RecoveryLoop();

  // The committer (committer.cc).
  void CommitterLoop() EXCLUDES(commit_mu_);
  int SyncBatch(std::vector<PendingCommit>& batch);
  // A direct delivery left recipients (or could not go on): writes the
  // spool file for them; on success `pc` becomes an ordinary commit.
  void QueueRest(PendingCommit& pc, const std::vector<size_t>& rest);
  // The intent log of direct deliveries (committer.cc): opened and
  // replayed at start, appended to before each flush.
  Result<void> OpenDirectLog();
  int AppendIntents(std::vector<PendingCommit>& batch, uint64_t round);
  std::string DirectLogPath(int i) const;
  int SharedSync(int fd) EXCLUDES(commit_mu_);

  // Pickup from incoming/ (pickup.cc).
  void PickupLoop() EXCLUDES(pickup_mu_);
  void PickupOnce();
  bool Reinject(int fd, const MessageFile& file);
  Result<std::string> EnqueueInternal(Envelope env, std::string message)
      EXCLUDES(pickup_mu_);

  // The scheduler (scheduler.cc). Its bookkeeping is all guarded by
  // sched_mu_. A message id is in at most one of waiting_ (with its due
  // time in due_), inflight_ (a delivery thread or the remote sender has it)
  // and held_, so no two threads ever work on one message.
  void DeliveryLoop() EXCLUDES(sched_mu_);
  void Schedule(const std::string& id) EXCLUDES(sched_mu_);
  void ScheduleLocked(const std::string& id, Clock::time_point when)
      REQUIRES(sched_mu_);
  void ScheduleKeyLocked(const QueueKey& key, Clock::time_point when)
      REQUIRES(sched_mu_);
  // Forgets a waiting message's due time (its heap entry goes stale).
  void UnscheduleLocked(const std::string& id) REQUIRES(sched_mu_);
  // The earliest current entry of due_ (stale ones are dropped), or null.
  const DueEntry* TopDueLocked() REQUIRES(sched_mu_);
  void DoneLocked(const std::string& id, bool retry, int64_t retry_at)
      REQUIRES(sched_mu_);
  Result<std::string> RequestOp(const std::string& id, Op op)
      EXCLUDES(sched_mu_);
  void RunOp(const std::string& id, Op op) EXCLUDES(sched_mu_);
  void ApplyRemote(RemoteReport report) EXCLUDES(sched_mu_);
  void SubmitRemote(const LocalOutcome& outcome) EXCLUDES(sched_mu_);

  // Set by Start before any queue thread exists, then only read (the
  // spool, finisher and local spool) or used by the thread that calls
  // Start and Stop (started_, stopped_): no lock.
  Options options_;
  std::shared_ptr<Spool> spool_;
  std::unique_ptr<Finisher> finisher_;
  LocalSpool local_spool_;  // lent to options_.local, set in Start
  bool started_ = false;
  bool stopped_ = false;
  dev_t spool_dev_ = 0;  // the spool's file system, for SharedSync
  // Two intent logs, queue/direct.0 and direct.1, used in turn; only the
  // committer touches them once started. A log is emptied for reuse only
  // when its last record is two flushes old: the moves it describes were
  // made after one flush and made durable by the next.
  UniqueFd direct_log_[2];
  uint64_t direct_log_size_[2] = {0, 0};
  uint64_t direct_log_round_[2] = {0, 0};
  int direct_log_cur_ = 0;
  std::atomic<bool> accepting_{false};

  Mutex commit_mu_;
  CondVar commit_cv_;
  std::vector<PendingCommit> commits_ GUARDED_BY(commit_mu_);
  bool committer_stop_ GUARDED_BY(commit_mu_) = false;
  // Flushes shared with the Maildir writer (SharedSync): flushes started
  // and finished (numbered), the last result, and how many callers wait.
  CondVar synced_cv_;
  uint64_t syncs_started_ GUARDED_BY(commit_mu_) = 0;
  uint64_t syncs_done_ GUARDED_BY(commit_mu_) = 0;
  int sync_error_ GUARDED_BY(commit_mu_) = 0;
  size_t sync_waiters_ GUARDED_BY(commit_mu_) = 0;

  Mutex pickup_mu_;
  CondVar pickup_cv_;
  bool pickup_stop_ GUARDED_BY(pickup_mu_) = false;
  bool pickup_now_ GUARDED_BY(pickup_mu_) = false;

  // What RecoveryLoop works through: the ids found in msg/ at start
  // (sorted), and which of them had a state file then. Written by Recover
  // before the thread starts; then the recovery thread's alone.
  std::vector<QueueKey> recover_ids_;
  std::vector<bool> recover_has_state_;
  std::atomic<bool> recovery_stop_{false};

  Mutex sched_mu_;
  CondVar sched_cv_;
  // Per waiting message: its id and due time (a map node of ~64 bytes) and
  // an entry in the due_ heap (24 bytes); nothing else of it is in memory
  // until it is due and a delivery thread loads it from the spool.
  std::map<QueueKey, Clock::time_point, QueueKeyLess> waiting_
      GUARDED_BY(sched_mu_);
  // Min-heap on the due time. An entry whose time differs from waiting_'s
  // for its id (or whose id is not waiting) is stale and skipped.
  std::vector<DueEntry> due_ GUARDED_BY(sched_mu_);
  std::unordered_set<std::string> inflight_ GUARDED_BY(sched_mu_);
  std::unordered_set<std::string> held_ GUARDED_BY(sched_mu_);
  // Requested while in flight.
  std::map<std::string, Op> ops_ GUARDED_BY(sched_mu_);
  // From the remote sender.
  std::deque<RemoteReport> reports_ GUARDED_BY(sched_mu_);
  bool delivery_stop_ GUARDED_BY(sched_mu_) = false;

  std::thread committer_;
  std::thread pickup_;
  std::thread recovery_;
  std::vector<std::thread> delivery_threads_;
};

}  // namespace tern::queue::internal
