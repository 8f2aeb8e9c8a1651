// SPF (RFC 7208): the record and macro parsers, macro expansion, and
// check_host() as a coroutine over dns::Resolver. Section numbers below are
// RFC 7208's unless another RFC is named.
#include "mailauth/spf.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <utility>

#include "common/strings.h"

// g++ 12 inlines the coroutine ramps below into one another and then
// reports asio's frame allocation (aligned_alloc inside its operator new)
// as mismatched with its operator delete (which frees it with free()): a
// false positive, since both go through asio's own pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace tern::mailauth {
namespace {

bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsAlpha(c) || IsDigit(c); }
char LowerChar(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
bool IsVisible(char c) {
  auto u = static_cast<unsigned char>(c);
  return u >= 0x21 && u <= 0x7e;
}

// Untrusted text (records, names from DNS or the client) made safe for a
// log line: printable ASCII stays, every other octet becomes \xNN.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

std::string CharName(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7f) return std::string("\"") + c + "\"";
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", u);
  return buf;
}

// 7.1: macro-literal = %x21-24 / %x26-7E (visible ASCII except "%").
bool IsMacroLiteral(char c) { return IsVisible(c) && c != '%'; }

// 7.1: delimiter = "." / "-" / "+" / "," / "/" / "_" / "=".
bool IsDelimiter(char c) {
  return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' ||
         c == '=';
}

// 7.1: c, r and t are only for explanation strings; the grammar's
// macro-letter still lists them, so unknown modifiers may hold them.
bool LetterAllowed(char lower, MacroUse use) {
  std::string_view allowed =
      use == MacroUse::kDomainSpec ? "slodipvh" : "slodipvhcrt";
  return allowed.find(lower) != std::string_view::npos;
}

// 7.1: toplabel = ( *alphanum ALPHA *alphanum ) /
//                 ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
bool IsTopLabel(std::string_view s) {
  if (s.empty()) return false;
  bool alpha = false, hyphen = false;
  for (char c : s) {
    if (c == '-') {
      hyphen = true;
    } else if (IsAlpha(c)) {
      alpha = true;
    } else if (!IsDigit(c)) {
      return false;
    }
  }
  if (hyphen) return IsAlnum(s.front()) && IsAlnum(s.back());
  return alpha;
}

// 5.6: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), at most 32; the
// ip6 one at most 128. Leading zeros are refused like those of an ip4
// address ("/032").
Result<int> ParseCidrLength(std::string_view digits, int max) {
  if (digits.empty()) return Err("missing prefix length after \"/\"");
  if (!std::all_of(digits.begin(), digits.end(), IsDigit))
    return Err("prefix length \"" + std::string(digits) + "\" is not a number");
  if (digits.size() > 1 && digits[0] == '0')
    return Err("prefix length \"" + std::string(digits) +
               "\" has a leading zero");
  if (digits.size() > 3 || std::stoi(std::string(digits)) > max)
    return Err("prefix length " + std::string(digits) + " is larger than " +
               std::to_string(max));
  return std::stoi(std::string(digits));
}

// 5.3, 5.4: dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ],
// the whole of `text`.
Result<void> ParseDualCidr(std::string_view text, int* prefix4, int* prefix6) {
  size_t i = 0;
  if (text.size() >= 1 && text[0] == '/' &&
      !(text.size() >= 2 && text[1] == '/')) {
    size_t j = 1;
    while (j < text.size() && IsDigit(text[j])) ++j;
    auto p = ParseCidrLength(text.substr(1, j - 1), 32);
    if (!p) return tl::unexpected(p.error());
    *prefix4 = *p;
    i = j;
  }
  if (i < text.size()) {
    if (text.substr(i, 2) != "//")
      return Err("\"" + std::string(text) +
                 "\" is not \"/ip4-length\", \"//ip6-length\" or both");
    auto p = ParseCidrLength(text.substr(i + 2), 128);
    if (!p) return tl::unexpected(p.error());
    *prefix6 = *p;
  }
  return {};
}

// Splits "domain-spec[/n][//m]" of an a or mx mechanism. A domain-spec may
// itself hold "/" ("a:foo/bar.example.com"), so the lengths are only
// taken from the end, and only when they are all digits.
std::pair<std::string_view, std::string_view> SplitDualCidr(
    std::string_view arg) {
  auto first_trailing_digit = [](std::string_view s) {
    size_t k = s.size();
    while (k > 0 && IsDigit(s[k - 1])) --k;
    return k;
  };
  std::string_view d = arg;
  size_t k = first_trailing_digit(d);
  if (k < d.size() && k >= 2 && d[k - 1] == '/' && d[k - 2] == '/')
    d = d.substr(0, k - 2);
  k = first_trailing_digit(d);
  if (k < d.size() && k >= 1 && d[k - 1] == '/' && !(k >= 2 && d[k - 2] == '/'))
    d = d.substr(0, k - 1);
  return {d, arg.substr(d.size())};
}

