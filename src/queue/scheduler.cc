// The delivery scheduler: which message is due when, the delivery threads
// that hand due messages to the local deliverer and remote recipients to
// the remote sender, its reports, and the operator's requests.
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "common/file_io.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "common/trace.h"
#include "common/unique_fd.h"
#include "queue/file_pool.h"
#include "queue/finisher.h"
#include "queue/local.h"
#include "queue/queue_id.h"
#include "queue/queue_impl.h"
#include "queue/remote.h"
#include "queue/spool_format.h"

namespace tern::queue::internal {
namespace {

// The trace's "done" for a message the operator deleted (no DSN).
void TraceDeleted(const std::string& id) {
  if (!trace::Enabled()) return;
  trace::Event e("done");
  e.Add("id", id).Add("deleted", "by the operator");
  trace::Record(e);
}

}  // namespace

void QueueImpl::Schedule(const std::string& id) {
  {
    MutexLock lock(sched_mu_);
    ScheduleLocked(id, Clock::now());
  }
  sched_cv_.NotifyOne();
}

void QueueImpl::ScheduleLocked(const std::string& id, Clock::time_point when) {
  if (inflight_.count(id) || held_.count(id)) return;
  ScheduleKeyLocked(KeyOf(id), when);
}

void QueueImpl::ScheduleKeyLocked(const QueueKey& key, Clock::time_point when) {
  auto [it, added] = waiting_.emplace(key, when);
  if (!added) {
    if (it->second <= when) return;
    it->second = when;  // the old heap entry is stale now
  }
  due_.push_back({when, key});
  std::push_heap(due_.begin(), due_.end(), DueLater{});
  // Rescheduling leaves stale entries behind; rebuild the heap from
  // waiting_ before they outnumber the live ones.
  if (due_.size() > 2 * waiting_.size() + 4096) {
    due_.clear();
    due_.reserve(waiting_.size());
    for (const auto& [k, w] : waiting_) due_.push_back({w, k});
    std::make_heap(due_.begin(), due_.end(), DueLater{});
  }
}

void QueueImpl::UnscheduleLocked(const std::string& id) {
  waiting_.erase(KeyOf(id));
}

const DueEntry* QueueImpl::TopDueLocked() {
  while (!due_.empty()) {
    const DueEntry& top = due_.front();
    auto it = waiting_.find(top.id);
    if (it != waiting_.end() && it->second == top.when) return &top;
    std::pop_heap(due_.begin(), due_.end(), DueLater{});
    due_.pop_back();
  }
  return nullptr;
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
      MutexLock lock(sched_mu_);
      reports_.push_back(std::move(report));
    }
    sched_cv_.NotifyOne();
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
      metrics::CountDelivery("remote",
                             o.state == RecipientState::kDelivered ? "delivered"
                             : o.state == RecipientState::kFailed  ? "failed"
                                                                   : "deferred",
                             QueueIdMicros(id));
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
  MutexLock lock(sched_mu_);
  DoneLocked(id, retry, retry_at);
}

