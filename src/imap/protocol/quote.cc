// String output forms (quote.h).
#include "imap/protocol/quote.h"

#include "imap/protocol/mutf7.h"

namespace tern::imap {

bool IsAtomChar(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  // CHAR (0x01-0x7F) except atom-specials: "(" ")" "{" SP CTL "%" "*"
  // DQUOTE "\" "]".
  if (c <= 0x1f || c >= 0x7f) return false;
  switch (c) {
    case '(': case ')': case '{': case ' ': case '%': case '*': case '"':
    case '\\': case ']':
      return false;
    default:
      return true;
  }
}

bool IsAstringChar(char c) { return c == ']' || IsAtomChar(c); }

StringForm ChooseForm(std::string_view s, bool atom_ok, bool utf8) {
  bool eight_bit = false;
  bool atom = atom_ok && !s.empty();
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == 0 || c == '\r' || c == '\n') return StringForm::kLiteral;
    if (c >= 0x80) eight_bit = true;
    if (!IsAstringChar(ch)) atom = false;
  }
  if (s.size() > kMaxQuoted) return StringForm::kLiteral;
  if (eight_bit && (!utf8 || !IsUtf8(s))) return StringForm::kLiteral;
  // NIL as an atom would read as NIL where an nstring is expected.
  if (atom && (s.size() != 3 || (s[0] | 0x20) != 'n' || (s[1] | 0x20) != 'i' ||
               (s[2] | 0x20) != 'l')) {
    return StringForm::kAtom;
  }
  return StringForm::kQuoted;
}

namespace {

std::string Format(std::string_view s, bool atom_ok, bool utf8) {
  switch (ChooseForm(s, atom_ok, utf8)) {
    case StringForm::kAtom:
      return std::string(s);
    case StringForm::kQuoted: {
      std::string out = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
      return out;
    }
    case StringForm::kLiteral:
      break;
  }
  // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive)
  // about "{" + std::to_string(...).
  std::string out = "{";
  out += std::to_string(s.size());
  out += "}\r\n";
  out.append(s);
  return out;
}

}  // namespace

std::string FormatAstring(std::string_view s, bool utf8) {
  return Format(s, true, utf8);
}

std::string FormatString(std::string_view s, bool utf8) {
  return Format(s, false, utf8);
}

std::string FormatNstring(const std::optional<std::string>& s, bool utf8) {
  return s ? Format(*s, false, utf8) : std::string("NIL");
}

}  // namespace tern::imap
