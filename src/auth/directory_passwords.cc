// Password checks against the account directory: Argon2id verification
// with equal cost for unknown users, and the SCRAM-SHA-256 keys for SASL.
#include <sodium.h>
#include <sqlite3.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "auth/directory.h"
#include "auth/directory_impl.h"
#include "auth/sasl.h"
#include "common/mutex.h"
#include "common/sqlite_util.h"

namespace tern::auth {
namespace {

using internal::BindText;
using internal::ColumnBlob;
using internal::ColumnText;
using internal::DbError;
using internal::HashPassword;
using internal::kMaxPasswordLength;
using internal::Prepare;

}  // namespace

Result<bool> Directory::VerifyPassword(const std::string& address,
                                       const std::string& password) {
  auto account = Authenticate(address, password);
  if (!account) return tl::unexpected(account.error());
  return account->has_value();
}

Result<std::optional<std::string>> Directory::Authenticate(
    const std::string& address, const std::string& password) {
  std::optional<std::pair<std::string, std::string>> row;  // address, hash
  {
    MutexLock lock(impl_->db_mu);
    sqlite3* db = impl_->db.get();
    auto stmt =
        Prepare(db, "SELECT address, password FROM accounts WHERE address = ?");
    if (!stmt) return tl::unexpected(stmt.error());
    BindText(stmt->get(), 1, address);
    int rc = sqlite3_step(stmt->get());
    if (rc == SQLITE_ROW) {
      row.emplace(ColumnText(stmt->get(), 0), ColumnText(stmt->get(), 1));
    } else if (rc != SQLITE_DONE) {
      return Err(DbError(db, "reading password"));
    }
  }
  // Too long to be anyone's password (they are refused when set); not worth
  // the hashing work.
  if (password.size() > kMaxPasswordLength) return std::nullopt;
  // The slow check runs without the lock so lookups are not held up.
  if (!row) {
    std::call_once(impl_->dummy_once, [this] {
      auto dummy = HashPassword("tern-dummy-password");
      if (dummy) impl_->dummy_hash = *dummy;
    });
    if (!impl_->dummy_hash.empty() &&
        crypto_pwhash_str_verify(impl_->dummy_hash.c_str(), password.data(),
                                 password.size()) == 0) {
      // Cannot match in practice; the call is only there for its timing.
    }
    return std::nullopt;
  }
  if (crypto_pwhash_str_verify(row->second.c_str(), password.data(),
                               password.size()) != 0) {
    return std::nullopt;
  }
  return std::move(row->first);
}

Result<std::optional<std::pair<std::string, ScramCredentials>>>
Directory::ScramLookup(const std::string& address) {
  MutexLock lock(impl_->db_mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(db,
                      "SELECT address, scram_salt, scram_iterations,"
                      " scram_stored_key, scram_server_key"
                      " FROM accounts WHERE address = ?");
  if (!stmt) return tl::unexpected(stmt.error());
  BindText(stmt->get(), 1, address);
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_DONE) return std::nullopt;
  if (rc != SQLITE_ROW) return Err(DbError(db, "reading SCRAM keys"));
  sqlite3_stmt* row = stmt->get();
  if (sqlite3_column_type(row, 1) == SQLITE_NULL) {
    return std::nullopt;  // password last set by schema 1
  }
  ScramCredentials credentials;
  credentials.salt = ColumnBlob(row, 1);
  credentials.iterations = static_cast<uint32_t>(sqlite3_column_int64(row, 2));
  credentials.stored_key = ColumnBlob(row, 3);
  credentials.server_key = ColumnBlob(row, 4);
  return std::make_pair(ColumnText(row, 0), std::move(credentials));
}

}  // namespace tern::auth
