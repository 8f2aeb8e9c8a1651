// Loads tern's TOML configuration and validates every value, so that a typo
// or a bad address stops start-up with "FILE:LINE:COL: key: reason" instead
// of surfacing later as odd server behaviour.
#include "config/config.h"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "common/cidr.h"
#include "common/strings.h"

namespace tern::config {
namespace {

constexpr uint64_t kU32Max = std::numeric_limits<uint32_t>::max();

// Collects every problem in the file rather than stopping at the first, so a
// user fixing a config sees all mistakes in one run.
class Checker {
 public:
  explicit Checker(std::string name) : name_(std::move(name)) {}

  void Fail(const toml::source_region& where, std::string_view key,
            std::string_view reason) {
    std::string text = name_ + ":" + std::to_string(where.begin.line) + ":" +
                       std::to_string(where.begin.column) + ": ";
    if (!key.empty()) {
      text += key;
      text += ": ";
    }
    text += reason;
    issues_.push_back({where.begin.line, where.begin.column, std::move(text)});
  }

  bool ok() const { return issues_.empty(); }

  // One line per problem, in file order (toml++ tables iterate by key name,
  // which would otherwise scramble the order).
  std::string Message() {
    std::stable_sort(
        issues_.begin(), issues_.end(), [](const Issue& a, const Issue& b) {
          return a.line != b.line ? a.line < b.line : a.col < b.col;
        });
    std::string out;
    for (const Issue& issue : issues_) {
      if (!out.empty()) out += '\n';
      out += issue.text;
    }
    return out;
  }

  // Reports keys of `table` that are not in `known`; `prefix` qualifies them
  // ("smtp." for keys of [smtp]).
  void RejectUnknown(const toml::table& table, std::string_view prefix,
                     std::initializer_list<std::string_view> known) {
    for (auto&& [key, node] : table) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) {
        continue;
      }
      Fail(key.source(), std::string(prefix) + std::string(key.str()),
           "unknown key");
    }
  }

  // Each getter leaves `*out` untouched when the key is absent (defaults from
  // config.h apply) or invalid (the error is recorded). They return true when
  // a valid value was stored.
  bool GetString(const toml::table& table, std::string_view key,
                 const std::string& qualified, bool required,
                 std::string* out) {
    const toml::node* node = Find(table, key, qualified, required);
    if (node == nullptr) return false;
    const auto* value = node->as_string();
    if (value == nullptr) {
      Fail(node->source(), qualified, "expected a string");
      return false;
    }
    const std::string& text = value->get();
    if (text.find('\0') != std::string::npos) {
      Fail(node->source(), qualified, "must not contain NUL");
      return false;
    }
    *out = text;
    return true;
  }

  template <class T>
  bool GetUint(const toml::table& table, std::string_view key,
               const std::string& qualified, uint64_t min, uint64_t max,
               T* out) {
    const toml::node* node = Find(table, key, qualified, false);
    if (node == nullptr) return false;
    const auto* value = node->as_integer();
    if (value == nullptr) {
      Fail(node->source(), qualified, "expected an integer");
      return false;
    }
    int64_t n = value->get();
    if (n < 0 || static_cast<uint64_t>(n) < min) {
      Fail(node->source(), qualified,
           (min == 1 ? std::string("must be positive")
                     : "must be at least " + std::to_string(min)) +
               ", got " + std::to_string(n));
      return false;
    }
    if (static_cast<uint64_t>(n) > max) {
      Fail(node->source(), qualified,
           "must be at most " + std::to_string(max) + ", got " +
               std::to_string(n));
      return false;
    }
    *out = static_cast<T>(n);
    return true;
  }

  bool GetBool(const toml::table& table, std::string_view key,
               const std::string& qualified, bool* out) {
    const toml::node* node = Find(table, key, qualified, false);
    if (node == nullptr) return false;
    const auto* value = node->as_boolean();
    if (value == nullptr) {
      Fail(node->source(), qualified, "expected true or false");
      return false;
    }
    *out = value->get();
    return true;
  }

  // Returns the array of strings at `key`, with each element's node so that
  // callers can point at the offending element.
  bool GetStringArray(
      const toml::table& table, std::string_view key,
      const std::string& qualified, bool required,
      std::vector<std::pair<std::string, const toml::node*>>* out) {
    const toml::node* node = Find(table, key, qualified, required);
    if (node == nullptr) return false;
    const auto* array = node->as_array();
    if (array == nullptr) {
      Fail(node->source(), qualified, "expected an array of strings");
      return false;
    }
    bool good = true;
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = (*array)[i];
      const auto* value = element.as_string();
      if (value == nullptr) {
        Fail(element.source(), qualified + "[" + std::to_string(i) + "]",
             "expected a string");
        good = false;
        continue;
      }
      out->emplace_back(value->get(), &element);
    }
    return good;
  }

  // A sub-table such as [smtp]; absent is fine (all defaults).
  const toml::table* GetTable(const toml::table& table, std::string_view key) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return nullptr;
    const auto* sub = node->as_table();
    if (sub == nullptr) {
      Fail(node->source(), key,
           "expected a table ([" + std::string(key) + "])");
    }
    return sub;
  }

 private:
  struct Issue {
    uint32_t line;
    uint32_t col;
    std::string text;
  };

  const toml::node* Find(const toml::table& table, std::string_view key,
                         const std::string& qualified, bool required) {
    const toml::node* node = table.get(key);
    if (node == nullptr && required) {
      // Nothing to point at but the table that should hold the key.
      Fail(table.source(), qualified, "missing (required)");
    }
    return node;
  }

  std::string name_;
  std::vector<Issue> issues_;
};

