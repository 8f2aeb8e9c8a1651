// Unit tests for SPF (RFC 7208): the record and macro parsers, the RFC 7.4
// macro examples, and check_host() over a scripted resolver.
#include "mailauth/spf.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/fake_resolver.h"

namespace tern::mailauth {
namespace {

// ---------------------------------------------------------------- parser

TEST(SpfParseTest, RecordSelection) {
  EXPECT_TRUE(IsSpfRecord("v=spf1"));
  EXPECT_TRUE(IsSpfRecord("v=spf1 -all"));
  EXPECT_TRUE(IsSpfRecord("V=sPf1 +all"));
  EXPECT_FALSE(IsSpfRecord("v=spf10"));
  EXPECT_FALSE(IsSpfRecord("v=spf1mx"));  // strings joined without spaces
  EXPECT_FALSE(IsSpfRecord("spf2.0/pra -all"));
  EXPECT_FALSE(IsSpfRecord(""));
}

TEST(SpfParseTest, MechanismsAndQualifiers) {
  auto r = ParseSpfRecord(
      "v=spf1 +a -mx:mail.example.com/24 ~ptr ?include:_spf.example.com "
      "ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{i}.bl.example.com all");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->mechanisms.size(), 8u);
  EXPECT_EQ(r->mechanisms[0].type, SpfMechanismType::kA);
  EXPECT_EQ(r->mechanisms[0].qualifier, SpfQualifier::kPass);
  EXPECT_FALSE(r->mechanisms[0].target);
  EXPECT_EQ(r->mechanisms[1].type, SpfMechanismType::kMx);
  EXPECT_EQ(r->mechanisms[1].qualifier, SpfQualifier::kFail);
  EXPECT_EQ(FormatMacroString(*r->mechanisms[1].target), "mail.example.com");
  EXPECT_EQ(r->mechanisms[1].prefix4, 24);
  EXPECT_EQ(r->mechanisms[1].prefix6, 128);
  EXPECT_EQ(r->mechanisms[2].qualifier, SpfQualifier::kSoftFail);
  EXPECT_EQ(r->mechanisms[3].qualifier, SpfQualifier::kNeutral);
  EXPECT_EQ(r->mechanisms[4].type, SpfMechanismType::kIp4);
  EXPECT_EQ(r->mechanisms[4].prefix4, 24);
  EXPECT_EQ(r->mechanisms[5].prefix6, 32);
  EXPECT_EQ(r->mechanisms[6].type, SpfMechanismType::kExists);
  EXPECT_EQ(r->mechanisms[7].type, SpfMechanismType::kAll);
}

TEST(SpfParseTest, DualCidrAndDomainsWithSlashes) {
  auto r = ParseSpfRecord(
      "v=spf1 a/24//64 mx//0 a:foo:bar/baz.example.com "
      "a:foo.example.com/24//64");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->mechanisms[0].prefix4, 24);
  EXPECT_EQ(r->mechanisms[0].prefix6, 64);
  EXPECT_EQ(r->mechanisms[1].prefix4, 32);
  EXPECT_EQ(r->mechanisms[1].prefix6, 0);
  // 7.1: "/" and ":" may appear in a domain-spec; only a trailing all-digit
  // part is a prefix length.
  EXPECT_EQ(FormatMacroString(*r->mechanisms[2].target),
            "foo:bar/baz.example.com");
  EXPECT_EQ(r->mechanisms[2].prefix4, 32);
  EXPECT_EQ(FormatMacroString(*r->mechanisms[3].target), "foo.example.com");
  EXPECT_EQ(r->mechanisms[3].prefix4, 24);
  EXPECT_EQ(r->mechanisms[3].prefix6, 64);
}

TEST(SpfParseTest, Modifiers) {
  auto r = ParseSpfRecord(
      "v=spf1 Redirect=_spf.example.com exp=explain.%{d} "
      "moo.cow-far_out=man:dog/cat default=+ ");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->redirect);
  EXPECT_EQ(FormatMacroString(*r->redirect), "_spf.example.com");
  ASSERT_TRUE(r->exp);
  EXPECT_EQ(FormatMacroString(*r->exp), "explain.%{d}");
  ASSERT_EQ(r->unknown.size(), 2u);
  EXPECT_EQ(r->unknown[0].name, "moo.cow-far_out");
}

TEST(SpfParseTest, EmptyRecordAndSpaces) {
  auto empty = ParseSpfRecord("v=spf1");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->mechanisms.empty());
  auto spaced = ParseSpfRecord("v=spf1   a   -all   ");
  ASSERT_TRUE(spaced);
  EXPECT_EQ(spaced->mechanisms.size(), 2u);
}

