// Tests for relay control at RCPT time (policy/recipient.h) against a real
// directory: local users and role addresses are accepted, unknown users
// refused, strangers never relay, and the old routing tricks never work.
#include "policy/recipient.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "smtp/protocol/session.h"

namespace tern::policy {
namespace {

using Kind = smtp::RcptVerdict::Kind;

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

smtp::ClientInfo Authenticated() {
  smtp::ClientInfo c = Stranger();
  c.auth_user = "alice@example.test";
  return c;
}

// The session's host in the server, reduced to the policy calls: replies
// come from smtp::Session, verdicts from policy/.
class PolicyHost : public smtp::SessionHost {
 public:
  explicit PolicyHost(auth::Directory& directory) : directory_(directory) {}
  void set_session(const smtp::Session* session) { session_ = session; }

  smtp::RcptVerdict CheckRecipient(const smtp::Transaction& t,
                                   const smtp::Mailbox& rcpt) override {
    return policy::CheckRecipient(directory_, session_->client(), rcpt);
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

// One directory for the whole suite: adding users costs Argon2id time, and
// the tests only read.
class RecipientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tern-rcpt-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(pattern);
    auto opened = auth::Directory::Open(*dir_ + "/tern.db",
                                        {"Example.test", "second.test"});
    ASSERT_TRUE(opened) << opened.error().message;
    directory_ = opened->release();
    for (const char* user : {"alice@example.test", "bob@second.test"}) {
      auto ok = directory_->AddUser(user, "secret");
      ASSERT_TRUE(ok) << ok.error().message;
    }
    auto ok = directory_->AddAlias("team@example.test",
                                   {"alice@example.test", "bob@second.test"});
    ASSERT_TRUE(ok) << ok.error().message;
    ok = directory_->AddAlias("forward@example.test", {"carol@remote.test"});
    ASSERT_TRUE(ok) << ok.error().message;
  }
  static void TearDownTestSuite() {
    delete directory_;
    directory_ = nullptr;
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  static Kind Check(const smtp::ClientInfo& client, const smtp::Mailbox& rcpt) {
    return CheckRecipient(*directory_, client, rcpt).kind;
  }

  // Runs EHLO and MAIL FROM as `client` (the sender is one the client may
  // use), then each RCPT TO argument; returns the reply to each RCPT.
  static std::vector<std::string> Rcpts(const smtp::ClientInfo& client,
                                        const std::vector<std::string>& args) {
    PolicyHost host(*directory_);
    smtp::Session session(smtp::SessionConfig{}, host, client);
    host.set_session(&session);
    session.Greet();
    std::string from =
        client.auth_user.empty() ? "someone@remote.test" : client.auth_user;
    std::string script = "EHLO client.test\r\nMAIL FROM:<" + from + ">\r\n";
    EXPECT_EQ(session.Feed(script), script.size());
    std::string setup = std::move(session.output());
    session.output().clear();
    EXPECT_NE(setup.find("250 2.1.0 Ok"), std::string::npos) << setup;
    std::vector<std::string> replies;
    for (const std::string& arg : args) {
      std::string line = "RCPT TO:" + arg + "\r\n";
      EXPECT_EQ(session.Feed(line), line.size());
      std::string out = std::move(session.output());
      session.output().clear();
      if (out.size() >= 2 && out.substr(out.size() - 2) == "\r\n") {
        out.resize(out.size() - 2);
      }
      replies.push_back(out);
    }
    return replies;
  }
  static std::string Rcpt(const smtp::ClientInfo& client,
                          const std::string& arg) {
    return Rcpts(client, {arg}).at(0);
  }

  static std::string* dir_;
  static auth::Directory* directory_;
};

std::string* RecipientTest::dir_ = nullptr;
auth::Directory* RecipientTest::directory_ = nullptr;

TEST_F(RecipientTest, DirectoryAddress) {
  EXPECT_EQ(DirectoryAddress(Box("alice", "example.test")),
            "alice@example.test");
  // RFC 5321 4.1.1.3: "postmaster" alone.
  EXPECT_EQ(DirectoryAddress(Box("postmaster", "")), "postmaster");
  // The unquoted content: the directory never sees SMTP quoting.
  EXPECT_EQ(DirectoryAddress(Box("a b", "example.test", true)),
            "a b@example.test");
  EXPECT_EQ(DirectoryAddress(Box("Alice", "Example.TEST")),
            "Alice@Example.TEST");
}

TEST_F(RecipientTest, IsRelayTrick) {
  for (const char* local :
       {"user%remote.test", "remote.test!user", "user@remote.test", "%", "!",
        "@", "a%b%c", "user%remote.test@other.test", "a!b!c"}) {
    EXPECT_TRUE(IsRelayTrick(Box(local, "example.test"))) << local;
  }
  for (const char* local : {"user", "first.last", "user+tag", "a-b_c=d",
                            "o'brien", "a b", "x.y+z", ""}) {
    EXPECT_FALSE(IsRelayTrick(Box(local, "example.test"))) << local;
  }
}

TEST_F(RecipientTest, LocalUsersAndAliasesAreAcceptedFromAnyone) {
  for (const smtp::ClientInfo& client :
       {Stranger(), Trusted(), Authenticated()}) {
    SCOPED_TRACE(client.ip + " " + client.auth_user);
    EXPECT_EQ(Check(client, Box("alice", "example.test")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("bob", "second.test")), Kind::kAccept);
    // Domains and account names compare without case; tags fall back.
    EXPECT_EQ(Check(client, Box("ALICE", "EXAMPLE.TEST")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("Alice", "Example.Test")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("alice+news", "example.test")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("team", "example.test")), Kind::kAccept);
    // An alias of ours that forwards elsewhere is ours to accept.
    EXPECT_EQ(Check(client, Box("forward", "example.test")), Kind::kAccept);
  }
}

TEST_F(RecipientTest, UnknownLocalUsersAreRefusedFromAnyone) {
  // Refused at RCPT time, never accepted to bounce later (no backscatter).
  for (const smtp::ClientInfo& client :
       {Stranger(), Trusted(), Authenticated()}) {
    SCOPED_TRACE(client.ip + " " + client.auth_user);
    EXPECT_EQ(Check(client, Box("nobody", "example.test")), Kind::kUnknownUser);
    EXPECT_EQ(Check(client, Box("nobody", "SECOND.test")), Kind::kUnknownUser);
    EXPECT_EQ(Check(client, Box("alice", "second.test")), Kind::kUnknownUser);
    EXPECT_EQ(Check(client, Box("+news", "example.test")), Kind::kUnknownUser);
    // No domain is only for postmaster.
    EXPECT_EQ(Check(client, Box("alice", "")), Kind::kUnknownUser);
  }
}

TEST_F(RecipientTest, PostmasterWithoutDomain) {
  // RFC 5321 4.1.1.3: "<Postmaster>" must be accepted, from anyone.
  for (const smtp::ClientInfo& client :
       {Stranger(), Trusted(), Authenticated()}) {
    SCOPED_TRACE(client.ip + " " + client.auth_user);
    EXPECT_EQ(Check(client, Box("postmaster", "")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("PostMaster", "")), Kind::kAccept);
    // RFC 5321 4.5.1 and RFC 2142: the role addresses at every local domain.
    EXPECT_EQ(Check(client, Box("postmaster", "example.test")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("Postmaster", "second.test")), Kind::kAccept);
    EXPECT_EQ(Check(client, Box("abuse", "second.test")), Kind::kAccept);
  }
  // Someone else's postmaster is someone else's mail.
  EXPECT_EQ(Check(Stranger(), Box("postmaster", "remote.test")),
            Kind::kRelayDenied);
}

TEST_F(RecipientTest, StrangersCannotRelay) {
  // RFC 5321 3.6.1 / 7.1: relaying is for our users and trusted networks.
  const smtp::ClientInfo stranger = Stranger();
  for (const char* domain :
       {"remote.test", "REMOTE.TEST", "sub.example.test", "evilexample.test",
        "example.test.evil", "example", "second.test.remote.test"}) {
    EXPECT_EQ(Check(stranger, Box("carol", domain)), Kind::kRelayDenied)
        << domain;
  }
  // A trailing dot makes another name (the parser refuses it; see below).
  EXPECT_EQ(Check(stranger, Box("alice", "example.test.")), Kind::kRelayDenied);
}

TEST_F(RecipientTest, TrustedAndAuthenticatedClientsMayRelay) {
  EXPECT_EQ(Check(Trusted(), Box("carol", "remote.test")), Kind::kAccept);
  EXPECT_EQ(Check(Authenticated(), Box("carol", "remote.test")), Kind::kAccept);
  EXPECT_EQ(Check(Authenticated(), Box("Carol", "Remote.Test")), Kind::kAccept);
  // AUTH counts only once it succeeded: an empty auth_user is a stranger.
  smtp::ClientInfo not_yet = Stranger();
  not_yet.auth_user = "";
  EXPECT_EQ(Check(not_yet, Box("carol", "remote.test")), Kind::kRelayDenied);
}

TEST_F(RecipientTest, RoutingTricksAtLocalDomainsAreRefusedForEveryone) {
  // RFC 5321 2.3.11 and 3.6.1: we need not route on a local part; each of
  // these asks a local domain to send mail onwards (the percent hack, UUCP
  // bang paths, a quoted address inside the local part).
  const std::vector<smtp::Mailbox> tricks = {
      Box("carol%remote.test", "example.test"),
      Box("carol%remote.test", "EXAMPLE.TEST"),
      Box("carol%remote.test", "second.test"),
      Box("remote.test!carol", "example.test"),
      Box("remote.test!carol", "Second.Test"),
      Box("carol@remote.test", "example.test", true),
      Box("carol@remote.test", "EXAMPLE.test", true),
      Box("carol%remote.test@other.test", "example.test", true),
      // Even when the hack names a user of ours: never interpreted.
      Box("alice%example.test", "example.test"),
      Box("alice%", "example.test"),
      Box("example.test!alice", "example.test"),
  };
  for (const smtp::ClientInfo& client :
       {Stranger(), Trusted(), Authenticated()}) {
    for (const smtp::Mailbox& rcpt : tricks) {
      EXPECT_EQ(Check(client, rcpt), Kind::kRelayDenied)
          << rcpt.ToString() << " from " << client.ip << " "
          << client.auth_user;
    }
  }
}

TEST_F(RecipientTest, RoutingTricksAtRemoteDomains) {
  // Strangers: refused as relaying. Relay clients: the remote side decides.
  EXPECT_EQ(Check(Stranger(), Box("carol%third.test", "remote.test")),
            Kind::kRelayDenied);
  EXPECT_EQ(Check(Stranger(), Box("third.test!carol", "remote.test")),
            Kind::kRelayDenied);
  EXPECT_EQ(Check(Stranger(), Box("alice@example.test", "remote.test", true)),
            Kind::kRelayDenied);
  EXPECT_EQ(Check(Trusted(), Box("carol%third.test", "remote.test")),
            Kind::kAccept);
  EXPECT_EQ(Check(Authenticated(), Box("third.test!carol", "remote.test")),
            Kind::kAccept);
}

TEST_F(RecipientTest, AddressLiteralsOnlyFromTrustedNetworks) {
  // RFC 5321 4.1.3 makes them optional; for anyone but a trusted network
  // they would be a way around domain-based policy.
  for (const char* literal :
       {"[192.0.2.1]", "[127.0.0.1]", "[IPv6:2001:db8::1]", "[IPv6:::1]"}) {
    EXPECT_EQ(Check(Stranger(), Box("alice", literal)), Kind::kRelayDenied)
        << literal;
    EXPECT_EQ(Check(Authenticated(), Box("alice", literal)), Kind::kRelayDenied)
        << literal;
    EXPECT_EQ(Check(Stranger(), Box("postmaster", literal)), Kind::kRelayDenied)
        << literal;
    EXPECT_EQ(Check(Trusted(), Box("carol", literal)), Kind::kAccept)
        << literal;
  }
}

// The same rules through smtp::Session, which parses the argument and
// turns the verdict into the reply (code and RFC 3463 enhanced code).
TEST_F(RecipientTest, RepliesToAStranger) {
  EXPECT_EQ(Rcpts(Stranger(),
                  {"<alice@example.test>", "<ALICE@Example.TEST>",
                   "<Postmaster>", "<POSTMASTER>", "<postmaster@second.test>",
                   "<nobody@example.test>", "<carol@remote.test>"}),
            (std::vector<std::string>{
                "250 2.1.5 Ok",
                "250 2.1.5 Ok",
                "250 2.1.5 Ok",
                "250 2.1.5 Ok",
                "250 2.1.5 Ok",
                "550 5.1.1 <nobody@example.test>: Recipient address "
                "rejected: User unknown",
                "554 5.7.1 <carol@remote.test>: Relay access denied",
            }));
}

TEST_F(RecipientTest, TricksThroughTheSession) {
  const smtp::ClientInfo stranger = Stranger();
  const std::string denied = ": Relay access denied";
  EXPECT_EQ(Rcpt(stranger, "<carol%remote.test@example.test>"),
            "554 5.7.1 <carol%remote.test@example.test>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<remote.test!carol@example.test>"),
            "554 5.7.1 <remote.test!carol@example.test>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<\"carol@remote.test\"@example.test>"),
            "554 5.7.1 <\"carol@remote.test\"@example.test>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<carol%remote.test@EXAMPLE.TEST>"),
            "554 5.7.1 <carol%remote.test@EXAMPLE.TEST>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<alice@[192.0.2.1]>"),
            "554 5.7.1 <alice@[192.0.2.1]>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<alice@[IPv6:2001:db8::1]>"),
            "554 5.7.1 <alice@[IPv6:2001:db8::1]>" + denied);
  // RFC 5321 4.1.1.3 and appendix C: a source route is ignored, so routing
  // through us to a remote mailbox is plain relaying, and a route ending at
  // a local mailbox is plain local delivery.
  EXPECT_EQ(Rcpt(stranger, "<@example.test:carol@remote.test>"),
            "554 5.7.1 <carol@remote.test>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<@example.test,@second.test:carol@remote.test>"),
            "554 5.7.1 <carol@remote.test>" + denied);
  EXPECT_EQ(Rcpt(stranger, "<@remote.test:alice@example.test>"),
            "250 2.1.5 Ok");
  // What the parser refuses never reaches the policy: two '@', trailing
  // dots (another name than ours), empty labels, missing domains.
  for (const char* arg :
       {"<carol@remote.test@example.test>", "<alice@example.test.>",
        "<carol@remote.test.>", "<alice@example..test>", "<alice@>", "<alice>",
        "<@example.test>", "carol@remote.test"}) {
    EXPECT_EQ(Rcpt(stranger, arg), "501 5.1.3 Bad recipient address syntax")
        << arg;
  }
  // Text after the path is read as parameters, not as more address.
  EXPECT_EQ(Rcpt(stranger, "<carol@remote.test>@example.test"),
            "501 5.5.4 Invalid parameter");
}

TEST_F(RecipientTest, RepliesToRelayClients) {
  EXPECT_EQ(Rcpts(Trusted(), {"<carol@remote.test>", "<carol@[192.0.2.1]>",
                              "<carol%remote.test@example.test>",
                              "<nobody@example.test>"}),
            (std::vector<std::string>{
                "250 2.1.5 Ok",
                "250 2.1.5 Ok",
                "554 5.7.1 <carol%remote.test@example.test>: Relay access "
                "denied",
                "550 5.1.1 <nobody@example.test>: Recipient address "
                "rejected: User unknown",
            }));
  EXPECT_EQ(Rcpts(Authenticated(),
                  {"<carol@remote.test>", "<carol@[192.0.2.1]>",
                   "<remote.test!carol@example.test>", "<alice@example.test>"}),
            (std::vector<std::string>{
                "250 2.1.5 Ok",
                "554 5.7.1 <carol@[192.0.2.1]>: Relay access denied",
                "554 5.7.1 <remote.test!carol@example.test>: Relay access "
                "denied",
                "250 2.1.5 Ok",
            }));
}

}  // namespace
}  // namespace tern::policy
