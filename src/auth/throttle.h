// Brute-force defence shared by SMTP and POP3 AUTH: failures are counted per
// client IP in a sliding window; each failure delays the next reply a bit
// more, and past a limit the IP is refused for a while.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace tern::auth {

struct ThrottleConfig {
  uint32_t max_failures = 10;  // per IP within `window`
  std::chrono::seconds window{600};
  std::chrono::seconds lockout{900};  // refused this long after the limit
  std::chrono::milliseconds delay_step{250};  // added per recent failure
  std::chrono::milliseconds max_delay{5000};
};

class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit AuthThrottle(ThrottleConfig config = {});

  // True when the IP is locked out (answer 421 4.7.0 / -ERR [AUTH] and close).
  bool Blocked(const std::string& ip, Clock::time_point now = Clock::now())
      EXCLUDES(mu_);
  // Records a failure; returns how long to wait before answering it.
  std::chrono::milliseconds Failure(const std::string& ip,
                                    Clock::time_point now = Clock::now())
      EXCLUDES(mu_);
  // A success clears the IP's record.
  void Success(const std::string& ip) EXCLUDES(mu_);

  // Number of IPs with a record (tests check that old ones are dropped).
  size_t TrackedForTest() EXCLUDES(mu_);

 private:
  struct Entry {
    uint32_t failures = 0;
    Clock::time_point first{};
    Clock::time_point blocked_until{};
  };
  static constexpr size_t kMinSweep = 1024;
  void SweepLocked(Clock::time_point now) REQUIRES(mu_);

  ThrottleConfig config_;
  Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  // The table size that triggers the next sweep.
  size_t next_sweep_ GUARDED_BY(mu_) = kMinSweep;
};

}  // namespace tern::auth
