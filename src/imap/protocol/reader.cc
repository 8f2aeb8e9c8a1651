// The IMAP command reader: a small state machine over the input stream
// (reader.h). It never buffers more than one command (limits included) and
// a few octets of a line it is skipping.
#include "imap/protocol/reader.h"

#include <algorithm>
#include <utility>

namespace tern::imap {
namespace {

// A line that ends in a literal announcement: "{n}", "{n+}", "~{n}".
struct Marker {
  bool found = false;
  bool valid = false;  // n is a number64 (RFC 9051 9: at most 2^63 - 1)
  uint64_t size = 0;
  bool sync = true;
  bool binary = false;
};

// Octets of a skipped line kept to find its literal announcement:
// "~{" + 19 digits + "+}" with room to spare.
constexpr size_t kTailMax = 32;
// number64 has at most 19 digits; more (even leading zeros) is refused.
constexpr size_t kMaxDigits = 19;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// `line` has no line end. `truncated`: octets before `line` were dropped,
// so a digit run reaching its start may be longer than it looks.
Marker FindMarker(std::string_view line, bool truncated) {
  Marker m;
  if (line.empty() || line.back() != '}') return m;
  size_t end = line.size() - 1;  // index of '}'
  if (end > 0 && line[end - 1] == '+') {
    m.sync = false;
    --end;
  }
  size_t start = end;
  while (start > 0 && IsDigit(line[start - 1])) --start;
  if (start == end) return m;  // "{}" or "x}": not a literal
  if (start == 0) {
    // The digits reach the start of what we kept: if we dropped octets,
    // this may be a literal with a size we cannot know.
    if (truncated) m.found = true;
    return m;
  }
  if (line[start - 1] != '{') return m;
  m.found = true;
  m.binary = start >= 2 && line[start - 2] == '~';
  std::string_view digits = line.substr(start, end - start);
  if (digits.size() > kMaxDigits) return m;
  uint64_t n = 0;
  for (char c : digits) n = n * 10 + static_cast<uint64_t>(c - '0');
  if (n > static_cast<uint64_t>(INT64_MAX)) return m;
  m.size = n;
  m.valid = true;
  return m;
}

bool IsAstringChar(unsigned char c) {
  // RFC 9051 9: ATOM-CHAR (CHAR minus atom-specials) plus "]".
  if (c <= 0x1f || c >= 0x7f) return false;
  switch (c) {
    case '(': case ')': case '{': case ' ': case '%': case '*': case '"':
    case '\\':
      return false;
    default:
      return true;
  }
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

}  // namespace

bool ValidTag(std::string_view tag) {
  if (tag.empty()) return false;
  for (char c : tag) {
    if (c == '+' || !IsAstringChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Rejection::Response() const {
  std::string out = tag.empty() ? "*" : tag;
  out += no ? " NO " : " BAD ";
  if (!code.empty()) out += "[" + code + "] ";
  out += text;
  out += "\r\n";
  return out;
}

CommandReader::CommandReader(ReaderLimits limits) : limits_(limits) {}

bool CommandReader::idle() const {
  return state_ == State::kLine && !in_command_;
}

FramedCommand CommandReader::TakeCommand() { return std::move(done_); }

std::string CommandReader::TakeLine() { return std::move(raw_); }

void CommandReader::ResetCommand() {
  cmd_ = FramedCommand();
  in_command_ = false;
  line_start_ = 0;
  line_octets_ = 0;
  append_ = false;
}

void CommandReader::KeepTail(std::string_view s) {
  if (s.size() >= kTailMax) {
    tail_.assign(s.substr(s.size() - kTailMax));
    return;
  }
  tail_.append(s);
  if (tail_.size() > kTailMax) tail_.erase(0, tail_.size() - kTailMax);
}

size_t CommandReader::Feed(std::string_view data) {
  if (state_ == State::kDecision) return 0;
  event_ = ReaderEvent::kNone;
  chunk_ = {};
  size_t used = 0;
  while (used < data.size() && event_ == ReaderEvent::kNone) {
    std::string_view rest = data.substr(used);
    size_t n = 0;
    switch (state_) {
      case State::kLine:
        n = ReadLine(rest);
        break;
      case State::kLiteral:
        n = ReadLiteral(rest);
        break;
      case State::kSkipLine:
        n = SkipLine(rest);
        break;
      case State::kSkipLiteral:
        n = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
        remaining_ -= n;
        if (remaining_ == 0) {
          // The command goes on after the literal: skip its next line too.
          state_ = State::kSkipLine;
          tail_.clear();
          tail_truncated_ = false;
        }
        break;
      case State::kRawLine:
        n = ReadRawLine(rest);
        break;
      case State::kSkipRawLine: {
        size_t lf = rest.find('\n');
        n = lf == std::string_view::npos ? rest.size() : lf + 1;
        if (lf != std::string_view::npos) state_ = State::kLine;
        break;
      }
      case State::kDecision:
        return used;
    }
    used += n;
    position_ += n;
    consumed_ += n;
  }
  return used;
}

size_t CommandReader::ReadLine(std::string_view rest) {
  if (!in_command_) {
    in_command_ = true;
    first_line_ = true;
    cmd_.offset = position_;
  }
  size_t lf = rest.find('\n');
  size_t take = lf == std::string_view::npos ? rest.size() : lf + 1;
  size_t text = lf == std::string_view::npos ? rest.size() : lf;
  bool line_over = line_octets_ + take > limits_.max_line;
  bool command_over = cmd_.text.size() + text > limits_.max_command;
  if (line_over || command_over) {
    // Keep what still fits before refusing, so that the tag is known the
    // same way whether the line came in one piece or octet by octet.
    size_t room = std::min<uint64_t>(
        line_octets_ < limits_.max_line ? limits_.max_line - line_octets_ : 0,
        cmd_.text.size() < limits_.max_command
            ? limits_.max_command - cmd_.text.size()
            : 0);
    room = std::min(room, text);
    cmd_.text.append(rest.substr(0, room));
    line_octets_ += room;
    Reject(false, "LIMIT", line_over ? "Command line too long" : "Command too long",
           After::kSkipLine);
    return room;
  }
  cmd_.text.append(rest.substr(0, text));
  line_octets_ += take;
  if (lf != std::string_view::npos) EndOfLine();
  return take;
}

void CommandReader::EndOfLine() {
  // CRLF ends a line; a bare LF is taken as well, as most servers do. A CR
  // anywhere else stays in the text, where the parser refuses it.
  if (cmd_.text.size() > line_start_ && cmd_.text.back() == '\r') {
    cmd_.text.pop_back();
  }
  std::string_view line = std::string_view(cmd_.text).substr(line_start_);
  if (first_line_) {
    if (line.empty()) {
      // An empty line between commands (some clients send a stray CRLF
      // after a literal) is ignored rather than answered.
      ResetCommand();
      return;
    }
    size_t sp = line.find(' ');
    cmd_.tag = std::string(line.substr(0, sp));
    if (sp != std::string_view::npos) {
      std::string_view after = line.substr(sp + 1);
      std::string_view name = after.substr(0, after.find(' '));
      cmd_.name = Upper(name.substr(0, 32));
    }
    append_ = cmd_.name == "APPEND";
    first_line_ = false;
  }
  Marker m = FindMarker(line, false);
  if (!m.found) {
    done_ = std::move(cmd_);
    ResetCommand();
    event_ = ReaderEvent::kCommand;
    return;
  }
  if (!m.valid) {
    if (m.sync) {
      // The client waits for "+" that never comes (RFC 9051 7.5).
      Reject(false, "", "Invalid literal size", After::kNewCommand);
    } else {
      // Its octets follow at once and we cannot tell how many.
      Reject(false, "", "Invalid literal size", After::kClose);
    }
    return;
  }
  Announce(m.size, m.sync, m.binary);
}

void CommandReader::Announce(uint64_t size, bool sync, bool binary) {
  After after = sync ? After::kNewCommand : After::kSkipLiteral;
  remaining_ = size;
  if (cmd_.literals.size() >= limits_.max_literals) {
    Reject(false, "LIMIT", "Too many literals", after);
    return;
  }
  if (!sync && !limits_.literal_plus && size > kLiteralMinusMax) {
    // RFC 7888 4: with LITERAL- a larger literal must be synchronizing.
    Reject(false, "TOOBIG", "Non-synchronizing literal over 4096 octets",
           after);
    return;
  }
  if (append_ && size > limits_.append_limit) {
    // RFC 7889 4: a message over APPENDLIMIT gets NO [TOOBIG].
    Reject(true, "TOOBIG", "Message over the APPENDLIMIT", after);
    return;
  }
  if (!append_ && size > limits_.max_literal) {
    Reject(false, "LIMIT", "Literal too large", after);
    return;
  }
  bool streamed = append_ && size > limits_.max_literal;
  if (!streamed && cmd_.text.size() + size > limits_.max_command) {
    Reject(false, "LIMIT", "Command too long", after);
    return;
  }
  Literal lit;
  lit.offset = cmd_.text.size();
  lit.size = size;
  lit.synchronizing = sync;
  lit.binary = binary;
  lit.streamed = streamed;
  cmd_.literals.push_back(lit);
  if (sync) {
    state_ = State::kDecision;
    event_ = ReaderEvent::kContinue;
    return;
  }
  StartLiteral();
}

void CommandReader::StartLiteral() {
  if (remaining_ > 0) {
    state_ = State::kLiteral;
    return;
  }
  state_ = State::kLine;
  line_start_ = cmd_.text.size();
  line_octets_ = 0;
}

void CommandReader::AcceptLiteral() {
  if (state_ != State::kDecision) return;
  event_ = ReaderEvent::kNone;
  StartLiteral();
}

void CommandReader::RejectLiteral() {
  if (state_ != State::kDecision) return;
  event_ = ReaderEvent::kNone;
  ResetCommand();
  state_ = State::kLine;
}

size_t CommandReader::ReadLiteral(std::string_view rest) {
  size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
  std::string_view piece = rest.substr(0, n);
  Literal& lit = cmd_.literals.back();
  if (!lit.has_nul && piece.find('\0') != std::string_view::npos) {
    lit.has_nul = true;
  }
  if (lit.streamed) {
    chunk_ = piece;
    event_ = ReaderEvent::kLiteralData;
  } else {
    cmd_.text.append(piece);
  }
  remaining_ -= n;
  if (remaining_ == 0) StartLiteral();
  return n;
}

size_t CommandReader::SkipLine(std::string_view rest) {
  size_t lf = rest.find('\n');
  if (lf == std::string_view::npos) {
    if (tail_.size() + rest.size() > kTailMax) tail_truncated_ = true;
    KeepTail(rest);
    return rest.size();
  }
  if (tail_.size() + lf > kTailMax) tail_truncated_ = true;
  KeepTail(rest.substr(0, lf));
  if (!tail_.empty() && tail_.back() == '\r') tail_.pop_back();
  Marker m = FindMarker(tail_, tail_truncated_);
  tail_.clear();
  tail_truncated_ = false;
  state_ = State::kLine;
  if (m.found && !m.sync) {
    if (!m.valid) {
      // Already answered; but the octets that follow cannot be told from
      // commands, so the connection has to go.
      rejection_ = Rejection();
      rejection_.text = "Invalid literal size in a refused command";
      rejection_.close = true;
      event_ = ReaderEvent::kReject;
      state_ = State::kSkipLine;
    } else if (m.size > 0) {
      remaining_ = m.size;
      state_ = State::kSkipLiteral;
    } else {
      state_ = State::kSkipLine;
    }
  }
  // A synchronizing literal at the end of a refused command: the client
  // waits for a "+" that we never send, and reads the tagged answer
  // instead (RFC 9051 7.5). Its next line is a new command.
  return lf + 1;
}

size_t CommandReader::ReadRawLine(std::string_view rest) {
  size_t lf = rest.find('\n');
  size_t take = lf == std::string_view::npos ? rest.size() : lf + 1;
  if (line_octets_ + take > raw_limit_) {
    raw_.clear();
    line_octets_ = 0;
    rejection_ = Rejection();
    rejection_.text = "Line too long";
    event_ = ReaderEvent::kReject;
    state_ = State::kSkipRawLine;
    return 0;
  }
  raw_.append(rest.substr(0, lf == std::string_view::npos ? take : lf));
  line_octets_ += take;
  if (lf != std::string_view::npos) {
    if (!raw_.empty() && raw_.back() == '\r') raw_.pop_back();
    line_octets_ = 0;
    state_ = State::kLine;
    event_ = ReaderEvent::kLine;
  }
  return take;
}

void CommandReader::ExpectLine(size_t limit) {
  if (!idle()) return;
  raw_.clear();
  raw_limit_ = limit;
  line_octets_ = 0;
  state_ = State::kRawLine;
}

void CommandReader::Reject(bool no, std::string code, std::string text,
                           After after) {
  rejection_ = Rejection();
  std::string_view tag = cmd_.tag;
  if (first_line_) {
    // The first line is not complete: the tag is known once a SP is seen.
    std::string_view line = cmd_.text;
    size_t sp = line.find(' ');
    tag = sp == std::string_view::npos ? std::string_view() : line.substr(0, sp);
  }
  if (ValidTag(tag)) rejection_.tag = std::string(tag);
  rejection_.no = no;
  rejection_.code = std::move(code);
  rejection_.text = std::move(text);
  event_ = ReaderEvent::kReject;
  switch (after) {
    case After::kSkipLine: {
      // Keep the end of the line so far: the skipped line may still end
      // in a literal announcement.
      tail_.clear();
      tail_truncated_ = false;
      std::string_view line = std::string_view(cmd_.text).substr(line_start_);
      if (line.size() > kTailMax) tail_truncated_ = true;
      KeepTail(line);
      state_ = State::kSkipLine;
      break;
    }
    case After::kNewCommand:
      state_ = State::kLine;
      break;
    case After::kSkipLiteral:
      // RFC 7888 4 / RFC 7889 4: the octets come anyway; read and drop them.
      state_ = remaining_ > 0 ? State::kSkipLiteral : State::kSkipLine;
      tail_.clear();
      tail_truncated_ = false;
      break;
    case After::kClose:
      rejection_.close = true;
      state_ = State::kSkipLine;
      break;
  }
  ResetCommand();
}

}  // namespace tern::imap
