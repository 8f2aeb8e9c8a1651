// How much mail an account keeps, for quotas (RFC 9208 STORAGE; SMTP's
// 552 5.2.2): the octets of every message in every folder of its Maildir,
// from the ",S=" size in the file names (Tern, Dovecot and most delivery
// agents write it; other files are stat()ed). A scan reads each folder's
// cur/ and new/; results are cached for a few seconds and adjusted by the
// writers that know what they added, so a busy mailbox is not rescanned
// for every recipient.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/mutex.h"
#include "common/result.h"

namespace tern::store {

// Octets of the messages under one Maildir (INBOX and its Maildir++
// folders), scanned now.
Result<uint64_t> ScanMaildirUsage(const std::string& maildir);

class QuotaUsage {
 public:
  explicit QuotaUsage(std::chrono::seconds max_age = std::chrono::seconds(10))
      : max_age_(max_age) {}
  // The usage of `maildir`, scanned again when the cached figure is older
  // than max_age. A missing Maildir uses nothing.
  Result<uint64_t> Usage(const std::string& maildir);
  // A writer added (or removed, negative) this many octets.
  void Adjust(const std::string& maildir, int64_t delta);
  // Something changed by an unknown amount (a delivery): scan next time.
  void Invalidate(const std::string& maildir);

 private:
  struct Entry {
    uint64_t octets = 0;
    std::chrono::steady_clock::time_point scanned;
  };
  const std::chrono::seconds max_age_;
  Mutex mu_;
  std::unordered_map<std::string, Entry> cache_ GUARDED_BY(mu_);
};

}  // namespace tern::store
