// SEARCH and SORT text (mime_search.h).
#include "imap/protocol/mime_search.h"

#include <algorithm>
#include <cstring>

#include "common/strings.h"
#include "imap/protocol/fetch_render.h"
#include "smtp/protocol/rfc5322.h"

namespace tern::imap {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// The case folding of ContainsFolded, octet by octet: `prev` is the octet
// before, since a Latin-1 capital in UTF-8 is 0xC3 then 0x80..0x9E.
char Fold(char prev, char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 'A' && u <= 'Z') return static_cast<char>(u + 32);
  if (static_cast<unsigned char>(prev) == 0xC3 && u >= 0x80 && u <= 0x9E &&
      u != 0x97) {  // U+00D7 is the multiplication sign
    return static_cast<char>(u + 0x20);
  }
  return c;
}

std::string Folded(std::string_view s) {
  std::string out(s.size(), '\0');
  char prev = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    out[i] = Fold(prev, s[i]);
    prev = s[i];
  }
  return out;
}

void AppendText(const MimeMessage& m, const MimePart& part, std::string* out) {
  if (part.is_multipart()) {
    for (const MimePart& child : part.children) AppendText(m, child, out);
    return;
  }
  if (part.is_message()) {
    const MimePart& inner = part.children[0];
    out->append(SearchableHeader(m.text.substr(inner.offset, inner.header_size)));
    AppendText(m, inner, out);
    return;
  }
  if (part.type != "text") return;
  std::string_view body = m.text.substr(part.body_offset(), part.body_size);
  std::string decoded;
  if (!DecodeTransferEncoding(part.encoding, body, &decoded)) decoded.assign(body);
  const MimeParam* charset = part.param("charset");
  out->append(charset ? CharsetToUtf8(DecodedValue(*charset), decoded) : decoded);
  out->push_back('\n');
}

// Collapses runs of whitespace (and line ends) to one space.
std::string CollapseSpace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  if (space && !out.empty()) out.push_back(' ');
  return out;
}

bool IStarts(std::string_view s, size_t at, std::string_view prefix) {
  return s.size() - at >= prefix.size() && IEquals(s.substr(at, prefix.size()), prefix);
}

// RFC 5256 5 subj-blob: "[" *BLOBCHAR "]" *WSP; the end, or npos.
size_t Blob(std::string_view s, size_t at) {
  if (at >= s.size() || s[at] != '[') return std::string_view::npos;
  size_t i = at + 1;
  while (i < s.size() && s[i] != '[' && s[i] != ']') ++i;
  if (i >= s.size() || s[i] != ']') return std::string_view::npos;
  ++i;
  while (i < s.size() && IsWsp(s[i])) ++i;
  return i;
}

// subj-refwd: ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"; the end, or npos.
size_t Refwd(std::string_view s, size_t at) {
  size_t i;
  if (IStarts(s, at, "re")) {
    i = at + 2;
  } else if (IStarts(s, at, "fwd")) {
    i = at + 3;
  } else if (IStarts(s, at, "fw")) {
    i = at + 2;
  } else {
    return std::string_view::npos;
  }
  while (i < s.size() && IsWsp(s[i])) ++i;
  size_t b = Blob(s, i);
  if (b != std::string_view::npos) i = b;
  if (i < s.size() && s[i] == ':') return i + 1;
  return std::string_view::npos;
}

int MonthFromName(std::string_view s) {
  static constexpr std::string_view kMonths[12] = {
      "jan", "feb", "mar", "apr", "may", "jun",
      "jul", "aug", "sep", "oct", "nov", "dec"};
  if (s.size() < 3) return 0;
  for (int i = 0; i < 12; ++i) {
    if (IEquals(s.substr(0, 3), kMonths[i])) return i + 1;
  }
  return 0;
}

bool ParseNumber(std::string_view s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

int DaysIn(int y, int m) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

}  // namespace

std::vector<std::string> DecodedHeaderValues(std::string_view header,
                                             std::string_view name) {
  std::vector<std::string> out;
  size_t pos = 0;
  RawHeaderField f;
  while (NextHeaderField(header, &pos, &f)) {
    if (IEquals(f.name, name)) {
      out.push_back(smtp::DecodeEncodedWords(Unfold(f.value)));
    }
  }
  return out;
}

std::string SearchableHeader(std::string_view header) {
  std::string out;
  size_t pos = 0;
  RawHeaderField f;
  while (NextHeaderField(header, &pos, &f)) {
    out.append(f.name);
    out.append(": ");
    out.append(smtp::DecodeEncodedWords(Unfold(f.value)));
    out.push_back('\n');
  }
  return out;
}

std::string SearchableBody(const MimeMessage& message) {
  std::string out;
  AppendText(message, message.root, &out);
  return out;
}

bool ContainsFolded(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return true;
  if (needle.size() > haystack.size()) return false;
  std::string n = Folded(needle);
  // The haystack is folded as it is scanned (no copy of a large body), each
  // candidate window as if it began the text, like the needle: so a needle
  // that starts inside a UTF-8 sequence matches the same octets.
  size_t last = haystack.size() - needle.size();
  char first = n[0];
  for (size_t i = 0; i <= last; ++i) {
    if (Fold(0, haystack[i]) != first) continue;
    size_t j = 1;
    while (j < n.size() && Fold(haystack[i + j - 1], haystack[i + j]) == n[j]) ++j;
    if (j == n.size()) return true;
  }
  return false;
}

