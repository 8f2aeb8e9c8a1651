// Tests for the Maildir helpers: trace headers, CRLF to LF conversion,
// unique names and the exact bytes a batch writes (path safety:
// store/mailbox_path_test.cc).
#include "delivery/maildir.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "queue/queue_test_util.h"

namespace tern::delivery {
namespace {

using queue::testing::FilesIn;
using queue::testing::ReadFile;
using queue::testing::TempDir;

TEST(MaildirTest, DeliveryHeaders) {
  EXPECT_EQ(DeliveryHeaders("a@example.org", "bob@example.test"),
            "Return-Path: <a@example.org>\nDelivered-To: bob@example.test\n");
  EXPECT_EQ(DeliveryHeaders("", "bob@example.test"),
            "Return-Path: <>\nDelivered-To: bob@example.test\n");
}

TEST(MaildirTest, LineEndsConvertedAcrossChunks) {
  const std::string in = "a\r\nb\r\n\r\nc\rd\r\n";
  const std::string expected = "a\nb\n\nc\rd\n";
  // Every split point, including right after a CR.
  for (size_t split = 0; split <= in.size(); ++split) {
    LineEndConverter conv;
    std::string out;
    conv.Convert(std::string_view(in).substr(0, split), out);
    conv.Convert(std::string_view(in).substr(split), out);
    conv.Finish(out);
    EXPECT_EQ(out, expected) << split;
  }
  LineEndConverter conv;
  std::string out;
  conv.Convert("x\r", out);
  conv.Finish(out);
  EXPECT_EQ(out, "x\r");
}

TEST(MaildirTest, UniqueNames) {
  std::string a = MaildirUniqueName("mx/1:2");
  std::string b = MaildirUniqueName("mx/1:2");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find('/'), std::string::npos);
  EXPECT_EQ(a.find(':'), std::string::npos);
  EXPECT_NE(a.find(".M"), std::string::npos);
  EXPECT_NE(a.find("P" + std::to_string(::getpid()) + "Q"), std::string::npos);
  EXPECT_TRUE(a.ends_with(".mx\\0571\\0722"));
}

TEST(MaildirTest, BatchWritesExactBytesIntoNew) {
  TempDir dir;
  UniqueFd root(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
  std::string lf_body = "Subject: hi\n\nbody\n";
  // The streamed path converts from the spool file.
  std::string crlf_body = "X: 1\r\n\r\nline\r\n";
  std::string spool = dir.path() + "/spool";
  std::ofstream(spool, std::ios::binary) << "HEADER" << crlf_body;
  UniqueFd spool_fd(::open(spool.c_str(), O_RDONLY));

  MaildirBatch batch(root.get(), "host");
  MessageSource mem;
  mem.lf_body = &lf_body;
  MessageSource file;
  file.fd = spool_fd.get();
  file.offset = 6;
  file.length = crlf_body.size();
  size_t a = batch.Add({"example.test", "bob"},
                       DeliveryHeaders("s@x.org", "bob@example.test"), mem);
  size_t b = batch.Add({"example.test", "eve"},
                       DeliveryHeaders("", "eve@example.test"), file);
  batch.Commit();
  ASSERT_TRUE(batch.result(a)) << batch.result(a).error().message;
  ASSERT_TRUE(batch.result(b)) << batch.result(b).error().message;
  auto bob = FilesIn(dir.path() + "/example.test/bob/Maildir/new");
  ASSERT_EQ(bob.size(), 1u);
  const std::string bob_expected =
      "Return-Path: <s@x.org>\nDelivered-To: bob@example.test\nSubject: "
      "hi\n\nbody\n";
  EXPECT_EQ(ReadFile(bob[0]), bob_expected);
  EXPECT_NE(bob[0].find(",S=" + std::to_string(bob_expected.size()) + ",W="),
            std::string::npos)
      << bob[0];
  auto eve = FilesIn(dir.path() + "/example.test/eve/Maildir/new");
  ASSERT_EQ(eve.size(), 1u);
  EXPECT_EQ(ReadFile(eve[0]),
            "Return-Path: <>\nDelivered-To: eve@example.test\nX: 1\n\nline\n");
  for (const char* sub : {"tmp", "new", "cur"}) {
    auto st = std::filesystem::status(dir.path() +
                                      "/example.test/bob/Maildir/" + sub);
    EXPECT_TRUE(std::filesystem::is_directory(st));
    EXPECT_EQ(st.permissions() & std::filesystem::perms::group_all,
              std::filesystem::perms::none);
  }
  EXPECT_TRUE(FilesIn(dir.path() + "/example.test/bob/Maildir/tmp").empty());
}

TEST(MaildirTest, FailedCopyLeavesNothingBehind) {
  TempDir dir;
  UniqueFd root(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
  std::filesystem::create_directories(dir.path() + "/example.test");
  std::ofstream(dir.path() + "/example.test/bob")
      << "a file where a directory should be";
  std::string body = "x\n";
  MessageSource mem;
  mem.lf_body = &body;
  MaildirBatch batch(root.get(), "host");
  size_t a = batch.Add({"example.test", "bob"}, "H\n", mem);
  batch.Commit();
  EXPECT_FALSE(batch.result(a));
}

}  // namespace
}  // namespace tern::delivery
