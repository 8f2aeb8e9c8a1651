// Tests for the message trace writer: the JSON text of events (escaping,
// invalid UTF-8, empty fields left out), whole lines from many threads, and
// the deletion of old days.
#include "common/trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace tern::trace {
namespace {

TEST(TraceTest, EventText) {
  Event e("received", 86400 * 365, 7);
  e.Add("id", "0ABC").Add("empty", "").Add("size", uint64_t{42});
  e.Add("rcpts", std::vector<std::string>{"a@b", "c\"d@e"});
  e.Add("none", std::vector<std::string>{});
  EXPECT_EQ(e.Line(),
            "{\"time\":\"1971-01-01T00:00:00.007Z\",\"event\":\"received\",\"id\":\"0ABC\","
            "\"size\":42,\"rcpts\":[\"a@b\",\"c\\\"d@e\"]}\n");
}

TEST(TraceTest, StringsStayValidJson) {
  std::string out;
  AppendJsonString(out, std::string("a\\b\r\n\t\x01\x7f", 8));
  EXPECT_EQ(out, "\"a\\\\b\\u000d\\u000a\\u0009\\u0001\\u007f\"");
  out.clear();
  // UTF-8 passes; a stray continuation byte, an overlong form and a
  // truncated sequence become U+FFFD.
  AppendJsonString(out, "caf\xc3\xa9 \x80 \xc0\xaf \xe2\x82");
  EXPECT_EQ(out, "\"caf\xc3\xa9 \\ufffd \\ufffd\\ufffd \\ufffd\\ufffd\"");
}

TEST(TraceTest, DayOf) {
  EXPECT_EQ(DayOf(0), "1970-01-01");
  EXPECT_EQ(DayOf(86400 * 31 - 1), "1970-01-31");
}

class TraceFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tern-trace-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    Close();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_F(TraceFilesTest, LinesFromManyThreadsStayWhole) {
  ASSERT_TRUE(Open(dir_.string(), 14));
  EXPECT_TRUE(Enabled());
  constexpr int kThreads = 4, kEach = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kEach; ++i) {
        Event e("delivery");
        e.Add("id", std::string(100, static_cast<char>('A' + t)));
        Record(e);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Close();
  EXPECT_FALSE(Enabled());
  Record(Event("ignored"));  // off: nothing written
  int lines = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    std::ifstream in(f.path());
    for (std::string line; std::getline(in, line); ++lines) {
      ASSERT_EQ(line.front(), '{');
      ASSERT_EQ(line.back(), '}');
      EXPECT_EQ(line.find("ignored"), std::string::npos);
    }
  }
  EXPECT_EQ(lines, kThreads * kEach);
}

TEST_F(TraceFilesTest, OldDaysAreDeleted) {
  std::filesystem::create_directories(dir_);
  const std::time_t now = 86400 * 20 + 3600;  // 1970-01-21
  for (const char* name : {"1970-01-05.jsonl", "1970-01-07.jsonl", "1970-01-08.jsonl",
                           "1970-01-21.jsonl", "notes.txt"}) {
    std::ofstream(dir_ / name) << "{}\n";
  }
  // 14 days: the 8th to the 21st stay.
  EXPECT_EQ(Prune(dir_.string(), 14, now), 2);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "1970-01-07.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "1970-01-08.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "notes.txt"));
  EXPECT_EQ(Prune(dir_.string(), 0, now), 0);  // 0: keep everything
}

}  // namespace
}  // namespace tern::trace
