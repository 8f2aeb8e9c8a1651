// Rate limits (issue 15): how many connections and messages a client
// address may bring per minute, how many messages and recipients an
// authenticated user may send per hour and per day (a stolen password must
// not become a million messages), and how many messages one MAIL FROM
// domain may bring unauthenticated per hour.
//
// Counters are fixed windows aligned to the clock (this minute, this hour,
// this UTC day): simple to explain in a refusal ("try again in N seconds":
// when the window ends) at the price of allowing up to twice a limit
// across a window's edge. They live in the server process, so they
// survive a SIGHUP but not a restart; the control socket shows them
// (`tern user show`).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "config/config.h"

namespace tern::antispam {

enum class RateWindow : int64_t { kMinute = 60, kHour = 3600, kDay = 86400 };

// "minute", "hour", "day".
std::string_view RateWindowName(RateWindow w);

// Seconds from `now` (since the epoch) to the end of its window.
int64_t SecondsLeft(RateWindow w, int64_t now);

// Counts by key and window. Thread-safe (every io thread counts).
class RateCounters {
 public:
  // The count of `key` in the window that holds `now`.
  uint64_t Count(std::string_view key, RateWindow w, int64_t now) const;
  void Add(std::string_view key, RateWindow w, int64_t now, uint64_t n = 1);
  size_t size() const;

 private:
  struct Entry {
    int64_t start = 0;  // the window's first second
    uint64_t count = 0;
  };
  static std::string Key(std::string_view key, RateWindow w);
  void Prune(int64_t now) REQUIRES(mu_);

  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  int64_t pruned_ GUARDED_BY(mu_) = 0;
};

using RateLimitSettings = config::RateLimitConfig;  // [ratelimit]; 0: off

// An authenticated user's use of the current hour and day.
struct UserUsage {
  uint64_t messages_hour = 0, messages_day = 0;
  uint64_t recipients_hour = 0, recipients_day = 0;
};

// The decisions, each an SMTP refusal line (no CRLF) or "" to go on.
// Clients that neither authenticated nor are trusted are limited by
// address (and, on port 25, by MAIL FROM domain); authenticated users by
// account, wherever they connect from.
class RateLimiter {
 public:
  // A new connection from `ip` (counted): 421 4.7.0 when over the limit.
  std::string Connection(const RateLimitSettings& s, std::string_view ip, int64_t now);
  // MAIL of a message. `user` empty when not authenticated; `domain` the
  // MAIL FROM domain for unauthenticated mail that counts per domain
  // (empty: none). Nothing is counted here.
  std::string Mail(const RateLimitSettings& s, std::string_view ip, std::string_view user,
                   std::string_view domain, int64_t now) const;
  // One more RCPT of an authenticated user's transaction that has
  // `accepted` recipients already.
  std::string Recipient(const RateLimitSettings& s, std::string_view user, size_t accepted,
                        int64_t now) const;
  // A message was accepted: it counts from now. Users are always counted
  // (`tern user show`); addresses and domains only while limited.
  void Accepted(const RateLimitSettings& s, std::string_view ip, std::string_view user,
                std::string_view domain, size_t recipients, int64_t now);
  UserUsage Usage(std::string_view user, int64_t now) const;

 private:
  RateCounters counters_;
};

}  // namespace tern::antispam
