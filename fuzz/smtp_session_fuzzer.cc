// Fuzzes the SMTP server session (smtp/protocol/session.h) with arbitrary
// client bytes, cut into Feed() chunks at input-chosen places, against a
// fake host; checks reply framing, consumption and message-size invariants.
//
// Input: 5 header bytes, then the client's bytes.
//   [0] config bits: 1 tls_available, 2 auth, 4 auth_allowed_plaintext,
//       8 submission, 16 vrfy+expn, 32 implicit TLS, 64 small limits,
//       128 trusted client (relays anywhere)
//   [1] host bits: 1 commit fails, 2 ...with no space, 4 queue write error,
//       8 BeginMessage fails, 16 AUTH failure delay, 32 lockout after one
//       failure, 64 end with Timeout(), 128 end with Shutdown()
//   [2] chunk seed, [3] max chunk length (0: one Feed for everything)
//   [4] more config bits: 1 async_sasl (SASL steps via Need::kSaslStep),
//       2 sender_check (MAIL waits for Need::kSenderCheck; odd messages
//       refused)
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "auth/sasl.h"
#include "common/strings.h"
#include "fake_credentials.h"
#include "fuzz_common.h"
#include "smtp/protocol/session.h"

namespace {

using tern::fuzz::OnlyCrlfLineEnds;
using tern::fuzz::Printable;
using namespace tern::smtp;

// Our Received: header: two to four lines of bounded parts.
constexpr size_t kReceivedAllowance = 2048;

class FakeHost : public SessionHost {
 public:
  FakeHost(uint8_t bits, const SessionConfig& config)
      : bits_(bits), config_(config) {}

  RcptVerdict CheckRecipient(const Transaction& t,
                             const Mailbox& rcpt) override {
    FUZZ_CHECK(!rcpt.local.empty(), "empty local part reached policy");
    FUZZ_CHECK(!rcpt.domain.empty() || rcpt.local == "postmaster",
               "domainless recipient other than postmaster: %s",
               Printable(rcpt.local).c_str());
    RcptVerdict v;
    if (tern::IEquals(rcpt.domain, "example.test") || rcpt.domain.empty()) {
      if (tern::IEquals(rcpt.local, "unknown")) {
        v.kind = RcptVerdict::Kind::kUnknownUser;
      } else if (tern::IEquals(rcpt.local, "temp")) {
        v.kind = RcptVerdict::Kind::kTempFail;
      }
    } else if (!trusted) {
      v.kind = RcptVerdict::Kind::kRelayDenied;
    }
    return v;
  }

  std::string BeginMessage(const Transaction& t) override {
    FUZZ_CHECK(!open, "BeginMessage while a message is open");
    FUZZ_CHECK(!t.rcpts.empty(), "BeginMessage without recipients");
    FUZZ_CHECK(t.rcpts.size() == t.rcpt_params.size(),
               "rcpt_params not parallel to rcpts");
    FUZZ_CHECK(t.rcpts.size() <= config_.max_recipients,
               "%zu recipients accepted, limit %u", t.rcpts.size(),
               config_.max_recipients);
    if (bits_ & 8) return "";
    open = true;
    received.clear();
    body.clear();
    calls = 0;
    return "Q" + std::to_string(++messages);
  }

  bool MessageData(std::string_view data) override {
    FUZZ_CHECK(open, "MessageData without an open message");
    if (calls++ == 0) {
      received.assign(data);
      FUZZ_CHECK(received.size() <= kReceivedAllowance,
                 "Received: header of %zu octets", received.size());
    } else {
      body.append(data);
      FUZZ_CHECK(body.size() <= config_.max_message_size,
                 "stored %zu content octets, max_message_size %llu",
                 body.size(),
                 static_cast<unsigned long long>(config_.max_message_size));
    }
    // A queue write error after the first few octets.
    return !((bits_ & 4) && body.size() > 16);
  }

  void AbortMessage() override {
    FUZZ_CHECK(open, "AbortMessage without an open message");
    open = false;
  }

  std::string Now() override { return "Thu, 1 Jan 2026 00:00:00 +0000"; }

  SenderVerdict CheckMailFrom(const Mailbox& from) override {
    SenderVerdict v;
    if (tern::IEquals(from.local, "notmine")) {
      v.kind = SenderVerdict::Kind::kNotOwned;
    } else if (tern::IEquals(from.local, "spoof")) {
      v.kind = SenderVerdict::Kind::kLocalSpoof;
    }
    return v;
  }

  bool HeaderSenderAllowed(const std::string& address,
                           std::string_view field) override {
    FUZZ_CHECK(field == "From" || field == "Sender", "field %s",
               std::string(field).c_str());
    return tern::IEquals(address, tern::fuzz::kAccount);
  }

