// Local delivery of queued messages: resolves each pending recipient, writes
// Maildir copies for local mailboxes (batched syncs), records what stays
// queued (remote targets, temporary failures) and removes finished messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "delivery/maildir.h"
#include "queue/finisher.h"
#include "queue/queue.h"
#include "queue/remote.h"

namespace tern::delivery {

struct LocalDeliveryOptions {
  int mail_root_fd = -1;        // data_dir/mail
  int msg_dir_fd = -1;          // data_dir/queue/msg
  int state_dir_fd = -1;        // data_dir/queue/state
  std::string hostname;         // for Maildir file names
  // Bounces, retry schedule, removal: shared with remote delivery.
  queue::Finisher* finisher = nullptr;
  // Flushes for the Maildir steps (default: syncfs() per call).
  SyncFs sync;
};

struct MessageOutcome {
  std::string id;
  // A local delivery failed temporarily; try again at retry_at (unix
  // seconds). When false the message is either finished (its queue files
  // are gone) or only waits for remote delivery.
  bool retry = false;
  int64_t retry_at = 0;
  // Pending recipients that are not local: the job for remote delivery.
  std::vector<queue::RemoteJob::Rcpt> remote;
  queue::Envelope envelope;
  uint64_t body_offset = 0;
  uint64_t body_len = 0;
};

// Thread-safe as long as concurrent calls get different message ids.
class LocalDelivery {
 public:
  LocalDelivery(LocalDeliveryOptions options, queue::Queue::Resolver resolver);

  // Delivers the messages together: all their copies share one sync before
  // and one after the renames into new/. The queue files are updated or
  // removed only after that, so a crash can duplicate but never lose mail.
  std::vector<MessageOutcome> DeliverBatch(const std::vector<std::string>& ids);

 private:
  LocalDeliveryOptions options_;
  queue::Queue::Resolver resolver_;
};

// RFC 3461 4.2 ORCPT value for an address: "rfc822;" + xtext (RFC 3461 4),
// used when alias expansion creates new recipients.
std::string OrcptFor(const std::string& address);

}  // namespace tern::delivery
