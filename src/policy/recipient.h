// Recipient policy: who may send where. Unauthenticated clients outside the
// trusted networks may only reach local mailboxes and aliases (no open relay);
// unknown local users are refused at RCPT time, never bounced later.
#pragma once

#include "auth/directory.h"
#include "smtp/protocol/session.h"

namespace tern::policy {

// The address as the directory sees it: "local@domain", or "postmaster"
// alone for RFC 5321 4.1.1.3's domain-less postmaster.
std::string DirectoryAddress(const smtp::Mailbox& m);

// True for local parts that would route onwards ('%', '!', a quoted '@').
bool IsRelayTrick(const smtp::Mailbox& rcpt);

smtp::RcptVerdict CheckRecipient(auth::Directory& directory,
                                 const smtp::ClientInfo& client,
                                 const smtp::Mailbox& rcpt);

}  // namespace tern::policy
