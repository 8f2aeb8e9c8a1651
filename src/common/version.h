// The version and source revision of this build (generated at build time by
// cmake/version.cmake): `tern --version` prints them, `tern serve` logs them.
#pragma once

#include <string>

namespace tern {

extern const char kVersion[];   // "0.2.0"
extern const char kRevision[];  // git revision ("1a2b3c4d5e6f", "-dirty"), or "unknown"

// "tern 0.2.0 (1a2b3c4d5e6f)"
inline std::string VersionLine() {
  return std::string("tern ") + kVersion + " (" + kRevision + ")";
}

}  // namespace tern
