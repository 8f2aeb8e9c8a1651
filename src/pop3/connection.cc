// POP3 connections on the shared connection core (net::LineConnection):
// the session's own requests — password and SASL checks and the opening
// of the maildrop on the blocking pool, messages streamed from the Maildir
// in CRLF form with dot-stuffing, UPDATE — and the listeners that make
// them.
#include "pop3/server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "common/metrics.h"
#include "auth/recording_credentials.h"
#include "auth/sasl.h"
#include "common/strings.h"
#include "store/mailbox_path.h"
#include "net/address.h"
#include "net/line_connection.h"
#include "pop3/session.h"
#include "store/crlf.h"
#include "store/maildir.h"

namespace tern::pop3 {
namespace {

using asio::ip::tcp;

constexpr size_t kSendChunk = 64 * 1024;

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


class Connection : public net::LineConnection, public SessionHost {
 public:
  Connection(tcp::socket socket, net::LineConnection::Options options,
             Server& server, std::shared_ptr<const Settings> settings,
             SessionConfig config, ClientInfo client)
      : net::LineConnection(std::move(socket), std::move(options)),
        server_(server),
        settings_(std::move(settings)),
        credentials_(server.deps().credentials),
        session_(config, *this, std::move(client)) {}

  // --- SessionHost ---
  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    credentials_.clear();
    return auth::MakeMechanism(name, credentials_);
  }
  bool AuthBlocked() override {
    if (!server_.deps().throttle.Blocked(ip())) return false;
    spdlog::warn("pop3 auth refused client={} reason=throttled", ip());
    return true;
  }
  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    metrics::Get().auth.With({"pop3", "failure"}).Inc();
    auto wait = server_.deps().throttle.Failure(ip());
    // Never the password or the SASL payload: the name and the outcome.
    spdlog::warn("pop3 auth failed client={} mechanism={} user={} delay_ms={}",
                 ip(), mechanism, user.empty() ? credentials_.user() : std::string(user),
                 wait.count());
    return wait;
  }
  void AuthSucceeded(std::string_view mechanism, const std::string& user) override {
    metrics::Get().auth.With({"pop3", "success"}).Inc();
    server_.deps().throttle.Success(ip());
  }

  friend struct LoginJob;

 protected:
  // --- net::LineConnection ---
  void Greet() override { session_.Greet(); }
  size_t Feed(std::string_view data) override { return session_.Feed(data); }
  Want want() override {
    switch (session_.need()) {
      case Need::kInput: return Want::kInput;
      case Need::kClose: return Want::kClose;
      case Need::kStartTls: return Want::kStartTls;
      case Need::kSaslStep:
      case Need::kDelay:
      case Need::kLogin:
      case Need::kSend:
      case Need::kUpdate: return Want::kWork;
    }
    return Want::kClose;
  }
  std::string& output() override { return session_.output(); }
  void SayShutdown() override { session_.Shutdown(); }
  void SayTimeout() override { session_.Timeout(); }
  void TlsStarted() override { session_.TlsStarted(); }
  // RFC 1939 3: the autologout timer, reset by each command (not byte).
  uint32_t CommandTimeout() override { return settings_->pop3.idle_timeout; }
  asio::awaitable<bool> Work() override;
  void Ended(net::EndReason reason, std::chrono::milliseconds elapsed) override {
    // The lock goes now, so a client that reconnects at once is not told
    // [IN-USE].
    lock_.reset();
    spdlog::info(
        "pop3 session client={} listener={} user={} retrieved={} deleted={} "
        "end={} ms={}",
        ip(), options().listener, session_.user().empty() ? "-" : session_.user(),
        session_.retrieved(), deleted_, net::EndReasonName(reason),
        elapsed.count());
  }

 private:
  const std::string& ip() const { return session_.client().ip; }
  // After a successful login: maildrop opened and locked.
  LoginResult FinishLogin(const std::string& account);
  asio::awaitable<bool> SendMessage();
  asio::awaitable<void> Update();

  Server& server_;
  std::shared_ptr<const Settings> settings_;
  // Declared before the session, which points at the drop.
  std::unique_ptr<store::Maildir> maildir_;
  std::optional<store::MailboxLock> lock_;
  std::unique_ptr<MaildirDrop> drop_;
  // Declared before the session: its SASL mechanism refers to it.
  auth::RecordingCredentials credentials_;
  Session session_;
  uint32_t deleted_ = 0;
  std::string account_key_;  // "domain/local", for the change hub
};

