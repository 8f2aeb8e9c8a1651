// The durable mail queue. A message is acknowledged (250) only after its
// data and envelope are on stable storage; many sessions share one sync
// (group commit). Committed messages are routed: delivery threads hand
// them to the LocalDeliverer (local.h), and the remote recipients it leaves
// to the RemoteSender (remote.h, outbound SMTP). On start the queue
// recovers what a crash left, with each message's retry time and hold flag.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace tern::queue {

struct Recipient {
  std::string address;  // "local@domain" as received, no angle brackets
  std::string notify;   // RFC 3461 NOTIFY value, empty when not given
  std::string orcpt;    // RFC 3461 ORCPT value as received, empty when not given
};

struct Envelope {
  std::string id;        // assigned by Queue::Begin
  std::string sender;    // MAIL FROM address; empty string = null sender <>
  std::vector<Recipient> recipients;
  std::string ret;       // RFC 3461 RET: "FULL", "HDRS" or empty
  std::string envid;     // RFC 3461 ENVID, empty when not given
  std::string body;      // RFC 6152 BODY: "7BIT", "8BITMIME" or empty
  bool smtputf8 = false; // RFC 6531
  // RFC 8689 REQUIRETLS: the message leaves only over TLS to a next hop
  // authenticated by DANE or MTA-STS, else it bounces.
  bool requiretls = false;
  std::string client_ip;
  std::string helo;
  std::string auth_user;
  int64_t received_at = 0;  // unix seconds
  // Header fields added once the whole message had arrived
  // (Authentication-Results, DKIM-Signature): CRLF lines that every
  // reader puts before the message bytes. The bytes themselves are never
  // rewritten.
  std::string prepend;
  // A mail filter quarantined the message (issue 15): it waits on hold,
  // with this reason, until `tern queue release`. Written only when set.
  std::string quarantine;
};

enum class RecipientState { kPending, kDelivered, kFailed };

// One delivery attempt as `tern queue show` lists it.
struct Attempt {
  int64_t time = 0;   // unix seconds
  std::string host;   // "mx.example.org[192.0.2.1]:25", or "local"
  std::string reply;  // what it answered, or why it failed
};

// A queued message as `tern queue list` shows it.
struct Entry {
  Envelope envelope;
  uint64_t size = 0;                    // message bytes
  std::vector<RecipientState> state;    // parallel to envelope.recipients
  std::vector<std::string> errors;      // parallel: last reply per recipient
  uint32_t attempts = 0;
  int64_t next_attempt = 0;             // unix seconds, 0 = none scheduled
  std::string last_error;
  bool held = false;
  std::vector<Attempt> log;             // recent attempts, oldest first
};

class LocalDeliverer;
class RemoteSender;

// One message being received. Data arrives already unstuffed, CRLF lines.
class Writer {
 public:
  virtual ~Writer() = default;  // an uncommitted writer removes its file
  virtual const std::string& id() const = 0;
  virtual bool Write(std::string_view data) = 0;  // false on I/O error
  virtual uint64_t size() const = 0;
  // The errno of the failed Write (ENOSPC: the SMTP session answers 452
  // 4.3.1 instead of 451), or 0 when none failed or it is not known.
  virtual int error() const { return 0; }
  // Header fields (CRLF lines) that go before the message, known only
  // after its last byte (signatures, authentication results). Before
  // Commit; replaces what an earlier call gave.
  virtual void SetPrepend(std::string header_lines) = 0;
  // The envelope, which may still change before Commit (a mail filter's
  // new sender or recipients, a quarantine).
  virtual Envelope& envelope() = 0;
  // Forgets the bytes written so far: the message is written anew (a
  // mail filter changed it). False on an I/O error.
  virtual bool Restart() = 0;
};

