// Small string helpers shared by the protocol cores and the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern {

std::string ToLower(std::string_view s);
bool IEquals(std::string_view a, std::string_view b);
bool IStartsWith(std::string_view s, std::string_view prefix);
std::string_view Trim(std::string_view s);
std::vector<std::string> Split(std::string_view s, char sep);

// RFC 5322 3.3 date-time for the given Unix time, in local time with offset,
// e.g. "Fri, 27 Nov 2026 15:44:36 +0000".
std::string Rfc5322Date(int64_t unix_seconds);

// The address of a mailto: URI (RFC 6068 2: scheme in any case, "?hfields"
// dropped, %XX decoded; RFC 7489 6.4 writes a "!" as %21): "" unless it is
// one plain local@domain with nothing that would need quoting in an
// envelope or a header field (no controls, spaces, non-ASCII, `,<>"();\`)
// and every "%" starts a well-formed escape. For DMARC and TLS-RPT report
// addresses.
std::string MailtoAddress(std::string_view uri);

}  // namespace tern
