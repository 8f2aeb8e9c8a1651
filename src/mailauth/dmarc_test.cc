// Unit tests of DMARC (RFC 7489): record parsing, organizational domains
// from the Public Suffix List, alignment, policy discovery through a fake
// resolver, the verdict with p/sp/pct, and the From domain of a header.
#include "mailauth/dmarc.h"

#include <gtest/gtest.h>

#include <asio.hpp>

#include "dns/fake_resolver.h"

namespace tern::mailauth {
namespace {

// ---------------------------------------------------------------- records

TEST(DmarcRecordTest, MinimalRecordGetsTheDefaults) {
  auto r = ParseDmarcRecord("v=DMARC1; p=reject");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->has_policy);
  EXPECT_FALSE(r->policy_from_rua_fallback);
  EXPECT_EQ(r->p, DmarcPolicy::kReject);
  EXPECT_FALSE(r->sp);
  // RFC 7489 6.3 defaults.
  EXPECT_EQ(r->pct, 100);
  EXPECT_EQ(r->adkim, Alignment::kRelaxed);
  EXPECT_EQ(r->aspf, Alignment::kRelaxed);
  EXPECT_TRUE(r->rua.empty());
  EXPECT_TRUE(r->fo.all_failed);
  EXPECT_FALSE(r->fo.any_failed);
  EXPECT_EQ(r->rf, std::vector<std::string>{"afrf"});
  EXPECT_EQ(r->ri, 86400u);
  EXPECT_TRUE(r->problems.empty());
}

TEST(DmarcRecordTest, EveryTag) {
  auto r = ParseDmarcRecord(
      "v=DMARC1; p=quarantine; sp=reject; pct=25; adkim=s; aspf=s; "
      "rua=mailto:agg@example.com!10m, mailto:dmarc@example.net; "
      "ruf=mailto:f@example.com; fo=1:d:s; rf=afrf; ri=3600;");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->has_policy);
  EXPECT_EQ(r->p, DmarcPolicy::kQuarantine);
  EXPECT_EQ(r->sp, DmarcPolicy::kReject);
  EXPECT_EQ(r->pct, 25);
  EXPECT_EQ(r->adkim, Alignment::kStrict);
  EXPECT_EQ(r->aspf, Alignment::kStrict);
  ASSERT_EQ(r->rua.size(), 2u);
  EXPECT_EQ(r->rua[0].uri, "mailto:agg@example.com");
  EXPECT_EQ(r->rua[0].max_size, 10u * 1024 * 1024);
  EXPECT_EQ(r->rua[1].uri, "mailto:dmarc@example.net");
  EXPECT_EQ(r->rua[1].max_size, 0u);
  ASSERT_EQ(r->ruf.size(), 1u);
  EXPECT_FALSE(r->fo.all_failed);
  EXPECT_TRUE(r->fo.any_failed);
  EXPECT_TRUE(r->fo.dkim);
  EXPECT_TRUE(r->fo.spf);
  EXPECT_EQ(r->ri, 3600u);
  EXPECT_TRUE(r->problems.empty());
}

TEST(DmarcRecordTest, WhitespaceAroundSeparatorsAndCase) {
  // 6.4: *WSP around "=", ";" and list separators; quoted ABNF strings
  // (tag names, policy words) match in any case.
  auto r = ParseDmarcRecord("v = DMARC1 ;\tP = Reject ; ADKIM=S ; fo = 0 : 1 ;");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->p, DmarcPolicy::kReject);
  EXPECT_EQ(r->adkim, Alignment::kStrict);
  EXPECT_TRUE(r->fo.all_failed);
  EXPECT_TRUE(r->fo.any_failed);
}

