// `tern serve`: binds the listeners as root, drops privileges, opens the
// directory and the queue, then accepts connections until SIGTERM/SIGINT,
// finishing transactions in flight for a bounded time. SIGHUP reloads.
// Under systemd (Type=notify) it reports readiness, reloads and shutdown.
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <asio.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

#include "auth/directory.h"
#include "common/heap.h"
#include "common/metrics.h"
#include "common/trace.h"
#include "common/version.h"
#include "control/control.h"
#include "delivery/local_delivery.h"
#include "delivery/setup.h"
#include "dns/cache.h"
#include "acme/acme_client.h"
#include "antispam/greylist.h"
#include "antispam/rate_limit.h"
#include "dns/serial_resolver.h"
#include "dns/unbound_resolver.h"
#include "server/dmarc_reporting.h"
#include "mailauth/arc.h"
#include "mailauth/dkim_keys.h"
#include "mailauth/outbound_signer.h"
#include "mailauth/srs.h"
#include "auth/credentials.h"
#include "auth/throttle.h"
#include "common/base64.h"
#include "common/current.h"
#include "common/strings.h"
#include "net/accept.h"
#include "net/registry.h"
#include "net/tls.h"
#include "pop3/server.h"
#include "http/server/server.h"
#include "imap/server/server.h"
#include "store/change_hub.h"
#include "store/quota.h"
#include "queue/queue.h"
#include "server/serve.h"
#include "smtp/server/server.h"

