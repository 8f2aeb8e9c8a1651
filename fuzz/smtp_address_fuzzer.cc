// Fuzzes the RFC 5321 path and mailbox parsers (smtp/protocol/address.h):
// no crash on any text, and Mailbox::ToString() is a faithful inverse
// (what it prints parses back to the same local part and domain).
//
// Input: 1 header byte (1 = UTF-8 allowed, 2 = null path allowed), then
// the text after "MAIL FROM:" / "RCPT TO:", or a bare mailbox.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "smtp/protocol/address.h"

namespace {

using tern::fuzz::Printable;
using tern::smtp::Mailbox;
using tern::smtp::ParseMailbox;
using tern::smtp::ParsePath;
using tern::smtp::PathParse;

// Local part and domain decide where mail goes; `quoted` only records how
// it was written ("\"abc\"" and "abc" are the same mailbox), so it must
// survive printing only when the local part needs quotes.
void CheckSame(const Mailbox& a, const Mailbox& b, std::string_view printed) {
  FUZZ_CHECK(a.local == b.local && a.domain == b.domain,
             "ToString() does not parse back to the same mailbox\n"
             "  local '%s' domain '%s'\n  printed '%s'\n  reparsed local '%s' "
             "domain '%s'",
             Printable(a.local).c_str(), Printable(a.domain).c_str(),
             Printable(printed).c_str(), Printable(b.local).c_str(),
             Printable(b.domain).c_str());
  FUZZ_CHECK(!b.quoted || a.quoted, "printing added quotes: '%s'",
             Printable(printed).c_str());
}

void CheckMailbox(const Mailbox& m, bool utf8) {
  FUZZ_CHECK(!m.local.empty() && !m.domain.empty(),
             "parsed mailbox lacks a part");
  std::string printed = m.ToString();
  FUZZ_CHECK(printed.size() + 2 <= 256, "printed form longer than a path: %s",
             Printable(printed).c_str());
  std::optional<Mailbox> again = ParseMailbox(printed, utf8);
  FUZZ_CHECK(again.has_value(), "ToString() output does not parse: '%s'",
             Printable(printed).c_str());
  CheckSame(m, *again, printed);
  FUZZ_CHECK(again->ToString() == printed, "ToString() is not stable: %s",
             Printable(printed).c_str());
  // The same text inside angle brackets is the same mailbox as a path.
  std::string path = "<" + printed + ">";
  std::optional<PathParse> p = ParsePath(path, false, utf8);
  FUZZ_CHECK(p.has_value() && p->rest.empty(),
             "mailbox parses but its path does not: %s",
             Printable(path).c_str());
  CheckSame(m, p->mailbox, printed);
  // Anything valid without UTF-8 is valid with it.
  if (!utf8) {
    FUZZ_CHECK(ParseMailbox(printed, true).has_value(),
               "valid ASCII mailbox refused with UTF-8 allowed: %s",
               Printable(printed).c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 1);
  bool utf8 = in.byte(0) & 1, allow_null = in.byte(0) & 2;
  std::string_view text = in.body();

  if (std::optional<Mailbox> m = ParseMailbox(text, utf8)) {
    CheckMailbox(*m, utf8);
    std::string path = "<" + std::string(text) + ">";
    std::optional<PathParse> p = ParsePath(path, false, utf8);
    FUZZ_CHECK(p.has_value() && p->rest.empty() && p->mailbox == *m,
               "ParseMailbox and ParsePath disagree on %s",
               Printable(text).c_str());
  }

  if (std::optional<PathParse> p = ParsePath(text, allow_null, utf8)) {
    // `rest` is the tail of the argument, right after the '>'.
    FUZZ_CHECK(p->rest.data() >= text.data() &&
                   p->rest.data() + p->rest.size() == text.data() + text.size(),
               "rest is not a suffix of the argument");
    size_t used = text.size() - p->rest.size();
    FUZZ_CHECK(used >= 2 && text[used - 1] == '>' && used <= 256,
               "path of %zu octets ends without '>'", used);
    if (p->mailbox.null()) {
      FUZZ_CHECK(allow_null && used == 2, "null path not \"<>\"");
    } else {
      CheckMailbox(p->mailbox, utf8);
    }
  }
  return 0;
}
