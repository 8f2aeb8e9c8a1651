// The records of the direct-delivery intent log (queue/direct.0 and
// direct.1; docs/architecture.md, "Direct local delivery"): one line per
// Maildir copy written before the 250, replayed at start to finish the
// copies a crash left in tmp/. Sans I/O, so that the parser is fuzzed
// (fuzz/intent_log_fuzzer.cc) apart from the file system work around it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::delivery {

// "crc32c<TAB>size<TAB>tmp path<TAB>new path<LF>": the CRC-32C of the
// copy's octets as eight lower-case hex digits, its size in decimal, and
// both paths relative to the mail root.
struct IntentRecord {
  uint32_t crc = 0;
  uint64_t size = 0;
  std::string tmp;   // ".../Maildir/tmp/NAME"
  std::string dest;  // ".../Maildir/new/NAME,S=...", where replay links it
  bool operator==(const IntentRecord&) const = default;
};

// A path that stays below the mail root: relative, none of its parts
// empty, "." or "..", and no TAB or LF (which would break the record).
bool SafeRelativePath(std::string_view p);

// Appends the record's line. The paths must be SafeRelativePath().
void AppendIntent(std::string& out, const IntentRecord& r);

// One line, without its LF. Anything else than what AppendIntent writes
// (a field missing or extra, a CRC that is not eight hex digits, a size
// that is not a decimal number that fits, an unsafe path) is nullopt:
// replay skips it and never removes a file on its word.
std::optional<IntentRecord> ParseIntent(std::string_view line);

}  // namespace tern::delivery
