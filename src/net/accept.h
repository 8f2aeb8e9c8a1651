// The accept loop every listener runs, over a small interface that each
// protocol implements: its limits, its refusal line and how to make a
// connection for an accepted socket.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "net/line_connection.h"
#include "net/registry.h"

namespace tern::net {

class Service {
 public:
  virtual ~Service() = default;
  virtual std::string_view protocol() const = 0;  // "smtp", for logs
  virtual std::string_view listener() const = 0;  // its service name
  // Shared by the protocol's listeners.
  virtual ConnectionLimiter& limiter() = 0;
  struct Limits {
    uint32_t max_total = 1000;
    uint32_t max_per_ip = 50;
  };
  virtual Limits limits() = 0;  // as now configured (SIGHUP may change them)
  // What a client over the limits is told ("" closes without a word).
  virtual std::string RefusalLine() = 0;
  // A connection for an admitted client, not started yet.
  virtual std::shared_ptr<LineConnection> Make(asio::ip::tcp::socket socket,
                                               const std::string& ip) = 0;
};

// Accepts on `acceptor` until it is closed or the registry stops: each
// client is admitted against the limits (or refused), registered, and its
// connection started on a strand of its own.
asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 Registry& registry, Service& service);

}  // namespace tern::net