TEST(SpfParseTest, SyntaxErrors) {
  // Each is a permerror anywhere in the record (RFC 7208 4.6).
  const char* bad[] = {
      "v=spf1 ip4:1.2.3.4 -all moo",  // unknown mechanism
      "v=spf1 -all.",                 // 5.1
      "v=spf1 -all:foobar",
      "v=spf1 -all/8",
      "v=spf1 ptr/0",  // 5.5
      "v=spf1 ptr:",
      "v=spf1 a/33",  // 5.3
      "v=spf1 a//129",
      "v=spf1 a/24/64",
      "v=spf1 a:",
      "v=spf1 mx:",
      "v=spf1 mx/33",
      "v=spf1 ip4:1.2.3.4/33",  // 5.6
      "v=spf1 ip4:1.2.3.4/032",
      "v=spf1 ip4",
      "v=spf1 ip4:1.2.3.4:8080",
      "v=spf1 ip4:1.2.3",
      "v=spf1 ip4:1.2.3.4//32",
      "v=spf1 ip4:01.2.3.4",
      "v=spf1 ip4:::1",
      "v=spf1 ip6",
      "v=spf1 ip6:::1.1.1.1/129",
      "v=spf1 ip6:::1.1.1.1//33",
      "v=spf1 ip6::CAFE::BABE",
      "v=spf1 ip6:1.2.3.4",
      "v=spf1 include",  // 5.2
      "v=spf1 include:",
      "v=spf1 include:ip5.example.com/24",
      "v=spf1 exists",  // 5.7
      "v=spf1 exists:",
      "v=spf1 exists:mail.example.com/24",
      "v=spf1 exp=",  // 6.2
      "v=spf1 exp=-all",
      "v=spf1 redirect=",  // 6.1
      "v=spf1 redirect=-all ?all",
      "v=spf1 exp=a.example.com exp=b.example.com",  // 6
      "v=spf1 redirect=a.example.com redirect=a.example.com",
      "v=spf1 -redirect=a.example.com",
      "v=spf1 foo=%abc",  // A: macro syntax
      "v=spf1 =all",      // A: modifier name
      "v=spf1 1up=foo",
      "v=spf1 moo.cow/far_out=man:dog/cat",
      "v=spf1 moo.cow:far_out=man:dog/cat",
      "v=spf1 redirect:t2.example.com",
      "v=spf1 a:museum",  // 7.1 domain-end
      "v=spf1 a:museum.",
      "v=spf1 a:abc.123",
      "v=spf1 a:example.-com",
      "v=spf1 a:example.com:8080",
      "v=spf1 a:foo-bar",
      "v=spf1 -exists:%(ir).sbl.example.com",  // 7.1 macros
      "v=spf1 exists:foo%.sbl.example.com",
      "v=spf1 a:%{a}.example.com",
      "v=spf1 exp=%{r}.example.com",  // c, r, t: exp text only
      "v=spf1 a:%{d0}.example.com",
      "v=spf1 a:%{d.example.com",
  };
  for (const char* text : bad) {
    EXPECT_FALSE(ParseSpfRecord(text)) << text;
  }
  // Separators are spaces only; control and 8-bit octets are errors.
  EXPECT_FALSE(ParseSpfRecord(std::string("v=spf1 a:foo.example.com\0", 25)));
  EXPECT_FALSE(ParseSpfRecord("v=spf1 a:ctrl.example.com\rptr -all"));
  EXPECT_FALSE(ParseSpfRecord("v=spf1 ip4:192.0.2.5\n include:x.example.com"));
  EXPECT_FALSE(ParseSpfRecord("v=spf1\t-all"));
  EXPECT_FALSE(
      ParseSpfRecord("v=spf1 \x80"
                     "a:example.net -all"));
  EXPECT_FALSE(ParseSpfRecord("v=spf1 a:\xef\xbb\xbfgarbage.example.net"));
  EXPECT_FALSE(ParseSpfRecord("v=spf10 -all"));
}

TEST(SpfParseTest, ErrorsSayWhatIsWrong) {
  auto r = ParseSpfRecord("v=spf1 ip4:1.2.3.4 -all moo");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("moo"), std::string::npos);
  auto twice = ParseSpfRecord("v=spf1 exp=a.example.com exp=b.example.com");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("more than once"), std::string::npos);
}

TEST(SpfParseTest, ValidEdgeCases) {
  const char* good[] = {
      "v=spf1 a:foo.example.xn--zckzah -all",  // a toplabel with dashes
      "v=spf1 A:Example.COM MX PTR:Example.com -ALL",
      "v=spf1 ip6:::FFFF:1.2.3.4 ip6:Cafe:Babe:8000::/33 ip6:::1.1.1.1/0",
      "v=spf1 ip4:0.0.0.0/0",
      "v=spf1 a:%{H}.bar -all",
      "v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
      "v=spf1 exists:%{i}.%{l2r-}.user.%{d2}",
      "v=spf1 exists:%{l2r+-}.user.%{d2}",
      "v=spf1 redirect=%{d}.d.spf.example.com.",
      "v=spf1 include:o.spf.example.com. ~all",
      "v=spf1 a:mail.example...com -all",  // domain-spec syntax allows it
      "v=spf1 -all exp=foobar.%{o}.%{o}.example.com",
      "v=spf1 exp=msg8.%{D2} -all",
      "v=spf1 unknown=%{c}%{r}%{t}",  // the grammar's macro-letter
  };
  for (const char* text : good) {
    auto r = ParseSpfRecord(text);
    EXPECT_TRUE(r) << text << ": " << (r ? "" : r.error().message);
  }
}

TEST(SpfParseTest, FormatParsesBack) {
  const char* records[] = {
      "v=spf1 +a -mx:mail.example.com/24//64 ~ptr:Example.com "
      "?include:_spf.example.com ip4:192.0.2.0/24 ip6:2001:DB8::/32 "
      "exists:%{ir}.%{l1r+-}._spf.%{d} all",
      "v=spf1 a:foo:bar/baz.example.com a//0 mx/0 ip4:1.2.3.4/32 "
      "redirect=%{d}.x.example.com. exp=%{D2}.e.example.com foo=%%%_%-",
  };
  for (const char* text : records) {
    auto r = ParseSpfRecord(text);
    ASSERT_TRUE(r) << text;
    std::string formatted = FormatSpfRecord(*r);
    auto again = ParseSpfRecord(formatted);
    ASSERT_TRUE(again) << formatted;
    EXPECT_EQ(*again, *r) << formatted;
    EXPECT_EQ(FormatSpfRecord(*again), formatted);
  }
}

