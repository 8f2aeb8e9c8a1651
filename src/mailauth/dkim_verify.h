// DKIM verification (RFC 6376 6, RFC 8463, RFC 8301), the part without I/O.
// The message streams through DkimVerifier::Feed as it arrives (during SMTP
// DATA, header section included); Finish() settles what it can without DNS
// (syntax, policy, body hashes) and hands back the rest, which
// CheckDkimWithKey completes given a key query's answer (dkim_lookup.h
// does the queries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dns/resolver.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_record.h"

namespace tern::mailauth {

// The result words of RFC 8601 2.7.1. Malformed signatures and unusable key
// records are permerror (as OpenDKIM reports them); refused crypto (rsa-sha1,
// short RSA keys) and timestamps in the future are policy; kNeutral is not
// produced by this verifier.
enum class DkimStatus {
  kPass,
  kFail,
  kNeutral,
  kPolicy,
  kPermError,
  kTempError
};

const char* DkimStatusName(DkimStatus status);

struct DkimResult {
  DkimStatus status = DkimStatus::kPermError;
  std::string domain;     // d= (lower case), as far as it could be read
  std::string selector;   // s=
  std::string identity;   // i=, or "@" + d= (header.i)
  std::string header_b;   // header.b: the first 12 characters of b= (RFC 6008)
  std::string algorithm;  // a= as written
  int key_bits = 0;       // size of the key that was used
  bool testing = false;   // the key record says t=y: the domain is testing
  std::string reason;     // why not pass; for logs and A-R comments
};

struct DkimVerifyOptions {
  // RFC 6376 6.1 lets a verifier limit its work: signatures past this many
  // get "policy" without a DNS query or a hash of their own.
  size_t max_signatures = 8;
  // A header section longer than this is not examined (its signatures are
  // permerror); the SMTP size limit bounds the body.
  size_t max_header = 1 << 20;
  // RFC 6376 3.5 t=: "Verifiers MAY ignore signatures with a timestamp in
  // the future"; this much clock difference is tolerated first.
  int64_t future_tolerance = 3600;
  // RFC 8301 3.2 sets no upper bound; a huge RSA modulus makes every
  // verification slow, so keys above this are refused (policy).
  int max_rsa_bits = 8192;
};

// One DKIM-Signature once the message has been read.
struct DkimPending {
  DkimResult result;        // final when !needs_key
  bool needs_key = false;   // the rest depends on the key record
  DkimSignature signature;  // valid when needs_key
  std::string signed_data;  // what b= signs (RFC 6376 3.7)
  std::string key_name;     // SELECTOR._domainkey.DOMAIN (3.6.2.1)
};

class DkimVerifier {
 public:
  // `now` (Unix seconds) judges t= and x=.
  explicit DkimVerifier(int64_t now, DkimVerifyOptions options = {});
  ~DkimVerifier();
  DkimVerifier(const DkimVerifier&) = delete;
  DkimVerifier& operator=(const DkimVerifier&) = delete;

  // Any part of the message: CRLF lines, SMTP dot-stuffing removed.
  void Feed(std::string_view chunk);
  // Ends the message: one entry per DKIM-Signature, in header order
  // (empty when the message has none). Call once.
  std::vector<DkimPending> Finish();

  // Known once the header section is complete.
  size_t signature_count() const { return pending_.size(); }

 private:
  void StartBody();

  int64_t now_;
  DkimVerifyOptions options_;
  DkimMessageSplitter splitter_;
  bool body_started_ = false;
  std::vector<DkimPending> pending_;
  std::vector<int> hasher_of_;  // per pending: index into hashers_, or -1
  std::vector<std::unique_ptr<DkimBodyHasher>> hashers_;
};

// Completes one signature with the answer to its key query (RFC 6376
// 6.1.2, 6.1.3): key record rules, RFC 8301 key sizes, the signature check.
DkimResult CheckDkimWithKey(const DkimPending& pending,
                            const dns::Answer& answer,
                            const DkimVerifyOptions& options = {});

}  // namespace tern::mailauth
