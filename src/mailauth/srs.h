// The Sender Rewriting Scheme: forwarded mail leaves with a reverse-path in
// our own domain (so SPF checks us, not the original sender), and bounces
// to that address are turned back into the original sender's address.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace tern::mailauth {

// The address forms are those of libsrs2 and postsrsd:
//
//   SRS0=HHHHHH=TT=orig.example=user@forwarder.example
//   SRS1=HHHHHH=first.example==HHHHHH=TT=orig.example=user@second.example
//
// HHHHHH is the start of base64(HMAC-SHA256(key, lower-cased fields joined
// with '=')), compared without regard to case because MTAs may change the
// case of local parts; TT is the day number modulo 1024 in two base32
// characters. The fields are joined with '=' before hashing, unlike
// libsrs2's plain concatenation, so that the boundary between domain and
// local part cannot be moved without breaking the hash; for that reason
// addresses made by postsrsd do not verify here even with its key.
//
// Why this is no open relay: the server accepts RCPT TO an SRS address
// in its domain only when Reverse() succeeds, and Reverse() succeeds only
// for a hash made with one of our keys over exactly that timestamp,
// domain and local part, within max_age_days. A stranger cannot make a
// hash without the key, so the only addresses we relay to this way are
// senders of mail we forwarded recently, and only their bounces.
struct SrsOptions {
  std::string key;                    // the current secret; Forward uses it
  std::vector<std::string> old_keys;  // still accepted by Reverse (rotation)
  int max_age_days = 21;              // 1..1000
  // Hash characters written. Compared without case, a base64 character
  // is guessed with odds of 1 in ~35: 4 characters (libsrs2's default)
  // give one chance in ~1.5 million per guessed address, 6 one in ~2e9.
  int hash_length = 6;                // 4..43
  // Unix time in seconds; empty: the system clock.
  std::function<int64_t()> now;
};

class Srs {
 public:
  // Fails on an empty key or an out-of-range option.
  static Result<Srs> Create(SrsOptions options);

  // The reverse-path to use when forwarding mail from `sender` through
  // `our_domain`. The null reverse-path ("") and senders already in
  // `our_domain` come back unchanged; an SRS0 or SRS1 sender gives SRS1
  // (pointing at the first forwarder, whose hash we do not check). Fails
  // on senders that cannot be rewritten (no '@', a quoted local part, a
  // domain that is not a DNS name).
  Result<std::string> Forward(std::string_view sender,
                              std::string_view our_domain) const;

  // The address a bounce to `address` goes to: the original sender for
  // SRS0, the first forwarder's SRS0 address for SRS1. Fails when the
  // address is not SRS, is malformed, carries a hash none of our keys
  // made, or (SRS0) is older than max_age_days. The domain of `address`
  // is not looked at: the caller has routed it to us.
  Result<std::string> Reverse(std::string_view address) const;

  // Whether the local part of `address` has the SRS0/SRS1 form, without
  // checking it.
  static bool IsSrsAddress(std::string_view address);

 private:
  explicit Srs(SrsOptions options) : options_(std::move(options)) {}
  int64_t Now() const;
  std::string Hash(const std::string& key, std::string_view data) const;
  bool HashMatches(std::string_view hash, std::string_view data) const;

  SrsOptions options_;
};

}  // namespace tern::mailauth
