// Fuzzes the SASL mechanisms (auth/sasl.h) with a fake credential store:
// arbitrary client messages, plus an honest SCRAM-SHA-256 client written
// here from RFC 5802 whose exchanges must succeed exactly when they should.
//
// Input: 2 header bytes, then the client messages separated by '\n'.
//   [0] mechanism: %5 = 0 PLAIN, 1 LOGIN, 2 SCRAM-SHA-256, 3 SCRAM with a
//       fixed server nonce ("fuzznonce"), 4 honest SCRAM client (the rest
//       of the input is then its nonce)
//   [1] 1: the first message is the initial response; in mode 4: 1 wrong
//       password, 2|4 which user (alice@example.test, ALICE, bob, "a,b=c")
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.h"
#include "common/base64.h"
#include "fake_credentials.h"
#include "fuzz_common.h"

namespace {

using tern::auth::SaslMechanism;
using tern::auth::SaslStep;
using tern::fuzz::Printable;
using Kind = SaslStep::Kind;

std::string Hmac(std::string_view key, std::string_view msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out,
       &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Sha256(std::string_view msg) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

std::string Salted(std::string_view password) {
  std::string out(32, '\0');
  PKCS5_PBKDF2_HMAC(
      password.data(), static_cast<int>(password.size()),
      reinterpret_cast<const unsigned char*>(tern::fuzz::kScramSalt), 16, 4096,
      EVP_sha256(), 32, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// RFC 5802 5.1 saslname.
std::string SaslName(std::string_view user) {
  std::string out;
  for (char c : user) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out += c;
    }
  }
  return out;
}

// One full exchange by the book. PBKDF2 is paid once per password.
void HonestScram(uint8_t bits, std::string_view nonce_bytes) {
  static const std::string right = Salted(tern::fuzz::kPassword);
  static const std::string wrong = Salted("not-the-password");
  static const char* const kUsers[] = {"alice@example.test", "ALICE",
                                       "bob@example.test", "a,b=c"};
  bool bad_password = bits & 1;
  std::string user = kUsers[(bits >> 1) & 3];
  bool known = ((bits >> 1) & 3) < 2;

  std::string cnonce;
  for (unsigned char c : nonce_bytes.substr(0, 200)) {
    char p = static_cast<char>(0x21 + c % 94);
    cnonce += p == ',' ? '-' : p;
  }
  if (cnonce.empty()) cnonce = "n";

  tern::fuzz::FakeCredentials store;
  std::unique_ptr<SaslMechanism> m =
      tern::auth::MakeScramSha256ForTest(store, "fuzznonce");
  std::string bare = "n=" + SaslName(user) + ",r=" + cnonce;
  SaslStep first = m->Start("n,," + bare);
  FUZZ_CHECK(first.kind == Kind::kChallenge, "client-first refused: %s",
             Printable(bare).c_str());
  const std::string& server_first = first.data;
  std::string nonce = cnonce + "fuzznonce";
  std::string salt_b64 = tern::Base64Encode(tern::fuzz::kScramSalt);
  if (known) {
    FUZZ_CHECK(server_first == "r=" + nonce + ",s=" + salt_b64 + ",i=4096",
               "server-first-message: %s", Printable(server_first).c_str());
  } else {
    // RFC 5802 9: an unknown user gets a plausible answer, not a refusal.
    FUZZ_CHECK(server_first.rfind("r=" + nonce + ",s=", 0) == 0,
               "server-first-message for an unknown user: %s",
               Printable(server_first).c_str());
  }

  std::string without_proof = "c=biws,r=" + nonce;  // "biws" = b64("n,,")
  std::string auth_message = bare + "," + server_first + "," + without_proof;
  const std::string& salted = bad_password ? wrong : right;
  std::string client_key = Hmac(salted, "Client Key");
  std::string signature = Hmac(Sha256(client_key), auth_message);
  std::string proof(32, '\0');
  for (size_t i = 0; i < 32; ++i) proof[i] = client_key[i] ^ signature[i];
  SaslStep final_step =
      m->Next(without_proof + ",p=" + tern::Base64Encode(proof));
  if (known && !bad_password) {
    std::string server_sig = Hmac(Hmac(right, "Server Key"), auth_message);
    FUZZ_CHECK(final_step.kind == Kind::kSuccess &&
                   final_step.user == tern::fuzz::kAccount &&
                   final_step.data == "v=" + tern::Base64Encode(server_sig),
               "honest exchange failed (kind %d) for %s nonce %s",
               static_cast<int>(final_step.kind), user.c_str(),
               Printable(cnonce).c_str());
  } else {
    FUZZ_CHECK(final_step.kind == Kind::kFailure,
               "exchange with %s (%s password) ended with kind %d",
               user.c_str(), bad_password ? "wrong" : "right",
               static_cast<int>(final_step.kind));
  }
  FUZZ_CHECK(m->Next("").kind == Kind::kMalformed, "message after the end");
}

bool Terminal(Kind k) { return k != Kind::kChallenge; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 2);
  int mode = in.byte(0) % 5;
  if (mode == 4) {
    HonestScram(in.byte(1), in.body());
    return 0;
  }
  std::vector<std::string_view> messages;
  std::string_view rest = in.body();
  while (true) {
    size_t nl = rest.find('\n');
    messages.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }

  tern::fuzz::FakeCredentials store;
  static const char* const kNames[] = {"PLAIN", "LOGIN", "SCRAM-SHA-256",
                                       "SCRAM-SHA-256"};
  std::unique_ptr<SaslMechanism> m =
      mode == 3 ? tern::auth::MakeScramSha256ForTest(store, "fuzznonce")
                : tern::auth::MakeMechanism(kNames[mode], store);
  FUZZ_CHECK(m != nullptr, "no mechanism %s", kNames[mode]);

  size_t next = 0;
  std::optional<std::string_view> initial;
  if (in.byte(1) & 1) initial = messages[next++];
  SaslStep step = m->Start(initial);
  bool ended = false;
  for (;;) {
    if (ended) {
      FUZZ_CHECK(step.kind == Kind::kMalformed,
                 "step of kind %d after the exchange ended",
                 static_cast<int>(step.kind));
    }
    switch (step.kind) {
      case Kind::kSuccess:
        FUZZ_CHECK(step.user == tern::fuzz::kAccount, "success as '%s'",
                   Printable(step.user).c_str());
        FUZZ_CHECK(mode >= 2 || store.granted > 0,
                   "%s success without a granted password check", kNames[mode]);
        break;
      case Kind::kChallenge:
        if (mode == 0) FUZZ_CHECK(step.data.empty(), "PLAIN challenge");
        if (mode == 1) {
          FUZZ_CHECK(step.data == "Username:" || step.data == "Password:",
                     "LOGIN challenge %s", Printable(step.data).c_str());
        }
        if (mode >= 2 && !step.data.empty()) {
          FUZZ_CHECK(step.data.rfind("r=", 0) == 0 &&
                         step.data.find(",s=") != std::string::npos &&
                         step.data.find(",i=4096") != std::string::npos,
                     "SCRAM challenge %s", Printable(step.data).c_str());
        }
        break;
      case Kind::kFailure:
      case Kind::kMalformed:
        break;
    }
    if (Terminal(step.kind)) ended = true;
    if (next >= messages.size()) break;
    step = m->Next(messages[next++]);
  }
  return 0;
}
