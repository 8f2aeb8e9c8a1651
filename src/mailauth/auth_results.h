// The Authentication-Results header field (RFC 8601): written with our
// verdicts for SPF, DKIM, DMARC and ARC, and read far enough to remove
// copies that claim our authserv-id before the message reaches us.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::mailauth {

// RFC 8601 2.2 propspec: ptype.property=value ("smtp.mailfrom=example.com").
struct AuthProperty {
  std::string ptype;     // "smtp", "header", "body", "policy"
  std::string property;  // "mailfrom", "helo", "d", "s", "b", "from", ...
  std::string value;     // quoted on output when it must be
};

// RFC 8601 2.2 resinfo: one method's result.
struct AuthMethodResult {
  std::string method;   // "spf", "dkim", "dmarc", "arc", ...
  std::string result;   // "pass", "fail", ...
  std::string comment;  // written as "(comment)" after the result if set
  std::string reason;   // written as reason="..." if set
  std::vector<AuthProperty> properties;
};

// spf=RESULT smtp.mailfrom=IDENTITY, or smtp.helo=IDENTITY when SPF was
// checked for the HELO name (RFC 8601 2.7.2; RFC 7208 9.1 / 2.4).
AuthMethodResult SpfAuthResult(std::string_view result,
                               std::string_view identity, bool helo = false);

// dkim=RESULT header.d=D header.s=S header.b=B (RFC 8601 2.7.1, RFC
// 6008): only the first 8 characters of b= are kept, enough to tell two
// signatures of one domain apart. Empty values are left out.
AuthMethodResult DkimAuthResult(std::string_view result, std::string_view d,
                                std::string_view s, std::string_view b,
                                std::string_view reason = {});

// dmarc=RESULT header.from=DOMAIN (RFC 7489 11.2); `comment` may carry the
// policy, e.g. "p=reject dis=quarantine".
AuthMethodResult DmarcAuthResult(std::string_view result,
                                 std::string_view from_domain,
                                 std::string_view comment = {});

// arc=RESULT (RFC 8617 10.2), with smtp.remote-ip when given.
AuthMethodResult ArcAuthResult(std::string_view result,
                               std::string_view remote_ip = {});

// The whole field, "Authentication-Results: ID;\r\n\tspf=...;\r\n\t...\r\n":
// one result per line, longer results folded at spaces near 78 octets
// (RFC 5322 2.1.1). No results gives "ID; none" (RFC 8601 2.2
// no-result). Values that are not RFC 2045 tokens (nor, for properties,
// local-part@domain) are quoted (RFC 8601 2.2); control characters are
// dropped so that nothing can end the field early.
std::string FormatAuthResults(std::string_view authserv_id,
                              const std::vector<AuthMethodResult>& results);

// RFC 8601 2.2 value = token / quoted-string (RFC 2045 5.1), as written.
std::string AuthResultsValue(std::string_view value);

// The authserv-id of an existing field, given its body (what follows
// "Authentication-Results:", folded or not): CFWS and comments before it
// are skipped, a quoted-string is unquoted. Lenient on purpose (an
// unterminated comment or quote ends at the end of the field), since it
// decides which fields are removed: a field that a lax reader downstream
// would take as ours must not survive. nullopt when no value starts it.
std::optional<std::string> ParseAuthServId(std::string_view field_body);

// RFC 8601 5: whether a field claims to come from `our_id` (compared
// without regard to case, and to a trailing dot); such fields arriving
// from outside must be removed before we add ours.
bool ClaimsAuthServId(std::string_view field_body, std::string_view our_id);

}  // namespace tern::mailauth
