// The SMTP server session state machine (RFC 5321), sans-I/O: bytes in,
// replies and requests out. No sockets, clocks or files inside; the
// connection coroutine (smtp/server) feeds it and carries out what it asks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.h"
#include "smtp/protocol/address.h"

namespace tern::smtp {

struct SessionConfig {
  std::string hostname = "localhost";   // our name in the greeting and Received:
  uint64_t max_message_size = 50ull * 1024 * 1024;
  uint32_t max_recipients = 100;
  uint32_t max_errors = 10;
  uint32_t command_line_limit = 512;    // RFC 5321 4.5.3.1.4
  uint32_t text_line_limit = 1000;      // RFC 5321 4.5.3.1.6
  uint32_t max_received_headers = 100;
  bool vrfy = false;
  bool expn = false;
  // Per listener and connection, set by the connection:
  bool tls_available = false;  // STARTTLS may be offered (RFC 3207)
  bool auth = false;           // AUTH exists at all (RFC 4954)
  // AUTH without TLS; config allows it only on loopback listeners.
  bool auth_allowed_plaintext = false;
  bool submission = false;     // AUTH required before MAIL (RFC 6409 4.3)
  // The listener's service name: 4xx/5xx replies are counted under it in
  // tern_smtp_refusals_total (none when empty, as in unit tests).
  std::string listener;
  // When set, each SASL step is handed to the connection (Need::kSaslStep)
  // instead of running inside Feed(): a password check costs tens of
  // milliseconds of Argon2id and must not stall an io thread.
  bool async_sasl = false;
  // When set, a MAIL that passed policy waits for Need::kSenderCheck (the
  // connection's SPF check, which asks DNS) before its 250.
  bool sender_check = false;
  // When set, a RCPT that passed policy waits for Need::kRcptCheck (the
  // connection's DNS list and greylisting checks) before its 250.
  bool rcpt_check = false;
  // Pregreet test ([antispam] pregreet): Greet() holds the 220 back for
  // this long (Need::kGreetWait); 0 greets at once.
  std::chrono::milliseconds pregreet_wait{0};
  // When set, Greet() sends this line (a 421 or 554, RFC 5321 3.1) in
  // place of the 220 and the session ends (a connection rate limit).
  std::string greet_refusal;
};

// Facts about the connection that policy and the Received: header need.
struct ClientInfo {
  std::string ip;          // "127.0.0.1", "::1"
  uint16_t port = 0;
  std::string local_ip;
  uint16_t local_port = 0;
  bool tls = false;        // the issue after this sets it
  std::string auth_user;   // set once AUTH succeeds (later issue)
  bool trusted = false;    // in trusted_networks, or local (sendmail)
};

struct RcptParams {
  std::string notify;  // RFC 3461
  std::string orcpt;
};

// One transaction, complete when DATA/BDAT LAST arrives.
struct Transaction {
  std::string helo;        // EHLO/HELO argument
  bool esmtp = false;
  Mailbox mail_from;       // null() for <>
  std::string ret;         // RFC 3461 RET
  std::string envid;       // RFC 3461 ENVID
  std::string body;        // RFC 6152 BODY=7BIT|8BITMIME
  bool smtputf8 = false;   // RFC 6531
  bool requiretls = false; // RFC 8689: onward only over verified TLS
  uint64_t declared_size = 0;  // RFC 1870 SIZE=, 0 when absent
  std::vector<Mailbox> rcpts;
  std::vector<RcptParams> rcpt_params;  // parallel to rcpts
};

// The verdict of policy on one RCPT.
struct RcptVerdict {
  enum class Kind {
    kAccept,
    kUnknownUser,
    kRelayDenied,
    kTempFail,
    kMailboxFull,  // over its storage quota: 552 5.2.2 (RFC 3463)
    kRefused,      // the host's own reply line (a rate limit): `reply`
  };
  Kind kind = Kind::kAccept;
  std::string reply;  // kRefused: the full reply line, no CRLF
};

// The verdict of policy on MAIL FROM.
struct SenderVerdict {
  enum class Kind {
    kAccept,
    kNotOwned,     // authenticated user, address not theirs: 553 5.7.1
    kLocalSpoof,   // unauthenticated outsider claiming our domain: 550 5.7.1
    kRefused,      // the host's own reply line (a rate limit): `reply`
  };
  Kind kind = Kind::kAccept;
  std::string reply;  // kRefused: the full reply line, no CRLF
};

// A 4xx/5xx reply that refused a sender, a recipient or a message (to
// MAIL, RCPT, DATA or BDAT, or at the end of the content), as the host
// may record it (`tern trace`).
struct Refusal {
  std::string_view stage;           // "connect", "mail", "rcpt" or "data"
  std::string from;                 // the MAIL FROM address; "" for <> or not yet known
  std::vector<std::string> rcpts;   // rcpt: the one refused; data: the message's
  std::string queue_id;             // data: the id the message had, if it got one
};

// What the session needs from its surroundings. Implemented by the server
// glue (queue, directory, clock) and by fakes in tests.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // Policy on a recipient (relay control, unknown users).
  virtual RcptVerdict CheckRecipient(const Transaction& t, const Mailbox& rcpt) = 0;
  // A message body is about to start. Returns the queue id, or empty on
  // failure (the session answers 451 4.3.0, or 452 4.3.1 when
  // StorageFull(), and drops the data).
  virtual std::string BeginMessage(const Transaction& t) = 0;
  // Message bytes, unstuffed, CRLF line ends. Starts with the Received:
  // header the session builds. False on a write error.
  virtual bool MessageData(std::string_view data) = 0;
  // The transaction ended without commit (error, RSET, disconnect).
  virtual void AbortMessage() = 0;
  // True when the last BeginMessage or MessageData failed for want of
  // space (ENOSPC, EDQUOT): the session then answers 452 4.3.1 (RFC 5321
  // 4.2.2 "insufficient system storage", RFC 3463 X.3.1) instead of 451.
  virtual bool StorageFull() { return false; }
  // RFC 5322 date for the Received: header.
  virtual std::string Now() = 0;

