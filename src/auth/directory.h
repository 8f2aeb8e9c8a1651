// The account directory: mailboxes, passwords (Argon2id and SCRAM keys),
// aliases and sender grants, stored in an embedded SQLite database in the
// data folder. The server keeps an in-memory snapshot and notices changes
// made by other processes (`tern user add` while the server runs) without a
// restart.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "auth/sasl.h"
#include "common/result.h"

namespace tern::auth {

struct Account {
  std::string address;  // canonical: local part as given, domain lower case
  int64_t created = 0;  // unix seconds
};

struct Alias {
  std::string alias;  // "list@example.test" or "@example.test" (catch-all)
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

// Where mail for addresses that name no account or alias goes when they
// must still reach a person: the role addresses every mail domain has to
// accept (RFC 5321 4.5.1 postmaster, RFC 2142 abuse; MAILER-DAEMON, where
// replies to bounces land) and the Unix accounts of the machine (root,
// cron's MAILTO, daemons), as /etc/aliases sends them to an administrator.
struct LocalRouting {
  // The config's `postmaster`: a local or remote address. Empty, or a local
  // address that leads nowhere: the fallback mailbox postmaster@<first
  // local domain> (its Maildir is made on first delivery).
  std::string postmaster;
  std::vector<std::string> system_users;  // login names, matched ignoring case

  // `postmaster` plus every name of the passwd database.
  static LocalRouting FromSystem(std::string postmaster);
};

class Directory {
 public:
  // Opens (creating if needed) `db_path`. `local_domains` come from config.
  static Result<std::unique_ptr<Directory>> Open(
      const std::string& db_path, std::vector<std::string> local_domains,
      LocalRouting routing = {});
  // Replaces the routing of role addresses and system users (SIGHUP).
  void SetRouting(LocalRouting routing);
  // An address at one of our domains that no account or alias names may
  // still lead somewhere: the SRS address of mail we forwarded, on its way
  // back to the original sender as a bounce. The hook is asked first for
  // local parts that look like SRS ("SRS0=", "SRS1="); it returns the
  // remote address, or nullopt for a forged or expired one (then: unknown).
  using ForwardingHook =
      std::function<std::optional<std::string>(const std::string& address)>;
  void SetForwardingHook(ForwardingHook hook);
  // The mailbox that takes postmaster mail when no `postmaster` is set (or
  // it leads nowhere); empty when there is no local domain.
  std::string FallbackPostmaster() const;
  ~Directory();

  // --- management (CLI) ---
  // Setting a password stores its Argon2id hash and SCRAM-SHA-256 keys.
  Result<void> AddUser(const std::string& address, const std::string& password);
  // Also drops the account's grants.
  Result<void> DeleteUser(const std::string& address);
  Result<void> SetPassword(const std::string& address,
                           const std::string& password);
  Result<std::vector<Account>> ListUsers();
  Result<void> AddAlias(const std::string& alias,
                        const std::vector<std::string>& targets);
  Result<void> DeleteAlias(const std::string& alias);
  Result<std::vector<Alias>> ListAliases();

  // Lets `account` use `pattern` as a sender address (MAIL FROM, From:,
  // Sender:) on top of what it owns anyway. A pattern is an exact address
  // or "*@domain" (any local part at that domain; the domain need not be
  // local). Granting the same pattern twice is an error, as is revoking one
  // that is not there.
  Result<void> Grant(const std::string& account, const std::string& pattern);
  // The account's own storage quota in octets (0: unlimited), or nullopt to
  // use the config's [quota] storage (RFC 9208 STORAGE).
  Result<void> SetQuota(const std::string& account, std::optional<uint64_t> octets);
  // nullopt: no quota of its own (or no such account).
  std::optional<uint64_t> QuotaOf(const std::string& account);
  Result<void> Revoke(const std::string& account, const std::string& pattern);

  // Every address `account` may send as: its own address first, then the
  // aliases whose expansion reaches it (directly or through other aliases;
  // catch-alls excluded), sorted, then its grants as written. Error if there
  // is no such account.
  Result<std::vector<std::string>> OwnedAddresses(const std::string& account);

  // True when the password matches the stored Argon2id hash.
  Result<bool> VerifyPassword(const std::string& address,
                              const std::string& password);
  // Account lookup is case-insensitive; on the right password returns the
  // account's canonical address, otherwise nullopt. Unknown users cost the
  // same Argon2id work as known ones. CPU-heavy (~50-100 ms): callers on
  // io threads block that thread for as long.
  Result<std::optional<std::string>> Authenticate(const std::string& address,
                                                  const std::string& password);
  // Canonical address and SCRAM-SHA-256 keys of an account (case-insensitive
  // lookup); nullopt for unknown accounts and for accounts whose password
  // was set before the directory kept SCRAM keys.
  Result<std::optional<std::pair<std::string, ScramCredentials>>> ScramLookup(
      const std::string& address);

  // --- lookups (server; thread-safe, from the in-memory snapshot) ---
  // Address is "local@domain" as received (local part may be quoted form
  // content, UTF-8). Domain compare is case-insensitive, account lookup is
  // case-insensitive, "user+tag" falls back to "user". Aliases expand
  // recursively (depth-limited, loops cut). A local part with neither an
  // account nor an alias that is a role or system user name (LocalRouting)
  // goes to the postmaster; then the catch-all "@domain"; else unknown.
  Resolution Resolve(const std::string& address);
  bool IsLocalDomain(const std::string& domain) const;
  // Whether the authenticated `account` may use `address` as a sender:
  // its own address, an alias reaching it, or a grant; "user+tag@domain"
  // when "user@domain" is owned. Account and domain compare
  // case-insensitively. The null sender (empty address) is never owned.
  bool Owns(const std::string& account, const std::string& address);

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
