// Tests for the queue with local delivery wired in as the server wires it:
// exactly-once delivery under concurrent commits, recovery after a
// simulated crash, torn files, reused spool files, sendmail injection and
// pickup, large message spill, a full disk. (The queue on its own:
// queue/queue_test.cc.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "delivery/delivery_test_util.h"
#include "queue/queue.h"
#include "queue/queue_test_util.h"
#include "queue/spool_format.h"

namespace tern::queue {
namespace {

using namespace testing;  // NOLINT: test helpers
using delivery::LocalDelivery;
using delivery::testing::FakeDirectory;
using delivery::testing::OpenQueue;
using delivery::testing::QueueWithDelivery;

constexpr char kMessage[] = "Subject: test\r\n\r\nHello\r\n";

QueueWithDelivery StartQueue(const std::string& data_dir,
                             LocalDelivery::Resolver resolver,
                             uint32_t delivery_threads = 2) {
  Options options;
  options.data_dir = data_dir;
  options.delivery_threads = delivery_threads;
  options.hostname = "mx.example.test";
  auto q = OpenQueue(options, std::move(resolver));
  EXPECT_TRUE(q) << q.error().message;
  auto started = (*q)->Start();
  EXPECT_TRUE(started) << started.error().message;
  return std::move(*q);
}

// Used by the ENOSPC test: commits a message, fills the file system, lets a
// delivery fail, frees space and checks the retry delivers it.
bool CommitMessageAfterRestart(const std::string& data_dir,
                               const FakeDirectory& directory) {
  Options options;
  options.data_dir = data_dir;
  options.delivery_threads = 1;
  options.retry_seconds = 1;
  auto id = [&]() -> Result<std::string> {
    auto q = StartQueue(data_dir, directory.resolver(), 0);
    return CommitMessage(*q,
                         MakeEnvelope("a@example.org", {"bob@example.test"}),
                         std::string(20000, 'y') + "\r\n");
  }();
  if (!id) return false;
  const std::string filler = data_dir + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    std::string chunk(64 * 1024, 'z');
    for (int i = 0; i < 64 && out; ++i) out << chunk;
  }
  auto q = OpenQueue(options, directory.resolver());
  if (!q || !(*q)->Start()) return false;
  // The copy cannot be written (nor, on a full disk, the state file): the
  // message must simply stay queued.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  bool deferred = QueueSize(data_dir) == 1 &&
                  CountFiles(MaildirNew(data_dir, "example.test", "bob")) == 0;
  EXPECT_TRUE(deferred);
  std::filesystem::remove(filler);
  bool delivered = WaitFor([&] { return QueueSize(data_dir) == 0; },
                           std::chrono::seconds(8));
  (*q)->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(data_dir, "example.test", "bob")), 1u);
  std::filesystem::remove_all(data_dir);
  return deferred && delivered;
}

TEST(QueueTest, ManyConcurrentCommitsDeliveredExactlyOnce) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto q = StartQueue(dir.path(), directory.resolver(), 2);
  constexpr int kThreads = 8, kPerThread = 200;
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string body = "Subject: m\r\n\r\ntoken " + std::to_string(t) +
                           "-" + std::to_string(i) + "\r\n";
        auto id = CommitMessage(
            *q, MakeEnvelope("a@example.org", {"bob@example.test"}), body);
        (id ? ok : failed)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, kThreads * kPerThread);
  EXPECT_EQ(failed, 0);
  std::string new_dir = MaildirNew(dir.path(), "example.test", "bob");
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  std::set<std::string> tokens;
  for (const std::string& f : FilesIn(new_dir)) {
    std::string content = ReadFile(f);
    tokens.insert(content.substr(content.find("token")));
  }
  EXPECT_EQ(CountFiles(new_dir), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(tokens.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(CountFiles(dir.path() + "/mail/example.test/bob/Maildir/tmp"), 0u);
}

TEST(QueueTest, RecoveryDeliversAfterCrash) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  std::vector<std::string> ids;
  {
    // No delivery threads: messages are committed and then the "process
    // dies" with them queued.
    auto q = StartQueue(dir.path(), directory.resolver(), 0);
    for (int i = 0; i < 20; ++i) {
      auto id = CommitMessage(
          *q, MakeEnvelope("a@example.org", {"bob@example.test"}), kMessage);
      ASSERT_TRUE(id);
      ids.push_back(*id);
    }
  }
  EXPECT_EQ(QueueSize(dir.path()), 20u);
  auto q = StartQueue(dir.path(), directory.resolver(), 2);
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 20u);
}