// ---------------------------------------------------------------- macros

MacroValues Rfc74Values(bool ipv6) {
  // RFC 7208 7.4: the sender strong-bad@email.example.com, the client
  // 192.0.2.3 or 2001:db8::cb01, validated as mx.example.org.
  MacroValues v;
  v.sender = "strong-bad@email.example.com";
  v.domain = "email.example.com";
  v.ip = *ParseIpAddress(ipv6 ? "2001:db8::cb01" : "192.0.2.3");
  v.ipv4 = !ipv6;
  v.validated = "mx.example.org";
  v.helo = "mx.example.org";
  return v;
}

std::string Expand(std::string_view text, const MacroValues& values,
                   MacroUse use = MacroUse::kDomainSpec) {
  auto macros = ParseMacroString(text, use);
  if (!macros) return "error: " + macros.error().message;
  auto out = ExpandMacros(*macros, values);
  return out ? *out : "error: " + out.error().message;
}

TEST(SpfMacroTest, Rfc7208Section74Examples) {
  MacroValues v = Rfc74Values(false);
  EXPECT_EQ(Expand("%{s}", v), "strong-bad@email.example.com");
  EXPECT_EQ(Expand("%{o}", v), "email.example.com");
  EXPECT_EQ(Expand("%{d}", v), "email.example.com");
  EXPECT_EQ(Expand("%{d4}", v), "email.example.com");
  EXPECT_EQ(Expand("%{d3}", v), "email.example.com");
  EXPECT_EQ(Expand("%{d2}", v), "example.com");
  EXPECT_EQ(Expand("%{d1}", v), "com");
  EXPECT_EQ(Expand("%{dr}", v), "com.example.email");
  EXPECT_EQ(Expand("%{d2r}", v), "example.email");
  EXPECT_EQ(Expand("%{l}", v), "strong-bad");
  EXPECT_EQ(Expand("%{l-}", v), "strong.bad");
  EXPECT_EQ(Expand("%{lr}", v), "strong-bad");
  EXPECT_EQ(Expand("%{lr-}", v), "bad.strong");
  EXPECT_EQ(Expand("%{l1r-}", v), "strong");
  EXPECT_EQ(Expand("%{ir}.%{v}._spf.%{d2}", v),
            "3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(Expand("%{lr-}.lp._spf.%{d2}", v),
            "bad.strong.lp._spf.example.com");
  EXPECT_EQ(Expand("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", v),
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
  EXPECT_EQ(Expand("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", v),
            "3.2.0.192.in-addr.strong.lp._spf.example.com");
  EXPECT_EQ(Expand("%{d2}.trusted-domains.example.net", v),
            "example.com.trusted-domains.example.net");

  MacroValues v6 = Rfc74Values(true);
  EXPECT_EQ(Expand("%{ir}.%{v}._spf.%{d2}", v6),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
            ".ip6._spf.example.com");
}

TEST(SpfMacroTest, OtherLetters) {
  MacroValues v = Rfc74Values(false);
  v.now = 1700000000;
  EXPECT_EQ(Expand("%{p} %{h} %{c} %{r} %{t}", v, MacroUse::kExplanation),
            "mx.example.org mx.example.org 192.0.2.3 unknown 1700000000");
  v.receiver = "mx.tern.example";
  v.validated.clear();
  EXPECT_EQ(Expand("%{r} %{p}", v, MacroUse::kExplanation),
            "mx.tern.example unknown");
  MacroValues v6 = Rfc74Values(true);
  EXPECT_EQ(Expand("%{c} %{v} %{i}", v6, MacroUse::kExplanation),
            "2001:db8::cb01 ip6 "
            "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1");
}

TEST(SpfMacroTest, EscapesAndUrlEncoding) {
  MacroValues v = Rfc74Values(false);
  EXPECT_EQ(Expand("macro%%percent%_%_space%-url-space.example.com", v),
            "macro%percent  space%20url-space.example.com");
  // 7.3: upper-case macros are URL-escaped; "~" is unreserved.
  v.sender = "~jack&jill=up-a_b3.c@e8.example.com";
  EXPECT_EQ(
      Expand("http://example.com/why.html?l=%{L}", v, MacroUse::kExplanation),
      "http://example.com/why.html?l=~jack%26jill%3Dup-a_b3.c");
  v.helo = "JUMPIN' JUPITER";
  EXPECT_EQ(Expand("%{H}", v), "JUMPIN%27%20JUPITER");
}

TEST(SpfMacroTest, TransformersAndDelimiters) {
  MacroValues v = Rfc74Values(false);
  v.sender = "foo-bar+zip+quux@e12.example.com";
  EXPECT_EQ(Expand("%{l2r+-}", v), "bar.foo");
  v.sender = "philip-gladstone-test@e11.example.com";
  EXPECT_EQ(Expand("%{i}.%{l2r-}.user.%{d2}", v),
            "192.0.2.3.gladstone.philip.user.example.com");
  EXPECT_EQ(Expand("%{d200}", v), "email.example.com");
  EXPECT_EQ(Expand("%{dR}", v), "com.example.email");
}

TEST(SpfMacroTest, NoLocalPartIsPostmaster) {
  MacroValues v = Rfc74Values(false);
  v.sender = "@example.net";
  EXPECT_EQ(Expand("%{l}", v), "postmaster");
}

TEST(SpfMacroTest, SyntaxErrors) {
  for (const char* text : {"%", "foo%", "%x", "%(ir)", "%{", "%{d", "%{d0}",
                           "%{a}", "%{dx}", "%{d2r-x}", "a b"}) {
    EXPECT_FALSE(ParseMacroString(text, MacroUse::kDomainSpec)) << text;
  }
  for (const char* text : {"%{c}", "%{r}", "%{t}", "%{C}"}) {
    EXPECT_FALSE(ParseMacroString(text, MacroUse::kDomainSpec)) << text;
    EXPECT_TRUE(ParseMacroString(text, MacroUse::kExplanation)) << text;
  }
  EXPECT_TRUE(ParseMacroString("The %{d} policy", MacroUse::kExplanation));
  EXPECT_FALSE(ParseMacroString("The %{x}-files.", MacroUse::kExplanation));
  EXPECT_FALSE(ParseMacroString("caf\xc3\xa9", MacroUse::kExplanation));
}

TEST(SpfMacroTest, DomainSpecEnd) {
  EXPECT_TRUE(ParseDomainSpec("example.com"));
  EXPECT_TRUE(ParseDomainSpec("example.com."));
  EXPECT_TRUE(ParseDomainSpec("%{d}"));
  EXPECT_TRUE(ParseDomainSpec("foo%%"));
  EXPECT_TRUE(ParseDomainSpec("_spf.%{d2}"));
  EXPECT_FALSE(ParseDomainSpec("%{d}com"));
  EXPECT_FALSE(ParseDomainSpec(""));
  EXPECT_FALSE(ParseDomainSpec("com"));
  EXPECT_FALSE(ParseDomainSpec("example.com.."));
  EXPECT_FALSE(ParseDomainSpec("111.222.33.44"));
}

TEST(SpfMacroTest, ExpansionIsBounded) {
  MacroValues v = Rfc74Values(false);
  v.sender = std::string(200, 'x') + "@example.com";
  std::string text;
  for (int i = 0; i < 100; ++i) text += "%{s}";
  EXPECT_EQ(Expand(text, v).rfind("error:", 0), 0u);
}

// ---------------------------------------------------------------- check_host

class SpfCheckTest : public ::testing::Test {
 protected:
  SpfCheckTest() : dns_(io_.get_executor()) {}

  SpfOutcome Check(const std::string& ip, const std::string& mail_from,
                   const std::string& helo = "mail.example.com") {
    SpfRequest request;
    request.ip = ip;
    request.mail_from = mail_from;
    request.helo = helo;
    request.receiver = "mx.tern.example";
    request.now = 1700000000;
    request.time_limit = time_limit_;
    return Run(request);
  }

  SpfOutcome Run(SpfRequest request) {
    SpfOutcome out;
    bool done = false;
    asio::co_spawn(io_, CheckHost(dns_, std::move(request)),
                   [&](std::exception_ptr e, SpfOutcome o) {
                     EXPECT_FALSE(e);
                     out = std::move(o);
                     done = true;
                   });
    io_.run();
    io_.restart();
    EXPECT_TRUE(done);
    return out;
  }

  void Txt(const std::string& name, std::vector<std::string> txt) {
    dns_.SetTxt(name, std::move(txt));
  }
  void Aaaa(const std::string& name, std::vector<std::string> addresses) {
    dns::Answer a;
    a.status = dns::Status::kOk;
    a.addresses = std::move(addresses);
    dns_.Set(name, dns::RrType::kAaaa, a);
  }
  void Ptr(const std::string& name, std::vector<std::string> names) {
    dns::Answer a;
    a.status = dns::Status::kOk;
    a.names = std::move(names);
    dns_.Set(name, dns::RrType::kPtr, a);
  }
  void TempFail(const std::string& name, dns::RrType type) {
    dns::Answer a;
    a.status = dns::Status::kTempFail;
    a.error = "SERVFAIL";
    dns_.Set(name, type, a);
  }
  // An existing name without records of the type (NODATA).
  void NoData(const std::string& name, dns::RrType type) {
    dns::Answer a;
    a.status = dns::Status::kOk;
    dns_.Set(name, type, a);
  }

  asio::io_context io_;
  dns::FakeResolver dns_;
  std::chrono::milliseconds time_limit_ = std::chrono::seconds(20);
};

TEST_F(SpfCheckTest, NoneWithoutRecord) {
  EXPECT_EQ(Check("192.0.2.1", "a@nowhere.example.com").result,
            SpfResult::kNone);  // NXDOMAIN
  Txt("other.example.com", {"google-site-verification=abc", "v=spf10 -all"});
  EXPECT_EQ(Check("192.0.2.1", "a@other.example.com").result, SpfResult::kNone);
  NoData("nodata.example.com", dns::RrType::kTxt);
  EXPECT_EQ(Check("192.0.2.1", "a@nodata.example.com").result,
            SpfResult::kNone);
}

TEST_F(SpfCheckTest, MalformedDomainsAreNone) {
  // 4.3: no query is even made.
  Txt("example.com", {"v=spf1 -all"});
  EXPECT_EQ(
      Check("192.0.2.1", "a@" + std::string(64, 'a') + ".example.com").result,
      SpfResult::kNone);
  EXPECT_EQ(Check("192.0.2.1", "a@a..example.com").result, SpfResult::kNone);
  EXPECT_EQ(Check("192.0.2.1", "a@[192.0.2.1]").result, SpfResult::kNone);
  EXPECT_EQ(Check("192.0.2.1", "", "A2345678").result, SpfResult::kNone);
  EXPECT_EQ(Check("192.0.2.1", "", "[192.0.2.1]").result, SpfResult::kNone);
  EXPECT_EQ(dns_.queries(), 0);
}

TEST_F(SpfCheckTest, RecordSelection) {
  Txt("two.example.com", {"v=spf1 -all", "V=SPF1 +all"});
  EXPECT_EQ(Check("192.0.2.1", "a@two.example.com").result,
            SpfResult::kPermError);
  Txt("case.example.com", {"hello", "v=SpF1 ~all"});
  EXPECT_EQ(Check("192.0.2.1", "a@case.example.com").result,
            SpfResult::kSoftFail);
  Txt("empty.example.com", {"v=spf1"});
  EXPECT_EQ(Check("192.0.2.1", "a@empty.example.com").result,
            SpfResult::kNeutral);
  Txt("bad.example.com", {"v=spf1 ip4:192.0.2.1 -all moo"});
  SpfOutcome bad = Check("192.0.2.1", "a@bad.example.com");
  EXPECT_EQ(bad.result, SpfResult::kPermError);
  EXPECT_NE(bad.reason.find("moo"), std::string::npos) << bad.reason;
  TempFail("down.example.com", dns::RrType::kTxt);
  EXPECT_EQ(Check("192.0.2.1", "a@down.example.com").result,
            SpfResult::kTempError);
}

TEST_F(SpfCheckTest, TrailingDotIsDropped) {
  Txt("example.com", {"v=spf1 -all exp=msg.example.com"});
  Txt("msg.example.com", {"%{d} %{o}"});
  SpfOutcome o = Check("192.0.2.1", "", "example.com.");
  EXPECT_EQ(o.result, SpfResult::kFail);
  EXPECT_EQ(o.explanation, "example.com example.com");
  EXPECT_EQ(o.domain, "example.com");
}

TEST_F(SpfCheckTest, Ip4AndIp6) {
  Txt("example.com", {"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"});
  SpfOutcome pass = Check("192.0.2.77", "a@example.com");
  EXPECT_EQ(pass.result, SpfResult::kPass);
  EXPECT_EQ(pass.identity, "mailfrom");
  EXPECT_EQ(pass.domain, "example.com");
  EXPECT_NE(pass.reason.find("ip4:192.0.2.0/24"), std::string::npos);
  EXPECT_EQ(Check("198.51.100.1", "a@example.com").result, SpfResult::kFail);
  EXPECT_EQ(Check("2001:db8:1::1", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("2001:db9::1", "a@example.com").result, SpfResult::kFail);
  // 5: an IPv4-mapped client is an IPv4 client.
  EXPECT_EQ(Check("::ffff:192.0.2.9", "a@example.com").result,
            SpfResult::kPass);
  EXPECT_EQ(dns_.queries(), 5);  // one TXT each, nothing else
}

TEST_F(SpfCheckTest, MappedNetworksDoNotMatchIpv4Clients) {
  Txt("example.com", {"v=spf1 ip6:::ffff:1.2.3.4 ip6:::/0"});
  EXPECT_EQ(Check("1.2.3.4", "a@example.com").result, SpfResult::kNeutral);
  EXPECT_EQ(Check("::FFFF:1.2.3.4", "a@example.com").result,
            SpfResult::kNeutral);
  EXPECT_EQ(Check("cafe::1", "a@example.com").result, SpfResult::kPass);
}

TEST_F(SpfCheckTest, AMechanism) {
  Txt("example.com", {"v=spf1 a a:other.example.com/24 a:v6.example.com//64 "
                      "-all"});
  dns_.SetA("example.com", {"192.0.2.1"});
  dns_.SetA("other.example.com", {"198.51.100.1", "203.0.113.9"});
  Aaaa("v6.example.com", {"2001:db8:1:2::1"});
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("203.0.113.200", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("192.0.2.2", "a@example.com").result, SpfResult::kFail);
  EXPECT_EQ(Check("2001:db8:1:2:ffff::9", "a@example.com").result,
            SpfResult::kPass);
  EXPECT_EQ(Check("2001:db8:1:3::1", "a@example.com").result, SpfResult::kFail);
}

TEST_F(SpfCheckTest, AddressLookupFailureIsTempError) {
  Txt("example.com", {"v=spf1 a:broken.example.com -all"});
  TempFail("broken.example.com", dns::RrType::kA);
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kTempError);
}

TEST_F(SpfCheckTest, MxMechanism) {
  Txt("example.com", {"v=spf1 mx/24 -all"});
  dns_.SetMx("example.com", {{10, "mx1.example.com"}, {20, "mx2.example.com"}});
  dns_.SetA("mx1.example.com", {"192.0.2.10"});
  dns_.SetA("mx2.example.com", {"198.51.100.20"});
  EXPECT_EQ(Check("198.51.100.99", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("203.0.113.1", "a@example.com").result, SpfResult::kFail);
}

TEST_F(SpfCheckTest, MxHasNoImplicitMxAndNullMxMatchesNothing) {
  // 5.4: no MX records means no match, not the domain's own address.
  Txt("nomx.example.com", {"v=spf1 mx"});
  dns_.SetA("nomx.example.com", {"192.0.2.1"});
  NoData("nomx.example.com", dns::RrType::kMx);
  EXPECT_EQ(Check("192.0.2.1", "a@nomx.example.com").result,
            SpfResult::kNeutral);
  Txt("null.example.com", {"v=spf1 mx"});
  dns_.SetMx("null.example.com", {{0, ""}});
  EXPECT_EQ(Check("192.0.2.1", "a@null.example.com").result,
            SpfResult::kNeutral);
}

TEST_F(SpfCheckTest, MoreThanTenMxIsPermError) {
  Txt("example.com", {"v=spf1 mx"});
  std::vector<dns::MxRecord> mx;
  for (int i = 0; i < 11; ++i) mx.push_back({uint16_t(i), "mx.example.com"});
  dns_.SetMx("example.com", mx);
  dns_.SetA("mx.example.com", {"192.0.2.1"});
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kPermError);
  mx.pop_back();
  dns_.SetMx("example.com", mx);
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kPass);
}

