// A cache in front of any Resolver: answers live for their TTL, identical
// queries in flight share one upstream query. Outbound delivery asks the
// same MX and address questions for every message to a busy domain.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dns/resolver.h"

namespace tern::dns {

class CachingResolver final : public Resolver {
 public:
  using Clock = std::chrono::steady_clock;
  // `now` is injectable for tests. Not thread-safe: use from the executor
  // the inner resolver calls back on.
  // `executor` is the one the inner resolver calls back on; cached
  // answers are posted to it.
  CachingResolver(Resolver& inner, asio::any_io_executor executor,
                  std::function<Clock::time_point()> now = Clock::now,
                  size_t max_entries = 10000);

  void Query(const std::string& name, RrType type, Callback done) override;

  size_t size() const { return entries_.size(); }
  uint64_t hits() const { return hits_; }

 private:
  struct Entry {
    Answer answer;
    Clock::time_point expires;
  };
  using Key = std::pair<std::string, RrType>;

  void Store(const Key& key, const Answer& answer);

  Resolver& inner_;
  asio::any_io_executor executor_;
  std::function<Clock::time_point()> now_;
  size_t max_entries_;
  std::map<Key, Entry> entries_;
  std::map<Key, std::vector<Callback>> inflight_;
  uint64_t hits_ = 0;
};

}  // namespace tern::dns
