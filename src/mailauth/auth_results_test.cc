// Unit tests of the Authentication-Results field (RFC 8601): the written
// form, quoting, folding, and recognising fields that claim our
// authserv-id.
#include "mailauth/auth_results.h"

#include <gtest/gtest.h>

namespace tern::mailauth {
namespace {

// The lines of a field, without their CRLFs; fails on a bare CR or LF.
std::vector<std::string> Lines(const std::string& field) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < field.size()) {
    size_t crlf = field.find("\r\n", start);
    EXPECT_NE(crlf, std::string::npos) << "no final CRLF";
    if (crlf == std::string::npos) break;
    std::string line = field.substr(start, crlf - start);
    EXPECT_EQ(line.find_first_of("\r\n"), std::string::npos) << line;
    lines.push_back(line);
    start = crlf + 2;
  }
  return lines;
}

TEST(AuthResultsTest, TheUsualThree) {
  std::string f = FormatAuthResults(
      "mx.example.org",
      {SpfAuthResult("pass", "example.com"),
       DkimAuthResult("pass", "example.com", "sel2024",
                      "dGhpcyBpcyBhIHNpZ25hdHVyZQ=="),
       DmarcAuthResult("pass", "example.com", "p=reject dis=none")});
  EXPECT_EQ(f,
            "Authentication-Results: mx.example.org;\r\n"
            "\tspf=pass smtp.mailfrom=example.com;\r\n"
            "\tdkim=pass header.d=example.com header.s=sel2024 header.b=dGhpcyBp;\r\n"
            "\tdmarc=pass (p=reject dis=none) header.from=example.com\r\n");
}

TEST(AuthResultsTest, NoResults) {
  // RFC 8601 2.2 no-result.
  EXPECT_EQ(FormatAuthResults("mx.example.org", {}),
            "Authentication-Results: mx.example.org; none\r\n");
}

TEST(AuthResultsTest, HeloArcAndReason) {
  std::string f = FormatAuthResults(
      "mx.example.org",
      {SpfAuthResult("None", "helo.example.net", /*helo=*/true),
       DkimAuthResult("fail", "example.com", "s", "", "signature did not verify"),
       ArcAuthResult("pass", "192.0.2.1")});
  EXPECT_EQ(f,
            "Authentication-Results: mx.example.org;\r\n"
            "\tspf=none smtp.helo=helo.example.net;\r\n"
            "\tdkim=fail reason=\"signature did not verify\" header.d=example.com"
            " header.s=s;\r\n"
            "\tarc=pass smtp.remote-ip=192.0.2.1\r\n");
}

