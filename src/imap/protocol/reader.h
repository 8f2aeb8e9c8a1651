// Frames IMAP client commands from a byte stream, sans-I/O: lines ending in
// CRLF, literals ({n}, {n+}, ~{n}) with their continuation requests, limits,
// and a safe resynchronization after a command is refused mid-way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern::imap {

// RFC 7888 4: without LITERAL+ (IMAP4rev2 has only LITERAL-, RFC 9051 4.3),
// a non-synchronizing literal may carry at most 4096 octets.
inline constexpr uint64_t kLiteralMinusMax = 4096;

struct ReaderLimits {
  // One line of a command with its CRLF, literal octets not counted. RFC
  // 7162 4 asks servers to take at least 8192 octets (long UID sets).
  size_t max_line = 8192;
  // A literal outside APPEND (passwords, mailbox names, search strings).
  uint64_t max_literal = 64 * 1024;
  // RFC 7889 APPENDLIMIT: a literal in APPEND above it gets NO [TOOBIG].
  // APPEND literals above max_literal are not buffered but handed to the
  // caller in pieces (ReaderEvent::kLiteralData).
  uint64_t append_limit = 64 * 1024 * 1024;
  // Everything of one command held in memory: lines and buffered literals.
  uint64_t max_command = 256 * 1024;
  // Literals in one command (MULTIAPPEND sends one per message).
  size_t max_literals = 64;
  // LITERAL+ is offered: non-synchronizing literals of any size (within
  // the limits above). Otherwise LITERAL- rules (kLiteralMinusMax).
  bool literal_plus = false;
};

// One literal of a framed command.
struct Literal {
  size_t offset = 0;         // in FramedCommand::text, just after its "}"
  uint64_t size = 0;
  bool synchronizing = true; // {n}; false for {n+}
  bool binary = false;       // ~{n}, RFC 9051 4.3.1 (APPEND only)
  bool streamed = false;     // octets went out as kLiteralData, not in text
  bool has_nul = false;      // a NUL octet, which only ~{n} may carry
  bool operator==(const Literal&) const = default;
};

// A complete command as the client sent it.
struct FramedCommand {
  std::string tag;   // first token of the first line, as sent (not checked)
  std::string name;  // second token, upper case (at most 32 octets kept)
  // The command without its line ends: the text of every line, each
  // literal's octets right after the "{n}" that announced it (streamed
  // literals excepted). Every octet here is an octet the client sent.
  std::string text;
  std::vector<Literal> literals;
  uint64_t offset = 0;  // where its first octet was in the input stream
};

// A command the reader refused by itself. The caller answers it (Response())
// and goes on feeding: the reader skips what is left of the command.
struct Rejection {
  std::string tag;    // valid tag, or empty: answer untagged ("*")
  bool no = false;    // NO rather than BAD (over APPENDLIMIT, RFC 7889)
  std::string code;   // response code without brackets, may be empty
  std::string text;   // for people; never contains client octets
  bool close = false; // the stream cannot be resynchronized: close after it
  // "tag BAD [CODE] text\r\n"
  std::string Response() const;
};

enum class ReaderEvent {
  kNone,         // everything fed was consumed: feed more
  kCommand,      // TakeCommand()
  // A synchronizing literal was announced (pending_literal(), partial()).
  // Send "+ ..." and call AcceptLiteral(), or send a tagged NO/BAD and call
  // RejectLiteral(): the client then gives up the command (RFC 9051 7.5)
  // and its next line is a new command. Feed() takes nothing until then.
  kContinue,
  // literal_data(): the next octets of a streamed APPEND literal
  // (literal_index() in partial().literals). The view points into the data
  // given to the last Feed().
  kLiteralData,
  kLine,         // TakeLine(): the raw line asked for by ExpectLine()
  kReject,       // rejection()
};

// True for a tag the grammar allows (RFC 9051 9: 1*<ASTRING-CHAR except
// "+">): a response may echo it.
bool ValidTag(std::string_view tag);

class CommandReader {
 public:
  explicit CommandReader(ReaderLimits limits = {});

  // Consumes input up to the next event and returns how many octets it
  // took; the caller keeps the rest and feeds it again after handling
  // event(). A command's end is an event, so the caller can stop after
  // STARTTLS, COMPRESS or AUTHENTICATE and treat the rest differently.
  size_t Feed(std::string_view data);
  ReaderEvent event() const { return event_; }

  FramedCommand TakeCommand();
  std::string TakeLine();
  const Rejection& rejection() const { return rejection_; }
  std::string_view literal_data() const { return chunk_; }
  size_t literal_index() const { return cmd_.literals.size() - 1; }
  // At kContinue and kLiteralData: the command so far, whose last literal
  // is the one announced.
  const FramedCommand& partial() const { return cmd_; }
  const Literal& pending_literal() const { return cmd_.literals.back(); }

  void AcceptLiteral();
  void RejectLiteral();

  // The next line is not a command but a client response: DONE after IDLE
  // (RFC 2177), a SASL response after AUTHENTICATE (RFC 9051 6.2.2). Call
  // between commands; the line comes back as kLine without its CRLF, or
  // as kReject when longer than `limit` octets with its CRLF.
  void ExpectLine(size_t limit);

  // Nothing of a command has been read: safe to switch TLS or compression.
  bool idle() const;
  uint64_t consumed() const { return consumed_; }
  const ReaderLimits& limits() const { return limits_; }

 private:
  enum class State {
    kLine,         // reading a line of a command
    kLiteral,      // reading a literal's octets
    kDecision,     // waiting for AcceptLiteral()/RejectLiteral()
    kSkipLine,     // refused: skipping to the end of the line
    kSkipLiteral,  // refused: skipping a non-synchronizing literal
    kRawLine,      // reading a line for ExpectLine()
    kSkipRawLine,  // that line was too long
  };

  // What is left of a refused command, and so what the reader skips.
  enum class After {
    kSkipLine,     // the rest of the current line (and what it announces)
    kNewCommand,   // nothing: a refused synchronizing literal
    kSkipLiteral,  // remaining_ octets of a non-synchronizing literal
    kClose,        // nothing can be trusted any more
  };

  size_t ReadLine(std::string_view data);
  size_t ReadLiteral(std::string_view data);
  size_t SkipLine(std::string_view data);
  size_t ReadRawLine(std::string_view data);
  void EndOfLine();
  void Announce(uint64_t size, bool sync, bool binary);
  void StartLiteral();
  void Reject(bool no, std::string code, std::string text, After after);
  void ResetCommand();
  void KeepTail(std::string_view s);

  ReaderLimits limits_;
  State state_ = State::kLine;
  ReaderEvent event_ = ReaderEvent::kNone;
  FramedCommand cmd_;
  FramedCommand done_;
  bool in_command_ = false;   // an octet of the current command was read
  bool first_line_ = true;    // reading the command's first line
  size_t line_start_ = 0;     // where the current line starts in cmd_.text
  size_t line_octets_ = 0;    // octets of the current line, CR and LF too
  bool append_ = false;       // the command is APPEND
  uint64_t remaining_ = 0;    // literal octets still to read or skip
  std::string tail_;          // last octets of a skipped line
  bool tail_truncated_ = false;
  std::string raw_;           // the ExpectLine() line
  size_t raw_limit_ = 0;
  Rejection rejection_;
  std::string_view chunk_;
  uint64_t consumed_ = 0;
  uint64_t position_ = 0;     // stream offset of the octet being looked at
};

}  // namespace tern::imap
