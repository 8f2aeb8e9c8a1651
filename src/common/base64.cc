// Base64 with the standard alphabet and '=' padding (RFC 4648 4), as SASL
// uses it on the wire (RFC 4954 4, RFC 5034 4) and inside SCRAM (RFC 5802 7).
#include "common/base64.h"

#include <array>
#include <cstdint>

namespace tern {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr int8_t kInvalid = -1;

constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& entry : table) entry = kInvalid;
  for (int i = 0; i < 64; ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}

constexpr std::array<int8_t, 256> kDecode = MakeDecodeTable();

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t n =
        static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16 |
        static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8 |
        static_cast<unsigned char>(data[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(data[i]))
                 << 16;
    if (rest == 2) {
      n |= static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8;
    }
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  // RFC 4648 3.3: characters outside the alphabet make the input invalid;
  // SASL peers never send line breaks inside one message.
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int pad = 0;
    if (last) {
      if (text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    }
    uint32_t n = 0;
    for (int j = 0; j < 4 - pad; ++j) {
      int8_t value = kDecode[static_cast<unsigned char>(text[i + j])];
      if (value == kInvalid) return std::nullopt;
      n |= static_cast<uint32_t>(value) << (18 - 6 * j);
    }
    // RFC 4648 3.5: the bits hidden by padding must be zero, so every byte
    // string has exactly one encoding (SCRAM compares encoded values).
    if (pad == 2 && (n & 0xffff) != 0) return std::nullopt;
    if (pad == 1 && (n & 0xff) != 0) return std::nullopt;
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

}  // namespace tern
