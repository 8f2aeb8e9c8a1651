// Unit tests for RFC 5321 path/mailbox parsing and Mailbox::ToString:
// quoting, literals, source routes, length limits and UTF-8 rules.
#include "smtp/protocol/address.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::smtp {
namespace {

std::optional<Mailbox> Path(std::string_view s, bool allow_null = false,
                            bool utf8 = false) {
  std::optional<PathParse> p = ParsePath(s, allow_null, utf8);
  if (!p) return std::nullopt;
  return p->mailbox;
}

TEST(AddressTest, SimplePath) {
  auto p = ParsePath("<user@example.test> SIZE=10", false, false);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->mailbox.local, "user");
  EXPECT_EQ(p->mailbox.domain, "example.test");
  EXPECT_FALSE(p->mailbox.quoted);
  EXPECT_EQ(p->rest, " SIZE=10");
  EXPECT_EQ(p->mailbox.ToString(), "user@example.test");
}

TEST(AddressTest, DotAtomLocalPart) {
  EXPECT_TRUE(Path("<first.last+tag@example.test>"));
  EXPECT_TRUE(Path("<!#$%&'*+-/=?^_`{|}~@example.test>"));
  EXPECT_FALSE(Path("<.first@example.test>"));
  EXPECT_FALSE(Path("<first.@example.test>"));
  EXPECT_FALSE(Path("<first..last@example.test>"));
  EXPECT_FALSE(Path("<fi rst@example.test>"));
  EXPECT_FALSE(Path("<first(x)@example.test>"));
  EXPECT_FALSE(Path("<@example.test>"));
  EXPECT_FALSE(Path("<user@>"));
  EXPECT_FALSE(Path("<user>"));
  EXPECT_FALSE(Path("<user@example.test"));
  EXPECT_FALSE(Path("<a@b@c>"));
}

TEST(AddressTest, QuotedLocalPartWithEscapes) {
  auto m = Path(R"(<"a b\"c\\d"@example.test>)");
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->quoted);
  EXPECT_EQ(m->local, "a b\"c\\d");
  EXPECT_EQ(m->ToString(), R"("a b\"c\\d"@example.test)");
  // An escaped ordinary character is just that character.
  m = Path(R"(<"\a"@x.test>)");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->local, "a");
}

TEST(AddressTest, QuotedDotAtomIsNotRequoted) {
  auto m = Path(R"(<"john.doe"@example.test>)");
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->quoted);
  EXPECT_EQ(m->ToString(), "john.doe@example.test");
  auto dots = Path(R"(<"john..doe"@example.test>)");
  ASSERT_TRUE(dots);
  EXPECT_EQ(dots->ToString(), R"("john..doe"@example.test)");
}

TEST(AddressTest, QuotedLocalPartRejectsControlsAndBadEscapes) {
  EXPECT_FALSE(Path("<\"a\tb\"@x.test>"));
  EXPECT_FALSE(Path("<\"a\rb\"@x.test>"));
  EXPECT_FALSE(Path(std::string_view("<\"a\0b\"@x.test>", 13)));
  EXPECT_FALSE(Path("<\"a\\\x01\"@x.test>"));
  EXPECT_FALSE(Path("<\"abc@x.test>"));  // unterminated
  EXPECT_FALSE(Path("<\"\"@x.test>"));   // empty local part
}

TEST(AddressTest, Domains) {
  EXPECT_TRUE(Path("<a@localhost>"));
  EXPECT_TRUE(Path("<a@1-2.example.test>"));
  EXPECT_TRUE(Path("<a@123.example>"));
  EXPECT_FALSE(Path("<a@example.test.>"));  // trailing dot
  EXPECT_FALSE(Path("<a@.example.test>"));
  EXPECT_FALSE(Path("<a@ex..test>"));
  EXPECT_FALSE(Path("<a@-ex.test>"));
  EXPECT_FALSE(Path("<a@ex-.test>"));
  EXPECT_FALSE(Path("<a@ex_ample.test>"));
  EXPECT_FALSE(Path("<a@exa mple.test>"));
  EXPECT_TRUE(Path("<a@" + std::string(63, 'l') + ".test>"));
  EXPECT_FALSE(Path("<a@" + std::string(64, 'l') + ".test>"));
}

TEST(AddressTest, AddressLiterals) {
  auto v4 = Path("<postmaster@[192.0.2.1]>");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->domain, "[192.0.2.1]");
  EXPECT_EQ(v4->ToString(), "postmaster@[192.0.2.1]");
  auto v6 = Path("<a@[IPv6:2001:db8::1]>");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->domain, "[IPv6:2001:db8::1]");
  EXPECT_TRUE(Path("<a@[ipv6:::1]>"));
  EXPECT_TRUE(Path("<a@[IPv6:::ffff:192.0.2.1]>"));
  EXPECT_FALSE(Path("<a@[300.1.1.1]>"));
  EXPECT_FALSE(Path("<a@[192.0.2]>"));
  EXPECT_FALSE(Path("<a@[192.0.2.1>"));
  EXPECT_FALSE(Path("<a@[IPv6:2001:db8::zz]>"));
  EXPECT_FALSE(Path("<a@[2001:db8::1]>"));     // IPv6 needs its tag
  EXPECT_FALSE(Path("<a@[x-tag:whatever]>"));  // unregistered tag
  EXPECT_FALSE(Path("<a@[]>"));
}

