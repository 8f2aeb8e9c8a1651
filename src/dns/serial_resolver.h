// A Resolver that any thread may call: queries are posted to one strand,
// where the resolver it wraps (libunbound behind a TTL cache, neither of
// them thread-safe) lives. Inbound mail authentication asks from every
// connection's strand.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "dns/resolver.h"

namespace tern::dns {

class SerialResolver final : public Resolver {
 public:
  // `inner` must call back on `strand` (make it with that executor).
  SerialResolver(asio::strand<asio::any_io_executor> strand,
                 std::unique_ptr<Resolver> inner, std::unique_ptr<Resolver> below = nullptr)
      : strand_(std::move(strand)), below_(std::move(below)), inner_(std::move(inner)) {}

  void Query(const std::string& name, RrType type, Callback done) override {
    asio::post(strand_, [this, name, type, done = std::move(done)]() mutable {
      inner_->Query(name, type, std::move(done));
    });
  }

 private:
  asio::strand<asio::any_io_executor> strand_;
  std::unique_ptr<Resolver> below_;  // what `inner` wraps, if it owns nothing
  std::unique_ptr<Resolver> inner_;
};

}  // namespace tern::dns
