// The POP3 server side of a running Tern: what its connections share
// (credentials, the AUTH throttle shared with SMTP, TLS, the mail root,
// LOGIN-DELAY bookkeeping, settings that SIGHUP replaces) and one
// net::Service per pop3 or pop3s listener. The connections are in
// connection.cc.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "auth/credentials.h"
#include "auth/throttle.h"
#include "common/current.h"
#include "config/config.h"
#include "net/accept.h"
#include "net/registry.h"
#include "net/tls.h"
#include "store/change_hub.h"

namespace tern::pop3 {

struct Settings {
  config::Pop3Settings pop3;
  std::string hostname;
};

// The server's parts that POP3 connections use; they outlive the server.
struct ServerDeps {
  auth::CredentialStore& credentials;
  auth::AuthThrottle& throttle;  // shared with SMTP: one lockout per address
  // Password checks (Argon2id) and the syncs of an UPDATE run here.
  asio::thread_pool& blocking;
  const Current<net::TlsContexts>& tls;
  std::string mail_root;  // data_dir/mail, where delivery writes Maildirs
  // Told of UPDATE's deletions, so IMAP sessions show them at once.
  store::ChangeHub* changes = nullptr;
};

class Server {
 public:
  Server(ServerDeps deps, const config::Config& cfg);
  void Reload(const config::Config& cfg);
  // The service of one pop3 or pop3s listener.
  std::unique_ptr<net::Service> MakeListener(const config::Listener& listener);

  const ServerDeps& deps() const { return deps_; }
  std::shared_ptr<const Settings> settings() const { return settings_.get(); }
  net::ConnectionLimiter& limiter() { return limiter_; }
  // RFC 2449 6.8: false when `account` logged in less than `delay` seconds
  // ago; records this login otherwise.
  bool CheckLoginDelay(const std::string& account, uint32_t delay);

 private:
  ServerDeps deps_;
  Current<const Settings> settings_;
  net::ConnectionLimiter limiter_;  // all POP3 listeners together
  std::mutex mu_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> last_login_;
};

}  // namespace tern::pop3
