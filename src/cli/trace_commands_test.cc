// Tests for `tern trace`'s reading side: which events a queue id, a
// Message-ID or an address selects (bounces followed both ways), and the
// text a person reads.
#include "cli/trace_commands.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::cli {
namespace {

using nlohmann::json;

// Two messages, A (from s@remote.test to u@example.test and x@far.test;
// x failed, and DSN D to s is still queued) and B (w to itself), and a
// refusal.
std::vector<json> Events() {
  const char* lines[] = {
      R"({"time":"T1","event":"received","id":"0000000000000AAA","message_id":"<m1@c>",)"
      R"("client":"192.0.2.1","helo":"c.test","listener":"smtp","from":"s@remote.test",)"
      R"("rcpts":["u@example.test","x@far.test"],"size":100})",
      R"({"time":"T2","event":"refused","stage":"rcpt","client":"192.0.2.1","listener":"smtp",)"
      R"("from":"s@remote.test","rcpts":["nobody@example.test"],"reply":"550 5.1.1 no"})",
      R"({"time":"T3","event":"delivery","id":"0000000000000AAA","rcpt":"u@example.test",)"
      R"("destination":"local","result":"delivered","mailbox":"u@example.test"})",
      R"({"time":"T4","event":"received","id":"0000000000000BBB","client":"192.0.2.2",)"
      R"("listener":"submission","user":"w@example.test","from":"w@example.test",)"
      R"("rcpts":["w@example.test"],"size":10})",
      R"({"time":"T5","event":"delivery","id":"0000000000000AAA","rcpt":"x@far.test",)"
      R"("destination":"remote","result":"failed","host":"mx.far.test[192.0.2.9]:25",)"
      R"("reply":"550 5.1.1 unknown"})",
      R"({"time":"T6","event":"bounce","id":"0000000000000AAA","dsn":"0000000000000DDD",)"
      R"("to":"s@remote.test","kind":"dsn","actions":["failed <x@far.test>"]})",
      R"({"time":"T7","event":"done","id":"0000000000000AAA","delivered":["u@example.test"],)"
      R"("failed":["x@far.test"]})",
      R"({"time":"T8","event":"delivery","id":"0000000000000DDD","rcpt":"s@remote.test",)"
      R"("destination":"remote","result":"deferred","reply":"451 4.4.1 no answer"})",
  };
  std::vector<json> out;
  for (const char* l : lines) out.push_back(json::parse(l));
  return out;
}

std::vector<std::string> Times(const std::vector<json>& events) {
  std::vector<std::string> out;
  for (const json& e : events) out.push_back(e["time"].get<std::string>());
  return out;
}

using Ts = std::vector<std::string>;

TEST(TraceCommandTest, ByQueueIdFollowsBounces) {
  std::vector<json> all = Events();
  EXPECT_EQ(Times(SelectTrace(all, "0000000000000AAA")),
            (Ts{"T1", "T3", "T5", "T6", "T7", "T8"}));
  // The DSN's id leads back to the message it reports on.
  EXPECT_EQ(Times(SelectTrace(all, "0000000000000DDD")),
            (Ts{"T1", "T3", "T5", "T6", "T7", "T8"}));
  EXPECT_EQ(Times(SelectTrace(all, "0000000000000BBB")), (Ts{"T4"}));
  EXPECT_TRUE(SelectTrace(all, "0000000000000CCC").empty());
}

TEST(TraceCommandTest, ByMessageId) {
  std::vector<json> all = Events();
  Ts a = {"T1", "T3", "T5", "T6", "T7", "T8"};
  EXPECT_EQ(Times(SelectTrace(all, "<m1@c>")), a);
  EXPECT_EQ(Times(SelectTrace(all, "m1@c")), a);  // no event names it as an address
  EXPECT_TRUE(SelectTrace(all, "<m2@c>").empty());
}

TEST(TraceCommandTest, ByAddress) {
  std::vector<json> all = Events();
  // The sender: its message (and DSN) and its refusal, in time order.
  EXPECT_EQ(Times(SelectTrace(all, "S@Remote.Test")),
            (Ts{"T1", "T2", "T3", "T5", "T6", "T7", "T8"}));
  EXPECT_EQ(Times(SelectTrace(all, "<nobody@example.test>")), (Ts{"T2"}));
  EXPECT_EQ(Times(SelectTrace(all, "w@example.test")), (Ts{"T4"}));
  EXPECT_TRUE(SelectTrace(all, "z@example.test").empty());
}

TEST(TraceCommandTest, Text) {
  std::string text = FormatTrace(SelectTrace(Events(), "s@remote.test"));
  EXPECT_EQ(text,
            "message 0000000000000AAA <m1@c>\n"
            "  T1  received from <s@remote.test> for <u@example.test>, <x@far.test> (100 bytes)\n"
            "      client 192.0.2.1 (c.test) on smtp\n"
            "  T3  delivered <u@example.test> (local)\n"
            "  T5  failed <x@far.test> (remote via mx.far.test[192.0.2.9]:25): 550 5.1.1 "
            "unknown\n"
            "  T6  DSN 0000000000000DDD to <s@remote.test>: failed <x@far.test>\n"
            "  T7  left the queue: delivered to <u@example.test>; failed for <x@far.test>\n"
            "\n"
            "refusal\n"
            "  T2  refused at rcpt, from <s@remote.test> to <nobody@example.test>: 550 5.1.1 no\n"
            "      client 192.0.2.1 on smtp\n"
            "\n"
            "message 0000000000000DDD (delivery status notification for 0000000000000AAA)\n"
            "  T8  deferred <s@remote.test> (remote): 451 4.4.1 no answer\n"
            "  (still in the queue, or its removal is not in the trace read)\n");
}

}  // namespace
}  // namespace tern::cli