TEST(DmarcRecordTest, NotDmarcRecords) {
  // 6.3 "v": first, exactly "DMARC1"; otherwise the record is ignored.
  EXPECT_FALSE(ParseDmarcRecord(""));
  EXPECT_FALSE(ParseDmarcRecord("v=spf1 -all"));
  EXPECT_FALSE(ParseDmarcRecord("p=reject; v=DMARC1"));
  EXPECT_FALSE(ParseDmarcRecord("v=DMARC2; p=reject"));
  EXPECT_FALSE(ParseDmarcRecord("v=dmarc1; p=reject"));  // %x: case counts
  EXPECT_FALSE(ParseDmarcRecord("v=DMARC1 p=reject"));   // no separator
  EXPECT_FALSE(ParseDmarcRecord("v=DMARC10; p=reject"));
  EXPECT_FALSE(ParseDmarcRecord("DMARC1; p=reject"));
  EXPECT_TRUE(ParseDmarcRecord("v=DMARC1"));  // DMARC, but without policy
}

TEST(DmarcRecordTest, MissingOrInvalidPolicy) {
  auto none = ParseDmarcRecord("v=DMARC1; pct=50");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_policy);

  auto bad = ParseDmarcRecord("v=DMARC1; p=block");
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->has_policy);
  EXPECT_FALSE(bad->problems.empty());

  // 6.6.3 step 6: an invalid sp spoils the record too.
  auto bad_sp = ParseDmarcRecord("v=DMARC1; p=reject; sp=maybe");
  ASSERT_TRUE(bad_sp);
  EXPECT_FALSE(bad_sp->has_policy);
}

TEST(DmarcRecordTest, RuaFallbackToPNone) {
  // 6.6.3 step 6.1: no valid p but a valid rua reads as p=none.
  for (const char* txt : {"v=DMARC1; rua=mailto:d@example.com",
                          "v=DMARC1; p=bogus; rua=mailto:d@example.com",
                          "v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.com"}) {
    SCOPED_TRACE(txt);
    auto r = ParseDmarcRecord(txt);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->has_policy);
    EXPECT_TRUE(r->policy_from_rua_fallback);
    EXPECT_EQ(r->p, DmarcPolicy::kNone);
    EXPECT_FALSE(r->sp);
  }
  // Only an invalid rua: nothing to fall back on.
  auto r = ParseDmarcRecord("v=DMARC1; rua=not a uri");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_policy);
}

TEST(DmarcRecordTest, TagSyntaxErrorsFallBackToDefaults) {
  // 6.3: "Syntax errors in the remainder of the record SHOULD be
  // discarded in favor of default values (if any) or ignored outright."
  auto r = ParseDmarcRecord(
      "v=DMARC1; p=reject; pct=101; adkim=x; aspf=; fo=2; rf=a:b!; "
      "ri=99999999999; rua=nope, mailto:ok@example.com, mailto:x@y!5q");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->has_policy);
  EXPECT_EQ(r->p, DmarcPolicy::kReject);
  EXPECT_EQ(r->pct, 100);
  EXPECT_EQ(r->adkim, Alignment::kRelaxed);
  EXPECT_EQ(r->aspf, Alignment::kRelaxed);
  EXPECT_TRUE(r->fo.all_failed);
  EXPECT_FALSE(r->fo.any_failed);
  EXPECT_EQ(r->rf, std::vector<std::string>{"afrf"});
  EXPECT_EQ(r->ri, 86400u);
  ASSERT_EQ(r->rua.size(), 1u);
  EXPECT_EQ(r->rua[0].uri, "mailto:ok@example.com");
  EXPECT_GE(r->problems.size(), 8u);

  for (const char* pct : {"-5", "1000", "", "5%", "abc"}) {
    auto p = ParseDmarcRecord(std::string("v=DMARC1; p=none; pct=") + pct);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->pct, 100) << pct;
  }
  EXPECT_EQ(ParseDmarcRecord("v=DMARC1; p=none; pct=0")->pct, 0);
  EXPECT_EQ(ParseDmarcRecord("v=DMARC1; p=none; pct=050")->pct, 50);
}

TEST(DmarcRecordTest, PolicyAfterOtherTags) {
  auto r = ParseDmarcRecord("v=DMARC1; rua=mailto:d@example.com; p=quarantine");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->has_policy);
  EXPECT_FALSE(r->policy_from_rua_fallback);
  EXPECT_EQ(r->p, DmarcPolicy::kQuarantine);
}

