// Tests for the RFC 5321 5.1 rule for a host that is itself an MX of the
// destination: its own record and every one not better than it are dropped.
#include <gtest/gtest.h>

#include "delivery/routing.h"

namespace tern::delivery {
namespace {

std::vector<dns::MxRecord> Records() {
  return {{20, "backup.example.test"},
          {10, "mx1.example.test"},
          {20, "us.example.test"},
          {30, "last.example.test"}};
}

TEST(SelfMxTest, NotAmongTheExchangesLeavesAll) {
  auto r = Records();
  EXPECT_FALSE(DropSelfAndWorseMx(r, "elsewhere.test"));
  EXPECT_EQ(r.size(), 4u);
}

TEST(SelfMxTest, KeepsOnlyBetterPreferences) {
  auto r = Records();
  EXPECT_TRUE(DropSelfAndWorseMx(r, "US.example.test."));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].exchange, "mx1.example.test");
}

TEST(SelfMxTest, BestMxLeavesNothing) {
  auto r = Records();
  EXPECT_TRUE(DropSelfAndWorseMx(r, "mx1.example.test"));
  EXPECT_TRUE(r.empty());
}

TEST(SelfMxTest, ListedTwiceTheBetterCounts) {
  std::vector<dns::MxRecord> r = {
      {5, "a.test"}, {10, "me.test"}, {7, "b.test"}, {50, "me.test"}};
  EXPECT_TRUE(DropSelfAndWorseMx(r, "me.test"));
  EXPECT_EQ(r.size(), 2u);
}

TEST(SelfMxTest, SameHostName) {
  EXPECT_TRUE(SameHostName("Mx.Example.TEST.", "mx.example.test"));
  EXPECT_FALSE(SameHostName("mx.example.test", "mx2.example.test"));
  EXPECT_FALSE(SameHostName("", ""));
  EXPECT_FALSE(SameHostName(".", ""));
}

}  // namespace
}  // namespace tern::delivery
