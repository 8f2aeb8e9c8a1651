// A credential store for the fuzz targets: one account, alice@example.test
// with password "secret" (SCRAM keys derived once). It records whether a
// password check really succeeded, so targets can assert that no success
// is ever reported without one.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "auth/sasl.h"
#include "common/strings.h"

namespace tern::fuzz {

inline constexpr const char* kAccount = "alice@example.test";
inline constexpr const char* kPassword = "secret";
inline constexpr const char* kScramSalt = "fuzz-salt-16byte";

inline const auth::ScramCredentials& AliceScram() {
  static const auth::ScramCredentials creds =
      auth::MakeScramCredentialsWithSalt(kPassword, kScramSalt, 4096);
  return creds;
}

class FakeCredentials : public auth::CredentialStore {
 public:
  auth::PasswordCheck CheckPassword(
      const std::string& user, const std::string& password) override {
    ++checks;
    if (Known(user) && password == kPassword) {
      ++granted;
      return std::string(kAccount);
    }
    return std::nullopt;
  }
  auth::ScramAnswer Scram(
      const std::string& user) override {
    ++scram_lookups;
    if (!Known(user)) return std::nullopt;
    return std::make_pair(std::string(kAccount), AliceScram());
  }

  int checks = 0;
  int granted = 0;
  int scram_lookups = 0;

 private:
  static bool Known(const std::string& user) {
    return IEquals(user, kAccount) || IEquals(user, "alice");
  }
};

}  // namespace tern::fuzz
