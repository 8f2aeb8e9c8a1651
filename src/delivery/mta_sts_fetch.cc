// MTA-STS (RFC 8461): HTTPS policy fetching, the policy cache, and its
// effect on a destination's MX hosts.
#include "delivery/mta_sts_fetch.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include "common/file_io.h"
#include "common/metrics.h"
#include "common/strings.h"

namespace tern::delivery::sts {
namespace {

constexpr mode_t kDirMode = 0700;

struct Transfer {
  std::string body;
  bool too_large = false;
  const std::atomic<bool>* abort = nullptr;
  const std::string* ca_file = nullptr;
};

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  if (t->body.size() + len > kMaxPolicyBytes) {
    t->too_large = true;
    return 0;  // libcurl ends the transfer with CURLE_WRITE_ERROR
  }
  t->body.append(data, len);
  return len;
}

int Progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->abort->load() ? 1 : 0;
}

// PKIX trust for mta-sts.DOMAIN (RFC 8461 3.3): the system's CAs, which
// libcurl has loaded already, plus [delivery] ca_file.
CURLcode SetupTls(CURL*, void* ssl_ctx, void* user) {
  auto* t = static_cast<Transfer*>(user);
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  if (!t->ca_file->empty() &&
      SSL_CTX_load_verify_locations(ctx, t->ca_file->c_str(), nullptr) != 1) {
    return CURLE_SSL_CACERT_BADFILE;
  }
  return CURLE_OK;
}

void Count(Mode mode, std::string_view result) {
  metrics::Get().mta_sts.With({ModeName(mode), result}).Inc();
}

// Awaitable Fetcher::Fetch (the same shape as dns::AsyncQuery): the
// arguments are copied into the initiation, nothing temporary is awaited.
template <class Token>
auto AsyncFetch(Fetcher& f, const std::string& domain,
                const std::vector<std::string>& addresses, Token&& token) {
  return asio::async_initiate<Token, void(FetchResult)>(
      [&f, domain, addresses](auto handler) {
        // The handler is move-only; std::function needs a copyable callable.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        f.Fetch(domain, addresses, [shared](FetchResult r) {
          // From the fetcher thread back to the outbound io thread.
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex, [shared, r = std::move(r)]() mutable {
            (*shared)(std::move(r));
          });
        });
      },
      token);
}

std::string CacheFileName(const std::string& domain) { return domain + ".policy"; }

}  // namespace

// ------------------------------------------------------------------ Fetcher

Fetcher::Fetcher(Options options) : options_(std::move(options)) {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  thread_ = std::thread([this] { Run(); });
}

Fetcher::~Fetcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  abort_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Fetcher::Fetch(std::string domain, std::vector<std::string> addresses,
                    std::function<void(FetchResult)> done) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    queue_.push_back(Request{std::move(domain), std::move(addresses), std::move(done)});
  }
  cv_.notify_one();
}

void Fetcher::Run() {
  while (true) {
    Request r;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    FetchResult result = Get(r);
    r.done(std::move(result));
  }
}

FetchResult Fetcher::Get(const Request& r) {
  FetchResult out;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    out.error = "curl_easy_init failed";
    return out;
  }
  // RFC 8461 3.3: https://mta-sts.DOMAIN/.well-known/mta-sts.txt; the port
  // is 443 but for tests.
  const std::string host = "mta-sts." + r.domain;
  const std::string port = std::to_string(options_.port);
  std::string url = "https://" + host;
  if (options_.port != 443) url += ":" + port;
  url += "/.well-known/mta-sts.txt";
  // The addresses come from Tern's resolver, not libcurl's.
  std::string resolve = host + ":" + port + ":";
  for (size_t i = 0; i < r.addresses.size(); ++i) {
    if (i) resolve += ",";
    const std::string& a = r.addresses[i];
    resolve += a.find(':') != std::string::npos ? "[" + a + "]" : a;
  }
  struct curl_slist* resolve_list = curl_slist_append(nullptr, resolve.c_str());
  Transfer t;
  t.abort = &abort_;
  t.ca_file = &options_.ca_file;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve_list);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(curl, CURLOPT_PROXY, "");  // never an environment proxy
  // RFC 8461 3.3: redirects MUST NOT be followed.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, &SetupTls);
  curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &t);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.timeout));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(options_.timeout));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &Progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "tern-mta-sts");
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  char* type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
  std::string content_type = type ? type : "";
  curl_easy_cleanup(curl);
  curl_slist_free_all(resolve_list);
  if (t.too_large) {
    out.error = url + ": policy larger than " + std::to_string(kMaxPolicyBytes) + " bytes";
    return out;
  }
  if (rc != CURLE_OK) {
    out.error = url + ": " + (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc));
    return out;
  }
  if (status != 200) {
    // RFC 8461 3.3: only a 200 is a policy; a 3xx is not followed.
    out.error = url + ": HTTP status " + std::to_string(status);
    return out;
  }
  // RFC 8461 3.2, 3.3: the policy is served as text/plain (parameters
  // such as charset allowed); anything else is not a policy.
  std::string_view media = content_type;
  media = Trim(media.substr(0, media.find(';')));
  if (!IEquals(media, "text/plain")) {
    out.error = url + ": Content-Type \"" + content_type + "\" is not text/plain";
    return out;
  }
  auto p = ParsePolicy(t.body);
  if (!p) {
    out.error = url + ": invalid policy: " + p.error().message;
    return out;
  }
  out.ok = true;
  out.policy = std::move(*p);
  return out;
}

