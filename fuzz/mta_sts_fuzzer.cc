// Fuzzes the MTA-STS parsers (delivery/mta_sts.h), which read what any
// domain publishes: the policy file, the _mta-sts TXT record and our own
// cache file; and the TLS-RPT record parser (delivery/tlsrpt.h,
// _smtp._tls TXT), whose URIs are only mailto: or https: without spaces
// or control characters. A parsed policy has a mode, max_age within the RFC 8461 3.2
// cap, well-formed lower-case mx patterns within the count limit, writes
// back to text that parses to the same policy, and its patterns match
// their own names; a TXT id is 1..32 letters and digits.
//
// Input: the text, as a policy, as a cache file, as one TXT record and as
// TXT records split at newlines.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "delivery/mta_sts.h"
#include "delivery/tlsrpt.h"
#include "fuzz_common.h"

namespace {

namespace sts = tern::delivery::sts;
using tern::fuzz::Printable;

void CheckPolicy(const sts::Policy& p, std::string_view text) {
  FUZZ_CHECK(p.max_age <= sts::kMaxAge, "max_age %u: %s", p.max_age,
             Printable(text).c_str());
  FUZZ_CHECK(p.mx.size() <= sts::kMaxPatterns, "%zu patterns", p.mx.size());
  FUZZ_CHECK(p.mode == sts::Mode::kNone || !p.mx.empty(),
             "enforce/testing without mx: %s", Printable(text).c_str());
  for (const std::string& m : p.mx) {
    for (char c : m) {
      FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "upper case pattern %s", m.c_str());
    }
    // A pattern matches a name it describes: itself, or one label more.
    std::string name = m.substr(0, 2) == "*." ? "x" + m.substr(1) : m;
    FUZZ_CHECK(sts::MxMatches(m, name), "%s does not match %s", m.c_str(),
               name.c_str());
    FUZZ_CHECK(!sts::MxMatches(m, "a.b." + name), "%s matches a.b.%s",
               m.c_str(), name.c_str());
  }
  std::string again = sts::FormatPolicy(p);
  auto back = sts::ParsePolicy(again);
  FUZZ_CHECK(back.has_value(), "formatted policy does not parse: %s",
             Printable(again).c_str());
  FUZZ_CHECK(*back == p, "round trip changed the policy: %s",
             Printable(text).c_str());
}

void CheckId(const std::string& id) {
  FUZZ_CHECK(!id.empty() && id.size() <= 32, "id length %zu", id.size());
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9');
    FUZZ_CHECK(ok, "id octet 0x%02x", static_cast<unsigned char>(c));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto p = sts::ParsePolicy(text)) {
    CheckPolicy(*p, text);
  } else {
    FUZZ_CHECK(!p.error().message.empty(), "error without a reason");
  }
  if (auto c = sts::ParseCached(text)) {
    CheckPolicy(c->policy, text);
    CheckId(c->id);
    auto back = sts::ParseCached(sts::FormatCached(*c));
    FUZZ_CHECK(back && *back == *c, "cache round trip: %s", Printable(text).c_str());
  }
  if (auto id = sts::ParseTxt({std::string(text)})) CheckId(*id);
  std::vector<std::string> records;
  size_t start = 0;
  while (start <= text.size() && records.size() < 16) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    records.emplace_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  if (auto id = sts::ParseTxt(records)) CheckId(*id);
  if (auto uris = tern::delivery::tlsrpt::ParseTxt(records)) {
    for (const std::string& u : *uris) {
      // Schemes are case-insensitive (RFC 3986 3.1).
      std::string scheme = u.substr(0, u.find(':') + 1);
      for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      FUZZ_CHECK(scheme == "mailto:" || scheme == "https:", "rua %s",
                 Printable(u).c_str());
      for (char c : u) {
        FUZZ_CHECK(static_cast<unsigned char>(c) > 32 && c != 127,
                   "rua octet 0x%02x", static_cast<unsigned char>(c));
      }
    }
  }
  return 0;
}
