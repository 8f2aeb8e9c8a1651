// DMARC without I/O: the record parser (RFC 7489 6.3, 6.4), organizational
// domains (3.2), alignment (3.1) and the verdict (6.6). Policy discovery
// in DNS is in dmarc_discovery.cc, the From domain in dmarc_from.cc.
#include "mailauth/dmarc.h"

#include <libpsl.h>

#include <memory>
#include <random>
#include <set>

#include "common/strings.h"

namespace tern::mailauth {

const char* DmarcPolicyName(DmarcPolicy p) {
  if (p == DmarcPolicy::kQuarantine) return "quarantine";
  if (p == DmarcPolicy::kReject) return "reject";
  return "none";
}

const char* DmarcResultName(DmarcResult r) {
  if (r == DmarcResult::kPass) return "pass";
  if (r == DmarcResult::kFail) return "fail";
  if (r == DmarcResult::kTempError) return "temperror";
  if (r == DmarcResult::kPermError) return "permerror";
  return "none";
}

namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// Decimal digits into a uint64_t; false on overflow past `limit`.
bool ParseNumber(std::string_view s, uint64_t limit, uint64_t* out) {
  if (!AllDigits(s)) return false;
  uint64_t v = 0;
  for (char c : s) {
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > limit) return false;
  }
  *out = v;
  return true;
}

std::optional<DmarcPolicy> ParsePolicy(std::string_view v) {
  // RFC 5234 2.3: quoted ABNF strings match in any case.
  if (IEquals(v, "none")) return DmarcPolicy::kNone;
  if (IEquals(v, "quarantine")) return DmarcPolicy::kQuarantine;
  if (IEquals(v, "reject")) return DmarcPolicy::kReject;
  return std::nullopt;
}

std::optional<Alignment> ParseAlignment(std::string_view v) {
  if (IEquals(v, "r")) return Alignment::kRelaxed;
  if (IEquals(v, "s")) return Alignment::kStrict;
  return std::nullopt;
}

// RFC 7489 6.4 dmarc-uri: a URI (RFC 3986 3.1 scheme ":" ...) and an
// optional "!" size with a k/m/g/t unit in powers of 1024. 6.2 has commas
// and "!" inside the URI percent-encoded, so the first "!" starts the
// size. The URI itself is only checked for a scheme and printable ASCII:
// what is done with it (mailto: only, 7.1 verification) is the reporter's
// business.
std::optional<DmarcUri> ParseUri(std::string_view text) {
  DmarcUri out;
  std::string_view uri = text;
  if (size_t bang = text.find('!'); bang != std::string_view::npos) {
    std::string_view size = text.substr(bang + 1);
    uint64_t unit = 1;
    if (!size.empty() && !IsDigit(size.back())) {
      char u = static_cast<char>(size.back() | 0x20);
      if (u == 'k') unit = uint64_t{1} << 10;
      else if (u == 'm') unit = uint64_t{1} << 20;
      else if (u == 'g') unit = uint64_t{1} << 30;
      else if (u == 't') unit = uint64_t{1} << 40;
      else return std::nullopt;
      size.remove_suffix(1);
    }
    uint64_t n = 0;
    // The bound keeps n * unit within 64 bits.
    if (!ParseNumber(size, (uint64_t{1} << 62) / unit, &n)) return std::nullopt;
    out.max_size = n * unit;
    uri = text.substr(0, bang);
  }
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == uri.size())
    return std::nullopt;
  if (!IsAlpha(uri[0])) return std::nullopt;
  for (size_t i = 1; i < colon; ++i) {
    char c = uri[i];
    if (!IsAlpha(c) && !IsDigit(c) && c != '+' && c != '-' && c != '.')
      return std::nullopt;
  }
  for (char c : uri) {
    if (c <= ' ' || c >= 0x7f) return std::nullopt;
  }
  out.uri = std::string(uri);
  return out;
}

// RFC 5321 4.1.2 Ldh-str as used by "rf" (RFC 7489 6.4 Keyword).
bool IsKeyword(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '-') return false;
  }
  return s.back() != '-';
}

