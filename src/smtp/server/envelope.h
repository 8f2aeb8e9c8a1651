// The queue envelope of an SMTP transaction: shared by network sessions and
// `tern sendmail`, so both queue exactly the same facts.
#pragma once

#include "queue/queue.h"
#include "smtp/protocol/session.h"

namespace tern::smtp {

queue::Envelope MakeEnvelope(const Transaction& t, const ClientInfo& client,
                             int64_t received_at);

}  // namespace tern::smtp
