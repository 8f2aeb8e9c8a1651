// Unit tests for the Maildir store: listing and index reuse, UIDs, UIDL
// derivation, seen flags, renames by other programs, the session lock and
// the journaled expunge (including a replay after a simulated crash).
#include "store/maildir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

namespace tern::store {
namespace {

namespace fs = std::filesystem;

class StoreMaildirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() /
           ("tern-maildir-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    path = (root / "Maildir").string();
  }
  void TearDown() override { fs::remove_all(root); }

  void Put(const std::string& rel, const std::string& content) {
    std::ofstream(path + "/" + rel, std::ios::binary) << content;
  }
  std::unique_ptr<Maildir> OpenScanned() {
    auto md = Maildir::Open(path);
    EXPECT_TRUE(md) << md.error().message;
    auto r = (*md)->Scan();
    EXPECT_TRUE(r) << r.error().message;
    return std::move(*md);
  }
  std::string Read(Maildir& md, size_t i) {
    auto fd = md.OpenMessage(i);
    EXPECT_TRUE(fd) << fd.error().message;
    std::string out(4096, '\0');
    ssize_t n = ::read(fd->get(), out.data(), out.size());
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
  }

  fs::path root;
  std::string path;
};

TEST(StoreUidlTest, Derivation) {
  EXPECT_EQ(UniqueOf("123.M4P5Q6.host,S=10:2,S"), "123.M4P5Q6.host,S=10");
  EXPECT_EQ(UniqueOf("123.M4P5Q6.host"), "123.M4P5Q6.host");
  EXPECT_EQ(UidlFor("123.M4P5Q6.host,S=10"), "123.M4P5Q6.host,S=10");
  std::string long_name(71, 'a');
  std::string h = UidlFor(long_name);
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(h, UidlFor(long_name));  // stable
  EXPECT_NE(h, UidlFor(std::string(72, 'a')));
  EXPECT_EQ(UidlFor("with space").size(), 64u);  // RFC 1939 7: 0x21..0x7E
}

TEST_F(StoreMaildirTest, OpenCreatesEmptyMaildir) {
  auto md = OpenScanned();
  EXPECT_TRUE(md->messages().empty());
  for (const char* sub : {"tmp", "new", "cur"}) {
    EXPECT_TRUE(fs::is_directory(path + "/" + sub)) << sub;
  }
}

TEST_F(StoreMaildirTest, ListsSizesAndUidsAndReusesIndex) {
  OpenScanned();
  Put("new/100.M1P1Q1.h,S=9", "A: b\n\nxy\n");   // 9 LF, 12 CRLF octets
  Put("cur/99.M1P1Q1.h,S=3:2,S", "a\r\n");        // already CRLF
  // Written later: gets the higher UID although its name sorts first.
  fs::last_write_time(path + "/new/100.M1P1Q1.h,S=9",
                      fs::last_write_time(path + "/cur/99.M1P1Q1.h,S=3:2,S") -
                          std::chrono::seconds(5));
  Put("new/.hidden", "not mail");
  auto md = OpenScanned();
  ASSERT_EQ(md->messages().size(), 2u);
  // Arrival order is write order (mtime), not name order.
  const auto& m = md->messages();
  EXPECT_EQ(md->last_scan_reads(), 2u);
  EXPECT_EQ(m[0].unique, "100.M1P1Q1.h,S=9");
  EXPECT_EQ(m[0].size, 12u);
  EXPECT_EQ(m[0].uid, 1u);
  EXPECT_EQ(m[1].unique, "99.M1P1Q1.h,S=3");
  EXPECT_EQ(m[1].size, 3u);  // already CRLF: unchanged
  EXPECT_EQ(m[1].uid, 2u);
  uint32_t validity = md->uidvalidity();

  // A second scan reads no file; a new message is read and gets UID 3.
  Put("new/101.M1P1Q1.h", "x\n");
  auto md2 = OpenScanned();
  EXPECT_EQ(md2->last_scan_reads(), 1u);
  ASSERT_EQ(md2->messages().size(), 3u);
  EXPECT_EQ(md2->messages()[2].uid, 3u);
  EXPECT_EQ(md2->messages()[2].size, 3u);
  EXPECT_EQ(md2->uidvalidity(), validity);
  auto md3 = OpenScanned();
  EXPECT_EQ(md3->last_scan_reads(), 0u);
}

TEST_F(StoreMaildirTest, DamagedIndexIsRebuilt) {
  OpenScanned();
  Put("new/1.a.h", "x\n");
  OpenScanned();
  Put("tern-index", "garbage\n");
  auto md = OpenScanned();
  ASSERT_EQ(md->messages().size(), 1u);
  EXPECT_EQ(md->messages()[0].size, 3u);
}

TEST_F(StoreMaildirTest, MarkSeenMovesToCur) {
  OpenScanned();
  Put("new/1.a.h,S=2", "x\n");
  Put("cur/2.a.h:2,RF", "y\n");
  auto md = OpenScanned();
  ASSERT_TRUE(md->MarkSeen(0));
  EXPECT_TRUE(fs::exists(path + "/cur/1.a.h,S=2:2,S"));
  EXPECT_FALSE(fs::exists(path + "/new/1.a.h,S=2"));
  ASSERT_TRUE(md->MarkSeen(1));
  EXPECT_TRUE(fs::exists(path + "/cur/2.a.h:2,FRS"));
  ASSERT_TRUE(md->MarkSeen(1));  // already seen: no change
  EXPECT_EQ(Read(*md, 0), "x\n");
  // The UIDs do not change with the renames.
  auto md2 = OpenScanned();
  EXPECT_EQ(md2->last_scan_reads(), 0u);
  EXPECT_EQ(md2->messages()[0].uid, 1u);
}

TEST_F(StoreMaildirTest, FindsMessagesRenamedByOthers) {
  OpenScanned();
  Put("new/1.a.h", "x\n");
  auto md = OpenScanned();
  fs::rename(path + "/new/1.a.h", path + "/cur/1.a.h:2,F");  // a MUA flags it
  EXPECT_EQ(Read(*md, 0), "x\n");
  ASSERT_TRUE(md->MarkSeen(0));
  EXPECT_TRUE(fs::exists(path + "/cur/1.a.h:2,FS"));
}

TEST_F(StoreMaildirTest, LockIsExclusive) {
  auto md = OpenScanned();
  auto a = MailboxLock::TryAcquire(md->fd());
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->has_value());
  auto md2 = OpenScanned();
  auto b = MailboxLock::TryAcquire(md2->fd());
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->has_value());
  a->reset();
  auto c = MailboxLock::TryAcquire(md2->fd());
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->has_value());
}

