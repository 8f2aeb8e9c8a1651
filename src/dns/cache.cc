// TTL cache and query coalescing for dns::Resolver.
#include "dns/cache.h"

#include <algorithm>

#include "common/strings.h"

namespace tern::dns {
namespace {

// A day at most, whatever the zone says; negative answers (RFC 2308 5)
// for fifteen minutes at most, so a fixed zone is noticed soon.
constexpr uint32_t kMaxTtl = 86400;
constexpr uint32_t kMaxNegativeTtl = 900;

}  // namespace

CachingResolver::CachingResolver(Resolver& inner,
                                 asio::any_io_executor executor,
                                 std::function<Clock::time_point()> now,
                                 size_t max_entries)
    : inner_(inner),
      executor_(std::move(executor)),
      now_(std::move(now)),
      max_entries_(max_entries) {}

void CachingResolver::Query(const std::string& name, RrType type,
                            Callback done) {
  Key key{ToLower(name), type};
  if (auto it = entries_.find(key); it != entries_.end()) {
    if (it->second.expires > now_()) {
      ++hits_;
      Answer copy = it->second.answer;
      // Same contract as the inner resolver: never call back inline.
      asio::post(executor_, [cb = std::move(done), a = std::move(copy)]() {
        cb(a);
      });
      return;
    }
    entries_.erase(it);
  }
  auto [flight, fresh] = inflight_.try_emplace(key);
  flight->second.push_back(std::move(done));
  if (!fresh) return;
  inner_.Query(key.first, type, [this, key](Answer answer) {
    Store(key, answer);
    auto it = inflight_.find(key);
    if (it == inflight_.end()) return;
    std::vector<Callback> waiters = std::move(it->second);
    inflight_.erase(it);
    for (Callback& cb : waiters) cb(answer);
  });
}

void CachingResolver::Store(const Key& key, const Answer& answer) {
  if (answer.status == Status::kTempFail) return;
  bool negative = answer.status == Status::kNxDomain ||
                  (answer.mx.empty() && answer.addresses.empty() &&
                   answer.tlsa.empty());
  uint32_t ttl = std::min(answer.ttl, negative ? kMaxNegativeTtl : kMaxTtl);
  if (ttl == 0) return;
  if (entries_.size() >= max_entries_) {
    // Drop the expired ones; if that frees nothing, start over. Simple,
    // and a full cache is rare (one entry per destination and type).
    Clock::time_point now = now_();
    std::erase_if(entries_, [&](const auto& e) { return e.second.expires <= now; });
    if (entries_.size() >= max_entries_) entries_.clear();
  }
  entries_[key] = Entry{answer, now_() + std::chrono::seconds(ttl)};
}

}  // namespace tern::dns
