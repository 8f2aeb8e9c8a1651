// Where an account's mailbox lives below the mail root (data_dir/mail):
// "<domain>/<local>/Maildir". Local delivery writes there and POP3 (and
// IMAP later) read there, so the layout is the store's, not delivery's.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace tern::store {

// True when `s` may be used as one path component under data_dir/mail:
// not empty, not "." or "..", no leading '.', no '/' and no NUL.
bool IsSafePathComponent(std::string_view s);

struct MailboxPath {
  std::string domain;  // lower case
  std::string local;   // as given by the directory
};
// Splits an account address "local@domain" at the last '@' and checks both
// parts with IsSafePathComponent, so no address can reach outside the mail
// root.
Result<MailboxPath> MailboxPathFor(std::string_view mailbox);

}  // namespace tern::store
