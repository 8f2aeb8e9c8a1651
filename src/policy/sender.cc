// Sender identity policy (no forged senders from our users, no outsiders
// posing as our users), on top of the directory's ownership rules.
#include "policy/sender.h"

#include <spdlog/spdlog.h>

#include "policy/recipient.h"

namespace tern::policy {

using Verdict = smtp::SenderVerdict;

Verdict CheckMailFrom(auth::Directory& directory, const smtp::ClientInfo& client,
                      const smtp::Mailbox& from) {
  if (!client.auth_user.empty()) {
    // RFC 6409 8.1 lets a submission server check the sender. The null
    // path is for bounces (RFC 5321 4.5.5), which users do not send.
    if (from.null() ||
        !directory.Owns(client.auth_user, DirectoryAddress(from))) {
      spdlog::warn("smtp sender refused client={} user={} from=<{}> reason={}",
                   client.ip, client.auth_user, from.ToString(),
                   from.null() ? "null-sender" : "not-owned");
      return Verdict{Verdict::Kind::kNotOwned};
    }
    return Verdict{};
  }
  if (client.trusted || from.null() || from.domain.empty() ||
      from.domain.front() == '[') {
    return Verdict{};
  }
  // Our users send through AUTH; an outsider naming our domain in MAIL
  // FROM is impersonating one of them to the others.
  if (directory.IsLocalDomain(from.domain)) {
    spdlog::warn("smtp sender refused client={} from=<{}> reason=local-domain-unauthenticated",
                 client.ip, from.ToString());
    return Verdict{Verdict::Kind::kLocalSpoof};
  }
  return Verdict{};
}

bool HeaderSenderAllowed(auth::Directory& directory,
                         const smtp::ClientInfo& client,
                         const std::string& address, std::string_view field) {
  if (directory.Owns(client.auth_user, address)) return true;
  spdlog::warn("smtp header sender refused client={} user={} field={} address=<{}>",
               client.ip, client.auth_user, field, address);
  return false;
}

}  // namespace tern::policy
