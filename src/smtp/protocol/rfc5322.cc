// RFC 5322 address-list parsing for sender identity checks. The input is
// hostile (any client can put anything in From:), so the parser is a flat
// tokenizer plus a loop: no recursion, bounded work per input octet.
#include "smtp/protocol/rfc5322.h"

#include <cstring>

#include "common/base64.h"
#include "common/strings.h"

namespace tern::smtp {

bool IsAtext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9') || c >= 0x80) {
    return true;
  }
  return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

namespace {

struct Token {
  enum class Kind { kAtom, kQuoted, kLiteral, kSpecial };
  Kind kind;
  std::string text;    // atom text, quoted content, "[literal]", or the special
  bool space_before;   // whitespace or a comment preceded it
};

// Splits a field body into tokens; comments and folding whitespace vanish
// (RFC 5322 3.2.2 CFWS), leaving only `space_before`. False on unbalanced
// quotes, comments or literals, or characters that cannot appear.
bool Tokenize(std::string_view s, std::vector<Token>* out) {
  size_t i = 0;
  bool space = false;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = true;
      ++i;
    } else if (c == '(') {
      // RFC 5322 3.2.2: comments nest and may hold quoted-pairs.
      int depth = 0;
      do {
        char d = s[i];
        if (d == '\\') {
          ++i;
        } else if (d == '(') {
          ++depth;
        } else if (d == ')') {
          --depth;
        }
        ++i;
      } while (depth > 0 && i < s.size());
      if (depth > 0) return false;
      space = true;
    } else if (c == '"') {
      // RFC 5322 3.2.4 quoted-string; folding inside is unfolded.
      std::string text;
      ++i;
      bool closed = false;
      while (i < s.size()) {
        char d = s[i];
        if (d == '"') {
          closed = true;
          ++i;
          break;
        }
        if (d == '\\') {
          if (i + 1 >= s.size()) return false;
          // A quoted-pair cannot escape a line break (RFC 5322 3.2.1).
          if (s[i + 1] != '\r' && s[i + 1] != '\n') text.push_back(s[i + 1]);
          i += 2;
          continue;
        }
        if (d != '\r' && d != '\n') text.push_back(d);
        ++i;
      }
      if (!closed) return false;
      out->push_back({Token::Kind::kQuoted, std::move(text), space});
      space = false;
    } else if (c == '[') {
      // RFC 5322 3.4.1 domain-literal.
      size_t close = s.find(']', i);
      if (close == std::string_view::npos) return false;
      std::string text(s.substr(i, close - i + 1));
      if (text.find_first_of("[\\", 1) != std::string::npos) return false;
      out->push_back({Token::Kind::kLiteral, std::move(text), space});
      space = false;
      i = close + 1;
    } else if (std::strchr("<>@,;:.", c) != nullptr) {
      out->push_back({Token::Kind::kSpecial, std::string(1, static_cast<char>(c)),
                      space});
      space = false;
      ++i;
    } else if (IsAtext(c)) {
      size_t j = i;
      while (j < s.size() && IsAtext(static_cast<unsigned char>(s[j]))) ++j;
      out->push_back({Token::Kind::kAtom, std::string(s.substr(i, j - i)), space});
      space = false;
      i = j;
    } else {
      return false;  // ')', ']', '\\' or a control character out of place
    }
  }
  return true;
}

bool IsSpecial(const Token& t, char c) {
  return t.kind == Token::Kind::kSpecial && t.text[0] == c;
}

bool IsWord(const Token& t) {
  return t.kind == Token::Kind::kAtom || t.kind == Token::Kind::kQuoted;
}

bool IsEncodedWord(std::string_view w) {
  return w.size() >= 8 && w.substr(0, 2) == "=?" && w.substr(w.size() - 2) == "?=";
}