// RFC 6376 3.2 tag-name, which DMARC records share (RFC 7489 6.3).
bool IsTagName(std::string_view s) {
  if (s.empty() || !IsAlpha(s[0])) return false;
  for (char c : s) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '_') return false;
  }
  return true;
}

// Splits at `sep` and trims WSP around each element (6.4 allows *WSP
// around "," and ":").
std::vector<std::string_view> SplitTrim(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    size_t pos = s.find(sep);
    out.push_back(Trim(s.substr(0, pos)));
    if (pos == std::string_view::npos) return out;
    s.remove_prefix(pos + 1);
  }
}

void ParseUriList(std::string_view tag, std::string_view value,
                  std::vector<DmarcUri>* out,
                  std::vector<std::string>* problems) {
  for (std::string_view item : SplitTrim(value, ',')) {
    if (auto uri = ParseUri(item)) {
      out->push_back(std::move(*uri));
    } else {
      problems->push_back(std::string(tag) + ": invalid URI \"" +
                          std::string(item) + "\" ignored");
    }
  }
}

}  // namespace

std::optional<DmarcRecord> ParseDmarcRecord(std::string_view txt) {
  std::vector<std::string_view> specs = SplitTrim(txt, ';');
  // RFC 7489 6.3 "v": the first tag, value exactly "DMARC1" (6.4 spells
  // it with %x, so case matters); otherwise the record is not DMARC's.
  {
    std::string_view first = specs[0];
    size_t eq = first.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    if (!IEquals(Trim(first.substr(0, eq)), "v")) return std::nullopt;
    if (Trim(first.substr(eq + 1)) != "DMARC1") return std::nullopt;
  }

  DmarcRecord r;
  std::set<std::string> seen = {"v"};
  std::optional<DmarcPolicy> p;
  bool sp_invalid = false;
  for (size_t i = 1; i < specs.size(); ++i) {
    std::string_view spec = specs[i];
    if (spec.empty()) continue;  // ";;" or the optional final ";"
    size_t eq = spec.find('=');
    if (eq == std::string_view::npos) {
      r.problems.push_back("\"" + std::string(spec) + "\" has no '=': ignored");
      continue;
    }
    std::string_view raw_name = Trim(spec.substr(0, eq));
    std::string_view value = Trim(spec.substr(eq + 1));
    if (!IsTagName(raw_name)) {
      r.problems.push_back("invalid tag name \"" + std::string(raw_name) +
                           "\" ignored");
      continue;
    }
    // 6.4 writes the tag names as quoted ABNF strings: any case.
    std::string name = ToLower(raw_name);
    if (!seen.insert(name).second) {
      // The RFC is silent on repeats; the first one wins, as with "v"
      // and "p" whose position it fixes.
      r.problems.push_back("repeated tag " + name + " ignored");
      continue;
    }
    if (name == "p") {
      // 6.3 wants p right after v; a p further on is still taken, as
      // common receivers do, rather than dropping the owner's policy.
      p = ParsePolicy(value);
      if (!p) r.problems.push_back("p: invalid policy \"" + std::string(value) + "\"");
    } else if (name == "sp") {
      r.sp = ParsePolicy(value);
      if (!r.sp) {
        sp_invalid = true;
        r.problems.push_back("sp: invalid policy \"" + std::string(value) + "\"");
      }
    } else if (name == "pct") {
      // 6.4 dmarc-percent: 1*3DIGIT, and 6.3 bounds it to 0..100.
      uint64_t n = 0;
      if (value.size() <= 3 && ParseNumber(value, 100, &n)) {
        r.pct = static_cast<int>(n);
      } else {
        r.problems.push_back("pct: invalid \"" + std::string(value) + "\", 100 used");
      }
    } else if (name == "adkim" || name == "aspf") {
      auto a = ParseAlignment(value);
      if (!a) {
        r.problems.push_back(name + ": invalid \"" + std::string(value) +
                             "\", relaxed used");
      } else if (name == "adkim") {
        r.adkim = *a;
      } else {
        r.aspf = *a;
      }
    } else if (name == "rua") {
      ParseUriList(name, value, &r.rua, &r.problems);
    } else if (name == "ruf") {
      ParseUriList(name, value, &r.ruf, &r.problems);
    } else if (name == "fo") {
      FailureOptions fo{.all_failed = false};
      bool ok = true;
      for (std::string_view item : SplitTrim(value, ':')) {
        if (item == "0") fo.all_failed = true;
        else if (item == "1") fo.any_failed = true;
        else if (IEquals(item, "d")) fo.dkim = true;
        else if (IEquals(item, "s")) fo.spf = true;
        else ok = false;
      }
      if (ok) {
        r.fo = fo;
      } else {
        r.problems.push_back("fo: invalid \"" + std::string(value) + "\", 0 used");
      }
    } else if (name == "rf") {
      std::vector<std::string> rf;
      bool ok = true;
      for (std::string_view item : SplitTrim(value, ':')) {
        if (!IsKeyword(item)) ok = false;
        rf.push_back(ToLower(item));
      }
      if (ok) {
        r.rf = std::move(rf);
      } else {
        r.problems.push_back("rf: invalid \"" + std::string(value) + "\", afrf used");
      }
    } else if (name == "ri") {
      uint64_t n = 0;
      if (ParseNumber(value, UINT32_MAX, &n)) {
        r.ri = static_cast<uint32_t>(n);
      } else {
        r.problems.push_back("ri: invalid \"" + std::string(value) + "\", 86400 used");
      }
    }
    // 6.3: "Unknown tags MUST be ignored."
  }

  if (p && !sp_invalid) {
    r.has_policy = true;
    r.p = *p;
  } else if (!r.rua.empty()) {
    // 6.6.3 step 6.1: act as if "v=DMARC1; p=none" had been published, so
    // that the domain still gets its aggregate reports.
    r.has_policy = true;
    r.policy_from_rua_fallback = true;
    r.p = DmarcPolicy::kNone;
    r.sp.reset();
  }
  return r;
}

