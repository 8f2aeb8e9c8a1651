// Outbound delivery: takes a message's remote recipients from the queue,
// groups them by destination (MX domain or relay), and delivers them over
// SMTP with connection reuse and concurrency limits, on its own thread and
// io_context. The outcome goes back to the queue as a RemoteReport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>

#include "common/result.h"
#include "delivery/routing.h"
#include "dns/resolver.h"
#include "queue/remote.h"
#include "smtp/client/session.h"

namespace tern::delivery {

struct OutboundOptions {
  std::string hostname = "localhost";  // EHLO name
  uint16_t mx_port = 25;               // tests use a high port
  std::vector<std::string> dns_upstreams;  // empty: system resolvers
  std::string dns_trust_anchor;
  std::vector<RouteConfig> routes;
  smtp::client::TlsPolicy tls = smtp::client::TlsPolicy::kOpportunistic;
  std::string ca_file;                 // extra CAs for MX certificates
  // MTA-STS (RFC 8461): policies looked up for MX destinations, cached in
  // mta_sts_dir ("" = memory only), fetched from this HTTPS port.
  bool mta_sts = true;
  std::string mta_sts_dir;
  uint16_t mta_sts_port = 443;         // tests use a high port
  // TLS-RPT (RFC 8460): TLS outcomes counted per policy domain, kept in
  // tlsrpt_data_dir/tlsrpt and reported every tlsrpt_interval seconds
  // (a UTC day), sent from tlsrpt_from. "" turns it off.
  std::string tlsrpt_data_dir;
  uint32_t tlsrpt_interval = 86400;
  std::string tlsrpt_from;
  uint32_t max_connections = 100;
  uint32_t max_connections_per_destination = 4;
  uint32_t max_messages_per_connection = 100;
  // RFC 5321 4.5.3.2 timeouts, in seconds.
  uint32_t connect_timeout = 30;
  uint32_t greeting_timeout = 300;     // 4.5.3.2.1
  uint32_t command_timeout = 300;      // 4.5.3.2.2 / .3 (MAIL, RCPT, ...)
  uint32_t data_init_timeout = 120;    // 4.5.3.2.4
  uint32_t data_block_timeout = 180;   // 4.5.3.2.5
  uint32_t final_timeout = 600;        // 4.5.3.2.6
  // The envelope sender for mail that an alias forwards (SRS: the next
  // hop's SPF check then sees our domain); unset, or the null sender: kept.
  std::function<std::string(const std::string& sender)> forward_sender;
  // The header fields (an ARC set, RFC 8617) to put on top of mail that an
  // alias forwards; "" to send it as stored. Called on the outbound thread.
  std::function<std::string(const std::string& message)> forward_seal;
  // Tests: a resolver made on the outbound executor instead of libunbound.
  std::function<std::unique_ptr<dns::Resolver>(asio::any_io_executor)>
      make_resolver;
};

class Outbound : public queue::RemoteSender {
 public:
  static Result<std::unique_ptr<Outbound>> Start(OutboundOptions options);
  ~Outbound() override = default;
  // Stop() (from RemoteSender) ends the thread; jobs in progress are
  // dropped (they stay queued and are retried after the next start).
};

}  // namespace tern::delivery
