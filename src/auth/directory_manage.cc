// Managing the account directory (the `tern user|alias|grant` commands):
// checking addresses, patterns and passwords, then writing accounts,
// aliases and grants, each change in one transaction.
#include <sodium.h>
#include <sqlite3.h>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "auth/directory.h"
#include "auth/directory_impl.h"
#include "auth/sasl.h"
#include "common/mutex.h"
#include "common/sqlite_util.h"
#include "common/strings.h"

namespace tern::auth {
namespace internal {
namespace {

// The local part becomes a mailbox directory name on disk, which is why
// '/', leading dots and ".." are refused on top of what SMTP would allow.
std::string CheckLocalPart(std::string_view local) {
  if (local.empty()) return "empty local part";
  if (local.size() > 64) return "local part longer than 64 octets";
  for (unsigned char c : local) {
    if (c < 0x20 || c == 0x7f) return "control character in local part";
    if (c == ' ') return "whitespace in local part";
    if (c == '/') return "'/' in local part";
  }
  if (local.front() == '.') return "local part starts with '.'";
  if (local.find("..") != std::string_view::npos) return "'..' in local part";
  return "";
}

// Host names (letters, digits, '-', UTF-8 for IDNs) or an address literal.
std::string CheckDomain(std::string_view domain) {
  if (domain.empty()) return "empty domain";
  if (domain.size() > 255) return "domain longer than 255 octets";
  if (domain.front() == '[') {
    if (domain.back() != ']' || domain.size() < 3) return "bad address literal";
    for (unsigned char c : domain.substr(1, domain.size() - 2)) {
      if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\') {
        return "bad address literal";
      }
    }
    return "";
  }
  for (const std::string& label : Split(domain, '.')) {
    if (label.empty() || label.size() > 63) return "bad domain label";
    if (label.front() == '-' || label.back() == '-') return "bad domain label";
    for (unsigned char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '-' || c >= 0x80;
      if (!ok) return "bad character in domain";
    }
  }
  return "";
}

// Validates "local@domain" and returns its canonical form (domain lower
// case, local part untouched).
Result<Address> ParseAddress(std::string_view address) {
  std::string shown(address);
  size_t at = address.find('@');
  if (at == std::string_view::npos ||
      address.find('@', at + 1) != std::string_view::npos) {
    return Err("invalid address \"" + shown + "\": expected exactly one '@'");
  }
  Address parts{std::string(address.substr(0, at)),
                ToLower(address.substr(at + 1))};
  std::string reason = CheckLocalPart(parts.local);
  if (reason.empty()) reason = CheckDomain(parts.domain);
  if (!reason.empty()) {
    return Err("invalid address \"" + shown + "\": " + reason);
  }
  return parts;
}

Result<void> CheckPassword(const std::string& password) {
  if (password.empty()) return Err("password must not be empty");
  if (password.size() > kMaxPasswordLength) return Err("password too long");
  if (password.find('\0') != std::string::npos) {
    return Err("password must not contain NUL");
  }
  return {};
}

// A grant pattern in stored form: "*@domain" or an address, domain lower
// case in both.
Result<std::string> CanonicalPattern(std::string_view pattern) {
  if (pattern.substr(0, 2) == "*@") {
    std::string domain = ToLower(pattern.substr(2));
    if (std::string reason = CheckDomain(domain); !reason.empty()) {
      return Err("invalid pattern \"" + std::string(pattern) + "\": " + reason);
    }
    return "*@" + domain;
  }
  auto parts = ParseAddress(pattern);
  if (!parts) {
    return Err(parts.error().message +
               " (a pattern is an address or *@domain)");
  }
  return parts->local + "@" + parts->domain;
}

}  // namespace

Result<std::string> HashPassword(const std::string& password) {
  if (auto ok = CheckPassword(password); !ok) return tl::unexpected(ok.error());
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, password.data(), password.size(),
                        crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
    return Err("password hashing failed (out of memory)");
  }
  return std::string(hash);
}

}  // namespace internal

