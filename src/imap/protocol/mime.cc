// MIME structure parsing (mime.h). The parser walks each entity once:
// the header up to its blank line, the Content-* fields in it, then for a
// multipart the boundary lines of its body (RFC 2046 5.1.1) and for a
// message/rfc822 the embedded message. Everything is offsets into the
// caller's text; recursion depth and part count are bounded.
#include "imap/protocol/mime.h"

#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/strings.h"

namespace tern::imap {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// RFC 2045 5.1 tspecials, plus space and controls: what ends a token.
bool IsTokenChar(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  if (c <= 0x20 || c == 0x7f) return false;
  return std::strchr("()<>@,;:\\\"/[]?=", c) == nullptr;
}

// Skips whitespace, line ends and RFC 822 comments (which nest and may
// hold quoted-pairs).
size_t SkipCfws(std::string_view s, size_t i) {
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
    } else if (c == '(') {
      int depth = 0;
      while (i < s.size()) {
        char d = s[i];
        if (d == '\\') {
          i += 2;
          continue;
        }
        ++i;
        if (d == '(') ++depth;
        if (d == ')' && --depth == 0) break;
      }
    } else {
      break;
    }
  }
  return std::min(i, s.size());
}

// A quoted-string starting at s[i] == '"': its content with quoted-pairs
// resolved and line ends removed; *i moves past the closing quote (or to
// the end when it is missing).
std::string QuotedString(std::string_view s, size_t* i) {
  std::string out;
  size_t j = *i + 1;
  while (j < s.size() && s[j] != '"') {
    char c = s[j];
    if (c == '\\' && j + 1 < s.size()) {
      c = s[++j];
    }
    if (c != '\r' && c != '\n') out.push_back(c);
    ++j;
  }
  *i = std::min(j + 1, s.size());
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Parameters after the leading token (RFC 2045 5.1), before RFC 2231
// joining: the name as written in lower case and the value unquoted.
struct RawParam {
  std::string name;
  std::string value;
};

// Bounds the work a header with thousands of parameters can cause.
constexpr size_t kMaxParams = 256;

void ReadParams(std::string_view s, size_t i, std::vector<RawParam>* out) {
  while (i < s.size() && out->size() < kMaxParams) {
    i = SkipCfws(s, i);
    if (i >= s.size()) break;
    if (s[i] != ';') {
      // Not a parameter: skip to the next ";" outside a quoted string.
      while (i < s.size() && s[i] != ';') {
        if (s[i] == '"') {
          QuotedString(s, &i);
        } else {
          ++i;
        }
      }
      continue;
    }
    i = SkipCfws(s, i + 1);
    size_t name_start = i;
    while (i < s.size() && (IsTokenChar(s[i]))) ++i;
    std::string name = ToLower(s.substr(name_start, i - name_start));
    i = SkipCfws(s, i);
    if (name.empty() || i >= s.size() || s[i] != '=') continue;
    i = SkipCfws(s, i + 1);
    std::string value;
    if (i < s.size() && s[i] == '"') {
      value = QuotedString(s, &i);
    } else {
      // A token, leniently: mailers write unquoted values with "/", "?",
      // "=" and friends in them.
      size_t v = i;
      while (i < s.size() && s[i] != ';' && s[i] != '"' && s[i] != '(' &&
             static_cast<unsigned char>(s[i]) > 0x20 && s[i] != 0x7f) {
        ++i;
      }
      value = std::string(s.substr(v, i - v));
      if (value.empty()) continue;
    }
    out->push_back({std::move(name), std::move(value)});
  }
}

// RFC 2231 3 and 4: "name*N" sections are joined in N order; "name*" or
// "name*0*" mark an extended value (charset'language'%XX...).
std::vector<MimeParam> JoinParams(std::vector<RawParam> raw) {
  struct Piece {
    int index;  // -1: no section number
    bool extended;
    std::string* value;
  };
  struct Group {
    std::string name;
    std::vector<Piece> pieces;
  };
  std::vector<Group> groups;
  for (RawParam& p : raw) {
    std::string_view name = p.name;
    int index = -1;
    bool extended = false;
    size_t star = name.find('*');
    if (star != std::string_view::npos) {
      std::string_view suffix = name.substr(star + 1);
      bool ok = true;
      if (!suffix.empty() && suffix.back() == '*') {
        extended = true;
        suffix.remove_suffix(1);
      } else if (suffix.empty()) {
        extended = true;
      }
      if (!suffix.empty()) {
        if (suffix.size() > 4 ||
            !std::all_of(suffix.begin(), suffix.end(),
                         [](char c) { return c >= '0' && c <= '9'; })) {
          ok = false;
        } else {
          index = std::stoi(std::string(suffix));
        }
      }
      if (ok && star > 0) {
        name = name.substr(0, star);
      } else {
        index = -1;
        extended = false;
      }
    }
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const Group& g) { return g.name == name; });
    if (it == groups.end()) {
      groups.push_back({std::string(name), {}});
      it = groups.end() - 1;
    } else if (index < 0 || std::any_of(it->pieces.begin(), it->pieces.end(),
                                        [&](const Piece& q) {
                                          return q.index == index;
                                        })) {
      continue;  // a repeated parameter: the first one counts
    }
    it->pieces.push_back({index, extended, &p.value});
  }
  std::vector<MimeParam> out;
  out.reserve(groups.size());
  for (Group& g : groups) {
    std::stable_sort(g.pieces.begin(), g.pieces.end(),
                     [](const Piece& a, const Piece& b) { return a.index < b.index; });
    MimeParam param;
    param.name = std::move(g.name);
    // RFC 2231 4.1: only the first section names the charset, and the
    // value is extended when that section is.
    param.extended = g.pieces.front().extended;
    for (const Piece& piece : g.pieces) {
      if (param.extended && !piece.extended) {
        // A plain section inside an extended value: its "%" must not read
        // as an escape once joined.
        for (char c : *piece.value) {
          if (c == '%') {
            param.value += "%25";
          } else {
            param.value.push_back(c);
          }
        }
      } else {
        param.value += *piece.value;
      }
    }
    out.push_back(std::move(param));
  }
  return out;
}

