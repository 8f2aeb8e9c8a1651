// The contract between the queue and outbound (remote SMTP) delivery: the
// queue hands over a message's remote recipients and later applies the
// report, so that every spool file is written by queue threads only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "queue/queue.h"

namespace tern::queue {

struct RemoteJob {
  std::string id;
  Envelope envelope;       // as received (recipients: see below)
  std::string path;        // the message file, read-only for the sender
  uint64_t body_offset = 0;
  uint64_t body_len = 0;
  struct Rcpt {
    size_t index = 0;      // in the message state's recipient list
    Recipient recipient;
    bool forwarded = false;  // by an alias: the sender goes out as SRS
  };
  std::vector<Rcpt> rcpts;
};

struct RemoteOutcome {
  size_t index = 0;
  std::string address;      // checked against the state before applying
  RecipientState state = RecipientState::kPending;  // pending = deferred
  std::string reply;        // remote reply or local reason
  std::string status;       // RFC 3463, may be empty
  std::string remote_mta;
  bool dsn_passed = false;
};

struct RemoteReport {
  std::string id;
  std::vector<RemoteOutcome> rcpts;
  std::vector<Attempt> attempts;
};

class RemoteSender {
 public:
  virtual ~RemoteSender() = default;
  // Thread-safe. `done` is called exactly once, from the sender's thread,
  // unless the sender is stopped first (the message then simply stays
  // queued for the next start).
  virtual void Send(RemoteJob job, std::function<void(RemoteReport)> done) = 0;
  // Stops delivering; no `done` is called afterwards. Queue::Stop calls it
  // before its own threads end.
  virtual void Stop() = 0;
};

}  // namespace tern::queue
