// Rate limits: fixed windows, what each limit counts and the refusals.
#include "antispam/rate_limit.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace tern::antispam {
namespace {

constexpr int64_t kDayStart = 1764892800;  // 2025-12-05 00:00:00 UTC

TEST(RateLimitTest, WindowsAreAlignedToTheClock) {
  EXPECT_EQ(SecondsLeft(RateWindow::kMinute, kDayStart + 15), 45);
  EXPECT_EQ(SecondsLeft(RateWindow::kHour, kDayStart + 3599), 1);
  EXPECT_EQ(SecondsLeft(RateWindow::kDay, kDayStart), 86400);
  RateCounters c;
  c.Add("k", RateWindow::kMinute, kDayStart + 10);
  c.Add("k", RateWindow::kMinute, kDayStart + 59, 2);
  EXPECT_EQ(c.Count("k", RateWindow::kMinute, kDayStart + 59), 3u);
  EXPECT_EQ(c.Count("k", RateWindow::kMinute, kDayStart + 60), 0u);  // a new minute
  EXPECT_EQ(c.Count("k", RateWindow::kHour, kDayStart + 59), 0u);    // its own window
  EXPECT_EQ(c.Count("other", RateWindow::kMinute, kDayStart + 59), 0u);
  // Ended windows are dropped (at most once a minute).
  c.Add("late", RateWindow::kMinute, kDayStart + 200);
  EXPECT_EQ(c.size(), 1u);
}

TEST(RateLimitTest, ConnectionsPerClientAddress) {
  RateLimitSettings s;
  s.client_connections_per_minute = 2;
  RateLimiter r;
  EXPECT_EQ(r.Connection(s, "192.0.2.1", kDayStart), "");
  EXPECT_EQ(r.Connection(s, "192.0.2.1", kDayStart + 1), "");
  EXPECT_EQ(r.Connection(s, "192.0.2.1", kDayStart + 20),
            "421 4.7.0 Too many connections from [192.0.2.1] this minute, try again in 40 "
            "seconds");
  EXPECT_EQ(r.Connection(s, "192.0.2.2", kDayStart + 20), "");
  EXPECT_EQ(r.Connection(s, "192.0.2.1", kDayStart + 60), "");
  s.client_connections_per_minute = 0;  // off
  for (int i = 0; i < 10; ++i) EXPECT_EQ(r.Connection(s, "192.0.2.1", kDayStart + 61), "");
}

TEST(RateLimitTest, UserMessagesAndRecipients) {
  RateLimitSettings s;
  s.user_messages_per_hour = 2;
  s.user_messages_per_day = 3;
  s.user_recipients_per_hour = 5;
  RateLimiter r;
  const int64_t t = kDayStart + 600;
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "u@example.test", "", t), "");
  EXPECT_EQ(r.Recipient(s, "u@example.test", 4, t), "");
  EXPECT_EQ(r.Recipient(s, "u@example.test", 5, t),
            "451 4.7.1 Too many recipients from u@example.test this hour (limit 5), try "
            "again in 3000 seconds");
  r.Accepted(s, "192.0.2.1", "u@example.test", "", 3, t);
  r.Accepted(s, "198.51.100.1", "U@Example.TEST", "", 1, t + 1);  // same account
  UserUsage u = r.Usage("u@example.test", t + 2);
  EXPECT_EQ(u.messages_hour, 2u);
  EXPECT_EQ(u.recipients_day, 4u);
  EXPECT_EQ(r.Recipient(s, "u@example.test", 0, t + 2), "");
  EXPECT_NE(r.Recipient(s, "u@example.test", 1, t + 2), "");
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "u@example.test", "", t + 2).rfind(
                "451 4.7.1 Too many messages from u@example.test this hour (limit 2)", 0),
            0u);
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "v@example.test", "", t + 2), "");
  // The next hour allows two more by the hour, but the day has room for one.
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "u@example.test", "", t + 3600), "");
  r.Accepted(s, "192.0.2.1", "u@example.test", "", 1, t + 3600);
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "u@example.test", "", t + 3601).rfind(
                "451 4.7.1 Too many messages from u@example.test this day (limit 3)", 0),
            0u);
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "u@example.test", "", kDayStart + 86400), "");
}

TEST(RateLimitTest, UnauthenticatedByAddressAndSenderDomain) {
  RateLimitSettings s;
  s.client_messages_per_minute = 2;
  s.sender_domain_messages_per_hour = 3;
  RateLimiter r;
  const int64_t t = kDayStart;
  r.Accepted(s, "192.0.2.1", "", "bulk.test", 1, t);
  r.Accepted(s, "192.0.2.1", "", "Bulk.TEST", 1, t);
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "", "other.test", t).rfind(
                "451 4.7.1 Too many messages from [192.0.2.1] this minute (limit 2)", 0),
            0u);
  r.Accepted(s, "192.0.2.2", "", "bulk.test", 1, t);
  EXPECT_EQ(r.Mail(s, "192.0.2.3", "", "bulk.test", t),
            "451 4.7.1 Too many messages from senders at bulk.test this hour (limit 3), "
            "try again in 3600 seconds");
  EXPECT_EQ(r.Mail(s, "192.0.2.3", "", "", t), "");  // <> has no domain
  // Authenticated users are counted as users, not by address or domain.
  EXPECT_EQ(r.Mail(s, "192.0.2.1", "u@example.test", "bulk.test", t), "");
}

TEST(RateLimitTest, ConcurrentCounting) {
  RateLimiter r;
  RateLimitSettings s;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 1000; ++k) r.Accepted(s, "192.0.2.1", "u@example.test", "", 2, kDayStart);
    });
  }
  for (auto& t : threads) t.join();
  UserUsage u = r.Usage("u@example.test", kDayStart);
  EXPECT_EQ(u.messages_day, 4000u);
  EXPECT_EQ(u.recipients_hour, 8000u);
}

}  // namespace
}  // namespace tern::antispam
