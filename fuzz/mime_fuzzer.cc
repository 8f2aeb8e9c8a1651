// Fuzzes the MIME parser (imap/protocol/mime.h) and everything FETCH and
// SEARCH build on it (fetch_render.h, mime_search.h) with arbitrary
// messages.
//
// Input: 1 header byte, then the message.
//   [0] bits: 1 the client enabled UTF-8 (quoted strings may carry it)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "imap/protocol/fetch_render.h"
#include "imap/protocol/mime.h"
#include "imap/protocol/mime_search.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::imap;

// Parentheses balance outside quoted strings and literals, and every
// literal's count is the octets that follow it.
void CheckList(std::string_view s, const char* what) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        FUZZ_CHECK(s[i] != '\r' && s[i] != '\n', "CR/LF in a quoted %s: %s", what,
                   Printable(s).c_str());
        if (s[i] == '\\') ++i;
        ++i;
      }
      FUZZ_CHECK(i < s.size(), "unclosed quote in %s: %s", what, Printable(s).c_str());
    } else if (c == '{') {
      size_t close = s.find('}', i);
      FUZZ_CHECK(close != std::string_view::npos && s.substr(close + 1, 2) == "\r\n",
                 "bad literal in %s: %s", what, Printable(s).c_str());
      size_t n = std::stoul(std::string(s.substr(i + 1, close - i - 1)));
      FUZZ_CHECK(close + 3 + n <= s.size(), "short literal in %s", what);
      i = close + 2 + n;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
      FUZZ_CHECK(depth >= 0, "unbalanced ) in %s: %s", what, Printable(s).c_str());
    } else {
      FUZZ_CHECK(c != '\r' && c != '\n', "line end outside a literal in %s", what);
    }
  }
  FUZZ_CHECK(depth == 0, "unbalanced ( in %s: %s", what, Printable(s).c_str());
}

bool Inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  return part.data() >= whole.data() &&
         part.data() + part.size() <= whole.data() + whole.size();
}

struct Walker {
  const MimeMessage& m;
  size_t visited = 0;

  // `path` names p (addressable) or, for the multipart inside a
  // message/rfc822, the numbers its parts are counted under.
  void Part(const MimePart& p, const std::vector<uint32_t>& path, bool addressable,
            size_t begin, size_t end) {
    // Every part lies inside its parent, header before body.
    FUZZ_CHECK(p.offset >= begin && p.offset + p.header_size + p.body_size <= end,
               "part outside its parent: %zu+%zu+%zu not in %zu..%zu", p.offset,
               p.header_size, p.body_size, begin, end);
    FUZZ_CHECK(p.body_lines <= p.body_size, "more lines than octets");
    if (++visited > 300) return;  // the checks below are per part: bound them
    if (addressable) Sections(p, path);

    size_t child_begin = p.body_offset();
    size_t child_end = p.body_offset() + p.body_size;
    if (p.is_message()) {
      // The embedded message: numbers after the message part's count its
      // parts (a top-level message/rfc822 is part 1 of itself first).
      std::vector<uint32_t> base = path;
      if (base.empty()) base.push_back(1);
      const MimePart& c = p.children[0];
      if (c.is_multipart()) {
        Part(c, base, false, child_begin, child_end);
      } else {
        base.push_back(1);
        Part(c, base, true, child_begin, child_end);
      }
      return;
    }
    for (size_t i = 0; i < p.children.size(); ++i) {
      const MimePart& c = p.children[i];
      std::vector<uint32_t> sub = path;
      sub.push_back(static_cast<uint32_t>(i + 1));
      // Multipart children come in order and do not overlap.
      Part(c, sub, true, child_begin, child_end);
      child_begin = c.offset + c.header_size + c.body_size;
    }
  }