TEST(AddressTest, SourceRouteIsIgnored) {
  auto p = ParsePath("<@a.test,@b.test:user@c.test>", false, false);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->mailbox.ToString(), "user@c.test");
  EXPECT_TRUE(p->rest.empty());
  EXPECT_TRUE(Path("<@a.test:user@c.test>"));
  EXPECT_TRUE(Path("<@[192.0.2.1]:user@c.test>"));
  EXPECT_FALSE(Path("<@a.test,user@c.test>"));
  EXPECT_FALSE(Path("<@a.test:>"));
  EXPECT_FALSE(Path("<@:user@c.test>"));
  EXPECT_FALSE(Path("<@a.test,:user@c.test>"));
}

TEST(AddressTest, NullPath) {
  auto p = ParsePath("<> BODY=8BITMIME", true, false);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->mailbox.null());
  EXPECT_EQ(p->mailbox.ToString(), "");
  EXPECT_EQ(p->rest, " BODY=8BITMIME");
  EXPECT_FALSE(ParsePath("<>", false, false));
}

TEST(AddressTest, BracketsAreRequired) {
  // The space after "FROM:" is the caller's leniency; the path itself must
  // be bracketed (RFC 5321 4.1.2).
  EXPECT_FALSE(Path("user@example.test"));
  EXPECT_FALSE(Path(" <user@example.test>"));
  EXPECT_FALSE(Path(""));
  EXPECT_FALSE(Path("<"));
}

TEST(AddressTest, LengthLimits) {
  // RFC 5321 4.5.3.1.1: local part 64 octets.
  EXPECT_TRUE(Path("<" + std::string(64, 'a') + "@x.test>"));
  EXPECT_FALSE(Path("<" + std::string(65, 'a') + "@x.test>"));
  // The limit counts the local part as sent, quotes included.
  EXPECT_FALSE(Path("<\"" + std::string(63, 'a') + "\"@x.test>"));
  // RFC 5321 4.5.3.1.2: domain 255 octets. Inside a path the 256-octet
  // path limit binds first, so a 255-octet domain never fits.
  std::string l63(63, 'd');
  std::string d255 = l63 + "." + l63 + "." + l63 + "." + l63;
  ASSERT_EQ(d255.size(), 255u);
  EXPECT_TRUE(ParseMailbox("a@" + d255.substr(0, 251), false));
  EXPECT_FALSE(ParseMailbox("a@" + d255, false));
  EXPECT_FALSE(ParseMailbox("a@" + d255 + ".x", false));
  // RFC 5321 4.5.3.1.3: path 256 octets including the brackets.
  std::string dom = l63 + "." + l63 + "." + l63 + "." + std::string(58, 'd');
  std::string path254 =
      "<" + std::string(64, 'a') + "@" + dom.substr(0, 254 - 2 - 65) + ">";
  EXPECT_EQ(path254.size(), 254u);
  EXPECT_TRUE(Path(path254));
  std::string path256 =
      "<" + std::string(64, 'a') + "@" + dom.substr(0, 256 - 2 - 65) + ">";
  EXPECT_TRUE(Path(path256));
  std::string path257 =
      "<" + std::string(64, 'a') + "@" + dom.substr(0, 257 - 2 - 65) + ">";
  EXPECT_EQ(path257.size(), 257u);
  EXPECT_FALSE(Path(path257));
}

TEST(AddressTest, Utf8OnlyWhenAllowed) {
  std::string local =
      "<J\xC3\xB6rg@b\xC3\xBC"
      "cher.test>";
  EXPECT_FALSE(Path(local, false, false));
  auto m = Path(local, false, true);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->local, "J\xC3\xB6rg");
  EXPECT_EQ(m->ToString(),
            "J\xC3\xB6rg@b\xC3\xBC"
            "cher.test");
  // Quoted UTF-8 is allowed too.
  EXPECT_TRUE(Path("<\"\xE2\x82\xAC x\"@x.test>", false, true));
  EXPECT_FALSE(Path("<\"\xE2\x82\xAC x\"@x.test>", false, false));
}

TEST(AddressTest, MalformedUtf8IsRejected) {
  for (const char* bad : {
           "<\xC0\xAF@x.test>",          // overlong '/'
           "<\xE0\x80\xAF@x.test>",      // overlong
           "<\xED\xA0\x80@x.test>",      // surrogate
           "<\xF4\x90\x80\x80@x.test>",  // above U+10FFFF
           "<\x80@x.test>",              // lone continuation
           "<\xC3@x.test>",              // truncated
           "<\xC2\x85@x.test>",          // C1 control (NEL)
           "<\xFF@x.test>",
       }) {
    EXPECT_FALSE(Path(bad, false, true)) << bad;
  }
  EXPECT_TRUE(Path("<\xF0\x9F\x93\xA7@x.test>", false, true));
}

TEST(AddressTest, ParseMailboxBare) {
  auto m = ParseMailbox("user@example.test", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->ToString(), "user@example.test");
  EXPECT_FALSE(ParseMailbox("<user@example.test>", false));
  EXPECT_FALSE(ParseMailbox("user@example.test ", false));
  EXPECT_FALSE(ParseMailbox("user", false));
  EXPECT_TRUE(ParseMailbox("\"a b\"@[IPv6:::1]", false));
}

TEST(AddressTest, ToStringQuotesWhatNeedsIt) {
  Mailbox m{"a b", "x.test", true};
  EXPECT_EQ(m.ToString(), "\"a b\"@x.test");
  Mailbox at{"a@b", "x.test", true};
  EXPECT_EQ(at.ToString(), "\"a@b\"@x.test");
  Mailbox postmaster{"postmaster", "", false};
  EXPECT_EQ(postmaster.ToString(), "postmaster");
  // Round trip: what ToString makes parses back to the same mailbox.
  auto back = ParseMailbox(m.ToString(), false);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->local, m.local);
  EXPECT_EQ(back->domain, m.domain);
}

}  // namespace
}  // namespace tern::smtp
