// Unit tests for the sans-I/O POP3 session: every command in every state,
// response codes, pipelining, line limits, the bad-command limit, STLS
// injection and the AUTH exchange framing.
#include "pop3/session.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "auth/sasl.h"
#include "common/base64.h"
#include "common/result.h"

namespace tern::pop3 {
namespace {

class FakeDrop : public Maildrop {
 public:
  std::vector<uint64_t> sizes = {120, 200, 5};
  size_t count() const override { return sizes.size(); }
  uint64_t size(size_t i) const override { return sizes[i]; }
  std::string uidl(size_t i) const override { return "uid" + std::to_string(i + 1); }
};

// Accounts for the real SASL mechanisms: u@example.test / "secret", and
// "broken" whose lookup fails like an unreadable directory.
class FakeStore : public auth::CredentialStore {
 public:
  auth::PasswordCheck CheckPassword(const std::string& user,
                                    const std::string& password) override {
    last_password = password;
    if (user == "broken") return Err("database is locked");
    if (user == "u@example.test" && password == "secret") {
      return std::optional<std::string>("u@example.test");
    }
    return std::optional<std::string>();
  }
  auth::ScramAnswer Scram(const std::string&) override {
    return std::optional<std::pair<std::string, auth::ScramCredentials>>();
  }
  std::string last_password;
};

class FakeHost : public SessionHost {
 public:
  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    return auth::MakeMechanism(name, store);
  }
  bool AuthBlocked() override { return blocked; }
  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    failures.push_back(std::string(mechanism));
    if (failures.size() >= block_after) blocked = true;
    return delay;
  }
  void AuthSucceeded(std::string_view mechanism, const std::string& user) override {
    successes.push_back(std::string(mechanism) + " " + user);
  }
  FakeStore store;
  bool blocked = false;
  size_t block_after = 1000;
  std::chrono::milliseconds delay{0};
  std::vector<std::string> failures;
  std::vector<std::string> successes;
};

class Pop3SessionTest : public ::testing::Test {
 protected:
  void Make(ClientInfo client = {"127.0.0.1", false, false, true}) {
    config.hostname = "mx.test";
    config.sasl = true;
    config.sasl_mechanisms = "PLAIN LOGIN SCRAM-SHA-256";
    session = std::make_unique<Session>(config, host, client);
    session->Greet();
    Take();
  }
  std::string Take() {
    std::string o = session->output();
    session->output().clear();
    return o;
  }
  // Feeds a line and returns the output it produced.
  std::string Send(const std::string& line) {
    size_t n = session->Feed(line + "\r\n");
    EXPECT_EQ(n, line.size() + 2);
    return Take();
  }
  // Runs the SASL step the session asked for, as the connection does.
  void Step() {
    ASSERT_EQ(session->need(), Need::kSaslStep);
    session->SaslStepDone(session->RunSaslStep());
  }
  // Answers the login request.
  void Open(LoginResult::Kind kind) {
    ASSERT_EQ(session->need(), Need::kLogin);
    EXPECT_EQ(session->login_user(), "u@example.test");
    LoginResult r;
    r.kind = kind;
    if (kind == LoginResult::Kind::kOk) r.maildrop = &drop;
    session->LoginDone(r);
  }
  void Login() {
    EXPECT_EQ(Send("USER u@example.test"), "+OK Send PASS\r\n");
    EXPECT_EQ(Send("PASS secret"), "");
    Step();
    EXPECT_EQ(host.store.last_password, "secret");
    Open(LoginResult::Kind::kOk);
    EXPECT_EQ(Take(), "+OK Logged in, maildrop has 3 messages (325 octets)\r\n");
    EXPECT_TRUE(session->InTransaction());
  }

  SessionConfig config;
  FakeHost host;
  FakeDrop drop;
  std::unique_ptr<Session> session;
};

TEST_F(Pop3SessionTest, Greeting) {
  config.hostname = "mx.test";
  Session s(config, host, {});
  s.Greet();
  EXPECT_EQ(s.output(), "+OK mx.test POP3 server ready\r\n");  // no APOP
}