std::string IpText(const IpOctets& ip, bool ipv4) {
  char buf[INET6_ADDRSTRLEN];
  if (ipv4) {
    inet_ntop(AF_INET, ip.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
  }
  return buf;
}

bool IsIpv4Mapped(const IpOctets& ip) {
  for (int i = 0; i < 10; ++i) {
    if (ip[i] != 0) return false;
  }
  return ip[10] == 0xff && ip[11] == 0xff;
}

bool PrefixMatch(const IpOctets& a, const IpOctets& b, int bits) {
  int full = bits / 8;
  for (int i = 0; i < full; ++i) {
    if (a[i] != b[i]) return false;
  }
  int rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

const char kHex[] = "0123456789abcdef";

// 7.3: "i" for IPv6 is the 32 nibbles separated by dots, for %{ir}; the
// RFC's own example (7.4) writes them in lower case.
std::string DottedNibbles(const IpOctets& ip) {
  std::string out;
  for (uint8_t octet : ip) {
    if (!out.empty()) out += '.';
    out += kHex[octet >> 4];
    out += '.';
    out += kHex[octet & 0xf];
  }
  return out;
}

// 7.3: the unreserved set of RFC 3986 2.3 stays, everything else is %XX.
std::string UrlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (IsAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", u);
      out += buf;
    }
  }
  return out;
}

// 7.3: split on the delimiters, reverse, keep the right-hand parts, and
// join with ".".
std::string Transform(const std::string& value, const MacroPiece& m) {
  if (m.keep == 0 && !m.reverse && m.delimiters.empty()) return value;
  std::string_view delims = m.delimiters.empty()
                                ? std::string_view(".")
                                : std::string_view(m.delimiters);
  std::vector<std::string_view> parts;
  std::string_view rest = value;
  while (true) {
    size_t at = rest.find_first_of(delims);
    parts.push_back(rest.substr(0, at));
    if (at == std::string_view::npos) break;
    rest.remove_prefix(at + 1);
  }
  if (m.reverse) std::reverse(parts.begin(), parts.end());
  size_t first = 0;
  if (m.keep > 0 && static_cast<size_t>(m.keep) < parts.size())
    first = parts.size() - static_cast<size_t>(m.keep);
  std::string out;
  for (size_t i = first; i < parts.size(); ++i) {
    if (i > first) out += '.';
    out += parts[i];
  }
  return out;
}

std::string MacroValue(char letter, const MacroValues& v) {
  size_t at = v.sender.rfind('@');
  if (letter == 's') return v.sender;
  if (letter == 'l') {
    std::string local = at == std::string::npos ? "" : v.sender.substr(0, at);
    return local.empty() ? "postmaster" : local;
  }
  if (letter == 'o')
    return at == std::string::npos ? v.sender : v.sender.substr(at + 1);
  if (letter == 'd') return v.domain;
  if (letter == 'i') return v.ipv4 ? IpText(v.ip, true) : DottedNibbles(v.ip);
  if (letter == 'p') return v.validated.empty() ? "unknown" : v.validated;
  if (letter == 'v') return v.ipv4 ? "in-addr" : "ip6";
  if (letter == 'h') return v.helo;
  if (letter == 'c') return IpText(v.ip, v.ipv4);
  if (letter == 'r') return v.receiver.empty() ? "unknown" : v.receiver;
  if (letter == 't') return std::to_string(v.now);
  return "";
}

