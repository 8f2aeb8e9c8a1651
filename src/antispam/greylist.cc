// The greylisting store: triplets (network, sender, recipient) and the
// networks that passed enough of them, in SQLite, behind one mutex.
#include "antispam/greylist.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "common/cidr.h"
#include "common/mutex.h"
#include "common/sqlite_util.h"
#include "common/strings.h"

namespace tern::antispam {
namespace {

using sqlite::BindText;
using sqlite::DbError;
using sqlite::DbPtr;
using sqlite::Exec;
using sqlite::Prepare;
using sqlite::StmtPtr;
using sqlite::Transaction;

constexpr int kSchemaVersion = 1;
// Check runs on an io thread: wait only briefly for another process
// (an administrator's sqlite3 shell) holding the file, then let the mail
// through with kError rather than stall every connection of the thread.
constexpr int kBusyTimeoutMs = 1000;
constexpr int64_t kPurgeEverySeconds = 3600;

// One row per triplet; passed_at is NULL until a retry came within the
// window. The partial indexes serve the hourly purge, which would
// otherwise read the whole table under the mutex. `networks` keeps, per
// network, how many of its triplets had passed (and were still
// remembered) when the last one passed, and when the network was last let
// through: the auto-whitelist.
constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS triplets ("
    "  network TEXT NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  rcpt TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL,"
    "  passed_at INTEGER,"
    "  PRIMARY KEY (network, sender, rcpt)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS triplets_waiting ON triplets (first_seen)"
    "  WHERE passed_at IS NULL;"
    "CREATE INDEX IF NOT EXISTS triplets_passed ON triplets (last_seen)"
    "  WHERE passed_at IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS networks ("
    "  network TEXT NOT NULL PRIMARY KEY,"
    "  passed INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL) WITHOUT ROWID;"
    "PRAGMA user_version = 1;";

constexpr char kSelectNetwork[] =
    "SELECT passed, last_seen FROM networks WHERE network = ?1";
constexpr char kTouchNetwork[] =
    "UPDATE networks SET last_seen = ?2 WHERE network = ?1";
constexpr char kSetNetwork[] =
    "INSERT OR REPLACE INTO networks (network, passed, last_seen)"
    " VALUES (?1, ?2, ?3)";
constexpr char kCountPassed[] =
    "SELECT count(*) FROM triplets"
    " WHERE network = ?1 AND passed_at IS NOT NULL AND last_seen >= ?2";
constexpr char kSelectTriplet[] =
    "SELECT first_seen, last_seen, passed_at IS NOT NULL FROM triplets"
    " WHERE network = ?1 AND sender = ?2 AND rcpt = ?3";
// A first attempt, or one after the triplet was forgotten.
constexpr char kStartTriplet[] =
    "INSERT OR REPLACE INTO triplets"
    " (network, sender, rcpt, first_seen, last_seen, passed_at)"
    " VALUES (?1, ?2, ?3, ?4, ?4, NULL)";
constexpr char kPassTriplet[] =
    "UPDATE triplets SET passed_at = ?4, last_seen = ?4"
    " WHERE network = ?1 AND sender = ?2 AND rcpt = ?3";
constexpr char kTouchTriplet[] =
    "UPDATE triplets SET last_seen = ?4"
    " WHERE network = ?1 AND sender = ?2 AND rcpt = ?3";
// ?1: the oldest first_seen still within the retry window.
constexpr char kPurgeWaiting[] =
    "DELETE FROM triplets WHERE passed_at IS NULL AND first_seen < ?1";
// ?1: the oldest last_seen still within the pass lifetime.
constexpr char kPurgePassed[] =
    "DELETE FROM triplets WHERE passed_at IS NOT NULL AND last_seen < ?1";
// A whitelisted network stays while it sends (Check updates its
// last_seen), even once the triplets that earned it have aged out; any
// other network row is only of use while it has triplets. ?2: the
// whitelist threshold (a number no count reaches when it is off).
constexpr char kPurgeNetworks[] =
    "DELETE FROM networks WHERE last_seen < ?1"
    " OR (passed < ?2 AND NOT EXISTS"
    "     (SELECT 1 FROM triplets WHERE triplets.network = networks.network))";

// Resets a reused statement when its use ends, however it ends, so that it
// holds no read lock and is ready for the next bind.
class Using {
 public:
  explicit Using(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Using() { sqlite3_reset(stmt_); }
  Using(const Using&) = delete;
  Using& operator=(const Using&) = delete;
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_;
};

void BindTriplet(sqlite3_stmt* stmt, std::string_view network,
                 std::string_view sender, std::string_view rcpt) {
  BindText(stmt, 1, network);
  BindText(stmt, 2, sender);
  BindText(stmt, 3, rcpt);
}

struct Triplet {
  int64_t first_seen = 0;
  int64_t last_seen = 0;
  bool passed = false;
};

}  // namespace

std::string GreylistSender(std::string_view sender) {
  std::string s = ToLower(sender);
  size_t at = s.rfind('@');
  std::string local = at == std::string::npos ? s : s.substr(0, at);
  std::string domain = at == std::string::npos ? "" : s.substr(at);
  // BATV (draft-levine-smtp-batv): "prvs=" 4 digits 6 hex "=" local, and
  // the "btv1==" form some senders use: the local part follows the last
  // '=' of the tag.
  if (local.starts_with("prvs=") || local.starts_with("btv1==")) {
    size_t eq = local.rfind('=');
    if (eq != std::string::npos && eq + 1 < local.size()) local = local.substr(eq + 1);
  }
  std::string out;
  for (size_t i = 0; i < local.size(); ++i) {
    if (local[i] >= '0' && local[i] <= '9') {
      while (i + 1 < local.size() && local[i + 1] >= '0' && local[i + 1] <= '9') ++i;
      out += '#';
    } else {
      out += local[i];
    }
  }
  return out + domain;
}

std::string GreylistNetwork(std::string_view ip) {
  std::optional<IpOctets> address = ParseClientAddress(ip);
  if (!address) return "";
  Cidr network;
  network.network = *address;
  if (IsIpv4(*address)) {
    network.network[15] = 0;
    network.prefix = 96 + 24;
    network.ipv4 = true;
  } else {
    std::fill(network.network.begin() + 8, network.network.end(), 0);
    network.prefix = 64;
  }
  return network.ToString();
}

std::string_view GreylistWhyName(GreylistVerdict::Why why) {
  using Why = GreylistVerdict::Why;
  switch (why) {
    case Why::kNew: return "new";
    case Why::kTooEarly: return "too-early";
    case Why::kPassed: return "passed";
    case Why::kKnown: return "known";
    case Why::kWhitelistedNetwork: return "whitelisted";
    case Why::kError: return "error";
  }
  return "error";
}

struct Greylist::Impl {
  GreylistOptions options;  // set before the Impl is shared, then read only
  std::string path;

  Mutex mu;
  // Declared before the statements so that it is closed after them.
  DbPtr db GUARDED_BY(mu);
  // Prepared once (Open); every use resets them (Using).
  StmtPtr select_network GUARDED_BY(mu);
  StmtPtr touch_network GUARDED_BY(mu);
  StmtPtr set_network GUARDED_BY(mu);
  StmtPtr count_passed GUARDED_BY(mu);
  StmtPtr select_triplet GUARDED_BY(mu);
  StmtPtr start_triplet GUARDED_BY(mu);
  StmtPtr pass_triplet GUARDED_BY(mu);
  StmtPtr touch_triplet GUARDED_BY(mu);
  StmtPtr purge_waiting GUARDED_BY(mu);
  StmtPtr purge_passed GUARDED_BY(mu);
  StmtPtr purge_networks GUARDED_BY(mu);
  std::optional<int64_t> last_purge GUARDED_BY(mu);

  int64_t Delay() const { return options.delay.count(); }
  int64_t Window() const { return options.retry_window.count(); }
  int64_t Lifetime() const { return options.pass_lifetime.count(); }

  Result<void> PrepareAllLocked() REQUIRES(mu) {
    sqlite3* handle = db.get();
    for (auto [stmt, sql] : {std::pair{&select_network, kSelectNetwork},
                             {&touch_network, kTouchNetwork},
                             {&set_network, kSetNetwork},
                             {&count_passed, kCountPassed},
                             {&select_triplet, kSelectTriplet},
                             {&start_triplet, kStartTriplet},
                             {&pass_triplet, kPassTriplet},
                             {&touch_triplet, kTouchTriplet},
                             {&purge_waiting, kPurgeWaiting},
                             {&purge_passed, kPurgePassed},
                             {&purge_networks, kPurgeNetworks}}) {
      auto prepared = Prepare(handle, sql);
      if (!prepared) return tl::unexpected(prepared.error());
      *stmt = std::move(*prepared);
    }
    return {};
  }

  // Steps a statement that returns no rows (it has been bound).
  Result<void> RunLocked(sqlite3_stmt* stmt, std::string_view what)
      REQUIRES(mu) {
    Using use(stmt);
    if (sqlite3_step(stmt) != SQLITE_DONE) return Err(DbError(db.get(), what));
    return {};
  }

  Result<void> WriteTripletLocked(sqlite3_stmt* stmt, std::string_view network,
                                  std::string_view sender,
                                  std::string_view rcpt, int64_t now,
                                  std::string_view what) REQUIRES(mu) {
    BindTriplet(stmt, network, sender, rcpt);
    sqlite3_bind_int64(stmt, 4, now);
    return RunLocked(stmt, what);
  }

  // True when the network has earned the auto-whitelist and is still
  // remembered.
  Result<bool> WhitelistedLocked(std::string_view network, int64_t now)
      REQUIRES(mu) {
    Using use(select_network.get());
    BindText(use.get(), 1, network);
    int rc = sqlite3_step(use.get());
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) return Err(DbError(db.get(), "reading the network"));
    int64_t passed = sqlite3_column_int64(use.get(), 0);
    int64_t last_seen = sqlite3_column_int64(use.get(), 1);
    return passed >= options.auto_whitelist_after &&
           now - last_seen <= Lifetime();
  }

  Result<std::optional<Triplet>> FindTripletLocked(std::string_view network,
                                                   std::string_view sender,
                                                   std::string_view rcpt)
      REQUIRES(mu) {
    Using use(select_triplet.get());
    BindTriplet(use.get(), network, sender, rcpt);
    int rc = sqlite3_step(use.get());
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) return Err(DbError(db.get(), "reading the triplet"));
    return Triplet{sqlite3_column_int64(use.get(), 0),
                   sqlite3_column_int64(use.get(), 1),
                   sqlite3_column_int(use.get(), 2) != 0};
  }

