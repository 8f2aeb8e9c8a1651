// Helpers for tests that run the queue with real local delivery: a fake
// directory to resolve recipients, and a queue wired to a LocalDelivery as
// the server wires them (the generic helpers: queue/queue_test_util.h).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "auth/directory.h"
#include "common/result.h"
#include "delivery/local_delivery.h"
#include "queue/queue.h"

namespace tern::delivery::testing {

// Addresses in `users` at example.test are mailboxes of their own, `aliases`
// expand as given, other example.test addresses are unknown and every other
// domain is not local.
struct FakeDirectory {
  std::vector<std::string> users;
  std::map<std::string, auth::Resolution> aliases;

  auth::Resolution Resolve(const std::string& address) const {
    if (auto it = aliases.find(address); it != aliases.end()) return it->second;
    auth::Resolution r;
    size_t at = address.rfind('@');
    std::string domain = at == std::string::npos ? "" : address.substr(at + 1);
    if (domain != "example.test") return r;  // kNotLocal
    for (const std::string& u : users) {
      if (u == address) {
        r.kind = auth::Resolution::Kind::kLocal;
        r.mailboxes = {u};
        return r;
      }
    }
    r.kind = auth::Resolution::Kind::kUnknown;
    return r;
  }
  LocalDelivery::Resolver resolver() const {
    return [this](const std::string& a) { return Resolve(a); };
  }
};

// A queue and the local deliverer it was given, used like the queue
// (`q->Commit(...)`, `*q`). The queue goes first: its delivery threads use
// the deliverer.
struct QueueWithDelivery {
  std::unique_ptr<LocalDelivery> local;  // declared first: destroyed last
  std::unique_ptr<queue::Queue> queue;

  QueueWithDelivery() = default;
  QueueWithDelivery(QueueWithDelivery&&) = default;
  QueueWithDelivery& operator=(QueueWithDelivery&& other) noexcept {
    queue.reset();
    local = std::move(other.local);
    queue = std::move(other.queue);
    return *this;
  }
  queue::Queue* operator->() const { return queue.get(); }
  queue::Queue& operator*() const { return *queue; }
  void reset() { *this = QueueWithDelivery(); }
};

// Opens (does not start) a queue with local delivery into data_dir/mail,
// with Maildir names from options.hostname; sets options.local.
inline Result<QueueWithDelivery> OpenQueue(queue::Options options,
                                           LocalDelivery::Resolver resolver) {
  QueueWithDelivery q;
  auto local = LocalDelivery::Open(
      {options.data_dir + "/mail", options.hostname}, std::move(resolver));
  if (!local) return tl::unexpected(local.error());
  q.local = std::move(*local);
  options.local = q.local.get();
  auto opened = queue::Queue::Open(options);
  if (!opened) return tl::unexpected(opened.error());
  q.queue = std::move(*opened);
  return q;
}

}  // namespace tern::delivery::testing