// Parses one term (a directive or a modifier) into `record`.
Result<void> ParseTerm(std::string_view term, SpfRecord* record) {
  for (char c : term) {
    // 4.6.1, 12: terms are visible US-ASCII separated by spaces; a tab,
    // CR or any 8-bit octet is a syntax error, not a separator.
    if (!IsVisible(c))
      return Err("character " + CharName(c) + " is not allowed in a term");
  }
  SpfQualifier qualifier = SpfQualifier::kPass;
  bool qualified = true;
  switch (term[0]) {
    case '+':
      qualifier = SpfQualifier::kPass;
      break;
    case '-':
      qualifier = SpfQualifier::kFail;
      break;
    case '~':
      qualifier = SpfQualifier::kSoftFail;
      break;
    case '?':
      qualifier = SpfQualifier::kNeutral;
      break;
    default:
      qualified = false;
  }
  size_t start = qualified ? 1 : 0;
  size_t end = start;
  // A.1: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ). Mechanism
  // names are a subset, so one scan serves both.
  if (end < term.size() && IsAlpha(term[end])) {
    ++end;
    while (end < term.size() && (IsAlnum(term[end]) || term[end] == '-' ||
                                 term[end] == '_' || term[end] == '.'))
      ++end;
  }
  std::string_view name = term.substr(start, end - start);
  std::string_view rest = term.substr(end);
  std::string lname = ToLower(name);

  if (!rest.empty() && rest[0] == '=') {
    if (qualified) return Err("a modifier takes no qualifier");
    if (name.empty())
      return Err("a modifier name must start with a letter (RFC 7208 A)");
    std::string_view value = rest.substr(1);
    if (lname == "redirect" || lname == "exp") {
      // 6: each at most once. 6.1, 6.2: the value is a domain-spec; an
      // invalid one is an error, not an unknown modifier.
      std::optional<MacroString>& slot =
          lname == "redirect" ? record->redirect : record->exp;
      if (slot) return Err(lname + "= appears more than once (RFC 7208 6)");
      auto spec = ParseDomainSpec(value);
      if (!spec) return tl::unexpected(spec.error());
      slot = std::move(*spec);
      return {};
    }
    // 6: unknown modifiers are ignored, but must still parse (A).
    auto macro = ParseMacroString(value, MacroUse::kModifierValue);
    if (!macro) return tl::unexpected(macro.error());
    record->unknown.push_back(
        SpfModifier{std::string(name), std::move(*macro)});
    return {};
  }

  SpfMechanism m;
  m.qualifier = qualifier;
  using T = SpfMechanismType;
  if (lname == "all") {
    m.type = T::kAll;
  } else if (lname == "include") {
    m.type = T::kInclude;
  } else if (lname == "a") {
    m.type = T::kA;
  } else if (lname == "mx") {
    m.type = T::kMx;
  } else if (lname == "ptr") {
    m.type = T::kPtr;
  } else if (lname == "ip4") {
    m.type = T::kIp4;
  } else if (lname == "ip6") {
    m.type = T::kIp6;
  } else if (lname == "exists") {
    m.type = T::kExists;
  } else if (name.empty()) {
    return Err("not a mechanism or modifier");
  } else {
    return Err("unknown mechanism \"" + std::string(name) + "\"");
  }

  if (m.type == T::kAll) {
    // 5.1: all = "all", nothing after it.
    if (!rest.empty()) return Err("\"all\" takes no argument");
  } else if (m.type == T::kInclude || m.type == T::kExists) {
    // 5.2, 5.7: a domain-spec is required, and there is no CIDR length.
    if (rest.empty() || rest[0] != ':')
      return Err(lname + " needs \":domain\"");
    auto spec = ParseDomainSpec(rest.substr(1));
    if (!spec) return tl::unexpected(spec.error());
    m.target = std::move(*spec);
  } else if (m.type == T::kA || m.type == T::kMx) {
    // 5.3, 5.4: [ ":" domain-spec ] [ dual-cidr-length ].
    std::string_view cidr = rest;
    if (!rest.empty() && rest[0] == ':') {
      auto [domain, lengths] = SplitDualCidr(rest.substr(1));
      auto spec = ParseDomainSpec(domain);
      if (!spec) return tl::unexpected(spec.error());
      m.target = std::move(*spec);
      cidr = lengths;
    } else if (!rest.empty() && rest[0] != '/') {
      return Err("unexpected " + CharName(rest[0]) + " after \"" + lname +
                 "\"");
    }
    auto ok = ParseDualCidr(cidr, &m.prefix4, &m.prefix6);
    if (!ok) return tl::unexpected(ok.error());
  } else if (m.type == T::kPtr) {
    // 5.5: [ ":" domain-spec ], no CIDR length.
    if (!rest.empty()) {
      if (rest[0] != ':') return Err("\"ptr\" takes \":domain\" only");
      auto spec = ParseDomainSpec(rest.substr(1));
      if (!spec) return tl::unexpected(spec.error());
      m.target = std::move(*spec);
    }
  } else {
    // 5.6: ip4 ":" ip4-network [ ip4-cidr-length ], the same for ip6. The
    // address is written in full ("ip4:192.0.2" is an error).
    bool v4 = m.type == T::kIp4;
    if (rest.empty() || rest[0] != ':')
      return Err(lname + " needs \":address\"");
    std::string_view arg = rest.substr(1);
    size_t slash = arg.find('/');
    std::string_view addr = arg.substr(0, slash);
    bool has_colon = addr.find(':') != std::string_view::npos;
    auto octets = ParseIpAddress(addr);
    if (!octets || has_colon == v4)
      return Err("\"" + std::string(addr) + "\" is not an " +
                 (v4 ? "IPv4" : "IPv6") + " address");
    m.network = *octets;
    if (slash != std::string_view::npos) {
      auto p = ParseCidrLength(arg.substr(slash + 1), v4 ? 32 : 128);
      if (!p) return tl::unexpected(p.error());
      (v4 ? m.prefix4 : m.prefix6) = *p;
    }
  }
  record->mechanisms.push_back(std::move(m));
  return {};
}

char QualifierChar(SpfQualifier q) {
  switch (q) {
    case SpfQualifier::kFail:
      return '-';
    case SpfQualifier::kSoftFail:
      return '~';
    case SpfQualifier::kNeutral:
      return '?';
    case SpfQualifier::kPass:
      break;
  }
  return '+';
}

const char* MechanismName(SpfMechanismType t) {
  switch (t) {
    case SpfMechanismType::kAll:
      return "all";
    case SpfMechanismType::kInclude:
      return "include";
    case SpfMechanismType::kA:
      return "a";
    case SpfMechanismType::kMx:
      return "mx";
    case SpfMechanismType::kPtr:
      return "ptr";
    case SpfMechanismType::kIp4:
      return "ip4";
    case SpfMechanismType::kIp6:
      return "ip6";
    case SpfMechanismType::kExists:
      return "exists";
  }
  return "?";
}

}  // namespace

const char* SpfResultName(SpfResult result) {
  switch (result) {
    case SpfResult::kNone:
      return "none";
    case SpfResult::kNeutral:
      return "neutral";
    case SpfResult::kPass:
      return "pass";
    case SpfResult::kFail:
      return "fail";
    case SpfResult::kSoftFail:
      return "softfail";
    case SpfResult::kTempError:
      return "temperror";
    case SpfResult::kPermError:
      return "permerror";
  }
  return "none";
}

// ---------------------------------------------------------------- macros

