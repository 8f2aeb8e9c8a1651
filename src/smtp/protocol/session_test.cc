// Unit tests for the sans-I/O SMTP session: commands in every state,
// parameters, DATA/BDAT framing (including SMTP smuggling attempts),
// limits, pipelining and the Received: header.
#include "smtp/protocol/session.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/base64.h"

namespace tern::smtp {
namespace {

// A scripted SASL mechanism ("X-TEST"): "good" succeeds as u@example.test,
// "final" succeeds with server data, "bad" fails, "junk" is malformed,
// "down" is a failure of the account store, anything else (or no initial response) gets a "more?" challenge.
class ScriptedMechanism : public auth::SaslMechanism {
 public:
  explicit ScriptedMechanism(std::vector<std::string>* seen) : seen_(seen) {}
  auth::SaslStep Start(std::optional<std::string_view> initial) override {
    seen_->push_back(initial ? "start:" + std::string(*initial) : "start");
    if (!initial) return Challenge();
    return Answer(*initial);
  }
  auth::SaslStep Next(std::string_view response) override {
    seen_->push_back("next:" + std::string(response));
    return Answer(response);
  }

 private:
  static auth::SaslStep Challenge() {
    return {auth::SaslStep::Kind::kChallenge, "more?", ""};
  }
  static auth::SaslStep Answer(std::string_view r) {
    using K = auth::SaslStep::Kind;
    if (r == "good") return {K::kSuccess, "", "u@example.test"};
    if (r == "final") return {K::kSuccess, "v=proof", "u@example.test"};
    if (r == "bad") return {K::kFailure, "", ""};
    if (r == "junk") return {K::kMalformed, "", ""};
    if (r == "down") return {K::kTempFailure, "", ""};
    return Challenge();
  }
  std::vector<std::string>* seen_;
};

// Records what the session asks of its host; messages are collected whole.
class FakeHost : public SessionHost {
 public:
  RcptVerdict CheckRecipient(const Transaction& t,
                             const Mailbox& rcpt) override {
    checked.push_back(rcpt);
    RcptVerdict v;
    auto it = verdicts.find(rcpt.local);
    if (it != verdicts.end()) v.kind = it->second;
    return v;
  }
  std::string BeginMessage(const Transaction& t) override {
    ++begins;
    begun.push_back(t);
    if (fail_begin) return "";
    messages.emplace_back();
    return "QID" + std::to_string(begins);
  }
  bool MessageData(std::string_view data) override {
    ++data_calls;
    EXPECT_FALSE(messages.empty());
    if (fail_write) return false;
    messages.back().append(data);
    return true;
  }
  void AbortMessage() override { ++aborts; }
  bool StorageFull() override { return no_space; }
  std::string Now() override { return "Thu, 01 Jan 2026 00:00:00 +0000"; }

  SenderVerdict CheckMailFrom(const Mailbox& from) override {
    SenderVerdict v;
    auto it = sender_verdicts.find(from.ToString());
    if (it != sender_verdicts.end()) v.kind = it->second;
    return v;
  }
  bool HeaderSenderAllowed(const std::string& address,
                           std::string_view field) override {
    header_checks.push_back(std::string(field) + ":" + address);
    return owned.count(address) > 0;
  }
  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    if (name != "X-TEST" && name != "x-test") return nullptr;
    return std::make_unique<ScriptedMechanism>(&sasl_seen);
  }
  bool AuthBlocked() override { return blocked; }
  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    auth_events.push_back("fail:" + std::string(mechanism));
    return failure_delay;
  }
  void AuthSucceeded(std::string_view mechanism,
                     const std::string& user) override {
    auth_events.push_back("ok:" + std::string(mechanism) + ":" + user);
  }
  void Refused(const Refusal& r, std::string_view reply) override {
    std::string line = std::string(r.stage) + " from=" + r.from + " rcpts=";
    for (const std::string& a : r.rcpts) line += a + ",";
    line += " id=" + r.queue_id + " " + std::string(reply.substr(0, 3));
    refusals.push_back(line);
  }

  // The stored message without the Received: header (up to the first
  // line that does not start with TAB after it).
  std::string Body(size_t i = 0) const {
    const std::string& m = messages.at(i);
    size_t pos = m.find("\r\n");
    while (pos != std::string::npos && pos + 2 < m.size() &&
           m[pos + 2] == '\t') {
      pos = m.find("\r\n", pos + 2);
    }
    return pos == std::string::npos ? m : m.substr(pos + 2);
  }

  std::map<std::string, RcptVerdict::Kind> verdicts;
  std::vector<Mailbox> checked;
  std::vector<Transaction> begun;
  std::vector<std::string> messages;
  int begins = 0;
  int aborts = 0;
  int data_calls = 0;
  bool fail_begin = false;
  bool fail_write = false;
  bool no_space = false;  // the failures above are for want of space
  std::map<std::string, SenderVerdict::Kind> sender_verdicts;
  std::set<std::string> owned = {"u@example.test"};
  std::vector<std::string> header_checks;
  std::vector<std::string> sasl_seen;
  std::vector<std::string> auth_events;
  std::vector<std::string> refusals;  // Refused(), one line each
  bool blocked = false;
  std::chrono::milliseconds failure_delay{0};
};

// Heap bytes in use, mmap'd blocks included (glibc).
long HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<long>(mi.uordblks + mi.hblkhd);
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() { Reset(); }

  void Reset(ClientInfo client = DefaultClient()) {
    session.reset();
    host = std::make_unique<FakeHost>();
    session = std::make_unique<Session>(config, *host, client);
  }
  static ClientInfo DefaultClient() {
    ClientInfo c;
    c.ip = "192.0.2.7";
    c.port = 40000;
    return c;
  }

  // Feeds everything (it must all be taken) and returns the new output.
  std::string Send(std::string_view in) {
    size_t used = session->Feed(in);
    EXPECT_EQ(used, in.size()) << "need=" << static_cast<int>(session->need());
    return Take();
  }
  std::string Take() {
    std::string out = std::move(session->output());
    session->output().clear();
    return out;
  }
  // Reply codes of a multi-reply output, e.g. "250 250 354".
  static std::string Codes(std::string_view out) {
    std::string codes;
    size_t pos = 0;
    while (pos < out.size()) {
      size_t end = out.find("\r\n", pos);
      if (end == std::string_view::npos) end = out.size();
      std::string_view l = out.substr(pos, end - pos);
      if (l.size() >= 4 && l[3] == ' ') {
        if (!codes.empty()) codes += ' ';
        codes += l.substr(0, 3);
      }
      pos = end + 2;
    }
    return codes;
  }

  // Runs a script feeding `chunk` bytes at a time, committing every message
  // as asked; returns all output.
  std::string Run(std::string_view in, size_t chunk, bool commit_ok = true) {
    std::string all;
    size_t pos = 0;
    while (pos < in.size()) {
      size_t n = std::min(chunk, in.size() - pos);
      size_t used = session->Feed(in.substr(pos, n));
      pos += used;
      all += Take();
      if (session->need() == Need::kCommit) {
        session->Committed(commit_ok);
        all += Take();
      } else if (session->need() == Need::kClose) {
        break;
      } else {
        EXPECT_EQ(used, n);
      }
    }
    return all;
  }

  void Ehlo() { ASSERT_EQ(Codes(Send("EHLO client.test\r\n")), "250"); }
  void MailRcpt() {
    Ehlo();
    ASSERT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n")),
              "250 250");
  }
  // Sends a message by DATA and commits it; returns the final reply.
  std::string DataMessage(std::string_view content) {
    EXPECT_EQ(Codes(Send("DATA\r\n")), "354");
    std::string out = Send(content);
    if (session->need() == Need::kCommit) {
      session->Committed(true);
      out += Take();
    }
    return out;
  }

  SessionConfig config;
  std::unique_ptr<FakeHost> host;
  std::unique_ptr<Session> session;
};

TEST_F(SessionTest, Greeting) {
  session->Greet();
  EXPECT_EQ(Take(), "220 localhost ESMTP Tern\r\n");
  EXPECT_EQ(session->need(), Need::kInput);
}

TEST_F(SessionTest, EhloAdvertisesExtensions) {
  config.max_message_size = 12345;
  config.hostname = "mx.example.test";
  Reset();
  std::string out = Send("EHLO client.test\r\n");
  EXPECT_EQ(out.substr(0, 20), "250-mx.example.test\r");
  for (const char* ext : {"SIZE 12345", "PIPELINING", "8BITMIME", "SMTPUTF8",
                          "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "HELP"}) {
    EXPECT_NE(out.find(std::string(ext) + "\r\n"), std::string::npos) << ext;
  }
  // Every line but the last is a continuation line.
  size_t lines = std::count(out.begin(), out.end(), '\n');
  EXPECT_EQ(lines, 9u);
  EXPECT_EQ(std::count(out.begin(), out.end(), '-'), 8);  // "250-" x 8
  EXPECT_EQ(Codes(out), "250");
}

// RFC 8689: REQUIRETLS is offered, and taken, only on a TLS session.
TEST_F(SessionTest, RequireTlsOnlyOverTls) {
  std::string out = Send("EHLO client.test\r\n");
  EXPECT_EQ(out.find("REQUIRETLS"), std::string::npos);
  EXPECT_EQ(Send("MAIL FROM:<a@x.test> REQUIRETLS\r\n"),
            "530 5.7.10 REQUIRETLS needs a TLS session: STARTTLS first\r\n");
  ClientInfo client = DefaultClient();
  client.tls = true;
  Reset(client);
  out = Send("EHLO client.test\r\n");
  EXPECT_NE(out.find("250-REQUIRETLS\r\n"), std::string::npos);
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test> REQUIRETLS=yes\r\n")), "501");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test> REQUIRETLS REQUIRETLS\r\n")), "501");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test> requiretls\r\n")), "250");
  EXPECT_TRUE(session->transaction().requiretls);
  Send("RSET\r\n");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
  EXPECT_FALSE(session->transaction().requiretls);
}

