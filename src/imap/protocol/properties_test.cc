// Property tests (RapidCheck) of the IMAP command reader and parser on
// generated values, beside the imap_command fuzzer's raw bytes:
//  - a command stream cut into any chunks frames into the same commands;
//  - a string the server writes (quote.h) parses back as the same astring
//    or string, whatever its octets;
//  - modified UTF-7 (RFC 3501 5.1.3) round-trips any UTF-8 mailbox name;
//  - a date-time prints and parses back to itself (RFC 9051 9 date-time).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "imap/protocol/command.h"
#include "imap/protocol/datetime.h"
#include "imap/protocol/mutf7.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/reader.h"

namespace tern::imap {
namespace {

// Frames `input` with the given chunk lengths (cycled), saying "+" to every
// literal; returns one entry per event.
std::vector<std::string> Frame(std::string_view input,
                               const std::vector<size_t>& chunks) {
  ReaderLimits limits;
  limits.max_line = 200;
  limits.max_literal = 100;
  limits.max_command = 2000;
  CommandReader r(limits);
  std::vector<std::string> log;
  size_t k = 0;
  while (!input.empty()) {
    size_t n = chunks.empty() ? input.size() : chunks[k++ % chunks.size()];
    std::string_view piece = input.substr(0, std::max<size_t>(1, n));
    input.remove_prefix(piece.size());
    while (true) {
      piece.remove_prefix(r.Feed(piece));
      switch (r.event()) {
        case ReaderEvent::kCommand:
          log.push_back("C" + r.TakeCommand().text);
          break;
        case ReaderEvent::kContinue:
          log.push_back("+");
          r.AcceptLiteral();
          break;
        case ReaderEvent::kLiteralData:
          if (log.empty() || log.back()[0] != 'D') log.push_back("D");
          log.back() += r.literal_data();
          break;
        case ReaderEvent::kReject:
          log.push_back("R" + r.rejection().Response());
          break;
        default:
          break;
      }
      if (piece.empty() && r.event() != ReaderEvent::kContinue) break;
    }
  }
  return log;
}

// Pieces of commands: plain lines, literals of each kind, too-long lines,
// APPENDs whose literal is streamed.
rc::Gen<std::string> CommandText() {
  auto word = rc::gen::container<std::string>(
      rc::gen::elementOf(std::string("abcXYZ019 ()\"\\*%")));
  return rc::gen::oneOf(
      rc::gen::map(rc::gen::resize(60, word),
                   [](const std::string& w) { return "a LIST " + w + "\r\n"; }),
      rc::gen::map(rc::gen::resize(120, rc::gen::arbitrary<std::string>()),
                   [](const std::string& s) {
                     return "b LOGIN {" + std::to_string(s.size()) + "}\r\n" + s +
                            " {0+}\r\n\r\n";
                   }),
      rc::gen::map(rc::gen::resize(300, rc::gen::arbitrary<std::string>()),
                   [](const std::string& s) {
                     return "c APPEND x ~{" + std::to_string(s.size()) + "}\r\n" +
                            s + "\r\n";
                   }),
      rc::gen::map(rc::gen::inRange<size_t>(150, 400), [](size_t n) {
        return "d LOGIN " + std::string(n, 'u') + " {3+}\r\nabc\r\n";
      }),
      rc::gen::just(std::string("e NOOP\n\r\n")));
}

RC_GTEST_PROP(ImapProperties, ChunkingDoesNotChangeFraming, ()) {
  auto parts = *rc::gen::resize(
      8, rc::gen::nonEmpty(rc::gen::container<std::vector<std::string>>(
             CommandText())));
  std::string input;
  for (const std::string& p : parts) input += p;
  auto chunks = *rc::gen::nonEmpty(rc::gen::container<std::vector<size_t>>(
      rc::gen::inRange<size_t>(1, 40)));
  RC_ASSERT(Frame(input, chunks) == Frame(input, {}));
}

RC_GTEST_PROP(ImapProperties, WrittenStringsParseBack, (const std::string& s)) {
  RC_PRE(s.find('\0') == std::string::npos);  // no NUL in IMAP strings
  bool utf8 = *rc::gen::arbitrary<bool>();
  std::string wire = "a LOGIN " + FormatAstring(s, utf8) + " " +
                     FormatString(s, utf8) + "\r\n";
  ReaderLimits limits;
  limits.literal_plus = true;
  CommandReader r(limits);
  std::string_view in = wire;
  FramedCommand framed;
  while (!in.empty()) {
    in.remove_prefix(r.Feed(in));
    if (r.event() == ReaderEvent::kContinue) r.AcceptLiteral();
    if (r.event() == ReaderEvent::kCommand) framed = r.TakeCommand();
    RC_ASSERT(r.event() != ReaderEvent::kReject);
  }
  auto cmd = ParseCommand(framed);
  RC_ASSERT(cmd.has_value());
  RC_ASSERT(cmd->get<LoginArgs>().user == s);
  RC_ASSERT(cmd->get<LoginArgs>().password == s);
}

// Any sequence of Unicode scalar values, as UTF-8.
rc::Gen<std::string> Utf8Name() {
  auto cp = rc::gen::oneOf(rc::gen::inRange<uint32_t>(0x20, 0x7f),
                           rc::gen::inRange<uint32_t>(0x80, 0x800),
                           rc::gen::inRange<uint32_t>(0x800, 0xd800),
                           rc::gen::inRange<uint32_t>(0xe000, 0x10000),
                           rc::gen::inRange<uint32_t>(0x10000, 0x110000));
  return rc::gen::map(
      rc::gen::container<std::vector<uint32_t>>(cp),
      [](const std::vector<uint32_t>& cps) {
        std::string out;
        for (uint32_t c : cps) {
          if (c < 0x80) {
            out += static_cast<char>(c);
          } else if (c < 0x800) {
            out += static_cast<char>(0xC0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3F));
          } else if (c < 0x10000) {
            out += static_cast<char>(0xE0 | (c >> 12));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
          } else {
            out += static_cast<char>(0xF0 | (c >> 18));
            out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
          }
        }
        return out;
      });
}

RC_GTEST_PROP(ImapProperties, ModifiedUtf7RoundTrips, ()) {
  std::string name = *Utf8Name();
  RC_ASSERT(IsUtf8(name));
  auto encoded = EncodeMutf7(name);
  RC_ASSERT(encoded.has_value());
  for (char c : *encoded) RC_ASSERT(c >= 0x20 && c <= 0x7e);
  auto decoded = DecodeMutf7(*encoded);
  RC_ASSERT(decoded.has_value());
  RC_ASSERT(*decoded == name);
  // And the parser takes the encoded name where a mailbox goes.
  std::string wire = "a SELECT " + FormatAstring(*encoded, false) + "\r\n";
  CommandReader r;
  r.Feed(wire);
  RC_ASSERT(r.event() == ReaderEvent::kCommand);
  auto cmd = ParseCommand(r.TakeCommand());
  RC_ASSERT(cmd.has_value());
  const std::string& got = cmd->get<SelectArgs>().mailbox;
  RC_ASSERT(got == name || (got == "INBOX" && name.size() == 5));
}

RC_GTEST_PROP(ImapProperties, DateTimePrintsAndParsesBack, ()) {
  int64_t t = *rc::gen::inRange<int64_t>(-2208988800LL, 7258118400LL);
  int zone = *rc::gen::inRange(-1439, 1440);
  DateTime dt = FromUnixSeconds(t, zone);
  RC_ASSERT(ToUnixSeconds(dt) == t);
  auto again = ParseDateTime(FormatDateTime(dt));
  RC_ASSERT(again.has_value());
  RC_ASSERT(*again == dt);
  auto date = ParseDate(FormatDate(dt.date));
  RC_ASSERT(date.has_value());
  RC_ASSERT(*date == dt.date);
}

}  // namespace
}  // namespace tern::imap
