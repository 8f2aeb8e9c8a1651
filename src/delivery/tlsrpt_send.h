// SMTP TLS Reporting (RFC 8460) in the outbound engine: the collector of
// TLS session outcomes (on the outbound io thread), its files under
// data_dir/tlsrpt (one per period, rewritten atomically now and then and
// at stop), and the timer that reports each finished period to the rua
// addresses of each policy domain: mailto: through the queue, https: by a
// POST on a thread of its own (libcurl blocks).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "common/unique_fd.h"
#include "delivery/mta_sts.h"
#include "delivery/tlsrpt.h"
#include "dns/resolver.h"

namespace tern::delivery::tlsrpt {

struct Options {
  std::string data_dir;          // reports are queued here; files in data_dir/tlsrpt
  uint32_t interval = 86400;     // the reporting period, seconds (a UTC day)
  std::string submitter;         // our host name
  std::string organization;      // organization-name
  std::string from;              // the reports' sender and contact-info
  std::string ca_file;           // extra CAs for https: report endpoints
  uint32_t timeout = 30;         // seconds for one POST
};

// Reads and writes the period files (also used by `tern report tls`).
std::vector<Period> LoadPeriods(const std::string& dir);
std::string PeriodFileName(int64_t start);

// The RFC 8460 4.4 policy of an MX host: "tlsa" with its usable TLSA
// records when DANE applies, else "sts" with the MTA-STS policy's lines and
// mx patterns when one applies, else "no-policy-found".
std::shared_ptr<const PolicyKey> PolicyFor(const std::vector<dns::TlsaRecord>* tlsa,
                                           const sts::Policy* sts);

class Poster;

class Reporter {
 public:
  Reporter(Options options, asio::any_io_executor ex, dns::Resolver& resolver);
  ~Reporter();
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  // On the io thread: counts one TLS session.
  void Note(const Outcome& o);
  // Starts the timer (on the io thread's executor).
  void Start();
  // After the io thread has ended: writes what is unsaved, stops the poster.
  void Stop();

  friend asio::awaitable<void> ReportLoop(Reporter* r);
  friend asio::awaitable<void> SendPeriod(Reporter* r, int64_t start);

 private:
  void Save(bool all);

  Options options_;
  asio::any_io_executor ex_;
  dns::Resolver& resolver_;
  UniqueFd dir_;
  std::map<int64_t, Period> periods_;  // by start
  std::map<int64_t, bool> dirty_;
  std::unique_ptr<Poster> poster_;
  bool stopping_ = false;
};

}  // namespace tern::delivery::tlsrpt
