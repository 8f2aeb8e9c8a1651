// POP3 connections: the coroutine that owns a socket and feeds the sans-I/O
// pop3::Session, and the Service that all POP3 connections share (password
// checks off the io threads, LOGIN-DELAY bookkeeping, the mail root). TLS,
// credentials and the AUTH failure throttle are the server's, shared with
// SMTP (server::Context).
#pragma once

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "server/context.h"

namespace tern::pop3 {

class Service {
 public:
  // `mail_root` is data_dir/mail, where delivery writes the Maildirs.
  Service(server::Context& ctx, std::string mail_root);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Takes over an accepted socket (on its own strand). The slot in
  // ctx.limiter() must be acquired; it is released at the end.
  void Start(asio::ip::tcp::socket socket, std::string listener_name,
             bool implicit_tls, bool allow_plaintext);
  // Waits for blocking work in flight (password checks, expunges); call
  // after the io context stopped and before it is destroyed.
  void Stop();

  server::Context& ctx() { return ctx_; }
  const std::string& mail_root() const { return mail_root_; }
  asio::thread_pool& pool() { return pool_; }
  // RFC 2449 6.8: false when `account` logged in less than `delay` ago;
  // records this login otherwise.
  bool CheckLoginDelay(const std::string& account, uint32_t delay);

 private:
  server::Context& ctx_;
  std::string mail_root_;
  // Argon2id checks take tens of milliseconds and most of a core; they and
  // the fsyncs of an expunge run here, not on the io threads.
  asio::thread_pool pool_{2};
  std::mutex mu_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> last_login_;
};

// Accepts POP3 connections on a bound listener until it closes.
asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor, Service& service,
                                 config::Listener listener);

}  // namespace tern::pop3
