// Unit tests for the RFC 5322 address-list parser and the RFC 2047 decoder:
// ordinary forms, obsolete forms, the tricks used to hide a forged sender,
// and malformed input that must be refused rather than guessed at.
#include "smtp/protocol/rfc5322.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tern::smtp {
namespace {

// The addresses of a parse, "local@domain" joined by spaces; "ERROR" when
// the text is refused.
std::string Addrs(std::string_view body) {
  auto list = ParseAddressList(body);
  if (!list) return "ERROR";
  std::string out;
  for (const auto& m : *list) {
    if (!out.empty()) out += ' ';
    out += m.address();
  }
  return out;
}

TEST(Rfc5322Test, PlainForms) {
  EXPECT_EQ(Addrs(" a@example.test"), "a@example.test");
  EXPECT_EQ(Addrs(" <a@example.test>"), "a@example.test");
  EXPECT_EQ(Addrs(" Alice <a@example.test>"), "a@example.test");
  EXPECT_EQ(Addrs(" \"Alice B.\" <a@example.test>"), "a@example.test");
  EXPECT_EQ(Addrs(" a@example.test (Alice)"), "a@example.test");
  EXPECT_EQ(Addrs(" a@example.test, Bob <b@other.test>"),
            "a@example.test b@other.test");
  EXPECT_EQ(Addrs(" first.last@sub.example.test"), "first.last@sub.example.test");
  EXPECT_EQ(Addrs(" a+tag@example.test"), "a+tag@example.test");
  EXPECT_EQ(Addrs(" a@[192.0.2.1]"), "a@[192.0.2.1]");
}

TEST(Rfc5322Test, DisplayNames) {
  auto list = ParseAddressList(" John Q. Public <jqp@example.test>");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].display_name, "John Q. Public");
  list = ParseAddressList(" \"Doe, John\" <jd@example.test>");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0].display_name, "Doe, John");
  list = ParseAddressList(" =?utf-8?q?J=C3=B6rg?= <j@example.test>");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0].display_name, "J\xC3\xB6rg");
  list = ParseAddressList(" =?UTF-8?B?SsO2cmc=?= =?utf-8?q?_M=C3=BCller?= <j@x.test>");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0].display_name, "J\xC3\xB6rg M\xC3\xBCller");
}

TEST(Rfc5322Test, QuotedAndCommentedParts) {
  auto list = ParseAddressList(" \"a b\"@example.test");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0].local, "a b");
  EXPECT_TRUE((*list)[0].quoted);
  // A quoted local part holding an '@' is still one local part.
  list = ParseAddressList(" \"victim@example.test\"@evil.test");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0].local, "victim@example.test");
  EXPECT_EQ((*list)[0].domain, "evil.test");
  EXPECT_EQ(Addrs(" (nested (comment) here) a@example.test (x\\) y)"),
            "a@example.test");
  EXPECT_EQ(Addrs(" \"quoted \\\"pair\\\"\" <a@example.test>"), "a@example.test");
}

TEST(Rfc5322Test, ObsoleteForms) {
  // RFC 5322 4.4: CFWS around dots, source routes, empty list elements.
  EXPECT_EQ(Addrs(" first . last @ example . test"), "first.last@example.test");
  EXPECT_EQ(Addrs(" <@relay.test,@other.test:a@example.test>"), "a@example.test");
  EXPECT_EQ(Addrs(" a@example.test,, ,b@example.test,"),
            "a@example.test b@example.test");
  EXPECT_EQ(Addrs(" \"a\".b@example.test"), "a.b@example.test");
}

TEST(Rfc5322Test, FoldedField) {
  EXPECT_EQ(Addrs(" Alice\r\n <a@example.test>,\r\n\tb@example.test"),
            "a@example.test b@example.test");
}

TEST(Rfc5322Test, Groups) {
  EXPECT_EQ(Addrs(" Team: a@example.test, B <b@example.test>;"),
            "a@example.test b@example.test");
  EXPECT_EQ(Addrs(" undisclosed-recipients:;"), "");
  EXPECT_EQ(Addrs(" Team: a@example.test; , c@example.test"),
            "a@example.test c@example.test");
  EXPECT_EQ(Addrs(" Team: a@example.test"), "ERROR");          // no ";"
  EXPECT_EQ(Addrs(" A: B: b@example.test;;"), "ERROR");        // nested
  EXPECT_EQ(Addrs(" : a@example.test;"), "ERROR");             // no name
}