// RFC 1035 2.3.1 host name (letters, digits, hyphens; dot-separated labels).
// IDNs must be written in their xn-- form.
bool IsDomainName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (const std::string& label : Split(name, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9');
      if (!alnum && c != '-') return false;
    }
  }
  return true;
}

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  uint32_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n == 0 || n > 65535) return false;
  *port = static_cast<uint16_t>(n);
  return true;
}

bool IsIpv4(const std::string& text) {
  in_addr addr;
  return inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

bool IsIpv6(const std::string& text) {
  in6_addr addr;
  return inet_pton(AF_INET6, text.c_str(), &addr) == 1;
}

bool IsLoopback(const std::string& host) {
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  return host == "::1";
}

// Fills host/port from "a.b.c.d:port" or "[v6]:port". Returns the reason on
// failure, empty on success. Hosts must be IP literals: a name would need DNS
// at start-up and could bind somewhere unexpected.
std::string ParseListenAddress(const std::string& address, Listener* out) {
  std::string host;
  std::string_view port_text;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos) return "missing ']' after IPv6 address";
    host = address.substr(1, close - 1);
    if (close + 1 >= address.size() || address[close + 1] != ':') {
      return "expected \"[IPv6]:PORT\"";
    }
    port_text = std::string_view(address).substr(close + 2);
    if (!IsIpv6(host)) return "\"" + host + "\" is not an IPv6 address";
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) return "expected \"HOST:PORT\"";
    host = address.substr(0, colon);
    port_text = std::string_view(address).substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return "IPv6 addresses must be in brackets, e.g. \"[::1]:25\"";
    }
    if (host.empty()) return "missing host (use 0.0.0.0 for all IPv4)";
    if (!IsIpv4(host)) {
      return "\"" + host + "\" is not an IP address (names are not allowed)";
    }
  }
  uint16_t port = 0;
  if (!ParsePort(port_text, &port)) {
    return "port must be a number between 1 and 65535";
  }
  out->host = host;
  out->port = port;
  return "";
}

// Validates "addr/prefix" (or a bare address, taken as a single host) by
// the rules of common/cidr.h and returns the canonical form, or an error
// reason in `reason`.
std::string NormalizeCidr(const std::string& text, std::string* reason) {
  Result<Cidr> net = ParseCidr(text);
  if (!net) {
    *reason = "\"" + text + "\": " + net.error().message;
    return "";
  }
  return net->ToString();
}

void CheckListeners(Checker& check, const toml::table& root, Config* cfg) {
  const toml::node* node = root.get("listen");
  if (node == nullptr) {
    check.Fail(root.source(), "listen",
               "missing (at least one [[listen]] table is required)");
    return;
  }
  const auto* array = node->as_array();
  if (array == nullptr || array->empty()) {
    check.Fail(node->source(), "listen",
               "expected one or more [[listen]] tables");
    return;
  }
  std::set<std::pair<std::string, uint16_t>> seen;
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = (*array)[i];
    std::string prefix = "listen[" + std::to_string(i) + "]";
    const auto* table = element.as_table();
    if (table == nullptr) {
      check.Fail(element.source(), prefix, "expected a [[listen]] table");
      continue;
    }
    check.RejectUnknown(*table, prefix + ".",
                        {"address", "service", "allow_plaintext_auth"});
    Listener listener;
    if (check.GetString(*table, "address", prefix + ".address", true,
                        &listener.address)) {
      std::string reason = ParseListenAddress(listener.address, &listener);
      if (!reason.empty()) {
        check.Fail(table->get("address")->source(), prefix + ".address",
                   reason);
      } else if (!seen.emplace(listener.host, listener.port).second) {
        check.Fail(table->get("address")->source(), prefix + ".address",
                   "\"" + listener.address + "\" is listed twice");
      }
    }
    if (check.GetString(*table, "service", prefix + ".service", true,
                        &listener.service)) {
      const std::string& service = listener.service;
      constexpr const char* kSupported =
          "smtp, submission, submissions, pop3, pop3s, imap, imaps, http, https, admin";
      if (service != "smtp" && service != "submission" &&
          service != "submissions" && service != "pop3" && service != "pop3s" &&
          service != "imap" && service != "imaps" && service != "http" &&
          service != "https" && service != "admin") {
        check.Fail(table->get("service")->source(), prefix + ".service",
                   "unknown service \"" + service + "\" (supported: " +
                       kSupported + ")");
      }
    }
    if (check.GetBool(*table, "allow_plaintext_auth",
                      prefix + ".allow_plaintext_auth",
                      &listener.allow_plaintext_auth) &&
        listener.allow_plaintext_auth && !listener.host.empty() &&
        !IsLoopback(listener.host)) {
      // Passwords in clear text may only cross the loopback interface.
      check.Fail(table->get("allow_plaintext_auth")->source(),
                 prefix + ".allow_plaintext_auth",
                 "only allowed on a loopback address (127.0.0.0/8, ::1)");
    }
    cfg->listeners.push_back(std::move(listener));
  }
}

