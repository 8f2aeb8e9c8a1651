// MTA-STS (RFC 8461): record and policy parsers, MX patterns, cache rules.
#include "delivery/mta_sts.h"

#include <charconv>

#include "common/strings.h"

namespace tern::delivery::sts {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }
bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 5321 4.1.2 Domain: LDH labels of 1..63 octets, separated by dots.
bool IsDomain(std::string_view d) {
  if (d.empty() || d.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = d.find('.', start);
    std::string_view label =
        d.substr(start, dot == std::string_view::npos ? d.npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// RFC 8461 3.1 sts-ext-name: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool IsExtName(std::string_view n) {
  if (n.empty() || n.size() > 32 || !IsAlnum(n.front())) return false;
  for (char c : n) {
    if (!IsAlnum(c) && c != '_' && c != '-' && c != '.') return false;
  }
  return true;
}

// RFC 8461 3.1 sts-ext-value: visible ASCII but "=" and ";".
bool IsExtValue(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v) {
    if (c < 0x21 || c > 0x7e || c == '=' || c == ';') return false;
  }
  return true;
}

// "v=STSv1" followed by the end, a delimiter or white space: the records
// RFC 8461 3.1 keeps before counting.
bool StartsWithVersion(std::string_view r) {
  constexpr std::string_view kV = "v=STSv1";
  if (r.substr(0, kV.size()) != kV) return false;
  if (r.size() == kV.size()) return true;
  return r[kV.size()] == ';' || IsWsp(r[kV.size()]);
}

}  // namespace

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kEnforce:
      return "enforce";
    case Mode::kTesting:
      return "testing";
    case Mode::kNone:
      break;
  }
  return "none";
}

Result<std::string> ParseTxt(const std::vector<std::string>& records) {
  // RFC 8461 3.1: records not starting with "v=STSv1;" are discarded; if
  // not exactly one remains, there is no policy to discover.
  const std::string* record = nullptr;
  size_t count = 0;
  for (const std::string& r : records) {
    if (!StartsWithVersion(r)) continue;
    ++count;
    record = &r;
  }
  if (count == 0) return Err("no v=STSv1 record");
  if (count > 1) return Err("more than one v=STSv1 record");
  // sts-text-record = sts-version 1*(sts-field-delim sts-field)
  //                   [sts-field-delim], with sts-field-delim = *WSP ";" *WSP.
  std::vector<std::string> fields = Split(*record, ';');
  std::optional<std::string> id;
  for (size_t i = 1; i < fields.size(); ++i) {
    std::string_view f = TrimWsp(fields[i]);
    if (f.empty()) {
      // Only the optional delimiter at the very end may leave nothing.
      if (i + 1 == fields.size() && i > 1) break;
      return Err("empty field in the TXT record");
    }
    size_t eq = f.find('=');
    if (eq == std::string_view::npos) return Err("field without '='");
    std::string_view name = f.substr(0, eq);
    std::string_view value = f.substr(eq + 1);
    if (name == "id") {
      // sts-id = %s"id=" 1*32(ALPHA / DIGIT)
      if (value.empty() || value.size() > 32) return Err("bad id length");
      for (char c : value) {
        if (!IsAlnum(c)) return Err("bad character in id");
      }
      if (id) return Err("more than one id");
      id = std::string(value);
    } else if (!IsExtName(name) || !IsExtValue(value)) {
      return Err("bad field in the TXT record");
    }
  }
  if (TrimWsp(fields[0]) != "v=STSv1") return Err("bad version field");
  if (!id) return Err("no id in the TXT record");
  return *id;
}

