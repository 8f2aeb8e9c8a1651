// The trusted networks list: parsed once, tested per connection.
#include "policy/network.h"

#include <algorithm>

namespace tern::policy {

NetworkList::NetworkList(const std::vector<std::string>& cidrs) {
  for (const std::string& text : cidrs) {
    if (Result<Cidr> net = ParseCidr(text)) nets_.push_back(*net);
  }
}

bool NetworkList::Contains(std::string_view ip) const {
  std::optional<IpOctets> address = ParseClientAddress(ip);
  if (!address) return false;
  return std::any_of(nets_.begin(), nets_.end(),
                     [&](const Cidr& net) { return net.Contains(*address); });
}

}  // namespace tern::policy
