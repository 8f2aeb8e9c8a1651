// CRC-32C (Castagnoli, RFC 3720 B.4) used to validate spool files, so a file
// torn or zero-filled by a crash before its sync is recognised at recovery.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tern {

// Extends `crc` (0 to start) over `data`.
uint32_t Crc32c(uint32_t crc, const void* data, size_t size);
// The table-driven version, whatever the CPU (tests compare the two).
uint32_t Crc32cPortable(uint32_t crc, const void* data, size_t size);
inline uint32_t Crc32c(uint32_t crc, std::string_view data) {
  return Crc32c(crc, data.data(), data.size());
}

}  // namespace tern
