// Delivery status notifications (RFC 3464 multipart/report, RFC 3461
// semantics): the text of a bounce, delay warning or success report, built
// from the queue's records without any I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "queue/queue.h"

namespace tern::queue {

struct DsnRecipient {
  std::string address;     // Final-Recipient
  std::string orcpt;       // RFC 3461 ORCPT as received, may be empty
  std::string action;      // "failed", "delayed", "delivered", "relayed"
  std::string status;      // RFC 3463 "5.1.1"
  std::string remote_mta;  // host name, may be empty
  std::string diagnostic;  // reply text, "550 5.1.1 no such user"
  int64_t last_attempt = 0;
};

struct DsnInput {
  std::string reporting_mta;  // our host name
  Envelope original;          // envelope of the message reported on
  std::string_view message;   // its bytes (CRLF lines)
  std::vector<DsnRecipient> recipients;
  int64_t now = 0;
  int64_t retry_until = 0;    // for "delayed": when we give up
  // Set for a bounce that could not be delivered (its sender is <>): the
  // report goes to this postmaster address instead, as a double bounce.
  std::string postmaster;
};

// The complete DSN message (CRLF lines), addressed to the original sender.
// RFC 3461 4.3: RET=HDRS, or a report that is not a failure, returns the
// header only; otherwise the whole message unless it is very large.
std::string BuildDsn(const DsnInput& in);

// The envelope for a DSN: null sender (RFC 5321 4.5.5), one recipient:
// the original sender, or `in.postmaster` for a double bounce.
Envelope DsnEnvelope(const DsnInput& in);

// The RFC 3463 status of a reply or local error text: the enhanced code it
// carries, else one derived from its reply code, else `fallback`.
std::string StatusOf(std::string_view text, std::string_view fallback);

// The header section of a message (up to and including the empty line).
std::string_view HeaderSection(std::string_view message);

}  // namespace tern::queue
