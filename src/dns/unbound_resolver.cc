// libunbound behind dns::Resolver. Queries are started with
// ub_resolve_async; when ub_fd() becomes readable ub_process() runs the
// callbacks, which turn ub_result into an Answer and post the caller's
// callback.
#include "dns/unbound_resolver.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <unbound.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_map>

#include "common/strings.h"
#include "dns/rdata.h"

namespace tern::dns {
namespace {

struct CtxDeleter {
  void operator()(ub_ctx* ctx) const { ub_ctx_delete(ctx); }
};
struct ResultDeleter {
  void operator()(ub_result* r) const { ub_resolve_free(r); }
};

// RFC 1035 4.1.1 RCODE 3.
constexpr int kRcodeNxDomain = 3;

Answer ToAnswer(RrType type, int err, ub_result* raw) {
  std::unique_ptr<ub_result, ResultDeleter> result(raw);
  Answer a;
  if (err != 0 || result == nullptr) {
    a.status = Status::kTempFail;
    a.error = std::string("resolver: ") + ub_strerror(err);
    return a;
  }
  a.security = result->bogus    ? Security::kBogus
               : result->secure ? Security::kSecure
                                : Security::kInsecure;
  a.ttl = result->ttl > 0 ? static_cast<uint32_t>(result->ttl) : 0;
  if (result->canonname != nullptr && result->qname != nullptr &&
      !IEquals(result->canonname, result->qname)) {
    std::string canon = ToLower(result->canonname);
    if (!canon.empty() && canon.back() == '.') canon.pop_back();
    a.canonical_name = canon;
  }
  if (a.security == Security::kBogus) {
    // RFC 4035 5.5: bogus data must not be used; it may be an attack or a
    // broken signature, both of which may be fixed later.
    a.status = Status::kTempFail;
    a.error = std::string("DNSSEC validation failed") +
              (result->why_bogus ? std::string(": ") + result->why_bogus : "");
    return a;
  }
  if (result->nxdomain || result->rcode == kRcodeNxDomain) {
    a.status = Status::kNxDomain;
    return a;
  }
  if (result->rcode != 0) {
    a.status = Status::kTempFail;
    a.error = "DNS error rcode " + std::to_string(result->rcode);
    return a;
  }
  a.status = Status::kOk;
  if (!result->havedata) return a;  // NODATA
  for (int i = 0; result->data[i] != nullptr; ++i) {
    std::string_view rdata(result->data[i], static_cast<size_t>(result->len[i]));
    if (type == RrType::kMx) {
      if (auto mx = ParseMx(rdata)) {
        a.mx.push_back(std::move(*mx));
      } else {
        spdlog::warn("dns: malformed MX record for {} ignored", result->qname);
      }
    } else if (type == RrType::kTxt) {
      if (auto txt = ParseTxt(rdata)) {
        a.txt.push_back(std::move(*txt));
      } else {
        spdlog::warn("dns: malformed TXT record for {} ignored", result->qname);
      }
    } else if (type == RrType::kSrv) {
      if (auto srv = ParseSrv(rdata)) a.srv.push_back(std::move(*srv));
    } else if (type == RrType::kTlsa) {
      if (auto tlsa = ParseTlsa(rdata)) {
        a.tlsa.push_back(std::move(*tlsa));
      } else {
        spdlog::warn("dns: malformed TLSA record for {} ignored", result->qname);
      }
    } else if (type == RrType::kPtr) {
      if (auto name = NameFromWire(rdata)) a.names.push_back(std::move(*name));
    } else if (auto addr = ParseAddress(type, rdata)) {
      a.addresses.push_back(std::move(*addr));
    }
  }
  return a;
}

class UnboundResolver final : public Resolver {
 public:
  UnboundResolver(asio::any_io_executor executor, ub_ctx* ctx, int fd)
      : executor_(executor), ctx_(ctx), fd_(executor, fd) {}

  ~UnboundResolver() override {
    asio::error_code ignored;
    fd_.cancel(ignored);
    // The descriptor belongs to unbound.
    fd_.release();
    // Cancelled queries never call back; their records die with the map.
    for (auto& [id, pending] : pending_) ub_cancel(ctx_.get(), id);
  }

  void Query(const std::string& name, RrType type, Callback done) override {
    auto pending = std::make_unique<Pending>();
    pending->owner = this;
    pending->type = type;
    pending->done = std::move(done);
    Pending* raw = pending.get();
    int id = 0;
    int err = ub_resolve_async(ctx_.get(), name.c_str(),
                               static_cast<int>(type), 1 /* IN */, raw,
                               &UnboundResolver::OnResult, &id);
    if (err != 0) {
      Answer a;
      a.error = std::string("resolver: ") + ub_strerror(err);
      asio::post(executor_, [cb = std::move(raw->done), a]() { cb(a); });
      return;
    }
    raw->id = id;
    pending_.emplace(id, std::move(pending));
    Arm();
  }

 private:
  struct Pending {
    UnboundResolver* owner = nullptr;
    RrType type = RrType::kA;
    int id = 0;
    Callback done;
  };

  static void OnResult(void* data, int err, ub_result* result) {
    auto* p = static_cast<Pending*>(data);
    Answer answer = ToAnswer(p->type, err, result);
    UnboundResolver* self = p->owner;
    auto it = self->pending_.find(p->id);
    if (it == self->pending_.end()) return;
    std::unique_ptr<Pending> owned = std::move(it->second);
    self->pending_.erase(it);
    asio::post(self->executor_,
               [cb = std::move(owned->done), a = std::move(answer)]() mutable {
                 cb(std::move(a));
               });
  }

