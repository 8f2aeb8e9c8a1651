// The IMAP server side of a running Tern: what its connections share
// (credentials, the AUTH throttle shared with SMTP and POP3, TLS, the mail
// root, the change hub that wakes IDLE sessions, settings that SIGHUP
// replaces) and one net::Service per imap or imaps listener. The
// connections are in connection.cc.
#pragma once

#include <asio.hpp>

#include <memory>
#include <string>

#include "auth/credentials.h"
#include "auth/throttle.h"
#include "common/current.h"
#include "config/config.h"
#include "net/accept.h"
#include "net/registry.h"
#include "net/tls.h"
#include "imap/server/text_indexer.h"
#include "store/change_hub.h"
#include "store/quota.h"
#include "auth/directory.h"

namespace tern::imap {

struct Settings {
  config::ImapSettings imap;
  std::string hostname;
  uint64_t quota_storage = 0;  // [quota] storage, the default per account
};

// The server's parts that IMAP connections use; they outlive the server.
struct ServerDeps {
  auth::CredentialStore& credentials;
  auth::AuthThrottle& throttle;
  // Password checks and every mail store call run here.
  asio::thread_pool& blocking;
  const Current<net::TlsContexts>& tls;
  std::string mail_root;  // data_dir/mail
  store::ChangeHub& changes;
  // Quotas (RFC 9208): each account's own limit, and usage shared with
  // SMTP. Null: no quotas.
  auth::Directory* directory = nullptr;
  store::QuotaUsage* quota = nullptr;
};

class Server {
 public:
  Server(ServerDeps deps, const config::Config& cfg);
  void Reload(const config::Config& cfg);
  std::unique_ptr<net::Service> MakeListener(const config::Listener& listener);

  ServerDeps& deps() { return deps_; }
  std::shared_ptr<const Settings> settings() const { return settings_.get(); }
  net::ConnectionLimiter& limiter() { return limiter_; }
  TextIndexer& indexer() { return indexer_; }

 private:
  ServerDeps deps_;
  Current<const Settings> settings_;
  net::ConnectionLimiter limiter_;  // all IMAP listeners together
  TextIndexer indexer_;
};

}  // namespace tern::imap
