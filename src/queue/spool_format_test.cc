// Tests for the spool file formats, the CRC and queue ids: round trips and
// detection of files damaged or torn by a crash.
#include "queue/spool_format.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <string>

#include "common/unique_fd.h"
#include "queue/crc32c.h"
#include "queue/queue_id.h"
#include "queue/queue_test_util.h"

namespace tern::queue {
namespace {

using testing::TempDir;

Envelope SampleEnvelope() {
  Envelope env;
  env.id = "0123456789ABCDEF";
  env.sender = "a@example.org";
  env.recipients = {
      {"b@example.test", "SUCCESS,FAILURE", "rfc822;b@example.test"},
      {"c@example.test", "", ""}};
  env.ret = "HDRS";
  env.envid = "QQ314159";
  env.body = "8BITMIME";
  env.smtputf8 = true;
  env.client_ip = "2001:db8::1";
  env.helo = "mx.example.org";
  env.auth_user = "a";
  env.received_at = 1700000000;
  return env;
}

std::string MessageFileBytes(const Envelope& env, const std::string& body) {
  std::string encoded = EncodeEnvelope(env);
  auto header = EncodeMessageHeader(encoded, body.size(), Crc32c(0, body));
  return std::string(header.data(), header.size()) + body + encoded;
}

// A file as format version 1 wrote it: envelope (without `prepend`) before
// the message.
std::string VersionOneFileBytes(const Envelope& env, const std::string& body) {
  std::string encoded = EncodeEnvelope(env);
  encoded.resize(encoded.size() - 4);  // the empty prepend's length field
  auto header = EncodeMessageHeader(encoded, body.size(), Crc32c(0, body));
  std::string h(header.data(), header.size());
  h[8] = 1;  // version 1, with the header checksum to match
  uint32_t crc = Crc32c(Crc32c(0, h.data(), 28), encoded);
  for (int i = 0; i < 4; ++i) h[28 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  return h + encoded + body;
}

UniqueFd WriteTemp(const TempDir& dir, const std::string& bytes) {
  std::string path = dir.path() + "/f";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::write(fd.get(), bytes.data(), bytes.size()),
            static_cast<ssize_t>(bytes.size()));
  return fd;
}

TEST(Crc32cTest, KnownVector) {
  // RFC 3720 B.4 check value for "123456789".
  EXPECT_EQ(Crc32cPortable(0, "123456789", 9), 0xE3069283u);
  // The hardware and table versions agree on every length and alignment.
  std::string bytes;
  for (int i = 0; i < 300; ++i) bytes += static_cast<char>(i * 37 + 11);
  for (size_t off = 0; off < 9; ++off) {
    for (size_t len = 0; off + len <= bytes.size(); len += 7) {
      EXPECT_EQ(Crc32c(5, bytes.data() + off, len),
                Crc32cPortable(5, bytes.data() + off, len));
    }
  }
  EXPECT_EQ(Crc32c(0, std::string_view("123456789")), 0xE3069283u);
  std::string long_text(1000, 'z');
  EXPECT_EQ(Crc32c(Crc32c(0, long_text.substr(0, 333)), long_text.substr(333)),
            Crc32c(0, long_text));
}

TEST(QueueIdTest, UniqueSortableAndSafe) {
  std::set<std::string> ids;
  std::string previous;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewQueueId();
    EXPECT_TRUE(IsValidQueueId(id)) << id;
    EXPECT_EQ(id.find_first_of("/.\0", 0, 3), std::string::npos);
    // The time part never goes backwards within a run.
    EXPECT_GE(id.substr(0, 11),
              previous.substr(0, std::min<size_t>(11, previous.size())));
    previous = id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 10000u);
  EXPECT_FALSE(IsValidQueueId("short"));
  EXPECT_FALSE(IsValidQueueId("../../etc/passwd"));
}

TEST(SpoolFormatTest, EnvelopeRoundTrip) {
  Envelope env = SampleEnvelope();
  auto decoded = DecodeEnvelope(EncodeEnvelope(env));
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_EQ(decoded->id, env.id);
  EXPECT_EQ(decoded->sender, env.sender);
  ASSERT_EQ(decoded->recipients.size(), 2u);
  EXPECT_EQ(decoded->recipients[0].address, "b@example.test");
  EXPECT_EQ(decoded->recipients[0].notify, "SUCCESS,FAILURE");
  EXPECT_EQ(decoded->recipients[0].orcpt, "rfc822;b@example.test");
  EXPECT_EQ(decoded->ret, "HDRS");
  EXPECT_EQ(decoded->envid, "QQ314159");
  EXPECT_EQ(decoded->body, "8BITMIME");
  EXPECT_TRUE(decoded->smtputf8);
  EXPECT_EQ(decoded->client_ip, env.client_ip);
  EXPECT_EQ(decoded->helo, env.helo);
  EXPECT_EQ(decoded->auth_user, "a");
  EXPECT_EQ(decoded->received_at, 1700000000);
  std::string encoded = EncodeEnvelope(env);
  EXPECT_FALSE(DecodeEnvelope(encoded.substr(0, encoded.size() - 1)));
  EXPECT_FALSE(DecodeEnvelope(encoded + "x"));
}

TEST(SpoolFormatTest, QuarantineIsOptionalAndStartsHeld) {
  Envelope env = SampleEnvelope();
  const std::string plain = EncodeEnvelope(env);
  env.quarantine = "spam, says the filter";
  const std::string held = EncodeEnvelope(env);
  // Without a quarantine the encoding is what it always was.
  EXPECT_EQ(held.substr(0, plain.size()), plain);
  EXPECT_GT(held.size(), plain.size());
  auto a = DecodeEnvelope(plain);
  auto b = DecodeEnvelope(held);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->quarantine, "");
  EXPECT_EQ(b->quarantine, "spam, says the filter");
  EXPECT_FALSE(DecodeEnvelope(held.substr(0, held.size() - 1)));
  EXPECT_FALSE(InitialState(*a).held);
  MessageState s = InitialState(*b);
  EXPECT_TRUE(s.held);
  EXPECT_EQ(s.last_error, "quarantined: spam, says the filter");
}

