// The account directory on SQLite: management calls write the database,
// lookups read an immutable in-memory snapshot that is swapped whenever the
// database changes (here or in another process such as `tern user add`).
// Password hashes and SCRAM keys stay in the database, never in the snapshot.
#include "auth/directory.h"

#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/strings.h"

namespace tern::auth {
namespace {

constexpr int kBusyTimeoutMs = 5000;
// 1: accounts, aliases. 2: SCRAM-SHA-256 keys on accounts, grants.
constexpr int kSchemaVersion = 2;
// Alias chains deeper than this are almost certainly a configuration mistake.
constexpr int kMaxAliasDepth = 10;
// Bounds the work an overlong password can cause in the hash function.
constexpr size_t kMaxPasswordLength = 4096;

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

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

struct Address {
  std::string local;
  std::string domain;  // lower case
};

// Splits at the last '@' (a quoted local part may itself contain '@').
std::optional<Address> SplitAddress(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return std::nullopt;
  return Address{std::string(address.substr(0, at)),
                 ToLower(address.substr(at + 1))};
}

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
};

// Role addresses and system users, ready for lookups (LocalRouting).
struct Roles {
  std::string postmaster;           // as configured, may be empty
  std::string fallback;             // postmaster@<first local domain>
  std::unordered_set<std::string> names;  // lower case
};

// RFC 5321 4.5.1 (postmaster), RFC 2142 2 and 4 (abuse), and the sender
// name of our own bounces, where people reply to them.
constexpr std::string_view kRoleNames[] = {"postmaster", "abuse",
                                           "mailer-daemon"};

}  // namespace

struct Directory::Impl {
  std::vector<std::string> domains;  // lower case, config order
  std::unordered_set<std::string> domain_set;

  // Guards the connection and everything read through it.
  std::mutex db_mu;
  DbPtr db;
  StmtPtr data_version_stmt;  // declared after db: finalized before close
  int64_t data_version = -1;

  mutable std::shared_mutex snapshot_mu;
  std::shared_ptr<const Snapshot> snapshot = std::make_shared<Snapshot>();
  std::shared_ptr<const Roles> roles = std::make_shared<Roles>();

  // Hash checked against when the user does not exist, so that a wrong
  // address takes as long as a wrong password.
  std::once_flag dummy_once;
  std::string dummy_hash;

  std::shared_ptr<const Snapshot> Current() const {
    std::shared_lock lock(snapshot_mu);
    return snapshot;
  }

  std::shared_ptr<const Roles> CurrentRoles() const {
    std::shared_lock lock(snapshot_mu);
    return roles;
  }

  void SetRoles(LocalRouting routing) {
    auto fresh = std::make_shared<Roles>();
    fresh->postmaster = std::move(routing.postmaster);
    if (!domains.empty()) fresh->fallback = "postmaster@" + domains.front();
    for (std::string_view name : kRoleNames) fresh->names.emplace(name);
    for (const std::string& user : routing.system_users) {
      fresh->names.insert(ToLower(user));
    }
    std::unique_lock lock(snapshot_mu);
    roles = std::move(fresh);
  }

  Result<int64_t> DataVersionLocked() {
    sqlite3_stmt* stmt = data_version_stmt.get();
    int rc = sqlite3_step(stmt);
    int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW) return Err(DbError(db.get(), "data_version"));
    return version;
  }

  // Reads all tables in one read transaction so the snapshot is consistent.
  Result<void> LoadLocked() {
    auto txn = Transaction::Begin(db.get(), false);
    if (!txn) return tl::unexpected(txn.error());
    auto version = DataVersionLocked();
    if (!version) return tl::unexpected(version.error());

    auto fresh = std::make_shared<Snapshot>();
    auto accounts = Prepare(db.get(), "SELECT address FROM accounts");
    if (!accounts) return tl::unexpected(accounts.error());
    int rc;
    while ((rc = sqlite3_step(accounts->get())) == SQLITE_ROW) {
      std::string address = ColumnText(accounts->get(), 0);
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
    std::unique_lock lock(snapshot_mu);
    snapshot = std::move(fresh);
    return {};
  }

  // After our own writes: PRAGMA data_version ignores this connection's
  // commits, so reload explicitly. A failure only leaves a stale snapshot.
  void AfterWriteLocked() {
    if (auto ok = LoadLocked(); !ok) {
      spdlog::warn("directory: reload after change failed: {}",
                   ok.error().message);
    }
  }

  bool IsLocal(const std::string& lower_domain) const {
    return domain_set.count(lower_domain) != 0;
  }
};

