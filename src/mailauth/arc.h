// ARC, the Authenticated Received Chain (RFC 8617), the part without I/O:
// reading a message's ARC sets and checking their structure, verifying the
// chain while the message streams in (arc_lookup.h does the key queries),
// and sealing a message with the next set. Canonicalization, tag lists,
// key records, keys and signatures are DKIM's (dkim_*.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "dns/resolver.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_record.h"
#include "mailauth/dkim_sign.h"
#include "mailauth/dkim_verify.h"

namespace tern::mailauth {

// RFC 8617 4.2.1.1: instance values run from 1 to 50.
constexpr int kArcMaxInstance = 50;

// The chain validation status (RFC 8617 4.4): the result of verifying a
// chain, and what an ARC-Seal's cv= says about the chain it sealed.
enum class ArcStatus { kNone, kPass, kFail };

const char* ArcStatusName(ArcStatus status);
// "none", "pass" or "fail", in any case.
std::optional<ArcStatus> ParseArcStatus(std::string_view text);

// ---------------------------------------------------------------- fields
// Each parser takes the field body, what follows the colon.

// The instance of an ARC-Authentication-Results field, "i=N; authserv-id;
// results" (RFC 8617 4.1.1, 4.2.1): whitespace may surround i, '=' and the
// number, which must be followed by ';'. Numbers above 50 are returned
// (the chain check refuses them with a clearer reason).
Result<int> ParseArcAarInstance(std::string_view value);

// An ARC-Message-Signature (RFC 8617 4.1.2): a DKIM-Signature whose i= is
// the instance instead of an identity, with no v= (ignored if present).
// The tags DKIM requires (a, b, bh, d, h, s) are required; From need not be
// in h=.
struct ArcMessageSignature {
  int instance = 0;
  DkimSignature signature;  // identity "@" + d=
};
Result<ArcMessageSignature> ParseArcMessageSignature(std::string_view value);

// An ARC-Seal (RFC 8617 4.1.3): i, a, b, cv, d and s required, t optional;
// no h= (the seal covers the ARC sets, not chosen fields). Header
// canonicalization is always relaxed.
struct ArcSeal {
  int instance = 0;
  ArcStatus cv = ArcStatus::kNone;
  DkimSignature signature;  // algorithm, domain, selector, b=, t=
};
Result<ArcSeal> ParseArcSeal(std::string_view value);

// ---------------------------------------------------------------- chain

// One instance's fields as found in the header section: whole fields as in
// DkimHeaderField::text (views into the header), empty when missing.
struct ArcSet {
  int instance = 0;
  std::string_view aar;
  std::string_view ams;
  std::string_view seal;
  std::optional<ArcSeal> parsed_seal;
  // An AMS that does not parse only matters for the newest set (and for
  // oldest-pass); the structure check leaves it to the verifier.
  std::optional<ArcMessageSignature> parsed_ams;
  std::string ams_error;
};

// The ARC sets of a header section after RFC 8617 5.2 steps 1 to 3.
struct ArcChain {
  // kNone: no ARC header field; kPass: sound so far, the signatures remain
  // to be checked; kFail: `reason` says why.
  ArcStatus status = ArcStatus::kNone;
  std::string reason;
  // Every instance that some field named, by instance (for a sound chain
  // exactly 1..N, complete).
  std::vector<ArcSet> sets;
  // For a sealer (RFC 8617 5.1): the greatest instance any ARC field
  // named (0 when none), and whether the ARC-Seal of that instance says
  // cv=fail, which ends the chain: nobody seals after that.
  int highest_instance = 0;
  bool ended = false;
};

// Collects the ARC-Authentication-Results, ARC-Message-Signature and
// ARC-Seal fields of `fields` by instance and checks the structure: at
// most 50 sets, the newest seal not cv=fail, every instance 1..N present
// exactly once with all three fields, seals that parse, cv=none at i=1
// and cv=pass above.
ArcChain CollectArcChain(const std::vector<DkimHeaderField>& fields);

// What an ARC-Seal with instance `seal.instance` signs (RFC 8617 5.1.1):
// the sets 1..i in increasing order, each as AAR, AMS, AS with relaxed
// header canonicalization, the last AS with its b= value emptied and no
// final CRLF. `sets` holds instances 1..i in order.
std::string ArcSealHashInput(const std::vector<ArcSet>& sets);

// ---------------------------------------------------------------- verify

struct ArcVerifyOptions {
  // A header section longer than this is not examined (a chain in it
  // fails); the SMTP size limit bounds the body.
  size_t max_header = 1 << 20;
  // As DKIM's: RSA keys above this many bits are refused (RFC 8301 3.2
  // sets the floor, 1024, which is always enforced).
  int max_rsa_bits = 8192;
  // RFC 8617 5.2 steps 5 to 7 (oldest-pass) are optional: they check the
  // older AMSs too, a key query each when their keys differ.
  bool oldest_pass = true;
};

struct ArcInstanceResult {
  int instance = 0;
  std::string domain;    // the ARC-Seal's d=, lower case
  std::string selector;  // its s=
  ArcStatus cv = ArcStatus::kNone;
};

struct ArcResult {
  ArcStatus status = ArcStatus::kNone;
  std::string reason;  // why not pass; for logs and A-R comments
  // A key query failed for the moment (SERVFAIL, timeout). RFC 8617 5.2.1
  // makes every failure permanent, DNS included, so the status is kFail
  // all the same; a server may prefer a 4xx (the sender retries) to
  // sealing cv=fail, which ends the chain for good.
  bool temporary = false;
  // RFC 8617 5.2 step 5: 0 when every AMS validates, else one more than
  // the newest instance whose AMS does not (only computed for a passing
  // chain with ArcVerifyOptions::oldest_pass).
  int oldest_pass = 0;
  // The sets whose seal could be read, by instance.
  std::vector<ArcInstanceResult> instances;

