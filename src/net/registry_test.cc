// Tests for connection admission: per-IP and total limits, and the fair
// share that keeps a full server open to clients with few connections
// (found by tests/abuse/abuse.py: a slowloris crowd from a few dozen
// addresses, each under the per-IP limit, locked every user out).
#include "net/registry.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace tern::net {
namespace {

TEST(ConnectionLimiterTest, PerIpAndTotalLimits) {
  ConnectionLimiter l;
  EXPECT_TRUE(l.Acquire("a", 3, 2));
  EXPECT_TRUE(l.Acquire("a", 3, 2));
  EXPECT_FALSE(l.Acquire("a", 3, 2));  // per IP
  EXPECT_TRUE(l.Acquire("b", 3, 2));
  EXPECT_FALSE(l.Acquire("c", 3, 2));  // total, no fair share asked for
  EXPECT_EQ(l.total(), 3u);
  l.Release("a");
  EXPECT_EQ(l.count("a"), 1u);
  EXPECT_TRUE(l.Acquire("c", 3, 2));
  EXPECT_EQ(l.total(), 3u);
}

TEST(ConnectionLimiterTest, FullServerAdmitsALightClientAndNamesTheBusiest) {
  ConnectionLimiter l;
  std::string evict;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(l.Acquire("crowd1", 32, 50, &evict));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(l.Acquire("crowd2", 32, 50, &evict));
  EXPECT_TRUE(evict.empty());
  // Full: the busiest address gets nothing more...
  EXPECT_FALSE(l.Acquire("crowd1", 32, 50, &evict));
  EXPECT_TRUE(evict.empty());
  // ...a newcomer does, and the busiest address is to give one up...
  EXPECT_TRUE(l.Acquire("user", 32, 50, &evict));
  EXPECT_EQ(evict, "crowd1");
  // ...and so does any address well below the busiest one.
  evict.clear();
  EXPECT_TRUE(l.Acquire("crowd2", 32, 50, &evict));
  EXPECT_EQ(evict, "crowd1");
  EXPECT_EQ(l.total(), 34u);
  // The overshoot is spent until evicted connections are released.
  EXPECT_FALSE(l.Acquire("other", 32, 50, &evict));
  l.Release("crowd1");
  l.Release("crowd1");
  evict.clear();
  EXPECT_TRUE(l.Acquire("other", 32, 50, &evict));
  EXPECT_EQ(evict, "crowd1");
}

TEST(ConnectionLimiterTest, FairShareStopsAtEqualSharesAndAtTheOvershoot) {
  ConnectionLimiter l;
  std::string evict;
  // Two addresses with one connection each fill a server of two: nobody
  // holds more than a newcomer's share plus one, so nothing is evicted.
  ASSERT_TRUE(l.Acquire("a", 2, 50, &evict));
  ASSERT_TRUE(l.Acquire("b", 2, 50, &evict));
  EXPECT_FALSE(l.Acquire("c", 2, 50, &evict));
  // The overshoot while evictions are pending is bounded (1/16, at least 1).
  ConnectionLimiter m;
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(m.Acquire("crowd", 32, 50, &evict));
  int extra = 0;
  for (int i = 0; i < 10; ++i) {
    evict.clear();
    if (m.Acquire("user" + std::to_string(i), 32, 50, &evict)) ++extra;
  }
  EXPECT_EQ(extra, 2);
  EXPECT_EQ(m.total(), 34u);
}

class FakeConnection : public Stoppable {
 public:
  void RequestShutdown(bool force) override {
    ++requests;
    forced = force;
  }
  int requests = 0;
  bool forced = false;
};

TEST(RegistryTest, AdmitAsksTheBusiestAddressesOldestConnectionToClose) {
  Registry registry;
  ConnectionLimiter limiter;
  std::vector<std::shared_ptr<FakeConnection>> conns;
  auto add = [&](const std::string& ip) {
    if (!registry.Admit(limiter, ip, 4, 50)) return false;
    conns.push_back(std::make_shared<FakeConnection>());
    registry.Register(conns.back(), ip, &limiter);
    return true;
  };
  ASSERT_TRUE(add("10.0.0.1"));
  ASSERT_TRUE(add("10.0.0.2"));
  ASSERT_TRUE(add("10.0.0.2"));
  ASSERT_TRUE(add("10.0.0.2"));
  EXPECT_FALSE(add("10.0.0.2"));
  EXPECT_TRUE(add("192.0.2.7"));
  // The oldest of 10.0.0.2's connections, gently (a transaction finishes).
  EXPECT_EQ(conns[1]->requests, 1);
  EXPECT_FALSE(conns[1]->forced);
  EXPECT_EQ(conns[0]->requests + conns[2]->requests + conns[3]->requests, 0);
  // Once it has gone, a second newcomer evicts the next one, not the same
  // one again.
  limiter.Release("10.0.0.2");
  EXPECT_TRUE(add("192.0.2.8"));
  EXPECT_EQ(conns[2]->requests, 1);
  EXPECT_EQ(conns[1]->requests, 1);
}

// On a slow machine evicted connections take a while to close: those
// already asked to go do not use up the overshoot, so a fair client is not
// refused while they leave; once nothing is left to evict, the overshoot
// bounds the total again.
TEST(RegistryTest, PendingEvictionsDoNotCountAgainstTheOvershoot) {
  Registry registry;
  ConnectionLimiter limiter;
  std::vector<std::shared_ptr<FakeConnection>> conns;
  std::vector<uint64_t> keys;
  auto add = [&](const std::string& ip) {
    if (!registry.Admit(limiter, ip, 16, 50)) return false;
    conns.push_back(std::make_shared<FakeConnection>());
    keys.push_back(registry.Register(conns.back(), ip, &limiter));
    return true;
  };
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(add("crowd"));
  // Sixteen newcomers, each evicting one crowd connection that lingers.
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(add("user" + std::to_string(i))) << i;
  for (int i = 0; i < 16; ++i) EXPECT_EQ(conns[i]->requests, 1) << i;
  EXPECT_EQ(limiter.total(), 32u);
  // Nothing left to ask: one more within the overshoot (1/16), then no.
  EXPECT_TRUE(add("late1"));
  EXPECT_FALSE(add("late2"));
  // The evicted connections leave; the count of pending ones goes with
  // them, and the server is under its limit again.
  for (int i = 0; i < 16; ++i) registry.Unregister(keys[i]);
  EXPECT_EQ(limiter.total(), 17u);
  EXPECT_EQ(limiter.count("crowd"), 0u);
}

// Limits are per protocol: a crowd on one limiter neither fills nor evicts
// from another, and a connection's end gives its own slot back.
TEST(RegistryTest, LimitersAreSeparateAndUnregisterReleases) {
  Registry registry;
  ConnectionLimiter smtp, pop3;
  auto a = std::make_shared<FakeConnection>();
  auto b = std::make_shared<FakeConnection>();
  ASSERT_TRUE(registry.Admit(smtp, "10.0.0.1", 1, 50));
  uint64_t ka = registry.Register(a, "10.0.0.1", &smtp);
  EXPECT_FALSE(registry.Admit(smtp, "10.0.0.1", 1, 50));
  ASSERT_TRUE(registry.Admit(pop3, "10.0.0.1", 1, 50));
  uint64_t kb = registry.Register(b, "10.0.0.1", &pop3);
  EXPECT_EQ(registry.live(), 2u);
  registry.Unregister(ka);
  EXPECT_EQ(smtp.total(), 0u);
  EXPECT_EQ(pop3.total(), 1u);
  EXPECT_TRUE(registry.Admit(smtp, "10.0.0.1", 1, 50));
  registry.Unregister(kb);
  EXPECT_EQ(pop3.total(), 0u);
  registry.ShutdownAll(true);
  EXPECT_TRUE(registry.stopping());
  EXPECT_EQ(a->requests + b->requests, 0);  // both gone already
}

}  // namespace
}  // namespace tern::net
