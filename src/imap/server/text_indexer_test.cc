// The background full-text indexer: it completes a folder through a store
// of its own, drops a second request for the same folder while the first
// waits or runs, and stops at destruction.
#include "imap/server/text_indexer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "store/maildir_store.h"

namespace tern::imap {
namespace {

class TextIndexerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tern-text-indexer-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    maildir_ = root_ + "/Maildir";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::unique_ptr<store::MailStore> Open() {
    auto st = store::MaildirStore::Open(maildir_);
    EXPECT_TRUE(st) << st.error().message;
    return std::unique_ptr<store::MailStore>(std::move(*st));
  }
  TextIndexer::Opener Opener() {
    return [this]() -> Result<std::unique_ptr<store::MailStore>> {
      ++opened_;
      auto st = store::MaildirStore::Open(maildir_);
      if (!st) return tl::unexpected(st.error());
      return std::unique_ptr<store::MailStore>(std::move(*st));
    };
  }

  std::string root_, maildir_;
  std::atomic<int> opened_{0};
};

TEST_F(TextIndexerTest, CompletesTheFolderInTheBackground) {
  auto s = Open();
  for (int i = 0; i < 600; ++i) {
    std::ofstream(maildir_ + "/new/" + std::to_string(i) + ".M1.h")
        << "Subject: message " << i << "\n\n"
        << (i % 100 == 7 ? "the word is quokka\n" : "nothing to see\n");
  }
  ASSERT_EQ(s->Select("INBOX")->messages.size(), 600u);
  {
    TextIndexer indexer;
    indexer.Request("k", "INBOX", Opener());
    indexer.Request("k", "INBOX", Opener());  // dropped: already asked
    for (int i = 0; i < 600; ++i) {
      auto left = s->UnindexedText("INBOX", 1);
      ASSERT_TRUE(left);
      if (left->empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_EQ(opened_.load(), 1);
  auto found = s->SearchText("INBOX", "quokka", store::TextField::kText);
  ASSERT_TRUE(found && *found);
  // UIDs follow arrival (mtime) order, so only the count is fixed here.
  EXPECT_EQ((*found)->size(), 6u);
}

TEST_F(TextIndexerTest, DestructionStopsWithoutWaitingForTheQueue) {
  auto s = Open();
  ASSERT_TRUE(s->Select("INBOX"));
  TextIndexer indexer;
  for (int i = 0; i < 50; ++i) indexer.Request("k" + std::to_string(i), "INBOX", Opener());
  // Leaving the scope joins the thread; the queued jobs are dropped.
}

}  // namespace
}  // namespace tern::imap
