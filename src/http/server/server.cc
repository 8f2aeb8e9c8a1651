// HTTP connections on the shared connection core, the routes of the three
// web listeners, and the listeners that make the connections.
#include "http/server/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "common/metrics.h"
#include "common/strings.h"
#include "net/line_connection.h"

namespace tern::http {
namespace {

using asio::ip::tcp;

// Prometheus' text format (exposition format 0.0.4).
constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

Response Document(std::string type, std::string body) {
  Response r;
  r.content_type = std::move(type);
  r.body = std::move(body);
  // Clients cache these; a day is short enough for a changed port to
  // reach them and long enough to spare the server.
  r.headers.emplace_back("Cache-Control", "max-age=86400");
  return r;
}

Response NotFound() { return Text(404, "Not found\n"); }

Response MethodNotAllowed(std::string allow) {
  Response r = Text(405, "Method not allowed\n");
  r.headers.emplace_back("Allow", std::move(allow));
  return r;
}

bool IsLocal(const Settings& s, std::string_view domain) {
  return std::find(s.domains.begin(), s.domains.end(), domain) != s.domains.end();
}

// The domain of an address ("user@Example.org" -> "example.org") when it
// is one of ours.
std::optional<std::string> LocalDomainOf(const Settings& s, std::string_view email) {
  size_t at = email.rfind('@');
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  std::string domain = ToLower(email.substr(at + 1));
  if (!IsLocal(s, domain)) return std::nullopt;
  return domain;
}

// Which of our domains a request is about: the address it names, else the
// host it was sent to (DOMAIN, autoconfig.DOMAIN, autodiscover.DOMAIN),
// else, for the server's own name, the first domain.
std::optional<std::string> DomainFor(const Settings& s, const Request& req) {
  if (auto email = req.QueryParam("emailaddress"); email && !email->empty()) {
    return LocalDomainOf(s, *email);
  }
  std::string_view host = req.host;
  for (std::string_view prefix : {"autoconfig.", "autodiscover."}) {
    if (host.starts_with(prefix)) host.remove_prefix(prefix.size());
  }
  if (IsLocal(s, host)) return std::string(host);
  if (req.host == s.hostname && !s.domains.empty()) return s.domains.front();
  return std::nullopt;
}

MailEndpoints EndpointsFor(const Settings& s, const std::string& domain) {
  MailEndpoints m = s.endpoints;
  m.domain = domain;
  return m;
}

// A valid address we serve: one '@', a local domain, no characters that
// could break out of the documents (they are escaped anyway).
bool UsableEmail(const Settings& s, std::string_view email) {
  if (email.size() > 254 || email.find_first_of("<>&\"\r\n\t ") != std::string_view::npos) {
    return false;
  }
  return LocalDomainOf(s, email).has_value();
}

bool AdminAllowed(const Settings& s, const std::string& ip) {
  auto octets = ParseClientAddress(ip);
  if (!octets) return false;
  // Loopback: 127.0.0.0/8 and ::1 (ParseClientAddress maps v4-in-v6).
  if (IsIpv4(*octets) ? (*octets)[12] == 127
                      : std::all_of(octets->begin(), octets->end() - 1,
                                    [](uint8_t b) { return b == 0; }) &&
                            (*octets)[15] == 1) {
    return true;
  }
  for (const Cidr& c : s.admin_networks) {
    if (c.Contains(*octets)) return true;
  }
  return false;
}

bool IsGet(const Request& req) { return req.method == "GET" || req.method == "HEAD"; }

Response Autoconfig(const Settings& s, const Request& req) {
  if (!IsGet(req)) return MethodNotAllowed("GET, HEAD");
  auto domain = DomainFor(s, req);
  if (!domain) return NotFound();
  return Document("application/xml; charset=utf-8", AutoconfigXml(EndpointsFor(s, *domain)));
}

Response Autodiscover(const Settings& s, const Request& req) {
  if (req.method != "POST") return MethodNotAllowed("POST");
  auto email = AutodiscoverRequestEmail(req.body);
  if (!email) return Text(400, "No EMailAddress in the request\n");
  if (!UsableEmail(s, *email)) return NotFound();
  auto domain = LocalDomainOf(s, *email);
  Response r = Document("application/xml; charset=utf-8",
                        AutodiscoverXml(EndpointsFor(s, *domain), *email));
  r.headers.clear();  // per user: not for shared caches
  r.headers.emplace_back("Cache-Control", "private, max-age=3600");
  return r;
}

Response AppleProfile(const Settings& s, const Request& req) {
  if (!IsGet(req)) return MethodNotAllowed("GET, HEAD");
  auto email = req.QueryParam("emailaddress");
  if (!email) return Text(400, "Add ?emailaddress=you@domain to the address\n");
  if (!UsableEmail(s, *email)) return NotFound();
  auto domain = LocalDomainOf(s, *email);
  Response r;
  r.content_type = "application/x-apple-aspen-config";
  r.body = MobileConfig(EndpointsFor(s, *domain), *email);
  r.headers.emplace_back("Content-Disposition",
                         "attachment; filename=\"" + *domain + ".mobileconfig\"");
  return r;
}

// RFC 8461 3.3: the policy host is exactly mta-sts.DOMAIN.
Response MtaSts(const Settings& s, const Request& req) {
  if (!IsGet(req)) return MethodNotAllowed("GET, HEAD");
  std::string_view host = req.host;
  if (!host.starts_with("mta-sts.")) return NotFound();
  host.remove_prefix(8);
  if (!IsLocal(s, host)) return NotFound();
  Response r;
  r.content_type = "text/plain; charset=utf-8";
  r.body = MtaStsPolicy(s.http.mta_sts_mode, {s.hostname}, s.http.mta_sts_max_age);
  return r;
}

bool IsAutoconfigPath(std::string_view path) {
  return path == "/mail/config-v1.1.xml" ||
         path == "/.well-known/autoconfig/mail/config-v1.1.xml";
}

}  // namespace

Settings SettingsFrom(const config::Config& cfg) {
  Settings s;
  s.http = cfg.http;
  s.hostname = ToLower(cfg.hostname);
  for (const std::string& d : cfg.domains) s.domains.push_back(ToLower(d));
  s.endpoints.hostname = s.hostname;
  // The first listener of each service is the one clients are told of.
  for (const config::Listener& l : cfg.listeners) {
    uint16_t* port = nullptr;
    if (l.service == "imaps") port = &s.endpoints.imaps;
    else if (l.service == "imap") port = &s.endpoints.imap;
    else if (l.service == "pop3s") port = &s.endpoints.pop3s;
    else if (l.service == "pop3") port = &s.endpoints.pop3;
    else if (l.service == "submissions") port = &s.endpoints.submissions;
    else if (l.service == "submission") port = &s.endpoints.submission;
    if (port != nullptr && *port == 0) *port = l.port;
  }
  for (const std::string& net : cfg.trusted_networks) {
    if (auto c = ParseCidr(net)) s.admin_networks.push_back(*c);
  }
  return s;
}

Response Route(const Settings& s, const Request& req, const RouteContext& ctx) {
  const std::string& path = req.path;
  if (ctx.site == Site::kAdmin) {
    if (!AdminAllowed(s, ctx.client_ip)) return Text(403, "Forbidden\n");
    if (path == "/metrics" || path == "/health") {
      if (!IsGet(req)) return MethodNotAllowed("GET, HEAD");
    }
    if (path == "/metrics") {
      Response r;
      r.content_type = kMetricsType;
      r.body = metrics::Text();
      return r;
    }
    if (path == "/health") {
      std::string why;
      bool ok = !ctx.healthy || ctx.healthy(&why);
      return ok ? Text(200, "ok\n") : Text(503, "unhealthy: " + why + "\n");
    }
    return NotFound();
  }

  // ACME HTTP-01 (RFC 8555 8.3): on port 80, by the token in the path.
  constexpr std::string_view kAcme = "/.well-known/acme-challenge/";
  if (ctx.site == Site::kHttp && std::string_view(path).starts_with(kAcme)) {
    if (!IsGet(req)) return MethodNotAllowed("GET, HEAD");
    std::string token = path.substr(kAcme.size());
    auto answer = ctx.acme_http01 ? ctx.acme_http01(token) : std::nullopt;
    if (!answer) return NotFound();
    Response r;
    r.content_type = "application/octet-stream";
    r.body = *answer;
    return r;
  }
  // Thunderbird asks over plain HTTP as well as HTTPS; the answer holds
  // no secret, and a client that fetched it so still checks the TLS of
  // the mail server it names.
  if (IsAutoconfigPath(path)) return Autoconfig(s, req);

  if (ctx.site == Site::kHttp) {
    // Everything else lives on HTTPS. The host is kept only when it is
    // one of ours (no redirects to names an attacker chose).
    std::string_view host = req.host;
    for (std::string_view prefix : {"autoconfig.", "autodiscover.", "mta-sts."}) {
      if (host.starts_with(prefix)) host.remove_prefix(prefix.size());
    }
    std::string target = IsLocal(s, host) || host == s.hostname ? req.host : s.hostname;
    Response r = Text(IsGet(req) ? 301 : 308, "Moved to https\n");
    std::string location = "https://" + target + path;
    if (!req.query.empty()) location += "?" + req.query;
    r.headers.emplace_back("Location", location);
    return r;
  }

  std::string lower = ToLower(path);
  if (lower == "/autodiscover/autodiscover.xml") return Autodiscover(s, req);
  if (path == "/.well-known/mta-sts.txt") return MtaSts(s, req);
  if (path == "/mail.mobileconfig") return AppleProfile(s, req);
  if (path == "/") {
    if (!IsGet(req)) return MethodNotAllowed("GET, HEAD");
    return Text(200, "Tern mail server " + s.hostname + "\n");
  }
  return NotFound();
}

namespace {

class Connection : public net::LineConnection {
 public:
  Connection(tcp::socket socket, net::LineConnection::Options options, Server& server,
             std::shared_ptr<const Settings> settings, Site site, Limits limits)
      : net::LineConnection(std::move(socket), std::move(options)),
        server_(server),
        settings_(std::move(settings)),
        site_(site),
        session_(limits) {}

