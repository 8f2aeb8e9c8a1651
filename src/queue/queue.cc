// The durable mail queue, put together: Start opens and recovers the spool
// and starts the committer, pickup and delivery threads; Stop ends them in
// order. The parts: queue_writer.cc, committer.cc, pickup.cc, recovery.cc,
// scheduler.cc (file formats: spool_format.h).
#include "queue/queue.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <utility>

#include "common/mutex.h"
#include "queue/finisher.h"
#include "queue/queue_impl.h"
#include "queue/remote.h"

namespace tern::queue {
namespace internal {

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
  // Direct deliveries a crash interrupted (also when direct_local has been
  // turned off since).
  if (auto replayed = OpenDirectLog(); !replayed) return replayed;

  committer_ = std::thread([this] { CommitterLoop(); });
  pickup_ = std::thread([this] { PickupLoop(); });
  for (uint32_t i = 0; i < options_.delivery_threads; ++i) {
    delivery_threads_.emplace_back([this] { DeliveryLoop(); });
  }
  recovery_ = std::thread([this] { RecoveryLoop(); });
  accepting_.store(true, std::memory_order_release);
  return {};
}

void QueueImpl::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  accepting_.store(false, std::memory_order_release);
  recovery_stop_.store(true, std::memory_order_relaxed);
  if (recovery_.joinable()) recovery_.join();
  {
    MutexLock lock(pickup_mu_);
    pickup_stop_ = true;
  }
  pickup_cv_.NotifyAll();
  if (pickup_.joinable()) pickup_.join();
  {
    // Commits already handed over are still synced and answered.
    MutexLock lock(commit_mu_);
    committer_stop_ = true;
  }
  commit_cv_.NotifyAll();
  if (committer_.joinable()) committer_.join();
  // No remote report may arrive once the delivery threads are gone.
  if (options_.remote != nullptr) options_.remote->Stop();
  {
    MutexLock lock(sched_mu_);
    delivery_stop_ = true;
  }
  sched_cv_.NotifyAll();
  for (std::thread& t : delivery_threads_) t.join();
  delivery_threads_.clear();
}

}  // namespace internal

Result<std::unique_ptr<Queue>> Queue::Open(const Options& options) {
  if (options.data_dir.empty()) return Err("queue: data_dir is empty");
  if (options.local == nullptr) return Err("queue: no local deliverer");
  return std::unique_ptr<Queue>(std::make_unique<internal::QueueImpl>(options));
}

}  // namespace tern::queue