void CheckSmtp(Checker& check, const toml::table& smtp, SmtpLimits* limits) {
  check.RejectUnknown(
      smtp, "smtp.",
      {"max_message_size", "max_recipients", "max_connections",
       "max_connections_per_ip", "max_errors", "command_line_limit",
       "text_line_limit", "max_received_headers", "command_timeout",
       "data_block_timeout", "final_timeout", "vrfy", "expn"});
  constexpr uint64_t kI64Max = std::numeric_limits<int64_t>::max();
  check.GetUint(smtp, "max_message_size", "smtp.max_message_size", 1, kI64Max,
                &limits->max_message_size);
  struct U32Field {
    const char* key;
    uint32_t* field;
  };
  const U32Field fields[] = {
      {"max_recipients", &limits->max_recipients},
      {"max_connections", &limits->max_connections},
      {"max_connections_per_ip", &limits->max_connections_per_ip},
      {"max_errors", &limits->max_errors},
      {"command_line_limit", &limits->command_line_limit},
      {"text_line_limit", &limits->text_line_limit},
      {"max_received_headers", &limits->max_received_headers},
      {"command_timeout", &limits->command_timeout},
      {"data_block_timeout", &limits->data_block_timeout},
      {"final_timeout", &limits->final_timeout},
  };
  for (const U32Field& f : fields) {
    check.GetUint(smtp, f.key, std::string("smtp.") + f.key, 1, kU32Max,
                  f.field);
  }
  check.GetBool(smtp, "vrfy", "smtp.vrfy", &limits->vrfy);
  check.GetBool(smtp, "expn", "smtp.expn", &limits->expn);
}

void CheckTls(Checker& check, const toml::table& tls, TlsSettings* out) {
  check.RejectUnknown(tls, "tls.", {"certificates", "self_signed"});
  check.GetBool(tls, "self_signed", "tls.self_signed", &out->self_signed);
  const toml::node* node = tls.get("certificates");
  if (node == nullptr) return;
  const auto* array = node->as_array();
  if (array == nullptr) {
    check.Fail(node->source(), "tls.certificates",
               "expected an array of {cert = \"...\", key = \"...\"} tables");
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = (*array)[i];
    std::string prefix = "tls.certificates[" + std::to_string(i) + "]";
    const auto* table = element.as_table();
    if (table == nullptr) {
      check.Fail(element.source(), prefix,
                 "expected {cert = \"...\", key = \"...\"}");
      continue;
    }
    check.RejectUnknown(*table, prefix + ".", {"cert", "key"});
    Certificate c;
    bool ok = check.GetString(*table, "cert", prefix + ".cert", true, &c.cert);
    ok = check.GetString(*table, "key", prefix + ".key", true, &c.key) && ok;
    if (ok) out->certificates.push_back(std::move(c));
  }
}

void CheckAuth(Checker& check, const toml::table& auth, AuthSettings* out) {
  check.RejectUnknown(auth, "auth.",
                      {"max_failures", "window", "lockout", "delay_step_ms",
                       "max_delay_ms"});
  check.GetUint(auth, "max_failures", "auth.max_failures", 1, kU32Max,
                &out->max_failures);
  check.GetUint(auth, "window", "auth.window", 1, 86400 * 30, &out->window);
  check.GetUint(auth, "lockout", "auth.lockout", 1, 86400 * 30, &out->lockout);
  check.GetUint(auth, "delay_step_ms", "auth.delay_step_ms", 0, 60000,
                &out->delay_step_ms);
  check.GetUint(auth, "max_delay_ms", "auth.max_delay_ms", 0, 60000,
                &out->max_delay_ms);
}

void CheckPop3(Checker& check, const toml::table& pop3, Pop3Settings* out) {
  check.RejectUnknown(pop3, "pop3.",
                      {"idle_timeout", "max_errors", "max_connections",
                       "max_connections_per_ip", "expire", "login_delay"});
  check.GetUint(pop3, "idle_timeout", "pop3.idle_timeout", 1, 86400,
                &out->idle_timeout);
  check.GetUint(pop3, "max_errors", "pop3.max_errors", 1, kU32Max, &out->max_errors);
  check.GetUint(pop3, "max_connections", "pop3.max_connections", 1, kU32Max,
                &out->max_connections);
  check.GetUint(pop3, "max_connections_per_ip", "pop3.max_connections_per_ip", 1,
                kU32Max, &out->max_connections_per_ip);
  check.GetUint(pop3, "login_delay", "pop3.login_delay", 0, 86400 * 365,
                &out->login_delay);
  // RFC 2449 6.7: EXPIRE is "NEVER" or a number of days.
  if (const toml::node* node = pop3.get("expire")) {
    if (const auto* days = node->as_integer(); days && days->get() >= 0) {
      out->expire = std::to_string(days->get());
    } else if (const auto* text = node->as_string(); text && text->get() == "NEVER") {
      out->expire = "NEVER";
    } else {
      check.Fail(node->source(), "pop3.expire",
                 "expected \"NEVER\" or a number of days");
    }
  }
}

void CheckHttp(Checker& check, const toml::table& t, HttpSettings* out) {
  check.RejectUnknown(t, "http.",
                      {"idle_timeout", "max_connections", "max_connections_per_ip",
                       "mta_sts_mode", "mta_sts_max_age"});
  check.GetUint(t, "idle_timeout", "http.idle_timeout", 1, 3600, &out->idle_timeout);
  check.GetUint(t, "max_connections", "http.max_connections", 1, kU32Max,
                &out->max_connections);
  check.GetUint(t, "max_connections_per_ip", "http.max_connections_per_ip", 1, kU32Max,
                &out->max_connections_per_ip);
  if (check.GetString(t, "mta_sts_mode", "http.mta_sts_mode", false, &out->mta_sts_mode) &&
      out->mta_sts_mode != "testing" && out->mta_sts_mode != "enforce" &&
      out->mta_sts_mode != "none") {
    check.Fail(t.get("mta_sts_mode")->source(), "http.mta_sts_mode",
               "expected \"testing\", \"enforce\" or \"none\" (RFC 8461 5)");
  }
  // RFC 8461 3.2: max_age is at most 31557600 seconds (about a year).
  check.GetUint(t, "mta_sts_max_age", "http.mta_sts_max_age", 1, 31557600,
                &out->mta_sts_max_age);
}

