// Recipient policy: relay control and unknown-user checks at RCPT time,
// including the address tricks that once turned servers into open relays.
#include "policy/recipient.h"

#include <spdlog/spdlog.h>

namespace tern::policy {

using Verdict = smtp::RcptVerdict;

std::string DirectoryAddress(const smtp::Mailbox& m) {
  if (m.domain.empty()) return m.local;
  return m.local + "@" + m.domain;
}

bool IsRelayTrick(const smtp::Mailbox& rcpt) {
  // "user%remote@ours" (the percent hack), "remote!user@ours" (UUCP bang
  // paths) and "\"user@remote\"@ours" all ask us to route onwards from a
  // local domain. RFC 5321 2.3.11 / 3.6.1 lets us refuse them; we never
  // interpret them.
  return rcpt.local.find_first_of("%!@") != std::string::npos;
}

Verdict CheckRecipient(auth::Directory& directory,
                       const smtp::ClientInfo& client,
                       const smtp::Mailbox& rcpt) {
  const bool may_relay = client.trusted || !client.auth_user.empty();
  // Address literals ("[192.0.2.1]") are never local here. Only trusted
  // networks may use them: for anyone else, authenticated or not, they are
  // a way around domain-based policy (RFC 5321 4.1.3 makes them optional).
  if (!rcpt.domain.empty() && rcpt.domain.front() == '[') {
    if (client.trusted) return Verdict{Verdict::Kind::kAccept};
    spdlog::info(
        "smtp relay denied client={} user={} rcpt=<{}> reason=address-literal",
        client.ip, client.auth_user, rcpt.ToString());
    return Verdict{Verdict::Kind::kRelayDenied};
  }
  if (!rcpt.domain.empty() && IsRelayTrick(rcpt) &&
      directory.IsLocalDomain(rcpt.domain)) {
    spdlog::warn("smtp relay trick refused client={} user={} rcpt=<{}>",
                 client.ip, client.auth_user, rcpt.ToString());
    return Verdict{Verdict::Kind::kRelayDenied};
  }
  auto res = directory.Resolve(DirectoryAddress(rcpt));
  switch (res.kind) {
    case auth::Resolution::Kind::kLocal:
      return Verdict{Verdict::Kind::kAccept};
    case auth::Resolution::Kind::kUnknown:
      spdlog::info("smtp rcpt rejected client={} rcpt=<{}> reason=unknown-user",
                   client.ip, rcpt.ToString());
      return Verdict{Verdict::Kind::kUnknownUser};
    case auth::Resolution::Kind::kNotLocal:
      if (may_relay) return Verdict{Verdict::Kind::kAccept};
      spdlog::info("smtp relay denied client={} rcpt=<{}>", client.ip,
                   rcpt.ToString());
      return Verdict{Verdict::Kind::kRelayDenied};
  }
  return Verdict{Verdict::Kind::kTempFail};
}

}  // namespace tern::policy
