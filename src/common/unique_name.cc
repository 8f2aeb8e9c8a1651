// The process-wide sequence number behind Maildir names, queue ids and temp
// file names.
#include "common/unique_name.h"

#include <atomic>

namespace tern {

uint64_t NextUniqueNumber() {
  // Relaxed would do (only uniqueness matters), but the default order is
  // what the three counters this replaces used.
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1);
}

}  // namespace tern