TEST(Rfc5322Test, EncodedWordsNeverSupplyAddresses) {
  // The decoded text looks like an address, but it is a display name: an
  // encoded word is an atom of a phrase and never part of an addr-spec.
  EXPECT_EQ(Addrs(" =?utf-8?q?victim=40example.test?="), "ERROR");
  EXPECT_EQ(Addrs(" =?utf-8?q?=3Cvictim=40example.test=3E?= <me@example.test>"),
            "me@example.test");
  auto list = ParseAddressList(
      " =?utf-8?b?PHZpY3RpbUBleGFtcGxlLnRlc3Q+?= <me@example.test>");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].display_name, "<victim@example.test>");
  EXPECT_EQ((*list)[0].address(), "me@example.test");
  // Inside quotes an encoded word is plain text (RFC 2047 5(3)).
  list = ParseAddressList(" \"=?utf-8?q?x?=\" <me@example.test>");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0].display_name, "=?utf-8?q?x?=");
}

TEST(Rfc5322Test, MalformedIsRefused) {
  for (const char* bad : {
           "", " ", " Alice", " Alice <a@example.test", " <a@example.test",
           " a@", " @example.test", " a@example.test <b@example.test>",
           " victim@example.test <me@example.test>", " john doe@example.test",
           " a@@example.test", " a@example..test", " a@example.test.",
           " \"unterminated@example.test", " (open comment a@example.test",
           " a@[192.0.2.1", " a@example.test)", " <>", " a@b@c.test",
           " a\x01@example.test", " <a@example.test> <b@example.test>"}) {
    std::string text = bad;
    if (text.find_first_not_of(' ') == std::string::npos) {
      // An empty list parses (as nothing); the caller refuses it.
      EXPECT_EQ(Addrs(text), "") << "[" << text << "]";
      continue;
    }
    EXPECT_EQ(Addrs(text), "ERROR") << "[" << text << "]";
  }
}

TEST(Rfc5322Test, DecodeEncodedWords) {
  EXPECT_EQ(DecodeEncodedWords("=?iso-8859-1?q?caf=E9?="), "caf\xC3\xA9");
  EXPECT_EQ(DecodeEncodedWords("a =?us-ascii?Q?b?= c"), "a b c");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8?q?a?= =?utf-8?q?b?="), "ab");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8?x?a?="), "=?utf-8?x?a?=");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8?q?a=4?="), "=?utf-8?q?a=4?=");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8?b?!!!?="), "=?utf-8?b?!!!?=");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8*en?q?hi?="), "hi");
  EXPECT_EQ(DecodeEncodedWords("no words"), "no words");
  EXPECT_EQ(DecodeEncodedWords("=?"), "=?");
}

TEST(Rfc5322Test, SplitHeaderFields) {
  auto fields = SplitHeaderFields(
      "From: a@example.test\r\nSender : Bob\r\n <b@example.test>\r\n"
      "garbage\r\n\tstray continuation\r\nFROM:c@example.test\r\n");
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].name, "From");
  EXPECT_EQ(fields[0].value, " a@example.test");
  EXPECT_EQ(fields[1].name, "Sender");
  EXPECT_EQ(fields[1].value, " Bob <b@example.test>");
  EXPECT_EQ(fields[2].name, "FROM");
  EXPECT_EQ(Addrs(fields[1].value), "b@example.test");
}

// Random and mutated input: the parser must neither crash nor loop, and
// whatever it accepts must be made of well-formed addresses.
TEST(Rfc5322Test, RandomInputIsSafe) {
  std::mt19937 rng(4);
  const std::string alphabet = "ab@.<>,;:\"\\()[] \t\r\n=?_\x80\xff";
  const std::vector<std::string> seeds = {
      " A <a@example.test>, \"B\" <b@x.test>", " g: a@x.test;",
      " =?utf-8?q?x?= <a@b.test>", " (c) a . b @ [1.2.3.4]"};
  for (int round = 0; round < 20000; ++round) {
    std::string s;
    if (round % 2 == 0) {
      size_t n = rng() % 40;
      for (size_t i = 0; i < n; ++i) s.push_back(alphabet[rng() % alphabet.size()]);
    } else {
      s = seeds[rng() % seeds.size()];
      for (int k = 0; k < 3; ++k) {
        size_t at = rng() % (s.size() + 1);
        s.insert(s.begin() + at, alphabet[rng() % alphabet.size()]);
      }
    }
    auto list = ParseAddressList(s);
    if (!list) continue;
    for (const auto& m : *list) {
      EXPECT_FALSE(m.local.empty()) << s;
      EXPECT_FALSE(m.domain.empty()) << s;
    }
    DecodeEncodedWords(s);
  }
}

}  // namespace
}  // namespace tern::smtp