Result<Policy> ParsePolicy(std::string_view text) {
  if (text.size() > kMaxPolicyBytes) return Err("policy too large");
  Policy p;
  bool have_version = false, have_mode = false, have_age = false;
  size_t pos = 0;
  while (pos < text.size()) {
    // sts-policy-term = LF / CRLF
    size_t eol = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, eol == std::string_view::npos ? text.npos : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line = TrimWsp(line);
    if (line.empty()) continue;  // tolerated: blank lines carry nothing
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Err("line without ':'");
    std::string_view key = TrimWsp(line.substr(0, colon));
    std::string_view value = TrimWsp(line.substr(colon + 1));
    for (char c : line) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
        return Err("control character in the policy");
    }
    // Where a key other than mx repeats, the first one counts.
    if (key == "version") {
      if (have_version) continue;
      if (value != "STSv1") return Err("version is not STSv1");
      have_version = true;
    } else if (key == "mode") {
      if (have_mode) continue;
      if (value == "enforce") {
        p.mode = Mode::kEnforce;
      } else if (value == "testing") {
        p.mode = Mode::kTesting;
      } else if (value == "none") {
        p.mode = Mode::kNone;
      } else {
        return Err("unknown mode");
      }
      have_mode = true;
    } else if (key == "max_age") {
      if (have_age) continue;
      // sts-policy-max-age-value = 1*10(DIGIT); at most 31557600.
      if (value.empty() || value.size() > 10) return Err("bad max_age");
      uint64_t age = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), age);
      if (ec != std::errc() || end != value.data() + value.size())
        return Err("bad max_age");
      p.max_age = static_cast<uint32_t>(std::min<uint64_t>(age, kMaxAge));
      have_age = true;
    } else if (key == "mx") {
      // sts-policy-mx-value = ["*."] Domain
      std::string v = ToLower(value);
      if (!v.empty() && v.back() == '.') v.pop_back();
      std::string_view d = v;
      if (d.substr(0, 2) == "*.") d.remove_prefix(2);
      if (!IsDomain(d)) return Err("bad mx pattern");
      if (p.mx.size() < kMaxPatterns) p.mx.push_back(std::move(v));
    }
    // Any other key is an extension and ignored (RFC 8461 3.2).
  }
  if (!have_version) return Err("no version");
  if (!have_mode) return Err("no mode");
  if (!have_age) return Err("no max_age");
  // RFC 8461 3.2 asks for one or more mx patterns; with mode none they
  // would never be used, so a none policy without them is still taken.
  if (p.mx.empty() && p.mode != Mode::kNone) return Err("no mx pattern");
  return p;
}

std::string FormatPolicy(const Policy& p) {
  std::string out = "version: STSv1\nmode: ";
  out += ModeName(p.mode);
  out += "\n";
  for (const std::string& m : p.mx) out += "mx: " + m + "\n";
  out += "max_age: " + std::to_string(p.max_age) + "\n";
  return out;
}

bool MxMatches(std::string_view pattern, std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || pattern.empty()) return false;
  if (pattern.substr(0, 2) == "*.") {
    // RFC 8461 4.1: the wildcard stands for exactly one label.
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size()) return false;
    std::string_view head = host.substr(0, host.size() - suffix.size());
    if (!IEquals(host.substr(head.size()), suffix)) return false;
    return head.find('.') == std::string_view::npos;
  }
  return IEquals(pattern, host);
}

bool MxAllowed(const Policy& p, std::string_view host) {
  for (const std::string& m : p.mx) {
    if (MxMatches(m, host)) return true;
  }
  return false;
}

std::string FormatCached(const Cached& c) {
  return "id: " + c.id + "\nfetched: " + std::to_string(c.fetched) + "\n\n" +
         FormatPolicy(c.policy);
}

Result<Cached> ParseCached(std::string_view text) {
  size_t split = text.find("\n\n");
  if (split == std::string_view::npos) return Err("no blank line");
  Cached c;
  bool have_id = false, have_time = false;
  for (const std::string& line : Split(text.substr(0, split), '\n')) {
    std::string_view l = line;
    if (l.substr(0, 4) == "id: ") {
      auto id = ParseTxt({"v=STSv1; id=" + std::string(l.substr(4))});
      if (!id) return Err("bad id");
      c.id = *id;
      have_id = true;
    } else if (l.substr(0, 9) == "fetched: ") {
      std::string_view v = l.substr(9);
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), c.fetched);
      if (ec != std::errc() || end != v.data() + v.size() || c.fetched < 0)
        return Err("bad time");
      have_time = true;
    }
  }
  if (!have_id || !have_time) return Err("incomplete");
  auto p = ParsePolicy(text.substr(split + 2));
  if (!p) return tl::unexpected(p.error());
  c.policy = std::move(*p);
  return c;
}

Action Decide(const Cached* cached, const TxtResult& txt, int64_t now,
              int64_t refresh_after) {
  bool fresh = cached != nullptr && !cached->Expired(now);
  if (!fresh) {
    // RFC 8461 3.3: with no unexpired policy in the cache, the TXT record
    // is the only reason to fetch.
    return txt.id ? Action::kFetch : Action::kNoPolicy;
  }
  if (!txt.id) {
    // A missing or failing TXT record does not end a cached policy (RFC
    // 8461 5.1, 10.2: a domain retires its policy with mode none first).
    return Action::kUseCached;
  }
  // RFC 8461 3.3: a new id means a new policy; and policies are refreshed
  // before they expire, not only when the id changes.
  if (*txt.id != cached->id) return Action::kFetch;
  if (now - cached->fetched >= refresh_after) return Action::kFetch;
  return Action::kUseCached;
}

bool SafeDomain(std::string_view domain) { return IsDomain(domain); }

}  // namespace tern::delivery::sts
