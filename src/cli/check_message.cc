// `tern check message|dmarc --ip IP --helo HELO --mail-from ADDR < MESSAGE`:
// SPF, DKIM and DMARC as the server runs them (mailauth/inbound.h).
#include "cli/check_message.h"
#include "cli/message_text.h"

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <ctime>
#include <exception>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/cidr.h"
#include "dns/unbound_resolver.h"
#include "mailauth/inbound.h"

namespace tern::cli {
namespace {

struct CheckMessageArgs {
  std::string ip;
  std::string helo;
  std::string mail_from;
  bool dmarc_only = false;
};


asio::awaitable<mailauth::InboundVerdict> Evaluate(
    dns::Resolver& resolver, mailauth::InboundSettings settings,
    mailauth::SmtpIdentity who, std::string message, std::string receiver) {
  mailauth::SpfOutcome spf = co_await mailauth::CheckSender(resolver, who, receiver);
  std::optional<mailauth::SpfOutcome> helo_spf;
  if (!who.mail_from.empty() && !who.helo.empty()) {
    // A named identity: g++ 12 frees a braced temporary inside a co_await
    // expression too early.
    mailauth::SmtpIdentity helo_only{who.ip, who.helo, ""};
    helo_spf = co_await mailauth::CheckSender(resolver, helo_only, std::move(receiver));
  }
  mailauth::InboundMessage inbound(std::move(settings),
                                   static_cast<int64_t>(std::time(nullptr)));
  std::string stored;
  inbound.Feed(message, &stored);
  inbound.End(&stored);
  co_return co_await inbound.Finish(resolver, std::move(who), std::move(spf),
                                    std::move(helo_spf));
}

int RunCheckMessage(const CheckMessageArgs& args,
                    const std::function<Result<config::Config>()>& load_config) {
  if (!ParseClientAddress(args.ip)) {
    std::cerr << "tern: check: \"" << args.ip << "\" is not an IP address\n";
    return 2;
  }
  auto cfg = load_config();
  if (!cfg) {
    std::cerr << "tern: " << cfg.error().message << "\n";
    return 1;
  }
  std::string message = ToCrlf(ReadAll(std::cin));
  // The resolver watches a descriptor of this io_context: declared after it.
  asio::io_context io;
  dns::UnboundOptions options;
  options.upstreams = cfg->dns.upstream;
  options.trust_anchor_file = cfg->dns.trust_anchor;
  auto resolver = dns::MakeUnboundResolver(io.get_executor(), options);
  if (!resolver) {
    std::cerr << "tern: " << resolver.error().message << "\n";
    return 1;
  }
  mailauth::InboundSettings settings;
  settings.authserv_id = cfg->hostname;
  settings.dmarc_reject = cfg->mailauth.dmarc_reject;
  settings.dmarc_quarantine = cfg->mailauth.dmarc_quarantine;
  settings.arc_trusted_sealers = cfg->mailauth.arc_trusted_sealers;
  mailauth::SmtpIdentity who{args.ip, args.helo, args.mail_from};
  std::optional<mailauth::InboundVerdict> verdict;
  asio::co_spawn(io,
                 Evaluate(**resolver, std::move(settings), std::move(who),
                          std::move(message), cfg->hostname),
                 [&verdict](std::exception_ptr error, mailauth::InboundVerdict v) {
                   if (!error) verdict = std::move(v);
                 });
  io.run();
  if (!verdict) {
    std::cerr << "tern: check: the evaluation did not finish\n";
    return 1;
  }
  if (args.dmarc_only) {
    const mailauth::DmarcOutcome& d = verdict->dmarc;
    std::cout << "dmarc=" << mailauth::DmarcResultName(d.result)
              << " header.from=" << d.from_domain
              << " policy=" << mailauth::DmarcPolicyName(d.requested) << "\n";
    if (!d.reason.empty()) std::cout << "reason: " << d.reason << "\n";
    return 0;
  }
  std::cout << verdict->header_fields;
  if (verdict->action == mailauth::InboundVerdict::Action::kReject) {
    std::cout << "(the server would refuse it: " << verdict->reply << ")\n";
  }
  return 0;
}

void AddIdentity(CLI::App* cmd, CheckMessageArgs* args) {
  cmd->add_option("--ip", args->ip, "the client's IP address")->required();
  cmd->add_option("--helo", args->helo, "the name it gave in HELO/EHLO")->required();
  cmd->add_option("--mail-from", args->mail_from,
                  "the MAIL FROM address; \"\" for the null sender")
      ->required();
}

}  // namespace

void RegisterCheckMessage(CLI::App* check,
                          std::function<Result<config::Config>()> load_config,
                          std::function<int()>* action) {
  auto margs = std::make_shared<CheckMessageArgs>();
  CLI::App* message = check->add_subcommand(
      "message",
      "SPF, DKIM and DMARC for a message on stdin, as the server checks "
      "port-25 mail: prints the Authentication-Results header it would add");
  AddIdentity(message, margs.get());
  message->callback([margs, load_config, action] {
    *action = [margs, load_config] { return RunCheckMessage(*margs, load_config); };
  });

  auto dargs = std::make_shared<CheckMessageArgs>();
  dargs->dmarc_only = true;
  CLI::App* dmarc = check->add_subcommand(
      "dmarc",
      "DMARC (RFC 7489) for a message on stdin: prints "
      "dmarc=RESULT header.from=DOMAIN policy=P");
  AddIdentity(dmarc, dargs.get());
  dmarc->callback([dargs, load_config, action] {
    *action = [dargs, load_config] { return RunCheckMessage(*dargs, load_config); };
  });
}

}  // namespace tern::cli
