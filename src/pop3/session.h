// The POP3 server session (RFC 1939, CAPA and response codes per RFC 2449,
// STLS per RFC 2595, AUTH per RFC 5034), sans-I/O: bytes in, replies and
// requests out. The connection coroutine (pop3/connection.cc) checks
// passwords, opens the maildrop, streams messages and runs UPDATE.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.h"

namespace tern::pop3 {

struct SessionConfig {
  std::string hostname = "localhost";
  uint32_t max_errors = 10;        // bad commands before the session ends
  // RFC 2449 4: a command line is at most 255 octets with its CRLF.
  uint32_t command_line_limit = 255;
  // RFC 5034 4: AUTH lines are exempt from that limit; bounded anyway.
  uint32_t auth_line_limit = 8192;
  bool user_command = true;        // USER/PASS offered (when allowed)
  bool sasl = false;               // AUTH offered (mechanisms exist)
  std::string sasl_mechanisms;     // "PLAIN LOGIN SCRAM-SHA-256"
  // RFC 1939 7 APOP is not offered: it needs the plain password on the
  // server, and the directory keeps only hashes.
  std::string expire;              // RFC 2449 6.7 "NEVER" or days; "" = none
  int64_t login_delay = -1;        // RFC 2449 6.8 seconds; < 0 = not offered
  std::string implementation = "Tern";
};

struct ClientInfo {
  std::string ip;
  bool tls = false;             // the connection is encrypted now
  bool stls_available = false;  // STLS can be offered (not yet TLS)
  bool plaintext_ok = false;    // loopback with the explicit allowance
};

// The maildrop as the session sees it: fixed for the whole session
// (RFC 1939 3: new mail shows up in the next session).
class Maildrop {
 public:
  virtual ~Maildrop() = default;
  virtual size_t count() const = 0;
  virtual uint64_t size(size_t i) const = 0;  // octets as sent (CRLF)
  virtual std::string uidl(size_t i) const = 0;
};

// What the session needs from its surroundings for AUTH, as the SMTP
// session has it: mechanisms and the failure throttle. Implemented by the
// connection, and by fakes in tests.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // "PLAIN", "LOGIN", "SCRAM-SHA-256" (any case); null when unknown. USER
  // and PASS run as PLAIN through it.
  virtual std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) = 0;
  // True when this client is locked out after too many failures.
  virtual bool AuthBlocked() { return false; }
  // A failed attempt; returns how long to hold back the reply.
  virtual std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                               std::string_view user) {
    return {};
  }
  virtual void AuthSucceeded(std::string_view mechanism,
                             const std::string& user) {}
};

// The connection's answer to Need::kLogin.
struct LoginResult {
  enum class Kind {
    kOk,          // maildrop locked and open
    kInUse,       // -ERR [IN-USE]: another session has the maildrop
    kLoginDelay,  // -ERR [LOGIN-DELAY]
    kTempFail,    // -ERR [SYS/TEMP]
    kPermFail,    // -ERR [SYS/PERM]
  };
  Kind kind = Kind::kTempFail;
  const Maildrop* maildrop = nullptr;  // on kOk; must outlive the session
};

enum class Need {
  kInput,     // feed more bytes (after writing output())
  // Call RunSaslStep() (on any thread; nothing else touches the session
  // meanwhile), then SaslStepDone() with its result.
  kSaslStep,
  kDelay,     // wait delay() (after a failed login), then call DelayDone()
  kLogin,     // open and lock login_user()'s maildrop, then LoginDone()
  kSend,      // open message send_index(); call SendOpened()
  kUpdate,    // RFC 1939 6: delete the marked messages; call UpdateDone()
  kStartTls,  // write output(), run the TLS handshake, call TlsStarted()
  kClose,     // write output() and close the connection
};

class Session {
 public:
  Session(const SessionConfig& config, SessionHost& host, ClientInfo client);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues the +OK greeting.
  void Greet();
  // Consumes input; returns how many bytes it took. Stops early when
  // need() is no longer kInput (the caller keeps the rest; after STLS the
  // rest must be dropped, RFC 2595 4).
  size_t Feed(std::string_view data);
  Need need() const;
  std::string& output();

  // Need::kSaslStep: the mechanism's step (Argon2id, PBKDF2) and its result.
  auth::SaslStep RunSaslStep();
  void SaslStepDone(const auth::SaslStep& step);
  std::chrono::milliseconds delay() const;
  void DelayDone();
  // Need::kLogin: the authenticated account, and the outcome of opening
  // its maildrop.
  const std::string& login_user() const;
  void LoginDone(LoginResult result);

  // Need::kSend: which message (0-based), and how many body lines
  // (< 0: all, RETR; >= 0: TOP).
  size_t send_index() const;
  int64_t send_lines() const;
  // The message could be opened (then "+OK" is queued and the caller
  // writes output(), the dot-stuffed message and ".\r\n"), or not.
  void SendOpened(bool ok);

  // Indexes of messages marked deleted (for Need::kUpdate).
  std::vector<size_t> deleted() const;
  void UpdateDone(bool ok);

  void TlsStarted();
  // Autologout (RFC 1939 3): no UPDATE; the caller closes.
  void Timeout();
  // Server shutdown while idle: -ERR and close, no UPDATE.
  void Shutdown();
  // True between a successful login and the end of the session.
  bool InTransaction() const;
  const std::string& user() const;
  const ClientInfo& client() const;
  // Counts for the session log line.
  uint32_t retrieved() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::pop3