  void Arm() {
    if (armed_ || pending_.empty()) return;
    armed_ = true;
    fd_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [this](const asio::error_code& ec) {
                     if (ec == asio::error::operation_aborted) return;
                     armed_ = false;
                     if (int err = ub_process(ctx_.get()); err != 0) {
                       spdlog::error("dns: ub_process: {}", ub_strerror(err));
                     }
                     Arm();
                   });
  }

  asio::any_io_executor executor_;
  std::unique_ptr<ub_ctx, CtxDeleter> ctx_;
  asio::posix::stream_descriptor fd_;
  bool armed_ = false;
  std::unordered_map<int, std::unique_ptr<Pending>> pending_;
};

}  // namespace

Result<std::string> UnboundUpstream(const std::string& text) {
  std::string host = text;
  std::string port = "53";
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) return Err("missing ']'");
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return Err("expected \"[IPv6]:PORT\"");
      port = text.substr(close + 2);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) != 1 &&
      inet_pton(AF_INET6, host.c_str(), buf) != 1) {
    return Err("\"" + text + "\" is not an IP address with optional port");
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) == 0 || std::stoi(port) > 65535) {
    return Err("\"" + text + "\": bad port");
  }
  return host + "@" + port;
}

Result<std::unique_ptr<Resolver>> MakeUnboundResolver(
    asio::any_io_executor executor, const UnboundOptions& options) {
  std::unique_ptr<ub_ctx, CtxDeleter> ctx(ub_ctx_create());
  if (!ctx) return Err("dns: ub_ctx_create failed");
  auto check = [](int err, const std::string& what) -> Result<void> {
    if (err != 0) return Err("dns: " + what + ": " + ub_strerror(err));
    return {};
  };
  // Answers are delivered through ub_fd(); a thread (not a forked process)
  // does the resolving so no copy of the server's descriptors lingers.
  if (auto r = check(ub_ctx_async(ctx.get(), 1), "async"); !r)
    return tl::unexpected(r.error());
  if (options.upstreams.empty()) {
    if (auto r = check(ub_ctx_resolvconf(ctx.get(), nullptr), "resolv.conf");
        !r)
      return tl::unexpected(r.error());
    ub_ctx_hosts(ctx.get(), nullptr);  // best effort
  } else {
    // unbound answers NXDOMAIN itself for the RFC 6761 names (test.,
    // invalid., ...) and for the reverse zones of private and
    // documentation addresses (RFC 6303). With a configured upstream, that
    // upstream decides: test zones and split-horizon setups live there
    // (SPF's ptr and %{p} look such names up).
    std::vector<std::string> zones = {"test.", "invalid.", "local.",
                                      "10.in-addr.arpa.", "168.192.in-addr.arpa.",
                                      "254.169.in-addr.arpa.",
                                      "2.0.192.in-addr.arpa.",
                                      "100.51.198.in-addr.arpa.",
                                      "113.0.203.in-addr.arpa.",
                                      "8.b.d.0.1.0.0.2.ip6.arpa.", "d.f.ip6.arpa."};
    for (int i = 16; i <= 31; ++i) {
      zones.push_back(std::to_string(i) + ".172.in-addr.arpa.");
    }
    for (const std::string& zone : zones) {
      ub_ctx_set_option(ctx.get(), "local-zone:", (zone + " transparent").c_str());
    }
    for (const std::string& up : options.upstreams) {
      auto addr = UnboundUpstream(up);
      if (!addr) return Err("dns: upstream " + addr.error().message);
      if (auto r = check(ub_ctx_set_fwd(ctx.get(), addr->c_str()), "upstream");
          !r)
        return tl::unexpected(r.error());
    }
  }
  // Local forwarders (a stub resolver on 127.0.0.1, test zones) are
  // refused by unbound's default.
  if (auto r = check(ub_ctx_set_option(ctx.get(), "do-not-query-localhost:",
                                       "no"),
                     "option");
      !r)
    return tl::unexpected(r.error());
  if (!options.trust_anchor_file.empty()) {
    // A static anchor (DS or DNSKEY lines, as Debian's dns-root-data ships
    // /usr/share/dns/root.key): ub_ctx_add_ta_autr would keep RFC 5011
    // state by rewriting the file, which fails for a read-only package
    // file and races with the package's own updates. Root key rollovers
    // reach us through that package. Set before the first query.
    // libunbound reads the file only at the first query, and a missing
    // one would then fail every lookup: say so at startup instead.
    if (::access(options.trust_anchor_file.c_str(), R_OK) != 0)
      return Err("dns: trust anchor " + options.trust_anchor_file +
                 " cannot be read");
    if (auto r = check(ub_ctx_add_ta_file(ctx.get(),
                                          options.trust_anchor_file.c_str()),
                       "trust anchor " + options.trust_anchor_file);
        !r)
      return tl::unexpected(r.error());
  }
  int fd = ub_fd(ctx.get());
  if (fd < 0) return Err("dns: ub_fd failed");
  return std::unique_ptr<Resolver>(
      std::make_unique<UnboundResolver>(executor, ctx.release(), fd));
}

}  // namespace tern::dns
