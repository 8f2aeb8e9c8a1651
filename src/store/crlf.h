// A message as mail protocols send it: CRLF line ends whatever the on-disk
// form (Maildir files use LF), optionally dot-stuffed and cut after N body
// lines (POP3 TOP). One transform serves sizes and transmission alike, so a
// size announced in LIST/STAT (or IMAP RFC822.SIZE) is exactly what is sent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tern::store {

class CrlfEncoder {
 public:
  // `body_lines` < 0 sends the whole message; otherwise the header, the
  // blank line that ends it and that many body lines (RFC 1939 TOP).
  explicit CrlfEncoder(bool dot_stuff = false, int64_t body_lines = -1)
      : dot_stuff_(dot_stuff), body_lines_(body_lines) {}

  // Appends the encoded form of the next chunk of the file to `out`.
  void Feed(std::string_view in, std::string& out);
  // End of the file: a last line without a line end gets CRLF, so the
  // POP3 terminator always starts a line (RFC 1939 3).
  void Finish(std::string& out);
  // True once TOP has sent everything it wants; later input is ignored.
  bool done() const { return done_; }

 private:
  void EndLine(std::string& out);

  bool dot_stuff_;
  int64_t body_lines_;
  bool at_line_start_ = true;
  bool pending_cr_ = false;
  bool in_header_ = true;
  bool line_empty_ = true;  // the current line has no octets yet
  bool done_ = false;
};

// Counts the octets of the encoded form (whole message, no dot-stuffing)
// chunk by chunk, without building it.
class CrlfSizer {
 public:
  void Feed(std::string_view in);
  uint64_t Finish();

 private:
  uint64_t size_ = 0;
  char last_ = 0;  // the last octet fed
  bool any_ = false;
};

// The same for a message in memory.
uint64_t CrlfSize(std::string_view data);

}  // namespace tern::store