LoginResult Connection::FinishLogin(const std::string& account) {
  LoginResult r;
  int64_t delay = settings_->pop3.login_delay;
  auto path = store::MailboxPathFor(account);
  if (!path) {
    spdlog::error("pop3 mailbox path for {}: {}", account, path.error().message);
    r.kind = LoginResult::Kind::kPermFail;
    return r;
  }
  std::string dir = server_.deps().mail_root + "/" + path->domain + "/" + path->local +
                    "/Maildir";
  auto md = store::Maildir::Open(dir);
  if (!md) {
    spdlog::error("pop3 open {}: {}", dir, md.error().message);
    r.kind = LoginResult::Kind::kTempFail;
    return r;
  }
  auto lock = store::MailboxLock::TryAcquire((*md)->fd());
  if (!lock) {
    spdlog::error("pop3 lock {}: {}", dir, lock.error().message);
    r.kind = LoginResult::Kind::kTempFail;
    return r;
  }
  if (!lock->has_value()) {
    r.kind = LoginResult::Kind::kInUse;
    return r;
  }
  // RFC 2449 6.8: checked after the lock so a refused session does not
  // count as a login.
  if (delay > 0 && !server_.CheckLoginDelay(account, static_cast<uint32_t>(delay))) {
    r.kind = LoginResult::Kind::kLoginDelay;
    return r;
  }
  if (auto s = (*md)->Scan(); !s) {
    spdlog::error("pop3 scan {}: {}", dir, s.error().message);
    r.kind = LoginResult::Kind::kTempFail;
    return r;
  }
  maildir_ = std::move(*md);
  lock_ = std::move(**lock);
  account_key_ = path->domain + "/" + path->local;
  drop_ = std::make_unique<MaildirDrop>(*maildir_);
  r.kind = LoginResult::Kind::kOk;
  r.maildrop = drop_.get();
  return r;
}

// The blocking parts of a login, on the pool: a SASL step (Argon2id,
// PBKDF2), or opening and locking the maildrop once the account is known.
struct SaslStepJob {
  Session* session;
  auth::SaslStep step;
  void Run() { step = session->RunSaslStep(); }
};

struct LoginJob {
  Connection* conn;
  std::string account;
  LoginResult result;
  void Run() { result = conn->FinishLogin(account); }
};

