// One POP3 connection: a coroutine reads commands, feeds the session, and
// carries out its requests — password checks and expunges on the Service's
// thread pool, messages streamed from the Maildir in CRLF form with
// dot-stuffing — with a watchdog for the RFC 1939 3 autologout timer.
#include "pop3/connection.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "auth/sasl.h"
#include "common/strings.h"
#include "store/mailbox_path.h"
#include "net/address.h"
#include "net/off_thread.h"
#include "net/stream.h"
#include "pop3/session.h"
#include "store/crlf.h"
#include "store/maildir.h"

namespace tern::pop3 {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kSendChunk = 64 * 1024;
// Time for a TLS handshake: plenty for a real client, short for a
// slow-loris (RFC 1939 sets none).
constexpr uint32_t kHandshakeTimeout = 30;

// The session's view of an opened Maildir.
class MaildirDrop : public Maildrop {
 public:
  explicit MaildirDrop(const store::Maildir& md) : md_(md) {}
  size_t count() const override { return md_.messages().size(); }
  uint64_t size(size_t i) const override { return md_.messages()[i].size; }
  std::string uidl(size_t i) const override {
    return store::UidlFor(md_.messages()[i].unique);
  }

 private:
  const store::Maildir& md_;
};

using net::OffThread;

struct AuthJob;

class Connection : public server::Stoppable,
                   public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Service& service, SessionConfig config,
             ClientInfo client, std::string listener, uint32_t idle_timeout,
             std::shared_ptr<net::TlsContexts> tls, bool implicit_tls)
      : stream_(std::move(socket)),
        timer_(stream_.socket().get_executor(), Clock::time_point::max()),
        service_(service),
        tls_(std::move(tls)),
        implicit_tls_(implicit_tls),
        session_(config, std::move(client)),
        listener_(std::move(listener)),
        idle_timeout_(idle_timeout),
        started_(Clock::now()) {}

  void RequestShutdown(bool force) override {
    asio::post(stream_.socket().get_executor(), [self = shared_from_this(), force] {
      self->shutdown_ = true;
      // A reader waiting for a command is stopped at once; a message being
      // sent is finished first unless the grace period is over.
      if (force || self->reading_) {
        self->force_ = force;
        asio::error_code ignored;
        self->stream_.socket().cancel(ignored);
      }
    });
  }

  friend asio::awaitable<void> Run(std::shared_ptr<Connection> c);
  friend asio::awaitable<void> Watchdog(std::shared_ptr<Connection> c);
  friend asio::awaitable<void> Write(std::shared_ptr<Connection> c,
                                     std::string& data, asio::error_code& ec);
  friend asio::awaitable<void> Authenticate(std::shared_ptr<Connection> c);
  friend asio::awaitable<bool> Handshake(std::shared_ptr<Connection> c);
  friend asio::awaitable<bool> SendMessage(std::shared_ptr<Connection> c);
  friend asio::awaitable<void> RunAndRelease(std::shared_ptr<Connection> c,
                                             uint64_t key, std::string ip);
  friend class tern::pop3::Service;
  friend struct AuthJob;

 private:
  const std::string& ip() const { return session_.client().ip; }
  void ArmDeadline(uint32_t seconds) {
    deadline_ = Clock::now() + std::chrono::seconds(seconds);
    if (deadline_ < timer_.expiry()) timer_.expires_at(deadline_);
  }
  // After a successful login: maildrop opened and locked.
  AuthResult FinishLogin(const std::string& account);

  net::Stream stream_;
  asio::steady_timer timer_;
  Service& service_;
  std::shared_ptr<net::TlsContexts> tls_;  // as at accept time
  bool implicit_tls_;
  // Declared before the session, which points at the drop.
  std::unique_ptr<store::Maildir> maildir_;
  std::optional<store::MailboxLock> lock_;
  std::unique_ptr<MaildirDrop> drop_;
  std::unique_ptr<auth::SaslMechanism> sasl_;
  Session session_;
  std::string listener_;
  uint32_t idle_timeout_;
  std::array<char, 4096> buf_;
  Clock::time_point started_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  bool closed_ = false;
  bool reading_ = false;
  bool shutdown_ = false;
  bool force_ = false;
  uint32_t deleted_ = 0;
};

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