TEST(DmarcRecordTest, UnknownAndRepeatedTags) {
  auto r = ParseDmarcRecord("v=DMARC1; p=reject; np=none; x_future=1; p=none; ;;");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->p, DmarcPolicy::kReject);  // the first p wins
  ASSERT_EQ(r->problems.size(), 1u);      // unknown tags are not problems
  EXPECT_NE(r->problems[0].find("repeated"), std::string::npos);
  auto junk = ParseDmarcRecord("v=DMARC1; p=none; garbage; 9x=1");
  ASSERT_TRUE(junk);
  EXPECT_TRUE(junk->has_policy);
  EXPECT_EQ(junk->problems.size(), 2u);
}

TEST(DmarcRecordTest, ReportUriSizes) {
  auto r = ParseDmarcRecord(
      "v=DMARC1; p=none; rua=mailto:a@example.com!50k,mailto:b@example.com!2G,"
      "mailto:c@example.com!7, https://report.example/x");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->rua.size(), 4u);
  EXPECT_EQ(r->rua[0].max_size, 50u * 1024);
  EXPECT_EQ(r->rua[1].max_size, 2ull << 30);
  EXPECT_EQ(r->rua[2].max_size, 7u);
  EXPECT_EQ(r->rua[3].uri, "https://report.example/x");
}

// ----------------------------------------------- organizational domains

TEST(DmarcOrgDomainTest, PublicSuffixList) {
  // RFC 7489 3.2: the public suffix plus one label.
  EXPECT_EQ(OrganizationalDomain("example.com"), "example.com");
  EXPECT_EQ(OrganizationalDomain("a.b.example.com"), "example.com");
  EXPECT_EQ(OrganizationalDomain("Mail.Example.COM."), "example.com");
  // Multi-label public suffixes.
  EXPECT_EQ(OrganizationalDomain("mail.example.co.uk"), "example.co.uk");
  EXPECT_EQ(OrganizationalDomain("example.co.uk"), "example.co.uk");
  EXPECT_EQ(OrganizationalDomain("x.y.city.kawasaki.jp"), "city.kawasaki.jp");
  // A public suffix is its own organizational domain.
  EXPECT_EQ(OrganizationalDomain("co.uk"), "co.uk");
  EXPECT_EQ(OrganizationalDomain("com"), "com");
  // Unlisted top-level domains get the default "*" rule.
  EXPECT_EQ(OrganizationalDomain("a.b.example.test"), "example.test");
}

TEST(DmarcOrgDomainTest, PrivateSectionCounts) {
  // dmarc.cc: tenants of a shared host are separate organizations.
  EXPECT_EQ(OrganizationalDomain("www.tenant.github.io"), "tenant.github.io");
  EXPECT_EQ(OrganizationalDomain("x.bucket.s3.amazonaws.com"),
            "bucket.s3.amazonaws.com");
  EXPECT_FALSE(Aligned("one.github.io", "two.github.io", Alignment::kRelaxed));
}

// ------------------------------------------------------------ alignment

