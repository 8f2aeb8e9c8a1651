// UTF-8 well-formedness check shared by the address and parameter parsers
// (RFC 3629 4; RFC 6531 allows UTF-8 in addresses and some parameters).
// Internal to smtp/protocol.
#pragma once

#include <cstddef>
#include <string_view>

namespace tern::smtp {

// Length of the well-formed UTF-8 sequence starting at s[i] (whose first
// byte is >= 0x80), or 0 when it is malformed: no overlongs, no surrogates,
// nothing above U+10FFFF. C1 controls (U+0080..U+009F) are refused as well
// because protocol text must never carry control characters.
inline size_t Utf8Len(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u;
  };
  auto cont = [&](size_t k) { return (at(k) & 0xC0u) == 0x80u; };
  unsigned b0 = at(0);
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(1)) return 0;
    if (b0 == 0xC2 && at(1) < 0xA0) return 0;  // C1 controls
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
    if (at(1) < lo || at(1) > hi || !cont(2)) return 0;
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    if (at(1) < lo || at(1) > hi || !cont(2) || !cont(3)) return 0;
    return 4;
  }
  return 0;
}

}  // namespace tern::smtp
