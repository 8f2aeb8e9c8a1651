// Tests for the AUTH failure throttle, with injected time points so every
// window and lockout boundary is exact.
#include "auth/throttle.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = AuthThrottle::Clock;

ThrottleConfig TestConfig() {
  ThrottleConfig config;
  config.max_failures = 3;
  config.window = seconds(60);
  config.lockout = seconds(300);
  config.delay_step = milliseconds(100);
  config.max_delay = milliseconds(250);
  return config;
}

const Clock::time_point kStart = Clock::time_point() + seconds(100000);

TEST(AuthThrottleTest, FailuresGrowTheDelayUpToTheCap) {
  ThrottleConfig config = TestConfig();
  config.max_failures = 100;
  AuthThrottle throttle(config);
  EXPECT_EQ(throttle.Failure("192.0.2.1", kStart), milliseconds(100));
  EXPECT_EQ(throttle.Failure("192.0.2.1", kStart + seconds(1)),
            milliseconds(200));
  EXPECT_EQ(throttle.Failure("192.0.2.1", kStart + seconds(2)),
            milliseconds(250));
  EXPECT_EQ(throttle.Failure("192.0.2.1", kStart + seconds(3)),
            milliseconds(250));
  EXPECT_FALSE(throttle.Blocked("192.0.2.1", kStart + seconds(3)));
}

TEST(AuthThrottleTest, LockoutAfterMaxFailuresWithinWindow) {
  AuthThrottle throttle(TestConfig());
  const std::string ip = "192.0.2.7";
  EXPECT_FALSE(throttle.Blocked(ip, kStart));
  throttle.Failure(ip, kStart);
  throttle.Failure(ip, kStart + seconds(10));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(10)));
  throttle.Failure(ip, kStart + seconds(20));
  EXPECT_TRUE(throttle.Blocked(ip, kStart + seconds(20)));
  // The lockout outlasts the window it started in.
  EXPECT_TRUE(throttle.Blocked(ip, kStart + seconds(319)));
  // More failures during the lockout do not extend it.
  throttle.Failure(ip, kStart + seconds(200));
  EXPECT_TRUE(throttle.Blocked(ip, kStart + seconds(319)));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(320)));
  // After the lockout the count starts over.
  EXPECT_EQ(throttle.Failure(ip, kStart + seconds(321)), milliseconds(100));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(321)));
}

TEST(AuthThrottleTest, WindowExpiryForgetsOldFailures) {
  AuthThrottle throttle(TestConfig());
  const std::string ip = "2001:db8::1";
  throttle.Failure(ip, kStart);
  throttle.Failure(ip, kStart + seconds(59));
  // The window (60 s from the first failure) has passed: a fresh count.
  EXPECT_EQ(throttle.Failure(ip, kStart + seconds(60)), milliseconds(100));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(60)));
  throttle.Failure(ip, kStart + seconds(61));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(61)));
  throttle.Failure(ip, kStart + seconds(62));
  EXPECT_TRUE(throttle.Blocked(ip, kStart + seconds(62)));
}

TEST(AuthThrottleTest, SuccessResets) {
  AuthThrottle throttle(TestConfig());
  const std::string ip = "192.0.2.9";
  throttle.Failure(ip, kStart);
  throttle.Failure(ip, kStart + seconds(1));
  throttle.Success(ip);
  EXPECT_EQ(throttle.Failure(ip, kStart + seconds(2)), milliseconds(100));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(2)));
  throttle.Failure(ip, kStart + seconds(3));
  EXPECT_FALSE(throttle.Blocked(ip, kStart + seconds(3)));
}

TEST(AuthThrottleTest, OtherIpsUnaffected) {
  AuthThrottle throttle(TestConfig());
  for (int i = 0; i < 3; ++i) throttle.Failure("192.0.2.1", kStart);
  EXPECT_TRUE(throttle.Blocked("192.0.2.1", kStart));
  EXPECT_FALSE(throttle.Blocked("192.0.2.2", kStart));
  EXPECT_EQ(throttle.Failure("192.0.2.2", kStart), milliseconds(100));
  throttle.Success("192.0.2.2");
  EXPECT_TRUE(throttle.Blocked("192.0.2.1", kStart));
}

TEST(AuthThrottleTest, StaleEntriesAreDropped) {
  auto ip = [](int prefix, int i) {
    return "10." + std::to_string(prefix) + "." + std::to_string(i / 256) +
           "." + std::to_string(i % 256);
  };
  // Sweeps run when the table reaches 1024, 2048, ... entries.
  AuthThrottle throttle(TestConfig());
  for (int i = 0; i < 2048; ++i) throttle.Failure(ip(0, i), kStart);
  EXPECT_EQ(throttle.TrackedForTest(), 2048u);
  throttle.Failure("192.0.2.1", kStart + seconds(61));
  EXPECT_EQ(throttle.TrackedForTest(), 1u);

  // A locked-out IP is kept while its lockout runs, however old its window.
  AuthThrottle locked(TestConfig());
  for (int i = 0; i < 3; ++i) locked.Failure("192.0.2.66", kStart);
  for (int i = 0; i < 2047; ++i) locked.Failure(ip(1, i), kStart);
  locked.Failure("192.0.2.1", kStart + seconds(100));
  EXPECT_EQ(locked.TrackedForTest(), 2u);
  EXPECT_TRUE(locked.Blocked("192.0.2.66", kStart + seconds(100)));
}

TEST(AuthThrottleTest, DefaultTimeArgumentsWork) {
  AuthThrottle throttle;
  EXPECT_FALSE(throttle.Blocked("192.0.2.1"));
  EXPECT_EQ(throttle.Failure("192.0.2.1"), milliseconds(250));
  EXPECT_FALSE(throttle.Blocked("192.0.2.1"));
}

}  // namespace
}  // namespace tern::auth
