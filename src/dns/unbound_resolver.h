// The production resolver: libunbound in asynchronous mode, its result
// descriptor (ub_fd) watched by Asio so answers arrive on the caller's
// io_context without a thread per query.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>

#include "common/result.h"
#include "dns/resolver.h"

namespace tern::dns {

struct UnboundOptions {
  // "127.0.0.1:5353", "[::1]:53" or a bare address (port 53). Empty: the
  // system's resolvers from /etc/resolv.conf (and /etc/hosts).
  std::vector<std::string> upstreams;
  // A trust anchor file (e.g. /usr/share/dns/root.key) enables DNSSEC
  // validation; without one every answer is "insecure".
  std::string trust_anchor_file;
};

// Query() and the callbacks run on `executor`, which must be a single
// thread (or a strand).
Result<std::unique_ptr<Resolver>> MakeUnboundResolver(
    asio::any_io_executor executor, const UnboundOptions& options);

// "127.0.0.1:5353" -> "127.0.0.1@5353" (unbound's notation); error text when
// the address is not an IP literal with an optional port.
Result<std::string> UnboundUpstream(const std::string& text);

}  // namespace tern::dns