Result<MacroString> ParseMacroString(std::string_view text, MacroUse use) {
  MacroString out;
  auto add_literal = [&out](char c) {
    if (out.empty() || out.back().kind != MacroPiece::Kind::kLiteral)
      out.emplace_back();
    out.back().text += c;
  };
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c != '%') {
      // 6.2: explain-string = *( macro-string / SP ).
      if (!IsMacroLiteral(c) && !(c == ' ' && use == MacroUse::kExplanation))
        return Err("character " + CharName(c) + " is not allowed here");
      add_literal(c);
      ++i;
      continue;
    }
    // 7.1: "%" is followed by "{", "%", "_" or "-"; anything else is a
    // syntax error.
    if (i + 1 >= text.size())
      return Err("\"%\" at the end (a percent sign is written \"%%\")");
    char next = text[i + 1];
    if (next == '%' || next == '_' || next == '-') {
      MacroPiece p;
      p.kind = MacroPiece::Kind::kEscape;
      p.text = next == '%' ? "%" : next == '_' ? " " : "%20";
      out.push_back(std::move(p));
      i += 2;
      continue;
    }
    if (next != '{')
      return Err("\"%" + std::string(1, next) +
                 "\" is not a macro (after \"%\" comes \"{\", \"%\", \"_\" "
                 "or \"-\")");
    size_t j = i + 2;
    if (j >= text.size()) return Err("macro not closed by \"}\"");
    char letter = text[j];
    char lower = LowerChar(letter);
    if (!IsAlpha(letter) || !LetterAllowed(lower, use)) {
      return Err("\"" + Printable(std::string_view(&letter, 1)) +
                 "\" is not a macro letter here (RFC 7208 7.1: " +
                 (use == MacroUse::kDomainSpec ? "s l o d i p v h"
                                               : "s l o d i p v h c r t") +
                 ")");
    }
    MacroPiece p;
    p.kind = MacroPiece::Kind::kMacro;
    p.letter = lower;
    p.url_escape = letter != lower;
    ++j;
    // 7.1: transformers = *DIGIT [ "r" ]; a count of parts is at least 1.
    size_t digits = j;
    int keep = 0;
    while (j < text.size() && IsDigit(text[j])) {
      keep = std::min(keep * 10 + (text[j] - '0'), 1000);
      ++j;
    }
    if (j > digits) {
      if (keep == 0) return Err("a macro keeps at least one part, not 0");
      // A name has at most 127 labels: larger counts all mean "all".
      p.keep = std::min(keep, 128);
    }
    if (j < text.size() && (text[j] == 'r' || text[j] == 'R')) {
      p.reverse = true;
      ++j;
    }
    while (j < text.size() && IsDelimiter(text[j])) p.delimiters += text[j++];
    if (j >= text.size() || text[j] != '}')
      return Err("macro not closed by \"}\"");
    out.push_back(std::move(p));
    i = j + 1;
  }
  return out;
}

Result<MacroString> ParseDomainSpec(std::string_view text) {
  if (text.empty()) return Err("empty domain-spec");
  auto macros = ParseMacroString(text, MacroUse::kDomainSpec);
  if (!macros) return macros;
  // 7.1: domain-end = ( "." toplabel [ "." ] ) / macro-expand.
  const MacroPiece& last = macros->back();
  if (last.kind != MacroPiece::Kind::kLiteral) return macros;
  std::string_view tail = last.text;
  if (tail.back() == '.') tail.remove_suffix(1);
  size_t dot = tail.rfind('.');
  if (dot == std::string_view::npos || !IsTopLabel(tail.substr(dot + 1))) {
    return Err("\"" + std::string(text) +
               "\" does not end in a macro or in a dot and a top-level "
               "label (RFC 7208 7.1)");
  }
  return macros;
}

std::string FormatMacroString(const MacroString& macros) {
  std::string out;
  for (const MacroPiece& p : macros) {
    if (p.kind == MacroPiece::Kind::kLiteral) {
      out += p.text;
    } else if (p.kind == MacroPiece::Kind::kEscape) {
      out += p.text == "%" ? "%%" : p.text == " " ? "%_" : "%-";
    } else {
      out += "%{";
      out += p.url_escape ? static_cast<char>(p.letter - 'a' + 'A') : p.letter;
      if (p.keep > 0) out += std::to_string(p.keep);
      if (p.reverse) out += 'r';
      out += p.delimiters;
      out += '}';
    }
  }
  return out;
}

bool UsesMacroLetter(const MacroString& macros, char letter) {
  return std::any_of(
      macros.begin(), macros.end(), [letter](const MacroPiece& p) {
        return p.kind == MacroPiece::Kind::kMacro && p.letter == letter;
      });
}

Result<std::string> ExpandMacros(const MacroString& macros,
                                 const MacroValues& values) {
  std::string out;
  for (const MacroPiece& p : macros) {
    if (p.kind != MacroPiece::Kind::kMacro) {
      out += p.text;
    } else {
      std::string value = Transform(MacroValue(p.letter, values), p);
      // 7.3: upper-case macros expand like lower-case ones, then are
      // URL-escaped.
      out += p.url_escape ? UrlEscape(value) : value;
    }
    if (out.size() > kMaxExpansion)
      return Err("macro expansion longer than " +
                 std::to_string(kMaxExpansion) + " octets");
  }
  return out;
}

// ---------------------------------------------------------------- records

bool IsSpfRecord(std::string_view txt) {
  return txt.size() >= 6 && IEquals(txt.substr(0, 6), "v=spf1") &&
         (txt.size() == 6 || txt[6] == ' ');
}

Result<SpfRecord> ParseSpfRecord(std::string_view text) {
  if (!IsSpfRecord(text)) return Err("does not start with \"v=spf1\"");
  SpfRecord record;
  // 4.6.1, 12: record = version terms *SP; terms = *( 1*SP ( directive /
  // modifier ) ). Every term is checked before any is evaluated (4.6).
  std::string_view rest = text.substr(6);
  size_t i = 0;
  while (i < rest.size()) {
    if (rest[i] == ' ') {
      ++i;
      continue;
    }
    size_t end = std::min(rest.find(' ', i), rest.size());
    std::string_view term = rest.substr(i, end - i);
    auto ok = ParseTerm(term, &record);
    if (!ok) return Err("\"" + Printable(term) + "\": " + ok.error().message);
    i = end;
  }
  return record;
}