namespace tern::server {
namespace {

using asio::ip::tcp;

struct BoundListener {
  config::Listener config;
  std::unique_ptr<tcp::acceptor> acceptor;
};

Result<std::unique_ptr<tcp::acceptor>> Bind(asio::io_context& io,
                                            const config::Listener& l) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(l.host, ec);
  if (ec) return Err("listen " + l.address + ": bad address");
  tcp::endpoint ep(addr, l.port);
  auto acc = std::make_unique<tcp::acceptor>(io);
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && addr.is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Err("listen " + l.address + ": " + ec.message());
  return acc;
}

// Tells the service manager what the server is doing (dist/tern.service is
// Type=notify). sd_notify(3): `state` is newline-separated assignments sent
// as one datagram to the AF_UNIX socket named in $NOTIFY_SOCKET; without
// that variable (not started by systemd: a shell, the tests) nothing is sent
// and 0 is returned. The man page advises ignoring the result, since a
// service manager that does not listen must not stop the server. The
// variable stays set (unset_environment 0) for the later messages.
void Notify(const std::string& state) {
  sd_notify(0, state.c_str());
}

// RELOADING=1 with the time it began: sd_notify(3) requires READY=1 once the
// reload is done; systemd 253 and later (Type=notify-reload) also ask for
// MONOTONIC_USEC=, which older versions ignore.
void NotifyReloading() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000u +
                  static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  Notify(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the config", usec));
}

// RFC 5321 4.5.1: postmaster mail is always accepted; someone should read it.
void WarnIfNoPostmaster(const config::Config& cfg, auth::Directory& dir) {
  if (!cfg.postmaster.empty()) return;
  std::string fallback = dir.FallbackPostmaster();
  auth::Resolution r = dir.Resolve(fallback);
  if (r.mailboxes.size() == 1 && r.remote.empty() && r.mailboxes[0] == fallback) {
    spdlog::warn(
        "postmaster is not set in {}: mail for postmaster@, abuse@ and system "
        "users (root, ...) is delivered to the Maildir of {} under {}/mail; "
        "set postmaster = \"you@domain\" to read it elsewhere",
        cfg.path, fallback, cfg.data_dir);
  }
}

// Drops root to `user` (RFC-less but essential: nothing parses network input
// with privileges). The data folder is handed to that user first.
Result<void> DropPrivileges(const std::string& user, const std::string& data_dir) {
  if (user.empty()) return {};
  if (geteuid() != 0) {
    spdlog::warn("config user={} ignored: not started as root", user);
    return {};
  }
  struct passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) return Err("user " + user + ": no such user");
  std::error_code fec;
  for (auto it = std::filesystem::recursive_directory_iterator(data_dir, fec);
       !fec && it != std::filesystem::recursive_directory_iterator(); it.increment(fec)) {
    if (lchown(it->path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Err("chown " + it->path().string() + " failed");
    }
  }
  if (chown(data_dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return Err("chown " + data_dir + " failed");
  }
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
      setuid(pw->pw_uid) != 0) {
    return Err("cannot drop privileges to " + user);
  }
  if (setuid(0) == 0) return Err("privileges were not dropped");
  spdlog::info("dropped privileges to user={} uid={}", user, pw->pw_uid);
  return {};
}

// The TLS contexts the config asks for: the ACME certificate (when [acme]
// has issued one), its certificates, or the dev self-signed one (made on
// first start; also the stand-in until ACME's first certificate). Null
// when TLS is not configured.
Result<std::shared_ptr<net::TlsContexts>> LoadTls(const config::Config& cfg) {
  std::vector<net::CertificateFiles> certs;
  for (const config::Certificate& c : cfg.tls.certificates) {
    certs.push_back({c.cert, c.key});
  }
  if (!cfg.acme.directory.empty()) {
    std::string path = acme::CertPath(cfg.data_dir + "/acme");
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      // First: the default for clients that send no server name.
      std::vector<net::CertificateFiles> with = certs;
      with.insert(with.begin(), {path, path});
      auto set = net::TlsContexts::Load(with);
      if (set) {
        spdlog::info("tls: ACME certificate and {} other(s) for {}", certs.size(),
                     fmt::join((*set)->names(), ","));
        return *set;
      }
      // A damaged file must not keep the server down: ACME replaces it.
      spdlog::error("tls: the ACME certificate is not usable: {}", set.error().message);
    }
  }
  if (certs.empty() && (cfg.tls.self_signed || !cfg.acme.directory.empty())) {
    bool created = false;
    auto self = net::EnsureSelfSigned(cfg.data_dir + "/tls", cfg.hostname, &created);
    if (!self) return Err(self.error().message);
    if (created) {
      spdlog::warn("generated a self-signed certificate for {} in {} "
                   "(dev only, or until ACME brings one: clients will not trust it)",
                   cfg.hostname, self->cert);
    }
    certs.push_back(*self);
  }
  if (certs.empty()) return std::shared_ptr<net::TlsContexts>();
  auto set = net::TlsContexts::Load(certs);
  if (!set) return Err(set.error().message);
  spdlog::info("tls: {} certificate(s) for {}", certs.size(),
               fmt::join((*set)->names(), ","));
  return *set;
}

// DKIM signing keys under data_dir/dkim (tern dkim keygen), when [mailauth]
// sign is on; an unreadable key is logged and its domain left unsigned.
std::shared_ptr<const mailauth::DkimKeyMap> LoadDkimKeys(const config::Config& cfg) {
  auto keys = std::make_shared<mailauth::DkimKeyMap>();
  if (!cfg.mailauth.sign) return keys;
  auto loaded = mailauth::LoadAllDkimSigningKeys(cfg.data_dir);
  if (!loaded) {
    spdlog::error("dkim: {}", loaded.error().message);
    return keys;
  }
  *keys = std::move(*loaded);
  for (const auto& [domain, list] : *keys) {
    spdlog::info("dkim: {} key(s) for {}", list.size(), domain);
  }
  return keys;
}

// The SRS secret (data_dir/srs.key: one key per line, the first signs,
// the others are still accepted, for rotation), made on first start.
Result<mailauth::Srs> MakeSrs(const config::Config& cfg) {
  const std::string path = cfg.data_dir + "/srs.key";
  std::string text;
  if (std::ifstream in(path); in) {
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) return Err("no random bytes for a key");
    text = Base64Encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw)) + "\n";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Err(path + ": " + std::strerror(errno));
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return Err(path + ": cannot write the key");
    spdlog::info("srs: made a new key in {}", path);
  }
  mailauth::SrsOptions options;
  for (const std::string& line : Split(text, '\n')) {
    std::string key(Trim(line));
    if (key.empty() || key[0] == '#') continue;
    if (options.key.empty()) {
      options.key = key;
    } else {
      options.old_keys.push_back(key);
    }
  }
  options.max_age_days = static_cast<int>(cfg.mailauth.srs_max_age_days);
  return mailauth::Srs::Create(std::move(options));
}

