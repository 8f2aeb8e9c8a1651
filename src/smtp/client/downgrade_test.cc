// Unit tests of the 8-bit to 7-bit conversion for peers without 8BITMIME:
// quoted-printable rules, MIME walking, and the cases that must refuse.
#include "smtp/client/downgrade.h"

#include <gtest/gtest.h>

#include "smtp/client/session.h"

namespace tern::smtp::client {
namespace {

// Inverse of the encoder, for round trips: soft breaks removed, =XX decoded.
std::string DecodeQp(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=') {
      out += s[i];
      continue;
    }
    if (s.substr(i + 1, 2) == "\r\n") {
      i += 2;
      continue;
    }
    out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return out;
}

void ExpectValidQp(const std::string& qp) {
  size_t start = 0;
  while (start <= qp.size()) {
    size_t end = qp.find("\r\n", start);
    std::string_view line(qp.data() + start,
                          (end == std::string::npos ? qp.size() : end) - start);
    EXPECT_LE(line.size(), 76u) << line;
    for (char c : line) {
      unsigned char u = static_cast<unsigned char>(c);
      EXPECT_TRUE(u == ' ' || u == '\t' || (u >= 33 && u <= 126)) << line;
    }
    if (!line.empty()) {
      EXPECT_NE(line.back(), ' ') << line;
      EXPECT_NE(line.back(), '\t') << line;
    }
    if (end == std::string::npos) break;
    start = end + 2;
  }
}

TEST(QuotedPrintableTest, Rules) {
  EXPECT_EQ(EncodeQuotedPrintable("caf\xc3\xa9 = ok\r\n"), "caf=C3=A9 =3D ok\r\n");
  // Trailing white space is encoded (rule 3); other lines keep theirs.
  EXPECT_EQ(EncodeQuotedPrintable("a b \r\nc\t"), "a b=20\r\nc=09");
  // A bare CR or LF is data, not a line break.
  EXPECT_EQ(EncodeQuotedPrintable("x\ry\nz"), "x=0Dy=0Az");
}

TEST(QuotedPrintableTest, LongLinesGetSoftBreaksAndRoundTrip) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += (i % 7 == 0) ? "\xc3\xbc" : "w";
  text += "\r\n";
  text += std::string(76, 'x') + "\r\n" + std::string(77, 'y') + " \r\n";
  std::string qp = EncodeQuotedPrintable(text);
  ExpectValidQp(qp);
  EXPECT_NE(qp.find("=\r\n"), std::string::npos);
  EXPECT_EQ(DecodeQp(qp), text);
  // Exactly 76 characters fit one encoded line.
  EXPECT_EQ(EncodeQuotedPrintable(std::string(76, 'x')), std::string(76, 'x'));
}

TEST(DowngradeTest, SevenBitMessageIsUnchanged) {
  std::string m = "Subject: hi\r\n\r\nplain ascii\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  EXPECT_EQ(*out, m);
}

TEST(DowngradeTest, NonMimeMessageBecomesMimeQp) {
  std::string m = "From: a@x.test\r\nSubject: hi\r\n\r\ncaf\xc3\xa9\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  EXPECT_EQ(*out,
            "From: a@x.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n");
}

TEST(DowngradeTest, NonUtf8BodyIsLabelledUnknown8Bit) {
  std::string m = "Subject: hi\r\n\r\ncaf\xe9\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  EXPECT_NE(out->find("charset=unknown-8bit"), std::string::npos);
  EXPECT_NE(out->find("caf=E9"), std::string::npos);
}

TEST(DowngradeTest, SinglePartCteRewritten) {
  std::string m =
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
      "Content-Transfer-Encoding: 8bit\r\nSubject: s\r\n\r\n\xe9t\xe9\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  EXPECT_EQ(*out,
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\nSubject: s\r\n\r\n"
            "=E9t=E9\r\n");
}