  std::unique_ptr<tern::auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    // A fixed server nonce keeps SCRAM runs reproducible.
    if (tern::IEquals(name, "SCRAM-SHA-256")) {
      return tern::auth::MakeScramSha256ForTest(creds, "fuzznonce");
    }
    return tern::auth::MakeMechanism(name, creds);
  }
  bool AuthBlocked() override { return (bits_ & 32) && failures > 0; }
  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    ++failures;
    return std::chrono::milliseconds((bits_ & 16) ? 250 : 0);
  }
  void AuthSucceeded(std::string_view mechanism,
                     const std::string& user) override {
    FUZZ_CHECK(user == tern::fuzz::kAccount, "AUTH succeeded as '%s'",
               Printable(user).c_str());
    FUZZ_CHECK(creds.granted > 0 || tern::IEquals(mechanism, "SCRAM-SHA-256"),
               "AUTH %s succeeded without a password check",
               std::string(mechanism).c_str());
  }

  bool open = false;
  bool trusted = false;
  int calls = 0;
  int messages = 0;
  int failures = 0;
  std::string received;
  std::string body;
  tern::fuzz::FakeCredentials creds;

 private:
  uint8_t bits_;
  const SessionConfig& config_;
};

// Checks and drains the replies: whole CRLF lines, "NNN " or "NNN-", one
// code per multi-line reply, no control characters, RFC 5321 4.5.3.1.5
// length (334 challenges may be longer: RFC 4954 4 allows 12288).
struct ReplyChecker {
  int continuing = 0;  // code of an unfinished multi-line reply

  void Drain(std::string& out) {
    std::string_view s = out;
    while (!s.empty()) {
      size_t eol = s.find("\r\n");
      FUZZ_CHECK(eol != std::string_view::npos, "unterminated reply: %s",
                 Printable(s).c_str());
      std::string_view line = s.substr(0, eol);
      s.remove_prefix(eol + 2);
      FUZZ_CHECK(line.size() >= 4 && line[0] >= '2' && line[0] <= '5' &&
                     IsDigit(line[1]) && IsDigit(line[2]) &&
                     (line[3] == ' ' || line[3] == '-'),
                 "malformed reply line: %s", Printable(line).c_str());
      int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
      FUZZ_CHECK(continuing == 0 || continuing == code,
                 "multi-line reply %d continued by %s", continuing,
                 Printable(line).c_str());
      continuing = line[3] == '-' ? code : 0;
      size_t limit = code == 334 ? 12288 : 512;
      FUZZ_CHECK(line.size() + 2 <= limit, "reply line of %zu octets: %s",
                 line.size() + 2, Printable(line).c_str());
      for (char c : line) {
        unsigned char u = static_cast<unsigned char>(c);
        FUZZ_CHECK(u >= 0x20 && u != 0x7f, "control octet in reply: %s",
                   Printable(line).c_str());
      }
    }
    out.clear();
  }
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
};

