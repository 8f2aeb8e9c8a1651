// `tern check arc` and `tern arc seal`: thin shells over mailauth/arc.h
// that read stdin and key files, print for people and scripts, and turn
// errors into "tern: ..." on stderr with exit status 1.
#include "cli/arc_commands.h"
#include "cli/message_text.h"

#include <asio.hpp>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/strings.h"
#include "dns/unbound_resolver.h"
#include "mailauth/arc.h"
#include "mailauth/arc_lookup.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_record.h"

namespace tern::cli {
namespace {

int Fail(const std::string& message) {
  std::cerr << "tern: " << message << "\n";
  return 1;
}

// Verifies with the resolver the configuration names ([dns] upstream).
Result<mailauth::ArcResult> Verify(const config::Config& cfg,
                                   std::string message) {
  asio::io_context io;
  dns::UnboundOptions uo;
  uo.upstreams = cfg.dns.upstream;
  uo.trust_anchor_file = cfg.dns.trust_anchor;
  // Declared after the io_context: the resolver's descriptor must go first.
  auto resolver = dns::MakeUnboundResolver(io.get_executor(), uo);
  if (!resolver) return tl::unexpected(resolver.error());
  std::optional<mailauth::ArcResult> result;
  asio::co_spawn(io, mailauth::VerifyArcMessage(**resolver, std::move(message)),
                 [&result](std::exception_ptr e, mailauth::ArcResult r) {
                   if (!e) result = std::move(r);
                 });
  io.run();
  if (!result) return Err("ARC verification did not finish");
  return std::move(*result);
}

int CheckArc(const config::Config& cfg) {
  auto result = Verify(cfg, ToCrlf(ReadAll(std::cin)));
  if (!result) return Fail(result.error().message);
  std::cout << mailauth::ArcStatusName(result->status) << "\n";
  for (const mailauth::ArcInstanceResult& i : result->instances) {
    std::cout << "i=" << i.instance << " d=" << i.domain << "\n";
  }
  // Why, for people; stdout keeps the fixed form for scripts.
  if (!result->reason.empty()) {
    std::cerr << "arc: " << result->reason
              << (result->temporary ? " (temporary DNS failure)" : "") << "\n";
  }
  if (result->status == mailauth::ArcStatus::kPass &&
      result->oldest_pass != 0) {
    std::cerr << "arc: oldest-pass=" << result->oldest_pass << "\n";
  }
  return 0;
}

struct SealOptions {
  std::string domain;
  std::string selector;
  std::string key_file;
  std::string authserv_id;
  std::string cv;  // empty: verify the chain first
  std::string auth_results;
};

int Seal(const SealOptions& o,
         const std::function<Result<config::Config>()>& load_config) {
  std::ifstream in(o.key_file, std::ios::binary);
  if (!in) return Fail("cannot read " + o.key_file);
  auto key = mailauth::ParseDkimPrivateKeyPem(ReadAll(in));
  if (!key) return Fail(o.key_file + ": " + key.error().message);
  if (key->type() == mailauth::DkimKeyType::kRsa && key->bits() < 1024) {
    return Fail("RSA keys must have at least 1024 bits (RFC 8301)");
  }
  if (!mailauth::IsDkimDomainName(o.domain) ||
      !mailauth::IsDkimDomainName(o.selector)) {
    return Fail("--domain and --selector must be DNS names");
  }
  std::string raw = ReadAll(std::cin);
  bool lf_only = raw.find('\r') == std::string::npos;
  std::string message = ToCrlf(raw);

  mailauth::ArcSealRequest request;
  request.authserv_id = o.authserv_id;
  request.auth_results = o.auth_results;
  if (!o.cv.empty()) {
    auto cv = mailauth::ParseArcStatus(o.cv);
    if (!cv) return Fail("--cv must be none, pass or fail");
    request.cv = *cv;
  } else {
    auto cfg = load_config();
    if (!cfg) return Fail(cfg.error().message);
    auto verified = Verify(*cfg, message);
    if (!verified) return Fail(verified.error().message);
    // A seal with cv=fail ends the chain for good: not for a DNS hiccup.
    if (verified->temporary) {
      return Fail("cannot verify the ARC chain now (" + verified->reason +
                  "); try again, or give --cv");
    }
    request.cv = verified->status;
  }
  std::vector<mailauth::DkimSigningKey> keys;
  keys.push_back({ToLower(o.domain), ToLower(o.selector), std::move(*key)});
  auto fields = mailauth::ArcSealMessage(
      message, request, keys, static_cast<int64_t>(std::time(nullptr)));
  if (!fields) return Fail(fields.error().message);
  // The output keeps the input's line ends.
  std::cout << (lf_only ? ToLf(*fields) : *fields) << raw << std::flush;
  return 0;
}

}  // namespace

void RegisterArcCommands(CLI::App& app, CLI::App& check,
                         std::function<Result<config::Config>()> load_config,
                         std::function<int()>* action) {
  // Option values live as long as the App (the callbacks below hold them).
  auto o = std::make_shared<SealOptions>();

  auto* arc = app.add_subcommand("arc", "ARC (RFC 8617) sealing");
  arc->require_subcommand(1);
  auto* seal = arc->add_subcommand(
      "seal",
      "add the next ARC set to the message on stdin and print the message");
  seal->add_option("--domain", o->domain, "sealing domain (d=)")->required();
  seal->add_option("--selector", o->selector, "selector (s=)")->required();
  seal->add_option("--key", o->key_file, "private key, PEM")->required();
  seal->add_option("--authserv-id", o->authserv_id,
                   "authserv-id of the ARC-Authentication-Results")
      ->required();
  seal->add_option("--cv", o->cv,
                   "chain validation status of the message as received: "
                   "none, pass or fail (default: verify it with the "
                   "configured DNS)");
  seal->add_option("--auth-results", o->auth_results,
                   "this hop's results, as after \"authserv-id;\" in "
                   "Authentication-Results (arc=CV is added if missing)");
  seal->callback([o, load_config, action] {
    *action = [o, load_config] { return Seal(*o, load_config); };
  });

  auto* check_arc = check.add_subcommand(
      "arc",
      "verify the ARC chain of the message on stdin: a line none, pass or "
      "fail, then i=N d=DOMAIN per sealer");
  check_arc->callback([load_config, action] {
    *action = [load_config] {
      auto cfg = load_config();
      if (!cfg) return Fail(cfg.error().message);
      return CheckArc(*cfg);
    };
  });
}

}  // namespace tern::cli
