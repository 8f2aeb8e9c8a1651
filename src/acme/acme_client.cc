#include "acme/acme_client.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

#include "acme/acme_crypto.h"
#include "common/file_io.h"
#include "common/strings.h"
#include "common/unique_fd.h"
#include "common/version.h"
#include "net/tls.h"

namespace tern::acme {
namespace {

using json = nlohmann::json;

// How long to wait for a challenge or an order to be processed.
constexpr int kPollSeconds = 90;
// RFC 8555 6.5: a badNonce error is retried with the nonce it brought.
constexpr int kNonceRetries = 5;
// The issued chain followed by its key.
constexpr const char* kCertificateFile = "certificate.pem";

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string location;
  std::string nonce;
  std::string content_type;
  std::vector<std::string> links;  // Link header values (alternate chains)
};

size_t WriteBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* out) {
  auto* r = static_cast<HttpResponse*>(out);
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name = ToLower(line.substr(0, colon));
    std::string value(Trim(line.substr(colon + 1)));
    if (name == "replay-nonce") r->nonce = value;
    else if (name == "location") r->location = value;
    else if (name == "content-type") r->content_type = value;
    else if (name == "link") r->links.push_back(value);
  }
  return size * n;
}

// One ACME conversation: the directory, the nonce chain and the account.
class Session {
 public:
  Session(const Options& options, Key account, const std::atomic<bool>* stopping)
      : options_(options), account_(std::move(account)), stopping_(stopping) {
    curl_ = curl_easy_init();
  }
  ~Session() {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }

  Result<HttpResponse> Request(const std::string& method, const std::string& url,
                               const std::string& body) {
    if (curl_ == nullptr) return Err("acme: curl_easy_init failed");
    HttpResponse r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    // Only https; no redirects (ACME never needs them).
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    // A stopping server abandons the request at once.
    curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, &Progress);
    curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, stopping_);
    std::string agent = std::string("Tern/") + kVersion + " (ACME client)";
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, agent.c_str());
    if (!options_.ca_file.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &WriteBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &WriteHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r);
    struct curl_slist* headers = nullptr;
    if (method == "HEAD") {
      curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    } else if (method == "POST") {
      headers = curl_slist_append(headers, "Content-Type: application/jose+json");
      curl_easy_setopt(curl_, CURLOPT_POST, 1L);
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) return Err("acme: " + url + ": " + curl_easy_strerror(rc));
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    if (!r.nonce.empty()) nonce_ = r.nonce;
    return r;
  }

  Result<void> Directory() {
    auto r = Request("GET", options_.directory, "");
    if (!r) return Err(r.error().message);
    if (r->status != 200) return Err("acme: directory answered " + std::to_string(r->status));
    json d = json::parse(r->body, nullptr, false);
    if (!d.is_object()) return Err("acme: the directory is not JSON");
    for (const char* key : {"newNonce", "newAccount", "newOrder"}) {
      if (!d.contains(key) || !d[key].is_string()) {
        return Err(std::string("acme: the directory has no ") + key);
      }
    }
    new_nonce_ = d["newNonce"];
    new_account_ = d["newAccount"];
    new_order_ = d["newOrder"];
    return {};
  }

  // A signed POST (RFC 8555 6.2); `payload` empty is POST-as-GET (6.3).
  // Retries badNonce errors with the fresh nonce (6.5).
  Result<HttpResponse> Post(const std::string& url, const std::string& payload) {
    for (int attempt = 0;; ++attempt) {
      if (nonce_.empty()) {
        auto n = Request("HEAD", new_nonce_, "");
        if (!n) return Err(n.error().message);
        if (nonce_.empty()) return Err("acme: no Replay-Nonce from " + new_nonce_);
      }
      std::string nonce = std::move(nonce_);
      nonce_.clear();
      auto body = SignRequest(account_, kid_, nonce, url, payload);
      if (!body) return Err(body.error().message);
      auto r = Request("POST", url, *body);
      if (!r) return r;
      if (r->status >= 400) {
        json problem = json::parse(r->body, nullptr, false);
        std::string type = problem.is_object() ? problem.value("type", "") : "";
        if (type == "urn:ietf:params:acme:error:badNonce" && attempt < kNonceRetries) continue;
        std::string detail = problem.is_object() ? problem.value("detail", "") : r->body;
        return Err("acme: " + url + " answered " + std::to_string(r->status) + " " + type +
                   (detail.empty() ? "" : ": " + detail));
      }
      return r;
    }
  }

  Result<void> Account() {
    json req = {{"termsOfServiceAgreed", true}};
    if (!options_.contact.empty()) {
      req["contact"] = json::array({"mailto:" + options_.contact});
    }
    auto r = Post(new_account_, req.dump());
    if (!r) return Err(r.error().message);
    if (r->location.empty()) return Err("acme: the new account has no Location");
    kid_ = r->location;
    return {};
  }

  // POST-as-GET of a resource, parsed.
  Result<json> Fetch(const std::string& url) {
    auto r = Post(url, "");
    if (!r) return Err(r.error().message);
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object()) return Err("acme: " + url + " did not answer JSON");
    return j;
  }

  const std::string& new_order() const { return new_order_; }
  bool stopping() const { return stopping_->load(); }
  const Key& account() const { return account_; }

 private:
  static int Progress(void* stopping, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<const std::atomic<bool>*>(stopping)->load() ? 1 : 0;
  }

  const Options& options_;
  Key account_;
  const std::atomic<bool>* stopping_;
  CURL* curl_ = nullptr;
  std::string new_nonce_, new_account_, new_order_;
  std::string nonce_;
  std::string kid_;
};

