// Fuzzes the DKIM tag-list parser (mailauth/dkim_tags.h, RFC 6376 3.2) and
// the two record parsers on top of it: accepted lists obey the grammar,
// survive a round trip through "name=value;", and the b= erasure that
// verification does leaves a list that still parses.
//
// Input: the tag list text itself (no header bytes).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "mailauth/dkim_record.h"
#include "mailauth/dkim_tags.h"

namespace {

using tern::fuzz::Printable;
using tern::mailauth::DkimTagList;
using tern::mailauth::ParseDkimTagList;

bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

void CheckGrammar(std::string_view text, const DkimTagList& list) {
  FUZZ_CHECK(!list.tags.empty(), "accepted an empty list: %s",
             Printable(text).c_str());
  std::set<std::string_view> names;
  for (const auto& tag : list.tags) {
    FUZZ_CHECK(!tag.name.empty() && IsAlpha(tag.name[0]), "bad tag name");
    for (char c : tag.name) {
      FUZZ_CHECK(IsAlpha(c) || (c >= '0' && c <= '9') || c == '_',
                 "bad character in tag name");
    }
    FUZZ_CHECK(names.insert(tag.name).second, "duplicate tag accepted: %s",
               Printable(text).c_str());
    FUZZ_CHECK(tag.value.find(';') == std::string_view::npos, "';' in value");
    if (!tag.value.empty()) {
      FUZZ_CHECK(!IsSpace(tag.value.front()) && !IsSpace(tag.value.back()),
                 "value not trimmed: %s", Printable(tag.value).c_str());
    }
    for (char c : tag.value) {
      auto u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u >= 0x20 || c == '\t' || c == '\r' || c == '\n',
                 "control octet in value");
    }
    // The value lies inside its span, which ends at ';' or the end.
    FUZZ_CHECK(tag.value_begin <= tag.value_end && tag.value_end <= text.size(),
               "span out of range");
    FUZZ_CHECK(tag.value_end == text.size() || text[tag.value_end] == ';',
               "span does not end at ';'");
    std::string_view span =
        text.substr(tag.value_begin, tag.value_end - tag.value_begin);
    FUZZ_CHECK(span.find(tag.value) != std::string_view::npos,
               "value not in its span");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto list = ParseDkimTagList(text);
  // Neither record parser may crash on anything, accepted or not.
  (void)tern::mailauth::ParseDkimKeyRecord(text);
  if (!list) {
    FUZZ_CHECK(!list.error().message.empty(), "error without a message");
    return 0;
  }
  CheckGrammar(text, *list);
  (void)tern::mailauth::ParseDkimSignature(*list);

  // Round trip: the canonical form has the same tags and values.
  std::string again;
  for (const auto& tag : list->tags) {
    again += std::string(tag.name) + "=" + std::string(tag.value) + ";";
  }
  auto reparsed = ParseDkimTagList(again);
  FUZZ_CHECK(reparsed, "canonical form rejected: %s (%s)",
             Printable(again).c_str(),
             reparsed ? "" : reparsed.error().message.c_str());
  FUZZ_CHECK(reparsed->tags.size() == list->tags.size(), "tag count changed");
  for (size_t i = 0; i < list->tags.size(); ++i) {
    FUZZ_CHECK(reparsed->tags[i].name == list->tags[i].name &&
                   reparsed->tags[i].value == list->tags[i].value,
               "tag %zu changed in the round trip", i);
  }

  // Erasing one value the way verification erases b= keeps a valid list in
  // which that value is empty and the others are unchanged.
  const auto& victim = list->tags[size % list->tags.size()];
  std::string erased(text);
  erased.erase(victim.value_begin, victim.value_end - victim.value_begin);
  auto after = ParseDkimTagList(erased);
  FUZZ_CHECK(after, "erasing a value broke the list: %s",
             Printable(erased).c_str());
  FUZZ_CHECK(after->tags.size() == list->tags.size(), "erasure changed count");
  for (size_t i = 0; i < list->tags.size(); ++i) {
    bool is_victim = list->tags[i].name == victim.name;
    FUZZ_CHECK(after->tags[i].value ==
                   (is_victim ? std::string_view() : list->tags[i].value),
               "erasure changed tag %zu", i);
  }
  return 0;
}
