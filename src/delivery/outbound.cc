// The outbound delivery engine: per-destination job queues, worker
// coroutines that own one SMTP connection each (reused for many messages),
// MX resolution, and the I/O around the sans-I/O smtp::client::ClientSession
// (sockets, STARTTLS, deadlines).
#include "delivery/outbound.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <asio/ssl.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/strings.h"
#include "common/trace.h"
#include "delivery/dane.h"
#include "dns/cache.h"
#include "dns/unbound_resolver.h"
#include "delivery/mta_sts_fetch.h"
#include "delivery/tlsrpt_send.h"
#include "common/file_io.h"
#include "common/unique_fd.h"
#include "net/deadline.h"
#include "smtp/client/downgrade.h"
#include "smtp/client/reply.h"

namespace tern::delivery {
namespace {

using asio::ip::tcp;
using smtp::client::ClientSession;
using smtp::client::LocalReply;
using smtp::client::Reply;
using smtp::client::TlsPolicy;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHosts = 10;  // MX hosts tried per destination
// A message goes out in pieces of this size, read from the spool file one
// at a time (a 50 MiB message must not cost 50 MiB of memory).
constexpr size_t kBodyChunk = 256 * 1024;
// An idle connection waits up to kIdleChecks x kIdleCheck for more mail.
constexpr int kIdleChecks = 10;
constexpr auto kIdleCheck = std::chrono::milliseconds(100);
// QUIT's reply and the TLS close_notify exchange get this long, in seconds.
constexpr uint32_t kQuitTimeout = 5;

struct Hop {
  std::string host;     // name (for TLS checks, logs, Remote-MTA)
  std::string address;  // IP literal
  uint16_t port = 25;
  // RFC 7672 (delivery/dane.h): set for MX hosts only; `domain` is the
  // next-hop domain, a reference identifier for DANE-TA.
  DaneDecision dane = {};
  std::string domain = {};
  // Only verified TLS will do for this hop (DANE, MTA-STS enforce): no
  // delivery without it, and no plain-text retry after a failed
  // handshake. The route's or the global tls = "required" has the same
  // effect.
  bool tls_required = false;
  // "mta-sts enforce" / "mta-sts testing" when a policy covers the hop
  // (and DANE does not): shown in the TLS log line and the trace, and
  // told to sts::NoteTls.
  std::string tls_policy = {};
  // RFC 8689 4.2.1: the host's name is vouched for, as REQUIRETLS asks:
  // a DNSSEC-signed MX answer, an MX host an MTA-STS policy lists, the
  // domain itself (no MX), or a relay named in our own configuration.
  bool name_vouched = false;
  // TLS-RPT (RFC 8460 4.4): the policy this MX hop's sessions count under.
  std::shared_ptr<const tlsrpt::PolicyKey> rpt = {};
  std::string Key() const { return address + ":" + std::to_string(port); }
  std::string Text() const {
    return host + "[" + address + "]:" + std::to_string(port);
  }
};

// For the log and the trace: why DANE did or did not apply to a host that
// was not DANE-authenticated ("" for relays and address literals).
std::string DaneNote(const DaneDecision& dane) {
  if (dane.why.empty()) return "";
  return std::string(dane.state == DaneState::kNone ? "; no DANE: " : "; DANE: ") +
         dane.why;
}

struct HopPlan {
  std::vector<Hop> hops;
  std::optional<Reply> error;  // the destination cannot be reached at all
};

// One message on its way; shared by its jobs (one per destination).
struct Tracker {
  queue::RemoteJob job;
  queue::RemoteReport report;
  std::function<void(queue::RemoteReport)> done;
  int outstanding = 0;
  // The header section has been read (for tls_required_no). The file
  // itself is opened by each job and read piece by piece while it is sent:
  // neither the message nor a descriptor is held while a job waits.
  bool loaded = false;
  // Any octet above 127 (RFC 6152): read through for peers without
  // 8BITMIME only, the first time one comes up.
  std::optional<bool> has_8bit;
  bool tls_required_no = false;  // "TLS-Required: No" (RFC 8689 3)
};

// The bytes of a message as one transaction sends them: the queued file
// (envelope.prepend, then body_len bytes at body_offset), read in
// kBodyChunk pieces; or a copy in memory when it had to be rewritten as a
// whole (ARC seal, 8-bit downgrade).
struct Payload {
  const std::string* memory = nullptr;  // set: the whole message
  std::string_view prepend;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t len = 0;

  uint64_t size() const { return memory ? memory->size() : prepend.size() + len; }
  // The piece [pos, pos + n) of the message, in `buf` when it comes from
  // the file (or a view of the copy in memory). False on a read error.
  bool Read(uint64_t pos, size_t n, std::string& buf, std::string_view* out) const {
    if (memory) {
      *out = std::string_view(*memory).substr(pos, n);
      return true;
    }
    buf.resize(n);
    size_t got = 0;
    if (pos < prepend.size()) {
      got = std::min<uint64_t>(n, prepend.size() - pos);
      std::memcpy(buf.data(), prepend.data() + pos, got);
    }
    if (got < n) {
      uint64_t file_pos = pos + got - prepend.size();
      if (io::PreadAll(fd, buf.data() + got, n - got,
                       static_cast<off_t>(offset + file_pos)) != 0) {
        return false;
      }
    }
    *out = std::string_view(buf.data(), n);
    return true;
  }
  // The whole message in one string, for the rare rewrites that need it.
  bool ReadAll(std::string* out) const {
    std::string_view v;
    std::string buf;
    if (!Read(0, size(), buf, &v)) return false;
    if (memory) {
      out->assign(v);
    } else {
      *out = std::move(buf);
    }
    return true;
  }
};

struct Job {
  std::shared_ptr<Tracker> tracker;
  std::vector<size_t> rcpts;  // indexes into tracker->job.rcpts
  bool forwarded = false;     // all of them forwarded by an alias (SRS, ARC)
};

// A worker idling on an open connection, waiting for more mail for its
// destination. `let_go` is set when another destination, which has no
// connection at all, asked for the slot: the worker then closes and gives
// the slot up even if mail for its own destination came in before it woke
// (that mail queues behind the destination that asked first).
struct IdleWait {
  explicit IdleWait(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
  bool let_go = false;
};

struct Destination {
  std::string key;
  std::string domain;
  const RouteConfig* route = nullptr;  // null: MX
  std::deque<Job> jobs;
  uint32_t workers = 0;
  // Listed in OutboundImpl::waiting_: it has jobs for another worker but
  // every connection slot is taken.
  bool waiting = false;
  // This destination's workers that idle on an open connection: a new job
  // wakes one at once.
  std::vector<IdleWait*> idlers;
  // Hops that failed to connect or greet during this busy period: other
  // jobs skip them instead of waiting for the same timeout again.
  std::set<std::string> dead;
};

// One SMTP connection. Shared by its worker and its watchdog.
struct Conn {
  Conn(asio::io_context& io, asio::ssl::context& ctx, ClientSession s)
      : stream(io, ctx),
        deadline(stream.next_layer(), net::Deadline::OnExpiry::kClose),
        session(std::move(s)) {}

  // RFC 5321 4.5.3.2: each wait (connect, reply, data block) has its own.
  void SetDeadline(uint32_t seconds) { deadline.ExpiresAfter(seconds); }
  bool timed_out() const { return deadline.timed_out(); }
  // Closed by us or by the deadline.
  bool closed() { return !stream.next_layer().is_open(); }
  void Close() {
    asio::error_code ignored;
    stream.next_layer().close(ignored);
    deadline.Stop();
  }

