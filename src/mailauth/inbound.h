// Mail authentication of one arriving message, as `tern serve` runs it on
// port 25 and `tern check message` from the shell: SPF for the sender (at
// MAIL time), DKIM and ARC hashed while the message streams in, then DMARC (with
// ARC's say for trusted forwarders) once it is complete, and one
// Authentication-Results header (RFC 8601) that records it all.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include "mailauth/arc.h"
#include "mailauth/auth_results.h"
#include "mailauth/dkim_verify.h"
#include "mailauth/dmarc.h"
#include "mailauth/spf.h"

namespace tern::dns {
class Resolver;
}  // namespace tern::dns

namespace tern::mailauth {

struct InboundSettings {
  std::string authserv_id;       // our host name (RFC 8601 2.5)
  bool dmarc_reject = true;      // p=reject: refuse after the final dot
  bool dmarc_quarantine = true;  // p=quarantine: deliver marked as junk
  bool spf_reject = false;       // SPF fail (no DMARC override): refuse MAIL
  // Domains whose ARC seal, on a chain that validates, may override a
  // DMARC failure (RFC 7489 10.1 and RFC 8617 7.2: forwarders and lists).
  std::vector<std::string> arc_trusted_sealers;
};

// The identities of the SMTP transaction that SPF and DMARC look at.
struct SmtpIdentity {
  std::string ip;
  std::string helo;
  std::string mail_from;  // without brackets; empty: the null sender
};

// SPF for the transaction (RFC 7208 2.3, 2.4: MAIL FROM, or the HELO name
// for the null sender). With an empty `who.mail_from` this is the check of
// the HELO identity, which RFC 7208 2.3 recommends doing as well.
asio::awaitable<SpfOutcome> CheckSender(dns::Resolver& resolver,
                                        SmtpIdentity who, std::string receiver);

// The MAIL reply line for an SPF fail when the settings say to refuse it
// (RFC 7372 3.2: 5.7.23), empty otherwise.
std::string SpfRefusal(const SpfOutcome& spf, const InboundSettings& settings);

// What becomes of a complete message.
struct InboundVerdict {
  enum class Action { kAccept, kJunk, kReject };
  Action action = Action::kAccept;
  std::string reply;          // kReject: the reply line (no CRLF)
  // Header fields to put before the message (CRLF lines): the
  // Authentication-Results, and an X-Spam marker for junk.
  std::string header_fields;
  std::string summary;        // "spf=pass dkim=pass dmarc=pass", for logs
  SpfOutcome spf;
  std::vector<DkimResult> dkim;
  ArcResult arc;
  DmarcOutcome dmarc;
  // A DMARC failure that was not acted on because the ARC chain passed
  // and its last sealer is trusted (RFC 7489 10.1, RFC 8617 7.2): the
  // sealer's name, else empty.
  std::string arc_override;
};

class InboundMessage {
 public:
  // Without `verify` only the header filter runs (mail from authenticated
  // and trusted clients: not checked, but no forged claim of our
  // authserv-id reaches a reader either); Finish() is not for it.
  InboundMessage(InboundSettings settings, int64_t now, bool verify = true);
  InboundMessage(const InboundMessage&) = delete;
  InboundMessage& operator=(const InboundMessage&) = delete;

  // Message bytes as they arrive (CRLF lines, dot-stuffing removed).
  // Appends to `out` what is to be stored: the same bytes, except header
  // fields Authentication-Results that claim our authserv-id (RFC 8601 5:
  // forged or left over from a previous hop, they must not reach the
  // reader). Header lines are held until each field is complete.
  void Feed(std::string_view chunk, std::string* out);
  // The last bytes: whatever Feed() still held goes to `out`.
  void End(std::string* out);

  // DKIM key lookups, DMARC, the verdict. `spf` is CheckSender's outcome
  // (nullopt: not checked, e.g. `tern check dkim`-style use); `helo_spf`
  // the separate check of the HELO identity (RFC 7208 2.3), recorded as
  // spf=... smtp.helo=... when MAIL FROM was not empty.
  asio::awaitable<InboundVerdict> Finish(
      dns::Resolver& resolver, SmtpIdentity who, std::optional<SpfOutcome> spf,
      std::optional<SpfOutcome> helo_spf = std::nullopt);

  // Header fields claiming our authserv-id that were dropped.
  int removed() const { return removed_; }

 private:
  void HeaderLine(std::string_view line, std::string* out);
  void FlushField(std::string* out);

  InboundSettings settings_;
  bool verify_;
  DkimVerifier dkim_;
  ArcVerifier arc_;
  bool in_body_ = false;
  std::string line_;          // an incomplete header line
  std::string field_;         // the header field being assembled
  std::string header_copy_;   // the header section, for DMARC's From
  bool header_too_big_ = false;
  int removed_ = 0;
};

}  // namespace tern::mailauth
