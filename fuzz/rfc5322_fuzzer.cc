// Fuzzes the From:/Sender: parser (smtp/protocol/rfc5322.h) that decides
// sender identity: address lists, RFC 2047 decoding, header splitting.
// Every parsed address must reparse to itself from a canonical form.
//
// Input: the field body (or a whole header block; both are tried).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "smtp/protocol/rfc5322.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::smtp;

bool IsAtext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9') || c >= 0x80) {
    return true;
  }
  return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

bool IsDotAtom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.') {
      if (s[i - 1] == '.') return false;
    } else if (!IsAtext(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// RFC 5322 3.4.1 addr-spec written canonically: a dot-atom local part as
// is, anything else as a quoted-string with '"' and '\' escaped.
std::string Canonical(const HeaderMailbox& m) {
  std::string out;
  if (IsDotAtom(m.local)) {
    out = m.local;
  } else {
    out = "\"";
    for (char c : m.local) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "@" + m.domain;
}

void CheckList(std::string_view body) {
  auto list = ParseAddressList(body);
  if (!list) return;
  for (const HeaderMailbox& m : *list) {
    FUZZ_CHECK(!m.local.empty() && !m.domain.empty(),
               "mailbox without local part or domain from %s",
               Printable(body).c_str());
    // Quoted strings drop line breaks (unfolding). Domain literals keep
    // what they hold; the session never passes them a bare CR or LF (such
    // a message is refused before the sender check), so no check here.
    FUZZ_CHECK(m.local.find_first_of("\r\n") == std::string::npos,
               "line break inside a local part from %s",
               Printable(body).c_str());
    // An encoded word never supplies an address (only display names are
    // decoded), so the address reparses from its canonical form.
    std::string canon = "<" + Canonical(m) + ">";
    auto again = ParseAddressList(canon);
    FUZZ_CHECK(again && again->size() == 1 && (*again)[0].local == m.local &&
                   (*again)[0].domain == m.domain,
               "address does not reparse\n  input: %s\n  canonical: %s",
               Printable(body).c_str(), Printable(canon).c_str());
    FUZZ_CHECK(m.address() == m.local + "@" + m.domain, "address()");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckList(text);

  std::string decoded = DecodeEncodedWords(text);
  if (text.find("=?") == std::string_view::npos) {
    FUZZ_CHECK(decoded == text, "text without encoded words changed: %s",
               Printable(text).c_str());
  }

  // As a header block: each field's name has no colon and no line break,
  // and each field body goes through the list parser like the session's.
  for (const HeaderField& f : SplitHeaderFields(text)) {
    FUZZ_CHECK(f.name.find(':') == std::string::npos &&
                   f.name.find("\r\n") == std::string::npos,
               "field name '%s'", Printable(f.name).c_str());
    FUZZ_CHECK(f.value.find("\r\n") == std::string::npos,
               "field value not unfolded: %s", Printable(f.value).c_str());
    CheckList(f.value);
  }
  return 0;
}
