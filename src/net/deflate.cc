// Raw DEFLATE both ways with zlib: see deflate.h.
#include "net/deflate.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <new>

namespace tern::net {
namespace {

// RFC 1951 without the RFC 1950 header and trailer: negative windowBits.
// 15 (a 32 KiB window) is what RFC 4978 4 expects both ends to accept.
constexpr int kRawWindowBits = -15;
constexpr int kMemLevel = 8;  // zlib's default

// zlib counts in uInt; a std::string_view may be longer.
uInt Clamp(size_t n) { return static_cast<uInt>(std::min<size_t>(n, UINT_MAX)); }

}  // namespace

struct Deflater::State {
  z_stream z{};
  ~State() { deflateEnd(&z); }
};

struct Inflater::State {
  z_stream z{};
  ~State() { inflateEnd(&z); }
};

Deflater::Deflater(int level) : state_(std::make_unique<State>()) {
  // Only Z_MEM_ERROR is possible with these constant parameters.
  if (deflateInit2(&state_->z, level, Z_DEFLATED, kRawWindowBits, kMemLevel,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();
  }
}

Deflater::~Deflater() = default;

void Deflater::Compress(std::string_view plain, std::string* out) {
  if (plain.empty()) return;
  z_stream& z = state_->z;
  size_t before = out->size();
  size_t at = before;
  const char* in = plain.data();
  size_t left = plain.size();
  for (;;) {
    uInt chunk = Clamp(left);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
    z.avail_in = chunk;
    // Room for all of it in one go most of the time (deflateBound covers
    // the worst case of incompressible data), plus the flush marker.
    size_t room = deflateBound(&z, chunk) + 64;
    out->resize(at + room);
    z.next_out = reinterpret_cast<Bytef*>(out->data() + at);
    z.avail_out = Clamp(room);
    uInt given = z.avail_out;
    // Z_SYNC_FLUSH: byte-aligned output ending in an empty stored block,
    // so the peer decodes all of it now (RFC 4978 4). Z_OK or Z_BUF_ERROR
    // (no progress possible) are the only outcomes on a valid stream.
    deflate(&z, Z_SYNC_FLUSH);
    at += given - z.avail_out;
    size_t used = chunk - z.avail_in;
    in += used;
    left -= used;
    // The flush is complete when zlib stopped with room to spare.
    if (left == 0 && z.avail_in == 0 && z.avail_out != 0) break;
  }
  out->resize(at);
  plain_ += plain.size();
  compressed_ += at - before;
}

Inflater::Inflater() : state_(std::make_unique<State>()) {
  if (inflateInit2(&state_->z, kRawWindowBits) != Z_OK) throw std::bad_alloc();
}

Inflater::~Inflater() = default;

void Inflater::Append(std::string_view compressed) {
  if (offset_ > 0) {
    input_.erase(0, offset_);
    offset_ = 0;
  }
  input_.append(compressed);
  compressed_ += compressed.size();
}

bool Inflater::Inflate(size_t limit, std::string* out) {
  if (failed_) return false;
  if (ended_) {
    if (offset_ < input_.size()) {
      failed_ = true;
      error_ = "data after the end of the deflate stream";
      return false;
    }
    full_ = false;
    return true;
  }
  z_stream& z = state_->z;
  uInt avail = Clamp(input_.size() - offset_);
  z.next_in = reinterpret_cast<Bytef*>(input_.data() + offset_);
  z.avail_in = avail;
  size_t at = out->size();
  uInt room = Clamp(std::max<size_t>(limit, 1));
  out->resize(at + room);
  z.next_out = reinterpret_cast<Bytef*>(out->data() + at);
  z.avail_out = room;
  int rc = inflate(&z, Z_SYNC_FLUSH);
  size_t produced = room - z.avail_out;
  out->resize(at + produced);
  offset_ += avail - z.avail_in;
  if (offset_ == input_.size()) {
    input_.clear();
    offset_ = 0;
  }
  plain_ += produced;
  full_ = z.avail_out == 0;
  switch (rc) {
    case Z_OK:
    case Z_BUF_ERROR:  // no progress possible: all input used, all output out
      return true;
    case Z_STREAM_END:
      // The peer closed the stream (a final block). Nothing may follow.
      ended_ = true;
      full_ = false;
      if (offset_ < input_.size()) {
        failed_ = true;
        error_ = "data after the end of the deflate stream";
        return false;
      }
      return true;
    case Z_DATA_ERROR:
      failed_ = true;
      error_ = z.msg != nullptr ? z.msg : "invalid deflate data";
      return false;
    case Z_MEM_ERROR:
      failed_ = true;
      error_ = "out of memory";
      return false;
    default:  // Z_NEED_DICT cannot happen for raw deflate; Z_STREAM_ERROR
      failed_ = true;
      error_ = "inflate failed";
      return false;
  }
}

}  // namespace tern::net
