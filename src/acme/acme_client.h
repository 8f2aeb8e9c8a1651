// Certificates from an ACME server (RFC 8555), kept under data_dir/acme/
// and renewed before they expire. The manager runs on a thread of its own
// (the ACME exchange is a few blocking HTTPS requests through libcurl,
// minutes apart at most): it checks the certificate at start and every
// check interval, orders a new one when it is missing, no longer covers
// the configured names, or expires within renew_days, and hands it to the
// running server, which swaps it into new TLS handshakes (as SIGHUP does).
//
// Challenges: HTTP-01 (8.3) answered by the http listener through
// Http01Answer(), or TLS-ALPN-01 (RFC 8737) answered by every TLS
// listener through net::AlpnChallenges.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"
#include "common/thread_annotations.h"

namespace tern::acme {

struct Options {
  std::string directory;            // the ACME directory URL
  std::string contact;              // "admin@example.org" (mailto: added)
  std::vector<std::string> names;   // the certificate's names, first = CN
  std::string challenge = "http-01";  // or "tls-alpn-01"
  std::string ca_file;              // extra CA for the ACME server's HTTPS
  std::string dir;                  // data_dir/acme
  uint32_t renew_days = 30;         // renew when fewer days are left
  uint32_t check_interval = 43200;  // seconds between checks
};

// Where the certificate chain and its key live once issued (one file:
// the chain, then the key), in `dir` = data_dir/acme.
std::string CertPath(const std::string& dir);

class Manager {
 public:
  // `installed` is called from the manager's thread after a new
  // certificate is on disk.
  Manager(Options options, std::function<void()> installed);
  ~Manager();  // stops the thread (an exchange in progress is abandoned)
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  void Start();

  // The HTTP-01 key authorization for `token`, while its challenge is
  // pending (thread-safe; called by the http listener).
  std::optional<std::string> Http01Answer(const std::string& token);

  // One pass: renews when due. Returns what was done ("valid until ...",
  // "issued ...") or the error. Public for tests.
  Result<std::string> CheckOnce();

 private:
  void Run();
  Result<std::string> Issue();

  Options options_;
  std::function<void()> installed_;
  std::atomic<bool> stopping_{false};  // read by curl's progress callback
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  // token -> key authorization
  std::unordered_map<std::string, std::string> http01_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tern::acme
