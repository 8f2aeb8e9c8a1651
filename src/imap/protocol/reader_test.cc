// Unit tests for the sans-I/O IMAP command reader: lines, the three kinds
// of literal (RFC 9051 4.3, 4.3.1; RFC 7888 LITERAL+ and LITERAL-),
// continuation requests, the limits and their exact rejections,
// resynchronization after a refused command, APPEND literal streaming,
// ExpectLine() for IDLE's DONE and SASL responses, and that the chunking of
// the input changes nothing.
#include "imap/protocol/reader.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace tern::imap {
namespace {

// How the fake connection answers continuation requests.
enum class Literals { kAccept, kReject };

struct DriveOptions {
  size_t chunk = 0;  // octets per Feed(); 0: everything at once
  Literals literals = Literals::kAccept;
  // After a command of this name, the next line is raw (ExpectLine()).
  std::string expect_line_after;
  size_t raw_limit = 1000;
};

// Feeds `input` the way a connection would and writes what happens as a
// list of events; adjacent literal data events are merged so that the log
// does not depend on the chunking.
std::vector<std::string> Drive(CommandReader& r, std::string_view input,
                               const DriveOptions& o = {}) {
  std::vector<std::string> log;
  size_t guard = 0;
  while (!input.empty()) {
    size_t n = o.chunk == 0 ? input.size() : std::min(o.chunk, input.size());
    std::string_view piece = input.substr(0, n);
    input.remove_prefix(n);
    while (true) {
      EXPECT_LT(++guard, 1000000u) << "no progress";
      if (guard >= 1000000u) return log;
      size_t used = r.Feed(piece);
      EXPECT_LE(used, piece.size());
      piece.remove_prefix(used);
      switch (r.event()) {
        case ReaderEvent::kNone:
          EXPECT_TRUE(piece.empty());
          break;
        case ReaderEvent::kCommand: {
          FramedCommand c = r.TakeCommand();
          std::string entry = "command " + c.tag + "|" + c.name + "|" + c.text;
          for (const Literal& l : c.literals) {
            entry += "|lit@" + std::to_string(l.offset) + ":" +
                     std::to_string(l.size) + (l.synchronizing ? "" : "+") +
                     (l.binary ? "~" : "") + (l.streamed ? "s" : "") +
                     (l.has_nul ? "0" : "");
          }
          log.push_back(entry);
          if (!o.expect_line_after.empty() && c.name == o.expect_line_after) {
            r.ExpectLine(o.raw_limit);
          }
          break;
        }
        case ReaderEvent::kContinue:
          log.push_back("continue " + std::to_string(r.pending_literal().size));
          if (o.literals == Literals::kAccept) {
            r.AcceptLiteral();
          } else {
            r.RejectLiteral();
          }
          break;
        case ReaderEvent::kLiteralData: {
          std::string prefix = "data " + std::to_string(r.literal_index()) + " ";
          if (!log.empty() && log.back().rfind(prefix, 0) == 0) {
            log.back() += r.literal_data();
          } else {
            log.push_back(prefix + std::string(r.literal_data()));
          }
          break;
        }
        case ReaderEvent::kLine:
          log.push_back("line " + r.TakeLine());
          break;
        case ReaderEvent::kReject:
          log.push_back("reject " + r.rejection().Response() +
                        (r.rejection().close ? " close" : ""));
          break;
      }
      if (piece.empty() && r.event() != ReaderEvent::kContinue) break;
    }
  }
  return log;
}

std::vector<std::string> DriveNew(std::string_view input,
                                  const DriveOptions& o = {},
                                  ReaderLimits limits = {}) {
  CommandReader r(limits);
  return Drive(r, input, o);
}

using Log = std::vector<std::string>;

TEST(ImapReader, OneCommand) {
  EXPECT_EQ(DriveNew("a1 NOOP\r\n"), Log({"command a1|NOOP|a1 NOOP"}));
}

TEST(ImapReader, NameIsUpperCaseTagAsSent) {
  EXPECT_EQ(DriveNew("Ab.1 login u p\r\n"),
            Log({"command Ab.1|LOGIN|Ab.1 login u p"}));
}

TEST(ImapReader, BareLfEndsALineToo) {
  EXPECT_EQ(DriveNew("a NOOP\nb CAPABILITY\r\n"),
            Log({"command a|NOOP|a NOOP", "command b|CAPABILITY|b CAPABILITY"}));
}

TEST(ImapReader, EmptyLinesBetweenCommandsAreIgnored) {
  EXPECT_EQ(DriveNew("\r\n\r\na NOOP\r\n\n"), Log({"command a|NOOP|a NOOP"}));
}

TEST(ImapReader, CrInsideALineStaysInTheText) {
  EXPECT_EQ(DriveNew("a NO\rOP\r\n"), Log({"command a|NO\rOP|a NO\rOP"}));
}

TEST(ImapReader, FeedStopsAtTheEndOfEachCommand) {
  CommandReader r;
  std::string_view in = "a NOOP\r\nb STARTTLS\r\n\x16\x03\x01";
  size_t used = r.Feed(in);
  EXPECT_EQ(used, 8u);
  EXPECT_EQ(r.event(), ReaderEvent::kCommand);
  EXPECT_EQ(r.TakeCommand().name, "NOOP");
  in.remove_prefix(used);
  used = r.Feed(in);
  EXPECT_EQ(used, 12u);
  EXPECT_EQ(r.event(), ReaderEvent::kCommand);
  FramedCommand c = r.TakeCommand();
  EXPECT_EQ(c.name, "STARTTLS");
  EXPECT_EQ(c.offset, 8u);
  // The TLS handshake that follows is not the reader's.
  EXPECT_TRUE(r.idle());
  EXPECT_EQ(r.consumed(), 20u);
}

TEST(ImapReader, IdleOnlyBetweenCommands) {
  CommandReader r;
  EXPECT_TRUE(r.idle());
  r.Feed("a NO");
  EXPECT_FALSE(r.idle());
  r.Feed("OP\r\n");
  EXPECT_EQ(r.event(), ReaderEvent::kCommand);
  EXPECT_TRUE(r.idle());
}

// RFC 9051 4.3: "{n}" CRLF, then the server's "+" and n octets.
TEST(ImapReader, SynchronizingLiteral) {
  CommandReader r;
  std::string_view in = "a LOGIN {5}\r\nalice {6}\r\nsecret\r\n";
  size_t used = r.Feed(in);
  EXPECT_EQ(used, 13u);
  ASSERT_EQ(r.event(), ReaderEvent::kContinue);
  EXPECT_EQ(r.pending_literal().size, 5u);
  EXPECT_TRUE(r.pending_literal().synchronizing);
  EXPECT_EQ(r.partial().tag, "a");
  EXPECT_EQ(r.partial().name, "LOGIN");
  // Nothing is taken until the server has decided.
  EXPECT_EQ(r.Feed(in.substr(used)), 0u);
  EXPECT_EQ(r.event(), ReaderEvent::kContinue);
  r.AcceptLiteral();
  in.remove_prefix(used);
  used = r.Feed(in);
  ASSERT_EQ(r.event(), ReaderEvent::kContinue);
  EXPECT_EQ(r.pending_literal().size, 6u);
  r.AcceptLiteral();
  in.remove_prefix(used);
  used = r.Feed(in);
  EXPECT_EQ(used, in.size());
  ASSERT_EQ(r.event(), ReaderEvent::kCommand);
  FramedCommand c = r.TakeCommand();
  EXPECT_EQ(c.text, "a LOGIN {5}alice {6}secret");
  ASSERT_EQ(c.literals.size(), 2u);
  EXPECT_EQ(c.literals[0], (Literal{11, 5, true, false, false, false}));
  EXPECT_EQ(c.literals[1], (Literal{20, 6, true, false, false, false}));
}

TEST(ImapReader, LiteralOctetsAreNotInterpreted) {
  // CRLF, "{1}" and a whole command inside a literal are just octets.
  EXPECT_EQ(DriveNew("a LOGIN {15}\r\nx\r\nb NOOP {1}\r\n p\r\n"),
            Log({"continue 15",
                 "command a|LOGIN|a LOGIN {15}x\r\nb NOOP {1}\r\n p|lit@12:15"}));
}

TEST(ImapReader, EmptySynchronizingLiteralStillAsksForContinuation) {
  EXPECT_EQ(DriveNew("a LOGIN {0}\r\n {0}\r\n\r\n"),
            Log({"continue 0", "continue 0",
                 "command a|LOGIN|a LOGIN {0} {0}|lit@11:0|lit@15:0"}));
}

// RFC 9051 7.5: after a tagged NO/BAD instead of "+", the client does not
// send the literal; its next line is a new command.
TEST(ImapReader, RejectedLiteralEndsTheCommand) {
  DriveOptions o;
  o.literals = Literals::kReject;
  EXPECT_EQ(DriveNew("a LOGIN {5}\r\nb NOOP\r\n", o),
            Log({"continue 5", "command b|NOOP|b NOOP"}));
}

// RFC 7888 3: "{n+}" needs no continuation.
TEST(ImapReader, NonSynchronizingLiteral) {
  EXPECT_EQ(DriveNew("a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n"),
            Log({"command a|LOGIN|a LOGIN {5+}alice {6+}secret|lit@12:5+|lit@22:6+"}));
}

// RFC 9051 4.3.1: literal8 "~{n}" may carry NUL.
TEST(ImapReader, BinaryLiteral) {
  std::string in = "a APPEND x ~{3}\r\n";
  in += std::string("a\0b", 3);
  in += "\r\n";
  Log log = DriveNew(in);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], "continue 3");
  EXPECT_EQ(log[1], "command a|APPEND|a APPEND x ~{3}" + std::string("a\0b", 3) +
                        "|lit@15:3~0");
}

