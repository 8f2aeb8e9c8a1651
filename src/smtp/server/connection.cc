// One SMTP connection: a coroutine reads bytes, feeds the session, writes its
// replies and carries out its requests (group commit of a message, TLS
// handshake, AUTH delays), with a watchdog coroutine enforcing the RFC 5321
// 4.5.3.2 timeouts.
#include "smtp/server/connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <ctime>

#include "common/strings.h"
#include "net/address.h"
#include "net/off_thread.h"
#include "net/stream.h"
#include "policy/recipient.h"
#include "policy/sender.h"
#include "smtp/protocol/session.h"
#include "smtp/server/envelope.h"

namespace tern::smtp {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// A client gets this long for a TLS handshake (RFC 5321 sets none; this is
// generous for any real client and short for a slow-loris).
constexpr uint32_t kHandshakeTimeout = 30;

// An error text from the queue that says the spool is out of space (the
// queue reports errno texts: ENOSPC, EDQUOT).
bool IsNoSpace(const std::string& text) {
  return text.find("No space left") != std::string::npos ||
         text.find("quota exceeded") != std::string::npos;
}

// Passes credential lookups through and remembers the user name asked
// about, so failures can be logged by name without looking at the SASL
// payload (which may hold a password).
class RecordingCredentials : public auth::CredentialStore {
 public:
  explicit RecordingCredentials(auth::CredentialStore& inner) : inner_(inner) {}
  auth::PasswordCheck CheckPassword(const std::string& user,
                                           const std::string& password) override {
    user_ = user;
    return inner_.CheckPassword(user, password);
  }
  auth::ScramAnswer Scram(
      const std::string& user) override {
    user_ = user;
    return inner_.Scram(user);
  }
  // Printable, bounded: it goes into a log line.
  std::string user() const {
    std::string u = user_.substr(0, 128);
    for (char& c : u) {
      if (static_cast<unsigned char>(c) < 32 || c == 127) c = '?';
    }
    return u;
  }
  void clear() { user_.clear(); }

