// The POP3 server session (RFC 1939, CAPA and response codes per RFC 2449,
// STLS per RFC 2595, AUTH per RFC 5034), sans-I/O: bytes in, replies and
// requests out. The connection coroutine (pop3/connection.cc) checks
// passwords, opens the maildrop, streams messages and runs UPDATE.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
  bool apop = false;               // RFC 1939 7 APOP (needs shared secrets)
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

// What the connection must check when Need::kAuth is set.
struct AuthRequest {
  enum class Kind {
    kPass,       // USER + PASS: `user`, `secret` = password
    kApop,       // `user`, `secret` = hex digest, `timestamp` = greeting stamp
    kSaslStart,  // `mechanism`, `secret` = initial response if has_initial
    kSaslNext,   // `secret` = decoded client response
  };
  Kind kind = Kind::kPass;
  std::string user;
  std::string secret;
  std::string mechanism;
  bool has_initial = false;
  std::string timestamp;
};

// The connection's answer to an AuthRequest.
struct AuthResult {
  enum class Kind {
    kOk,         // logged in, maildrop locked and open
    kChallenge,  // SASL: send `data` (raw) as "+ base64", await the answer
    kBadCredentials,  // -ERR [AUTH]
    kMalformed,  // SASL client message malformed
    kInUse,      // -ERR [IN-USE]: another session has the maildrop
    kLoginDelay, // -ERR [LOGIN-DELAY]
    kTempFail,   // -ERR [SYS/TEMP]
    kPermFail,   // -ERR [SYS/PERM]
    kBlocked,    // too many failures from this client: -ERR [AUTH], close
  };
  Kind kind = Kind::kBadCredentials;
  std::string data;           // challenge, or SASL success data
  std::string user;           // canonical account on kOk
  const Maildrop* maildrop = nullptr;  // on kOk; must outlive the session
};

enum class Need {
  kInput,     // feed more bytes (after writing output())
  kAuth,      // check auth_request(), then call AuthDone()
  kSend,      // open message send_index(); call SendOpened()
  kUpdate,    // RFC 1939 6: delete the marked messages; call UpdateDone()
  kStartTls,  // write output(), run the TLS handshake, call TlsStarted()
  kClose,     // write output() and close the connection
};

class Session {
 public:
  Session(const SessionConfig& config, ClientInfo client);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues the +OK greeting; with APOP, the RFC 1939 7 timestamp
  // ("<unique@host>") is `apop_stamp`.
  void Greet(std::string apop_stamp = {});
  // Consumes input; returns how many bytes it took. Stops early when
  // need() is no longer kInput (the caller keeps the rest; after STLS the
  // rest must be dropped, RFC 2595 4).
  size_t Feed(std::string_view data);
  Need need() const;
  std::string& output();

  const AuthRequest& auth_request() const;
  void AuthDone(AuthResult result);

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
