// SQLite helpers (account directory, IMAP mail index): errors, statements, binding
// and reading columns.
#include "common/sqlite_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tern::sqlite {

Result<DbPtr> OpenPrivate(const std::string& path, int busy_timeout_ms) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int error = errno;
    return Err(std::strerror(error), error);
  }
  ::close(fd);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  DbPtr db(raw);  // a handle comes back even on failure
  if (rc != SQLITE_OK) {
    return Err(raw != nullptr ? sqlite3_errmsg(raw) : "out of memory");
  }
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  return db;
}

std::string DbError(sqlite3* db, std::string_view what) {
  return std::string(what) + ": " + sqlite3_errmsg(db);
}

Result<void> Exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message != nullptr ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    return Err(std::string("database: ") + text);
  }
  return {};
}

Result<StmtPtr> Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    return Err(DbError(db, "database"));
  }
  return StmtPtr(raw);
}

void BindText(sqlite3_stmt* stmt, int index, std::string_view text) {
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()),
                    SQLITE_TRANSIENT);
}

void BindBlob(sqlite3_stmt* stmt, int index, std::string_view bytes) {
  sqlite3_bind_blob(stmt, index, bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_TRANSIENT);
}

std::string ColumnBlob(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  return data != nullptr
             ? std::string(
                   static_cast<const char*>(data),
                   static_cast<size_t>(sqlite3_column_bytes(stmt, column)))
             : std::string();
}

std::string ColumnText(sqlite3_stmt* stmt, int column) {
  const auto* text =
      reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  return text != nullptr
             ? std::string(text, static_cast<size_t>(
                                     sqlite3_column_bytes(stmt, column)))
             : std::string();
}

}  // namespace tern::sqlite