namespace {

using internal::BindBlob;
using internal::BindText;
using internal::CanonicalPattern;
using internal::CheckDomain;
using internal::ColumnText;
using internal::DbError;
using internal::HashPassword;
using internal::ParseAddress;
using internal::Prepare;
using internal::Transaction;

}  // namespace

Result<void> Directory::AddUser(const std::string& address,
                                const std::string& password) {
  auto parts = ParseAddress(address);
  if (!parts) return tl::unexpected(parts.error());
  if (!impl_->IsLocal(parts->domain)) {
    return Err("cannot add " + address + ": " + parts->domain +
               " is not a local domain");
  }
  std::string canonical = parts->local + "@" + parts->domain;
  // Hash before taking the lock: Argon2id is deliberately slow.
  auto hash = HashPassword(password);
  if (!hash) return tl::unexpected(hash.error());
  ScramCredentials scram = MakeScramCredentials(password);

  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto stmt =
      Prepare(db,
              "INSERT INTO accounts (address, password, created, scram_salt,"
              " scram_iterations, scram_stored_key, scram_server_key)"
              " VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (!stmt) return tl::unexpected(stmt.error());
  BindText(stmt->get(), 1, canonical);
  BindText(stmt->get(), 2, *hash);
  sqlite3_bind_int64(stmt->get(), 3, static_cast<int64_t>(std::time(nullptr)));
  BindBlob(stmt->get(), 4, scram.salt);
  sqlite3_bind_int64(stmt->get(), 5, scram.iterations);
  BindBlob(stmt->get(), 6, scram.stored_key);
  BindBlob(stmt->get(), 7, scram.server_key);
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_CONSTRAINT) {
    return Err("user " + canonical + " already exists");
  }
  if (rc != SQLITE_DONE) return Err(DbError(db, "adding user"));
  impl_->AfterWriteLocked();
  return {};
}

Result<void> Directory::DeleteUser(const std::string& address) {
  // No syntax or domain check: a row must stay deletable even after its
  // domain left the configuration.
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto txn = Transaction::Begin(db, true);
  if (!txn) return tl::unexpected(txn.error());
  auto stmt = Prepare(db, "DELETE FROM accounts WHERE address = ?");
  if (!stmt) return tl::unexpected(stmt.error());
  BindText(stmt->get(), 1, address);
  if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
    return Err(DbError(db, "deleting user"));
  }
  if (sqlite3_changes(db) == 0) return Err("no such user " + address);
  // A later account of the same name must not inherit the grants.
  auto grants = Prepare(db, "DELETE FROM grants WHERE account = ?");
  if (!grants) return tl::unexpected(grants.error());
  BindText(grants->get(), 1, address);
  if (sqlite3_step(grants->get()) != SQLITE_DONE) {
    return Err(DbError(db, "deleting grants"));
  }
  if (auto ok = txn->Commit(); !ok) return ok;
  impl_->AfterWriteLocked();
  return {};
}

Result<void> Directory::SetPassword(const std::string& address,
                                    const std::string& password) {
  auto hash = HashPassword(password);
  if (!hash) return tl::unexpected(hash.error());
  ScramCredentials scram = MakeScramCredentials(password);
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(db,
                      "UPDATE accounts SET password = ?, scram_salt = ?,"
                      " scram_iterations = ?, scram_stored_key = ?,"
                      " scram_server_key = ? WHERE address = ?");
  if (!stmt) return tl::unexpected(stmt.error());
  BindText(stmt->get(), 1, *hash);
  BindBlob(stmt->get(), 2, scram.salt);
  sqlite3_bind_int64(stmt->get(), 3, scram.iterations);
  BindBlob(stmt->get(), 4, scram.stored_key);
  BindBlob(stmt->get(), 5, scram.server_key);
  BindText(stmt->get(), 6, address);
  if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
    return Err(DbError(db, "setting password"));
  }
  if (sqlite3_changes(db) == 0) return Err("no such user " + address);
  return {};
}