  void Sections(const MimePart& p, const std::vector<uint32_t>& path) {
    std::string scratch;
    Section s;
    s.part = path;
    FUZZ_CHECK(path.empty() || FindPart(m, path) == &p, "FindPart missed a part");
    std::string_view body = SectionOctets(m, s, &scratch);
    FUZZ_CHECK(Inside(body, m.text), "BODY[part] not a substring of the input");
    if (!path.empty()) {
      FUZZ_CHECK(body.size() == p.body_size && body.data() == m.text.data() + p.body_offset(),
                 "BODY[part] is %zu octets, part %zu", body.size(), p.body_size);
      s.text = SectionText::kMime;
      std::string_view mime = SectionOctets(m, s, &scratch);
      FUZZ_CHECK(mime.size() == p.header_size && Inside(mime, m.text),
                 "MIME is not the part's header");
    }
    for (SectionText t : {SectionText::kHeader, SectionText::kText}) {
      s.text = t;
      FUZZ_CHECK(Inside(SectionOctets(m, s, &scratch), m.text),
                 "HEADER/TEXT not a substring of the input");
    }
    s.text = SectionText::kHeaderFields;
    s.fields = {"Subject", "content-type"};
    std::string_view fields = SectionOctets(m, s, &scratch);
    FUZZ_CHECK(fields.empty() || (fields.size() >= 2 &&
                                  fields.substr(fields.size() - 2) == "\r\n"),
               "HEADER.FIELDS without its blank line");
    auto bin = BinaryContent(m, path);
    auto size = BinarySize(m, path);
    FUZZ_CHECK(bin.has_value() == size.has_value() && (!bin || bin->size() == *size),
               "BINARY.SIZE disagrees with BINARY");
    if (bin && !path.empty()) {
      // Decoding never grows a body by more than quoted-printable's CRLF
      // for a bare LF.
      FUZZ_CHECK(bin->size() <= 2 * p.body_size, "decoding grew the body");
      std::string direct;
      if (DecodeTransferEncoding(p.encoding, body, &direct)) {
        FUZZ_CHECK(direct == *bin, "BINARY is not the decoded body");
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 1);
  bool utf8 = (in.byte(0) & 1) != 0;
  std::string_view text = in.body();
  MimeMessage m = ParseMime(text);
  FUZZ_CHECK(m.text.data() == text.data() && m.text.size() == text.size(),
             "the message view moved");
  FUZZ_CHECK(m.root.offset == 0 &&
                 m.root.header_size + m.root.body_size == text.size(),
             "the root does not cover the message");

  std::string bs = RenderBodyStructure(m, true, utf8);
  std::string body = RenderBodyStructure(m, false, utf8);
  std::string env = RenderEnvelope(m, utf8);
  CheckList(bs, "BODYSTRUCTURE");
  CheckList(body, "BODY");
  CheckList(env, "ENVELOPE");
  FUZZ_CHECK(body.size() <= bs.size(), "BODY longer than BODYSTRUCTURE");
  FUZZ_CHECK(RenderBodyStructure(ParseMime(text), true, utf8) == bs,
             "BODYSTRUCTURE differs between two parses");

  Walker w{m};
  w.Part(m.root, {}, true, 0, text.size());

  std::string scratch;
  Section whole;
  FUZZ_CHECK(SectionOctets(m, whole, &scratch) == text, "BODY[] is not the message");

  // SEARCH and SORT helpers: no crash, and a needle taken from the text is
  // found in it.
  std::string searchable = SearchableBody(m);
  std::string_view header = text.substr(0, m.root.header_size);
  std::string head_text = SearchableHeader(header);
  if (searchable.size() > 4) {
    std::string_view needle = std::string_view(searchable).substr(1, 3);
    FUZZ_CHECK(ContainsFolded(searchable, needle), "substring not found");
  }
  for (const char* name : {"subject", "from", "to", "date"}) {
    for (const std::string& v : DecodedHeaderValues(header, name)) {
      BaseSubject(v);
      FirstMailbox(v);
      if (auto d = ParseHeaderDate(v)) {
        FUZZ_CHECK(d->date.month >= 1 && d->date.month <= 12 && d->date.day >= 1 &&
                       d->date.day <= 31 && d->hour < 24 && d->minute < 60,
                   "date out of range from %s", Printable(v).c_str());
        ToUnixSeconds(*d);
      }
    }
  }
  return 0;
}
