// Fuzzes what DMARC reads from strangers (mailauth/dmarc.h,
// mailauth/auth_results.h): DMARC TXT records, the From field, and the
// authserv-id of Authentication-Results fields, and checks that our own
// Authentication-Results output stays one well-formed field.
//
// Input: byte 0 picks the SPF and DKIM inputs of the verdict (bits 0-1 SPF
// result, 2 SPF domain, 3-4 DKIM, 5-6 pct roll); the rest is used as a
// DMARC record, a header section, an A-R field body and as the values
// written into an A-R field.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "mailauth/auth_results.h"
#include "mailauth/dmarc.h"

namespace {

using namespace tern::mailauth;
using tern::fuzz::Printable;

std::string PolicyWord(DmarcPolicy p) { return DmarcPolicyName(p); }

// A record written back from what was parsed; parsing it must give the
// same values (the parser keeps nothing it could not write).
std::string Rewrite(const DmarcRecord& r) {
  std::string out = "v=DMARC1; p=" + PolicyWord(r.p);
  if (r.sp) out += "; sp=" + PolicyWord(*r.sp);
  out += "; pct=" + std::to_string(r.pct);
  out += std::string("; adkim=") + (r.adkim == Alignment::kStrict ? "s" : "r");
  out += std::string("; aspf=") + (r.aspf == Alignment::kStrict ? "s" : "r");
  for (int list = 0; list < 2; ++list) {
    const std::vector<DmarcUri>& uris = list == 0 ? r.rua : r.ruf;
    if (uris.empty()) continue;
    out += list == 0 ? "; rua=" : "; ruf=";
    for (size_t i = 0; i < uris.size(); ++i) {
      if (i > 0) out += ",";
      out += uris[i].uri;
      uint64_t size = uris[i].max_size;
      if (size == 0) continue;
      // The largest unit that divides the size keeps the number small.
      const char* units = "tgmk";
      std::string unit;
      for (int shift = 40, u = 0; shift > 0; shift -= 10, ++u) {
        if (size % (uint64_t{1} << shift) == 0) {
          size >>= shift;
          unit = units[u];
          break;
        }
      }
      out += "!" + std::to_string(size) + unit;
    }
  }
  std::string fo;
  if (r.fo.all_failed) fo += ":0";
  if (r.fo.any_failed) fo += ":1";
  if (r.fo.dkim) fo += ":d";
  if (r.fo.spf) fo += ":s";
  if (!fo.empty()) out += "; fo=" + fo.substr(1);
  out += "; rf=";
  for (size_t i = 0; i < r.rf.size(); ++i) out += (i ? ":" : "") + r.rf[i];
  out += "; ri=" + std::to_string(r.ri);
  return out;
}

bool SameUris(const std::vector<DmarcUri>& a, const std::vector<DmarcUri>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].uri != b[i].uri || a[i].max_size != b[i].max_size) return false;
  }
  return true;
}

void CheckRecord(std::string_view text) {
  std::optional<DmarcRecord> r = ParseDmarcRecord(text);
  if (!r) return;
  FUZZ_CHECK(r->pct >= 0 && r->pct <= 100, "pct %d", r->pct);
  FUZZ_CHECK(!r->policy_from_rua_fallback ||
                 (r->has_policy && !r->rua.empty() && r->p == DmarcPolicy::kNone),
             "rua fallback without rua: %s", Printable(text).c_str());
  for (const DmarcUri& u : r->rua) {
    FUZZ_CHECK(u.uri.find(':') != std::string::npos &&
                   u.uri.find_first_of(" \t,;!") == std::string::npos,
               "bad URI kept: %s", Printable(u.uri).c_str());
  }
  if (!r->has_policy) return;
  std::string again_text = Rewrite(*r);
  std::optional<DmarcRecord> again = ParseDmarcRecord(again_text);
  FUZZ_CHECK(again && again->has_policy && again->problems.empty(),
             "rewritten record rejected: %s", Printable(again_text).c_str());
  FUZZ_CHECK(again->p == r->p && again->sp == r->sp && again->pct == r->pct &&
                 again->adkim == r->adkim && again->aspf == r->aspf &&
                 SameUris(again->rua, r->rua) && SameUris(again->ruf, r->ruf) &&
                 again->rf == r->rf && again->ri == r->ri &&
                 again->fo.all_failed == r->fo.all_failed &&
                 again->fo.any_failed == r->fo.any_failed &&
                 again->fo.dkim == r->fo.dkim && again->fo.spf == r->fo.spf,
             "rewrite changed the record: %s -> %s", Printable(text).c_str(),
             Printable(again_text).c_str());
}

