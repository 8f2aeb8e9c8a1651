// `tern dkim ...` and `tern check dkim`: thin shells over src/mailauth that
// read files and stdin, print for people and scripts, and turn errors into
// "tern: ..." on stderr with exit status 1.
#include "cli/dkim_commands.h"
#include "cli/columns.h"
#include "cli/message_text.h"

#include <asio.hpp>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/strings.h"
#include "dns/unbound_resolver.h"
#include "mailauth/dkim_keys.h"
#include "mailauth/dkim_lookup.h"
#include "mailauth/dkim_sign.h"
#include "mailauth/dkim_verify.h"

namespace tern::cli {
namespace {

using mailauth::DkimKeyType;

int Fail(const std::string& message) {
  std::cerr << "tern: " << message << "\n";
  return 1;
}

std::string Day(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  gmtime_r(&tt, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

struct Options {
  std::string domain;
  std::string selector;
  std::string algorithm;
  std::string key_file;
  int bits = 2048;
};

// --- keygen ----------------------------------------------------------------

int Keygen(const config::Config& cfg, const Options& o) {
  std::vector<DkimKeyType> types;
  if (o.algorithm.empty() || o.algorithm == "both") {
    // One selector names one key record, so one name cannot serve two keys.
    if (!o.selector.empty()) {
      return Fail("--selector names one key: add --algorithm ed25519 or rsa");
    }
    types = {DkimKeyType::kEd25519, DkimKeyType::kRsa};
  } else if (o.algorithm == "ed25519") {
    types = {DkimKeyType::kEd25519};
  } else if (o.algorithm == "rsa") {
    types = {DkimKeyType::kRsa};
  } else {
    return Fail("--algorithm must be ed25519, rsa or both");
  }
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (DkimKeyType type : types) {
    std::string selector = o.selector.empty()
                               ? mailauth::DefaultDkimSelector(type, now)
                               : o.selector;
    auto made =
        mailauth::CreateDkimKey(cfg.data_dir, o.domain, selector, type, o.bits);
    if (!made) return Fail(made.error().message);
    std::cout << "; " << mailauth::DkimKeyTypeName(type) << " key "
              << made->file.path << "\n"
              << mailauth::DkimZoneLine(made->record_name, made->record_text)
              << "\n";
  }
  std::cerr << "Publish the TXT record(s) above in DNS; Tern signs with every "
               "key of the domain.\n";
  return 0;
}

// --- list, dns, remove -------------------------------------------------------

int List(const config::Config& cfg) {
  auto keys = mailauth::ListDkimKeys(cfg.data_dir);
  if (!keys) return Fail(keys.error().message);
  if (keys->empty()) {
    std::cout << "No DKIM keys; create some with: tern dkim keygen DOMAIN\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"DOMAIN", "SELECTOR", "ALGORITHM", "CREATED", "DNS RECORD"});
  for (const mailauth::DkimKeyFile& k : *keys) {
    rows.push_back({k.domain, k.selector, mailauth::DkimKeyTypeName(k.type),
                    Day(k.created), k.selector + "._domainkey." + k.domain});
  }
  PrintColumns(rows, std::cout);
  return 0;
}

int Dns(const config::Config& cfg, const std::string& domain) {
  auto files = mailauth::ListDkimKeys(cfg.data_dir);
  if (!files) return Fail(files.error().message);
  bool any = false;
  for (const mailauth::DkimKeyFile& f : *files) {
    if (!domain.empty() && f.domain != ToLower(domain)) continue;
    auto text = mailauth::DkimKeyFileRecordText(f);
    if (!text) return Fail(text.error().message);
    std::cout << "; " << mailauth::DkimKeyTypeName(f.type) << " key " << f.path
              << "\n"
              << mailauth::DkimZoneLine(f.selector + "._domainkey." + f.domain,
                                        *text)
              << "\n";
    any = true;
  }
  if (!any)
    return Fail("no DKIM keys" + (domain.empty() ? "" : " for " + domain));
  return 0;
}

// --- sign
// ----------------------------------------------------------------------

int Sign(const Options& o) {
  std::ifstream in(o.key_file, std::ios::binary);
  if (!in) return Fail("cannot read " + o.key_file);
  auto key = mailauth::ParseDkimPrivateKeyPem(ReadAll(in));
  if (!key) return Fail(o.key_file + ": " + key.error().message);
  if (!o.algorithm.empty()) {
    DkimKeyType want;
    if (o.algorithm == "rsa-sha256") {
      want = DkimKeyType::kRsa;
    } else if (o.algorithm == "ed25519-sha256") {
      want = DkimKeyType::kEd25519;
    } else {
      return Fail("--algorithm must be rsa-sha256 or ed25519-sha256");
    }
    if (want != key->type()) {
      return Fail(o.key_file + " holds an " +
                  mailauth::DkimKeyTypeName(key->type()) + " key, not " +
                  mailauth::DkimKeyTypeName(want));
    }
  }
  if (key->type() == DkimKeyType::kRsa && key->bits() < 1024) {
    return Fail("RSA keys must have at least 1024 bits (RFC 8301)");
  }
  if (!mailauth::IsDkimDomainName(o.domain) ||
      !mailauth::IsDkimDomainName(o.selector)) {
    return Fail("--domain and --selector must be DNS names");
  }
  std::string raw = ReadAll(std::cin);
  bool lf_only = raw.find('\r') == std::string::npos;
  std::string message = ToCrlf(raw);
  std::vector<mailauth::DkimSigningKey> keys;
  keys.push_back({ToLower(o.domain), o.selector, std::move(*key)});
  auto fields = mailauth::DkimSignMessage(
      message, keys, static_cast<int64_t>(std::time(nullptr)));
  if (!fields) return Fail(fields.error().message);
  // The output keeps the input's line ends.
  std::cout << (lf_only ? ToLf(*fields) : *fields) << raw << std::flush;
  return 0;
}

// --- check dkim
// ------------------------------------------------------------------

void PrintResults(std::vector<mailauth::DkimResult> results) {
  if (results.empty()) {
    std::cout << "none\n";
    return;
  }
  for (const mailauth::DkimResult& r : results) {
    std::cout << mailauth::DkimStatusName(r.status) << " d=" << r.domain
              << " s=" << r.selector << "\n";
    // Why, for people; stdout keeps the fixed form for scripts.
    if (!r.reason.empty()) {
      std::cerr << "dkim d=" << r.domain << " s=" << r.selector << ": "
                << r.reason << "\n";
    }
  }
}

int CheckDkim(const config::Config& cfg) {
  std::string message = ToCrlf(ReadAll(std::cin));
  asio::io_context io;
  dns::UnboundOptions uo;
  uo.upstreams = cfg.dns.upstream;
  uo.trust_anchor_file = cfg.dns.trust_anchor;
  // Declared after the io_context: the resolver's descriptor must go first.
  auto resolver = dns::MakeUnboundResolver(io.get_executor(), uo);
  if (!resolver) return Fail(resolver.error().message);
  bool done = false;
  std::string error;
  asio::co_spawn(
      io,
      mailauth::VerifyDkimMessage(**resolver, std::move(message),
                                  static_cast<int64_t>(std::time(nullptr))),
      [&done, &error](std::exception_ptr e,
                      std::vector<mailauth::DkimResult> results) {
        done = true;
        if (e) {
          error = "verification failed";
          return;
        }
        PrintResults(std::move(results));
      });
  io.run();
  if (!done || !error.empty()) {
    return Fail(error.empty() ? "verification did not finish" : error);
  }
  return 0;
}

}  // namespace

void RegisterDkimCommands(CLI::App& app, CLI::App& check,
                          std::function<Result<config::Config>()> load_config,
                          std::function<int()>* action) {
  // Option values live as long as the App (the callbacks below hold them).
  auto o = std::make_shared<Options>();

  auto* dkim = app.add_subcommand("dkim", "DKIM signing keys and signatures");
  dkim->require_subcommand(1);

  auto* keygen = dkim->add_subcommand(
      "keygen",
      "create signing keys for a domain (Ed25519 and RSA-2048 by default) and "
      "print the DNS records to publish");
  keygen->add_option("domain", o->domain, "the signing domain (d=)")
      ->required();
  keygen->add_option("--selector", o->selector,
                     "selector name (default: t + year and month + e|r)");
  keygen->add_option("--algorithm", o->algorithm,
                     "ed25519, rsa or both (default)");
  keygen->add_option("--bits", o->bits, "RSA key size (default 2048)");
  keygen->callback([o, load_config, action] {
    *action = [o, load_config] {
      auto cfg = load_config();
      if (!cfg) return Fail(cfg.error().message);
      return Keygen(*cfg, *o);
    };
  });

  auto* list = dkim->add_subcommand("list", "list signing keys");
  list->callback([load_config, action] {
    *action = [load_config] {
      auto cfg = load_config();
      if (!cfg) return Fail(cfg.error().message);
      return List(*cfg);
    };
  });

  auto* dns = dkim->add_subcommand(
      "dns", "print the DNS TXT records of the signing keys");
  dns->add_option("domain", o->domain, "only this domain");
  dns->callback([o, load_config, action] {
    *action = [o, load_config] {
      auto cfg = load_config();
      if (!cfg) return Fail(cfg.error().message);
      return Dns(*cfg, o->domain);
    };
  });

  auto* remove = dkim->add_subcommand(
      "remove", "delete a selector's key (keep its DNS record a few days)");
  remove->add_option("domain", o->domain, "the signing domain")->required();
  remove->add_option("selector", o->selector, "the selector")->required();
  remove->callback([o, load_config, action] {
    *action = [o, load_config] {
      auto cfg = load_config();
      if (!cfg) return Fail(cfg.error().message);
      if (auto ok =
              mailauth::RemoveDkimKey(cfg->data_dir, o->domain, o->selector);
          !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "removed " << o->selector << " of " << o->domain << "\n";
      return 0;
    };
  });

  auto* sign = dkim->add_subcommand(
      "sign", "sign the message on stdin; print it with its DKIM-Signature");
  sign->add_option("--domain", o->domain, "signing domain (d=)")->required();
  sign->add_option("--selector", o->selector, "selector (s=)")->required();
  sign->add_option("--key", o->key_file, "private key, PEM")->required();
  sign->add_option("--algorithm", o->algorithm,
                   "rsa-sha256 or ed25519-sha256 (default: from the key)");
  sign->callback([o, action] { *action = [o] { return Sign(*o); }; });

  auto* check_dkim = check.add_subcommand(
      "dkim",
      "verify the DKIM signatures of the message on stdin: one line "
      "RESULT d=DOMAIN s=SELECTOR per signature, or none");
  check_dkim->callback([load_config, action] {
    *action = [load_config] {
      auto cfg = load_config();
      if (!cfg) return Fail(cfg.error().message);
      return CheckDkim(*cfg);
    };
  });
}

}  // namespace tern::cli
