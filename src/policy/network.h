// The trusted networks as a list to test client addresses against. Parsing
// and matching are common/cidr.h's; this is the list the server keeps.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/cidr.h"

namespace tern::policy {

class NetworkList {
 public:
  NetworkList() = default;
  // The entries come from config, which has refused every one that
  // ParseCidr refuses (host bits included) with its reason. Should one get
  // here anyway it is skipped: it trusts nobody.
  explicit NetworkList(const std::vector<std::string>& cidrs);
  // `ip` as ClientInfo holds it: IPv4, IPv6, IPv4-mapped IPv6 (matching the
  // IPv4 networks), or link-local with a zone id (ignored). Anything else is
  // in no network.
  bool Contains(std::string_view ip) const;
  bool empty() const { return nets_.empty(); }
  const std::vector<Cidr>& networks() const { return nets_; }

 private:
  std::vector<Cidr> nets_;
};

}  // namespace tern::policy