Result<std::vector<Account>> Directory::ListUsers() {
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(
      db,
      "SELECT address, created FROM accounts ORDER BY address COLLATE NOCASE");
  if (!stmt) return tl::unexpected(stmt.error());
  std::vector<Account> accounts;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    accounts.push_back(
        {ColumnText(stmt->get(), 0), sqlite3_column_int64(stmt->get(), 1)});
  }
  if (rc != SQLITE_DONE) return Err(DbError(db, "listing users"));
  return accounts;
}

Result<void> Directory::AddAlias(const std::string& alias,
                                 const std::vector<std::string>& targets) {
  std::string canonical;
  if (!alias.empty() && alias.front() == '@') {
    // Catch-all for a whole domain.
    std::string domain = ToLower(std::string_view(alias).substr(1));
    if (std::string reason = CheckDomain(domain); !reason.empty()) {
      return Err("invalid alias \"" + alias + "\": " + reason);
    }
    canonical = "@" + domain;
    if (!impl_->IsLocal(domain)) {
      return Err("cannot add alias " + alias + ": " + domain +
                 " is not a local domain");
    }
  } else {
    auto parts = ParseAddress(alias);
    if (!parts) return tl::unexpected(parts.error());
    if (!impl_->IsLocal(parts->domain)) {
      return Err("cannot add alias " + alias + ": " + parts->domain +
                 " is not a local domain");
    }
    canonical = parts->local + "@" + parts->domain;
  }
  if (targets.empty()) return Err("alias " + canonical + " needs a target");

  std::vector<std::string> clean;
  std::unordered_set<std::string> seen;
  for (const std::string& target : targets) {
    auto parts = ParseAddress(target);
    if (!parts) return tl::unexpected(parts.error());
    std::string normal = parts->local + "@" + parts->domain;
    if (seen.insert(ToLower(normal)).second) clean.push_back(normal);
  }

  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto txn = Transaction::Begin(db, true);
  if (!txn) return tl::unexpected(txn.error());
  auto exists = Prepare(db, "SELECT 1 FROM aliases WHERE alias = ? LIMIT 1");
  if (!exists) return tl::unexpected(exists.error());
  BindText(exists->get(), 1, canonical);
  int rc = sqlite3_step(exists->get());
  if (rc == SQLITE_ROW) {
    return Err("alias " + canonical +
               " already exists (delete it first to change its targets)");
  }
  if (rc != SQLITE_DONE) return Err(DbError(db, "adding alias"));

  auto insert =
      Prepare(db, "INSERT INTO aliases (alias, target) VALUES (?, ?)");
  if (!insert) return tl::unexpected(insert.error());
  for (const std::string& target : clean) {
    sqlite3_reset(insert->get());
    BindText(insert->get(), 1, canonical);
    BindText(insert->get(), 2, target);
    if (sqlite3_step(insert->get()) != SQLITE_DONE) {
      return Err(DbError(db, "adding alias"));
    }
  }
  if (auto ok = txn->Commit(); !ok) return ok;
  impl_->AfterWriteLocked();
  return {};
}

Result<void> Directory::DeleteAlias(const std::string& alias) {
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(db, "DELETE FROM aliases WHERE alias = ?");
  if (!stmt) return tl::unexpected(stmt.error());
  BindText(stmt->get(), 1, alias);
  if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
    return Err(DbError(db, "deleting alias"));
  }
  if (sqlite3_changes(db) == 0) return Err("no such alias " + alias);
  impl_->AfterWriteLocked();
  return {};
}

