// RFC 5321 4.1.2 path and mailbox parsing (with RFC 6531 UTF-8), and the
// canonical re-quoting of local parts. Pure functions: no allocation beyond
// the returned values, no I/O.
#include "smtp/protocol/address.h"

#include <arpa/inet.h>

#include <cstddef>
#include <cstring>

#include "common/strings.h"
#include "smtp/protocol/utf8.h"

namespace tern::smtp {
namespace {

// RFC 5321 4.5.3.1.1-3 size limits, in octets.
constexpr size_t kMaxLocalPart = 64;
constexpr size_t kMaxDomain = 255;
constexpr size_t kMaxPath = 256;  // includes "<" and ">"
// RFC 1035 2.3.4: a label is at most 63 octets.
constexpr size_t kMaxLabel = 63;

bool IsAlpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }

// RFC 5322 3.2.3 atext.
bool IsAtext(unsigned char c) {
  if (IsAlpha(c) || IsDigit(c)) return true;
  return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

// Cursor over the argument text; every Parse* returns false on a syntax
// error and leaves `pos` unspecified.
struct Parser {
  std::string_view s;
  bool utf8;
  size_t pos = 0;

  bool AtEnd() const { return pos >= s.size(); }
  unsigned char Peek() const {
    return AtEnd() ? 0 : static_cast<unsigned char>(s[pos]);
  }
  bool Eat(char c) {
    if (AtEnd() || s[pos] != c) return false;
    ++pos;
    return true;
  }

  // Consumes one UTF-8 non-ASCII character into `out` (RFC 6531 3.3
  // UTF8-non-ascii); false when UTF-8 is not allowed or malformed.
  bool EatUtf8(std::string* out) {
    if (!utf8) return false;
    size_t n = Utf8Len(s, pos);
    if (n == 0) return false;
    if (out != nullptr) out->append(s.substr(pos, n));
    pos += n;
    return true;
  }

  // RFC 5321 4.1.2 Local-part = Dot-string / Quoted-string.
  bool ParseLocal(Mailbox* mb) {
    size_t start = pos;
    if (Eat('"')) {
      // Quoted-string: qtextSMTP and quoted-pairSMTP (%d92 %d32-126).
      mb->quoted = true;
      while (true) {
        unsigned char c = Peek();
        if (AtEnd()) return false;
        if (c == '"') {
          ++pos;
          break;
        }
        if (c == '\\') {
          ++pos;
          unsigned char e = Peek();
          if (AtEnd() || e < 32 || e > 126) return false;
          mb->local.push_back(static_cast<char>(e));
          ++pos;
        } else if (c >= 32 && c <= 126) {
          mb->local.push_back(static_cast<char>(c));
          ++pos;
        } else if (c >= 0x80) {
          if (!EatUtf8(&mb->local)) return false;
        } else {
          return false;  // controls
        }
      }
      // An empty quoted local part ("") is grammatical but names nothing we
      // could deliver to; RFC 5321 4.1.2 discourages it, so refuse it.
      if (mb->local.empty()) return false;
    } else {
      // Dot-string = Atom *("." Atom): no leading, trailing or double dot.
      while (true) {
        size_t atom_start = pos;
        while (!AtEnd()) {
          unsigned char c = Peek();
          if (IsAtext(c)) {
            mb->local.push_back(static_cast<char>(c));
            ++pos;
          } else if (c >= 0x80) {
            if (!EatUtf8(&mb->local)) return false;
          } else {
            break;
          }
        }
        if (pos == atom_start) return false;
        if (Peek() != '.') break;
        mb->local.push_back('.');
        ++pos;
      }
    }
    return pos - start <= kMaxLocalPart;
  }

  // RFC 5321 4.1.3 address-literal: IPv4 dotted quad or "IPv6:" followed by
  // an RFC 4291 address. General-address-literal tags are not registered
  // beyond IPv6, so they are refused.
  bool ParseAddressLiteral() {
    size_t close = s.find(']', pos);
    if (close == std::string_view::npos) return false;
    std::string_view body = s.substr(pos + 1, close - pos - 1);
    int family = AF_INET;
    if (IStartsWith(body, "IPv6:")) {
      family = AF_INET6;
      body.remove_prefix(5);
    }
    if (body.empty() || body.size() > 45) return false;
    char text[46];
    std::memcpy(text, body.data(), body.size());
    text[body.size()] = '\0';
    unsigned char bin[16];
    if (inet_pton(family, text, bin) != 1) return false;
    pos = close + 1;
    return true;
  }

  // RFC 5321 4.1.2 Domain = sub-domain *("." sub-domain), sub-domain =
  // Let-dig [Ldh-str] (so no leading/trailing hyphen); with UTF-8 a label
  // may be a U-label (RFC 6531 3.3), checked only for UTF-8 well-formedness.
  // A trailing dot is a syntax error. Appends the domain as written.
  bool ParseDomain(std::string* out) {
    size_t start = pos;
    if (Peek() == '[') {
      if (!ParseAddressLiteral()) return false;
    } else {
      while (true) {
        size_t label_start = pos;
        bool ascii = true;
        while (!AtEnd()) {
          unsigned char c = Peek();
          if (IsAlpha(c) || IsDigit(c) || c == '-') {
            ++pos;
          } else if (c >= 0x80) {
            if (!EatUtf8(nullptr)) return false;
            ascii = false;
          } else {
            break;
          }
        }
        size_t len = pos - label_start;
        if (len == 0) return false;
        if (s[label_start] == '-' || s[pos - 1] == '-') return false;
        if (ascii && len > kMaxLabel) return false;
        if (Peek() != '.') break;
        ++pos;
      }
    }
    if (pos - start > kMaxDomain) return false;
    if (out != nullptr) out->append(s.substr(start, pos - start));
    return true;
  }

  // Mailbox = Local-part "@" ( Domain / address-literal ).
  bool ParseMailbox(Mailbox* mb) {
    return ParseLocal(mb) && Eat('@') && ParseDomain(&mb->domain);
  }
};

bool LocalIsDotAtom(std::string_view local) {
  if (local.empty() || local.front() == '.' || local.back() == '.') {
    return false;
  }
  for (size_t i = 0; i < local.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(local[i]);
    if (c == '.') {
      if (local[i - 1] == '.') return false;
    } else if (!IsAtext(c) && c < 0x80) {
      // Bytes >= 0x80 were validated as UTF-8 when parsed (RFC 6531 3.3
      // extends atext with UTF8-non-ascii).
      return false;
    }
  }
  return true;
}

}  // namespace

std::string Mailbox::ToString() const {
  std::string out;
  if (null()) return out;
  if (LocalIsDotAtom(local)) {
    out = local;
  } else {
    // RFC 5321 4.1.2: only '"' and '\' need a quoted-pair inside quotes.
    out.reserve(local.size() + 4);
    out.push_back('"');
    for (char c : local) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  // "postmaster" without a domain (RFC 5321 4.1.1.3) has no '@'.
  if (!domain.empty()) {
    out.push_back('@');
    out += domain;
  }
  return out;
}

std::optional<PathParse> ParsePath(std::string_view arg, bool allow_null,
                                   bool allow_utf8) {
  Parser p{arg, allow_utf8};
  if (!p.Eat('<')) return std::nullopt;
  PathParse result;
  if (p.Eat('>')) {
    // RFC 5321 4.1.1.2: the null reverse-path "<>".
    if (!allow_null) return std::nullopt;
    result.rest = arg.substr(p.pos);
    return result;
  }
  // RFC 5321 4.1.2 A-d-l = At-domain *( "," At-domain ) ":"; RFC 5321
  // 4.1.1.3 and Appendix C: accept source routes but ignore them.
  if (p.Peek() == '@') {
    while (true) {
      if (!p.Eat('@') || !p.ParseDomain(nullptr)) return std::nullopt;
      if (p.Eat(':')) break;
      if (!p.Eat(',')) return std::nullopt;
    }
  }
  if (!p.ParseMailbox(&result.mailbox) || !p.Eat('>')) return std::nullopt;
  // RFC 5321 4.5.3.1.3: 256 octets per path, punctuation included.
  if (p.pos > kMaxPath) return std::nullopt;
  result.rest = arg.substr(p.pos);
  return result;
}

std::optional<Mailbox> ParseMailbox(std::string_view text, bool allow_utf8) {
  Parser p{text, allow_utf8};
  Mailbox mb;
  if (!p.ParseMailbox(&mb) || !p.AtEnd()) return std::nullopt;
  // The same mailbox inside "<" ">" must fit RFC 5321 4.5.3.1.3's 256.
  if (text.size() + 2 > kMaxPath) return std::nullopt;
  return mb;
}

}  // namespace tern::smtp