TEST(ImapReader, NulInAPlainLiteralIsMarked) {
  std::string in = "a LOGIN {1+}\r\n";
  in += '\0';
  in += " p\r\n";
  Log log = DriveNew(in);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0], "command a|LOGIN|a LOGIN {1+}" + std::string(1, '\0') +
                        " p|lit@12:1+0");
}

// RFC 7888 4 (LITERAL-, the only form IMAP4rev2 has): a non-synchronizing
// literal of more than 4096 octets is refused; its octets still come and
// are skipped, and so is the rest of the command.
TEST(ImapReader, LiteralMinusAllows4096) {
  std::string in = "a LOGIN u {4096+}\r\n" + std::string(4096, 'p') + "\r\n";
  Log log = DriveNew(in);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].substr(0, 24), "command a|LOGIN|a LOGIN ");
}

TEST(ImapReader, LiteralMinusRefusesMoreThan4096) {
  std::string in = "a LOGIN u {4097+}\r\n" + std::string(4097, 'p') +
                   " {3+}\r\nb N\r\nc NOOP\r\n";
  EXPECT_EQ(DriveNew(in),
            Log({"reject a BAD [TOOBIG] Non-synchronizing literal over 4096 "
                 "octets\r\n",
                 "command c|NOOP|c NOOP"}));
}

