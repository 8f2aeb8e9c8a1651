// The account directory's insides, shared by the files that implement it
// (not for use outside src/auth/). The directory lives in SQLite:
// management calls write the database, lookups read an immutable in-memory
// snapshot that is swapped whenever the database changes (here or in
// another process such as `tern user add`). Password hashes and SCRAM keys
// stay in the database, never in the snapshot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "auth/directory.h"
#include "common/mutex.h"
#include "common/result.h"
#include "common/sqlite_util.h"
#include "common/thread_annotations.h"

namespace tern::auth {
namespace internal {

// The SQLite helpers live in common/ (the IMAP mail index uses them too).
using sqlite::BindBlob;
using sqlite::BindText;
using sqlite::ColumnBlob;
using sqlite::ColumnText;
using sqlite::DbError;
using sqlite::DbPtr;
using sqlite::Exec;
using sqlite::Prepare;
using sqlite::StmtPtr;
using sqlite::Transaction;

// Bounds the work an overlong password can cause in the hash function.
inline constexpr size_t kMaxPasswordLength = 4096;

struct Address {
  std::string local;
  std::string domain;  // lower case
};

// Immutable once published; readers hold a shared_ptr so a refresh never
// changes data under a Resolve in progress.
struct Snapshot {
  // lower-cased address -> canonical address as stored
  std::unordered_map<std::string, std::string> accounts;
  // lower-cased alias ("list@d" or "@d") -> targets in insertion order
  std::unordered_map<std::string, std::vector<std::string>> aliases;
  // lower-cased alias -> alias as stored
  std::unordered_map<std::string, std::string> alias_names;
  // lower-cased account -> grant patterns as stored, in insertion order
  std::unordered_map<std::string, std::vector<std::string>> grants;
  // lower-cased account -> storage quota in octets (0: unlimited), for
  // the accounts that have their own
  std::unordered_map<std::string, uint64_t> quotas;
};

// Role addresses and system users, ready for lookups (LocalRouting).
struct Roles {
  std::string postmaster;                 // as configured, may be empty
  std::string fallback;                   // postmaster@<first local domain>
  std::unordered_set<std::string> names;  // lower case
};

// An Argon2id hash of a password that passes the length and NUL checks
// (directory_manage.cc).
Result<std::string> HashPassword(const std::string& password);

}  // namespace internal

struct Directory::Impl {
  std::vector<std::string> domains;  // lower case, config order
  std::unordered_set<std::string> domain_set;

  // Guards the connection and everything read through it (SQLite runs
  // with SQLITE_OPEN_NOMUTEX: this is its only lock).
  Mutex db_mu;
  internal::DbPtr db GUARDED_BY(db_mu);
  // Declared after db: finalized before the connection closes.
  internal::StmtPtr data_version_stmt GUARDED_BY(db_mu);
  int64_t data_version GUARDED_BY(db_mu) = -1;

  // Guards only the swap of the two pointers: readers copy a pointer under
  // a shared lock and then read the immutable object without any lock.
  mutable SharedMutex snapshot_mu;
  std::shared_ptr<const internal::Snapshot> snapshot GUARDED_BY(snapshot_mu) =
      std::make_shared<internal::Snapshot>();
  std::shared_ptr<const internal::Roles> roles GUARDED_BY(snapshot_mu) =
      std::make_shared<internal::Roles>();
  std::shared_ptr<const Directory::ForwardingHook> forwarding
      GUARDED_BY(snapshot_mu);

  // Hash checked against when the user does not exist, so that a wrong
  // address takes as long as a wrong password.
  std::once_flag dummy_once;
  std::string dummy_hash;

  std::shared_ptr<const internal::Snapshot> Current() const
      EXCLUDES(snapshot_mu) {
    ReaderMutexLock lock(snapshot_mu);
    return snapshot;
  }

  std::shared_ptr<const internal::Roles> CurrentRoles() const
      EXCLUDES(snapshot_mu) {
    ReaderMutexLock lock(snapshot_mu);
    return roles;
  }

  std::shared_ptr<const Directory::ForwardingHook> CurrentForwarding() const
      EXCLUDES(snapshot_mu) {
    ReaderMutexLock lock(snapshot_mu);
    return forwarding;
  }

  // Role addresses and system users (directory_resolve.cc).
  void SetRoles(LocalRouting routing) EXCLUDES(snapshot_mu);

  // The database (directory_store.cc).
  Result<int64_t> DataVersionLocked() REQUIRES(db_mu);
  Result<void> LoadLocked() REQUIRES(db_mu) EXCLUDES(snapshot_mu);
  void AfterWriteLocked() REQUIRES(db_mu) EXCLUDES(snapshot_mu);

  bool IsLocal(const std::string& lower_domain) const {
    return domain_set.count(lower_domain) != 0;
  }
};

}  // namespace tern::auth
