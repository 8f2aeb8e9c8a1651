// The client-side SMTP reply parser. Input is remote and untrusted: every
// buffer is bounded and anything outside RFC 5321 4.2 stops the parser.
#include "smtp/client/reply.h"

#include <cctype>

namespace tern::smtp::client {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 3463 2: class "." subject "." detail, 1-3 digits each, at the start
// of the text and followed by a space or the end.
std::string EnhancedCode(std::string_view text, int code) {
  size_t pos = 0;
  int parts = 0;
  while (parts < 3) {
    size_t start = pos;
    while (pos < text.size() && IsDigit(text[pos]) && pos - start < 4) ++pos;
    size_t len = pos - start;
    if (len == 0 || len > 3 || (parts == 0 && len != 1)) return "";
    ++parts;
    if (parts < 3) {
      if (pos >= text.size() || text[pos] != '.') return "";
      ++pos;
    }
  }
  if (pos < text.size() && text[pos] != ' ') return "";
  // The class must agree with the reply code (RFC 3463 3.1).
  if (text[0] - '0' != code / 100) return "";
  return std::string(text.substr(0, pos));
}

}  // namespace

std::string Reply::Text() const {
  std::string out = code == 0 ? "" : std::to_string(code);
  for (const std::string& l : lines) {
    if (!out.empty()) out += ' ';
    out += l;
  }
  return out;
}

std::string Reply::Status() const {
  if (!enhanced.empty()) return enhanced;
  if (code >= 500) return "5.0.0";
  if (code >= 400) return "4.0.0";
  if (code >= 200 && code < 300) return "2.0.0";
  return "4.4.1";
}

Reply LocalReply(int code, std::string enhanced, std::string text) {
  Reply r;
  r.code = code;
  r.enhanced = std::move(enhanced);
  std::string line = r.enhanced.empty() ? text : r.enhanced + " " + text;
  r.lines.push_back(std::move(line));
  return r;
}

bool ReplyParser::Fail(std::string why) {
  error_ = std::move(why);
  line_.clear();
  current_ = Reply();
  return false;
}

Reply ReplyParser::Pop() {
  Reply r = std::move(done_.front());
  done_.pop_front();
  return r;
}

bool ReplyParser::Feed(std::string_view data) {
  if (failed()) return false;
  while (!data.empty()) {
    size_t nl = data.find('\n');
    std::string_view piece = data.substr(0, nl);
    if (line_.size() + piece.size() > kMaxLine) {
      return Fail("reply line longer than " + std::to_string(kMaxLine) +
                  " octets");
    }
    line_.append(piece);
    if (nl == std::string_view::npos) return true;
    data.remove_prefix(nl + 1);
    // CRLF is the rule; a bare LF is tolerated (RFC 5321 4.1.1.4 asks
    // receivers to be liberal about it).
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    std::string line = std::move(line_);
    line_.clear();
    if (!Line(line)) return false;
  }
  return true;
}

bool ReplyParser::Line(std::string_view line) {
  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) ||
      !IsDigit(line[2])) {
    return Fail("malformed reply line (no 3-digit code)");
  }
  // RFC 5321 4.2.1: the first digit is 2 to 5; the second 0 to 5.
  if (line[0] < '2' || line[0] > '5' || line[1] > '5') {
    return Fail("reply code " + std::string(line.substr(0, 3)) +
                " is out of range");
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  bool last = true;
  if (line.size() > 3) {
    if (line[3] == '-') {
      last = false;
    } else if (line[3] != ' ') {
      return Fail("malformed reply line (bad separator after code)");
    }
  }
  if (!current_.lines.empty() && current_.code != code) {
    return Fail("multi-line reply mixes codes " +
                std::to_string(current_.code) + " and " +
                std::to_string(code));
  }
  if (current_.lines.size() >= kMaxLines) {
    return Fail("multi-line reply longer than " + std::to_string(kMaxLines) +
                " lines");
  }
  std::string text(line.size() > 4 ? line.substr(4) : std::string_view());
  // The text ends up in logs and bounce messages: no control characters.
  for (char& c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  if (current_.lines.empty()) {
    current_.code = code;
    current_.enhanced = EnhancedCode(text, code);
  }
  current_.lines.push_back(std::move(text));
  if (last) {
    done_.push_back(std::move(current_));
    current_ = Reply();
  }
  return true;
}

}  // namespace tern::smtp::client
