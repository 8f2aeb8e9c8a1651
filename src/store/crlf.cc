// CRLF conversion, dot-stuffing and TOP cut-off for stored messages. Bare LF
// and CRLF both end a line; a CR not followed by LF is message data.
#include "store/crlf.h"

#include <cstring>

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
    // (memchr twice rather than a loop over octets: messages are stored
    // with LF, so the CR search usually runs to the LF.)
    const char* start = in.data() + i;
    const char* stop = in.data() + in.size();
    if (const void* lf = std::memchr(start, '\n', static_cast<size_t>(stop - start))) {
      stop = static_cast<const char*>(lf);
    }
    if (const void* cr = std::memchr(start, '\r', static_cast<size_t>(stop - start))) {
      stop = static_cast<const char*>(cr);
    }
    size_t j = static_cast<size_t>(stop - in.data());
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

// The size CrlfEncoder's output would have, without writing it: every
// octet counts once, and an LF not preceded by CR once more (its CR). A
// CR at the very end becomes CRLF, a last line without its end gets one.
// memchr finds the LFs: this runs over every message of a folder a client
// selects for the first time when the file names do not carry the size.
void CrlfSizer::Feed(std::string_view in) {
  if (in.empty()) return;
  size_ += in.size();
  const char* p = in.data();
  const char* end = p + in.size();
  char before = last_;
  while (const char* lf = static_cast<const char*>(std::memchr(p, '\n', end - p))) {
    char prev = lf == in.data() ? before : lf[-1];
    if (prev != '\r') ++size_;
    p = lf + 1;
    if (p == end) break;
  }
  last_ = in.back();
  any_ = true;
}

uint64_t CrlfSizer::Finish() {
  if (any_) {
    if (last_ == '\r') {
      size_ += 1;
    } else if (last_ != '\n') {
      size_ += 2;
    }
  }
  last_ = '\n';  // as after a line end: a second Finish adds nothing
  return size_;
}

uint64_t CrlfSize(std::string_view data) {
  CrlfSizer sizer;
  sizer.Feed(data);
  return sizer.Finish();
}

}  // namespace tern::store