TEST(DmarcAlignmentTest, StrictAndRelaxed) {
  // RFC 7489 3.1.1's example: d=example.com and From news.example.com
  // align in relaxed mode only.
  EXPECT_TRUE(Aligned("example.com", "news.example.com", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("example.com", "news.example.com", Alignment::kStrict));
  EXPECT_TRUE(Aligned("news.example.com", "example.com", Alignment::kRelaxed));
  // 3.1.2: an SPF domain below the From domain's organizational domain.
  EXPECT_TRUE(Aligned("bounce.example.com", "example.com", Alignment::kRelaxed));
  EXPECT_TRUE(Aligned("a.example.com", "b.example.com", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("a.example.com", "b.example.com", Alignment::kStrict));
  EXPECT_TRUE(Aligned("EXAMPLE.com.", "example.COM", Alignment::kStrict));
  EXPECT_FALSE(Aligned("example.net", "example.com", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("", "example.com", Alignment::kRelaxed));
  // Siblings under a multi-label suffix are different organizations.
  EXPECT_TRUE(Aligned("a.example.co.uk", "b.example.co.uk", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("example.co.uk", "other.co.uk", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("co.uk", "example.co.uk", Alignment::kRelaxed));
  // Malformed names align with nothing.
  EXPECT_FALSE(Aligned("x..example.com", "example.com", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("example.com", ".example.com", Alignment::kRelaxed));
  EXPECT_FALSE(Aligned("ex ample.com", "ex ample.com", Alignment::kStrict));
  // A look-alike suffix is not a subdomain.
  EXPECT_FALSE(Aligned("notexample.com", "example.com", Alignment::kRelaxed));
}

// ------------------------------------------- discovery and the verdict

class DmarcCheckTest : public ::testing::Test {
 protected:
  DmarcCheckTest() : fake_(io_.get_executor()) {}

  DmarcOutcome Check(DmarcInput input, PercentRoll roll = {}) {
    std::optional<DmarcOutcome> out;
    asio::co_spawn(io_, CheckDmarc(fake_, std::move(input), std::move(roll)),
                   [&](std::exception_ptr e, DmarcOutcome o) {
                     if (e) std::rethrow_exception(e);
                     out = std::move(o);
                   });
    io_.run();
    io_.restart();
    EXPECT_TRUE(out);
    return out.value_or(DmarcOutcome{});
  }

  static DmarcInput Input(std::string from, std::string spf_result,
                          std::string spf_domain,
                          std::vector<DkimVerdict> dkim = {}) {
    return DmarcInput{std::move(from), std::move(spf_result),
                      std::move(spf_domain), std::move(dkim)};
  }

  void TempFail(const std::string& name) {
    dns::Answer a;
    a.status = dns::Status::kTempFail;
    a.error = "SERVFAIL";
    fake_.Set(name, dns::RrType::kTxt, a);
  }

  asio::io_context io_;
  dns::FakeResolver fake_;
};

TEST_F(DmarcCheckTest, AlignedSpfPasses) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  DmarcOutcome o = Check(Input("example.com", "pass", "example.com"));
  EXPECT_EQ(o.result, DmarcResult::kPass);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  EXPECT_EQ(o.requested, DmarcPolicy::kReject);
  EXPECT_TRUE(o.spf_aligned);
  EXPECT_FALSE(o.dkim_aligned);
  EXPECT_EQ(o.from_domain, "example.com");
  EXPECT_EQ(o.org_domain, "example.com");
  EXPECT_EQ(o.record_domain, "example.com");
  EXPECT_EQ(fake_.queries(), 1);
}

TEST_F(DmarcCheckTest, RelaxedAndStrictSpf) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  EXPECT_EQ(Check(Input("example.com", "pass", "bounces.example.com")).result,
            DmarcResult::kPass);
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject; aspf=s"});
  DmarcOutcome o = Check(Input("example.com", "pass", "bounces.example.com"));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.policy, DmarcPolicy::kReject);
  EXPECT_FALSE(o.spf_aligned);
  // The SPF identity as a whole address.
  EXPECT_EQ(Check(Input("example.com", "pass", "bounce+x@example.com")).result,
            DmarcResult::kPass);
  EXPECT_EQ(Check(Input("example.com", "pass", "x@example.com@evil.example")).result,
            DmarcResult::kFail);
  // Only "pass" counts, whatever the domain.
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  EXPECT_EQ(Check(Input("example.com", "softfail", "example.com")).result,
            DmarcResult::kFail);
  EXPECT_EQ(Check(Input("example.com", "", "")).result, DmarcResult::kFail);
}

TEST_F(DmarcCheckTest, DkimAlignment) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=quarantine; adkim=s"});
  // SPF passes for someone else (a forwarder); an aligned DKIM pass is
  // enough (RFC 7489 4.2).
  DmarcOutcome o = Check(Input("example.com", "pass", "forwarder.example",
                               {{"fail", "example.com"},
                                {"pass", "mail.example.com"},
                                {"pass", "Example.COM"}}));
  EXPECT_EQ(o.result, DmarcResult::kPass);
  EXPECT_TRUE(o.dkim_aligned);
  EXPECT_FALSE(o.spf_aligned);
  EXPECT_EQ(o.dkim_domain, "example.com");  // strict: not mail.example.com

  o = Check(Input("example.com", "pass", "forwarder.example",
                  {{"pass", "mail.example.com"}, {"fail", "example.com"}}));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.policy, DmarcPolicy::kQuarantine);

  // A signature of a third party never aligns.
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  o = Check(Input("example.com", "pass", "evil.example",
                  {{"pass", "evil.example"}}));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.policy, DmarcPolicy::kReject);
}

