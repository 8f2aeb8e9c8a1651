// ChangeHub: see change_hub.h.
#include "store/change_hub.h"

#include <vector>

namespace tern::store {

uint64_t ChangeHub::Subscribe(std::string account, Callback callback) {
  MutexLock lock(mu_);
  uint64_t id = next_++;
  by_account_.emplace(account, id);
  subscribers_.emplace(id, Entry{std::move(account), std::move(callback)});
  return id;
}

void ChangeHub::Unsubscribe(uint64_t id) {
  MutexLock lock(mu_);
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  auto [lo, hi] = by_account_.equal_range(it->second.account);
  for (auto a = lo; a != hi; ++a) {
    if (a->second == id) {
      by_account_.erase(a);
      break;
    }
  }
  subscribers_.erase(it);
}

void ChangeHub::Publish(std::string_view account, std::string_view folder,
                        uint64_t except) {
  // Callbacks run outside the lock: one may subscribe or unsubscribe.
  std::vector<Callback> calls;
  {
    MutexLock lock(mu_);
    auto [lo, hi] = by_account_.equal_range(account);
    for (auto a = lo; a != hi; ++a) {
      if (a->second == except) continue;
      calls.push_back(subscribers_.at(a->second).callback);
    }
  }
  for (auto& c : calls) c(folder);
}

}  // namespace tern::store
