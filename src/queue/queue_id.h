// Queue ids: unique, roughly time-sortable names for spooled messages that
// are safe as file names and short enough for log lines.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tern::queue {

// 16 characters of Crockford base32 (digits and upper-case letters, ordered
// as in ASCII): 11 for the microseconds since the epoch, then 5 for a
// per-process counter (common/unique_name.h) offset by a random value, so
// ids from the server and from `tern sendmail` processes do not collide.
std::string NewQueueId();

// True for strings NewQueueId could have produced (used to ignore stray
// files in the spool directories).
bool IsValidQueueId(std::string_view id);

// When the id was made (microseconds since the epoch); 0 for an invalid id.
uint64_t QueueIdMicros(std::string_view id);

}  // namespace tern::queue
