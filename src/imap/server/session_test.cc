// Unit tests for the sans-I/O IMAP session: states, login rules, literal
// handling, STARTTLS injection, the BAD limit, and the selected folder's
// updates (IDLE woken by another session's change, EXPUNGE held back
// during FETCH), on a real MaildirStore in a temporary directory.
#include "imap/server/session.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "auth/sasl.h"
#include "store/maildir_store.h"

namespace tern::imap {
namespace {

class FakeCredentials : public auth::CredentialStore {
 public:
  auth::PasswordCheck CheckPassword(const std::string& user,
                                    const std::string& password) override {
    if (user == "u@example.test" && password == "secret") {
      return std::optional<std::string>("u@example.test");
    }
    return std::optional<std::string>();
  }
  auth::ScramAnswer Scram(const std::string&) override {
    return std::optional<std::pair<std::string, auth::ScramCredentials>>();
  }
};

class FakeHost : public SessionHost {
 public:
  explicit FakeHost(std::string dir) : dir_(std::move(dir)) {}
  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    return auth::MakeMechanism(name, credentials_);
  }
  std::chrono::milliseconds AuthFailed(std::string_view, std::string_view) override {
    ++failures;
    return std::chrono::milliseconds(0);
  }
  Result<std::unique_ptr<store::MailStore>> OpenStore(const std::string&) override {
    if (fail_open) return Err("disk on fire", EIO);
    auto st = store::MaildirStore::Open(dir_);
    if (!st) return tl::unexpected(st.error());
    return std::unique_ptr<store::MailStore>(std::move(*st));
  }
  void Changed(std::string_view folder) override { changed.emplace_back(folder); }
  int failures = 0;
  bool fail_open = false;
  std::vector<std::string> changed;

 private:
  std::string dir_;
  FakeCredentials credentials_;
};

class ImapSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tern-imap-session-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    host_ = std::make_unique<FakeHost>(root_ + "/Maildir");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::unique_ptr<Session> Make(bool tls) {
    ClientInfo client;
    client.ip = "127.0.0.1";
    client.tls = tls;
    client.starttls_available = !tls;
    auto s = std::make_unique<Session>(config_, *host_, client);
    s->Greet();
    s->output().clear();
    return s;
  }

  // Feeds `in`, runs the work the session asks for, returns the output.
  static std::string Drive(Session& s, std::string_view in) {
    size_t used = 0;
    std::string out;
    for (int guard = 0; guard < 1000; ++guard) {
      if (s.need() == Need::kWork) {
        s.Work();
      } else if (s.need() == Need::kDelay) {
        s.DelayDone();
      } else if (s.need() == Need::kInput && used < in.size()) {
        used += s.Feed(in.substr(used));
      } else {
        break;
      }
      out += s.output();
      s.output().clear();
    }
    return out;
  }

  std::unique_ptr<Session> LoggedIn() {
    auto s = Make(true);
    std::string out = Drive(*s, "a LOGIN u@example.test secret\r\n");
    EXPECT_NE(out.find("a OK [CAPABILITY"), std::string::npos) << out;
    return s;
  }

  SessionConfig config_;
  std::string root_;
  std::unique_ptr<FakeHost> host_;
};

TEST_F(ImapSessionTest, GreetingAndLoginDisabledWithoutTls) {
  ClientInfo client{"127.0.0.1", false, true, false};
  Session s(config_, *host_, client);
  s.Greet();
  EXPECT_NE(s.output().find("STARTTLS LOGINDISABLED]"), std::string::npos) << s.output();
  s.output().clear();
  EXPECT_EQ(Drive(s, "a LOGIN u@example.test secret\r\n"),
            "a NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS\r\n");
  EXPECT_EQ(Drive(s, "b SELECT INBOX\r\n"), "b BAD Log in first\r\n");
}

TEST_F(ImapSessionTest, StartTlsDropsWhatFollows) {
  ClientInfo client{"127.0.0.1", false, true, false};
  Session s(config_, *host_, client);
  s.Greet();
  s.output().clear();
  std::string in = "a STARTTLS\r\nb LOGIN u@example.test secret\r\n";
  size_t used = s.Feed(in);
  EXPECT_EQ(used, std::string("a STARTTLS\r\n").size());  // RFC 9051 6.2.1
  EXPECT_EQ(s.need(), Need::kStartTls);
  EXPECT_EQ(s.output(), "a OK Begin TLS negotiation now\r\n");
  s.output().clear();
  s.TlsStarted();
  EXPECT_EQ(s.need(), Need::kInput);
  EXPECT_NE(Drive(s, "c CAPABILITY\r\n").find("AUTH=PLAIN"), std::string::npos);
}

TEST_F(ImapSessionTest, CompressStopsAtTheCommandAndStaysOn) {
  auto s = Make(true);
  // RFC 4978 5: command-auth, so not before login.
  EXPECT_EQ(Drive(*s, "a COMPRESS DEFLATE\r\n"), "a BAD Log in first\r\n");
  s = LoggedIn();
  EXPECT_NE(Drive(*s, "b CAPABILITY\r\n").find(" COMPRESS=DEFLATE "), std::string::npos);
  EXPECT_EQ(Drive(*s, "c COMPRESS LZW\r\n"), "c BAD Unknown compression algorithm\r\n");
  // What follows the command is compressed: the session leaves it to the
  // connection, which inflates it first (RFC 4978 3).
  std::string in = "d COMPRESS DEFLATE\r\n\x4b\x01\x00";
  EXPECT_EQ(s->Feed(in), std::string("d COMPRESS DEFLATE\r\n").size());
  EXPECT_EQ(s->need(), Need::kCompress);
  EXPECT_EQ(s->output(), "d OK DEFLATE active\r\n");
  s->output().clear();
  s->CompressionStarted();
  EXPECT_EQ(s->need(), Need::kInput);
  EXPECT_EQ(Drive(*s, "e COMPRESS DEFLATE\r\n"),
            "e NO [COMPRESSIONACTIVE] DEFLATE is already active\r\n");
  EXPECT_EQ(s->need(), Need::kInput);
  EXPECT_EQ(Drive(*s, "f NOOP\r\n"), "f OK NOOP completed\r\n");
}