// ------------------------------------------------------------------ Manager

Manager::Manager(Options options, dns::Resolver& resolver)
    : options_(std::move(options)), resolver_(resolver) {
  fetcher_ = std::make_unique<Fetcher>(options_);
  if (!options_.cache_dir.empty()) {
    Result<UniqueFd> dir = Err("not made");
    if (auto made = io::MkdirAll(options_.cache_dir, kDirMode); !made) {
      dir = tl::unexpected(made.error());
    } else {
      dir = io::OpenDir(options_.cache_dir);
    }
    if (dir) {
      dir_ = std::move(*dir);
    } else {
      spdlog::warn("mta-sts: cache {} not usable, policies kept in memory: {}",
                   options_.cache_dir, dir.error().message);
    }
  }
}

const Cached* Manager::Find(const std::string& domain) {
  if (auto it = cache_.find(domain); it != cache_.end()) return &it->second;
  if (!dir_ || loaded_.count(domain)) return nullptr;
  loaded_.insert(domain);
  int err = 0;
  auto text = io::ReadSmallFileAt(dir_.get(), CacheFileName(domain),
                                  kMaxPolicyBytes + 1024, &err);
  if (!text) return nullptr;
  auto c = ParseCached(*text);
  if (!c) {
    spdlog::warn("mta-sts: cached policy of {} unreadable: {}", domain,
                 c.error().message);
    return nullptr;
  }
  return &(cache_[domain] = std::move(*c));
}

void Manager::Store(const std::string& domain, const Cached& c) {
  cache_[domain] = c;
  if (!dir_) return;
  auto ok = io::AtomicWriteAt(dir_.get(), CacheFileName(domain), FormatCached(c), false);
  if (!ok) spdlog::warn("mta-sts: caching the policy of {}: {}", domain, ok.error().message);
}

