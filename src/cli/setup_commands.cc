// `tern setup` and `tern check dns`: see setup_commands.h.
#include "cli/setup_commands.h"

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "antispam/dnsbl.h"
#include "cli/message_text.h"
#include "common/cidr.h"
#include "common/strings.h"
#include "dns/unbound_resolver.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_keys.h"
#include "mailauth/dmarc.h"

namespace tern::cli {
namespace {

constexpr int kTtl = 3600;

int Fail(const std::string& message) {
  std::cerr << "tern: " << message << "\n";
  return 1;
}

std::string Dot(const std::string& name) { return name.empty() ? "." : name + "."; }

// RFC 6186 and RFC 8314 5.1: the SRV name of each client service; implicit
// TLS first (priority 0), STARTTLS after (priority 10).
struct SrvService {
  const char* service;  // Tern's listener service
  const char* name;     // the SRV owner label
  int priority;
};
constexpr SrvService kSrv[] = {
    {"submissions", "_submissions._tcp", 0}, {"submission", "_submission._tcp", 10},
    {"imaps", "_imaps._tcp", 0},             {"imap", "_imap._tcp", 10},
    {"pop3s", "_pop3s._tcp", 0},             {"pop3", "_pop3._tcp", 10},
};

// A host or mail domain name: DNS labels of letters, digits and hyphens
// (no '_', which only service and key names use).
bool IsHostName(std::string_view name) {
  return mailauth::IsDnsDomainName(name) && name.find('_') == std::string_view::npos;
}

std::string PolicyId(int64_t now) {
  time_t t = static_cast<time_t>(now);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

}  // namespace

std::vector<SetupRecord> SetupRecords(const SetupInput& in) {
  std::vector<SetupRecord> out;
  const std::string& d = in.domain;
  out.push_back({d, "MX", "10 " + Dot(in.host), true,
                 "Mail for " + d + " goes to " + in.host + " (RFC 5321 5.1)"});
  bool v4 = false, v6 = false;
  for (const std::string& ip : in.ips) {
    bool is4 = ip.find(':') == std::string::npos;
    (is4 ? v4 : v6) = true;
    out.push_back({in.host, is4 ? "A" : "AAAA", ip, true,
                   in.host == d || in.host.ends_with("." + d)
                       ? "The mail host's address"
                       : "The mail host's address: publish it in the zone of " + in.host +
                             " (tern check dns checks it)"});
  }
  if (!v4) {
    out.push_back({in.host, "A", "IPV4-ADDRESS", false,
                   "The mail host's IPv4 address (tern setup --ip IP fills it in)"});
  }
  (void)v6;
  out.push_back({d, "TXT", "v=spf1 mx -all", true,
                 "SPF (RFC 7208): only the MX hosts send mail for " + d});
  for (const auto& [name, text] : in.dkim) {
    out.push_back({name, "TXT", text, true, "DKIM key (RFC 6376); Tern signs with it"});
  }
  if (in.dkim.empty()) {
    out.push_back({"SELECTOR._domainkey." + d, "TXT", "v=DKIM1; p=...", false,
                   "DKIM: no key yet (tern dkim keygen " + d + ")"});
  }
  out.push_back({"_dmarc." + d, "TXT",
                 "v=DMARC1; p=quarantine; rua=mailto:" + in.report_address, true,
                 "DMARC (RFC 7489): failing mail to Junk, aggregate reports to " +
                     in.report_address + "; p=reject once the reports look clean"});
  out.push_back({"_smtp._tls." + d, "TXT", "v=TLSRPTv1; rua=mailto:" + in.report_address, true,
                 "TLS reporting (RFC 8460): senders' TLS failures reported to " +
                     in.report_address});
  for (const SrvService& s : kSrv) {
    auto it = std::find_if(in.services.begin(), in.services.end(),
                           [&](const auto& p) { return p.first == s.service; });
    if (it == in.services.end()) continue;
    out.push_back({std::string(s.name) + "." + d, "SRV",
                   std::to_string(s.priority) + " 1 " + std::to_string(it->second) + " " +
                       Dot(in.host),
                   true, std::string("Mail clients find ") + s.service + " here (RFC 6186)"});
  }
  // What the https listener serves; without one, comments to publish
  // once it runs (README "Web listeners").
  std::string later = in.web ? "" : " (once an https listener runs)";
  out.push_back({"_mta-sts." + d, "TXT", "v=STSv1; id=" + PolicyId(in.now), in.web,
                 "MTA-STS (RFC 8461): senders fetch the policy from the host below" + later +
                     "; change the id whenever [http] mta_sts_mode changes"});
  out.push_back({"mta-sts." + d, "CNAME", Dot(in.host), in.web, ""});
  out.push_back({"autoconfig." + d, "CNAME", Dot(in.host), in.web,
                 "Client autoconfiguration (Thunderbird, Outlook)" + later +
                     "; add these names to [acme] names for their certificate"});
  out.push_back({"autodiscover." + d, "CNAME", Dot(in.host), in.web, ""});
  for (const std::string& ip : in.ips) {
    bool is4 = ip.find(':') == std::string::npos;
    std::string name = antispam::DnsListQueryName(ip, is4 ? "in-addr.arpa" : "ip6.arpa");
    out.push_back({name, "PTR", Dot(in.host), false,
                   "Reverse DNS: ask whoever hosts " + ip + " to set this (receivers check it)"});
  }
  return out;
}

std::string ZoneText(const std::vector<SetupRecord>& records, const SetupInput& in) {
  std::ostringstream z;
  z << "; DNS records for " << in.domain << ", made by `tern setup`.\n"
    << "; Lines starting with ';' are notes or records not to publish yet.\n";
  for (const SetupRecord& r : records) {
    if (!r.note.empty()) z << "\n; " << r.note << "\n";
    std::string value = r.value;
    if (r.type == "TXT") {
      // RFC 1035 3.3.14: character-strings of up to 255 octets; the texts
      // here have no '"' or '\'.
      std::string quoted;
      for (size_t i = 0; i < value.size() || i == 0; i += 255) {
        quoted += (i ? " \"" : "\"") + value.substr(i, 255) + "\"";
        if (value.empty()) break;
      }
      value = quoted;
    }
    // A record of another zone (the host's address when the host is
    // named in another domain) is shown, not meant for this zone file.
    bool here = r.name == in.domain || r.name.ends_with("." + in.domain);
    z << (r.publish && here ? "" : "; ") << Dot(r.name) << " " << kTtl << " IN " << r.type << " "
      << value << "\n";
  }
  return z.str();
}

std::string NewConfigText(const std::string& domain, const std::string& host) {
  // The example's own names, replaced everywhere (comments included, so
  // the examples in them are the reader's). The host first: it contains
  // the domain.
  std::string text = kExampleConfig;
  auto replace = [&text](std::string_view from, const std::string& to) {
    for (size_t at = text.find(from); at != std::string::npos;
         at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
  };
  replace("mx.example.com", "\x01");
  replace("example.com", domain);
  replace("\x01", host);
  return text;
}

Result<std::string> AddDomainToConfigText(const std::string& text, const std::string& domain) {
  std::istringstream in(text);
  std::string line, out;
  bool done = false, in_table = false;
  while (std::getline(in, line)) {
    std::string_view l = line;
    size_t start = l.find_first_not_of(" \t");
    std::string_view t = start == std::string_view::npos ? std::string_view() : l.substr(start);
    if (t.starts_with("[")) in_table = true;
    if (!done && !in_table && t.starts_with("domains") &&
        t.substr(7).find_first_not_of(" \t") != std::string_view::npos &&
        t.substr(t.find_first_not_of(" \t", 7)).starts_with("=")) {
      // The array's own closing bracket: the first ']' outside a quoted
      // string (a comment after it may hold brackets of its own).
      size_t open = line.find('['), close = std::string::npos;
      char quote = 0;
      for (size_t i = open == std::string::npos ? line.size() : open + 1; i < line.size(); ++i) {
        char c = line[i];
        if (quote != 0) {
          if (c == '\\' && quote == '"') ++i;
          else if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '#') {
          break;
        } else if (c == ']') {
          close = i;
          break;
        }
      }
      if (open == std::string::npos || close == std::string::npos) {
        return Err("the domains array spans several lines: add \"" + domain + "\" to it by hand");
      }
      std::string items = line.substr(open + 1, close - open - 1);
      // Quoted names, compared without case.
      std::string lower = ToLower(items);
      if (lower.find("\"" + domain + "\"") == std::string::npos) {
        bool empty = items.find_first_not_of(" \t") == std::string::npos;
        std::string trimmed = items;
        while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\t')) {
          trimmed.pop_back();
        }
        std::string added = empty ? "\"" + domain + "\"" : trimmed + ", \"" + domain + "\"";
        line = line.substr(0, open + 1) + added + line.substr(close);
      }
      done = true;
    }
    out += line + "\n";
  }
  if (!done) return Err("no `domains = [...]` line before the first table");
  return out;
}

namespace {

struct SetupArgs {
  std::string domain;
  std::string host;
  std::vector<std::string> ips;
  std::string report;
  bool no_keys = false;
};

// The input from the configuration and the command line; makes the DKIM
// keys when asked to.
Result<SetupInput> Gather(const config::Config& cfg, const SetupArgs& a, bool make_keys) {
  SetupInput in;
  in.domain = ToLower(a.domain);
  if (!in.domain.empty() && in.domain.back() == '.') in.domain.pop_back();
  if (!IsHostName(in.domain) || in.domain.find('.') == std::string::npos) {
    return Err("\"" + a.domain + "\" is not a domain name");
  }
  in.host = ToLower(a.host.empty() ? cfg.hostname : a.host);
  if (in.host.empty() || in.host == "localhost" || in.host.find('.') == std::string::npos) {
    in.host = "mx." + in.domain;
  }
  if (!IsHostName(in.host)) return Err("\"" + in.host + "\" is not a host name");
  for (const std::string& ip : a.ips) {
    auto parsed = ParseClientAddress(ip);
    if (!parsed) return Err("\"" + ip + "\" is not an IP address");
    in.ips.push_back(ip);
  }
  in.report_address = a.report.empty() ? "postmaster@" + in.domain : a.report;
  {
    // It goes into mailto: URIs of TXT records: a plain local@domain.
    const std::string& r = in.report_address;
    size_t at = r.rfind('@');
    bool ok = at != std::string::npos && at > 0 && IsHostName(r.substr(at + 1)) &&
              r.size() <= 254;
    for (size_t i = 0; ok && i < at; ++i) {
      unsigned char c = static_cast<unsigned char>(r[i]);
      ok = c > 32 && c < 127 && std::string_view("\"\\;,!<>()[]:@ ").find(r[i]) == std::string_view::npos;
    }
    if (!ok) return Err("\"" + r + "\" is not a plain mail address for --report-to");
  }
  for (const config::Listener& l : cfg.listeners) {
    if (l.service != "smtp") in.services.emplace_back(l.service, l.port);
    if (l.service == "https") in.web = true;
  }
  in.now = static_cast<int64_t>(std::time(nullptr));
  auto keys = mailauth::ListDkimKeys(cfg.data_dir);
  if (!keys) return tl::unexpected(keys.error());
  bool have = std::any_of(keys->begin(), keys->end(),
                          [&](const mailauth::DkimKeyFile& k) { return k.domain == in.domain; });
  if (!have && make_keys) {
    for (auto type : {mailauth::DkimKeyType::kEd25519, mailauth::DkimKeyType::kRsa}) {
      auto made = mailauth::CreateDkimKey(
          cfg.data_dir, in.domain, mailauth::DefaultDkimSelector(type, in.now), type, 2048);
      if (!made) return tl::unexpected(made.error());
      std::cerr << "tern: made DKIM key " << made->file.path << " ("
                << mailauth::DkimKeyTypeName(type) << ")\n";
    }
    keys = mailauth::ListDkimKeys(cfg.data_dir);
    if (!keys) return tl::unexpected(keys.error());
  }
  for (const mailauth::DkimKeyFile& f : *keys) {
    if (f.domain != in.domain) continue;
    auto text = mailauth::DkimKeyFileRecordText(f);
    if (!text) return tl::unexpected(text.error());
    in.dkim.emplace_back(f.selector + "._domainkey." + f.domain, *text);
  }
  return in;
}

// No configuration yet: the example one, for this domain and host, written
// where --config points (its folder must exist), readable by root and the
// group only (it may later hold relay passwords).
Result<void> WriteNewConfig(const SetupArgs& a, const std::string& config_path) {
  std::string domain = ToLower(a.domain);
  if (!domain.empty() && domain.back() == '.') domain.pop_back();
  std::string host = ToLower(a.host.empty() ? "mx." + domain : a.host);
  if (!IsHostName(domain) || domain.find('.') == std::string::npos) {
    return Err("\"" + a.domain + "\" is not a domain name");
  }
  if (!IsHostName(host)) return Err("\"" + host + "\" is not a host name");
  std::string tmp = config_path + ".tern-setup";
  {
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return Err("cannot write " + tmp + ": " + std::strerror(errno));
    std::string text = NewConfigText(domain, host);
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return Err("cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), config_path.c_str()) != 0) {
    return Err("cannot create " + config_path + ": " + std::strerror(errno));
  }
  std::cerr << "tern: wrote a new configuration to " << config_path << " for " << domain
            << " (host " << host << "); read it through before starting the server\n";
  return {};
}

int RunSetup(const SetupArgs& a, const std::function<Result<config::Config>()>& load_config,
             const std::string& config_path) {
  // No configuration, or the example exactly as installed (the package's
  // /etc/tern/tern.toml before anyone edited it): write one for this
  // domain. An edited file is only ever added to.
  std::error_code exists_ec;
  bool fresh = !std::filesystem::exists(config_path, exists_ec);
  if (!fresh) {
    std::ifstream current(config_path, std::ios::binary);
    fresh = current && ReadAll(current) == kExampleConfig;
  }
  if (fresh) {
    if (auto made = WriteNewConfig(a, config_path); !made) return Fail(made.error().message);
  }
  auto cfg = load_config();
  if (!cfg) return Fail(cfg.error().message);
  // Everything is checked before the configuration is touched.
  if (auto checked = Gather(*cfg, a, false); !checked) return Fail(checked.error().message);
  std::string domain = ToLower(a.domain);
  if (!domain.empty() && domain.back() == '.') domain.pop_back();
  if (std::find(cfg->domains.begin(), cfg->domains.end(), domain) == cfg->domains.end()) {
    std::ifstream file(config_path, std::ios::binary);
    auto changed = AddDomainToConfigText(ReadAll(file), domain);
    if (!changed) {
      std::cerr << "tern: " << config_path << ": " << changed.error().message << "\n";
    } else {
      // Written beside and renamed over: never half a configuration.
      std::string tmp = config_path + ".tern-setup";
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << *changed;
        if (!out) return Fail("cannot write " + tmp);
      }
      std::error_code ec;
      std::filesystem::permissions(
          tmp, std::filesystem::status(config_path, ec).permissions(),
          std::filesystem::perm_options::replace, ec);
      std::filesystem::rename(tmp, config_path, ec);
      if (ec) return Fail("cannot replace " + config_path + ": " + ec.message());
      std::cerr << "tern: added " << domain << " to the domains of " << config_path
                << " (a running server reads it on SIGHUP: systemctl reload tern)\n";
    }
  }
  auto in = Gather(*cfg, a, !a.no_keys);
  if (!in) return Fail(in.error().message);
  std::cout << ZoneText(SetupRecords(*in), *in);
  return 0;
}

// --- tern check dns ----------------------------------------------------------

dns::RrType TypeOf(const std::string& t) {
  if (t == "MX") return dns::RrType::kMx;
  if (t == "A") return dns::RrType::kA;
  if (t == "AAAA") return dns::RrType::kAaaa;
  if (t == "SRV") return dns::RrType::kSrv;
  if (t == "PTR") return dns::RrType::kPtr;
  if (t == "CNAME") return dns::RrType::kA;  // followed by the resolver
  return dns::RrType::kTxt;
}

// The tag=value list of a TXT record without spaces, for comparing DKIM
// keys and policies written with other spacing.
std::string Squeeze(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t') out += c;
  }
  return out;
}

struct Verdict {
  bool ok = false;
  std::string found;  // what is there, for the report
};

Verdict Judge(const SetupRecord& want, const dns::Answer& a) {
  Verdict v;
  if (a.status == dns::Status::kTempFail) {
    v.found = "lookup failed: " + a.error;
    return v;
  }
  if (a.status == dns::Status::kNxDomain) {
    v.found = "no such name";
    return v;
  }
  std::vector<std::string> seen;
  if (want.type == "MX") {
    for (const dns::MxRecord& mx : a.mx) {
      seen.push_back(std::to_string(mx.preference) + " " + Dot(mx.exchange));
      std::string host = want.value.substr(want.value.find(' ') + 1);
      if (Dot(mx.exchange) == host) v.ok = true;
    }
  } else if (want.type == "A" || want.type == "AAAA") {
    for (const std::string& ip : a.addresses) {
      seen.push_back(ip);
      if (ip == want.value) v.ok = true;
    }
  } else if (want.type == "SRV") {
    for (const dns::SrvRecord& s : a.srv) {
      std::string text = std::to_string(s.priority) + " " + std::to_string(s.weight) + " " +
                         std::to_string(s.port) + " " + Dot(s.target);
      seen.push_back(text);
      // Any priority and weight; the port and host must match.
      std::istringstream w(want.value);
      std::string p, wt, port, target;
      w >> p >> wt >> port >> target;
      if (std::to_string(s.port) == port && Dot(s.target) == target) v.ok = true;
    }
  } else if (want.type == "CNAME") {
    // Asked as A: the resolver follows the alias. Either the alias to our
    // host, or address records of the name's own (also fine for clients).
    std::string host = want.value.substr(0, want.value.size() - 1);
    if (!a.canonical_name.empty()) {
      seen.push_back("CNAME " + Dot(a.canonical_name));
      v.ok = ToLower(a.canonical_name) == host;
    } else {
      for (const std::string& ip : a.addresses) seen.push_back(ip);
      v.ok = !a.addresses.empty();
    }
  } else if (want.type == "PTR") {
    for (const std::string& n : a.names) {
      seen.push_back(Dot(n));
      if (Dot(n) == want.value) v.ok = true;
    }
  } else {  // TXT
    // The record of the same kind ("v=spf1", "v=DMARC1", ...) must be the
    // only one of its kind (RFC 7208 4.5, RFC 7489 6.6.3).
    std::string kind = want.value.substr(0, want.value.find(';'));
    kind = kind.substr(0, kind.find(' '));
    int same_kind = 0;
    bool matched = false;
    for (const std::string& t : a.txt) {
      if (!IStartsWith(t, kind)) continue;
      ++same_kind;
      seen.push_back("\"" + t + "\"");
      if (kind == "v=spf1") {
        // Any SPF record that lets the MX hosts send.
        std::string s = " " + ToLower(t) + " ";
        matched = matched || s.find(" mx ") != std::string::npos ||
                  s.find(" +mx ") != std::string::npos || s.find(" mx:") != std::string::npos;
      } else if (kind == "v=DMARC1" || kind == "v=TLSRPTv1") {
        matched = true;  // present; its policy is the owner's choice
      } else {
        matched = matched || Squeeze(t) == Squeeze(want.value);
      }
    }
    v.ok = matched && same_kind == 1;
    if (same_kind > 1 && kind != "v=DKIM1") {
      seen.push_back("(more than one: receivers ignore them all)");
    }
  }
  for (const std::string& s : seen) v.found += (v.found.empty() ? "" : ", ") + s;
  if (v.found.empty()) v.found = "none";
  return v;
}

int RunCheckDns(const SetupArgs& args, const std::function<Result<config::Config>()>& load_config) {
  auto cfg = load_config();
  if (!cfg) return Fail(cfg.error().message);
  auto in = Gather(*cfg, args, false);
  if (!in) return Fail(in.error().message);
  std::vector<SetupRecord> records = SetupRecords(*in);
  std::erase_if(records, [](const SetupRecord& r) { return !r.publish; });
  asio::io_context io;
  dns::UnboundOptions options;
  options.upstreams = cfg->dns.upstream;
  options.trust_anchor_file = cfg->dns.trust_anchor;
  auto resolver = dns::MakeUnboundResolver(io.get_executor(), options);
  if (!resolver) return Fail(resolver.error().message);
  std::map<std::pair<std::string, int>, dns::Answer> answers;
  for (const SetupRecord& r : records) {
    auto key = std::make_pair(r.name, static_cast<int>(TypeOf(r.type)));
    if (answers.count(key)) continue;
    answers[key] = dns::Answer{};
    (*resolver)->Query(r.name, TypeOf(r.type),
                       [&answers, key](dns::Answer a) { answers[key] = std::move(a); });
  }
  io.run();
  int bad = 0;
  for (const SetupRecord& r : records) {
    Verdict v = Judge(r, answers[{r.name, static_cast<int>(TypeOf(r.type))}]);
    if (!v.ok) ++bad;
    std::cout << (v.ok ? "ok       " : "MISSING  ") << r.type << " " << r.name;
    if (v.ok) {
      std::cout << "\n";
    } else {
      std::cout << "\n         want: " << r.value << "\n         have: " << v.found << "\n";
    }
  }
  bool none_answered = std::all_of(answers.begin(), answers.end(), [](const auto& kv) {
    return kv.second.status == dns::Status::kTempFail;
  });
  if (none_answered) {
    std::cout << "No DNS answer at all: is [dns] upstream reachable from here?\n";
  }
  std::cout << (bad == 0 ? "All " + std::to_string(records.size()) + " records are in place.\n"
                         : std::to_string(bad) + " of " + std::to_string(records.size()) +
                               " records missing or wrong.\n");
  return bad == 0 ? 0 : 1;
}

}  // namespace

void RegisterSetupCommands(CLI::App& app, CLI::App& check,
                           std::function<Result<config::Config>()> load_config,
                           std::function<std::string()> config_path,
                           std::function<int()>* action) {
  auto args = std::make_shared<SetupArgs>();
  auto add_common = [args](CLI::App* c) {
    c->add_option("domain", args->domain, "the mail domain, e.g. example.org")->required();
    c->add_option("--hostname", args->host,
                  "the MX host name (default: the configured hostname, or mx.DOMAIN)");
    c->add_option("--ip", args->ips, "the mail host's public IPv4 or IPv6 address (repeatable)");
    c->add_option("--report-to", args->report,
                  "where DMARC and TLS reports go (default: postmaster@DOMAIN)");
  };
  CLI::App* setup = app.add_subcommand(
      "setup", "add a mail domain (config, DKIM keys) and print the DNS records to publish");
  add_common(setup);
  setup->add_flag("--no-keys", args->no_keys, "do not make DKIM keys");
  setup->callback([args, load_config, config_path, action] {
    *action = [args, load_config, config_path] {
      return RunSetup(*args, load_config, config_path());
    };
  });
  CLI::App* dns = check.add_subcommand(
      "dns", "check a domain's DNS records against what tern setup prints, through [dns] upstream");
  add_common(dns);
  dns->callback([args, load_config, action] {
    *action = [args, load_config] { return RunCheckDns(*args, load_config); };
  });
}

}  // namespace tern::cli