namespace {

// One Resolve call: walks alias targets depth-first, collecting mailboxes
// and remote addresses without duplicates.
class Expander {
 public:
  // `quiet` silences the warnings about broken aliases, for callers that
  // walk every alias and are not about delivering anything. Without `roles`
  // role addresses and system users resolve only through explicit entries
  // (ownership checks: they must not make the postmaster own root@).
  Expander(const Snapshot& snapshot,
           const std::unordered_set<std::string>& local_domains,
           bool quiet = false, const Roles* roles = nullptr)
      : snapshot_(snapshot),
        local_domains_(local_domains),
        quiet_(quiet),
        roles_(roles) {}

  // The whole lookup of an address at one of our domains: explicit
  // entries, then a role or system user name (to the postmaster), then
  // the catch-all.
  void ResolveTop(const std::string& local, const std::string& domain) {
    if (ResolveLocal(local, domain, 0)) return;
    if (ResolveRole(local, 0)) return;
    ResolveCatchAll(domain, 0);
  }

  // Explicit entries only (an alias or an account, "user+tag" as "user");
  // false when none matched `local@domain`.
  bool ResolveLocal(const std::string& local, const std::string& domain,
                    int depth) {
    std::vector<std::string> candidates{local};
    size_t plus = local.find('+');
    if (plus != std::string::npos && plus > 0) {
      candidates.push_back(local.substr(0, plus));  // user+tag -> user
    }
    for (const std::string& candidate : candidates) {
      std::string key = ToLower(candidate) + "@" + domain;
      if (auto alias = snapshot_.aliases.find(key);
          alias != snapshot_.aliases.end()) {
        if (expanded_.insert(key).second) {
          for (const std::string& target : alias->second) {
            Expand(target, depth + 1);
          }
        } else if (auto account = snapshot_.accounts.find(key);
                   account != snapshot_.accounts.end()) {
          // A loop back to an alias that shadows a real mailbox (e.g.
          // "a@d -> a@d, b@remote" to keep a copy) ends in that mailbox.
          AddMailbox(account->second);
        }
        return true;
      }
      if (auto account = snapshot_.accounts.find(key);
          account != snapshot_.accounts.end()) {
        AddMailbox(account->second);
        return true;
      }
    }
    return false;
  }

  bool ResolveCatchAll(const std::string& domain, int depth) {
    std::string key = "@" + domain;
    auto alias = snapshot_.aliases.find(key);
    if (alias == snapshot_.aliases.end()) return false;
    expanded_.insert(key);
    for (const std::string& target : alias->second) {
      Expand(target, depth + 1);
    }
    return true;
  }

  // A role or system user name (its +tag ignored) goes to the postmaster:
  // the configured address, or the fallback mailbox when that is unset or
  // leads nowhere. Once per lookup, so a postmaster setting that names a
  // role itself cannot loop.
  bool ResolveRole(const std::string& local, int depth) {
    if (roles_ == nullptr || postmaster_done_) return false;
    std::string name = ToLower(local.substr(0, local.find('+')));
    if (roles_->names.count(name) == 0) return false;
    postmaster_done_ = true;
    size_t before = mailboxes_.size() + remote_.size();
    if (!roles_->postmaster.empty()) Expand(roles_->postmaster, depth + 1);
    if (mailboxes_.size() + remote_.size() == before) {
      if (roles_->fallback.empty()) return false;
      AddMailbox(roles_->fallback);
    }
    return true;
  }

  Resolution Finish() {
    Resolution result;
    result.kind = mailboxes_.empty() && remote_.empty()
                      ? Resolution::Kind::kUnknown
                      : Resolution::Kind::kLocal;
    result.mailboxes = std::move(mailboxes_);
    result.remote = std::move(remote_);
    return result;
  }

