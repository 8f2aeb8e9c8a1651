// SMTP TLS Reporting (RFC 8460), the pure parts: the `_smtp._tls` TXT
// record, the per-period counts of TLS sessions per policy domain and
// policy, their file form, the JSON report (RFC 8460 4), its gzip and file
// name (5.1) and the report message for a mailto: address (5.3). No I/O
// here: the collector, the timer and the senders are in tlsrpt_send.h.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace tern::delivery::tlsrpt {

// RFC 8460 4.4 "policy": what was applied to a session. `type` is "sts",
// "tlsa" or "no-policy-found"; `strings` the MTA-STS policy lines or the
// TLSA records in presentation form; `mx_hosts` the MTA-STS mx patterns.
struct PolicyKey {
  std::string type;
  std::vector<std::string> strings;
  std::vector<std::string> mx_hosts;
  auto operator<=>(const PolicyKey&) const = default;
};

// RFC 8460 4.4 "failure-details": one kind of failed session.
struct FailureKey {
  std::string result_type;     // RFC 8460 4.3
  std::string sending_ip;      // sending-mta-ip
  std::string mx_host;         // receiving-mx-hostname
  std::string receiving_ip;    // receiving-ip
  auto operator<=>(const FailureKey&) const = default;
};

struct Counts {
  uint64_t successful = 0;
  uint64_t failed = 0;
  std::map<FailureKey, uint64_t> failures;
};

// One reporting period (a UTC day by default): [start, end) in Unix
// seconds, counts per policy domain and policy.
struct Period {
  int64_t start = 0;
  int64_t end = 0;
  bool sent = false;  // reports were produced for it
  std::map<std::string, std::map<PolicyKey, Counts>> domains;
};

// One TLS session's outcome, as outbound delivery tells it.
struct Outcome {
  std::string domain;  // the policy domain (the recipient domain)
  PolicyKey policy;
  bool ok = false;
  FailureKey failure;  // when !ok
};

void Add(Period* p, const Outcome& o);

// The file form of a period (JSON, our own layout) and back.
std::string FormatPeriod(const Period& p);
Result<Period> ParsePeriod(std::string_view text);

// RFC 8460 3: the reporting URIs of the one TXT record at _smtp._tls.DOMAIN
// that starts with "v=TLSRPTv1"; an error when there is none, more than
// one, or a syntax error (then the domain does not take reports). Only
// mailto: and https: URIs are returned; others are skipped (3: "other
// URI schemes MAY be ignored" is our reading of the extension point).
Result<std::vector<std::string>> ParseTxt(const std::vector<std::string>& records);

// A TLSA record in presentation form (RFC 6698 2.2), for policy-string.
std::string TlsaText(int usage, int selector, int mtype, std::string_view data);

// RFC 3339 date-time in UTC, "2026-12-06T00:00:00Z".
std::string DateTime(int64_t unix_seconds);

struct ReportMeta {
  std::string organization;  // organization-name
  std::string contact;       // contact-info
  std::string submitter;     // our host name (5.1, 5.3)
};

// RFC 8460 4.3 / 4.4: the report on `domain` for period `p`.
std::string ReportId(const Period& p, const std::string& domain,
                     const std::string& submitter);
nlohmann::json BuildReport(const Period& p, const std::string& domain,
                           const ReportMeta& meta);

// gzip (RFC 1952) of `data`, as RFC 8460 5 asks for the report.
std::string Gzip(std::string_view data);

// RFC 8460 5.1: submitter!policy-domain!begin!end!unique-id.json.gz
std::string FileName(const Period& p, const std::string& domain,
                     const std::string& submitter);

// RFC 8460 5.3: the whole message (CRLF lines) carrying `gz` to `to`.
std::string BuildMail(const Period& p, const std::string& domain,
                      const ReportMeta& meta, const std::string& from,
                      const std::string& to, const std::string& gz,
                      int64_t now);


}  // namespace tern::delivery::tlsrpt
