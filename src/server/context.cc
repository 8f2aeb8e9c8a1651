// State shared by every connection of a running server.
#include "server/context.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

namespace tern::server {

std::shared_ptr<const Settings> MakeSettings(const config::Config& cfg) {
  auto s = std::make_shared<Settings>();
  s->config = cfg;
  s->session.hostname = cfg.hostname;
  s->session.max_message_size = cfg.smtp.max_message_size;
  s->session.max_recipients = cfg.smtp.max_recipients;
  s->session.max_errors = cfg.smtp.max_errors;
  s->session.command_line_limit = cfg.smtp.command_line_limit;
  s->session.text_line_limit = cfg.smtp.text_line_limit;
  s->session.max_received_headers = cfg.smtp.max_received_headers;
  s->session.vrfy = cfg.smtp.vrfy;
  s->session.expn = cfg.smtp.expn;
  s->trusted = policy::NetworkList(cfg.trusted_networks);
  return s;
}

Context::Context(std::shared_ptr<const Settings> settings,
                 auth::Directory* directory, queue::Queue* queue)
    : settings_(std::move(settings)), directory_(directory), queue_(queue) {
  if (directory_ != nullptr) {
    credentials_ = std::make_unique<auth::DirectoryCredentials>(*directory_);
  }
  const config::AuthSettings& a = settings_->config.auth;
  auth::ThrottleConfig tc;
  tc.max_failures = a.max_failures;
  tc.window = std::chrono::seconds(a.window);
  tc.lockout = std::chrono::seconds(a.lockout);
  tc.delay_step = std::chrono::milliseconds(a.delay_step_ms);
  tc.max_delay = std::chrono::milliseconds(a.max_delay_ms);
  throttle_ = std::make_unique<auth::AuthThrottle>(tc);
}

bool ConnectionLimiter::Acquire(const std::string& ip, uint32_t max_total,
                                uint32_t max_per_ip, std::string* evict) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  uint32_t mine = it == per_ip_.end() ? 0 : it->second;
  if (mine >= max_per_ip) return false;
  if (total_.load() >= max_total) {
    // Full. Only a client below the busiest address's share gets in, and
    // only within a small overshoot while evicted connections close.
    if (evict == nullptr || total_.load() >= max_total + std::max(1u, max_total / 16)) {
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

void ConnectionLimiter::Release(const std::string& ip) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end()) return;
  if (--it->second == 0) per_ip_.erase(it);
  --total_;
}

bool Context::Admit(const std::string& ip, uint32_t max_total,
                    uint32_t max_per_ip) {
  std::string busiest;
  if (!limiter_.Acquire(ip, max_total, max_per_ip, &busiest)) return false;
  if (busiest.empty()) return true;
  std::shared_ptr<Stoppable> victim;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, live] : live_) {
      if (live.evicted || live.ip != busiest) continue;
      if (auto s = live.conn.lock()) {
        live.evicted = true;
        victim = std::move(s);
        break;
      }
    }
  }
  if (victim) {
    spdlog::warn("connection evicted client={} held={} for client={} "
                 "reason=fair-share total={}",
                 busiest, limiter_.count(busiest), ip, limiter_.total());
    // An idle session closes at once (421); one in a transaction finishes it.
    victim->RequestShutdown(false);
  }
  return true;
}

uint64_t Context::Register(std::weak_ptr<Stoppable> c, std::string ip) {
  std::lock_guard lock(mu_);
  uint64_t key = next_key_++;
  live_.emplace(key, Live{std::move(c), std::move(ip)});
  return key;
}

void Context::Unregister(uint64_t key) {
  std::lock_guard lock(mu_);
  live_.erase(key);
}

size_t Context::live() const {
  std::lock_guard lock(mu_);
  return live_.size();
}

void Context::ShutdownAll(bool force) {
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

}  // namespace tern::server
