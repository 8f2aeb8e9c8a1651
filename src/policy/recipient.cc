// Recipient policy: relay control and unknown-user checks at RCPT time.
#include "policy/recipient.h"

#include <spdlog/spdlog.h>

namespace tern::policy {

using Verdict = smtp::RcptVerdict;

std::string DirectoryAddress(const smtp::Mailbox& m) {
  if (m.domain.empty()) return m.local;
  return m.local + "@" + m.domain;
}

Verdict CheckRecipient(auth::Directory& directory,
                       const smtp::ClientInfo& client,
                       const smtp::Mailbox& rcpt) {
  const bool may_relay = client.trusted || !client.auth_user.empty();
  // Address literals ("[192.0.2.1]") are never local here: mail for a
  // literal is relaying unless the client may relay.
  if (!rcpt.domain.empty() && rcpt.domain.front() == '[') {
    if (may_relay) return Verdict{Verdict::Kind::kAccept};
    spdlog::info("smtp relay denied client={} rcpt=<{}> reason=address-literal",
                 client.ip, rcpt.ToString());
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