TEST_F(DmarcCheckTest, SubdomainUsesSpOfTheOrganizationalRecord) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject; sp=quarantine"});
  DmarcOutcome o = Check(Input("news.example.com", "fail", "news.example.com"));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.requested, DmarcPolicy::kQuarantine);
  EXPECT_EQ(o.policy, DmarcPolicy::kQuarantine);
  EXPECT_EQ(o.record_domain, "example.com");
  EXPECT_EQ(o.org_domain, "example.com");
  EXPECT_EQ(fake_.queries(), 2);  // _dmarc.news.example.com, then the org
  // The organizational domain itself gets p.
  EXPECT_EQ(Check(Input("example.com", "fail", "example.com")).policy,
            DmarcPolicy::kReject);
}

TEST_F(DmarcCheckTest, SubdomainWithoutSpGetsP) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  DmarcOutcome o = Check(Input("a.b.example.com", "fail", "a.b.example.com"));
  EXPECT_EQ(o.policy, DmarcPolicy::kReject);
}

TEST_F(DmarcCheckTest, SubdomainRecordOverridesAndIgnoresItsSp) {
  // 6.3 "sp": ignored in records published below the organizational
  // domain; a subdomain's own record speaks through p.
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject; sp=reject"});
  fake_.SetTxt("_dmarc.news.example.com", {"v=DMARC1; p=none; sp=reject"});
  DmarcOutcome o = Check(Input("news.example.com", "fail", "x.example"));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  EXPECT_EQ(o.record_domain, "news.example.com");
  EXPECT_EQ(fake_.queries(), 1);
}

TEST_F(DmarcCheckTest, PNoneFailsWithoutAction) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=none; rua=mailto:r@example.com"});
  DmarcOutcome o = Check(Input("example.com", "fail", "example.com"));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  EXPECT_FALSE(o.sampled_out);
}

TEST_F(DmarcCheckTest, PctSampling) {
  // 6.6.4: the policy for pct percent of failing mail, the next lower one
  // for the rest.
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject; pct=30"});
  DmarcInput in = Input("example.com", "fail", "example.com");
  DmarcOutcome picked = Check(in, [] { return 29; });
  EXPECT_EQ(picked.policy, DmarcPolicy::kReject);
  EXPECT_FALSE(picked.sampled_out);
  DmarcOutcome skipped = Check(in, [] { return 30; });
  EXPECT_EQ(skipped.policy, DmarcPolicy::kQuarantine);
  EXPECT_EQ(skipped.requested, DmarcPolicy::kReject);
  EXPECT_TRUE(skipped.sampled_out);

  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=quarantine; pct=0"});
  int rolls = 0;
  DmarcOutcome zero = Check(in, [&] { ++rolls; return 0; });
  EXPECT_EQ(zero.policy, DmarcPolicy::kNone);
  EXPECT_TRUE(zero.sampled_out);
  EXPECT_EQ(rolls, 0);

  // pct=100 (the default) never asks; passing mail is never sampled.
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject; pct=50"});
  DmarcOutcome pass = Check(Input("example.com", "pass", "example.com"),
                            [&] { ++rolls; return 99; });
  EXPECT_EQ(pass.policy, DmarcPolicy::kNone);
  EXPECT_EQ(rolls, 0);

  // The built-in random source gives both outcomes over many messages.
  int rejected = 0;
  for (int i = 0; i < 200; ++i) {
    rejected += Check(in).policy == DmarcPolicy::kReject;
  }
  EXPECT_GT(rejected, 40);
  EXPECT_LT(rejected, 160);
}