TEST_F(ImapSessionTest, WrongPasswordAndStoreFailure) {
  auto s = Make(true);
  EXPECT_EQ(Drive(*s, "a LOGIN u@example.test nope\r\n"),
            "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
  EXPECT_EQ(host_->failures, 1);
  host_->fail_open = true;
  EXPECT_EQ(Drive(*s, "b LOGIN u@example.test secret\r\n"),
            "b NO [UNAVAILABLE] Mailbox store unavailable, try again later\r\n");
  host_->fail_open = false;
  EXPECT_NE(Drive(*s, "c LOGIN u@example.test secret\r\n").find("c OK"),
            std::string::npos);
}

TEST_F(ImapSessionTest, AppendBeforeLoginRefusesTheLiteral) {
  auto s = Make(true);
  EXPECT_EQ(Drive(*s, "a APPEND INBOX {5}\r\n"), "a BAD Log in first\r\n");
  // The client dropped the command: the next line is a command again.
  EXPECT_EQ(Drive(*s, "b NOOP\r\n"), "b OK NOOP completed\r\n");
}

TEST_F(ImapSessionTest, TooManyBadCommandsEndTheSession) {
  config_.max_errors = 3;
  auto s = Make(true);
  std::string out = Drive(*s, "a FOO\r\nb FOO\r\nc FOO\r\nd NOOP\r\n");
  EXPECT_NE(out.find("* BYE Too many invalid commands"), std::string::npos) << out;
  EXPECT_EQ(s->need(), Need::kClose);
  EXPECT_EQ(out.find("d OK"), std::string::npos);
}

TEST_F(ImapSessionTest, AppendSelectFetchStore) {
  auto s = LoggedIn();
  std::string out = Drive(*s, "a APPEND INBOX (\\Flagged) {18}\r\n");
  EXPECT_EQ(out, "+ Ready for literal data\r\n");
  out = Drive(*s, "Subject: x\r\n\r\nhi\r\n\r\n");
  EXPECT_NE(out.find("a OK [APPENDUID "), std::string::npos) << out;
  EXPECT_EQ(host_->changed, std::vector<std::string>{"INBOX"});
  out = Drive(*s, "b SELECT INBOX\r\n");
  EXPECT_NE(out.find("* 1 EXISTS\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("b OK [READ-WRITE] SELECT completed"), std::string::npos);
  out = Drive(*s, "c FETCH 1 (FLAGS RFC822.SIZE BODY[TEXT])\r\n");
  EXPECT_EQ(out,
            "* 1 FETCH (FLAGS (\\Seen \\Flagged) RFC822.SIZE 18 BODY[TEXT] {4}\r\n"
            "hi\r\n)\r\nc OK FETCH completed\r\n");
  out = Drive(*s, "d STORE 1 -FLAGS (\\Flagged)\r\ne FETCH 2 FLAGS\r\n");
  EXPECT_EQ(out,
            "* 1 FETCH (FLAGS (\\Seen))\r\nd OK STORE completed\r\n"
            "e BAD Invalid sequence number\r\n");
}

TEST_F(ImapSessionTest, IdleWokenByAnotherSession) {
  auto a = LoggedIn();
  auto b = LoggedIn();
  Drive(*a, "a APPEND INBOX {8}\r\nx: y\r\n\r\n\r\n");
  Drive(*a, "b SELECT INBOX\r\n");
  Drive(*b, "b SELECT INBOX\r\n");
  EXPECT_EQ(Drive(*b, "c IDLE\r\n"), "+ idling\r\n");
  EXPECT_TRUE(b->idling());
  Drive(*a, "d STORE 1 +FLAGS (\\Flagged)\r\n");
  EXPECT_TRUE(b->Wake());  // in IDLE: it wants to look now
  EXPECT_EQ(b->need(), Need::kWork);
  EXPECT_EQ(Drive(*b, ""), "* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n");
  EXPECT_EQ(Drive(*b, "DONE\r\n"), "c OK IDLE terminated\r\n");
  EXPECT_FALSE(b->idling());
}

TEST_F(ImapSessionTest, ExpungeHeldBackDuringFetch) {
  auto a = LoggedIn();
  auto b = LoggedIn();
  Drive(*a, "a APPEND INBOX {8+}\r\nx: 1\r\n\r\n {8+}\r\nx: 2\r\n\r\n\r\n");
  Drive(*a, "b SELECT INBOX\r\n");
  Drive(*b, "b SELECT INBOX\r\n");
  Drive(*a, "c STORE 1 +FLAGS (\\Deleted)\r\nd EXPUNGE\r\n");
  EXPECT_FALSE(b->Wake());  // not in IDLE: remembered for the next command
  std::string out = Drive(*b, "e FETCH 1:2 FLAGS\r\n");
  EXPECT_EQ(out.find("EXPUNGE"), std::string::npos) << out;  // RFC 9051 7.5.1
  EXPECT_NE(out.find("* 2 FETCH"), std::string::npos) << out;
  out = Drive(*b, "f NOOP\r\n");
  EXPECT_EQ(out, "* 1 EXPUNGE\r\nf OK NOOP completed\r\n");
}

}  // namespace
}  // namespace tern::imap