TEST(DowngradeTest, MultipartOnlyEightBitPartsChange) {
  std::string m =
      "MIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"b 1\"\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n"
      "preamble\r\n"
      "--b 1\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n\r\n"
      "ascii only\r\n"
      "--b 1\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n"
      "gr\xc3\xbc\xc3\x9f\r\n"
      "--b 1\r\n"
      "Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
      "--inner\r\n"
      "Content-Type: text/html\r\n\r\n"
      "<p>\xc3\xa9</p>\r\n"
      "--inner--\r\n"
      "--b 1--  \r\n"
      "epilogue\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  EXPECT_EQ(*out,
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b 1\"\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
            "preamble\r\n"
            "--b 1\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "ascii only\r\n"
            "--b 1\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "gr=C3=BC=C3=9F\r\n"
            "--b 1\r\n"
            "Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
            "--inner\r\n"
            "Content-Type: text/html\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "<p>=C3=A9</p>\r\n"
            "--inner--\r\n"
            "--b 1--  \r\n"
            "epilogue\r\n");
}

TEST(DowngradeTest, MessageRfc822IsConvertedInside) {
  std::string m =
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
      "--x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"
      "\r\nSubject: inner\r\n\r\nna\xc3\xafve\r\n--x--\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  EXPECT_NE(out->find("Content-Type: message/rfc822\r\n"
                      "Content-Transfer-Encoding: 7bit\r\n\r\n"
                      "Subject: inner\r\nMIME-Version: 1.0\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                      "na=C3=AFve\r\n--x--\r\n"),
            std::string::npos)
      << *out;
  EXPECT_FALSE(Has8Bit(*out));
}

TEST(DowngradeTest, RefusedCases) {
  const char* cases[] = {
      // Raw 8-bit in a header field: only SMTPUTF8 carries that.
      "Subject: caf\xc3\xa9\r\n\r\nbody\r\n",
      // ... also in a part's header.
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
      "--x\r\nContent-Disposition: attachment; filename=\xc3\xa9\r\n\r\n"
      "\xc3\xa9\r\n--x--\r\n",
      // 8-bit in the preamble.
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
      "\xc3\xa9\r\n--x\r\n\r\nok\r\n--x--\r\n",
      // A boundary that never comes.
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
      "\xc3\xa9\r\n",
      // A part claiming base64 with 8-bit octets.
      "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n\xc3\xa9\r\n",
      // message/* other than rfc822 cannot be encoded (RFC 2046 5.2.2).
      "MIME-Version: 1.0\r\nContent-Type: message/partial; id=1; number=1\r\n"
      "\r\n\xc3\xa9\r\n",
  };
  for (const char* c : cases) {
    std::string error;
    EXPECT_FALSE(DowngradeTo7Bit(c, &error)) << c;
    EXPECT_FALSE(error.empty()) << c;
  }
}

TEST(DowngradeTest, DeepNestingRefusedNotCrashing) {
  std::string m = "MIME-Version: 1.0\r\n";
  for (int i = 0; i < 100; ++i)
    m += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) +
         "\r\n\r\n--b" + std::to_string(i) + "\r\n";
  m += "\r\n\xc3\xa9\r\n";
  std::string error;
  EXPECT_FALSE(DowngradeTo7Bit(m, &error));
  EXPECT_EQ(error, "MIME structure nested too deeply");
}

TEST(DowngradeTest, DigestPartsDefaultToMessage) {
  std::string m =
      "MIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n"
      "--d\r\n\r\nSubject: one\r\n\r\n\xc3\xa9\r\n--d--\r\n";
  std::string error;
  auto out = DowngradeTo7Bit(m, &error);
  ASSERT_TRUE(out) << error;
  // The part is a message: its own body is encoded, the part is not.
  EXPECT_NE(out->find("--d\r\n\r\nSubject: one\r\nMIME-Version: 1.0\r\n"),
            std::string::npos)
      << *out;
  EXPECT_FALSE(Has8Bit(*out));
}

}  // namespace
}  // namespace tern::smtp::client
