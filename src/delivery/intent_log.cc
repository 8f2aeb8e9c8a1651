#include "delivery/intent_log.h"

#include <charconv>
#include <cstdio>

#include "common/strings.h"

namespace tern::delivery {

bool SafeRelativePath(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  if (p.find_first_of("\t\n") != std::string_view::npos) return false;
  for (const std::string& part : Split(p, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

void AppendIntent(std::string& out, const IntentRecord& r) {
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", r.crc);
  out += hex;
  out += '\t';
  out += std::to_string(r.size);
  out += '\t';
  out += r.tmp;
  out += '\t';
  out += r.dest;
  out += '\n';
}

namespace {

// The next TAB-separated field of `line` from `*pos`; false when none is
// left. The last field runs to the end of the line.
bool NextField(std::string_view line, size_t* pos, std::string_view* field) {
  if (*pos > line.size()) return false;
  size_t tab = line.find('\t', *pos);
  if (tab == std::string_view::npos) {
    *field = line.substr(*pos);
    *pos = line.size() + 1;
  } else {
    *field = line.substr(*pos, tab - *pos);
    *pos = tab + 1;
  }
  return true;
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<IntentRecord> ParseIntent(std::string_view line) {
  std::string_view crc, size, tmp, dest, extra;
  size_t pos = 0;
  if (!NextField(line, &pos, &crc) || !NextField(line, &pos, &size) ||
      !NextField(line, &pos, &tmp) || !NextField(line, &pos, &dest) ||
      NextField(line, &pos, &extra)) {
    return std::nullopt;
  }
  IntentRecord r;
  if (crc.size() != 8) return std::nullopt;
  for (char c : crc) {
    if (!IsLowerHex(c)) return std::nullopt;
  }
  std::from_chars(crc.data(), crc.data() + crc.size(), r.crc, 16);
  if (size.empty() || size.size() > 20) return std::nullopt;
  for (char c : size) {
    if (!IsDigit(c)) return std::nullopt;
  }
  auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), r.size);
  if (ec != std::errc() || end != size.data() + size.size()) return std::nullopt;
  if (!SafeRelativePath(tmp) || !SafeRelativePath(dest)) return std::nullopt;
  r.tmp = tmp;
  r.dest = dest;
  return r;
}

}  // namespace tern::delivery
