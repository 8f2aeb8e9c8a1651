#include "antispam/rate_limit.h"

#include <string>

#include "common/strings.h"

namespace tern::antispam {
namespace {

int64_t WindowStart(RateWindow w, int64_t now) {
  int64_t len = static_cast<int64_t>(w);
  int64_t r = now % len;
  if (r < 0) r += len;
  return now - r;
}

// RFC 3463 4.7.1 (delivery not authorized, for now); RFC 5321 4.2.5: a
// 4xx at MAIL or RCPT makes a real client keep the message and retry.
std::string Later(std::string_view what, RateWindow w, uint32_t limit, int64_t now) {
  return "451 4.7.1 Too many " + std::string(what) + " this " +
         std::string(RateWindowName(w)) + " (limit " + std::to_string(limit) +
         "), try again in " + std::to_string(SecondsLeft(w, now)) + " seconds";
}

}  // namespace

std::string_view RateWindowName(RateWindow w) {
  switch (w) {
    case RateWindow::kMinute: return "minute";
    case RateWindow::kHour: return "hour";
    case RateWindow::kDay: return "day";
  }
  return "window";
}

int64_t SecondsLeft(RateWindow w, int64_t now) {
  return WindowStart(w, now) + static_cast<int64_t>(w) - now;
}

std::string RateCounters::Key(std::string_view key, RateWindow w) {
  std::string k(key);
  k += '\0';
  k += std::to_string(static_cast<int64_t>(w));
  return k;
}

uint64_t RateCounters::Count(std::string_view key, RateWindow w, int64_t now) const {
  MutexLock lock(mu_);
  auto it = entries_.find(Key(key, w));
  if (it == entries_.end() || it->second.start != WindowStart(w, now)) return 0;
  return it->second.count;
}

void RateCounters::Add(std::string_view key, RateWindow w, int64_t now, uint64_t n) {
  MutexLock lock(mu_);
  Entry& e = entries_[Key(key, w)];
  int64_t start = WindowStart(w, now);
  if (e.start != start) e = Entry{start, 0};
  e.count += n;
  Prune(now);
}

size_t RateCounters::size() const {
  MutexLock lock(mu_);
  return entries_.size();
}

// Once a minute, entries of windows that have ended go: the map holds
// about one entry per client and window seen lately, not every address
// ever seen.
void RateCounters::Prune(int64_t now) {
  if (now - pruned_ < 60) return;
  pruned_ = now;
  for (auto it = entries_.begin(); it != entries_.end();) {
    size_t nul = it->first.rfind('\0');
    auto len = static_cast<int64_t>(std::stoll(it->first.substr(nul + 1)));
    if (it->second.start + len <= now) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

std::string RateLimiter::Connection(const RateLimitSettings& s, std::string_view ip,
                                    int64_t now) {
  if (s.client_connections_per_minute == 0) return "";
  std::string key = "conn:" + std::string(ip);
  if (counters_.Count(key, RateWindow::kMinute, now) >= s.client_connections_per_minute) {
    // RFC 5321 3.1: 421 in place of the greeting, then the close.
    return "421 4.7.0 Too many connections from [" + std::string(ip) +
           "] this minute, try again in " +
           std::to_string(SecondsLeft(RateWindow::kMinute, now)) + " seconds";
  }
  counters_.Add(key, RateWindow::kMinute, now);
  return "";
}

std::string RateLimiter::Mail(const RateLimitSettings& s, std::string_view ip,
                              std::string_view user, std::string_view domain,
                              int64_t now) const {
  if (!user.empty()) {
    std::string key = "user-msg:" + ToLower(user);
    for (auto [w, limit] : {std::pair{RateWindow::kHour, s.user_messages_per_hour},
                            std::pair{RateWindow::kDay, s.user_messages_per_day}}) {
      if (limit != 0 && counters_.Count(key, w, now) >= limit) {
        return Later("messages from " + std::string(user), w, limit, now);
      }
    }
    return "";
  }
  if (s.client_messages_per_minute != 0 &&
      counters_.Count("msg:" + std::string(ip), RateWindow::kMinute, now) >=
          s.client_messages_per_minute) {
    return Later("messages from [" + std::string(ip) + "]", RateWindow::kMinute,
                 s.client_messages_per_minute, now);
  }
  if (!domain.empty() && s.sender_domain_messages_per_hour != 0 &&
      counters_.Count("domain:" + ToLower(domain), RateWindow::kHour, now) >=
          s.sender_domain_messages_per_hour) {
    return Later("messages from senders at " + ToLower(domain), RateWindow::kHour,
                 s.sender_domain_messages_per_hour, now);
  }
  return "";
}

std::string RateLimiter::Recipient(const RateLimitSettings& s, std::string_view user,
                                   size_t accepted, int64_t now) const {
  if (user.empty()) return "";
  std::string key = "user-rcpt:" + ToLower(user);
  for (auto [w, limit] : {std::pair{RateWindow::kHour, s.user_recipients_per_hour},
                          std::pair{RateWindow::kDay, s.user_recipients_per_day}}) {
    if (limit != 0 && counters_.Count(key, w, now) + accepted >= limit) {
      return Later("recipients from " + std::string(user), w, limit, now);
    }
  }
  return "";
}

void RateLimiter::Accepted(const RateLimitSettings& s, std::string_view ip,
                           std::string_view user, std::string_view domain, size_t recipients,
                           int64_t now) {
  if (!user.empty()) {
    for (RateWindow w : {RateWindow::kHour, RateWindow::kDay}) {
      counters_.Add("user-msg:" + ToLower(user), w, now);
      counters_.Add("user-rcpt:" + ToLower(user), w, now, recipients);
    }
    return;
  }
  if (s.client_messages_per_minute != 0) {
    counters_.Add("msg:" + std::string(ip), RateWindow::kMinute, now);
  }
  if (!domain.empty() && s.sender_domain_messages_per_hour != 0) {
    counters_.Add("domain:" + ToLower(domain), RateWindow::kHour, now);
  }
}

UserUsage RateLimiter::Usage(std::string_view user, int64_t now) const {
  UserUsage u;
  std::string msg = "user-msg:" + ToLower(user), rcpt = "user-rcpt:" + ToLower(user);
  u.messages_hour = counters_.Count(msg, RateWindow::kHour, now);
  u.messages_day = counters_.Count(msg, RateWindow::kDay, now);
  u.recipients_hour = counters_.Count(rcpt, RateWindow::kHour, now);
  u.recipients_day = counters_.Count(rcpt, RateWindow::kDay, now);
  return u;
}

}  // namespace tern::antispam
