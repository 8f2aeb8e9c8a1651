// The sans-I/O SMTP client: a state machine that takes replies and events
// (TLS up, body sent) and produces commands and requests (start TLS, send
// the body). The coroutine in delivery/ feeds it; unit tests feed it
// scripted replies. RFC 5321 with EHLO extensions: PIPELINING (RFC 2920),
// SIZE (1870), 8BITMIME (6152), SMTPUTF8 (6531), DSN (3461), CHUNKING
// (3030), STARTTLS (3207), AUTH (4954), REQUIRETLS (8689).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/client/reply.h"

namespace tern::smtp::client {

enum class TlsPolicy { kNone, kOpportunistic, kRequired };

struct Capabilities {
  bool esmtp = false;
  bool pipelining = false;
  bool starttls = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool chunking = false;
  bool requiretls = false;  // RFC 8689 3
  bool size = false;
  uint64_t size_limit = 0;        // 0: none announced
  std::vector<std::string> auth;  // mechanism names, upper case
};

// Reads the keywords of an EHLO reply (RFC 5321 4.1.1.1: first line is the
// greeting, each further line one keyword with parameters).
Capabilities ParseEhlo(const Reply& reply);

struct ClientOptions {
  std::string helo_name = "localhost";
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::string auth_user;  // empty: no AUTH
  std::string auth_password;
};

struct TxnRecipient {
  std::string address;
  std::string notify;  // RFC 3461 NOTIFY value, empty when not given
  std::string orcpt;   // RFC 3461 ORCPT as received ("rfc822;xtext")
};

struct TxnRequest {
  std::string sender;  // empty: null sender
  std::vector<TxnRecipient> rcpts;
  uint64_t size = 0;
  bool body_8bitmime = false;  // received with BODY=8BITMIME
  bool has_8bit = false;       // the bytes really contain octets > 127
  bool smtputf8 = false;
  std::string ret;    // RFC 3461 RET
  std::string envid;  // RFC 3461 ENVID, xtext as received
  // RFC 8689: sent only on a TLS session to a peer offering REQUIRETLS,
  // with the MAIL parameter. Whether the peer was authenticated well
  // enough (DANE, MTA-STS) is the caller's check.
  bool requiretls = false;
  // Why the 8-bit message could not be converted to 7-bit for a peer
  // without 8BITMIME (smtp/client/downgrade.h); only for the refusal text.
  std::string downgrade_error;
};

struct TxnResult {
  // Set when nothing was sent because the peer cannot take the message
  // (SIZE, 8BITMIME, SMTPUTF8, REQUIRETLS): a permanent local reply.
  std::optional<Reply> refused;
  Reply mail;
  std::vector<Reply> rcpt;  // per recipient; code 0 when none came
  Reply final_reply;        // after the data; code 0 when not reached
  bool dsn_passed = false;  // NOTIFY/ORCPT went to the peer (RFC 3461 4.1)

  // What happened to recipient i: accepted and delivered (positive), or
  // the reply that refused it.
  Reply For(size_t i) const;
};

class ClientSession {
 public:
  enum class Need {
    kReply,     // read and Feed() more input
    kStartTls,  // do the TLS handshake, then call TlsStarted()
    kBody,      // send the message (see use_bdat()), then call BodySent()
    kReady,     // idle: StartTransaction() or Quit()
    kResult,    // a transaction finished: TakeResult()
    kClosed,    // done (failure() set when it ended badly)
  };
  // Which RFC 5321 4.5.3.2 timeout applies to the current wait.
  enum class Phase { kGreeting, kCommand, kDataInit, kBody, kFinal };

  explicit ClientSession(ClientOptions options);

  // Bytes the I/O layer must write (then ClearOutput()).
  const std::string& output() const { return output_; }
  void ClearOutput() { output_.clear(); }
  Need need() const { return need_; }
  Phase phase() const;

  // Input from the peer. Returns false on a protocol error (the session is
  // then closed with failure() set).
  bool Feed(std::string_view data);
  // The connection ended (EOF, reset, timeout).
  void ConnectionLost(const std::string& why);
  void TlsStarted(bool ok, const std::string& why);
  void BodySent();