asio::awaitable<std::optional<Cached>> Lookup(Manager* m, std::string domain) {
  std::optional<Cached> none;
  domain = ToLower(domain);
  if (!SafeDomain(domain)) co_return none;
  // One fetch per domain at a time: a second worker waits for the first
  // one's result (then in the cache) instead of fetching again.
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer wait(ex);
  while (m->fetching_.count(domain)) {
    wait.expires_after(std::chrono::milliseconds(50));
    asio::error_code ec;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  // RFC 8461 3.1: the TXT record at _mta-sts.DOMAIN.
  const std::string txt_name = "_mta-sts." + domain;
  dns::Answer a = co_await dns::AsyncQuery(m->resolver_, txt_name, dns::RrType::kTxt,
                                           asio::use_awaitable);
  TxtResult txt;
  if (a.status == dns::Status::kTempFail) {
    txt.temp_failure = true;
  } else if (a.status == dns::Status::kOk && !a.txt.empty()) {
    auto id = ParseTxt(a.txt);
    if (id) {
      txt.id = *id;
    } else {
      spdlog::debug("mta-sts: {}: {}", txt_name, id.error().message);
    }
  }
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const Cached* cached = m->Find(domain);
  Action action = Decide(cached, txt, now, m->options_.refresh_after);
  if (action == Action::kNoPolicy) co_return none;
  if (action == Action::kUseCached) co_return *cached;

  // A failed fetch leaves the unexpired cached policy in force (RFC 8461
  // 3.3, 5.1); without one, the domain is treated as having no policy.
  std::optional<Cached> fallback;
  if (cached != nullptr && !cached->Expired(now)) fallback = *cached;
  if (auto it = m->failed_until_.find(domain); it != m->failed_until_.end()) {
    if (now < it->second) co_return fallback;
    m->failed_until_.erase(it);
  }
  m->fetching_.insert(domain);
  const std::string host = "mta-sts." + domain;
  std::vector<std::string> addresses;
  std::string dns_error;
  for (dns::RrType type : {dns::RrType::kAaaa, dns::RrType::kA}) {
    dns::Answer r = co_await dns::AsyncQuery(m->resolver_, host, type, asio::use_awaitable);
    if (r.status == dns::Status::kTempFail) dns_error = r.error;
    for (std::string& addr : r.addresses) addresses.push_back(std::move(addr));
  }
  FetchResult got;
  if (addresses.empty()) {
    got.error = host + " has no address" + (dns_error.empty() ? "" : ": " + dns_error);
  } else if (m->fetcher_ == nullptr) {
    got.error = "stopping";
  } else {
    got = co_await AsyncFetch(*m->fetcher_, domain, addresses, asio::use_awaitable);
  }
  m->fetching_.erase(domain);
  if (got.ok) {
    Cached c;
    c.policy = std::move(got.policy);
    c.id = *txt.id;
    c.fetched = now;
    spdlog::info("mta-sts: policy of {} fetched: id {}, mode {}, max_age {}", domain,
                 c.id, ModeName(c.policy.mode), c.policy.max_age);
    m->Store(domain, c);
    co_return c;
  }
  m->failed_until_[domain] = now + m->options_.retry_after_failure;
  spdlog::warn("mta-sts: policy of {} not fetched: {}; {}", domain, got.error,
               fallback ? "the cached policy (id " + fallback->id + ") stays in force"
                        : std::string("no policy applies"));
  co_return fallback;
}

// ------------------------------------------------------------------ Policy use

HostRule ApplyToHosts(const Cached* policy, const std::string& domain,
                      std::vector<std::string>* hosts) {
  HostRule rule;
  if (policy == nullptr || policy->policy.mode == Mode::kNone) return rule;
  const Mode mode = policy->policy.mode;
  const bool enforce = mode == Mode::kEnforce;
  rule.label = std::string("mta-sts ") + ModeName(mode);
  // RFC 8461 4.2: every host used must present a PKIX-valid certificate
  // for its name.
  rule.tls_required = enforce;
  std::vector<std::string> kept;
  for (std::string& h : *hosts) {
    if (MxAllowed(policy->policy, h)) {
      kept.push_back(std::move(h));
      continue;
    }
    // RFC 8461 4.1, 5.1: an MX host no pattern allows is not a candidate
    // under enforce; testing delivers anyway and reports it.
    Count(mode, "validation-failure");
    if (enforce) {
      spdlog::info("mta-sts: {} is not an MX host the policy of {} allows: not used",
                   h, domain);
    } else {
      spdlog::warn("mta-sts testing: {} is not an MX host the policy of {} allows "
                   "(used anyway; enforce would skip it)", h, domain);
      kept.push_back(std::move(h));
    }
  }
  *hosts = std::move(kept);
  return rule;
}

const char* FailureType(long x509) {
  switch (x509) {
    case -1:
      return "starttls-not-supported";
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "certificate-host-mismatch";
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "certificate-expired";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return "certificate-not-trusted";
    default:
      break;
  }
  return "validation-failure";
}

void NoteTls(const std::string& label, const std::string& hop, long x509) {
  Mode mode;
  if (label == "mta-sts enforce") {
    mode = Mode::kEnforce;
  } else if (label == "mta-sts testing") {
    mode = Mode::kTesting;
  } else {
    return;
  }
  if (x509 == X509_V_OK) {
    Count(mode, "success");
    return;
  }
  const char* type = FailureType(x509);
  Count(mode, type);
  if (mode == Mode::kTesting) {
    spdlog::warn("mta-sts testing: {}: {} (delivered anyway; enforce would defer)", hop,
                 type);
  } else {
    spdlog::info("mta-sts enforce: {}: {}: not used", hop, type);
  }
}

}  // namespace tern::delivery::sts
