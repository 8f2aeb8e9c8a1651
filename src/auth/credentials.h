// Adapts the account directory to the SASL mechanisms' CredentialStore, so
// SMTP and POP3 AUTH check passwords and SCRAM proofs against the accounts.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "auth/directory.h"
#include "auth/sasl.h"

namespace tern::auth {

// Thread-safe (the Directory is). Only real accounts log in: an alias or a
// "user+tag" form is not a login name. Database errors are logged and count
// as a failed login.
class DirectoryCredentials : public CredentialStore {
 public:
  explicit DirectoryCredentials(Directory& directory) : directory_(directory) {}

  // Argon2id verification: ~50-100 ms of CPU on the calling thread. Fine
  // for now; a busy server would move it to a worker pool.
  PasswordCheck CheckPassword(
      const std::string& user, const std::string& password) override;
  ScramAnswer Scram(
      const std::string& user) override;

 private:
  Directory& directory_;
};

}  // namespace tern::auth
