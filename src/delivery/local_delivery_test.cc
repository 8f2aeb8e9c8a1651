// End-to-end tests of local delivery through the queue: alias fan-out,
// remote recipients staying queued, unknown users, unwritable Maildirs,
// path traversal and the exact bytes of a delivered file.
#include "delivery/local_delivery.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "delivery/delivery_test_util.h"
#include "queue/queue_test_util.h"

namespace tern::delivery {
namespace {

using namespace queue::testing;  // NOLINT: test helpers
using auth::Resolution;
using delivery::testing::FakeDirectory;
using delivery::testing::OpenQueue;
using delivery::testing::QueueWithDelivery;
using queue::Entry;
using queue::Envelope;
using queue::Options;
using queue::RecipientState;

constexpr char kMessage[] = "Subject: hello\r\n\r\nline one\r\nline two\r\n";

QueueWithDelivery StartQueue(const std::string& data_dir,
                             LocalDelivery::Resolver resolver,
                             uint32_t retry_seconds = 60) {
  Options options;
  options.data_dir = data_dir;
  options.delivery_threads = 1;
  options.retry_seconds = retry_seconds;
  auto q = OpenQueue(options, std::move(resolver));
  EXPECT_TRUE(q);
  auto started = (*q)->Start();
  EXPECT_TRUE(started) << started.error().message;
  return std::move(*q);
}

Resolution Local(std::vector<std::string> mailboxes,
                 std::vector<std::string> remote = {}) {
  Resolution r;
  r.kind = Resolution::Kind::kLocal;
  r.mailboxes = std::move(mailboxes);
  r.remote = std::move(remote);
  return r;
}

// Waits until the message is no longer being worked on: gone, or with no
// pending local work left (its state file written).
bool WaitSettled(const std::string& data_dir, const std::string& id) {
  return WaitFor([&] {
    auto entries = queue::List(data_dir);
    if (!entries) return false;
    for (const Entry& e : *entries) {
      if (e.envelope.id == id) return !e.last_error.empty();
    }
    return true;
  });
}

std::optional<Entry> Find(const std::string& data_dir, const std::string& id) {
  auto entries = queue::List(data_dir);
  if (!entries) return std::nullopt;
  for (Entry& e : *entries) {
    if (e.envelope.id == id) return e;
  }
  return std::nullopt;
}

TEST(LocalDeliveryTest, ExactBytesWithCrlfToLf) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto q = StartQueue(dir.path(), directory.resolver());
  ASSERT_TRUE(CommitMessage(
      *q, MakeEnvelope("alice@example.org", {"bob@example.test"}), kMessage));
  const std::string new_dir = MaildirNew(dir.path(), "example.test", "bob");
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  auto files = FilesIn(new_dir);
  ASSERT_EQ(files.size(), 1u);
  const std::string expected =
      "Return-Path: <alice@example.org>\nDelivered-To: bob@example.test\n"
      "Subject: hello\n\nline one\nline two\n";
  EXPECT_EQ(ReadFile(files[0]), expected);
  std::string name = std::filesystem::path(files[0]).filename();
  // ",W=": the size with CRLF line ends, as IMAP counts it.
  size_t lines = std::count(expected.begin(), expected.end(), '\n');
  EXPECT_TRUE(name.ends_with(".localhost,S=" + std::to_string(expected.size()) +
                             ",W=" + std::to_string(expected.size() + lines)))
      << name;
}

TEST(LocalDeliveryTest, AliasFanOutToTwoMailboxesAndOneRemote) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test", "carol@example.test"}, {}};
  directory.aliases["team@example.test"] = Local(
      {"bob@example.test", "carol@example.test"}, {"dave@remote.example"});
  auto q = StartQueue(dir.path(), directory.resolver());
  Envelope env = MakeEnvelope("alice@example.org", {"team@example.test"});
  env.recipients[0].notify = "FAILURE";
  auto id = CommitMessage(*q, env, kMessage);
  ASSERT_TRUE(id);
  ASSERT_TRUE(WaitSettled(dir.path(), *id));
  q->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 1u);
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "carol")), 1u);
  for (const std::string& f :
       FilesIn(MaildirNew(dir.path(), "example.test", "carol"))) {
    EXPECT_TRUE(ReadFile(f).starts_with(
        "Return-Path: <alice@example.org>\nDelivered-To: "
        "carol@example.test\n"));
  }
  auto e = Find(dir.path(), *id);
  ASSERT_TRUE(e);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/queue/state/" + *id));
  ASSERT_EQ(e->envelope.recipients.size(), 2u);
  EXPECT_EQ(e->envelope.recipients[0].address, "team@example.test");
  EXPECT_EQ(e->state[0], RecipientState::kDelivered);
  EXPECT_EQ(e->envelope.recipients[1].address, "dave@remote.example");
  EXPECT_EQ(e->envelope.recipients[1].orcpt, "rfc822;team@example.test");
  EXPECT_EQ(e->envelope.recipients[1].notify, "FAILURE");
  EXPECT_EQ(e->state[1], RecipientState::kPending);
  EXPECT_EQ(e->last_error, "waiting for remote delivery");
  EXPECT_EQ(e->next_attempt, 0);
  EXPECT_EQ(e->attempts, 0u);

  // A restart re-examines it but delivers nothing twice.
  auto q2 = StartQueue(dir.path(), directory.resolver());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  q2->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 1u);
  auto again = Find(dir.path(), *id);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->envelope.recipients.size(), 2u);
}

