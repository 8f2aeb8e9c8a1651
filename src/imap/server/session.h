// The IMAP server session (RFC 9051 IMAP4rev2, answering IMAP4rev1 clients
// of RFC 3501 too), sans-I/O as the SMTP and POP3 sessions are: bytes in,
// responses and requests out. The connection (imap/server/connection.cc)
// runs what may block — SASL steps, opening the account's mail store, every
// command that reads or writes it — by calling Work() on the blocking pool
// when need() says so; nothing else touches the session meanwhile.
//
// The mail store is reached only through store::MailStore (store/
// mail_store.h), so a networked backend can take the place of Maildir.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/sasl.h"
#include "store/mail_store.h"

namespace tern::imap {

struct SessionConfig {
  std::string hostname = "localhost";
  uint32_t max_errors = 20;   // BAD commands in a row before the session ends
  uint64_t append_limit = 50ull * 1024 * 1024;  // RFC 7889 APPENDLIMIT
  std::string sasl_mechanisms = "PLAIN LOGIN SCRAM-SHA-256";
  // Output above this is handed to the connection before a long command
  // (FETCH 1:*) goes on, so memory stays bounded.
  size_t output_chunk = 256 * 1024;
};

struct ClientInfo {
  std::string ip;
  bool tls = false;                 // encrypted now
  bool starttls_available = false;  // STARTTLS can be offered
  bool plaintext_ok = false;        // loopback with the explicit allowance
};

// RFC 9208 STORAGE of the logged-in account, in octets.
struct QuotaState {
  uint64_t used = 0;
  uint64_t limit = 0;
};

// What the session needs from its surroundings. Implemented by the
// connection, and by fakes in tests.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // "PLAIN", "LOGIN", "SCRAM-SHA-256" (any case); null when unknown.
  virtual std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) = 0;
  virtual bool AuthBlocked() { return false; }
  virtual std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                               std::string_view user) {
    return {};
  }
  virtual void AuthSucceeded(std::string_view mechanism,
                             const std::string& user) {}
  // Opens the mail store of an authenticated account (called from Work()).
  // An error is a temporary failure: NO [UNAVAILABLE].
  virtual Result<std::unique_ptr<store::MailStore>> OpenStore(
      const std::string& account) = 0;
  // The session changed folder `folder` of its account (flags, new
  // messages, expunges): other sessions on the account should look.
  virtual void Changed(std::string_view folder) {}
  // The session selected (or left, with an empty name) a folder: changes
  // to it made elsewhere should wake this session (Wake()).
  virtual void Watch(std::string_view folder) {}
  // The account's quota (from Work()); nullopt when it has none.
  virtual std::optional<QuotaState> Quota() { return std::nullopt; }
  // The session freed what it could and will wait (IDLE): the process may
  // give memory back to the system.
  virtual void ReleaseMemory() {}
  // The full-text index of `folder` lacks many messages: build it in the
  // background (text_indexer.h). Without it later searches go on reading
  // what is not indexed.
  virtual void IndexTextLater(std::string_view folder) {}
  // The session added (positive) or removed octets of mail.
  virtual void UsageChanged(int64_t delta) {}
  // Whether UsageChanged() and Quota() count (an account's usage is kept):
  // then COPY and EXPUNGE need the sizes of what they copy or remove.
  virtual bool TracksUsage() const { return false; }
};

enum class Need {
  kInput,     // write output(), then feed more bytes
  kWork,      // call Work() on the blocking pool, then go on
  kDelay,     // wait delay() (a failed login), then DelayDone()
  kStartTls,  // write output(), run the TLS handshake, call TlsStarted()
  // write output(), then deflate both directions (RFC 4978 3), then call
  // CompressionStarted(); input after the COMPRESS command is compressed
  kCompress,
  kClose,     // write output() and close
};

class Session {
 public:
  Session(const SessionConfig& config, SessionHost& host, ClientInfo client);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues the greeting (RFC 9051 7.1.1 with the capabilities).
  void Greet();
  // Consumes input; returns how many bytes it took. Stops early when need()
  // is no longer kInput (the caller keeps the rest, except after STARTTLS:
  // RFC 9051 6.2.1, what follows must be dropped; after COMPRESS the rest
  // is compressed and must be inflated first, RFC 4978 3).
  size_t Feed(std::string_view data);
  Need need() const;
  std::string& output();

  // Need::kWork, on any thread.
  void Work();
  std::chrono::milliseconds delay() const;
  void DelayDone();
  void TlsStarted();
  // The connection now deflates both ways (after Need::kCompress).
  void CompressionStarted();

  // Another session or a delivery changed the watched folder. On the
  // connection's thread, between Feed()/Work() calls. True when the
  // session wants to look now (it is in IDLE): need() becomes kWork.
  bool Wake();
  // In IDLE (RFC 2177): waiting for DONE, woken by changes.
  bool idling() const;

  // The autologout timer fired (RFC 9051 5.4): BYE, close.
  void Timeout();
  // Server shutdown: BYE, close.
  void Shutdown();
  // A command is being answered (APPEND literal coming in, long FETCH):
  // a graceful shutdown waits for it.
  bool Busy() const;

  const std::string& user() const;
  const ClientInfo& client() const;
  // Counts for the session log line.
  uint64_t commands() const;
  uint64_t fetched() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::imap