std::string ProblemOf(const json& j) {
  if (!j.contains("error") || !j["error"].is_object()) return "";
  const json& e = j["error"];
  return e.value("type", "") + ": " + e.value("detail", "");
}

// Waits until resource `url` leaves the "pending"/"processing" states.
Result<json> Poll(Session& s, const std::string& url, std::string_view what) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kPollSeconds);
  for (;;) {
    auto j = s.Fetch(url);
    if (!j) return j;
    std::string status = j->value("status", "");
    if (status != "pending" && status != "processing") return j;
    if (s.stopping()) return Err("acme: stopped");
    if (std::chrono::steady_clock::now() > deadline) {
      return Err("acme: " + std::string(what) + " still " + status + " after " +
                 std::to_string(kPollSeconds) + " s");
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

Result<Key> LoadOrCreateAccountKey(const std::string& dir) {
  auto fd = io::OpenDir(dir);
  if (!fd) return Err(fd.error().message);
  int err = 0;
  auto pem = io::ReadSmallFileAt(fd->get(), "account.key", 64 * 1024, &err);
  if (pem) return Key::FromPem(*pem);
  if (err != ENOENT) return Err("acme: " + dir + "/account.key: " + pem.error().message);
  auto key = Key::Generate();
  if (!key) return key;
  auto text = key->Pem();
  if (!text) return Err(text.error().message);
  if (auto w = io::AtomicWriteAt(fd->get(), "account.key", *text, true); !w) {
    return Err("acme: " + dir + "/account.key: " + w.error().message);
  }
  spdlog::info("acme: made a new account key in {}/account.key", dir);
  return key;
}

}  // namespace

std::string CertPath(const std::string& dir) { return dir + "/" + kCertificateFile; }

Manager::Manager(Options options, std::function<void()> installed)
    : options_(std::move(options)), installed_(std::move(installed)) {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Manager::~Manager() {
  stopping_ = true;
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.NotifyAll();
  if (thread_.joinable()) thread_.join();
}

void Manager::Start() { thread_ = std::thread([this] { Run(); }); }

std::optional<std::string> Manager::Http01Answer(const std::string& token) {
  MutexLock lock(mu_);
  auto it = http01_.find(token);
  if (it == http01_.end()) return std::nullopt;
  return it->second;
}

void Manager::Run() {
  // After a failure: one minute, doubling up to the check interval, so a
  // broken setup neither hammers the CA (Let's Encrypt limits failed
  // validations per hour) nor waits a day after a quick fix.
  uint32_t backoff = 60;
  for (;;) {
    uint32_t wait = options_.check_interval;
    auto r = CheckOnce();
    if (r) {
      spdlog::info("acme: {}", *r);
      backoff = 60;
    } else {
      const std::string& why = r.error().message;
      spdlog::error("{}{} (next try in {} s)", why.starts_with("acme: ") ? "" : "acme: ", why,
                    std::min(backoff, options_.check_interval));
      wait = std::min(backoff, options_.check_interval);
      backoff = std::min<uint32_t>(backoff * 2, 86400);
    }
    MutexLock lock(mu_);
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(wait);
    while (!stop_ && cv_.WaitUntil(mu_, until) != std::cv_status::timeout) {
    }
    if (stop_) return;
  }
}

Result<std::string> Manager::CheckOnce() {
  if (auto made = io::MkdirAll(options_.dir, 0700); !made) {
    return Err(options_.dir + ": " + made.error().message);
  }
  auto fd = io::OpenDir(options_.dir);
  if (!fd) return Err(fd.error().message);
  int err = 0;
  auto pem = io::ReadSmallFileAt(fd->get(), kCertificateFile, 1024 * 1024, &err);
  if (pem) {
    auto info = ReadCertificateInfo(*pem);
    if (info) {
      int64_t now = static_cast<int64_t>(std::time(nullptr));
      int64_t left = info->not_after - now;
      bool covers = std::all_of(options_.names.begin(), options_.names.end(),
                                [&](const std::string& n) {
                                  return std::find(info->names.begin(), info->names.end(),
                                                   n) != info->names.end();
                                });
      if (covers && left > static_cast<int64_t>(options_.renew_days) * 86400) {
        return "certificate for " + fmt::format("{}", fmt::join(options_.names, ",")) + " valid for " +
               std::to_string(left / 86400) + " more days";
      }
      spdlog::info("acme: renewing: {}", covers ? "expires in " + std::to_string(left / 86400) +
                                                      " days"
                                                : std::string("names changed"));
    }
  }
  return Issue();
}

Result<std::string> Manager::Issue() {
  auto account = LoadOrCreateAccountKey(options_.dir);
  if (!account) return Err(account.error().message);
  Session s(options_, std::move(*account), &stopping_);
  if (auto d = s.Directory(); !d) return Err(d.error().message);
  if (auto a = s.Account(); !a) return Err(a.error().message);

  json identifiers = json::array();
  for (const std::string& n : options_.names) {
    identifiers.push_back({{"type", "dns"}, {"value", n}});
  }
  json order_req = {{"identifiers", identifiers}};
  auto created = s.Post(s.new_order(), order_req.dump());
  if (!created) return Err(created.error().message);
  std::string order_url = created->location;
  json order = json::parse(created->body, nullptr, false);
  if (!order.is_object() || order_url.empty() || !order.contains("authorizations") ||
      !order.contains("finalize")) {
    return Err("acme: the new order is malformed");
  }

  // RFC 8555 7.5: each authorization that is not valid yet gets the
  // configured challenge, answered while the server validates it.
  for (const json& authz_url : order["authorizations"]) {
    std::string url = authz_url.get<std::string>();
    auto authz = s.Fetch(url);
    if (!authz) return Err(authz.error().message);
    if (authz->value("status", "") == "valid") continue;
    std::string name = (*authz)["identifier"].value("value", "");
    const json* chosen = nullptr;
    for (const json& c : (*authz)["challenges"]) {
      if (c.value("type", "") == options_.challenge) chosen = &c;
    }
    if (chosen == nullptr) {
      return Err("acme: no " + options_.challenge + " challenge offered for " + name);
    }
    std::string token = chosen->value("token", "");
    std::string challenge_url = chosen->value("url", "");
    if (token.empty() || token.find_first_not_of(
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
                             std::string::npos) {
      return Err("acme: bad challenge token for " + name);
    }
    std::string key_auth = KeyAuthorization(token, s.account());
    if (options_.challenge == "tls-alpn-01") {
      auto cert = TlsAlpnCertificate(name, key_auth);
      if (!cert) return Err(cert.error().message);
      if (auto set = net::AlpnChallenges::Get().Set(name, cert->cert_pem, cert->key_pem); !set) {
        return Err(set.error().message);
      }
    } else {
      MutexLock lock(mu_);
      http01_[token] = key_auth;
    }
    spdlog::info("acme: answering {} for {}", options_.challenge, name);
    auto answered = s.Post(challenge_url, "{}");
    Result<json> done = answered ? Poll(s, url, "authorization for " + name)
                                 : Result<json>(Err(answered.error().message));
    if (options_.challenge == "tls-alpn-01") {
      net::AlpnChallenges::Get().Clear(name);
    } else {
      MutexLock lock(mu_);
      http01_.erase(token);
    }
    if (!done) return Err(done.error().message);
    if (done->value("status", "") != "valid") {
      std::string why;
      for (const json& c : (*done)["challenges"]) {
        if (c.value("type", "") == options_.challenge) why = ProblemOf(c);
      }
      return Err("acme: " + name + " not validated (" + done->value("status", "") + ")" +
                 (why.empty() ? "" : ": " + why));
    }
  }

  // 7.4: finalize with a CSR for a fresh key, then fetch the chain.
  auto cert_key = Key::Generate();
  if (!cert_key) return Err(cert_key.error().message);
  auto csr = CertificateRequest(*cert_key, options_.names);
  if (!csr) return Err(csr.error().message);
  json fin = {{"csr", Base64Url(*csr)}};
  auto finalized = s.Post(order["finalize"].get<std::string>(), fin.dump());
  if (!finalized) return Err(finalized.error().message);
  auto ready = Poll(s, order_url, "order");
  if (!ready) return Err(ready.error().message);
  if (ready->value("status", "") != "valid" || !ready->contains("certificate")) {
    return Err("acme: order ended " + ready->value("status", "") + " " + ProblemOf(*ready));
  }
  auto chain = s.Post((*ready)["certificate"].get<std::string>(), "");
  if (!chain) return Err(chain.error().message);
  auto info = ReadCertificateInfo(chain->body);
  if (!info) return Err("acme: the issued chain: " + info.error().message);
  auto key_pem = cert_key->Pem();
  if (!key_pem) return Err(key_pem.error().message);

  // Chain and key in one file, replaced in one rename: no reader (a
  // restart, a SIGHUP) ever pairs the new certificate with the old key.
  // OpenSSL's PEM readers skip the blocks they do not look for.
  auto fd = io::OpenDir(options_.dir);
  if (!fd) return Err(fd.error().message);
  std::string both = chain->body;
  if (!both.empty() && both.back() != '\n') both += '\n';
  both += *key_pem;
  if (auto w = io::AtomicWriteAt(fd->get(), kCertificateFile, both, true); !w) {
    return Err("acme: " + CertPath(options_.dir) + ": " + w.error().message);
  }
  if (installed_) installed_();
  char until[32];
  time_t t = static_cast<time_t>(info->not_after);
  struct tm tm {};
  gmtime_r(&t, &tm);
  std::strftime(until, sizeof until, "%Y-%m-%d", &tm);
  return "certificate for " + fmt::format("{}", fmt::join(options_.names, ",")) + " installed (serial " +
         info->serial + ", valid until " + until + ")";
}

}  // namespace tern::acme
