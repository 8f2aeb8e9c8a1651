// Route selection and MX ordering for outbound delivery.
#include "delivery/routing.h"

#include <arpa/inet.h>

#include <algorithm>

#include "common/strings.h"

namespace tern::delivery {

const RouteConfig* FindRoute(const std::vector<RouteConfig>& routes,
                             const std::string& domain) {
  const RouteConfig* fallback = nullptr;
  for (const RouteConfig& r : routes) {
    if (r.domain == domain) return &r;
    if (r.domain == "*") fallback = &r;
  }
  return fallback;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

MxPlan PlanMx(const dns::Answer& answer, const std::string& domain,
              std::mt19937& rng) {
  MxPlan plan;
  if (answer.mx.empty()) {
    // RFC 5321 5.1: no MX records: the domain is its own mail host.
    plan.implicit = true;
    plan.hosts.push_back(domain);
    return plan;
  }
  if (answer.mx.size() == 1 && answer.mx[0].exchange.empty()) {
    plan.kind = MxPlan::Kind::kNullMx;
    return plan;
  }
  std::vector<dns::MxRecord> records = answer.mx;
  std::shuffle(records.begin(), records.end(), rng);
  std::stable_sort(records.begin(), records.end(),
                   [](const dns::MxRecord& a, const dns::MxRecord& b) {
                     return a.preference < b.preference;
                   });
  std::vector<std::string> skipped;
  for (const dns::MxRecord& r : records) {
    // RFC 5321 5.1: MX names are host names; an address in their place
    // (or a stray "." among others, RFC 7505 3) is unusable.
    if (r.exchange.empty() || IsIpLiteral(r.exchange)) {
      skipped.push_back(r.exchange.empty() ? "." : r.exchange);
      continue;
    }
    if (std::find(plan.hosts.begin(), plan.hosts.end(), r.exchange) ==
        plan.hosts.end()) {
      plan.hosts.push_back(r.exchange);
    }
  }
  if (plan.hosts.empty()) {
    // RFC 5321 5.1: "If MX records are present, but none of them are
    // usable, ... this situation MUST be reported as an error."
    plan.kind = MxPlan::Kind::kUnusable;
    std::string list;
    for (const std::string& s : skipped) list += (list.empty() ? "" : ", ") + s;
    plan.error = "the MX records of " + domain +
                 " name no usable host (" + list + ")";
  }
  return plan;
}

bool SameHostName(std::string_view a, std::string_view b) {
  if (!a.empty() && a.back() == '.') a.remove_suffix(1);
  if (!b.empty() && b.back() == '.') b.remove_suffix(1);
  return !a.empty() && IEquals(a, b);
}

bool DropSelfAndWorseMx(std::vector<dns::MxRecord>& records,
                        std::string_view self) {
  bool found = false;
  uint16_t ours = 0;
  for (const dns::MxRecord& r : records) {
    if (SameHostName(r.exchange, self) && (!found || r.preference < ours)) {
      ours = r.preference;
      found = true;
    }
  }
  if (!found) return false;
  std::erase_if(records, [&](const dns::MxRecord& r) {
    return r.preference >= ours;
  });
  return true;
}

std::string DomainOf(const std::string& address) {
  size_t at = address.rfind('@');
  if (at == std::string::npos) return "";
  return ToLower(address.substr(at + 1));
}

bool ParseHostPort(const std::string& text, uint16_t default_port,
                   std::string* host, uint16_t* port) {
  std::string h = text;
  std::string p;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) return false;
    h = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return false;
      p = text.substr(close + 2);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  } else if (text.find(':') != std::string::npos) {
    return false;  // a bare IPv6 address needs brackets
  }
  if (h.empty()) return false;
  uint32_t n = default_port;
  if (!p.empty()) {
    if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
      return false;
    n = static_cast<uint32_t>(std::stoul(p));
    if (n == 0 || n > 65535) return false;
  }
  *host = ToLower(h);
  *port = static_cast<uint16_t>(n);
  return true;
}

}  // namespace tern::delivery
