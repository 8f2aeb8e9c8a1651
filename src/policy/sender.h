// Sender identity: authenticated users may send only as addresses they own
// (MAIL FROM, From:, Sender:), and outsiders may not claim our domains in
// MAIL FROM. Decisions are logged here, with the reason.
#pragma once

#include <string>
#include <string_view>

#include "auth/directory.h"
#include "smtp/protocol/session.h"

namespace tern::policy {

smtp::SenderVerdict CheckMailFrom(auth::Directory& directory,
                                  const smtp::ClientInfo& client,
                                  const smtp::Mailbox& from);

// For authenticated sessions: may a From:/Sender: mailbox be `address`?
bool HeaderSenderAllowed(auth::Directory& directory,
                         const smtp::ClientInfo& client,
                         const std::string& address, std::string_view field);

}  // namespace tern::policy