void QueueImpl::RunOp(const std::string& id, Op op) {
  bool retry = false;
  int64_t retry_at = 0;
  auto loaded = LoadMessage(spool_->msg_fd.get(), spool_->state_fd.get(), id);
  if (!loaded) {
    spdlog::warn("queue {}: operator request dropped: {}", id,
                 loaded.error().message);
    MutexLock lock(sched_mu_);
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
      TraceDeleted(id);
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
  MutexLock lock(sched_mu_);
  inflight_.erase(id);
  if (hold) {
    held_.insert(id);
  } else if (retry) {
    ScheduleLocked(id, Clock::now() + std::chrono::seconds(std::max<int64_t>(
                                          retry_at - now, 0)));
  }
}

void QueueImpl::DeliveryLoop() {
  MutexLock lock(sched_mu_);
  while (!delivery_stop_) {
    if (!reports_.empty()) {
      RemoteReport report = std::move(reports_.front());
      reports_.pop_front();
      lock.Unlock();
      ApplyRemote(std::move(report));
      lock.Lock();
      continue;
    }
    auto now = Clock::now();
    std::vector<std::string> ids;
    std::vector<std::pair<std::string, Op>> ops;
    // At most kActiveLimit messages in delivery (queue_impl.h): the rest
    // stay due until reports come back.
    const DueEntry* top = nullptr;
    while (ids.size() < kDeliveryBatch && inflight_.size() < kActiveLimit &&
           (top = TopDueLocked()) != nullptr && top->when <= now) {
      std::string id = IdOf(top->id);
      waiting_.erase(top->id);
      std::pop_heap(due_.begin(), due_.end(), DueLater{});
      due_.pop_back();
      inflight_.insert(id);
      if (auto op = ops_.find(id); op != ops_.end()) {
        ops.emplace_back(id, op->second);
        ops_.erase(op);
      } else {
        ids.push_back(std::move(id));
      }
    }
    if (ids.empty() && ops.empty()) {
      top = inflight_.size() < kActiveLimit ? TopDueLocked() : nullptr;
      if (top == nullptr) {
        // Nothing due, or the active limit is reached: a report or a new
        // message wakes us.
        sched_cv_.Wait(sched_mu_);
      } else {
        // A copy: wait_until reads the time point again after waking, when
        // another delivery thread may have changed the heap.
        const auto when = top->when;
        sched_cv_.WaitUntil(sched_mu_, when);
      }
      continue;
    }
    lock.Unlock();
    for (auto& [id, op] : ops) RunOp(id, op);
    std::vector<LocalOutcome> outcomes;
    if (!ids.empty())
      outcomes = options_.local->DeliverBatch(local_spool_, ids);
    std::vector<const LocalOutcome*> remote;
    for (const LocalOutcome& o : outcomes) {
      if (!o.remote.empty() && options_.remote != nullptr) remote.push_back(&o);
    }
    lock.Lock();
    for (const LocalOutcome& o : outcomes) {
      // Handed to the remote sender: stays in flight until its report.
      if (!o.remote.empty() && options_.remote != nullptr) continue;
      DoneLocked(o.id, o.retry, o.retry_at);
    }
    if (!remote.empty()) {
      lock.Unlock();
      for (const LocalOutcome* o : remote) SubmitRemote(*o);
      lock.Lock();
    }
    // Retries may have become due for another thread's wait.
    if (!waiting_.empty() || !reports_.empty()) sched_cv_.NotifyOne();
  }
}

Result<std::string> QueueImpl::Flush() {
  size_t n = 0;
  {
    MutexLock lock(sched_mu_);
    // Every waiting message due now: one heap rebuild. The active limit
    // still decides how many are in delivery at once.
    const auto now = Clock::now();
    due_.clear();
    due_.reserve(waiting_.size());
    for (auto& [key, when] : waiting_) {
      when = now;
      due_.push_back({now, key});
      ++n;
    }
    std::make_heap(due_.begin(), due_.end(), DueLater{});
  }
  sched_cv_.NotifyAll();
  return "flushing " + std::to_string(n) + " message(s)";
}

Result<std::string> QueueImpl::RequestOp(const std::string& id, Op op) {
  if (!IsValidQueueId(id)) return Err("no such message: " + id);
  struct stat st;
  if (::fstatat(spool_->msg_fd.get(), id.c_str(), &st, 0) != 0)
    return Err("no such message: " + id);
  std::string note;
  {
    MutexLock lock(sched_mu_);
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
      UnscheduleLocked(id);
      ScheduleLocked(id, Clock::now());
    }
  }
  sched_cv_.NotifyOne();
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
    MutexLock lock(sched_mu_);
    if (held_.count(id))
      return Err("message " + id + " is on hold (release it)");
    if (inflight_.count(id)) return id + ": delivery in progress";
    UnscheduleLocked(id);
    ScheduleLocked(id, Clock::now());
  }
  sched_cv_.NotifyOne();
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

Queue::Stats QueueImpl::GetStats() {
  Stats st;
  MutexLock lock(sched_mu_);
  st.messages = waiting_.size() + inflight_.size() + held_.size();
  st.held = held_.size();
  // Ids sort by time: waiting_ is ordered, the other two are small.
  std::string first_waiting;
  if (!waiting_.empty()) first_waiting = IdOf(waiting_.begin()->first);
  std::string_view oldest = first_waiting;
  for (const auto* set : {&inflight_, &held_}) {
    for (const std::string& id : *set) {
      if (oldest.empty() || id < oldest) oldest = id;
    }
  }
  st.oldest_micros = QueueIdMicros(oldest);
  return st;
}

}  // namespace tern::queue::internal