  // Sender identity. The defaults accept everything, which suits the local
  // `tern sendmail` (a trusted client without AUTH).
  virtual SenderVerdict CheckMailFrom(const Mailbox& from) { return {}; }
  // Authenticated sessions: may the message's From:/Sender: name this
  // address? `field` is "From" or "Sender", for the log.
  virtual bool HeaderSenderAllowed(const std::string& address,
                                   std::string_view field) {
    return true;
  }

  // A RCPT argument that does not parse ("a@b@c", "a@b.", ...); some of
  // these are old relay tricks, so the host may want them in its log.
  virtual void RcptSyntaxError(std::string_view arg) {}

  // AUTH (RFC 4954). The defaults offer no mechanism.
  virtual std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) {
    return nullptr;
  }
  // True when the client is locked out after too many failures.
  virtual bool AuthBlocked() { return false; }
  // A failed attempt (`user` may be empty when the mechanism did not get
  // that far); returns how long to hold back the 535 reply.
  virtual std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                               std::string_view user) {
    return {};
  }
  virtual void AuthSucceeded(std::string_view mechanism,
                             const std::string& user) {}

  // A refusal (see Refusal), after its reply line is queued.
  virtual void Refused(const Refusal& refusal, std::string_view reply) {}
};

// What the session needs the connection to do next.
enum class Need {
  kInput,   // feed more bytes (after writing output())
  kCommit,  // make the message durable, then call Committed()
  kClose,   // write output() and close the connection
  // Write output() (the 220), then run the TLS handshake and call
  // TlsStarted(). Input after the STARTTLS line was discarded (RFC 3207 5:
  // it must not be read as if it came over TLS; CVE-2011-0411).
  kStartTls,
  // Wait delay(), then call DelayDone() and write output() (slows down
  // password guessing).
  kDelay,
  // Only with SessionConfig::async_sasl: call RunSaslStep() (on any
  // thread, nothing else touches the session meanwhile), then
  // SaslStepDone() with its result back on the connection's executor.
  kSaslStep,
  // Only with SessionConfig::sender_check: check the MAIL FROM of the
  // current transaction, then call SenderChecked().
  kSenderCheck,
  // Only with SessionConfig::rcpt_check: check pending_recipient() of the
  // current transaction, then call RcptChecked().
  kRcptCheck,
  // Only with SessionConfig::pregreet_wait: wait that long, then call
  // GreetWaitDone() saying whether the client sent anything meanwhile.
  kGreetWait,
};

class Session {
 public:
  Session(const SessionConfig& config, SessionHost& host, ClientInfo client);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues the 220 greeting (or, with a pregreet wait, asks for it).
  void Greet();
  // The end of Need::kGreetWait: the 220, or for a client that talked
  // before it a 554 and the end of the session.
  void GreetWaitDone(bool talked_first);
  // Consumes input and returns how many bytes it took. It stops early (and
  // returns less than data.size()) when need() is no longer kInput; the
  // caller must keep the rest and feed it again after acting. A partial
  // line is consumed and buffered internally (bounded by the line limits).
  size_t Feed(std::string_view data);
  Need need() const;
  // Replies accumulated so far; the caller writes then clears them.
  std::string& output();

  // The TLS handshake requested by Need::kStartTls succeeded (or, for
  // implicit TLS, the connection began with one). RFC 3207 4.2: everything
  // learnt before is forgotten; the client must send EHLO again.
  void TlsStarted(std::string version, std::string cipher);
  std::chrono::milliseconds delay() const;
  void DelayDone();

  // The SASL mechanism step requested by Need::kSaslStep, and its result.
  auth::SaslStep RunSaslStep();
  void SaslStepDone(const auth::SaslStep& step);

  // Result of the commit requested by Need::kCommit: 250 with the queue id
  // or 451 4.3.0 / 452 4.3.1 (no space).
  void Committed(bool ok, bool no_space = false);
  // The message is refused after all (a DMARC reject): `reply` (a full
  // reply line without CRLF) instead of committing; the message is dropped.
  void CommitRefused(std::string_view reply);
  // The answer to Need::kSenderCheck: empty to accept (250), else the full
  // refusal reply line, which ends the transaction.
  void SenderChecked(std::string_view refusal);
  // The answer to Need::kRcptCheck: empty to accept the recipient (250),
  // else the full refusal reply line; the transaction goes on either way.
  void RcptChecked(std::string_view refusal);
  // The recipient Need::kRcptCheck is about.
  const Mailbox& pending_recipient() const;
  // The transaction, for the sender check and the commit (MAIL FROM, HELO).
  const Transaction& transaction() const;
  // The connection timed out: 421 4.4.2 and close.
  void Timeout();
  // The server is shutting down: 421 4.3.2 and close (idle sessions only).
  void Shutdown();
  // True from an accepted MAIL until the transaction ends (a graceful
  // shutdown lets these finish for a bounded time).
  bool InTransaction() const;
  // True while reading DATA/BDAT content (for the data block timeout).
  bool InData() const;

  const ClientInfo& client() const;
  const SessionConfig& config() const;
  ClientInfo& mutable_client();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::smtp