 protected:
  void Greet() override {}
  size_t Feed(std::string_view data) override { return session_.Feed(data); }
  Want want() override {
    switch (session_.need()) {
      case Need::kInput: return Want::kInput;
      case Need::kRespond: return Want::kWork;
      case Need::kClose: return Want::kClose;
    }
    return Want::kClose;
  }
  std::string& output() override { return session_.output(); }
  bool Busy() override { return session_.busy(); }
  void SayShutdown() override { session_.Shutdown(); }
  void SayTimeout() override { session_.Timeout(std::time(nullptr)); }
  void TlsStarted() override {}
  bool LingerOnClose() override { return true; }
  uint32_t CommandTimeout() override { return settings_->http.idle_timeout; }
  asio::awaitable<bool> Work() override {
    Answer();
    co_return true;
  }
  void Ended(net::EndReason reason, std::chrono::milliseconds elapsed) override {
    spdlog::info("http session client={} listener={} requests={} end={} ms={}",
                 options().client_ip, options().listener, session_.requests(),
                 net::EndReasonName(reason), elapsed.count());
  }

 private:
  // Routes the request, queues the answer, logs and counts it.
  void Answer() {
    RouteContext ctx;
    ctx.site = site_;
    ctx.client_ip = options().client_ip;
    ctx.acme_http01 = server_.deps().acme_http01;
    ctx.healthy = server_.deps().healthy;
    ctx.now = std::time(nullptr);
    const Request& req = session_.request();
    Response r = Route(*settings_, req, ctx);
    if (shutting_down()) session_.CloseAfterResponse();
    int status = r.status;
    // Never the query: it may carry an address; the path and host only.
    spdlog::info("http request client={} listener={} host={} method={} path={} status={}",
                 options().client_ip, options().listener, req.host, req.method,
                 req.path.size() > 200 ? req.path.substr(0, 200) + "..." : req.path, status);
    session_.Respond(std::move(r), ctx.now);
    metrics::Get().http_requests.With({options().listener, std::to_string(status)}).Inc();
  }

