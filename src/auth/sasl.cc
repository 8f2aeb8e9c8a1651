// Server side of the SASL mechanisms PLAIN, LOGIN and SCRAM-SHA-256 as pure
// state machines over raw client messages; the crypto is OpenSSL's. Nothing
// here logs: the messages carry passwords or values derived from them.
#include "auth/sasl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "common/base64.h"
#include "common/strings.h"

namespace tern::auth {
namespace {

// Far above any honest message; bounds the work a hostile one can cause.
constexpr size_t kMaxMessage = 8192;
constexpr size_t kSha256Size = 32;
constexpr size_t kSaltSize = 16;
// RFC 7677 4: at least 4096 iterations for SCRAM-SHA-256.
constexpr uint32_t kMinIterations = 4096;
// RFC 5802 5.1: the nonce must be unpredictable; 24 bytes is 192 bits.
constexpr size_t kServerNonceBytes = 24;

SaslStep Challenge(std::string data) {
  return SaslStep{SaslStep::Kind::kChallenge, std::move(data), {}};
}
SaslStep Success(std::string user, std::string data = {}) {
  return SaslStep{SaslStep::Kind::kSuccess, std::move(data), std::move(user)};
}
SaslStep Failure() { return SaslStep{SaslStep::Kind::kFailure, {}, {}}; }
SaslStep TempFailure() {
  return SaslStep{SaslStep::Kind::kTempFailure, {}, {}};
}
SaslStep Malformed() { return SaslStep{SaslStep::Kind::kMalformed, {}, {}}; }

// Overwrites a copy of a secret before its memory is released.
void Wipe(std::string& secret) {
  OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

// Well-formed UTF-8 (RFC 3629 4), no overlongs or surrogates, no control
// characters: SASL names are UTF-8 text (RFC 4616 2, RFC 5802 5.1).
bool IsCleanUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > text.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    // C1 controls are as unwelcome in a name as C0 ones.
    if (cp >= 0x80 && cp <= 0x9f) return false;
    i += len;
  }
  return true;
}

std::string Sha256(std::string_view data) {
  std::string out(kSha256Size, '\0');
  ::SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::string out(kSha256Size, '\0');
  unsigned int len = 0;
  ::HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(out.data()), &len);
  if (len != kSha256Size) std::abort();  // cannot happen with SHA-256
  return out;
}

std::string RandomBytes(size_t count) {
  std::string out(count, '\0');
  // RAND_bytes only fails when the system RNG is unusable; carrying on with
  // predictable salts and nonces would be worse than stopping.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                 static_cast<int>(count)) != 1) {
    std::abort();
  }
  return out;
}

// Process-wide key for deriving fake salts: stable for the life of the
// process so that asking twice for an unknown user gives the same salt, as
// it would for a real one.
const std::string& FakeSaltKey() {
  static const std::string key = RandomBytes(kSha256Size);
  return key;
}

// ---------------------------------------------------------------- PLAIN --

// RFC 4616 2: message = [authzid] NUL authcid NUL passwd.
class PlainMechanism : public SaslMechanism {
 public:
  explicit PlainMechanism(CredentialStore& store) : store_(store) {}

  SaslStep Start(std::optional<std::string_view> initial) override {
    // RFC 4422 5: without an initial response the server sends an empty
    // challenge and the client answers with the message. An empty initial
    // response ("=") carries no credentials either, so it is treated alike.
    if (!initial || initial->empty()) {
      started_ = true;
      return Challenge("");
    }
    started_ = true;
    return Check(*initial);
  }

  SaslStep Next(std::string_view response) override {
    if (!started_ || done_) return Malformed();
    return Check(response);
  }

 private:
  SaslStep Check(std::string_view message) {
    done_ = true;
    if (message.size() > kMaxMessage) return Malformed();
    size_t first = message.find('\0');
    if (first == std::string_view::npos) return Malformed();
    size_t second = message.find('\0', first + 1);
    if (second == std::string_view::npos) return Malformed();
    // A third NUL would make the password contain NUL, which RFC 4616 2
    // does not allow (UTF8-SAFE excludes it).
    if (message.find('\0', second + 1) != std::string_view::npos) {
      return Malformed();
    }
    std::string_view authzid = message.substr(0, first);
    std::string_view authcid = message.substr(first + 1, second - first - 1);
    std::string password(message.substr(second + 1));
    if (authcid.empty() || password.empty() || !IsCleanUtf8(authzid) ||
        !IsCleanUtf8(authcid)) {
      Wipe(password);
      return Malformed();
    }
    PasswordCheck checked = store_.CheckPassword(std::string(authcid), password);
    Wipe(password);
    if (!checked) return TempFailure();
    std::optional<std::string>& user = *checked;
    if (!user) return Failure();
    // RFC 4616 2: acting as someone else needs authorization we never
    // grant, so an authzid is only accepted when it names the same account.
    if (!authzid.empty() && !IEquals(authzid, authcid) &&
        !IEquals(authzid, *user)) {
      return Failure();
    }
    return Success(std::move(*user));
  }