TEST_F(DmarcCheckTest, NoRecordIsNone) {
  DmarcOutcome o = Check(Input("mail.example.com", "fail", "mail.example.com"));
  EXPECT_EQ(o.result, DmarcResult::kNone);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  EXPECT_EQ(fake_.queries(), 2);
  // Non-DMARC TXT records at _dmarc do not count.
  fake_.SetTxt("_dmarc.example.com", {"v=spf1 -all", "hello"});
  EXPECT_EQ(Check(Input("example.com", "pass", "example.com")).result,
            DmarcResult::kNone);
}

TEST_F(DmarcCheckTest, DuplicateRecordsAreNone) {
  // 6.6.3 step 5, and no fallback to the organizational domain: the set
  // at the From domain was not empty.
  fake_.SetTxt("_dmarc.news.example.com",
               {"v=DMARC1; p=reject", "v=DMARC1; p=none"});
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  DmarcOutcome o = Check(Input("news.example.com", "fail", "news.example.com"));
  EXPECT_EQ(o.result, DmarcResult::kNone);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  EXPECT_NE(o.reason.find("several"), std::string::npos);
  EXPECT_EQ(fake_.queries(), 1);

  // One DMARC record among other TXT records is fine.
  fake_.SetTxt("_dmarc.example.com", {"v=spf1 -all", "v=DMARC1; p=reject"});
  EXPECT_EQ(Check(Input("example.com", "fail", "example.com")).policy,
            DmarcPolicy::kReject);
}

TEST_F(DmarcCheckTest, MalformedRecordIsPermerror) {
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=bogus"});
  DmarcOutcome o = Check(Input("example.com", "pass", "example.com"));
  EXPECT_EQ(o.result, DmarcResult::kPermError);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  // ... unless rua rescues it as p=none (6.6.3 step 6.1).
  fake_.SetTxt("_dmarc.example.com",
               {"v=DMARC1; p=bogus; rua=mailto:r@example.com"});
  o = Check(Input("example.com", "fail", "example.com"));
  EXPECT_EQ(o.result, DmarcResult::kFail);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
}

TEST_F(DmarcCheckTest, TemporaryDnsFailures) {
  TempFail("_dmarc.example.com");
  DmarcOutcome o = Check(Input("example.com", "pass", "example.com"));
  EXPECT_EQ(o.result, DmarcResult::kTempError);
  EXPECT_EQ(o.policy, DmarcPolicy::kNone);
  EXPECT_NE(o.reason.find("SERVFAIL"), std::string::npos);
  // At the organizational domain, after an empty answer for the From
  // domain.
  DmarcOutcome sub = Check(Input("news.example.com", "pass", "example.com"));
  EXPECT_EQ(sub.result, DmarcResult::kTempError);
  // A failure at the From domain does not fall back to the org domain.
  TempFail("_dmarc.news.example.com");
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  EXPECT_EQ(Check(Input("news.example.com", "pass", "example.com")).result,
            DmarcResult::kTempError);
}

TEST_F(DmarcCheckTest, MultiLabelSuffix) {
  fake_.SetTxt("_dmarc.example.co.uk", {"v=DMARC1; p=reject; sp=quarantine"});
  DmarcOutcome o = Check(Input("mail.example.co.uk", "fail", "x.example",
                               {{"pass", "example.co.uk"}}));
  EXPECT_EQ(o.result, DmarcResult::kPass);
  EXPECT_EQ(o.org_domain, "example.co.uk");
  EXPECT_EQ(o.record_domain, "example.co.uk");
  // The suffix's own _dmarc is never asked.
  fake_.SetTxt("_dmarc.co.uk", {"v=DMARC1; p=reject"});
  o = Check(Input("other.co.uk", "fail", "other.co.uk"));
  EXPECT_EQ(o.result, DmarcResult::kNone);
}

