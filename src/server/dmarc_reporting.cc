#include "server/dmarc_reporting.h"

#include <spdlog/spdlog.h>

#include <ctime>

namespace tern::server {

asio::awaitable<void> DmarcReporterLoop(DmarcReporter* self) {
  asio::steady_timer timer(self->io_);
  for (;;) {
    timer.expires_after(std::chrono::seconds(60));
    asio::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    if (auto ok = self->store_.Save(); !ok) {
      spdlog::warn("dmarc reports: saving: {}", ok.error().message);
    }
    // RFC 7489 7.2: reports cover whole UTC days by default (ri=86400);
    // a day is sent in the first minute after it ends.
    auto now = static_cast<int64_t>(std::time(nullptr));
    int64_t today = reports::DayOf(now);
    std::string summary = co_await reports::SendDmarcReports(
        self->resolver_, self->store_, self->settings_, today, now);
    (void)summary;  // logged by SendDmarcReports
  }
}

std::unique_ptr<DmarcReporter> DmarcReporter::Make(asio::io_context& io,
                                                   dns::Resolver* resolver,
                                                   const config::Config& cfg) {
  if (!cfg.mailauth.dmarc_reports || resolver == nullptr) return nullptr;
  reports::DmarcSendSettings s;
  s.data_dir = cfg.data_dir;
  // The submitter is our first local domain (the host name without one);
  // reports come from its postmaster.
  s.submitter = cfg.domains.empty() ? cfg.hostname : cfg.domains.front();
  s.email = "postmaster@" + s.submitter;
  std::unique_ptr<DmarcReporter> r(
      new DmarcReporter(io, *resolver, cfg.data_dir + "/dmarc-reports", std::move(s)));
  if (auto ok = r->store_.Load(); !ok) {
    spdlog::error("dmarc reports: {}: {}", r->store_.dir(), ok.error().message);
    return nullptr;
  }
  return r;
}

void DmarcReporter::Start() {
  asio::co_spawn(io_, DmarcReporterLoop(this), asio::detached);
}

asio::awaitable<std::string> DmarcReporter::SendNow() {
  auto now = static_cast<int64_t>(std::time(nullptr));
  int64_t tomorrow = reports::DayOf(now) + 1;
  std::string summary =
      co_await reports::SendDmarcReports(resolver_, store_, settings_, tomorrow, now);
  co_return summary;
}

void DmarcReporter::Stop() {
  if (auto ok = store_.Save(); !ok) {
    spdlog::warn("dmarc reports: saving: {}", ok.error().message);
  }
}

}  // namespace tern::server