  CredentialStore& store_;
  bool started_ = false;
  bool done_ = false;
};

// ---------------------------------------------------------------- LOGIN --

// draft-murchison-sasl-login-00: the server asks "Username:" then
// "Password:"; an initial response is taken as the user name.
class LoginMechanism : public SaslMechanism {
 public:
  explicit LoginMechanism(CredentialStore& store) : store_(store) {}
  ~LoginMechanism() override { Wipe(user_); }

  SaslStep Start(std::optional<std::string_view> initial) override {
    if (!initial || initial->empty()) {
      state_ = State::kUser;
      return Challenge("Username:");
    }
    return TakeUser(*initial);
  }

  SaslStep Next(std::string_view response) override {
    switch (state_) {
      case State::kUser:
        return TakeUser(response);
      case State::kPassword: {
        state_ = State::kDone;
        if (response.size() > kMaxMessage ||
            response.find('\0') != std::string_view::npos) {
          return Malformed();
        }
        std::string password(response);
        if (password.empty()) return Failure();
        PasswordCheck checked = store_.CheckPassword(user_, password);
        Wipe(password);
        if (!checked) return TempFailure();
        if (!*checked) return Failure();
        return Success(std::move(**checked));
      }
      case State::kInitial:
      case State::kDone:
        break;
    }
    return Malformed();
  }

 private:
  enum class State { kInitial, kUser, kPassword, kDone };

  SaslStep TakeUser(std::string_view user) {
    if (user.empty() || user.size() > kMaxMessage || !IsCleanUtf8(user)) {
      state_ = State::kDone;
      return Malformed();
    }
    user_ = std::string(user);
    state_ = State::kPassword;
    return Challenge("Password:");
  }

  CredentialStore& store_;
  State state_ = State::kInitial;
  std::string user_;
};

// -------------------------------------------------------- SCRAM-SHA-256 --

// RFC 5802 7: a message is a comma-separated list of "x=value" attributes.
struct Attribute {
  char name;
  std::string_view value;
};

