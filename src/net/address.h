// The client address as policy, limits and logs see it: an IPv4 client on a
// dual-stack socket ("::ffff:192.0.2.1") is reported as plain IPv4.
#pragma once

#include <string>

#include <asio/ip/address.hpp>

namespace tern::net {

inline asio::ip::address ClientAddress(asio::ip::address addr) {
  if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  }
  return addr;
}

inline std::string ClientIp(const asio::ip::address& addr) {
  return ClientAddress(addr).to_string();
}

}  // namespace tern::net