  void StartTransaction(TxnRequest request);
  TxnResult TakeResult();
  void Quit();

  const Capabilities& capabilities() const { return caps_; }
  bool tls_active() const { return tls_active_; }
  bool use_bdat() const { return caps_.chunking; }
  // Why the session ended early; its code says what to do next (4xx: try
  // the next host / later; 5xx: permanent for this destination).
  const std::optional<Reply>& failure() const { return failure_; }
  const std::string& peer_greeting() const { return greeting_; }
  // The first word of the greeting and of the last EHLO (or HELO) reply:
  // the names the peer gives itself (RFC 5321 4.2, 4.1.1.1), for loop
  // detection.
  const std::string& peer_greeting_name() const { return greeting_name_; }
  const std::string& peer_ehlo_name() const { return ehlo_name_; }
  // Complete replies taken so far: the I/O layer times each wait for a
  // reply from the last one, not from the last octet read (RFC 5321
  // 4.5.3.2), so a peer that trickles an endless reply cannot hold on.
  uint64_t replies() const { return replies_; }

 private:
  enum class State {
    kGreeting, kEhlo, kHelo, kStartTls, kTlsHandshake, kAuth, kAuthLogin1,
    kAuthLogin2, kReady, kTxn, kBody, kFinal, kResult, kRset, kQuit, kClosed
  };
  enum class Expect { kMail, kRcpt, kData, kDot };

  void OnReply(const Reply& reply);
  void OnTxnReply(const Reply& reply);
  void AfterEhlo();
  void StartAuth();
  void Send(std::string line);
  void Fail(Reply reply);
  void Abort(Reply reply);  // QUIT, then Fail
  void AuthFailed(const Reply& reply);
  void SendNextUnpipelined();
  void FinishTxn();
  bool AnyRcptAccepted() const;
  std::string MailCommand() const;
  std::string RcptCommand(const TxnRecipient& r) const;

  ClientOptions options_;
  State state_ = State::kGreeting;
  Need need_ = Need::kReply;
  ReplyParser parser_;
  std::string output_;
  Capabilities caps_;
  bool tls_active_ = false;
  std::string greeting_;
  std::string greeting_name_;
  std::string ehlo_name_;
  std::optional<Reply> failure_;

  TxnRequest txn_;
  TxnResult result_;
  std::deque<Expect> expect_;
  size_t next_rcpt_ = 0;      // next recipient whose reply comes
  size_t rcpt_sent_ = 0;      // unpipelined: recipients sent so far
  bool rset_after_ = false;
  bool closed_after_result_ = false;
  uint64_t replies_ = 0;
};

// Dot-stuffing for DATA (RFC 5321 4.5.2), across chunk boundaries; the
// input is the stored message (CRLF lines). Finish() ends an unterminated
// last line and appends the terminating ".\r\n".
class DotStuffer {
 public:
  void Convert(std::string_view in, std::string& out);
  void Finish(std::string& out);

 private:
  bool at_line_start_ = true;
  char last_ = '\n';
};

// True when any octet of `data` is above 127.
bool Has8Bit(std::string_view data);

// What outbound delivery must know about a message before sending it, read
// piece by piece (the spool file in bounded reads, never the whole message
// in memory): whether any octet is 8-bit, and whether the header section
// holds "TLS-Required: No" (RFC 8689 3). Lines may be split anywhere
// between pieces; Finish() takes an unterminated last line.
class MessageScan {
 public:
  void Feed(std::string_view data);
  void Finish();
  bool has_8bit() const { return has_8bit_; }
  bool tls_required_no() const { return tls_required_no_; }
  // The blank line after the header section has been seen.
  bool header_done() const { return !in_header_; }

 private:
  void EndLine();

  bool has_8bit_ = false;
  bool in_header_ = true;
  bool tls_required_no_ = false;
  // The header line being read, kept up to kKeep + 1 octets: a longer
  // line is not taken for "TLS-Required: No".
  static constexpr size_t kKeep = 1000;
  std::string line_;
};

}  // namespace tern::smtp::client
