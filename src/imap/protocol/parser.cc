// Lexical pieces of the IMAP grammar (RFC 9051 9) over a framed command.
#include "imap/protocol/parser.h"

#include "common/strings.h"
#include "imap/protocol/mutf7.h"
#include "imap/protocol/quote.h"

namespace tern::imap {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

char UpperChar(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || IsDigit(c) ||
         c == '+' || c == '/';
}

}  // namespace

std::string Parser::Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = UpperChar(c);
  return out;
}

bool Parser::Fail(std::string_view message) {
  if (error_.empty()) error_ = std::string(message);
  return false;
}

bool Parser::Take(char c) {
  if (Peek() != c || AtEnd()) return false;
  ++pos_;
  return true;
}

bool Parser::Expect(char c, std::string_view what) {
  if (Take(c)) return true;
  return Fail("Expected " + std::string(what));
}

bool Parser::Sp(std::string_view after) {
  if (Take(' ')) return true;
  if (AtEnd()) return Fail("Missing argument after " + std::string(after));
  return Fail("Expected SP after " + std::string(after));
}

bool Parser::End() {
  if (AtEnd()) return true;
  if (Peek() == ' ') return Fail("Unexpected argument at the end of the command");
  return Fail("Expected end of command");
}

bool Parser::PeekWord(std::string_view w) const {
  if (pos_ + w.size() > text_.size()) return false;
  for (size_t i = 0; i < w.size(); ++i) {
    if (UpperChar(text_[pos_ + i]) != UpperChar(w[i])) return false;
  }
  char next = Peek(w.size());
  return pos_ + w.size() == text_.size() || !IsAtomChar(next) || next == '[';
}

std::string Parser::Word() {
  std::string out;
  while (!AtEnd() && IsAtomChar(Peek()) && Peek() != '[') {
    out += UpperChar(text_[pos_++]);
  }
  return out;
}

bool Parser::Atom(std::string* out, std::string_view what) {
  size_t start = pos_;
  while (!AtEnd() && IsAtomChar(Peek())) ++pos_;
  if (pos_ == start) return Fail("Expected " + std::string(what));
  out->assign(text_.substr(start, pos_ - start));
  return true;
}

bool Parser::Quoted(std::string* out, std::string_view what) {
  // RFC 9051 9 quoted: QUOTED-CHAR is any TEXT-CHAR but DQUOTE and "\",
  // or "\" with one of them; IMAP4rev2 adds UTF-8. 8-bit octets are taken
  // here as they are; names check their encoding afterwards.
  ++pos_;  // the opening DQUOTE
  out->clear();
  while (true) {
    if (AtEnd()) return Fail("Missing '\"' at the end of a quoted string");
    char c = text_[pos_++];
    if (c == '"') return true;
    if (c == '\\') {
      char e = Peek();
      if (e != '"' && e != '\\') {
        return Fail("Invalid escape in a quoted string");
      }
      ++pos_;
      *out += e;
      continue;
    }
    if (c == '\0' || c == '\r' || c == '\n') {
      return Fail("Invalid character in a quoted string (" + std::string(what) +
                  ")");
    }
    *out += c;
  }
}

bool Parser::LiteralString(std::string* out, bool binary_ok, bool stream_ok,
                           const Literal** literal, size_t* index) {
  bool binary = Take('~');
  if (binary && !binary_ok) return Fail("Binary literal not allowed here");
  if (!Take('{')) return Fail("Expected literal");
  size_t start = pos_;
  while (IsDigit(Peek()) && !AtEnd()) ++pos_;
  size_t digits = pos_ - start;
  Take('+');
  if (digits == 0 || !Take('}')) return Fail("Invalid literal");
  if (next_literal_ >= f_.literals.size() ||
      f_.literals[next_literal_].offset != pos_) {
    // Only a literal announced at the end of a line is one.
    return Fail("Literal not at the end of a line");
  }
  const Literal& lit = f_.literals[next_literal_];
  if (index != nullptr) *index = next_literal_;
  if (literal != nullptr) *literal = &lit;
  ++next_literal_;
  if (lit.has_nul && !binary) {
    // RFC 9051 4.3.1: only a literal8 may carry NUL.
    return Fail("NUL octet in a literal (use a binary literal ~{n})");
  }
  out->clear();
  if (lit.streamed) {
    if (!stream_ok) return Fail("Literal too large");
    return true;
  }
  if (lit.size > text_.size() - pos_) return Fail("Literal truncated");
  out->assign(text_.substr(pos_, static_cast<size_t>(lit.size)));
  pos_ += static_cast<size_t>(lit.size);
  return true;
}

