// Tests for the trusted networks list: membership over both families and the
// IPv4-mapped form, and entries that ParseCidr refuses trusting nobody.
#include "policy/network.h"

#include <gtest/gtest.h>

namespace tern::policy {
namespace {

TEST(NetworkTest, ParsesAndMatchesV4) {
  NetworkList l({"127.0.0.0/8", "192.0.2.7"});
  EXPECT_TRUE(l.Contains("127.0.0.1"));
  EXPECT_TRUE(l.Contains("127.255.3.4"));
  EXPECT_FALSE(l.Contains("128.0.0.1"));
  EXPECT_TRUE(l.Contains("192.0.2.7"));
  EXPECT_FALSE(l.Contains("192.0.2.8"));
  EXPECT_TRUE(l.Contains("::ffff:127.0.0.1"));  // v4-mapped form
}

TEST(NetworkTest, ParsesAndMatchesV6) {
  NetworkList l({"::1/128", "2001:db8::/32"});
  EXPECT_TRUE(l.Contains("::1"));
  EXPECT_FALSE(l.Contains("::2"));
  EXPECT_TRUE(l.Contains("2001:db8:ffff::1"));
  EXPECT_FALSE(l.Contains("2001:db9::1"));
  EXPECT_FALSE(l.Contains("127.0.0.1"));
}

TEST(NetworkTest, OddPrefixAndErrors) {
  NetworkList l({"10.0.0.0/15"});
  EXPECT_TRUE(l.Contains("10.0.200.1"));
  EXPECT_TRUE(l.Contains("10.1.0.1"));
  EXPECT_FALSE(l.Contains("10.2.0.1"));
  EXPECT_FALSE(l.Contains("not an address"));
  NetworkList empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_FALSE(empty.Contains("127.0.0.1"));
}

// Config refuses these, so they only get here by a caller's mistake; they
// then match nothing. "10.1.0.0/15" has a host bit set: before ParseCidr was
// shared, this list masked it and trusted 10.0.0.0/15.
TEST(NetworkTest, RefusedEntriesTrustNobody) {
  NetworkList l({"10.1.0.0/15", "10.0.0.0/33", "10.0.0/8", "::1/129",
                 "1.2.3.4/x", "fe80::1%eth0", "", "192.0.2.0/24"});
  ASSERT_EQ(l.networks().size(), 1u);
  EXPECT_EQ(l.networks()[0].ToString(), "192.0.2.0/24");
  EXPECT_FALSE(l.Contains("10.1.0.1"));
  EXPECT_FALSE(l.Contains("10.0.200.1"));
  EXPECT_FALSE(l.Contains("::1"));
  EXPECT_FALSE(l.Contains("fe80::1"));
  EXPECT_TRUE(l.Contains("192.0.2.9"));
  EXPECT_TRUE(NetworkList({"0.0.0.0/0"}).Contains("203.0.113.1"));
}

TEST(NetworkTest, LinkLocalClientWithZone) {
  NetworkList l({"fe80::/10"});
  EXPECT_TRUE(l.Contains("fe80::1%eth0"));
  EXPECT_TRUE(l.Contains("fe80::1"));
  EXPECT_FALSE(l.Contains("fec0::1%eth0"));
}

}  // namespace
}  // namespace tern::policy