// The AUTH brute-force defence's limits. Fixed at start-up: a SIGHUP must
// not forget who is locked out.
auth::ThrottleConfig ThrottleConfigFrom(const config::AuthSettings& a) {
  auth::ThrottleConfig tc;
  tc.max_failures = a.max_failures;
  tc.window = std::chrono::seconds(a.window);
  tc.lockout = std::chrono::seconds(a.lockout);
  tc.delay_step = std::chrono::milliseconds(a.delay_step_ms);
  tc.max_delay = std::chrono::milliseconds(a.max_delay_ms);
  return tc;
}

// /health: the data folder must have room for mail (64 MiB and 1% free,
// both for root's reserve and for everyone else's).
bool DataDirHealthy(const std::string& data_dir, std::string* why) {
  struct statvfs st;
  if (::statvfs(data_dir.c_str(), &st) != 0) {
    *why = "data_dir " + data_dir + ": " + std::strerror(errno);
    return false;
  }
  uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  uint64_t total = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  if (free_bytes < (64ull << 20) || free_bytes * 100 < total) {
    *why = "data_dir " + data_dir + " has " + std::to_string(free_bytes >> 20) + " MiB free";
    return false;
  }
  return true;
}

// Waits for connections to finish after a shutdown request, forcing them
// closed after the grace period, then stops the queue and the io context.
asio::awaitable<void> Drain(net::Registry& registry, asio::io_context& io,
                            uint32_t grace) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(grace);
  asio::steady_timer t(io);
  bool forced = false;
  while (registry.live() > 0) {
    if (!forced && std::chrono::steady_clock::now() >= until) {
      spdlog::warn("shutdown grace over, closing {} connections", registry.live());
      registry.ShutdownAll(true);
      forced = true;
      until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    } else if (forced && std::chrono::steady_clock::now() >= until) {
      break;
    }
    t.expires_after(std::chrono::milliseconds(50));
    asio::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  io.stop();
}

// Every connection holds a socket and, while a message is in flight, a
// queue file: the usual soft limit of 1024 descriptors is far too low.
void RaiseFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      spdlog::warn("cannot raise the open file limit");
    }
  }
}

}  // namespace

