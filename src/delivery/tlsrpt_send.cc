// SMTP TLS Reporting (RFC 8460): collecting outcomes on the outbound io
// thread, the period files, and sending the reports (RFC 8460 5).
#include "delivery/tlsrpt_send.h"

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "common/file_io.h"
#include "common/strings.h"
#include "delivery/routing.h"
#include "queue/queue.h"

// g++ 12 warns, wrongly, about mismatched new/delete of asio's coroutine
// frames (as in spf.cc and milter_client.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace tern::delivery::tlsrpt {
namespace {

constexpr mode_t kDirMode = 0700;
constexpr size_t kMaxFile = 16 * 1024 * 1024;

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

struct Post {
  std::string url;
  std::string resolve;  // CURLOPT_RESOLVE entry, "" for none
  std::string body;
  std::string domain;   // for the log
};

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

CURLcode AddCa(CURL*, void* ssl_ctx, void* user) {
  auto* ca = static_cast<const std::string*>(user);
  if (!ca->empty() &&
      SSL_CTX_load_verify_locations(static_cast<SSL_CTX*>(ssl_ctx), ca->c_str(),
                                    nullptr) != 1)
    return CURLE_SSL_CACERT_BADFILE;
  return CURLE_OK;
}

// "https://host[:port]/..." -> host and port; false when not of that form.
bool SplitHttpsUrl(const std::string& url, std::string* host, std::string* port) {
  if (!IStartsWith(url, "https://")) return false;
  std::string rest = url.substr(8);
  std::string authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty() || authority.find('@') != std::string::npos) return false;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return false;
    *host = authority.substr(1, close - 1);
    std::string tail = authority.substr(close + 1);
    *port = tail.size() > 1 && tail[0] == ':' ? tail.substr(1) : "443";
    return true;
  }
  size_t colon = authority.rfind(':');
  *host = authority.substr(0, colon);
  *port = colon == std::string::npos ? "443" : authority.substr(colon + 1);
  return !host->empty() && !port->empty();
}

}  // namespace

// Runs the POSTs of RFC 8460 5.4 one after another on a thread of its own.
class Poster {
 public:
  Poster(std::string ca_file, uint32_t timeout)
      : ca_file_(std::move(ca_file)), timeout_(timeout) {
    static std::once_flag curl_init;
    std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    thread_ = std::thread([this] { Run(); });
  }
  ~Poster() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Add(Post p) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(p));
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    while (true) {
      Post p;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        // Reports still queued at stop are finished first: there are few,
        // and each is bounded by the timeout.
        if (queue_.empty()) return;
        p = std::move(queue_.front());
        queue_.pop_front();
      }
      Send(p);
    }
  }

  void Send(const Post& p) {
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return;
    struct curl_slist* headers =
        curl_slist_append(nullptr, "Content-Type: application/tlsrpt+gzip");
    struct curl_slist* resolve =
        p.resolve.empty() ? nullptr : curl_slist_append(nullptr, p.resolve.c_str());
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl, CURLOPT_URL, p.url.c_str());
    if (resolve) curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, &AddCa);
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &ca_file_);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, p.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(p.body.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Discard);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(timeout_));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(timeout_));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "tern-tlsrpt");
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    // RFC 8460 5.4: any 2xx is success.
    if (rc != CURLE_OK) {
      spdlog::warn("tlsrpt: report on {} to {} failed: {}", p.domain, p.url,
                   errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc));
    } else if (status < 200 || status > 299) {
      spdlog::warn("tlsrpt: report on {} to {}: HTTP status {}", p.domain, p.url, status);
    } else {
      spdlog::info("tlsrpt: report on {} posted to {}", p.domain, p.url);
    }
  }

  std::string ca_file_;
  uint32_t timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Post> queue_;
  bool stop_ = false;
  std::thread thread_;
};