TEST(LocalDeliveryTest, SameMailboxTwiceGetsOneCopy) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  directory.aliases["list@example.test"] =
      Local({"bob@example.test", "bob@example.test"});
  directory.aliases["boss@example.test"] = Local({"bob@example.test"});
  auto q = StartQueue(dir.path(), directory.resolver());
  ASSERT_TRUE(CommitMessage(
      *q,
      MakeEnvelope("a@example.org", {"list@example.test", "boss@example.test",
                                     "bob@example.test"}),
      kMessage));
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 1u);
}

TEST(LocalDeliveryTest, UnknownUserFails) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto q = StartQueue(dir.path(), directory.resolver());
  // Unknown alone: the message is finished and removed; the bounce goes
  // to the (local) sender's mailbox.
  ASSERT_TRUE(CommitMessage(
      *q, MakeEnvelope("bob@example.test", {"nobody@example.test"}), kMessage));
  ASSERT_TRUE(WaitFor([&] {
    return QueueSize(dir.path()) == 0 &&
           CountFiles(MaildirNew(dir.path(), "example.test", "bob")) == 1;
  }));
  // Unknown next to a remote recipient: recorded as failed.
  auto id = CommitMessage(*q,
                          MakeEnvelope("a@example.org", {"nobody@example.test",
                                                         "x@remote.example"}),
                          kMessage);
  ASSERT_TRUE(id);
  ASSERT_TRUE(WaitSettled(dir.path(), *id));
  q->Stop();
  auto e = Find(dir.path(), *id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->state[0], RecipientState::kFailed);
  EXPECT_EQ(e->state[1], RecipientState::kPending);
  EXPECT_FALSE(
      std::filesystem::exists(dir.path() + "/mail/example.test/nobody"));
}

TEST(LocalDeliveryTest, UnwritableMaildirKeepsMessageQueuedThenRetries) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test", "carol@example.test"}, {}};
  // A file where bob's directory belongs makes every write fail, even as root.
  std::filesystem::create_directories(dir.path() + "/mail/example.test");
  const std::string blocker = dir.path() + "/mail/example.test/bob";
  std::ofstream(blocker) << "x";
  auto q = StartQueue(dir.path(), directory.resolver(), /*retry_seconds=*/1);
  auto id = CommitMessage(
      *q,
      MakeEnvelope("a@example.org", {"bob@example.test", "carol@example.test"}),
      kMessage);
  ASSERT_TRUE(id);
  ASSERT_TRUE(WaitSettled(dir.path(), *id));
  auto e = Find(dir.path(), *id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->state[0], RecipientState::kPending);
  EXPECT_EQ(e->state[1], RecipientState::kDelivered);
  EXPECT_EQ(e->attempts, 1u);
  EXPECT_GT(e->next_attempt, 0);
  EXPECT_NE(e->last_error.find("Not a directory"), std::string::npos)
      << e->last_error;
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "carol")), 1u);
  // Fixed by the operator: the retry delivers bob's copy only.
  std::filesystem::remove(blocker);
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; },
                      std::chrono::seconds(8)));
  q->Stop();
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "bob")), 1u);
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "carol")), 1u);
}