class ListParser {
 public:
  explicit ListParser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::optional<std::vector<HeaderMailbox>> Parse() {
    std::vector<HeaderMailbox> out;
    bool in_group = false;
    while (pos_ < t_.size()) {
      // RFC 5322 4.4 obs-addr-list: empty list elements are allowed.
      if (IsSpecial(t_[pos_], ',')) {
        ++pos_;
        continue;
      }
      if (in_group && IsSpecial(t_[pos_], ';')) {
        ++pos_;
        in_group = false;
        continue;
      }
      // A phrase (display name or local part words) up to the next special
      // that tells which it was. obs-phrase allows "." inside.
      size_t start = pos_;
      while (pos_ < t_.size() && (IsWord(t_[pos_]) || IsSpecial(t_[pos_], '.'))) {
        ++pos_;
      }
      size_t end = pos_;
      if (pos_ >= t_.size()) return std::nullopt;  // words but no address
      const Token& next = t_[pos_];
      HeaderMailbox mb;
      if (IsSpecial(next, '@')) {
        // addr-spec alone.
        pos_ = start;
        if (!AddrSpec(&mb)) return std::nullopt;
      } else if (IsSpecial(next, '<')) {
        mb.display_name = Phrase(start, end);
        ++pos_;
        if (!ObsRoute() || !AddrSpec(&mb)) return std::nullopt;
        if (pos_ >= t_.size() || !IsSpecial(t_[pos_], '>')) return std::nullopt;
        ++pos_;
      } else if (IsSpecial(next, ':') && !in_group && end > start) {
        // RFC 5322 3.4 group: display-name ":" [group-list] ";". Groups do
        // not nest.
        ++pos_;
        in_group = true;
        continue;
      } else {
        return std::nullopt;
      }
      out.push_back(std::move(mb));
      // After an address: ",", or ";" closing a group, or the end.
      if (pos_ < t_.size()) {
        const Token& sep = t_[pos_];
        if (IsSpecial(sep, ',')) {
          ++pos_;
        } else if (!(in_group && IsSpecial(sep, ';'))) {
          return std::nullopt;
        }
      }
    }
    if (in_group) return std::nullopt;  // missing ";"
    return out;
  }

 private:
  // RFC 5322 4.4 obs-route: "@a,@b:" before the addr-spec, ignored.
  bool ObsRoute() {
    if (pos_ >= t_.size() || !IsSpecial(t_[pos_], '@')) return true;
    while (true) {
      if (pos_ >= t_.size() || !IsSpecial(t_[pos_], '@')) return false;
      ++pos_;
      std::string ignored;
      if (!Domain(&ignored)) return false;
      if (pos_ < t_.size() && IsSpecial(t_[pos_], ':')) {
        ++pos_;
        return true;
      }
      if (pos_ >= t_.size() || !IsSpecial(t_[pos_], ',')) return false;
      ++pos_;
    }
  }

  // local-part "@" domain, where local-part is word *("." word) (which
  // covers dot-atom, quoted-string and obs-local-part).
  bool AddrSpec(HeaderMailbox* mb) {
    while (true) {
      if (pos_ >= t_.size() || !IsWord(t_[pos_])) return false;
      if (t_[pos_].kind == Token::Kind::kQuoted) mb->quoted = true;
      mb->local += t_[pos_].text;
      ++pos_;
      if (pos_ < t_.size() && IsSpecial(t_[pos_], '.')) {
        mb->local.push_back('.');
        ++pos_;
        continue;
      }
      break;
    }
    if (pos_ >= t_.size() || !IsSpecial(t_[pos_], '@')) return false;
    ++pos_;
    return Domain(&mb->domain) && !mb->local.empty();
  }

  // dot-atom / domain-literal / obs-domain (atoms separated by dots).
  bool Domain(std::string* out) {
    if (pos_ < t_.size() && t_[pos_].kind == Token::Kind::kLiteral) {
      *out = t_[pos_++].text;
      return true;
    }
    while (true) {
      if (pos_ >= t_.size() || t_[pos_].kind != Token::Kind::kAtom) return false;
      *out += t_[pos_++].text;
      if (pos_ < t_.size() && IsSpecial(t_[pos_], '.')) {
        out->push_back('.');
        ++pos_;
        continue;
      }
      return true;
    }
  }