TEST_F(SessionTest, HeloAndEhloNeedArgument) {
  EXPECT_EQ(Send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(Send("HELO \r\n"), "501 5.5.4 Syntax: HELO hostname\r\n");
  EXPECT_EQ(Send("HELO client.test\r\n"), "250 localhost\r\n");
  EXPECT_EQ(Codes(Send("ehlo client.test\r\n")), "250");
  EXPECT_EQ(Codes(Send("EHLO bad\x01name\r\n")), "501");
  EXPECT_EQ(Codes(Send("EHLO " + std::string(256, 'a') + "\r\n")), "501");
}

TEST_F(SessionTest, VerbsAreCaseInsensitive) {
  EXPECT_EQ(Codes(Send("eHlO client.test\r\nmail from:<a@x.test>\r\n"
                       "rcpt to:<b@y.test>\r\nnoop\r\nrset\r\n")),
            "250 250 250 250 250");
}

// The reply code of every command in every command-mode state.
TEST_F(SessionTest, CommandStateTable) {
  enum State { kFresh, kAfterEhlo, kAfterHelo, kAfterMail, kAfterRcpt };
  auto enter = [&](State s) {
    Reset();
    if (s == kAfterHelo) {
      ASSERT_EQ(Codes(Send("HELO c.test\r\n")), "250");
    }
    if (s >= kAfterEhlo && s != kAfterHelo) Ehlo();
    if (s >= kAfterMail) {
      ASSERT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
    }
    if (s >= kAfterRcpt) {
      ASSERT_EQ(Codes(Send("RCPT TO:<b@y.test>\r\n")), "250");
    }
  };
  struct Row {
    const char* command;
    const char* expected[5];  // kFresh .. kAfterRcpt
  };
  const Row rows[] = {
      {"EHLO c.test", {"250", "250", "250", "250", "250"}},
      {"HELO c.test", {"250", "250", "250", "250", "250"}},
      {"MAIL FROM:<z@x.test>", {"503", "250", "250", "503", "503"}},
      {"RCPT TO:<z@y.test>", {"503", "503", "503", "250", "250"}},
      {"DATA", {"503", "503", "503", "503", "354"}},
      {"BDAT 0", {"503", "503", "503", "503", "250"}},
      {"RSET", {"250", "250", "250", "250", "250"}},
      {"NOOP", {"250", "250", "250", "250", "250"}},
      {"NOOP anything", {"250", "250", "250", "250", "250"}},
      {"VRFY someone", {"252", "252", "252", "252", "252"}},
      {"EXPN list", {"502", "502", "502", "502", "502"}},
      {"HELP", {"214", "214", "214", "214", "214"}},
      {"STARTTLS", {"500", "500", "500", "500", "500"}},
      {"AUTH PLAIN", {"500", "500", "500", "500", "500"}},
      {"FOO bar", {"500", "500", "500", "500", "500"}},
      {"", {"500", "500", "500", "500", "500"}},
      {"RSET now", {"501", "501", "501", "501", "501"}},
      {"DATA now", {"501", "501", "501", "501", "501"}},
      {"QUIT", {"221", "221", "221", "221", "221"}},
  };
  for (const Row& row : rows) {
    for (int s = kFresh; s <= kAfterRcpt; ++s) {
      enter(static_cast<State>(s));
      std::string out = Send(std::string(row.command) + "\r\n");
      EXPECT_EQ(Codes(out), row.expected[s])
          << "command '" << row.command << "' in state " << s << ": " << out;
    }
  }
}

TEST_F(SessionTest, EnhancedCodesOnEveryReplyButGreetingAndHelo) {
  Ehlo();
  std::string out = Send(
      "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nNOOP\r\nRSET\r\n"
      "VRFY x\r\nEXPN y\r\nHELP\r\nFOO\r\nRCPT TO:<c@y.test>\r\nQUIT\r\n");
  EXPECT_EQ(out,
            "250 2.1.0 Ok\r\n"
            "250 2.1.5 Ok\r\n"
            "250 2.0.0 Ok\r\n"
            "250 2.0.0 Ok\r\n"
            "252 2.5.2 Cannot VRFY user, but will accept message and attempt "
            "delivery\r\n"
            "502 5.5.1 EXPN not supported\r\n"
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT "
            "VRFY EXPN HELP\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "503 5.5.1 Error: need MAIL command\r\n"
            "221 2.0.0 Bye\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
  // Nothing more is read once closing.
  EXPECT_EQ(session->Feed("NOOP\r\n"), 0u);
}

// RFC 5321 4.1.1.8: HELP lists the verbs on offer, "HELP verb" explains one.
TEST_F(SessionTest, HelpComesFromTheCommandTable) {
  const std::string list =
      "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT "
      "VRFY EXPN HELP\r\n";
  EXPECT_EQ(Send("HELP\r\n"), list);
  EXPECT_EQ(Send("HELP rset\r\n"), "214 2.0.0 RSET\r\n");
  EXPECT_EQ(Send("HELP BDAT 10\r\n"),
            "214 2.0.0 BDAT octets [LAST], then exactly that many octets of "
            "the message\r\n");
  // A verb that is switched off is neither listed nor explained; other
  // words get the list, as before the table.
  EXPECT_EQ(Send("HELP STARTTLS\r\n"), list);
  EXPECT_EQ(Send("HELP FOO\r\n"), list);
  config.tls_available = true;
  config.auth = true;
  Reset();
  EXPECT_EQ(Send("HELP\r\n"),
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT "
            "VRFY EXPN HELP STARTTLS AUTH\r\n");
  EXPECT_EQ(Send("help auth\r\n"),
            "214 2.0.0 AUTH mechanism [initial-response]\r\n");
  EXPECT_EQ(session->need(), Need::kInput);
}

TEST_F(SessionTest, VrfyAndExpnWhenEnabled) {
  config.vrfy = true;
  config.expn = true;
  Reset();
  host->verdicts["nobody"] = RcptVerdict::Kind::kUnknownUser;
  EXPECT_EQ(Send("VRFY <u@y.test>\r\n"), "250 2.1.5 <u@y.test>\r\n");
  EXPECT_EQ(Send("EXPN u@y.test\r\n"), "250 2.1.5 <u@y.test>\r\n");
  EXPECT_EQ(Send("VRFY nobody@y.test\r\n"),
            "550 5.1.1 <nobody@y.test>: Recipient address rejected: User "
            "unknown\r\n");
  EXPECT_EQ(Codes(Send("VRFY\r\n")), "501");
  EXPECT_EQ(Codes(Send("VRFY not an address\r\n")), "501");
}

TEST_F(SessionTest, MailSyntax) {
  Ehlo();
  EXPECT_EQ(Send("MAIL <a@x.test>\r\n"),
            "501 5.5.2 Syntax: MAIL FROM:<address>\r\n");
  EXPECT_EQ(Send("MAIL FROM:a@x.test\r\n"),
            "501 5.1.7 Bad sender address syntax\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@x.test.>\r\n"),
            "501 5.1.7 Bad sender address syntax\r\n");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>junk\r\n")), "501");
  EXPECT_FALSE(session->InTransaction());
  // Postfix-style leniency: a space after the colon.
  EXPECT_EQ(Send("MAIL FROM: <a@x.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_TRUE(session->InTransaction());
  EXPECT_EQ(Send("MAIL FROM:<a@x.test>\r\n"),
            "503 5.5.1 Error: nested MAIL command\r\n");
}

TEST_F(SessionTest, NullSenderAndSourceRoute) {
  Ehlo();
  EXPECT_EQ(Codes(Send("MAIL FROM:<>\r\n")), "250");
  EXPECT_EQ(Codes(Send("RCPT TO:<@a.test,@b.test:user@c.test>\r\n")), "250");
  ASSERT_EQ(host->checked.size(), 1u);
  EXPECT_EQ(host->checked[0].ToString(), "user@c.test");
  EXPECT_EQ(Codes(Send("DATA\r\n")), "354");
  Send("x\r\n.\r\n");
  ASSERT_EQ(host->begun.size(), 1u);
  EXPECT_TRUE(host->begun[0].mail_from.null());
}

TEST_F(SessionTest, MailParameters) {
  config.max_message_size = 1000;
  config.max_errors = 100;
  Reset();
  Ehlo();
  auto mail = [&](std::string_view params) {
    std::string out =
        Send("MAIL FROM:<a@x.test>" + std::string(params) + "\r\n");
    Send("RSET\r\n");
    return out;
  };
  EXPECT_EQ(mail(" SIZE=1000"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(mail(" SIZE=1001"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
  EXPECT_EQ(Codes(mail(" SIZE=99999999999999999999")), "552");
  EXPECT_EQ(mail(" SIZE=abc"), "501 5.5.4 Invalid parameter\r\n");
  EXPECT_EQ(Codes(mail(" SIZE")), "501");
  EXPECT_EQ(Codes(mail(" SIZE=1 SIZE=2")), "501");
  EXPECT_EQ(Codes(mail(" BODY=8BITMIME")), "250");
  EXPECT_EQ(Codes(mail(" body=7bit")), "250");
  EXPECT_EQ(Codes(mail(" BODY=BINARYMIME")), "501");
  EXPECT_EQ(Codes(mail(" SMTPUTF8")), "250");
  EXPECT_EQ(Codes(mail(" SMTPUTF8=yes")), "501");
  EXPECT_EQ(Codes(mail(" RET=HDRS ENVID=abc+2Bdef")), "250");
  EXPECT_EQ(Codes(mail(" RET=ALL")), "501");
  EXPECT_EQ(Codes(mail(" ENVID=a+2")), "501");
  EXPECT_EQ(Codes(mail(" ENVID=" + std::string(101, 'e'))), "501");
  EXPECT_EQ(mail(" AUTH=<>"), "555 5.5.4 Unsupported parameter\r\n");
  EXPECT_EQ(Codes(mail(" X-FOO")), "555");
  EXPECT_EQ(Codes(mail(" =x")), "501");
  EXPECT_EQ(Codes(mail("  SIZE=10  BODY=8BITMIME ")), "250");

  // The accepted values reach the transaction.
  Send(
      "MAIL FROM:<a@x.test> SIZE=500 BODY=8BITMIME RET=FULL ENVID=QQ "
      "SMTPUTF8\r\nRCPT TO:<b@y.test> NOTIFY=success,delay "
      "ORCPT=rfc822;b+40y.test\r\nDATA\r\n.\r\n");
  ASSERT_EQ(host->begun.size(), 1u);
  const Transaction& t = host->begun[0];
  EXPECT_EQ(t.declared_size, 500u);
  EXPECT_EQ(t.body, "8BITMIME");
  EXPECT_EQ(t.ret, "FULL");
  EXPECT_EQ(t.envid, "QQ");
  EXPECT_TRUE(t.smtputf8);
  EXPECT_TRUE(t.esmtp);
  EXPECT_EQ(t.helo, "client.test");
  ASSERT_EQ(t.rcpt_params.size(), 1u);
  EXPECT_EQ(t.rcpt_params[0].notify, "SUCCESS,DELAY");
  EXPECT_EQ(t.rcpt_params[0].orcpt, "rfc822;b+40y.test");
}

TEST_F(SessionTest, ParametersNeedEhlo) {
  EXPECT_EQ(Codes(Send("HELO c.test\r\n")), "250");
  EXPECT_EQ(Send("MAIL FROM:<a@x.test> SMTPUTF8\r\n"),
            "555 5.5.4 Parameters not allowed after HELO\r\n");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test> SIZE=10\r\n")), "555");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> NOTIFY=NEVER\r\n")), "555");
}

TEST_F(SessionTest, RcptParameters) {
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\n");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> NOTIFY=NEVER\r\n")), "250");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> NOTIFY=NEVER,DELAY\r\n")), "501");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> NOTIFY=FAILURE,FAILURE\r\n")),
            "501");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> NOTIFY=SOMETIMES\r\n")), "501");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> ORCPT=rfc822\r\n")), "501");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> ORCPT=rfc822;a=b\r\n")), "501");
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test> SIZE=10\r\n")), "555");
}

