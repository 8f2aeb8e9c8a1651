// Base64 (RFC 4648 4) for SASL exchanges and tests.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern {

std::string Base64Encode(std::string_view data);
// Strict: padding required, no whitespace; nullopt on any bad character.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace tern
