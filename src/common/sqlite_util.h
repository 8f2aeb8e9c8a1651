// Small RAII helpers over the SQLite C API (account directory, IMAP index):
// owning handles, prepared statements, binding and reading columns, errors
// as tern::Error, and a transaction that rolls back unless committed.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"

namespace tern::sqlite {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Opens (creating if needed) a database that only its owner may read
// (password hashes, greylist correspondents): the file is made with mode
// 0600 before SQLite opens it, since SQLite would follow the umask and
// give its -wal/-shm files the same mode. NOMUTEX: the caller serializes
// every use of the connection. The error is SQLite's or the system's,
// without the path.
Result<DbPtr> OpenPrivate(const std::string& path, int busy_timeout_ms);

// "what: <SQLite's last error on db>".
std::string DbError(sqlite3* db, std::string_view what);
Result<void> Exec(sqlite3* db, const char* sql);
Result<StmtPtr> Prepare(sqlite3* db, const char* sql);
void BindText(sqlite3_stmt* stmt, int index, std::string_view text);
void BindBlob(sqlite3_stmt* stmt, int index, std::string_view bytes);
std::string ColumnBlob(sqlite3_stmt* stmt, int column);
std::string ColumnText(sqlite3_stmt* stmt, int column);

// Rolls back unless Commit() succeeded, so every early error return leaves
// the database unchanged.
class Transaction {
 public:
  static Result<Transaction> Begin(sqlite3* db, bool write) {
    auto result = Exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
    if (!result) return tl::unexpected(result.error());
    return Transaction(db);
  }
  Transaction(Transaction&& other) noexcept
      : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (db_ != nullptr) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  Result<void> Commit() {
    auto result = Exec(db_, "COMMIT");
    if (result) db_ = nullptr;
    return result;
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace tern::sqlite
