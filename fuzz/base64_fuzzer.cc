// Fuzzes the strict base64 codec (common/base64.h): encoding round-trips,
// and since the decoder accepts exactly one encoding per byte string, any
// text it accepts must be what the encoder prints for the result.
//
// Input: arbitrary bytes, used both as data to encode and as text to decode.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base64.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tern::fuzz::Printable;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  std::string encoded = tern::Base64Encode(bytes);
  FUZZ_CHECK(encoded.size() == (size + 2) / 3 * 4, "encoded length %zu for %zu",
             encoded.size(), size);
  std::optional<std::string> back = tern::Base64Decode(encoded);
  FUZZ_CHECK(back.has_value() && *back == bytes, "round trip failed: %s",
             Printable(encoded).c_str());

  std::optional<std::string> decoded = tern::Base64Decode(bytes);
  if (decoded) {
    FUZZ_CHECK(size % 4 == 0, "accepted length %zu", size);
    size_t pad = 0;
    if (size >= 1 && bytes[size - 1] == '=') ++pad;
    if (size >= 2 && bytes[size - 2] == '=') ++pad;
    FUZZ_CHECK(decoded->size() == size / 4 * 3 - pad,
               "decoded %zu octets from %zu characters", decoded->size(), size);
    // RFC 4648 3.5: canonical input only, so re-encoding gives it back.
    FUZZ_CHECK(tern::Base64Encode(*decoded) == bytes,
               "non-canonical text accepted: %s", Printable(bytes).c_str());
  }
  return 0;
}
