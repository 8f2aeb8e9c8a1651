// Tests for the queue on its own: group commit, listing, writers that are
// never committed, an unusable spool, stopping. The queue with local
// delivery (recovery, torn files, pickup, large messages, ENOSPC) is tested
// in delivery/queue_delivery_test.cc.
#include "queue/queue.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>

#include <algorithm>
#include <future>

#include "common/unique_fd.h"
#include "queue/local.h"
#include "queue/spool_format.h"
#include "queue/queue_test_util.h"

namespace tern::queue {
namespace {

using namespace testing;  // NOLINT: test helpers

constexpr char kMessage[] = "Subject: test\r\n\r\nHello\r\n";

// These tests run no delivery threads: nothing is ever delivered.
class NoDelivery final : public LocalDeliverer {
 public:
  std::vector<LocalOutcome> DeliverBatch(
      const LocalSpool& spool, const std::vector<std::string>& ids) override {
    ADD_FAILURE() << "a delivery without delivery threads";
    return {};
  }
};

std::unique_ptr<Queue> StartQueue(const std::string& data_dir) {
  static NoDelivery no_delivery;
  Options options;
  options.data_dir = data_dir;
  options.delivery_threads = 0;
  options.hostname = "mx.example.test";
  options.local = &no_delivery;
  auto q = Queue::Open(options);
  EXPECT_TRUE(q) << q.error().message;
  auto started = (*q)->Start();
  EXPECT_TRUE(started) << started.error().message;
  return std::move(*q);
}

TEST(QueueTest, CommitCallsBackFileExistsAndListed) {
  TempDir dir;
  auto q = StartQueue(dir.path());
  Envelope env = MakeEnvelope("alice@example.org", {"bob@example.test"});
  env.envid = "E1";
  auto id = CommitMessage(*q, env, kMessage);
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/queue/msg/" + *id));
  auto entries = List(dir.path());
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 1u);
  const Entry& e = (*entries)[0];
  EXPECT_EQ(e.envelope.id, *id);
  EXPECT_EQ(e.envelope.sender, "alice@example.org");
  EXPECT_EQ(e.envelope.envid, "E1");
  EXPECT_EQ(e.size, sizeof kMessage - 1);
  ASSERT_EQ(e.state.size(), 1u);
  EXPECT_EQ(e.state[0], RecipientState::kPending);
  EXPECT_NE(e.envelope.received_at, 0);
  q->Stop();
}

// A mail filter's changes: the writer starts the message again (small
// messages in memory, big ones spilled to the file) and the envelope
// changes before the commit; a quarantined message is listed as held.
TEST(QueueTest, RestartEnvelopeChangesAndQuarantine) {
  TempDir dir;
  auto q = StartQueue(dir.path());
  for (size_t first : {size_t{100}, size_t{3} << 20}) {
    auto w = q->Begin(MakeEnvelope("alice@example.org", {"bob@example.test"}));
    ASSERT_TRUE(w);
    std::string id = (*w)->id();
    ASSERT_TRUE((*w)->Write(std::string(first, 'x')));
    ASSERT_TRUE((*w)->Restart());
    ASSERT_TRUE((*w)->Write(kMessage));
    EXPECT_EQ((*w)->size(), sizeof kMessage - 1);
    (*w)->envelope().sender = "filter@example.org";
    (*w)->envelope().recipients.push_back({"carol@example.test", "", ""});
    (*w)->envelope().quarantine = "looks odd";
    std::promise<Result<void>> p;
    auto f = p.get_future();
    q->Commit(std::move(*w), [&p](Result<void> r) { p.set_value(std::move(r)); });
    ASSERT_TRUE(f.get());
    auto entries = List(dir.path());
    ASSERT_TRUE(entries);
    auto e = std::find_if(entries->begin(), entries->end(),
                          [&](const Entry& x) { return x.envelope.id == id; });
    ASSERT_NE(e, entries->end());
    EXPECT_EQ(e->size, sizeof kMessage - 1);
    EXPECT_EQ(e->envelope.sender, "filter@example.org");
    ASSERT_EQ(e->envelope.recipients.size(), 2u);
    EXPECT_EQ(e->envelope.recipients[1].address, "carol@example.test");
    EXPECT_TRUE(e->held);
    EXPECT_EQ(e->last_error, "quarantined: looks odd");
    // The file holds the new message only (its CRC checked on reading).
    UniqueFd fd(::open((dir.path() + "/queue/msg/" + id).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    auto file = ReadAndVerifyMessage(fd.get());
    ASSERT_TRUE(file) << file.error().message;
    auto text = ReadMessageText(fd.get(), *file, 1 << 20);
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, kMessage);
  }
  q->Stop();
}

TEST(QueueTest, ListOfMissingDataDirIsEmpty) {
  auto entries = List("/nonexistent/tern-data");
  ASSERT_TRUE(entries);
  EXPECT_TRUE(entries->empty());
}

TEST(QueueTest, UncommittedWriterRemovesItsFile) {
  TempDir dir;
  auto q = StartQueue(dir.path());
  std::string path;
  {
    auto w = q->Begin(MakeEnvelope("a@example.org", {"b@example.test"}));
    ASSERT_TRUE(w);
    path = dir.path() + "/queue/msg/" + (*w)->id();
    EXPECT_TRUE(std::filesystem::exists(path));
    std::string big(100 * 1024, 'x');  // past the memory limit: spilled
    EXPECT_TRUE((*w)->Write(big));
    // Still being received: List does not show it.
    EXPECT_EQ(QueueSize(dir.path()), 0u);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(QueueTest, BeginFailsWhenSpoolIsUnusable) {
  TempDir dir;
  auto q = StartQueue(dir.path());
  // Works as root too: creating a file in a removed directory fails.
  ASSERT_EQ(::rmdir((dir.path() + "/queue/msg").c_str()), 0);
  auto w = q->Begin(MakeEnvelope("a@example.org", {"b@example.test"}));
  EXPECT_FALSE(w);
  q->Stop();
}

TEST(QueueTest, BeginFailsWhenSpoolIsReadOnly) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  TempDir dir;
  auto q = StartQueue(dir.path());
  ::chmod((dir.path() + "/queue/msg").c_str(), 0500);
  auto w = q->Begin(MakeEnvelope("a@example.org", {"b@example.test"}));
  EXPECT_FALSE(w);
  ::chmod((dir.path() + "/queue/msg").c_str(), 0700);
  q->Stop();
}

TEST(QueueTest, StopAnswersPendingCommitsAndLaterCommitsFail) {
  TempDir dir;
  auto q = StartQueue(dir.path());
  std::atomic<int> ok{0};
  std::vector<std::unique_ptr<Writer>> late;
  for (int i = 0; i < 50; ++i) {
    auto w = q->Begin(MakeEnvelope("a@example.org", {"b@remote.example"}));
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->Write(kMessage));
    if (i < 40) {
      q->Commit(std::move(*w), [&](Result<void> r) { ok += r ? 1 : 0; });
    } else {
      late.push_back(std::move(*w));
    }
  }
  q->Stop();
  EXPECT_EQ(ok, 40);
  std::atomic<int> errors{0};
  for (auto& w : late) {
    q->Commit(std::move(w), [&](Result<void> r) { errors += r ? 0 : 1; });
  }
  EXPECT_EQ(errors, 10);
  EXPECT_EQ(QueueSize(dir.path()), 40u);
  EXPECT_FALSE(q->Begin(MakeEnvelope("a@example.org", {"b@remote.example"})));
}

}  // namespace
}  // namespace tern::queue
