#include "delivery/intent_log.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::delivery {
namespace {

IntentRecord Sample() {
  return IntentRecord{0x8e5f655d, 1261, "d.test/u/Maildir/tmp/1.M2P3Q4.host",
                      "d.test/u/Maildir/new/1.M2P3Q4.host,S=1261,W=1283"};
}

TEST(IntentLogTest, WrittenRecordParsesBack) {
  std::string out;
  AppendIntent(out, Sample());
  EXPECT_EQ(out,
            "8e5f655d\t1261\td.test/u/Maildir/tmp/1.M2P3Q4.host\t"
            "d.test/u/Maildir/new/1.M2P3Q4.host,S=1261,W=1283\n");
  auto r = ParseIntent(std::string_view(out).substr(0, out.size() - 1));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, Sample());
}

TEST(IntentLogTest, SmallCrcKeepsItsLeadingZeros) {
  IntentRecord r = Sample();
  r.crc = 0x2a;
  r.size = 0;
  std::string out;
  AppendIntent(out, r);
  EXPECT_EQ(out.substr(0, 11), "0000002a\t0\t");
  EXPECT_EQ(ParseIntent(std::string_view(out).substr(0, out.size() - 1)), r);
}

TEST(IntentLogTest, MalformedRecordsAreRefused) {
  const std::string paths = "\ta/tmp/x\ta/new/x";
  // Fields missing or extra.
  EXPECT_FALSE(ParseIntent(""));
  EXPECT_FALSE(ParseIntent("0000002a\t1\ta/tmp/x"));
  EXPECT_FALSE(ParseIntent("0000002a\t1" + paths + "\textra"));
  // The CRC: eight lower-case hex digits, nothing else.
  EXPECT_TRUE(ParseIntent("0000002a\t1" + paths));
  EXPECT_FALSE(ParseIntent("2a\t1" + paths));
  EXPECT_FALSE(ParseIntent("0000002A\t1" + paths));
  EXPECT_FALSE(ParseIntent("0000002g\t1" + paths));
  EXPECT_FALSE(ParseIntent("+000002a\t1" + paths));
  // The size: decimal digits that fit 64 bits. Before, strtoull read "12x"
  // as 12 and "x" as 0, and replay removed the copy as incomplete.
  EXPECT_FALSE(ParseIntent("0000002a\t" + paths));
  EXPECT_FALSE(ParseIntent("0000002a\t12x" + paths));
  EXPECT_FALSE(ParseIntent("0000002a\t-1" + paths));
  EXPECT_FALSE(ParseIntent("0000002a\t 1" + paths));
  EXPECT_TRUE(ParseIntent("0000002a\t18446744073709551615" + paths));
  EXPECT_FALSE(ParseIntent("0000002a\t18446744073709551616" + paths));
}

TEST(IntentLogTest, PathsMustStayBelowTheMailRoot) {
  EXPECT_TRUE(SafeRelativePath("d/u/Maildir/tmp/x"));
  EXPECT_TRUE(SafeRelativePath("x"));
  EXPECT_TRUE(SafeRelativePath("d/u/Maildir/.Junk/tmp/x"));
  EXPECT_TRUE(SafeRelativePath("d/u/...x"));
  EXPECT_FALSE(SafeRelativePath(""));
  EXPECT_FALSE(SafeRelativePath("/etc/passwd"));
  EXPECT_FALSE(SafeRelativePath("d/../../etc/passwd"));
  EXPECT_FALSE(SafeRelativePath(".."));
  EXPECT_FALSE(SafeRelativePath("d/./x"));
  EXPECT_FALSE(SafeRelativePath("d//x"));
  EXPECT_FALSE(SafeRelativePath("d/x/"));
  EXPECT_FALSE(SafeRelativePath("d/x\ty"));
  EXPECT_FALSE(SafeRelativePath("d/x\ny"));
  EXPECT_FALSE(ParseIntent("0000002a\t1\t../x\ta/new/x"));
  EXPECT_FALSE(ParseIntent("0000002a\t1\ta/tmp/x\t/a/new/x"));
}

}  // namespace
}  // namespace tern::delivery
