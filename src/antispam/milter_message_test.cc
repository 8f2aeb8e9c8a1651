// Unit tests for the message form the mail filters see and change
// (MilterMessage, ApplyMilterChanges); the conversations themselves are tested against real
// filters (tests/test_milter.py with libmilter, tests/test_rspamd.py).
#include "antispam/milter_message.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

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

MilterReply Change(MilterReply::Kind kind, std::string name, std::string value,
                   uint32_t index = 0) {
  MilterReply r;
  r.kind = kind;
  r.name = std::move(name);
  r.value = std::move(value);
  r.index = index;
  return r;
}

MilterReply Address(MilterReply::Kind kind, std::string address) {
  MilterReply r;
  r.kind = kind;
  r.address = std::move(address);
  return r;
}

using K = MilterReply::Kind;

TEST(MilterChangesTest, HeaderFieldsAddedInsertedChangedDeleted) {
  MilterMessage m = MilterMessage::Parse(
      "Received: a\r\nSubject: one\r\nX-Tag: first\r\nX-Tag: second\r\n\r\nbody\r\n");
  auto r = ApplyMilterChanges(
      {Change(K::kAddHeader, "X-Spamd-Result", "default: False [0.5 / 15.0];\n\tSYM(1.0)"),
       Change(K::kInsertHeader, "X-First", "top", 0),
       Change(K::kChangeHeader, "x-tag", "changed", 2),  // the second X-Tag
       Change(K::kChangeHeader, "Subject", "", 1),         // deleted
       Change(K::kChangeHeader, "X-Missing", "added", 1)},  // added
      m, "f");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->text);
  EXPECT_FALSE(r->envelope);
  EXPECT_FALSE(r->spam);
  EXPECT_EQ(m.Text(),
            "X-First: top\r\nReceived: a\r\nX-Tag: first\r\nX-Tag: changed\r\n"
            "X-Spamd-Result: default: False [0.5 / 15.0];\r\n\tSYM(1.0)\r\n"
            "X-Missing: added\r\n\r\nbody\r\n");
  // Deleting what is not there changes nothing.
  MilterMessage before = m;
  ASSERT_TRUE(ApplyMilterChanges({Change(K::kChangeHeader, "Nope", "", 1)}, m, "f"));
  EXPECT_EQ(m.Text(), before.Text());
}

TEST(MilterChangesTest, NoHeaderInjection) {
  const std::string text = "Subject: s\r\n\r\nbody\r\n";
  for (const char* bad : {"x\nBcc: victim@example.org", "x\r\nBcc: v@example.org",
                          "x\r\n\r\nnew body", "x\rY", "x\n", "\nX: y"}) {
    MilterMessage m = MilterMessage::Parse(text);
    auto r = ApplyMilterChanges({Change(K::kAddHeader, "X-Ok", "fine"),
                                 Change(K::kAddHeader, "X-Filter", bad)},
                                m, "f");
    EXPECT_FALSE(r) << bad;
    EXPECT_EQ(m.Text(), text) << "nothing applied for " << bad;
  }
  for (const char* name : {"Bad Name", "Bad:Name", "", "X\r\nY"}) {
    MilterMessage m = MilterMessage::Parse(text);
    EXPECT_FALSE(ApplyMilterChanges({Change(K::kAddHeader, name, "v")}, m, "f")) << name;
  }
}

TEST(MilterChangesTest, BodyEnvelopeQuarantineAndSpam) {
  MilterMessage m = MilterMessage::Parse("Subject: s\r\n\r\nold\r\n");
  m.sender = "a@example.org";
  m.rcpts = {"b@example.test", "c@example.test"};
  MilterReply b1, b2, q;
  b1.kind = b2.kind = K::kReplaceBody;
  b1.body = "new\nbo";
  b2.body = "dy";  // chunks of one replacement
  q.kind = K::kQuarantine;
  auto r = ApplyMilterChanges(
      {b1, b2, Address(K::kChangeFrom, "<bounce@example.org>"),
       Address(K::kAddRcpt, "<d@example.test>"), Address(K::kAddRcpt, "B@example.test"),
       Address(K::kDelRcpt, "<c@example.test>"), q,
       Change(K::kAddHeader, "X-Spam", "Yes")},
      m, "127.0.0.1:11332");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->text && r->envelope && r->spam);
  EXPECT_EQ(r->quarantine, "by 127.0.0.1:11332");
  EXPECT_EQ(m.body, "new\r\nbody\r\n");
  EXPECT_EQ(m.sender, "bounce@example.org");
  EXPECT_EQ(m.rcpts, (std::vector<std::string>{"b@example.test", "d@example.test"}));
  // Spam verdicts: only "yes" at the start counts.
  for (auto [name, value, spam] :
       {std::tuple{"X-Spam-Flag", "YES", true}, std::tuple{"X-Spam-Status", "Yes, score=9", true},
        std::tuple{"X-Spam-Status", "No, score=0.1", false}, std::tuple{"X-Spam", "yesterday", false},
        std::tuple{"X-Spam-Level", "yes", false}}) {
    MilterMessage n = MilterMessage::Parse("A: b\r\n\r\n");
    auto s = ApplyMilterChanges({Change(K::kAddHeader, name, value)}, n, "f");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->spam, spam) << name << ": " << value;
  }
  MilterMessage n = MilterMessage::Parse("A: b\r\n\r\n");
  EXPECT_FALSE(ApplyMilterChanges({Address(K::kAddRcpt, "<a b@example.test>")}, n, "f"));
  EXPECT_FALSE(ApplyMilterChanges({Address(K::kAddRcpt, "<>")}, n, "f"));
  EXPECT_FALSE(ApplyMilterChanges({Address(K::kChangeFrom, "x\r\n@y")}, n, "f"));
  EXPECT_TRUE(ApplyMilterChanges({Address(K::kChangeFrom, "<>")}, n, "f"));
  EXPECT_EQ(n.sender, "");
  EXPECT_EQ(DescribeMilterChanges({Change(K::kAddHeader, "A", "b"), Change(K::kAddHeader, "C", "d"),
                                   Address(K::kDelRcpt, "x@y")}),
            "2 header,1 recipient");
}

}  // namespace
}  // namespace tern::antispam