  // After a triplet of `network` passed: how many of its triplets have
  // passed and are still remembered, counted afresh so that forgotten
  // ones no longer count.
  Result<void> CountPassedLocked(std::string_view network, int64_t now)
      REQUIRES(mu) {
    int64_t passed = 0;
    {
      Using use(count_passed.get());
      BindText(use.get(), 1, network);
      sqlite3_bind_int64(use.get(), 2, now - Lifetime());
      if (sqlite3_step(use.get()) != SQLITE_ROW) {
        return Err(DbError(db.get(), "counting passed triplets"));
      }
      passed = sqlite3_column_int64(use.get(), 0);
    }
    sqlite3_stmt* stmt = set_network.get();
    BindText(stmt, 1, network);
    sqlite3_bind_int64(stmt, 2, passed);
    sqlite3_bind_int64(stmt, 3, now);
    return RunLocked(stmt, "recording the network");
  }

  Result<GreylistVerdict> CheckLocked(std::string_view network,
                                      std::string_view sender,
                                      std::string_view rcpt, int64_t now)
      REQUIRES(mu) {
    using Why = GreylistVerdict::Why;
    // One write transaction: the reads and the update they decide on see
    // the same state (another process could share the file).
    auto txn = Transaction::Begin(db.get(), true);
    if (!txn) return tl::unexpected(txn.error());
    GreylistVerdict verdict;

    bool whitelisted = false;
    if (options.auto_whitelist_after > 0) {
      auto listed = WhitelistedLocked(network, now);
      if (!listed) return tl::unexpected(listed.error());
      whitelisted = *listed;
    }
    if (whitelisted) {
      sqlite3_stmt* stmt = touch_network.get();
      BindText(stmt, 1, network);
      sqlite3_bind_int64(stmt, 2, now);
      if (auto ok = RunLocked(stmt, "updating the network"); !ok) {
        return tl::unexpected(ok.error());
      }
      verdict.why = Why::kWhitelistedNetwork;
    } else {
      auto found = FindTripletLocked(network, sender, rcpt);
      if (!found) return tl::unexpected(found.error());
      const std::optional<Triplet>& seen = *found;
      // A passed triplet unused for longer than its lifetime, or a first
      // attempt not retried within the window, is forgotten: start again.
      bool forgotten =
          seen && (seen->passed ? now - seen->last_seen > Lifetime()
                                : now - seen->first_seen > Window());
      Result<void> written;
      if (!seen || forgotten) {
        written = WriteTripletLocked(start_triplet.get(), network, sender,
                                     rcpt, now, "recording the triplet");
        verdict = {false, Why::kNew, Delay()};
      } else if (seen->passed) {
        written = WriteTripletLocked(touch_triplet.get(), network, sender,
                                     rcpt, now, "updating the triplet");
        verdict.why = Why::kKnown;
      } else if (int64_t waited = now - seen->first_seen; waited < Delay()) {
        // Not a new first attempt: the delay runs from the first one.
        written = WriteTripletLocked(touch_triplet.get(), network, sender,
                                     rcpt, now, "updating the triplet");
        // A clock set back must not ask for more than the delay.
        verdict = {false, Why::kTooEarly,
                   std::min(Delay(), Delay() - waited)};
      } else {
        written = WriteTripletLocked(pass_triplet.get(), network, sender,
                                     rcpt, now, "passing the triplet");
        if (written && options.auto_whitelist_after > 0) {
          written = CountPassedLocked(network, now);
        }
        verdict.why = Why::kPassed;
      }
      if (!written) return tl::unexpected(written.error());
    }
    if (auto ok = txn->Commit(); !ok) return tl::unexpected(ok.error());
    return verdict;
  }

