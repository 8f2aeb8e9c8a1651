// Tests for the raw DEFLATE helpers under IMAP COMPRESS (RFC 4978): round
// trips whole and in pieces, the sync flush at the end of every batch (a
// peer decodes each batch without more input), known bytes from another
// implementation, decompression bombs inflated in bounded pieces, and
// corrupt or zlib-framed input refused.
#include "net/deflate.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tern::net {
namespace {

// Inflates everything `in` holds, `limit` octets at a time.
std::string InflateAll(Inflater& in, size_t limit = 4096) {
  std::string out;
  while (in.more()) {
    size_t before = out.size();
    EXPECT_TRUE(in.Inflate(limit, &out)) << in.error();
    EXPECT_LE(out.size() - before, limit);
    if (!in.error().empty()) break;
  }
  return out;
}

std::string Text(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) {
    s += "* " + std::to_string(i) + " FETCH (FLAGS (\\Seen) UID " +
         std::to_string(i * 7) + ")\r\n";
  }
  s.resize(n);
  return s;
}

std::string Random(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

TEST(Deflate, RoundTrips) {
  for (const std::string& plain :
       {std::string("a1 NOOP\r\n"), Text(100000), Random(300000, 1),
        std::string(1, '\0')}) {
    Deflater d;
    std::string wire;
    d.Compress(plain, &wire);
    Inflater in;
    in.Append(wire);
    EXPECT_EQ(InflateAll(in), plain);
    EXPECT_EQ(d.plain_octets(), plain.size());
    EXPECT_EQ(d.compressed_octets(), wire.size());
    EXPECT_EQ(in.compressed_octets(), wire.size());
    EXPECT_EQ(in.plain_octets(), plain.size());
  }
  Deflater d;
  std::string wire;
  d.Compress("", &wire);  // nothing to say: nothing sent
  EXPECT_TRUE(wire.empty());
}

TEST(Deflate, TextShrinks) {
  Deflater d;
  std::string wire;
  d.Compress(Text(100000), &wire);
  EXPECT_LT(wire.size(), 100000u / 4);
}

TEST(Deflate, EveryBatchEndsInASyncFlush) {
  // RFC 4978 4: each batch is decodable at once, without the next one.
  Deflater d;
  Inflater in;
  std::string all;
  for (int i = 0; i < 50; ++i) {
    std::string batch = "* " + std::to_string(i) + " EXISTS\r\nT" +
                        std::to_string(i) + " OK done\r\n";
    std::string wire;
    d.Compress(batch, &wire);
    // Z_SYNC_FLUSH ends in an empty stored block: 00 00 ff ff.
    ASSERT_GE(wire.size(), 4u);
    EXPECT_EQ(wire.substr(wire.size() - 4), std::string("\0\0\xff\xff", 4));
    in.Append(wire);
    EXPECT_EQ(InflateAll(in), batch);  // all of it, now
    all += batch;
  }
  EXPECT_EQ(in.plain_octets(), all.size());
}

TEST(Deflate, ReadsAnotherImplementationsOutput) {
  // Python's zlib.compressobj(6, DEFLATED, -15): "hello", then a sync
  // flush; and "hello" as a final block.
  Inflater a;
  a.Append(std::string("\xca\x48\xcd\xc9\xc9\x07\x00\x00\x00\xff\xff", 11));
  EXPECT_EQ(InflateAll(a), "hello");
  Inflater b;
  b.Append(std::string("\xcb\x48\xcd\xc9\xc9\x07\x00", 7));
  EXPECT_EQ(InflateAll(b), "hello");
}

TEST(Deflate, PiecesOfAnySizeInflateTheSame) {
  std::string plain = Text(20000) + Random(5000, 2) + Text(3000);
  Deflater d;
  std::string wire;
  d.Compress(plain.substr(0, 7000), &wire);
  d.Compress(plain.substr(7000), &wire);
  for (size_t step : {1u, 2u, 7u, 100u, 4096u}) {
    Inflater in;
    std::string out;
    for (size_t i = 0; i < wire.size(); i += step) {
      in.Append(std::string_view(wire).substr(i, step));
      while (in.more()) ASSERT_TRUE(in.Inflate(step, &out)) << in.error();
    }
    EXPECT_EQ(out, plain) << "step " << step;
  }
}

TEST(Deflate, BombIsInflatedInBoundedPieces) {
  // 16 MiB of one octet deflates to about 16 KiB: a thousandfold.
  constexpr size_t kPlain = 16u << 20;
  Deflater d(9);
  std::string wire;
  std::string block(1 << 20, 'A');
  for (size_t i = 0; i < kPlain / block.size(); ++i) d.Compress(block, &wire);
  ASSERT_LT(wire.size(), kPlain / 500);
  Inflater in;
  in.Append(wire);
  constexpr size_t kLimit = 16 * 1024;
  std::string piece;
  size_t total = 0;
  size_t calls = 0;
  while (in.more()) {
    piece.clear();
    ASSERT_TRUE(in.Inflate(kLimit, &piece)) << in.error();
    ASSERT_LE(piece.size(), kLimit);  // never more than asked for
    ASSERT_EQ(piece.find_first_not_of('A'), std::string::npos);
    total += piece.size();
    ++calls;
  }
  EXPECT_EQ(total, kPlain);
  EXPECT_GE(calls, kPlain / kLimit);
  EXPECT_LE(piece.capacity(), 2 * kLimit);
}

TEST(Deflate, GarbageIsRefused) {
  // A stream that starts with a reserved block type (BTYPE 11) is invalid
  // whatever follows.
  Inflater a;
  a.Append(std::string("\x07", 1) + Random(1000, 3));
  std::string out;
  bool ok = true;
  for (int i = 0; i < 100 && ok && a.more(); ++i) ok = a.Inflate(4096, &out);
  EXPECT_FALSE(ok);
  EXPECT_FALSE(a.error().empty());
  EXPECT_FALSE(a.more());
  EXPECT_FALSE(a.Inflate(4096, &out));  // stays failed

  // Random input: refused sooner or later, never a crash nor a hang.
  for (unsigned seed = 10; seed < 60; ++seed) {
    Inflater in;
    in.Append(Random(2000, seed));
    std::string sink;
    for (int i = 0; i < 10000 && in.more(); ++i) {
      sink.clear();
      if (!in.Inflate(4096, &sink)) break;
    }
    EXPECT_FALSE(in.more());
  }
}

TEST(Deflate, ZlibFramingIsNotRawDeflate) {
  // RFC 4978 wants RFC 1951 without the RFC 1950 header: a client that
  // sends zlib's 78 9c is refused rather than misread.
  Inflater in;
  in.Append(std::string("\x78\x9c\xcb\x48\xcd\xc9\xc9\x07\x00\x06\x2c\x02\x15", 13));
  std::string out;
  EXPECT_FALSE(in.Inflate(4096, &out));
  EXPECT_FALSE(in.error().empty());
}

TEST(Deflate, NothingMayFollowTheFinalBlock) {
  Inflater in;
  in.Append(std::string("\xcb\x48\xcd\xc9\xc9\x07\x00", 7));
  std::string out;
  ASSERT_TRUE(in.Inflate(4096, &out));
  EXPECT_EQ(out, "hello");
  EXPECT_FALSE(in.more());
  in.Append("x");
  EXPECT_FALSE(in.Inflate(4096, &out));
  EXPECT_EQ(in.error(), "data after the end of the deflate stream");
}

RC_GTEST_PROP(DeflateProperties, BatchesRoundTripThroughAnySplit,
              (const std::vector<std::string>& batches, uint8_t step)) {
  Deflater d;
  std::string wire;
  std::string plain;
  for (const std::string& b : batches) {
    d.Compress(b, &wire);
    plain += b;
  }
  size_t n = static_cast<size_t>(step) + 1;
  Inflater in;
  std::string out;
  for (size_t i = 0; i < wire.size(); i += n) {
    in.Append(std::string_view(wire).substr(i, n));
    while (in.more()) RC_ASSERT(in.Inflate(n, &out));
  }
  RC_ASSERT(out == plain);
}

}  // namespace
}  // namespace tern::net