 private:
  void Expand(const std::string& target, int depth) {
    if (depth > kMaxAliasDepth) {
      if (quiet_) return;
      spdlog::warn("directory: alias chain deeper than {} at {}; cut",
                   kMaxAliasDepth, target);
      return;
    }
    auto parts = SplitAddress(target);
    if (!parts || parts->local.empty()) {
      if (quiet_) return;
      spdlog::warn("directory: alias target {} is not an address; skipped",
                   target);
      return;
    }
    if (local_domains_.count(parts->domain) == 0) {
      std::string remote = parts->local + "@" + parts->domain;
      if (seen_remote_.insert(remote).second) remote_.push_back(remote);
      return;
    }
    if (!ResolveLocal(parts->local, parts->domain, depth) &&
        !ResolveRole(parts->local, depth) && !quiet_) {
      spdlog::warn("directory: alias target {} is not a local mailbox; skipped",
                   target);
    }
  }

  void AddMailbox(const std::string& canonical) {
    if (seen_mailboxes_.insert(canonical).second) {
      mailboxes_.push_back(canonical);
    }
  }

  const Snapshot& snapshot_;
  const std::unordered_set<std::string>& local_domains_;
  const bool quiet_;
  const Roles* roles_;
  bool postmaster_done_ = false;
  std::unordered_set<std::string> expanded_;
  std::unordered_set<std::string> seen_mailboxes_;
  std::unordered_set<std::string> seen_remote_;
  std::vector<std::string> mailboxes_;
  std::vector<std::string> remote_;
};

// True when `local@domain` (domain lower case, ours) is an alias whose
// expansion reaches the mailbox `account` (canonical). Catch-alls do not
// count: they would make every unknown address at the domain someone's.
bool AliasReaches(const Snapshot& snapshot,
                  const std::unordered_set<std::string>& local_domains,
                  const std::string& local, const std::string& domain,
                  const std::string& account) {
  Expander expander(snapshot, local_domains, /*quiet=*/true);
  expander.ResolveLocal(local, domain, 0);
  Resolution result = expander.Finish();
  return std::find(result.mailboxes.begin(), result.mailboxes.end(), account) !=
         result.mailboxes.end();
}

bool GrantMatches(std::string_view pattern, const std::string& lower_address,
                  const std::string& domain) {
  if (pattern.substr(0, 2) == "*@") {
    return IEquals(pattern.substr(2), domain);
  }
  return IEquals(pattern, lower_address);
}

}  // namespace

LocalRouting LocalRouting::FromSystem(std::string postmaster) {
  LocalRouting routing;
  routing.postmaster = std::move(postmaster);
  // getpwent() walks the passwd database (files, or whatever NSS says).
  setpwent();
  while (struct passwd* pw = getpwent()) {
    if (pw->pw_name != nullptr && pw->pw_name[0] != '\0') {
      routing.system_users.emplace_back(pw->pw_name);
    }
  }
  endpwent();
  return routing;
}

void Directory::SetRouting(LocalRouting routing) {
  impl_->SetRoles(std::move(routing));
}

