// Unit tests for the MIME parser (mime.h), the FETCH renderings
// (fetch_render.h) and the SEARCH/SORT text helpers (mime_search.h).
//
// The BODYSTRUCTURE and ENVELOPE strings were checked against Dovecot
// 2.3.19 (FETCH of the same message from a Maildir). Where Tern differs on
// purpose the test says so; the differences are:
//  - type, subtype and parameter names go out in lower case (Dovecot keeps
//    them as written); RFC 2045 5.1 makes them case-insensitive.
//  - an unparseable Content-Type is text/plain; charset=us-ascii (RFC 2045
//    5.2); Dovecot sends what it could read ("bogus" "").
//  - ENVELOPE strings are unfolded as RFC 5322 2.2.3 says (line ends
//    removed, nothing else); Dovecot also collapses runs of spaces.
//  - message/global has the body-type-msg form of RFC 9051 9
//    (media-message includes "GLOBAL"); Dovecot treats it as basic.
//  - a lone extended RFC 2231 parameter "bar*=..." is "bar*"; Dovecot
//    says "bar*1*".
#include "imap/protocol/mime.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imap/protocol/fetch_render.h"
#include "imap/protocol/mime_search.h"

namespace tern::imap {
namespace {

std::string Structure(std::string_view msg, bool ext = true) {
  return RenderBodyStructure(ParseMime(msg), ext, false);
}

std::string Envelope(std::string_view msg) {
  return RenderEnvelope(ParseMime(msg), false);
}

Section Sec(std::vector<uint32_t> part, SectionText text = SectionText::kNone,
            std::vector<std::string> fields = {}) {
  Section s;
  s.part = std::move(part);
  s.text = text;
  s.fields = std::move(fields);
  return s;
}

std::string Octets(const MimeMessage& m, const Section& s) {
  std::string scratch;
  return std::string(SectionOctets(m, s, &scratch));
}

// Parentheses outside quoted strings and literals balance.
bool Balanced(std::string_view s) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] == '\\') ++i;
      }
    } else if (c == '{') {
      size_t close = s.find('}', i);
      size_t n = std::stoul(std::string(s.substr(i + 1, close - i - 1)));
      i = close + 2 + n;  // the loop steps past the literal's last octet
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (--depth < 0) return false;
    }
  }
  return depth == 0;
}

const char kPlain[] =
    "Return-Path: <joe@example.com>\r\n"
    "From: Joe <joe@example.com>\r\n"
    "To: mary@example.org\r\n"
    "Subject: Lunch\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    "Message-ID: <B27397-0100000@example.com>\r\n"
    "\r\n"
    "Shall we meet at noon?\r\n"
    "Joe\r\n";

