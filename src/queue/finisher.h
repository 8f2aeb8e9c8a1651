// What happens after each delivery step, local or remote: expiry, DSNs to
// the sender (failure, delay, success), the retry schedule, and finally
// removing the message or saving its state. One place, so that local and
// remote failures bounce the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/result.h"
#include "queue/spool_format.h"

namespace tern::queue {

class FilePool;

struct RetryPolicy {
  int64_t first = 300;           // seconds before the first retry
  int64_t max = 3600;            // cap on the time between tries
  int64_t lifetime = 5 * 86400;  // give up this long after arrival
  int64_t delay_warning = 4 * 3600;  // "delayed" DSN after this; 0 = never
};

// Seconds to wait after the given number of failed attempts: doubling from
// `first`, capped at `max`, with up to 20% jitter (so messages that failed
// together do not all come back in the same second). `random01` in [0,1).
int64_t RetryDelay(const RetryPolicy& policy, uint32_t attempts,
                   double random01);

struct FinishOutcome {
  bool removed = false;  // nothing left: the queue files are gone
  bool retry = false;    // try again at retry_at (unix seconds)
  int64_t retry_at = 0;
};

class Finisher {
 public:
  // Queues a complete message (a DSN) durably; returns its id.
  using Enqueue =
      std::function<Result<std::string>(Envelope env, std::string message)>;

  // `pool` (may be null: plain deletion) takes finished message files.
  // `postmaster` receives bounces that cannot be delivered (double
  // bounces); empty: they are dropped with an error in the log.
  Finisher(int msg_dir_fd, int state_dir_fd, std::string hostname,
           RetryPolicy policy, Enqueue enqueue, FilePool* pool = nullptr,
           std::string postmaster = "");

  // `temp_failure`: some recipient was deferred in this step, so a retry
  // must be scheduled; pending recipients without it are waiting for
  // another step (remote delivery). `msg_fd` is the open message file.
  FinishOutcome Finish(const std::string& id, int msg_fd,
                       const MessageFile& file, MessageState& state,
                       bool temp_failure, int64_t now);

  // Fails every pending recipient with `reason` (a full reply text) and
  // finishes (`tern queue bounce`).
  FinishOutcome FailAll(const std::string& id, int msg_fd,
                        const MessageFile& file, MessageState& state,
                        const std::string& reason, int64_t now);

  const RetryPolicy& policy() const { return policy_; }

 private:
  bool SendReports(const std::string& id, int msg_fd, const MessageFile& file,
                   MessageState& state, int64_t now);

  int msg_dir_fd_;
  int state_dir_fd_;
  std::string hostname_;
  RetryPolicy policy_;
  Enqueue enqueue_;
  FilePool* pool_;
  std::string postmaster_;
};

// Loads a message's meta data and its state (or the initial state when the
// state file is missing or invalid). The returned fd stays open.
struct LoadedMessage {
  int fd = -1;  // owned by the caller: close it
  MessageFile file;
  MessageState state;
};
Result<LoadedMessage> LoadMessage(int msg_dir_fd, int state_dir_fd,
                                  const std::string& id);

// RFC 3461 4.1: does NOTIFY ask for this kind of report? An absent NOTIFY
// means failures and delays.
bool NotifyWants(std::string_view notify, std::string_view what);

}  // namespace tern::queue