TEST(SpoolFormatTest, RequireTlsFlagIsOptional) {
  Envelope env = SampleEnvelope();
  const std::string plain = EncodeEnvelope(env);
  env.requiretls = true;
  const std::string flagged = EncodeEnvelope(env);
  EXPECT_EQ(flagged.substr(0, plain.size()), plain);
  auto a = DecodeEnvelope(plain);
  auto b = DecodeEnvelope(flagged);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(a->requiretls);
  EXPECT_TRUE(b->requiretls);
  EXPECT_EQ(b->quarantine, "");
  // With a quarantine as well, both come back.
  env.quarantine = "held";
  auto c = DecodeEnvelope(EncodeEnvelope(env));
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->requiretls);
  EXPECT_EQ(c->quarantine, "held");
  EXPECT_FALSE(DecodeEnvelope(flagged + "x"));
}

TEST(SpoolFormatTest, ValidFileReadsBack) {
  TempDir dir;
  std::string body = "Subject: x\r\n\r\nhello\r\n";
  UniqueFd fd = WriteTemp(dir, MessageFileBytes(SampleEnvelope(), body));
  auto file = ReadAndVerifyMessage(fd.get());
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->body_len, body.size());
  EXPECT_EQ(file->envelope.sender, "a@example.org");
}

// Files queued by an older Tern (format 1) are still delivered after an
// upgrade; files written now carry the prepended header fields.
TEST(SpoolFormatTest, VersionOneFilesAndPrepend) {
  TempDir dir;
  std::string body = "Subject: x\r\n\r\nhello\r\n";
  UniqueFd old_fd = WriteTemp(dir, VersionOneFileBytes(SampleEnvelope(), body));
  auto old_file = ReadAndVerifyMessage(old_fd.get());
  ASSERT_TRUE(old_file) << old_file.error().message;
  EXPECT_EQ(old_file->body_offset, kMessageHeaderSize + EncodeEnvelope(SampleEnvelope()).size() - 4);
  EXPECT_EQ(old_file->envelope.sender, "a@example.org");
  auto old_text = ReadMessageText(old_fd.get(), *old_file);
  ASSERT_TRUE(old_text);
  EXPECT_EQ(*old_text, body);

  Envelope env = SampleEnvelope();
  env.prepend = "DKIM-Signature: v=1; d=example.org\r\n";
  UniqueFd fd = WriteTemp(dir, MessageFileBytes(env, body));
  auto file = ReadAndVerifyMessage(fd.get());
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->body_offset, kMessageHeaderSize);
  EXPECT_EQ(file->size(), env.prepend.size() + body.size());
  auto text = ReadMessageText(fd.get(), *file);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, env.prepend + body);
  auto head = ReadMessageText(fd.get(), *file, 20);
  ASSERT_TRUE(head);
  EXPECT_EQ(*head, env.prepend.substr(0, 20));
  auto more = ReadMessageText(fd.get(), *file, env.prepend.size() + 7);
  ASSERT_TRUE(more);
  EXPECT_EQ(*more, env.prepend + body.substr(0, 7));
}