TEST(MimeTest, PlainTextStructureAndEnvelope) {
  EXPECT_EQ(Structure(kPlain),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 2 "
            "NIL NIL NIL NIL)");
  EXPECT_EQ(Structure(kPlain, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 2)");
  EXPECT_EQ(Envelope(kPlain),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"Lunch\" "
            "((\"Joe\" NIL \"joe\" \"example.com\")) "
            "((\"Joe\" NIL \"joe\" \"example.com\")) "
            "((\"Joe\" NIL \"joe\" \"example.com\")) "
            "((NIL NIL \"mary\" \"example.org\")) NIL NIL NIL "
            "\"<B27397-0100000@example.com>\")");
}

TEST(MimeTest, PlainTextSections) {
  MimeMessage m = ParseMime(kPlain);
  std::string body = "Shall we meet at noon?\r\nJoe\r\n";
  EXPECT_EQ(Octets(m, Sec({})), kPlain);
  EXPECT_EQ(Octets(m, Sec({}, SectionText::kText)), body);
  EXPECT_EQ(Octets(m, Sec({1})), body);  // part 1 of a non-multipart message
  EXPECT_EQ(Octets(m, Sec({2})), "");
  EXPECT_EQ(Octets(m, Sec({1, 2})), "");
  std::string header = Octets(m, Sec({}, SectionText::kHeader));
  EXPECT_EQ(header.size(), std::string(kPlain).size() - body.size());
  EXPECT_EQ(header.substr(header.size() - 5), ">\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({}, SectionText::kHeaderFields, {"SUBJECT", "to"})),
            "To: mary@example.org\r\nSubject: Lunch\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({}, SectionText::kHeaderFields, {"X-None"})), "\r\n");
  EXPECT_EQ(Octets(m, Sec({}, SectionText::kHeaderFieldsNot,
                           {"return-path", "from", "to", "date", "message-id"})),
            "Subject: Lunch\r\n\r\n");
  // HEADER on a part that is not a message/rfc822 has nothing to show.
  EXPECT_EQ(Octets(m, Sec({1}, SectionText::kHeader)), "");
  EXPECT_EQ(Octets(m, Sec({}, SectionText::kMime)), "");
}

TEST(MimeTest, Partial) {
  std::string_view s = "0123456789";
  EXPECT_EQ(ApplyPartial(s, std::nullopt), s);
  EXPECT_EQ(ApplyPartial(s, Partial{2, 3}), "234");
  EXPECT_EQ(ApplyPartial(s, Partial{8, 100}), "89");
  EXPECT_EQ(ApplyPartial(s, Partial{10, 1}), "");
  EXPECT_EQ(ApplyPartial(s, Partial{~0ull, ~0ull}), "");
}

// Bare LF line ends throughout (Dovecot agrees on every count).
TEST(MimeTest, AlternativeWithBareLf) {
  const char msg[] =
      "Subject: lf\n"
      "Content-Type: multipart/alternative; boundary=\"=_b\"\n"
      "\n"
      "--=_b\n"
      "Content-Type: text/plain\n"
      "\n"
      "hi there\n"
      "--=_b\n"
      "Content-Type: text/html\n"
      "\n"
      "<p>x</p>\n"
      "--=_b--\n";
  EXPECT_EQ(Structure(msg),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL "
            "NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL "
            "\"7bit\" 8 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"=_b\") "
            "NIL NIL NIL)");
  EXPECT_EQ(Structure(msg, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0)"
            "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0) "
            "\"alternative\")");
  MimeMessage m = ParseMime(msg);
  EXPECT_EQ(Octets(m, Sec({1})), "hi there");
  EXPECT_EQ(Octets(m, Sec({2})), "<p>x</p>");
  EXPECT_EQ(Octets(m, Sec({2}, SectionText::kMime)), "Content-Type: text/html\n\n");
}

// multipart/mixed with a quoted-printable text, a base64 attachment with
// every extension field, and a message/rfc822 holding its own multipart;
// RFC 2231 parameters on the top level.
const char kMixed[] =
    "From: \"Joe Q. Public\" <john.q.public@example.com>\r\n"
    "To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>\r\n"
    "Cc: <boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>\r\n"
    "Bcc: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, "
    "Undisclosed recipients:;\r\n"
    "Subject: =?ISO-8859-1?Q?Caf=E9?=\r\n"
    "  folded  subject \r\n"
    "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
    "Message-ID: <5678.21-Nov-1997@example.com>\r\n"
    "In-Reply-To: <1234@local.machine.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"; foo*0=\"abc\"; foo*1=def; "
    "bar*=us-ascii'en'a%20b; title*0*=utf-8''%E2%82%AC; title*1=x\r\n"
    "\r\n"
    "preamble\r\n"
    "--XX\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "h=C3=A9llo\r\n"
    "line2\r\n"
    "--XX \r\n"
    "Content-Type: application/octet-stream; name=a.bin\r\n"
    "Content-Disposition: attachment; filename=\"a b.bin\"; size=12\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-ID: <id1@x>\r\n"
    "Content-Description: some thing\r\n"
    "Content-Language: en, de\r\n"
    "Content-Location: http://x/y\r\n"
    "\r\n"
    "AAECAwQFBgcICQoL\r\n"
    "--XX\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: inner@x.test\r\n"
    "Subject: inner\r\n"
    "Content-Type: multipart/alternative; boundary=YY\r\n"
    "\r\n"
    "--YY\r\n"
    "\r\n"
    "plain default\r\n"
    "--YY\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<b>x</b>\r\n"
    "--YY--\r\n"
    "\r\n"
    "--XX--\r\n"
    "epilogue\r\n";

TEST(MimeTest, MixedBodyStructure) {
  // Dovecot's, but for the "bar*" name (see the top of the file).
  EXPECT_EQ(
      Structure(kMixed),
      "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 1 "
      "NIL NIL NIL NIL)(\"application\" \"octet-stream\" (\"name\" \"a.bin\") "
      "\"<id1@x>\" \"some thing\" \"base64\" 16 NIL (\"attachment\" (\"filename\" "
      "\"a b.bin\" \"size\" \"12\")) (\"en\" \"de\") \"http://x/y\")(\"message\" "
      "\"rfc822\" NIL NIL NIL \"7bit\" 162 (NIL \"inner\" ((NIL NIL \"inner\" "
      "\"x.test\")) ((NIL NIL \"inner\" \"x.test\")) ((NIL NIL \"inner\" "
      "\"x.test\")) NIL NIL NIL NIL NIL) ((\"text\" \"plain\" (\"charset\" "
      "\"us-ascii\") NIL NIL \"7bit\" 13 0 NIL NIL NIL NIL)(\"text\" \"html\" "
      "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL) "
      "\"alternative\" (\"boundary\" \"YY\") NIL NIL NIL) 12 NIL NIL NIL NIL) "
      "\"mixed\" (\"boundary\" \"XX\" \"foo\" \"abcdef\" \"bar*\" "
      "\"us-ascii'en'a%20b\" \"title*\" \"utf-8''%E2%82%ACx\") NIL NIL NIL)");
  EXPECT_EQ(
      Structure(kMixed, false),
      "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 "
      "1)(\"application\" \"octet-stream\" (\"name\" \"a.bin\") \"<id1@x>\" \"some "
      "thing\" \"base64\" 16)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 162 (NIL "
      "\"inner\" ((NIL NIL \"inner\" \"x.test\")) ((NIL NIL \"inner\" \"x.test\")) "
      "((NIL NIL \"inner\" \"x.test\")) NIL NIL NIL NIL NIL) ((\"text\" \"plain\" "
      "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0)(\"text\" \"html\" "
      "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0) \"alternative\") 12) "
      "\"mixed\")");
}

TEST(MimeTest, MixedEnvelopeWithGroups) {
  // Dovecot's, but for the subject's inner spaces (see the top).
  EXPECT_EQ(
      Envelope(kMixed),
      "(\"Tue, 1 Jul 2003 10:52:37 +0200\" \"=?ISO-8859-1?Q?Caf=E9?=  folded  "
      "subject\" ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
      "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) ((\"Joe Q. "
      "Public\" NIL \"john.q.public\" \"example.com\")) ((\"Mary Smith\" NIL "
      "\"mary\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\")(\"Who?\" NIL \"one\" "
      "\"y.test\")) ((NIL NIL \"boss\" \"nil.test\")(\"Giant; \\\"Big\\\" Box\" NIL "
      "\"sysservices\" \"example.net\")) ((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL "
      "\"c\" \"a.test\")(NIL NIL \"joe\" \"where.test\")(\"John\" NIL \"jdoe\" "
      "\"one.test\")(NIL NIL NIL NIL)(NIL NIL \"Undisclosed recipients\" NIL)(NIL "
      "NIL NIL NIL)) \"<1234@local.machine.example>\" "
      "\"<5678.21-Nov-1997@example.com>\")");
}

TEST(MimeTest, MixedSections) {
  // The octets Dovecot returns for the same FETCH.
  MimeMessage m = ParseMime(kMixed);
  EXPECT_FALSE(m.limited);
  EXPECT_EQ(Octets(m, Sec({1})), "h=C3=A9llo\r\nline2");
  EXPECT_EQ(Octets(m, Sec({1}, SectionText::kMime)),
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({2})), "AAECAwQFBgcICQoL");
  EXPECT_EQ(Octets(m, Sec({3, 1})), "plain default");
  EXPECT_EQ(Octets(m, Sec({3, 1, 1})), "plain default");
  EXPECT_EQ(Octets(m, Sec({3}, SectionText::kHeader)),
            "From: inner@x.test\r\nSubject: inner\r\n"
            "Content-Type: multipart/alternative; boundary=YY\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({3}, SectionText::kHeaderFields, {"subject"})),
            "Subject: inner\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({3}, SectionText::kText)),
            "--YY\r\n\r\nplain default\r\n--YY\r\nContent-Type: text/html\r\n\r\n"
            "<b>x</b>\r\n--YY--\r\n");
  EXPECT_EQ(Octets(m, Sec({3}, SectionText::kMime)),
            "Content-Type: message/rfc822\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({3, 2}, SectionText::kMime)),
            "Content-Type: text/html\r\n\r\n");
  EXPECT_EQ(Octets(m, Sec({3})).size(), 162u);
  EXPECT_EQ(Octets(m, Sec({4})), "");
  EXPECT_EQ(Octets(m, Sec({3, 3})), "");
  EXPECT_EQ(Octets(m, Sec({2}, SectionText::kHeader)), "");
  EXPECT_EQ(Octets(m, Sec({0})), "");

  EXPECT_EQ(*BinaryContent(m, {1}), "h\xC3\xA9llo\r\nline2");
  EXPECT_EQ(*BinaryContent(m, {2}), std::string("\0\1\2\3\4\5\6\7\10\11\12\13", 12));
  EXPECT_EQ(*BinarySize(m, {2}), 12u);
  EXPECT_EQ(*BinaryContent(m, {9}), "");
  EXPECT_EQ(*BinaryContent(m, {}), kMixed);
}

TEST(MimeTest, Rfc2231Parameters) {
  MimeMessage m = ParseMime(kMixed);
  const MimeParam* foo = m.root.param("foo");
  ASSERT_NE(foo, nullptr);
  EXPECT_EQ(foo->value, "abcdef");
  EXPECT_FALSE(foo->extended);
  const MimeParam* title = m.root.param("title");
  ASSERT_NE(title, nullptr);
  EXPECT_TRUE(title->extended);
  EXPECT_EQ(DecodedValue(*title), "\xE2\x82\xAC" "x");
  EXPECT_EQ(DecodedValue(*m.root.param("bar")), "a b");

  // Sections out of order, a plain section's "%" kept literal, a charset
  // converted.
  MimeValue v = ParseMimeValue(
      "attachment; filename*1=\"50% off\"; filename*0*=iso-8859-1'fr'caf%E9%20");
  EXPECT_EQ(v.token, "attachment");
  ASSERT_EQ(v.params.size(), 1u);
  EXPECT_EQ(v.params[0].value, "iso-8859-1'fr'caf%E9%2050%25 off");
  EXPECT_EQ(DecodedValue(v.params[0]), "caf\xC3\xA9 50% off");

  // Comments, odd spacing, a repeated parameter (the first counts).
  v = ParseMimeValue(" Text / HTML (comment) ; charset = \"UTF-8\" ; charset=x ;");
  EXPECT_EQ(v.token, "text/html");
  ASSERT_EQ(v.params.size(), 1u);
  EXPECT_EQ(v.params[0].name, "charset");
  EXPECT_EQ(v.params[0].value, "UTF-8");
}

TEST(MimeTest, ContentTypeDefaultsAndOddities) {
  // Dovecot agrees on each of these but the invalid type.
  // multipart/digest: parts default to message/rfc822.
  EXPECT_EQ(Structure("Subject: x\r\nContent-Type: multipart/digest; boundary=b\r\n"
                      "\r\n--b\r\n\r\nSubject: d1\r\n\r\nbody\r\n--b\r\n"
                      "Content-Type: text/plain\r\n\r\nt\r\n--b--\r\n"),
            "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 19 (NIL \"d1\" NIL NIL NIL "
            "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
            "NIL \"7bit\" 4 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)(\"text\" \"plain\" "
            "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) "
            "\"digest\" (\"boundary\" \"b\") NIL NIL NIL)");
  // A multipart with no parts gets one empty text/plain.
  EXPECT_EQ(Structure("Content-Type: multipart/mixed; boundary=b\r\n\r\nnone\r\n"),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
            "NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)");
  // No close delimiter: the last part runs to the end, line end included.
  EXPECT_EQ(Structure("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                      "Content-Type: text/plain\r\n\r\nunterminated\r\n"),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 1 "
            "NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)");
  // An encoded message/rfc822 is opaque.
  EXPECT_EQ(Structure("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
                      "base64\r\n\r\nU3ViamVjdDogeAoKeQo=\r\n"),
            "(\"message\" \"rfc822\" NIL NIL NIL \"base64\" 22 (NIL NIL NIL NIL NIL "
            "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
            "NIL \"7bit\" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)");
  // RFC 2045 5.2: a Content-Type that does not parse means text/plain.
  // Dovecot: ("bogus" "" NIL NIL NIL "7bit" 3 NIL NIL NIL NIL).
  EXPECT_EQ(Structure("Content-Type: bogus\r\n\r\nx\r\n"),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL "
            "NIL NIL NIL)");
  // Dovecot keeps "Text" "PLAIN" ("CharSet" "UTF-8"); values stay as written.
  EXPECT_EQ(Structure("Content-Type: Text/PLAIN; CharSet=UTF-8\r\n"
                      "Content-Transfer-Encoding: Base64\r\n\r\nab\r\ncd"),
            "(\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"Base64\" 6 1 NIL "
            "NIL NIL NIL)");
  // A parameter without a value is dropped; disposition without params.
  EXPECT_EQ(Structure("Content-Type: text/plain; charset\r\nContent-Disposition: "
                      "inline\r\nContent-Language: en\r\n\r\nx\r\n\r\n"),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 2 NIL "
            "(\"inline\" NIL) (\"en\") NIL)");
  // Header only, no blank line and no final line end.
  EXPECT_EQ(Structure("Subject: only header\r\nFrom: x@y"),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
            "NIL NIL NIL)");
  EXPECT_EQ(Envelope("Subject: only header\r\nFrom: x@y"),
            "(NIL \"only header\" ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) "
            "((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL NIL)");
  // An empty part between two delimiters, and an inner multipart ended by
  // the outer boundary.
  EXPECT_EQ(Structure("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n"
                      "\r\nx\r\n--b--\r\n", false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) "
            "\"mixed\")");
  EXPECT_EQ(Structure("Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
                      "Content-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\n"
                      "inner one\r\n--o\r\n\r\nouter two\r\n--o--\r\n", false),
            "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0) "
            "\"mixed\")(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
            "9 0) \"mixed\")");
  // A boundary that only starts like ours is no delimiter.
  MimeMessage m = ParseMime("Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
                            "--ab\r\n\r\none\r\n--abc\r\ntwo\r\n--ab--\r\n");
  ASSERT_EQ(m.root.children.size(), 1u);
  EXPECT_EQ(Octets(m, Sec({1})), "one\r\n--abc\r\ntwo");
}

TEST(MimeTest, MessageGlobalIsAMessage) {
  // Dovecot: ("message" "global" NIL NIL NIL "7bit" 20 NIL NIL NIL NIL).
  EXPECT_EQ(Structure("Content-Type: message/global\r\n\r\nSubject: g\r\n\r\nbody\r\n"),
            "(\"message\" \"global\" NIL NIL NIL \"7bit\" 20 (NIL \"g\" NIL NIL NIL "
            "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
            "NIL \"7bit\" 6 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)");
}

TEST(MimeTest, EnvelopeOddAddresses) {
  // All as Dovecot.
  EXPECT_EQ(Envelope("Subject: x\r\nFrom: foo\r\nTo: \"a b\" <@r1,@r2:x@y>, bar@, "
                     "<>, @baz\r\n"),
            "(NIL \"x\" ((NIL NIL \"foo\" \"MISSING_DOMAIN\")) ((NIL NIL \"foo\" "
            "\"MISSING_DOMAIN\")) ((NIL NIL \"foo\" \"MISSING_DOMAIN\")) ((\"a b\" "
            "\"@r1,@r2\" \"x\" \"y\")(NIL NIL \"bar\" \"MISSING_DOMAIN\")(NIL NIL "
            "\"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(NIL NIL \"MISSING_MAILBOX\" "
            "\"baz\")) NIL NIL NIL NIL)");
  EXPECT_EQ(Envelope("From: \"a b\"@x.test (Comment Name), Joe Q. Public "
                     "<j@x.test>, =?utf-8?q?J=C3=B6?= <jo@x.test>\r\n"
                     "To: g: ;\r\nCc: \"Q\\\"uote\" <q@x>\r\nSubject:  \r\n"
                     "Sender:\r\nMessage-ID:   <a@b>  (c)\r\n\r\n"),
            "(NIL \"\" ((\"Comment Name\" NIL \"a b\" \"x.test\")(\"Joe Q. Public\" "
            "NIL \"j\" \"x.test\")(\"=?utf-8?q?J=C3=B6?=\" NIL \"jo\" \"x.test\")) "
            "((\"Comment Name\" NIL \"a b\" \"x.test\")(\"Joe Q. Public\" NIL \"j\" "
            "\"x.test\")(\"=?utf-8?q?J=C3=B6?=\" NIL \"jo\" \"x.test\")) ((\"Comment "
            "Name\" NIL \"a b\" \"x.test\")(\"Joe Q. Public\" NIL \"j\" \"x.test\")"
            "(\"=?utf-8?q?J=C3=B6?=\" NIL \"jo\" \"x.test\")) ((NIL NIL \"g\" NIL)(NIL "
            "NIL NIL NIL)) ((\"Q\\\"uote\" NIL \"q\" \"x\")) NIL NIL \"<a@b>  (c)\")");
  EXPECT_EQ(Envelope("X: y\r\n\r\n"), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
  EXPECT_EQ(Envelope(""), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
}

TEST(MimeTest, EnvelopeUtf8) {
  // 8-bit text is a literal for an IMAP4rev1 client, quoted with UTF8=ACCEPT.
  MimeMessage m = ParseMime("From: J\xC3\xB6rg <j@x.test>\r\n\r\n");
  EXPECT_EQ(RenderEnvelope(m, false),
            "(NIL NIL (({5}\r\nJ\xC3\xB6rg NIL \"j\" \"x.test\")) (({5}\r\nJ\xC3\xB6rg "
            "NIL \"j\" \"x.test\")) (({5}\r\nJ\xC3\xB6rg NIL \"j\" \"x.test\")) NIL NIL "
            "NIL NIL NIL)");
  EXPECT_EQ(RenderEnvelope(m, true),
            "(NIL NIL ((\"J\xC3\xB6rg\" NIL \"j\" \"x.test\")) ((\"J\xC3\xB6rg\" NIL "
            "\"j\" \"x.test\")) ((\"J\xC3\xB6rg\" NIL \"j\" \"x.test\")) NIL NIL NIL NIL "
            "NIL)");
}

std::string Nested(int levels) {
  std::string msg;
  for (int i = 0; i < levels; ++i) {
    msg += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) +
           "\r\n\r\n--b" + std::to_string(i) + "\r\n";
  }
  msg += "\r\ndeepest\r\n";
  for (int i = levels - 1; i >= 0; --i) msg += "--b" + std::to_string(i) + "--\r\n";
  return msg;
}

TEST(MimeTest, NestingLimit) {
  // kMimeMaxDepth multiparts nest fully; one more is cut off.
  std::string ok = Nested(kMimeMaxDepth);
  MimeMessage m = ParseMime(ok);
  EXPECT_FALSE(m.limited);
  std::vector<uint32_t> path(kMimeMaxDepth + 1, 1);
  EXPECT_EQ(Octets(m, Sec(path)), "deepest");

  std::string deep = Nested(kMimeMaxDepth + 1);
  m = ParseMime(deep);
  EXPECT_TRUE(m.limited);
  std::string s = RenderBodyStructure(m, true, false);
  EXPECT_TRUE(Balanced(s));
  EXPECT_EQ(Octets(m, Sec(std::vector<uint32_t>(kMimeMaxDepth + 2, 1))), "");

  // Nested message/rfc822 the same way, far past the limit.
  std::string msgs;
  for (int i = 0; i < 5000; ++i) msgs += "Content-Type: message/rfc822\r\n\r\n";
  m = ParseMime(msgs);
  EXPECT_TRUE(m.limited);
  EXPECT_TRUE(Balanced(RenderBodyStructure(m, true, false)));
}

TEST(MimeTest, PartCountLimit) {
  std::string msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (size_t i = 0; i < kMimeMaxParts + 10; ++i) msg += "--b\r\n\r\nx\r\n";
  msg += "--b--\r\n";
  MimeMessage m = ParseMime(msg);
  EXPECT_TRUE(m.limited);
  EXPECT_EQ(m.root.children.size(), kMimeMaxParts - 1);  // the root counts
  EXPECT_EQ(Octets(m, Sec({1})), "x");
  EXPECT_EQ(Octets(m, Sec({kMimeMaxParts})), "");
}

TEST(MimeTest, GarbageStaysWellFormed) {
  const char* inputs[] = {
      "", "\r\n", "\n\n\n", ":", "Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
      "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
      "Content-Type: ;;;===\"\r\n\r\n", "Content-Type: message/rfc822\r\n",
      "\x01\x02\xff\xfe(((\"\"\\", "From: (((\r\nTo: \"\r\nCc: <<<@@@>>>,,;;::\r\n",
      "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: "
      "message/rfc822\r\n\r\n--x--\r\n",
  };
  for (const char* in : inputs) {
    MimeMessage m = ParseMime(in);
    std::string bs = RenderBodyStructure(m, true, false);
    std::string env = RenderEnvelope(m, false);
    EXPECT_TRUE(Balanced(bs)) << bs;
    EXPECT_TRUE(Balanced(env)) << env;
    std::string scratch;
    EXPECT_EQ(SectionOctets(m, Sec({}), &scratch), std::string_view(in));
  }
}

TEST(MimeTest, TransferEncodings) {
  std::string out;
  EXPECT_TRUE(DecodeTransferEncoding("Base64", "aGVs\r\nbG8=\r\n", &out));
  EXPECT_EQ(out, "hello");
  EXPECT_TRUE(DecodeTransferEncoding("base64", "aGVsbA", &out));  // no padding
  EXPECT_EQ(out, "hell");
  EXPECT_TRUE(DecodeTransferEncoding(" Quoted-Printable ",
                                     "a=3Db =\r\nc  \r\nd=\r\n=e9=ZZ=", &out));
  EXPECT_EQ(out, "a=b c\r\nd\xe9=ZZ");
  EXPECT_TRUE(DecodeTransferEncoding(std::nullopt, "raw", &out));
  EXPECT_EQ(out, "raw");
  EXPECT_FALSE(DecodeTransferEncoding("x-uuencode", "begin", &out));
  EXPECT_TRUE(DecodeTransferEncoding("base64 (a comment)", "eA==", &out));
  EXPECT_EQ(out, "x");
  // A comment does not make a message/rfc822 opaque either.
  EXPECT_EQ(ParseMime("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
                      "7bit (plain)\r\n\r\nSubject: s\r\n\r\nb\r\n")
                .root.children.size(),
            1u);

  MimeMessage m = ParseMime("Content-Transfer-Encoding: x-uuencode\r\n\r\nbody\r\n");
  EXPECT_FALSE(BinaryContent(m, {1}).has_value());
  EXPECT_FALSE(BinarySize(m, {1}).has_value());
}

TEST(MimeSearchTest, HeaderValuesAndBodyText) {
  MimeMessage m = ParseMime(kMixed);
  std::string_view header = m.text.substr(0, m.root.header_size);
  std::vector<std::string> subj = DecodedHeaderValues(header, "SUBJECT");
  ASSERT_EQ(subj.size(), 1u);
  EXPECT_EQ(subj[0], "Caf\xC3\xA9  folded  subject");
  EXPECT_TRUE(DecodedHeaderValues(header, "X-Missing").empty());
  EXPECT_NE(SearchableHeader(header).find("Subject: Caf\xC3\xA9"), std::string::npos);

  std::string body = SearchableBody(m);
  EXPECT_EQ(body,
            "h\xC3\xA9llo\r\nline2\n"
            "From: inner@x.test\nSubject: inner\n"
            "Content-Type: multipart/alternative; boundary=YY\n"
            "plain default\n<b>x</b>\n");

  // Latin-1 quoted-printable converted to UTF-8.
  m = ParseMime("Content-Type: text/plain; charset=ISO-8859-1\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\nd=E9j=E0 vu\r\n");
  EXPECT_EQ(SearchableBody(m), "d\xC3\xA9j\xC3\xA0 vu\r\n\n");
  // An unknown charset keeps its octets.
  m = ParseMime("Content-Type: text/plain; charset=x-nonesuch\r\n\r\n\xE9\r\n");
  EXPECT_EQ(SearchableBody(m), "\xE9\r\n\n");
  EXPECT_EQ(CharsetToUtf8("windows-1252", "\x80"), "\xE2\x82\xAC");
}

TEST(MimeSearchTest, ContainsFolded) {
  EXPECT_TRUE(ContainsFolded("Hello World", "wORLD"));
  EXPECT_TRUE(ContainsFolded("anything", ""));
  EXPECT_FALSE(ContainsFolded("Hello", "hello!"));
  EXPECT_FALSE(ContainsFolded("Hello", "xyz"));
  EXPECT_TRUE(ContainsFolded("CAF\xC3\x89 noir", "caf\xC3\xA9"));  // É / é
  EXPECT_FALSE(ContainsFolded("\xC3\x97", "\xC3\xB7"));  // × is not ÷
  // A needle cut from the middle of a UTF-8 letter still finds its octets
  // (found by the fuzzer).
  EXPECT_TRUE(ContainsFolded("\xC3\x80x", "\x80x"));
}

TEST(MimeSearchTest, HeaderDate) {
  auto d = ParseHeaderDate("Tue, 1 Jul 2003 10:52:37 +0200");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->date, (Date{2003, 7, 1}));
  EXPECT_EQ(d->zone_minutes, 120);
  EXPECT_EQ(ToUnixSeconds(*d), 1057049557);
  d = ParseHeaderDate(" 7 Feb 94 21:52 PST (Pacific)");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->date, (Date{1994, 2, 7}));
  EXPECT_EQ(d->zone_minutes, -480);
  EXPECT_EQ(d->second, 0);
  d = ParseHeaderDate("Thu,\r\n 13 Feb 1969 23:32:54 -0330");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->zone_minutes, -210);
  EXPECT_FALSE(ParseHeaderDate("31 Feb 2020 10:00:00 +0000").has_value());
  EXPECT_FALSE(ParseHeaderDate("yesterday").has_value());
  EXPECT_FALSE(ParseHeaderDate("").has_value());
}

