// Unit tests for the sans-I/O POP3 session: every command in every state,
// response codes, pipelining, line limits, the bad-command limit, STLS
// injection and the AUTH exchange framing.
#include "pop3/session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/base64.h"

namespace tern::pop3 {
namespace {

class FakeDrop : public Maildrop {
 public:
  std::vector<uint64_t> sizes = {120, 200, 5};
  size_t count() const override { return sizes.size(); }
  uint64_t size(size_t i) const override { return sizes[i]; }
  std::string uidl(size_t i) const override { return "uid" + std::to_string(i + 1); }
};

class Pop3SessionTest : public ::testing::Test {
 protected:
  void Make(ClientInfo client = {"127.0.0.1", false, false, true}) {
    config.hostname = "mx.test";
    config.sasl = true;
    config.sasl_mechanisms = "PLAIN LOGIN SCRAM-SHA-256";
    session = std::make_unique<Session>(config, client);
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
  void Login() {
    EXPECT_EQ(Send("USER u@example.test"), "+OK Send PASS\r\n");
    Send("PASS secret");
    ASSERT_EQ(session->need(), Need::kAuth);
    EXPECT_EQ(session->auth_request().kind, AuthRequest::Kind::kPass);
    EXPECT_EQ(session->auth_request().user, "u@example.test");
    EXPECT_EQ(session->auth_request().secret, "secret");
    AuthResult r;
    r.kind = AuthResult::Kind::kOk;
    r.user = "u@example.test";
    r.maildrop = &drop;
    session->AuthDone(r);
    EXPECT_EQ(Take(), "+OK Logged in, maildrop has 3 messages (325 octets)\r\n");
    EXPECT_TRUE(session->InTransaction());
  }

  SessionConfig config;
  FakeDrop drop;
  std::unique_ptr<Session> session;
};

TEST_F(Pop3SessionTest, Greeting) {
  config.hostname = "mx.test";
  Session s(config, {});
  s.Greet("<1.2@mx.test>");
  EXPECT_EQ(s.output(), "+OK mx.test POP3 server ready\r\n");  // no APOP
  config.apop = true;
  Session a(config, {});
  a.Greet("<1.2@mx.test>");
  EXPECT_EQ(a.output(), "+OK mx.test POP3 server ready <1.2@mx.test>\r\n");
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
  EXPECT_EQ(session->auth_request().secret, " two words ");
}

TEST_F(Pop3SessionTest, AuthFailures) {
  Make();
  using K = AuthResult::Kind;
  struct Case {
    K kind;
    const char* reply;
  } cases[] = {
      {K::kBadCredentials, "-ERR [AUTH] Authentication failed\r\n"},
      {K::kInUse, "-ERR [IN-USE] Mailbox is in use by another session\r\n"},
      {K::kLoginDelay,
       "-ERR [LOGIN-DELAY] Logged in too recently, wait before trying again\r\n"},
      {K::kTempFail, "-ERR [SYS/TEMP] Mailbox unavailable, try again later\r\n"},
      {K::kPermFail, "-ERR [SYS/PERM] Mailbox unavailable\r\n"},
  };
  for (const Case& c : cases) {
    Send("USER u");
    Send("PASS p");
    ASSERT_EQ(session->need(), Need::kAuth);
    AuthResult r;
    r.kind = c.kind;
    session->AuthDone(r);
    EXPECT_EQ(Take(), c.reply);
    EXPECT_FALSE(session->InTransaction());
    // RFC 1939 7: after a failed PASS, USER starts again.
    EXPECT_EQ(Send("PASS p"), "-ERR USER first\r\n");
  }
  Send("USER u");
  Send("PASS p");
  AuthResult r;
  r.kind = K::kBlocked;
  session->AuthDone(r);
  EXPECT_EQ(Take(), "-ERR [AUTH] Too many failed logins, try again later\r\n");
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
  Send("AUTH login");
  ASSERT_EQ(session->need(), Need::kAuth);
  EXPECT_EQ(session->auth_request().kind, AuthRequest::Kind::kSaslStart);
  EXPECT_EQ(session->auth_request().mechanism, "LOGIN");
  EXPECT_FALSE(session->auth_request().has_initial);
  AuthResult c;
  c.kind = AuthResult::Kind::kChallenge;
  c.data = "Username:";
  session->AuthDone(c);
  EXPECT_EQ(Take(), "+ VXNlcm5hbWU6\r\n");
  Send(Base64Encode("u"));
  ASSERT_EQ(session->need(), Need::kAuth);
  EXPECT_EQ(session->auth_request().kind, AuthRequest::Kind::kSaslNext);
  EXPECT_EQ(session->auth_request().secret, "u");
  session->AuthDone(c);
  Take();
  EXPECT_EQ(Send("*"), "-ERR Authentication cancelled\r\n");
  EXPECT_FALSE(session->InTransaction());

  // Initial response, "=" for empty, and success data as a last challenge.
  Send("AUTH PLAIN =");
  EXPECT_TRUE(session->auth_request().has_initial);
  EXPECT_EQ(session->auth_request().secret, "");
  AuthResult ok;
  ok.kind = AuthResult::Kind::kOk;
  ok.maildrop = &drop;
  ok.data = "v=xyz";
  session->AuthDone(ok);
  EXPECT_EQ(Take(), "+ dj14eXo=\r\n");
  EXPECT_EQ(Send(""), "+OK Logged in, maildrop has 3 messages (325 octets)\r\n");
  EXPECT_TRUE(session->InTransaction());
}

TEST_F(Pop3SessionTest, SaslBadBase64) {
  Make();
  EXPECT_EQ(Send("AUTH PLAIN !!!"), "-ERR Invalid base64 in initial response\r\n");
  Send("AUTH PLAIN");
  AuthResult c;
  c.kind = AuthResult::Kind::kChallenge;
  session->AuthDone(c);
  EXPECT_EQ(Take(), "+ \r\n");
  EXPECT_EQ(Send("@@@"), "-ERR Invalid base64 in response\r\n");
}

TEST_F(Pop3SessionTest, ApopWhenEnabled) {
  config.apop = true;
  config.hostname = "mx.test";
  Session s(config, {"127.0.0.1", false, false, true});
  s.Greet("<9.9@mx.test>");
  s.output().clear();
  std::string line = "APOP u@example.test C4C9334BAC560ECC979E58001B3E22FB\r\n";
  s.Feed(line);
  ASSERT_EQ(s.need(), Need::kAuth);
  EXPECT_EQ(s.auth_request().kind, AuthRequest::Kind::kApop);
  EXPECT_EQ(s.auth_request().secret, "c4c9334bac560ecc979e58001b3e22fb");
  EXPECT_EQ(s.auth_request().timestamp, "<9.9@mx.test>");
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