TEST_F(Pop3SessionTest, CapaDependsOnStateAndTls) {
  Make({"192.0.2.1", false, true, false});
  std::string capa = Send("CAPA");
  EXPECT_NE(capa.find("\r\nSTLS\r\n"), std::string::npos);
  EXPECT_EQ(capa.find("\r\nUSER\r\n"), std::string::npos);
  EXPECT_EQ(capa.find("SASL"), std::string::npos);
  for (const char* c : {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
                        "IMPLEMENTATION Tern"}) {
    EXPECT_NE(capa.find(std::string("\r\n") + c + "\r\n"), std::string::npos) << c;
  }
  EXPECT_EQ(capa.find("EXPIRE"), std::string::npos);
  EXPECT_TRUE(capa.ends_with("\r\n.\r\n"));
  EXPECT_EQ(Send("USER u"),
            "-ERR [AUTH] Plaintext authentication is disabled: use STLS or POP3S\r\n");
  EXPECT_EQ(Send("AUTH PLAIN"),
            "-ERR [AUTH] Authentication is disabled here: use STLS or POP3S\r\n");
  EXPECT_EQ(Send("STLS"), "+OK Begin TLS negotiation\r\n");
  EXPECT_EQ(session->need(), Need::kStartTls);
  session->TlsStarted();
  capa = Send("CAPA");
  EXPECT_EQ(capa.find("STLS"), std::string::npos);
  EXPECT_NE(capa.find("\r\nUSER\r\n"), std::string::npos);
  EXPECT_NE(capa.find("\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n"), std::string::npos);
  EXPECT_EQ(Send("STLS"), "-ERR STLS not available\r\n");
}

TEST_F(Pop3SessionTest, CapaExpireAndLoginDelay) {
  config.expire = "NEVER";
  config.login_delay = 900;
  Make();
  std::string capa = Send("CAPA");
  EXPECT_NE(capa.find("\r\nEXPIRE NEVER\r\n"), std::string::npos);
  EXPECT_NE(capa.find("\r\nLOGIN-DELAY 900\r\n"), std::string::npos);
}

TEST_F(Pop3SessionTest, StlsDropsPipelinedPlaintext) {
  Make({"192.0.2.1", false, true, false});
  std::string in = "STLS\r\nUSER evil\r\n";
  EXPECT_EQ(session->Feed(in), in.size());
  EXPECT_EQ(Take(), "+OK Begin TLS negotiation\r\n");
  session->TlsStarted();
  EXPECT_EQ(Send("PASS x"), "-ERR USER first\r\n");
}

TEST_F(Pop3SessionTest, TransactionCommandsNeedLogin) {
  config.max_errors = 20;
  Make();
  for (const char* c : {"STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0",
                        "UIDL"}) {
    EXPECT_EQ(Send(c), "-ERR Not logged in yet\r\n") << c;
  }
  EXPECT_EQ(Send("PASS x"), "-ERR USER first\r\n");
  EXPECT_EQ(Send("APOP u 0123"), "-ERR APOP not available\r\n");
  EXPECT_EQ(Send("XYZZY"), "-ERR Unknown command\r\n");
}