// Where the header of `entity` ends: just after its blank line, or the
// whole entity when there is none.
size_t HeaderLength(std::string_view entity) {
  size_t p = 0;
  while (p < entity.size()) {
    if (entity[p] == '\n') return p + 1;
    if (entity[p] == '\r' && p + 1 < entity.size() && entity[p + 1] == '\n') {
      return p + 2;
    }
    const void* nl = std::memchr(entity.data() + p, '\n', entity.size() - p);
    if (nl == nullptr) break;
    p = static_cast<size_t>(static_cast<const char*>(nl) - entity.data()) + 1;
  }
  return entity.size();
}

size_t CountLines(std::string_view s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

// The mechanism of a Content-Transfer-Encoding value, lower case; a
// comment after it ("base64 (it is)") is legal RFC 822 and dropped.
std::string Mechanism(std::optional<std::string_view> encoding) {
  if (!encoding) return {};
  std::string e = ToLower(Unfold(*encoding));
  size_t cut = e.find_first_of(" \t(");
  if (cut != std::string::npos) e.resize(cut);
  return e;
}

bool IsIdentityEncoding(std::optional<std::string_view> encoding) {
  std::string e = Mechanism(encoding);
  return e.empty() || e == "7bit" || e == "8bit" || e == "binary";
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  void Entity(MimePart* part, size_t begin, size_t end, int depth,
              bool in_digest) {
    ++parts_;
    std::string_view entity = text_.substr(begin, end - begin);
    part->offset = begin;
    part->header_size = HeaderLength(entity);
    std::string_view header = entity.substr(0, part->header_size);
    std::string_view body = entity.substr(part->header_size);
    part->body_size = body.size();

    std::optional<std::string_view> content_type;
    size_t pos = 0;
    RawHeaderField f;
    while (NextHeaderField(header, &pos, &f)) {
      if (f.name.size() < 8 || !IStartsWith(f.name, "content-")) continue;
      std::string_view n = f.name.substr(8);
      if (IEquals(n, "type")) {
        if (!content_type) content_type = f.value;
      } else if (IEquals(n, "transfer-encoding")) {
        if (!part->encoding) part->encoding = f.value;
      } else if (IEquals(n, "id")) {
        if (!part->id) part->id = f.value;
      } else if (IEquals(n, "description")) {
        if (!part->description) part->description = f.value;
      } else if (IEquals(n, "disposition")) {
        if (!part->disposition) part->disposition = f.value;
      } else if (IEquals(n, "language")) {
        if (!part->language) part->language = f.value;
      } else if (IEquals(n, "location")) {
        if (!part->location) part->location = f.value;
      } else if (IEquals(n, "md5")) {
        if (!part->md5) part->md5 = f.value;
      }
    }

    bool typed = false;
    if (content_type) {
      MimeValue v = ParseMimeValue(*content_type);
      size_t slash = v.token.find('/');
      if (slash != std::string::npos && slash > 0 && slash + 1 < v.token.size() &&
          v.token.find('/', slash + 1) == std::string::npos) {
        part->type = v.token.substr(0, slash);
        part->subtype = v.token.substr(slash + 1);
        part->params = std::move(v.params);
        typed = true;
      }
    }
    if (!typed && in_digest) {
      // RFC 2046 5.1.5: in a digest the default is message/rfc822.
      part->type = "message";
      part->subtype = "rfc822";
    }
    // RFC 2045 5.2 and RFC 2046 4.1.2: text defaults to US-ASCII.
    if (part->type == "text" && part->param("charset") == nullptr) {
      part->params.insert(part->params.begin(), MimeParam{"charset", "us-ascii", false});
    }

    if (part->is_multipart()) {
      const MimeParam* boundary = part->param("boundary");
      if (boundary == nullptr || boundary->value.empty() || boundary->extended) return;
      if (depth >= kMimeMaxDepth) {
        limited_ = true;
        return;
      }
      Multipart(part, boundary->value, begin + part->header_size, end, depth);
      return;
    }
    part->body_lines = CountLines(body);
    if (part->type == "message" &&
        (part->subtype == "rfc822" || part->subtype == "global") &&
        IsIdentityEncoding(part->encoding)) {
      // RFC 2046 5.2.1: only 7bit, 8bit or binary; an encoded message is
      // left opaque rather than parsed at offsets that mean nothing.
      if (depth >= kMimeMaxDepth || parts_ >= kMimeMaxParts) {
        limited_ = true;
        return;
      }
      part->children.emplace_back();
      Entity(&part->children.back(), begin + part->header_size, end, depth + 1,
             false);
    }
  }

  bool limited() const { return limited_; }

 private:
  // RFC 2046 5.1.1: a delimiter line is "--" boundary at the start of a
  // line, optionally "--" (the close delimiter), then only whitespace. The
  // line end before it belongs to the delimiter, not to the part above.
  void Multipart(MimePart* part, std::string_view boundary, size_t begin,
                 size_t end, int depth) {
    bool digest = part->subtype == "digest";
    bool in_part = false;
    size_t part_start = 0;
    size_t p = begin;
    while (p < end) {
      const char* base = text_.data();
      const void* nl = std::memchr(base + p, '\n', end - p);
      size_t line_end = nl == nullptr ? end
                                      : static_cast<size_t>(
                                            static_cast<const char*>(nl) - base) + 1;
      size_t q = p + 2 + boundary.size();
      if (q <= line_end && base[p] == '-' && base[p + 1] == '-' &&
          std::memcmp(base + p + 2, boundary.data(), boundary.size()) == 0) {
        bool close = q + 1 < line_end && base[q] == '-' && base[q + 1] == '-';
        if (close) q += 2;
        while (q < line_end && (IsWsp(base[q]) || base[q] == '\r')) ++q;
        if (q == line_end || base[q] == '\n') {
          if (in_part && !AddPart(part, part_start, p, true, depth, digest)) return;
          if (close) return;  // the rest is the epilogue
          in_part = true;
          part_start = line_end;
        }
      }
      p = line_end;
    }
    // No close delimiter: the last part runs to the end.
    if (in_part) AddPart(part, part_start, end, false, depth, digest);
  }

  // A part from `start` to `stop`; at_delimiter: `stop` is a delimiter
  // line, whose line end before it is not the part's.
  bool AddPart(MimePart* part, size_t start, size_t stop, bool at_delimiter,
               int depth, bool digest) {
    if (at_delimiter && stop > start && text_[stop - 1] == '\n') {
      --stop;
      if (stop > start && text_[stop - 1] == '\r') --stop;
    }
    if (parts_ >= kMimeMaxParts) {
      limited_ = true;
      return false;
    }
    part->children.emplace_back();
    Entity(&part->children.back(), start, stop, depth + 1, digest);
    return true;
  }

  std::string_view text_;
  size_t parts_ = 0;
  bool limited_ = false;
};

}  // namespace

