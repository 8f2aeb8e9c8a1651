// Configuration to delivery options.
#include "delivery/setup.h"

namespace tern::delivery {

smtp::client::TlsPolicy TlsPolicyFrom(const std::string& text) {
  if (text == "none") return smtp::client::TlsPolicy::kNone;
  if (text == "required") return smtp::client::TlsPolicy::kRequired;
  return smtp::client::TlsPolicy::kOpportunistic;
}

OutboundOptions OutboundOptionsFrom(const config::Config& cfg) {
  const config::DeliverySettings& d = cfg.delivery;
  OutboundOptions o;
  o.hostname = cfg.hostname;
  o.mx_port = d.mx_port;
  o.dns_upstreams = cfg.dns.upstream;
  o.dns_trust_anchor = cfg.dns.trust_anchor;
  o.tls = TlsPolicyFrom(d.tls);
  o.ca_file = d.ca_file;
  o.mta_sts = d.mta_sts;
  o.mta_sts_port = d.mta_sts_port;
  o.mta_sts_dir = cfg.data_dir + "/mta-sts";
  if (d.tlsrpt) {
    o.tlsrpt_data_dir = cfg.data_dir;
    o.tlsrpt_interval = d.tlsrpt_interval;
    // RFC 8460 5.3 asks for no particular sender; the postmaster of our
    // first domain answers for the reports.
    o.tlsrpt_from =
        "postmaster@" + (cfg.domains.empty() ? cfg.hostname : cfg.domains.front());
  }
  o.max_connections = d.max_connections;
  o.max_connections_per_destination = d.max_connections_per_destination;
  o.max_messages_per_connection = d.max_messages_per_connection;
  o.connect_timeout = d.connect_timeout;
  o.greeting_timeout = d.greeting_timeout;
  o.command_timeout = d.command_timeout;
  o.data_init_timeout = d.data_init_timeout;
  o.data_block_timeout = d.data_block_timeout;
  o.final_timeout = d.final_timeout;
  for (const config::Route& r : cfg.routes) {
    RouteConfig rc;
    rc.domain = r.domain;
    rc.relay_host = r.relay_host;
    rc.relay_port = r.relay_port;
    rc.tls = TlsPolicyFrom(r.tls);
    rc.auth_user = r.auth_user;
    rc.auth_password = r.auth_password;
    rc.ca_file = r.ca_file;
    o.routes.push_back(std::move(rc));
  }
  return o;
}

void ApplyDeliveryConfig(const config::Config& cfg, queue::Options* options) {
  const config::DeliverySettings& d = cfg.delivery;
  options->retry_seconds = d.retry_first;
  options->max_retry_seconds = d.retry_max;
  options->max_lifetime = d.max_lifetime;
  options->delay_warning = d.delay_warning;
}

}  // namespace tern::delivery