struct Options {
  std::string data_dir;  // the queue lives in data_dir/queue
  uint32_t delivery_threads = 2;
  std::string hostname = "localhost";  // for DSNs (Reporting-MTA)
  uint32_t retry_seconds = 300;    // first retry after a temporary failure
  uint32_t max_retry_seconds = 3600;    // cap between tries
  uint32_t max_lifetime = 5 * 86400;    // then bounce
  uint32_t delay_warning = 4 * 3600;    // "delayed" DSN; 0 = none
  LocalDeliverer* local = nullptr;      // required; outlives the queue
  RemoteSender* remote = nullptr;  // null: remote recipients just wait
  // Where undeliverable bounces go ("postmaster@<first local domain>",
  // which the directory routes); empty: dropped with an error logged.
  std::string postmaster;
  // Direct local delivery (issue 18): a message whose recipients are all
  // local mailboxes goes straight into their Maildirs before the 250,
  // without a spool file (LocalDeliverer::PrepareDirect). The spool file
  // is then made only when a message needs it.
  bool direct_local = false;
};

class Queue {
 public:
  static Result<std::unique_ptr<Queue>> Open(const Options& options);
  virtual ~Queue() = default;

  // Recovers the spool and starts the committer, pickup and delivery threads.
  virtual Result<void> Start() = 0;
  // Stops accepting commits, finishes deliveries in progress, joins threads.
  virtual void Stop() = 0;

  // Starts a message; assigns env.id. Returns an error when the spool is
  // unwritable (the session answers 451 4.3.0 / 452 4.3.1).
  virtual Result<std::unique_ptr<Writer>> Begin(Envelope env) = 0;

  // Makes the message durable, then calls `done` (from a queue thread) with
  // success or the error, then schedules delivery. `done` is always called.
  virtual void Commit(std::unique_ptr<Writer> writer,
                      std::function<void(Result<void>)> done) = 0;

  // Queue control (`tern queue ...` through the control socket). Each
  // returns what was done, or an error such as "no such message".
  virtual Result<std::string> Flush() = 0;  // every waiting message now
  virtual Result<std::string> Retry(const std::string& id) = 0;
  virtual Result<std::string> Hold(const std::string& id) = 0;
  virtual Result<std::string> Release(const std::string& id) = 0;
  virtual Result<std::string> Delete(const std::string& id) = 0;
  // Fails every pending recipient now, with a DSN to the sender.
  virtual Result<std::string> Bounce(const std::string& id) = 0;

  // What the queue holds now (for /metrics): waiting, in delivery and
  // held messages, and when the oldest of them was queued (its id's
  // time, microseconds since the epoch; 0 when empty).
  struct Stats {
    size_t messages = 0;
    size_t held = 0;
    uint64_t oldest_micros = 0;
  };
  virtual Stats GetStats() = 0;
};

// Writes a complete message durably into data_dir/queue/incoming (used by
// `tern sendmail`); the running server picks it up. Uses env.id when it is a
// valid queue id (see queue_id.h), else assigns one. Returns the queue id.
Result<std::string> Inject(const std::string& data_dir, Envelope env,
                           std::string_view message);

// Reads the spool of data_dir without a running server (`tern queue list`).
Result<std::vector<Entry>> List(const std::string& data_dir);

// Which messages ListEach passes on; empty fields select everything.
struct ListFilter {
  std::string after;      // only ids after this one (the next page)
  size_t limit = 0;       // at most this many (0: all)
  // Case-insensitive parts of addresses: of the sender ("<>" selects the
  // null sender), of a recipient still pending or failed, or a recipient
  // domain (whole, without "@").
  std::string sender;
  std::string recipient;
  std::string domain;
  int64_t min_age = -1;   // seconds since received; -1: no bound
  int64_t max_age = -1;
  int64_t now = 0;        // unix seconds the ages count from
};

// Streams the queue in id (arrival) order: the names are listed and
// sorted first, then each message's envelope (never its bytes) and state
// are read and `each` called for those that match, until it returns false
// or `filter.limit` were passed. Returns how many were passed.
Result<size_t> ListEach(const std::string& data_dir, const ListFilter& filter,
                        const std::function<bool(Entry&)>& each);

// One message (`tern queue show`); an error when it is not queued.
Result<Entry> ListOne(const std::string& data_dir, const std::string& id);

}  // namespace tern::queue