  asio::ssl::stream<tcp::socket> stream;
  net::Deadline deadline;
  ClientSession session;
  Hop hop;
  bool tls = false;
  bool tls_handshake_failed = false;  // the opportunistic retry's trigger
  std::string tls_fallback;  // why this is the plain-text retry ("": not)
  std::string tls_info;  // "TLSv1.3 verified" / "... unverified (reason)"
  // The peer's certificate was authenticated: PKIX for its name, or DANE.
  bool tls_verified = false;
  // Made for a message with "TLS-Required: No" (RFC 8689 4.1): DANE and
  // MTA-STS were set aside, so no other message may use it.
  bool relaxed = false;
  // Set when TLS failed for a policy reason (DANE): the session's own
  // failure text would not say why.
  std::optional<Reply> tls_failure;
  uint32_t messages = 0;
  std::array<char, 4096> buf;
};

class OutboundImpl final : public Outbound {
 public:
  explicit OutboundImpl(OutboundOptions options)
      : options_(std::move(options)),
        io_(std::make_unique<asio::io_context>(1)),
        guard_(asio::make_work_guard(*io_)),
        rng_(std::random_device{}()) {}

  ~OutboundImpl() override { Stop(); }

  Result<void> Init();
  void Stop() override;
  void Send(queue::RemoteJob job,
            std::function<void(queue::RemoteReport)> done) override;

  // Named coroutine bodies (g++ 12 and coroutine lambdas do not mix).
  friend asio::awaitable<void> RunWorker(OutboundImpl* self, Destination* d);

 private:
  friend asio::awaitable<void> DeliverJob(OutboundImpl* self, Destination* d,
                                          const HopPlan* plan, Job job,
                                          std::shared_ptr<Conn>* conn);
  friend asio::awaitable<HopPlan> PlanHops(OutboundImpl* self,
                                           Destination* d);
  friend asio::awaitable<DaneDecision> DaneFor(OutboundImpl* self,
                                               dns::Security mx,
                                               dns::Security addr,
                                               std::string host);
  friend asio::awaitable<std::vector<std::string>> LookupHost(
      OutboundImpl* self, std::string host, bool* temp, std::string* error,
      dns::Security* security);
  friend asio::awaitable<Reply> Connect(OutboundImpl* self, Hop hop,
                                        const RouteConfig* route,
                                        std::shared_ptr<Conn>* out);
  friend asio::awaitable<Reply> ConnectOnce(OutboundImpl* self, const Hop& hop,
                                            const RouteConfig* route,
                                            TlsPolicy policy,
                                            std::shared_ptr<Conn>* out,
                                            bool* tls_failed);
  friend asio::awaitable<void> Drive(OutboundImpl* self,
                                     std::shared_ptr<Conn> c,
                                     const Payload* body,
                                     TlsPolicy policy);

  void Accept(std::shared_ptr<Tracker> t);
  void MaybeSpawn(Destination& d);
  void WorkerDone(Destination* d);
  // True when another destination waits for a connection slot: an idle
  // worker then gives its slot up at once instead of waiting for more mail.
  // Only a destination without any worker counts: one that has a
  // connection already takes further slots as they come free, so that
  // connections are not closed and opened again for every message.
  bool SlotWanted() {
    while (!waiting_.empty() && waiting_.front()->jobs.empty()) {
      waiting_.front()->waiting = false;
      waiting_.pop_front();
    }
    for (const Destination* w : waiting_) {
      if (w->workers == 0 && !w->jobs.empty()) return true;
    }
    return false;
  }
  void Complete(const std::shared_ptr<Tracker>& t);
  std::string OpenMessage(Tracker& t, UniqueFd* fd);
  bool Has8Bit(Tracker& t, int fd);
  asio::ssl::context& TlsContext(const RouteConfig* route);
  uint32_t TimeoutFor(ClientSession::Phase phase) const;
  // Counts one TLS session for TLS-RPT; `failure` is an RFC 8460 4.3
  // result type, or null for a success.
  void NoteTlsRpt(Conn& c, const char* failure);
  TlsPolicy PolicyFor(const RouteConfig* route) const {
    return route ? route->tls : options_.tls;
  }

  OutboundOptions options_;
  std::unique_ptr<asio::io_context> io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::unique_ptr<dns::Resolver> raw_resolver_;
  std::unique_ptr<dns::CachingResolver> resolver_;
  std::unique_ptr<sts::Manager> sts_;  // null when MTA-STS is off
  std::unique_ptr<tlsrpt::Reporter> tlsrpt_;  // null when TLS-RPT is off
  std::unique_ptr<asio::ssl::context> mx_tls_;
  std::map<const RouteConfig*, std::unique_ptr<asio::ssl::context>> route_tls_;
  std::thread thread_;
  std::mutex mu_;  // guards stopped_ against Send from queue threads
  bool stopped_ = false;
  bool started_ = false;

