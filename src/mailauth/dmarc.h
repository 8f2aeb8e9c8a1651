// DMARC (RFC 7489): the policy record parser, organizational domains from
// the Public Suffix List, identifier alignment, policy discovery in DNS and
// the verdict for one message. SPF and DKIM results come in as plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include "common/result.h"

namespace tern::dns {
class Resolver;  // dns/resolver.h
}  // namespace tern::dns

namespace tern::mailauth {

// RFC 7489 6.3 "p" and "sp".
enum class DmarcPolicy { kNone, kQuarantine, kReject };

// RFC 7489 3.1 "adkim" and "aspf".
enum class Alignment { kRelaxed, kStrict };

// RFC 7489 11.2 (the Authentication-Results words).
enum class DmarcResult { kNone, kPass, kFail, kTempError, kPermError };

const char* DmarcPolicyName(DmarcPolicy p);   // "none", "quarantine", "reject"
const char* DmarcResultName(DmarcResult r);   // "none", "pass", ...

// A reporting address of "rua"/"ruf" (RFC 7489 6.4 dmarc-uri): the URI
// and the size limit after "!", in octets (0: none given).
struct DmarcUri {
  std::string uri;
  uint64_t max_size = 0;
};

// RFC 7489 6.3 "fo": which failures ask for a forensic report.
struct FailureOptions {
  bool all_failed = true;   // "0": every mechanism failed to align
  bool any_failed = false;  // "1": any mechanism failed to align
  bool dkim = false;        // "d": a DKIM signature failed to verify
  bool spf = false;         // "s": SPF failed
};

// One parsed DMARC record, with the defaults of RFC 7489 6.3 for every tag
// that is absent or invalid.
struct DmarcRecord {
  // False when neither a valid "p" (and valid or absent "sp") nor the
  // 6.6.3 step 6.1 fallback gives a policy: the record is then a DMARC
  // record that cannot be acted on (reported as permerror).
  bool has_policy = false;
  // 6.6.3 step 6.1: "p" or "sp" was missing or invalid, but a valid "rua"
  // was there, so the record is read as "p=none".
  bool policy_from_rua_fallback = false;
  DmarcPolicy p = DmarcPolicy::kNone;
  std::optional<DmarcPolicy> sp;  // absent: subdomains get `p`
  int pct = 100;                  // 0..100
  Alignment adkim = Alignment::kRelaxed;
  Alignment aspf = Alignment::kRelaxed;
  std::vector<DmarcUri> rua;
  std::vector<DmarcUri> ruf;
  FailureOptions fo;
  std::vector<std::string> rf = {"afrf"};
  uint32_t ri = 86400;
  // Tag-level syntax errors that were replaced by defaults or ignored
  // (6.3: "discarded in favor of default values"), for logs.
  std::vector<std::string> problems;
};

// Parses the text of one TXT record. nullopt when it is not a DMARC
// record at all: "v=DMARC1" is not its first tag (6.6.3 steps 2 and 4 say
// such records are discarded, not errors). Pure and total: any input.
std::optional<DmarcRecord> ParseDmarcRecord(std::string_view txt);

// RFC 7489 3.2 through the Public Suffix List, ICANN and private sections
// both (dmarc.cc says why). A domain that is itself a public suffix is its
// own organizational domain. Input case and a trailing dot do not matter;
// the result is lower case.
std::string OrganizationalDomain(std::string_view domain);

// Whether `domain` is a name DMARC can look up: ASCII labels of letters,
// digits, '-' and '_', 1..63 octets each, 253 in all, no trailing dot.
bool IsDnsDomainName(std::string_view domain);

// RFC 7489 3.1.1 / 3.1.2: whether an authenticated domain aligns with the
// RFC5322.From domain. Strict: equal names; relaxed: equal organizational
// domains.
bool Aligned(std::string_view authenticated_domain,
             std::string_view from_domain, Alignment mode);

// The RFC5322.From domain of a message, from its header section (the
// octets before the empty line; CRLF or LF line ends). RFC 7489 6.6.1:
// exactly one From field holding exactly one mailbox with a DNS domain;
// anything else (none, several, a group, an address literal, a syntax
// error) is an error, and what to do with such a message is the caller's
// choice (RFC 7489 6.6.1 says they are typically rejected).
Result<std::string> FromDomainOfHeader(std::string_view header_section);

// One DKIM verification as the DKIM verifier reported it.
struct DkimVerdict {
  std::string result;  // RFC 8601 word: "pass", "fail", "neutral", ...
  std::string domain;  // the signature's d=
};

struct DmarcInput {
  std::string from_domain;  // the RFC5322.From domain
  // RFC 7489 4.1: SPF's verdict for the MAIL FROM identity, or the HELO
  // identity when the reverse-path is null (RFC 7208 2.4), and the domain
  // it was checked for.
  std::string spf_result;   // "pass", "fail", ..., or "" when not checked
  std::string spf_domain;   // a domain, or an address (its domain is used)
  std::vector<DkimVerdict> dkim;
};

// What policy discovery (RFC 7489 6.6.3) found.
struct DmarcLookup {
  enum class Status {
    kFound,      // one DMARC record; `record` set
    kNone,       // no record, or several (6.6.3 step 5)
    kTempError,  // a DNS query failed temporarily
  };
  Status status = Status::kNone;
  std::optional<DmarcRecord> record;
  std::string record_domain;  // where the record was found
  std::string detail;         // why kNone or kTempError, for logs
};

// `roll` returns a uniformly random integer in [0, 100) for "pct"
// sampling (RFC 7489 6.6.4); empty uses a random generator.
using PercentRoll = std::function<int()>;

struct DmarcOutcome {
  DmarcResult result = DmarcResult::kNone;
  // What to do with the message: kNone unless the result is kFail; after
  // "pct" sampling.
  DmarcPolicy policy = DmarcPolicy::kNone;
  // The record's policy for this From domain ("p" or "sp"), before "pct".
  DmarcPolicy requested = DmarcPolicy::kNone;
  // The message failed but was not picked by "pct", so `policy` is one
  // step below `requested` (6.6.4).
  bool sampled_out = false;
  std::string from_domain;    // lower case
  std::string org_domain;     // of the From domain
  std::string record_domain;  // where the record was found, if any
  std::optional<DmarcRecord> record;
  bool spf_aligned = false;   // SPF passed for an aligned domain
  bool dkim_aligned = false;  // some DKIM pass for an aligned d=
  std::string dkim_domain;    // the first aligned passing d=
  std::string reason;         // why none/temperror/permerror, for logs
};

// The verdict given a finished lookup: alignment, result, policy
// (p or sp per 6.6.3 and 6.3), pct. Pure apart from `roll`.
DmarcOutcome EvaluateDmarc(const DmarcInput& input, const DmarcLookup& lookup,
                           const PercentRoll& roll = {});

// RFC 7489 6.6.3: `_dmarc.<from domain>` TXT, else
// `_dmarc.<organizational domain>`.
asio::awaitable<DmarcLookup> DiscoverDmarc(dns::Resolver& resolver,
                                           std::string from_domain);

// Discovery then evaluation. A From domain that is not a DNS name gives
// permerror without any query.
asio::awaitable<DmarcOutcome> CheckDmarc(dns::Resolver& resolver,
                                         DmarcInput input,
                                         PercentRoll roll = {});

}  // namespace tern::mailauth
