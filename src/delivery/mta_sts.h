// MTA-STS (RFC 8461), the pure parts: the `_mta-sts` TXT record, the
// policy file served over HTTPS, MX pattern matching, and the cache rules
// that decide between a cached policy and a new fetch. No I/O here: the
// fetching and the cache files are in mta_sts_fetch.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace tern::delivery::sts {

// RFC 8461 3.2: max_age is at most 31557600 seconds (about a year).
constexpr uint32_t kMaxAge = 31557600;
// A policy body larger than this is refused: our own bound on what a
// stranger's server can make us read, far above any real policy.
constexpr size_t kMaxPolicyBytes = 64 * 1024;
// Patterns kept from one policy; more are ignored.
constexpr size_t kMaxPatterns = 100;

enum class Mode { kNone, kTesting, kEnforce };
const char* ModeName(Mode m);

struct Policy {
  Mode mode = Mode::kNone;
  std::vector<std::string> mx;  // patterns, lower case, no trailing dot
  uint32_t max_age = 0;         // seconds
  bool operator==(const Policy&) const = default;
};

// RFC 8461 3.1: the policy id of the one TXT record at _mta-sts.DOMAIN
// that starts with "v=STSv1;", or an error (no such record, more than one,
// or a syntax error): then the domain has no MTA-STS policy to discover.
// `records` are the TXT answer's records, character-strings joined.
Result<std::string> ParseTxt(const std::vector<std::string>& records);

// RFC 8461 3.2: the policy file (`key: value` lines ending in CRLF or LF).
Result<Policy> ParsePolicy(std::string_view text);

// The policy in the policy-file form again (for the cache file and the
// fuzzer's round trip).
std::string FormatPolicy(const Policy& p);

// RFC 8461 4.1: does `host` (an MX host name) match `pattern`? A pattern
// "*.example.com" matches exactly one more label on the left.
bool MxMatches(std::string_view pattern, std::string_view host);
bool MxAllowed(const Policy& p, std::string_view host);

// A policy as cached: the policy, the TXT id it was fetched under, and when.
struct Cached {
  Policy policy;
  std::string id;
  int64_t fetched = 0;  // Unix seconds
  bool Expired(int64_t now) const {
    return now >= fetched + static_cast<int64_t>(policy.max_age);
  }
  bool operator==(const Cached&) const = default;
};

// The cache file: "id", "fetched" lines, a blank line, then the policy.
std::string FormatCached(const Cached& c);
Result<Cached> ParseCached(std::string_view text);

// What to do for a destination, from the TXT lookup and the cache (RFC
// 8461 3.3 and 5.1).
enum class Action {
  kNoPolicy,   // no usable policy: deliver as without MTA-STS
  kUseCached,  // the cached policy holds
  kFetch,      // fetch; if that fails, use the cached policy when unexpired
};

struct TxtResult {
  // The id when exactly one valid record was found.
  std::optional<std::string> id;
  // The lookup failed temporarily (SERVFAIL, timeout): unlike a missing
  // record this says nothing about the domain.
  bool temp_failure = false;
};

// `refresh_after`: a cached policy older than this is fetched again even
// when its id still matches (RFC 8461 3.3 asks for refreshes before
// expiry; the fetch keeps the cached one on failure).
Action Decide(const Cached* cached, const TxtResult& txt, int64_t now,
              int64_t refresh_after);

// Whether `domain` is a name we can use in a file name and a URL: LDH
// labels separated by dots, nothing else.
bool SafeDomain(std::string_view domain);

}  // namespace tern::delivery::sts