std::string FormatMechanism(const SpfMechanism& m) {
  std::string out;
  if (m.qualifier != SpfQualifier::kPass) out += QualifierChar(m.qualifier);
  out += MechanismName(m.type);
  if (m.type == SpfMechanismType::kIp4 || m.type == SpfMechanismType::kIp6) {
    bool v4 = m.type == SpfMechanismType::kIp4;
    out += ':' + IpText(m.network, v4);
    if (v4 && m.prefix4 != 32) out += '/' + std::to_string(m.prefix4);
    if (!v4 && m.prefix6 != 128) out += '/' + std::to_string(m.prefix6);
    return out;
  }
  if (m.target) out += ':' + FormatMacroString(*m.target);
  if (m.type == SpfMechanismType::kA || m.type == SpfMechanismType::kMx) {
    if (m.prefix4 != 32) out += '/' + std::to_string(m.prefix4);
    if (m.prefix6 != 128) out += "//" + std::to_string(m.prefix6);
  }
  return out;
}

std::string FormatSpfRecord(const SpfRecord& record) {
  std::string out = "v=spf1";
  for (const SpfMechanism& m : record.mechanisms)
    out += ' ' + FormatMechanism(m);
  if (record.redirect)
    out += " redirect=" + FormatMacroString(*record.redirect);
  if (record.exp) out += " exp=" + FormatMacroString(*record.exp);
  for (const SpfModifier& m : record.unknown)
    out += ' ' + m.name + '=' + FormatMacroString(m.value);
  return out;
}

// ---------------------------------------------------------------- check_host

namespace {

using Clock = std::chrono::steady_clock;

// State shared by one check_host() and all its include/redirect levels:
// the 4.6.4 counters are per evaluation, not per record.
struct Evaluation {
  dns::Resolver* resolver = nullptr;
  MacroValues values;  // `domain` is set per level
  Clock::time_point deadline;
  int dns_terms = 0;
  int void_lookups = 0;
  bool timed_out = false;
  // %{p}: the validated names of the client, looked up once.
  bool have_validated = false;
  std::vector<std::string> validated;
};

struct Verdict {
  SpfResult result = SpfResult::kNone;
  std::string explanation;
  std::string reason;
};

enum class Match { kNo, kYes, kError };

struct MechanismOutcome {
  Match match = Match::kNo;
  SpfResult error = SpfResult::kPermError;  // when kError
  std::string reason;
};

MechanismOutcome Error(SpfResult result, std::string reason) {
  MechanismOutcome out;
  out.match = Match::kError;
  out.error = result;
  out.reason = std::move(reason);
  return out;
}

MechanismOutcome Matched(bool yes) {
  MechanismOutcome out;
  out.match = yes ? Match::kYes : Match::kNo;
  return out;
}

SpfResult ResultOf(SpfQualifier q) {
  switch (q) {
    case SpfQualifier::kFail:
      return SpfResult::kFail;
    case SpfQualifier::kSoftFail:
      return SpfResult::kSoftFail;
    case SpfQualifier::kNeutral:
      return SpfResult::kNeutral;
    case SpfQualifier::kPass:
      break;
  }
  return SpfResult::kPass;
}

// 4.3: the <domain> of check_host() must be a multi-label name with
// labels of 1-63 octets; a domain literal or an IP address is none.
bool IsValidDomain(std::string_view d) {
  if (!d.empty() && d.back() == '.') d.remove_suffix(1);
  if (d.empty() || d.size() > 253) return false;
  std::vector<std::string> labels = Split(d, '.');
  if (labels.size() < 2) return false;
  for (const std::string& label : labels) {
    if (label.empty() || label.size() > 63) return false;
    if (!std::all_of(label.begin(), label.end(), IsVisible)) return false;
  }
  return IsTopLabel(labels.back());
}

// An expanded domain-spec as a name to query: without a trailing dot, cut
// from the left to 253 octets (7.3), nullopt when it still cannot be a
// DNS name (an empty or over-long label), which 4.8 leaves undefined: it
// then matches nothing.
std::optional<std::string> QueryName(std::string name) {
  if (!name.empty() && name.back() == '.') name.pop_back();
  while (name.size() > 253) {
    size_t dot = name.find('.');
    if (dot == std::string::npos) return std::nullopt;
    name.erase(0, dot + 1);
  }
  if (name.empty()) return std::nullopt;
  for (const std::string& label : Split(name, '.')) {
    if (label.empty() || label.size() > 63) return std::nullopt;
  }
  return name;
}

bool SameOrSubdomain(std::string_view name, std::string_view parent) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (!parent.empty() && parent.back() == '.') parent.remove_suffix(1);
  if (IEquals(name, parent)) return true;
  return name.size() > parent.size() &&
         name[name.size() - parent.size() - 1] == '.' &&
         IEquals(name.substr(name.size() - parent.size()), parent);
}

// 5.5: the reverse-mapping name of the client.
std::string ReverseName(const MacroValues& v) {
  if (v.ipv4) {
    return std::to_string(v.ip[15]) + "." + std::to_string(v.ip[14]) + "." +
           std::to_string(v.ip[13]) + "." + std::to_string(v.ip[12]) +
           ".in-addr.arpa";
  }
  std::string nibbles = DottedNibbles(v.ip);
  std::reverse(nibbles.begin(), nibbles.end());
  return nibbles + ".ip6.arpa";
}

dns::RrType AddressType(const Evaluation* ev) {
  return ev->values.ipv4 ? dns::RrType::kA : dns::RrType::kAaaa;
}

