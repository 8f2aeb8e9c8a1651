// IP networks in CIDR notation and membership tests.
#include "policy/network.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace tern::policy {

std::optional<std::array<uint8_t, 16>> ParseIp(std::string_view text) {
  std::string s(text);
  std::array<uint8_t, 16> out{};
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(&out[12], &v4, 4);
    return out;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

std::optional<Network> ParseNetwork(std::string_view text) {
  std::string_view addr = text;
  int prefix = -1;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || ptr != p.data() + p.size() || prefix < 0) {
      return std::nullopt;
    }
  }
  auto ip = ParseIp(addr);
  if (!ip) return std::nullopt;
  bool v4 = addr.find(':') == std::string_view::npos;
  int max = v4 ? 32 : 128;
  if (prefix < 0) prefix = max;
  if (prefix > max) return std::nullopt;
  Network n;
  n.addr = *ip;
  n.prefix = v4 ? prefix + 96 : prefix;
  return n;
}

NetworkList::NetworkList(const std::vector<std::string>& cidrs) {
  for (const auto& c : cidrs) {
    if (auto n = ParseNetwork(c)) nets_.push_back(*n);
  }
}

bool NetworkList::Contains(std::string_view ip) const {
  auto a = ParseIp(ip);
  if (!a) return false;
  for (const auto& n : nets_) {
    int bits = n.prefix;
    size_t i = 0;
    bool match = true;
    for (; bits >= 8; bits -= 8, ++i) {
      if ((*a)[i] != n.addr[i]) {
        match = false;
        break;
      }
    }
    if (match && bits > 0) {
      uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
      match = ((*a)[i] & mask) == (n.addr[i] & mask);
    }
    if (match) return true;
  }
  return false;
}

}  // namespace tern::policy