TEST(QueueTest, TornFilesAreDiscardedAtRecovery) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  std::string good_id;
  {
    auto q = StartQueue(dir.path(), directory.resolver(), 0);
    auto id = CommitMessage(
        *q, MakeEnvelope("a@example.org", {"bob@example.test"}), kMessage);
    ASSERT_TRUE(id);
    good_id = *id;
  }
  const std::string msg_dir = dir.path() + "/queue/msg/";
  std::string good = ReadFile(msg_dir + good_id);
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(msg_dir + name, std::ios::binary) << bytes;
  };
  // Torn variants: truncated, empty, unfinished (zero header), zero-filled
  // tail.
  write("0000000000000001", good.substr(0, good.size() - 3));
  write("0000000000000002", "");
  std::string unfinished = good;
  std::fill(unfinished.begin(), unfinished.begin() + kMessageHeaderSize, '\0');
  write("0000000000000003", unfinished);
  std::string zero_tail = good;
  std::fill(zero_tail.end() - 5, zero_tail.end(), '\0');
  write("0000000000000004", zero_tail);
  // A reused spool file whose new bytes never reached the disk: a complete,
  // valid message, but the envelope names another id (file_pool.h).
  write("0000000000000005", good);
  // A leftover state file for a torn message goes as well.
  std::ofstream(dir.path() + "/queue/state/0000000000000001") << "junk";

  auto q = StartQueue(dir.path(), directory.resolver(), 1);
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  EXPECT_EQ(CountFiles(dir.path() + "/queue/msg"), 0u);
  EXPECT_EQ(CountFiles(dir.path() + "/queue/state"), 0u);
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 1u);
}

TEST(QueueTest, DeliveredFilesAreReusedOverwrittenAndTruncated) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto q = StartQueue(dir.path(), directory.resolver(), 1);
  const std::string new_dir = MaildirNew(dir.path(), "example.test", "bob");
  const std::string big = "Subject: big\r\n\r\n" + std::string(30000, 'B') +
                          "\r\n";
  ASSERT_TRUE(CommitMessage(
      *q, MakeEnvelope("a@example.org", {"bob@example.test"}), big));
  ASSERT_TRUE(WaitFor([&] { return CountFiles(new_dir) == 1; }));
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  EXPECT_EQ(CountFiles(dir.path() + "/queue/free"), 1u);
  q->Stop();
  // Reopen with no delivery threads so the reused file can be inspected.
  q = StartQueue(dir.path(), directory.resolver(), 0);
  auto id = CommitMessage(
      *q, MakeEnvelope("a@example.org", {"bob@example.test"}), kMessage);
  ASSERT_TRUE(id);
  EXPECT_EQ(CountFiles(dir.path() + "/queue/free"), 0u);
  q->Stop();
  auto entries = List(dir.path());
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ(entries->front().envelope.id, *id);
  EXPECT_EQ(entries->front().size, sizeof kMessage - 1);
  // The old, longer content is gone: the file is exactly the new message
  // (format 2: header, message, envelope).
  std::string file = ReadFile(dir.path() + "/queue/msg/" + *id);
  EXPECT_EQ(file.substr(queue::kMessageHeaderSize, sizeof kMessage - 1), kMessage);
  EXPECT_EQ(file.find("BBBB"), std::string::npos);
  q = StartQueue(dir.path(), directory.resolver(), 1);
  ASSERT_TRUE(WaitFor([&] { return CountFiles(new_dir) == 2; }));
  q->Stop();
  size_t small = 0;
  for (const std::string& f : FilesIn(new_dir)) {
    small += ReadFile(f).ends_with("\nHello\n") ? 1 : 0;
  }
  EXPECT_EQ(small, 1u);
}

