// State shared by every connection of a running server.
#include "server/context.h"

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
                                uint32_t max_per_ip) {
  std::lock_guard lock(mu_);
  if (total_.load() >= max_total) return false;
  uint32_t& n = per_ip_[ip];
  if (n >= max_per_ip) {
    if (n == 0) per_ip_.erase(ip);
    return false;
  }
  ++n;
  ++total_;
  return true;
}

void ConnectionLimiter::Release(const std::string& ip) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end()) return;
  if (--it->second == 0) per_ip_.erase(it);
  --total_;
}

uint64_t Context::Register(std::weak_ptr<Stoppable> c) {
  std::lock_guard lock(mu_);
  uint64_t key = next_key_++;
  live_.emplace(key, std::move(c));
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
    for (auto& [k, w] : live_) {
      if (auto s = w.lock()) all.push_back(std::move(s));
    }
  }
  for (auto& s : all) s->RequestShutdown(force);
}

}  // namespace tern::server