void CheckTrace(Checker& check, const toml::table& t, TraceSettings* out) {
  check.RejectUnknown(t, "trace.", {"keep_days"});
  check.GetUint(t, "keep_days", "trace.keep_days", 0, 3650, &out->keep_days);
}

void CheckAcme(Checker& check, const toml::table& t, AcmeSettings* out) {
  check.RejectUnknown(t, "acme.",
                      {"directory", "contact", "names", "challenge", "ca_file", "renew_days",
                       "check_interval"});
  if (check.GetString(t, "directory", "acme.directory", true, &out->directory) &&
      !out->directory.starts_with("https://")) {
    check.Fail(t.get("directory")->source(), "acme.directory",
               "expected the https:// URL of the ACME directory (RFC 8555 7.1.1)");
  }
  if (check.GetString(t, "contact", "acme.contact", false, &out->contact) &&
      (out->contact.find('@') == std::string::npos || out->contact.starts_with("mailto:"))) {
    check.Fail(t.get("contact")->source(), "acme.contact",
               "expected an email address (without mailto:)");
  }
  std::vector<std::pair<std::string, const toml::node*>> names;
  if (check.GetStringArray(t, "names", "acme.names", false, &names)) {
    for (const auto& [n, node] : names) {
      if (!IsDomainName(n)) {
        check.Fail(node->source(), "acme.names", "\"" + n + "\" is not a host name");
      }
      out->names.push_back(ToLower(n));
    }
  }
  if (check.GetString(t, "challenge", "acme.challenge", false, &out->challenge) &&
      out->challenge != "http-01" && out->challenge != "tls-alpn-01") {
    check.Fail(t.get("challenge")->source(), "acme.challenge",
               "expected \"http-01\" or \"tls-alpn-01\"");
  }
  check.GetString(t, "ca_file", "acme.ca_file", false, &out->ca_file);
  check.GetUint(t, "renew_days", "acme.renew_days", 1, 3650, &out->renew_days);
  check.GetUint(t, "check_interval", "acme.check_interval", 1, 7 * 86400,
                &out->check_interval);
}

void CheckImap(Checker& check, const toml::table& t, ImapSettings* out) {
  check.RejectUnknown(t, "imap.",
                      {"idle_timeout", "max_errors", "max_connections",
                       "max_connections_per_ip", "append_limit"});
  // RFC 9051 5.4: the autologout timer is at least 30 minutes.
  check.GetUint(t, "idle_timeout", "imap.idle_timeout", 1800, 86400, &out->idle_timeout);
  check.GetUint(t, "max_errors", "imap.max_errors", 1, kU32Max, &out->max_errors);
  check.GetUint(t, "max_connections", "imap.max_connections", 1, kU32Max,
                &out->max_connections);
  check.GetUint(t, "max_connections_per_ip", "imap.max_connections_per_ip", 1,
                kU32Max, &out->max_connections_per_ip);
  check.GetUint(t, "append_limit", "imap.append_limit", 1024, 1ull << 40,
                &out->append_limit);
}

void CheckMailauth(Checker& check, const toml::table& t, MailauthSettings* out) {
  check.RejectUnknown(t, "mailauth.",
                      {"verify", "dmarc_reject", "dmarc_quarantine", "spf_fail",
                       "arc_trusted_sealers", "sign", "srs", "srs_max_age_days",
                       "dmarc_reports"});
  check.GetBool(t, "dmarc_reports", "mailauth.dmarc_reports", &out->dmarc_reports);
  check.GetBool(t, "verify", "mailauth.verify", &out->verify);
  check.GetBool(t, "dmarc_reject", "mailauth.dmarc_reject", &out->dmarc_reject);
  check.GetBool(t, "dmarc_quarantine", "mailauth.dmarc_quarantine",
                &out->dmarc_quarantine);
  if (check.GetString(t, "spf_fail", "mailauth.spf_fail", false, &out->spf_fail) &&
      out->spf_fail != "record" && out->spf_fail != "reject") {
    check.Fail(t.get("spf_fail")->source(), "mailauth.spf_fail",
               "\"" + out->spf_fail + "\" is not one of record, reject");
  }
  std::vector<std::pair<std::string, const toml::node*>> items;
  if (check.GetStringArray(t, "arc_trusted_sealers", "mailauth.arc_trusted_sealers",
                           false, &items)) {
    for (size_t i = 0; i < items.size(); ++i) {
      std::string domain = ToLower(items[i].first);
      if (!IsDomainName(domain)) {
        check.Fail(items[i].second->source(),
                   "mailauth.arc_trusted_sealers[" + std::to_string(i) + "]",
                   "\"" + items[i].first + "\" is not a valid domain name");
      } else {
        out->arc_trusted_sealers.push_back(domain);
      }
    }
  }
  check.GetBool(t, "sign", "mailauth.sign", &out->sign);
  check.GetBool(t, "srs", "mailauth.srs", &out->srs);
  check.GetUint(t, "srs_max_age_days", "mailauth.srs_max_age_days", 1, 365,
                &out->srs_max_age_days);
}

