// Fuzzes the IMAP command reader and parser (imap/protocol/reader.h,
// command.h) with arbitrary client bytes: the stream is framed twice, once
// in one Feed() and once in input-chosen chunks, and every framed command
// is parsed.
//
// Input: 3 header bytes, then the client's bytes.
//   [0] bits: 1 LITERAL+ offered, 2 UTF-8 mailbox names (IMAP4rev2 or
//       UTF8=ACCEPT enabled), 4 every other continuation request is
//       refused, 8 small limits, 16 the line after IDLE or AUTHENTICATE is
//       read raw (ExpectLine)
//   [1] chunk seed, [2] max chunk length (0: one Feed)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "imap/protocol/command.h"
#include "imap/protocol/datetime.h"
#include "imap/protocol/mutf7.h"
#include "imap/protocol/reader.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::imap;

// A response line we send: "tag BAD text" / "* NO [CODE] text", printable
// ASCII, one CRLF at its end, and no longer than a response needs to be.
void CheckResponseLine(std::string_view line) {
  FUZZ_CHECK(line.size() >= 2 && line.substr(line.size() - 2) == "\r\n",
             "response without CRLF: %s", Printable(line).c_str());
  std::string_view body = line.substr(0, line.size() - 2);
  for (char c : body) {
    FUZZ_CHECK(c >= 0x20 && c < 0x7f, "non-printable response: %s",
               Printable(line).c_str());
  }
  size_t sp = body.find(' ');
  FUZZ_CHECK(sp != std::string_view::npos, "no status: %s",
             Printable(line).c_str());
  std::string_view tag = body.substr(0, sp);
  FUZZ_CHECK(tag == "*" || ValidTag(tag), "invalid tag in %s",
             Printable(line).c_str());
  std::string_view rest = body.substr(sp + 1);
  FUZZ_CHECK(rest.rfind("BAD ", 0) == 0 || rest.rfind("NO ", 0) == 0,
             "not BAD or NO: %s", Printable(line).c_str());
  // The text after the tag is ours: bounded, whatever the client sent.
  FUZZ_CHECK(rest.size() <= 120, "response text of %zu octets: %s", rest.size(),
             Printable(line).c_str());
}

// Rejections carry fixed texts only: no client octet but the tag.
void CheckRejection(const Rejection& r) {
  static constexpr std::string_view kTexts[] = {
      "Command line too long",
      "Command too long",
      "Invalid literal size",
      "Invalid literal size in a refused command",
      "Too many literals",
      "Non-synchronizing literal over 4096 octets",
      "Message over the APPENDLIMIT",
      "Literal too large",
      "Line too long",
  };
  bool known = false;
  for (std::string_view t : kTexts) known = known || r.text == t;
  FUZZ_CHECK(known, "rejection text %s", Printable(r.text).c_str());
  FUZZ_CHECK(r.code.empty() || r.code == "LIMIT" || r.code == "TOOBIG",
             "rejection code %s", Printable(r.code).c_str());
  FUZZ_CHECK(r.tag.empty() || ValidTag(r.tag), "rejection tag %s",
             Printable(r.tag).c_str());
  CheckResponseLine(r.Response());
}

void CheckName(const std::string& name) {
  FUZZ_CHECK(IsUtf8(name), "mailbox name not UTF-8: %s", Printable(name).c_str());
}