bool AnyAddressMatches(const Evaluation* ev,
                       const std::vector<std::string>& addresses, int prefix4,
                       int prefix6) {
  for (const std::string& text : addresses) {
    auto addr = ParseIpAddress(text);
    if (!addr || IsIpv4Mapped(*addr) != ev->values.ipv4) continue;
    int bits = ev->values.ipv4 ? 96 + prefix4 : prefix6;
    if (PrefixMatch(*addr, ev->values.ip, bits)) return true;
  }
  return false;
}

// 4.6.4: counts a void lookup; true when that is one too many.
bool TooManyVoids(Evaluation* ev, const dns::Answer& a,
                  const std::vector<std::string>& records) {
  bool is_void = a.status == dns::Status::kNxDomain ||
                 (a.status == dns::Status::kOk && records.empty());
  return is_void && ++ev->void_lookups > kMaxVoidLookups;
}

constexpr char kTooManyVoids[] =
    "more than 2 DNS lookups found nothing (void lookups, RFC 7208 4.6.4)";

// Every query goes through here so that the time limit (4.6.4) holds for
// the evaluation as a whole.
asio::awaitable<dns::Answer> Query(Evaluation* ev, std::string name,
                                   dns::RrType type) {
  if (Clock::now() >= ev->deadline) {
    ev->timed_out = true;
    dns::Answer late;
    late.status = dns::Status::kTempFail;
    late.error = "SPF time limit reached";
    co_return late;
  }
  dns::Answer answer =
      co_await dns::AsyncQuery(*ev->resolver, name, type, asio::use_awaitable);
  co_return answer;
}

// 5.5: the names among `names` whose addresses include the client's. A
// failed address lookup only drops that name.
asio::awaitable<std::vector<std::string>> Validate(
    Evaluation* ev, std::vector<std::string> names) {
  std::vector<std::string> out;
  for (const std::string& name : names) {
    dns::Answer a = co_await Query(ev, name, AddressType(ev));
    if (a.status == dns::Status::kOk &&
        AnyAddressMatches(ev, a.addresses, 32, 128))
      out.push_back(name);
  }
  co_return out;
}

// 7.3: %{p}, the validated name of the client: <domain> itself, else one
// of its subdomains, else any; "unknown" when there is none.
asio::awaitable<std::string> ValidatedName(Evaluation* ev, std::string domain) {
  if (!ev->have_validated) {
    ev->have_validated = true;
    dns::Answer ptr =
        co_await Query(ev, ReverseName(ev->values), dns::RrType::kPtr);
    if (ptr.status == dns::Status::kOk) {
      // 4.6.4: only the first 10 names are looked at.
      if (ptr.names.size() > kMaxNamesPerLookup)
        ptr.names.resize(kMaxNamesPerLookup);
      ev->validated = co_await Validate(ev, std::move(ptr.names));
    }
  }
  std::string chosen;
  for (const std::string& name : ev->validated) {
    if (IEquals(name, domain)) co_return name;
    if (chosen.empty() && SameOrSubdomain(name, domain)) chosen = name;
  }
  if (chosen.empty() && !ev->validated.empty()) chosen = ev->validated.front();
  co_return chosen;  // empty expands to "unknown"
}

// Expands a target domain-spec (or takes the current domain when there is
// none) into a name to query; nullopt when it cannot be one.
asio::awaitable<std::optional<std::string>> ExpandTarget(
    Evaluation* ev, std::optional<MacroString> target, std::string domain) {
  if (!target) co_return QueryName(domain);
  MacroValues values = ev->values;
  values.domain = domain;
  if (UsesMacroLetter(*target, 'p'))
    values.validated = co_await ValidatedName(ev, domain);
  auto expanded = ExpandMacros(*target, values);
  if (!expanded) co_return std::nullopt;
  co_return QueryName(std::move(*expanded));
}

// 6.2: the explanation for a fail. Any trouble (DNS, not exactly one TXT
// record, bad syntax, non-ASCII) means no explanation, never an error.
asio::awaitable<std::string> Explain(Evaluation* ev, MacroString exp,
                                     std::string domain) {
  std::optional<std::string> name =
      co_await ExpandTarget(ev, std::move(exp), domain);
  if (!name) co_return "";
  dns::Answer a = co_await Query(ev, *name, dns::RrType::kTxt);
  if (a.status != dns::Status::kOk || a.txt.size() != 1) co_return "";
  auto text = ParseMacroString(a.txt[0], MacroUse::kExplanation);
  if (!text) co_return "";
  MacroValues values = ev->values;
  values.domain = domain;
  if (UsesMacroLetter(*text, 'p'))
    values.validated = co_await ValidatedName(ev, domain);
  auto out = ExpandMacros(*text, values);
  if (!out) co_return "";
  // Macro values (a UTF-8 local part, say) may bring in what the literal
  // text could not: the result must still be US-ASCII.
  bool ascii = std::all_of(out->begin(), out->end(),
                           [](char c) { return c == ' ' || IsVisible(c); });
  co_return ascii ? *out : "";
}

asio::awaitable<Verdict> CheckDomain(Evaluation* ev, std::string domain,
                                     bool explain);