void CheckAntispam(Checker& check, const toml::table& t, AntispamSettings* out) {
  check.RejectUnknown(t, "antispam.",
                      {"dnsbl", "dnswl", "greylist", "greylist_delay", "pregreet",
                       "pregreet_wait_ms"});
  for (auto [key, list] : {std::pair{"dnsbl", &out->dnsbl}, std::pair{"dnswl", &out->dnswl}}) {
    std::vector<std::pair<std::string, const toml::node*>> items;
    if (!check.GetStringArray(t, key, std::string("antispam.") + key, false, &items)) continue;
    for (size_t i = 0; i < items.size(); ++i) {
      std::string zone = ToLower(items[i].first);
      if (!IsDomainName(zone)) {
        check.Fail(items[i].second->source(),
                   std::string("antispam.") + key + "[" + std::to_string(i) + "]",
                   "\"" + items[i].first + "\" is not a valid DNS zone name");
      } else {
        list->push_back(zone);
      }
    }
  }
  check.GetBool(t, "greylist", "antispam.greylist", &out->greylist);
  // Up to an hour: the retry window is four hours, and clients retry for
  // a few days (RFC 5321 4.5.4.1).
  check.GetUint(t, "greylist_delay", "antispam.greylist_delay", 1, 3600,
                &out->greylist_delay);
  check.GetBool(t, "pregreet", "antispam.pregreet", &out->pregreet);
  // postscreen waits 6 s; a long wait delays every legitimate client too.
  check.GetUint(t, "pregreet_wait_ms", "antispam.pregreet_wait_ms", 10, 30000,
                &out->pregreet_wait_ms);
}

// "host:port" with an IP address (a name would need DNS for every
// message), "[v6]:port", or "unix:/absolute/path".
void CheckMilters(Checker& check, const toml::table& root, Config* cfg) {
  const toml::node* node = root.get("milter");
  if (node == nullptr) return;
  const auto* array = node->as_array();
  if (array == nullptr) {
    check.Fail(node->source(), "milter", "expected [[milter]] tables");
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = (*array)[i];
    std::string prefix = "milter[" + std::to_string(i) + "]";
    const auto* t = element.as_table();
    if (t == nullptr) {
      check.Fail(element.source(), prefix, "expected a [[milter]] table");
      continue;
    }
    check.RejectUnknown(*t, prefix + ".", {"address", "on_error", "timeout"});
    MilterConfig m;
    if (check.GetString(*t, "address", prefix + ".address", true, &m.address)) {
      std::string reason;
      if (m.address.starts_with("unix:")) {
        m.path = m.address.substr(5);
        if (m.path.empty() || m.path[0] != '/') reason = "a Unix socket path must be absolute";
        else if (m.path.size() > 107) reason = "the socket path is too long";
      } else {
        // The listeners' own "HOST:PORT" / "[IPv6]:PORT" rules.
        Listener parsed;
        reason = ParseListenAddress(m.address, &parsed);
        m.host = parsed.host;
        m.port = parsed.port;
      }
      if (!reason.empty()) check.Fail(t->get("address")->source(), prefix + ".address", reason);
    }
    if (check.GetString(*t, "on_error", prefix + ".on_error", false, &m.on_error) &&
        m.on_error != "tempfail" && m.on_error != "accept" && m.on_error != "reject") {
      check.Fail(t->get("on_error")->source(), prefix + ".on_error",
                 "must be \"tempfail\", \"accept\" or \"reject\"");
    }
    check.GetUint(*t, "timeout", prefix + ".timeout", 1, 3600, &m.timeout);
    cfg->milters.push_back(std::move(m));
  }
}

void CheckRateLimit(Checker& check, const toml::table& t, RateLimitConfig* out) {
  static constexpr std::pair<const char*, uint32_t RateLimitConfig::*> kFields[] = {
      {"client_connections_per_minute", &RateLimitConfig::client_connections_per_minute},
      {"client_messages_per_minute", &RateLimitConfig::client_messages_per_minute},
      {"user_messages_per_hour", &RateLimitConfig::user_messages_per_hour},
      {"user_messages_per_day", &RateLimitConfig::user_messages_per_day},
      {"user_recipients_per_hour", &RateLimitConfig::user_recipients_per_hour},
      {"user_recipients_per_day", &RateLimitConfig::user_recipients_per_day},
      {"sender_domain_messages_per_hour", &RateLimitConfig::sender_domain_messages_per_hour},
  };
  check.RejectUnknown(t, "ratelimit.",
                      {"client_connections_per_minute", "client_messages_per_minute",
                       "user_messages_per_hour", "user_messages_per_day",
                       "user_recipients_per_hour", "user_recipients_per_day",
                       "sender_domain_messages_per_hour"});
  for (const auto& [key, field] : kFields) {
    check.GetUint(t, key, std::string("ratelimit.") + key, 0, kU32Max, &(out->*field));
  }
}