TEST(LocalDeliveryTest, PathTraversalRefused) {
  TempDir dir;
  FakeDirectory directory;
  directory.aliases["evil@example.test"] =
      Local({"../../escape@example.test", "a/b@example.test", "x@..",
             ".hidden@example.test"});
  directory.aliases["mixed@example.test"] =
      Local({"../up@example.test", "ok@example.test"});
  directory.aliases["dots@example.test"] = Local({"..@example.test"});
  auto q = StartQueue(dir.path(), directory.resolver());
  auto id = CommitMessage(
      *q,
      // A null sender: the failures are logged, not bounced.
      MakeEnvelope("", {"evil@example.test", "dots@example.test",
                        "mixed@example.test"}),
      kMessage);
  ASSERT_TRUE(id);
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  // Only the safe mailbox got a copy; nothing was created outside mail/.
  EXPECT_EQ(CountFiles(MaildirNew(dir.path(), "example.test", "ok")), 1u);
  std::set<std::string> top;
  for (const auto& f : FilesIn(dir.path()))
    top.insert(std::filesystem::path(f).filename());
  EXPECT_EQ(top, (std::set<std::string>{"mail", "queue"}));
  std::set<std::string> domains;
  for (const auto& f : FilesIn(dir.path() + "/mail"))
    domains.insert(std::filesystem::path(f).filename());
  EXPECT_EQ(domains, (std::set<std::string>{"example.test"}));
  std::set<std::string> users;
  for (const auto& f : FilesIn(dir.path() + "/mail/example.test")) {
    users.insert(std::filesystem::path(f).filename());
  }
  EXPECT_EQ(users, (std::set<std::string>{"ok"}));
}

TEST(LocalDeliveryTest, OrcptXtext) {
  EXPECT_EQ(OrcptFor("a+b=c@example.test"), "rfc822;a+2Bb+3Dc@example.test");
  EXPECT_EQ(OrcptFor("j\xc3\xbc@x"), "rfc822;j+C3+BC@x");
}

}  // namespace
}  // namespace tern::delivery

namespace tern::delivery {
namespace {

// DMARC p=quarantine (mailauth/inbound.cc adds X-Spam) lands in the
// account's Junk folder, a Maildir++ folder made on first use, and only
// there; other mail of the same batch still goes to the INBOX.
TEST(LocalDeliveryTest, MarkedJunkGoesToTheJunkFolder) {
  TempDir dir;
  FakeDirectory directory{{"bob@example.test"}, {}};
  auto q = StartQueue(dir.path(), directory.resolver());
  Envelope env = MakeEnvelope("alice@example.org", {"bob@example.test"});
  env.prepend =
      "Authentication-Results: mx; dmarc=fail\r\n"
      "X-Spam: yes (DMARC quarantine policy of example.org)\r\n";
  ASSERT_TRUE(CommitMessage(*q, env, kMessage));
  ASSERT_TRUE(CommitMessage(
      *q, MakeEnvelope("alice@example.org", {"bob@example.test"}), kMessage));
  ASSERT_TRUE(WaitFor([&] { return QueueSize(dir.path()) == 0; }));
  q->Stop();
  const std::string inbox = MaildirNew(dir.path(), "example.test", "bob");
  const std::string junk =
      dir.path() + "/mail/example.test/bob/Maildir/.Junk/new";
  auto junk_files = FilesIn(junk);
  ASSERT_EQ(junk_files.size(), 1u);
  EXPECT_NE(ReadFile(junk_files[0]).find("X-Spam: yes"), std::string::npos);
  auto inbox_files = FilesIn(inbox);
  ASSERT_EQ(inbox_files.size(), 1u);
  EXPECT_EQ(ReadFile(inbox_files[0]).find("X-Spam"), std::string::npos);
}

}  // namespace
}  // namespace tern::delivery