Result<std::vector<Alias>> Directory::ListAliases() {
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  // Grouped by alias, targets in the order they were given.
  auto stmt = Prepare(db,
                      "SELECT alias, target FROM aliases "
                      "ORDER BY alias COLLATE NOCASE, rowid");
  if (!stmt) return tl::unexpected(stmt.error());
  std::vector<Alias> aliases;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    std::string alias = ColumnText(stmt->get(), 0);
    if (aliases.empty() || !IEquals(aliases.back().alias, alias)) {
      aliases.push_back({alias, {}});
    }
    aliases.back().targets.push_back(ColumnText(stmt->get(), 1));
  }
  if (rc != SQLITE_DONE) return Err(DbError(db, "listing aliases"));
  return aliases;
}

Result<void> Directory::SetQuota(const std::string& account,
                                 std::optional<uint64_t> octets) {
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto txn = Transaction::Begin(db, true);
  if (!txn) return tl::unexpected(txn.error());
  auto update = Prepare(db, "UPDATE accounts SET quota = ? WHERE address = ?");
  if (!update) return tl::unexpected(update.error());
  if (octets) {
    sqlite3_bind_int64(update->get(), 1, static_cast<sqlite3_int64>(*octets));
  } else {
    sqlite3_bind_null(update->get(), 1);
  }
  BindText(update->get(), 2, account);
  if (sqlite3_step(update->get()) != SQLITE_DONE) {
    return Err(DbError(db, "setting quota"));
  }
  if (sqlite3_changes(db) == 0) return Err("no such user " + account);
  if (auto ok = txn->Commit(); !ok) return ok;
  impl_->AfterWriteLocked();
  return {};
}

std::optional<uint64_t> Directory::QuotaOf(const std::string& account) {
  RefreshIfChanged();
  auto snapshot = impl_->Current();
  auto it = snapshot->quotas.find(ToLower(account));
  if (it == snapshot->quotas.end()) return std::nullopt;
  return it->second;
}

Result<void> Directory::Grant(const std::string& account,
                              const std::string& pattern) {
  auto canonical_pattern = CanonicalPattern(pattern);
  if (!canonical_pattern) return tl::unexpected(canonical_pattern.error());

  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto txn = Transaction::Begin(db, true);
  if (!txn) return tl::unexpected(txn.error());
  auto find = Prepare(db, "SELECT address FROM accounts WHERE address = ?");
  if (!find) return tl::unexpected(find.error());
  BindText(find->get(), 1, account);
  int rc = sqlite3_step(find->get());
  if (rc == SQLITE_DONE) return Err("no such user " + account);
  if (rc != SQLITE_ROW) return Err(DbError(db, "adding grant"));
  std::string canonical_account = ColumnText(find->get(), 0);

  auto insert =
      Prepare(db, "INSERT INTO grants (account, pattern) VALUES (?, ?)");
  if (!insert) return tl::unexpected(insert.error());
  BindText(insert->get(), 1, canonical_account);
  BindText(insert->get(), 2, *canonical_pattern);
  rc = sqlite3_step(insert->get());
  if (rc == SQLITE_CONSTRAINT) {
    return Err(canonical_account + " already has grant " + *canonical_pattern);
  }
  if (rc != SQLITE_DONE) return Err(DbError(db, "adding grant"));
  if (auto ok = txn->Commit(); !ok) return ok;
  impl_->AfterWriteLocked();
  return {};
}

Result<void> Directory::Revoke(const std::string& account,
                               const std::string& pattern) {
  // No validation: whatever is stored must stay removable.
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto stmt =
      Prepare(db, "DELETE FROM grants WHERE account = ? AND pattern = ?");
  if (!stmt) return tl::unexpected(stmt.error());
  BindText(stmt->get(), 1, account);
  BindText(stmt->get(), 2, pattern);
  if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
    return Err(DbError(db, "revoking grant"));
  }
  if (sqlite3_changes(db) == 0) {
    return Err("no grant " + pattern + " for " + account);
  }
  impl_->AfterWriteLocked();
  return {};
}

}  // namespace tern::auth
