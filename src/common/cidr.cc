// CIDR parsing and matching. IPv4 is parsed here, digit by digit, so that
// every mistake gets its own reason; IPv6 goes to inet_pton (RFC 4291 2.2
// text forms) once the cases it cannot explain are ruled out.
#include "common/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace tern {
namespace {

constexpr std::string_view kWhiteSpace = " \t\r\n\v\f";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool AllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), IsDigit);
}

// RFC 4291 2.5.5.2: ::ffff:0:0/96 holds the IPv4 addresses.
IpOctets MappedPrefix() {
  IpOctets out{};
  out[10] = 0xff;
  out[11] = 0xff;
  return out;
}

// Dotted-quad IPv4 (RFC 791 style, as inet_pton accepts it): four decimal
// numbers 0-255 without leading zeros.
Result<IpOctets> ParseIpv4(std::string_view text) {
  IpOctets out = MappedPrefix();
  size_t parts = std::count(text.begin(), text.end(), '.') + 1;
  if (parts != 4) {
    return Err("an IPv4 address has four numbers separated by dots, not " +
               std::to_string(parts));
  }
  size_t start = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = text.find('.', start);
    std::string_view part = text.substr(start, dot - start);
    start = dot + 1;
    if (part.empty()) return Err("empty number in IPv4 address");
    if (part.size() > 3 || std::stoi(std::string(part)) > 255) {
      return Err("IPv4 address number " + std::string(part) +
                 " is out of range (0-255)");
    }
    if (part.size() > 1 && part.front() == '0') {
      // inet_aton would read "010" as octal 8; say so instead of guessing.
      return Err("IPv4 address number " + std::string(part) +
                 " has a leading zero (octal to some programs)");
    }
    out[12 + i] = static_cast<uint8_t>(std::stoi(std::string(part)));
  }
  return out;
}

// Zero from bit `prefix` on (bits counted from the most significant).
IpOctets Masked(IpOctets a, int prefix) {
  for (int bit = prefix; bit < 128; ++bit) {
    a[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  return a;
}

std::string Format(const IpOctets& a, bool ipv4) {
  if (ipv4) {
    return std::to_string(a[12]) + "." + std::to_string(a[13]) + "." +
           std::to_string(a[14]) + "." + std::to_string(a[15]);
  }
  char buf[INET6_ADDRSTRLEN];
  in6_addr in;
  std::memcpy(&in, a.data(), 16);
  // inet_ntop writes RFC 5952 text: lower case, longest zero run as "::".
  if (inet_ntop(AF_INET6, &in, buf, sizeof buf) == nullptr) return "?";
  return buf;
}

}  // namespace

std::string Cidr::ToString() const {
  return Format(network, ipv4) + "/" + std::to_string(WrittenPrefix());
}

bool Cidr::Contains(const IpOctets& address) const {
  int full = prefix / 8;
  if (!std::equal(network.begin(), network.begin() + full, address.begin())) {
    return false;
  }
  int rest = prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (address[full] & mask) == (network[full] & mask);
}

Result<IpOctets> ParseIpAddress(std::string_view text) {
  if (text.empty()) return Err("missing address");
  if (text.find_first_of(kWhiteSpace) != std::string_view::npos) {
    return Err("contains white space");
  }
  if (text.find(':') != std::string_view::npos) {
    if (size_t pct = text.find('%'); pct != std::string_view::npos) {
      // RFC 4007 11: a zone index picks an interface of this host.
      return Err("IPv6 zone id \"" + std::string(text.substr(pct)) +
                 "\" is not allowed here (a zone names an interface of "
                 "this machine, not a network)");
    }
    std::string s(text);
    in6_addr in;
    if (inet_pton(AF_INET6, s.c_str(), &in) != 1) {
      return Err("not an IPv6 address");
    }
    IpOctets out;
    std::memcpy(out.data(), &in, 16);
    return out;
  }
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return IsDigit(c) || c == '.'; })) {
    return ParseIpv4(text);
  }
  return Err("not an IP address (host names are not allowed)");
}

Result<Cidr> ParseCidr(std::string_view text) {
  if (text.empty()) {
    return Err(
        "empty (expected a network such as 192.0.2.0/24 or "
        "2001:db8::/32)");
  }
  if (text.find_first_of(kWhiteSpace) != std::string_view::npos) {
    return Err("contains white space");
  }
  size_t slash = text.find('/');
  std::string_view addr_text = text.substr(0, slash);
  if (addr_text.empty()) return Err("missing address before \"/\"");
  Result<IpOctets> addr = ParseIpAddress(addr_text);
  if (!addr) return tl::unexpected(addr.error());
  Cidr net;
  net.ipv4 = addr_text.find(':') == std::string_view::npos;
  const int max = net.ipv4 ? 32 : 128;
  const char* family = net.ipv4 ? "IPv4" : "IPv6";
  int prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty()) return Err("missing prefix length after \"/\"");
    if (!AllDigits(digits)) {
      return Err("prefix length \"" + std::string(digits) +
                 "\" is not a decimal number");
    }
    if (digits.size() > 3 || std::stoi(std::string(digits)) > max) {
      return Err("prefix length " + std::string(digits) +
                 " is out of range for " + family + " (0-" +
                 std::to_string(max) + ")");
    }
    prefix = std::stoi(std::string(digits));
  }
  net.prefix = net.ipv4 ? prefix + 96 : prefix;
  net.network = Masked(*addr, net.prefix);
  if (net.network != *addr) {
    // RFC 4632 3.1: the bits after the prefix are zero in a network
    // address; anything else is most likely a typo.
    return Err("host bits set: did you mean " + net.ToString() + "?");
  }
  return net;
}

std::optional<IpOctets> ParseClientAddress(std::string_view text) {
  if (text.find(':') != std::string_view::npos) {
    // The zone of a link-local peer says which interface it came in on;
    // the address is still in fe80::/10.
    text = text.substr(0, text.find('%'));
  }
  Result<IpOctets> addr = ParseIpAddress(text);
  if (!addr) return std::nullopt;
  return *addr;
}

bool IsIpv4(const IpOctets& address) {
  IpOctets prefix = MappedPrefix();
  return std::equal(address.begin(), address.begin() + 12, prefix.begin());
}

}  // namespace tern