// [delivery], [dns] and [[route]]: outbound delivery (issue 5).
void CheckOutbound(Checker& check, const toml::table& root, Config* cfg) {
  auto tls_ok = [](const std::string& v) {
    return v == "none" || v == "opportunistic" || v == "required";
  };
  if (const toml::table* d = check.GetTable(root, "delivery")) {
    DeliverySettings& out = cfg->delivery;
    check.RejectUnknown(
        *d, "delivery.",
        {"mx_port", "tls", "ca_file", "mta_sts", "mta_sts_port", "tlsrpt",
         "tlsrpt_interval", "retry_first", "retry_max",
         "max_lifetime", "delay_warning", "max_connections",
         "max_connections_per_destination", "max_messages_per_connection",
         "connect_timeout", "greeting_timeout", "command_timeout",
         "data_init_timeout", "data_block_timeout", "final_timeout",
         "direct_local"});
    check.GetUint(*d, "mx_port", "delivery.mx_port", 1, 65535, &out.mx_port);
    if (check.GetString(*d, "tls", "delivery.tls", false, &out.tls) &&
        !tls_ok(out.tls)) {
      check.Fail(d->get("tls")->source(), "delivery.tls",
                 "must be \"none\", \"opportunistic\" or \"required\"");
    }
    check.GetString(*d, "ca_file", "delivery.ca_file", false, &out.ca_file);
    check.GetBool(*d, "mta_sts", "delivery.mta_sts", &out.mta_sts);
    check.GetUint(*d, "mta_sts_port", "delivery.mta_sts_port", 1, 65535,
                  &out.mta_sts_port);
    check.GetBool(*d, "tlsrpt", "delivery.tlsrpt", &out.tlsrpt);
    check.GetBool(*d, "direct_local", "delivery.direct_local", &out.direct_local);
    // delay_warning = 0 turns the warning off.
    check.GetUint(*d, "delay_warning", "delivery.delay_warning", 0, kU32Max,
                  &out.delay_warning);
    struct U32Field {
      const char* key;
      uint32_t* field;
    };
    const U32Field fields[] = {
        {"retry_first", &out.retry_first},
        {"retry_max", &out.retry_max},
        {"max_lifetime", &out.max_lifetime},
        {"max_connections", &out.max_connections},
        {"max_connections_per_destination",
         &out.max_connections_per_destination},
        {"max_messages_per_connection", &out.max_messages_per_connection},
        {"connect_timeout", &out.connect_timeout},
        {"greeting_timeout", &out.greeting_timeout},
        {"command_timeout", &out.command_timeout},
        {"data_init_timeout", &out.data_init_timeout},
        {"data_block_timeout", &out.data_block_timeout},
        {"final_timeout", &out.final_timeout},
        {"tlsrpt_interval", &out.tlsrpt_interval},
    };
    for (const U32Field& f : fields) {
      check.GetUint(*d, f.key, std::string("delivery.") + f.key, 1, kU32Max,
                    f.field);
    }
  }
  if (const toml::table* dns = check.GetTable(root, "dns")) {
    check.RejectUnknown(*dns, "dns.", {"upstream", "trust_anchor"});
    std::vector<std::pair<std::string, const toml::node*>> items;
    if (check.GetStringArray(*dns, "upstream", "dns.upstream", false, &items)) {
      for (size_t i = 0; i < items.size(); ++i) {
        Listener parsed;
        std::string text = items[i].first;
        // A bare address means port 53.
        if (IsIpv4(text)) text += ":53";
        if (IsIpv6(text)) text = "[" + text + "]:53";
        std::string reason = ParseListenAddress(text, &parsed);
        if (!reason.empty()) {
          check.Fail(items[i].second->source(),
                     "dns.upstream[" + std::to_string(i) + "]", reason);
        } else {
          cfg->dns.upstream.push_back(text);
        }
      }
    }
    check.GetString(*dns, "trust_anchor", "dns.trust_anchor", false,
                    &cfg->dns.trust_anchor);
  }
  const toml::node* node = root.get("route");
  if (node == nullptr) return;
  const auto* array = node->as_array();
  if (array == nullptr) {
    check.Fail(node->source(), "route", "expected [[route]] tables");
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = (*array)[i];
    std::string prefix = "route[" + std::to_string(i) + "]";
    const auto* t = element.as_table();
    if (t == nullptr) {
      check.Fail(element.source(), prefix, "expected a [[route]] table");
      continue;
    }
    check.RejectUnknown(*t, prefix + ".",
                        {"domain", "relay", "tls", "auth_user",
                         "auth_password", "ca_file"});
    Route r;
    if (check.GetString(*t, "domain", prefix + ".domain", true, &r.domain)) {
      r.domain = ToLower(r.domain);
      if (r.domain != "*" && !IsDomainName(r.domain)) {
        check.Fail(t->get("domain")->source(), prefix + ".domain",
                   "must be a domain name or \"*\" (every domain)");
      }
    }
    if (check.GetString(*t, "relay", prefix + ".relay", true, &r.relay)) {
      // "host", "host:port", "[v6]:port"; host may be a name.
      std::string host = r.relay;
      std::string port_text = "25";
      if (!host.empty() && host.front() == '[') {
        size_t close = host.find(']');
        port_text = close != std::string::npos && close + 2 < host.size()
                        ? host.substr(close + 2)
                        : "25";
        host = close == std::string::npos ? "" : host.substr(1, close - 1);
      } else if (size_t colon = host.find(':'); colon != std::string::npos) {
        port_text = host.substr(colon + 1);
        host = host.substr(0, colon);
      }
      if ((!IsDomainName(host) && !IsIpv4(host) && !IsIpv6(host)) ||
          !ParsePort(port_text, &r.relay_port)) {
        check.Fail(t->get("relay")->source(), prefix + ".relay",
                   "expected \"host:port\" (e.g. \"smtp.provider.test:587\")");
      }
      r.relay_host = ToLower(host);
    }
    if (check.GetString(*t, "tls", prefix + ".tls", false, &r.tls) &&
        !tls_ok(r.tls)) {
      check.Fail(t->get("tls")->source(), prefix + ".tls",
                 "must be \"none\", \"opportunistic\" or \"required\"");
    }
    check.GetString(*t, "auth_user", prefix + ".auth_user", false,
                    &r.auth_user);
    check.GetString(*t, "auth_password", prefix + ".auth_password", false,
                    &r.auth_password);
    check.GetString(*t, "ca_file", prefix + ".ca_file", false, &r.ca_file);
    if (!r.auth_user.empty() && r.tls == "none") {
      check.Fail(t->get("tls")->source(), prefix + ".tls",
                 "credentials are only sent over TLS; tls must not be \"none\"");
    }
    cfg->routes.push_back(std::move(r));
  }
}