asio::awaitable<void> Write(std::shared_ptr<Connection> c, std::string& data,
                            asio::error_code& ec) {
  if (data.empty()) co_return;
  c->ArmDeadline(c->idle_timeout_);
  co_await c->stream_.AsyncWrite(asio::buffer(data),
                                 asio::redirect_error(asio::use_awaitable, ec));
  data.clear();
}

// Server side of a TLS handshake (POP3S, or after STLS); true when up.
asio::awaitable<bool> Handshake(std::shared_ptr<Connection> c) {
  if (!c->tls_) co_return false;
  asio::error_code ec;
  c->ArmDeadline(kHandshakeTimeout);
  co_await c->stream_.AsyncHandshake(c->tls_,
                                     asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    spdlog::info("pop3 tls handshake failed client={} listener={} error={}", c->ip(),
                 c->listener_, c->timed_out_ ? std::string("timeout") : ec.message());
    co_return false;
  }
  spdlog::info("pop3 tls client={} listener={} version={} cipher={} sni={}", c->ip(),
               c->listener_, c->stream_.version(), c->stream_.cipher(),
               c->stream_.server_name());
  c->session_.TlsStarted();
  co_return true;
}

// What the pool thread works out for one authentication step.
struct AuthOutcome {
  AuthResult result;
  std::optional<std::string> account;  // credentials were right
  std::string failed_user;             // for the log
};

// One authentication step, run on the pool: password or SASL check, then
// (on success) the maildrop is opened and locked.
struct AuthJob {
  Connection* conn = nullptr;
  auth::CredentialStore* store = nullptr;
  AuthRequest req;
  AuthOutcome out;
  void Run();
};

AuthResult Connection::FinishLogin(const std::string& account) {
  AuthResult r;
  auto settings = service_.ctx().settings();
  int64_t delay = settings->config.pop3.login_delay;
  auto path = store::MailboxPathFor(account);
  if (!path) {
    spdlog::error("pop3 mailbox path for {}: {}", account, path.error().message);
    r.kind = AuthResult::Kind::kPermFail;
    return r;
  }
  std::string dir = service_.mail_root() + "/" + path->domain + "/" + path->local +
                    "/Maildir";
  auto md = store::Maildir::Open(dir);
  if (!md) {
    spdlog::error("pop3 open {}: {}", dir, md.error().message);
    r.kind = AuthResult::Kind::kTempFail;
    return r;
  }
  auto lock = store::MailboxLock::TryAcquire((*md)->fd());
  if (!lock) {
    spdlog::error("pop3 lock {}: {}", dir, lock.error().message);
    r.kind = AuthResult::Kind::kTempFail;
    return r;
  }
  if (!lock->has_value()) {
    r.kind = AuthResult::Kind::kInUse;
    return r;
  }
  // RFC 2449 6.8: checked after the lock so a refused session does not
  // count as a login.
  if (delay > 0 && !service_.CheckLoginDelay(account, static_cast<uint32_t>(delay))) {
    r.kind = AuthResult::Kind::kLoginDelay;
    return r;
  }
  if (auto s = (*md)->Scan(); !s) {
    spdlog::error("pop3 scan {}: {}", dir, s.error().message);
    r.kind = AuthResult::Kind::kTempFail;
    return r;
  }
  maildir_ = std::move(*md);
  lock_ = std::move(**lock);
  drop_ = std::make_unique<MaildirDrop>(*maildir_);
  r.kind = AuthResult::Kind::kOk;
  r.user = account;
  r.maildrop = drop_.get();
  return r;
}

