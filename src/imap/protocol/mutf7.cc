// Modified UTF-7 (RFC 3501 5.1.3): printable ASCII stands for itself ("&"
// as "&-"), everything else is UTF-16BE in a base64 variant ("," for "/",
// no padding) between "&" and "-".
#include "imap/protocol/mutf7.h"

#include <vector>

namespace tern::imap {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int AlphabetIndex(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

bool Printable(unsigned char c) { return c >= 0x20 && c <= 0x7e; }

// Decodes the UTF-8 sequence at s[*i] into a code point and moves *i past
// it; -1 when malformed.
int32_t NextCodePoint(std::string_view s, size_t* i) {
  auto at = [&](size_t k) -> uint32_t {
    return *i + k < s.size() ? static_cast<unsigned char>(s[*i + k]) : 0u;
  };
  auto cont = [&](size_t k) { return (at(k) & 0xC0u) == 0x80u; };
  uint32_t b0 = at(0);
  if (b0 < 0x80) {
    *i += 1;
    return static_cast<int32_t>(b0);
  }
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
    // at() reads relative to *i: compute before moving past the sequence.
    uint32_t cp = ((b0 & 0x1F) << 6) | (at(1) & 0x3F);
    *i += 2;
    return static_cast<int32_t>(cp);
  }
  if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
    uint32_t cp = ((b0 & 0x0F) << 12) | ((at(1) & 0x3F) << 6) | (at(2) & 0x3F);
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *i += 3;
    return static_cast<int32_t>(cp);
  }
  if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    uint32_t cp = ((b0 & 0x07) << 18) | ((at(1) & 0x3F) << 12) |
                  ((at(2) & 0x3F) << 6) | (at(3) & 0x3F);
    if (cp < 0x10000 || cp > 0x10FFFF) return -1;
    *i += 4;
    return static_cast<int32_t>(cp);
  }
  return -1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void AppendBase64(const std::vector<uint16_t>& units, std::string* out) {
  uint32_t bits = 0;
  int nbits = 0;
  for (uint16_t u : units) {
    bits = (bits << 16) | u;
    nbits += 16;
    while (nbits >= 6) {
      nbits -= 6;
      *out += kAlphabet[(bits >> nbits) & 0x3F];
    }
    bits &= (1u << nbits) - 1;
  }
  if (nbits > 0) *out += kAlphabet[(bits << (6 - nbits)) & 0x3F];
}

tl::unexpected<Error> Bad() {
  return Err("Mailbox name is not valid modified UTF-7");
}

}  // namespace

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    if (NextCodePoint(s, &i) < 0) return false;
  }
  return true;
}

Result<std::string> EncodeMutf7(std::string_view utf8) {
  std::string out;
  size_t i = 0;
  while (i < utf8.size()) {
    unsigned char c = static_cast<unsigned char>(utf8[i]);
    if (Printable(c)) {
      out += static_cast<char>(c);
      if (c == '&') out += '-';
      ++i;
      continue;
    }
    // A run of characters outside printable ASCII becomes one base64 run.
    std::vector<uint16_t> units;
    while (i < utf8.size() &&
           !Printable(static_cast<unsigned char>(utf8[i]))) {
      int32_t cp = NextCodePoint(utf8, &i);
      if (cp < 0) return Err("Mailbox name is not valid UTF-8");
      if (cp < 0x10000) {
        units.push_back(static_cast<uint16_t>(cp));
      } else {
        uint32_t v = static_cast<uint32_t>(cp) - 0x10000;
        units.push_back(static_cast<uint16_t>(0xD800 | (v >> 10)));
        units.push_back(static_cast<uint16_t>(0xDC00 | (v & 0x3FF)));
      }
    }
    out += '&';
    AppendBase64(units, &out);
    out += '-';
  }
  return out;
}

Result<std::string> DecodeMutf7(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!Printable(c)) return Bad();
    if (c != '&') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t end = s.find('-', i + 1);
    if (end == std::string_view::npos) return Bad();
    if (end == i + 1) {
      out += '&';
      i = end + 1;
      continue;
    }
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<uint16_t> units;
    for (size_t k = i + 1; k < end; ++k) {
      int v = AlphabetIndex(s[k]);
      if (v < 0) return Bad();
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        nbits -= 16;
        units.push_back(static_cast<uint16_t>(bits >> nbits));
        bits &= (1u << nbits) - 1;
      }
    }
    // Left-over bits are padding: fewer than 6 and all zero.
    if (nbits >= 6 || bits != 0 || units.empty()) return Bad();
    for (size_t k = 0; k < units.size(); ++k) {
      uint32_t u = units[k];
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (k + 1 >= units.size() || units[k + 1] < 0xDC00 ||
            units[k + 1] > 0xDFFF) {
          return Bad();
        }
        uint32_t lo = units[++k];
        AppendUtf8(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00), &out);
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return Bad();
      } else {
        AppendUtf8(u, &out);
      }
    }
    i = end + 1;
  }
  // Printable ASCII in base64, two runs side by side or other spellings of
  // the same name would make two names for one mailbox: only the form the
  // encoder gives is accepted.
  auto again = EncodeMutf7(out);
  if (!again || *again != s) return Bad();
  return out;
}

}  // namespace tern::imap