TEST_F(StoreMaildirTest, ExpungeRemovesFiles) {
  OpenScanned();
  Put("new/1.a.h", "1\n");
  Put("new/2.a.h", "2\n");
  Put("cur/3.a.h:2,S", "3\n");
  auto md = OpenScanned();
  ASSERT_TRUE(md->MarkSeen(0));
  ASSERT_TRUE(md->Expunge({0, 2}));
  EXPECT_FALSE(fs::exists(path + "/cur/1.a.h:2,S"));
  EXPECT_FALSE(fs::exists(path + "/cur/3.a.h:2,S"));
  EXPECT_TRUE(fs::exists(path + "/new/2.a.h"));
  EXPECT_FALSE(fs::exists(path + "/tern-expunge"));
  auto md2 = OpenScanned();
  ASSERT_EQ(md2->messages().size(), 1u);
  EXPECT_EQ(md2->messages()[0].uid, 2u);  // UIDs are never reused
  Put("new/4.a.h", "4\n");
  auto md3 = OpenScanned();
  EXPECT_EQ(md3->messages().back().uid, 4u);
}

TEST_F(StoreMaildirTest, InterruptedExpungeCompletesOnNextScan) {
  OpenScanned();
  Put("new/1.a.h", "1\n");
  Put("new/2.a.h", "2\n");
  // The state a crash right after the journal became durable leaves: one
  // file already renamed by someone else, one where the journal says.
  Put("tern-expunge", "1.a.h\tnew/1.a.h\n2.a.h\tnew/2.a.h\n");
  fs::rename(path + "/new/2.a.h", path + "/cur/2.a.h:2,S");
  auto md = OpenScanned();
  EXPECT_TRUE(md->messages().empty());
  EXPECT_FALSE(fs::exists(path + "/tern-expunge"));
  EXPECT_FALSE(fs::exists(path + "/cur/2.a.h:2,S"));
}

}  // namespace
}  // namespace tern::store
