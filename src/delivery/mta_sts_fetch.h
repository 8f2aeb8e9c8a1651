// MTA-STS (RFC 8461) for outbound delivery, the parts with I/O: the policy
// fetch over HTTPS (libcurl, on a fetcher thread of its own), the policy
// cache (in memory, and one file per domain under data_dir/mta-sts so that
// it survives restarts), and what a destination's policy does to its MX
// hosts. The io-thread side is single-threaded: only the outbound thread
// calls Lookup and ApplyToHosts.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "common/unique_fd.h"
#include "delivery/mta_sts.h"
#include "dns/resolver.h"

namespace tern::delivery::sts {

struct Options {
  std::string cache_dir;     // "" keeps the cache in memory only
  uint16_t port = 443;       // HTTPS port of mta-sts.DOMAIN (tests change it)
  std::string ca_file;       // CAs trusted besides the system's
  uint32_t timeout = 30;     // seconds for one fetch, connect included
  // RFC 8461 3.3: refresh a cached policy well before it expires.
  uint32_t refresh_after = 86400;
  // After a failed fetch, no new attempt for the domain for this long (RFC
  // 8461 3.3 allows rate-limiting fetches): a dead policy server must not
  // cost every delivery attempt a timeout.
  uint32_t retry_after_failure = 300;
};

struct FetchResult {
  bool ok = false;
  Policy policy;
  std::string error;  // when !ok
};

// Runs HTTPS GETs one after another on a thread of its own: libcurl's easy
// interface blocks, and the outbound io thread must not.
class Fetcher {
 public:
  explicit Fetcher(Options options);
  ~Fetcher();  // abandons queued fetches, aborts the running one, joins
  Fetcher(const Fetcher&) = delete;
  Fetcher& operator=(const Fetcher&) = delete;

  // Fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt, connecting to
  // `addresses` (what Tern's resolver said mta-sts.DOMAIN is). `done` runs
  // on the fetcher thread.
  void Fetch(std::string domain, std::vector<std::string> addresses,
             std::function<void(FetchResult)> done);

 private:
  struct Request {
    std::string domain;
    std::vector<std::string> addresses;
    std::function<void(FetchResult)> done;
  };
  void Run();
  FetchResult Get(const Request& r);

  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stop_ = false;
  std::atomic<bool> abort_{false};
  std::thread thread_;
};

// The policy cache and the lookups that fill it.
class Manager {
 public:
  Manager(Options options, dns::Resolver& resolver);
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Stops the fetcher; call before the io_context goes away.
  void Stop() { fetcher_.reset(); }

  // The policy that holds for `domain` now, if any (RFC 8461 3 and 5.1).
  friend asio::awaitable<std::optional<Cached>> Lookup(Manager* m,
                                                       std::string domain);

 private:
  const Cached* Find(const std::string& domain);
  void Store(const std::string& domain, const Cached& c);

  Options options_;
  dns::Resolver& resolver_;
  std::unique_ptr<Fetcher> fetcher_;
  UniqueFd dir_;
  std::map<std::string, Cached> cache_;
  std::set<std::string> loaded_;    // domains whose file was read
  std::set<std::string> fetching_;  // fetches in flight
  std::map<std::string, int64_t> failed_until_;  // Unix seconds
};

asio::awaitable<std::optional<Cached>> Lookup(Manager* m, std::string domain);

// What a policy means for the MX hosts of `domain` (RFC 8461 4 and 5).
struct HostRule {
  std::string label;          // "mta-sts enforce" / "mta-sts testing"; "" none
  bool tls_required = false;  // enforce: verified TLS to each host
};
// Enforce drops the hosts no pattern allows (RFC 8461 4.1, 5.1); testing
// keeps them and reports them. `hosts` may end up empty.
HostRule ApplyToHosts(const Cached* policy, const std::string& domain,
                      std::vector<std::string>* hosts);

// A TLS outcome under a policy, for the log and the counters that TLS-RPT
// (RFC 8460) will report. `label` is the hop's HostRule label; `x509` the
// verification result (X509_V_OK when verified), or -1 when STARTTLS was
// not offered. Only "mta-sts testing" failures are logged here: under
// enforce the delivery itself fails and says why.
void NoteTls(const std::string& label, const std::string& hop, long x509);

// RFC 8460 4.3 result types for a failed verification.
const char* FailureType(long x509);

}  // namespace tern::delivery::sts