  // The d= of the newest seal (the last sealer), empty when none.
  std::string LastSealer() const;
};

// True when the chain passed and its last sealer is one of `trusted`
// (domain names, compared without regard to case or a trailing dot).
bool ArcSealedByTrusted(const ArcResult& result,
                        const std::vector<std::string>& trusted);

// The checks that need keys, in the order that settles the chain soonest:
// the newest AMS (RFC 8617 5.2 step 4), every AS from N down to 1 (step
// 6), then, for oldest-pass, the older AMSs from N-1 down (step 5), each
// stopping at the first that decides. One key query per step. What each
// signature signs is built at its step, not before: 50 sets in a 1 MiB
// header would otherwise hold 50 hash inputs of up to 1 MiB each.
class ArcValidation {
 public:
  // A settled result (no chain, or one that failed without keys).
  explicit ArcValidation(ArcResult settled = {});

  bool done() const { return next_ >= checks_.size(); }
  // The TXT name the next check needs (SELECTOR._domainkey.DOMAIN);
  // only while !done().
  const std::string& key_name() const;
  // Hands over the answer for key_name() (the same answer may be given
  // again for a later check with the same name).
  void Step(const dns::Answer& answer);
  // Final once done().
  const ArcResult& result() const { return result_; }

 private:
  friend class ArcVerifier;
  enum class Kind { kNewestAms, kSeal, kOlderAms };
  struct Check {
    Kind kind;
    int instance;
    // needs_key false: decided without a key. signed_data stays empty.
    DkimPending pending;
    std::string_view ams;    // an AMS field (a view into *header_)
    size_t sets_before = 0;  // a seal: length of sets_ before its own AS
    std::string own_seal;    // a seal: its AS, canonical, b= emptied
  };
  std::string SignedData(const Check& check) const;
  void Apply(const Check& check, const DkimResult& r);
  void SettleKeyless();

  std::vector<Check> checks_;
  size_t next_ = 0;
  ArcResult result_;
  DkimVerifyOptions dkim_options_;
  // The header section, kept for the AMS hash inputs, its fields, and the
  // sets 1..N in canonical form, which every seal's input starts with.
  std::shared_ptr<const std::string> header_;
  std::vector<DkimHeaderField> fields_;
  std::string sets_;
};

// Reads a message as it arrives (header section included, CRLF lines,
// dot-stuffing removed), hashing the body once per distinct AMS body
// canonicalization, and hands back the signature checks.
class ArcVerifier {
 public:
  explicit ArcVerifier(ArcVerifyOptions options = {});
  ~ArcVerifier();
  ArcVerifier(const ArcVerifier&) = delete;
  ArcVerifier& operator=(const ArcVerifier&) = delete;

