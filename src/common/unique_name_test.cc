// Tests for the process-wide unique number: no repeats, also across threads.
#include "common/unique_name.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

namespace tern {
namespace {

TEST(UniqueNameTest, NoNumberTwiceAcrossThreads) {
  constexpr int kThreads = 4, kPerThread = 1000;
  std::vector<std::vector<uint64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&seen, t] {
      for (int i = 0; i < kPerThread; ++i)
        seen[t].push_back(NextUniqueNumber());
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<uint64_t> all;
  for (const auto& numbers : seen) {
    // Each thread sees them rising.
    for (size_t i = 1; i < numbers.size(); ++i) {
      EXPECT_LT(numbers[i - 1], numbers[i]);
    }
    all.insert(numbers.begin(), numbers.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace tern