TEST_F(DmarcCheckTest, BadFromDomainIsPermerrorWithoutQueries) {
  for (const char* from : {"", "exa mple.com", "a..b", ".", "[192.0.2.1]"}) {
    EXPECT_EQ(Check(Input(from, "pass", "example.com")).result,
              DmarcResult::kPermError) << from;
  }
  EXPECT_EQ(fake_.queries(), 0);
  // A trailing dot and case are not errors.
  fake_.SetTxt("_dmarc.example.com", {"v=DMARC1; p=reject"});
  DmarcOutcome o = Check(Input("Example.COM.", "pass", "EXAMPLE.com"));
  EXPECT_EQ(o.result, DmarcResult::kPass);
  EXPECT_EQ(o.from_domain, "example.com");
}

TEST(DmarcNamesTest, Words) {
  EXPECT_STREQ(DmarcResultName(DmarcResult::kTempError), "temperror");
  EXPECT_STREQ(DmarcResultName(DmarcResult::kPermError), "permerror");
  EXPECT_STREQ(DmarcPolicyName(DmarcPolicy::kQuarantine), "quarantine");
}

// ------------------------------------------------------- the From domain

TEST(DmarcFromTest, OneMailbox) {
  struct Case {
    const char* header;
    const char* domain;
  } cases[] = {
      {"From: alice@Example.COM\r\n", "example.com"},
      {"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n", "example.com"},
      {"from : alice@example.com (Alice Liddell)\n", "example.com"},
      {"From: \"Smith, John\"\r\n <john@example.org>\r\n", "example.org"},
      {"From: \"admin@bank.example\" <evil@attacker.example>\r\n",
       "attacker.example"},
      {"From: (a (nested) comment) user@sub.example.co.uk\r\n",
       "sub.example.co.uk"},
      {"From: <@relay.example,@other.example:user@example.com>\r\n", "example.com"},
      {"From: \"quoted local\"@example.com\r\n", "example.com"},
      {"From: =?utf-8?q?J=C3=B6rg?= <j@example.de>\r\n", "example.de"},
      {"From: J. Random <jr@example.com>\r\n", "example.com"},
      {"From: , alice@example.com,\r\n", "example.com"},  // obs-mbox-list
      {"Subject: x\r\nFrom: a@example.com\r\n\r\nFrom: b@other.example\r\n",
       "example.com"},
  };
  for (const Case& c : cases) {
    auto d = FromDomainOfHeader(c.header);
    ASSERT_TRUE(d) << c.header << ": " << d.error().message;
    EXPECT_EQ(*d, c.domain) << c.header;
  }
}

TEST(DmarcFromTest, MalformedForDmarc) {
  // RFC 7489 6.6.1: none, several fields, several authors.
  const char* bad[] = {
      "Subject: no author\r\n",
      "From: a@example.com\r\nFrom: b@example.com\r\n",
      "From: a@example.com, b@example.net\r\n",
      "From: a@example.com, a@example.com\r\n",
      "From: team: a@example.com;\r\n",
      "From: undisclosed-recipients:;\r\n",
      "From: a@[192.0.2.1]\r\n",
      "From: a@\r\n",
      "From: @example.com\r\n",
      "From: example.com\r\n",
      "From: <a@example.com\r\n",
      "From: a@example.com>\r\n",
      "From: <a@example.com> trailing\r\n",
      "From: admin@bank.example <evil@attacker.example>\r\n",
      "From: a@example..com\r\n",
      "From: a@example.com.\r\n",
      "From: a@b@example.com\r\n",
      "From: (unterminated a@example.com\r\n",
      "From: \"unterminated a@example.com\r\n",
      "From: a@ex\xc3\xa4mple.com\r\n",  // U-label: no IDNA here
      "From: \r\n",
      "From: <>\r\n",
  };
  for (const char* h : bad) {
    EXPECT_FALSE(FromDomainOfHeader(h)) << h;
  }
  // RFC 1035 2.3.4: labels of at most 63 octets.
  EXPECT_FALSE(FromDomainOfHeader("From: a@" + std::string(64, 'x') + ".example\r\n"));
  EXPECT_TRUE(FromDomainOfHeader("From: a@" + std::string(63, 'x') + ".example\r\n"));
}

}  // namespace
}  // namespace tern::mailauth