// The content handed over for commit: CRLF lines within the line limit,
// and no more Received: fields in the header section than allowed.
void CheckCommitted(const FakeHost& host, const SessionConfig& config) {
  FUZZ_CHECK(host.open, "commit requested without an open message");
  FUZZ_CHECK(
      host.received.rfind("Received: from ", 0) == 0 &&
          host.received.size() >= 2 &&
          host.received.compare(host.received.size() - 2, 2, "\r\n") == 0 &&
          OnlyCrlfLineEnds(host.received),
      "bad Received: header: %s", Printable(host.received).c_str());
  const std::string& b = host.body;
  FUZZ_CHECK(OnlyCrlfLineEnds(b), "bare CR or LF in committed content: %s",
             Printable(b).c_str());
  FUZZ_CHECK(b.empty() || b.compare(b.size() - 2, 2, "\r\n") == 0,
             "committed content does not end with CRLF: %s",
             Printable(b).c_str());
  size_t pos = 0;
  bool headers = true;
  uint32_t hops = 0;
  while (pos < b.size()) {
    size_t eol = b.find("\r\n", pos);
    std::string_view line(b.data() + pos, eol - pos);
    FUZZ_CHECK(line.size() + 2 <= config.text_line_limit,
               "committed line of %zu octets, limit %u", line.size() + 2,
               config.text_line_limit);
    if (headers) {
      if (line.empty()) {
        headers = false;
      } else if (line.size() >= 9 &&
                 tern::IEquals(line.substr(0, 9), "received:")) {
        ++hops;
      }
    }
    pos = eol + 2;
  }
  FUZZ_CHECK(hops <= config.max_received_headers,
             "%u Received: fields committed, limit %u", hops,
             config.max_received_headers);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 5);
  uint8_t cbits = in.byte(0), hbits = in.byte(1);

  SessionConfig config;
  config.hostname = "mx.example.test";
  config.tls_available = cbits & 1;
  config.auth = cbits & 2;
  config.auth_allowed_plaintext = cbits & 4;
  config.submission = cbits & 8;
  config.vrfy = config.expn = cbits & 16;
  config.async_sasl = in.byte(4) & 1;
  config.sender_check = in.byte(4) & 2;
  if (cbits & 64) {
    config.max_message_size = 300;
    config.max_recipients = 3;
    config.max_errors = 0;  // unlimited
    config.command_line_limit = 40;
    config.text_line_limit = 30;
    config.max_received_headers = 2;
  }
  ClientInfo client;
  client.ip = (hbits & 1) ? "2001:db8::1" : "192.0.2.7";
  client.port = 40000;
  client.tls = cbits & 32;
  client.trusted = cbits & 128;

  FakeHost host(hbits, config);
  host.trusted = client.trusted;
  ReplyChecker replies;
  {
    Session s(config, host, client);
    s.Greet();
    replies.Drain(s.output());
    tern::fuzz::Chunker chunks(in.body(), in.byte(2), in.byte(3));
    bool closed = false;
    while (!closed && !chunks.done()) {
      std::string_view chunk = chunks.Next();
      int rounds = 0;
      while (!chunk.empty()) {
        FUZZ_CHECK(++rounds < 100000, "no progress feeding %zu octets",
                   chunk.size());
        FUZZ_CHECK(s.need() == Need::kInput, "fed while need() is %d",
                   static_cast<int>(s.need()));
        size_t used = s.Feed(chunk);
        FUZZ_CHECK(used <= chunk.size(), "consumed %zu of %zu", used,
                   chunk.size());
        FUZZ_CHECK(used == chunk.size() || s.need() != Need::kInput,
                   "stopped at %zu of %zu while still wanting input", used,
                   chunk.size());
        chunk.remove_prefix(used);
        if (host.open) {
          FUZZ_CHECK(s.InTransaction(), "message open outside a transaction");
        }
        // One request may lead to another (a failed SASL step asks for a
        // delay), so act until the session wants input or is done.
        for (int acts = 0; s.need() != Need::kInput && s.need() != Need::kClose;
             ++acts) {
          FUZZ_CHECK(acts < 10, "requests do not settle: need %d",
                     static_cast<int>(s.need()));
          switch (s.need()) {
            case Need::kInput:
              break;
            case Need::kCommit: {
              CheckCommitted(host, config);
              bool ok = !(hbits & 1) || host.messages % 2 == 0;
              if (ok) host.open = false;  // durable: the session forgets it
              s.Committed(ok, (hbits & 2) != 0);
              FUZZ_CHECK(s.need() != Need::kCommit,
                         "still kCommit after Committed");
              break;
            }
            case Need::kStartTls:
              FUZZ_CHECK(chunk.empty(), "input after STARTTLS was kept");
              replies.Drain(s.output());
              s.TlsStarted("TLSv1.3", "TLS_AES_128_GCM_SHA256");
              FUZZ_CHECK(!s.InTransaction(), "transaction survived STARTTLS");
              break;
            case Need::kDelay:
              s.DelayDone();
              break;
            case Need::kSenderCheck:
              // The host refuses every other sender (an SPF reject).
              FUZZ_CHECK(config.sender_check, "kSenderCheck without sender_check");
              FUZZ_CHECK(s.InTransaction(), "sender check outside a transaction");
              s.SenderChecked(host.messages % 2 == 1
                                  ? "550 5.7.23 SPF validation failed"
                                  : "");
              break;
            case Need::kSaslStep: {
              FUZZ_CHECK(config.async_sasl, "kSaslStep without async_sasl");
              tern::auth::SaslStep step = s.RunSaslStep();
              s.SaslStepDone(step);
              break;
            }
            case Need::kClose:
              break;
          }
        }
        // Acting on a request may end the session too (a failed commit
        // can be the error that reaches max_errors).
        if (s.need() == Need::kClose) {
          closed = true;
          chunk = {};
        }
        replies.Drain(s.output());
      }
    }
    if (!closed && (hbits & 64)) s.Timeout();
    if (!closed && (hbits & 128)) s.Shutdown();
    if (hbits & 192) {
      FUZZ_CHECK(s.need() == Need::kClose, "Timeout/Shutdown did not close");
    }
    replies.Drain(s.output());
    FUZZ_CHECK(replies.continuing == 0,
               "session ended inside a multi-line reply");
  }
  FUZZ_CHECK(!host.open, "message neither committed nor aborted");
  return 0;
}