TEST(MimeSearchTest, SortKeys) {
  EXPECT_EQ(BaseSubject("Re: [list] Fwd: Hello   world (fwd)"), "Hello world");
  EXPECT_EQ(BaseSubject("[fwd: RE: lunch]"), "lunch");
  EXPECT_EQ(BaseSubject("re:re :  fw[x]: test"), "test");
  EXPECT_EQ(BaseSubject("[only blob]"), "[only blob]");
  EXPECT_EQ(BaseSubject("=?utf-8?q?Re=3A_caf=C3=A9?="), "caf\xC3\xA9");
  EXPECT_EQ(BaseSubject(""), "");
  EXPECT_EQ(FirstMailbox("Group: ; \"Joe\" <Joe.X@example.com>, b@c"), "Joe.X");
  EXPECT_EQ(FirstMailbox(""), "");
}

TEST(MimeSearchTest, BaseSubjectTellsRepliesAndForwards) {
  bool reply = true;
  EXPECT_EQ(BaseSubject("[list] lunch", &reply), "lunch");
  EXPECT_FALSE(reply);  // a blob alone is not a reply (RFC 5256 2.1)
  EXPECT_EQ(BaseSubject("Re: lunch", &reply), "lunch");
  EXPECT_TRUE(reply);
  EXPECT_EQ(BaseSubject("lunch (fwd)", &reply), "lunch");
  EXPECT_TRUE(reply);
  EXPECT_EQ(BaseSubject("[Fwd: lunch]", &reply), "lunch");
  EXPECT_TRUE(reply);
  EXPECT_EQ(BaseSubject("  lunch  ", &reply), "lunch");
  EXPECT_FALSE(reply);
}

}  // namespace
}  // namespace tern::imap
