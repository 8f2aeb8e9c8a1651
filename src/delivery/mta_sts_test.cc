// Tests for the pure MTA-STS parts (RFC 8461): TXT record, policy file,
// MX patterns, cache file and the cache rules.
#include "delivery/mta_sts.h"

#include <gtest/gtest.h>
#include <openssl/x509_vfy.h>

#include <string>
#include <vector>

#include "delivery/mta_sts_fetch.h"

namespace tern::delivery::sts {
namespace {

std::string IdOf(const std::vector<std::string>& records) {
  auto r = ParseTxt(records);
  return r ? *r : "ERROR: " + r.error().message;
}

TEST(MtaStsTxt, ParsesTheIdOfTheOneRecord) {
  EXPECT_EQ(IdOf({"v=STSv1; id=20160831085700Z;"}), "20160831085700Z");
  EXPECT_EQ(IdOf({"v=STSv1; id=abc"}), "abc");
  EXPECT_EQ(IdOf({"v=STSv1;id=abc;"}), "abc");
  EXPECT_EQ(IdOf({"v=STSv1 ;\tid=abc ; ext=value-1"}), "abc");
  // Other TXT records at the name are discarded before counting (3.1).
  EXPECT_EQ(IdOf({"something else", "v=STSv1; id=x1", "v=spf1 -all"}), "x1");
}

TEST(MtaStsTxt, RefusesWhatIsNotExactlyOneValidRecord) {
  EXPECT_FALSE(ParseTxt({}));
  EXPECT_FALSE(ParseTxt({"v=spf1 -all"}));
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=a", "v=STSv1; id=b"}));
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=a", "v=STSv1; id=a"}));
  EXPECT_FALSE(ParseTxt({"v=STSv1;"}));                 // no id
  EXPECT_FALSE(ParseTxt({"v=STSv1; id="}));             // empty id
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=a-b"}));          // id is ALPHA / DIGIT
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=" + std::string(33, 'a')}));
  EXPECT_TRUE(ParseTxt({"v=STSv1; id=" + std::string(32, 'a')}));
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=a; id=b"}));
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=a;; x=y"}));
  EXPECT_FALSE(ParseTxt({"v=STSv1; id=a; bad"}));
  EXPECT_FALSE(ParseTxt({"v=STSv10; id=a"}));
  EXPECT_FALSE(ParseTxt({"V=STSv1; id=a"}));
  EXPECT_FALSE(ParseTxt({" v=STSv1; id=a"}));
}

TEST(MtaStsPolicy, ParsesTheRfcExample) {
  auto p = ParsePolicy(
      "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
      "mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->mode, Mode::kEnforce);
  EXPECT_EQ(p->max_age, 604800u);
  std::vector<std::string> want = {"mail.example.com", "*.example.net",
                                   "backupmx.example.com"};
  EXPECT_EQ(p->mx, want);
}

TEST(MtaStsPolicy, LfLinesUnknownKeysAndSpaces) {
  auto p = ParsePolicy(
      "version:STSv1\nmode :  testing \nfuture_key: whatever it is\n"
      "mx: MX1.Example.COM.\nmax_age: 86400");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->mode, Mode::kTesting);
  ASSERT_EQ(p->mx.size(), 1u);
  EXPECT_EQ(p->mx[0], "mx1.example.com");
  EXPECT_EQ(p->max_age, 86400u);
}

TEST(MtaStsPolicy, ModeNoneNeedsNoMx) {
  auto p = ParsePolicy("version: STSv1\nmode: none\nmax_age: 100\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->mode, Mode::kNone);
}

TEST(MtaStsPolicy, MaxAgeIsCapped) {
  auto p = ParsePolicy("version: STSv1\nmode: none\nmax_age: 9999999999\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->max_age, kMaxAge);
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: none\nmax_age: 12345678901\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: none\nmax_age: -1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: none\nmax_age: 1h\n"));
}

TEST(MtaStsPolicy, RefusesBrokenPolicies) {
  const std::string mx = "mx: mx.example.com\n";
  EXPECT_FALSE(ParsePolicy("mode: enforce\n" + mx + "max_age: 1\n"));  // no version
  EXPECT_FALSE(ParsePolicy("version: STSv2\nmode: enforce\n" + mx + "max_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\n" + mx + "max_age: 1\n"));  // no mode
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: strict\n" + mx + "max_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\n" + mx));  // no max_age
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\nmax_age: 1\n"));  // no mx
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: testing\nmax_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\nmx: a*.b\nmax_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\nmx: -a.b\nmax_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("version: STSv1\nmode: enforce\njunk line\n" + mx + "max_age: 1\n"));
  EXPECT_FALSE(ParsePolicy("<html>not a policy</html>"));
  EXPECT_FALSE(ParsePolicy(""));
  // The size limit.
  std::string big = "version: STSv1\nmode: none\nmax_age: 1\n";
  while (big.size() <= kMaxPolicyBytes) big += "x-padding: 0123456789abcdef\n";
  EXPECT_FALSE(ParsePolicy(big));
}

TEST(MtaStsPolicy, FirstOfARepeatedKeyCounts) {
  auto p = ParsePolicy(
      "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\nmax_age: 9\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->mode, Mode::kTesting);
  EXPECT_EQ(p->max_age, 5u);
}

TEST(MtaStsPolicy, FormatRoundTrips) {
  auto p = ParsePolicy("version: STSv1\nmode: enforce\nmx: *.a.example\nmx: b.example\nmax_age: 77\n");
  ASSERT_TRUE(p);
  auto again = ParsePolicy(FormatPolicy(*p));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *p);
}

TEST(MtaStsMx, ExactAndWildcardPatterns) {
  EXPECT_TRUE(MxMatches("mail.example.com", "mail.example.com"));
  EXPECT_TRUE(MxMatches("mail.example.com", "MAIL.Example.com."));
  EXPECT_FALSE(MxMatches("mail.example.com", "mail2.example.com"));
  EXPECT_FALSE(MxMatches("mail.example.com", "example.com"));
  // RFC 8461 4.1: the wildcard covers the leftmost label only.
  EXPECT_TRUE(MxMatches("*.example.com", "mx1.example.com"));
  EXPECT_TRUE(MxMatches("*.example.com", "MX1.EXAMPLE.COM"));
  EXPECT_FALSE(MxMatches("*.example.com", "a.b.example.com"));
  EXPECT_FALSE(MxMatches("*.example.com", "example.com"));
  EXPECT_FALSE(MxMatches("*.example.com", ".example.com"));
  EXPECT_FALSE(MxMatches("*.example.com", "mx1.badexample.com"));
  EXPECT_FALSE(MxMatches("*.example.com", "mx1example.com"));
  EXPECT_FALSE(MxMatches("", "example.com"));
  Policy p;
  p.mx = {"a.example", "*.b.example"};
  EXPECT_TRUE(MxAllowed(p, "a.example"));
  EXPECT_TRUE(MxAllowed(p, "x.b.example"));
  EXPECT_FALSE(MxAllowed(p, "b.example"));
}

TEST(MtaStsCache, FileRoundTrips) {
  Cached c;
  c.id = "v42";
  c.fetched = 1700000000;
  c.policy.mode = Mode::kEnforce;
  c.policy.mx = {"mx.example.org", "*.example.net"};
  c.policy.max_age = 86400;
  auto back = ParseCached(FormatCached(c));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, c);
  EXPECT_FALSE(ParseCached("id: v42\n\nversion: STSv1\n"));
  EXPECT_FALSE(ParseCached("id: bad id\nfetched: 1\n\n" + FormatPolicy(c.policy)));
  EXPECT_FALSE(ParseCached("garbage"));
}

class MtaStsDecide : public ::testing::Test {
 protected:
  MtaStsDecide() {
    cached.id = "one";
    cached.fetched = 1000;
    cached.policy.mode = Mode::kEnforce;
    cached.policy.mx = {"mx.example"};
    cached.policy.max_age = 500;
  }
  static TxtResult Txt(const char* id) {
    TxtResult t;
    if (id) t.id = id;
    return t;
  }
  Cached cached;
  static constexpr int64_t kRefresh = 86400;
};

TEST_F(MtaStsDecide, NoCacheFetchesWhenThereIsARecord) {
  EXPECT_EQ(Decide(nullptr, Txt("one"), 1000, kRefresh), Action::kFetch);
  EXPECT_EQ(Decide(nullptr, Txt(nullptr), 1000, kRefresh), Action::kNoPolicy);
  TxtResult temp;
  temp.temp_failure = true;
  EXPECT_EQ(Decide(nullptr, temp, 1000, kRefresh), Action::kNoPolicy);
}

TEST_F(MtaStsDecide, SameIdUsesTheCacheUntilMaxAge) {
  EXPECT_EQ(Decide(&cached, Txt("one"), 1000, kRefresh), Action::kUseCached);
  EXPECT_EQ(Decide(&cached, Txt("one"), 1499, kRefresh), Action::kUseCached);
  // Expired at fetched + max_age: fetched again.
  EXPECT_EQ(Decide(&cached, Txt("one"), 1500, kRefresh), Action::kFetch);
  EXPECT_EQ(Decide(&cached, Txt(nullptr), 1500, kRefresh), Action::kNoPolicy);
}

TEST_F(MtaStsDecide, NewIdFetches) {
  EXPECT_EQ(Decide(&cached, Txt("two"), 1001, kRefresh), Action::kFetch);
}

TEST_F(MtaStsDecide, MissingRecordKeepsTheUnexpiredPolicy) {
  EXPECT_EQ(Decide(&cached, Txt(nullptr), 1200, kRefresh), Action::kUseCached);
  TxtResult temp;
  temp.temp_failure = true;
  EXPECT_EQ(Decide(&cached, temp, 1200, kRefresh), Action::kUseCached);
}

TEST_F(MtaStsDecide, RefreshesBeforeExpiry) {
  EXPECT_EQ(Decide(&cached, Txt("one"), 1100, 100), Action::kFetch);
  EXPECT_EQ(Decide(&cached, Txt("one"), 1099, 100), Action::kUseCached);
}

TEST_F(MtaStsDecide, ModeNoneIsAPolicyToo) {
  // A cached "none" policy is used like any other: it stands until it
  // expires or the id changes (RFC 8461 10.2 retires a policy that way).
  cached.policy.mode = Mode::kNone;
  EXPECT_EQ(Decide(&cached, Txt("one"), 1200, kRefresh), Action::kUseCached);
}

TEST(MtaStsDomain, SafeNames) {
  EXPECT_TRUE(SafeDomain("example.com"));
  EXPECT_TRUE(SafeDomain("a-b.example"));
  EXPECT_FALSE(SafeDomain(""));
  EXPECT_FALSE(SafeDomain("../etc"));
  EXPECT_FALSE(SafeDomain("a/b"));
  EXPECT_FALSE(SafeDomain("[127.0.0.1]"));
  EXPECT_FALSE(SafeDomain(".example"));
}

TEST(MtaStsHosts, EnforceDropsUnlistedHostsTestingKeepsThem) {
  Cached c;
  c.policy.mx = {"mx1.example", "*.pool.example"};
  c.policy.max_age = 100;
  const std::vector<std::string> all = {"rogue.example", "mx1.example",
                                        "a.pool.example", "a.b.pool.example"};
  c.policy.mode = Mode::kEnforce;
  std::vector<std::string> hosts = all;
  HostRule r = ApplyToHosts(&c, "example", &hosts);
  EXPECT_EQ(r.label, "mta-sts enforce");
  EXPECT_TRUE(r.tls_required);
  std::vector<std::string> want = {"mx1.example", "a.pool.example"};
  EXPECT_EQ(hosts, want);

  c.policy.mode = Mode::kTesting;
  hosts = all;
  r = ApplyToHosts(&c, "example", &hosts);
  EXPECT_EQ(r.label, "mta-sts testing");
  EXPECT_FALSE(r.tls_required);
  EXPECT_EQ(hosts, all);

  c.policy.mode = Mode::kNone;
  hosts = all;
  r = ApplyToHosts(&c, "example", &hosts);
  EXPECT_EQ(r.label, "");
  EXPECT_FALSE(r.tls_required);
  EXPECT_EQ(hosts, all);

  hosts = all;
  r = ApplyToHosts(nullptr, "example", &hosts);
  EXPECT_EQ(r.label, "");
  EXPECT_EQ(hosts, all);
}

TEST(MtaStsHosts, FailureTypesAreRfc8460Names) {
  EXPECT_STREQ(FailureType(-1), "starttls-not-supported");
  EXPECT_STREQ(FailureType(X509_V_ERR_HOSTNAME_MISMATCH), "certificate-host-mismatch");
  EXPECT_STREQ(FailureType(X509_V_ERR_CERT_HAS_EXPIRED), "certificate-expired");
  EXPECT_STREQ(FailureType(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT),
               "certificate-not-trusted");
  EXPECT_STREQ(FailureType(X509_V_ERR_CERT_REVOKED), "validation-failure");
}

}  // namespace
}  // namespace tern::delivery::sts
