// DKIM verification: header parsing and body hashing while the message
// streams in, then the key record rules and the signature check. Signatures
// that share body canonicalization and l= share one body hash.
#include "mailauth/dkim_verify.h"

#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/mutex.h"
#include "common/strings.h"

namespace tern::mailauth {
namespace {

// Decoded public keys by record (type and p= octets). d2i_PUBKEY of an
// RSA-2048 key costs about five RSA verifications (profiled in the mail
// authentication bench), and the same few keys sign most arriving mail;
// the DNS answer is cached already, now its decoding is too. Only keys
// that decode are kept; the map is emptied when it grows past its bound,
// so a stream of one-off keys costs a decode each, as before. OpenSSL keys
// are safe to share between threads for verifying.
struct KeyCache {
  Mutex mu;
  std::unordered_map<std::string, DkimKey> keys GUARDED_BY(mu);
};

Result<DkimKey> CachedPublicKey(DkimKeyType type, const std::string& data) {
  constexpr size_t kMaxKeys = 1024;
  static KeyCache* cache = new KeyCache();  // never destroyed: no exit race
  std::string id = std::string(1, type == DkimKeyType::kRsa ? 'r' : 'e') + data;
  {
    MutexLock lock(cache->mu);
    auto it = cache->keys.find(id);
    if (it != cache->keys.end()) return it->second;
  }
  auto key = ParseDkimPublicKey(type, data);
  if (key) {
    MutexLock lock(cache->mu);
    if (cache->keys.size() >= kMaxKeys) cache->keys.clear();
    cache->keys.emplace(std::move(id), *key);
  }
  return key;
}

constexpr size_t kHeaderBLength = 12;

DkimResult Decided(DkimResult base, DkimStatus status, std::string reason) {
  base.status = status;
  base.reason = std::move(reason);
  return base;
}

}  // namespace

const char* DkimStatusName(DkimStatus status) {
  switch (status) {
    case DkimStatus::kPass:
      return "pass";
    case DkimStatus::kFail:
      return "fail";
    case DkimStatus::kNeutral:
      return "neutral";
    case DkimStatus::kPolicy:
      return "policy";
    case DkimStatus::kPermError:
      return "permerror";
    case DkimStatus::kTempError:
      return "temperror";
  }
  return "permerror";
}

DkimVerifier::DkimVerifier(int64_t now, DkimVerifyOptions options)
    : now_(now), options_(options), splitter_(options.max_header) {}

DkimVerifier::~DkimVerifier() = default;

void DkimVerifier::Feed(std::string_view chunk) {
  std::string_view body = splitter_.Feed(chunk);
  if (!splitter_.header_complete()) return;
  if (!body_started_) StartBody();
  if (body.empty()) return;
  for (auto& hasher : hashers_) hasher->Update(body);
}

// The header section is complete: read every DKIM-Signature, settle what
// needs no body and no key, and set up the body hashes.
void DkimVerifier::StartBody() {
  body_started_ = true;
  std::vector<DkimHeaderField> fields = SplitDkimHeader(splitter_.header());
  std::map<std::pair<DkimCanon, std::optional<uint64_t>>, int> shared;
  for (const DkimHeaderField& field : fields) {
    if (!IEquals(field.name, "DKIM-Signature")) continue;
    DkimPending p;
    int hasher = -1;
    size_t colon = field.text.find(':');
    std::string_view value = field.text.substr(colon + 1);
    auto tags = ParseDkimTagList(value);
    if (tags) {
      // Shown even when the signature is unusable, so that the report
      // names the domain that (apparently) signed; without whitespace, so
      // that a folded value cannot break a one-line report.
      if (const DkimTag* d = tags->Find("d")) {
        p.result.domain = ToLower(StripDkimWhitespace(d->value));
      }
      if (const DkimTag* s = tags->Find("s")) {
        p.result.selector = ToLower(StripDkimWhitespace(s->value));
      }
      if (const DkimTag* a = tags->Find("a")) {
        p.result.algorithm = StripDkimWhitespace(a->value);
      }
      if (const DkimTag* b = tags->Find("b")) {
        p.result.header_b =
            StripDkimWhitespace(b->value).substr(0, kHeaderBLength);
      }
    }
    if (pending_.size() >= options_.max_signatures) {
      p.result =
          Decided(p.result, DkimStatus::kPolicy,
                  "more than " + std::to_string(options_.max_signatures) +
                      " signatures; not checked");
    } else if (splitter_.overflow()) {
      p.result = Decided(p.result, DkimStatus::kPermError,
                         "header section longer than " +
                             std::to_string(options_.max_header) + " octets");
    } else if (!tags) {
      p.result = Decided(p.result, DkimStatus::kPermError,
                         "syntax: " + tags.error().message);
    } else if (auto sig = ParseDkimSignature(*tags); !sig) {
      p.result = Decided(p.result, DkimStatus::kPermError, sig.error().message);
    } else {
      p.signature = std::move(*sig);
      p.result.identity = p.signature.identity;
      const DkimSignature& s = p.signature;
      if (s.algorithm == DkimAlgorithm::kRsaSha1) {
        // RFC 8301 3.1: "Verifiers MUST NOT consider signatures using the
        // rsa-sha1 algorithm valid"; refused by policy, not misformed.
        p.result = Decided(p.result, DkimStatus::kPolicy,
                           "rsa-sha1 is not accepted (RFC 8301)");
      } else if (s.expiration && *s.expiration < now_) {
        // RFC 6376 6.1.1: PERMFAIL (signature expired).
        p.result =
            Decided(p.result, DkimStatus::kPermError, "signature expired (x=)");
      } else if (s.timestamp &&
                 *s.timestamp > now_ + options_.future_tolerance) {
        p.result = Decided(p.result, DkimStatus::kPolicy,
                           "signature timestamp t= is in the future");
      } else {
        // RFC 6376 3.7: the signature field is hashed with the b= value
        // (and the whitespace around it) taken out.
        const DkimTag* b = tags->Find("b");
        std::string own(field.text);
        own.erase(colon + 1 + b->value_begin, b->value_end - b->value_begin);
        p.signed_data =
            DkimHeaderHashInput(fields, s.signed_headers, own, s.header_canon);
        p.key_name = s.selector + "._domainkey." + s.domain;
        p.needs_key = true;
        auto key = std::make_pair(s.body_canon, s.body_length);
        auto it = shared.find(key);
        if (it == shared.end()) {
          hashers_.push_back(
              std::make_unique<DkimBodyHasher>(s.body_canon, s.body_length));
          it = shared.emplace(key, static_cast<int>(hashers_.size() - 1)).first;
        }
        hasher = it->second;
      }
    }
    pending_.push_back(std::move(p));
    hasher_of_.push_back(hasher);
  }
}

std::vector<DkimPending> DkimVerifier::Finish() {
  splitter_.Finish();
  if (!body_started_) StartBody();
  for (auto& hasher : hashers_) hasher->Finish();
  for (size_t i = 0; i < pending_.size(); ++i) {
    DkimPending& p = pending_[i];
    if (!p.needs_key) continue;
    const DkimBodyHasher& h = *hashers_[static_cast<size_t>(hasher_of_[i])];
    // RFC 6376 6.1.3: a body hash that differs fails the signature; no key
    // is needed to know that.
    if (p.signature.body_length &&
        *p.signature.body_length > h.canonical_length()) {
      p.needs_key = false;
      p.result =
          Decided(p.result, DkimStatus::kFail, "l= is longer than the body");
    } else if (h.digest() != p.signature.body_hash) {
      p.needs_key = false;
      p.result = Decided(p.result, DkimStatus::kFail, "body hash mismatch");
    }
  }
  return std::move(pending_);
}

namespace {

DkimResult CheckWithRecord(const DkimPending& pending,
                           const DkimKeyRecord& record,
                           const DkimVerifyOptions& options) {
  const DkimSignature& sig = pending.signature;
  DkimResult result = pending.result;
  result.testing = record.testing;
  // RFC 6376 3.6.1 p=: "An empty value means that this public key has
  // been revoked" (6.1.2: PERMFAIL key revoked).
  if (record.public_key.empty()) {
    return Decided(result, DkimStatus::kPermError, "key revoked");
  }
  if (record.type != DkimAlgorithmKeyType(sig.algorithm)) {
    return Decided(result, DkimStatus::kPermError,
                   std::string("key record k=") + DkimKeyTypeName(record.type) +
                       " does not fit a=" + DkimAlgorithmName(sig.algorithm));
  }
  // 3.6.1 h=: the hash algorithms the key may be used with.
  if (!record.hash_algorithms.empty()) {
    bool sha256 = false;
    for (const std::string& h : record.hash_algorithms) {
      sha256 = sha256 || h == "sha256";
    }
    if (!sha256) {
      return Decided(result, DkimStatus::kPermError,
                     "key record h= does not allow sha256");
    }
  }
  // 3.6.1 s=: service types; "*" or "email" for mail.
  if (!record.email) {
    return Decided(result, DkimStatus::kPermError,
                   "key record s= does not allow email");
  }
  // 3.6.1 t=s: the i= domain must be d= itself, not a subdomain.
  if (record.strict) {
    std::string_view id = sig.identity;
    std::string domain = ToLower(id.substr(id.rfind('@') + 1));
    if (domain != sig.domain) {
      return Decided(result, DkimStatus::kPermError,
                     "key record t=s requires the i= domain to be d=");
    }
  }
  auto key = CachedPublicKey(record.type, record.public_key);
  if (!key) {
    return Decided(result, DkimStatus::kPermError,
                   "key record p=: " + key.error().message);
  }
  result.key_bits = key->bits();
  if (key->type() == DkimKeyType::kRsa) {
    // RFC 8301 3.2: keys shorter than 1024 bits are not to be trusted.
    if (key->bits() < 1024) {
      return Decided(result, DkimStatus::kPolicy,
                     "RSA key of " + std::to_string(key->bits()) +
                         " bits; at least 1024 required (RFC 8301)");
    }
    if (key->bits() > options.max_rsa_bits) {
      return Decided(result, DkimStatus::kPolicy,
                     "RSA key of " + std::to_string(key->bits()) +
                         " bits is larger than accepted");
    }
  }
  if (!DkimVerify(*key, pending.signed_data, sig.signature)) {
    return Decided(result, DkimStatus::kFail, "signature did not verify");
  }
  return Decided(result, DkimStatus::kPass, "");
}

}  // namespace

DkimResult CheckDkimWithKey(const DkimPending& pending,
                            const dns::Answer& answer,
                            const DkimVerifyOptions& options) {
  if (!pending.needs_key) return pending.result;
  // RFC 6376 6.1.2: a failed query is TEMPFAIL, no record is PERMFAIL.
  if (answer.status == dns::Status::kTempFail) {
    return Decided(
        pending.result, DkimStatus::kTempError,
        "key lookup failed: " +
            (answer.error.empty() ? std::string("no answer") : answer.error));
  }
  if (answer.status == dns::Status::kNxDomain || answer.txt.empty()) {
    return Decided(pending.result, DkimStatus::kPermError,
                   "no key record at " + pending.key_name);
  }
  // 6.1.2 step 3: with several records a verifier may use any; try each
  // record that parses, keep the best outcome.
  std::optional<DkimResult> best;
  std::string first_error;
  for (const std::string& text : answer.txt) {
    auto record = ParseDkimKeyRecord(text);
    if (!record) {
      if (first_error.empty()) first_error = record.error().message;
      continue;
    }
    DkimResult r = CheckWithRecord(pending, *record, options);
    if (r.status == DkimStatus::kPass) return r;
    if (!best) best = std::move(r);
  }
  if (best) return *best;
  return Decided(pending.result, DkimStatus::kPermError, first_error);
}

}  // namespace tern::mailauth
