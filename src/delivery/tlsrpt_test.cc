#include "delivery/tlsrpt.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "common/base64.h"
#include "common/strings.h"

namespace tern::delivery::tlsrpt {
namespace {

using V = std::vector<std::string>;

TEST(TlsRptTxt, ParsesMailtoAndHttps) {
  auto r = ParseTxt({"v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/x"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (V{"mailto:tls@example.com", "https://r.example.com/x"}));
  // RFC 8460 3: *WSP around delimiters and commas, a trailing ";".
  r = ParseTxt({"v=TLSRPTv1 ;\trua=mailto:a@b.example , mailto:c@d.example ;"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (V{"mailto:a@b.example", "mailto:c@d.example"}));
  // Extensions are allowed; other records are ignored.
  r = ParseTxt({"v=spf1 -all", "v=TLSRPTv1; ext_1=abc; rua=https://x.example/"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, V{"https://x.example/"});
  // Unknown URI schemes are skipped, not an error, when another is usable.
  r = ParseTxt({"v=TLSRPTv1; rua=ftp://x.example/,mailto:a@b.example"});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, V{"mailto:a@b.example"});
}

TEST(TlsRptTxt, RejectsWhatTheGrammarDoesNot) {
  EXPECT_FALSE(ParseTxt({}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1;"}));                          // no field
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; ext=1"}));                    // no rua
  EXPECT_FALSE(ParseTxt({"v=tlsrptv1; rua=mailto:a@b.example"}));   // case
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv2; rua=mailto:a@b.example"}));
  EXPECT_FALSE(ParseTxt({" v=TLSRPTv1; rua=mailto:a@b.example"}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1 rua=mailto:a@b.example"}));    // no ";"
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example"}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua="}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua=not a uri"}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua=mailto:a@b.example;; x=1"}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua=mailto:a@b.example; -x=1"}));
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua=ftp://x.example/"}));     // none usable
  // RFC 8460 3: more than one TLSRPT record means none.
  EXPECT_FALSE(ParseTxt({"v=TLSRPTv1; rua=mailto:a@b.example",
                         "v=TLSRPTv1; rua=mailto:c@d.example"}));
}

TEST(TlsRptMailto, Address) {
  EXPECT_EQ(MailtoAddress("mailto:tls@example.com"), "tls@example.com");
  EXPECT_EQ(MailtoAddress("mailto:tls%2Brpt@example.com?subject=x"),
            "tls+rpt@example.com");
  EXPECT_EQ(MailtoAddress("mailto:a@b.example%2Cc@d.example"), "");
  EXPECT_EQ(MailtoAddress("mailto:nobody"), "");
  EXPECT_EQ(MailtoAddress("https://x.example/"), "");
}

Period Sample() {
  Period p;
  p.start = 1765065600;  // 2025-12-07T00:00:00Z
  p.end = p.start + 86400;
  PolicyKey sts{"sts", {"version: STSv1", "mode: testing", "mx: mx.example.com",
                        "max_age: 86400"}, {"mx.example.com"}};
  Outcome ok{"example.com", sts, true, {}};
  Add(&p, ok);
  Add(&p, ok);
  Outcome bad{"example.com", sts, false,
              {"certificate-expired", "192.0.2.1", "mx.example.com", "198.51.100.7"}};
  Add(&p, bad);
  Outcome plain{"example.com", {"no-policy-found", {}, {}}, false,
                {"starttls-not-supported", "192.0.2.1", "mx2.example.com", "198.51.100.8"}};
  Add(&p, plain);
  Add(&p, plain);
  Add(&p, Outcome{"other.example", sts, true, {}});
  return p;
}

TEST(TlsRptReport, JsonHasTheRfcShape) {
  Period p = Sample();
  ReportMeta meta{"Tern at mail.sender.example", "postmaster@sender.example",
                  "mail.sender.example"};
  nlohmann::json r = BuildReport(p, "example.com", meta);
  EXPECT_EQ(r["organization-name"], "Tern at mail.sender.example");
  EXPECT_EQ(r["contact-info"], "postmaster@sender.example");
  EXPECT_EQ(r["date-range"]["start-datetime"], "2025-12-07T00:00:00Z");
  EXPECT_EQ(r["date-range"]["end-datetime"], "2025-12-08T00:00:00Z");
  EXPECT_EQ(r["report-id"], "20251207T000000Z.example.com@mail.sender.example");
  ASSERT_EQ(r["policies"].size(), 2u);  // other.example is not in it
  // Sorted by policy: "no-policy-found" < "sts".
  const auto& np = r["policies"][0];
  EXPECT_EQ(np["policy"]["policy-type"], "no-policy-found");
  EXPECT_EQ(np["policy"]["policy-domain"], "example.com");
  EXPECT_FALSE(np["policy"].contains("policy-string"));
  EXPECT_EQ(np["summary"]["total-successful-session-count"], 0);
  EXPECT_EQ(np["summary"]["total-failure-session-count"], 2);
  EXPECT_EQ(np["failure-details"][0]["result-type"], "starttls-not-supported");
  EXPECT_EQ(np["failure-details"][0]["failed-session-count"], 2);
  EXPECT_EQ(np["failure-details"][0]["receiving-mx-hostname"], "mx2.example.com");
  const auto& sp = r["policies"][1];
  EXPECT_EQ(sp["policy"]["policy-type"], "sts");
  EXPECT_EQ(sp["policy"]["policy-string"][1], "mode: testing");
  EXPECT_EQ(sp["policy"]["mx-host"][0], "mx.example.com");
  EXPECT_EQ(sp["summary"]["total-successful-session-count"], 2);
  EXPECT_EQ(sp["summary"]["total-failure-session-count"], 1);
  const auto& fd = sp["failure-details"][0];
  EXPECT_EQ(fd["result-type"], "certificate-expired");
  EXPECT_EQ(fd["sending-mta-ip"], "192.0.2.1");
  EXPECT_EQ(fd["receiving-ip"], "198.51.100.7");
  EXPECT_EQ(fd["failed-session-count"], 1);
}

TEST(TlsRptReport, PeriodFileRoundTrip) {
  Period p = Sample();
  p.sent = true;
  auto back = ParsePeriod(FormatPeriod(p));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->start, p.start);
  EXPECT_EQ(back->end, p.end);
  EXPECT_TRUE(back->sent);
  ReportMeta meta{"o", "c", "s"};
  EXPECT_EQ(BuildReport(*back, "example.com", meta), BuildReport(p, "example.com", meta));
  EXPECT_FALSE(ParsePeriod("{\"start\": 1}"));
  EXPECT_FALSE(ParsePeriod("not json"));
}

std::string Gunzip(const std::string& gz) {
  z_stream z{};
  inflateInit2(&z, 15 + 16);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : "inflate failed";
}

TEST(TlsRptReport, GzipAndMail) {
  Period p = Sample();
  ReportMeta meta{"o", "postmaster@sender.example", "mail.sender.example"};
  std::string json = BuildReport(p, "example.com", meta).dump();
  std::string gz = Gzip(json);
  ASSERT_GT(gz.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // RFC 1952 ID1, ID2
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_EQ(Gunzip(gz), json);
  EXPECT_EQ(FileName(p, "example.com", "mail.sender.example"),
            "mail.sender.example!example.com!1765065600!1765152000!20251207000000.json.gz");
  std::string m = BuildMail(p, "example.com", meta, "postmaster@sender.example",
                            "tls@example.com", gz, 1765152100);
  EXPECT_NE(m.find("\r\nSubject: Report Domain: example.com Submitter: mail.sender.example "
                   "Report-ID: <20251207T000000Z.example.com@mail.sender.example>\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("\r\nTLS-Report-Domain: example.com\r\n"), std::string::npos);
  EXPECT_NE(m.find("\r\nTLS-Report-Submitter: mail.sender.example\r\n"), std::string::npos);
  EXPECT_NE(m.find("multipart/report; report-type=\"tlsrpt\""), std::string::npos);
  EXPECT_NE(m.find("Content-Type: application/tlsrpt+gzip"), std::string::npos);
  // The attachment decodes to the report.
  size_t start = m.find("\r\n\r\n", m.find("Content-Disposition: attachment")) + 4;
  size_t end = m.find("\r\n\r\n--", start);
  std::string b64;
  for (char c : m.substr(start, end - start))
    if (c != '\r' && c != '\n') b64 += c;
  auto raw = Base64Decode(b64);
  ASSERT_TRUE(raw);
  EXPECT_EQ(Gunzip(*raw), json);
  // No line longer than RFC 5322 2.1.1 allows.
  size_t pos = 0;
  while (pos < m.size()) {
    size_t nl = m.find("\r\n", pos);
    ASSERT_NE(nl, std::string::npos);
    EXPECT_LE(nl - pos, 998u);
    pos = nl + 2;
  }
}

TEST(TlsRptReport, TlsaText) {
  EXPECT_EQ(TlsaText(3, 1, 1, std::string("\x01\xab", 2)), "3 1 1 01ab");
}

}  // namespace
}  // namespace tern::delivery::tlsrpt
