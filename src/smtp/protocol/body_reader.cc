// Message content reader: end-of-data detection, dot-unstuffing and the
// checks that make a message unacceptable (bare CR/LF, long lines, size,
// hop count). A line ends only at CRLF; nothing else is ever a line end.
#include "smtp/protocol/body_reader.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/strings.h"

namespace tern::smtp {
namespace {

// Index of the first CR or LF in p[0, n), or n. Sixteen bytes per step with
// SSE2 (part of every x86-64 CPU): the byte loop was the DATA scanner's
// main cost (~8% of the server's CPU at 100 KiB messages).
size_t FindLineEnd(const char* p, size_t n) {
  size_t j = 0;
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  for (; j + 16 <= n; j += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j));
    int mask = _mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
    if (mask != 0) return j + static_cast<size_t>(__builtin_ctz(mask));
  }
#endif
  while (j < n && p[j] != '\r' && p[j] != '\n') ++j;
  return j;
}

}  // namespace

void BodyReader::Start(bool dot_stuffed, const Limits& limits) {
  *this = BodyReader();
  dot_stuffed_ = dot_stuffed;
  limits_ = limits;
}

BodyReader::Fault BodyReader::fault() const {
  if (bare_eol_) return Fault::kBareEol;
  if (too_long_) return Fault::kLineTooLong;
  if (too_big_) return Fault::kTooBig;
  if (hops_ > limits_.max_hops) return Fault::kTooManyHops;
  return Fault::kNone;
}

void BodyReader::AddContent(const char* p, size_t n, std::string* out) {
  if (n == 0) return;
  // RFC 5321 4.5.3.1.6: at most text_line_limit octets including CRLF.
  // line_len_ saturates far above any sane limit so it cannot wrap.
  uint64_t len = static_cast<uint64_t>(line_len_) + n;
  line_len_ = len > 0x7fffffff ? 0x7fffffff : static_cast<uint32_t>(len);
  // The transparency dot stripped by Scan (RFC 5321 4.5.2) is not part of
  // the line, so it does not count against the limit either.
  uint64_t content = static_cast<uint64_t>(line_len_) - (dot_line_ ? 1 : 0);
  if (content + 2 > limits_.line_limit) {
    too_long_ = true;
  }
  size_ += n;
  if (size_ > limits_.max_size) too_big_ = true;  // RFC 1870
  if (in_headers_ && limits_.capture_senders) CaptureHeader(p, n);
  if (in_headers_ && prefix_len_ < sizeof prefix_) {
    size_t k = std::min(n, sizeof prefix_ - prefix_len_);
    std::memcpy(prefix_ + prefix_len_, p, k);
    prefix_len_ = static_cast<uint8_t>(prefix_len_ + k);
  }
  if (storing()) out->append(p, n);
}

// Follows the header section field by field (RFC 5322 2.2: a field starts
// at a line that does not begin with whitespace; its name ends at ':',
// RFC 5322 4.5 lets whitespace precede the colon) and keeps From/Sender.
void BodyReader::CaptureHeader(const char* p, size_t n) {
  size_t i = 0;
  if (line_start_ && n > 0) {
    line_start_ = false;
    if (p[0] != ' ' && p[0] != '\t') {
      field_ = Field::kName;
      name_len_ = 0;
    }
  }
  while (i < n && field_ == Field::kName) {
    char c = p[i++];
    if (c == ':') {
      std::string_view name(name_, name_len_);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
        name.remove_suffix(1);
      }
      if (IEquals(name, "from") || IEquals(name, "sender")) {
        field_ = Field::kKeep;
        std::string field(name);
        field += ':';
        if (capture_.size() + field.size() > kMaxCapture) {
          capture_overflow_ = true;
        } else {
          capture_ += field;
        }
      } else {
        field_ = Field::kSkip;
      }
    } else if (name_len_ < sizeof name_) {
      name_[name_len_++] = c;
    } else {
      field_ = Field::kSkip;
    }
  }
  if (field_ == Field::kKeep && i < n) {
    if (capture_.size() + (n - i) > kMaxCapture) {
      capture_overflow_ = true;
    } else {
      capture_.append(p + i, n - i);
    }
  }
}

void BodyReader::EndLine(std::string* out) {
  if (in_headers_ && limits_.capture_senders) {
    if (field_ == Field::kKeep) {
      if (capture_.size() + 2 > kMaxCapture) {
        capture_overflow_ = true;
      } else {
        capture_ += "\r\n";
      }
    } else if (field_ == Field::kName) {
      field_ = Field::kSkip;  // a line without a colon is no field
    }
    line_start_ = true;
  }
  if (in_headers_) {
    uint32_t content = line_len_ - (dot_line_ ? 1 : 0);
    if (content == 0) {
      // RFC 5322 2.1: the first empty line ends the header section.
      in_headers_ = false;
    } else if (prefix_len_ == sizeof prefix_ &&
               IEquals(std::string_view(prefix_, sizeof prefix_),
                       "received:")) {
      // RFC 5321 6.3: count hops to break mail loops.
      ++hops_;
    }
  }
  size_ += 2;
  if (size_ > limits_.max_size) too_big_ = true;
  if (storing()) out->append("\r\n", 2);
  line_len_ = 0;
  dot_line_ = false;
  prefix_len_ = 0;
}

size_t BodyReader::Scan(std::string_view data, std::string* out, bool* done) {
  *done = false;
  size_t i = 0;
  const size_t n = data.size();
  while (i < n) {
    char c = data[i];
    if (cr_) {
      cr_ = false;
      if (c == '\n') {
        ++i;
        // RFC 5321 4.1.1.4: the data ends with a line holding only ".".
        if (dot_stuffed_ && dot_line_ && line_len_ == 1) {
          *done = true;
          return i;
        }
        EndLine(out);
        continue;
      }
      // A CR not followed by LF is content, and makes the message bad
      // (SMTP smuggling, CVE-2023-51764). `c` is looked at again below.
      bare_eol_ = true;
      AddContent("\r", 1, out);
      continue;
    }
    if (c == '\r') {
      cr_ = true;
      ++i;
      continue;
    }
    if (c == '\n') {
      // A bare LF is never a line end (RFC 5321 2.3.8); it is content and
      // it makes the message bad.
      bare_eol_ = true;
      AddContent("\n", 1, out);
      ++i;
      continue;
    }
    const size_t j = i + FindLineEnd(data.data() + i, n - i);
    if (dot_stuffed_ && line_len_ == 0 && data[i] == '.') {
      // RFC 5321 4.5.2: a leading "." was added by the client; drop it.
      dot_line_ = true;
      line_len_ = 1;
      ++i;
    }
    AddContent(data.data() + i, j - i, out);
    i = j;
  }
  return i;
}

void BodyReader::Finish(std::string* out) {
  if (cr_) {
    cr_ = false;
    bare_eol_ = true;
    AddContent("\r", 1, out);
  }
  if (line_len_ > 0) EndLine(out);
}

}  // namespace tern::smtp
