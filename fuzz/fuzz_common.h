// Helpers shared by the fuzz targets: a check that aborts with a message
// (so libFuzzer records the input), a splitter that cuts the input into
// Feed() chunks at places the input chooses, and reply-stream checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

// Property checks stay on in every build type (assert() would vanish
// with NDEBUG, which RelWithDebInfo does not set but Release does).
#define FUZZ_CHECK(cond, ...)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s\n  ", __FILE__, \
                   __LINE__, #cond);                                   \
      std::fprintf(stderr, __VA_ARGS__);                               \
      std::fprintf(stderr, "\n");                                      \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

namespace tern::fuzz {

// The first bytes of a session input are a small header; the rest is the
// protocol text. Header bytes that are missing read as 0, so a plain text
// file (no header) is still a useful input.
class Input {
 public:
  Input(const uint8_t* data, size_t size, size_t header)
      : all_(reinterpret_cast<const char*>(data), size) {
    size_t n = size < header ? size : header;
    header_ = all_.substr(0, n);
    body_ = all_.substr(n);
  }
  uint8_t byte(size_t i) const {
    return i < header_.size() ? static_cast<uint8_t>(header_[i]) : 0;
  }
  std::string_view body() const { return body_; }

 private:
  std::string_view all_, header_, body_;
};

// Cuts `text` into chunks of 1..max_chunk octets whose lengths come from a
// generator seeded by the input, so the fuzzer explores chunk boundaries by
// changing one header byte. max_chunk 0 means one chunk (the whole text).
class Chunker {
 public:
  Chunker(std::string_view text, uint8_t seed, uint8_t max_chunk)
      : rest_(text),
        state_(0x9e3779b9u ^ (seed * 0x01000193u) ^ max_chunk),
        max_(max_chunk) {}
  bool done() const { return rest_.empty(); }
  std::string_view Next() {
    size_t n = rest_.size();
    if (max_ != 0) {
      // xorshift32: cheap and deterministic.
      state_ ^= state_ << 13;
      state_ ^= state_ >> 17;
      state_ ^= state_ << 5;
      size_t want = 1 + state_ % max_;
      if (want < n) n = want;
    }
    std::string_view chunk = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return chunk;
  }

 private:
  std::string_view rest_;
  uint32_t state_;
  uint8_t max_;
};

// Known findings not fixed yet, by name, from the comma-separated list in
// TERN_FUZZ_KNOWN: a property tied to one of them is skipped, so a long run
// can look past it (fuzz/README.md lists the names). Unset in `make fuzz`.
inline bool Known(const char* name) {
  const char* list = std::getenv("TERN_FUZZ_KNOWN");
  if (list == nullptr) return false;
  std::string_view rest(list), want(name);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    if (rest.substr(0, comma) == want) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

inline std::string Printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 32 && c < 127 && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// True when every CR is followed by LF and every LF preceded by CR.
inline bool OnlyCrlfLineEnds(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

}  // namespace tern::fuzz