TEST(SpoolFormatTest, TornFilesAreRejected) {
  TempDir dir;
  std::string body(5000, 'm');
  std::string good = MessageFileBytes(SampleEnvelope(), body);
  // Truncated anywhere (a crash before the sync kept only a prefix).
  for (size_t len :
       {size_t{0}, size_t{10}, size_t{32}, good.size() / 2, good.size() - 1}) {
    UniqueFd fd = WriteTemp(dir, good.substr(0, len));
    EXPECT_FALSE(ReadAndVerifyMessage(fd.get())) << len;
  }
  // Right size, but a block never written (reads as zeros).
  std::string zeroed = good;
  std::fill(zeroed.begin() + 2000, zeroed.begin() + 3000, '\0');
  UniqueFd fd1 = WriteTemp(dir, zeroed);
  EXPECT_FALSE(ReadAndVerifyMessage(fd1.get()));
  // The header a spilling writer starts with.
  std::string unfinished = good;
  std::fill(unfinished.begin(), unfinished.begin() + kMessageHeaderSize, '\0');
  UniqueFd fd2 = WriteTemp(dir, unfinished);
  EXPECT_FALSE(ReadMessageMeta(fd2.get()));
  // Damaged envelope (after the message).
  std::string env_damaged = good;
  env_damaged[good.size() - 5] ^= 1;
  UniqueFd fd3 = WriteTemp(dir, env_damaged);
  EXPECT_FALSE(ReadMessageMeta(fd3.get()));
}

TEST(SpoolFormatTest, StateRoundTripAndDamage) {
  MessageState state = InitialState(SampleEnvelope());
  state.recipients[0].state = RecipientState::kDelivered;
  state.recipients[1].state = RecipientState::kFailed;
  state.recipients[1].error = "user unknown";
  state.recipients.push_back({{"x@remote.example", "", "rfc822;l@example.test"},
                              RecipientState::kPending,
                              "remote delivery not yet implemented"});
  state.attempts = 3;
  state.next_attempt = 1700000060;
  state.last_error = "boom";
  std::string bytes = EncodeState(state);
  auto back = DecodeState(bytes);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->recipients.size(), 3u);
  EXPECT_EQ(back->recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(back->recipients[1].error, "user unknown");
  EXPECT_EQ(back->recipients[2].recipient.orcpt, "rfc822;l@example.test");
  EXPECT_EQ(back->attempts, 3u);
  EXPECT_EQ(back->next_attempt, 1700000060);
  EXPECT_EQ(back->last_error, "boom");
  EXPECT_FALSE(DecodeState(bytes.substr(0, bytes.size() - 2)));
  std::string flipped = bytes;
  flipped.back() ^= 0x40;
  EXPECT_FALSE(DecodeState(flipped));
  EXPECT_FALSE(DecodeState(""));
}

}  // namespace
}  // namespace tern::queue