std::optional<std::vector<Attribute>> ParseAttributes(std::string_view text) {
  std::vector<Attribute> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(start, comma == std::string_view::npos
                                                   ? std::string_view::npos
                                                   : comma - start);
    // attr-val = ALPHA "=" value (RFC 5802 7).
    if (item.size() < 2 || item[1] != '=') return std::nullopt;
    char name = item[0];
    if (!((name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z'))) {
      return std::nullopt;
    }
    out.push_back({name, item.substr(2)});
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// RFC 5802 5.1: in saslname ',' and '=' travel as "=2C" and "=3D"; any
// other '=' is an error. The decoded name must be clean UTF-8; that, and
// refusing control characters, is the part of SASLprep (RFC 4013) that
// matters for the mail addresses used as user names here.
std::optional<std::string> DecodeSaslName(std::string_view value) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '=') {
      out += value[i];
      continue;
    }
    std::string_view code = value.substr(i + 1, 2);
    if (code == "2C") {
      out += ',';
    } else if (code == "3D") {
      out += '=';
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  if (out.empty() || !IsCleanUtf8(out)) return std::nullopt;
  return out;
}

// RFC 5802 7: printable = %x21-2B / %x2D-7E (no comma).
bool IsPrintableNonce(std::string_view nonce) {
  if (nonce.empty()) return false;
  for (unsigned char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

class ScramSha256Mechanism : public SaslMechanism {
 public:
  ScramSha256Mechanism(CredentialStore& store,
                       std::optional<std::string> server_nonce)
      : store_(store), fixed_server_nonce_(std::move(server_nonce)) {}
  ~ScramSha256Mechanism() override {
    Wipe(credentials_.stored_key);
    Wipe(credentials_.server_key);
  }

  SaslStep Start(std::optional<std::string_view> initial) override {
    // RFC 5802 5: the client speaks first; without an initial response the
    // server sends an empty challenge to ask for client-first-message.
    if (!initial || initial->empty()) {
      state_ = State::kClientFirst;
      return Challenge("");
    }
    return ClientFirst(*initial);
  }

  SaslStep Next(std::string_view response) override {
    switch (state_) {
      case State::kClientFirst:
        return ClientFirst(response);
      case State::kClientFinal:
        return ClientFinal(response);
      case State::kInitial:
      case State::kDone:
        break;
    }
    return Malformed();
  }

 private:
  enum class State { kInitial, kClientFirst, kClientFinal, kDone };

  // RFC 5802 7: client-first-message = gs2-header client-first-message-bare,
  // gs2-header = gs2-cbind-flag "," [authzid] ",".
  SaslStep ClientFirst(std::string_view message) {
    state_ = State::kDone;
    if (message.size() > kMaxMessage) return Malformed();
    size_t first_comma = message.find(',');
    if (first_comma == std::string_view::npos) return Malformed();
    size_t second_comma = message.find(',', first_comma + 1);
    if (second_comma == std::string_view::npos) return Malformed();
    std::string_view cbind = message.substr(0, first_comma);
    std::string_view authzid_attr =
        message.substr(first_comma + 1, second_comma - first_comma - 1);
    gs2_header_ = std::string(message.substr(0, second_comma + 1));
    client_first_bare_ = std::string(message.substr(second_comma + 1));

    // RFC 5802 6: "p=" asks for channel binding, which only the -PLUS
    // variants offer and we do not advertise them, so that is a failure.
    // "y" means the client could bind but thinks we cannot: correct here.
    if (cbind.size() >= 2 && cbind.substr(0, 2) == "p=") return Failure();
    if (cbind != "n" && cbind != "y") return Malformed();

    std::optional<std::string> authzid;
    if (!authzid_attr.empty()) {
      if (authzid_attr.substr(0, 2) != "a=") return Malformed();
      authzid = DecodeSaslName(authzid_attr.substr(2));
      if (!authzid) return Malformed();
    }

    auto attributes = ParseAttributes(client_first_bare_);
    if (!attributes) return Malformed();
    // RFC 5802 5.1: a mandatory extension we cannot know ("m=") must make
    // the authentication fail.
    if (attributes->front().name == 'm') return Failure();
    if (attributes->size() < 2 || (*attributes)[0].name != 'n' ||
        (*attributes)[1].name != 'r') {
      return Malformed();
    }
    std::optional<std::string> user = DecodeSaslName((*attributes)[0].value);
    if (!user) return Malformed();
    std::string_view client_nonce = (*attributes)[1].value;
    if (!IsPrintableNonce(client_nonce)) return Malformed();
    // Later attributes are extensions (RFC 5802 7), ignored.

    ScramAnswer answer = store_.Scram(*user);
    if (!answer) return TempFailure();
    auto& found = *answer;
    if (found && found->second.iterations >= kMinIterations &&
        found->second.stored_key.size() == kSha256Size &&
        found->second.server_key.size() == kSha256Size &&
        !found->second.salt.empty()) {
      account_ = std::move(found->first);
      credentials_ = std::move(found->second);
    } else {
      // RFC 5802 9 (and RFC 7677 5): do not reveal whether the user exists.
      // An unknown user gets a salt derived from the name, stable like a
      // real one, and keys nobody knows; the exchange then fails at the end
      // like a wrong password would.
      deny_ = true;
      credentials_.salt = HmacSha256(FakeSaltKey(), "salt:" + ToLower(*user))
                              .substr(0, kSaltSize);
      credentials_.iterations = kMinIterations;
      credentials_.stored_key = RandomBytes(kSha256Size);
      credentials_.server_key = RandomBytes(kSha256Size);
    }
    // Only the account itself may be named as authorization identity.
    if (authzid && !IEquals(*authzid, *user) &&
        (account_.empty() || !IEquals(*authzid, account_))) {
      deny_ = true;
    }

    nonce_ =
        std::string(client_nonce) +
        (fixed_server_nonce_ ? *fixed_server_nonce_
                             : Base64Encode(RandomBytes(kServerNonceBytes)));
    server_first_ = "r=" + nonce_ + ",s=" + Base64Encode(credentials_.salt) +
                    ",i=" + std::to_string(credentials_.iterations);
    state_ = State::kClientFinal;
    return Challenge(server_first_);
  }

  // RFC 5802 7: client-final-message = client-final-message-without-proof
  // "," proof, where the former is channel-binding "," nonce [","
  // extensions].
  SaslStep ClientFinal(std::string_view message) {
    state_ = State::kDone;
    if (message.size() > kMaxMessage) return Malformed();
    size_t proof_at = message.rfind(",p=");
    if (proof_at == std::string_view::npos) return Malformed();
    std::string_view without_proof = message.substr(0, proof_at);
    auto proof = Base64Decode(message.substr(proof_at + 3));
    if (!proof || proof->size() != kSha256Size) return Malformed();

    auto attributes = ParseAttributes(without_proof);
    if (!attributes || attributes->size() < 2 || (*attributes)[0].name != 'c' ||
        (*attributes)[1].name != 'r') {
      return Malformed();
    }
    // RFC 5802 6: c= repeats the gs2 header (no channel binding data, as
    // we refused "p=").
    auto binding = Base64Decode((*attributes)[0].value);
    if (!binding || *binding != gs2_header_) return Failure();
    if ((*attributes)[1].value != nonce_) return Failure();

    // RFC 5802 3: AuthMessage = client-first-message-bare + "," +
    // server-first-message + "," + client-final-message-without-proof.
    std::string auth_message = client_first_bare_ + "," + server_first_ + "," +
                               std::string(without_proof);
    std::string client_signature =
        HmacSha256(credentials_.stored_key, auth_message);
    std::string client_key(kSha256Size, '\0');
    for (size_t i = 0; i < kSha256Size; ++i) {
      client_key[i] = static_cast<char>((*proof)[i] ^ client_signature[i]);
    }
    std::string computed = Sha256(client_key);
    Wipe(client_key);
    bool match = CRYPTO_memcmp(computed.data(), credentials_.stored_key.data(),
                               kSha256Size) == 0;
    if (!match || deny_) return Failure();
    std::string server_signature =
        HmacSha256(credentials_.server_key, auth_message);
    return Success(account_, "v=" + Base64Encode(server_signature));
  }

  CredentialStore& store_;
  std::optional<std::string> fixed_server_nonce_;
  State state_ = State::kInitial;
  bool deny_ = false;
  std::string account_;  // canonical address; empty for an unknown user
  ScramCredentials credentials_;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string nonce_;
  std::string server_first_;
};

}  // namespace

ScramCredentials MakeScramCredentialsWithSalt(std::string_view password,
                                              std::string_view salt,
                                              uint32_t iterations) {
  // RFC 5802 3: SaltedPassword = Hi(Normalize(password), salt, i),
  // ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
  // ServerKey = HMAC(SaltedPassword, "Server Key"). Hi is PBKDF2 (RFC 8018).
  std::string salted(kSha256Size, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()),
                        static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(kSha256Size),
                        reinterpret_cast<unsigned char*>(salted.data())) != 1) {
    std::abort();  // only fails on allocation failure or bad arguments
  }
  std::string client_key = HmacSha256(salted, "Client Key");
  ScramCredentials credentials;
  credentials.salt = std::string(salt);
  credentials.iterations = iterations;
  credentials.stored_key = Sha256(client_key);
  credentials.server_key = HmacSha256(salted, "Server Key");
  Wipe(client_key);
  Wipe(salted);
  return credentials;
}

ScramCredentials MakeScramCredentials(std::string_view password,
                                      uint32_t iterations) {
  return MakeScramCredentialsWithSalt(password, RandomBytes(kSaltSize),
                                      std::max(iterations, kMinIterations));
}

std::unique_ptr<SaslMechanism> MakeMechanism(std::string_view name,
                                             CredentialStore& store) {
  if (IEquals(name, "PLAIN")) return std::make_unique<PlainMechanism>(store);
  if (IEquals(name, "LOGIN")) return std::make_unique<LoginMechanism>(store);
  if (IEquals(name, "SCRAM-SHA-256")) {
    return std::make_unique<ScramSha256Mechanism>(store, std::nullopt);
  }
  return nullptr;
}

std::unique_ptr<SaslMechanism> MakeScramSha256ForTest(
    CredentialStore& store, std::string server_nonce) {
  return std::make_unique<ScramSha256Mechanism>(store, std::move(server_nonce));
}

}  // namespace tern::auth
