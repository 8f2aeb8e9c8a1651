// The contract between the queue and local (Maildir) delivery, the
// counterpart of remote.h: the queue lends its deliverer the spool for each
// batch of message ids and applies what comes back (retry times, recipients
// for remote delivery). The caller injects the deliverer through
// Options::local, so the queue knows neither the directory nor Maildir.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
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

class LocalDeliverer {
 public:
  virtual ~LocalDeliverer() = default;
  // Delivers the queued messages `ids` and updates or removes their queue
  // files; one outcome per id. Called from the queue's delivery threads,
  // concurrently, but never with one message id in two calls at once.
  virtual std::vector<LocalOutcome> DeliverBatch(
      const LocalSpool& spool, const std::vector<std::string>& ids) = 0;
};

}  // namespace tern::queue