// Debian's toml++ 3.3.0 reaches __builtin_unreachable() when it asks
// whether some characters beyond ASCII are whitespace
// (is_non_ascii_horizontal_whitespace; upstream marzer/tomlplusplus#190
// and #295), which it does while scanning bare values and keys, after a
// line-ending backslash in a multi-line string, and elsewhere: found by
// fuzz/config_fuzzer, inputs in fuzz/regressions/config/. Telling the safe
// places (strings, comments) from the others would mean re-implementing
// toml++'s scanner, and two attempts at that were beaten by the fuzzer
// within seconds. So the configuration is ASCII only (after an optional
// byte order mark); other characters go into basic strings as \uXXXX
// escapes, which toml++ decodes without that check.
std::optional<std::string> FindNonAscii(std::string_view text,
                                        const std::string& name) {
  size_t line = 1, col = 0;
  for (size_t i = text.starts_with("\xEF\xBB\xBF") ? 3 : 0; i < text.size();
       ++i) {
    ++col;
    if (text[i] == '\n') {
      ++line;
      col = 0;
    } else if (static_cast<unsigned char>(text[i]) >= 0x80) {
      return name + ":" + std::to_string(line) + ":" + std::to_string(col) +
             ": only ASCII is supported here; write other characters as "
             "\\uXXXX escapes inside a \"string\"";
    }
  }
  return std::nullopt;
}

}  // namespace

