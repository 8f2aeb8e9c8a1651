// Greylisting (issue 15): the first time a client network offers mail from a
// sender to a recipient, answer 4xx and remember the triplet; a retry after
// a few minutes passes. RFC 5321 4.2.5 and 4.5.4.1 require a client that
// gets a 4xx to keep the message and try again later, which every real MTA
// does; much spamware fires once and moves on. Greylisting has no RFC of
// its own: the rules below are the usual ones (postgrey's).
//
// The state is a small SQLite database so that a restart does not greylist
// every correspondent again. This file only keeps the state and decides;
// which clients are exempt (authenticated, relay networks, ...) and the
// reply text are the SMTP server's business.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace tern::antispam {

// The network greylisting counts a client in: an IPv4 address as its /24
// ("192.0.2.0/24"), an IPv6 address as its /64 ("2001:db8:1:2::/64", the
// canonical textual form of the masked address), an IPv4-mapped IPv6
// address as IPv4. Empty when `ip` does not parse.
//
// Whole networks rather than addresses because large senders retry from
// another host of the same pool. An IPv6 /64 is one subnet (RFC 4291
// 2.5.1: 64-bit interface identifiers) in which a host may use any address
// and change it at will (temporary addresses, RFC 8981), so a smaller unit
// would greylist such a host again at every retry.
std::string GreylistNetwork(std::string_view ip);

// The sender as the triplet keeps it: lower case, with the parts that
// change at every attempt taken out, or a retry would never match its
// first attempt. A BATV tag ("prvs=1234abcdef=user@", "btv1==...==user@",
// each attempt signed anew) is removed, and in the local part every run of
// digits becomes "#" (VERP and bounce addresses such as
// "bounce-4711-user=example.org@" number each message or attempt).
// "" (the null sender) stays "".
std::string GreylistSender(std::string_view sender);

struct GreylistOptions {
  std::chrono::seconds delay{300};  // a retry before this is deferred again
  // A first attempt not retried within this is forgotten.
  std::chrono::seconds retry_window{4 * 3600};
  // A passed triplet is remembered this long after its last use.
  std::chrono::seconds pass_lifetime{35 * 86400};
  // A network with this many different passed triplets skips greylisting;
  // 0: never.
  uint32_t auto_whitelist_after = 3;
};

struct GreylistVerdict {
  enum class Why {
    kNew,                  // first attempt (or first after being forgotten)
    kTooEarly,             // retried before the delay ended
    kPassed,               // retried within the window: passes from now on
    kKnown,                // passed before
    kWhitelistedNetwork,   // the network has passed enough triplets
    kError,                // the database failed: let the mail through
  };
  bool pass = true;
  Why why = Why::kNew;
  int64_t retry_in = 0;  // seconds until the delay ends, when deferred
  std::string error;     // kError: what failed (the caller logs it)
};

// "new", "too-early", "passed", "known", "whitelisted", "error": for logs.
std::string_view GreylistWhyName(GreylistVerdict::Why why);

class Greylist {
 public:
  // Opens or creates the SQLite database at `path` (WAL journal,
  // synchronous=NORMAL: losing the last seconds of greylist state in a
  // crash only greylists again). Fails on options that make no sense
  // (negative times, a retry window shorter than the delay).
  static Result<std::unique_ptr<Greylist>> Open(const std::string& path,
                                                GreylistOptions options);
  ~Greylist();
  Greylist(const Greylist&) = delete;
  Greylist& operator=(const Greylist&) = delete;

  // One RCPT of a client that is not exempt. `network` from
  // GreylistNetwork, `sender` the MAIL FROM address ("" for <>) and `rcpt`
  // the recipient address; both compared ignoring ASCII case. `now` in
  // seconds since the epoch (injected so tests control time).
  // Thread-safe (called from several io threads): one mutex around the
  // database. Never fails: a database error gives pass with kError.
  GreylistVerdict Check(std::string_view network, std::string_view sender,
                        std::string_view rcpt, int64_t now);

 private:
  struct Impl;
  explicit Greylist(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::antispam
