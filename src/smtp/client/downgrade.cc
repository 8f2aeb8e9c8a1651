// 8-bit MIME to 7-bit MIME (RFC 6152 3, RFC 2045 6.7, RFC 2046 5.1).
#include "smtp/client/downgrade.h"

#include <algorithm>
#include <vector>

#include "common/strings.h"

namespace tern::smtp::client {
namespace {

// Nesting deeper than this is not walked (no real message comes close).
constexpr int kMaxDepth = 32;

bool Any8Bit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) > 127;
  });
}

// RFC 3629 3 well-formed UTF-8 (no overlongs, surrogates or values past
// U+10FFFF).
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      unsigned char min = k == 1 ? lo : 0x80;
      unsigned char max = k == 1 ? hi : 0xBF;
      if (d < min || d > max) return false;
    }
    i += n + 1;
  }
  return true;
}

// One header field: its raw bytes (all its lines, with their line ends),
// its name, and its unfolded value.
struct Field {
  std::string_view raw;
  std::string name;  // lower case
  std::string value;
};

struct Entity {
  std::vector<Field> fields;
  std::string_view separator;  // the empty line ("" when there is none)
  std::string_view body;
};

// The line starting at `pos`, with its LF (or up to the end).
std::string_view LineAt(std::string_view s, size_t pos) {
  size_t lf = s.find('\n', pos);
  size_t end = lf == std::string_view::npos ? s.size() : lf + 1;
  return s.substr(pos, end - pos);
}