TEST(QueueTest, PickupOfAnIdAlreadyQueuedKeepsBothMessages) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  std::string id;
  {
    auto q = StartQueue(dir.path(), directory.resolver(), 0);
    auto committed = CommitMessage(
        *q, MakeEnvelope("first@example.org", {"bob@example.test"}), kMessage);
    ASSERT_TRUE(committed);
    id = *committed;
    Envelope env = MakeEnvelope("second@example.org", {"bob@example.test"});
    env.id = id;  // the clash
    auto injected = Inject(dir.path(), env, kMessage);
    ASSERT_TRUE(injected);
    EXPECT_EQ(*injected, id);
    ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 2; },
                        std::chrono::seconds(5)));
    q->Stop();
  }
  auto entries = List(dir.path());
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 2u);
  std::set<std::string> senders;
  for (const Entry& e : *entries) {
    senders.insert(e.envelope.sender);
    if (e.envelope.id == id) {
      EXPECT_EQ(e.envelope.sender, "first@example.org");
    }
  }
  EXPECT_EQ(senders.size(), 2u);
  EXPECT_EQ(CountFiles(dir.path() + "/queue/incoming"), 0u);
  auto q = StartQueue(dir.path(), directory.resolver(), 1);
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 2u);
}

TEST(QueueTest, InjectBeforeStartAndWhileRunningIsPickedUp) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto first =
      Inject(dir.path(),
             MakeEnvelope("root@example.test", {"bob@example.test"}), kMessage);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(
      std::filesystem::exists(dir.path() + "/queue/incoming/" + *first));
  auto q = StartQueue(dir.path(), directory.resolver(), 1);
  const std::string new_dir = MaildirNew(dir.path(), "example.test", "bob");
  ASSERT_TRUE(WaitFor([&] { return CountFiles(new_dir) == 1; }));
  auto second =
      Inject(dir.path(), MakeEnvelope("", {"bob@example.test"}), kMessage);
  ASSERT_TRUE(second);
  // The pickup thread scans about once per second.
  ASSERT_TRUE(WaitFor([&] { return CountFiles(new_dir) == 2; },
                      std::chrono::seconds(5)));
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  EXPECT_EQ(CountFiles(dir.path() + "/queue/incoming"), 0u);
  bool null_sender_seen = false;
  for (const std::string& f : FilesIn(new_dir)) {
    null_sender_seen |= ReadFile(f).starts_with("Return-Path: <>\n");
  }
  EXPECT_TRUE(null_sender_seen);
}

TEST(QueueTest, LargeMessageSpillsToDiskAndDeliversIntact) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto q = StartQueue(dir.path(), directory.resolver(), 0);
  auto w = q->Begin(MakeEnvelope("a@example.org", {"bob@example.test"}));
  ASSERT_TRUE(w);
  const std::string path = dir.path() + "/queue/msg/" + (*w)->id();
  std::string expected_lf =
      "Return-Path: <a@example.org>\nDelivered-To: bob@example.test\n";
  std::string line(998, 'y');
  uint64_t written = 0;
  for (int i = 0; written < (1u << 20); ++i) {
    std::string chunk = line.substr(0, 900 + i % 98) + "\r\n";
    ASSERT_TRUE((*w)->Write(chunk));
    written += chunk.size();
    expected_lf += chunk.substr(0, chunk.size() - 2) + "\n";
  }
  EXPECT_EQ((*w)->size(), written);
  // Most of the message is already on disk, not in memory.
  EXPECT_GT(std::filesystem::file_size(path), written - 70 * 1024);
  std::promise<Result<void>> p;
  q->Commit(std::move(*w), [&](Result<void> r) { p.set_value(r); });
  ASSERT_TRUE(p.get_future().get());
  auto entries = List(dir.path());
  ASSERT_TRUE(entries);
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].size, written);
  q->Stop();
  q.reset();
  // Deliver with a fresh queue (exercises recovery's full checksum too).
  auto q2 = StartQueue(dir.path(), directory.resolver(), 1);
  const std::string new_dir = MaildirNew(dir.path(), "example.test", "bob");
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q2->Stop();
  auto files = FilesIn(new_dir);
  ASSERT_EQ(files.size(), 1u);
  std::string content = ReadFile(files[0]);
  EXPECT_TRUE(content == expected_lf);
  EXPECT_NE(files[0].find(",S=" + std::to_string(expected_lf.size())),
            std::string::npos);
}

