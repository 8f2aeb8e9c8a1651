// The DNS resolver interface used by outbound delivery, with the answer
// types it returns. Implementations: libunbound (unbound_resolver.h), a TTL
// cache in front of any resolver (cache.h), and a fake for tests.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>

namespace tern::dns {

enum class RrType : uint16_t {
  kA = 1,
  kCname = 5,
  kPtr = 12,
  kMx = 15,
  kTxt = 16,
  kAaaa = 28,
  kSrv = 33,  // RFC 2782 (RFC 6186 mail client service records)
  kTlsa = 52,  // RFC 6698 (DANE; RFC 7672 for SMTP)
};

// RFC 4035 4.3: kept with every answer so that DANE (RFC 7672) can later
// insist on "secure" before trusting TLSA records.
enum class Security { kInsecure, kSecure, kBogus };

enum class Status {
  kOk,        // NOERROR; no records of the type is NODATA (empty lists)
  kNxDomain,  // the name does not exist: a permanent condition
  kTempFail,  // SERVFAIL, timeout, no upstream: try again later
};

struct MxRecord {
  uint16_t preference = 0;
  // Lower case, without the trailing dot; empty for the root "." (a null
  // MX, RFC 7505).
  std::string exchange;
};

struct SrvRecord {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // lower case, no trailing dot; empty for "."
};

// RFC 6698 2.1: one TLSA record. Which combinations are usable is the
// DANE layer's business (delivery/dane.h); this is only the wire content.
struct TlsaRecord {
  uint8_t usage = 0;     // 2.1.1 certificate usage
  uint8_t selector = 0;  // 2.1.2
  uint8_t mtype = 0;     // 2.1.3 matching type
  std::string data;      // 2.1.4 certificate association data, raw bytes
  bool operator==(const TlsaRecord&) const = default;
};

struct Answer {
  Status status = Status::kTempFail;
  Security security = Security::kInsecure;
  uint32_t ttl = 0;                    // seconds, for the cache
  std::string canonical_name;          // after CNAMEs; empty when none
  std::vector<MxRecord> mx;            // for kMx
  std::vector<std::string> addresses;  // for kA / kAaaa, textual
  // For kTxt: one entry per record, its character-strings joined (RFC
  // 7208 3.3, RFC 6376 3.6.2.2 read a record that way).
  std::vector<std::string> txt;
  std::vector<std::string> names;      // for kPtr: lower case, no dot
  std::vector<SrvRecord> srv;          // for kSrv
  std::vector<TlsaRecord> tlsa;        // for kTlsa
  std::string error;                   // for kTempFail, human readable
};

class Resolver {
 public:
  using Callback = std::function<void(Answer)>;
  virtual ~Resolver() = default;
  // `name` without trailing dot. `done` runs later on the resolver's
  // executor, never inside Query itself.
  virtual void Query(const std::string& name, RrType type, Callback done) = 0;
};

// Awaitable form of Resolver::Query for the delivery coroutines.
template <class CompletionToken>
auto AsyncQuery(Resolver& resolver, const std::string& name, RrType type,
                CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(Answer)>(
      [&resolver, name, type](auto handler) {
        // The handler is move-only; std::function needs a copyable callable.
        auto shared =
            std::make_shared<decltype(handler)>(std::move(handler));
        resolver.Query(name, type, [shared](Answer answer) {
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex, [shared, answer = std::move(answer)]() mutable {
            (*shared)(std::move(answer));
          });
        });
      },
      token);
}

const char* SecurityName(Security s);

}  // namespace tern::dns
