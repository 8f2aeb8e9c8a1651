// The accept loop: see accept.h.
#include "net/accept.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/metrics.h"
#include "net/address.h"

namespace tern::net {

using asio::ip::tcp;

namespace {

// Metrics, outside the coroutine (g++ 12 mishandles braced lists built in
// coroutine bodies; see line_connection.cc).
void CountRefused(Service& service) {
  metrics::Get().connections_refused.With({service.protocol(), service.listener()}).Inc();
}

metrics::Series& CountAccepted(Service& service) {
  metrics::Get().connections.With({service.protocol(), service.listener()}).Inc();
  return metrics::Get().connections_open.With({service.protocol()});
}

}  // namespace

asio::awaitable<void> AcceptLoop(tcp::acceptor& acceptor, Registry& registry,
                                 Service& service) {
  auto& io = static_cast<asio::io_context&>(acceptor.get_executor().context());
  for (;;) {
    asio::error_code ec;
    tcp::socket socket(asio::make_strand(io));
    // The peer's address comes with accept() itself: no getpeername().
    tcp::endpoint remote;
    co_await acceptor.async_accept(socket, remote,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (registry.stopping() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: pause instead of spinning.
      spdlog::warn("accept on {} failed: {}", service.listener(), ec.message());
      asio::steady_timer t(io, std::chrono::milliseconds(100));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    std::string ip = ClientIp(remote.address());
    Service::Limits limits = service.limits();
    if (!registry.Admit(service.limiter(), ip, limits.max_total, limits.max_per_ip)) {
      spdlog::warn("{} connection refused client={} reason=limit listener={} total={}",
                   service.protocol(), ip, service.listener(),
                   service.limiter().total());
      CountRefused(service);
      Refuse(std::move(socket), service.RefusalLine());
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    std::shared_ptr<LineConnection> conn = service.Make(std::move(socket), ip);
    uint64_t key = registry.Register(conn, ip, &service.limiter());
    metrics::Series& open = CountAccepted(service);
    open.Add(1);
    conn->Start([&registry, key, &open] {
      open.Add(-1);
      registry.Unregister(key);
    });
  }
}

}  // namespace tern::net
