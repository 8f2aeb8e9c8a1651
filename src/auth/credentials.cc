// CredentialStore on the account directory. Errors are logged without the
// user's input beyond the name: passwords never reach a log.
#include "auth/credentials.h"

#include <spdlog/spdlog.h>

namespace tern::auth {

PasswordCheck DirectoryCredentials::CheckPassword(
    const std::string& user, const std::string& password) {
  auto account = directory_.Authenticate(user, password);
  if (!account) {
    spdlog::error("auth: password check failed: {}", account.error().message);
  }
  return account;
}

ScramAnswer
DirectoryCredentials::Scram(const std::string& user) {
  auto found = directory_.ScramLookup(user);
  if (!found) {
    spdlog::error("auth: SCRAM lookup failed: {}", found.error().message);
  }
  return found;
}

}  // namespace tern::auth
