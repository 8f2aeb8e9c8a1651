// IMAP folder names <-> Maildir++ directory names (folder_name.h has the
// escaping rules).
#include "store/folder_name.h"

#include <cstdint>
#include <vector>

namespace tern::store {
namespace {

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? s.npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

bool NeedsEscape(unsigned char c) {
  return c == '.' || c == '\\' || c < 0x20 || c == 0x7f;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    // No overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629 3).
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
        cp > 0x10ffff) {
      return false;
    }
    i += len;
  }
  return true;
}

bool IsInbox(std::string_view name) {
  if (name.size() != 5) return false;
  static constexpr char kInbox[] = "INBOX";
  for (size_t i = 0; i < 5; ++i) {
    char c = name[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != kInbox[i]) return false;
  }
  return true;
}

std::optional<std::string> CanonicalFolderName(std::string_view name) {
  if (name.empty() || !ValidUtf8(name) ||
      name.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string out;
  bool first = true;
  for (std::string_view level : Split(name, '/')) {
    if (level.empty()) return std::nullopt;
    if (!first) out += '/';
    // RFC 9051 5.1: "INBOX" is case-insensitive, and so is it as the first
    // level of its inferiors' names.
    out += first && IsInbox(level) ? std::string_view("INBOX") : level;
    first = false;
  }
  return out;
}

std::string FolderDirectory(std::string_view canonical) {
  if (canonical == "INBOX") return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::string_view level : Split(canonical, '/')) {
    out += '.';
    for (char ch : level) {
      auto c = static_cast<unsigned char>(ch);
      if (NeedsEscape(c)) {
        out += '\\';
        out += kHex[c >> 4];
        out += kHex[c & 15];
      } else {
        out += ch;
      }
    }
  }
  return out;
}

std::optional<std::string> FolderNameOfDirectory(std::string_view dir) {
  if (dir.size() < 2 || dir[0] != '.' || dir == "..") return std::nullopt;
  std::string out;
  bool first = true;
  for (std::string_view level : Split(dir.substr(1), '.')) {
    if (level.empty()) return std::nullopt;
    if (!first) out += '/';
    first = false;
    for (size_t i = 0; i < level.size(); ++i) {
      // An escape decodes; a "\" not followed by two hex digits (a name
      // some other program made) is kept as it is.
      if (level[i] == '\\' && i + 2 < level.size()) {
        int hi = HexValue(level[i + 1]), lo = HexValue(level[i + 2]);
        if (hi >= 0 && lo >= 0) {
          char decoded = static_cast<char>(hi * 16 + lo);
          if (decoded == '/') return std::nullopt;  // would change the levels
          out += decoded;
          i += 2;
          continue;
        }
      }
      out += level[i];
    }
  }
  auto canonical = CanonicalFolderName(out);
  // ".INBOX" would be a second INBOX beside the Maildir itself.
  if (!canonical || *canonical == "INBOX") return std::nullopt;
  return canonical;
}

std::string ParentFolder(std::string_view canonical) {
  size_t slash = canonical.rfind('/');
  return slash == std::string_view::npos
             ? std::string()
             : std::string(canonical.substr(0, slash));
}

}  // namespace tern::store
