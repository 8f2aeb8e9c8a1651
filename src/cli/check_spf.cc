// `tern check spf`: one check_host() through libunbound set up from the
// configuration's [dns] section (as outbound delivery does), printed as the
// result word on the first line, then the explanation and the reason.
#include "cli/check_spf.h"

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/cidr.h"
#include "dns/unbound_resolver.h"
#include "mailauth/spf.h"

namespace tern::cli {
namespace {

struct CheckSpfArgs {
  std::string ip;
  std::string helo;
  std::string mail_from;
};

int RunCheckSpf(const CheckSpfArgs& args,
                const std::function<Result<config::Config>()>& load_config) {
  if (!ParseClientAddress(args.ip)) {
    std::cerr << "tern: check spf: \"" << args.ip
              << "\" is not an IP address\n";
    return 2;
  }
  auto cfg = load_config();
  if (!cfg) {
    std::cerr << "tern: " << cfg.error().message << "\n";
    return 1;
  }
  // The resolver watches a descriptor of this io_context, so it is
  // declared after it and goes first.
  asio::io_context io;
  dns::UnboundOptions options;
  options.upstreams = cfg->dns.upstream;
  options.trust_anchor_file = cfg->dns.trust_anchor;
  auto resolver = dns::MakeUnboundResolver(io.get_executor(), options);
  if (!resolver) {
    std::cerr << "tern: " << resolver.error().message << "\n";
    return 1;
  }

  mailauth::SpfRequest request;
  request.ip = args.ip;
  request.helo = args.helo;
  request.mail_from = args.mail_from;
  request.receiver = cfg->hostname;
  std::optional<mailauth::SpfOutcome> outcome;
  asio::co_spawn(
      io, mailauth::CheckHost(**resolver, std::move(request)),
      [&outcome](std::exception_ptr error, mailauth::SpfOutcome result) {
        if (!error) outcome = std::move(result);
      });
  io.run();
  if (!outcome) {
    std::cerr << "tern: check spf: the evaluation did not finish\n";
    return 1;
  }
  std::cout << mailauth::SpfResultName(outcome->result) << "\n";
  // The domain's own words (exp=, RFC 7208 6.2), already US-ASCII.
  if (!outcome->explanation.empty())
    std::cout << "explanation: " << outcome->explanation << "\n";
  std::cout << "reason: " << outcome->reason << "\n"
            << "identity: " << outcome->identity << " (" << outcome->domain
            << "), " << outcome->dns_terms << " DNS-querying terms, "
            << outcome->void_lookups << " void lookups\n";
  return 0;
}

}  // namespace

void RegisterCheckSpf(CLI::App* check,
                      std::function<Result<config::Config>()> load_config,
                      std::function<int()>* action) {
  auto args = std::make_shared<CheckSpfArgs>();
  CLI::App* spf = check->add_subcommand(
      "spf",
      "evaluate SPF (RFC 7208) for a client: prints pass, fail, softfail, "
      "neutral, none, permerror or temperror, then why");
  spf->add_option("ip", args->ip, "the client's IP address")->required();
  spf->add_option("helo", args->helo, "the name it gave in HELO/EHLO")
      ->required();
  spf->add_option("mailfrom", args->mail_from,
                  "the MAIL FROM address; \"\" checks the HELO name")
      ->required();
  spf->callback([args, load_config, action] {
    *action = [args, load_config] { return RunCheckSpf(*args, load_config); };
  });
}

}  // namespace tern::cli