Result<Config> Parse(const std::string& text, const std::string& name) {
  if (auto stray = FindNonAscii(text, name)) return Err(*stray);
  toml::table root;
  try {
    root = toml::parse(std::string_view(text), std::string_view(name));
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    return Err(name + ":" + std::to_string(begin.line) + ":" +
               std::to_string(begin.column) + ": " +
               std::string(e.description()));
  }

  Config cfg;
  cfg.path = name;
  Checker check(name);
  check.RejectUnknown(
      root, "",
      {"hostname", "data_dir", "user", "domains", "postmaster",
       "trusted_networks", "threads",
       "delivery_threads", "shutdown_grace", "log", "listen", "smtp", "tls",
       "auth", "pop3", "imap", "quota", "delivery", "dns", "route", "mailauth",
       "antispam", "ratelimit", "milter", "http", "acme", "trace"});

  if (check.GetString(root, "hostname", "hostname", true, &cfg.hostname) &&
      !IsDomainName(cfg.hostname)) {
    check.Fail(root.get("hostname")->source(), "hostname",
               cfg.hostname.empty()
                   ? "must not be empty"
                   : "\"" + cfg.hostname + "\" is not a valid host name");
  }

  if (check.GetString(root, "data_dir", "data_dir", false, &cfg.data_dir) &&
      cfg.data_dir.empty()) {
    check.Fail(root.get("data_dir")->source(), "data_dir", "must not be empty");
  }

  if (check.GetString(root, "user", "user", false, &cfg.user) &&
      cfg.user.empty()) {
    check.Fail(root.get("user")->source(), "user",
               "must not be empty (remove the key to keep the current user)");
  }

  std::vector<std::pair<std::string, const toml::node*>> items;
  if (check.GetStringArray(root, "domains", "domains", true, &items)) {
    if (items.empty()) {
      check.Fail(root.get("domains")->source(), "domains",
                 "at least one local domain is required");
    }
    for (size_t i = 0; i < items.size(); ++i) {
      std::string domain = ToLower(items[i].first);
      std::string key = "domains[" + std::to_string(i) + "]";
      if (!IsDomainName(domain)) {
        check.Fail(items[i].second->source(), key,
                   "\"" + items[i].first + "\" is not a valid domain name");
      } else if (std::find(cfg.domains.begin(), cfg.domains.end(), domain) !=
                 cfg.domains.end()) {
        check.Fail(items[i].second->source(), key,
                   "\"" + domain + "\" is listed twice");
      } else {
        cfg.domains.push_back(domain);
      }
    }
  }

  // RFC 5321 4.5.1: where postmaster@ (and abuse@, system users) go.
  if (check.GetString(root, "postmaster", "postmaster", false,
                      &cfg.postmaster)) {
    size_t at = cfg.postmaster.rfind('@');
    bool ok = at != std::string::npos && at > 0 &&
              IsDomainName(cfg.postmaster.substr(at + 1)) &&
              std::none_of(cfg.postmaster.begin(), cfg.postmaster.begin() + at,
                           [](char c) { return c <= ' ' || c == '<' || c == '>'; });
    if (!ok) {
      check.Fail(root.get("postmaster")->source(), "postmaster",
                 "\"" + cfg.postmaster +
                     "\" is not an address (local-part@domain)");
    } else {
      cfg.postmaster = cfg.postmaster.substr(0, at + 1) +
                       ToLower(cfg.postmaster.substr(at + 1));
    }
  }

  items.clear();
  if (check.GetStringArray(root, "trusted_networks", "trusted_networks", false,
                           &items)) {
    for (size_t i = 0; i < items.size(); ++i) {
      std::string reason;
      std::string cidr = NormalizeCidr(items[i].first, &reason);
      if (!reason.empty()) {
        check.Fail(items[i].second->source(),
                   "trusted_networks[" + std::to_string(i) + "]", reason);
      } else {
        cfg.trusted_networks.push_back(cidr);
      }
    }
  }

  // threads = 0 means "one per core", so zero is allowed here only.
  check.GetUint(root, "threads", "threads", 0, 1024, &cfg.threads);
  check.GetUint(root, "delivery_threads", "delivery_threads", 1, 1024,
                &cfg.delivery_threads);
  check.GetUint(root, "shutdown_grace", "shutdown_grace", 1, 86400,
                &cfg.shutdown_grace);

  if (const toml::table* log = check.GetTable(root, "log")) {
    check.RejectUnknown(*log, "log.", {"level"});
    std::string level;
    if (check.GetString(*log, "level", "log.level", false, &level)) {
      level = ToLower(level);
      static constexpr std::string_view kLevels[] = {
          "trace", "debug", "info", "warn", "error", "critical", "off"};
      if (std::find(std::begin(kLevels), std::end(kLevels), level) ==
          std::end(kLevels)) {
        check.Fail(log->get("level")->source(), "log.level",
                   "\"" + level +
                       "\" is not one of trace, debug, info, warn, error, "
                       "critical, off");
      } else {
        cfg.log_level = level;
      }
    }
  }

  CheckListeners(check, root, &cfg);
  CheckOutbound(check, root, &cfg);

  if (const toml::table* smtp = check.GetTable(root, "smtp")) {
    CheckSmtp(check, *smtp, &cfg.smtp);
  }

  if (const toml::table* tls = check.GetTable(root, "tls")) {
    CheckTls(check, *tls, &cfg.tls);
  }
  if (const toml::table* auth = check.GetTable(root, "auth")) {
    CheckAuth(check, *auth, &cfg.auth);
  }
  if (const toml::table* mailauth = check.GetTable(root, "mailauth")) {
    CheckMailauth(check, *mailauth, &cfg.mailauth);
  }
  if (const toml::table* antispam = check.GetTable(root, "antispam")) {
    CheckAntispam(check, *antispam, &cfg.antispam);
  }
  if (const toml::table* ratelimit = check.GetTable(root, "ratelimit")) {
    CheckRateLimit(check, *ratelimit, &cfg.ratelimit);
  }
  CheckMilters(check, root, &cfg);
  if (const toml::table* pop3 = check.GetTable(root, "pop3")) {
    CheckPop3(check, *pop3, &cfg.pop3);
  }
  if (const toml::table* imap = check.GetTable(root, "imap")) {
    CheckImap(check, *imap, &cfg.imap);
  }
  if (const toml::table* http = check.GetTable(root, "http")) {
    CheckHttp(check, *http, &cfg.http);
  }
  if (const toml::table* trace = check.GetTable(root, "trace")) {
    CheckTrace(check, *trace, &cfg.trace);
  }
  if (const toml::table* acme = check.GetTable(root, "acme")) {
    CheckAcme(check, *acme, &cfg.acme);
    auto has = [&](std::initializer_list<std::string_view> services) {
      return std::any_of(cfg.listeners.begin(), cfg.listeners.end(), [&](const Listener& l) {
        return std::find(services.begin(), services.end(), l.service) != services.end();
      });
    };
    if (cfg.acme.names.empty()) cfg.acme.names.push_back(ToLower(cfg.hostname));
    if (cfg.acme.challenge.empty()) {
      cfg.acme.challenge = has({"http"}) ? "http-01" : "tls-alpn-01";
    }
    // The CA connects to port 80 (HTTP-01) or 443 (TLS-ALPN-01) of each
    // name; something of ours must answer there.
    if (cfg.acme.challenge == "http-01" && !has({"http"})) {
      check.Fail(acme->source(), "acme.challenge",
                 "http-01 needs an http listener (port 80 in production)");
    }
    if (cfg.acme.challenge == "tls-alpn-01" &&
        !has({"https", "imaps", "pop3s", "submissions"})) {
      check.Fail(acme->source(), "acme.challenge",
                 "tls-alpn-01 needs an implicit-TLS listener (https on port 443 in "
                 "production)");
    }
  }
  if (const toml::table* quota = check.GetTable(root, "quota")) {
    check.RejectUnknown(*quota, "quota.", {"storage"});
    check.GetUint(*quota, "storage", "quota.storage", 0,
                  uint64_t{std::numeric_limits<int64_t>::max()}, &cfg.quota_storage);
  }
  // Implicit TLS cannot work without a certificate (RFC 8314 3.3); ACME
  // brings one (with a self-signed stand-in until it arrives).
  if (cfg.tls.certificates.empty() && !cfg.tls.self_signed && cfg.acme.directory.empty()) {
    const toml::node* listen = root.get("listen");
    const toml::array* array = listen ? listen->as_array() : nullptr;
    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      const std::string& service = cfg.listeners[i].service;
      if ((service != "submissions" && service != "pop3s" && service != "imaps" &&
           service != "https") ||
          array == nullptr) {
        continue;
      }
      check.Fail((*array)[i].source(), "listen[" + std::to_string(i) + "].service",
                 "\"" + service + "\" needs [tls] certificates or self_signed = true");
    }
  }

  if (!check.ok()) return Err(check.Message());
  return cfg;
}

Result<Config> Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Err(path + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Err(path + ": read error: " + std::strerror(errno));
  return Parse(text.str(), path);
}

}  // namespace tern::config