TEST(AuthResultsTest, Quoting) {
  // RFC 8601 2.2: value = token / quoted-string; a pvalue may also be
  // local-part@domain as it is.
  EXPECT_EQ(AuthResultsValue("mx.example.org"), "mx.example.org");
  EXPECT_EQ(AuthResultsValue("my host"), "\"my host\"");
  EXPECT_EQ(AuthResultsValue(""), "\"\"");
  EXPECT_EQ(AuthResultsValue("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(AuthResultsValue("a/b"), "\"a/b\"");  // '/' is a tspecial

  std::string f = FormatAuthResults(
      "my host",
      {SpfAuthResult("pass", "user.name+tag@example.com"),
       SpfAuthResult("pass", "@example.com"),
       SpfAuthResult("pass", "\"odd local\"@example.com"),
       DkimAuthResult("pass", "example.com", "s", "ab/c+d=efgh")});
  auto lines = Lines(f);
  ASSERT_EQ(lines.size(), 5u) << f;
  EXPECT_EQ(lines[0], "Authentication-Results: \"my host\";");
  EXPECT_EQ(lines[1], "\tspf=pass smtp.mailfrom=user.name+tag@example.com;");
  EXPECT_EQ(lines[2], "\tspf=pass smtp.mailfrom=@example.com;");
  EXPECT_EQ(lines[3], "\tspf=pass smtp.mailfrom=\"\\\"odd local\\\"@example.com\";");
  EXPECT_EQ(lines[4],
            "\tdkim=pass header.d=example.com header.s=s header.b=\"ab/c+d=e\"");
}

TEST(AuthResultsTest, CommentsAreEscaped) {
  std::string f = FormatAuthResults(
      "mx", {DmarcAuthResult("fail", "example.com", "a (b) c\\")});
  EXPECT_NE(f.find("dmarc=fail (a \\(b\\) c\\\\) header.from=example.com"),
            std::string::npos) << f;
}

TEST(AuthResultsTest, NoFieldInjection) {
  // Control characters could end the field and start another.
  std::string f = FormatAuthResults(
      "mx.example.org\r\nX-Injected: 1",
      {SpfAuthResult("pass", "example.com\r\nX-Evil: yes"),
       DmarcAuthResult("pass;\r\nX", "example.com", "c\r\nX-Evil: 1")});
  for (const std::string& line : Lines(f)) {
    EXPECT_TRUE(line.rfind("Authentication-Results:", 0) == 0 ||
                line[0] == '\t') << line;
  }
  EXPECT_NE(f.find("dmarc=passx "), std::string::npos) << f;
}

TEST(AuthResultsTest, LongValuesFold) {
  std::vector<AuthMethodResult> results;
  for (int i = 0; i < 3; ++i) {
    results.push_back(DkimAuthResult(
        "pass", "a-rather-long-subdomain-name.of-a-long-organisation.example.com",
        "selector-with-a-long-name-2024", "abcdefghijklmnop"));
  }
  std::string f = FormatAuthResults("mx.example.org", results);
  auto lines = Lines(f);
  ASSERT_GT(lines.size(), 4u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_LE(lines[i].size(), 79u) << lines[i];  // 78 and the ';'
    if (i > 0) {
      EXPECT_EQ(lines[i][0], '\t');
    }
  }
  // Unfolding gives back single spaces between the parts.
  std::string unfolded;
  for (const std::string& l : lines) unfolded += l;
  EXPECT_NE(unfolded.find("header.d=a-rather-long-subdomain-name.of-a-long-organisation"
                          ".example.com\t header.s=selector-with-a-long-name-2024"),
            std::string::npos) << f;
}

TEST(AuthResultsTest, ParseAuthServId) {
  EXPECT_EQ(ParseAuthServId(" mx.example.org; spf=pass smtp.mailfrom=a.example"),
            "mx.example.org");
  EXPECT_EQ(ParseAuthServId("mx.example.org 1; none"), "mx.example.org");
  EXPECT_EQ(ParseAuthServId("mx.example.org"), "mx.example.org");
  EXPECT_EQ(ParseAuthServId(" (a comment (nested; x)) \r\n\tMX.example.org;none"),
            "MX.example.org");
  EXPECT_EQ(ParseAuthServId("(c)mx.example.org(c);none"), "mx.example.org");
  EXPECT_EQ(ParseAuthServId("\"mx.example.org\"; none"), "mx.example.org");
  EXPECT_EQ(ParseAuthServId("\"my \\\"host\\\"\"; none"), "my \"host\"");
  EXPECT_EQ(ParseAuthServId(""), std::nullopt);
  EXPECT_EQ(ParseAuthServId("   (only a comment)  "), std::nullopt);
  EXPECT_EQ(ParseAuthServId("; spf=pass"), std::nullopt);
  EXPECT_EQ(ParseAuthServId("(unterminated mx.example.org; none"), std::nullopt);
  EXPECT_EQ(ParseAuthServId("\"unterminated; none"), "unterminated; none");
}

TEST(AuthResultsTest, ClaimsOurId) {
  // RFC 8601 5: fields claiming our authserv-id come off incoming mail.
  EXPECT_TRUE(ClaimsAuthServId(" mx.example.org; spf=pass", "mx.example.org"));
  EXPECT_TRUE(ClaimsAuthServId(" MX.Example.ORG; dkim=pass", "mx.example.org"));
  EXPECT_TRUE(ClaimsAuthServId(" (forged) mx.example.org.;none", "mx.example.org"));
  EXPECT_TRUE(ClaimsAuthServId(" \"mx.example.org\"; none", "mx.example.org"));
  EXPECT_TRUE(ClaimsAuthServId(" mx.example.org 1; none", "mx.example.org."));
  EXPECT_FALSE(ClaimsAuthServId(" mx.example.net; spf=pass", "mx.example.org"));
  EXPECT_FALSE(ClaimsAuthServId(" mx.example.org.evil; none", "mx.example.org"));
  EXPECT_FALSE(ClaimsAuthServId(" example.org; none", "mx.example.org"));
  EXPECT_FALSE(ClaimsAuthServId("", "mx.example.org"));
  EXPECT_FALSE(ClaimsAuthServId(" ; none", ""));
}

TEST(AuthResultsTest, WrittenIdReadsBack) {
  for (const char* id : {"mx.example.org", "my host", "a\"b", "x;y", "(c)", "a\\b"}) {
    std::string f = FormatAuthResults(id, {SpfAuthResult("pass", "a.example")});
    std::string body = f.substr(f.find(':') + 1);
    EXPECT_EQ(ParseAuthServId(body), id) << f;
    EXPECT_TRUE(ClaimsAuthServId(body, id)) << f;
  }
}

}  // namespace
}  // namespace tern::mailauth
