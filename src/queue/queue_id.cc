// Queue ids: unique, roughly time-sortable names for spooled messages.
// Layout: 11 base32 digits of microseconds, 5 of counter plus random offset.
#include "queue/queue_id.h"

#include <sys/random.h>

#include <array>
#include <chrono>
#include <cstdint>

#include "common/unique_name.h"

namespace tern::queue {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr size_t kTimeDigits = 11;  // 55 bits of microseconds: ~1100 years
constexpr size_t kTailDigits = 5;   // 25 bits

uint32_t ProcessRandom() {
  uint32_t value = 0;
  if (::getrandom(&value, sizeof value, GRND_NONBLOCK) != sizeof value) {
    // Without entropy fall back to the clock; the counter still keeps ids
    // unique within this process and O_EXCL catches the rest.
    value = static_cast<uint32_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return value;
}

void AppendBase32(std::string& out, uint64_t value, size_t digits) {
  for (size_t i = digits; i-- > 0;) out += kAlphabet[(value >> (5 * i)) & 31];
}

}  // namespace

std::string NewQueueId() {
  static const uint32_t random_offset = ProcessRandom();
  uint64_t usec = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  uint32_t tail = (random_offset + static_cast<uint32_t>(NextUniqueNumber())) &
                  ((1u << 25) - 1);
  std::string id;
  id.reserve(kTimeDigits + kTailDigits);
  AppendBase32(id, usec, kTimeDigits);
  AppendBase32(id, tail, kTailDigits);
  return id;
}

bool IsValidQueueId(std::string_view id) {
  // A table rather than a search of the alphabet: recovery and `tern
  // queue list` check every name of a spool that may hold millions.
  static const std::array<bool, 256> kDigit = [] {
    std::array<bool, 256> t{};
    for (const char* a = kAlphabet; *a; ++a) t[static_cast<unsigned char>(*a)] = true;
    return t;
  }();
  if (id.size() != kTimeDigits + kTailDigits) return false;
  for (char c : id) {
    if (!kDigit[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

uint64_t QueueIdMicros(std::string_view id) {
  if (!IsValidQueueId(id)) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < kTimeDigits; ++i) {
    const char* at = std::char_traits<char>::find(kAlphabet, 32, id[i]);
    v = (v << 5) | static_cast<uint64_t>(at - kAlphabet);
  }
  return v;
}

}  // namespace tern::queue
