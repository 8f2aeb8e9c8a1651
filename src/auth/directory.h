// The account directory: mailboxes, passwords and aliases, stored in an
// embedded SQLite database in the data folder. The server keeps an in-memory
// snapshot and notices changes made by other processes (`tern user add`
// while the server runs) without a restart.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/result.h"

namespace tern::auth {

struct Account {
  std::string address;  // canonical: local part as given, domain lower case
  int64_t created = 0;  // unix seconds
};

struct Alias {
  std::string alias;                 // "list@example.test" or "@example.test" (catch-all)
  std::vector<std::string> targets;  // local or remote addresses
};

// What an address resolves to for delivery.
struct Resolution {
  enum class Kind {
    kNotLocal,  // the domain is not one of ours
    kUnknown,   // our domain, but no such mailbox or alias
    kLocal,     // resolves to mailboxes and/or remote addresses
  };
  Kind kind = Kind::kNotLocal;
  std::vector<std::string> mailboxes;  // canonical account addresses
  std::vector<std::string> remote;     // non-local addresses (alias targets)
};

class Directory {
 public:
  // Opens (creating if needed) `db_path`. `local_domains` come from config.
  static Result<std::unique_ptr<Directory>> Open(
      const std::string& db_path, std::vector<std::string> local_domains);
  ~Directory();

  // --- management (CLI) ---
  Result<void> AddUser(const std::string& address, const std::string& password);
  Result<void> DeleteUser(const std::string& address);
  Result<void> SetPassword(const std::string& address, const std::string& password);
  Result<std::vector<Account>> ListUsers();
  Result<void> AddAlias(const std::string& alias, const std::vector<std::string>& targets);
  Result<void> DeleteAlias(const std::string& alias);
  Result<std::vector<Alias>> ListAliases();

  // True when the password matches the stored Argon2id hash.
  Result<bool> VerifyPassword(const std::string& address, const std::string& password);

  // --- lookups (server; thread-safe, from the in-memory snapshot) ---
  // Address is "local@domain" as received (local part may be quoted form
  // content, UTF-8). Domain compare is case-insensitive, account lookup is
  // case-insensitive, "user+tag" falls back to "user". Aliases expand
  // recursively (depth-limited, loops cut), catch-all "@domain" last.
  Resolution Resolve(const std::string& address);
  bool IsLocalDomain(const std::string& domain) const;

  // Re-reads the database if another process changed it (cheap check).
  void RefreshIfChanged();
  // Re-reads unconditionally (SIGHUP).
  Result<void> Reload();

 private:
  Directory() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::auth