asio::awaitable<MechanismOutcome> EvaluateMechanism(Evaluation* ev,
                                                    SpfMechanism m,
                                                    std::string domain) {
  using T = SpfMechanismType;
  if (m.type == T::kAll) co_return Matched(true);
  if (m.type == T::kIp4 || m.type == T::kIp6) {
    // 5.6, 5: an IPv4 client (IPv4-mapped included) is only compared with
    // ip4 networks, an IPv6 client only with ip6 ones.
    bool v4 = m.type == T::kIp4;
    co_return Matched(
        v4 == ev->values.ipv4 &&
        PrefixMatch(m.network, ev->values.ip, v4 ? 96 + m.prefix4 : m.prefix6));
  }
  // 4.6.4: include, a, mx, ptr and exists query DNS; at most 10 of those
  // (with redirect) per evaluation.
  if (++ev->dns_terms > kMaxDnsTerms) {
    co_return Error(SpfResult::kPermError,
                    "more than 10 mechanisms and modifiers that query DNS "
                    "(RFC 7208 4.6.4)");
  }
  const std::string what = "\"" + FormatMechanism(m) + "\"";
  std::optional<std::string> target =
      co_await ExpandTarget(ev, m.target, domain);

  if (m.type == T::kInclude) {
    // 5.2: pass matches; fail, softfail and neutral do not; temperror
    // stays; permerror and none (no record) become permerror. The
    // included domain's exp= is never used (6.2), so it is not fetched.
    if (!target)
      co_return Error(SpfResult::kPermError,
                      what + ": the target is not a valid domain name");
    Verdict v = co_await CheckDomain(ev, *target, false);
    if (v.result == SpfResult::kPass) co_return Matched(true);
    if (v.result == SpfResult::kFail || v.result == SpfResult::kSoftFail ||
        v.result == SpfResult::kNeutral)
      co_return Matched(false);
    if (v.result == SpfResult::kTempError)
      co_return Error(SpfResult::kTempError, what + ": " + v.reason);
    co_return Error(SpfResult::kPermError,
                    what + ": " + SpfResultName(v.result) + ": " + v.reason);
  }

  // A target that cannot be a DNS name matches nothing.
  if (!target) co_return Matched(false);

  if (m.type == T::kA || m.type == T::kExists) {
    // 5.3: an address lookup of the client's type. 5.7: exists always
    // asks for A, even for an IPv6 client, and any answer matches.
    bool exists = m.type == T::kExists;
    dns::Answer a =
        co_await Query(ev, *target, exists ? dns::RrType::kA : AddressType(ev));
    if (a.status == dns::Status::kTempFail)
      co_return Error(
          SpfResult::kTempError,
          what + ": DNS lookup of " + *target + " failed: " + a.error);
    if (TooManyVoids(ev, a, a.addresses))
      co_return Error(SpfResult::kPermError, kTooManyVoids);
    if (exists) co_return Matched(!a.addresses.empty());
    co_return Matched(AnyAddressMatches(ev, a.addresses, m.prefix4, m.prefix6));
  }

  if (m.type == T::kMx) {
    // 5.4: the MX hosts' addresses; never the implicit MX of RFC 5321.
    dns::Answer mx = co_await Query(ev, *target, dns::RrType::kMx);
    if (mx.status == dns::Status::kTempFail)
      co_return Error(
          SpfResult::kTempError,
          what + ": DNS lookup of MX for " + *target + " failed: " + mx.error);
    std::vector<std::string> hosts;
    for (const dns::MxRecord& r : mx.mx) {
      if (!r.exchange.empty()) hosts.push_back(r.exchange);  // RFC 7505
    }
    if (TooManyVoids(ev, mx, hosts))
      co_return Error(SpfResult::kPermError, kTooManyVoids);
    // 4.6.4: more than 10 MX names is the publisher's error. Deciding on
    // the count, not on how far the search got, keeps the result the same
    // whatever order the DNS returns them in.
    if (hosts.size() > static_cast<size_t>(kMaxNamesPerLookup))
      co_return Error(SpfResult::kPermError,
                      what + ": " + *target + " has " +
                          std::to_string(hosts.size()) +
                          " MX records, more than 10 (RFC 7208 4.6.4)");
    for (const std::string& host : hosts) {
      dns::Answer a = co_await Query(ev, host, AddressType(ev));
      if (a.status == dns::Status::kTempFail)
        co_return Error(
            SpfResult::kTempError,
            what + ": DNS lookup of " + host + " failed: " + a.error);
      if (AnyAddressMatches(ev, a.addresses, m.prefix4, m.prefix6))
        co_return Matched(true);
    }
    co_return Matched(false);
  }

  // kPtr, 5.5: a DNS error on the PTR lookup is no match, not an error.
  dns::Answer ptr =
      co_await Query(ev, ReverseName(ev->values), dns::RrType::kPtr);
  if (ptr.status == dns::Status::kTempFail) co_return Matched(false);
  if (TooManyVoids(ev, ptr, ptr.names))
    co_return Error(SpfResult::kPermError, kTooManyVoids);
  // 4.6.4: names past the first 10 are ignored. Only names under the
  // target could match, so only those are validated.
  if (ptr.names.size() > kMaxNamesPerLookup)
    ptr.names.resize(kMaxNamesPerLookup);
  std::vector<std::string> candidates;
  for (const std::string& name : ptr.names) {
    if (SameOrSubdomain(name, *target)) candidates.push_back(name);
  }
  std::vector<std::string> valid = co_await Validate(ev, std::move(candidates));
  co_return Matched(!valid.empty());
}

