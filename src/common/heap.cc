#include "common/heap.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tern {

void TrimHeapSoon() {
#if defined(__GLIBC__)
  static std::atomic<int64_t> last_ms{0};
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  int64_t last = last_ms.load(std::memory_order_relaxed);
  if (now - last < 1000) return;
  if (!last_ms.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  malloc_trim(0);
#endif
}

void SetHeapPolicy() {
#if defined(__GLIBC__)
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr) return;
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

}  // namespace tern
