// IMAP connections on the shared connection core (net::LineConnection):
// the session's requests — SASL steps, opening the account's mail store and
// every command that touches it — run on the blocking pool; changes made
// by other sessions and deliveries wake a session in IDLE through the
// change hub. Also the listeners that make the connections.
#include "imap/server/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>

#include "common/metrics.h"
#include "auth/recording_credentials.h"
#include "auth/sasl.h"
#include "common/heap.h"
#include "common/mutex.h"
#include "imap/server/session.h"
#include "net/address.h"
#include "net/line_connection.h"
#include "store/mailbox_path.h"
#include "store/maildir_store.h"

namespace tern::imap {
namespace {

using asio::ip::tcp;

// Changes made by programs that do not use the change hub (mutt, a file
// dropped into new/, another process) reach a session in IDLE this often.
constexpr std::chrono::seconds kIdlePoll{15};

class Connection : public net::LineConnection, public SessionHost {
 public:
  Connection(tcp::socket socket, net::LineConnection::Options options, Server& server,
             std::shared_ptr<const Settings> settings, SessionConfig config,
             ClientInfo client)
      : net::LineConnection(std::move(socket), std::move(options)),
        server_(server),
        settings_(std::move(settings)),
        config_(std::move(config)),
        credentials_(server.deps().credentials),
        session_(config_, *this, std::move(client)) {}

  // --- SessionHost (Work() calls these on the blocking pool) ---
  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    credentials_.clear();
    return auth::MakeMechanism(name, credentials_);
  }
  bool AuthBlocked() override {
    if (!server_.deps().throttle.Blocked(ip())) return false;
    spdlog::warn("imap auth refused client={} reason=throttled", ip());
    return true;
  }
  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    metrics::Get().auth.With({"imap", "failure"}).Inc();
    auto wait = server_.deps().throttle.Failure(ip());
    // Never the password or the SASL payload.
    spdlog::warn("imap auth failed client={} mechanism={} user={} delay_ms={}", ip(),
                 mechanism, user.empty() ? credentials_.user() : std::string(user),
                 wait.count());
    return wait;
  }
  void AuthSucceeded(std::string_view mechanism, const std::string& user) override {
    metrics::Get().auth.With({"imap", "success"}).Inc();
    server_.deps().throttle.Success(ip());
    spdlog::info("imap login client={} user={} mechanism={}", ip(), user, mechanism);
  }
  Result<std::unique_ptr<store::MailStore>> OpenStore(
      const std::string& account) override {
    auto path = store::MailboxPathFor(account);
    if (!path) return tl::unexpected(path.error());
    std::string dir =
        server_.deps().mail_root + "/" + path->domain + "/" + path->local + "/Maildir";
    store::MaildirStoreOptions opt;
    opt.hostname = settings_->hostname;
    auto st = store::MaildirStore::Open(dir, opt);
    if (!st) {
      spdlog::error("imap open store user={} dir={}: {}", account, dir,
                    st.error().message);
      return tl::unexpected(st.error());
    }
    account_key_ = path->domain + "/" + path->local;
    account_ = account;
    maildir_ = dir;
    std::weak_ptr<LineConnection> weak = shared_from_this();
    subscription_ = server_.deps().changes.Subscribe(
        account_key_, [weak, this](std::string_view folder) {
          auto self = weak.lock();
          if (!self) return;
          {
            MutexLock lock(watch_mu_);
            if (folder != watched_) return;
          }
          Wake();
        });
    asio::co_spawn(stream().socket().get_executor(),
                   PollLoop(std::static_pointer_cast<Connection>(shared_from_this())),
                   asio::detached);
    return std::unique_ptr<store::MailStore>(std::move(*st));
  }
  void Changed(std::string_view folder) override {
    if (!account_key_.empty()) {
      server_.deps().changes.Publish(account_key_, folder, subscription_);
    }
  }
  void ReleaseMemory() override { TrimHeapSoon(); }
  void IndexTextLater(std::string_view folder) override {
    if (maildir_.empty()) return;
    store::MaildirStoreOptions opt;
    opt.hostname = settings_->hostname;
    server_.indexer().Request(
        maildir_ + "\n" + std::string(folder), std::string(folder),
        [dir = maildir_, opt]() -> Result<std::unique_ptr<store::MailStore>> {
          auto st = store::MaildirStore::Open(dir, opt);
          if (!st) return tl::unexpected(st.error());
          return std::unique_ptr<store::MailStore>(std::move(*st));
        });
  }
  std::optional<QuotaState> Quota() override {
    if (server_.deps().quota == nullptr || maildir_.empty()) return std::nullopt;
    uint64_t limit = settings_->quota_storage;
    if (server_.deps().directory != nullptr) {
      limit = server_.deps().directory->QuotaOf(account_).value_or(limit);
    }
    if (limit == 0) return std::nullopt;
    auto used = server_.deps().quota->Usage(maildir_);
    if (!used) {
      spdlog::warn("imap quota usage user={}: {}", account_, used.error().message);
      return std::nullopt;
    }
    return QuotaState{*used, limit};
  }
  void UsageChanged(int64_t delta) override {
    if (TracksUsage()) server_.deps().quota->Adjust(maildir_, delta);
  }
  bool TracksUsage() const override {
    return server_.deps().quota != nullptr && !maildir_.empty();
  }
  void Watch(std::string_view folder) override {
    MutexLock lock(watch_mu_);
    watched_ = std::string(folder);
  }

