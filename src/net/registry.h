// Connection accounting for every listener: per-protocol limits in total
// and per client address (with a fair share when full), and the list of
// live connections that a graceful shutdown or an eviction must reach.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "net/line_connection.h"

namespace tern::net {

// Counts one protocol's connections in total and per client IP.
class ConnectionLimiter {
 public:
  // Takes a slot, or returns false when a limit is reached.
  //
  // Fair share when the server is full: a client whose address holds at
  // least two connections fewer than the busiest address still gets a slot
  // (up to a sixteenth over `max_total`), and `*evict` names that busiest
  // address so the caller can close one of its connections. Without this,
  // a crowd of idle connections from a few dozen addresses, each under
  // `max_per_ip`, locks every other client out for as long as it stays.
  // Without `evict` the total is a hard limit. Connections already asked
  // to close (NoteEvicting) do not count against the overshoot: on a slow
  // machine they may take a while to go, and a fair client must not be
  // refused for that.
  bool Acquire(const std::string& ip, uint32_t max_total, uint32_t max_per_ip,
               std::string* evict = nullptr);
  // `evicted`: the connection was counted by NoteEvicting.
  void Release(const std::string& ip, bool evicted = false);
  void NoteEvicting();
  uint32_t total() const { return total_.load(); }
  uint32_t count(const std::string& ip);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, uint32_t> per_ip_;
  std::atomic<uint32_t> total_{0};
  uint32_t evicting_ = 0;  // asked to close, not yet released (under mu_)
};

class Registry {
 public:
  // Takes a slot in `limiter` for `ip`, with the fair share; when that
  // needs room, the oldest live connection of the busiest address (of the
  // same limiter) is asked to close (RequestShutdown(false)).
  bool Admit(ConnectionLimiter& limiter, const std::string& ip,
             uint32_t max_total, uint32_t max_per_ip);
  // Registers an admitted connection; Unregister(key) at its end also
  // gives its slot in `limiter` back.
  uint64_t Register(std::weak_ptr<Stoppable> c, std::string ip,
                    ConnectionLimiter* limiter);
  void Unregister(uint64_t key);
  size_t live() const;
  bool stopping() const { return stopping_.load(); }
  // Sets stopping() and asks every live connection to finish.
  void ShutdownAll(bool force);

 private:
  struct Live {
    std::weak_ptr<Stoppable> conn;
    std::string ip;
    ConnectionLimiter* limiter = nullptr;
    bool evicted = false;
  };
  mutable std::mutex mu_;
  uint64_t next_key_ = 1;
  std::map<uint64_t, Live> live_;  // by key: oldest first
  std::atomic<bool> stopping_{false};
};

}  // namespace tern::net
