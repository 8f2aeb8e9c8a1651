// The SMTP server side of a running Tern: what its connections share (the
// directory, the queue, credentials, the AUTH throttle, TLS, settings that
// SIGHUP replaces) and one net::Service per smtp, submission or
// submissions listener. The connections themselves are in connection.cc.
#pragma once

#include <asio.hpp>

#include <memory>
#include <string>

#include "auth/credentials.h"
#include "auth/directory.h"
#include "auth/throttle.h"
#include "common/current.h"
#include "config/config.h"
#include "dns/resolver.h"
#include "mailauth/inbound.h"
#include "mailauth/outbound_signer.h"
#include "net/accept.h"
#include "net/registry.h"
#include "net/tls.h"
#include "store/quota.h"
#include "policy/network.h"
#include "queue/queue.h"
#include "smtp/protocol/session.h"

namespace tern::antispam {
class Greylist;
class RateLimiter;
}

namespace tern::reports {
class DmarcReportStore;
}  // namespace tern::reports

namespace tern::smtp {

// What connections need from the config, replaced whole on SIGHUP: a
// connection keeps the settings it started with.
struct Settings {
  config::SmtpLimits limits;
  SessionConfig session;  // the listener-independent part
  policy::NetworkList trusted;
  std::string hostname;
  // [mailauth]: SPF, DKIM and DMARC on port 25 for clients neither
  // authenticated nor trusted; DKIM signatures for the others.
  bool verify = false;
  mailauth::InboundSettings inbound;
  bool sign = false;
  uint64_t quota_storage = 0;  // [quota] storage: the default per account
  config::AntispamSettings antispam;  // port 25, strangers only
  config::RateLimitConfig rate;
  // [[milter]]: mail filters for every listener's mail, in order.
  std::vector<config::MilterConfig> milters;
};
std::shared_ptr<const Settings> MakeSettings(const config::Config& cfg);

// The server's parts that SMTP connections use; they outlive the server.
struct ServerDeps {
  auth::Directory& directory;
  queue::Queue& queue;
  auth::CredentialStore& credentials;
  auth::AuthThrottle& throttle;  // shared with POP3: one lockout per address
  asio::thread_pool& blocking;   // SASL steps (Argon2id) run here
  const Current<net::TlsContexts>& tls;  // null inside: no STARTTLS
  // Inbound mail authentication asks here (any thread may); null: no
  // checks, whatever the settings say.
  dns::Resolver* resolver = nullptr;
  // DKIM signing keys by domain (data_dir/dkim), replaced on SIGHUP.
  const Current<const mailauth::DkimKeyMap>* dkim_keys = nullptr;
  // Mailbox usage for quotas (RCPT to a full mailbox: 552 5.2.2); null:
  // not checked. The Maildirs are under mail_root.
  store::QuotaUsage* quota = nullptr;
  std::string mail_root;
  // Greylisting triplets ([antispam] greylist); null: not greylisting.
  antispam::Greylist* greylist = nullptr;
  // Rate limit counters, kept across SIGHUP; null: no limits.
  antispam::RateLimiter* rate = nullptr;
  // DMARC results for aggregate reports ([mailauth] dmarc_reports); null:
  // not recorded.
  reports::DmarcReportStore* dmarc_reports = nullptr;
};

class Server {
 public:
  Server(ServerDeps deps, const config::Config& cfg);
  // New settings for new connections (SIGHUP).
  void Reload(const config::Config& cfg) { settings_.set(MakeSettings(cfg)); }
  // The service of one smtp, submission or submissions listener.
  std::unique_ptr<net::Service> MakeListener(const config::Listener& listener);

  const ServerDeps& deps() const { return deps_; }
  std::shared_ptr<const Settings> settings() const { return settings_.get(); }
  net::ConnectionLimiter& limiter() { return limiter_; }

 private:
  ServerDeps deps_;
  Current<const Settings> settings_;
  net::ConnectionLimiter limiter_;  // all SMTP listeners together
};

}  // namespace tern::smtp
