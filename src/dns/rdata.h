// Decoding of the record data libunbound hands back (RFC 1035 3.3 wire
// format). Kept apart from the resolver so it can be unit tested and fuzzed:
// the bytes come from the network.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "dns/resolver.h"

namespace tern::dns {

// An uncompressed domain name in wire format (RFC 1035 3.1) to text: lower
// case, no trailing dot, "" for the root. nullopt when malformed or when
// `data` holds bytes after the name.
std::optional<std::string> NameFromWire(std::string_view data);

// RFC 1035 3.3.9 MX RDATA: preference, exchange.
std::optional<MxRecord> ParseMx(std::string_view rdata);
// RFC 2782: priority, weight, port (16 bits each), then the target name.
std::optional<SrvRecord> ParseSrv(std::string_view rdata);

// RFC 6698 2.1 TLSA RDATA: usage, selector, matching type (one octet
// each), then the association data (the rest, at least one octet).
std::optional<TlsaRecord> ParseTlsa(std::string_view rdata);

// RFC 1035 3.4.1 (A) and RFC 3596 2.2 (AAAA) RDATA to a textual address.
std::optional<std::string> ParseAddress(RrType type, std::string_view rdata);

// RFC 1035 3.3.14 TXT RDATA: one or more <character-string>s (a length
// octet, then that many octets), joined without separators.
std::optional<std::string> ParseTxt(std::string_view rdata);

}  // namespace tern::dns