std::optional<DateTime> ParseHeaderDate(std::string_view value) {
  // Comments out, then tokens split at whitespace and commas.
  std::string text;
  int depth = 0;
  for (char c : value) {
    if (c == '(') {
      ++depth;
    } else if (c == ')' && depth > 0) {
      --depth;
    } else if (depth == 0) {
      text.push_back(c == ',' || c == '\t' || c == '\r' || c == '\n' ? ' ' : c);
    }
  }
  std::vector<std::string_view> tok;
  std::string_view rest = text;
  while (!rest.empty() && tok.size() < 8) {
    size_t b = rest.find_first_not_of(' ');
    if (b == std::string_view::npos) break;
    rest.remove_prefix(b);
    size_t e = rest.find(' ');
    tok.push_back(rest.substr(0, e));
    rest.remove_prefix(e == std::string_view::npos ? rest.size() : e);
  }
  size_t i = 0;
  // An optional day of the week.
  if (i < tok.size() && !tok[i].empty() && !(tok[i][0] >= '0' && tok[i][0] <= '9')) ++i;
  if (tok.size() < i + 4) return std::nullopt;
  DateTime dt;
  std::string_view year_text = tok[i + 2];
  if (!ParseNumber(tok[i], &dt.date.day) ||
      (dt.date.month = MonthFromName(tok[i + 1])) == 0 ||
      !ParseNumber(year_text, &dt.date.year)) {
    return std::nullopt;
  }
  // RFC 5322 4.3: two-digit years below 50 are 20xx, others 19xx; three
  // digits add 1900.
  if (year_text.size() == 2) {
    dt.date.year += dt.date.year < 50 ? 2000 : 1900;
  } else if (year_text.size() == 3) {
    dt.date.year += 1900;
  }
  if (dt.date.year < 1000 || dt.date.year > 9999 || dt.date.day < 1 ||
      dt.date.day > DaysIn(dt.date.year, dt.date.month)) {
    return std::nullopt;
  }
  // hh:mm[:ss]
  std::string_view t = tok[i + 3];
  size_t c1 = t.find(':');
  if (c1 == std::string_view::npos) return std::nullopt;
  size_t c2 = t.find(':', c1 + 1);
  std::string_view sec = c2 == std::string_view::npos ? "0" : t.substr(c2 + 1);
  if (!ParseNumber(t.substr(0, c1), &dt.hour) ||
      !ParseNumber(t.substr(c1 + 1, c2 == std::string_view::npos
                                        ? std::string_view::npos
                                        : c2 - c1 - 1),
                   &dt.minute) ||
      !ParseNumber(sec, &dt.second) || dt.hour > 23 || dt.minute > 59 ||
      dt.second > 60) {
    return std::nullopt;
  }
  // The zone: +hhmm / -hhmm, or an RFC 5322 4.3 obs-zone name. Missing or
  // unknown (military letters) zones read as -0000, "no information".
  if (tok.size() > i + 4) {
    std::string_view z = tok[i + 4];
    int hhmm = 0;
    if ((z[0] == '+' || z[0] == '-') && z.size() == 5 &&
        ParseNumber(z.substr(1), &hhmm) && hhmm % 100 < 60) {
      dt.zone_minutes = (hhmm / 100 * 60 + hhmm % 100) * (z[0] == '-' ? -1 : 1);
    } else {
      static constexpr struct {
        std::string_view name;
        int hours;
      } kZones[] = {{"ut", 0},   {"gmt", 0},  {"est", -5}, {"edt", -4},
                    {"cst", -6}, {"cdt", -5}, {"mst", -7}, {"mdt", -6},
                    {"pst", -8}, {"pdt", -7}};
      for (const auto& zone : kZones) {
        if (IEquals(z, zone.name)) dt.zone_minutes = zone.hours * 60;
      }
    }
  }
  return dt;
}

std::string BaseSubject(std::string_view subject, bool* reply_or_forward) {
  bool reply = false;
  // (1) encoded words decoded, whitespace collapsed.
  std::string s = CollapseSpace(smtp::DecodeEncodedWords(subject));
  while (true) {
    // (2) trailing "(fwd)" and whitespace.
    while (true) {
      if (!s.empty() && IsWsp(s.back())) {
        s.pop_back();
      } else if (s.size() >= 5 && IEquals(std::string_view(s).substr(s.size() - 5), "(fwd)")) {
        s.resize(s.size() - 5);
        reply = true;
      } else {
        break;
      }
    }
    // (3)-(5) leading whitespace, "*blob re:" leaders and blobs.
    bool changed = true;
    while (changed) {
      changed = false;
      size_t i = 0;
      while (i < s.size() && IsWsp(s[i])) ++i;
      if (i > 0) {
        s.erase(0, i);
        changed = true;
      }
      size_t p = 0;
      size_t b;
      while ((b = Blob(s, p)) != std::string::npos) p = b;
      size_t r = Refwd(s, p);
      if (r != std::string::npos) {
        s.erase(0, r);
        changed = true;
        reply = true;
        continue;
      }
      b = Blob(s, 0);
      if (b != std::string::npos && b < s.size()) {
        s.erase(0, b);
        changed = true;
      }
    }
    // (6) a "[fwd: ...]" wrapper.
    if (s.size() >= 6 && IStarts(s, 0, "[fwd:") && s.back() == ']') {
      s = s.substr(5, s.size() - 6);
      reply = true;
      continue;
    }
    if (reply_or_forward) *reply_or_forward = reply;
    return s;
  }
}

std::string FirstMailbox(std::string_view value) {
  for (const EnvelopeAddress& a : ParseEnvelopeAddresses(value)) {
    if (a.host && a.mailbox) return *a.mailbox;
  }
  return {};
}

}  // namespace tern::imap
