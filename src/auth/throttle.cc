// Per-IP counting of failed authentications for SMTP and POP3 AUTH; the
// callers turn the answers into a delayed reply or a refusal.
#include "auth/throttle.h"

#include <algorithm>
#include <utility>

#include "common/metrics.h"
#include "common/mutex.h"

namespace tern::auth {

AuthThrottle::AuthThrottle(ThrottleConfig config) : config_(config) {}

bool AuthThrottle::Blocked(const std::string& ip, Clock::time_point now) {
  MutexLock lock(mu_);
  auto it = entries_.find(ip);
  if (it == entries_.end()) return false;
  return now < it->second.blocked_until;
}

std::chrono::milliseconds AuthThrottle::Failure(const std::string& ip,
                                                Clock::time_point now) {
  MutexLock lock(mu_);
  SweepLocked(now);
  Entry& entry = entries_[ip];
  bool blocked = now < entry.blocked_until;
  bool lockout_over = entry.blocked_until != Clock::time_point{} && !blocked;
  // The window is counted from the first failure in it (a fixed window that
  // restarts, simpler than a log of every failure and as good at slowing
  // down guessing). A finished lockout starts afresh; a running one is
  // never shortened by the window running out.
  if (!blocked && (entry.failures == 0 || lockout_over ||
                   now - entry.first >= config_.window)) {
    entry = Entry{0, now, {}};
  }
  ++entry.failures;
  if (!blocked && entry.failures >= config_.max_failures) {
    entry.blocked_until = now + config_.lockout;
    metrics::Get().auth_lockouts.With().Inc();
  }
  auto delay = config_.delay_step * entry.failures;
  return std::min<std::chrono::milliseconds>(delay, config_.max_delay);
}

void AuthThrottle::Success(const std::string& ip) {
  MutexLock lock(mu_);
  entries_.erase(ip);
}

void AuthThrottle::SweepLocked(Clock::time_point now) {
  // Many source addresses (an IPv6 /64 is cheap) must not grow the table
  // without bound; dropping entries that no longer matter keeps it to the
  // recently active ones. Sweeping only when the table has doubled keeps
  // the cost per failure constant on average.
  if (entries_.size() < next_sweep_) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& entry = it->second;
    bool stale =
        now - entry.first >= config_.window && now >= entry.blocked_until;
    it = stale ? entries_.erase(it) : std::next(it);
  }
  next_sweep_ = std::max(kMinSweep, entries_.size() * 2);
}

size_t AuthThrottle::TrackedForTest() {
  MutexLock lock(mu_);
  return entries_.size();
}

}  // namespace tern::auth
