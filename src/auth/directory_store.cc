// The account directory's SQLite storage: opening the database (private
// mode, WAL), the schema and its migrations, loading the snapshot that
// lookups read, and noticing changes made by other processes.
#include <fcntl.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "auth/directory.h"
#include "auth/directory_impl.h"
#include "common/mutex.h"
#include "common/sqlite_util.h"
#include "common/strings.h"

namespace tern::auth {
namespace {

using internal::ColumnText;
using internal::DbError;
using internal::Exec;
using internal::Prepare;
using internal::Snapshot;
using internal::Transaction;

constexpr int kBusyTimeoutMs = 5000;
// 1: accounts, aliases. 2: SCRAM-SHA-256 keys on accounts, grants.
constexpr int kSchemaVersion = 3;

}  // namespace

Result<int64_t> Directory::Impl::DataVersionLocked() {
  sqlite3_stmt* stmt = data_version_stmt.get();
  int rc = sqlite3_step(stmt);
  int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_reset(stmt);
  if (rc != SQLITE_ROW) return Err(DbError(db.get(), "data_version"));
  return version;
}

// Reads all tables in one read transaction so the snapshot is consistent.
Result<void> Directory::Impl::LoadLocked() {
  auto txn = Transaction::Begin(db.get(), false);
  if (!txn) return tl::unexpected(txn.error());
  auto version = DataVersionLocked();
  if (!version) return tl::unexpected(version.error());

  auto fresh = std::make_shared<Snapshot>();
  auto accounts = Prepare(db.get(), "SELECT address, quota FROM accounts");
  if (!accounts) return tl::unexpected(accounts.error());
  int rc;
  while ((rc = sqlite3_step(accounts->get())) == SQLITE_ROW) {
    std::string address = ColumnText(accounts->get(), 0);
    if (sqlite3_column_type(accounts->get(), 1) != SQLITE_NULL) {
      fresh->quotas.emplace(ToLower(address),
                            static_cast<uint64_t>(sqlite3_column_int64(accounts->get(), 1)));
    }
    fresh->accounts.emplace(ToLower(address), address);
  }
  if (rc != SQLITE_DONE) return Err(DbError(db.get(), "reading accounts"));

  auto aliases =
      Prepare(db.get(), "SELECT alias, target FROM aliases ORDER BY rowid");
  if (!aliases) return tl::unexpected(aliases.error());
  while ((rc = sqlite3_step(aliases->get())) == SQLITE_ROW) {
    std::string alias = ColumnText(aliases->get(), 0);
    std::string key = ToLower(alias);
    fresh->aliases[key].push_back(ColumnText(aliases->get(), 1));
    fresh->alias_names.emplace(std::move(key), std::move(alias));
  }
  if (rc != SQLITE_DONE) return Err(DbError(db.get(), "reading aliases"));

  auto grants =
      Prepare(db.get(), "SELECT account, pattern FROM grants ORDER BY rowid");
  if (!grants) return tl::unexpected(grants.error());
  while ((rc = sqlite3_step(grants->get())) == SQLITE_ROW) {
    fresh->grants[ToLower(ColumnText(grants->get(), 0))].push_back(
        ColumnText(grants->get(), 1));
  }
  if (rc != SQLITE_DONE) return Err(DbError(db.get(), "reading grants"));
  if (auto ok = txn->Commit(); !ok) return ok;

  data_version = *version;
  WriterMutexLock lock(snapshot_mu);
  snapshot = std::move(fresh);
  return {};
}

// After our own writes: PRAGMA data_version ignores this connection's
// commits, so reload explicitly. A failure only leaves a stale snapshot.
void Directory::Impl::AfterWriteLocked() {
  if (auto ok = LoadLocked(); !ok) {
    spdlog::warn("directory: reload after change failed: {}",
                 ok.error().message);
  }
}

Result<std::unique_ptr<Directory>> Directory::Open(
    const std::string& db_path, std::vector<std::string> local_domains,
    LocalRouting routing) {
  // Thread-safe and idempotent; needed before any other libsodium call.
  if (sodium_init() < 0) return Err("libsodium initialisation failed");

  auto impl = std::make_unique<Impl>();
  for (std::string& domain : local_domains) {
    domain = ToLower(domain);
    if (impl->domain_set.insert(domain).second) {
      impl->domains.push_back(domain);
    }
  }
  impl->SetRoles(std::move(routing));

  // The file holds password hashes: private (sqlite::OpenPrivate).
  auto opened = sqlite::OpenPrivate(db_path, kBusyTimeoutMs);
  if (!opened) return Err(db_path + ": " + opened.error().message);
  // Nobody else sees the Impl yet; the lock costs nothing and lets the
  // thread-safety analysis check the connection's uses here as well.
  MutexLock lock(impl->db_mu);
  impl->db = std::move(*opened);
  sqlite3* db = impl->db.get();
  // WAL lets `tern user add` write while the server reads.
  if (auto ok = Exec(db, "PRAGMA journal_mode=WAL"); !ok) {
    return Err(db_path + ": " + ok.error().message);
  }

  {
    auto txn = Transaction::Begin(db, true);
    if (!txn) return Err(db_path + ": " + txn.error().message);
    auto version = Prepare(db, "PRAGMA user_version");
    if (!version) return Err(db_path + ": " + version.error().message);
    int current = sqlite3_step(version->get()) == SQLITE_ROW
                      ? sqlite3_column_int(version->get(), 0)
                      : 0;
    version->reset();  // finalize: DDL below must not run under a reader
    if (current > kSchemaVersion) {
      return Err(db_path + ": database was created by a newer tern (schema " +
                 std::to_string(current) + ")");
    }
    if (current < 1) {
      auto ok = Exec(db,
                     "CREATE TABLE IF NOT EXISTS accounts ("
                     "  address TEXT NOT NULL UNIQUE COLLATE NOCASE,"
                     "  password TEXT NOT NULL,"
                     "  created INTEGER NOT NULL);"
                     "CREATE TABLE IF NOT EXISTS aliases ("
                     "  alias TEXT NOT NULL COLLATE NOCASE,"
                     "  target TEXT NOT NULL COLLATE NOCASE,"
                     "  UNIQUE (alias, target));");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (current < 2) {
      // Accounts from schema 1 keep NULL SCRAM keys until their password is
      // set again: the keys derive from the password, which only the
      // Argon2id hash remembers. PLAIN and LOGIN work for them meanwhile.
      auto ok = Exec(db,
                     "ALTER TABLE accounts ADD COLUMN scram_salt BLOB;"
                     "ALTER TABLE accounts ADD COLUMN scram_iterations INTEGER;"
                     "ALTER TABLE accounts ADD COLUMN scram_stored_key BLOB;"
                     "ALTER TABLE accounts ADD COLUMN scram_server_key BLOB;"
                     "CREATE TABLE IF NOT EXISTS grants ("
                     "  account TEXT NOT NULL COLLATE NOCASE,"
                     "  pattern TEXT NOT NULL COLLATE NOCASE,"
                     "  UNIQUE (account, pattern));");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (current < 3) {
      // Per-account storage quota in octets; NULL: the config's default.
      auto ok = Exec(db, "ALTER TABLE accounts ADD COLUMN quota INTEGER;");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (current < kSchemaVersion) {
      auto ok = Exec(db, "PRAGMA user_version = 3");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (auto ok = txn->Commit(); !ok) {
      return Err(db_path + ": " + ok.error().message);
    }
  }

  auto stmt = Prepare(db, "PRAGMA data_version");
  if (!stmt) return Err(db_path + ": " + stmt.error().message);
  impl->data_version_stmt = std::move(*stmt);
  if (auto ok = impl->LoadLocked(); !ok) {
    return Err(db_path + ": " + ok.error().message);
  }

  std::unique_ptr<Directory> directory(new Directory());
  directory->impl_ = std::move(impl);
  return directory;
}

Directory::~Directory() = default;

void Directory::RefreshIfChanged() {
  MutexLock lock(impl_->db_mu);
  auto version = impl_->DataVersionLocked();
  if (!version) {
    spdlog::warn("directory: {}", version.error().message);
    return;
  }
  if (*version == impl_->data_version) return;
  if (auto ok = impl_->LoadLocked(); !ok) {
    spdlog::warn("directory: reload failed, keeping old data: {}",
                 ok.error().message);
  }
}

Result<void> Directory::Reload() {
  MutexLock lock(impl_->db_mu);
  return impl_->LoadLocked();
}

}  // namespace tern::auth
