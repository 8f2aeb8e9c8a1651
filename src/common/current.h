// A value that is replaced whole at run time (settings and certificates on
// SIGHUP) while readers keep the version they took: get() hands out a
// shared_ptr, set() swaps it under a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace tern {

template <class T>
class Current {
 public:
  explicit Current(std::shared_ptr<T> value = nullptr) : value_(std::move(value)) {}
  Current(const Current&) = delete;
  Current& operator=(const Current&) = delete;

  std::shared_ptr<T> get() const {
    std::lock_guard lock(mu_);
    return value_;
  }
  void set(std::shared_ptr<T> value) {
    std::lock_guard lock(mu_);
    value_ = std::move(value);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<T> value_;
};

}  // namespace tern
