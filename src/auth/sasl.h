// Server side of SASL (RFC 4422) for SMTP AUTH (RFC 4954) and POP3 AUTH
// (RFC 5034): PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 (RFC 5802, RFC 7677).
// Sans-I/O: raw (base64-decoded) client messages in, raw challenges out;
// the protocol session does the base64 framing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"

namespace tern::auth {

// SCRAM-SHA-256 credentials stored beside the Argon2id hash (RFC 5802 3).
struct ScramCredentials {
  std::string salt;  // raw bytes
  uint32_t iterations = 0;
  std::string stored_key;  // raw 32 bytes: H(ClientKey)
  std::string server_key;  // raw 32 bytes: HMAC(SaltedPassword, "Server Key")
};

// Derives SCRAM credentials from a password (used when a password is set),
// with a fresh random 16-byte salt. The password is used as given: full
// SASLprep (RFC 4013) is not applied, which only matters for passwords with
// characters that NFKC or its mapping tables would change.
ScramCredentials MakeScramCredentials(std::string_view password,
                                      uint32_t iterations = 4096);
// The same with a chosen salt (tests, RFC 7677 3 example).
ScramCredentials MakeScramCredentialsWithSalt(std::string_view password,
                                              std::string_view salt,
                                              uint32_t iterations);

// Answers of the account store. An error (the directory could not be read)
// is a temporary failure, told apart from a wrong password: the client gets
// 454 4.7.0 (RFC 4954 6) or -ERR [SYS/TEMP] (RFC 3206 4), not a strike.
using PasswordCheck = Result<std::optional<std::string>>;
using ScramAnswer = Result<std::optional<std::pair<std::string, ScramCredentials>>>;

// What the mechanisms need from the account store.
class CredentialStore {
 public:
  virtual ~CredentialStore() = default;
  // Canonical account address when the password is right, nullopt otherwise.
  virtual PasswordCheck CheckPassword(const std::string& user,
                                      const std::string& password) = 0;
  // Canonical address and SCRAM credentials of an account, nullopt if none.
  virtual ScramAnswer Scram(const std::string& user) = 0;
};

struct SaslStep {
  enum class Kind {
    kChallenge,  // send `data` to the client (334 / "+ "), await its answer
    kSuccess,    // authenticated as `user`; `data` is optional final data
    kFailure,    // wrong credentials (535 5.7.8)
    kMalformed,  // protocol error in the client message (501 5.5.2)
    kTempFailure,  // the account store failed (454 4.7.0); not a strike
  };
  Kind kind = Kind::kFailure;
  std::string data;  // raw bytes
  std::string user;  // canonical account address on success
};

class SaslMechanism {
 public:
  virtual ~SaslMechanism() = default;
  // First step, with the initial response when the client sent one
  // (an empty optional means none; "=" on the wire is an empty string).
  virtual SaslStep Start(std::optional<std::string_view> initial) = 0;
  // Each later client message.
  virtual SaslStep Next(std::string_view response) = 0;
};

// "PLAIN", "LOGIN", "SCRAM-SHA-256" (case-insensitive); nullptr if unknown.
std::unique_ptr<SaslMechanism> MakeMechanism(std::string_view name,
                                             CredentialStore& store);

// SCRAM-SHA-256 whose server nonce part is `server_nonce` instead of fresh
// random bytes; only for tests that replay a known exchange.
std::unique_ptr<SaslMechanism> MakeScramSha256ForTest(CredentialStore& store,
                                                      std::string server_nonce);

// Space-separated mechanism list for EHLO / CAPA.
inline constexpr std::string_view kSaslMechanisms = "PLAIN LOGIN SCRAM-SHA-256";

}  // namespace tern::auth