  // The display name: words joined by single spaces, encoded words decoded
  // (RFC 2047 5(3): only as whole atoms of a phrase, never inside quotes).
  std::string Phrase(size_t start, size_t end) const {
    std::string raw;
    bool prev_encoded = false;
    for (size_t i = start; i < end; ++i) {
      const Token& t = t_[i];
      bool encoded = t.kind == Token::Kind::kAtom && IsEncodedWord(t.text);
      if (i > start && t.space_before && !(encoded && prev_encoded)) {
        raw.push_back(' ');
      }
      raw += encoded ? DecodeEncodedWords(t.text) : t.text;
      prev_encoded = encoded;
    }
    return raw;
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// One encoded word's payload, or nullopt when malformed.
std::optional<std::string> DecodeWord(std::string_view word) {
  // =?charset?encoding?text?=  (RFC 2231 adds "*language" to the charset).
  std::string_view inner = word.substr(2, word.size() - 4);
  size_t q1 = inner.find('?');
  if (q1 == std::string_view::npos || q1 == 0) return std::nullopt;
  size_t q2 = inner.find('?', q1 + 1);
  if (q2 != q1 + 2) return std::nullopt;
  std::string_view cs = inner.substr(0, q1);
  std::string charset = ToLower(cs.substr(0, cs.find('*')));
  char enc = inner[q1 + 1];
  std::string_view text = inner.substr(q2 + 1);
  if (text.find('?') != std::string_view::npos) return std::nullopt;
  std::string bytes;
  if (enc == 'B' || enc == 'b') {
    auto decoded = Base64Decode(text);
    if (!decoded) return std::nullopt;
    bytes = std::move(*decoded);
  } else if (enc == 'Q' || enc == 'q') {
    // RFC 2047 4.2: "_" is a space, "=XX" an octet.
    for (size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (c == '_') {
        bytes.push_back(' ');
      } else if (c == '=') {
        if (i + 2 >= text.size()) return std::nullopt;
        int hi = HexValue(text[i + 1]), lo = HexValue(text[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        bytes.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
      } else {
        bytes.push_back(c);
      }
    }
  } else {
    return std::nullopt;
  }
  if (charset == "iso-8859-1" || charset == "latin1") {
    std::string utf8;
    for (unsigned char c : bytes) {
      if (c < 0x80) {
        utf8.push_back(static_cast<char>(c));
      } else {
        utf8.push_back(static_cast<char>(0xC0 | (c >> 6)));
        utf8.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
    }
    return utf8;
  }
  return bytes;
}

}  // namespace

std::string DecodeEncodedWords(std::string_view phrase) {
  std::string out;
  size_t i = 0;
  bool last_was_word = false;
  while (i < phrase.size()) {
    size_t start = phrase.find("=?", i);
    if (start == std::string_view::npos) break;
    // An encoded word runs to "?=" after its charset and encoding fields.
    size_t q1 = phrase.find('?', start + 2);
    size_t q2 = q1 == std::string_view::npos ? q1 : phrase.find('?', q1 + 1);
    size_t end = q2 == std::string_view::npos ? q2 : phrase.find("?=", q2 + 1);
    if (end == std::string_view::npos) break;
    std::string_view gap = phrase.substr(i, start - i);
    auto decoded = DecodeWord(phrase.substr(start, end + 2 - start));
    bool blank = gap.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!decoded) {
      out.append(phrase.substr(i, end + 2 - i));
      last_was_word = false;
    } else {
      // RFC 2047 6.2: whitespace between adjacent encoded words vanishes.
      if (!(last_was_word && blank)) out.append(gap);
      out += *decoded;
      last_was_word = true;
    }
    i = end + 2;
  }
  out.append(phrase.substr(i));
  return out;
}

std::optional<std::vector<HeaderMailbox>> ParseAddressList(
    std::string_view body) {
  std::vector<Token> tokens;
  if (!Tokenize(body, &tokens)) return std::nullopt;
  return ListParser(std::move(tokens)).Parse();
}

std::vector<HeaderField> SplitHeaderFields(std::string_view block) {
  std::vector<HeaderField> out;
  bool continuing = false;  // the previous line started a kept field
  size_t pos = 0;
  while (pos < block.size()) {
    size_t eol = block.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = block.size();
    std::string_view line = block.substr(pos, eol - pos);
    pos = eol + 2;
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      if (continuing) out.back().value.append(line);
      continue;
    }
    size_t colon = line.find(':');
    continuing = colon != std::string_view::npos;
    if (!continuing) continue;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
      name.remove_suffix(1);
    }
    out.push_back({std::string(name), std::string(line.substr(colon + 1))});
  }
  return out;
}

}  // namespace tern::smtp
