// Unit tests for the CRLF form of stored messages: line ends, dot-stuffing,
// TOP cut-off, chunk boundaries, and sizes that match what is sent.
#include "store/crlf.h"

#include <gtest/gtest.h>

#include <random>

#include <string>

namespace tern::store {
namespace {

std::string Encode(std::string_view in, bool stuff = false, int64_t lines = -1,
                   size_t chunk = 0) {
  CrlfEncoder e(stuff, lines);
  std::string out;
  if (chunk == 0) chunk = in.size() + 1;
  for (size_t i = 0; i < in.size(); i += chunk) e.Feed(in.substr(i, chunk), out);
  e.Finish(out);
  return out;
}

TEST(StoreCrlfTest, LineEnds) {
  EXPECT_EQ(Encode("a\nb\n"), "a\r\nb\r\n");
  EXPECT_EQ(Encode("a\r\nb\r\n"), "a\r\nb\r\n");
  EXPECT_EQ(Encode("a\nb"), "a\r\nb\r\n");  // last line gets its CRLF
  EXPECT_EQ(Encode("a\rb\n"), "a\rb\r\n");  // bare CR is data
  EXPECT_EQ(Encode(""), "");
  EXPECT_EQ(Encode("\n\n"), "\r\n\r\n");
}

TEST(StoreCrlfTest, DotStuffing) {
  EXPECT_EQ(Encode(".\n..x\na.b\n.", true), "..\r\n...x\r\na.b\r\n..\r\n");
  EXPECT_EQ(Encode(".\n", false), ".\r\n");
}

TEST(StoreCrlfTest, Top) {
  std::string msg = "A: 1\nB: 2\n\nl1\nl2\nl3\n";
  EXPECT_EQ(Encode(msg, true, 0), "A: 1\r\nB: 2\r\n\r\n");
  EXPECT_EQ(Encode(msg, true, 2), "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
  EXPECT_EQ(Encode(msg, true, 99), "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n");
  EXPECT_EQ(Encode("A: 1\nB: 2\n", true, 0), "A: 1\r\nB: 2\r\n");  // no body
  EXPECT_EQ(Encode("A: 1\r\n\r\nx\r\n", true, 0), "A: 1\r\n\r\n");
}

TEST(StoreCrlfTest, ChunkBoundariesDoNotMatter) {
  std::string msg = "H: v\r\n\r\n.dot\r\nbare\rcr\nlf\n\r\n.\r";
  std::string whole = Encode(msg, true);
  for (size_t chunk = 1; chunk < msg.size(); ++chunk) {
    EXPECT_EQ(Encode(msg, true, -1, chunk), whole) << chunk;
    EXPECT_EQ(Encode(msg, true, 1, chunk), Encode(msg, true, 1)) << chunk;
  }
}

TEST(StoreCrlfTest, SizeMatchesUnstuffedEncoding) {
  const char* samples[] = {"", "a", "a\n", "a\r\n", "a\r", "\r", "\r\r\n", ".x\n",
                           "H: v\n\nbody\nmore", "\xff\x00\n\x80"};
  for (const char* s : samples) {
    EXPECT_EQ(CrlfSize(s), Encode(s).size()) << s;
  }
  std::string bin(1000, '\0');
  for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<char>(i * 7);
  EXPECT_EQ(CrlfSize(bin), Encode(bin).size());
  CrlfSizer sizer;
  for (char c : bin) sizer.Feed(std::string_view(&c, 1));
  EXPECT_EQ(sizer.Finish(), Encode(bin).size());
}

// The sizer against the encoder on random octets, fed in random pieces:
// CR, LF and their runs at piece boundaries are where the two could part.
TEST(StoreCrlfTest, SizerAgreesWithEncoderOnRandomInput) {
  std::mt19937 rng(1234);
  const char alphabet[] = {'a', '\r', '\n', '.', '\0'};
  for (int round = 0; round < 2000; ++round) {
    std::string in(rng() % 40, 'x');
    for (char& c : in) c = alphabet[rng() % sizeof(alphabet)];
    CrlfSizer sizer;
    for (size_t i = 0; i < in.size();) {
      size_t n = 1 + rng() % 5;
      sizer.Feed(std::string_view(in).substr(i, n));
      i += n;
    }
    uint64_t size = sizer.Finish();
    EXPECT_EQ(size, Encode(in).size()) << round;
    EXPECT_EQ(sizer.Finish(), size);  // a second Finish adds nothing
  }
}

}  // namespace
}  // namespace tern::store