TEST_F(SpfCheckTest, PtrMechanism) {
  Txt("example.com", {"v=spf1 ptr -all"});
  Ptr("1.2.0.192.in-addr.arpa",
      {"liar.example.com", "mail.example.com", "other.test"});
  dns_.SetA("mail.example.com", {"192.0.2.1"});
  dns_.SetA("liar.example.com", {"192.0.2.99"});  // does not validate
  dns_.SetA("other.test", {"192.0.2.1"});         // not under the target
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kPass);
  Ptr("1.2.0.192.in-addr.arpa", {"liar.example.com", "other.test"});
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kFail);
  // 5.5: a failed PTR lookup is no match, not temperror.
  TempFail("1.2.0.192.in-addr.arpa", dns::RrType::kPtr);
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kFail);
}

TEST_F(SpfCheckTest, PtrForIpv6) {
  Txt("example.com", {"v=spf1 ptr:Example.COM -all"});
  Ptr("1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6."
      "arpa",
      {"mail.example.com"});
  Aaaa("mail.example.com", {"2001:db8::cb01"});
  EXPECT_EQ(Check("2001:db8::cb01", "a@example.com").result, SpfResult::kPass);
}

TEST_F(SpfCheckTest, ExistsAlwaysAsksForA) {
  Txt("example.com", {"v=spf1 exists:%{ir}.%{v}.bl.example.com -all"});
  dns_.SetA("1.2.0.192.in-addr.bl.example.com", {"127.0.0.2"});
  dns_.SetA(
      "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.bl."
      "example.com",
      {"127.0.0.2"});
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("192.0.2.2", "a@example.com").result, SpfResult::kFail);
  EXPECT_EQ(Check("2001:db8::cb01", "a@example.com").result, SpfResult::kPass);
}

