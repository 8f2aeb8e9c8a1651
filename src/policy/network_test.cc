// Tests for CIDR parsing and membership.
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
  NetworkList l({"10.1.0.0/15"});
  EXPECT_TRUE(l.Contains("10.0.200.1"));
  EXPECT_TRUE(l.Contains("10.1.0.1"));
  EXPECT_FALSE(l.Contains("10.2.0.1"));
  EXPECT_FALSE(ParseNetwork("10.0.0.0/33"));
  EXPECT_FALSE(ParseNetwork("10.0.0/8"));
  EXPECT_FALSE(ParseNetwork("::1/129"));
  EXPECT_FALSE(ParseNetwork("1.2.3.4/x"));
  EXPECT_TRUE(ParseNetwork("0.0.0.0/0"));
  NetworkList empty;
  EXPECT_FALSE(empty.Contains("127.0.0.1"));
}

}  // namespace
}  // namespace tern::policy
