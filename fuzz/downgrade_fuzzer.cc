// Fuzzes the 8-bit to 7-bit conversion for peers without 8BITMIME
// (smtp/client/downgrade.h) with arbitrary messages: what it sends must be
// 7-bit, a 7-bit message must pass unchanged, and its quoted-printable must
// follow RFC 2045 6.7 and decode back to the input.
//
// Input: the message (any bytes; no header bytes).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "smtp/client/downgrade.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::smtp::client;

bool Any8Bit(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) > 127) return true;
  }
  return false;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Checks the encoded form line by line and decodes it (soft breaks
// removed, =XX turned back into octets).
std::string CheckAndDecode(std::string_view qp) {
  std::string out;
  size_t start = 0;
  while (true) {
    size_t end = qp.find("\r\n", start);
    std::string_view line = qp.substr(
        start, end == std::string_view::npos ? std::string_view::npos
                                             : end - start);
    FUZZ_CHECK(line.size() <= 76, "encoded line of %zu: %s", line.size(),
               Printable(line).c_str());
    if (!line.empty()) {
      FUZZ_CHECK(line.back() != ' ' && line.back() != '\t',
                 "white space ends an encoded line: %s", Printable(line).c_str());
    }
    bool soft = false;
    for (size_t i = 0; i < line.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(line[i]);
      FUZZ_CHECK(c == ' ' || c == '\t' || (c >= 33 && c <= 126),
                 "octet %u in an encoded line", c);
      if (c != '=') {
        out += static_cast<char>(c);
        continue;
      }
      if (i + 1 == line.size()) {
        soft = true;
        break;
      }
      int hi = HexValue(line[i + 1]);
      int lo = i + 2 < line.size() ? HexValue(line[i + 2]) : -1;
      FUZZ_CHECK(hi >= 0 && lo >= 0, "bad escape in %s", Printable(line).c_str());
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (end == std::string_view::npos) {
      FUZZ_CHECK(!soft, "encoding ends with a soft break");
      break;
    }
    if (!soft) out += "\r\n";
    start = end + 2;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string error;
  std::optional<std::string> out = DowngradeTo7Bit(in, &error);
  if (out) {
    FUZZ_CHECK(!Any8Bit(*out), "8-bit octets after conversion");
    FUZZ_CHECK(Any8Bit(in) || *out == in, "7-bit message changed");
    FUZZ_CHECK(out->size() <= 64 * in.size() + 256, "output of %zu for %zu",
               out->size(), in.size());
  } else {
    FUZZ_CHECK(!error.empty(), "refused without a reason");
    FUZZ_CHECK(Any8Bit(in), "7-bit message refused: %s", error.c_str());
  }
  std::string qp = EncodeQuotedPrintable(in);
  FUZZ_CHECK(CheckAndDecode(qp) == in, "quoted-printable does not round-trip");
  return 0;
}
