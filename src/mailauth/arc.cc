// ARC field parsing, the structure check of RFC 8617 5.2 steps 1-3, and the
// verifier: body hashes while the message streams in, then the AMS and AS
// checks one key at a time through DKIM's key record rules.
#include "mailauth/arc.h"

#include <algorithm>
#include <map>
#include <utility>

#include "common/base64.h"
#include "common/strings.h"
#include "mailauth/dkim_tags.h"

namespace tern::mailauth {
namespace {

constexpr std::string_view kAarName = "ARC-Authentication-Results";
constexpr std::string_view kAmsName = "ARC-Message-Signature";
constexpr std::string_view kSealName = "ARC-Seal";
constexpr size_t kHeaderBLength = 12;  // as dkim_verify.cc's header.b

// An instance number as written: decimal digits, at most 9 so it fits.
Result<int> Instance(std::string_view text) {
  if (text.empty() || text.size() > 9) {
    return Err("i= is not an instance number");
  }
  int n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return Err("i= is not an instance number");
    n = n * 10 + (c - '0');
  }
  if (n < 1) return Err("i=0 is not an instance number (they start at 1)");
  return n;
}

Result<std::string> Base64Tag(const DkimTag& tag) {
  std::string text = StripDkimWhitespace(tag.value);
  if (text.empty()) return Err(std::string(tag.name) + "= is empty");
  auto decoded = Base64Decode(text);
  if (!decoded) return Err(std::string(tag.name) + "= is not valid base64");
  return *decoded;
}

Result<uint64_t> Number(const DkimTag& tag) {
  if (tag.value.empty() || tag.value.size() > 18) {
    return Err(std::string(tag.name) + "= is not a number of 1 to 18 digits");
  }
  uint64_t n = 0;
  for (char c : tag.value) {
    if (c < '0' || c > '9') {
      return Err(std::string(tag.name) + "= is not a decimal number");
    }
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

Result<DkimAlgorithm> Algorithm(std::string_view a) {
  if (a == "rsa-sha256") return DkimAlgorithm::kRsaSha256;
  if (a == "ed25519-sha256") return DkimAlgorithm::kEd25519Sha256;  // RFC 8463
  // RFC 8301 3.1: rsa-sha1 signatures are never valid; ARC came later and
  // has no reason to carry them.
  if (a == "rsa-sha1") return Err("rsa-sha1 is not accepted (RFC 8301)");
  return Err("unknown algorithm a=" + std::string(a));
}

// The tags both ARC signatures share with DKIM: a, b, d, s, t.
Result<void> CommonTags(const DkimTagList& tags, DkimSignature* sig) {
  auto algorithm = Algorithm(tags.Find("a")->value);
  if (!algorithm) return tl::unexpected(algorithm.error());
  sig->algorithm = *algorithm;
  sig->domain = ToLower(tags.Find("d")->value);
  if (!IsDkimDomainName(sig->domain)) {
    return Err("d=" + std::string(tags.Find("d")->value) +
               " is not a domain name");
  }
  sig->selector = ToLower(tags.Find("s")->value);
  if (!IsDkimDomainName(sig->selector)) {
    return Err("s=" + std::string(tags.Find("s")->value) +
               " is not a valid selector");
  }
  if (sig->selector.size() + sizeof("._domainkey.") - 1 + sig->domain.size() >
      253) {
    return Err("s= and d= make a DNS name longer than 253 octets");
  }
  // RFC 8617 4.1.2: the AUID of DKIM is replaced by the instance; the key
  // record rules that look at it (t=s) then see the signing domain.
  sig->identity = "@" + sig->domain;
  sig->signature_base64 = StripDkimWhitespace(tags.Find("b")->value);
  auto b = Base64Tag(*tags.Find("b"));
  if (!b) return tl::unexpected(b.error());
  sig->signature = std::move(*b);
  if (const DkimTag* t = tags.Find("t")) {
    auto n = Number(*t);
    if (!n) return tl::unexpected(n.error());
    sig->timestamp = static_cast<int64_t>(*n);
  }
  return {};
}

Result<void> Required(const DkimTagList& tags,
                      std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (tags.Find(name) == nullptr) {
      return Err(std::string("missing required tag ") + name + "=");
    }
  }
  return {};
}

bool IsFieldNameChar(char c) {
  return c >= 33 && c <= 126 && c != ':';  // RFC 5322 3.6.8 ftext
}

// The instance of an AMS or AS that does not parse as a whole, so that the
// chain check can still tell which set it belongs to.
std::optional<int> LooseInstance(std::string_view value) {
  auto tags = ParseDkimTagList(value);
  if (!tags) return std::nullopt;
  const DkimTag* i = tags->Find("i");
  if (i == nullptr) return std::nullopt;
  auto n = Instance(i->value);
  if (!n) return std::nullopt;
  return *n;
}

std::string_view FieldValue(std::string_view field) {
  size_t colon = field.find(':');
  return colon == std::string_view::npos ? std::string_view()
                                         : field.substr(colon + 1);
}

// The field with its b= value (and the whitespace around it) taken out, as
// the signature's own field enters the hash (RFC 6376 3.7).
std::string WithoutSignature(std::string_view field) {
  std::string out(field);
  size_t colon = field.find(':');
  if (colon == std::string_view::npos) return out;
  auto tags = ParseDkimTagList(field.substr(colon + 1));
  if (!tags) return out;
  if (const DkimTag* b = tags->Find("b")) {
    out.erase(colon + 1 + b->value_begin, b->value_end - b->value_begin);
  }
  return out;
}

std::string Name(int instance, std::string_view what) {
  return std::string(what) + " i=" + std::to_string(instance);
}

}  // namespace

const char* ArcStatusName(ArcStatus status) {
  switch (status) {
    case ArcStatus::kNone:
      return "none";
    case ArcStatus::kPass:
      return "pass";
    case ArcStatus::kFail:
      return "fail";
  }
  return "fail";
}

std::optional<ArcStatus> ParseArcStatus(std::string_view text) {
  if (IEquals(text, "none")) return ArcStatus::kNone;
  if (IEquals(text, "pass")) return ArcStatus::kPass;
  if (IEquals(text, "fail")) return ArcStatus::kFail;
  return std::nullopt;
}

// ---------------------------------------------------------------- fields

Result<int> ParseArcAarInstance(std::string_view value) {
  size_t pos = 0;
  auto skip = [&] {
    while (size_t n = DkimWhitespaceAt(value, pos)) pos += n;
  };
  skip();
  // RFC 8617 4.2.1: the AAR starts with the instance tag, then ';' and
  // the Authentication-Results payload.
  if (pos >= value.size() || (value[pos] != 'i' && value[pos] != 'I')) {
    return Err("does not start with i=");
  }
  ++pos;
  skip();
  if (pos >= value.size() || value[pos] != '=') {
    return Err("does not start with i=");
  }
  ++pos;
  skip();
  size_t start = pos;
  while (pos < value.size() && value[pos] >= '0' && value[pos] <= '9') ++pos;
  auto n = Instance(value.substr(start, pos - start));
  if (!n) return n;
  skip();
  if (pos >= value.size() || value[pos] != ';') {
    return Err("no ';' after i=" + std::to_string(*n));
  }
  return n;
}

Result<ArcMessageSignature> ParseArcMessageSignature(std::string_view value) {
  auto parsed = ParseDkimTagList(value);
  if (!parsed) return Err("syntax: " + parsed.error().message);
  const DkimTagList& tags = *parsed;
  // RFC 8617 4.1.2 with RFC 6376 6.1.1's required tags; v= is not one.
  if (auto ok = Required(tags, {"i", "a", "b", "bh", "d", "h", "s"}); !ok) {
    return tl::unexpected(ok.error());
  }
  ArcMessageSignature ams;
  auto instance = Instance(tags.Find("i")->value);
  if (!instance) return tl::unexpected(instance.error());
  ams.instance = *instance;
  DkimSignature& sig = ams.signature;
  if (auto ok = CommonTags(tags, &sig); !ok) return tl::unexpected(ok.error());

  if (const DkimTag* c = tags.Find("c")) {
    // RFC 6376 3.5 c=: "header/body", body defaulting to simple.
    std::string_view v = c->value;
    size_t slash = v.find('/');
    std::string_view header = v.substr(0, slash);
    std::string_view body = slash == std::string_view::npos
                                ? std::string_view("simple")
                                : v.substr(slash + 1);
    auto canon = [](std::string_view name) -> std::optional<DkimCanon> {
      if (name == "simple") return DkimCanon::kSimple;
      if (name == "relaxed") return DkimCanon::kRelaxed;
      return std::nullopt;
    };
    auto h = canon(header), b = canon(body);
    if (!h || !b) return Err("unknown canonicalization c=" + std::string(v));
    sig.header_canon = *h;
    sig.body_canon = *b;
  }
  for (std::string_view name : SplitDkimList(tags.Find("h")->value)) {
    if (name.empty()) return Err("empty header field name in h=");
    for (char ch : name) {
      if (!IsFieldNameChar(ch)) {
        return Err("h= holds an invalid header field name");
      }
    }
    sig.signed_headers.emplace_back(name);
  }
  auto bh = Base64Tag(*tags.Find("bh"));
  if (!bh) return tl::unexpected(bh.error());
  sig.body_hash = std::move(*bh);
  if (const DkimTag* l = tags.Find("l")) {
    auto n = Number(*l);
    if (!n) return tl::unexpected(n.error());
    sig.body_length = *n;
  }
  return ams;
}

Result<ArcSeal> ParseArcSeal(std::string_view value) {
  auto parsed = ParseDkimTagList(value);
  if (!parsed) return Err("syntax: " + parsed.error().message);
  const DkimTagList& tags = *parsed;
  if (auto ok = Required(tags, {"i", "a", "b", "cv", "d", "s"}); !ok) {
    return tl::unexpected(ok.error());
  }
  // RFC 8617 4.1.3 gives the seal no h=: it covers the ARC sets, never a
  // chosen list of fields. A seal with one is refused (as dkimpy does).
  if (tags.Find("h") != nullptr) return Err("h= is not allowed in an ARC-Seal");
  ArcSeal seal;
  auto instance = Instance(tags.Find("i")->value);
  if (!instance) return tl::unexpected(instance.error());
  seal.instance = *instance;
  auto cv = ParseArcStatus(tags.Find("cv")->value);
  if (!cv) {
    return Err("cv=" + std::string(tags.Find("cv")->value) +
               " is not none, pass or fail");
  }
  seal.cv = *cv;
  DkimSignature& sig = seal.signature;
  if (auto ok = CommonTags(tags, &sig); !ok) return tl::unexpected(ok.error());
  // RFC 8617 5.1.1: relaxed header canonicalization only.
  sig.header_canon = DkimCanon::kRelaxed;
  sig.body_canon = DkimCanon::kRelaxed;
  return seal;
}

// ---------------------------------------------------------------- chain

ArcChain CollectArcChain(const std::vector<DkimHeaderField>& fields) {
  ArcChain chain;
  std::map<int, ArcSet> by_instance;
  std::string first_error;  // the first field that fits no set
  auto error = [&first_error](std::string message) {
    if (first_error.empty()) first_error = std::move(message);
  };
  bool any = false;
  std::map<int, std::string> seal_errors;
  for (const DkimHeaderField& field : fields) {
    enum { kAar, kAms, kSeal } kind;
    if (IEquals(field.name, kAarName)) {
      kind = kAar;
    } else if (IEquals(field.name, kAmsName)) {
      kind = kAms;
    } else if (IEquals(field.name, kSealName)) {
      kind = kSeal;
    } else {
      continue;
    }
    any = true;
    std::string_view value = FieldValue(field.text);
    std::optional<int> instance;
    std::optional<ArcSeal> seal;
    std::optional<ArcMessageSignature> ams;
    std::string problem;
    if (kind == kAar) {
      auto n = ParseArcAarInstance(value);
      if (n) {
        instance = *n;
      } else {
        problem = n.error().message;
      }
    } else if (kind == kAms) {
      auto parsed = ParseArcMessageSignature(value);
      if (parsed) {
        instance = parsed->instance;
        ams = std::move(*parsed);
      } else {
        instance = LooseInstance(value);
        problem = parsed.error().message;
      }
    } else {
      auto parsed = ParseArcSeal(value);
      if (parsed) {
        instance = parsed->instance;
        seal = std::move(*parsed);
      } else {
        instance = LooseInstance(value);
        problem = parsed.error().message;
      }
    }
    std::string_view name =
        kind == kAar ? kAarName : (kind == kAms ? kAmsName : kSealName);
    if (!instance) {
      error(std::string(name) + " without a valid instance: " + problem);
      continue;
    }
    chain.highest_instance = std::max(chain.highest_instance, *instance);
    ArcSet& set = by_instance[*instance];
    set.instance = *instance;
    std::string_view* slot =
        kind == kAar ? &set.aar : (kind == kAms ? &set.ams : &set.seal);
    if (!slot->empty()) {
      // RFC 8617 5.2 step 3: exactly one of each field per set.
      error("two " + std::string(name) +
            " fields with i=" + std::to_string(*instance));
      continue;
    }
    *slot = field.text;
    if (kind == kAms) {
      set.parsed_ams = std::move(ams);
      set.ams_error = problem;
    } else if (kind == kSeal) {
      set.parsed_seal = std::move(seal);
      if (!problem.empty()) seal_errors[*instance] = problem;
    }
  }
  for (auto& [instance, set] : by_instance) chain.sets.push_back(set);
  if (!any) return chain;  // status none

  chain.status = ArcStatus::kFail;
  const int n = chain.highest_instance;
  if (!chain.sets.empty()) {
    const ArcSet& newest = chain.sets.back();
    chain.ended =
        newest.parsed_seal && newest.parsed_seal->cv == ArcStatus::kFail;
  }
  // RFC 8617 5.2 step 1: at most 50 sets (4.2.1.1: instances 1 to 50).
  if (n > kArcMaxInstance) {
    chain.reason = "instance i=" + std::to_string(n) + " is above " +
                   std::to_string(kArcMaxInstance);
    return chain;
  }
  // Step 2: the newest seal says the chain failed before us.
  if (chain.ended) {
    chain.reason = Name(n, kSealName) + " says cv=fail";
    return chain;
  }
  if (!first_error.empty()) {
    chain.reason = first_error;
    return chain;
  }
  // Step 3: sets 1..N, each complete, seals that parse, and the cv rule.
  for (int i = 1; i <= n; ++i) {
    auto it = by_instance.find(i);
    if (it == by_instance.end()) {
      chain.reason = "ARC set i=" + std::to_string(i) + " is missing";
      return chain;
    }
    const ArcSet& set = it->second;
    std::string_view missing = set.aar.empty()    ? kAarName
                               : set.ams.empty()  ? kAmsName
                               : set.seal.empty() ? kSealName
                                                  : std::string_view();
    if (!missing.empty()) {
      chain.reason =
          "ARC set i=" + std::to_string(i) + " has no " + std::string(missing);
      return chain;
    }
    if (!set.parsed_seal) {
      chain.reason = Name(i, kSealName) + ": " + seal_errors[i];
      return chain;
    }
    ArcStatus cv = set.parsed_seal->cv;
    ArcStatus want = i == 1 ? ArcStatus::kNone : ArcStatus::kPass;
    if (cv != want) {
      chain.reason = Name(i, kSealName) + " has cv=" + ArcStatusName(cv) +
                     ", not " + ArcStatusName(want);
      return chain;
    }
  }
  chain.status = ArcStatus::kPass;
  return chain;
}

std::string ArcSealHashInput(const std::vector<ArcSet>& sets) {
  std::string out;
  for (size_t k = 0; k < sets.size(); ++k) {
    const ArcSet& set = sets[k];
    CanonicalizeDkimHeaderField(set.aar, DkimCanon::kRelaxed, &out);
    CanonicalizeDkimHeaderField(set.ams, DkimCanon::kRelaxed, &out);
    if (k + 1 < sets.size()) {
      CanonicalizeDkimHeaderField(set.seal, DkimCanon::kRelaxed, &out);
    } else {
      CanonicalizeDkimHeaderField(WithoutSignature(set.seal),
                                  DkimCanon::kRelaxed, &out);
      out.resize(out.size() - 2);  // RFC 6376 3.7: no final CRLF
    }
  }
  return out;
}

// ---------------------------------------------------------------- results

std::string ArcResult::LastSealer() const {
  return instances.empty() ? std::string() : instances.back().domain;
}

bool ArcSealedByTrusted(const ArcResult& result,
                        const std::vector<std::string>& trusted) {
  if (result.status != ArcStatus::kPass) return false;
  std::string_view sealer =
      result.instances.empty()
          ? std::string_view()
          : std::string_view(result.instances.back().domain);
  if (sealer.empty()) return false;
  for (std::string_view t : trusted) {
    if (!t.empty() && t.back() == '.') t.remove_suffix(1);
    if (IEquals(t, sealer)) return true;
  }
  return false;
}

ArcValidation::ArcValidation(ArcResult settled) : result_(std::move(settled)) {}

const std::string& ArcValidation::key_name() const {
  return checks_[next_].pending.key_name;
}

void ArcValidation::Apply(const Check& check, const DkimResult& r) {
  if (r.status == DkimStatus::kPass) {
    ++next_;
    return;
  }
  if (check.kind == Kind::kOlderAms) {
    // RFC 8617 5.2 step 5: informational; the chain still passes.
    result_.oldest_pass = check.instance + 1;
  } else {
    result_.status = ArcStatus::kFail;
    result_.reason =
        Name(check.instance, check.kind == Kind::kSeal ? kSealName : kAmsName) +
        ": " + (r.reason.empty() ? DkimStatusName(r.status) : r.reason);
    // RFC 8617 5.2.1: permanent all the same; the flag lets the server
    // choose a 4xx over sealing cv=fail.
    result_.temporary = r.status == DkimStatus::kTempError;
  }
  next_ = checks_.size();
}

void ArcValidation::SettleKeyless() {
  while (!done() && !checks_[next_].pending.needs_key) {
    const Check& check = checks_[next_];
    Apply(check, check.pending.result);
  }
}

std::string ArcValidation::SignedData(const Check& check) const {
  if (check.kind == Kind::kSeal) {
    // RFC 8617 5.1.1: the sets up to this one, its own AS last.
    return sets_.substr(0, check.sets_before) + check.own_seal;
  }
  // RFC 8617 4.1.2: built as a DKIM signature, the AMS itself last with
  // b= emptied.
  const DkimSignature& s = check.pending.signature;
  return DkimHeaderHashInput(fields_, s.signed_headers,
                             WithoutSignature(check.ams), s.header_canon);
}

void ArcValidation::Step(const dns::Answer& answer) {
  if (done()) return;
  const Check& check = checks_[next_];
  DkimPending pending = check.pending;
  pending.signed_data = SignedData(check);
  Apply(check, CheckDkimWithKey(pending, answer, dkim_options_));
  SettleKeyless();
}

// ---------------------------------------------------------------- verifier

ArcVerifier::ArcVerifier(ArcVerifyOptions options)
    : options_(options), splitter_(options.max_header) {}

ArcVerifier::~ArcVerifier() = default;

void ArcVerifier::Feed(std::string_view chunk) {
  std::string_view body = splitter_.Feed(chunk);
  if (!splitter_.header_complete()) return;
  if (!body_started_) StartBody();
  if (body.empty()) return;
  for (auto& hasher : hashers_) hasher->Update(body);
}

namespace {

// What a DKIM result needs to name the signature, as DkimVerifier fills it.
DkimPending PendingFor(const DkimSignature& s) {
  DkimPending p;
  p.signature = s;
  p.result.domain = s.domain;
  p.result.selector = s.selector;
  p.result.identity = s.identity;
  p.result.algorithm = DkimAlgorithmName(s.algorithm);
  p.result.header_b = s.signature_base64.substr(0, kHeaderBLength);
  p.key_name = s.selector + "._domainkey." + s.domain;
  p.needs_key = true;
  return p;
}

}  // namespace

void ArcVerifier::StartBody() {
  body_started_ = true;
  settled_ = true;
  ArcValidation& v = validation_;
  v.header_ = std::make_shared<const std::string>(splitter_.header());
  v.fields_ = SplitDkimHeader(*v.header_);
  ArcChain chain = CollectArcChain(v.fields_);
  ArcResult& base = v.result_;
  for (const ArcSet& set : chain.sets) {
    if (!set.parsed_seal) continue;
    const DkimSignature& s = set.parsed_seal->signature;
    base.instances.push_back(
        {set.instance, s.domain, s.selector, set.parsed_seal->cv});
  }
  if (splitter_.overflow()) {
    // What came of the header holds the ARC fields if there are any: they
    // are put on top.
    if (chain.status != ArcStatus::kNone) {
      base.status = ArcStatus::kFail;
      base.reason = "header section longer than " +
                    std::to_string(options_.max_header) + " octets";
    }
    return;
  }
  base.status = chain.status;
  base.reason = chain.reason;
  if (chain.status != ArcStatus::kPass) return;

  settled_ = false;
  const int n = static_cast<int>(chain.sets.size());
  std::map<std::pair<DkimCanon, std::optional<uint64_t>>, int> shared;
  using Kind = ArcValidation::Kind;
  for (const ArcSet& set : chain.sets) {
    // The seal: what it signs is known now; the body plays no part.
    ArcValidation::Check seal{Kind::kSeal, set.instance,
                              PendingFor(set.parsed_seal->signature)};
    CanonicalizeDkimHeaderField(set.aar, DkimCanon::kRelaxed, &v.sets_);
    CanonicalizeDkimHeaderField(set.ams, DkimCanon::kRelaxed, &v.sets_);
    seal.sets_before = v.sets_.size();
    CanonicalizeDkimHeaderField(WithoutSignature(set.seal), DkimCanon::kRelaxed,
                                &seal.own_seal);
    seal.own_seal.resize(seal.own_seal.size() - 2);  // RFC 6376 3.7
    CanonicalizeDkimHeaderField(set.seal, DkimCanon::kRelaxed, &v.sets_);
    seals_.push_back(std::move(seal));

    ArcValidation::Check ams{Kind::kOlderAms, set.instance, DkimPending()};
    int hasher = -1;
    bool wanted = set.instance == n || options_.oldest_pass;
    if (!set.parsed_ams) {
      ams.pending.result.status = DkimStatus::kPermError;
      ams.pending.result.reason = set.ams_error;
    } else if (wanted) {
      const DkimSignature& s = set.parsed_ams->signature;
      ams.pending = PendingFor(s);
      ams.ams = set.ams;
      auto key = std::make_pair(s.body_canon, s.body_length);
      auto it = shared.find(key);
      if (it == shared.end()) {
        hashers_.push_back(
            std::make_unique<DkimBodyHasher>(s.body_canon, s.body_length));
        it = shared.emplace(key, static_cast<int>(hashers_.size() - 1)).first;
      }
      hasher = it->second;
    }
    ams_.push_back(std::move(ams));
    hasher_of_.push_back(hasher);
  }
}

ArcValidation ArcVerifier::Finish() {
  splitter_.Finish();
  if (!body_started_) StartBody();
  ArcValidation v = std::move(validation_);
  if (settled_) return v;
  for (auto& hasher : hashers_) hasher->Finish();
  for (size_t k = 0; k < ams_.size(); ++k) {
    DkimPending& p = ams_[k].pending;
    if (!p.needs_key) continue;
    const DkimBodyHasher& h = *hashers_[static_cast<size_t>(hasher_of_[k])];
    if (p.signature.body_length &&
        *p.signature.body_length > h.canonical_length()) {
      p.needs_key = false;
      p.result.status = DkimStatus::kFail;
      p.result.reason = "l= is longer than the body";
    } else if (h.digest() != p.signature.body_hash) {
      p.needs_key = false;
      p.result.status = DkimStatus::kFail;
      p.result.reason = "body hash mismatch";
    }
  }
  v.result_.status = ArcStatus::kPass;
  v.dkim_options_.max_rsa_bits = options_.max_rsa_bits;
  const int n = static_cast<int>(ams_.size());
  ams_[n - 1].kind = ArcValidation::Kind::kNewestAms;
  v.checks_.push_back(std::move(ams_[n - 1]));
  for (int i = n; i >= 1; --i) v.checks_.push_back(std::move(seals_[i - 1]));
  if (options_.oldest_pass) {
    for (int i = n - 1; i >= 1; --i) {
      v.checks_.push_back(std::move(ams_[i - 1]));
    }
  }
  v.SettleKeyless();
  return v;
}

}  // namespace tern::mailauth
