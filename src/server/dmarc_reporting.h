// The running server's side of DMARC aggregate reports ([mailauth]
// dmarc_reports): the store the SMTP sessions record into, saved every
// minute and at stop, and the reports of finished UTC days sent once the
// day is over (reports/dmarc_report.h does the work).
#pragma once

#include <memory>
#include <string>

#include <asio.hpp>

#include "config/config.h"
#include "dns/resolver.h"
#include "reports/dmarc_report.h"

namespace tern::server {

class DmarcReporter {
 public:
  // Null when the config does not ask for reports or there is no resolver
  // (no inbound checks: nothing to report). Logs and returns null when the
  // store cannot be read.
  static std::unique_ptr<DmarcReporter> Make(asio::io_context& io, dns::Resolver* resolver,
                                             const config::Config& cfg);

  reports::DmarcReportStore* store() { return &store_; }
  // Starts the minute timer on the io context.
  void Start();
  // Sends every day recorded so far, today's too (`tern report dmarc
  // --send`); the summary line.
  asio::awaitable<std::string> SendNow();
  // After the io context has stopped: the last save.
  void Stop();

  friend asio::awaitable<void> DmarcReporterLoop(DmarcReporter* self);

 private:
  DmarcReporter(asio::io_context& io, dns::Resolver& resolver, std::string dir,
                reports::DmarcSendSettings settings)
      : io_(io), resolver_(resolver), store_(std::move(dir)), settings_(std::move(settings)) {}

  asio::io_context& io_;
  dns::Resolver& resolver_;
  reports::DmarcReportStore store_;
  reports::DmarcSendSettings settings_;
};

}  // namespace tern::server