int Serve(const config::Config& initial) {
  config::Config cfg = initial;
  RaiseFileLimit();
  SetHeapPolicy();
  // Wakes IMAP sessions when a folder of their account changes; outlives
  // everything that publishes to it.
  store::ChangeHub changes;
  // Mailbox usage for quotas, shared by SMTP (552 5.2.2) and IMAP.
  store::QuotaUsage quota_usage;
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));

  std::error_code fec;
  std::filesystem::create_directories(cfg.data_dir, fec);
  if (fec) {
    spdlog::critical("data_dir {}: {}", cfg.data_dir, fec.message());
    return 1;
  }
  chmod(cfg.data_dir.c_str(), 0700);

  // Owned through a pointer so that it can be destroyed (with every
  // connection coroutine still parked in it) before the queue they use.
  auto io_owner = std::make_unique<asio::io_context>(
      cfg.threads == 1 ? 1 : ASIO_CONCURRENCY_HINT_DEFAULT);
  asio::io_context& io = *io_owner;
  std::vector<BoundListener> listeners;
  for (const auto& l : cfg.listeners) {
    auto acc = Bind(io, l);
    if (!acc) {
      spdlog::critical("{}", acc.error().message);
      return 1;
    }
    listeners.push_back({l, std::move(*acc)});
  }
  // Keys are often readable by root only (Let's Encrypt), so they are
  // loaded before privileges go.
  auto tls = LoadTls(cfg);
  if (!tls) {
    spdlog::critical("{}", tls.error().message);
    return 1;
  }
  if (auto r = DropPrivileges(cfg.user, cfg.data_dir); !r) {
    spdlog::critical("{}", r.error().message);
    return 1;
  }
  // The message trace (`tern trace`), as the server's user. [trace]
  // keep_days counts from this start: a reload does not change it.
  if (cfg.trace.keep_days > 0) trace::Open(cfg.data_dir + "/trace", cfg.trace.keep_days);

  auto directory = auth::Directory::Open(
      cfg.data_dir + "/tern.db", cfg.domains,
      auth::LocalRouting::FromSystem(cfg.postmaster));
  if (!directory) {
    spdlog::critical("directory: {}", directory.error().message);
    return 1;
  }
  auth::Directory* dir = directory->get();
  WarnIfNoPostmaster(cfg, *dir);
  queue::Options qopt;
  qopt.data_dir = cfg.data_dir;
  qopt.delivery_threads = cfg.delivery_threads;
  qopt.hostname = cfg.hostname;
  qopt.postmaster = dir->FallbackPostmaster();
  qopt.direct_local = cfg.delivery.direct_local;
  // Outbound delivery (issue 5); Queue::Stop stops it before itself.
  delivery::ApplyDeliveryConfig(cfg, &qopt);
  // SRS for mail that aliases forward (the hook also lets the bounces of
  // such mail back in, to the original sender).
  std::optional<mailauth::Srs> srs;
  if (cfg.mailauth.srs) {
    auto made = MakeSrs(cfg);
    if (!made) {
      spdlog::critical("srs: {}", made.error().message);
      return 1;
    }
    srs.emplace(std::move(*made));
    const mailauth::Srs* s = &*srs;
    dir->SetForwardingHook([s](const std::string& address) -> std::optional<std::string> {
      auto back = s->Reverse(address);
      if (!back) {
        spdlog::info("srs: {} refused: {}", address, back.error().message);
        return std::nullopt;
      }
      return *back;
    });
  }
  // DKIM keys for signing at queue time and ARC sealing of forwarded mail
  // (replaced on SIGHUP).
  Current<const mailauth::DkimKeyMap> dkim_keys(LoadDkimKeys(cfg));
  delivery::OutboundOptions oopt = delivery::OutboundOptionsFrom(cfg);
  if (cfg.mailauth.sign) {
    // RFC 8617 5.1: mail an alias forwards leaves with our ARC set, made
    // with the keys of the first of our domains that has any.
    oopt.forward_seal = [&dkim_keys, domains = cfg.domains,
                         host = cfg.hostname](const std::string& message) {
      auto keys = dkim_keys.get();
      if (!keys) return std::string();
      const std::vector<mailauth::DkimSigningKey>* mine = nullptr;
      for (const std::string& d : domains) {
        auto it = keys->find(ToLower(d));
        if (it != keys->end() && !it->second.empty()) {
          mine = &it->second;
          break;
        }
      }
      if (mine == nullptr) return std::string();
      auto fields = mailauth::SealForwarded(message, host, *mine,
                                            static_cast<int64_t>(std::time(nullptr)));
      if (!fields) {
        spdlog::warn("arc: forwarded mail not sealed: {}", fields.error().message);
        return std::string();
      }
      return std::move(*fields);
    };
  }
  if (srs) {
    const mailauth::Srs* s = &*srs;
    std::string domain = cfg.domains.front();
    oopt.forward_sender = [s, domain](const std::string& sender) {
      auto rewritten = s->Forward(sender, domain);
      return rewritten ? *rewritten : sender;  // unrewritable: sent as is
    };
  }
  auto outbound = delivery::Outbound::Start(std::move(oopt));
  if (!outbound) {
    spdlog::critical("outbound: {}", outbound.error().message);
    return 1;
  }
  qopt.remote = outbound->get();
  auto local = delivery::LocalDelivery::Open(
      {cfg.data_dir + "/mail", cfg.hostname,
       [&changes, &quota_usage, mail = cfg.data_dir + "/mail"](
           const std::string& account, const std::string& folder) {
         quota_usage.Invalidate(mail + "/" + account + "/Maildir");
         changes.Publish(account, folder);
       }},
      [dir](const std::string& a) { return dir->Resolve(a); });
  if (!local) {
    spdlog::critical("queue: {}", local.error().message);
    return 1;
  }
  qopt.local = local->get();
  auto queue = queue::Queue::Open(qopt);
  if (!queue) {
    spdlog::critical("queue: {}", queue.error().message);
    return 1;
  }
  if (auto r = (*queue)->Start(); !r) {
    spdlog::critical("queue: {}", r.error().message);
    return 1;
  }
  // `tern queue flush|retry|hold|...` reach the queue through this socket.
  // Rate limit counters outlive every SIGHUP ([ratelimit] numbers are
  // read again, the counts stay); the control socket shows them.
  antispam::RateLimiter rate_limiter;
  auto control = control::ControlServer::Start(io, cfg.data_dir, **queue, &rate_limiter);
  if (!control) {
    spdlog::critical("{}", control.error().message);
    return 1;
  }

  // What the connections share. Certificates and settings are replaced on
  // SIGHUP; a connection keeps those it started with.
  Current<net::TlsContexts> tls_now(std::move(*tls));
  auth::DirectoryCredentials credentials(*dir);
  auth::AuthThrottle throttle(ThrottleConfigFrom(cfg.auth));  // SMTP and POP3
  // SASL steps (Argon2id) and POP3 expunges: never on an io thread.
  asio::thread_pool blocking(2);
  net::Registry registry;
  // Inbound mail authentication resolves on one strand of the io context
  // (libunbound and its cache are not thread-safe); connections ask from
  // theirs.
  std::unique_ptr<dns::Resolver> mailauth_resolver;
  if (cfg.mailauth.verify || !cfg.antispam.dnsbl.empty() || !cfg.antispam.dnswl.empty()) {
    auto strand = asio::make_strand(io.get_executor());
    dns::UnboundOptions uo;
    uo.upstreams = cfg.dns.upstream;
    uo.trust_anchor_file = cfg.dns.trust_anchor;
    auto unbound = dns::MakeUnboundResolver(strand, uo);
    if (!unbound) {
      spdlog::critical("mailauth: {}", unbound.error().message);
      return 1;
    }
    auto cache = std::make_unique<dns::CachingResolver>(**unbound, strand);
    mailauth_resolver = std::make_unique<dns::SerialResolver>(
        strand, std::move(cache), std::move(*unbound));
  }
  // Greylisting triplets survive restarts (issue 15). Turning greylisting
  // on or changing its delay takes a restart, not a SIGHUP.
  std::unique_ptr<antispam::Greylist> greylist;
  if (cfg.antispam.greylist) {
    antispam::GreylistOptions go;
    go.delay = std::chrono::seconds(cfg.antispam.greylist_delay);
    auto opened = antispam::Greylist::Open(cfg.data_dir + "/greylist.sqlite", go);
    if (!opened) {
      spdlog::critical("greylist: {}", opened.error().message);
      return 1;
    }
    greylist = std::move(*opened);
  }
  // DMARC aggregate reports ([mailauth] dmarc_reports; dmarc_reporting.h).
  auto dmarc_reporter = DmarcReporter::Make(io, mailauth_resolver.get(), cfg);
  if (dmarc_reporter) {
    dmarc_reporter->Start();
    (*control)->SetDmarcSend([r = dmarc_reporter.get()] { return r->SendNow(); });
  }
  smtp::Server smtp_server({*dir, **queue, credentials, throttle, blocking, tls_now,
                            mailauth_resolver.get(), &dkim_keys, &quota_usage,
                            cfg.data_dir + "/mail", greylist.get(), &rate_limiter,
                            dmarc_reporter ? dmarc_reporter->store() : nullptr},
                           cfg);
  // POP3 reads the Maildirs that local delivery writes.
  pop3::Server pop3_server(
      {credentials, throttle, blocking, tls_now, cfg.data_dir + "/mail", &changes}, cfg);
  // IMAP reads the same Maildirs, with folders and an index of its own.
  imap::Server imap_server({credentials, throttle, blocking, tls_now,
                            cfg.data_dir + "/mail", changes, dir, &quota_usage},
                           cfg);
  // ACME certificates (issue 16): issued and renewed on a thread of their
  // own; a new one is swapped into the TLS contexts on the io context, as
  // SIGHUP does, so connections keep theirs and new ones get it.
  Current<const config::Config> tls_config(std::make_shared<const config::Config>(cfg));
  auto reload_tls = [&tls_now, &tls_config] {
    auto c = tls_config.get();
    if (auto t = LoadTls(*c); !t) {
      spdlog::error("tls reload failed, keeping the old certificates: {}", t.error().message);
    } else if (*t || !tls_now.get()) {
      tls_now.set(std::move(*t));
    }
  };
  std::unique_ptr<acme::Manager> acme_manager;
  if (!cfg.acme.directory.empty()) {
    acme::Options ao;
    ao.directory = cfg.acme.directory;
    ao.contact = cfg.acme.contact;
    ao.names = cfg.acme.names;
    ao.challenge = cfg.acme.challenge;
    ao.ca_file = cfg.acme.ca_file;
    ao.dir = cfg.data_dir + "/acme";
    ao.renew_days = cfg.acme.renew_days;
    ao.check_interval = cfg.acme.check_interval;
    acme_manager = std::make_unique<acme::Manager>(
        std::move(ao), [&io, reload_tls] { asio::post(io, reload_tls); });
  }
  acme::Manager* acme_ptr = acme_manager.get();
  // The web listeners (autoconfig, MTA-STS, ACME HTTP-01, /metrics).
  http::Server http_server({tls_now,
                            [acme_ptr](const std::string& token) -> std::optional<std::string> {
                              if (acme_ptr == nullptr) return std::nullopt;
                              return acme_ptr->Http01Answer(token);
                            },
                            [data_dir = cfg.data_dir](std::string* why) {
                              return DataDirHealthy(data_dir, why);
                            }},
                           cfg);
  queue::Queue* q = queue->get();
  metrics::Get().queue_messages.SetCallback(
      [q] { return static_cast<double>(q->GetStats().messages); });
  metrics::Get().queue_oldest.SetCallback([q] {
    uint64_t oldest = q->GetStats().oldest_micros;
    if (oldest == 0) return 0.0;
    double now = static_cast<double>(std::time(nullptr));
    return std::max(0.0, now - static_cast<double>(oldest) / 1e6);
  });
  std::vector<std::unique_ptr<net::Service>> services;
  for (auto& l : listeners) {
    const std::string& service = l.config.service;
    if (service == "http" || service == "https" || service == "admin") {
      services.push_back(http_server.MakeListener(l.config));
    } else if (service == "pop3" || service == "pop3s") {
      services.push_back(pop3_server.MakeListener(l.config));
    } else if (service == "imap" || service == "imaps") {
      services.push_back(imap_server.MakeListener(l.config));
    } else {
      services.push_back(smtp_server.MakeListener(l.config));
    }
  }
  uint32_t grace = cfg.shutdown_grace;

  auto stop_signals_owner = std::make_unique<asio::signal_set>(io, SIGTERM, SIGINT);
  auto hup_owner = std::make_unique<asio::signal_set>(io, SIGHUP);
  asio::signal_set& stop_signals = *stop_signals_owner;
  asio::signal_set& hup = *hup_owner;
  bool stopping = false;
  stop_signals.async_wait([&](const asio::error_code& ec, int sig) {
    if (ec || stopping) return;
    stopping = true;
    spdlog::info("signal {}: shutting down (grace {}s)", sig, grace);
    Notify(fmt::format("STOPPING=1\nSTATUS=shutting down, {} connection(s) to finish",
                       registry.live()));
    hup.cancel();
    for (auto& l : listeners) {
      asio::error_code ignored;
      l.acceptor->close(ignored);
    }
    registry.ShutdownAll(false);
    asio::co_spawn(io, Drain(registry, io, grace), asio::detached);
  });
  std::function<void(const asio::error_code&, int)> on_hup;
  on_hup = [&](const asio::error_code& ec, int) {
    if (ec) return;
    NotifyReloading();
    std::string status = "serving; config reloaded";
    auto fresh = config::Load(cfg.path);
    if (!fresh) {
      spdlog::error("reload failed, keeping the old config: {}", fresh.error().message);
      status = "serving; reload failed, old config kept: " + fresh.error().message;
    } else {
      fresh->data_dir = cfg.data_dir;  // the data folder cannot move at run time
      smtp_server.Reload(*fresh);
      pop3_server.Reload(*fresh);
      imap_server.Reload(*fresh);
      http_server.Reload(*fresh);
      grace = fresh->shutdown_grace;
      spdlog::info("config reloaded from {} (listeners unchanged)", cfg.path);
      // New certificates serve new connections; sessions keep theirs.
      tls_config.set(std::make_shared<const config::Config>(*fresh));
      if (auto t = LoadTls(*fresh); !t) {
        spdlog::error("tls reload failed, keeping the old certificates: {}",
                      t.error().message);
      } else if (*t || !tls_now.get()) {
        tls_now.set(std::move(*t));
      } else {
        spdlog::warn("tls reload: no certificates configured, keeping the old ones");
      }
      dkim_keys.set(LoadDkimKeys(*fresh));
      dir->SetRouting(auth::LocalRouting::FromSystem(fresh->postmaster));
      WarnIfNoPostmaster(*fresh, *dir);
    }
    if (auto r = dir->Reload(); !r) {
      spdlog::error("directory reload failed: {}", r.error().message);
      status = "serving; directory reload failed: " + r.error().message;
    }
    // STATUS= is a single line (sd_notify(3)).
    std::replace(status.begin(), status.end(), '\n', ' ');
    Notify("READY=1\nSTATUS=" + status);
    hup.async_wait(on_hup);
  };
  hup.async_wait(on_hup);

  for (size_t i = 0; i < listeners.size(); ++i) {
    spdlog::info("listening on {} ({})", listeners[i].config.address,
                 listeners[i].config.service);
    asio::co_spawn(io, net::AcceptLoop(*listeners[i].acceptor, registry, *services[i]),
                   asio::detached);
  }
  spdlog::info("{} ready: hostname={} domains={} data_dir={}", VersionLine(),
               cfg.hostname, fmt::join(cfg.domains, ","), cfg.data_dir);
  // The sockets are listening (connections wait in their backlogs until the
  // accept loops run), privileges are dropped, the queue runs: ready.
  Notify(fmt::format("READY=1\nSTATUS=serving {} listener(s) as {}", listeners.size(),
                     cfg.hostname));

  if (acme_manager) acme_manager->Start();

  unsigned n = cfg.threads == 0 ? std::max(1u, std::thread::hardware_concurrency())
                                : cfg.threads;
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < n; ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : threads) t.join();
  // Its callback posts into the io context, which must outlive it.
  acme_manager.reset();

  // The queue calls every pending commit callback (they post into the
  // stopped io context), then the io context is destroyed with the
  // connections it still holds; only then may the queue go.
  // Password checks and expunges in flight finish before the io context
  // they report to is destroyed.
  blocking.join();
  control->reset();  // its acceptor belongs to the io context
  metrics::Get().queue_messages.SetCallback(nullptr);
  metrics::Get().queue_oldest.SetCallback(nullptr);
  (*queue)->Stop();
  trace::Close();
  listeners.clear();
  stop_signals_owner.reset();
  hup_owner.reset();
  if (dmarc_reporter) dmarc_reporter->Stop();
  dmarc_reporter.reset();
  // Its descriptor belongs to the io context; queries still pending are
  // cancelled and never call back.
  mailauth_resolver.reset();
  io_owner.reset();
  spdlog::info("tern stopped");
  return 0;
}

}  // namespace tern::server