bool Parser::String(std::string* out, std::string_view what) {
  if (Peek() == '"' && !AtEnd()) return Quoted(out, what);
  if (Peek() == '{' || Peek() == '~') {
    return LiteralString(out, false, false, nullptr, nullptr);
  }
  return Fail("Expected " + std::string(what) + " (a quoted string or literal)");
}

bool Parser::Astring(std::string* out, std::string_view what) {
  if (AtEnd()) return Fail("Missing " + std::string(what));
  char c = Peek();
  if (c == '"') return Quoted(out, what);
  if (c == '{') return LiteralString(out, false, false, nullptr, nullptr);
  // "~" is an ATOM-CHAR, but "~{" can only be a literal8 (RFC 9051 4.3.1),
  // which an astring is not.
  if (c == '~' && Peek(1) == '{') return Fail("Binary literal not allowed here");
  size_t start = pos_;
  while (!AtEnd() && IsAstringChar(Peek())) ++pos_;
  if (!AtEnd() && static_cast<unsigned char>(Peek()) >= 0x80) {
    // Where an atom stops at an 8-bit octet, say so rather than report
    // what follows the atom.
    return Fail("8-bit octets in " + std::string(what) +
                " need a quoted string or literal");
  }
  if (pos_ == start) return Fail("Expected " + std::string(what));
  out->assign(text_.substr(start, pos_ - start));
  return true;
}

bool Parser::Nstring(std::optional<std::string>* out, std::string_view what) {
  if (PeekWord("NIL")) {
    pos_ += 3;
    out->reset();
    return true;
  }
  std::string s;
  if (!String(&s, what)) return false;
  *out = std::move(s);
  return true;
}

bool Parser::Number64(uint64_t* out, std::string_view what) {
  size_t start = pos_;
  uint64_t v = 0;
  while (!AtEnd() && IsDigit(Peek())) {
    uint64_t d = static_cast<uint64_t>(text_[pos_] - '0');
    if (v > (static_cast<uint64_t>(INT64_MAX) - d) / 10) {
      return Fail("Number too large (" + std::string(what) + ")");
    }
    v = v * 10 + d;
    ++pos_;
  }
  if (pos_ == start) return Fail("Expected " + std::string(what));
  *out = v;
  return true;
}

bool Parser::NzNumber64(uint64_t* out, std::string_view what) {
  if (!Number64(out, what)) return false;
  if (*out == 0) return Fail("Zero is not allowed (" + std::string(what) + ")");
  return true;
}

bool Parser::Number(uint32_t* out, std::string_view what) {
  uint64_t v = 0;
  if (!Number64(&v, what)) return false;
  if (v > UINT32_MAX) return Fail("Number too large (" + std::string(what) + ")");
  *out = static_cast<uint32_t>(v);
  return true;
}

bool Parser::NzNumber(uint32_t* out, std::string_view what) {
  if (!Number(out, what)) return false;
  if (*out == 0) return Fail("Zero is not allowed (" + std::string(what) + ")");
  return true;
}

bool Parser::SeqSet(SequenceSet* out, bool star_ok) {
  *out = SequenceSet();
  if (Take('$')) {
    out->saved = true;
    return true;
  }
  auto number = [&](uint32_t* n) {
    if (Take('*')) {
      if (!star_ok) return Fail("\"*\" not allowed in this set");
      *n = kStar;
      return true;
    }
    if (!IsDigit(Peek()) || AtEnd()) return Fail("Invalid sequence set");
    if (!Number(n, "sequence number")) return false;
    if (*n == 0) return Fail("Invalid sequence set (0 is not a message number)");
    return true;
  };
  do {
    SeqRange r;
    if (!number(&r.first)) return false;
    r.last = r.first;
    if (Take(':') && !number(&r.last)) return false;
    out->ranges.push_back(r);
  } while (Take(','));
  return true;
}

