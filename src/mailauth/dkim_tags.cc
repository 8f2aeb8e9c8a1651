// The RFC 6376 3.2 tag-list grammar, written as a single forward scan so
// that the work is linear in the input and every error has an offset.
#include "mailauth/dkim_tags.h"

#include <cstdio>
#include <string>
#include <unordered_set>

namespace tern::mailauth {
namespace {

bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 6376 3.2 VALCHAR: %x21-3A / %x3C-7E (printable ASCII but ';'), plus
// UTF-8 octets (RFC 8616 4 lets i= and others carry them).
bool IsValChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u >= 0x21 && u <= 0x7e && c != ';') || u >= 0x80;
}

std::string Describe(char c) {
  char buf[16];
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u <= 0x7e) {
    std::snprintf(buf, sizeof buf, "'%c'", c);
  } else {
    std::snprintf(buf, sizeof buf, "0x%02x", u);
  }
  return buf;
}

std::string At(size_t pos) { return " at offset " + std::to_string(pos); }

size_t SkipWhitespace(std::string_view text, size_t pos) {
  while (size_t n = DkimWhitespaceAt(text, pos)) pos += n;
  return pos;
}

}  // namespace

const DkimTag* DkimTagList::Find(std::string_view name) const {
  for (const DkimTag& tag : tags) {
    if (tag.name == name) return &tag;
  }
  return nullptr;
}

size_t DkimWhitespaceAt(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  if (text[pos] == ' ' || text[pos] == '\t') return 1;
  // A line break only counts when the next line is a continuation: a bare
  // CRLF would end the header field.
  if (text[pos] == '\r' && pos + 2 < text.size() && text[pos + 1] == '\n' &&
      (text[pos + 2] == ' ' || text[pos + 2] == '\t')) {
    return 3;
  }
  return 0;
}

Result<DkimTagList> ParseDkimTagList(std::string_view text) {
  DkimTagList list;
  // Names seen so far: a set keeps a list of many tags linear.
  std::unordered_set<std::string_view> names;
  size_t pos = 0;
  while (true) {
    pos = SkipWhitespace(text, pos);
    if (pos == text.size()) {
      // Only "nothing at all" is an error; after a ';' the list may end.
      if (list.tags.empty()) return Err("empty tag list");
      break;
    }
    // tag-name = ALPHA *ALNUMPUNC
    size_t name_begin = pos;
    if (!IsAlpha(text[pos])) {
      if (text[pos] == ';') return Err("empty tag" + At(pos));
      return Err("tag name expected, found " + Describe(text[pos]) + At(pos));
    }
    while (pos < text.size() &&
           (IsAlpha(text[pos]) || IsDigit(text[pos]) || text[pos] == '_')) {
      ++pos;
    }
    std::string_view name = text.substr(name_begin, pos - name_begin);
    pos = SkipWhitespace(text, pos);
    if (pos == text.size() || text[pos] != '=') {
      return Err("'=' expected after tag \"" + std::string(name) + "\"" +
                 (pos == text.size()
                      ? std::string(" at the end")
                      : ", found " + Describe(text[pos]) + At(pos)));
    }
    ++pos;
    DkimTag tag;
    tag.name = name;
    tag.value_begin = pos;
    pos = SkipWhitespace(text, pos);
    size_t value_begin = pos;
    size_t value_end = pos;  // one past the last non-whitespace octet
    while (pos < text.size() && text[pos] != ';') {
      if (size_t ws = DkimWhitespaceAt(text, pos)) {
        pos += ws;
        continue;
      }
      if (!IsValChar(text[pos])) {
        return Err("invalid character " + Describe(text[pos]) +
                   " in the value of tag \"" + std::string(name) + "\"" +
                   At(pos));
      }
      ++pos;
      value_end = pos;
    }
    tag.value = text.substr(value_begin, value_end - value_begin);
    tag.value_end = pos;
    if (!names.insert(name).second) {
      return Err("duplicate tag \"" + std::string(name) + "\"" +
                 At(name_begin));
    }
    list.tags.push_back(tag);
    if (pos == text.size()) break;
    ++pos;  // the ';'
  }
  return list;
}

std::string StripDkimWhitespace(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out += c;
  }
  return out;
}

std::vector<std::string_view> SplitDkimList(std::string_view value) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t colon = value.find(':', start);
    std::string_view item = value.substr(start, colon == std::string_view::npos
                                                    ? std::string_view::npos
                                                    : colon - start);
    size_t b = 0, e = item.size();
    auto ws = [](char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\n';
    };
    while (b < e && ws(item[b])) ++b;
    while (e > b && ws(item[e - 1])) --e;
    out.push_back(item.substr(b, e - b));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  return out;
}

}  // namespace tern::mailauth