// A parsed command agrees with its framing, and what it holds is sound.
void CheckCommand(const FramedCommand& f, const Command& c,
                  const ParseOptions& options) {
  FUZZ_CHECK(c.tag == f.tag, "tag %s framed as %s", Printable(c.tag).c_str(),
             Printable(f.tag).c_str());
  FUZZ_CHECK(ValidTag(c.tag), "accepted tag %s", Printable(c.tag).c_str());
  if (!c.uid) {
    FUZZ_CHECK(CommandNameString(c.name) == f.name, "command %s framed as %s",
               std::string(CommandNameString(c.name)).c_str(),
               Printable(f.name).c_str());
  } else {
    FUZZ_CHECK(f.name == "UID", "UID command framed as %s",
               Printable(f.name).c_str());
  }
  if (auto* a = std::get_if<SelectArgs>(&c.args)) CheckName(a->mailbox);
  if (auto* a = std::get_if<MailboxArgs>(&c.args)) CheckName(a->mailbox);
  if (auto* a = std::get_if<CreateArgs>(&c.args)) CheckName(a->mailbox);
  if (auto* a = std::get_if<StatusArgs>(&c.args)) CheckName(a->mailbox);
  if (auto* a = std::get_if<CopyArgs>(&c.args)) CheckName(a->mailbox);
  if (auto* a = std::get_if<RenameArgs>(&c.args)) {
    CheckName(a->from);
    CheckName(a->to);
  }
  if (auto* a = std::get_if<ListArgs>(&c.args)) {
    CheckName(a->reference);
    for (const std::string& p : a->patterns) CheckName(p);
  }
  if (auto* a = std::get_if<AppendArgs>(&c.args)) {
    CheckName(a->mailbox);
    FUZZ_CHECK(!a->messages.empty(), "APPEND without a message");
    for (const AppendMessage& m : a->messages) {
      if (m.literal) {
        FUZZ_CHECK(*m.literal < f.literals.size() &&
                       f.literals[*m.literal].streamed &&
                       f.literals[*m.literal].size == m.size && m.data.empty(),
                   "streamed message literal %zu", *m.literal);
      } else {
        FUZZ_CHECK(m.data.size() == m.size, "message of %zu octets, size %llu",
                   m.data.size(), static_cast<unsigned long long>(m.size));
      }
      FUZZ_CHECK(!m.utf8 || options.utf8, "UTF8 APPEND without UTF-8");
      if (m.date) {
        // A date that parsed prints back to one that parses the same.
        auto again = ParseDateTime(FormatDateTime(*m.date));
        FUZZ_CHECK(again && *again == *m.date, "date-time %s does not reparse",
                   FormatDateTime(*m.date).c_str());
      }
    }
  } else {
    for (const Literal& l : f.literals) {
      FUZZ_CHECK(!l.streamed, "streamed literal outside APPEND parsed");
    }
  }
}

struct Run {
  std::vector<std::string> log;
  std::vector<FramedCommand> commands;
  uint64_t consumed = 0;
  bool closed = false;
};

