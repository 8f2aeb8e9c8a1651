// Fuzzes the SPF record and macro parsers (mailauth/spf.h), which read
// text any domain owner publishes: what they accept prints back to text that
// parses to the same thing, and check_host() over a scripted resolver
// serving the record keeps its limits and result vocabulary.
//
// Input: the text, parsed as a whole record, as a record after "v=spf1 ",
// and as a macro-string in each of its three uses.
#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "dns/fake_resolver.h"
#include "fuzz_common.h"
#include "mailauth/spf.h"

namespace {

using tern::fuzz::Printable;
namespace spf = tern::mailauth;

bool Visible(char c) { return c >= 0x21 && c <= 0x7e; }

void CheckRecord(std::string_view text, size_t seed) {
  auto record = spf::ParseSpfRecord(text);
  if (!record) {
    FUZZ_CHECK(!record.error().message.empty(), "error without a reason");
    return;
  }
  FUZZ_CHECK(spf::IsSpfRecord(text), "accepted without v=spf1: %s",
             Printable(text).c_str());
  // RFC 7208 4.6.1, 12: terms are visible ASCII separated by spaces.
  size_t terms = 0;
  for (size_t i = 6; i < text.size(); ++i) {
    FUZZ_CHECK(text[i] == ' ' || Visible(text[i]), "accepted octet 0x%02x: %s",
               static_cast<unsigned char>(text[i]), Printable(text).c_str());
    if (text[i] != ' ' && text[i - 1] == ' ') ++terms;
  }
  size_t parsed = record->mechanisms.size() + record->unknown.size() +
                  (record->redirect ? 1 : 0) + (record->exp ? 1 : 0);
  FUZZ_CHECK(parsed == terms, "%zu terms became %zu: %s", terms, parsed,
             Printable(text).c_str());
  for (const spf::SpfMechanism& m : record->mechanisms) {
    FUZZ_CHECK(
        m.prefix4 >= 0 && m.prefix4 <= 32 && m.prefix6 >= 0 && m.prefix6 <= 128,
        "prefix /%d //%d: %s", m.prefix4, m.prefix6, Printable(text).c_str());
    bool needs_target = m.type == spf::SpfMechanismType::kInclude ||
                        m.type == spf::SpfMechanismType::kExists;
    FUZZ_CHECK(!needs_target || (m.target && !m.target->empty()),
               "include/exists without a target: %s", Printable(text).c_str());
  }
  std::string formatted = spf::FormatSpfRecord(*record);
  auto again = spf::ParseSpfRecord(formatted);
  FUZZ_CHECK(again.has_value(), "formatted record does not parse: %s -> %s",
             Printable(text).c_str(), Printable(formatted).c_str());
  FUZZ_CHECK(*again == *record, "round trip changed the record: %s -> %s",
             Printable(text).c_str(), Printable(formatted).c_str());
  FUZZ_CHECK(spf::FormatSpfRecord(*again) == formatted,
             "formatting is not stable: %s", Printable(formatted).c_str());

  // check_host() with the record at example.com and nothing else in DNS.
  asio::io_context io;
  tern::dns::FakeResolver resolver(io.get_executor());
  resolver.SetTxt("example.com", {std::string(text)});
  resolver.SetTxt("exp.example.com", {"%{s} %{L} %{p} %{c} %{r} %{t}"});
  spf::SpfRequest request;
  request.ip = seed % 2 ? "2001:db8::cb01" : "192.0.2.3";
  request.helo = "mail.example.com";
  request.mail_from = seed % 3 ? "strong-bad@example.com" : "";
  if (request.mail_from.empty()) request.helo = "example.com";
  request.now = 1700000000;
  spf::SpfOutcome outcome;
  bool done = false;
  asio::co_spawn(io, spf::CheckHost(resolver, request),
                 [&](std::exception_ptr e, spf::SpfOutcome o) {
                   FUZZ_CHECK(!e, "CheckHost threw: %s",
                              Printable(text).c_str());
                   outcome = std::move(o);
                   done = true;
                 });
  io.run();
  FUZZ_CHECK(done, "CheckHost did not finish: %s", Printable(text).c_str());
  // RFC 7208 4.6.4: one term past the limit is where evaluation stops.
  FUZZ_CHECK(outcome.dns_terms <= spf::kMaxDnsTerms + 1 &&
                 outcome.void_lookups <= spf::kMaxVoidLookups + 1,
             "limits exceeded (%d terms, %d void): %s", outcome.dns_terms,
             outcome.void_lookups, Printable(text).c_str());
  FUZZ_CHECK(
      outcome.explanation.empty() || outcome.result == spf::SpfResult::kFail,
      "explanation with %s: %s", spf::SpfResultName(outcome.result),
      Printable(text).c_str());
  for (char c : outcome.explanation + outcome.reason) {
    FUZZ_CHECK(c == ' ' || Visible(c), "unprintable octet in output: %s",
               Printable(text).c_str());
  }
}

void CheckMacroString(std::string_view text, spf::MacroUse use) {
  auto macros = spf::ParseMacroString(text, use);
  if (use == spf::MacroUse::kDomainSpec) {
    // A domain-spec is a non-empty macro-string with a stricter end.
    auto domain = spf::ParseDomainSpec(text);
    FUZZ_CHECK(!domain || (macros && !macros->empty() && *macros == *domain),
               "domain-spec accepted but not as a macro-string: %s",
               Printable(text).c_str());
  }
  if (!macros) return;
  bool has_macro = false;
  std::string literal;
  for (const spf::MacroPiece& p : *macros) {
    if (p.kind == spf::MacroPiece::Kind::kMacro) {
      has_macro = true;
      if (use == spf::MacroUse::kDomainSpec) {
        FUZZ_CHECK(std::string_view("slodipvh").find(p.letter) !=
                       std::string_view::npos,
                   "letter %c in a domain-spec: %s", p.letter,
                   Printable(text).c_str());
      }
      FUZZ_CHECK(p.keep >= 0 && p.keep <= 128, "keep %d", p.keep);
    } else {
      literal += p.text;
    }
  }
  std::string formatted = spf::FormatMacroString(*macros);
  auto again = spf::ParseMacroString(formatted, use);
  FUZZ_CHECK(again && *again == *macros, "macro round trip: %s -> %s",
             Printable(text).c_str(), Printable(formatted).c_str());

  spf::MacroValues values;
  values.sender = "~jack&jill=up-a_b3.c@email.example.com";
  values.domain = "email.example.com";
  values.helo = "mail.example.com";
  values.ip = *tern::ParseIpAddress("192.0.2.3");
  auto expanded = spf::ExpandMacros(*macros, values);
  if (!expanded) return;
  FUZZ_CHECK(expanded->size() <= spf::kMaxExpansion, "expansion of %zu",
             expanded->size());
  if (!has_macro) {
    FUZZ_CHECK(*expanded == literal, "literal text changed: %s",
               Printable(text).c_str());
  }
  // RFC 7208 7.3: an upper-case macro leaves only unreserved characters
  // and %XX escapes.
  for (const spf::MacroPiece& p : *macros) {
    if (p.kind != spf::MacroPiece::Kind::kMacro || !p.url_escape) continue;
    auto one = spf::ExpandMacros({p}, values);
    FUZZ_CHECK(one.has_value(), "one macro failed");
    for (char c : *one) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                c == '~' || c == '%';
      FUZZ_CHECK(ok, "URL escaping left %c in %s", c, Printable(*one).c_str());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckRecord(text, size);
  CheckRecord("v=spf1 " + std::string(text), size);
  for (spf::MacroUse use :
       {spf::MacroUse::kDomainSpec, spf::MacroUse::kModifierValue,
        spf::MacroUse::kExplanation}) {
    CheckMacroString(text, use);
  }
  return 0;
}
