// SMTP replies as a client reads them (RFC 5321 4.2), and an incremental
// parser for them that stays bounded against hostile or broken servers:
// over-long lines, endless multi-line replies, bad or mixed codes.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace tern::smtp::client {

struct Reply {
  int code = 0;           // 0: no reply (a local or connection failure)
  std::string enhanced;   // RFC 3463 "X.Y.Z" from the first line, or empty
  std::vector<std::string> lines;  // the text after "NNN-"/"NNN ", cleaned

  bool positive() const { return code >= 200 && code < 300; }
  bool intermediate() const { return code >= 300 && code < 400; }
  bool transient() const { return code == 0 || (code >= 400 && code < 500); }
  bool permanent() const { return code >= 500; }
  // "550 5.1.1 no such user" (lines joined by a space) for logs and DSNs.
  std::string Text() const;
  // The RFC 3463 status: the enhanced code when given, else derived from
  // the basic code ("5.0.0" / "4.0.0"); "4.4.1" for code 0.
  std::string Status() const;
};

// A reply made up locally (a refused connection, a timeout, a message the
// peer cannot take) in the same shape as a remote one.
Reply LocalReply(int code, std::string enhanced, std::string text);

class ReplyParser {
 public:
  // RFC 5321 4.5.3.1.5 allows 512 octets per reply line; be generous but
  // finite. The line count bounds multi-line replies (an EHLO has ~20).
  static constexpr size_t kMaxLine = 2048;
  static constexpr size_t kMaxLines = 200;

  // Consumes bytes. Returns false once the input is not a valid reply
  // stream; error() then says why and every later Feed fails.
  bool Feed(std::string_view data);
  bool HasReply() const { return !done_.empty(); }
  Reply Pop();
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // True when a partial reply is buffered (e.g. a reply cut by EOF).
  bool partial() const { return !line_.empty() || !current_.lines.empty(); }

 private:
  bool Line(std::string_view line);
  bool Fail(std::string why);

  std::string line_;
  Reply current_;
  std::deque<Reply> done_;
  std::string error_;
};

}  // namespace tern::smtp::client