 protected:
  // --- net::LineConnection ---
  void Greet() override { session_.Greet(); }
  size_t Feed(std::string_view data) override {
    ApplyWake();
    return session_.Feed(data);
  }
  Want want() override {
    switch (session_.need()) {
      case Need::kInput: return Want::kInput;
      case Need::kClose: return Want::kClose;
      case Need::kStartTls: return Want::kStartTls;
      case Need::kCompress: return Want::kCompress;
      case Need::kWork:
      case Need::kDelay: return Want::kWork;
    }
    return Want::kClose;
  }
  std::string& output() override { return session_.output(); }
  bool Busy() override { return session_.Busy(); }
  void SayShutdown() override { session_.Shutdown(); }
  void SayTimeout() override { session_.Timeout(); }
  void TlsStarted() override { session_.TlsStarted(); }
  void CompressionStarted() override { session_.CompressionStarted(); }
  uint32_t CommandTimeout() override { return settings_->imap.idle_timeout; }
  bool Woken() override {
    wake_pending_ = true;
    if (in_work_) return false;  // looked at when the work is done
    return ApplyWake();
  }
  asio::awaitable<bool> Work() override;
  void Ended(net::EndReason reason, std::chrono::milliseconds elapsed) override {
    if (subscription_ != 0) server_.deps().changes.Unsubscribe(subscription_);
    ended_ = true;
    if (poll_timer_ != nullptr) poll_timer_->cancel();
    // With COMPRESS (RFC 4978): octets before/after deflate each way.
    std::string deflate;
    if (auto st = compression(); st.active) {
      deflate = fmt::format(" deflate_out={}/{} deflate_in={}/{}", st.sent_plain,
                            st.sent_wire, st.received_plain, st.received_wire);
    }
    spdlog::info(
        "imap session client={} listener={} user={} commands={} fetched={}{} end={} "
        "ms={}",
        ip(), options().listener, session_.user().empty() ? "-" : session_.user(),
        session_.commands(), session_.fetched(), deflate, net::EndReasonName(reason),
        elapsed.count());
  }

 private:
  const std::string& ip() const { return session_.client().ip; }
  // On the connection's strand, never during Work(): true when the session
  // wants to look at its folder now (in IDLE).
  bool ApplyWake() {
    if (!wake_pending_) return false;
    wake_pending_ = false;
    return session_.Wake();
  }

  Server& server_;
  std::shared_ptr<const Settings> settings_;
  SessionConfig config_;
  // Declared before the session: its SASL mechanism refers to it.
  auth::RecordingCredentials credentials_;
  Session session_;
  std::string account_key_;
  std::string account_;
  std::string maildir_;
  uint64_t subscription_ = 0;
  Mutex watch_mu_;
  std::string watched_ GUARDED_BY(watch_mu_);
  bool in_work_ = false;
  bool wake_pending_ = false;
  bool ended_ = false;
  asio::steady_timer* poll_timer_ = nullptr;  // PollLoop's, while it runs