TEST_F(SpfCheckTest, IncludeResults) {
  // 5.2: pass matches; fail, softfail, neutral do not; temperror stays;
  // permerror and none become permerror.
  Txt("pass.example.com", {"v=spf1 +all"});
  Txt("fail.example.com", {"v=spf1 -all"});
  Txt("soft.example.com", {"v=spf1 ~all"});
  Txt("neutral.example.com", {"v=spf1 ?all"});
  Txt("broken.example.com", {"v=spf1 include +all"});
  TempFail("down.example.com", dns::RrType::kTxt);
  struct Case {
    const char* target;
    SpfResult want;
  } cases[] = {
      {"pass.example.com", SpfResult::kFail},
      {"fail.example.com", SpfResult::kSoftFail},
      {"soft.example.com", SpfResult::kSoftFail},
      {"neutral.example.com", SpfResult::kSoftFail},
      {"broken.example.com", SpfResult::kPermError},
      {"down.example.com", SpfResult::kTempError},
      {"missing.example.com", SpfResult::kPermError},
  };
  for (const Case& c : cases) {
    Txt("example.com", {std::string("v=spf1 -include:") + c.target + " ~all"});
    SpfOutcome o = Check("192.0.2.1", "a@example.com");
    EXPECT_EQ(o.result, c.want) << c.target << ": " << o.reason;
  }
}

