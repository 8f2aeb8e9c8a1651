// SPF, RFC 7208: may this client IP send mail for that domain? The record
// parser and the macro expander are pure functions (fuzzed by
// fuzz/spf_fuzzer.cc); CheckHost() is check_host() over dns::Resolver.
#pragma once

#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/cidr.h"
#include "common/result.h"
#include "dns/resolver.h"

namespace tern::mailauth {

// RFC 7208 2.6.
enum class SpfResult {
  kNone,
  kNeutral,
  kPass,
  kFail,
  kSoftFail,
  kTempError,
  kPermError,
};

// "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"
// (RFC 7208 8, the words Received-SPF uses).
const char* SpfResultName(SpfResult result);

// ---------------------------------------------------------------- macros

// Where a macro-string appears decides which macro letters it may use
// (RFC 7208 7.1: c, r and t only in explanations) and whether it may hold
// spaces (only an explain-string may).
enum class MacroUse {
  kDomainSpec,     // targets of mechanisms, redirect= and exp=
  kModifierValue,  // the value of an unknown modifier: any letter
  kExplanation,    // the TXT text exp= points at: any letter, spaces
};

// One piece of a parsed macro-string (RFC 7208 7.1).
struct MacroPiece {
  enum class Kind {
    kLiteral,  // text as written
    kEscape,   // "%%", "%_" or "%-": `text` holds what it stands for
    kMacro,    // "%{...}"
  };
  Kind kind = Kind::kLiteral;
  std::string text;         // kLiteral, kEscape
  char letter = 0;          // kMacro: lower case s l o d i p h c r t v
  bool url_escape = false;  // kMacro written in upper case (RFC 7208 7.3)
  int keep = 0;             // right-hand parts to keep; 0 = all
  bool reverse = false;
  std::string delimiters;  // as written; empty means "."

  bool operator==(const MacroPiece&) const = default;
};

using MacroString = std::vector<MacroPiece>;

// Parses a macro-string; the error says what is wrong and where.
Result<MacroString> ParseMacroString(std::string_view text, MacroUse use);

// Parses a domain-spec: a non-empty macro-string that ends in a macro or
// in "." and a toplabel (RFC 7208 7.1 domain-end).
Result<MacroString> ParseDomainSpec(std::string_view text);

// The text that parses back to `macros`.
std::string FormatMacroString(const MacroString& macros);

bool UsesMacroLetter(const MacroString& macros, char letter);

// The values macros expand to (RFC 7208 7.3).
struct MacroValues {
  IpOctets ip{};  // IPv4 in the IPv4-mapped form
  bool ipv4 = true;
  std::string sender;     // %{s}: "local@domain"; %{l} and %{o} from it
  std::string domain;     // %{d}: the domain being checked
  std::string helo;       // %{h}
  std::string validated;  // %{p}; empty: "unknown"
  std::string receiver;   // %{r}; empty: "unknown"
  int64_t now = 0;        // %{t}
};

// Expands `macros`. An error only when the result would exceed
// kMaxExpansion octets.
inline constexpr size_t kMaxExpansion = 8192;
Result<std::string> ExpandMacros(const MacroString& macros,
                                 const MacroValues& values);

// ---------------------------------------------------------------- records

enum class SpfQualifier { kPass, kFail, kSoftFail, kNeutral };

enum class SpfMechanismType {
  kAll,
  kInclude,
  kA,
  kMx,
  kPtr,
  kIp4,
  kIp6,
  kExists
};

struct SpfMechanism {
  SpfQualifier qualifier = SpfQualifier::kPass;
  SpfMechanismType type = SpfMechanismType::kAll;
  // include, exists: always set; a, mx, ptr: set when written with ":"
  // (otherwise the current domain).
  std::optional<MacroString> target;
  IpOctets network{};  // ip4 (IPv4-mapped form), ip6
  int prefix4 = 32;    // ip4, a, mx
  int prefix6 = 128;   // ip6, a, mx

  bool operator==(const SpfMechanism&) const = default;
};

struct SpfModifier {
  std::string name;  // as written
  MacroString value;
  bool operator==(const SpfModifier&) const = default;
};

struct SpfRecord {
  std::vector<SpfMechanism> mechanisms;  // in record order
  std::optional<MacroString> redirect;   // RFC 7208 6.1
  std::optional<MacroString> exp;        // RFC 7208 6.2
  std::vector<SpfModifier> unknown;      // RFC 7208 6: checked, then ignored

  bool operator==(const SpfRecord&) const = default;
};

// RFC 7208 4.5: a TXT record is an SPF record when it starts with "v=spf1"
// (any case) followed by a space or its end.
bool IsSpfRecord(std::string_view txt);

// Parses a whole SPF record (RFC 7208 4.6, 5, 6, 7.1, 12). Any syntax error
// anywhere is a permerror (4.6), whose reason the error carries.
Result<SpfRecord> ParseSpfRecord(std::string_view text);

// Canonical text of a record: mechanisms in order, then redirect=, exp= and
// the unknown modifiers. ParseSpfRecord() gives the same record back.
std::string FormatSpfRecord(const SpfRecord& record);
std::string FormatMechanism(const SpfMechanism& mechanism);

// ---------------------------------------------------------------- check_host

struct SpfRequest {
  // The SMTP client: "192.0.2.1", "2001:db8::1"; an IPv4-mapped IPv6
  // address counts as IPv4 (RFC 7208 5, 5.6).
  std::string ip;
  std::string helo;
  // The MAIL FROM address without angle brackets. Empty (the null
  // reverse-path): the HELO identity is checked (RFC 7208 2.3, 2.4).
  std::string mail_from;
  // This host's name for %{r} (RFC 7208 7.3); empty: "unknown".
  std::string receiver;
  // Seconds since the epoch for %{t}; 0: the clock.
  int64_t now = 0;
  // RFC 7208 4.6.4: a bound on the whole evaluation (at least 20 s);
  // beyond it the result is temperror.
  std::chrono::milliseconds time_limit = std::chrono::seconds(20);
};

struct SpfOutcome {
  SpfResult result = SpfResult::kNone;
  std::string identity;  // "mailfrom" or "helo"
  std::string domain;    // the domain whose policy was checked
  // For fail, the domain's own explanation (exp=, RFC 6.2), US-ASCII;
  // empty when it gave none or it could not be used.
  std::string explanation;
  // What decided the result, for logs and diagnostics: the matching
  // mechanism, or the reason of an error. Printable ASCII.
  std::string reason;
  int dns_terms = 0;  // RFC 7208 4.6.4 counters, for diagnostics
  int void_lookups = 0;
};

// RFC 7208 4.6.4 limits.
inline constexpr int kMaxDnsTerms = 10;
inline constexpr int kMaxVoidLookups = 2;
inline constexpr int kMaxNamesPerLookup = 10;

// check_host() (RFC 7208 4) for the request's MAIL FROM, or its HELO name
// when MAIL FROM is empty. Never throws; DNS through `resolver`, which
// must outlive the coroutine.
asio::awaitable<SpfOutcome> CheckHost(dns::Resolver& resolver,
                                      SpfRequest request);

}  // namespace tern::mailauth
