// The RFC5322.From domain that DMARC evaluates (RFC 7489 6.6.1), read from
// a message's header section. A small RFC 5322 3.4 reader of its own: the
// mailauth layer may not use the protocol layer's address parser.
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "mailauth/dmarc.h"

namespace tern::mailauth {
namespace {

// The unfolded bodies of every field named `name` (RFC 5322 2.2.3), up to
// the first empty line.
std::vector<std::string> FieldBodies(std::string_view header,
                                     std::string_view name) {
  std::vector<std::string> bodies;
  bool in_match = false;
  while (!header.empty()) {
    size_t eol = header.find('\n');
    std::string_view line = header.substr(0, eol);
    header = eol == std::string_view::npos ? std::string_view()
                                            : header.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the end of the header section
    if (line[0] == ' ' || line[0] == '\t') {
      if (in_match) bodies.back().append(line);
      continue;
    }
    in_match = false;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    // RFC 5322 4.5.1 (obs-optional) allows WSP before the colon.
    if (IEquals(Trim(line.substr(0, colon)), name)) {
      in_match = true;
      bodies.emplace_back(line.substr(colon + 1));
    }
  }
  return bodies;
}

enum class Kind { kAtom, kQuoted, kLiteral, kSpecial };

struct Token {
  Kind kind;
  char special = 0;   // for kSpecial
  std::string text;   // atoms, quoted-string contents, literals
};

// RFC 5322 3.2.3 atext, with RFC 6532's UTF-8 octets.
bool IsAtext(unsigned char c) {
  if (c >= 0x80) return true;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

// Atoms, quoted strings, domain literals and specials, with whitespace and
// (nested) comments dropped: RFC 5322 allows CFWS between all of them.
Result<std::vector<Token>> Tokenize(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
    } else if (c == '(') {
      int depth = 0;
      while (i < s.size()) {
        char d = s[i];
        if (d == '\\') {
          i += 2;
          continue;
        }
        if (d == '(') ++depth;
        if (d == ')' && --depth == 0) break;
        ++i;
      }
      if (i >= s.size()) return Err("unterminated comment");
      ++i;
    } else if (c == '"' || c == '[') {
      char close = c == '"' ? '"' : ']';
      Token t{c == '"' ? Kind::kQuoted : Kind::kLiteral};
      ++i;
      while (i < s.size() && s[i] != close) {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        if (c == '[' && s[i] == '[') return Err("'[' inside a domain literal");
        t.text += s[i++];
      }
      if (i >= s.size()) return Err("unterminated quoted string or literal");
      ++i;
      out.push_back(std::move(t));
    } else if (IsAtext(c)) {
      Token t{Kind::kAtom};
      while (i < s.size() && IsAtext(static_cast<unsigned char>(s[i]))) {
        t.text += s[i++];
      }
      out.push_back(std::move(t));
    } else if (std::string_view("<>:;@,.").find(static_cast<char>(c)) !=
               std::string_view::npos) {
      out.push_back(Token{Kind::kSpecial, static_cast<char>(c)});
      ++i;
    } else {
      return Err("unexpected character in the From field");
    }
  }
  return out;
}

bool IsSpecial(const Token& t, char c) {
  return t.kind == Kind::kSpecial && t.special == c;
}

// word *("." word), the local part (RFC 5322 3.4.1, with 4.4's obsolete
// CFWS around the dots already gone).
bool IsLocalPart(const std::vector<Token>& t, size_t begin, size_t end) {
  if (begin >= end) return false;
  for (size_t i = begin; i < end; ++i) {
    bool word_slot = (i - begin) % 2 == 0;
    bool is_word = t[i].kind == Kind::kAtom || t[i].kind == Kind::kQuoted;
    if (word_slot != is_word) return false;
    if (!word_slot && !IsSpecial(t[i], '.')) return false;
  }
  return (end - begin) % 2 == 1;
}

// local-part "@" domain, giving the domain as a lower-case DNS name.
Result<std::string> AddrSpecDomain(const std::vector<Token>& t, size_t begin,
                                   size_t end) {
  size_t at = end;
  for (size_t i = begin; i < end; ++i) {
    if (IsSpecial(t[i], '@')) {
      if (at != end) return Err("two '@' in the From address");
      at = i;
    }
  }
  if (at == end) return Err("the From address has no domain");
  if (!IsLocalPart(t, begin, at)) return Err("invalid local part in From");
  if (at + 1 == end) return Err("the From address has no domain");
  if (t[at + 1].kind == Kind::kLiteral) {
    return Err("the From address has an address literal, not a domain");
  }
  std::string domain;
  for (size_t i = at + 1; i < end; ++i) {
    bool label_slot = (i - at - 1) % 2 == 0;
    if (label_slot && t[i].kind == Kind::kAtom) {
      domain += t[i].text;
    } else if (!label_slot && IsSpecial(t[i], '.')) {
      domain += '.';
    } else {
      return Err("invalid domain in the From address");
    }
  }
  if (domain.back() == '.') return Err("invalid domain in the From address");
  // Only ASCII names can be looked up as they are; U-labels would need
  // IDNA (RFC 5891) first, which this layer does not have.
  if (!IsDnsDomainName(domain)) {
    return Err("the From domain is not an ASCII DNS name");
  }
  return ToLower(domain);
}

// One mailbox (RFC 5322 3.4): name-addr or addr-spec.
Result<std::string> MailboxDomain(const std::vector<Token>& t, size_t begin,
                                  size_t end) {
  size_t open = end;
  for (size_t i = begin; i < end; ++i) {
    if (IsSpecial(t[i], '<')) {
      open = i;
      break;
    }
  }
  if (open == end) return AddrSpecDomain(t, begin, end);
  // display-name: words and, as obs-phrase allows, dots.
  for (size_t i = begin; i < open; ++i) {
    if (t[i].kind != Kind::kAtom && t[i].kind != Kind::kQuoted &&
        !IsSpecial(t[i], '.')) {
      return Err("invalid display name in From");
    }
  }
  if (!IsSpecial(t[end - 1], '>')) return Err("unclosed '<' in From");
  size_t inner = open + 1;
  size_t inner_end = end - 1;
  // RFC 5322 4.4 obs-route ("<@relay,@relay:user@domain>") is skipped.
  if (inner < inner_end && IsSpecial(t[inner], '@')) {
    while (inner < inner_end && !IsSpecial(t[inner], ':')) ++inner;
    if (inner == inner_end) return Err("invalid route in From");
    ++inner;
  }
  for (size_t i = inner; i < inner_end; ++i) {
    if (t[i].kind == Kind::kSpecial && t[i].special != '@' &&
        t[i].special != '.') {
      return Err("invalid address in From");
    }
  }
  return AddrSpecDomain(t, inner, inner_end);
}

}  // namespace

