// The web side of a running Tern (issue 16): one net::Service per http,
// https or admin listener, on the shared connection core (limits,
// timeouts, TLS contexts) with the sans-I/O http::Session. What each
// listener answers:
//
//   http   autoconfig, ACME HTTP-01 challenges; anything else is
//          redirected to https
//   https  autoconfig, Autodiscover, Apple profiles, the MTA-STS policy
//   admin  /metrics (Prometheus text) and /health, for loopback and
//          trusted_networks clients only
//
// Routing is a pure function of the settings and the request (Route), so
// tests call it directly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/cidr.h"
#include "common/current.h"
#include "config/config.h"
#include "http/protocol/documents.h"
#include "http/protocol/session.h"
#include "net/accept.h"
#include "net/registry.h"
#include "net/tls.h"

namespace tern::http {

enum class Site { kHttp, kHttps, kAdmin };

// What the routing needs from the configuration, fixed per connection.
struct Settings {
  config::HttpSettings http;
  std::string hostname;
  std::vector<std::string> domains;     // local domains, lower case
  MailEndpoints endpoints;              // ports; domain filled per request
  std::vector<Cidr> admin_networks;     // besides loopback
};

Settings SettingsFrom(const config::Config& cfg);

// The answer to one request. `client_ip` decides admin access; `healthy`
// is what /health reports.
struct RouteContext {
  Site site = Site::kHttps;
  std::string client_ip;
  // ACME HTTP-01 (RFC 8555 8.3): the key authorization for a token, or
  // nullopt when no such challenge is pending.
  std::function<std::optional<std::string>(const std::string& token)> acme_http01;
  std::function<bool(std::string* why)> healthy;
  int64_t now = 0;
};
Response Route(const Settings& settings, const Request& request, const RouteContext& ctx);

struct ServerDeps {
  const Current<net::TlsContexts>& tls;
  std::function<std::optional<std::string>(const std::string& token)> acme_http01;
  std::function<bool(std::string* why)> healthy;
};

class Server {
 public:
  Server(ServerDeps deps, const config::Config& cfg);
  void Reload(const config::Config& cfg);
  std::unique_ptr<net::Service> MakeListener(const config::Listener& listener);

  const ServerDeps& deps() const { return deps_; }
  std::shared_ptr<const Settings> settings() const { return settings_.get(); }
  net::ConnectionLimiter& limiter() { return limiter_; }

 private:
  ServerDeps deps_;
  Current<const Settings> settings_;
  net::ConnectionLimiter limiter_;  // http, https and admin together
};

}  // namespace tern::http