  Server& server_;
  std::shared_ptr<const Settings> settings_;
  Site site_;
  Session session_;
};

class Listener : public net::Service {
 public:
  Listener(Server& server, config::Listener listener)
      : server_(server), listener_(std::move(listener)) {
    site_ = listener_.service == "https"  ? Site::kHttps
            : listener_.service == "http" ? Site::kHttp
                                          : Site::kAdmin;
  }

  std::string_view protocol() const override { return "http"; }
  std::string_view listener() const override { return listener_.service; }
  net::ConnectionLimiter& limiter() override { return server_.limiter(); }
  Limits limits() override {
    const config::HttpSettings& h = server_.settings()->http;
    return {h.max_connections, h.max_connections_per_ip};
  }
  std::string RefusalLine() override {
    if (site_ == Site::kHttps) return {};
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
           "Retry-After: 10\r\nConnection: close\r\n\r\n";
  }
  std::shared_ptr<net::LineConnection> Make(tcp::socket socket,
                                            const std::string& ip) override {
    net::LineConnection::Options options;
    options.protocol = "http";
    options.listener = listener_.service;
    options.client_ip = ip;
    options.implicit_tls = site_ == Site::kHttps;
    options.tls = server_.deps().tls.get();
    return std::make_shared<Connection>(std::move(socket), std::move(options), server_,
                                        server_.settings(), site_, http::Limits());
  }

 private:
  Server& server_;
  config::Listener listener_;
  Site site_;
};

}  // namespace

Server::Server(ServerDeps deps, const config::Config& cfg) : deps_(std::move(deps)) {
  Reload(cfg);
}

void Server::Reload(const config::Config& cfg) {
  settings_.set(std::make_shared<const Settings>(SettingsFrom(cfg)));
}

std::unique_ptr<net::Service> Server::MakeListener(const config::Listener& listener) {
  return std::make_unique<Listener>(*this, listener);
}

}  // namespace tern::http