  void Feed(std::string_view chunk);
  // Ends the message. Call once.
  ArcValidation Finish();

 private:
  void StartBody();

  ArcVerifyOptions options_;
  DkimMessageSplitter splitter_;
  bool body_started_ = false;
  bool settled_ = false;  // no signature needs checking
  // Filled at the end of the header; its result is the settled one.
  ArcValidation validation_;
  // Per instance 1..N (index i-1), ordered by Finish().
  std::vector<ArcValidation::Check> ams_;
  std::vector<ArcValidation::Check> seals_;
  std::vector<int> hasher_of_;  // index into hashers_, or -1
  std::vector<std::unique_ptr<DkimBodyHasher>> hashers_;
};

// ---------------------------------------------------------------- seal

// The fields an AMS signs when present: DKIM's list and DKIM-Signature,
// so that the signatures this hop saw are part of what it vouches for.
// Authentication-Results and the ARC fields are never signed, whatever
// the list says: Authentication-Results may be removed downstream (RFC
// 8601 5), and the ARC fields are the seal's to cover.
const std::vector<std::string>& DefaultArcSignedHeaders();

struct ArcSealOptions {
  std::vector<std::string> headers = DefaultArcSignedHeaders();
  // One key seals. With both kinds, RSA by default: receivers that know
  // ARC mostly know only rsa-sha256.
  bool prefer_rsa = true;
};

// What this hop found, for its ARC-Authentication-Results.
struct ArcSealRequest {
  std::string authserv_id;
  // The results as in this hop's Authentication-Results after
  // "authserv-id;" ("spf=pass smtp.mailfrom=...; dkim=..."), folded or
  // not; empty or "none" for none. "arc=CV" is added when no arc result
  // is among them, so the AAR records what this hop saw of the chain.
  std::string auth_results;
  // The chain validation status of the message as received.
  ArcStatus cv = ArcStatus::kNone;
};

// The key that seals: the first RSA key when `prefer_rsa` and there is
// one, else the first Ed25519 key, else the first key. nullptr if none.
const DkimSigningKey* ChooseArcKey(const std::vector<DkimSigningKey>& keys,
                                   bool prefer_rsa);

// Seals a message that streams in (as it will be sent: header and body,
// CRLF lines) with the set i = N+1 (RFC 8617 5.1).
class ArcSealer {
 public:
  ArcSealer(std::vector<DkimSigningKey> keys, int64_t now,
            ArcSealOptions options = {});
  void Feed(std::string_view chunk);
  // The three fields of the new set, ARC-Seal, ARC-Message-Signature,
  // ARC-Authentication-Results (the order of RFC 8617's examples), each
  // ending in CRLF, to be put on top of the message. Refused when the
  // chain has ended (its newest seal says cv=fail) or has 50 sets
  // (RFC 8617 5.1), when `cv` contradicts the fields (none with sets,
  // pass without a sound chain), or without a usable key. With cv=fail
  // the seal covers only the new set (RFC 8617 5.1.2).
  Result<std::string> Finish(const ArcSealRequest& request);

 private:
  std::vector<DkimSigningKey> keys_;
  int64_t now_;
  ArcSealOptions options_;
  DkimMessageSplitter splitter_;
  DkimBodyHasher body_;
};

Result<std::string> ArcSealMessage(std::string_view message,
                                   const ArcSealRequest& request,
                                   const std::vector<DkimSigningKey>& keys,
                                   int64_t now, ArcSealOptions options = {});

// Seals mail that an alias forwards (RFC 8617 5.1, the forwarder's
// case of 7.2): the new set's ARC-Authentication-Results repeats what this
// host found when the message arrived, read back from its own
// Authentication-Results (authserv-id `authserv_id`), whose arc= result
// becomes cv. Mail that arrived without our Authentication-Results (from
// a trusted or authenticated client, not checked) is sealed cv=none when
// it carries no ARC field, and refused when it does: a chain nobody here
// verified must not be vouched for. The fields to put on top, CRLF lines.
Result<std::string> SealForwarded(std::string_view message,
                                  std::string_view authserv_id,
                                  const std::vector<DkimSigningKey>& keys,
                                  int64_t now);

}  // namespace tern::mailauth