// check_host() for one domain (4): the top level, an include (explain
// false) or a redirect.
asio::awaitable<Verdict> CheckDomain(Evaluation* ev, std::string domain,
                                     bool explain) {
  Verdict v;
  if (!IsValidDomain(domain)) {
    v.result = SpfResult::kNone;
    v.reason = "\"" + domain + "\" is not a domain name (RFC 7208 4.3)";
    co_return v;
  }
  if (domain.back() == '.') domain.pop_back();  // also for %{d}
  // 4.4: TXT only; type SPF (99) is no longer used (3.1).
  dns::Answer txt = co_await Query(ev, domain, dns::RrType::kTxt);
  if (txt.status == dns::Status::kTempFail) {
    v.result = SpfResult::kTempError;
    v.reason = "DNS lookup of TXT for " + domain + " failed: " + txt.error;
    co_return v;
  }
  if (txt.status == dns::Status::kNxDomain) {
    v.result = SpfResult::kNone;
    v.reason = domain + " does not exist";
    co_return v;
  }
  // 4.5: exactly one record that starts with "v=spf1".
  std::vector<const std::string*> records;
  for (const std::string& t : txt.txt) {
    if (IsSpfRecord(t)) records.push_back(&t);
  }
  if (records.empty()) {
    v.result = SpfResult::kNone;
    v.reason = domain + " has no SPF record";
    co_return v;
  }
  if (records.size() > 1) {
    v.result = SpfResult::kPermError;
    v.reason = domain + " has " + std::to_string(records.size()) +
               " SPF records (RFC 7208 4.5: one at most)";
    co_return v;
  }
  Result<SpfRecord> record = ParseSpfRecord(*records[0]);
  if (!record) {
    v.result = SpfResult::kPermError;
    v.reason = domain + ": " + record.error().message;
    co_return v;
  }

  // 4.6.2: mechanisms in order; the first match decides.
  for (const SpfMechanism& m : record->mechanisms) {
    MechanismOutcome o = co_await EvaluateMechanism(ev, m, domain);
    if (o.match == Match::kError) {
      v.result = o.error;
      v.reason = domain + ": " + o.reason;
      co_return v;
    }
    if (o.match == Match::kYes) {
      v.result = ResultOf(m.qualifier);
      v.reason = domain + ": \"" + FormatMechanism(m) + "\" matched";
      if (v.result == SpfResult::kFail && explain && record->exp)
        v.explanation = co_await Explain(ev, *record->exp, domain);
      co_return v;
    }
  }

  // 6.1: redirect applies when no mechanism matched (with "all" in the
  // record one always does). Its result stands, its exp= replaces ours,
  // and finding no record there is a permerror.
  if (record->redirect) {
    if (++ev->dns_terms > kMaxDnsTerms) {
      v.result = SpfResult::kPermError;
      v.reason = domain +
                 ": more than 10 mechanisms and modifiers that query DNS "
                 "(RFC 7208 4.6.4)";
      co_return v;
    }
    std::optional<std::string> target =
        co_await ExpandTarget(ev, record->redirect, domain);
    if (!target) {
      v.result = SpfResult::kPermError;
      v.reason = domain + ": redirect target is not a valid domain name";
      co_return v;
    }
    Verdict r = co_await CheckDomain(ev, *target, explain);
    if (r.result == SpfResult::kNone) {
      r.result = SpfResult::kPermError;
      r.reason = domain + ": redirect=" + *target + ": " + r.reason;
    }
    co_return r;
  }
  // 4.7: nothing matched and no redirect.
  v.result = SpfResult::kNeutral;
  v.reason = domain + ": no mechanism matched (the default is neutral)";
  co_return v;
}

}  // namespace

asio::awaitable<SpfOutcome> CheckHost(dns::Resolver& resolver,
                                      SpfRequest request) {
  SpfOutcome outcome;
  Evaluation ev;
  ev.resolver = &resolver;
  ev.deadline = Clock::now() + request.time_limit;

  // 2.3, 2.4: MAIL FROM, or HELO for the null reverse-path; 4.3: a
  // sender without a local part is postmaster.
  std::string local;
  if (request.mail_from.empty()) {
    outcome.identity = "helo";
    outcome.domain = request.helo;
  } else {
    outcome.identity = "mailfrom";
    size_t at = request.mail_from.rfind('@');
    if (at == std::string::npos) {
      outcome.domain = request.mail_from;
    } else {
      local = request.mail_from.substr(0, at);
      outcome.domain = request.mail_from.substr(at + 1);
    }
  }
  if (local.empty()) local = "postmaster";
  // "example.com." is the same domain; the dot would only leak into %{o}.
  if (outcome.domain.size() > 1 && outcome.domain.back() == '.')
    outcome.domain.pop_back();

  std::optional<IpOctets> ip = ParseClientAddress(request.ip);
  if (!ip) {
    outcome.result = SpfResult::kNone;
    outcome.reason = "\"" + Printable(request.ip) + "\" is not an IP address";
    co_return outcome;
  }
  ev.values.ip = *ip;
  ev.values.ipv4 = IsIpv4Mapped(*ip);
  ev.values.sender = local + "@" + outcome.domain;
  ev.values.helo = request.helo;
  ev.values.receiver = request.receiver;
  ev.values.now =
      request.now != 0 ? request.now : static_cast<int64_t>(std::time(nullptr));

  Verdict v = co_await CheckDomain(&ev, outcome.domain, true);
  outcome.result = v.result;
  outcome.reason = Printable(v.reason);
  if (v.result == SpfResult::kFail) outcome.explanation = v.explanation;
  if (ev.timed_out) {
    // 4.6.4: past the time limit the answer is temperror, whatever the
    // lookups that did finish suggested.
    outcome.result = SpfResult::kTempError;
    outcome.explanation.clear();
    outcome.reason = "the evaluation took longer than " +
                     std::to_string(request.time_limit.count()) +
                     " ms (RFC 7208 4.6.4)";
  }
  outcome.dns_terms = ev.dns_terms;
  outcome.void_lookups = ev.void_lookups;
  co_return outcome;
}

}  // namespace tern::mailauth