TEST_F(SpfCheckTest, RedirectSemantics) {
  // 6.1: the target's result stands, with its domain as %{d} and its own
  // exp=; the first record's exp= is not used.
  Txt("example.com", {"v=spf1 ip4:198.51.100.1 exp=exp1.example.com "
                      "redirect=_spf.example.com"});
  Txt("_spf.example.com", {"v=spf1 a -all exp=exp2.example.com"});
  dns_.SetA("_spf.example.com", {"192.0.2.1"});
  dns_.SetA("example.com", {"192.0.2.2"});
  Txt("exp1.example.com", {"wrong"});
  Txt("exp2.example.com", {"%{d} says no"});
  EXPECT_EQ(Check("198.51.100.1", "a@example.com").result, SpfResult::kPass);
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kPass);
  SpfOutcome fail = Check("192.0.2.2", "a@example.com");
  EXPECT_EQ(fail.result, SpfResult::kFail);
  EXPECT_EQ(fail.explanation, "_spf.example.com says no");
  // No record at the target: permerror rather than none.
  Txt("lost.example.com", {"v=spf1 redirect=nowhere.example.com"});
  EXPECT_EQ(Check("192.0.2.1", "a@lost.example.com").result,
            SpfResult::kPermError);
}

TEST_F(SpfCheckTest, RedirectIsIgnoredAfterAll) {
  Txt("example.com", {"v=spf1 redirect=example.com ~all"});
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").result, SpfResult::kSoftFail);
}

TEST_F(SpfCheckTest, Explanation) {
  Txt("example.com", {"v=spf1 -all exp=why.%{d}"});
  Txt("why.example.com",
      {"%{i} may not send for %{o} (%{s}, via %{h}, checked by %{r} at %{t})"});
  SpfOutcome o = Check("192.0.2.1", "joe@example.com", "helo.example.net");
  EXPECT_EQ(o.result, SpfResult::kFail);
  EXPECT_EQ(o.explanation,
            "192.0.2.1 may not send for example.com (joe@example.com, via "
            "helo.example.net, checked by mx.tern.example at 1700000000)");
}