namespace {

struct PslFree {
  void operator()(psl_ctx_t* p) const { psl_free(p); }
};

// The list is loaded once and only read afterwards, which libpsl allows
// from any thread.
//
// psl_latest(NULL) takes the newer of the list compiled into libpsl and
// the file of Debian's `publicsuffix` package (psl_builtin_filename()):
// the file follows the list's updates through stable updates without a
// rebuild of libpsl, and when it is absent (it is only a Recommends of
// libpsl5) the built-in copy still works.
const psl_ctx_t* PublicSuffixes() {
  static const std::unique_ptr<psl_ctx_t, PslFree> latest(psl_latest(nullptr));
  return latest ? latest.get() : psl_builtin();
}

std::string Normalize(std::string_view domain) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return ToLower(domain);
}

}  // namespace

// Both sections of the list count. The private section names suffixes
// under which unrelated parties register their own names (github.io,
// s3.amazonaws.com, blogspot.com): with ICANN entries only, every
// customer of such a host would share one organizational domain, so one
// tenant's DKIM signature would align, in relaxed mode, with another
// tenant's From domain, and a policy published at the host's name would
// govern them all. Counting private entries errs the other way (two
// names of one owner under such a suffix do not align), which fails
// closed.
std::string OrganizationalDomain(std::string_view domain) {
  std::string d = Normalize(domain);
  const psl_ctx_t* psl = PublicSuffixes();
  if (psl == nullptr || d.empty()) return d;
  // 3.2 step 4: the longest matching public suffix and one more label. A
  // public suffix has no label to add: it stands for itself.
  const char* registrable = psl_registrable_domain(psl, d.c_str());
  if (registrable == nullptr) return d;
  return std::string(registrable);
}

