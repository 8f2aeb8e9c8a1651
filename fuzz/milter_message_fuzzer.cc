// Fuzzes what mail filters do to a message (antispam/milter_message.h):
// MilterMessage::Parse and Text on any message, then one filter's changes,
// decoded from the rest of the input as milter packets, applied with
// ApplyMilterChanges. Properties: Text() gives back the parsed text (with
// a CRLF added only after a last field line that had none); changes are
// all or nothing (a refused list leaves the message as it was); after
// changes, parsing the new text again finds exactly the fields and body
// the changes produced, so no filter value can inject fields or end the
// header section; recipients never repeat and are never empty.
//
// Input: u16 (big-endian) length N of the message, N message bytes, then
// the filter's packets (4-byte length, command, data).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "antispam/milter_message.h"
#include "antispam/milter_protocol.h"
#include "common/strings.h"
#include "fuzz_common.h"

namespace {

using tern::antispam::ApplyMilterChanges;
using tern::antispam::MilterMessage;
using tern::antispam::MilterReader;
using tern::antispam::MilterReply;
using tern::antispam::ParseMilterReply;
using tern::fuzz::Printable;

bool SameFields(const MilterMessage& a, const MilterMessage& b) {
  if (a.fields.size() != b.fields.size()) return false;
  for (size_t i = 0; i < a.fields.size(); ++i) {
    if (a.fields[i].name != b.fields[i].name || a.fields[i].value != b.fields[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t n = (static_cast<size_t>(data[0]) << 8) | data[1];
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (n > rest.size()) n = rest.size();
  const std::string text(rest.substr(0, n));
  rest.remove_prefix(n);

  MilterMessage m = MilterMessage::Parse(text);
  const std::string again = m.Text();
  if (text.empty() || text.ends_with("\r\n") || m.separator || !m.body.empty()) {
    FUZZ_CHECK(again == text, "round trip: %s -> %s", Printable(text).c_str(),
               Printable(again).c_str());
  } else {
    FUZZ_CHECK(again == text + "\r\n", "round trip with CRLF: %s -> %s",
               Printable(text).c_str(), Printable(again).c_str());
  }

  MilterReader reader(1 << 16);
  reader.Feed(rest);
  std::vector<MilterReply> changes;
  while (reader.HasPacket() && changes.size() < 64) {
    auto packet = reader.Pop();
    auto reply = ParseMilterReply(packet.command, packet.data);
    if (reply && reply->modification()) changes.push_back(std::move(*reply));
  }
  m.sender = "a@example.org";
  m.rcpts = {"b@example.test"};
  const MilterMessage before = m;
  auto applied = ApplyMilterChanges(changes, m, "fuzz");
  if (!applied) {
    FUZZ_CHECK(SameFields(before, m) && before.body == m.body && before.rcpts == m.rcpts &&
                   before.sender == m.sender,
               "a refused change list changed the message");
    return 0;
  }
  for (size_t i = 0; i < m.rcpts.size(); ++i) {
    FUZZ_CHECK(!m.rcpts[i].empty(), "empty recipient");
    for (size_t j = i + 1; j < m.rcpts.size(); ++j) {
      FUZZ_CHECK(!tern::IEquals(m.rcpts[i], m.rcpts[j]), "recipient twice: %s",
                 Printable(m.rcpts[i]).c_str());
    }
  }
  if (applied->text) {
    // The new text parses back to what the changes made.
    MilterMessage back = MilterMessage::Parse(m.Text());
    FUZZ_CHECK(SameFields(back, m), "fields changed on reparse: %zu -> %zu fields in %s",
               m.fields.size(), back.fields.size(), Printable(m.Text()).c_str());
    FUZZ_CHECK(back.body == m.body, "body changed on reparse: %s",
               Printable(m.Text()).c_str());
  }
  return 0;
}
