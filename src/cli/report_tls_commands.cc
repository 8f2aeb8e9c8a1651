// `tern report tls`: TLS-RPT reports from the files the server keeps.
#include "cli/report_tls_commands.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <ctime>
#include <iostream>
#include <memory>

#include "delivery/tlsrpt.h"
#include "delivery/tlsrpt_send.h"

namespace tern::cli {

namespace tlsrpt = delivery::tlsrpt;

void RegisterReportTlsCommand(CLI::App& app,
                              std::function<Result<config::Config>()> load_config,
                              std::function<int()>* action) {
  struct Args {
    std::string day;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* report = nullptr;
  try {
    report = app.get_subcommand("report");
  } catch (const CLI::OptionNotFound&) {
    report = app.add_subcommand("report", "reports on the mail this server handles");
    report->require_subcommand(1);
  }
  CLI::App* cmd = report->add_subcommand(
      "tls", "the TLS-RPT (RFC 8460) reports on outbound TLS for a UTC day, "
             "from data_dir/tlsrpt");
  cmd->add_option("--day", args->day, "YYYY-MM-DD (UTC; default today)");
  cmd->add_flag("--json", args->json, "print the reports as JSON (RFC 8460 4.4)");
  cmd->callback([args, load_config, action] {
    *action = [args, load_config] {
      auto cfg = load_config();
      if (!cfg) {
        std::cerr << "tern: " << cfg.error().message << "\n";
        return 1;
      }
      std::string day = args->day;
      if (day.empty()) day = tlsrpt::DateTime(std::time(nullptr)).substr(0, 10);
      if (day.size() != 10 || day[4] != '-' || day[7] != '-') {
        std::cerr << "tern: --day wants YYYY-MM-DD\n";
        return 1;
      }
      tlsrpt::ReportMeta meta{cfg->hostname,
                              "postmaster@" + (cfg->domains.empty()
                                                   ? cfg->hostname
                                                   : cfg->domains.front()),
                              cfg->hostname};
      nlohmann::json all = nlohmann::json::array();
      std::string text;
      for (const tlsrpt::Period& p : tlsrpt::LoadPeriods(cfg->data_dir + "/tlsrpt")) {
        if (tlsrpt::DateTime(p.start).substr(0, 10) != day) continue;
        for (const auto& [domain, policies] : p.domains) {
          nlohmann::json r = tlsrpt::BuildReport(p, domain, meta);
          text += domain + " " + tlsrpt::DateTime(p.start) + " .. " +
                  tlsrpt::DateTime(p.end) + (p.sent ? " (sent)" : " (not sent yet)") +
                  "\n";
          for (const auto& e : r["policies"]) {
            text += "  " + e["policy"]["policy-type"].get<std::string>() + ": " +
                    std::to_string(e["summary"]["total-successful-session-count"]
                                       .get<uint64_t>()) +
                    " successful, " +
                    std::to_string(
                        e["summary"]["total-failure-session-count"].get<uint64_t>()) +
                    " failed\n";
            for (const auto& f : e.value("failure-details", nlohmann::json::array())) {
              text += "    " + f["result-type"].get<std::string>() + " " +
                      f.value("receiving-mx-hostname", std::string("-")) + " [" +
                      f.value("receiving-ip", std::string("-")) + "]: " +
                      std::to_string(f["failed-session-count"].get<uint64_t>()) + "\n";
            }
          }
          all.push_back(std::move(r));
        }
      }
      if (args->json) {
        std::cout << all.dump(2) << "\n";
      } else if (text.empty()) {
        std::cout << "no TLS sessions recorded for " << day << "\n";
      } else {
        std::cout << text;
      }
      return 0;
    };
  });
}

}  // namespace tern::cli
