// IP networks in CIDR notation (RFC 4632 3.1, RFC 4291 2.3): the one parser
// for configured networks, with a precise reason for every refusal, and the
// test of whether a client address lies in a network. Pure; no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace tern {

// An address in 16 octets. IPv4 is kept in the IPv4-mapped form
// ::ffff:a.b.c.d (RFC 4291 2.5.5.2), so one comparison serves both families
// and a dual-stack socket's "::ffff:192.0.2.1" is the same as "192.0.2.1".
using IpOctets = std::array<uint8_t, 16>;

struct Cidr {
  IpOctets network{};  // host bits are always zero
  int prefix = 0;      // over the 128-bit form: IPv4 "/8" is 104
  bool ipv4 = false;   // written in IPv4 notation

  // The prefix length as written: 0-32 for IPv4, 0-128 for IPv6.
  int WrittenPrefix() const { return ipv4 ? prefix - 96 : prefix; }
  // Canonical text: "192.0.2.0/24", "2001:db8::/32" (RFC 5952 4, lower
  // case, zeros compressed), "::ffff:10.0.0.0/104".
  std::string ToString() const;
  // True when the first `prefix` bits of `address` are the network's.
  // An IPv6 network written as such covers the IPv4 addresses whose mapped
  // form it covers: "::ffff:0:0/96" all of them, and so does "::/0".
  bool Contains(const IpOctets& address) const;

  bool operator==(const Cidr&) const = default;
};

// Parses "a.b.c.d/n" (n 0-32), "x:y::z/n" (n 0-128) or a bare address (a
// single host: /32 or /128). The rule, for every caller: host bits must be
// zero. "10.0.0.1/8" is refused ("host bits set: did you mean
// 10.0.0.0/8?"), since it is far more often a mistyped network than a
// deliberate one. Also refused, each with its reason: white space, IPv4
// octets with leading zeros (octal to some parsers, decimal to others),
// host names, IPv6 zone ids ("fe80::1%eth0": a zone names an interface of
// this machine, not a network), prefix lengths out of range, not decimal,
// or longer than three digits. The reason does not repeat `text`; callers
// say which value it was about.
Result<Cidr> ParseCidr(std::string_view text);

// True for an IPv4 address (its mapped form, ::ffff:0:0/96).
bool IsIpv4(const IpOctets& address);

// Parses one address, IPv4 or IPv6, by the same rules (no zone id).
Result<IpOctets> ParseIpAddress(std::string_view text);

// Parses a client address as the server reports it ("192.0.2.1", "::1",
// "::ffff:192.0.2.1", or link-local with a zone, "fe80::1%eth0", whose zone
// is dropped). Nullopt when it is none of these.
std::optional<IpOctets> ParseClientAddress(std::string_view text);

}  // namespace tern
