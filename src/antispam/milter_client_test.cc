// Unit tests for the message form the mail filters see and change
// (MilterMessage); the conversations themselves are tested against real
// filters (tests/test_milter.py with libmilter, tests/test_rspamd.py).
#include "antispam/milter_client.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::antispam {
namespace {

TEST(MilterMessageTest, FieldsFoldsAndBodyRoundTrip) {
  const std::string text =
      "Received: from x\r\n\tby y; Sat, 5 Dec 2026 10:00:00 +0000\r\n"
      "Subject:no space\r\n"
      "To: <a@example.test>\r\n"
      "\r\n"
      "Body line\r\n\r\nlast\r\n";
  MilterMessage m = MilterMessage::Parse(text);
  ASSERT_EQ(m.fields.size(), 3u);
  EXPECT_EQ(m.fields[0].name, "Received");
  EXPECT_EQ(m.fields[0].value, " from x\r\n\tby y; Sat, 5 Dec 2026 10:00:00 +0000");
  EXPECT_EQ(m.fields[1].name, "Subject");
  EXPECT_EQ(m.fields[1].value, "no space");
  EXPECT_TRUE(m.separator);
  EXPECT_EQ(m.body, "Body line\r\n\r\nlast\r\n");
  EXPECT_EQ(m.Text(), text);
}

TEST(MilterMessageTest, HeaderSectionEndsAtALineThatIsNoField) {
  // No empty line: the first line that is not a field starts the body.
  const std::string text = "Subject: a\r\nnot a field line\r\nmore\r\n";
  MilterMessage m = MilterMessage::Parse(text);
  ASSERT_EQ(m.fields.size(), 1u);
  EXPECT_FALSE(m.separator);
  EXPECT_EQ(m.body, "not a field line\r\nmore\r\n");
  EXPECT_EQ(m.Text(), text);
  // Headers only, no body at all.
  MilterMessage h = MilterMessage::Parse("Subject: b\r\n");
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_TRUE(h.body.empty());
  EXPECT_EQ(h.Text(), "Subject: b\r\n");
  // A body only.
  MilterMessage b = MilterMessage::Parse("\r\nhello\r\n");
  EXPECT_TRUE(b.fields.empty());
  EXPECT_TRUE(b.separator);
  EXPECT_EQ(b.Text(), "\r\nhello\r\n");
}

}  // namespace
}  // namespace tern::antispam