std::string CanonicalFlag(std::string_view flag) {
  static constexpr std::string_view kKnown[] = {
      // RFC 9051 2.3.2 system flags (\Recent for IMAP4rev1).
      "\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent",
      // RFC 6154 2 special-use attributes.
      "\\All", "\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash",
      // RFC 9051 7.3.1 mailbox attributes clients may name.
      "\\Important"};
  if (flag.empty() || flag[0] != '\\') return std::string(flag);
  for (std::string_view known : kKnown) {
    if (IEquals(flag, known)) return std::string(known);
  }
  return std::string(flag);
}

bool Parser::Flag(std::string* out) {
  // RFC 9051 9 flag: "\" atom (system or extension flag) or a keyword atom.
  bool system = Take('\\');
  std::string atom;
  if (!Atom(&atom, "flag")) return false;
  *out = CanonicalFlag(system ? "\\" + atom : atom);
  return true;
}

bool Parser::FlagList(std::vector<std::string>* out) {
  out->clear();
  if (!Expect('(', "'(' to open a flag list")) return false;
  if (Take(')')) return true;
  do {
    std::string flag;
    if (!Flag(&flag)) return false;
    out->push_back(std::move(flag));
  } while (Take(' '));
  return Expect(')', "')' to close the flag list");
}

bool Parser::DecodeName(std::string raw, std::string* out) {
  if (options_.utf8) {
    // RFC 6855 3 / RFC 9051 5.1: names are UTF-8, "&" is just "&".
    if (!IsUtf8(raw)) return Fail("Mailbox name is not valid UTF-8");
    *out = std::move(raw);
    return true;
  }
  auto decoded = DecodeMutf7(raw);
  if (!decoded) return Fail(decoded.error().message);
  *out = std::move(*decoded);
  return true;
}

bool Parser::Mailbox(std::string* out) {
  std::string raw;
  if (!Astring(&raw, "mailbox name")) return false;
  // RFC 9051 5.1: INBOX is case-insensitive.
  if (IEquals(raw, "INBOX")) {
    *out = "INBOX";
    return true;
  }
  return DecodeName(std::move(raw), out);
}

bool Parser::ListMailbox(std::string* out) {
  std::string raw;
  char c = Peek();
  if (!AtEnd() && (c == '"' || c == '{')) {
    if (!String(&raw, "mailbox pattern")) return false;
  } else {
    // list-char = ATOM-CHAR / list-wildcards / resp-specials
    size_t start = pos_;
    while (!AtEnd() && (IsAstringChar(Peek()) || Peek() == '%' || Peek() == '*')) {
      ++pos_;
    }
    if (pos_ == start) return Fail("Expected mailbox pattern");
    raw.assign(text_.substr(start, pos_ - start));
  }
  return DecodeName(std::move(raw), out);
}

bool Parser::SearchDate(Date* out) {
  std::string text;
  if (Peek() == '"' && !AtEnd()) {
    if (!Quoted(&text, "date")) return false;
  } else if (!Atom(&text, "date")) {
    return false;
  }
  auto date = ParseDate(text);
  if (!date) return Fail(date.error().message);
  *out = *date;
  return true;
}

bool Parser::QuotedDateTime(DateTime* out) {
  if (Peek() != '"' || AtEnd()) return Fail("Expected date-time");
  std::string text;
  if (!Quoted(&text, "date-time")) return false;
  auto dt = ParseDateTime(text);
  if (!dt) return Fail(dt.error().message);
  *out = *dt;
  return true;
}

// Used by AUTHENTICATE (command.cc).
bool IsSaslInitialResponse(std::string_view s) {
  // RFC 4959 3: base64 or "=" for an empty response.
  if (s == "=") return true;
  if (s.empty() || s.size() % 4 != 0) return false;
  size_t pad = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '=') {
      ++pad;
    } else if (pad > 0 || !IsBase64Char(s[i])) {
      return false;
    }
  }
  return pad <= 2;
}

}  // namespace tern::imap