void AuthJob::Run() {
  out.result.kind = AuthResult::Kind::kBadCredentials;
  switch (req.kind) {
    case AuthRequest::Kind::kPass: {
      auth::PasswordCheck checked = store->CheckPassword(req.user, req.secret);
      if (!checked) {
        // The directory failed: RFC 3206 4 [SYS/TEMP], not a strike.
        out.result.kind = AuthResult::Kind::kTempFail;
        return;
      }
      out.account = std::move(*checked);
      out.failed_user = req.user;
      break;
    }
    case AuthRequest::Kind::kApop:
      // APOP needs the plain password on the server; Tern keeps only
      // Argon2id hashes, so the session never offers it.
      out.result.kind = AuthResult::Kind::kPermFail;
      return;
    case AuthRequest::Kind::kSaslStart:
    case AuthRequest::Kind::kSaslNext: {
      auth::SaslStep step;
      if (req.kind == AuthRequest::Kind::kSaslStart) {
        conn->sasl_ = auth::MakeMechanism(req.mechanism, *store);
        if (!conn->sasl_) return;
        step = conn->sasl_->Start(
            req.has_initial ? std::optional<std::string_view>(req.secret)
                            : std::nullopt);
      } else {
        if (!conn->sasl_) return;
        step = conn->sasl_->Next(req.secret);
      }
      switch (step.kind) {
        case auth::SaslStep::Kind::kChallenge:
          out.result.kind = AuthResult::Kind::kChallenge;
          out.result.data = std::move(step.data);
          return;
        case auth::SaslStep::Kind::kSuccess:
          conn->sasl_.reset();
          out.account = step.user;
          out.result.data = std::move(step.data);
          break;
        case auth::SaslStep::Kind::kFailure:
          conn->sasl_.reset();
          out.failed_user = req.mechanism;
          return;
        case auth::SaslStep::Kind::kMalformed:
          conn->sasl_.reset();
          out.result.kind = AuthResult::Kind::kMalformed;
          return;
        case auth::SaslStep::Kind::kTempFailure:
          conn->sasl_.reset();
          out.result.kind = AuthResult::Kind::kTempFail;
          return;
      }
      break;
    }
  }
  if (!out.account) return;
  std::string data = std::move(out.result.data);
  out.result = conn->FinishLogin(*out.account);
  out.result.data = std::move(data);
}

