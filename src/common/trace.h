// The message trace behind `tern trace`: what happened to each message
// (received, refused, each delivery attempt, bounces, removal from the
// queue), one JSON object per line in data_dir/trace/YYYY-MM-DD.jsonl
// (UTC days). Every layer records through the one process-wide writer;
// it is off until Open() and costs one branch per event while off.
//
// Events carry envelope facts, replies and names only: never message
// content, passwords or SASL data.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace tern::trace {

// One event, built field by field into its JSON text. The "time" (RFC 3339,
// UTC, milliseconds) and "event" fields come first.
class Event {
 public:
  explicit Event(std::string_view type);
  // For tests: a fixed time (Unix seconds and milliseconds).
  Event(std::string_view type, int64_t seconds, int millis);

  // Empty strings and lists are left out, so readers see only what was
  // known.
  Event& Add(std::string_view key, std::string_view value);
  Event& Add(std::string_view key, const char* value) {
    return Add(key, std::string_view(value));
  }
  Event& Add(std::string_view key, const std::string& value) {
    return Add(key, std::string_view(value));
  }
  Event& Add(std::string_view key, uint64_t value);
  Event& Add(std::string_view key, const std::vector<std::string>& values);

  // The object and its newline.
  std::string Line() const { return json_ + "}\n"; }

 private:
  void Key(std::string_view key);
  std::string json_;
};

// Appends `s` to `out` as a JSON string (RFC 8259 7): quotes, backslashes
// and control characters escaped; bytes that are not UTF-8 become U+FFFD,
// so every line stays valid JSON whatever a client or a remote server sent.
void AppendJsonString(std::string& out, std::string_view s);

// "2024-05-01" for a Unix time (UTC): the file an event goes to.
std::string DayOf(std::time_t t);

// Starts writing into `dir` (created when missing) and deletes files
// older than `keep_days` days, now and at the first event of each day.
// Returns false (and leaves the trace off) when the folder cannot be made.
bool Open(const std::string& dir, uint32_t keep_days);
// Stops writing and closes the file (tests, shutdown).
void Close();
bool Enabled();
// Appends the event as one line (a single write on an O_APPEND file, so
// lines never interleave); errors are logged once and otherwise ignored:
// the trace is a record, not mail, and is never synced.
void Record(const Event& event);
// The same for a line made earlier (Event::Line()).
void RecordLine(const std::string& line);

// Deletes YYYY-MM-DD.jsonl files in `dir` older than `keep_days` days
// before `now`; returns how many went.
int Prune(const std::string& dir, uint32_t keep_days, std::time_t now);

}  // namespace tern::trace