TEST(ImapReader, LiteralMinusDoesNotLimitSynchronizingLiterals) {
  std::string in = "a LOGIN u {5000}\r\n" + std::string(5000, 'p') + "\r\n";
  Log log = DriveNew(in);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], "continue 5000");
  EXPECT_EQ(log[1].substr(0, 24), "command a|LOGIN|a LOGIN ");
}

TEST(ImapReader, LiteralPlusTakesLargerNonSynchronizingLiterals) {
  ReaderLimits limits;
  limits.literal_plus = true;
  std::string in = "a LOGIN u {5000+}\r\n" + std::string(5000, 'p') + "\r\n";
  Log log = DriveNew(in, {}, limits);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("|lit@17:5000+"), std::string::npos) << log[0];
}

TEST(ImapReader, LineLimitRejection) {
  ReaderLimits limits;
  limits.max_line = 20;
  // 20 octets with CRLF is the most a line may have.
  EXPECT_EQ(DriveNew("a LOGIN 12345 7890\r\n"
                     "a LOGIN 12345 78901\r\n"
                     "b NOOP\r\n",
                     {}, limits),
            Log({"command a|LOGIN|a LOGIN 12345 7890",
                 "reject a BAD [LIMIT] Command line too long\r\n",
                 "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, LineLimitWithoutTagAnswersUntagged) {
  ReaderLimits limits;
  limits.max_line = 10;
  EXPECT_EQ(DriveNew("abcdefghijklmnop\r\nb NOOP\r\n", {}, limits),
            Log({"reject * BAD [LIMIT] Command line too long\r\n",
                 "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, LineLimitInvalidTagAnswersUntagged) {
  ReaderLimits limits;
  limits.max_line = 10;
  EXPECT_EQ(DriveNew("a+b NOOP NOOP NOOP\r\n", {}, limits),
            Log({"reject * BAD [LIMIT] Command line too long\r\n"}));
}

// A refused long line that announces a non-synchronizing literal: the
// literal's octets (which here look like a command) are skipped, then the
// rest of the command.
TEST(ImapReader, ResynchronizesPastTheLiteralOfARefusedLine) {
  ReaderLimits limits;
  limits.max_line = 30;
  std::string in = "a LOGIN " + std::string(40, 'u') + " {10+}\r\n" +
                   "x DELETE y" + " {2+}\r\nzz\r\nb NOOP\r\n";
  EXPECT_EQ(DriveNew(in, {}, limits),
            Log({"reject a BAD [LIMIT] Command line too long\r\n",
                 "command b|NOOP|b NOOP"}));
}

// A refused long line that ends in a synchronizing literal: the client
// waits for "+", gets the BAD and drops the command.
TEST(ImapReader, RefusedLineWithSynchronizingLiteral) {
  ReaderLimits limits;
  limits.max_line = 30;
  std::string in = "a LOGIN " + std::string(40, 'u') + " {10}\r\nb NOOP\r\n";
  EXPECT_EQ(DriveNew(in, {}, limits),
            Log({"reject a BAD [LIMIT] Command line too long\r\n",
                 "command b|NOOP|b NOOP"}));
}

// When the digits of a refused line's literal were not all kept, the size
// of the octets that follow cannot be known: the connection must close.
TEST(ImapReader, RefusedLineWithUnknowableLiteralSizeCloses) {
  ReaderLimits limits;
  limits.max_line = 30;
  std::string in = "a LOGIN u {" + std::string(60, '1') + "+}\r\n";
  Log log = DriveNew(in, {}, limits);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], "reject a BAD [LIMIT] Command line too long\r\n");
  EXPECT_EQ(log[1],
            "reject * BAD Invalid literal size in a refused command\r\n close");
}

TEST(ImapReader, InvalidSynchronizingLiteralSize) {
  EXPECT_EQ(DriveNew("a LOGIN {99999999999999999999}\r\nb NOOP\r\n"),
            Log({"reject a BAD Invalid literal size\r\n",
                 "command b|NOOP|b NOOP"}));
  // More than 2^63 - 1 (RFC 9051 9 number64).
  EXPECT_EQ(DriveNew("a LOGIN {9223372036854775808}\r\nb NOOP\r\n"),
            Log({"reject a BAD Invalid literal size\r\n",
                 "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, InvalidNonSynchronizingLiteralSizeCloses) {
  EXPECT_EQ(DriveNew("a LOGIN {99999999999999999999+}\r\n"),
            Log({"reject a BAD Invalid literal size\r\n close"}));
}

TEST(ImapReader, NotALiteral) {
  EXPECT_EQ(DriveNew("a LOGIN {} x}\r\n"),
            Log({"command a|LOGIN|a LOGIN {} x}"}));
  EXPECT_EQ(DriveNew("a LOGIN u {+}\r\n"),
            Log({"command a|LOGIN|a LOGIN u {+}"}));
}

TEST(ImapReader, LiteralLimitOutsideAppend) {
  ReaderLimits limits;
  limits.max_literal = 100;
  EXPECT_EQ(DriveNew("a LOGIN {101}\r\nb NOOP\r\n", {}, limits),
            Log({"reject a BAD [LIMIT] Literal too large\r\n",
                 "command b|NOOP|b NOOP"}));
  // A non-synchronizing one is skipped with the rest of its command.
  ReaderLimits plus = limits;
  plus.literal_plus = true;
  EXPECT_EQ(DriveNew("a LOGIN {101+}\r\n" + std::string(101, 'x') +
                         " pass\r\nb NOOP\r\n",
                     {}, plus),
            Log({"reject a BAD [LIMIT] Literal too large\r\n",
                 "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, TooManyLiterals) {
  ReaderLimits limits;
  limits.max_literals = 2;
  EXPECT_EQ(DriveNew("a X {1+}\r\n1 {1+}\r\n2 {1+}\r\n3\r\nb NOOP\r\n", {},
                     limits),
            Log({"reject a BAD [LIMIT] Too many literals\r\n",
                 "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, CommandLimitCountsLinesAndLiterals) {
  ReaderLimits limits;
  limits.max_command = 40;
  limits.max_line = 100;
  // 13 + 20 octets fit, the next 10 do not.
  EXPECT_EQ(DriveNew("a LOGIN {20+}\r\n" + std::string(20, 'x') +
                         " {10+}\r\n0123456789\r\nb NOOP\r\n",
                     {}, limits),
            Log({"reject a BAD [LIMIT] Command too long\r\n",
                 "command b|NOOP|b NOOP"}));
  // Lines alone, too.
  EXPECT_EQ(DriveNew("a LOGIN {1+}\r\nx " + std::string(40, 'y') +
                         "\r\nb NOOP\r\n",
                     {}, limits),
            Log({"reject a BAD [LIMIT] Command too long\r\n",
                 "command b|NOOP|b NOOP"}));
}

// RFC 7889: APPEND literals up to APPENDLIMIT; those above max_literal are
// handed out as they come rather than buffered.
TEST(ImapReader, AppendLiteralIsStreamed) {
  ReaderLimits limits;
  limits.max_literal = 8;
  std::string msg = "Subject: hi\r\n\r\nbody\r\n";
  Log log = DriveNew("a APPEND INBOX (\\Seen) {" + std::to_string(msg.size()) +
                         "}\r\n" + msg + "\r\n",
                     {}, limits);
  EXPECT_EQ(log, Log({"continue 21", "data 0 " + msg,
                      "command a|APPEND|a APPEND INBOX (\\Seen) {21}|lit@27:21s"}));
}

TEST(ImapReader, AppendStreamingIsChunkedAsFed) {
  ReaderLimits limits;
  limits.max_literal = 4;
  CommandReader r(limits);
  std::string_view in = "a APPEND x {10}\r\n0123456789 {2}\r\nab\r\n";
  size_t used = r.Feed(in);
  ASSERT_EQ(r.event(), ReaderEvent::kContinue);
  r.AcceptLiteral();
  in.remove_prefix(used);
  used = r.Feed(in.substr(0, 3));
  EXPECT_EQ(used, 3u);
  ASSERT_EQ(r.event(), ReaderEvent::kLiteralData);
  EXPECT_EQ(r.literal_data(), "012");
  EXPECT_EQ(r.literal_index(), 0u);
  in.remove_prefix(used);
  used = r.Feed(in);
  ASSERT_EQ(r.event(), ReaderEvent::kLiteralData);
  EXPECT_EQ(r.literal_data(), "3456789");
  in.remove_prefix(used);
  // A second message of MULTIAPPEND, small enough to be buffered.
  used = r.Feed(in);
  ASSERT_EQ(r.event(), ReaderEvent::kContinue);
  EXPECT_EQ(r.partial().literals.size(), 2u);
  r.AcceptLiteral();
  in.remove_prefix(used);
  used = r.Feed(in);
  EXPECT_EQ(used, in.size());
  ASSERT_EQ(r.event(), ReaderEvent::kCommand);
  FramedCommand c = r.TakeCommand();
  EXPECT_EQ(c.text, "a APPEND x {10} {2}ab");
  ASSERT_EQ(c.literals.size(), 2u);
  EXPECT_TRUE(c.literals[0].streamed);
  EXPECT_FALSE(c.literals[1].streamed);
}

TEST(ImapReader, AppendOverAppendLimitGetsNoTooBig) {
  ReaderLimits limits;
  limits.append_limit = 1000;
  EXPECT_EQ(DriveNew("a APPEND INBOX {1001}\r\nb NOOP\r\n", {}, limits),
            Log({"reject a NO [TOOBIG] Message over the APPENDLIMIT\r\n",
                 "command b|NOOP|b NOOP"}));
  limits.literal_plus = true;
  EXPECT_EQ(DriveNew("a APPEND INBOX {1001+}\r\n" + std::string(1001, 'm') +
                         "\r\nb NOOP\r\n",
                     {}, limits),
            Log({"reject a NO [TOOBIG] Message over the APPENDLIMIT\r\n",
                 "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, AppendDetectionIgnoresCase) {
  ReaderLimits limits;
  limits.max_literal = 2;
  Log log = DriveNew("a append x {3}\r\nabc\r\n", {}, limits);
  EXPECT_EQ(log, Log({"continue 3", "data 0 abc",
                      "command a|APPEND|a append x {3}|lit@14:3s"}));
}

// RFC 2177 3: DONE ends IDLE; RFC 9051 6.2.2: SASL responses are lines.
TEST(ImapReader, ExpectLineAfterIdle) {
  DriveOptions o;
  o.expect_line_after = "IDLE";
  EXPECT_EQ(DriveNew("a IDLE\r\nDONE\r\nb NOOP\r\n", o),
            Log({"command a|IDLE|a IDLE", "line DONE", "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, ExpectLineForSasl) {
  DriveOptions o;
  o.expect_line_after = "AUTHENTICATE";
  // A response that looks like a literal announcement is just a line.
  EXPECT_EQ(DriveNew("a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA== {5}\r\n"
                     "b NOOP\r\n",
                     o),
            Log({"command a|AUTHENTICATE|a AUTHENTICATE PLAIN",
                 "line AGFsaWNlAHNlY3JldA== {5}", "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, ExpectLineTooLong) {
  DriveOptions o;
  o.expect_line_after = "AUTHENTICATE";
  o.raw_limit = 10;
  // 10 octets with CRLF fit.
  EXPECT_EQ(DriveNew("a AUTHENTICATE PLAIN\r\n12345678\r\n", o),
            Log({"command a|AUTHENTICATE|a AUTHENTICATE PLAIN", "line 12345678"}));
  EXPECT_EQ(DriveNew("a AUTHENTICATE PLAIN\r\n123456789\r\nb NOOP\r\n", o),
            Log({"command a|AUTHENTICATE|a AUTHENTICATE PLAIN",
                 "reject * BAD Line too long\r\n", "command b|NOOP|b NOOP"}));
}

TEST(ImapReader, ExpectLineIsIgnoredInsideACommand) {
  CommandReader r;
  r.Feed("a NO");
  r.ExpectLine(100);
  r.Feed("OP\r\n");
  EXPECT_EQ(r.event(), ReaderEvent::kCommand);
}

TEST(ImapReader, ValidTag) {
  EXPECT_TRUE(ValidTag("a1"));
  EXPECT_TRUE(ValidTag("A.001]"));
  EXPECT_FALSE(ValidTag(""));
  EXPECT_FALSE(ValidTag("a+1"));
  EXPECT_FALSE(ValidTag("a*"));
  EXPECT_FALSE(ValidTag("a{1"));
  EXPECT_FALSE(ValidTag("a\"b"));
  EXPECT_FALSE(ValidTag("a%"));
  EXPECT_FALSE(ValidTag("\xc3\xa9"));
}

TEST(ImapReader, RejectionResponse) {
  Rejection r;
  r.tag = "a1";
  r.code = "LIMIT";
  r.text = "Too much";
  EXPECT_EQ(r.Response(), "a1 BAD [LIMIT] Too much\r\n");
  r.tag.clear();
  r.no = true;
  r.code.clear();
  EXPECT_EQ(r.Response(), "* NO Too much\r\n");
}

// The same input in any chunking gives the same events.
TEST(ImapReader, ChunkingChangesNothing) {
  const std::string inputs[] = {
      "a1 NOOP\r\nb LOGIN {5}\r\nalice {6+}\r\nsecret\r\n\r\nc LOGOUT\n",
      "a APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {30}\r\n" +
          std::string(30, 'm') + " ~{4}\r\n" + std::string("a\0\r\n", 4) +
          "\r\nb NOOP\r\n",
      "a LOGIN u {5000+}\r\n" + std::string(5000, 'x') + "\r\nb NOOP\r\n",
      "a LOGIN " + std::string(9000, 'u') + " {3+}\r\nabc\r\nb NOOP\r\n",
      "a LOGIN {99999999999999999999}\r\nb NOOP\r\n",
      "a IDLE\r\nDONE\r\nb IDLE\r\n" + std::string(2000, 'D') + "\r\nc NOOP\r\n",
      "a APPEND x {70000}\r\n" + std::string(70000, 'z') + "\r\n",
  };
  for (const std::string& in : inputs) {
    DriveOptions whole;
    whole.expect_line_after = "IDLE";
    Log expected = DriveNew(in, whole);
    for (size_t chunk : {1u, 2u, 3u, 7u, 64u, 4095u}) {
      DriveOptions o = whole;
      o.chunk = chunk;
      EXPECT_EQ(DriveNew(in, o), expected)
          << "chunk " << chunk << " input " << in.substr(0, 60);
    }
  }
}

TEST(ImapReader, OffsetsAndConsumedCountEveryOctet) {
  CommandReader r;
  std::string in = "\r\na NOOP\r\nb LOGIN {1+}\r\nx y\r\n";
  Drive(r, in);
  EXPECT_EQ(r.consumed(), in.size());
  CommandReader r2;
  std::string_view rest = in;
  std::vector<uint64_t> offsets;
  while (!rest.empty()) {
    rest.remove_prefix(r2.Feed(rest));
    if (r2.event() == ReaderEvent::kCommand) {
      offsets.push_back(r2.TakeCommand().offset);
    }
  }
  EXPECT_EQ(offsets, (std::vector<uint64_t>{2, 10}));
}

}  // namespace
}  // namespace tern::imap
