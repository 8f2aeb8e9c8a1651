// Fuzzes ARC (mailauth/arc.h, RFC 8617): the collection and structure check
// of the ARC sets, the streaming verifier with scripted key answers, and a
// seal-then-verify round trip with a fixed Ed25519 key. Properties: a sound
// chain is exactly sets 1..N, complete, with the cv rules; chunking changes
// no verdict; without a usable key nothing passes; a message sealed by Tern
// verifies as pass (cv none or pass) or fail (cv=fail), and sealing is only
// refused for the reasons RFC 8617 5.1 gives.
//
// Input: 4 header bytes, then the message.
//   [0] chunk seed, [1] max chunk length (0: one Feed),
//   [2] key answers: 0 the fuzz key for every name, 1 NXDOMAIN,
//       2 SERVFAIL, 3 a revoked record; [3] bit 0: skip the seal round trip
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base64.h"
#include "common/strings.h"
#include "fuzz_common.h"
#include "mailauth/arc.h"
#include "mailauth/dkim_crypto.h"

namespace {

using tern::fuzz::Printable;
using tern::mailauth::ArcResult;
using tern::mailauth::ArcStatus;

constexpr int64_t kNow = 1800000000;

// The seal key: Ed25519 from a fixed seed (32 octets 0x42), so that seeds
// sealed with it verify. The sealed seeds in fuzz/corpus/arc were made with
// `tern arc seal --domain fuzz.example --selector k --key KEY` and this
// PEM as KEY (4 header bytes put in front):
//   -----BEGIN PRIVATE KEY-----
//   MC4CAQAwBQYDK2VwBCIEIEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC
//   -----END PRIVATE KEY-----
const tern::mailauth::DkimKey& FuzzKey() {
  static const tern::mailauth::DkimKey key = [] {
    std::string der(
        "\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16);
    der += std::string(32, '\x42');
    std::string pem = "-----BEGIN PRIVATE KEY-----\n" +
                      tern::Base64Encode(der) + "\n-----END PRIVATE KEY-----\n";
    return *tern::mailauth::ParseDkimPrivateKeyPem(pem);
  }();
  return key;
}

tern::dns::Answer KeyAnswer(uint8_t mode) {
  tern::dns::Answer a;
  if (mode == 1) {
    a.status = tern::dns::Status::kNxDomain;
  } else if (mode == 2) {
    a.status = tern::dns::Status::kTempFail;
    a.error = "SERVFAIL";
  } else {
    a.status = tern::dns::Status::kOk;
    a.txt.push_back(
        "v=DKIM1; k=ed25519; p=" +
        (mode == 3 ? std::string()
                   : *tern::mailauth::DkimPublicKeyRecordValue(FuzzKey())));
  }
  return a;
}

ArcResult Run(tern::mailauth::ArcValidation v, uint8_t mode) {
  tern::dns::Answer answer = KeyAnswer(mode);
  int steps = 0;
  while (!v.done()) {
    FUZZ_CHECK(!v.key_name().empty(), "a check without a key name");
    v.Step(answer);
    // The newest AMS, N seals, N-1 older AMSs.
    FUZZ_CHECK(++steps <= 2 * tern::mailauth::kArcMaxInstance,
               "too many key steps");
  }
  return v.result();
}

ArcResult Verify(std::string_view message, uint8_t seed, uint8_t max_chunk,
                 uint8_t mode) {
  tern::mailauth::ArcVerifier verifier;
  tern::fuzz::Chunker chunks(message, seed, max_chunk);
  while (!chunks.done()) verifier.Feed(chunks.Next());
  return Run(verifier.Finish(), mode);
}

bool SameResult(const ArcResult& a, const ArcResult& b) {
  if (a.status != b.status || a.reason != b.reason ||
      a.oldest_pass != b.oldest_pass || a.temporary != b.temporary ||
      a.instances.size() != b.instances.size()) {
    return false;
  }
  for (size_t i = 0; i < a.instances.size(); ++i) {
    if (a.instances[i].instance != b.instances[i].instance ||
        a.instances[i].domain != b.instances[i].domain) {
      return false;
    }
  }
  return true;
}

bool IsArcName(std::string_view name) {
  return tern::IEquals(name, "ARC-Seal") ||
         tern::IEquals(name, "ARC-Message-Signature") ||
         tern::IEquals(name, "ARC-Authentication-Results");
}

void CheckChain(const std::vector<tern::mailauth::DkimHeaderField>& fields,
                const tern::mailauth::ArcChain& chain) {
  bool any = false;
  for (const auto& f : fields) any = any || IsArcName(f.name);
  FUZZ_CHECK((chain.status == ArcStatus::kNone) == !any,
             "status none exactly when there is no ARC field");
  for (size_t k = 1; k < chain.sets.size(); ++k) {
    FUZZ_CHECK(chain.sets[k - 1].instance < chain.sets[k].instance,
               "sets not in instance order");
  }
  if (chain.ended) {
    FUZZ_CHECK(chain.status == ArcStatus::kFail, "an ended chain passed");
  }
  if (chain.status != ArcStatus::kPass) return;
  FUZZ_CHECK(chain.highest_instance >= 1 &&
                 chain.highest_instance <= tern::mailauth::kArcMaxInstance,
             "sound chain with %d sets", chain.highest_instance);
  FUZZ_CHECK(static_cast<int>(chain.sets.size()) == chain.highest_instance,
             "sound chain with a gap");
  for (size_t k = 0; k < chain.sets.size(); ++k) {
    const auto& set = chain.sets[k];
    FUZZ_CHECK(set.instance == static_cast<int>(k) + 1, "instances not 1..N");
    FUZZ_CHECK(!set.aar.empty() && !set.ams.empty() && !set.seal.empty() &&
                   set.parsed_seal.has_value(),
               "incomplete set %d in a sound chain", set.instance);
    ArcStatus want = k == 0 ? ArcStatus::kNone : ArcStatus::kPass;
    FUZZ_CHECK(set.parsed_seal->cv == want, "cv rule broken at i=%d",
               set.instance);
    FUZZ_CHECK(set.parsed_seal->instance == set.instance, "seal misfiled");
  }
}

// The first Authentication-Results field's value, for the new AAR.
std::string AuthResultsOf(
    const std::vector<tern::mailauth::DkimHeaderField>& fields) {
  for (const auto& f : fields) {
    if (tern::IEquals(f.name, "Authentication-Results")) {
      return std::string(f.text.substr(f.text.find(':') + 1));
    }
  }
  return "spf=pass smtp.mailfrom=example.org";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 4);
  std::string_view message = in.body();
  uint8_t seed = in.byte(0), max_chunk = in.byte(1);
  uint8_t mode = in.byte(2) & 3;

  tern::mailauth::DkimMessageSplitter splitter;
  splitter.Feed(message);
  splitter.Finish();
  std::vector<tern::mailauth::DkimHeaderField> fields =
      tern::mailauth::SplitDkimHeader(splitter.header());
  tern::mailauth::ArcChain chain = tern::mailauth::CollectArcChain(fields);
  CheckChain(fields, chain);

  ArcResult whole = Verify(message, 0, 0, mode);
  ArcResult chunked = Verify(message, seed, max_chunk, mode);
  FUZZ_CHECK(SameResult(whole, chunked),
             "chunking changed the verdict: %s (%s) vs %s (%s)",
             tern::mailauth::ArcStatusName(whole.status), whole.reason.c_str(),
             tern::mailauth::ArcStatusName(chunked.status),
             chunked.reason.c_str());
  if (whole.status == ArcStatus::kPass) {
    FUZZ_CHECK(mode == 0, "passed without a usable key (mode %d)", mode);
    FUZZ_CHECK(chain.status == ArcStatus::kPass, "passed a malformed chain");
    FUZZ_CHECK(whole.reason.empty(), "a pass with a reason");
  }
  if (whole.temporary) {
    FUZZ_CHECK(mode == 2 && whole.status == ArcStatus::kFail,
               "temporary without a temporary DNS failure");
  }
  if (chain.status != ArcStatus::kPass) {
    FUZZ_CHECK(whole.status == chain.status, "verdict %s for a chain that %s",
               tern::mailauth::ArcStatusName(whole.status),
               tern::mailauth::ArcStatusName(chain.status));
  }
  if (in.byte(3) & 1) {
    // The forwarding path reads cv from whatever Authentication-Results
    // the message holds: any input gives a seal or a reason, no crash.
    auto fwd = tern::mailauth::SealForwarded(
        message, "mx.fuzz.example", {{"fuzz.example", "k", FuzzKey()}}, kNow);
    FUZZ_CHECK(fwd || !fwd.error().message.empty(), "refusal without a reason");
    return 0;
  }

  // Seal what was verified with the fuzz key, then verify the result.
  ArcResult seen = mode == 0 ? whole : Verify(message, 0, 0, 0);
  tern::mailauth::ArcSealRequest request{"mx.fuzz.example",
                                         AuthResultsOf(fields), seen.status};
  auto sealed = tern::mailauth::ArcSealMessage(
      message, request, {{"fuzz.example", "k", FuzzKey()}}, kNow);
  if (!sealed) {
    const std::string& why = sealed.error().message;
    bool allowed =
        chain.ended ||
        chain.highest_instance >= tern::mailauth::kArcMaxInstance ||
        splitter.overflow() ||
        (!splitter.header().empty() &&
         (splitter.header()[0] == ' ' || splitter.header()[0] == '\t')) ||
        why == "control character in the Authentication-Results text";
    FUZZ_CHECK(allowed, "sealing refused: %s\n  message: %s", why.c_str(),
               Printable(message).c_str());
    return 0;
  }
  auto new_fields = tern::mailauth::SplitDkimHeader(*sealed);
  FUZZ_CHECK(new_fields.size() == 3 && new_fields[0].name == "ARC-Seal" &&
                 new_fields[1].name == "ARC-Message-Signature" &&
                 new_fields[2].name == "ARC-Authentication-Results",
             "the new set is not three fields: %s", Printable(*sealed).c_str());
  std::string out = *sealed + std::string(message);
  ArcResult after = Verify(out, seed, max_chunk, 0);
  if (seen.status == ArcStatus::kFail) {
    FUZZ_CHECK(after.status == ArcStatus::kFail, "a cv=fail seal passed");
  } else {
    FUZZ_CHECK(after.status == ArcStatus::kPass,
               "Tern's own seal (cv=%s) does not verify: %s\n  message: %s",
               tern::mailauth::ArcStatusName(seen.status), after.reason.c_str(),
               Printable(out, 2000).c_str());
    FUZZ_CHECK(after.LastSealer() == "fuzz.example", "wrong last sealer");
    FUZZ_CHECK(
        static_cast<int>(after.instances.size()) == chain.highest_instance + 1,
        "sealed as the wrong instance");
  }
  return 0;
}
