// IP networks in CIDR notation ("127.0.0.0/8", "::1/128") and membership
// tests, for trusted_networks and per-IP limits.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::policy {

struct Network {
  std::array<uint8_t, 16> addr{};  // IPv4 stored as IPv4-mapped IPv6
  int prefix = 0;                  // in IPv6 bits (IPv4 /8 becomes /104)
};

// "a.b.c.d/n", "x::y/n", or a bare address (host route).
std::optional<Network> ParseNetwork(std::string_view text);
// Parses an IP address (v4, v6, or v4-mapped v6) into 16 bytes.
std::optional<std::array<uint8_t, 16>> ParseIp(std::string_view text);

class NetworkList {
 public:
  NetworkList() = default;
  // Entries that fail to parse are skipped (config validation rejects them).
  explicit NetworkList(const std::vector<std::string>& cidrs);
  bool Contains(std::string_view ip) const;
  bool empty() const { return nets_.empty(); }

 private:
  std::vector<Network> nets_;
};

}  // namespace tern::policy