Run Frame(std::string_view text, const ReaderLimits& limits, uint8_t bits,
          uint8_t seed, uint8_t max_chunk) {
  Run run;
  CommandReader r(limits);
  tern::fuzz::Chunker chunks(text, seed, max_chunk);
  uint64_t fed = 0;
  uint64_t last_offset = 0;
  size_t continuations = 0;
  while (!chunks.done() && !run.closed) {
    std::string_view piece = chunks.Next();
    int rounds = 0;
    while (!run.closed) {
      FUZZ_CHECK(++rounds < 1000000, "no progress");
      size_t used = r.Feed(piece);
      FUZZ_CHECK(used <= piece.size(), "took %zu of %zu", used, piece.size());
      fed += used;
      piece.remove_prefix(used);
      FUZZ_CHECK(r.consumed() == fed, "consumed %llu of %llu fed",
                 static_cast<unsigned long long>(r.consumed()),
                 static_cast<unsigned long long>(fed));
      switch (r.event()) {
        case ReaderEvent::kNone:
          FUZZ_CHECK(piece.empty(), "stopped with %zu octets left", piece.size());
          break;
        case ReaderEvent::kCommand: {
          FramedCommand c = r.TakeCommand();
          FUZZ_CHECK(c.text.size() <= limits.max_command, "command of %zu octets",
                     c.text.size());
          FUZZ_CHECK(c.literals.size() <= limits.max_literals, "%zu literals",
                     c.literals.size());
          FUZZ_CHECK(run.commands.empty() || c.offset > last_offset,
                     "offsets out of order");
          FUZZ_CHECK(c.offset < fed, "offset past the input");
          FUZZ_CHECK(!c.text.empty() && c.tag.size() <= c.text.size(),
                     "empty command");
          last_offset = c.offset;
          std::string e = "command " + std::to_string(c.offset) + " " + c.text;
          for (const Literal& l : c.literals) {
            FUZZ_CHECK(l.offset <= c.text.size(), "literal offset");
            FUZZ_CHECK(l.streamed ||
                           l.offset + l.size <= c.text.size(),
                       "literal past the text");
            FUZZ_CHECK(!l.streamed || c.name == "APPEND", "streamed in %s",
                       Printable(c.name).c_str());
            FUZZ_CHECK(!l.streamed || l.size > limits.max_literal,
                       "small literal streamed");
            FUZZ_CHECK(l.synchronizing || limits.literal_plus ||
                           l.size <= kLiteralMinusMax,
                       "LITERAL- literal of %llu octets",
                       static_cast<unsigned long long>(l.size));
            e += "|" + std::to_string(l.offset) + ":" + std::to_string(l.size) +
                 (l.synchronizing ? "" : "+") + (l.binary ? "~" : "") +
                 (l.has_nul ? "0" : "");
          }
          run.log.push_back(std::move(e));
          if ((bits & 16) && (c.name == "IDLE" || c.name == "AUTHENTICATE")) {
            r.ExpectLine(limits.max_line);
          }
          run.commands.push_back(std::move(c));
          break;
        }
        case ReaderEvent::kContinue: {
          const Literal& l = r.pending_literal();
          FUZZ_CHECK(l.synchronizing, "continuation for {n+}");
          run.log.push_back("continue " + std::to_string(l.size));
          if ((bits & 4) && continuations++ % 2 == 1) {
            r.RejectLiteral();
            FUZZ_CHECK(r.idle(), "not idle after a refused literal");
          } else {
            r.AcceptLiteral();
          }
          break;
        }
        case ReaderEvent::kLiteralData: {
          FUZZ_CHECK(!r.literal_data().empty(), "empty literal data");
          std::string prefix = "data " + std::to_string(r.literal_index()) + " ";
          if (!run.log.empty() && run.log.back().rfind(prefix, 0) == 0) {
            run.log.back() += r.literal_data();
          } else {
            run.log.push_back(prefix + std::string(r.literal_data()));
          }
          break;
        }
        case ReaderEvent::kLine: {
          std::string line = r.TakeLine();
          FUZZ_CHECK(line.find('\n') == std::string::npos, "LF in a raw line");
          FUZZ_CHECK(line.size() < limits.max_line, "raw line of %zu octets",
                     line.size());
          run.log.push_back("line " + line);
          break;
        }
        case ReaderEvent::kReject:
          CheckRejection(r.rejection());
          run.log.push_back("reject " + r.rejection().Response());
          run.closed = r.rejection().close;
          break;
      }
      if (piece.empty() && r.event() != ReaderEvent::kContinue) break;
    }
  }
  run.consumed = fed;
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 3);
  uint8_t bits = in.byte(0);
  ReaderLimits limits;
  limits.literal_plus = bits & 1;
  if (bits & 8) {
    limits.max_line = 64;
    limits.max_literal = 32;
    limits.append_limit = 1024;
    limits.max_command = 256;
    limits.max_literals = 4;
  }
  ParseOptions options;
  options.utf8 = bits & 2;

  Run whole = Frame(in.body(), limits, bits, 0, 0);
  Run chunked = Frame(in.body(), limits, bits, in.byte(1), in.byte(2));
  // Where Feed() boundaries fall changes nothing.
  FUZZ_CHECK(whole.log.size() == chunked.log.size(), "%zu events whole, %zu chunked",
             whole.log.size(), chunked.log.size());
  for (size_t i = 0; i < whole.log.size(); ++i) {
    FUZZ_CHECK(whole.log[i] == chunked.log[i], "event %zu: %s whole, %s chunked", i,
               Printable(whole.log[i]).c_str(), Printable(chunked.log[i]).c_str());
  }
  FUZZ_CHECK(whole.consumed == chunked.consumed, "consumed differs");

  for (const FramedCommand& f : whole.commands) {
    auto cmd = ParseCommand(f, options);
    if (cmd) {
      CheckCommand(f, *cmd, options);
      // Parsing is a function of the framed command.
      auto again = ParseCommand(f, options);
      FUZZ_CHECK(again && *again == *cmd, "second parse differs");
    } else {
      const std::string& msg = cmd.error().message;
      FUZZ_CHECK(!msg.empty(), "empty BAD text");
      std::string tag = ValidTag(f.tag) ? f.tag : "*";
      CheckResponseLine(tag + " BAD " + msg + "\r\n");
    }
  }

  // Modified UTF-7 (RFC 3501 5.1.3): what decodes re-encodes to itself,
  // and UTF-8 survives a round trip.
  std::string_view body = in.body().substr(0, 256);
  if (auto decoded = DecodeMutf7(body)) {
    FUZZ_CHECK(IsUtf8(*decoded), "decoded name not UTF-8");
    auto enc = EncodeMutf7(*decoded);
    FUZZ_CHECK(enc && *enc == body, "mUTF-7 %s not canonical",
               Printable(body).c_str());
  }
  if (IsUtf8(body)) {
    auto enc = EncodeMutf7(body);
    FUZZ_CHECK(enc, "UTF-8 not encodable");
    auto dec = DecodeMutf7(*enc);
    FUZZ_CHECK(dec && *dec == body, "mUTF-7 round trip of %s",
               Printable(body).c_str());
  }
  return 0;
}