 private:
  auth::CredentialStore& inner_;
  std::string user_;
};

class Connection : public server::Stoppable,
                   public SessionHost,
                   public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, server::Context& ctx,
             std::shared_ptr<const server::Settings> settings,
             const SessionConfig& session_config, ClientInfo client,
             std::string listener, bool implicit_tls)
      : stream_(std::move(socket)),
        timer_(stream_.socket().get_executor(), Clock::time_point::max()),
        ctx_(ctx),
        settings_(std::move(settings)),
        tls_(ctx.tls()),
        credentials_(ctx.credentials()),
        session_(session_config, *this, std::move(client)),
        listener_(std::move(listener)),
        implicit_tls_(implicit_tls),
        started_(Clock::now()) {}

  // --- server::Stoppable ---
  void RequestShutdown(bool force) override {
    asio::post(stream_.socket().get_executor(), [self = shared_from_this(), force] {
      self->shutdown_ = true;
      if (force || !self->session_.InTransaction()) {
        self->force_ = force;
        asio::error_code ignored;
        self->stream_.socket().cancel(ignored);
      }
    });
  }

  // --- SessionHost ---
  RcptVerdict CheckRecipient(const Transaction& t, const Mailbox& rcpt) override {
    return policy::CheckRecipient(ctx_.directory(), session_.client(), rcpt);
  }

  std::string BeginMessage(const Transaction& t) override {
    queue::Envelope env = MakeEnvelope(t, session_.client(),
                                       static_cast<int64_t>(std::time(nullptr)));
    summary_sender_ = env.sender;
    summary_rcpts_ = env.recipients.size();
    auto w = ctx_.queue().Begin(std::move(env));
    no_space_ = false;
    if (!w) {
      spdlog::error("smtp queue unavailable client={} error={}", client_ip(),
                    w.error().message);
      no_space_ = IsNoSpace(w.error().message);
      return {};
    }
    writer_ = std::move(*w);
    return writer_->id();
  }

  bool MessageData(std::string_view data) override {
    if (writer_ && writer_->Write(data)) return true;
    if (writer_ && !no_space_) {
      int err = writer_->error();
      no_space_ = err == ENOSPC || err == EDQUOT;
      spdlog::error("smtp queue write failed client={} errno={}", client_ip(),
                    err);
    }
    return false;
  }

  bool StorageFull() override { return no_space_; }

  void AbortMessage() override { writer_.reset(); }

  std::string Now() override { return Rfc5322Date(std::time(nullptr)); }

  SenderVerdict CheckMailFrom(const Mailbox& from) override {
    return policy::CheckMailFrom(ctx_.directory(), session_.client(), from);
  }

  bool HeaderSenderAllowed(const std::string& address,
                           std::string_view field) override {
    return policy::HeaderSenderAllowed(ctx_.directory(), session_.client(),
                                       address, field);
  }

  void RcptSyntaxError(std::string_view arg) override {
    // Bounded and printable: the text comes straight from the client.
    std::string shown(arg.substr(0, 300));
    for (char& ch : shown) {
      if (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) >= 127) {
        ch = '?';
      }
    }
    spdlog::info("smtp rcpt rejected client={} user={} arg={} reason=syntax",
                 client_ip(), session_.client().auth_user, shown);
  }

  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    credentials_.clear();
    return auth::MakeMechanism(name, credentials_);
  }

  bool AuthBlocked() override {
    if (!ctx_.throttle().Blocked(client_ip())) return false;
    spdlog::warn("smtp auth refused client={} reason=too-many-failures",
                 client_ip());
    return true;
  }

  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    auto delay = ctx_.throttle().Failure(client_ip());
    // Never the password or the SASL payload: the name and the outcome.
    spdlog::warn("smtp auth failed client={} listener={} mechanism={} user={} "
                 "delay_ms={}",
                 client_ip(), listener_, mechanism,
                 user.empty() ? credentials_.user() : std::string(user),
                 delay.count());
    return delay;
  }

  void AuthSucceeded(std::string_view mechanism,
                     const std::string& user) override {
    ctx_.throttle().Success(client_ip());
    spdlog::info("smtp auth ok client={} listener={} mechanism={} user={}",
                 client_ip(), listener_, mechanism, user);
  }

  friend asio::awaitable<void> Run(std::shared_ptr<Connection> c);
  friend asio::awaitable<void> Watchdog(std::shared_ptr<Connection> c);
  friend asio::awaitable<bool> Handshake(std::shared_ptr<Connection> c);
  friend asio::awaitable<void> Pause(std::shared_ptr<Connection> c,
                                     std::chrono::milliseconds delay);
  friend asio::awaitable<void> WriteOutput(std::shared_ptr<Connection> c,
                                           asio::error_code& ec);
  friend asio::awaitable<void> RunAndRelease(std::shared_ptr<Connection> c,
                                             uint64_t key, std::string ip);
  friend void tern::smtp::StartConnection(tcp::socket, server::Context&,
                                          const config::Listener&);

 private:
  const std::string& client_ip() const { return session_.client().ip; }
  // Moving the deadline later costs nothing: the watchdog wakes at the old
  // one and waits again. Only an earlier deadline re-arms the timer.
  void ArmDeadline(uint32_t seconds) {
    deadline_ = Clock::now() + std::chrono::seconds(seconds);
    if (deadline_ < timer_.expiry()) timer_.expires_at(deadline_);
  }

  net::Stream stream_;
  asio::steady_timer timer_;
  server::Context& ctx_;
  std::shared_ptr<const server::Settings> settings_;
  std::shared_ptr<net::TlsContexts> tls_;  // as at accept time
  // Declared before the session: its SASL mechanism refers to it.
  RecordingCredentials credentials_;
  // Declared before the session: ~Session may call AbortMessage().
  std::unique_ptr<queue::Writer> writer_;
  bool no_space_ = false;  // the last Begin or Write failed for want of space
  Session session_;
  std::string listener_;
  bool implicit_tls_ = false;
  std::array<char, 4096> buf_;
  Clock::time_point started_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  bool closed_ = false;
  bool shutdown_ = false;
  bool force_ = false;
  uint32_t messages_ = 0;
  std::string summary_sender_;
  size_t summary_rcpts_ = 0;
};