const MimeParam* MimePart::param(std::string_view name) const {
  for (const MimeParam& p : params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

MimeMessage ParseMime(std::string_view message) {
  MimeMessage m;
  m.text = message;
  Parser parser(message);
  parser.Entity(&m.root, 0, message.size(), 0, false);
  m.limited = parser.limited();
  return m;
}

bool NextHeaderField(std::string_view header, size_t* pos,
                     RawHeaderField* field) {
  while (*pos < header.size()) {
    size_t start = *pos;
    char first = header[start];
    if (first == '\n' ||
        (first == '\r' && start + 1 < header.size() && header[start + 1] == '\n')) {
      return false;  // the blank line ending the header
    }
    size_t nl = header.find('\n', start);
    size_t first_end = nl == std::string_view::npos ? header.size() : nl + 1;
    size_t field_end = first_end;
    while (field_end < header.size() && IsWsp(header[field_end])) {
      nl = header.find('\n', field_end);
      field_end = nl == std::string_view::npos ? header.size() : nl + 1;
    }
    *pos = field_end;
    if (IsWsp(first)) continue;  // a continuation with no field above it
    std::string_view first_line = header.substr(start, first_end - start);
    size_t colon = first_line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = first_line.substr(0, colon);
    while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
    field->name = name;
    field->lines = header.substr(start, field_end - start);
    std::string_view value =
        header.substr(start + colon + 1, field_end - start - colon - 1);
    if (!value.empty() && value.back() == '\n') value.remove_suffix(1);
    if (!value.empty() && value.back() == '\r') value.remove_suffix(1);
    field->value = value;
    return true;
  }
  return false;
}

std::optional<std::string_view> FindHeaderField(std::string_view header,
                                                std::string_view name) {
  size_t pos = 0;
  RawHeaderField f;
  while (NextHeaderField(header, &pos, &f)) {
    if (IEquals(f.name, name)) return f.value;
  }
  return std::nullopt;
}

std::string Unfold(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c != '\r' && c != '\n') out.push_back(c);
  }
  size_t b = 0;
  while (b < out.size() && IsWsp(out[b])) ++b;
  size_t e = out.size();
  while (e > b && IsWsp(out[e - 1])) --e;
  return out.substr(b, e - b);
}

