// The two DKIM records: the DKIM-Signature header field (RFC 6376 3.5) and
// the key record published at SELECTOR._domainkey.DOMAIN (3.6.1), parsed
// from their tag lists into checked values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_tags.h"

namespace tern::mailauth {

enum class DkimAlgorithm { kRsaSha256, kEd25519Sha256, kRsaSha1 };

const char* DkimAlgorithmName(DkimAlgorithm algorithm);
DkimKeyType DkimAlgorithmKeyType(DkimAlgorithm algorithm);

struct DkimSignature {
  DkimAlgorithm algorithm = DkimAlgorithm::kRsaSha256;
  DkimCanon header_canon = DkimCanon::kSimple;  // c= defaults (3.5)
  DkimCanon body_canon = DkimCanon::kSimple;
  std::string domain;                       // d=, lower case
  std::string selector;                     // s=, lower case
  std::string identity;                     // i=; "@" + d= when absent (3.5)
  std::vector<std::string> signed_headers;  // h=, as written
  std::string body_hash;                    // bh=, decoded
  std::string signature;                    // b=, decoded
  std::string signature_base64;             // b= without whitespace
  std::optional<uint64_t> body_length;      // l=
  std::optional<int64_t> timestamp;         // t=
  std::optional<int64_t> expiration;        // x=
};

// Checks a parsed DKIM-Signature tag list as RFC 6376 6.1.1 asks: required
// tags present (v, a, b, bh, d, h, s), v=1, a known algorithm (rsa-sha1
// parses: the verifier refuses it by policy, RFC 8301 3.1), known c=,
// q= offering dns/txt, From among the h= names, i= in d= or below it,
// x= not before t=, numbers that are numbers. Any error makes the
// signature a permerror.
Result<DkimSignature> ParseDkimSignature(const DkimTagList& tags);

// A domain name or selector as DKIM uses them in a DNS query: dot-separated
// labels of letters, digits, '-' and '_' (RFC 6376 3.1 and 3.5), each 1..63
// octets, 253 in all.
bool IsDkimDomainName(std::string_view name);

struct DkimKeyRecord {
  DkimKeyType type = DkimKeyType::kRsa;      // k=, rsa by default
  std::string public_key;                    // p=, decoded; empty: revoked
  std::vector<std::string> hash_algorithms;  // h=; empty: any
  bool testing = false;                      // t=y
  bool strict = false;                       // t=s: i= domain must be d=
  bool email = true;                         // s= is "*" or has "email"
};

// Parses one TXT record as a key record (RFC 6376 3.6.1). A v= tag must
// come first and be DKIM1; p= is required; an unknown k= is an error (the
// key could not be used). Unknown tags and flags are ignored.
Result<DkimKeyRecord> ParseDkimKeyRecord(std::string_view text);

}  // namespace tern::mailauth
