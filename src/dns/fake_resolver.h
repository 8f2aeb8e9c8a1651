// A scripted Resolver for unit tests: answers come from a table filled by
// the test, posted to an executor like the real resolver's.
#pragma once

#include <map>
#include <string>
#include <utility>

#include "common/strings.h"
#include "dns/resolver.h"

namespace tern::dns {

class FakeResolver final : public Resolver {
 public:
  explicit FakeResolver(asio::any_io_executor executor)
      : executor_(std::move(executor)) {}

  // Unlisted questions get NXDOMAIN.
  void Set(const std::string& name, RrType type, Answer answer) {
    answers_[{ToLower(name), type}] = std::move(answer);
  }
  void SetMx(const std::string& name, std::vector<MxRecord> mx,
             uint32_t ttl = 300) {
    Answer a;
    a.status = Status::kOk;
    a.mx = std::move(mx);
    a.ttl = ttl;
    Set(name, RrType::kMx, std::move(a));
  }
  void SetA(const std::string& name, std::vector<std::string> addresses,
            uint32_t ttl = 300) {
    Answer a;
    a.status = Status::kOk;
    a.addresses = std::move(addresses);
    a.ttl = ttl;
    Set(name, RrType::kA, std::move(a));
  }

  void SetTxt(const std::string& name, std::vector<std::string> txt,
              uint32_t ttl = 300) {
    Answer a;
    a.status = Status::kOk;
    a.txt = std::move(txt);
    a.ttl = ttl;
    Set(name, RrType::kTxt, std::move(a));
  }
  void Query(const std::string& name, RrType type, Callback done) override {
    ++queries_;
    Answer a;
    a.status = Status::kNxDomain;
    if (auto it = answers_.find({ToLower(name), type}); it != answers_.end())
      a = it->second;
    asio::post(executor_, [cb = std::move(done), a]() { cb(a); });
  }

  int queries() const { return queries_; }

 private:
  asio::any_io_executor executor_;
  std::map<std::pair<std::string, RrType>, Answer> answers_;
  int queries_ = 0;
};

}  // namespace tern::dns