std::string_view StripEol(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// RFC 5322 2.2 / 2.2.3: fields up to the first empty line; lines that start
// with white space continue the field before them.
Entity SplitEntity(std::string_view s) {
  Entity e;
  size_t pos = 0;
  while (pos < s.size()) {
    std::string_view line = LineAt(s, pos);
    std::string_view text = StripEol(line);
    if (text.empty()) {
      e.separator = line;
      e.body = s.substr(pos + line.size());
      return e;
    }
    if ((text[0] == ' ' || text[0] == '\t') && !e.fields.empty()) {
      Field& f = e.fields.back();
      f.raw = std::string_view(f.raw.data(), f.raw.size() + line.size());
      f.value += text;
    } else {
      Field f;
      f.raw = line;
      size_t colon = text.find(':');
      if (colon != std::string_view::npos) {
        f.name = ToLower(Trim(text.substr(0, colon)));
        f.value = std::string(text.substr(colon + 1));
      }
      e.fields.push_back(std::move(f));
    }
    pos += line.size();
  }
  return e;  // header only, no body
}

const Field* Find(const Entity& e, std::string_view name) {
  for (const Field& f : e.fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

struct ContentType {
  std::string type;  // "text/plain", lower case
  std::string boundary;
};

// RFC 2045 5.1: type "/" subtype *(";" parameter), values tokens or quoted
// strings. Comments are not expected and not handled.
ContentType ParseContentType(std::string_view value) {
  ContentType ct;
  size_t semi = value.find(';');
  ct.type = ToLower(Trim(value.substr(0, semi)));
  size_t pos = semi;
  while (pos != std::string_view::npos && pos < value.size()) {
    ++pos;  // past ';'
    size_t eq = value.find('=', pos);
    if (eq == std::string_view::npos) break;
    std::string name = ToLower(Trim(value.substr(pos, eq - pos)));
    size_t v = eq + 1;
    while (v < value.size() && (value[v] == ' ' || value[v] == '\t')) ++v;
    std::string val;
    if (v < value.size() && value[v] == '"') {
      ++v;
      while (v < value.size() && value[v] != '"') {
        if (value[v] == '\\' && v + 1 < value.size()) ++v;
        val += value[v++];
      }
      pos = value.find(';', v);
    } else {
      size_t end = value.find(';', v);
      val = std::string(Trim(value.substr(v, end == std::string_view::npos
                                                 ? std::string_view::npos
                                                 : end - v)));
      pos = end;
    }
    if (name == "boundary" && ct.boundary.empty()) ct.boundary = val;
  }
  return ct;
}

std::string Hex(unsigned char c) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string out = "=";
  out += kDigits[c >> 4];
  out += kDigits[c & 15];
  return out;
}

void EncodeLine(std::string_view line, std::string& out) {
  size_t col = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(line[i]);
    bool last = i + 1 == line.size();
    std::string tok;
    if (c == ' ' || c == '\t') {
      // Rule 3: white space may not end an encoded line.
      tok = last ? Hex(c) : std::string(1, static_cast<char>(c));
    } else if (c >= 33 && c <= 126 && c != '=') {
      tok = std::string(1, static_cast<char>(c));  // rule 2
    } else {
      tok = Hex(c);  // rule 1
    }
    // Rule 5: at most 76 characters; a soft break ("=") takes one of them.
    size_t limit = last ? 76 : 75;
    if (col + tok.size() > limit) {
      out += "=\r\n";
      col = 0;
    }
    out += tok;
    col += tok.size();
  }
}

bool Convert(std::string_view entity, bool is_message,
             std::string_view default_type, int depth, std::string& out,
             std::string* error);

// Copies the fields, with Content-Transfer-Encoding set to `cte` (added
// when missing and `cte` is not empty) and the fields of `extra` added.
void WriteHeader(const Entity& e, std::string_view cte, const std::string& extra,
                 std::string& out) {
  bool seen = false;
  for (const Field& f : e.fields) {
    if (f.name == "content-transfer-encoding" && !cte.empty()) {
      if (!seen) out += "Content-Transfer-Encoding: " + std::string(cte) + "\r\n";
      seen = true;
      continue;
    }
    out += f.raw;
  }
  // A field whose line had no LF (end of input) must still end.
  if (!e.fields.empty() && out.back() != '\n') out += "\r\n";
  out += extra;
  if (!seen && !cte.empty())
    out += "Content-Transfer-Encoding: " + std::string(cte) + "\r\n";
  out += e.separator.empty() ? std::string_view("\r\n") : e.separator;
}

// Is `line` (without its end) a delimiter for `boundary`? RFC 2046 5.1.1:
// "--" boundary, then "--" for the last one, then optional white space.
int DelimiterKind(std::string_view line, std::string_view boundary) {
  if (line.size() < boundary.size() + 2 || line.substr(0, 2) != "--" ||
      line.substr(2, boundary.size()) != boundary) {
    return 0;
  }
  std::string_view rest = line.substr(boundary.size() + 2);
  int kind = 1;
  if (rest.substr(0, 2) == "--") {
    kind = 2;
    rest.remove_prefix(2);
  }
  for (char c : rest) {
    if (c != ' ' && c != '\t') return 0;
  }
  return kind;
}

bool ConvertMultipart(const ContentType& ct, std::string_view body, int depth,
                      std::string& out, std::string* error) {
  if (ct.boundary.empty() || ct.boundary.size() > 70) {
    *error = "a multipart without a usable boundary";
    return false;
  }
  std::string_view child_type =
      ct.type == "multipart/digest" ? "message/rfc822" : "text/plain";
  // Walk the lines: `copied` is how far the body went out verbatim,
  // `part` where the current part's content began (npos: in the preamble
  // or the epilogue).
  size_t copied = 0;
  size_t part = std::string_view::npos;
  bool found = false;
  bool closed = false;
  size_t pos = 0;
  auto verbatim = [&](size_t to) {
    std::string_view piece = body.substr(copied, to - copied);
    if (Any8Bit(piece)) return false;
    out += piece;
    copied = to;
    return true;
  };
  while (pos < body.size() && !closed) {
    std::string_view line = LineAt(body, pos);
    int kind = DelimiterKind(StripEol(line), ct.boundary);
    if (kind != 0) {
      found = true;
      if (part != std::string_view::npos) {
        // The line end before a delimiter belongs to it (RFC 2046 5.1.1).
        size_t end = pos;
        if (end > part && body[end - 1] == '\n') --end;
        if (end > part && body[end - 1] == '\r') --end;
        if (!Convert(body.substr(part, end - part), false, child_type,
                     depth + 1, out, error)) {
          return false;
        }
        copied = end;
      }
      if (!verbatim(pos + line.size())) {
        *error = "8-bit octets outside the parts of a multipart";
        return false;
      }
      part = kind == 1 ? copied : std::string_view::npos;
      closed = kind == 2;
    }
    pos += line.size();
  }
  if (!found) {
    *error = "a multipart whose boundary never appears";
    return false;
  }
  if (part != std::string_view::npos && !closed) {
    // No close delimiter: the last part runs to the end.
    if (!Convert(body.substr(part), false, child_type, depth + 1, out, error))
      return false;
    copied = body.size();
  }
  if (!verbatim(body.size())) {
    *error = "8-bit octets outside the parts of a multipart";
    return false;
  }
  return true;
}

bool Convert(std::string_view entity, bool is_message,
             std::string_view default_type, int depth, std::string& out,
             std::string* error) {
  if (!Any8Bit(entity)) {
    out += entity;
    return true;
  }
  if (depth > kMaxDepth) {
    *error = "MIME structure nested too deeply";
    return false;
  }
  Entity e = SplitEntity(entity);
  std::string_view header(entity.data(),
                          entity.size() - e.body.size() - e.separator.size());
  if (Any8Bit(header)) {
    *error = "8-bit octets in a header field (that needs SMTPUTF8)";
    return false;
  }
  const Field* ctf = Find(e, "content-type");
  const Field* ctef = Find(e, "content-transfer-encoding");
  ContentType ct = ParseContentType(ctf ? ctf->value : default_type);
  if (ct.type.empty() || ct.type.find('/') == std::string::npos)
    ct.type = "text/plain";  // RFC 2045 5.2: a broken type is text/plain
  std::string cte = ctef ? ToLower(Trim(ctef->value)) : "7bit";
  // A message without MIME-Version is not MIME at all (RFC 2045 4): it
  // becomes MIME when its body is encoded.
  std::string extra;
  bool mime = !is_message || Find(e, "mime-version") != nullptr;
  if (!mime) {
    extra += "MIME-Version: 1.0\r\n";
    if (ctf == nullptr) {
      // Plain text of unknown charset: UTF-8 if it is that, else the
      // RFC 1428 label for "some 8-bit charset".
      extra += IsUtf8(e.body) ? "Content-Type: text/plain; charset=utf-8\r\n"
                              : "Content-Type: text/plain; charset=unknown-8bit\r\n";
    }
  }
  if (cte != "7bit" && cte != "8bit" && cte != "binary") {
    *error = "8-bit octets in a part encoded as " + cte;
    return false;
  }
  if (IStartsWith(ct.type, "multipart/")) {
    // RFC 2045 6.4: a multipart is never encoded itself; once its parts
    // are 7-bit, so is it.
    WriteHeader(e, ctef ? "7bit" : "", extra, out);
    return ConvertMultipart(ct, e.body, depth, out, error);
  }
  if (ct.type == "message/rfc822") {
    // RFC 2046 5.2.1: 7bit, 8bit or binary only; convert the message
    // inside instead.
    WriteHeader(e, ctef ? "7bit" : "", extra, out);
    return Convert(e.body, true, "text/plain", depth + 1, out, error);
  }
  if (IStartsWith(ct.type, "message/")) {
    *error = "8-bit octets in a " + ct.type + " part, which cannot be encoded";
    return false;
  }
  WriteHeader(e, "quoted-printable", extra, out);
  out += EncodeQuotedPrintable(e.body);
  return true;
}

}  // namespace

std::string EncodeQuotedPrintable(std::string_view data) {
  std::string out;
  out.reserve(data.size() + data.size() / 4 + 16);
  size_t pos = 0;
  while (pos < data.size()) {
    size_t crlf = data.find("\r\n", pos);
    if (crlf == std::string_view::npos) {
      EncodeLine(data.substr(pos), out);
      break;
    }
    EncodeLine(data.substr(pos, crlf - pos), out);
    out += "\r\n";  // rule 4: a hard line break stays one
    pos = crlf + 2;
  }
  return out;
}

std::optional<std::string> DowngradeTo7Bit(std::string_view message,
                                           std::string* error) {
  std::string out;
  out.reserve(message.size() + message.size() / 4 + 256);
  std::string why;
  if (!Convert(message, true, "text/plain", 0, out, &why)) {
    if (error) *error = why;
    return std::nullopt;
  }
  if (Any8Bit(out)) {  // cannot happen; never send 8-bit by mistake
    if (error) *error = "conversion left 8-bit octets";
    return std::nullopt;
  }
  return out;
}

}  // namespace tern::smtp::client