MimeValue ParseMimeValue(std::string_view value) {
  MimeValue v;
  size_t i = SkipCfws(value, 0);
  // The leading token; "/" is allowed in it (type/subtype), and comments
  // or whitespace next to the "/" are dropped.
  while (i < value.size()) {
    char c = value[i];
    if (IsTokenChar(c) || c == '/') {
      v.token.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
      ++i;
      continue;
    }
    size_t j = SkipCfws(value, i);
    if (j == i) break;
    bool around_slash = !v.token.empty() &&
                        (v.token.back() == '/' || (j < value.size() && value[j] == '/'));
    i = j;
    if (!around_slash) break;
  }
  std::vector<RawParam> raw;
  ReadParams(value, i, &raw);
  v.params = JoinParams(std::move(raw));
  return v;
}

std::string DecodedValue(const MimeParam& param) {
  if (!param.extended) return param.value;
  std::string_view v = param.value;
  size_t q1 = v.find('\'');
  size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) return param.value;
  std::string_view charset = v.substr(0, q1);
  std::string bytes;
  for (size_t i = q2 + 1; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size() && HexDigit(v[i + 1]) >= 0 &&
        HexDigit(v[i + 2]) >= 0) {
      bytes.push_back(static_cast<char>(HexDigit(v[i + 1]) * 16 + HexDigit(v[i + 2])));
      i += 2;
    } else {
      bytes.push_back(v[i]);
    }
  }
  return CharsetToUtf8(charset, bytes);
}