TEST_F(SpfCheckTest, ExplanationProblemsAreIgnored) {
  // 6.2: several records, none, DNS errors, bad syntax or non-ASCII text:
  // as if there were no exp=.
  Txt("two.example.com", {"one", "two"});
  Txt("syntax.example.com", {"The %{x}-files."});
  Txt("utf8.example.com", {"\xef\xbb\xbf"
                           "Explanation"});
  TempFail("down.example.com", dns::RrType::kTxt);
  for (const char* target : {"two", "syntax", "utf8", "down", "missing"}) {
    Txt("example.com",
        {std::string("v=spf1 -all exp=") + target + ".example.com"});
    SpfOutcome o = Check("192.0.2.1", "a@example.com");
    EXPECT_EQ(o.result, SpfResult::kFail) << target;
    EXPECT_EQ(o.explanation, "") << target;
  }
}

TEST_F(SpfCheckTest, IncludeIgnoresTheIncludedExp) {
  Txt("example.com",
      {"v=spf1 include:inner.example.com -all exp=outer-exp.example.com"});
  Txt("inner.example.com", {"v=spf1 -all exp=inner-exp.example.com"});
  Txt("outer-exp.example.com", {"Correct!"});
  Txt("inner-exp.example.com", {"Wrong"});
  SpfOutcome o = Check("192.0.2.1", "a@example.com");
  EXPECT_EQ(o.result, SpfResult::kFail);
  EXPECT_EQ(o.explanation, "Correct!");
}

TEST_F(SpfCheckTest, ValidatedNameMacro) {
  Txt("example.com", {"v=spf1 -all exp=msg.example.com"});
  Txt("msg.example.com", {"connect from %{p}"});
  Ptr("1.2.0.192.in-addr.arpa", {"other.test", "mx.example.com"});
  dns_.SetA("other.test", {"192.0.2.1"});
  dns_.SetA("mx.example.com", {"192.0.2.1"});
  // 7.3: a name under <domain> is preferred.
  EXPECT_EQ(Check("192.0.2.1", "a@example.com").explanation,
            "connect from mx.example.com");
  // Nothing validates: "unknown".
  EXPECT_EQ(Check("192.0.2.2", "a@example.com").explanation,
            "connect from unknown");
}

TEST_F(SpfCheckTest, HeloIdentity) {
  // 2.3, 2.4: the null reverse-path checks postmaster@HELO.
  Txt("mail.example.com", {"v=spf1 -all exp=msg.example.com"});
  Txt("msg.example.com", {"%{s} %{l} %{o} %{d}"});
  SpfOutcome o = Check("192.0.2.1", "");
  EXPECT_EQ(o.identity, "helo");
  EXPECT_EQ(o.domain, "mail.example.com");
  EXPECT_EQ(o.result, SpfResult::kFail);
  EXPECT_EQ(o.explanation,
            "postmaster@mail.example.com postmaster mail.example.com "
            "mail.example.com");
}

TEST_F(SpfCheckTest, TenDnsTermsAtMost) {
  // 4.6.4: counted as evaluated; ip4 does not count.
  Txt("ten.example.com", {"v=spf1 a a a a a a a a a a ip4:192.0.2.1 -all"});
  Txt("eleven.example.com",
      {"v=spf1 a a a a a a a a a a a ip4:192.0.2.1 -all"});
  for (const char* d : {"ten.example.com", "eleven.example.com"})
    dns_.SetA(d, {"198.51.100.1"});
  SpfOutcome ten = Check("192.0.2.1", "a@ten.example.com");
  EXPECT_EQ(ten.result, SpfResult::kPass);
  EXPECT_EQ(ten.dns_terms, 10);
  EXPECT_EQ(Check("192.0.2.1", "a@eleven.example.com").result,
            SpfResult::kPermError);
}

TEST_F(SpfCheckTest, LoopsEndInPermError) {
  Txt("loop1.example.com", {"v=spf1 include:loop2.example.com"});
  Txt("loop2.example.com", {"v=spf1 include:loop1.example.com"});
  EXPECT_EQ(Check("192.0.2.1", "a@loop1.example.com").result,
            SpfResult::kPermError);
  Txt("self.example.com",
      {"v=spf1 ip4:198.51.100.1 redirect=self.example.com"});
  EXPECT_EQ(Check("192.0.2.1", "a@self.example.com").result,
            SpfResult::kPermError);
}

TEST_F(SpfCheckTest, VoidLookups) {
  // 4.6.4: two lookups that find nothing are allowed, the third is not.
  Txt("two.example.com",
      {"v=spf1 a:gone1.example.com mx:gone2.example.com ?all"});
  NoData("gone2.example.com", dns::RrType::kMx);
  SpfOutcome two = Check("192.0.2.1", "a@two.example.com");
  EXPECT_EQ(two.result, SpfResult::kNeutral);
  EXPECT_EQ(two.void_lookups, 2);
  Txt("three.example.com", {"v=spf1 a:gone1.example.com a:gone2.example.com "
                            "exists:gone3.example.com ?all"});
  EXPECT_EQ(Check("192.0.2.1", "a@three.example.com").result,
            SpfResult::kPermError);
  // The exp= lookup does not count.
  Txt("exp.example.com", {"v=spf1 a:gone1.example.com a:gone2.example.com "
                          "exp=gone3.example.com -all"});
  EXPECT_EQ(Check("192.0.2.1", "a@exp.example.com").result, SpfResult::kFail);
}

TEST_F(SpfCheckTest, InvalidTargetNamesMatchNothing) {
  Txt("example.com", {"v=spf1 a:mail.example...com a:%{H}.bar -all"});
  SpfOutcome o = Check("192.0.2.1", "a@example.com", std::string(30, '%'));
  EXPECT_EQ(o.result, SpfResult::kFail);
}