std::string Directory::FallbackPostmaster() const {
  return impl_->CurrentRoles()->fallback;
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

  // The file holds password hashes: create it private before SQLite does
  // (SQLite would use the umask, and gives its -wal/-shm files the same mode).
  int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Err(db_path + ": " + std::strerror(errno));
  }
  ::close(fd);

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(
      db_path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  impl->db.reset(raw);  // a handle comes back even on failure
  if (rc != SQLITE_OK) {
    return Err(db_path + ": " +
               (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3* db = impl->db.get();
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
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
    if (current < kSchemaVersion) {
      auto ok = Exec(db, "PRAGMA user_version = 2");
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

  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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

  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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
    std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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

Result<void> Directory::Grant(const std::string& account,
                              const std::string& pattern) {
  auto canonical_pattern = CanonicalPattern(pattern);
  if (!canonical_pattern) return tl::unexpected(canonical_pattern.error());

  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
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

Result<std::vector<std::string>> Directory::OwnedAddresses(
    const std::string& account) {
  RefreshIfChanged();
  std::shared_ptr<const Snapshot> snapshot = impl_->Current();
  std::string key = ToLower(account);
  auto found = snapshot->accounts.find(key);
  if (found == snapshot->accounts.end()) return Err("no such user " + account);
  const std::string& canonical = found->second;

  std::vector<std::string> aliases;
  for (const auto& [alias, targets] : snapshot->aliases) {
    if (alias == key) continue;  // an alias shadowing the account itself
    auto parts = SplitAddress(alias);
    if (!parts || parts->local.empty()) continue;  // catch-all
    if (AliasReaches(*snapshot, impl_->domain_set, parts->local, parts->domain,
                     canonical)) {
      auto name = snapshot->alias_names.find(alias);
      aliases.push_back(name != snapshot->alias_names.end() ? name->second
                                                            : alias);
    }
  }
  std::sort(aliases.begin(), aliases.end(),
            [](const std::string& a, const std::string& b) {
              return ToLower(a) < ToLower(b);
            });

  std::vector<std::string> owned{canonical};
  owned.insert(owned.end(), aliases.begin(), aliases.end());
  if (auto grants = snapshot->grants.find(key);
      grants != snapshot->grants.end()) {
    owned.insert(owned.end(), grants->second.begin(), grants->second.end());
  }
  return owned;
}

bool Directory::Owns(const std::string& account, const std::string& address) {
  // RFC 5321 4.5.5: the null reverse-path belongs to bounces, not to users.
  if (address.empty()) return false;
  RefreshIfChanged();
  std::shared_ptr<const Snapshot> snapshot = impl_->Current();
  std::string account_key = ToLower(account);
  auto found = snapshot->accounts.find(account_key);
  if (found == snapshot->accounts.end()) return false;
  const std::string& canonical = found->second;

  std::optional<Address> parts = SplitAddress(address);
  if (!parts || parts->local.empty() || parts->domain.empty()) return false;

  std::vector<std::string> locals{parts->local};
  size_t plus = parts->local.find('+');
  if (plus != std::string::npos && plus > 0) {
    locals.push_back(parts->local.substr(0, plus));  // user+tag -> user
  }
  auto grants = snapshot->grants.find(account_key);
  for (const std::string& local : locals) {
    std::string lower = ToLower(local) + "@" + parts->domain;
    if (lower == account_key) return true;
    if (grants != snapshot->grants.end()) {
      for (const std::string& pattern : grants->second) {
        if (GrantMatches(pattern, lower, parts->domain)) return true;
      }
    }
  }
  // Resolving applies the tag fallback itself.
  return impl_->IsLocal(parts->domain) &&
         AliasReaches(*snapshot, impl_->domain_set, parts->local, parts->domain,
                      canonical);
}

Resolution Directory::Resolve(const std::string& address) {
  RefreshIfChanged();
  std::shared_ptr<const Snapshot> snapshot = impl_->Current();

  std::optional<Address> parts = SplitAddress(address);
  if (!parts) {
    // RFC 5321 4.1.1.3: "postmaster" without a domain must be accepted.
    if (IEquals(address, "postmaster") && !impl_->domains.empty()) {
      parts = Address{"postmaster", impl_->domains.front()};
    } else {
      return Resolution{Resolution::Kind::kUnknown, {}, {}};
    }
  }
  if (!impl_->IsLocal(parts->domain)) return Resolution{};
  if (parts->local.empty())
    return Resolution{Resolution::Kind::kUnknown, {}, {}};

  std::shared_ptr<const Roles> roles = impl_->CurrentRoles();
  Expander expander(*snapshot, impl_->domain_set, false, roles.get());
  expander.ResolveTop(parts->local, parts->domain);
  Resolution result = expander.Finish();
  if (result.kind == Resolution::Kind::kUnknown &&
      (snapshot->aliases.count(ToLower(parts->local) + "@" + parts->domain) ||
       snapshot->aliases.count("@" + parts->domain))) {
    spdlog::warn("directory: {} matches an alias that leads to no mailbox",
                 address);
  }
  return result;
}

bool Directory::IsLocalDomain(const std::string& domain) const {
  return impl_->IsLocal(ToLower(domain));
}

void Directory::RefreshIfChanged() {
  std::lock_guard lock(impl_->db_mu);
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
  std::lock_guard lock(impl_->db_mu);
  return impl_->LoadLocked();
}

}  // namespace tern::auth