// Streams the requested message (RETR/TOP) after the +OK line. False when
// the connection failed (the session cannot go on).
asio::awaitable<bool> Connection::SendMessage() {
  size_t index = session_.send_index();
  int64_t lines = session_.send_lines();
  auto fd = maildir_->OpenMessage(index);
  if (!fd) {
    spdlog::error("pop3 read client={} user={}: {}", ip(), session_.user(),
                  fd.error().message);
  }
  session_.SendOpened(static_cast<bool>(fd));
  if (!co_await Write(session_.output())) co_return false;
  if (!fd) co_return true;
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
      spdlog::error("pop3 read client={} user={}: {}", ip(), session_.user(),
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
    if (!co_await Write(out)) co_return false;
    if (n == 0 || encoder.done()) break;
  }
  if (lines < 0 && !read_failed) {
    // RFC 1939 leaves flags to the server; Maildir readers expect a
    // retrieved message in cur/ and seen.
    if (auto r = maildir_->MarkSeen(index); !r) {
      spdlog::warn("pop3 mark seen user={}: {}", session_.user(), r.error().message);
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

asio::awaitable<void> Connection::Update() {
  // RFC 1939 6: UPDATE only after QUIT; see store::Maildir::Expunge for
  // what a crash here may leave.
  ExpungeJob job;
  job.maildir = maildir_.get();
  job.doomed = session_.deleted();
  co_await Blocking(&job);
  const Result<void>& r = job.result;
  if (!r) {
    spdlog::error("pop3 expunge user={}: {}", session_.user(), r.error().message);
  } else {
    deleted_ = static_cast<uint32_t>(job.doomed.size());
    if (deleted_ > 0 && server_.deps().changes != nullptr) {
      server_.deps().changes->Publish(account_key_, "INBOX");
    }
  }
  session_.UpdateDone(static_cast<bool>(r));
}

// g++ 12 miscompiles co_return inside a switch in a coroutine (SIGILL at
// run time): plain ifs, one co_return.
asio::awaitable<bool> Connection::Work() {
  bool ok = true;
  Need need = session_.need();
  if (need == Need::kSaslStep) {
    SaslStepJob job{&session_, {}};
    co_await Blocking(&job);
    session_.SaslStepDone(job.step);
  } else if (need == Need::kDelay) {
    co_await Sleep(session_.delay());
    session_.DelayDone();
  } else if (need == Need::kLogin) {
    LoginJob job{this, session_.login_user(), {}};
    co_await Blocking(&job);
    if (job.result.kind == LoginResult::Kind::kOk) {
      spdlog::info("pop3 login client={} user={} messages={}", ip(), job.account,
                   drop_->count());
    } else {
      spdlog::warn("pop3 login refused client={} user={} kind={}", ip(), job.account,
                   static_cast<int>(job.result.kind));
    }
    session_.LoginDone(job.result);
  } else if (need == Need::kSend) {
    // Replies to commands before RETR go out first, in order.
    ok = co_await Write(session_.output());
    if (ok) ok = co_await SendMessage();
  } else if (need == Need::kUpdate) {
    co_await Update();
  }
  co_return ok;
}

// One pop3 (STLS) or pop3s (implicit TLS) listener.
class Listener : public net::Service {
 public:
  Listener(Server& server, config::Listener listener)
      : server_(server), listener_(std::move(listener)) {}

  std::string_view protocol() const override { return "pop3"; }
  std::string_view listener() const override { return listener_.service; }
  net::ConnectionLimiter& limiter() override { return server_.limiter(); }
  Limits limits() override {
    const config::Pop3Settings& p = server_.settings()->pop3;
    return {p.max_connections, p.max_connections_per_ip};
  }
  std::string RefusalLine() override {
    if (implicit_tls()) return {};
    return "-ERR [SYS/TEMP] Too many connections, try again later\r\n";
  }
  std::shared_ptr<net::LineConnection> Make(tcp::socket socket,
                                            const std::string& ip) override;

 private:
  // RFC 8314 3.3 (and long practice on port 995): TLS first, then POP3.
  bool implicit_tls() const { return listener_.service == "pop3s"; }

  Server& server_;
  config::Listener listener_;
};

std::shared_ptr<net::LineConnection> Listener::Make(tcp::socket socket,
                                                    const std::string& ip) {
  auto settings = server_.settings();
  const config::Pop3Settings& p = settings->pop3;
  SessionConfig config;
  config.hostname = settings->hostname;
  config.max_errors = p.max_errors;
  config.expire = p.expire;
  config.login_delay = p.login_delay;
  config.sasl = true;
  config.sasl_mechanisms = std::string(auth::kSaslMechanisms);
  net::LineConnection::Options options;
  options.protocol = "pop3";
  options.listener = listener_.service;
  options.client_ip = ip;
  options.implicit_tls = implicit_tls();
  options.tls = server_.deps().tls.get();
  options.blocking = &server_.deps().blocking;
  ClientInfo client;
  client.ip = ip;
  client.tls = false;  // set by the handshake
  client.stls_available = options.tls != nullptr && !options.implicit_tls;
  // Config allows this on loopback listeners only; checked again here.
  asio::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  client.plaintext_ok = listener_.allow_plaintext_auth && !ec &&
                        net::ClientAddress(remote.address()).is_loopback();
  return std::make_shared<Connection>(std::move(socket), std::move(options),
                                      server_, std::move(settings),
                                      std::move(config), std::move(client));
}

}  // namespace

Server::Server(ServerDeps deps, const config::Config& cfg)
    : deps_(std::move(deps)) {
  Reload(cfg);
}

void Server::Reload(const config::Config& cfg) {
  auto s = std::make_shared<Settings>();
  s->pop3 = cfg.pop3;
  s->hostname = cfg.hostname;
  settings_.set(std::move(s));
}

std::unique_ptr<net::Service> Server::MakeListener(
    const config::Listener& listener) {
  return std::make_unique<Listener>(*this, listener);
}

bool Server::CheckLoginDelay(const std::string& account, uint32_t delay) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto [it, fresh] = last_login_.emplace(account, now);
  if (!fresh) {
    if (now - it->second < std::chrono::seconds(delay)) return false;
    it->second = now;
  }
  return true;
}

}  // namespace tern::pop3
