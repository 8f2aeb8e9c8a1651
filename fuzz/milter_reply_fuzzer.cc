// Fuzzes the milter codec's filter side (antispam/milter_protocol.h): the
// packet reader fed a hostile filter's bytes in input-chosen chunks, and
// ParseMilterReply on every packet. Properties: chunk boundaries change
// neither the packets nor the error; no packet is longer than the reader's
// limit; a parsed reply holds what its kind promises (a 4xx/5xx replycode
// with the same code on every line and no control octets, header names
// without colon or space, non-empty addresses), and a header value
// converted to CRLF has no bare CR or LF left.
//
// Input: 4 header bytes, then the filter's bytes.
//   [0] bit 1: parse the body directly as one reply (command = first body
//       octet, data = the rest), skipping the framing; bit 2: a small
//       reader limit (256)
//   [1] chunk seed, [2] max chunk length (0: one Feed), [3] unused
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "antispam/milter_protocol.h"
#include "fuzz_common.h"

namespace {

using tern::antispam::MilterPacket;
using tern::antispam::MilterReader;
using tern::antispam::MilterReply;
using tern::antispam::ParseMilterReply;
using tern::fuzz::Printable;
using Kind = MilterReply::Kind;

void CheckReply(const MilterReply& r) {
  switch (r.kind) {
    case Kind::kReplyCode: {
      FUZZ_CHECK(r.code >= 400 && r.code <= 599, "reply code %d", r.code);
      FUZZ_CHECK(!r.lines.empty(), "replycode without lines");
      for (const std::string& l : r.lines) {
        for (char c : l) {
          unsigned char u = static_cast<unsigned char>(c);
          FUZZ_CHECK((u >= 0x20 || c == '\t') && u != 0x7f,
                     "control octet in reply line: %s", Printable(l).c_str());
        }
      }
      // Each line of the text starts with the code.
      std::string code = std::to_string(r.code);
      size_t lines = 0;
      for (size_t at = 0;; ++lines) {
        FUZZ_CHECK(r.text.compare(at, 3, code) == 0, "line without code %s: %s",
                   code.c_str(), Printable(r.text).c_str());
        size_t crlf = r.text.find("\r\n", at);
        if (crlf == std::string::npos) break;
        at = crlf + 2;
      }
      FUZZ_CHECK(lines + 1 == r.lines.size(), "%zu lines in text, %zu parsed",
                 lines + 1, r.lines.size());
      if (!r.enhanced.empty()) {
        FUZZ_CHECK(r.enhanced[0] - '0' == r.code / 100 &&
                       r.lines[0].rfind(r.enhanced, 0) == 0,
                   "enhanced code %s for %d", Printable(r.enhanced).c_str(),
                   r.code);
      }
      break;
    }
    case Kind::kAddHeader:
    case Kind::kInsertHeader:
    case Kind::kChangeHeader: {
      FUZZ_CHECK(!r.name.empty() &&
                     r.name.find_first_of(": \t\r\n") == std::string::npos,
                 "header name %s", Printable(r.name).c_str());
      FUZZ_CHECK(r.value.find('\0') == std::string::npos, "NUL in value");
      std::string crlf = tern::antispam::MilterValueToCrlf(r.value);
      for (size_t i = 0; i < crlf.size(); ++i) {
        if (crlf[i] == '\n')
          FUZZ_CHECK(i > 0 && crlf[i - 1] == '\r', "bare LF after conversion");
      }
      break;
    }
    case Kind::kAddRcpt:
    case Kind::kAddRcptPar:
    case Kind::kDelRcpt:
    case Kind::kChangeFrom:
      FUZZ_CHECK(!r.address.empty(), "empty address");
      break;
    default:
      break;
  }
  FUZZ_CHECK(!(r.final() && r.modification()), "final and modification");
}

void Parse(char command, std::string_view data) {
  auto r = ParseMilterReply(command, data);
  if (!r) {
    FUZZ_CHECK(!r.error().message.empty(), "error without a message");
    return;
  }
  CheckReply(*r);
  // Parsing is a function of its input.
  auto again = ParseMilterReply(command, data);
  FUZZ_CHECK(again.has_value() && again->kind == r->kind, "second parse differs");
}

void Stream(std::string_view text, const tern::fuzz::Input& in) {
  uint32_t limit = (in.byte(0) & 2) ? 256 : MilterReader::kDefaultMaxLength;
  MilterReader whole(limit);
  whole.Feed(text);
  std::vector<MilterPacket> expected;
  while (whole.HasPacket()) expected.push_back(whole.Pop());

  MilterReader parts(limit);
  std::vector<MilterPacket> got;
  tern::fuzz::Chunker chunks(text, in.byte(1), in.byte(2));
  while (!chunks.done()) {
    bool ok = parts.Feed(chunks.Next());
    FUZZ_CHECK(ok == !parts.failed(), "Feed result and failed() disagree");
    while (parts.HasPacket()) got.push_back(parts.Pop());
  }
  FUZZ_CHECK(whole.failed() == parts.failed() && whole.error() == parts.error(),
             "failure differs with chunking: '%s' vs '%s'",
             whole.error().c_str(), parts.error().c_str());
  FUZZ_CHECK(got == expected, "%zu packets vs %zu", got.size(), expected.size());
  for (const MilterPacket& p : got) {
    FUZZ_CHECK(p.data.size() + 1 <= limit, "packet of %zu above limit %u",
               p.data.size() + 1, limit);
    Parse(p.command, p.data);
  }
  if (parts.failed()) {
    FUZZ_CHECK(!parts.Feed(tern::antispam::EncodeMilterPacket('c', "")),
               "fed after failure");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 4);
  if (in.byte(0) & 1) {
    std::string_view body = in.body();
    if (!body.empty()) Parse(body[0], body.substr(1));
  } else {
    Stream(in.body(), in);
  }
  return 0;
}
