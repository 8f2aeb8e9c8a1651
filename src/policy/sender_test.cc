// Tests for sender identity (policy/sender.h) against a real directory:
// authenticated users send only as addresses they own, outsiders may not
// claim our domains, and the replies smtp::Session makes of the verdicts.
#include "policy/sender.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "smtp/protocol/session.h"

namespace tern::policy {
namespace {

using Kind = smtp::SenderVerdict::Kind;

smtp::Mailbox Box(std::string local, std::string domain, bool quoted = false) {
  return smtp::Mailbox{std::move(local), std::move(domain), quoted};
}

smtp::ClientInfo Stranger() {
  smtp::ClientInfo c;
  c.ip = "203.0.113.9";
  c.port = 40000;
  return c;
}

smtp::ClientInfo Trusted() {
  smtp::ClientInfo c = Stranger();
  c.ip = "192.0.2.1";
  c.trusted = true;
  return c;
}

smtp::ClientInfo As(std::string user) {
  smtp::ClientInfo c = Stranger();
  c.auth_user = std::move(user);
  return c;
}

// The server's session host, reduced to the sender policy calls.
class PolicyHost : public smtp::SessionHost {
 public:
  explicit PolicyHost(auth::Directory& directory) : directory_(directory) {}
  void set_session(const smtp::Session* session) { session_ = session; }

  smtp::RcptVerdict CheckRecipient(const smtp::Transaction& t,
                                   const smtp::Mailbox& rcpt) override {
    return {};
  }
  smtp::SenderVerdict CheckMailFrom(const smtp::Mailbox& from) override {
    return policy::CheckMailFrom(directory_, session_->client(), from);
  }
  bool HeaderSenderAllowed(const std::string& address,
                           std::string_view field) override {
    return policy::HeaderSenderAllowed(directory_, session_->client(), address,
                                       field);
  }
  std::string BeginMessage(const smtp::Transaction& t) override {
    return "QUEUEID";
  }
  bool MessageData(std::string_view data) override { return true; }
  void AbortMessage() override {}
  std::string Now() override { return "Thu, 01 Jan 2026 00:00:00 +0000"; }

