// Connection limits, fair share and the live list: see registry.h.
#include "net/registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

namespace tern::net {

bool ConnectionLimiter::Acquire(const std::string& ip, uint32_t max_total,
                                uint32_t max_per_ip, std::string* evict) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  uint32_t mine = it == per_ip_.end() ? 0 : it->second;
  if (mine >= max_per_ip) return false;
  if (total_.load() >= max_total) {
    // Full. Only a client below the busiest address's share gets in, and
    // only within a small overshoot while evicted connections close.
    uint32_t staying = total_.load() - std::min(evicting_, total_.load());
    if (evict == nullptr || staying >= max_total + std::max(1u, max_total / 16)) {
      return false;
    }
    const std::string* busiest = nullptr;
    uint32_t most = 0;
    for (const auto& [addr, n] : per_ip_) {
      if (n > most) {
        most = n;
        busiest = &addr;
      }
    }
    if (busiest == nullptr || most < mine + 2) return false;
    *evict = *busiest;
  }
  ++per_ip_[ip];
  ++total_;
  return true;
}

uint32_t ConnectionLimiter::count(const std::string& ip) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  return it == per_ip_.end() ? 0 : it->second;
}

void ConnectionLimiter::NoteEvicting() {
  std::lock_guard lock(mu_);
  ++evicting_;
}

void ConnectionLimiter::Release(const std::string& ip, bool evicted) {
  std::lock_guard lock(mu_);
  if (evicted && evicting_ > 0) --evicting_;
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end()) return;
  if (--it->second == 0) per_ip_.erase(it);
  --total_;
}

bool Registry::Admit(ConnectionLimiter& limiter, const std::string& ip,
                     uint32_t max_total, uint32_t max_per_ip) {
  std::string busiest;
  if (!limiter.Acquire(ip, max_total, max_per_ip, &busiest)) return false;
  if (busiest.empty()) return true;
  std::shared_ptr<Stoppable> victim;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, live] : live_) {
      if (live.evicted || live.limiter != &limiter || live.ip != busiest) continue;
      if (auto s = live.conn.lock()) {
        live.evicted = true;
        limiter.NoteEvicting();  // registry, then limiter: the only order
        victim = std::move(s);
        break;
      }
    }
  }
  if (victim) {
    spdlog::warn("connection evicted client={} held={} for client={} "
                 "reason=fair-share total={}",
                 busiest, limiter.count(busiest), ip, limiter.total());
    // An idle session closes at once; one in a transaction finishes it.
    victim->RequestShutdown(false);
  }
  return true;
}

uint64_t Registry::Register(std::weak_ptr<Stoppable> c, std::string ip,
                            ConnectionLimiter* limiter) {
  std::lock_guard lock(mu_);
  uint64_t key = next_key_++;
  live_.emplace(key, Live{std::move(c), std::move(ip), limiter});
  return key;
}

void Registry::Unregister(uint64_t key) {
  Live gone;
  {
    std::lock_guard lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end()) return;
    gone = std::move(it->second);
    live_.erase(it);
  }
  if (gone.limiter != nullptr) gone.limiter->Release(gone.ip, gone.evicted);
}

size_t Registry::live() const {
  std::lock_guard lock(mu_);
  return live_.size();
}

void Registry::ShutdownAll(bool force) {
  stopping_ = true;
  std::vector<std::shared_ptr<Stoppable>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, live] : live_) {
      if (auto s = live.conn.lock()) all.push_back(std::move(s));
    }
  }
  for (auto& s : all) s->RequestShutdown(force);
}

}  // namespace tern::net
