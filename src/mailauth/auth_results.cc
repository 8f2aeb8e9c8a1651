// Writing Authentication-Results fields (RFC 8601 2.2) and reading the
// authserv-id of existing ones (RFC 8601 5).
#include "mailauth/auth_results.h"

#include "common/strings.h"

namespace tern::mailauth {
namespace {

constexpr size_t kFoldAt = 78;  // RFC 5322 2.1.1 "SHOULD be no more than 78"

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 2045 5.1 token: printable ASCII other than SPACE and tspecials.
bool IsTokenChar(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(static_cast<char>(c)) ==
         std::string_view::npos;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// RFC 5322 3.2.3 atext, for dot-atoms.
bool IsAtext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
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

// RFC 8601 2.2 pvalue's second form: [ [ local-part ] "@" ] domain-name,
// written bare like smtp.mailfrom=user@example.com.
bool IsMailboxForm(std::string_view s) {
  size_t at = s.rfind('@');
  if (at == std::string_view::npos) return false;
  std::string_view local = s.substr(0, at);
  std::string_view domain = s.substr(at + 1);
  if (!local.empty() && !IsDotAtom(local)) return false;
  if (!IsDotAtom(domain)) return false;
  for (char c : domain) {
    bool ldh = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    if (!ldh) return false;
  }
  return true;
}

std::string StripControls(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!IsControl(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (IsControl(static_cast<unsigned char>(c))) continue;
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string PropertyValue(std::string_view v) {
  if (IsToken(v) || IsMailboxForm(v)) return std::string(v);
  return Quote(v);
}

// RFC 5322 3.2.2 ctext excludes parentheses and backslash: those become
// quoted-pairs.
std::string Comment(std::string_view s) {
  std::string out = "(";
  for (char c : s) {
    if (IsControl(static_cast<unsigned char>(c))) continue;
    if (c == '(' || c == ')' || c == '\\') out += '\\';
    out += c;
  }
  return out + ")";
}

// Method, result, ptype and property are keywords (RFC 8601 2.2 uses
// RFC 5321 Keyword / dot-atom-text): anything else in them is dropped
// rather than written.
std::string Keyword(std::string_view s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (ok) out += c;
  }
  return out.empty() ? "unknown" : out;
}

}  // namespace

std::string AuthResultsValue(std::string_view value) {
  if (IsToken(value)) return std::string(value);
  return Quote(value);
}

AuthMethodResult SpfAuthResult(std::string_view result,
                               std::string_view identity, bool helo) {
  AuthMethodResult r{"spf", ToLower(result)};
  if (!identity.empty()) {
    r.properties.push_back(
        {"smtp", helo ? "helo" : "mailfrom", std::string(identity)});
  }
  return r;
}

AuthMethodResult DkimAuthResult(std::string_view result, std::string_view d,
                                std::string_view s, std::string_view b,
                                std::string_view reason) {
  AuthMethodResult r{"dkim", ToLower(result)};
  r.reason = std::string(reason);
  if (!d.empty()) r.properties.push_back({"header", "d", std::string(d)});
  if (!s.empty()) r.properties.push_back({"header", "s", std::string(s)});
  // RFC 6008 2: a prefix of b= identifies the signature; 8 characters
  // separate the signatures of one message in practice.
  if (!b.empty()) {
    r.properties.push_back({"header", "b", std::string(b.substr(0, 8))});
  }
  return r;
}

AuthMethodResult DmarcAuthResult(std::string_view result,
                                 std::string_view from_domain,
                                 std::string_view comment) {
  AuthMethodResult r{"dmarc", ToLower(result), std::string(comment)};
  if (!from_domain.empty()) {
    r.properties.push_back({"header", "from", std::string(from_domain)});
  }
  return r;
}

AuthMethodResult ArcAuthResult(std::string_view result,
                               std::string_view remote_ip) {
  AuthMethodResult r{"arc", ToLower(result)};
  if (!remote_ip.empty()) {
    r.properties.push_back({"smtp", "remote-ip", std::string(remote_ip)});
  }
  return r;
}

std::string FormatAuthResults(std::string_view authserv_id,
                              const std::vector<AuthMethodResult>& results) {
  std::string out = "Authentication-Results: " +
                    AuthResultsValue(StripControls(authserv_id));
  if (results.empty()) return out + "; none\r\n";
  size_t line_start = 0;
  for (const AuthMethodResult& r : results) {
    out += ";\r\n\t";
    line_start = out.size() - 1;  // the tab counts towards the line
    std::vector<std::string> items;
    items.push_back(Keyword(r.method) + "=" + Keyword(r.result));
    if (!r.comment.empty()) items.push_back(Comment(r.comment));
    if (!r.reason.empty()) items.push_back("reason=" + Quote(r.reason));
    for (const AuthProperty& p : r.properties) {
      items.push_back(Keyword(p.ptype) + "." + Keyword(p.property) + "=" +
                      PropertyValue(StripControls(p.value)));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) {
        // Fold before the item when it would pass the soft limit; an item
        // longer than a line stays whole (quoted strings cannot be folded
        // inside without changing them).
        if (out.size() - line_start + 1 + items[i].size() > kFoldAt) {
          out += "\r\n\t ";
          line_start = out.size() - 2;
        } else {
          out += ' ';
        }
      }
      out += items[i];
    }
  }
  return out + "\r\n";
}

namespace {

// Skips whitespace (folding included) and nested comments; an
// unterminated comment runs to the end.
void SkipCfws(std::string_view s, size_t* i) {
  while (*i < s.size()) {
    char c = s[*i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++*i;
    } else if (c == '(') {
      int depth = 0;
      while (*i < s.size()) {
        char d = s[*i];
        if (d == '\\') {
          *i += 2;
          continue;
        }
        ++*i;
        if (d == '(') ++depth;
        if (d == ')' && --depth == 0) break;
      }
      if (*i > s.size()) *i = s.size();
    } else {
      return;
    }
  }
}

}  // namespace

std::optional<std::string> ParseAuthServId(std::string_view body) {
  size_t i = 0;
  SkipCfws(body, &i);
  if (i >= body.size()) return std::nullopt;
  std::string id;
  if (body[i] == '"') {
    ++i;
    while (i < body.size() && body[i] != '"') {
      if (body[i] == '\\' && i + 1 < body.size()) ++i;
      // RFC 5322 3.2.4: folding inside a quoted string is not content.
      if (body[i] != '\r' && body[i] != '\n') id += body[i];
      ++i;
    }
    return id;
  }
  while (i < body.size() && IsTokenChar(static_cast<unsigned char>(body[i]))) {
    id += body[i++];
  }
  if (id.empty()) return std::nullopt;
  return id;
}

bool ClaimsAuthServId(std::string_view field_body, std::string_view our_id) {
  std::optional<std::string> id = ParseAuthServId(field_body);
  if (!id) return false;
  std::string_view a = *id;
  if (!a.empty() && a.back() == '.') a.remove_suffix(1);
  if (!our_id.empty() && our_id.back() == '.') our_id.remove_suffix(1);
  return !a.empty() && IEquals(a, our_id);
}

}  // namespace tern::mailauth