 private:
  auth::Directory& directory_;
  const smtp::Session* session_ = nullptr;
};

// One directory for the suite (Argon2id makes AddUser slow); tests only read.
class SenderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tern-sender-XXXXXX")
            .string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(pattern);
    auto opened = auth::Directory::Open(*dir_ + "/tern.db",
                                        {"example.test", "second.test"});
    ASSERT_TRUE(opened) << opened.error().message;
    directory_ = opened->release();
    for (const char* user : {"alice@example.test", "bob@second.test"}) {
      auto ok = directory_->AddUser(user, "secret");
      ASSERT_TRUE(ok) << ok.error().message;
    }
    auto ok =
        directory_->AddAlias("sales@example.test", {"alice@example.test"});
    ASSERT_TRUE(ok) << ok.error().message;
    ok = directory_->AddAlias("team@example.test",
                              {"sales@example.test", "bob@second.test"});
    ASSERT_TRUE(ok) << ok.error().message;
    ok = directory_->AddAlias("@second.test", {"bob@second.test"});
    ASSERT_TRUE(ok) << ok.error().message;
    ok = directory_->Grant("alice@example.test", "*@partner.test");
    ASSERT_TRUE(ok) << ok.error().message;
    ok = directory_->Grant("alice@example.test", "alice@home.test");
    ASSERT_TRUE(ok) << ok.error().message;
  }
  static void TearDownTestSuite() {
    delete directory_;
    directory_ = nullptr;
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  static Kind Check(const smtp::ClientInfo& client, const smtp::Mailbox& from) {
    return CheckMailFrom(*directory_, client, from).kind;
  }
  static bool Header(const std::string& user, const std::string& address) {
    return HeaderSenderAllowed(*directory_, As(user), address, "From");
  }

  // A session as `client`: EHLO, then `script`; returns the replies to
  // `script` (committing any message asked for).
  static std::string Dialog(const smtp::ClientInfo& client,
                            const std::string& script) {
    PolicyHost host(*directory_);
    smtp::Session session(smtp::SessionConfig{}, host, client);
    host.set_session(&session);
    session.Greet();
    std::string ehlo = "EHLO client.test\r\n";
    EXPECT_EQ(session.Feed(ehlo), ehlo.size());
    session.output().clear();
    std::string out;
    std::string_view rest = script;
    while (!rest.empty()) {
      size_t used = session.Feed(rest);
      rest.remove_prefix(used);
      out += session.output();
      session.output().clear();
      if (session.need() == smtp::Need::kCommit) {
        session.Committed(true);
        out += session.output();
        session.output().clear();
      } else if (used == 0) {
        ADD_FAILURE() << "session stuck";
        break;
      }
    }
    return out;
  }

  static std::string* dir_;
  static auth::Directory* directory_;
};

std::string* SenderTest::dir_ = nullptr;
auth::Directory* SenderTest::directory_ = nullptr;

TEST_F(SenderTest, AuthenticatedUsersSendAsWhatTheyOwn) {
  const smtp::ClientInfo alice = As("alice@example.test");
  EXPECT_EQ(Check(alice, Box("alice", "example.test")), Kind::kAccept);
  EXPECT_EQ(Check(alice, Box("ALICE", "Example.TEST")), Kind::kAccept);
  EXPECT_EQ(Check(alice, Box("alice+lists", "example.test")), Kind::kAccept);
  // Aliases that reach her, directly or through another alias.
  EXPECT_EQ(Check(alice, Box("sales", "example.test")), Kind::kAccept);
  EXPECT_EQ(Check(alice, Box("team", "example.test")), Kind::kAccept);
  // Grants: a whole foreign domain, one foreign address.
  EXPECT_EQ(Check(alice, Box("anyone", "partner.test")), Kind::kAccept);
  EXPECT_EQ(Check(alice, Box("Alice", "HOME.test")), Kind::kAccept);
  // The account name given at AUTH compares without case too.
  EXPECT_EQ(Check(As("ALICE@example.test"), Box("alice", "example.test")),
            Kind::kAccept);
}

TEST_F(SenderTest, AuthenticatedUsersCannotForge) {
  const smtp::ClientInfo alice = As("alice@example.test");
  EXPECT_EQ(Check(alice, Box("bob", "second.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("postmaster", "example.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("alice", "second.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("alice", "remote.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("other", "home.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("alice", "sub.partner.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("alice", "[192.0.2.1]")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("alice%example.test", "remote.test")),
            Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("alice@example.test", "remote.test", true)),
            Kind::kNotOwned);
  // A catch-all is not ownership: bob does not own all of second.test.
  EXPECT_EQ(Check(As("bob@second.test"), Box("anything", "second.test")),
            Kind::kNotOwned);
  EXPECT_EQ(Check(As("bob@second.test"), Box("alice", "example.test")),
            Kind::kNotOwned);
  // RFC 5321 4.5.5: the null path is for bounces, which users do not send.
  EXPECT_EQ(Check(alice, Box("", "")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("postmaster", "")), Kind::kNotOwned);
  // An account that is gone owns nothing.
  EXPECT_EQ(Check(As("ghost@example.test"), Box("ghost", "example.test")),
            Kind::kNotOwned);
}

TEST_F(SenderTest, AuthenticationOutranksTrust) {
  // A user who authenticated from a trusted network is still held to the
  // addresses they own.
  smtp::ClientInfo alice = As("alice@example.test");
  alice.trusted = true;
  EXPECT_EQ(Check(alice, Box("alice", "example.test")), Kind::kAccept);
  EXPECT_EQ(Check(alice, Box("bob", "second.test")), Kind::kNotOwned);
  EXPECT_EQ(Check(alice, Box("", "")), Kind::kNotOwned);
}

TEST_F(SenderTest, OutsidersMayNotClaimOurDomains) {
  const smtp::ClientInfo stranger = Stranger();
  EXPECT_EQ(Check(stranger, Box("alice", "example.test")), Kind::kLocalSpoof);
  EXPECT_EQ(Check(stranger, Box("nobody", "example.test")), Kind::kLocalSpoof);
  EXPECT_EQ(Check(stranger, Box("bob", "SECOND.TEST")), Kind::kLocalSpoof);
  EXPECT_EQ(Check(stranger, Box("postmaster", "Example.Test")),
            Kind::kLocalSpoof);
  // Everyone else's addresses, bounces, literals: not ours to judge.
  EXPECT_EQ(Check(stranger, Box("carol", "remote.test")), Kind::kAccept);
  EXPECT_EQ(Check(stranger, Box("carol", "sub.example.test")), Kind::kAccept);
  EXPECT_EQ(Check(stranger, Box("", "")), Kind::kAccept);
  EXPECT_EQ(Check(stranger, Box("alice", "[192.0.2.1]")), Kind::kAccept);
  EXPECT_EQ(Check(stranger, Box("postmaster", "")), Kind::kAccept);
}

TEST_F(SenderTest, TrustedNetworksMaySendAsAnyone) {
  const smtp::ClientInfo trusted = Trusted();
  EXPECT_EQ(Check(trusted, Box("alice", "example.test")), Kind::kAccept);
  EXPECT_EQ(Check(trusted, Box("nobody", "second.test")), Kind::kAccept);
  EXPECT_EQ(Check(trusted, Box("carol", "remote.test")), Kind::kAccept);
  EXPECT_EQ(Check(trusted, Box("", "")), Kind::kAccept);
}

TEST_F(SenderTest, HeaderSenders) {
  // RFC 5322 3.6.2 From:/Sender: of an authenticated user's message.
  EXPECT_TRUE(Header("alice@example.test", "alice@example.test"));
  EXPECT_TRUE(Header("alice@example.test", "Alice@EXAMPLE.test"));
  EXPECT_TRUE(Header("alice@example.test", "alice+x@example.test"));
  EXPECT_TRUE(Header("alice@example.test", "sales@example.test"));
  EXPECT_TRUE(Header("alice@example.test", "boss@partner.test"));
  EXPECT_FALSE(Header("alice@example.test", "bob@second.test"));
  EXPECT_FALSE(Header("alice@example.test", "alice@remote.test"));
  EXPECT_FALSE(Header("alice@example.test", ""));
  EXPECT_FALSE(Header("alice@example.test", "alice"));
  EXPECT_FALSE(Header("alice@example.test", "@example.test"));
  EXPECT_FALSE(Header("bob@second.test", "alice@example.test"));
  EXPECT_FALSE(Header("ghost@example.test", "ghost@example.test"));
}

TEST_F(SenderTest, MailFromReplies) {
  EXPECT_EQ(Dialog(Stranger(), "MAIL FROM:<alice@example.test>\r\n"),
            "550 5.7.1 <alice@example.test>: Sender address rejected: local "
            "domain needs authentication\r\n");
  EXPECT_EQ(Dialog(Stranger(), "MAIL FROM:<carol@remote.test>\r\n"),
            "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Dialog(Stranger(), "MAIL FROM:<>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Dialog(Trusted(), "MAIL FROM:<alice@example.test>\r\n"),
            "250 2.1.0 Ok\r\n");
  const smtp::ClientInfo alice = As("alice@example.test");
  EXPECT_EQ(Dialog(alice, "MAIL FROM:<Alice@Example.Test>\r\n"),
            "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Dialog(alice, "MAIL FROM:<bob@second.test>\r\n"),
            "553 5.7.1 <bob@second.test>: Sender address rejected: not owned "
            "by user alice@example.test\r\n");
  EXPECT_EQ(Dialog(alice, "MAIL FROM:<>\r\n"),
            "553 5.7.1 <>: Sender address rejected: not owned by user "
            "alice@example.test\r\n");
}

TEST_F(SenderTest, HeaderReplies) {
  const smtp::ClientInfo alice = As("alice@example.test");
  const std::string envelope =
      "MAIL FROM:<alice@example.test>\r\nRCPT TO:<carol@remote.test>\r\n"
      "DATA\r\n";
  const std::string ok = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n";
  std::string out =
      Dialog(alice, envelope +
                        "From: Alice <alice@example.test>\r\nSender: "
                        "sales@example.test\r\n\r\nHi\r\n.\r\n");
  EXPECT_EQ(out.substr(0, ok.size()), ok);
  EXPECT_NE(out.find("250 2.0.0 Ok: queued as QUEUEID\r\n"), std::string::npos)
      << out;
  out = Dialog(alice, envelope +
                          "From: Alice <alice@example.test>, "
                          "Bob <bob@second.test>\r\n\r\nHi\r\n.\r\n");
  EXPECT_NE(out.find("550 5.7.1 From: address <bob@second.test> not owned "
                     "by user alice@example.test\r\n"),
            std::string::npos)
      << out;
  out = Dialog(alice, envelope +
                          "From: alice@example.test\r\nSender: "
                          "carol@remote.test\r\n\r\nHi\r\n.\r\n");
  EXPECT_NE(out.find("550 5.7.1 Sender: address <carol@remote.test> not "
                     "owned by user alice@example.test\r\n"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace tern::policy
