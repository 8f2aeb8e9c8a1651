// CRLF conversion, dot-stuffing and TOP cut-off for stored messages. Bare LF
// and CRLF both end a line; a CR not followed by LF is message data.
#include "store/crlf.h"

namespace tern::store {

void CrlfEncoder::EndLine(std::string& out) {
  out += "\r\n";
  if (in_header_) {
    // RFC 5322 2.1: the first empty line ends the header section.
    if (line_empty_) {
      in_header_ = false;
      if (body_lines_ == 0) done_ = true;
    }
  } else if (body_lines_ > 0 && --body_lines_ == 0) {
    done_ = true;
  }
  at_line_start_ = true;
  line_empty_ = true;
}

void CrlfEncoder::Feed(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 32 + 4);
  size_t i = 0;
  while (i < in.size() && !done_) {
    char c = in[i];
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') {
        ++i;
        EndLine(out);
        continue;
      }
      out += '\r';  // a bare CR is data
      line_empty_ = false;
      at_line_start_ = false;
    }
    if (c == '\n') {
      ++i;
      EndLine(out);
      continue;
    }
    if (c == '\r') {
      ++i;
      pending_cr_ = true;
      continue;
    }
    // RFC 1939 3: a line starting with "." gets one more.
    if (at_line_start_ && dot_stuff_ && c == '.') out += '.';
    // Copy the run of plain octets up to the next CR or LF at once.
    size_t j = i;
    while (j < in.size() && in[j] != '\n' && in[j] != '\r') ++j;
    out.append(in.data() + i, j - i);
    i = j;
    at_line_start_ = false;
    line_empty_ = false;
  }
}

void CrlfEncoder::Finish(std::string& out) {
  if (done_) return;
  if (pending_cr_) {
    // A CR at the very end is taken as the line end it was meant to be.
    pending_cr_ = false;
    EndLine(out);
    return;
  }
  if (!at_line_start_) EndLine(out);
}

void CrlfSizer::Feed(std::string_view in) {
  for (char c : in) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') {
        size_ += 2;
        at_line_start_ = true;
        continue;
      }
      size_ += 1;
      at_line_start_ = false;
    }
    if (c == '\n') {
      size_ += 2;
      at_line_start_ = true;
    } else if (c == '\r') {
      pending_cr_ = true;
    } else {
      size_ += 1;
      at_line_start_ = false;
    }
  }
}

uint64_t CrlfSizer::Finish() {
  // Same end rule as CrlfEncoder::Finish: the last line always gets CRLF.
  if (pending_cr_ || !at_line_start_) size_ += 2;
  pending_cr_ = false;
  at_line_start_ = true;
  return size_;
}

uint64_t CrlfSize(std::string_view data) {
  CrlfSizer sizer;
  sizer.Feed(data);
  return sizer.Finish();
}

}  // namespace tern::store
