#include "reports/dmarc_report.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>

#include "common/strings.h"

namespace tern::reports {
namespace {

mailauth::InboundVerdict Verdict(bool pass) {
  mailauth::InboundVerdict v;
  v.dmarc.result = pass ? mailauth::DmarcResult::kPass : mailauth::DmarcResult::kFail;
  v.dmarc.from_domain = "example.org";
  v.dmarc.record_domain = "example.org";
  mailauth::DmarcRecord rec;
  rec.has_policy = true;
  rec.p = mailauth::DmarcPolicy::kReject;
  rec.sp = mailauth::DmarcPolicy::kQuarantine;
  rec.adkim = mailauth::Alignment::kStrict;
  rec.pct = 50;
  rec.rua.push_back({"mailto:agg@example.org", 0});
  v.dmarc.record = rec;
  v.dmarc.dkim_aligned = pass;
  v.dmarc.spf_aligned = false;
  v.dmarc.policy = pass ? mailauth::DmarcPolicy::kNone : mailauth::DmarcPolicy::kReject;
  v.action = pass ? mailauth::InboundVerdict::Action::kAccept
                  : mailauth::InboundVerdict::Action::kReject;
  mailauth::DkimResult k;
  k.status = pass ? mailauth::DkimStatus::kPass : mailauth::DkimStatus::kFail;
  k.domain = "example.org";
  k.selector = "s1";
  v.dkim.push_back(k);
  v.spf.result = mailauth::SpfResult::kSoftFail;
  v.spf.identity = "mailfrom";
  v.spf.domain = "bounce.example.net";
  return v;
}

mailauth::SmtpIdentity Who(const std::string& ip) {
  return {ip, "mx.example.net", "b@Bounce.Example.NET"};
}

TEST(DmarcReport, EventFromVerdict) {
  auto e = DmarcEventFromVerdict(Verdict(true), Who("192.0.2.1"), 86400 * 3 + 5);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->policy.domain, "example.org");
  EXPECT_EQ(e->policy.p, "reject");
  EXPECT_EQ(e->policy.sp, "quarantine");
  EXPECT_EQ(e->policy.adkim, "s");
  EXPECT_EQ(e->policy.aspf, "r");
  EXPECT_EQ(e->policy.pct, 50);
  EXPECT_EQ(e->row.dkim, "pass");
  EXPECT_EQ(e->row.spf, "fail");
  EXPECT_EQ(e->row.disposition, "none");
  EXPECT_EQ(e->row.envelope_from, "bounce.example.net");
  ASSERT_EQ(e->row.dkim_auth.size(), 1u);
  EXPECT_EQ(e->row.dkim_auth[0].selector, "s1");
  ASSERT_EQ(e->row.spf_auth.size(), 1u);
  EXPECT_EQ(e->row.spf_auth[0].scope, "mfrom");
  EXPECT_EQ(e->row.spf_auth[0].result, "softfail");
  EXPECT_TRUE(e->row.reasons.empty());
}

TEST(DmarcReport, NoEventWithoutRuaOrResult) {
  auto v = Verdict(true);
  v.dmarc.record->rua.clear();
  EXPECT_FALSE(DmarcEventFromVerdict(v, Who("192.0.2.1"), 0));
  v = Verdict(true);
  v.dmarc.result = mailauth::DmarcResult::kTempError;
  EXPECT_FALSE(DmarcEventFromVerdict(v, Who("192.0.2.1"), 0));
}

TEST(DmarcReport, LocalPolicyAndSampledOutReasons) {
  auto v = Verdict(false);
  v.action = mailauth::InboundVerdict::Action::kAccept;  // dmarc_reject = false
  auto e = DmarcEventFromVerdict(v, Who("192.0.2.1"), 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->row.disposition, "none");
  ASSERT_EQ(e->row.reasons.size(), 1u);
  EXPECT_EQ(e->row.reasons[0].type, "local_policy");
  v = Verdict(false);
  v.dmarc.sampled_out = true;
  v.dmarc.policy = mailauth::DmarcPolicy::kQuarantine;
  v.action = mailauth::InboundVerdict::Action::kJunk;
  e = DmarcEventFromVerdict(v, Who("192.0.2.1"), 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->row.disposition, "quarantine");
  ASSERT_EQ(e->row.reasons.size(), 1u);
  EXPECT_EQ(e->row.reasons[0].type, "sampled_out");
}

TEST(DmarcReport, AggregatesRowsByIdentity) {
  DmarcDay day;
  for (int i = 0; i < 3; ++i)
    AddDmarcEvent(day, *DmarcEventFromVerdict(Verdict(true), Who("192.0.2.1"), 100));
  AddDmarcEvent(day, *DmarcEventFromVerdict(Verdict(false), Who("192.0.2.1"), 100));
  AddDmarcEvent(day, *DmarcEventFromVerdict(Verdict(true), Who("192.0.2.2"), 100));
  ASSERT_EQ(day.size(), 1u);
  const DmarcDomainDay& dd = day.at("example.org");
  EXPECT_EQ(dd.rows.size(), 3u);
  EXPECT_EQ(dd.Messages(), 5u);
  uint64_t passes = 0;
  for (const auto& [k, r] : dd.rows)
    if (r.source_ip == "192.0.2.1" && r.dkim == "pass") passes = r.count;
  EXPECT_EQ(passes, 3u);
}

TEST(DmarcReport, XmlEscapes) {
  EXPECT_EQ(XmlEscape("a<b>&\"c'\x01"), "a&lt;b&gt;&amp;&quot;c&apos;?");
  auto v = Verdict(true);
  v.dkim[0].selector = "<sel>&";
  DmarcDay day;
  AddDmarcEvent(day, *DmarcEventFromVerdict(v, Who("192.0.2.1"), 100));
  DmarcReportMeta meta{"rcv.example", "postmaster@rcv.example", "id<1>", 0, 86399};
  std::string xml = BuildDmarcXml(day.at("example.org"), meta);
  EXPECT_NE(xml.find("<selector>&lt;sel&gt;&amp;</selector>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<report_id>id&lt;1&gt;</report_id>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<count>1</count>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<p>reject</p>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<scope>mfrom</scope>"), std::string::npos) << xml;
  EXPECT_EQ(xml.find("<sel>"), std::string::npos);
}

TEST(DmarcReport, GzipRoundTrip) {
  std::string text(10000, 'x');
  auto gz = Gzip(text);
  ASSERT_TRUE(gz);
  ASSERT_GE(gz->size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>((*gz)[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>((*gz)[1]), 0x8b);
  std::string out(20000, '\0');
  z_stream zs{};
  ASSERT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(gz->data());
  zs.avail_in = static_cast<uInt>(gz->size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  EXPECT_EQ(out, text);
}

TEST(DmarcReport, MessageNamesTheReport) {
  DmarcDay day;
  AddDmarcEvent(day, *DmarcEventFromVerdict(Verdict(true), Who("192.0.2.1"), 86400));
  DmarcReportMeta meta{"rcv.example", "postmaster@rcv.example", "r1", 86400, 172799};
  std::string m = BuildReportMessage(day.at("example.org"), meta, "agg@example.org", "GZ",
                                     86400 * 2);
  EXPECT_NE(m.find("Subject: Report Domain: example.org Submitter: rcv.example "
                   "Report-ID: <r1>\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("filename=\"rcv.example!example.org!86400!172799.xml.gz\""),
            std::string::npos);
  EXPECT_NE(m.find("Content-Type: application/gzip"), std::string::npos);
  EXPECT_NE(m.find("\r\nR1o=\r\n"), std::string::npos);  // base64 of "GZ"
}

TEST(DmarcReport, MailtoAddresses) {
  EXPECT_EQ(MailtoAddress("mailto:agg@example.org"), "agg@example.org");
  EXPECT_EQ(MailtoAddress("MAILTO:a%21b@example.org?subject=x"), "a!b@example.org");
  EXPECT_EQ(MailtoAddress("https://example.org/report"), "");
  EXPECT_EQ(MailtoAddress("mailto:no-at-sign"), "");
  EXPECT_EQ(MailtoAddress("mailto:a@b%0d%0aBcc:x@y"), "");  // no header injection
  EXPECT_EQ(MailtoAddress("mailto:a%2"), "");
}

TEST(DmarcReport, DayNames) {
  EXPECT_EQ(DayName(0), "1970-01-01");
  EXPECT_EQ(ParseDayName("2026-12-06"), DayOf(1796515200));
  EXPECT_FALSE(ParseDayName("2026-02-31"));
  EXPECT_FALSE(ParseDayName("2026-1-1"));
  EXPECT_EQ(DayOf(86399), 0);
  EXPECT_EQ(DayOf(86400), 1);
}

TEST(DmarcReport, StorePersistsAndTakes) {
  std::string dir = ::testing::TempDir() + "/dmarc-store-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  {
    DmarcReportStore store(dir);
    ASSERT_TRUE(store.Load());
    store.Record(*DmarcEventFromVerdict(Verdict(true), Who("192.0.2.1"), 86400 + 1));
    store.Record(*DmarcEventFromVerdict(Verdict(true), Who("192.0.2.1"), 86400 + 2));
    store.Record(*DmarcEventFromVerdict(Verdict(false), Who("192.0.2.9"), 2 * 86400));
    ASSERT_TRUE(store.Save());
  }
  EXPECT_EQ(ListDmarcDays(dir), (std::vector<int64_t>{1, 2}));
  DmarcReportStore again(dir);
  ASSERT_TRUE(again.Load());
  std::vector<DmarcDomainDay> first = again.Take(2);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].day, 1);
  EXPECT_EQ(first[0].Messages(), 2u);
  ASSERT_EQ(first[0].rua.size(), 1u);
  EXPECT_EQ(first[0].rua[0].uri, "mailto:agg@example.org");
  EXPECT_EQ(ListDmarcDays(dir), (std::vector<int64_t>{2}));
  auto day2 = LoadDmarcDay(dir, 2);
  ASSERT_TRUE(day2);
  const DmarcRow& row = day2->at("example.org").rows.begin()->second;
  EXPECT_EQ(row.disposition, "reject");
  EXPECT_EQ(row.source_ip, "192.0.2.9");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tern::reports