// ENOSPC needs a tiny file system, e.g. as root:
//   mount -t tmpfs -o size=512k tmpfs /mnt/small
//   TERN_TEST_SMALL_FS=/mnt/small ./tests
TEST(QueueTest, NoSpaceReachesCallbackAndDeliveryWaits) {
  const char* small = std::getenv("TERN_TEST_SMALL_FS");
  if (small == nullptr) GTEST_SKIP() << "TERN_TEST_SMALL_FS not set";
  std::string tmpl = std::string(small) + "/data-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string data_dir = tmpl;
  FakeDirectory directory{{"bob@example.test"}, {}};
  Options options;
  options.data_dir = data_dir;
  options.delivery_threads = 0;
  auto q = OpenQueue(options, directory.resolver());
  ASSERT_TRUE(q && (*q)->Start());

  // A large message: Write reports the failure, Commit carries it.
  auto w = (*q)->Begin(MakeEnvelope("a@example.org", {"bob@example.test"}));
  ASSERT_TRUE(w);
  std::string chunk(64 * 1024, 'z');
  bool write_failed = false;
  for (int i = 0; i < 64 && !write_failed; ++i)
    write_failed = !(*w)->Write(chunk);
  EXPECT_TRUE(write_failed);
  std::promise<Result<void>> p1;
  (*q)->Commit(std::move(*w), [&](Result<void> r) { p1.set_value(r); });
  Result<void> r1 = p1.get_future().get();
  ASSERT_FALSE(r1);
  EXPECT_TRUE(r1.error().NoSpace()) << r1.error().message;
  EXPECT_NE(r1.error().message.find("No space"), std::string::npos)
      << r1.error().message;

  // A small message on a full file system: the error reaches `done`.
  const std::string filler = data_dir + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    for (int i = 0; i < 64 && out; ++i) out << chunk;
  }
  auto id =
      CommitMessage(**q, MakeEnvelope("a@example.org", {"bob@example.test"}),
                    std::string(8000, 'x'));
  ASSERT_FALSE(id);
  EXPECT_TRUE(id.error().NoSpace()) << id.error().message;
  EXPECT_NE(id.error().message.find("No space"), std::string::npos)
      << id.error().message;
  std::filesystem::remove(filler);
  (*q)->Stop();

  // Delivery into a full Maildir keeps the message queued, then retries.
  ASSERT_TRUE(CommitMessageAfterRestart(data_dir, directory));
}

// Commit rate with 32 sessions committing 1 KiB messages (no delivery).
// Run with --gtest_also_run_disabled_tests --gtest_filter=*Throughput*.
TEST(QueueTest, DISABLED_CommitThroughput) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  spdlog::set_level(
      spdlog::level::warn);  // one info line per delivery otherwise
  for (uint32_t delivery_threads : {0u, 2u}) {
    auto q = StartQueue(dir.path(), directory.resolver(), delivery_threads);
    std::string body = "Subject: bench\r\n\r\n";
    while (body.size() < 1022)
      body += "0123456789abcdef0123456789abcdef0123456789abcdef\r\n";
    body.resize(1022);
    body += "\r\n";
    constexpr int kThreads = 32;
    const auto duration = std::chrono::seconds(3);
    std::atomic<int> count{0}, failed{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        while (!stop) {
          auto id = CommitMessage(
              *q, MakeEnvelope("a@example.org", {"bob@example.test"}), body);
          (id ? count : failed)++;
        }
      });
    }
    std::this_thread::sleep_for(duration);
    stop = true;
    for (auto& t : threads) t.join();
    double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    std::printf(
        "delivery_threads=%u: %d commits in %.2f s = %.0f commits/s (%d "
        "failed)\n",
        delivery_threads, count.load(), secs, count / secs, failed.load());
    if (delivery_threads > 0) {
      auto t0 = std::chrono::steady_clock::now();
      WaitFor([&] { return QueueSize(dir.path()) == 0; },
              std::chrono::seconds(60));
      std::printf(
          "  delivery backlog drained %.2f s after the last commit\n",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count());
    }
    q->Stop();
  }
  spdlog::set_level(spdlog::level::info);
}

}  // namespace
}  // namespace tern::queue
