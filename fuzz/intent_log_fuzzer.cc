// Fuzzes the direct-delivery intent log records (delivery/intent_log.h):
// what replay at start reads back from queue/direct.0 and direct.1 after a
// crash. A record that parses must name two paths that stay below the mail
// root (replay links and removes files on its word), and must print back
// with AppendIntent() to a line that parses to the same record.
//
// Input: the log's text; each LF-terminated line is one record, as replay
// splits it (a torn last line is left out).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "delivery/intent_log.h"
#include "fuzz_common.h"

namespace {

// No part of the path leads out of the directory it is relative to.
bool StaysBelow(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    std::string_view part = p.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tern::fuzz::Printable;
  std::string_view log(reinterpret_cast<const char*>(data), size);
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string_view::npos) break;
    std::string_view line = log.substr(start, end - start);
    start = end + 1;
    std::optional<tern::delivery::IntentRecord> r = tern::delivery::ParseIntent(line);
    if (!r) continue;
    FUZZ_CHECK(StaysBelow(r->tmp) && StaysBelow(r->dest), "unsafe path accepted: %s",
               Printable(line).c_str());
    FUZZ_CHECK((r->tmp + r->dest).find_first_of("\t\n") == std::string::npos,
               "TAB or LF in a path: %s", Printable(line).c_str());
    std::string again;
    tern::delivery::AppendIntent(again, *r);
    FUZZ_CHECK(!again.empty() && again.back() == '\n' &&
                   again.find('\n') == again.size() - 1,
               "AppendIntent wrote not one line: %s", Printable(again).c_str());
    std::optional<tern::delivery::IntentRecord> back =
        tern::delivery::ParseIntent(std::string_view(again).substr(0, again.size() - 1));
    FUZZ_CHECK(back && *back == *r, "record does not print back: %s -> %s",
               Printable(line).c_str(), Printable(again).c_str());
  }
  return 0;
}
