// State shared by every connection of a running server: settings that a
// SIGHUP may replace, the directory and queue, connection accounting.
#pragma once

#include <asio/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "auth/credentials.h"
#include "auth/directory.h"
#include "auth/throttle.h"
#include "config/config.h"
#include "net/tls.h"
#include "policy/network.h"
#include "queue/queue.h"
#include "smtp/protocol/session.h"

namespace tern::server {

// An immutable snapshot of what connections need from the config; replaced
// whole on SIGHUP, so a connection keeps the settings it started with.
struct Settings {
  config::Config config;
  smtp::SessionConfig session;
  policy::NetworkList trusted;
};

std::shared_ptr<const Settings> MakeSettings(const config::Config& cfg);

// Counts connections in total and per client IP.
class ConnectionLimiter {
 public:
  // Takes a slot, or returns false when a limit is reached.
  //
  // Fair share when the server is full: a client whose address holds at
  // least two connections fewer than the busiest address still gets a slot
  // (up to a sixteenth over `max_total`), and `*evict` names that busiest
  // address so the caller can close one of its connections. Without this,
  // a crowd of idle connections from a few dozen addresses, each under
  // `max_per_ip`, locks every other client out for as long as it stays.
  // Without `evict` the total is a hard limit.
  bool Acquire(const std::string& ip, uint32_t max_total, uint32_t max_per_ip,
               std::string* evict = nullptr);
  void Release(const std::string& ip);
  uint32_t total() const { return total_.load(); }
  uint32_t count(const std::string& ip);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, uint32_t> per_ip_;
  std::atomic<uint32_t> total_{0};
};

// Something a graceful shutdown must reach.
class Stoppable {
 public:
  virtual ~Stoppable() = default;
  // Called from any thread; the implementation posts to its own executor.
  virtual void RequestShutdown(bool force) = 0;
};

class Context {
 public:
  Context(std::shared_ptr<const Settings> settings, auth::Directory* directory,
          queue::Queue* queue);

  // Threads for work that must not run on an io thread (SASL password
  // checks). Joined by StopBlocking() before the io context goes away.
  asio::thread_pool& blocking() { return blocking_; }
  void StopBlocking() { blocking_.join(); }

  std::shared_ptr<const Settings> settings() const {
    std::lock_guard lock(mu_);
    return settings_;
  }
  void set_settings(std::shared_ptr<const Settings> s) {
    std::lock_guard lock(mu_);
    settings_ = std::move(s);
  }
  auth::Directory& directory() { return *directory_; }
  auth::CredentialStore& credentials() { return *credentials_; }
  // Failed AUTH attempts per client IP. Its limits are fixed at start-up:
  // a SIGHUP must not forget who is locked out.
  auth::AuthThrottle& throttle() { return *throttle_; }
  // Certificates for STARTTLS and implicit TLS; null without [tls].
  std::shared_ptr<net::TlsContexts> tls() const {
    std::lock_guard lock(mu_);
    return tls_;
  }
  void set_tls(std::shared_ptr<net::TlsContexts> tls) {
    std::lock_guard lock(mu_);
    tls_ = std::move(tls);
  }
  queue::Queue& queue() { return *queue_; }
  ConnectionLimiter& limiter() { return limiter_; }

  bool stopping() const { return stopping_.load(); }
  // Takes a connection slot for `ip` (limiter().Acquire with fair share);
  // when that needs room, the oldest connection of the busiest address is
  // asked to close (Stoppable::RequestShutdown(false)).
  bool Admit(const std::string& ip, uint32_t max_total, uint32_t max_per_ip);
  // Registers a live connection from `ip`; returns its key for Unregister.
  uint64_t Register(std::weak_ptr<Stoppable> c, std::string ip = {});
  void Unregister(uint64_t key);
  size_t live() const;
  // Sets stopping() and asks every live connection to finish.
  void ShutdownAll(bool force);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Settings> settings_;
  auth::Directory* directory_;
  queue::Queue* queue_;
  std::unique_ptr<auth::DirectoryCredentials> credentials_;
  std::unique_ptr<auth::AuthThrottle> throttle_;
  std::shared_ptr<net::TlsContexts> tls_;
  ConnectionLimiter limiter_;
  std::atomic<bool> stopping_{false};
  asio::thread_pool blocking_{2};
  uint64_t next_key_ = 1;
  struct Live {
    std::weak_ptr<Stoppable> conn;
    std::string ip;
    bool evicted = false;
  };
  std::map<uint64_t, Live> live_;  // by key: oldest first
};

}  // namespace tern::server
