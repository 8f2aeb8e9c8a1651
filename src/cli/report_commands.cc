#include "cli/report_commands.h"

#include <CLI/CLI.hpp>
#include <ctime>
#include <iostream>
#include <memory>

#include "control/control.h"
#include "reports/dmarc_report.h"

namespace tern::cli {
namespace {

struct DmarcArgs {
  std::string day;  // YYYY-MM-DD; empty: today (UTC)
  bool xml = false;
  bool send = false;
};

int Error(const std::string& text) {
  std::cerr << "tern: " << text << "\n";
  return 1;
}

void PrintTable(const reports::DmarcDay& day) {
  for (const auto& [domain, dd] : day) {
    std::cout << domain << " (p=" << dd.policy.p << " sp=" << dd.policy.sp
              << " adkim=" << dd.policy.adkim << " aspf=" << dd.policy.aspf
              << " pct=" << dd.policy.pct << "): " << dd.Messages() << " messages, rua=";
    for (size_t i = 0; i < dd.rua.size(); ++i) std::cout << (i ? "," : "") << dd.rua[i].uri;
    std::cout << "\n";
    for (const auto& [key, r] : dd.rows) {
      std::cout << "  " << r.count << " from " << r.source_ip << " header_from="
                << r.header_from << " envelope_from=" << r.envelope_from
                << " disposition=" << r.disposition << " dkim=" << r.dkim
                << " spf=" << r.spf;
      for (const auto& why : r.reasons) std::cout << " reason=" << why.type;
      std::cout << "\n";
    }
  }
}

int RunDmarc(const config::Config& cfg, const DmarcArgs& args) {
  if (args.send) {
    auto reply = control::Request(cfg.data_dir, "dmarc-send");
    if (!reply) return Error(reply.error().message);
    std::cout << *reply << "\n";
    return 0;
  }
  std::string dir = cfg.data_dir + "/dmarc-reports";
  int64_t day = reports::DayOf(static_cast<int64_t>(std::time(nullptr)));
  if (!args.day.empty()) {
    auto d = reports::ParseDayName(args.day);
    if (!d) return Error("--day wants YYYY-MM-DD, not \"" + args.day + "\"");
    day = *d;
  }
  auto loaded = reports::LoadDmarcDay(dir, day);
  if (!loaded) {
    std::string known;
    for (int64_t d : reports::ListDmarcDays(dir)) known += " " + reports::DayName(d);
    return Error("no DMARC aggregate for " + reports::DayName(day) + " in " + dir +
                 (known.empty() ? std::string(" (none kept)") : "; days kept:" + known) +
                 (cfg.mailauth.dmarc_reports
                      ? std::string()
                      : std::string("; [mailauth] dmarc_reports is off, so nothing is recorded")));
  }
  if (!args.xml) {
    PrintTable(*loaded);
    return 0;
  }
  std::string submitter = cfg.domains.empty() ? cfg.hostname : cfg.domains.front();
  for (const auto& [domain, dd] : *loaded) {
    reports::DmarcReportMeta meta;
    meta.org_name = submitter;
    meta.email = "postmaster@" + submitter;
    meta.report_id = domain + "." + reports::DayName(day) + ".preview@" + submitter;
    meta.begin = day * 86400;
    meta.end = meta.begin + 86399;
    std::cout << reports::BuildDmarcXml(dd, meta);
  }
  return 0;
}

}  // namespace

void RegisterReportCommands(CLI::App& app,
                            std::function<Result<config::Config>()> load_config,
                            std::function<int()>* action) {
  CLI::App* report = app.add_subcommand("report", "reports on the mail this server handles: DMARC aggregates, TLS-RPT");
  report->require_subcommand(1);
  auto args = std::make_shared<DmarcArgs>();
  CLI::App* dmarc = report->add_subcommand(
      "dmarc", "the DMARC aggregate (RFC 7489 7.2) of a day, from data_dir/dmarc-reports");
  dmarc->add_option("--day", args->day, "UTC day YYYY-MM-DD (default today)");
  dmarc->add_flag("--xml", args->xml, "print the report XML (RFC 7489 appendix C)");
  dmarc->add_flag("--send", args->send,
                  "ask the running server to send every report now, today's too");
  dmarc->callback([args, load_config, action] {
    *action = [args, load_config] {
      auto cfg = load_config();
      if (!cfg) return Error(cfg.error().message);
      return RunDmarc(*cfg, *args);
    };
  });
}

}  // namespace tern::cli