std::shared_ptr<const PolicyKey> PolicyFor(const std::vector<dns::TlsaRecord>* tlsa,
                                           const sts::Policy* sts) {
  auto k = std::make_shared<PolicyKey>();
  if (tlsa != nullptr) {
    k->type = "tlsa";
    for (const dns::TlsaRecord& t : *tlsa)
      k->strings.push_back(TlsaText(t.usage, t.selector, t.mtype, t.data));
  } else if (sts != nullptr) {
    k->type = "sts";
    // RFC 8460 4.4: the policy text, one line per string.
    for (const std::string& line : Split(sts::FormatPolicy(*sts), '\n'))
      if (!line.empty()) k->strings.push_back(line);
    k->mx_hosts = sts->mx;
  } else {
    k->type = "no-policy-found";
  }
  return k;
}

std::string PeriodFileName(int64_t start) {
  return DateTime(start) + ".json";
}

std::vector<Period> LoadPeriods(const std::string& dir) {
  std::vector<Period> out;
  auto fd = io::OpenDir(dir);
  if (!fd) return out;
  auto names = io::ListDir(fd->get());
  if (!names) return out;
  std::sort(names->begin(), names->end());
  for (const std::string& n : *names) {
    if (n.empty() || n[0] == '.' || n.size() < 5 || n.substr(n.size() - 5) != ".json")
      continue;
    auto text = io::ReadSmallFileAt(fd->get(), n, kMaxFile);
    if (!text) continue;
    auto p = ParsePeriod(*text);
    if (!p) {
      spdlog::warn("tlsrpt: {}/{}: {}", dir, n, p.error().message);
      continue;
    }
    out.push_back(std::move(*p));
  }
  return out;
}

Reporter::Reporter(Options options, asio::any_io_executor ex, dns::Resolver& resolver)
    : options_(std::move(options)), ex_(std::move(ex)), resolver_(resolver) {
  if (options_.interval == 0) options_.interval = 86400;
  const std::string dir = options_.data_dir + "/tlsrpt";
  if (auto made = io::MkdirAll(dir, kDirMode); made) {
    if (auto fd = io::OpenDir(dir)) dir_ = std::move(*fd);
  }
  if (!dir_) spdlog::warn("tlsrpt: {} not usable: counts kept in memory only", dir);
  // A restart keeps the counts of the periods not reported yet.
  for (Period& p : LoadPeriods(dir)) {
    if (!p.sent) periods_[p.start] = std::move(p);
  }
  poster_ = std::make_unique<Poster>(options_.ca_file, options_.timeout);
}

Reporter::~Reporter() { Stop(); }

void Reporter::Note(const Outcome& o) {
  if (o.domain.empty()) return;
  const int64_t now = Now();
  // Periods are aligned to the Unix epoch: with the default of 86400
  // seconds they are UTC days, as RFC 8460 4.1 recommends.
  const int64_t start = now - now % options_.interval;
  Period& p = periods_[start];
  if (p.end == 0) {
    p.start = start;
    p.end = start + options_.interval;
  }
  Add(&p, o);
  dirty_[start] = true;
}

void Reporter::Save(bool all) {
  if (!dir_) return;
  for (auto& [start, p] : periods_) {
    if (!all && !dirty_[start]) continue;
    auto ok = io::AtomicWriteAt(dir_.get(), PeriodFileName(start), FormatPeriod(p), false);
    if (!ok) spdlog::warn("tlsrpt: saving {}: {}", PeriodFileName(start), ok.error().message);
    dirty_[start] = false;
  }
}

void Reporter::Start() { asio::co_spawn(ex_, ReportLoop(this), asio::detached); }

void Reporter::Stop() {
  if (stopping_) return;
  stopping_ = true;
  Save(false);
  poster_.reset();
}

asio::awaitable<void> ReportLoop(Reporter* r) {
  asio::steady_timer timer(r->ex_);
  const uint32_t tick = std::clamp<uint32_t>(r->options_.interval / 4, 1, 60);
  while (true) {
    timer.expires_after(std::chrono::seconds(tick));
    asio::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    r->Save(false);
    const int64_t now = Now();
    std::vector<int64_t> due;
    for (auto& [start, p] : r->periods_) {
      if (!p.sent && p.end <= now) due.push_back(start);
    }
    for (int64_t start : due) co_await SendPeriod(r, start);
  }
}

