// `tern setup DOMAIN` and `tern check dns DOMAIN` (issue 16): the DNS
// records a domain needs to receive and send mail with Tern, printed as a
// zone file (after adding the domain to the configuration and making its
// DKIM keys), and the same list checked against the live DNS.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tern::cli {

// What the records are made from.
struct SetupInput {
  std::string domain;                // lower case, no trailing dot
  std::string host;                  // the MX host name
  std::vector<std::string> ips;      // the host's addresses (v4 and v6)
  std::string report_address;        // DMARC and TLS-RPT reports go here
  // (service, port) of the configured client listeners, for RFC 6186 SRV
  // records: "submissions", "submission", "imaps", "imap", "pop3s", "pop3".
  std::vector<std::pair<std::string, uint16_t>> services;
  // DKIM key records of the domain: (SELECTOR._domainkey.DOMAIN, text).
  std::vector<std::pair<std::string, std::string>> dkim;
  int64_t now = 0;                   // for the MTA-STS policy id
  // An https listener serves autoconfig and the MTA-STS policy: their
  // host names are published (else printed as comments).
  bool web = false;
};

struct SetupRecord {
  std::string name;   // absolute, no trailing dot
  std::string type;   // "MX", "A", "AAAA", "TXT", "SRV", "CNAME", "PTR"
  std::string value;  // presentation form: "10 mx.example.org.", TXT unquoted
  // False: printed as a comment, not checked (nothing serves what it
  // points at yet, or only the hosting provider can publish it).
  bool publish = true;
  std::string note;   // the comment above it
};

// Every record, in the order printed. Pure: the tests and both commands
// share it.
std::vector<SetupRecord> SetupRecords(const SetupInput& in);

// The zone file text of the records (TTL 3600; TXT values cut into
// 255-octet strings; unpublished records commented out).
std::string ZoneText(const std::vector<SetupRecord>& records, const SetupInput& in);

// etc/tern.example.toml, built into the binary (CMakeLists.txt).
extern const char kExampleConfig[];

// The example configuration for `domain` served by `host`: what `tern
// setup` writes when there is no configuration file yet.
std::string NewConfigText(const std::string& domain, const std::string& host);

// Adds "domain" to the single-line `domains = [...]` array of a TOML text.
// Unchanged when it is there already; an error when the line is not found
// or spans lines.
Result<std::string> AddDomainToConfigText(const std::string& text, const std::string& domain);

// Registers `setup` on `app` and `dns` under `check`.
void RegisterSetupCommands(CLI::App& app, CLI::App& check,
                           std::function<Result<config::Config>()> load_config,
                           std::function<std::string()> config_path,
                           std::function<int()>* action);

}  // namespace tern::cli