// RFC 7489 has no U-labels without IDNA; '_' is allowed as DNS allows it.
bool IsDnsDomainName(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  size_t label = 0;
  for (char c : d) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!IsAlpha(c) && !IsDigit(c) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

bool Aligned(std::string_view authenticated_domain,
             std::string_view from_domain, Alignment mode) {
  std::string a = Normalize(authenticated_domain);
  std::string f = Normalize(from_domain);
  // A malformed name must not reach the list lookup, where "x..example.com"
  // would still end in example.com.
  if (!IsDnsDomainName(a) || !IsDnsDomainName(f)) return false;
  // 3.1.1, 3.1.2: strict is an exact match of the names.
  if (mode == Alignment::kStrict) return a == f;
  if (a == f) return true;
  return OrganizationalDomain(a) == OrganizationalDomain(f);
}

namespace {

DmarcPolicy OneStepDown(DmarcPolicy p) {
  if (p == DmarcPolicy::kReject) return DmarcPolicy::kQuarantine;
  return DmarcPolicy::kNone;
}

int RandomPercent() {
  thread_local std::mt19937 gen{std::random_device{}()};
  return std::uniform_int_distribution<int>(0, 99)(gen);
}

}  // namespace

DmarcOutcome EvaluateDmarc(const DmarcInput& input, const DmarcLookup& lookup,
                           const PercentRoll& roll) {
  DmarcOutcome out;
  out.from_domain = Normalize(input.from_domain);
  if (!IsDnsDomainName(out.from_domain)) {
    out.result = DmarcResult::kPermError;
    out.reason = "the From domain is not a DNS domain name";
    return out;
  }
  out.org_domain = OrganizationalDomain(out.from_domain);
  if (lookup.status == DmarcLookup::Status::kTempError) {
    // 6.6.3 leaves DNS failures to the receiver; the caller picks a 4xx
    // reply or delivery on temperror.
    out.result = DmarcResult::kTempError;
    out.reason = lookup.detail;
    return out;
  }
  if (lookup.status != DmarcLookup::Status::kFound || !lookup.record) {
    out.result = DmarcResult::kNone;
    out.reason = lookup.detail.empty() ? "no DMARC record" : lookup.detail;
    return out;
  }
  out.record = lookup.record;
  out.record_domain = Normalize(lookup.record_domain);
  const DmarcRecord& record = *lookup.record;
  if (!record.has_policy) {
    // 6.6.3 step 6.2 applies no DMARC processing to such a record; RFC
    // 7489 11.2 names a syntactically incorrect record as the example of
    // permerror, which tells the domain owner more than "none".
    out.result = DmarcResult::kPermError;
    out.reason = "the record at " + out.record_domain +
                 " has no valid p= (or has an invalid sp=) and no valid rua=";
    return out;
  }

  // 4.2: a pass of either mechanism for an aligned identifier suffices.
  // The SPF identity may come as the whole MAIL FROM address.
  std::string_view spf_domain = input.spf_domain;
  if (size_t at = spf_domain.rfind('@'); at != std::string_view::npos) {
    spf_domain.remove_prefix(at + 1);
  }
  out.spf_aligned = IEquals(input.spf_result, "pass") &&
                    Aligned(spf_domain, out.from_domain, record.aspf);
  for (const DkimVerdict& d : input.dkim) {
    if (IEquals(d.result, "pass") &&
        Aligned(d.domain, out.from_domain, record.adkim)) {
      out.dkim_aligned = true;
      out.dkim_domain = Normalize(d.domain);
      break;
    }
  }
  out.result = (out.spf_aligned || out.dkim_aligned) ? DmarcResult::kPass
                                                     : DmarcResult::kFail;

  // 6.3 "sp" and 6.6.3 step 3: a record found at the organizational
  // domain for a From domain below it speaks through "sp" (default "p");
  // a record at the From domain itself always through "p".
  out.requested = record.p;
  if (out.record_domain != out.from_domain && record.sp) {
    out.requested = *record.sp;
  }
  if (out.result != DmarcResult::kFail) return out;

  out.policy = out.requested;
  // 6.6.4: the policy applies to "pct" percent of failing messages; the
  // others get the next policy down (reject -> quarantine -> none).
  if (record.pct < 100 && out.requested != DmarcPolicy::kNone) {
    bool picked = record.pct > 0 && (roll ? roll() : RandomPercent()) < record.pct;
    if (!picked) {
      out.policy = OneStepDown(out.requested);
      out.sampled_out = true;
    }
  }
  return out;
}

}  // namespace tern::mailauth
