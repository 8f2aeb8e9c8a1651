// Fuzzes the store's CRLF conversion and dot-stuffing (store/crlf.h), the
// transform behind every POP3 size and RETR/TOP: it must match a simple
// reference, be independent of chunking, and agree with CrlfSize.
//
// Input: 3 header bytes, then the stored message (LF or CRLF, any bytes).
//   [0] TOP body lines (255: whole message), [1] chunk seed,
//   [2] max chunk length (0: one Feed)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "store/crlf.h"

namespace {

using tern::fuzz::Printable;
using tern::store::CrlfEncoder;

// The lines of a stored message: LF or CRLF ends a line, a CR before the
// end of the file is data, a final CR ends the last line.
std::vector<std::string> Lines(std::string_view in) {
  std::vector<std::string> out;
  while (!in.empty()) {
    size_t lf = in.find('\n');
    std::string line(in.substr(0, lf));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(std::move(line));
    if (lf == std::string_view::npos) break;
    in.remove_prefix(lf + 1);
  }
  return out;
}

std::string Encode(std::string_view in, bool stuff, int64_t top, uint8_t seed,
                   uint8_t max_chunk) {
  CrlfEncoder enc(stuff, top);
  std::string out;
  tern::fuzz::Chunker chunks(in, seed, max_chunk);
  while (!chunks.done()) enc.Feed(chunks.Next(), out);
  enc.Finish(out);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 3);
  std::string_view msg = in.body();
  uint8_t seed = in.byte(1), max_chunk = in.byte(2);

  std::vector<std::string> lines = Lines(msg);
  std::string plain_ref, stuffed_ref;
  for (const std::string& l : lines) {
    plain_ref += l + "\r\n";
    stuffed_ref += (!l.empty() && l[0] == '.' ? "." : "") + l + "\r\n";
  }

  std::string plain = Encode(msg, false, -1, seed, max_chunk);
  FUZZ_CHECK(plain == plain_ref,
             "CRLF form differs\n  in:  %s\n  got: %s\n  "
             "want: %s",
             Printable(msg).c_str(), Printable(plain).c_str(),
             Printable(plain_ref).c_str());
  FUZZ_CHECK(plain == Encode(msg, false, -1, 0, 0), "chunking changes output");
  std::string stuffed = Encode(msg, true, -1, seed, max_chunk);
  FUZZ_CHECK(stuffed == stuffed_ref, "dot-stuffed form differs: %s",
             Printable(stuffed).c_str());

  // Unstuffing what POP3 sends gives back the lines, and no line of it is
  // a lone "." that would end the response early (RFC 1939 3).
  std::string unstuffed;
  size_t pos = 0;
  while (pos < stuffed.size()) {
    size_t eol = stuffed.find("\r\n", pos);
    FUZZ_CHECK(eol != std::string::npos, "unterminated line");
    std::string_view line(stuffed.data() + pos, eol - pos);
    FUZZ_CHECK(line != ".", "lone dot in stuffed output");
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    unstuffed.append(line);
    unstuffed += "\r\n";
    pos = eol + 2;
  }
  FUZZ_CHECK(unstuffed == plain, "unstuffing does not give the lines back");

  // Sizes announced by LIST/STAT are the octets RETR sends (unstuffed).
  FUZZ_CHECK(tern::store::CrlfSize(msg) == plain.size(), "CrlfSize %llu vs %zu",
             static_cast<unsigned long long>(tern::store::CrlfSize(msg)),
             plain.size());
  tern::store::CrlfSizer sizer;
  tern::fuzz::Chunker chunks(msg, seed ^ 0x33, max_chunk);
  while (!chunks.done()) sizer.Feed(chunks.Next());
  FUZZ_CHECK(sizer.Finish() == plain.size(), "chunked CrlfSizer differs");

  // TOP n: the header, the blank line and n body lines, as a prefix.
  if (in.byte(0) != 255) {
    int64_t n = in.byte(0);
    std::string top = Encode(msg, true, n, seed, max_chunk);
    FUZZ_CHECK(stuffed.compare(0, top.size(), top) == 0,
               "TOP %lld is not a prefix: %s", static_cast<long long>(n),
               Printable(top).c_str());
    size_t want = 0;
    bool header = true;
    int64_t body = 0;
    for (const std::string& l : lines) {
      if (!header && body >= n) break;
      want += (!l.empty() && l[0] == '.' ? 1 : 0) + l.size() + 2;
      if (header) {
        if (l.empty()) header = false;
      } else {
        ++body;
      }
    }
    FUZZ_CHECK(top.size() == want, "TOP %lld sent %zu octets, want %zu",
               static_cast<long long>(n), top.size(), want);
  }
  return 0;
}