TEST_F(SessionTest, RcptVerdicts) {
  host->verdicts["unknown"] = RcptVerdict::Kind::kUnknownUser;
  host->verdicts["relay"] = RcptVerdict::Kind::kRelayDenied;
  host->verdicts["temp"] = RcptVerdict::Kind::kTempFail;
  Ehlo();
  EXPECT_EQ(Send("RCPT TO:<b@y.test>\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n");
  Send("MAIL FROM:<a@x.test>\r\n");
  EXPECT_EQ(Send("RCPT TO:<unknown@y.test>\r\n"),
            "550 5.1.1 <unknown@y.test>: Recipient address rejected: User "
            "unknown\r\n");
  EXPECT_EQ(Send("RCPT TO:<relay@y.test>\r\n"),
            "554 5.7.1 <relay@y.test>: Relay access denied\r\n");
  EXPECT_EQ(Send("RCPT TO:<temp@y.test>\r\n"),
            "451 4.3.0 <temp@y.test>: Temporary lookup failure\r\n");
  // No accepted recipient yet.
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(Send("RCPT TO:<ok@y.test>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(Send("RCPT TO:<\"a b\"@y.test>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(host->checked.back().local, "a b");
  EXPECT_EQ(Send("RCPT TO:<>\r\n"),
            "501 5.1.3 Bad recipient address syntax\r\n");
  EXPECT_EQ(Send("RCPT <b@y.test>\r\n"),
            "501 5.5.2 Syntax: RCPT TO:<address>\r\n");
  EXPECT_EQ(Send("RCPT TO: <ok2@y.test>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST_F(SessionTest, PostmasterWithoutDomain) {
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\n");
  EXPECT_EQ(Send("RCPT TO:<Postmaster>\r\n"), "250 2.1.5 Ok\r\n");
  ASSERT_EQ(host->checked.size(), 1u);
  EXPECT_EQ(host->checked[0], (Mailbox{"postmaster", "", false}));
  // Other bare local parts are not addresses.
  EXPECT_EQ(Codes(Send("RCPT TO:<abuse>\r\n")), "501");
}

TEST_F(SessionTest, Utf8AddressesNeedSmtputf8) {
  const std::string u =
      "J\xC3\xB6rg@b\xC3\xBC"
      "cher.test";
  Ehlo();
  EXPECT_EQ(Send("MAIL FROM:<" + u + ">\r\n"),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
  EXPECT_EQ(Send("RCPT TO:<" + u + ">\r\n"),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
  Send("RSET\r\n");
  EXPECT_EQ(Codes(Send("MAIL FROM:<" + u + "> SMTPUTF8\r\n")), "250");
  EXPECT_EQ(Codes(Send("RCPT TO:<" + u + ">\r\n")), "250");
  // Malformed UTF-8 is a syntax error even with SMTPUTF8.
  EXPECT_EQ(Codes(Send("RCPT TO:<\xC0\xAF@y.test>\r\n")), "501");
}

TEST_F(SessionTest, TooLongAddressParts) {
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\n");
  EXPECT_EQ(Codes(Send("RCPT TO:<" + std::string(64, 'l') + "@y.test>\r\n")),
            "250");
  EXPECT_EQ(Send("RCPT TO:<" + std::string(65, 'l') + "@y.test>\r\n"),
            "501 5.1.3 Bad recipient address syntax\r\n");
  EXPECT_EQ(Codes(Send("RCPT TO:<l@" + std::string(64, 'd') + ".test>\r\n")),
            "501");
}

TEST_F(SessionTest, MaxRecipients) {
  config.max_recipients = 3;
  Reset();
  MailRcpt();
  EXPECT_EQ(Codes(Send("RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\n")),
            "250 250");
  // 452 is flow control: it must not count towards the error limit.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(Send("RCPT TO:<e@y.test>\r\n"),
              "452 4.5.3 Too many recipients\r\n");
  }
  EXPECT_EQ(session->need(), Need::kInput);
  EXPECT_EQ(DataMessage("Subject: x\r\n\r\nhi\r\n.\r\n"),
            "250 2.0.0 Ok: queued as QID1\r\n");
  EXPECT_EQ(host->begun[0].rcpts.size(), 3u);
}

TEST_F(SessionTest, DataStoresReceivedHeaderAndBody) {
  config.hostname = "mx.example.test";
  Reset();
  MailRcpt();
  EXPECT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_TRUE(session->InData());
  EXPECT_EQ(Send("Subject: hi\r\n\r\nline 1\r\n"), "");
  EXPECT_EQ(Send(".\r\n"), "");
  EXPECT_FALSE(session->InData());
  EXPECT_EQ(session->need(), Need::kCommit);
  EXPECT_TRUE(session->InTransaction());
  EXPECT_EQ(session->Feed("NOOP\r\n"), 0u);
  session->Committed(true);
  EXPECT_EQ(Take(), "250 2.0.0 Ok: queued as QID1\r\n");
  EXPECT_EQ(session->need(), Need::kInput);
  EXPECT_FALSE(session->InTransaction());
  EXPECT_EQ(host->aborts, 0);
  ASSERT_EQ(host->messages.size(), 1u);
  EXPECT_EQ(host->messages[0],
            "Received: from client.test ([192.0.2.7])\r\n"
            "\tby mx.example.test (Tern) with ESMTP id QID1\r\n"
            "\tfor <b@y.test>; Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "Subject: hi\r\n\r\nline 1\r\n");
  // Back in command mode after EHLO: a new transaction works.
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
}

TEST_F(SessionTest, ReceivedHeaderProtocols) {
  struct Case {
    bool ehlo, tls, auth, utf8;
    const char* proto;
  };
  const Case cases[] = {
      {true, false, false, false, "ESMTP"},
      {false, false, false, false, "SMTP"},
      {true, true, false, false, "ESMTPS"},
      {true, false, true, false, "ESMTPA"},
      {true, true, true, false, "ESMTPSA"},
      {true, false, false, true, "UTF8SMTP"},
      {true, true, false, true, "UTF8SMTPS"},
      {true, false, true, true, "UTF8SMTPA"},
      {true, true, true, true, "UTF8SMTPSA"},
  };
  for (const Case& c : cases) {
    ClientInfo client = DefaultClient();
    client.tls = c.tls;
    if (c.auth) client.auth_user = "alice";
    Reset(client);
    Send(c.ehlo ? "EHLO c.test\r\n" : "HELO c.test\r\n");
    Send(std::string("MAIL FROM:<a@x.test>") + (c.utf8 ? " SMTPUTF8" : "") +
         "\r\nRCPT TO:<b@y.test>\r\nDATA\r\n.\r\n");
    ASSERT_EQ(host->messages.size(), 1u) << c.proto;
    EXPECT_NE(host->messages[0].find(std::string(" with ") + c.proto + " id "),
              std::string::npos)
        << c.proto << ": " << host->messages[0];
  }
}

TEST_F(SessionTest, ReceivedHeaderIpv6AndRecipientCount) {
  ClientInfo client = DefaultClient();
  client.ip = "2001:db8::5";
  Reset(client);
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n");
  DataMessage("x\r\n.\r\n");
  EXPECT_EQ(host->messages[0],
            "Received: from client.test ([IPv6:2001:db8::5])\r\n"
            "\tby localhost (Tern) with ESMTP id QID1; "
            "Thu, 01 Jan 2026 00:00:00 +0000\r\nx\r\n");
  EXPECT_EQ(host->messages[0].find("for <"), std::string::npos);
}

TEST_F(SessionTest, DotStuffingIsUndone) {
  MailRcpt();
  DataMessage("..\r\n...\r\n..x\r\n.x\r\nx.\r\n. \r\n\r\n.\r\n");
  EXPECT_EQ(host->Body(), ".\r\n..\r\n.x\r\nx\r\nx.\r\n \r\n\r\n");
}

TEST_F(SessionTest, EmptyMessage) {
  MailRcpt();
  EXPECT_EQ(DataMessage(".\r\n"), "250 2.0.0 Ok: queued as QID1\r\n");
  EXPECT_EQ(host->Body(), "");
}

// SMTP smuggling (CVE-2023-51764 and friends): none of these sequences may
// end the data; the text after them is body, and the message is refused.
TEST_F(SessionTest, SmugglingSequencesDoNotEndData) {
  const char* endings[] = {
      "\n.\n",    // <LF>.<LF>
      "\r.\r",    // <CR>.<CR>
      "\n.\r\n",  // <LF>.<CRLF>
      "\r\n.\n",  // <CRLF>.<LF>
      "\r.\r\n",  // <CR>.<CRLF>
      "\r\n.\r",  // <CRLF>.<CR>
      "\r\n\n.\r\n",
  };
  for (const char* end : endings) {
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{100000}}) {
      Reset();
      MailRcpt();
      std::string in = std::string("DATA\r\nSubject: a\r\n\r\nbody") + end +
                       "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n"
                       "DATA\r\nSubject: smuggled\r\n\r\n.\r\n";
      std::string out = Run(in, chunk);
      EXPECT_EQ(out,
                "354 End data with <CR><LF>.<CR><LF>\r\n"
                "554 5.6.0 Message contains bare CR or LF\r\n")
          << testing::PrintToString(std::string(end)) << " chunk " << chunk;
      EXPECT_EQ(host->begins, 1);
      EXPECT_EQ(host->aborts, 1);
      EXPECT_EQ(host->checked.size(), 1u);  // only b@y.test
      EXPECT_FALSE(session->InTransaction());
    }
  }
}

TEST_F(SessionTest, BareLfAnywhereRejectsMessage) {
  MailRcpt();
  EXPECT_EQ(DataMessage("Subject: a\nX: b\r\n\r\n.\r\n"),
            "554 5.6.0 Message contains bare CR or LF\r\n");
  EXPECT_EQ(host->aborts, 1);
  // The session is usable afterwards.
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
}

TEST_F(SessionTest, BareCrOrLfInCommandRejectsWholeLine) {
  Ehlo();
  EXPECT_EQ(Send("MAIL FROM:<a@x.test>\rRCPT TO:<b@y.test>\r\n"),
            "500 5.5.2 Bare CR or LF not allowed\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@x.test>\nRCPT TO:<b@y.test>\r\n"),
            "500 5.5.2 Bare CR or LF not allowed\r\n");
  EXPECT_EQ(Send("NOOP\r\r\n"), "500 5.5.2 Bare CR or LF not allowed\r\n");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_TRUE(host->checked.empty());
  EXPECT_EQ(Send(std::string("NO\0OP\r\n", 7)),
            "500 5.5.2 NUL character not allowed\r\n");
}

TEST_F(SessionTest, CommandLineLimits) {
  Ehlo();
  // 512 octets with CRLF is fine, 513 is not (RFC 5321 4.5.3.1.4).
  std::string noop510 = "NOOP " + std::string(505, 'x');
  EXPECT_EQ(Codes(Send(noop510 + "\r\n")), "250");
  EXPECT_EQ(Send(noop510 + "x\r\n"), "500 5.5.2 Line too long\r\n");
  // MAIL and RCPT get room for extension parameters.
  std::string mail = "MAIL FROM:<a@x.test> SIZE=10";
  mail.resize(1110, ' ');  // 510 + the 600-octet allowance
  EXPECT_EQ(Codes(Send(mail + "\r\n")), "250");
  Send("RSET\r\n");
  EXPECT_EQ(Send(mail + " \r\n"), "500 5.5.2 Line too long\r\n");
}

TEST_F(SessionTest, HugeLineWithoutCrlfStaysBounded) {
  Ehlo();
  std::string piece(64 * 1024, 'A');
  long before = HeapInUse();
  for (int i = 0; i < 160; ++i) {  // 10 MiB
    ASSERT_EQ(session->Feed(piece), piece.size());
  }
  EXPECT_LT(HeapInUse() - before, 16 * 1024);
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(Send("\r\n"), "500 5.5.2 Line too long\r\n");
  EXPECT_EQ(Codes(Send("NOOP\r\n")), "250");
}

TEST_F(SessionTest, IdleSessionIsSmall) {
  long before = HeapInUse();
  FakeHost h;
  Session s(config, h, DefaultClient());
  EXPECT_LT(HeapInUse() - before, 4096);
}

TEST_F(SessionTest, DeclaredAndActualSize) {
  config.max_message_size = 100;
  Reset();
  Ehlo();
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test> SIZE=101\r\n")), "552");
  EXPECT_EQ(
      Codes(Send("MAIL FROM:<a@x.test> SIZE=50\r\nRCPT TO:<b@y.test>\r\n")),
      "250 250");
  // 98 octets + CRLF = 100 is fine...
  EXPECT_EQ(DataMessage(std::string(98, 'x') + "\r\n.\r\n"),
            "250 2.0.0 Ok: queued as QID1\r\n");
  // ...101 is not; the rest is swallowed without being stored.
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  std::string big;
  for (int i = 0; i < 50; ++i) big += std::string(70, 'y') + "\r\n";
  EXPECT_EQ(Codes(Send("DATA\r\n")), "354");
  for (char c : big) Send(std::string(1, c));
  EXPECT_EQ(Send(".\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
  EXPECT_EQ(host->aborts, 1);
  // Storing stopped at the limit.
  EXPECT_LE(host->Body(1).size(), 100u);
}

TEST_F(SessionTest, BodyLineLimit) {
  MailRcpt();
  EXPECT_EQ(DataMessage(std::string(998, 'x') + "\r\n.\r\n"),
            "250 2.0.0 Ok: queued as QID1\r\n");
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(DataMessage(std::string(999, 'x') + "\r\n.\r\n"),
            "554 5.6.0 Message line too long (RFC 5321 4.5.3.1.6)\r\n");
  // RFC 5321 4.5.3.1.6: the dot added for transparency does not count.
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(Codes(DataMessage(".." + std::string(997, 'x') + "\r\n.\r\n")),
            "250");
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(Codes(DataMessage(".." + std::string(998, 'x') + "\r\n.\r\n")),
            "554");
}

TEST_F(SessionTest, HopCount) {
  config.max_received_headers = 3;
  Reset();
  MailRcpt();
  std::string three = "Received: a\r\nreceived: b\r\nRECEIVED:c\r\n";
  EXPECT_EQ(Codes(DataMessage(three + "\r\n.\r\n")), "250");
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(DataMessage(three + "Received: d\r\n\r\n.\r\n"),
            "554 5.4.6 Too many hops\r\n");
  // Only the header section counts; continuation or look-alike fields
  // do not.
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(
      Codes(DataMessage(three + " Received: x\r\nX-Received: y\r\n\r\n"
                                "Received: body\r\nReceived: body\r\n.\r\n")),
      "250");
}

TEST_F(SessionTest, BeginFailure) {
  host->fail_begin = true;
  MailRcpt();
  EXPECT_EQ(Send("DATA\r\n"), "451 4.3.0 Error: temporary failure\r\n");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_FALSE(session->InData());
  EXPECT_EQ(host->aborts, 0);
  EXPECT_EQ(Send("RCPT TO:<b@y.test>\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n");
}

TEST_F(SessionTest, WriteFailure) {
  MailRcpt();
  host->fail_write = true;
  EXPECT_EQ(DataMessage("a\r\nb\r\n.\r\n"),
            "451 4.3.0 Error: queue file write error\r\n");
  EXPECT_EQ(host->aborts, 1);
  EXPECT_FALSE(session->InTransaction());
}

// RFC 5321 4.2.2, RFC 3463 X.3.1: a full spool is 452 4.3.1, whether it
// shows when the message starts, while it is written or at the commit.
TEST_F(SessionTest, NoSpaceIs452) {
  host->no_space = true;
  host->fail_begin = true;
  MailRcpt();
  EXPECT_EQ(Send("DATA\r\n"), "452 4.3.1 Insufficient system storage\r\n");
  MailRcpt();
  EXPECT_EQ(Send("BDAT 3 LAST\r\nabc"),
            "452 4.3.1 Insufficient system storage\r\n");
  host->fail_begin = false;
  host->fail_write = true;
  MailRcpt();
  EXPECT_EQ(DataMessage("a\r\nb\r\n.\r\n"),
            "452 4.3.1 Insufficient system storage\r\n");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_EQ(Codes(Send("NOOP\r\n")), "250");
}

TEST_F(SessionTest, CommitFailure) {
  MailRcpt();
  Send("DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(session->need(), Need::kCommit);
  session->Committed(false);
  EXPECT_EQ(Take(), "451 4.3.0 Error: queue file write error\r\n");
  EXPECT_EQ(host->aborts, 1);
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n");
  session->Committed(false, true);
  EXPECT_EQ(Take(), "452 4.3.1 Insufficient system storage\r\n");
  EXPECT_EQ(session->need(), Need::kInput);
  EXPECT_FALSE(session->InTransaction());
}

TEST_F(SessionTest, FeedStopsAfterEndOfData) {
  MailRcpt();
  Send("DATA\r\n");
  std::string in = "x\r\n.\r\nMAIL FROM:<c@x.test>\r\n";
  size_t used = session->Feed(in);
  EXPECT_EQ(used, 6u);
  EXPECT_EQ(session->need(), Need::kCommit);
  EXPECT_EQ(session->Feed(in.substr(used)), 0u);
  session->Committed(true);
  EXPECT_EQ(Send(in.substr(used)),
            "250 2.0.0 Ok: queued as QID1\r\n250 2.1.0 Ok\r\n");
}

TEST_F(SessionTest, EhloAndRsetResetTransaction) {
  MailRcpt();
  EXPECT_EQ(Codes(Send("EHLO again.test\r\n")), "250");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test>\r\n")), "503");
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(Codes(Send("DATA\r\n")), "503");
  EXPECT_EQ(host->aborts, 0);  // nothing had begun
}

TEST_F(SessionTest, ErrorLimitCloses) {
  config.max_errors = 3;
  config.hostname = "mx.test";
  Reset();
  // The third error is answered, then the 421; NOOP is never read.
  std::string in = "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n";
  size_t used = session->Feed(in);
  EXPECT_EQ(used, in.size() - 6);
  EXPECT_EQ(Take(),
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "421 4.7.0 mx.test Too many errors, closing connection\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
}

TEST_F(SessionTest, ErrorLimitAbortsOpenMessage) {
  config.max_errors = 2;
  Reset();
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  Send("BDAT 3\r\nabc");
  EXPECT_EQ(host->begins, 1);
  Run("DATA\r\nRCPT TO:<c@y.test>\r\n", 1000);
  EXPECT_EQ(session->need(), Need::kClose);
  EXPECT_EQ(host->aborts, 1);
}

TEST_F(SessionTest, TimeoutAndShutdown) {
  config.hostname = "mx.test";
  Reset();
  MailRcpt();
  Send("DATA\r\npartial");
  EXPECT_TRUE(session->InData());
  session->Timeout();
  EXPECT_EQ(Take(), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
  EXPECT_EQ(host->aborts, 1);
  EXPECT_EQ(session->Feed("x"), 0u);
  Reset();
  session->Shutdown();
  EXPECT_EQ(Take(), "421 4.3.2 mx.test Service shutting down\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
  EXPECT_EQ(host->aborts, 0);
}

TEST_F(SessionTest, DestructorAbortsBegunMessage) {
  MailRcpt();
  Send("DATA\r\nabc");
  FakeHost* h = host.get();
  session.reset();
  EXPECT_EQ(h->aborts, 1);
}

// ---- BDAT (RFC 3030) ---------------------------------------------------

TEST_F(SessionTest, BdatBasic) {
  MailRcpt();
  EXPECT_EQ(Send("BDAT 5\r\nab\r\nc"), "250 2.0.0 5 octets received\r\n");
  EXPECT_TRUE(session->InTransaction());
  EXPECT_EQ(Send("BDAT 7 LAST\r\nd.\r\n.\r\n"), "");
  ASSERT_EQ(session->need(), Need::kCommit);
  session->Committed(true);
  EXPECT_EQ(Take(), "250 2.0.0 Ok: queued as QID1\r\n");
  // No dot-unstuffing, no end-of-data detection in chunks.
  EXPECT_EQ(host->Body(), "ab\r\ncd.\r\n.\r\n");
  EXPECT_EQ(host->begins, 1);
}

TEST_F(SessionTest, BdatZeroLast) {
  MailRcpt();
  EXPECT_EQ(Send("BDAT 0 LAST\r\n"), "");
  ASSERT_EQ(session->need(), Need::kCommit);
  session->Committed(true);
  EXPECT_EQ(Take(), "250 2.0.0 Ok: queued as QID1\r\n");
  EXPECT_EQ(host->Body(), "");
}

TEST_F(SessionTest, BdatUnterminatedLastLineGetsCrlf) {
  MailRcpt();
  Send("BDAT 3 last\r\nabc");
  session->Committed(true);
  EXPECT_EQ(host->Body(), "abc\r\n");
}

TEST_F(SessionTest, BdatWithoutRecipientDiscardsChunk) {
  Ehlo();
  // The chunk bytes look like commands but must be skipped.
  EXPECT_EQ(Send("BDAT 12\r\nRSET\r\nNOOP\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n");
  Send("MAIL FROM:<a@x.test>\r\n");
  EXPECT_EQ(Send("BDAT 12 LAST\r\nRSET\r\nNOOP\r\n"),
            "503 5.5.1 Error: no valid recipients\r\n");
  EXPECT_TRUE(session->InTransaction());
  EXPECT_EQ(host->begins, 0);
  Reset();
  EXPECT_EQ(Send("BDAT 6\r\nQUIT\r\n"),
            "503 5.5.1 Error: send HELO/EHLO first\r\n");
  EXPECT_EQ(session->need(), Need::kInput);
}

TEST_F(SessionTest, BdatAfterHeloIsRefused) {
  Send("HELO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(Send("BDAT 4 LAST\r\nabcd"),
            "503 5.5.1 Error: BDAT requires EHLO\r\n");
}

TEST_F(SessionTest, BdatBadSize) {
  MailRcpt();
  EXPECT_EQ(Send("BDAT\r\n"), "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
  EXPECT_EQ(Codes(Send("BDAT x\r\n")), "501");
  EXPECT_EQ(Codes(Send("BDAT -1\r\n")), "501");
  EXPECT_EQ(Codes(Send("BDAT 5 NOTLAST\r\n")), "501");
  EXPECT_EQ(Codes(Send("BDAT 5 LAST x\r\n")), "501");
  EXPECT_EQ(Codes(Send("BDAT 99999999999999999999\r\n")), "501");
  // What follows is read as commands again.
  EXPECT_EQ(Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(host->begins, 0);
}

TEST_F(SessionTest, BdatBeginFailure) {
  host->fail_begin = true;
  MailRcpt();
  EXPECT_EQ(Send("BDAT 4\r\nNOOPBDAT 2 LAST\r\nxy"),
            "451 4.3.0 Error: temporary failure\r\n"
            "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_FALSE(session->InTransaction());
}

TEST_F(SessionTest, BdatThenDataIsRefused) {
  MailRcpt();
  Send("BDAT 3\r\nabc");
  EXPECT_EQ(Send("DATA\r\n"),
            "503 5.5.1 Error: DATA not allowed after BDAT\r\n");
  EXPECT_EQ(Send("RCPT TO:<c@y.test>\r\n"),
            "503 5.5.1 Error: RCPT not allowed after BDAT\r\n");
  EXPECT_EQ(Send("BDAT 2 LAST\r\nd\n"),
            "554 5.6.0 Message contains bare CR or LF\r\n");
  EXPECT_EQ(host->aborts, 1);
  // A DATA transaction followed by BDAT in the next transaction is fine.
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(DataMessage("one\r\n.\r\n"), "250 2.0.0 Ok: queued as QID2\r\n");
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 5 LAST\r\ntwo\r\n");
  session->Committed(true);
  EXPECT_EQ(Take(), "250 2.0.0 Ok: queued as QID3\r\n");
  EXPECT_EQ(host->Body(2), "two\r\n");
}

TEST_F(SessionTest, RsetAbortsBdatMessage) {
  MailRcpt();
  Send("BDAT 3\r\nabc");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(host->aborts, 1);
  EXPECT_FALSE(session->InTransaction());
}

// The same content split into two chunks at every offset stores the same
// message; CR at the end of one chunk and LF at the start of the next is a
// proper line end.
TEST_F(SessionTest, BdatChunkBoundariesAtEveryOffset) {
  const std::string content =
      "Subject: chunks\r\nReceived: x\r\n\r\nline one\r\n.dot\r\n\r\nend\r\n";
  for (size_t cut = 0; cut <= content.size(); ++cut) {
    Reset();
    MailRcpt();
    std::string a = content.substr(0, cut), b = content.substr(cut);
    std::string in = "BDAT " + std::to_string(a.size()) + "\r\n" + a + "BDAT " +
                     std::to_string(b.size()) + " LAST\r\n" + b;
    for (size_t feed_chunk : {size_t{1}, size_t{7}, in.size()}) {
      Reset();
      MailRcpt();
      std::string out = Run(in, feed_chunk);
      EXPECT_EQ(out, "250 2.0.0 " + std::to_string(a.size()) +
                         " octets received\r\n250 2.0.0 Ok: queued as QID1\r\n")
          << "cut " << cut << " feed " << feed_chunk;
      ASSERT_EQ(host->messages.size(), 1u);
      EXPECT_EQ(host->Body(), content) << "cut " << cut;
    }
  }
}

TEST_F(SessionTest, BdatBareCrLfAcrossChunks) {
  // A CR ending one chunk followed by a non-LF is bare.
  MailRcpt();
  Run("BDAT 2\r\na\rBDAT 3 LAST\r\nb\r\n", 1);
  EXPECT_EQ(host->aborts, 1);
  // A CR ending the last chunk is bare.
  Reset();
  MailRcpt();
  EXPECT_EQ(Run("BDAT 2 LAST\r\na\r", 1),
            "554 5.6.0 Message contains bare CR or LF\r\n");
  // Line length is counted across chunks.
  config.text_line_limit = 10;
  Reset();
  MailRcpt();
  EXPECT_EQ(Run("BDAT 5\r\n12345BDAT 6 LAST\r\n6789\r\n", 3),
            "250 2.0.0 5 octets received\r\n"
            "554 5.6.0 Message line too long (RFC 5321 4.5.3.1.6)\r\n");
}

TEST_F(SessionTest, BdatSizeAndHops) {
  config.max_message_size = 10;
  config.max_received_headers = 1;
  Reset();
  MailRcpt();
  EXPECT_EQ(Codes(Run("BDAT 6\r\n12345\nBDAT 6 LAST\r\n67890\n", 1000)),
            "250 554");
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(Codes(Run("BDAT 6\r\n1234\r\nBDAT 6 LAST\r\n6789\r\n", 1000)),
            "250 552");
  config.max_message_size = 1000;
  Reset();
  MailRcpt();
  EXPECT_EQ(Run("BDAT 26 LAST\r\nReceived: a\r\nReceived: b\r\n", 1000),
            "554 5.4.6 Too many hops\r\n");
}

// ---- Pipelining (RFC 2920) ---------------------------------------------

TEST_F(SessionTest, PipelinedAndByteByByteGiveSameReplies) {
  const std::string script =
      "EHLO client.test\r\n"
      "MAIL FROM:<a@x.test> SIZE=100\r\n"
      "RCPT TO:<nobody@y.test>\r\n"
      "RCPT TO:<b@y.test>\r\n"
      "DATA\r\n"
      "Subject: one\r\n\r\n..stuffed\r\n.\r\n"
      "MAIL FROM:<>\r\n"
      "RCPT TO:<c@y.test>\r\n"
      "BDAT 7\r\nSubject"
      "BDAT 9 LAST\r\n: two\r\n\r\n"
      "NOOP\r\n"
      "BOGUS\r\n"
      "QUIT\r\n";
  std::string expected;
  std::vector<std::string> stored;
  for (size_t chunk :
       {script.size(), size_t{1}, size_t{2}, size_t{5}, size_t{13}}) {
    Reset();
    host->verdicts["nobody"] = RcptVerdict::Kind::kUnknownUser;
    std::string out = Run(script, chunk);
    if (expected.empty()) {
      expected = out;
      stored = host->messages;
      EXPECT_EQ(Codes(out),
                "250 250 550 250 354 250 250 250 250 250 250 500 221");
      ASSERT_EQ(stored.size(), 2u);
      EXPECT_EQ(host->Body(0), "Subject: one\r\n\r\n.stuffed\r\n");
      EXPECT_EQ(host->Body(1), "Subject: two\r\n\r\n");
    } else {
      EXPECT_EQ(out, expected) << "chunk " << chunk;
      EXPECT_EQ(host->messages, stored) << "chunk " << chunk;
    }
    EXPECT_EQ(session->need(), Need::kClose);
  }
}

// ---- STARTTLS (RFC 3207) ------------------------------------------------

class TlsAuthTest : public SessionTest {
 protected:
  TlsAuthTest() {
    config.tls_available = true;
    config.auth = true;
    Reset();
  }
  // TLS up and EHLO said again, as a real client does.
  void StartTls() {
    ASSERT_EQ(Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    ASSERT_EQ(session->need(), Need::kStartTls);
    session->TlsStarted("TLSv1.3", "TLS_AES_256_GCM_SHA384");
    ASSERT_EQ(session->need(), Need::kInput);
    Ehlo();
  }
  static std::string B64(std::string_view s) { return Base64Encode(s); }
};

TEST_F(TlsAuthTest, EhloOffersStartTlsThenAuth) {
  std::string out = Send("EHLO c.test\r\n");
  EXPECT_NE(out.find("250-STARTTLS\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("AUTH"), std::string::npos) << out;
  StartTls();
  out = Send("EHLO c.test\r\n");
  EXPECT_EQ(out.find("STARTTLS"), std::string::npos) << out;
  EXPECT_NE(out.find("250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n"), std::string::npos)
      << out;
  EXPECT_EQ(Codes(out), "250");
  // Once authenticated, AUTH is no longer offered.
  EXPECT_EQ(Codes(Send("AUTH X-TEST " + B64("good") + "\r\n")), "235");
  out = Send("EHLO c.test\r\n");
  EXPECT_EQ(out.find("AUTH"), std::string::npos) << out;
}

TEST_F(TlsAuthTest, PlaintextAuthOnlyWhenAllowed) {
  config.auth_allowed_plaintext = true;
  Reset();
  std::string out = Send("EHLO c.test\r\n");
  EXPECT_NE(out.find("250-STARTTLS\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("250-AUTH "), std::string::npos) << out;
  EXPECT_EQ(Codes(Send("AUTH X-TEST " + B64("good") + "\r\n")), "235");
}

TEST_F(TlsAuthTest, NothingOfferedWithoutConfig) {
  config.tls_available = false;
  config.auth = false;
  Reset();
  std::string out = Send("EHLO c.test\r\n");
  EXPECT_EQ(out.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(out.find("AUTH"), std::string::npos);
  EXPECT_EQ(Codes(Send("STARTTLS\r\nAUTH PLAIN\r\n")), "500 500");
}

// CVE-2011-0411: commands pipelined after STARTTLS in the same packet must
// never run, neither before nor after the handshake.
TEST_F(TlsAuthTest, StartTlsDiscardsPipelinedInput) {
  Ehlo();
  std::string in = "STARTTLS\r\nRSET\r\nMAIL FROM:<a@x.test>\r\n";
  EXPECT_EQ(session->Feed(in), in.size());
  EXPECT_EQ(Take(), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(session->need(), Need::kStartTls);
  session->TlsStarted("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(Take(), "");
  EXPECT_FALSE(session->InTransaction());
  // RFC 3207 4.2: the client must start again with EHLO.
  EXPECT_EQ(Send("MAIL FROM:<a@x.test>\r\n"),
            "503 5.5.1 Error: send HELO/EHLO first\r\n");
  EXPECT_TRUE(session->client().tls);
}

TEST_F(TlsAuthTest, StartTlsDiscardsPartialLine) {
  Ehlo();
  // The injected command arrives split; its first half came with STARTTLS.
  EXPECT_EQ(session->Feed("STARTTLS\r\nRS"), 12u);
  session->TlsStarted("TLSv1.3", "TLS_AES_128_GCM_SHA256");
  Take();
  EXPECT_EQ(Codes(Send("ET\r\n")), "500");
}

TEST_F(TlsAuthTest, StartTlsInEveryState) {
  Reset();
  EXPECT_EQ(Send("STARTTLS\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  Reset();
  ASSERT_EQ(Codes(Send("HELO c.test\r\n")), "250");
  EXPECT_EQ(Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  Reset();
  Ehlo();
  EXPECT_EQ(Send("STARTTLS now\r\n"), "501 5.5.4 Syntax: STARTTLS\r\n");
  ASSERT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
  EXPECT_EQ(Send("STARTTLS\r\n"),
            "503 5.5.1 Error: MAIL transaction in progress\r\n");
  ASSERT_EQ(Codes(Send("RCPT TO:<b@y.test>\r\n")), "250");
  EXPECT_EQ(Codes(Send("STARTTLS\r\n")), "503");
  Reset();
  Ehlo();
  StartTls();
  EXPECT_EQ(Send("STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
}

TEST_F(TlsAuthTest, TlsForgetsPlaintextAuth) {
  config.auth_allowed_plaintext = true;
  Reset();
  Ehlo();
  ASSERT_EQ(Codes(Send("AUTH X-TEST " + B64("good") + "\r\n")), "235");
  EXPECT_EQ(session->client().auth_user, "u@example.test");
  StartTls();
  EXPECT_EQ(session->client().auth_user, "");
}

TEST_F(TlsAuthTest, ReceivedHeaderNamesTlsVersionAndCipher) {
  Ehlo();
  StartTls();
  ASSERT_EQ(Codes(Send("AUTH X-TEST " + B64("good") + "\r\n")), "235");
  Send("MAIL FROM:<u@example.test>\r\nRCPT TO:<b@y.test>\r\n");
  DataMessage("From: u@example.test\r\n\r\nhi\r\n.\r\n");
  ASSERT_EQ(host->messages.size(), 1u);
  EXPECT_EQ(host->messages[0].substr(0, host->messages[0].find("; Thu")),
            "Received: from client.test ([192.0.2.7])\r\n"
            "\tby localhost (Tern) with ESMTPSA id QID1\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
            "\tfor <b@y.test>");
}

// ---- AUTH (RFC 4954) ----------------------------------------------------

TEST_F(TlsAuthTest, AuthInEveryState) {
  const std::string good = "AUTH X-TEST " + B64("good") + "\r\n";
  Reset();
  EXPECT_EQ(Send(good), "503 5.5.1 Error: send EHLO first\r\n");
  Reset();
  Send("HELO c.test\r\n");
  EXPECT_EQ(Send(good), "503 5.5.1 Error: send EHLO first\r\n");
  Reset();
  Ehlo();
  EXPECT_EQ(Send(good),
            "538 5.7.11 Encryption required for requested authentication "
            "mechanism\r\n");
  StartTls();
  EXPECT_EQ(Send("AUTH\r\n"),
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
  EXPECT_EQ(Send("AUTH X-TEST a b\r\n"),
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
  EXPECT_EQ(Send("AUTH CRAM-MD5\r\n"),
            "504 5.5.4 Unrecognized authentication type\r\n");
  ASSERT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
  EXPECT_EQ(Send(good),
            "503 5.5.1 Error: AUTH not permitted during a mail transaction\r\n");
  Send("RSET\r\n");
  EXPECT_EQ(Send(good), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(Send(good), "503 5.5.1 Error: already authenticated\r\n");
  EXPECT_EQ(host->auth_events,
            std::vector<std::string>{"ok:X-TEST:u@example.test"});
}

TEST_F(TlsAuthTest, ChallengeResponse) {
  Ehlo();
  StartTls();
  EXPECT_EQ(Send("auth x-test\r\n"), "334 " + B64("more?") + "\r\n");
  EXPECT_EQ(Send(B64("hello") + "\r\n"), "334 " + B64("more?") + "\r\n");
  // An empty line is an empty response, not a cancellation.
  EXPECT_EQ(Send("\r\n"), "334 " + B64("more?") + "\r\n");
  EXPECT_EQ(Send(B64("good") + "\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(host->sasl_seen,
            (std::vector<std::string>{"start", "next:hello", "next:", "next:good"}));
  EXPECT_EQ(session->client().auth_user, "u@example.test");
}

TEST_F(TlsAuthTest, StoreFailureIsTemporaryAndNoStrike) {
  Ehlo();
  StartTls();
  // RFC 4954 6: 454 4.7.0 when the server cannot check the credentials now.
  EXPECT_EQ(Send("AUTH X-TEST " + B64("down") + "\r\n"),
            "454 4.7.0 Temporary authentication failure\r\n");
  EXPECT_TRUE(host->auth_events.empty());  // not counted as a failure
  EXPECT_EQ(session->client().auth_user, "");
  EXPECT_EQ(Codes(Send("AUTH X-TEST " + B64("good") + "\r\n")), "235");
}

TEST_F(TlsAuthTest, InitialResponseForms) {
  Ehlo();
  StartTls();
  // RFC 4954 4: "=" is an empty initial response.
  EXPECT_EQ(Codes(Send("AUTH X-TEST =\r\n")), "334");
  EXPECT_EQ(Send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
  EXPECT_EQ(Send("AUTH X-TEST not*base64\r\n"), "501 5.5.2 Invalid base64 data\r\n");
  EXPECT_EQ(host->sasl_seen, std::vector<std::string>{"start:"});
}

TEST_F(TlsAuthTest, CancelAndBadResponses) {
  Ehlo();
  StartTls();
  Send("AUTH X-TEST\r\n");
  EXPECT_EQ(Send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
  // Commands work again after the exchange ended.
  EXPECT_EQ(Codes(Send("NOOP\r\n")), "250");
  Send("AUTH X-TEST\r\n");
  EXPECT_EQ(Send("QUIT!\r\n"), "501 5.5.2 Invalid base64 data\r\n");
  Send("AUTH X-TEST\r\n");
  EXPECT_EQ(Send(B64("junk") + "\r\n"),
            "501 5.5.2 Invalid authentication exchange\r\n");
  Send("AUTH X-TEST\r\n");
  EXPECT_EQ(Send("Zm9v\rYmFy\r\n"), "501 5.5.2 Invalid authentication response\r\n");
  EXPECT_EQ(session->client().auth_user, "");
  EXPECT_TRUE(host->auth_events.empty());
}

// With async_sasl each mechanism step is handed to the connection, and
// pipelined input waits until its result is in.
TEST_F(TlsAuthTest, AsyncSaslStepsWaitForTheConnection) {
  config.async_sasl = true;
  Reset();
  Ehlo();
  StartTls();
  std::string in = "AUTH X-TEST\r\n" + B64("good") + "\r\nNOOP\r\n";
  size_t used = session->Feed(in);
  EXPECT_EQ(session->need(), Need::kSaslStep);
  EXPECT_EQ(Take(), "");
  EXPECT_TRUE(host->sasl_seen.empty());  // nothing ran inside Feed
  session->SaslStepDone(session->RunSaslStep());
  EXPECT_EQ(session->need(), Need::kInput);
  EXPECT_EQ(Take(), "334 " + B64("more?") + "\r\n");
  std::string rest = in.substr(used);
  used = session->Feed(rest);
  EXPECT_EQ(session->need(), Need::kSaslStep);
  EXPECT_EQ(rest.substr(used), "NOOP\r\n");
  session->SaslStepDone(session->RunSaslStep());
  EXPECT_EQ(Take(), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(Send(rest.substr(used)), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(host->sasl_seen, (std::vector<std::string>{"start", "next:good"}));
  EXPECT_EQ(session->client().auth_user, "u@example.test");
  // A stray result when no step is pending changes nothing.
  session->SaslStepDone(auth::SaslStep{auth::SaslStep::Kind::kSuccess, {}, "x"});
  EXPECT_EQ(session->client().auth_user, "u@example.test");
  EXPECT_EQ(Take(), "");
}

TEST_F(TlsAuthTest, FailureDelaysTheReply) {
  host->failure_delay = std::chrono::milliseconds(750);
  Ehlo();
  StartTls();
  std::string in = "AUTH X-TEST " + B64("bad") + "\r\nNOOP\r\n";
  size_t used = session->Feed(in);
  EXPECT_EQ(session->need(), Need::kDelay);
  EXPECT_EQ(session->delay(), std::chrono::milliseconds(750));
  EXPECT_EQ(Take(), "535 5.7.8 Authentication credentials invalid\r\n");
  // The pipelined NOOP waits for the delay.
  EXPECT_EQ(in.substr(used), "NOOP\r\n");
  session->DelayDone();
  EXPECT_EQ(session->need(), Need::kInput);
  EXPECT_EQ(Send(in.substr(used)), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(host->auth_events, std::vector<std::string>{"fail:X-TEST"});
  // No delay asked: no pause.
  host->failure_delay = std::chrono::milliseconds(0);
  EXPECT_EQ(Codes(Send("AUTH X-TEST " + B64("bad") + "\r\n")), "535");
  EXPECT_EQ(session->need(), Need::kInput);
}

TEST_F(TlsAuthTest, LockedOutClientIsDisconnected) {
  Ehlo();
  StartTls();
  host->blocked = true;
  EXPECT_EQ(Send("AUTH X-TEST " + B64("good") + "\r\n"),
            "421 4.7.0 localhost Too many failed authentications, try again "
            "later\r\n");
  EXPECT_EQ(session->need(), Need::kClose);
  EXPECT_TRUE(host->sasl_seen.empty());
}

TEST_F(TlsAuthTest, SuccessWithServerData) {
  Ehlo();
  StartTls();
  // RFC 4954 4: final server data goes in a 334; the client answers with
  // an empty line and only then gets 235.
  EXPECT_EQ(Send("AUTH X-TEST " + B64("final") + "\r\n"),
            "334 " + B64("v=proof") + "\r\n");
  EXPECT_EQ(session->client().auth_user, "");
  EXPECT_EQ(Send("\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(session->client().auth_user, "u@example.test");
  Reset();
  Ehlo();
  StartTls();
  Send("AUTH X-TEST " + B64("final") + "\r\n");
  EXPECT_EQ(Send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
  EXPECT_EQ(session->client().auth_user, "");
}

TEST_F(TlsAuthTest, SaslLineLimit) {
  Ehlo();
  StartTls();
  // RFC 4954 4: 12288 octets per line, CRLF included, for AUTH lines...
  std::string longest = "AUTH X-TEST " + std::string(12288 - 14, 'A');
  EXPECT_EQ(Codes(Send(longest + "\r\n")), "501");  // bad base64, not too long
  EXPECT_EQ(Send(longest + "A\r\n"), "500 5.5.2 Line too long\r\n");
  // ...and responses.
  Send("AUTH X-TEST\r\n");
  EXPECT_EQ(Codes(Send(std::string(12286, 'A') + "\r\n")), "501");
  Send("AUTH X-TEST\r\n");
  EXPECT_EQ(Send(std::string(12287, 'A') + "\r\n"),
            "500 5.5.6 Authentication exchange line is too long\r\n");
  // Other commands keep the RFC 5321 limit.
  EXPECT_EQ(Send("NOOP " + std::string(600, 'x') + "\r\n"),
            "500 5.5.2 Line too long\r\n");
}

TEST_F(TlsAuthTest, SubmissionNeedsAuthBeforeMail) {
  config.submission = true;
  Reset();
  Ehlo();
  EXPECT_EQ(Send("MAIL FROM:<u@example.test>\r\n"),
            "530 5.7.0 Authentication required\r\n");
  StartTls();
  EXPECT_EQ(Codes(Send("MAIL FROM:<u@example.test>\r\n")), "530");
  ASSERT_EQ(Codes(Send("AUTH X-TEST " + B64("good") + "\r\n")), "235");
  EXPECT_EQ(Send("MAIL FROM:<u@example.test>\r\n"), "250 2.1.0 Ok\r\n");
}

// ---- Sender identity ----------------------------------------------------

TEST_F(SessionTest, MailFromVerdicts) {
  host->sender_verdicts["boss@example.test"] = SenderVerdict::Kind::kNotOwned;
  host->sender_verdicts["u@example.test"] = SenderVerdict::Kind::kLocalSpoof;
  ClientInfo client = DefaultClient();
  client.auth_user = "me@example.test";
  Reset(client);
  host->sender_verdicts["boss@example.test"] = SenderVerdict::Kind::kNotOwned;
  host->sender_verdicts["u@example.test"] = SenderVerdict::Kind::kLocalSpoof;
  Ehlo();
  EXPECT_EQ(Send("MAIL FROM:<boss@example.test>\r\n"),
            "553 5.7.1 <boss@example.test>: Sender address rejected: not owned "
            "by user me@example.test\r\n");
  EXPECT_EQ(Send("MAIL FROM:<u@example.test>\r\n"),
            "550 5.7.1 <u@example.test>: Sender address rejected: local domain "
            "needs authentication\r\n");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_EQ(Send("MAIL FROM:<me@example.test>\r\n"), "250 2.1.0 Ok\r\n");
}

class HeaderSenderTest : public SessionTest {
 protected:
  HeaderSenderTest() {
    ClientInfo client = DefaultClient();
    client.tls = true;
    client.auth_user = "u@example.test";
    Reset(client);
  }
  // Sends one message with `headers`; returns the final reply.
  std::string Message(const std::string& headers, size_t chunk = 0) {
    Send("MAIL FROM:<u@example.test>\r\nRCPT TO:<b@y.test>\r\n");
    std::string content = headers + "\r\nbody\r\n.\r\n";
    if (chunk == 0) return DataMessage(content);
    EXPECT_EQ(Codes(Send("DATA\r\n")), "354");
    return Run(content, chunk);
  }
};

TEST_F(HeaderSenderTest, OwnedFromIsAccepted) {
  Ehlo();
  EXPECT_EQ(Codes(Message("From: U <u@example.test>\r\nTo: b@y.test\r\n")), "250");
  EXPECT_EQ(host->header_checks, std::vector<std::string>{"From:u@example.test"});
  // A message without From: names nobody and is not refused here.
  EXPECT_EQ(Codes(Message("Subject: no from\r\n")), "250");
}

TEST_F(HeaderSenderTest, ForgedFromIsRefused) {
  Ehlo();
  EXPECT_EQ(Message("From: Boss <boss@example.test>\r\n"),
            "550 5.7.1 From: address <boss@example.test> not owned by user "
            "u@example.test\r\n");
  EXPECT_EQ(host->aborts, 1);
  EXPECT_FALSE(session->InTransaction());
  // One foreign mailbox among several is enough.
  EXPECT_EQ(Codes(Message("From: u@example.test, other@remote.test\r\n")), "550");
  // The display name may look like an address; the addr-spec counts.
  EXPECT_EQ(Codes(Message("From: \"boss@example.test\" <u@example.test>\r\n")),
            "250");
  EXPECT_EQ(Codes(Message("From: \"u@example.test\" <boss@example.test>\r\n")),
            "550");
  // An encoded word cannot supply the address.
  EXPECT_EQ(Codes(Message("From: =?utf-8?q?u=40example.test?=\r\n")), "550");
  EXPECT_EQ(Codes(Message(
                "From: =?utf-8?b?PHVAZXhhbXBsZS50ZXN0Pg==?= <boss@example.test>\r\n")),
            "550");
  // Obsolete "From :" and folding do not hide the field.
  EXPECT_EQ(Codes(Message("from : u@example.test,\r\n boss@example.test\r\n")),
            "550");
  // Nor does a second From: field.
  EXPECT_EQ(Codes(Message("From: u@example.test\r\nFrom: boss@example.test\r\n")),
            "550");
}

TEST_F(HeaderSenderTest, SenderField) {
  Ehlo();
  EXPECT_EQ(Message("From: u@example.test\r\nSender: boss@example.test\r\n"),
            "550 5.7.1 Sender: address <boss@example.test> not owned by user "
            "u@example.test\r\n");
  EXPECT_EQ(Codes(Message("From: u@example.test\r\nSender: <u@example.test>\r\n")),
            "250");
  // RFC 5322 3.6.2: Sender: holds exactly one mailbox.
  EXPECT_EQ(Message("Sender: u@example.test, u@example.test\r\n"),
            "550 5.7.1 Cannot verify the Sender: header field (RFC 5322 3.6.2)\r\n");
}

TEST_F(HeaderSenderTest, UnparseableOrHugeFromIsRefused) {
  Ehlo();
  EXPECT_EQ(Message("From: Just A Name\r\n"),
            "550 5.7.1 Cannot verify the From: header field (RFC 5322 3.6.2)\r\n");
  EXPECT_EQ(Codes(Message("From:\r\n")), "550");
  std::string huge = "From: u@example.test";
  while (huge.size() < 20000) huge += ",\r\n u@example.test";
  EXPECT_EQ(Message(huge + "\r\n"),
            "550 5.7.1 From:/Sender: header fields too large to check\r\n");
}

TEST_F(HeaderSenderTest, FieldsInTheBodyDoNotCount) {
  Ehlo();
  EXPECT_EQ(Codes(Message("From: u@example.test\r\n\r\nFrom: boss@example.test\r\n")),
            "250");
  // Nor does a similarly named field.
  EXPECT_EQ(Codes(Message("From: u@example.test\r\nFromage: boss@example.test\r\n"
                          "Resent-From: boss@example.test\r\n")),
            "250");
}

TEST_F(HeaderSenderTest, ChunkingDoesNotMatter) {
  Ehlo();
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}}) {
    std::string out =
        Message("Subject: x\r\nFrom: u@example.test,\r\n\tBoss <boss@example.test>\r\n",
                chunk);
    EXPECT_EQ(Codes(out), "550") << chunk;
    out = Message(".From: u@example.test\r\nFrom: U <u@example.test>\r\n", chunk);
    EXPECT_EQ(Codes(out), "250") << chunk;
  }
}

TEST_F(SessionTest, UnauthenticatedHeadersAreNotChecked) {
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  EXPECT_EQ(Codes(DataMessage("From: boss@example.test\r\n\r\nx\r\n.\r\n")), "250");
  EXPECT_TRUE(host->header_checks.empty());
}

TEST_F(HeaderSenderTest, BdatIsCheckedToo) {
  Ehlo();
  Send("MAIL FROM:<u@example.test>\r\nRCPT TO:<b@y.test>\r\n");
  std::string content = "From: boss@example.test\r\n\r\nx\r\n";
  EXPECT_EQ(Codes(Send("BDAT " + std::to_string(content.size()) + " LAST\r\n" +
                       content)),
            "550");
}

// SPF at MAIL time: the 250 waits for the connection's check, pipelined
// commands wait behind it, and a refusal ends the transaction.
TEST_F(SessionTest, SenderCheckHoldsTheMailReply) {
  config.sender_check = true;
  Reset();
  Ehlo();
  std::string in = "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n";
  size_t used = session->Feed(in);
  EXPECT_LT(used, in.size());  // stops after MAIL
  EXPECT_EQ(session->need(), Need::kSenderCheck);
  EXPECT_EQ(Take(), "");
  EXPECT_TRUE(session->InTransaction());
  EXPECT_EQ(session->transaction().mail_from.ToString(), "a@x.test");
  session->SenderChecked("");
  EXPECT_EQ(Codes(Take()), "250");
  EXPECT_EQ(Codes(Send(in.substr(used))), "250");

  Reset();
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\n");
  ASSERT_EQ(session->need(), Need::kSenderCheck);
  session->SenderChecked("550 5.7.23 SPF validation failed");
  EXPECT_EQ(Take(), "550 5.7.23 SPF validation failed\r\n");
  EXPECT_FALSE(session->InTransaction());
  EXPECT_EQ(Codes(Send("RCPT TO:<b@y.test>\r\n")), "503");
  EXPECT_EQ(Codes(Send("MAIL FROM:<c@x.test>\r\n")), "");
  EXPECT_EQ(session->need(), Need::kSenderCheck);
}

// Pregreet: the 220 waits for the connection, which says whether the
// client talked first; then a 554 instead of the greeting ends it.
TEST_F(SessionTest, PregreetHoldsTheGreeting) {
  config.pregreet_wait = std::chrono::milliseconds(300);
  Reset();
  session->Greet();
  EXPECT_EQ(session->need(), Need::kGreetWait);
  EXPECT_EQ(Take(), "");
  session->GreetWaitDone(false);
  EXPECT_EQ(Codes(Take()), "220");
  EXPECT_EQ(Codes(Send("EHLO client.test\r\n")), "250");

  Reset();
  session->Greet();
  session->GreetWaitDone(true);
  EXPECT_EQ(Take().rfind("554 5.5.1 ", 0), 0u);
  EXPECT_EQ(session->need(), Need::kClose);
  session->GreetWaitDone(false);  // late: nothing more
  EXPECT_EQ(Take(), "");
}

// DNS lists and greylisting at RCPT: the 250 waits for the connection's
// check, pipelined commands wait behind it, and a refused recipient leaves
// the transaction and the recipients before it as they were.
TEST_F(SessionTest, RcptCheckHoldsTheRcptReply) {
  config.rcpt_check = true;
  Reset();
  Ehlo();
  std::string in = "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n";
  size_t used = session->Feed(in);
  EXPECT_EQ(Codes(Take()), "250");  // MAIL
  EXPECT_EQ(session->need(), Need::kRcptCheck);
  EXPECT_EQ(session->pending_recipient().ToString(), "b@y.test");
  EXPECT_TRUE(session->InTransaction());
  session->RcptChecked("");
  EXPECT_EQ(Take(), "250 2.1.5 Ok\r\n");
  used += session->Feed(in.substr(used));
  EXPECT_EQ(used, in.size());
  ASSERT_EQ(session->need(), Need::kRcptCheck);
  EXPECT_EQ(session->pending_recipient().ToString(), "c@y.test");
  session->RcptChecked("451 4.7.1 <c@y.test>: Greylisted, try again in 300 seconds");
  EXPECT_EQ(Take(), "451 4.7.1 <c@y.test>: Greylisted, try again in 300 seconds\r\n");
  EXPECT_EQ(session->need(), Need::kInput);
  ASSERT_EQ(session->transaction().rcpts.size(), 1u);
  EXPECT_EQ(session->transaction().rcpts[0].ToString(), "b@y.test");
  EXPECT_EQ(Codes(Send("DATA\r\n")), "354");

  // Refused as the first recipient: DATA still needs one.
  Reset();
  Ehlo();
  Send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  ASSERT_EQ(session->need(), Need::kRcptCheck);
  Take();
  session->RcptChecked("554 5.7.1 Service unavailable; client [192.0.2.1] blocked using bl.test");
  EXPECT_EQ(Codes(Take()), "554");
  EXPECT_TRUE(session->InTransaction());
  EXPECT_EQ(Codes(Send("DATA\r\n")), "503");  // RFC 5321 3.3: no valid recipients
  // A policy refusal never reaches the check.
  host->verdicts["nobody"] = RcptVerdict::Kind::kRelayDenied;
  EXPECT_EQ(Codes(Send("RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<nobody@y.test>\r\n")),
            "250 250 554");
  EXPECT_EQ(session->need(), Need::kInput);
}

// A DMARC reject after the final dot: the refusal replaces the 250 and the
// message is dropped.
TEST_F(SessionTest, CommitRefusedDropsTheMessage) {
  MailRcpt();
  EXPECT_EQ(Codes(Send("DATA\r\n")), "354");
  Send("Subject: x\r\n\r\nbody\r\n.\r\n");
  ASSERT_EQ(session->need(), Need::kCommit);
  int aborts = host->aborts;
  session->CommitRefused("550 5.7.1 Email rejected per DMARC policy for x.test");
  EXPECT_EQ(Take(), "550 5.7.1 Email rejected per DMARC policy for x.test\r\n");
  EXPECT_EQ(host->aborts, aborts + 1);
  EXPECT_FALSE(session->InTransaction());
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@x.test>\r\n")), "250");
}

// SessionHost::Refused hears each refusal of a sender, recipient or
// message with what it refused (the message trace); other errors, such as
// unknown commands, are not refusals of mail.
TEST_F(SessionTest, RefusalsReachTheHost) {
  host->verdicts["nobody"] = RcptVerdict::Kind::kUnknownUser;
  Send("EHLO client.example\r\n");
  Send("FOO\r\n");
  EXPECT_EQ(Codes(Send("MAIL FROM:<a@example.org>\r\n")), "250");
  EXPECT_EQ(Codes(Send("RCPT TO:<nobody@example.test>\r\n")), "550");
  EXPECT_EQ(Codes(Send("RCPT TO:<u@example.test>\r\n")), "250");
  EXPECT_EQ(Codes(Send("MAIL FROM:<b@example.org>\r\n")), "503");
  ASSERT_EQ(host->refusals.size(), 2u);
  EXPECT_EQ(host->refusals[0], "rcpt from=a@example.org rcpts=nobody@example.test, id= 550");
  EXPECT_EQ(host->refusals[1], "mail from= rcpts= id= 503");
  // A message refused at its end names its recipients and queue id.
  EXPECT_EQ(Codes(Send("DATA\r\n")), "354");
  std::string big(config.text_line_limit + 10, 'x');
  EXPECT_EQ(Codes(Send(big + "\r\n.\r\n")), "554");
  ASSERT_EQ(host->refusals.size(), 3u);
  EXPECT_EQ(host->refusals[2], "data from=a@example.org rcpts=u@example.test, id=QID1 554");
}

}  // namespace
}  // namespace tern::smtp