  // Deletes what Check would treat as forgotten anyway, so the file stays
  // the size of the recent traffic.
  Result<void> PurgeLocked(int64_t now) REQUIRES(mu) {
    auto txn = Transaction::Begin(db.get(), true);
    if (!txn) return tl::unexpected(txn.error());
    sqlite3_bind_int64(purge_waiting.get(), 1, now - Window());
    if (auto ok = RunLocked(purge_waiting.get(), "purging first attempts");
        !ok) {
      return ok;
    }
    sqlite3_bind_int64(purge_passed.get(), 1, now - Lifetime());
    if (auto ok = RunLocked(purge_passed.get(), "purging passed triplets");
        !ok) {
      return ok;
    }
    sqlite3_bind_int64(purge_networks.get(), 1, now - Lifetime());
    sqlite3_bind_int64(purge_networks.get(), 2,
                       options.auto_whitelist_after > 0
                           ? int64_t{options.auto_whitelist_after}
                           : INT64_MAX);
    if (auto ok = RunLocked(purge_networks.get(), "purging networks"); !ok) {
      return ok;
    }
    return txn->Commit();
  }

  void MaybePurgeLocked(int64_t now) REQUIRES(mu) {
    // Also after the clock was set back, which would otherwise postpone
    // the next purge by as much.
    if (last_purge && now >= *last_purge &&
        now - *last_purge < kPurgeEverySeconds) {
      return;
    }
    last_purge = now;  // a failure is not retried at every Check either
    if (auto ok = PurgeLocked(now); !ok) {
      spdlog::warn("greylist: {}: purging old entries failed: {}", path,
                   ok.error().message);
    }
  }
};

Greylist::Greylist(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Greylist::~Greylist() = default;

Result<std::unique_ptr<Greylist>> Greylist::Open(const std::string& path,
                                                 GreylistOptions options) {
  if (options.delay.count() < 0 || options.pass_lifetime.count() <= 0 ||
      options.retry_window < options.delay) {
    return Err("greylist: the delay must not be negative nor longer than "
               "the retry window, and the pass lifetime must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->path = path;
  auto fail = [&path](std::string_view message, int code = 0) {
    return Err("greylist database " + path + ": " + std::string(message),
               code);
  };

  // The file names the correspondents of every user: private, like the
  // account directory.
  auto opened = sqlite::OpenPrivate(path, kBusyTimeoutMs);
  if (!opened) return fail(opened.error().message, opened.error().code);
  // Nobody else sees the Impl yet; the lock lets the thread-safety
  // analysis check the uses below as well.
  MutexLock lock(impl->mu);
  impl->db = std::move(*opened);
  sqlite3* db = impl->db.get();
  // WAL: a commit appends to the log instead of rewriting pages.
  // synchronous=NORMAL: no fsync per commit (only at checkpoints); a crash
  // may lose the last commits, which only greylists those triplets again,
  // and a Check costs no disk flush on the io thread.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"}) {
    if (auto ok = Exec(db, pragma); !ok) return fail(ok.error().message);
  }

  {
    auto txn = Transaction::Begin(db, true);
    if (!txn) return fail(txn.error().message);
    int current = 0;
    {
      auto version = Prepare(db, "PRAGMA user_version");
      if (!version) return fail(version.error().message);
      if (sqlite3_step(version->get()) == SQLITE_ROW) {
        current = sqlite3_column_int(version->get(), 0);
      }
    }  // finalized: the DDL below must not run under a reader
    if (current > kSchemaVersion) {
      return fail("made by a newer tern (schema " + std::to_string(current) +
                  ")");
    }
    if (current < 1) {
      if (auto ok = Exec(db, kSchema); !ok) return fail(ok.error().message);
    }
    if (auto ok = txn->Commit(); !ok) return fail(ok.error().message);
  }
  if (auto ok = impl->PrepareAllLocked(); !ok) {
    return fail(ok.error().message);
  }
  lock.Unlock();
  return std::unique_ptr<Greylist>(new Greylist(std::move(impl)));
}

GreylistVerdict Greylist::Check(std::string_view network,
                                std::string_view sender, std::string_view rcpt,
                                int64_t now) {
  // RFC 5321 2.4: the local part may be case-sensitive, but no real
  // mailbox differs from another by case alone, and a client that changes
  // the case between attempts must not be greylisted again.
  std::string sender_key = ToLower(sender);
  std::string rcpt_key = ToLower(rcpt);
  MutexLock lock(impl_->mu);
  impl_->MaybePurgeLocked(now);
  Result<GreylistVerdict> verdict =
      impl_->CheckLocked(network, sender_key, rcpt_key, now);
  if (verdict) return std::move(*verdict);
  // Greylisting only delays mail; a broken database must not refuse it.
  GreylistVerdict failed;
  failed.pass = true;
  failed.why = GreylistVerdict::Why::kError;
  failed.error = "greylist database " + impl_->path + ": " +
                 verdict.error().message;
  return failed;
}

}  // namespace tern::antispam