TEST_F(SpfCheckTest, LongNamesAreCutFromTheLeft) {
  // 7.3: over 253 octets, whole labels go from the left.
  Txt("somewhat.long.exp.example.com",
      {"v=spf1 -all exp=foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}."
       "example.com"});
  std::string kept;
  for (int i = 0; i < 8; ++i) kept += "somewhat.long.exp.example.com.";
  kept += "example.com";
  Txt(kept, {"Congratulations!  That was tricky."});
  SpfOutcome o = Check("192.0.2.1", "a@somewhat.long.exp.example.com");
  EXPECT_EQ(o.result, SpfResult::kFail);
  EXPECT_EQ(o.explanation, "Congratulations!  That was tricky.");
}

TEST_F(SpfCheckTest, TimeLimitGivesTempError) {
  Txt("example.com", {"v=spf1 +all"});
  time_limit_ = std::chrono::milliseconds(0);
  SpfOutcome o = Check("192.0.2.1", "a@example.com");
  EXPECT_EQ(o.result, SpfResult::kTempError);
  EXPECT_EQ(dns_.queries(), 0);
}

// The RFC 7208 suite cases whose client addresses lie in reverse zones
// libunbound keeps to itself (tests/test_spf.py reports them as expected
// failures there), with the suite's zone data.

TEST_F(SpfCheckTest, SuitePtrCaseChange) {
  Txt("e6.example.com", {"v=spf1 ptr:example.Com -all"});
  Ptr("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6."
      "arpa",
      {"mail.Example.com"});
  dns_.SetA("mail.example.com", {"1.2.3.4"});
  Aaaa("mail.example.com", {"2001:db8::1"});
  EXPECT_EQ(Check("2001:db8::1", "bar@e6.example.com").result,
            SpfResult::kPass);
}

TEST_F(SpfCheckTest, SuitePMacro) {
  Txt("e6.example.com", {"v=spf1 -all exp=e6msg.example.com"});
  Txt("e6msg.example.com", {"connect from %{p}"});
  dns_.SetA("mx.example.com", {"192.168.218.41", "192.168.218.42"});
  Ptr("40.218.168.192.in-addr.arpa", {"mx.example.com"});
  Ptr("41.218.168.192.in-addr.arpa", {"mx.example.com"});
  SpfOutcome valid = Check("192.168.218.41", "test@e6.example.com");
  EXPECT_EQ(valid.result, SpfResult::kFail);
  EXPECT_EQ(valid.explanation, "connect from mx.example.com");
  SpfOutcome novalid = Check("192.168.218.40", "test@e6.example.com");
  EXPECT_EQ(novalid.explanation, "connect from unknown");
}

TEST_F(SpfCheckTest, SuitePMacroMultiple) {
  Txt("e7.example.com", {"v=spf1 exists:%{p}.should.example.com "
                         "~exists:%{p}.ok.example.com"});
  Ptr("42.218.168.192.in-addr.arpa", {"mx.example.com", "mx.e7.example.com"});
  dns_.SetA("mx.example.com", {"192.168.218.41", "192.168.218.42"});
  dns_.SetA("mx.e7.example.com", {"192.168.218.42"});
  dns_.SetA("mx.e7.example.com.should.example.com", {"127.0.0.2"});
  dns_.SetA("mx.example.com.ok.example.com", {"127.0.0.2"});
  // 7.3: the subdomain of <domain> is preferred; the suite allows softfail
  // for implementations that take another name.
  EXPECT_EQ(Check("192.168.218.42", "test@e7.example.com").result,
            SpfResult::kPass);
}

TEST_F(SpfCheckTest, SuiteBytesBug) {
  Txt("example.org", {"v=spf1 mx redirect=_spf.example.com"});
  dns_.SetMx("example.org",
             {{10, "smtp.example.org"}, {10, "smtp1.example.com"}});
  dns_.SetA("smtp.example.org", {"198.51.100.2"});
  Aaaa("smtp.example.org", {"2001:db8:ff0:100::3"});
  dns_.SetA("smtp1.example.com", {"192.0.2.26"});
  Aaaa("smtp1.example.com", {"2001:db8:ff0:200::2"});
  Ptr("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.f.f.0.8.b.d.0.1.0.0.2.ip6."
      "arpa",
      {"smtp6-v.fe.example.org"});
  Aaaa("smtp6-v.fe.example.org", {"2001:db8:ff0:100::2"});
  Txt("_spf.example.com", {"v=spf1 ptr:fe.example.org ptr:sgp.example.com "
                           "exp=_expspf.example.org -all"});
  EXPECT_EQ(
      Check("2001:db8:ff0:100::2", "test@example.org", "example.org").result,
      SpfResult::kPass);
}

TEST_F(SpfCheckTest, SuitePtrCnameLoop) {
  // A DNS error while validating a name skips that name (5.5).
  Txt("loop.example.com", {"v=spf1 ptr"});
  Ptr("4.2.0.192.in-addr.arpa", {"loop4.example.com"});
  TempFail("loop4.example.com", dns::RrType::kA);
  EXPECT_EQ(Check("192.0.2.4", "postmaster@loop.example.com").result,
            SpfResult::kNeutral);
}

TEST_F(SpfCheckTest, BadClientAddress) {
  Txt("example.com", {"v=spf1 +all"});
  SpfOutcome o = Check("not-an-ip", "a@example.com");
  EXPECT_EQ(o.result, SpfResult::kNone);
  EXPECT_NE(o.reason.find("not an IP"), std::string::npos);
}

}  // namespace
}  // namespace tern::mailauth