asio::awaitable<void> Authenticate(std::shared_ptr<Connection> c) {
  Session& s = c->session_;
  AuthRequest req = s.auth_request();
  auto& throttle = c->service_.ctx().throttle();
  if (throttle.Blocked(c->ip())) {
    spdlog::warn("pop3 auth refused client={} reason=throttled", c->ip());
    AuthResult r;
    r.kind = AuthResult::Kind::kBlocked;
    s.AuthDone(std::move(r));
    co_return;
  }
  AuthJob job;
  job.conn = c.get();
  job.store = &c->service_.ctx().credentials();
  job.req = std::move(req);
  co_await OffThread(c->service_.pool(), &job);
  AuthOutcome& out = job.out;
  if (out.result.kind == AuthResult::Kind::kBadCredentials) {
    auto wait = throttle.Failure(c->ip());
    spdlog::warn("pop3 auth failed client={} user={} delay_ms={}", c->ip(),
                 out.failed_user, wait.count());
    if (throttle.Blocked(c->ip())) out.result.kind = AuthResult::Kind::kBlocked;
    if (wait.count() > 0) {
      asio::steady_timer t(c->stream_.socket().get_executor(), wait);
      asio::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  } else if (out.account) {
    throttle.Success(c->ip());
    if (out.result.kind == AuthResult::Kind::kOk) {
      spdlog::info("pop3 login client={} user={} messages={}", c->ip(),
                   out.result.user, c->drop_->count());
    } else {
      spdlog::warn("pop3 login refused client={} user={} kind={}", c->ip(), *out.account,
                   static_cast<int>(out.result.kind));
    }
  }
  s.AuthDone(std::move(out.result));
}

// Streams the requested message (RETR/TOP) after the +OK line. False when
// the connection failed (the session cannot go on).
asio::awaitable<bool> SendMessage(std::shared_ptr<Connection> c) {
  Session& s = c->session_;
  size_t index = s.send_index();
  int64_t lines = s.send_lines();
  auto fd = c->maildir_->OpenMessage(index);
  if (!fd) {
    spdlog::error("pop3 read client={} user={}: {}", c->ip(), s.user(),
                  fd.error().message);
  }
  s.SendOpened(static_cast<bool>(fd));
  asio::error_code ec;
  co_await Write(c, s.output(), ec);
  if (ec || !fd) co_return !ec;
  store::CrlfEncoder encoder(true, lines);
  std::string raw(kSendChunk, '\0');
  std::string out;
  bool read_failed = false;
  for (;;) {
    ssize_t n = ::read(fd->get(), raw.data(), raw.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // The +OK is out; the best that can be done is to end the message
      // (clients see a short message) and log it.
      spdlog::error("pop3 read client={} user={}: {}", c->ip(), s.user(),
                    std::strerror(errno));
      read_failed = true;
      n = 0;
    }
    out.clear();
    if (n == 0) {
      encoder.Finish(out);
      out += ".\r\n";
    } else {
      encoder.Feed(std::string_view(raw.data(), static_cast<size_t>(n)), out);
      if (encoder.done()) out += ".\r\n";
    }
    co_await Write(c, out, ec);
    if (ec) co_return false;
    if (n == 0 || encoder.done()) break;
  }
  if (lines < 0 && !read_failed) {
    // RFC 1939 leaves flags to the server; Maildir readers expect a
    // retrieved message in cur/ and seen.
    if (auto r = c->maildir_->MarkSeen(index); !r) {
      spdlog::warn("pop3 mark seen user={}: {}", s.user(), r.error().message);
    }
  }
  co_return true;
}

// RFC 1939 6 UPDATE, run on the pool (it syncs directories).
struct ExpungeJob {
  store::Maildir* maildir = nullptr;
  std::vector<size_t> doomed;
  Result<void> result;
  void Run() { result = maildir->Expunge(doomed); }
};

asio::awaitable<void> Run(std::shared_ptr<Connection> c) {
  Session& s = c->session_;
  std::string reason = "eof";
  std::string pending;
  asio::error_code ec;
  // RFC 1939 3: "the receipt of any command" resets the autologout timer,
  // not any byte: a client that sends a byte every few seconds and never
  // ends the line is logged out like an idle one.
  bool awaiting_command = true;

  // RFC 8314 3.3 (and long practice on port 995): TLS first, then POP3.
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
    Need need = s.need();
    if (need == Need::kAuth) {
      co_await Authenticate(c);
      continue;
    }
    if (need == Need::kSend) {
      // Replies to commands before RETR go out first, in order.
      co_await Write(c, s.output(), ec);
      if (ec || !co_await SendMessage(c)) {
        reason = c->timed_out_ ? "write-timeout" : "write-error";
        break;
      }
      awaiting_command = true;
      continue;
    }
    if (need == Need::kUpdate) {
      // RFC 1939 6: UPDATE only after QUIT; see store::Maildir::Expunge
      // for what a crash here may leave.
      ExpungeJob job;
      job.maildir = c->maildir_.get();
      job.doomed = s.deleted();
      co_await OffThread(c->service_.pool(), &job);
      const Result<void>& r = job.result;
      if (!r) {
        spdlog::error("pop3 expunge user={}: {}", s.user(), r.error().message);
      } else {
        c->deleted_ = static_cast<uint32_t>(job.doomed.size());
      }
      s.UpdateDone(static_cast<bool>(r));
      continue;
    }
    if (need == Need::kInput && c->shutdown_) {
      s.Shutdown();
      reason = "shutdown";
    }
    if (!s.output().empty()) awaiting_command = true;
    co_await Write(c, s.output(), ec);
    if (ec) {
      reason = c->timed_out_ ? "write-timeout" : "write-error";
      break;
    }
    if (s.need() == Need::kClose) {
      if (reason == "eof") reason = "closed";
      break;
    }
    if (s.need() == Need::kStartTls) {
      // RFC 2595 4: the session dropped what followed STLS; nothing read
      // before the handshake may reach the TLS session (CVE-2011-0411).
      pending.clear();
      if (!co_await Handshake(c)) {
        reason = "tls-handshake-failed";
        break;
      }
      awaiting_command = true;
      continue;
    }
    if (awaiting_command) {
      c->ArmDeadline(c->idle_timeout_);
      awaiting_command = false;
    }
    c->reading_ = true;
    size_t n = co_await c->stream_.AsyncReadSome(
        asio::buffer(c->buf_), asio::redirect_error(asio::use_awaitable, ec));
    c->reading_ = false;
    if (ec) {
      if (c->timed_out_) {
        reason = "timeout";
        s.Timeout();
        c->timed_out_ = false;
        c->ArmDeadline(5);
        co_await Write(c, s.output(), ec);
        break;
      }
      if (ec == asio::error::operation_aborted && c->shutdown_ && !c->force_) {
        ec = {};
        continue;  // the loop top answers and closes
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

  if (c->stream_.tls() && (reason == "closed" || reason == "shutdown")) {
    // close_notify (RFC 8446 6.1), briefly: the peer may just hang up.
    c->ArmDeadline(2);
    co_await c->stream_.AsyncTlsShutdown(asio::redirect_error(asio::use_awaitable, ec));
  }
  c->closed_ = true;
  c->timer_.cancel();
  asio::error_code ignored;
  c->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  c->stream_.socket().close(ignored);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                  c->started_).count();
  spdlog::info("pop3 session client={} listener={} user={} retrieved={} deleted={} end={} ms={}",
               c->ip(), c->listener_, s.user().empty() ? "-" : s.user(), s.retrieved(),
               c->deleted_, reason, ms);
}

asio::awaitable<void> RunAndRelease(std::shared_ptr<Connection> c, uint64_t key,
                                    std::string ip) {
  co_await Run(c);
  // The lock goes with the connection's last reference; drop it now so a
  // client that reconnects at once is not told [IN-USE].
  c->lock_.reset();
  c->service_.ctx().Unregister(key);
  c->service_.ctx().limiter().Release(ip);
}

void Refuse(tcp::socket socket) {
  std::string line = "-ERR [SYS/TEMP] Too many connections, try again later\r\n";
  asio::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(line), ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

}  // namespace

Service::Service(server::Context& ctx, std::string mail_root)
    : ctx_(ctx), mail_root_(std::move(mail_root)) {}

Service::~Service() { Stop(); }

void Service::Stop() { pool_.join(); }

bool Service::CheckLoginDelay(const std::string& account, uint32_t delay) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto [it, fresh] = last_login_.emplace(account, now);
  if (!fresh) {
    if (now - it->second < std::chrono::seconds(delay)) return false;
    it->second = now;
  }
  return true;
}

void Service::Start(tcp::socket socket, std::string listener_name, bool implicit_tls,
                    bool allow_plaintext) {
  asio::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  const auto addr = net::ClientAddress(remote.address());
  auto settings = ctx_.settings();
  const auto& p = settings->config.pop3;
  SessionConfig config;
  config.hostname = settings->config.hostname;
  config.max_errors = p.max_errors;
  config.expire = p.expire;
  config.login_delay = p.login_delay;
  config.sasl = true;
  config.sasl_mechanisms = std::string(auth::kSaslMechanisms);
  ClientInfo client;
  client.ip = addr.to_string();
  auto tls = ctx_.tls();
  client.tls = false;  // set by the handshake
  client.stls_available = tls != nullptr && !implicit_tls;
  // Config allows this on loopback listeners only; checked again here.
  client.plaintext_ok = allow_plaintext && addr.is_loopback();
  std::string ip = client.ip;
  auto conn = std::make_shared<Connection>(std::move(socket), *this, std::move(config),
                                           std::move(client), std::move(listener_name),
                                           p.idle_timeout, std::move(tls), implicit_tls);
  uint64_t key = ctx_.Register(conn, ip);
  auto ex = conn->stream_.socket().get_executor();
  asio::co_spawn(ex, Watchdog(conn), asio::detached);
  asio::co_spawn(ex, RunAndRelease(conn, key, std::move(ip)), asio::detached);
}

asio::awaitable<void> AcceptLoop(tcp::acceptor& acceptor, Service& service,
                                 config::Listener listener) {
  auto& io = static_cast<asio::io_context&>(acceptor.get_executor().context());
  server::Context& ctx = service.ctx();
  for (;;) {
    asio::error_code ec;
    tcp::socket socket(asio::make_strand(io));
    co_await acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ctx.stopping() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::warn("accept on {} failed: {}", listener.service, ec.message());
      asio::steady_timer t(io, std::chrono::milliseconds(100));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    auto remote = socket.remote_endpoint(ec);
    if (ec) continue;
    std::string ip = net::ClientIp(remote.address());
    auto settings = ctx.settings();
    if (!ctx.Admit(ip, settings->config.smtp.max_connections,
                   settings->config.pop3.max_connections_per_ip)) {
      spdlog::warn("pop3 connection refused client={} reason=limit", ip);
      Refuse(std::move(socket));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    service.Start(std::move(socket), listener.service, listener.service == "pop3s",
                  listener.allow_plaintext_auth);
  }
}

}  // namespace tern::pop3