  // Only touched on the io thread:
  std::map<std::string, Destination> dests_;
  uint32_t total_workers_ = 0;
  // Destinations that have mail but found every slot taken, oldest first,
  // and the timers of workers idling on an open connection (woken when a
  // destination starts waiting, so that the slot changes hands at once).
  std::deque<Destination*> waiting_;
  std::set<IdleWait*> idlers_;
  std::mt19937 rng_;
};

Result<std::unique_ptr<asio::ssl::context>> MakeTlsContext(
    const std::string& ca_file) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  asio::error_code ec;
  ctx->set_default_verify_paths(ec);
  if (!ca_file.empty()) {
    ctx->load_verify_file(ca_file, ec);
    if (ec) return Err("ca_file " + ca_file + ": " + ec.message());
  }
  // Verification never aborts the handshake: its result is read afterwards
  // and decides only when the policy requires it (opportunistic TLS with an
  // unverifiable certificate still beats plain text, RFC 7435).
  ctx->set_verify_mode(asio::ssl::verify_none);
  ctx->set_options(asio::ssl::context::default_workarounds |
                   asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3);
  return ctx;
}

Result<void> OutboundImpl::Init() {
  auto mx = MakeTlsContext(options_.ca_file);
  if (!mx) return tl::unexpected(mx.error());
  mx_tls_ = std::move(*mx);
  if (!EnableDane(mx_tls_->native_handle()))
    return Err("TLS: cannot enable DANE on the MX context");
  for (const RouteConfig& r : options_.routes) {
    auto ctx = MakeTlsContext(r.ca_file);
    if (!ctx) return tl::unexpected(ctx.error());
    route_tls_[&r] = std::move(*ctx);
  }
  if (options_.make_resolver) {
    raw_resolver_ = options_.make_resolver(io_->get_executor());
  } else {
    dns::UnboundOptions uo;
    uo.upstreams = options_.dns_upstreams;
    uo.trust_anchor_file = options_.dns_trust_anchor;
    auto r = dns::MakeUnboundResolver(io_->get_executor(), uo);
    if (!r) return tl::unexpected(r.error());
    raw_resolver_ = std::move(*r);
  }
  resolver_ = std::make_unique<dns::CachingResolver>(*raw_resolver_,
                                                     io_->get_executor());
  if (options_.mta_sts) {
    sts::Options so;
    so.cache_dir = options_.mta_sts_dir;
    so.port = options_.mta_sts_port;
    so.ca_file = options_.ca_file;
    sts_ = std::make_unique<sts::Manager>(so, *resolver_);
  }
  if (!options_.tlsrpt_data_dir.empty()) {
    tlsrpt::Options to;
    to.data_dir = options_.tlsrpt_data_dir;
    to.interval = options_.tlsrpt_interval;
    to.submitter = options_.hostname;
    to.organization = options_.hostname;
    to.from = options_.tlsrpt_from;
    to.ca_file = options_.ca_file;
    tlsrpt_ = std::make_unique<tlsrpt::Reporter>(to, io_->get_executor(), *resolver_);
    tlsrpt_->Start();
  }
  started_ = true;
  thread_ = std::thread([this] { io_->run(); });
  return {};
}

void OutboundImpl::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (!started_) return;
  guard_.reset();
  io_->stop();
  if (thread_.joinable()) thread_.join();
  // The fetcher thread posts to io_: it ends before io_ does.
  if (sts_) sts_->Stop();
  sts_.reset();
  if (tlsrpt_) tlsrpt_->Stop();  // saves the counts
  tlsrpt_.reset();
  // The resolver's descriptor belongs to the io_context: it goes first.
  resolver_.reset();
  raw_resolver_.reset();
  io_.reset();
}

void OutboundImpl::Send(queue::RemoteJob job,
                        std::function<void(queue::RemoteReport)> done) {
  std::lock_guard lock(mu_);
  if (stopped_) return;
  auto t = std::make_shared<Tracker>();
  t->job = std::move(job);
  t->report.id = t->job.id;
  t->done = std::move(done);
  asio::post(*io_, [this, t] { Accept(t); });
}

asio::ssl::context& OutboundImpl::TlsContext(const RouteConfig* route) {
  if (route != nullptr) {
    if (auto it = route_tls_.find(route); it != route_tls_.end())
      return *it->second;
  }
  return *mx_tls_;
}

uint32_t OutboundImpl::TimeoutFor(ClientSession::Phase phase) const {
  switch (phase) {
    case ClientSession::Phase::kGreeting:
      return options_.greeting_timeout;
    case ClientSession::Phase::kDataInit:
      return options_.data_init_timeout;
    case ClientSession::Phase::kBody:
      return options_.data_block_timeout;
    case ClientSession::Phase::kFinal:
      return options_.final_timeout;
    case ClientSession::Phase::kCommand:
      break;
  }
  return options_.command_timeout;
}

void OutboundImpl::NoteTlsRpt(Conn& c, const char* failure) {
  if (!tlsrpt_ || !c.hop.rpt) return;
  tlsrpt::Outcome o;
  o.domain = c.hop.domain;
  o.policy = *c.hop.rpt;
  o.ok = failure == nullptr;
  if (!o.ok) {
    asio::error_code ec;
    auto local = c.stream.next_layer().local_endpoint(ec);
    o.failure = {failure, ec ? "" : local.address().to_string(), c.hop.host,
                 c.hop.address};
  }
  tlsrpt_->Note(o);
}

void OutboundImpl::Accept(std::shared_ptr<Tracker> t) {
  // One job per destination, and per envelope sender: forwarded
  // recipients go out with the SRS sender, the others with the original.
  std::map<std::pair<std::string, bool>, std::vector<size_t>> groups;
  std::map<std::string, std::pair<std::string, const RouteConfig*>> where;
  for (size_t i = 0; i < t->job.rcpts.size(); ++i) {
    std::string domain = DomainOf(t->job.rcpts[i].recipient.address);
    const RouteConfig* route = FindRoute(options_.routes, domain);
    // A relay takes every domain routed to it in one transaction; without
    // one, each domain is its own destination (RFC 5321 5.1).
    std::string key = route ? "relay:" + route->relay_host + ":" +
                                  std::to_string(route->relay_port)
                            : "mx:" + domain;
    // Forwarded recipients get the SRS sender and an ARC seal: a copy of
    // their own, the others receive the message as it came.
    bool fwd = t->job.rcpts[i].forwarded &&
               ((options_.forward_sender && !t->job.envelope.sender.empty()) ||
                options_.forward_seal);
    groups[{key, fwd}].push_back(i);
    where[key] = {domain, route};
  }
  t->outstanding = static_cast<int>(groups.size());
  if (groups.empty()) {
    Complete(t);
    return;
  }
  for (auto& [group, idx] : groups) {
    const std::string& key = group.first;
    Destination& d = dests_[key];
    if (d.key.empty()) {
      d.key = key;
      d.domain = where[key].first;
      d.route = where[key].second;
    }
    d.jobs.push_back(Job{t, std::move(idx), group.second});
    if (!d.idlers.empty()) {
      // A worker of this destination idles on an open connection: it
      // takes the job now (MaybeSpawn then sees enough workers).
      IdleWait* w = d.idlers.back();
      d.idlers.pop_back();
      if (idlers_.erase(w) > 0) w->timer.cancel();
    }
    MaybeSpawn(d);
  }
}

void OutboundImpl::MaybeSpawn(Destination& d) {
  while (!d.jobs.empty() && d.workers < options_.max_connections_per_destination &&
         d.workers < d.jobs.size() && total_workers_ < options_.max_connections) {
    ++d.workers;
    ++total_workers_;
    asio::co_spawn(*io_, RunWorker(this, &d), asio::detached);
  }
  // Slots ran out while this destination still wants a worker (it has
  // none, or more jobs than workers): it waits its turn. When it has no
  // worker at all, one that only idles on an open connection for another
  // destination is asked to let go.
  bool wants = !d.jobs.empty() && d.workers < options_.max_connections_per_destination &&
               d.workers < d.jobs.size();
  if (wants && !d.waiting) {
    d.waiting = true;
    waiting_.push_back(&d);
  }
  if (wants && d.workers == 0 && !idlers_.empty()) {
    IdleWait* w = *idlers_.begin();
    idlers_.erase(idlers_.begin());
    w->let_go = true;
    w->timer.cancel();
  }
}

void OutboundImpl::WorkerDone(Destination* d) {
  --d->workers;
  --total_workers_;
  if (d->workers == 0 && d->jobs.empty()) d->dead.clear();
  // A slot is free: the destinations that waited longest get it first (a
  // destination with no worker at all before one that wants another).
  for (int pass = 0; pass < 2 && total_workers_ < options_.max_connections; ++pass) {
    std::deque<Destination*> todo;
    todo.swap(waiting_);
    std::deque<Destination*> still;
    for (Destination* w : todo) {
      w->waiting = false;
      if (w->jobs.empty()) continue;
      if ((pass == 0 && w->workers > 0) ||
          total_workers_ >= options_.max_connections) {
        w->waiting = true;
        still.push_back(w);
        continue;
      }
      MaybeSpawn(*w);  // lists it again, at the end, if it wants more
    }
    still.insert(still.end(), waiting_.begin(), waiting_.end());
    waiting_.swap(still);
  }
  // A worker that let its slot go for another destination may leave mail
  // of its own behind: that destination waits its turn like any other.
  if (!d->jobs.empty()) MaybeSpawn(*d);
}

void OutboundImpl::Complete(const std::shared_ptr<Tracker>& t) {
  if (t->done) t->done(std::move(t->report));
}

// The message as the spool file holds it, for sending.
Payload FilePayload(const Tracker& t, int fd) {
  Payload p;
  // The header fields added at commit (DKIM-Signature) come first.
  p.prepend = t.job.envelope.prepend;
  p.fd = fd;
  p.offset = t.job.body_offset;
  p.len = t.job.body_len;
  return p;
}

// Opens the queued message for one job; the first time, also reads its
// header section (TLS-Required). Returns why it failed, or "".
std::string OutboundImpl::OpenMessage(Tracker& t, UniqueFd* fd) {
  *fd = UniqueFd(::open(t.job.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!*fd) return "cannot open the queued message";
  if (t.loaded) return "";
  Payload p = FilePayload(t, fd->get());
  smtp::client::MessageScan scan;
  std::string buf;
  constexpr size_t kHeaderPiece = 16 * 1024;
  for (uint64_t pos = 0; pos < p.size() && !scan.header_done(); pos += kHeaderPiece) {
    std::string_view piece;
    if (!p.Read(pos, std::min<uint64_t>(kHeaderPiece, p.size() - pos), buf, &piece)) {
      *fd = UniqueFd();
      return "cannot read the queued message";
    }
    scan.Feed(piece);
  }
  scan.Finish();
  t.tls_required_no = scan.tls_required_no();
  t.loaded = true;
  return "";
}

// Reads the queued message through, a piece at a time, for 8-bit octets.
// A read error counts as 7-bit: sending reads the file again and defers
// the message when that fails too.
bool OutboundImpl::Has8Bit(Tracker& t, int fd) {
  if (t.has_8bit) return *t.has_8bit;
  Payload p = FilePayload(t, fd);
  std::string buf;
  bool found = false;
  for (uint64_t pos = 0; pos < p.size() && !found; pos += kBodyChunk) {
    std::string_view piece;
    if (!p.Read(pos, std::min<uint64_t>(kBodyChunk, p.size() - pos), buf, &piece)) {
      return false;
    }
    found = smtp::client::Has8Bit(piece);
  }
  t.has_8bit = found;
  return found;
}

asio::awaitable<std::vector<std::string>> LookupHost(OutboundImpl* self,
                                                     std::string host,
                                                     bool* temp,
                                                     std::string* error,
                                                     dns::Security* security) {
  std::vector<std::string> out;
  // DNSSEC status of the answers that were used (RFC 7672 2.2.2): secure
  // only when every one of them was.
  bool answered = false;
  dns::Security sec = dns::Security::kSecure;
  *security = dns::Security::kInsecure;
  if (IsIpLiteral(host)) {
    out.push_back(host);
    co_return out;
  }
  // IPv6 first, then IPv4: every address is tried until one answers.
  for (dns::RrType type : {dns::RrType::kAaaa, dns::RrType::kA}) {
    dns::Answer a = co_await dns::AsyncQuery(*self->resolver_, host, type,
                                             asio::use_awaitable);
    if (a.status == dns::Status::kTempFail) {
      *temp = true;
      *error = "DNS lookup of " + host + " failed: " + a.error;
      continue;
    }
    answered = true;
    if (a.security != dns::Security::kSecure) sec = a.security;
    if (a.status == dns::Status::kOk && !a.canonical_name.empty()) {
      // RFC 2181 10.3 forbids MX targets that are aliases; following the
      // alias is the common, liberal answer.
      spdlog::debug("outbound: {} is an alias of {}", host, a.canonical_name);
    }
    for (std::string& addr : a.addresses) out.push_back(std::move(addr));
  }
  if (answered) *security = sec;
  co_return out;
}

Hop MxHop(const std::string& host, const std::string& address, uint16_t port,
          const DaneDecision& dane, const std::string& domain) {
  Hop hop{host, address, port, dane, domain};
  hop.tls_required = dane.tls_required();
  return hop;
}

// The TLSA lookup (when RFC 7672 2.2 calls for one) and the decision.
asio::awaitable<DaneDecision> DaneFor(OutboundImpl* self, dns::Security mx,
                                      dns::Security addr, std::string host) {
  if (!NeedTlsaLookup(mx, addr, nullptr)) co_return DecideDane(mx, addr, nullptr);
  std::string name = TlsaName(self->options_.mx_port, host);
  dns::Answer tlsa = co_await dns::AsyncQuery(*self->resolver_, name,
                                              dns::RrType::kTlsa,
                                              asio::use_awaitable);
  co_return DecideDane(mx, addr, &tlsa);
}

asio::awaitable<HopPlan> PlanHops(OutboundImpl* self, Destination* d) {
  HopPlan plan;
  bool temp = false;
  std::string error;
  dns::Security addr_sec = dns::Security::kInsecure;
  if (d->route != nullptr) {
    const RouteConfig& r = *d->route;
    std::vector<std::string> addrs =
        co_await LookupHost(self, r.relay_host, &temp, &error, &addr_sec);
    for (const std::string& a : addrs)
      plan.hops.push_back(Hop{r.relay_host, a, r.relay_port});
    if (plan.hops.empty()) {
      // A relay that does not resolve is our configuration's problem:
      // defer rather than bounce.
      plan.error = LocalReply(451, "4.4.3",
                              error.empty() ? "relay host " + r.relay_host +
                                                  " has no address"
                                            : error);
    }
    co_return plan;
  }
  const std::string& domain = d->domain;
  if (domain.empty()) {
    plan.error = LocalReply(550, "5.1.2", "recipient address has no domain");
    co_return plan;
  }
  if (domain.front() == '[' && domain.back() == ']') {
    // RFC 5321 4.1.3 address literal: no DNS.
    std::string lit = domain.substr(1, domain.size() - 2);
    if (IStartsWith(lit, "ipv6:")) lit = lit.substr(5);
    if (!IsIpLiteral(lit)) {
      plan.error = LocalReply(550, "5.1.2", "bad address literal " + domain);
    } else {
      plan.hops.push_back(Hop{lit, lit, self->options_.mx_port});
    }
    co_return plan;
  }
  dns::Answer mx = co_await dns::AsyncQuery(*self->resolver_, domain,
                                            dns::RrType::kMx,
                                            asio::use_awaitable);
  if (mx.status == dns::Status::kTempFail) {
    plan.error = LocalReply(451, "4.4.3",
                            "DNS lookup of MX for " + domain +
                                " failed: " + mx.error);
    co_return plan;
  }
  if (mx.status == dns::Status::kNxDomain) {
    plan.error = LocalReply(550, "5.1.2",
                            "domain " + domain + " does not exist (DNS)");
    co_return plan;
  }
  // RFC 5321 5.1: when we are an MX of the domain ourselves, only better
  // MX hosts may take it; none better means it loops.
  if (DropSelfAndWorseMx(mx.mx, self->options_.hostname) && mx.mx.empty()) {
    plan.error = LocalReply(554, "5.4.6",
                            "mail for " + domain + " loops back to myself");
    co_return plan;
  }
  MxPlan mxp = PlanMx(mx, domain, self->rng_);
  if (mxp.implicit && SameHostName(domain, self->options_.hostname)) {
    plan.error = LocalReply(554, "5.4.6",
                            "mail for " + domain + " loops back to myself");
    co_return plan;
  }
  if (mxp.kind == MxPlan::Kind::kNullMx) {
    // RFC 7505 3.2 / 4.
    plan.error = LocalReply(556, "5.1.10",
                            "recipient domain " + domain +
                                " does not accept mail (null MX)");
    co_return plan;
  }
  if (mxp.kind == MxPlan::Kind::kUnusable) {
    plan.error = LocalReply(554, "5.4.4", mxp.error);
    co_return plan;
  }
  // MTA-STS (RFC 8461 5): the policy may rule out MX hosts and require
  // verified TLS to the others. Where DANE protects a host, DANE's rules
  // take precedence for it (RFC 8461 2).
  sts::HostRule sts_rule;
  std::optional<sts::Cached> sts_policy;
  if (self->sts_) {
    sts_policy = co_await sts::Lookup(self->sts_.get(), domain);
    sts_rule = sts::ApplyToHosts(sts_policy ? &*sts_policy : nullptr, domain, &mxp.hosts);
    if (mxp.hosts.empty()) {
      plan.error = LocalReply(451, "4.7.5",
                              "no MX host of " + domain +
                                  " is allowed by its MTA-STS policy");
      co_return plan;
    }
  }
  if (mxp.hosts.size() > kMaxHosts) mxp.hosts.resize(kMaxHosts);
  std::string dane_error;  // the last host left out by DANE
  for (const std::string& host : mxp.hosts) {
    const bool vouched = mx.security == dns::Security::kSecure || mxp.implicit ||
                         (sts_policy && sts_policy->policy.mode != sts::Mode::kNone &&
                          sts::MxAllowed(sts_policy->policy, host));
    std::vector<std::string> addrs =
        co_await LookupHost(self, host, &temp, &error, &addr_sec);
    if (addrs.empty()) continue;
    DaneDecision dane = co_await DaneFor(self, mx.security, addr_sec, host);
    spdlog::info("outbound: {} MX {}: DANE {} ({})", domain, host,
                 DaneStateName(dane.state), dane.why);
    if (dane.state == DaneState::kFail) {
      // RFC 7672 2.1.1: never this host; the next MX may do.
      dane_error = "MX host " + host + " skipped (DANE): " + dane.why;
      continue;
    }
    for (const std::string& a : addrs) {
      plan.hops.push_back(MxHop(host, a, self->options_.mx_port, dane, domain));
      plan.hops.back().name_vouched = vouched;
      if (dane.state == DaneState::kNone) {
        // RFC 8461 2: where DANE applies, its rules win over MTA-STS.
        plan.hops.back().tls_required = sts_rule.tls_required;
        plan.hops.back().tls_policy = sts_rule.label;
      }
      plan.hops.back().rpt = tlsrpt::PolicyFor(
          dane.state == DaneState::kDane ? &dane.records : nullptr,
          sts_rule.label.empty() ? nullptr : &sts_policy->policy);
    }
  }
  if (plan.hops.empty()) {
    if (!dane_error.empty()) {
      plan.error = LocalReply(451, "4.7.5", dane_error);
    } else if (temp) {
      plan.error = LocalReply(451, "4.4.3", error);
    } else {
      plan.error = LocalReply(
          554, "5.4.4",
          (mxp.implicit ? "domain " + domain + " has no MX and no address"
                        : "the MX hosts of " + domain + " have no address"));
    }
  }
  co_return plan;
}

// Runs the session until it is idle, has a result, or has ended: writes its
// output, reads replies, does STARTTLS and sends the body.
asio::awaitable<void> Drive(OutboundImpl* self, std::shared_ptr<Conn> c,
                            const Payload* body, TlsPolicy policy) {
  ClientSession& s = c->session;
  // RFC 5321 4.5.3.2: each timeout bounds the wait for a whole reply. The
  // deadline is set when a wait starts (after a command, the body, TLS or
  // a complete reply), not on every read: otherwise a peer trickling an
  // endless reply an octet at a time would hold the connection for as
  // long as the reply parser's limits allow (hours).
  constexpr uint64_t kNoWait = ~uint64_t{0};
  uint64_t wait_from = kNoWait;  // s.replies() when the deadline was set
  while (true) {
    if (!s.output().empty() && !c->closed()) {
      wait_from = kNoWait;
      c->SetDeadline(self->options_.command_timeout);
      asio::error_code ec;
      if (c->tls) {
        co_await asio::async_write(c->stream, asio::buffer(s.output()),
                                   asio::redirect_error(asio::use_awaitable, ec));
      } else {
        co_await asio::async_write(c->stream.next_layer(),
                                   asio::buffer(s.output()),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      s.ClearOutput();
      if (ec) {
        s.ConnectionLost(c->timed_out() ? "timeout" : ec.message());
        c->Close();
        continue;
      }
    }
    switch (s.need()) {
      case ClientSession::Need::kReply: {
        if (c->closed()) {
          s.ConnectionLost(c->timed_out() ? "timeout" : "connection closed");
          continue;
        }
        if (wait_from != s.replies()) {
          wait_from = s.replies();
          c->SetDeadline(self->TimeoutFor(s.phase()));
        }
        asio::error_code ec;
        size_t n;
        if (c->tls) {
          n = co_await c->stream.async_read_some(
              asio::buffer(c->buf), asio::redirect_error(asio::use_awaitable, ec));
        } else {
          n = co_await c->stream.next_layer().async_read_some(
              asio::buffer(c->buf), asio::redirect_error(asio::use_awaitable, ec));
        }
        if (ec) {
          s.ConnectionLost(c->timed_out() ? "timeout waiting for a reply"
                                        : ec.message());
          c->Close();
          continue;
        }
        s.Feed(std::string_view(c->buf.data(), n));
        continue;
      }
      case ClientSession::Need::kStartTls: {
        SSL* ssl = c->stream.native_handle();
        const std::string& host = c->hop.host;
        const DaneDecision& dane = c->hop.dane;
        if (dane.state == DaneState::kDane) {
          if (std::string err = ArmDane(ssl, dane, host, c->hop.domain);
              !err.empty()) {
            c->tls_failure = LocalReply(451, "4.7.5", "DANE setup for " + host +
                                                          " failed: " + err);
            s.TlsStarted(false, err);
            c->Close();
            continue;
          }
        } else if (!IsIpLiteral(host)) {
          // RFC 6066 3 (SNI), and the name the certificate must match
          // (RFC 6125, as RFC 7817 asks for SMTP).
          SSL_set_tlsext_host_name(ssl, host.c_str());
          SSL_set1_host(ssl, host.c_str());
        }
        c->SetDeadline(self->options_.command_timeout);
        asio::error_code ec;
        co_await c->stream.async_handshake(
            asio::ssl::stream_base::client,
            asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          self->NoteTlsRpt(*c, "validation-failure");
          c->tls_handshake_failed = true;
          s.TlsStarted(false, c->timed_out() ? "timeout" : ec.message());
          c->Close();
          continue;
        }
        c->tls = true;
        wait_from = kNoWait;
        std::string version =
            std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
        if (dane.state == DaneState::kDane) {
          // RFC 7672 3.1: DANE replaces PKIX for this host; a mismatch is
          // never delivered to, whatever the policy.
          DaneResult dr = CheckDane(ssl);
          c->tls_info = version + (dr.ok ? " " + dr.text + " verified"
                                         : " dane failed (" + dr.text + ")");
          spdlog::info("outbound: TLS with {}: {}", c->hop.Text(), c->tls_info);
          // RFC 8460 4.3.2: no TLSA record matched.
          self->NoteTlsRpt(*c, dr.ok ? nullptr : "tlsa-invalid");
          if (!dr.ok) {
            c->tls_failure = LocalReply(
                451, "4.7.5",
                "Server certificate not verified (DANE): " + host + ": " + dr.text);
            s.TlsStarted(false, dr.text);
            c->Close();
            continue;
          }
          c->tls_verified = true;
          s.TlsStarted(true, "");
          continue;
        }
        long vr = SSL_get_verify_result(ssl);
        bool verified = SSL_get0_peer_certificate(ssl) != nullptr &&
                        vr == X509_V_OK && !IsIpLiteral(host);
        std::string why =
            verified ? "" : X509_verify_cert_error_string(vr);
        // "... verified mta-sts enforce; no DANE: MX answer insecure".
        c->tls_info = version +
                      (verified ? " verified" : " unverified (" + why + ")");
        if (!c->hop.tls_policy.empty()) c->tls_info += " " + c->hop.tls_policy;
        c->tls_info += DaneNote(dane);
        sts::NoteTls(c->hop.tls_policy, c->hop.Text(),
                     verified ? X509_V_OK : (vr == X509_V_OK ? X509_V_ERR_HOSTNAME_MISMATCH : vr));
        spdlog::info("outbound: TLS with {}: {}", c->hop.Text(), c->tls_info);
        // Without a policy any TLS counts as success (RFC 8460 4.4).
        const long failed = vr == X509_V_OK ? X509_V_ERR_HOSTNAME_MISMATCH : vr;
        self->NoteTlsRpt(*c, verified || c->hop.tls_policy.empty()
                                 ? nullptr
                                 : sts::FailureType(failed));
        c->tls_verified = verified;
        if (policy == TlsPolicy::kRequired && !verified) {
          s.TlsStarted(false, "certificate of " + host +
                                  " not verified: " + why);
          c->Close();
          continue;
        }
        s.TlsStarted(true, "");
        continue;
      }
      case ClientSession::Need::kBody: {
        // The message goes out piece by piece as it is read (from the spool
        // file, or from a rewritten copy in memory): memory stays bounded
        // by kBodyChunk whatever the message's size.
        asio::error_code ec;
        const bool bdat = s.use_bdat();
        const uint64_t size = body->size();
        std::string buf;  // a piece read from the file
        std::string out;  // what is written: a command, stuffed data
        if (bdat) {
          // RFC 3030 3: one chunk, the message as it is.
          out = "BDAT " + std::to_string(size) + " LAST\r\n";
        }
        smtp::client::DotStuffer stuffer;
        bool read_error = false;
        for (uint64_t pos = 0; !ec; pos += kBodyChunk) {
          const bool last = pos >= size;
          if (!last) {
            std::string_view piece;
            if (!body->Read(pos, std::min<uint64_t>(kBodyChunk, size - pos), buf,
                            &piece)) {
              read_error = true;
              break;
            }
            if (bdat) {
              out.append(piece);
            } else {
              // RFC 5321 4.5.2: the stuffer keeps its line state from one
              // piece to the next (a "." or a CRLF split between two).
              stuffer.Convert(piece, out);
            }
          } else if (!bdat) {
            stuffer.Finish(out);  // the final CRLF "." CRLF
          }
          if (!out.empty()) {
            // RFC 5321 4.5.3.2.5: the timeout applies to each block sent.
            c->SetDeadline(self->options_.data_block_timeout);
            if (c->tls) {
              co_await asio::async_write(c->stream, asio::buffer(out),
                                         asio::redirect_error(asio::use_awaitable, ec));
            } else {
              co_await asio::async_write(c->stream.next_layer(), asio::buffer(out),
                                         asio::redirect_error(asio::use_awaitable, ec));
            }
            out.clear();
          }
          if (last) break;
        }
        if (read_error) {
          // The peer has part of a message that must not be delivered:
          // the connection goes (RFC 5321 4.1.1.4 has no way to abort DATA).
          s.ConnectionLost("cannot read the queued message");
          c->Close();
          continue;
        }
        if (ec) {
          s.ConnectionLost(c->timed_out() ? "timeout sending the message"
                                        : ec.message());
          c->Close();
          continue;
        }
        s.BodySent();
        wait_from = kNoWait;
        continue;
      }
      case ClientSession::Need::kReady:
      case ClientSession::Need::kResult:
        co_return;
      case ClientSession::Need::kClosed:
        c->Close();
        co_return;
    }
  }
}

asio::awaitable<Reply> ConnectOnce(OutboundImpl* self, const Hop& hop,
                                   const RouteConfig* route, TlsPolicy policy,
                                   std::shared_ptr<Conn>* out,
                                   bool* tls_failed) {
  smtp::client::ClientOptions co;
  co.helo_name = self->options_.hostname;
  co.tls = policy;
  // What Drive checks once TLS is up: a DANE host against its TLSA
  // records; a host with only unusable TLSA records needs TLS but no
  // authentication (RFC 7672 2.2), so PKIX is the route's business there;
  // any other host that requires TLS (MTA-STS enforce, tls = "required")
  // needs a PKIX-verified certificate for its name.
  TlsPolicy verify =
      hop.dane.state == DaneState::kUnusable ? self->PolicyFor(route) : policy;
  if (route != nullptr) {
    co.auth_user = route->auth_user;
    co.auth_password = route->auth_password;
  }
  auto c = std::make_shared<Conn>(*self->io_, self->TlsContext(route),
                                  ClientSession(co));
  c->hop = hop;
  asio::co_spawn(*self->io_, net::Deadline::Watch(c, &c->deadline), asio::detached);
  asio::error_code ec;
  auto addr = asio::ip::make_address(hop.address, ec);
  if (ec) {
    c->Close();
    co_return LocalReply(451, "4.4.1", "bad address " + hop.address);
  }
  c->SetDeadline(self->options_.connect_timeout);
  co_await c->stream.next_layer().async_connect(
      tcp::endpoint(addr, hop.port),
      asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    bool timed_out = c->timed_out();
    c->Close();
    co_return LocalReply(451, "4.4.1",
                         "connect to " + hop.Text() + " failed: " +
                             (timed_out ? "timeout" : ec.message()));
  }
  asio::error_code ignored;
  c->stream.next_layer().set_option(tcp::no_delay(true), ignored);
  co_await Drive(self, c, nullptr, verify);
  // No TLS: STARTTLS not offered (or refused) is a policy failure too.
  if (!c->tls && (c->session.need() == ClientSession::Need::kReady ||
                  (c->session.failure() && c->session.failure()->enhanced == "4.7.4"))) {
    sts::NoteTls(hop.tls_policy, hop.Text(), -1);
    // Not the plain-text retry, which never asks for STARTTLS.
    if (policy != TlsPolicy::kNone) self->NoteTlsRpt(*c, "starttls-not-supported");
  }
  if (c->session.need() != ClientSession::Need::kReady) {
    Reply why = c->tls_failure.value_or(c->session.failure().value_or(
        LocalReply(451, "4.4.2", "session with " + hop.Text() + " failed")));
    *tls_failed = c->tls_handshake_failed;
    if (hop.dane.state != DaneState::kNone && why.enhanced == "4.7.4") {
      why = LocalReply(451, "4.7.4",
                       "TLS is required, but was not offered by host " +
                           hop.host + " (" + DaneStateName(hop.dane.state) +
                           ": " + hop.dane.why + ")");
    }
    if (hop.tls_required && !hop.tls_policy.empty() && !why.lines.empty())
      why.lines.back() += " (required by " + hop.tls_policy + ")";
    c->Close();
    co_return why;
  }
  *out = c;
  co_return Reply{};
}

asio::awaitable<Reply> Connect(OutboundImpl* self, Hop hop,
                               const RouteConfig* route,
                               std::shared_ptr<Conn>* out) {
  TlsPolicy policy =
      hop.tls_required ? TlsPolicy::kRequired : self->PolicyFor(route);
  bool tls_failed = false;
  Reply first = co_await ConnectOnce(self, hop, route, policy, out, &tls_failed);
  if (*out || !tls_failed || policy != TlsPolicy::kOpportunistic)
    co_return first;
  // RFC 7435 (opportunistic security): a handshake that fails is no reason
  // to keep the mail back when plain text was acceptable anyway. The TLS
  // state of that connection is gone, so it is a new one, without
  // STARTTLS, once. Never for a hop that requires TLS (above).
  spdlog::warn("outbound: {} ({}); retrying once in plain text without "
               "STARTTLS",
               hop.Text(), first.Text());
  Reply plain = co_await ConnectOnce(self, hop, route, TlsPolicy::kNone, out,
                                     &tls_failed);
  if (*out) (*out)->tls_fallback = first.Text();
  co_return plain;
}

// RFC 5321 4.1.1.10: QUIT, then wait for the reply; on TLS then
// close_notify (RFC 8446 6.1; a peer that closes TCP without its own alert
// is fine). All of it bounded by kQuitTimeout, on its own coroutine so the
// worker moves on at once.
asio::awaitable<void> SayGoodbye(std::shared_ptr<Conn> c) {
  static const char kQuit[] = "QUIT\r\n";
  c->SetDeadline(kQuitTimeout);
  asio::error_code ec;
  if (c->tls) {
    co_await asio::async_write(c->stream, asio::buffer(kQuit, 6),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      co_await c->stream.async_read_some(
          asio::buffer(c->buf), asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !c->closed()) {
      co_await c->stream.async_shutdown(
          asio::redirect_error(asio::use_awaitable, ec));
    }
  } else {
    co_await asio::async_write(c->stream.next_layer(), asio::buffer(kQuit, 6),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      co_await c->stream.next_layer().async_read_some(
          asio::buffer(c->buf), asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  c->Close();
}

void Quit(std::shared_ptr<Conn>& conn) {
  if (!conn) return;
  if (!conn->closed() && conn->session.need() == ClientSession::Need::kReady) {
    auto ex = conn->stream.get_executor();
    std::shared_ptr<Conn> c = std::move(conn);
    conn.reset();
    asio::co_spawn(ex, SayGoodbye(std::move(c)), asio::detached);
    return;
  }
  conn->Close();
  conn.reset();
}

// Postfix's "mail for X loops back to myself": the peer greets with our
// own name (RFC 5321 4.2 greeting, 4.1.1.1 EHLO reply), so this is us.
std::optional<Reply> LoopsBack(const Conn& c, const std::string& self,
                               const std::string& domain) {
  const ClientSession& s = c.session;
  if (!SameHostName(s.peer_greeting_name(), self) &&
      !SameHostName(s.peer_ehlo_name(), self)) {
    return std::nullopt;
  }
  // RFC 3463 5.4.6: routing loop detected.
  return LocalReply(554, "5.4.6", "mail for " + domain + " loops back to myself");
}

// The trace's record of one remote delivery attempt for one recipient:
// the host it went to ("mx.example.org[192.0.2.1]:25") and the TLS used.
void TraceRemote(const std::string& id, const queue::RemoteOutcome& o, const std::string& via,
                 const std::string& tls) {
  if (!trace::Enabled()) return;
  trace::Event e("delivery");
  e.Add("id", id)
      .Add("rcpt", o.address)
      .Add("destination", "remote")
      .Add("result", o.state == queue::RecipientState::kDelivered ? "delivered"
                     : o.state == queue::RecipientState::kFailed  ? "failed"
                                                                  : "deferred")
      .Add("host", via)
      .Add("tls", tls)
      .Add("reply", o.reply);
  trace::Record(e);
}

// RFC 8689 4.2.1: what keeps a REQUIRETLS message off this connection, or
// "" when nothing does: TLS, an authenticated certificate (PKIX for the
// host name, or DANE), and a host name vouched for (DNSSEC or MTA-STS; a
// relay of our own configuration is named by us).
std::string RequireTlsGap(const Conn& c, bool relay) {
  if (!c.tls) return "no TLS with " + c.hop.Text();
  if (!c.tls_verified)
    return "the certificate of " + c.hop.Text() + " was not verified";
  if (!relay && !c.hop.name_vouched)
    return "the MX host " + c.hop.host +
           " is vouched for neither by DNSSEC nor by an MTA-STS policy";
  return "";
}

asio::awaitable<void> DeliverJob(OutboundImpl* self, Destination* d,
                                 const HopPlan* plan, Job job,
                                 std::shared_ptr<Conn>* conn) {
  Tracker& t = *job.tracker;
  UniqueFd msg_fd;
  std::string read_error = self->OpenMessage(t, &msg_fd);
  const queue::Envelope& env = t.job.envelope;
  // For the trace: where the last transaction went, and its TLS.
  std::string trace_via;
  std::string trace_tls;
  auto record = [&](const Reply& reply, const std::string& host,
                    const std::vector<size_t>* which,
                    const smtp::client::TxnResult* result, bool dsn_passed) {
    for (size_t k = 0; k < job.rcpts.size(); ++k) {
      const queue::RemoteJob::Rcpt& r = t.job.rcpts[job.rcpts[k]];
      Reply rep = result ? result->For(k) : reply;
      queue::RemoteOutcome o;
      o.index = r.index;
      o.address = r.recipient.address;
      o.reply = rep.Text();
      o.status = rep.Status();
      o.remote_mta = host;
      if (rep.positive()) {
        o.state = queue::RecipientState::kDelivered;
        o.dsn_passed = dsn_passed && !r.recipient.notify.empty();
      } else if (rep.permanent()) {
        o.state = queue::RecipientState::kFailed;
      } else {
        o.state = queue::RecipientState::kPending;
      }
      spdlog::info("outbound {}: <{}> {} via {}: {}", t.job.id, o.address,
                   o.state == queue::RecipientState::kDelivered ? "sent"
                   : o.state == queue::RecipientState::kFailed  ? "bounced"
                                                                : "deferred",
                   host.empty() ? "-" : host, o.reply);
      TraceRemote(t.job.id, o, trace_via.empty() ? host : trace_via, trace_tls);
      t.report.rcpts.push_back(std::move(o));
    }
    (void)which;
  };
  auto attempt = [&](const std::string& host, const std::string& reply) {
    t.report.attempts.push_back(
        queue::Attempt{static_cast<int64_t>(std::time(nullptr)), host, reply});
  };

  // The forwarded copy goes out sealed (RFC 8617 5.1); the stored bytes
  // stay as they are, for the other recipients and for retries. The seal
  // hashes the whole message and takes it as one string: only for this
  // (rare) case is the message read into memory, twice over with the
  // sealed copy; everything else is sent from the spool file in pieces.
  Payload file = read_error.empty() ? FilePayload(t, msg_fd.get()) : Payload{};
  Payload copy;
  std::string sealed;
  const Payload* body = &file;
  if (read_error.empty() && !plan->error && job.forwarded &&
      self->options_.forward_seal) {
    std::string whole;
    if (!file.ReadAll(&whole)) {
      read_error = "cannot read the queued message";
    } else if (std::string fields = self->options_.forward_seal(whole);
               !fields.empty()) {
      sealed = std::move(fields);
      sealed.reserve(sealed.size() + whole.size());
      sealed += whole;
      copy.memory = &sealed;
      body = &copy;
    }
  }
  if (!read_error.empty()) {
    Reply r = LocalReply(451, "4.3.0", read_error);
    attempt("local", r.Text());
    record(r, "", nullptr, nullptr, false);
  } else if (plan->error) {
    attempt(d->route ? d->route->relay_host : d->domain, plan->error->Text());
    record(*plan->error, "", nullptr, nullptr, false);
  } else {
    smtp::client::TxnRequest req;
    req.sender = job.forwarded && self->options_.forward_sender && !env.sender.empty()
                     ? self->options_.forward_sender(env.sender)
                     : env.sender;
    for (size_t idx : job.rcpts) {
      const queue::Recipient& r = t.job.rcpts[idx].recipient;
      req.rcpts.push_back({r.address, r.notify, r.orcpt});
    }
    req.size = body->size();
    req.body_8bitmime = IEquals(env.body, "8BITMIME");
    req.smtputf8 = env.smtputf8;
    req.ret = env.ret;
    req.envid = env.envid;
    // RFC 8689: a REQUIRETLS message is passed on with REQUIRETLS, only
    // over TLS the way RequireTlsGap checks (a report about one, sent from
    // <>, is redacted instead: queue/dsn.cc).
    req.requiretls = env.requiretls && !env.sender.empty();
    // RFC 8689 4.1: without REQUIRETLS, "TLS-Required: No" sets DANE and
    // MTA-STS aside for this message: TLS is still tried, not insisted on.
    const bool relax = !env.requiretls && t.tls_required_no;
    if (*conn && (*conn)->relaxed && !relax) Quit(*conn);

    std::set<size_t> tried;
    Reply last = LocalReply(451, "4.4.1", "no mail host could be reached");
    std::string last_host;
    bool done = false;
    while (!done) {
      if (*conn == nullptr) {
        size_t pick = plan->hops.size();
        for (size_t i = 0; i < plan->hops.size(); ++i) {
          if (!tried.count(i) && !d->dead.count(plan->hops[i].Key())) {
            pick = i;
            break;
          }
        }
        if (pick == plan->hops.size()) {
          record(last, last_host, nullptr, nullptr, false);
          break;
        }
        tried.insert(pick);
        Hop hop = plan->hops[pick];
        const bool relaxed = relax && (hop.tls_required || !hop.tls_policy.empty() ||
                                       hop.dane.state != DaneState::kNone);
        if (relaxed) {
          spdlog::info("outbound {}: TLS-Required: No: DANE and MTA-STS set "
                       "aside for {}", t.job.id, hop.Text());
          hop.dane = DaneDecision{};
          hop.tls_required = false;
          hop.tls_policy.clear();
        }
        std::shared_ptr<Conn> fresh;
        Reply failed = co_await Connect(self, hop, d->route, &fresh);
        if (fresh) fresh->relaxed = relaxed;
        if (fresh && !fresh->tls_fallback.empty()) {
          // The failed handshake belongs in the message's history too.
          attempt(hop.Text(), fresh->tls_fallback);
          spdlog::info("outbound {}: {}: {}; retried in plain text", t.job.id,
                       hop.Text(), fresh->tls_fallback);
        }
        if (fresh) {
          if (auto loop = LoopsBack(*fresh, self->options_.hostname, d->domain)) {
            failed = *loop;
            Quit(fresh);
          }
        }
        if (!fresh) {
          attempt(hop.Text(), failed.Text());
          spdlog::info("outbound {}: {}: {}", t.job.id, hop.Text(),
                       failed.Text());
          last = failed;
          last_host = hop.host;
          if (failed.permanent()) {
            // RFC 5321 5.1 as the issue asks: a 5xx ends the attempt.
            trace_via = hop.Text();
            record(failed, hop.host, nullptr, nullptr, false);
            done = true;
          } else {
            d->dead.insert(hop.Key());
          }
          continue;
        }
        *conn = fresh;
      }
      std::shared_ptr<Conn> c = *conn;
      for (size_t i = 0; i < plan->hops.size(); ++i) {
        if (plan->hops[i].Key() == c->hop.Key()) tried.insert(i);
      }
      if (req.requiretls) {
        if (std::string gap = RequireTlsGap(*c, d->route != nullptr); !gap.empty()) {
          // Not this host; another may do, else the message bounces (the
          // 5xx stays `last` unless a later host defers).
          Reply r = LocalReply(550, "5.7.10", "REQUIRETLS: " + gap);
          attempt(c->hop.Text(), r.Text());
          spdlog::info("outbound {}: {}", t.job.id, r.Text());
          last = r;
          last_host = c->hop.host;
          Quit(*conn);
          continue;
        }
      }
      // RFC 6152 3: 8-bit data for a peer without 8BITMIME is converted to
      // 7-bit MIME (quoted-printable) for this connection only; the stored
      // bytes stay as they are for retries and other hosts. This breaks a
      // DKIM signature over the 8-bit body, as it does with Postfix.
      // The conversion works on the whole message in memory: 8-bit mail
      // to a peer without 8BITMIME is rare enough to pay for that.
      // Whether the message has 8-bit octets matters only to a peer
      // without 8BITMIME: only then is the file read through for them
      // (the seal's fields are 7-bit: the file's answer holds for the
      // sealed copy too).
      smtp::client::TxnRequest txn = req;
      if (!c->session.capabilities().eightbitmime) txn.has_8bit = self->Has8Bit(t, msg_fd.get());
      const Payload* payload = body;
      Payload seven_payload;
      std::string seven;
      if (txn.has_8bit && !req.smtputf8 &&
          !c->session.capabilities().eightbitmime) {
        std::string whole;
        std::optional<std::string> converted;
        if (body->ReadAll(&whole)) {
          converted = smtp::client::DowngradeTo7Bit(whole, &txn.downgrade_error);
        } else {
          txn.downgrade_error = "cannot read the queued message";
        }
        whole = std::string();
        if (converted) {
          seven = std::move(*converted);
          seven_payload.memory = &seven;
          payload = &seven_payload;
          txn.has_8bit = false;
          txn.body_8bitmime = false;
          txn.size = seven.size();
          spdlog::info("outbound {}: {} has no 8BITMIME: sending the message "
                       "converted to quoted-printable",
                       t.job.id, c->hop.Text());
        }
      }
      c->session.StartTransaction(std::move(txn));
      co_await Drive(self, c, payload, self->PolicyFor(d->route));
      smtp::client::TxnResult result;
      if (c->session.need() == ClientSession::Need::kResult) {
        result = c->session.TakeResult();
        ++c->messages;
        // RSET after a failed transaction.
        co_await Drive(self, c, nullptr, self->PolicyFor(d->route));
      } else {
        result.mail = c->session.failure().value_or(
            LocalReply(451, "4.4.2", "connection lost"));
      }
      if (c->session.need() != ClientSession::Need::kReady ||
          c->messages >= self->options_.max_messages_per_connection) {
        Quit(*conn);
      }
      std::string host = c->hop.Text() + (c->tls ? " " + c->tls_info : "");
      // A transaction that failed as a whole with a temporary error moves
      // on to the next host (RFC 5321 5.1); per-recipient 4xx stay for the
      // next retry.
      bool all_temp = !result.refused;
      for (size_t k = 0; k < req.rcpts.size() && all_temp; ++k)
        all_temp = result.For(k).transient();
      // The reply to DATA speaks for the message only when a recipient
      // was accepted: with PIPELINING, DATA is sent before the RCPT
      // replies are known, and a server that refused every RCPT (451
      // greylisting, say) refuses it with "554 no valid recipients"
      // (RFC 2920 3.1), which must not turn the 4xx into a bounce.
      bool some_rcpt = false;
      for (const Reply& r : result.rcpt) some_rcpt = some_rcpt || r.positive();
      Reply summary = result.refused ? *result.refused
                      : !result.mail.positive() ? result.mail
                      : result.final_reply.code && some_rcpt ? result.final_reply
                      : result.For(0);
      attempt(host, summary.Text());
      if (all_temp) {
        last = summary;
        last_host = c->hop.host;
        Quit(*conn);
        continue;
      }
      trace_via = c->hop.Text();
      trace_tls = c->tls                    ? c->tls_info
                  : c->hop.dane.why.empty() ? std::string()
                                            : "none" + DaneNote(c->hop.dane);
      record(Reply{}, c->hop.host, nullptr, &result, result.dsn_passed);
      done = true;
    }
  }
  if (--t.outstanding == 0) self->Complete(job.tracker);
}

asio::awaitable<void> RunWorker(OutboundImpl* self, Destination* d) {
  HopPlan plan = co_await PlanHops(self, d);
  std::shared_ptr<Conn> conn;
  IdleWait idle(*self->io_);
  while (true) {
    if (d->jobs.empty() && conn && !conn->closed() && !self->SlotWanted()) {
      // The queue hands over messages in batches: an open connection
      // waits a moment for the next one instead of a new TCP+TLS setup,
      // unless another destination needs the slot (MaybeSpawn wakes us).
      for (int i = 0; i < kIdleChecks && d->jobs.empty() && !self->SlotWanted();
           ++i) {
        self->idlers_.insert(&idle);
        d->idlers.push_back(&idle);
        idle.timer.expires_after(kIdleCheck);
        asio::error_code ec;
        co_await idle.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        self->idlers_.erase(&idle);
        std::erase(d->idlers, &idle);
        if (idle.let_go) break;
      }
    }
    // Asked to let go: the waiting destination gets this slot first, and
    // WorkerDone lists this one again if mail for it came in meanwhile.
    if (d->jobs.empty() || idle.let_go) break;
    Job job = std::move(d->jobs.front());
    d->jobs.pop_front();
    co_await DeliverJob(self, d, &plan, std::move(job), &conn);
  }
  Quit(conn);
  self->WorkerDone(d);
}

}  // namespace

Result<std::unique_ptr<Outbound>> Outbound::Start(OutboundOptions options) {
  auto impl = std::make_unique<OutboundImpl>(std::move(options));
  if (auto ok = impl->Init(); !ok) return tl::unexpected(ok.error());
  return std::unique_ptr<Outbound>(std::move(impl));
}

}  // namespace tern::delivery
