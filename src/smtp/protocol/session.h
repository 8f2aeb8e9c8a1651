// The SMTP server session state machine (RFC 5321), sans-I/O: bytes in,
// replies and requests out. No sockets, clocks or files inside; the
// connection coroutine (smtp/server) feeds it and carries out what it asks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
  uint64_t declared_size = 0;  // RFC 1870 SIZE=, 0 when absent
  std::vector<Mailbox> rcpts;
  std::vector<RcptParams> rcpt_params;  // parallel to rcpts
};

// The verdict of policy on one RCPT.
struct RcptVerdict {
  enum class Kind { kAccept, kUnknownUser, kRelayDenied, kTempFail };
  Kind kind = Kind::kAccept;
};

// What the session needs from its surroundings. Implemented by the server
// glue (queue, directory, clock) and by fakes in tests.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // Policy on a recipient (relay control, unknown users).
  virtual RcptVerdict CheckRecipient(const Transaction& t, const Mailbox& rcpt) = 0;
  // A message body is about to start. Returns the queue id, or empty on
  // failure (the session answers 451 4.3.0 and drops the data).
  virtual std::string BeginMessage(const Transaction& t) = 0;
  // Message bytes, unstuffed, CRLF line ends. Starts with the Received:
  // header the session builds. False on a write error.
  virtual bool MessageData(std::string_view data) = 0;
  // The transaction ended without commit (error, RSET, disconnect).
  virtual void AbortMessage() = 0;
  // RFC 5322 date for the Received: header.
  virtual std::string Now() = 0;
};

// What the session needs the connection to do next.
enum class Need {
  kInput,   // feed more bytes (after writing output())
  kCommit,  // make the message durable, then call Committed()
  kClose,   // write output() and close the connection
};

class Session {
 public:
  Session(const SessionConfig& config, SessionHost& host, ClientInfo client);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues the 220 greeting.
  void Greet();
  // Consumes input and returns how many bytes it took. It stops early (and
  // returns less than data.size()) when need() is no longer kInput; the
  // caller must keep the rest and feed it again after acting. A partial
  // line is consumed and buffered internally (bounded by the line limits).
  size_t Feed(std::string_view data);
  Need need() const;
  // Replies accumulated so far; the caller writes then clears them.
  std::string& output();

  // Result of the commit requested by Need::kCommit: 250 with the queue id
  // or 451 4.3.0 / 452 4.3.1 (no space).
  void Committed(bool ok, bool no_space = false);
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
  ClientInfo& mutable_client();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::smtp