  // Wakes the session every kIdlePoll (it acts only in IDLE) until the
  // connection ends. On the connection's strand.
  static asio::awaitable<void> PollLoop(std::shared_ptr<Connection> self) {
    asio::steady_timer timer(self->stream().socket().get_executor());
    self->poll_timer_ = &timer;
    while (!self->ended_) {
      timer.expires_after(kIdlePoll);
      asio::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (self->ended_) break;
      if (!self->in_work_ && self->session_.idling()) self->Wake();
    }
    self->poll_timer_ = nullptr;
  }
};

struct WorkJob {
  Session* session;
  void Run() { session->Work(); }
};

// g++ 12 miscompiles co_return inside a switch in a coroutine: plain ifs.
asio::awaitable<bool> Connection::Work() {
  bool ok = true;
  if (session_.need() == Need::kDelay) {
    co_await Sleep(session_.delay());
    session_.DelayDone();
  } else {
    in_work_ = true;
    WorkJob job{&session_};
    co_await Blocking(&job);
    in_work_ = false;
    ApplyWake();
    // A long answer (FETCH 1:*) goes out piece by piece.
    if (session_.need() == Need::kWork && !session_.output().empty()) {
      ok = co_await Write(session_.output());
    }
  }
  co_return ok;
}

class Listener : public net::Service {
 public:
  Listener(Server& server, config::Listener listener)
      : server_(server), listener_(std::move(listener)) {}

  std::string_view protocol() const override { return "imap"; }
  std::string_view listener() const override { return listener_.service; }
  net::ConnectionLimiter& limiter() override { return server_.limiter(); }
  Limits limits() override {
    const config::ImapSettings& s = server_.settings()->imap;
    return {s.max_connections, s.max_connections_per_ip};
  }
  std::string RefusalLine() override {
    if (implicit_tls()) return {};
    // RFC 9051 7.1.5: BYE at connect when the server will not serve.
    return "* BYE [UNAVAILABLE] Too many connections, try again later\r\n";
  }
  std::shared_ptr<net::LineConnection> Make(tcp::socket socket,
                                            const std::string& ip) override;

 private:
  // RFC 8314 3.3 (port 993): TLS first, then IMAP.
  bool implicit_tls() const { return listener_.service == "imaps"; }

  Server& server_;
  config::Listener listener_;
};

std::shared_ptr<net::LineConnection> Listener::Make(tcp::socket socket,
                                                    const std::string& ip) {
  auto settings = server_.settings();
  const config::ImapSettings& s = settings->imap;
  SessionConfig config;
  config.hostname = settings->hostname;
  config.max_errors = s.max_errors;
  config.append_limit = s.append_limit;
  config.sasl_mechanisms = std::string(auth::kSaslMechanisms);
  net::LineConnection::Options options;
  options.protocol = "imap";
  options.listener = listener_.service;
  options.client_ip = ip;
  options.implicit_tls = implicit_tls();
  options.tls = server_.deps().tls.get();
  options.blocking = &server_.deps().blocking;
  ClientInfo client;
  client.ip = ip;
  client.starttls_available = options.tls != nullptr && !options.implicit_tls;
  asio::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  client.plaintext_ok = listener_.allow_plaintext_auth && !ec &&
                        net::ClientAddress(remote.address()).is_loopback();
  return std::make_shared<Connection>(std::move(socket), std::move(options), server_,
                                      std::move(settings), std::move(config),
                                      std::move(client));
}

}  // namespace

Server::Server(ServerDeps deps, const config::Config& cfg) : deps_(std::move(deps)) {
  Reload(cfg);
}

void Server::Reload(const config::Config& cfg) {
  auto s = std::make_shared<Settings>();
  s->imap = cfg.imap;
  s->hostname = cfg.hostname;
  s->quota_storage = cfg.quota_storage;
  settings_.set(std::move(s));
}

std::unique_ptr<net::Service> Server::MakeListener(const config::Listener& listener) {
  return std::make_unique<Listener>(*this, listener);
}

}  // namespace tern::imap