asio::awaitable<void> SendPeriod(Reporter* r, int64_t start) {
  // A copy: Note may add to the map while this waits for DNS.
  Period p = r->periods_[start];
  r->periods_[start].sent = true;
  r->dirty_[start] = true;
  r->Save(false);
  ReportMeta meta;
  meta.organization = r->options_.organization;
  meta.contact = r->options_.from;
  meta.submitter = r->options_.submitter;
  for (const auto& [domain, policies] : p.domains) {
    // RFC 8460 3: the reporting policy is the TXT record at _smtp._tls.
    const std::string name = "_smtp._tls." + domain;
    dns::Answer a = co_await dns::AsyncQuery(r->resolver_, name, dns::RrType::kTxt,
                                             asio::use_awaitable);
    if (a.status != dns::Status::kOk || a.txt.empty()) {
      spdlog::debug("tlsrpt: {} publishes no TLSRPT record", domain);
      continue;
    }
    auto uris = ParseTxt(a.txt);
    if (!uris) {
      spdlog::info("tlsrpt: {}: {}: no report", name, uris.error().message);
      continue;
    }
    const std::string json = BuildReport(p, domain, meta).dump();
    const std::string gz = Gzip(json);
    for (const std::string& uri : *uris) {
      if (IStartsWith(uri, "mailto:")) {
        std::string to = MailtoAddress(uri);
        if (to.empty()) {
          spdlog::info("tlsrpt: {}: unusable address {}", domain, uri);
          continue;
        }
        // RFC 8460 5.3. Injected like `tern sendmail` mail, so it is not
        // DKIM-signed (signing happens when a message is committed).
        queue::Envelope env;
        env.sender = r->options_.from;
        env.recipients.push_back(queue::Recipient{to, "", ""});
        const std::string msg = BuildMail(p, domain, meta, r->options_.from, to, gz, Now());
        auto id = queue::Inject(r->options_.data_dir, env, msg);
        if (id) {
          spdlog::info("tlsrpt: report on {} for {} queued to {} as {}", domain,
                       DateTime(p.start), to, *id);
        } else {
          spdlog::warn("tlsrpt: report on {} to {} not queued: {}", domain, to,
                       id.error().message);
        }
        continue;
      }
      // RFC 8460 5.4: https POST, the host resolved by our own resolver.
      std::string host, port;
      if (!SplitHttpsUrl(uri, &host, &port)) {
        spdlog::info("tlsrpt: {}: unusable URI {}", domain, uri);
        continue;
      }
      std::string resolve;
      if (!IsIpLiteral(host)) {
        std::vector<std::string> addrs;
        for (dns::RrType type : {dns::RrType::kAaaa, dns::RrType::kA}) {
          dns::Answer h = co_await dns::AsyncQuery(r->resolver_, host, type,
                                                   asio::use_awaitable);
          for (std::string& ad : h.addresses) addrs.push_back(std::move(ad));
        }
        if (addrs.empty()) {
          spdlog::warn("tlsrpt: report on {} to {}: {} has no address", domain, uri, host);
          continue;
        }
        resolve = host + ":" + port + ":";
        for (size_t i = 0; i < addrs.size(); ++i) {
          if (i) resolve += ",";
          resolve += addrs[i].find(':') != std::string::npos ? "[" + addrs[i] + "]" : addrs[i];
        }
      }
      if (r->poster_) r->poster_->Add(Post{uri, resolve, gz, domain});
    }
  }
  // Reported: the file stays (marked sent) for `tern report tls`; the
  // memory is freed.
  r->periods_.erase(start);
  r->dirty_.erase(start);
}

}  // namespace tern::delivery::tlsrpt