Result<std::string> FromDomainOfHeader(std::string_view header_section) {
  std::vector<std::string> bodies = FieldBodies(header_section, "From");
  if (bodies.empty()) return Err("no From field");
  if (bodies.size() > 1) return Err("more than one From field");
  auto tokens = Tokenize(bodies[0]);
  if (!tokens) return tl::unexpected(tokens.error());
  const std::vector<Token>& t = *tokens;

  // Mailboxes are separated by commas outside angle brackets (obs-route
  // has commas inside); empty elements are RFC 5322 4.4 obs-mbox-list.
  std::vector<std::pair<size_t, size_t>> mailboxes;
  size_t start = 0;
  bool in_angle = false;
  for (size_t i = 0; i <= t.size(); ++i) {
    if (i < t.size()) {
      if (IsSpecial(t[i], '<')) {
        if (in_angle) return Err("nested '<' in From");
        in_angle = true;
      } else if (IsSpecial(t[i], '>')) {
        if (!in_angle) return Err("unexpected '>' in From");
        in_angle = false;
      } else if (!in_angle && (IsSpecial(t[i], ':') || IsSpecial(t[i], ';'))) {
        // A group has no single author to evaluate.
        return Err("group syntax in From");
      }
      if (in_angle || !IsSpecial(t[i], ',')) continue;
    }
    if (i > start) mailboxes.emplace_back(start, i);
    start = i + 1;
  }
  if (in_angle) return Err("unclosed '<' in From");
  if (mailboxes.empty()) return Err("From has no address");
  // RFC 7489 6.6.1: several authors mean several domains to evaluate.
  if (mailboxes.size() > 1) return Err("From has more than one address");
  return MailboxDomain(t, mailboxes[0].first, mailboxes[0].second);
}

}  // namespace tern::mailauth
