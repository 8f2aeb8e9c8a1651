// The contract between the queue and local (Maildir) delivery, the
// counterpart of remote.h: the queue lends its deliverer the spool for each
// batch of message ids and applies what comes back (retry times, recipients
// for remote delivery). The caller injects the deliverer through
// Options::local, so the queue knows neither the directory nor Maildir.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "queue/queue.h"
#include "queue/remote.h"

namespace tern::queue {

class Finisher;

// What the queue lends its deliverer, valid while the queue runs.
struct LocalSpool {
  int msg_dir_fd = -1;    // data_dir/queue/msg
  int state_dir_fd = -1;  // data_dir/queue/state
  // Bounces, retry schedule, removal: shared with remote delivery.
  Finisher* finisher = nullptr;
  // syncfs() for the file system of an open file (0 or an errno value): on
  // the spool's file system it shares the committer's group flush. Null:
  // the deliverer syncs on its own.
  std::function<int(int fd)> sync;
};

struct LocalOutcome {
  std::string id;
  // A local delivery failed temporarily; try again at retry_at (unix
  // seconds). When false the message is either finished (its queue files
  // are gone) or only waits for remote delivery.
  bool retry = false;
  int64_t retry_at = 0;
  // Pending recipients that are not local: the job for remote delivery.
  std::vector<RemoteJob::Rcpt> remote;
  Envelope envelope;
  uint64_t body_offset = 0;
  uint64_t body_len = 0;
};

// A message delivered straight into its recipients' Maildirs before the
// reply to its DATA (issue 18: no spool file for purely local mail). The
// copies are written into tmp/ when it is made. The queue's committer then
// appends Intent() to its intent log, and one group flush makes both the
// copies and the intent durable; then Link() moves the copies into new/
// and Complete() says which recipients are done. A crash before those
// moves are durable is repaired at start from the intent log
// (LocalDeliverer::ReplayDirect). See docs/architecture.md, "Direct local
// delivery".
class DirectDelivery {
 public:
  // Removes the copies that were not linked into new/.
  virtual ~DirectDelivery() = default;
  // Records for the intent log, one line per copy (see ReplayDirect).
  virtual std::string Intent() const = 0;
  // The copies' data and the intent are durable: hard-links the copies
  // into new/ (their tmp/ names stay until Cleanup()).
  virtual void Link() = 0;
  // After Link(): logs, counts and traces what was delivered; returns the
  // indexes (in the envelope) of the recipients that must still be queued,
  // empty when all are done. A recipient is queued whole unless every one
  // of its copies reached new/: a duplicate at worst, never a loss.
  virtual std::vector<size_t> Complete() = 0;
  // After a later flush made the links durable: removes the tmp/ names.
  // (Links rather than renames: a crash never leaves a copy with neither
  // name, even on a file system without a journal.)
  virtual void Cleanup() = 0;
};

class LocalDeliverer {
 public:
  // Direct delivery: when every recipient of `env` resolves to local
  // mailboxes only, on the file system `dev` (the spool's, whose flush the
  // queue shares), writes one copy per mailbox into its tmp/ and returns
  // them. Null: the message takes the queue (nothing was left behind).
  // `message` is the message as received (CRLF, not dot-stuffed), without
  // env.prepend. Called from session threads, concurrently.
  virtual std::unique_ptr<DirectDelivery> PrepareDirect(
      const Envelope& env, std::string_view message, dev_t dev) {
    (void)env, (void)message, (void)dev;
    return nullptr;
  }
  // At start, before any delivery: finishes what the intent log `log` (the
  // Intent() lines of direct deliveries that may not have reached new/
  // durably) describes: a copy still in tmp/ whose bytes match its record
  // is moved into new/, one that does not match (its flush never finished,
  // so it got no 250) is removed. Returns how many copies it moved.
  virtual size_t ReplayDirect(std::string_view log) {
    (void)log;
    return 0;
  }

  virtual ~LocalDeliverer() = default;
  // Delivers the queued messages `ids` and updates or removes their queue
  // files; one outcome per id. Called from the queue's delivery threads,
  // concurrently, but never with one message id in two calls at once.
  virtual std::vector<LocalOutcome> DeliverBatch(
      const LocalSpool& spool, const std::vector<std::string>& ids) = 0;
};

}  // namespace tern::queue