// Commits the current message through the queue's group commit and resumes
// on the connection's strand with the result.
asio::awaitable<Result<void>> CommitMessage(queue::Queue& queue,
                                            std::unique_ptr<queue::Writer> w) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(Result<void>)>(
      [&queue, &w](auto handler) {
        using Handler = decltype(handler);
        auto h = std::make_shared<Handler>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        queue.Commit(std::move(w), [h, ex](Result<void> r) {
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      asio::use_awaitable);
}

// Closes the socket when the deadline passes; reads and writes set it.
asio::awaitable<void> Watchdog(std::shared_ptr<Connection> c) {
  while (!c->closed_) {
    c->timer_.expires_at(c->deadline_);
    asio::error_code ec;
    co_await c->timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (c->closed_) break;
    if (c->deadline_ <= Clock::now()) {
      c->timed_out_ = true;
      c->deadline_ = Clock::time_point::max();
      asio::error_code ignored;
      c->stream_.socket().cancel(ignored);
    }
  }
}

asio::awaitable<void> WriteOutput(std::shared_ptr<Connection> c,
                                  asio::error_code& ec) {
  std::string& out = c->session_.output();
  if (out.empty()) co_return;
  co_await c->stream_.AsyncWrite(asio::buffer(out),
                                 asio::redirect_error(asio::use_awaitable, ec));
  out.clear();
}

// Runs the server side of a TLS handshake; true when TLS is up.
asio::awaitable<bool> Handshake(std::shared_ptr<Connection> c) {
  if (!c->tls_) co_return false;
  asio::error_code ec;
  c->ArmDeadline(std::min(kHandshakeTimeout,
                          c->settings_->config.smtp.command_timeout));
  co_await c->stream_.AsyncHandshake(c->tls_,
                                     asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    spdlog::info("smtp tls handshake failed client={} listener={} error={}",
                 c->client_ip(), c->listener_,
                 c->timed_out_ ? std::string("timeout") : ec.message());
    co_return false;
  }
  std::string version = c->stream_.version(), cipher = c->stream_.cipher();
  spdlog::info("smtp tls client={} listener={} version={} cipher={} sni={}",
               c->client_ip(), c->listener_, version, cipher,
               c->stream_.server_name());
  c->session_.TlsStarted(std::move(version), std::move(cipher));
  co_return true;
}

// Holds back a reply (after a failed AUTH) without blocking the thread.
asio::awaitable<void> Pause(std::shared_ptr<Connection> c,
                            std::chrono::milliseconds delay) {
  asio::steady_timer t(c->stream_.socket().get_executor(), delay);
  asio::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// One SASL mechanism step, run off the io thread.
struct SaslJob {
  Session* session;
  auth::SaslStep step;
  void Run() { step = session->RunSaslStep(); }
};

asio::awaitable<void> Run(std::shared_ptr<Connection> c) {
  const auto& limits = c->settings_->config.smtp;
  Session& s = c->session_;
  std::string reason = "eof";
  std::string pending;  // input the session has not consumed yet
  asio::error_code ec;
  // RFC 5321 4.5.3.2.7: the command timeout runs from our reply to the end
  // of the next command, not from byte to byte, so a client that sends a
  // byte every few seconds and never ends the line does not stay for ever.
  bool awaiting_command = true;

  // RFC 8314 3.3: on the submissions port TLS comes first, then SMTP.
  bool run = true;
  if (c->implicit_tls_ && !co_await Handshake(c)) {
    reason = "tls-handshake-failed";
    run = false;
  } else {
    s.Greet();
  }
  while (run) {
    while (!pending.empty() && s.need() == Need::kInput) {
      size_t n = s.Feed(pending);
      pending.erase(0, n);
    }
    if (s.need() == Need::kCommit) {
      // RFC 5321 4.5.3.2.8: the client waits up to 10 minutes here.
      c->ArmDeadline(limits.final_timeout);
      std::string id = c->writer_ ? c->writer_->id() : std::string();
      uint64_t size = c->writer_ ? c->writer_->size() : 0;
      auto r = co_await CommitMessage(c->ctx_.queue(), std::move(c->writer_));
      bool no_space = !r && IsNoSpace(r.error().message);
      if (r) {
        ++c->messages_;
        spdlog::info("smtp accepted id={} size={} from=<{}> rcpts={} client={}",
                     id, size, c->summary_sender_, c->summary_rcpts_,
                     c->client_ip());
      } else {
        spdlog::error("smtp commit failed client={} error={}", c->client_ip(),
                      r.error().message);
      }
      s.Committed(static_cast<bool>(r), no_space);
      continue;
    }
    if (s.need() == Need::kSaslStep) {
      // Argon2id or PBKDF2 work runs on the blocking pool; the session is
      // untouched by this coroutine until the step is done.
      SaslJob job{&s, {}};
      c->ArmDeadline(limits.command_timeout);
      co_await net::OffThread(c->ctx_.blocking(), &job);
      s.SaslStepDone(job.step);
      continue;
    }
    if (s.need() == Need::kDelay) {
      c->ArmDeadline(limits.command_timeout);
      co_await Pause(c, s.delay());
      s.DelayDone();
      continue;
    }
    if (s.need() == Need::kInput && c->shutdown_ && !s.InTransaction()) {
      s.Shutdown();
      reason = "shutdown";
    }
    if (!s.output().empty()) {
      awaiting_command = true;
      c->ArmDeadline(limits.command_timeout);
    }
    co_await WriteOutput(c, ec);
    if (ec) {
      reason = c->timed_out_ ? "write-timeout" : "write-error";
      break;
    }
    if (s.need() == Need::kClose) {
      if (reason == "eof") reason = "closed";
      break;
    }
    if (s.need() == Need::kStartTls) {
      // The session dropped what followed STARTTLS; nothing read so far may
      // reach the TLS session (CVE-2011-0411).
      pending.clear();
      if (!co_await Handshake(c)) {
        reason = "tls-handshake-failed";
        break;
      }
      awaiting_command = true;
      continue;
    }
    if (s.InData()) {
      c->ArmDeadline(limits.data_block_timeout);  // 4.5.3.2.6: per chunk
    } else if (awaiting_command) {
      c->ArmDeadline(limits.command_timeout);
      awaiting_command = false;
    }
    size_t n = co_await c->stream_.AsyncReadSome(
        asio::buffer(c->buf_), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (c->timed_out_) {
        reason = "timeout";
        s.Timeout();
        c->timed_out_ = false;
        c->ArmDeadline(5);
        co_await WriteOutput(c, ec);
        break;
      }
      if (ec == asio::error::operation_aborted && c->shutdown_ && !c->force_) {
        ec = {};
        continue;  // the loop top answers 421 when no transaction is open
      }
      reason = ec == asio::error::eof ? "eof" : "read-error";
      break;
    }
    std::string_view in(c->buf_.data(), n);
    if (pending.empty()) {
      size_t used = s.Feed(in);
      if (used < in.size()) pending.assign(in.substr(used));
    } else {
      pending.append(in);
    }
  }

  c->writer_.reset();
  if (c->stream_.tls() && (reason == "closed" || reason == "shutdown")) {
    // close_notify (RFC 8446 6.1), briefly: the peer may just hang up.
    c->ArmDeadline(2);
    co_await c->stream_.AsyncTlsShutdown(
        asio::redirect_error(asio::use_awaitable, ec));
  }
  c->closed_ = true;
  c->timer_.cancel();
  asio::error_code ignored;
  c->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  c->stream_.socket().close(ignored);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                Clock::now() - c->started_).count();
  spdlog::info("smtp session client={} listener={} messages={} end={} ms={}",
               c->client_ip(), c->listener_, c->messages_, reason, ms);
}

asio::awaitable<void> RunAndRelease(std::shared_ptr<Connection> c, uint64_t key,
                                    std::string ip) {
  co_await Run(c);
  c->ctx_.Unregister(key);
  c->ctx_.limiter().Release(ip);
}

}  // namespace

void StartConnection(tcp::socket socket, server::Context& ctx,
                     const config::Listener& listener) {
  asio::error_code ec;
  ClientInfo client;
  auto remote = socket.remote_endpoint(ec);
  auto local = socket.local_endpoint(ec);
  client.ip = net::ClientIp(remote.address());
  client.port = remote.port();
  client.local_ip = local.address().to_string();
  client.local_port = local.port();
  auto settings = ctx.settings();
  client.trusted = settings->trusted.Contains(client.ip);
  std::string ip = client.ip;
  SessionConfig sc = settings->session;
  const bool implicit_tls = listener.service == "submissions";
  sc.tls_available = ctx.tls() != nullptr && !implicit_tls;
  sc.auth = true;
  sc.auth_allowed_plaintext = listener.allow_plaintext_auth;
  // RFC 6409 4.3 / RFC 8314: both submission ports require AUTH.
  sc.submission = listener.service != "smtp";
  sc.async_sasl = true;
  auto conn = std::make_shared<Connection>(std::move(socket), ctx, settings, sc,
                                           std::move(client), listener.service,
                                           implicit_tls);
  uint64_t key = ctx.Register(conn, ip);
  auto ex = conn->stream_.socket().get_executor();
  asio::co_spawn(ex, Watchdog(conn), asio::detached);
  asio::co_spawn(ex, RunAndRelease(conn, key, std::move(ip)), asio::detached);
}

void RefuseConnection(tcp::socket socket, const std::string& hostname) {
  // The reply is far smaller than a socket buffer: one non-blocking write
  // either fits or the client is not worth waiting for.
  std::string line =
      "421 4.7.0 " + hostname + " Too many connections, try again later\r\n";
  asio::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(line), ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

}  // namespace tern::smtp