std::string CharsetToUtf8(std::string_view charset, std::string_view bytes) {
  std::string cs = ToLower(Trim(charset));
  if (cs.empty() || cs == "us-ascii" || cs == "utf-8" || cs == "utf8" ||
      cs == "ascii") {
    return std::string(bytes);
  }
  if (std::all_of(bytes.begin(), bytes.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; }) &&
      cs != "utf-7" && cs.rfind("utf-16", 0) != 0 && cs.rfind("utf-32", 0) != 0 &&
      cs.rfind("ucs", 0) != 0 && cs.rfind("iso-2022", 0) != 0) {
    return std::string(bytes);  // ASCII-compatible charsets leave ASCII alone
  }
  iconv_t cd = iconv_open("UTF-8", cs.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::string(bytes);
  std::string out;
  out.resize(bytes.size() * 2 + 16);
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size();
  size_t done = 0;
  while (true) {
    char* o = out.data() + done;
    size_t o_left = out.size() - done;
    size_t r = iconv(cd, in_left > 0 ? &in : nullptr, &in_left, &o, &o_left);
    done = out.size() - o_left;
    if (r != static_cast<size_t>(-1)) {
      if (in_left == 0) break;
      continue;
    }
    if (errno == E2BIG) {
      out.resize(out.size() * 2);
    } else if (errno == EILSEQ || errno == EINVAL) {
      // An octet that does not convert (or a truncated sequence at the
      // end) becomes U+FFFD and the conversion goes on after it.
      out.resize(std::max(out.size(), done + 3 + in_left * 2 + 16));
      std::memcpy(out.data() + done, "\xEF\xBF\xBD", 3);
      done += 3;
      ++in;
      --in_left;
      if (in_left == 0) break;
    } else {
      break;
    }
  }
  iconv_close(cd);
  out.resize(done);
  return out;
}

bool DecodeTransferEncoding(std::optional<std::string_view> encoding,
                            std::string_view body, std::string* out) {
  std::string e = Mechanism(encoding);
  out->clear();
  if (e.empty() || e == "7bit" || e == "8bit" || e == "binary") {
    out->assign(body);
    return true;
  }
  if (e == "base64") {
    // RFC 2045 6.8: characters outside the alphabet are ignored; "="
    // ends the data.
    out->reserve(body.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0;
    for (char ch : body) {
      int v;
      if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
      else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
      else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
      else if (ch == '+') v = 62;
      else if (ch == '/') v = 63;
      else if (ch == '=') break;
      else continue;
      acc = (acc << 6) | static_cast<uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out->push_back(static_cast<char>((acc >> bits) & 0xff));
      }
    }
    return true;
  }
  if (e == "quoted-printable") {
    // RFC 2045 6.7: "=XX" is an octet, "=" at the end of a line a soft
    // line break, and whitespace at the end of a line was added in
    // transport (rule 3).
    out->reserve(body.size());
    size_t i = 0;
    while (i < body.size()) {
      size_t nl = body.find('\n', i);
      size_t line_end = nl == std::string_view::npos ? body.size() : nl;
      size_t content_end = line_end;
      if (content_end > i && body[content_end - 1] == '\r') --content_end;
      while (content_end > i && IsWsp(body[content_end - 1])) --content_end;
      bool soft = false;
      for (size_t j = i; j < content_end; ++j) {
        char c = body[j];
        if (c != '=') {
          out->push_back(c);
        } else if (j + 1 == content_end) {
          soft = true;
        } else if (j + 2 < content_end && HexDigit(body[j + 1]) >= 0 &&
                   HexDigit(body[j + 2]) >= 0) {
          out->push_back(static_cast<char>(HexDigit(body[j + 1]) * 16 +
                                           HexDigit(body[j + 2])));
          j += 2;
        } else {
          out->push_back(c);
        }
      }
      if (nl == std::string_view::npos) break;
      if (!soft) out->append("\r\n");
      i = nl + 1;
    }
    return true;
  }
  return false;
}

}  // namespace tern::imap