TEST_F(Pop3SessionTest, QuitInAuthorizationClosesWithoutUpdate) {
  Make();
  EXPECT_EQ(Send("QUIT"), "+OK mx.test POP3 server signing off\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
}

TEST_F(Pop3SessionTest, PasswordMayContainSpaces) {
  Make();
  Send("user u");
  Send("pass  two words ");
  Step();
  EXPECT_EQ(host.store.last_password, " two words ");
}

TEST_F(Pop3SessionTest, AuthFailures) {
  Make();
  Send("USER u@example.test");
  Send("PASS wrong");
  Step();
  EXPECT_EQ(Take(), "-ERR [AUTH] Authentication failed\r\n");
  EXPECT_EQ(host.failures, std::vector<std::string>{"USER"});
  EXPECT_FALSE(session->InTransaction());
  // RFC 1939 7: after a failed PASS, USER starts again.
  EXPECT_EQ(Send("PASS p"), "-ERR USER first\r\n");

  using K = LoginResult::Kind;
  struct Case {
    K kind;
    const char* reply;
  } cases[] = {
      {K::kInUse, "-ERR [IN-USE] Mailbox is in use by another session\r\n"},
      {K::kLoginDelay,
       "-ERR [LOGIN-DELAY] Logged in too recently, wait before trying again\r\n"},
      {K::kTempFail, "-ERR [SYS/TEMP] Mailbox unavailable, try again later\r\n"},
      {K::kPermFail, "-ERR [SYS/PERM] Mailbox unavailable\r\n"},
  };
  for (const Case& c : cases) {
    Send("USER u@example.test");
    Send("PASS secret");
    Step();
    Open(c.kind);
    EXPECT_EQ(Take(), c.reply);
    EXPECT_FALSE(session->InTransaction());
    EXPECT_EQ(session->user(), "");
  }
  // RFC 3206 4: an account store failure is temporary and no strike.
  size_t strikes = host.failures.size();
  Send("USER broken");
  Send("PASS x");
  Step();
  EXPECT_EQ(Take(), "-ERR [SYS/TEMP] Mailbox unavailable, try again later\r\n");
  EXPECT_EQ(host.failures.size(), strikes);
}

TEST_F(Pop3SessionTest, FailureDelayThenLockout) {
  host.delay = std::chrono::milliseconds(250);
  host.block_after = 2;
  Make();
  Send("USER u@example.test");
  Send("PASS wrong");
  Step();
  ASSERT_EQ(session->need(), Need::kDelay);
  EXPECT_EQ(session->delay(), std::chrono::milliseconds(250));
  EXPECT_EQ(Take(), "");  // the reply waits for the delay
  session->DelayDone();
  EXPECT_EQ(Take(), "-ERR [AUTH] Authentication failed\r\n");
  // The second failure is one too many: the lockout, and the end.
  Send("AUTH PLAIN " + Base64Encode(std::string("\0u@example.test\0bad", 19)));
  Step();
  session->DelayDone();
  EXPECT_EQ(Take(), "-ERR [AUTH] Too many failed logins, try again later\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
  // A locked-out client is refused before any password is checked.
  Make();
  Send("USER u@example.test");
  EXPECT_EQ(Send("PASS secret"), "-ERR [AUTH] Too many failed logins, try again later\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
}

TEST_F(Pop3SessionTest, StatListUidl) {
  Make();
  Login();
  EXPECT_EQ(Send("STAT"), "+OK 3 325\r\n");
  EXPECT_EQ(Send("LIST"), "+OK 3 messages (325 octets)\r\n1 120\r\n2 200\r\n3 5\r\n.\r\n");
  EXPECT_EQ(Send("LIST 2"), "+OK 2 200\r\n");
  EXPECT_EQ(Send("LIST 4"), "-ERR No such message\r\n");
  EXPECT_EQ(Send("LIST 0"), "-ERR No such message\r\n");
  EXPECT_EQ(Send("LIST +1"), "-ERR No such message\r\n");
  EXPECT_EQ(Send("UIDL"), "+OK Unique-ID listing follows\r\n1 uid1\r\n2 uid2\r\n3 uid3\r\n.\r\n");
  EXPECT_EQ(Send("UIDL 3"), "+OK 3 uid3\r\n");
  EXPECT_EQ(Send("NOOP"), "+OK\r\n");
  EXPECT_EQ(Send("USER x"), "-ERR Already logged in\r\n");
  EXPECT_EQ(Send("STLS"), "-ERR Already logged in\r\n");
}

TEST_F(Pop3SessionTest, DeleRsetAndUpdate) {
  Make();
  Login();
  EXPECT_EQ(Send("DELE 2"), "+OK Message 2 deleted\r\n");
  EXPECT_EQ(Send("DELE 2"), "-ERR Message 2 already deleted\r\n");
  EXPECT_EQ(Send("LIST 2"), "-ERR Message 2 already deleted\r\n");
  EXPECT_EQ(Send("RETR 2"), "-ERR Message 2 already deleted\r\n");
  EXPECT_EQ(Send("STAT"), "+OK 2 125\r\n");
  EXPECT_EQ(Send("LIST"), "+OK 2 messages (125 octets)\r\n1 120\r\n3 5\r\n.\r\n");
  EXPECT_EQ(Send("RSET"), "+OK Maildrop has 3 messages (325 octets)\r\n");
  EXPECT_EQ(Send("STAT"), "+OK 3 325\r\n");
  Send("DELE 1");
  Send("DELE 3");
  Send("QUIT");
  ASSERT_EQ(session->need(), Need::kUpdate);
  EXPECT_EQ(session->deleted(), (std::vector<size_t>{0, 2}));
  session->UpdateDone(true);
  EXPECT_EQ(Take(), "+OK mx.test POP3 server signing off (1 messages (200 octets) left)\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
}

TEST_F(Pop3SessionTest, UpdateFailureIsReported) {
  Make();
  Login();
  Send("DELE 1");
  Send("QUIT");
  session->UpdateDone(false);
  EXPECT_EQ(Take(), "-ERR [SYS/TEMP] Some deleted messages not removed\r\n");
}

TEST_F(Pop3SessionTest, QuitWithoutDeletionsSkipsUpdate) {
  Make();
  Login();
  Send("QUIT");
  EXPECT_EQ(session->need(), Need::kClose);
}

TEST_F(Pop3SessionTest, RetrAndTop) {
  Make();
  Login();
  Send("RETR 2");
  ASSERT_EQ(session->need(), Need::kSend);
  EXPECT_EQ(session->send_index(), 1u);
  EXPECT_EQ(session->send_lines(), -1);
  session->SendOpened(true);
  EXPECT_EQ(Take(), "+OK 200 octets\r\n");
  Send("TOP 1 0");
  ASSERT_EQ(session->need(), Need::kSend);
  EXPECT_EQ(session->send_lines(), 0);
  session->SendOpened(true);
  EXPECT_EQ(Take(), "+OK Top of message follows\r\n");
  Send("TOP 3 10");
  EXPECT_EQ(session->send_lines(), 10);
  session->SendOpened(false);
  EXPECT_EQ(Take(), "-ERR [SYS/TEMP] Message 3 cannot be read now\r\n");
  EXPECT_EQ(Send("TOP 1"), "-ERR Syntax: TOP msg n\r\n");
  EXPECT_EQ(Send("TOP 1 -1"), "-ERR Line count must be a non-negative number\r\n");
  EXPECT_EQ(Send("RETR"), "-ERR Syntax: RETR msg\r\n");
  EXPECT_EQ(session->retrieved(), 1u);
}

TEST_F(Pop3SessionTest, PipelinedCommandsStopAtRequests) {
  Make();
  Login();
  std::string in = "STAT\r\nRETR 1\r\nNOOP\r\nQUIT\r\n";
  size_t n = session->Feed(in);
  EXPECT_EQ(n, std::string("STAT\r\nRETR 1\r\n").size());
  EXPECT_EQ(session->need(), Need::kSend);
  session->SendOpened(true);
  n += session->Feed(std::string_view(in).substr(n));
  EXPECT_EQ(n, in.size());
  EXPECT_EQ(Take(), "+OK 3 325\r\n+OK 120 octets\r\n+OK\r\n+OK mx.test POP3 server signing off (3 messages (325 octets) left)\r\n");
}

TEST_F(Pop3SessionTest, CommandsSplitAcrossFeeds) {
  Make();
  Login();
  EXPECT_EQ(session->Feed("ST"), 2u);
  EXPECT_EQ(session->Feed("AT\r"), 3u);
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(session->Feed("\n"), 1u);
  EXPECT_EQ(Take(), "+OK 3 325\r\n");
  EXPECT_EQ(Send("stat"), "+OK 3 325\r\n");  // keywords are case-insensitive
}

TEST_F(Pop3SessionTest, LineLimit) {
  Make();
  // 255 octets with CRLF is fine (RFC 2449 4), 256 is not.
  std::string ok = "USER " + std::string(248, 'a');
  EXPECT_EQ(ok.size() + 2, 255u);
  EXPECT_EQ(Send(ok), "+OK Send PASS\r\n");
  EXPECT_EQ(Send(ok + "a"), "-ERR Command line too long\r\n");
  // Far beyond the buffer: counted, not stored, one error.
  EXPECT_EQ(Send("USER " + std::string(100000, 'x')), "-ERR Line too long\r\n");
  EXPECT_EQ(Send("QUIT"), "+OK mx.test POP3 server signing off\r\n");
}

TEST_F(Pop3SessionTest, TooManyErrorsClose) {
  config.max_errors = 3;
  Make();
  Send("A");
  Send("BOGUS");
  EXPECT_EQ(session->need(), Need::kInput);
  EXPECT_EQ(Send("XXXX"), "-ERR Unknown command\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
}

TEST_F(Pop3SessionTest, SaslExchange) {
  Make();
  EXPECT_EQ(Send("AUTH"), "+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n.\r\n");
  EXPECT_EQ(Send("AUTH CRAM-MD5"), "-ERR Unsupported authentication mechanism\r\n");
  EXPECT_EQ(Send("AUTH login"), "");
  Step();
  EXPECT_EQ(Take(), "+ VXNlcm5hbWU6\r\n");  // "Username:"
  Send(Base64Encode("u@example.test"));
  Step();
  EXPECT_EQ(Take(), "+ UGFzc3dvcmQ6\r\n");  // "Password:"
  EXPECT_EQ(Send("*"), "-ERR Authentication cancelled\r\n");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_TRUE(host.failures.empty());  // cancelling is no strike

  // LOGIN to the end.
  Send("AUTH LOGIN " + Base64Encode("u@example.test"));
  Step();
  EXPECT_EQ(Take(), "+ UGFzc3dvcmQ6\r\n");
  Send(Base64Encode("secret"));
  Step();
  EXPECT_EQ(host.successes, std::vector<std::string>{"LOGIN u@example.test"});
  Open(LoginResult::Kind::kOk);
  EXPECT_EQ(Take(), "+OK Logged in, maildrop has 3 messages (325 octets)\r\n");
  EXPECT_TRUE(session->InTransaction());
}

TEST_F(Pop3SessionTest, SaslInitialResponseAndEmptyChallenge) {
  Make();
  // "=" is an empty initial response (RFC 5034 4), which PLAIN takes as
  // none: it asks with an empty challenge, as without one.
  Send("AUTH PLAIN =");
  Step();
  EXPECT_EQ(Take(), "+ \r\n");
  EXPECT_EQ(Send("*"), "-ERR Authentication cancelled\r\n");
  Send("AUTH PLAIN");
  Step();
  EXPECT_EQ(Take(), "+ \r\n");
  Send(Base64Encode(std::string("\0u@example.test\0secret", 22)));
  Step();
  Open(LoginResult::Kind::kOk);
  EXPECT_EQ(Take(), "+OK Logged in, maildrop has 3 messages (325 octets)\r\n");
}

TEST_F(Pop3SessionTest, SaslBadBase64) {
  Make();
  EXPECT_EQ(Send("AUTH PLAIN !!!"), "-ERR Invalid base64 in initial response\r\n");
  Send("AUTH PLAIN");
  Step();
  EXPECT_EQ(Take(), "+ \r\n");
  EXPECT_EQ(Send("@@@"), "-ERR Invalid base64 in response\r\n");
}

TEST_F(Pop3SessionTest, TimeoutAndShutdown) {
  Make();
  Login();
  Send("DELE 1");
  session->Timeout();
  EXPECT_EQ(Take(), "-ERR Autologout: idle for too long\r\n");
  EXPECT_EQ(session->need(), Need::kClose);  // never kUpdate
  Make();
  session->Shutdown();
  EXPECT_EQ(session->need(), Need::kClose);
}

}  // namespace
}  // namespace tern::pop3
