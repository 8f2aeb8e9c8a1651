// Raw DEFLATE (RFC 1951) for a connection's byte stream, both directions,
// with zlib: no zlib or gzip framing (windowBits -15), as IMAP COMPRESS
// (RFC 4978 3) wants it. Protocol-neutral; net::LineConnection puts it
// above the Stream (so above TLS) when a session asks for it.
//
// The sending side flushes at the end of every Compress() call
// (Z_SYNC_FLUSH, RFC 4978 4), so a peer can decode every response we
// wrote without waiting for more. The receiving side inflates in bounded
// pieces: a few kilobytes of input may expand a thousandfold, so the
// caller asks for at most `limit` octets at a time and hands them to its
// session before asking for more; the input not inflated yet is kept
// here, never the whole expansion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tern::net {

class Deflater {
 public:
  // `level`: zlib's 0..9 or -1 (Z_DEFAULT_COMPRESSION, 6).
  explicit Deflater(int level = -1);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // Appends the compressed form of `plain` to `out`, ending with a sync
  // flush (an empty stored block): everything so far can be decoded.
  void Compress(std::string_view plain, std::string* out);

  uint64_t plain_octets() const { return plain_; }
  uint64_t compressed_octets() const { return compressed_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  uint64_t plain_ = 0;
  uint64_t compressed_ = 0;
};

class Inflater {
 public:
  Inflater();
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Keeps compressed octets for Inflate().
  void Append(std::string_view compressed);
  // Appends at most `limit` (> 0) inflated octets to `out`. False when the
  // input is not valid DEFLATE (error() says why); nothing more can be
  // inflated then.
  bool Inflate(size_t limit, std::string* out);
  // True while Inflate() may produce more without new input: compressed
  // octets are waiting, or the last call stopped at its limit.
  bool more() const { return !failed_ && (offset_ < input_.size() || full_); }
  const std::string& error() const { return error_; }

  uint64_t compressed_octets() const { return compressed_; }
  uint64_t plain_octets() const { return plain_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::string input_;   // compressed, not yet given to zlib past offset_
  size_t offset_ = 0;
  bool full_ = false;   // the last Inflate() filled its limit
  bool ended_ = false;  // the peer ended the DEFLATE stream (BFINAL)
  bool failed_ = false;
  std::string error_;
  uint64_t compressed_ = 0;
  uint64_t plain_ = 0;
};

}  // namespace tern::net