// The From domain, its organizational domain, and the verdict with a
// record parsed from the same input.
void CheckFromAndVerdict(std::string_view text, uint8_t bits) {
  auto domain = FromDomainOfHeader(text);
  if (!domain) return;
  const std::string& d = *domain;
  FUZZ_CHECK(!d.empty() && d.size() <= 253 && d.front() != '.' && d.back() != '.',
             "bad From domain %s", Printable(d).c_str());
  for (char c : d) {
    FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                   c == '_' || c == '.',
               "From domain not lower-case LDH: %s", Printable(d).c_str());
  }
  auto again = FromDomainOfHeader("From: <x@" + d + ">\r\n");
  FUZZ_CHECK(again && *again == d, "From domain does not reparse: %s",
             Printable(d).c_str());

  std::string org = OrganizationalDomain(d);
  FUZZ_CHECK(d == org || (d.size() > org.size() &&
                          d.compare(d.size() - org.size(), org.size(), org) == 0 &&
                          d[d.size() - org.size() - 1] == '.'),
             "org domain %s is not a suffix of %s", org.c_str(), d.c_str());
  FUZZ_CHECK(OrganizationalDomain(org) == org, "org domain of %s moves",
             org.c_str());
  FUZZ_CHECK(Aligned(org, d, Alignment::kRelaxed), "org %s not aligned", org.c_str());
  FUZZ_CHECK(Aligned(d, d, Alignment::kStrict), "%s not aligned with itself",
             d.c_str());

  // A record from the body after the header (anything will do).
  DmarcLookup lookup;
  size_t blank = text.find("\n\n");
  if (blank != std::string_view::npos) {
    lookup.record = ParseDmarcRecord(text.substr(blank + 2));
  }
  if (lookup.record) {
    lookup.status = DmarcLookup::Status::kFound;
    lookup.record_domain = (bits & 0x80) ? org : d;
  }
  static const char* kSpf[] = {"pass", "fail", "softfail", ""};
  DmarcInput in{d, kSpf[bits & 3], (bits & 4) ? d : "other.example"};
  if (bits & 8) in.dkim.push_back({"pass", org});
  if (bits & 16) in.dkim.push_back({"fail", d});
  int roll = (bits >> 5) & 3;
  DmarcOutcome o = EvaluateDmarc(in, lookup, [roll] { return roll * 33; });
  if (o.result != DmarcResult::kFail) {
    FUZZ_CHECK(o.policy == DmarcPolicy::kNone, "policy without a failure");
  } else {
    FUZZ_CHECK(static_cast<int>(o.policy) <= static_cast<int>(o.requested),
               "policy above the requested one");
    FUZZ_CHECK(o.sampled_out == (o.policy != o.requested),
               "sampled_out disagrees with the policy");
  }
  FUZZ_CHECK((o.result == DmarcResult::kPass) == (o.spf_aligned || o.dkim_aligned),
             "pass without alignment or alignment without pass");
}

std::string StripControls(std::string_view s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) out += c;
  }
  return out;
}

void CheckAuthResults(std::string_view text) {
  // Reading: no crash, and a read id is claimed.
  std::optional<std::string> id = ParseAuthServId(text);
  if (id && !id->empty() && *id != "." && id->find('\0') == std::string::npos) {
    FUZZ_CHECK(ClaimsAuthServId(text, *id), "id %s not claimed",
               Printable(*id).c_str());
  }

  // Writing: the input as authserv-id and as every value; one field, CRLF
  // lines, continuation lines starting with WSP, the id reads back.
  std::string v(text.substr(0, 300));
  std::string field = FormatAuthResults(
      v, {SpfAuthResult(v, v, v.size() % 2), DkimAuthResult(v, v, v, v, v),
          DmarcAuthResult(v, v, v), ArcAuthResult(v, v),
          AuthMethodResult{v, v, v, v, {{v, v, v}}}});
  FUZZ_CHECK(field.rfind("Authentication-Results: ", 0) == 0, "field name");
  FUZZ_CHECK(tern::fuzz::OnlyCrlfLineEnds(field) && field.size() >= 2 &&
                 field.compare(field.size() - 2, 2, "\r\n") == 0,
             "bad line ends: %s", Printable(field, 2000).c_str());
  for (size_t pos = field.find("\r\n"); pos + 2 < field.size();
       pos = field.find("\r\n", pos + 2)) {
    char next = field[pos + 2];
    FUZZ_CHECK(next == '\t' || next == ' ', "a second field begins: %s",
               Printable(field, 2000).c_str());
  }
  for (char c : field) {
    unsigned char u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20 || c == '\r' || c == '\n' || c == '\t',
               "control octet in the field");
  }
  std::string body = field.substr(field.find(':') + 1);
  std::optional<std::string> back = ParseAuthServId(body);
  FUZZ_CHECK(back && *back == StripControls(v), "id %s read back as %s",
             Printable(v).c_str(), back ? Printable(*back).c_str() : "nothing");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input input(data, size, 1);
  std::string_view text = input.body();
  CheckRecord(text);
  CheckFromAndVerdict(text, input.byte(0));
  CheckAuthResults(text);
  return 0;
}
