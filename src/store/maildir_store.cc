// MailStore on Maildir++ and a per-account SQLite index. The crash-safety
// rules (docs/architecture.md, "The IMAP index"):
//
// - The Maildir is the truth for which messages exist and for their system
//   flags; the index for UIDs, MODSEQs, keywords and internal dates.
// - Every write holds the index's write lock (BEGIN IMMEDIATE), changes
//   the Maildir (rename, link, unlink), syncs the directories it changed,
//   and only then commits the index (WAL, synchronous=FULL: fsync'd). The
//   caller answers OK after the commit.
// - A crash before the commit leaves Maildir changes the index does not
//   know. Reconcile() treats them as changes by another program: a file
//   without a row gets a fresh UID above every committed one, a row
//   without a file is expunged, a file whose flags differ from its row is
//   adopted with a new MODSEQ. UIDs come only from a committed UIDNEXT, so
//   none is handed out twice; a committed row is only ever removed, so a
//   UID never changes for a message.
#include "store/maildir_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "common/file_io.h"
#include "common/mutex.h"
#include "common/sqlite_util.h"
#include "common/strings.h"
#include "common/unique_name.h"
#include "store/crlf.h"
#include "store/folder_name.h"

namespace tern::store {
namespace {

using sqlite::BindText;
using sqlite::ColumnText;
using sqlite::DbPtr;
using sqlite::Exec;
using sqlite::Prepare;
using sqlite::StmtPtr;
using sqlite::Transaction;

constexpr int kSchemaVersion = 4;
constexpr int kBusyTimeoutMs = 10000;
constexpr char kForwarded[] = "$Forwarded";
constexpr char kDeletedPrefix[] = "tern-deleted.";
constexpr size_t kMaxSubscriptions = 1 << 20;
constexpr int64_t kTmpMaxAge = 36 * 3600;  // Maildir: tmp/ files older are junk

Error ErrorWith(std::string message, int code) {
  return Error{std::move(message), code};
}
tl::unexpected<Error> Fail(std::string message, int code) {
  return tl::unexpected(ErrorWith(std::move(message), code));
}

bool SameKeyword(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ToLower(a) == ToLower(b);
}

// Keywords are atoms (RFC 9051 9, flag-keyword); the parser checks them.
// Anything else could not be stored as a space-separated list: dropped.
bool StorableKeyword(std::string_view k) {
  return !k.empty() && k[0] != '\\' &&
         std::none_of(k.begin(), k.end(), [](char c) {
           return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
         });
}

bool HasKeyword(const std::vector<std::string>& list, std::string_view k) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& x) { return SameKeyword(x, k); });
}

std::vector<std::string> SplitKeywords(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t sp = text.find(' ', start);
    if (sp == std::string_view::npos) sp = text.size();
    if (sp > start) out.emplace_back(text.substr(start, sp - start));
    start = sp + 1;
  }
  return out;
}

std::string JoinKeywords(const std::vector<std::string>& list) {
  std::string out;
  for (const auto& k : list) {
    if (!out.empty()) out += ' ';
    out += k;
  }
  return out;
}

void SortKeywords(std::vector<std::string>& list) {
  std::sort(list.begin(), list.end(),
            [](const std::string& a, const std::string& b) {
              return ToLower(a) < ToLower(b);
            });
}

// The Maildir info part: ":2," and letters in ASCII order. Letters Tern
// does not interpret (Dovecot's keyword letters a-z, others) are kept.
std::string InfoLetters(Flags flags, bool forwarded, std::string_view keep) {
  std::string letters(keep);
  if (flags & kDraft) letters += 'D';
  if (flags & kFlagged) letters += 'F';
  if (forwarded) letters += 'P';
  if (flags & kAnswered) letters += 'R';
  if (flags & kSeen) letters += 'S';
  if (flags & kDeleted) letters += 'T';
  std::sort(letters.begin(), letters.end());
  letters.erase(std::unique(letters.begin(), letters.end()), letters.end());
  return letters;
}

// Letters of a ":2," info part that are not D F P R S T.
std::string OtherLetters(std::string_view file_name) {
  size_t colon = file_name.find(':');
  if (colon == std::string_view::npos) return "";
  std::string_view info = file_name.substr(colon + 1);
  if (info.substr(0, 2) != "2,") return "";
  std::string out;
  for (char c : info.substr(2)) {
    if (std::string_view("DFPRST").find(c) == std::string_view::npos) out += c;
  }
  return out;
}

std::string UniquePart(std::string_view file_name) {
  return std::string(file_name.substr(0, file_name.find(':')));
}

int SyncDirAt(int parent, const std::string& name) {
  UniqueFd d(::openat(parent, name.empty() ? "." : name.c_str(),
                      O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) return errno;
  return ::fsync(d.get()) == 0 ? 0 : errno;
}

std::string Sub(const std::string& dir, std::string_view rest) {
  return dir.empty() ? std::string(rest) : dir + "/" + std::string(rest);
}

// The CRLF size a file name states (",W=1234", as Tern's delivery and
// Dovecot write it), or nullopt.
std::optional<uint64_t> CrlfSizeInName(std::string_view file) {
  size_t slash = file.rfind('/');
  std::string_view base = file.substr(slash == std::string_view::npos ? 0 : slash + 1);
  base = base.substr(0, base.find(':'));
  size_t at = base.find(",W=");
  if (at == std::string_view::npos) return std::nullopt;
  uint64_t v = 0;
  size_t i = at + 3;
  size_t digits = 0;
  for (; i < base.size() && base[i] >= '0' && base[i] <= '9' && digits < 15; ++i, ++digits) {
    v = v * 10 + static_cast<uint64_t>(base[i] - '0');
  }
  if (digits == 0 || (i < base.size() && base[i] != ',')) return std::nullopt;
  return v;
}

// Folders whose cur/ and new/ were last seen to agree with the index, by
// their directories' mtimes, for every session of this process. A Maildir
// change (delivery, rename, unlink, by us or any other program) changes
// the mtime of the directory it happens in, so while both mtimes stay the
// same a reconcile has nothing to find and the listing is skipped; while
// only new/'s moves (delivery), only new/ is listed. Only mtimes at least
// a second old are trusted: two changes within one clock tick can leave
// the same mtime. 0: that directory is not known to agree.
class ScanCache {
 public:
  struct Stamp {
    int64_t new_ns = 0;
    int64_t cur_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  std::optional<Stamp> Get(const std::string& key) {
    MutexLock lock(mu_);
    auto it = seen_.find(key);
    if (it == seen_.end()) return std::nullopt;
    return it->second;
  }
  void Agreed(const std::string& key, const Stamp& stamp) {
    MutexLock lock(mu_);
    if (seen_.size() > 100000) seen_.clear();
    seen_[key] = stamp;
  }
  void Forget(const std::string& key) {
    MutexLock lock(mu_);
    seen_.erase(key);
  }

 private:
  Mutex mu_;
  std::unordered_map<std::string, Stamp> seen_ GUARDED_BY(mu_);
};

ScanCache& Scans() {
  static ScanCache* cache = new ScanCache();  // never destroyed: threads use it
  return *cache;
}

// AddFresh(): more new files than this in one reconcile are indexed
// without their sizes (kUnknownSize).
constexpr size_t kCountSizesUpTo = 64;

Result<uint64_t> CrlfSizeOfFd(int fd) {
  // Not zeroed: a first SELECT may size thousands of files.
  constexpr size_t kChunk = 64 * 1024;
  auto buf = std::make_unique_for_overwrite<char[]>(kChunk);
  CrlfSizer sizer;
  for (;;) {
    ssize_t n = ::read(fd, buf.get(), kChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::ErrnoErr("read", errno);
    }
    if (n == 0) break;
    sizer.Feed(std::string_view(buf.get(), static_cast<size_t>(n)));
  }
  return sizer.Finish();
}

struct Row {
  uint32_t uid = 0;
  std::string uniq;
  std::string file;  // "cur/NAME:2,S" or "new/NAME", below the folder
  Flags flags = 0;
  std::vector<std::string> keywords;
  uint64_t modseq = 0;
  int64_t date = 0;
  uint64_t size = 0;

  MessageMeta Meta() const {
    return MessageMeta{uid, modseq, flags, keywords, date, size};
  }
};

struct Folder {
  int64_t id = 0;
  std::string name;
  std::string dir;  // "" for INBOX, ".A.B" otherwise
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest = 1;
  SpecialUse use = SpecialUse::kNone;
  FolderState State() const {
    return FolderState{uidvalidity, uidnext, highest};
  }
};

}  // namespace

Flags FlagsOfFileName(std::string_view file_name, bool* forwarded) {
  if (forwarded) *forwarded = false;
  size_t colon = file_name.find(':');
  if (colon == std::string_view::npos) return 0;
  std::string_view info = file_name.substr(colon + 1);
  if (info.substr(0, 2) != "2,") return 0;
  Flags f = 0;
  for (char c : info.substr(2)) {
    switch (c) {
      case 'D':
        f |= kDraft;
        break;
      case 'F':
        f |= kFlagged;
        break;
      case 'R':
        f |= kAnswered;
        break;
      case 'S':
        f |= kSeen;
        break;
      case 'T':
        f |= kDeleted;
        break;
      case 'P':
        if (forwarded) *forwarded = true;
        break;
      default:
        break;
    }
  }
  return f;
}

Flags SystemFlagOf(std::string_view name) {
  std::string n = ToLower(name);
  if (n == "\\seen") return kSeen;
  if (n == "\\answered") return kAnswered;
  if (n == "\\flagged") return kFlagged;
  if (n == "\\deleted") return kDeleted;
  if (n == "\\draft") return kDraft;
  return 0;
}

std::vector<std::string> SystemFlagNames(Flags flags) {
  std::vector<std::string> out;
  if (flags & kSeen) out.emplace_back("\\Seen");
  if (flags & kAnswered) out.emplace_back("\\Answered");
  if (flags & kFlagged) out.emplace_back("\\Flagged");
  if (flags & kDeleted) out.emplace_back("\\Deleted");
  if (flags & kDraft) out.emplace_back("\\Draft");
  return out;
}

namespace {
constexpr std::pair<SpecialUse, std::string_view> kUses[] = {
    {SpecialUse::kAll, "\\All"},       {SpecialUse::kArchive, "\\Archive"},
    {SpecialUse::kDrafts, "\\Drafts"}, {SpecialUse::kFlagged, "\\Flagged"},
    {SpecialUse::kJunk, "\\Junk"},     {SpecialUse::kSent, "\\Sent"},
    {SpecialUse::kTrash, "\\Trash"},
};
}  // namespace

std::string_view SpecialUseName(SpecialUse use) {
  for (auto& [u, n] : kUses) {
    if (u == use) return n;
  }
  return "";
}

std::optional<SpecialUse> SpecialUseOf(std::string_view name) {
  for (auto& [u, n] : kUses) {
    if (ToLower(n) == ToLower(name)) return u;
  }
  return std::nullopt;
}

// A connection to the index with the settings every use needs.
Result<DbPtr> OpenIndex(const std::string& db_path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(
      db_path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  DbPtr owned(raw);
  if (rc != SQLITE_OK) {
    return Err(db_path + ": " +
               (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3* db = owned.get();
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  // Sessions close their connection while they wait (ReleaseMemory): the
  // last one out would otherwise checkpoint the WAL into the database,
  // with its fsyncs, each time. Commits still checkpoint once the WAL
  // holds 1,000 pages (SQLite's automatic checkpoint).
  sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  // WAL: readers do not block the writer; synchronous=FULL: a COMMIT has
  // reached the disk (fsync of the WAL) when it returns, so an OK sent
  // after it survives a crash or a power cut.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
        // One connection per IMAP session: a small page cache each (the
        // kernel caches the file for all of them), not 2 MiB.
        "PRAGMA cache_size=-128"}) {
    if (auto ok = Exec(db, pragma); !ok)
      return Err(db_path + ": " + ok.error().message);
  }
  return owned;
}

namespace {

// The rowid of a message's row in `fts`: folder id and UID in one number.
int64_t TextRowid(int64_t folder, uint32_t uid) {
  return static_cast<int64_t>((static_cast<uint64_t>(folder) << 32) | uid);
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629 4: no
// overlong forms, no surrogates, nothing above U+10FFFF), 0 if there is
// none. NUL counts as malformed here.
size_t Utf8SequenceAt(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  }
  return n;
}

// What goes into `fts`: the text with every octet that is not part of a
// well-formed UTF-8 sequence replaced by U+FFFD. A well-formed needle that
// occurs in the original octets then occurs, as the same characters, in
// the result: it begins with a lead octet, where the decoding of the
// original resynchronises, and each of its sequences is decoded alone.
// Without this the trigram tokenizer could join a stray continuation
// octet to the needle's last character and miss it.
std::string IndexableText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceAt(s, i);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// The FTS5 query for a needle: every trigram of it, each a string of its
// own ("..." with quotes doubled), ANDed; nullopt when the trigram index
// cannot answer it: malformed UTF-8, NUL, or fewer than three characters
// (a trigram MATCH needs three). Not a phrase: `fts` is detail=none, which
// keeps no positions, and FTS5 refuses phrases of more than one token
// there. A row with all the trigrams need not have them in a row, so it is
// a candidate only; the caller checks it.
std::optional<std::string> TextQuery(std::string_view needle) {
  std::vector<size_t> starts;  // where each character begins
  for (size_t i = 0; i < needle.size();) {
    size_t n = Utf8SequenceAt(needle, i);
    if (n == 0) return std::nullopt;
    starts.push_back(i);
    i += n;
  }
  if (starts.size() < 3) return std::nullopt;
  starts.push_back(needle.size());
  std::set<std::string_view> seen;  // each trigram once
  std::string out;
  for (size_t k = 0; k + 3 < starts.size(); ++k) {
    std::string_view tri = needle.substr(starts[k], starts[k + 3] - starts[k]);
    if (!seen.insert(tri).second) continue;
    if (!out.empty()) out.append(" AND ");
    out.push_back('"');
    for (char c : tri) {
      if (c == '"') out.push_back('"');
      out.push_back(c);
    }
    out.push_back('"');
  }
  return out;
}

}  // namespace

struct MaildirStore::Impl {
  std::string path;
  UniqueFd root;
  DbPtr db;
  // Cached(): finalized before `db` closes (declared after it).
  std::vector<std::pair<const char*, sqlite::StmtPtr>> cached;
  MaildirStoreOptions options;
  bool has_fts = false;  // the SQLite has FTS5 with the trigram tokenizer

  // OpenMessage() along a run of UIDs (a FETCH of many messages): the
  // file names of the next kFileWindow messages from one query, and the
  // folder's directory kept open, instead of a transaction and a lookup
  // per message. A name gone stale (the message renamed by a flag change
  // or expunged since) fails to open and the caller looks again.
  static constexpr int kFileWindow = 128;
  struct FileWindow {
    std::string folder;  // canonical name; empty: nothing loaded
    UniqueFd dir;
    uint32_t first = 0, last = 0;  // the UIDs looked up
    std::vector<std::pair<uint32_t, std::string>> files;  // ascending UID
  };
  FileWindow window;

  // --- index helpers -------------------------------------------------------

  Result<void> Step(sqlite3_stmt* st) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return Err(sqlite::DbError(db.get(), "index"));
    return {};
  }

  // ReleaseMemory() closes the connection; the next transaction opens it
  // again.
  Result<void> Connect() {
    if (db) return {};
    auto opened = OpenIndex(path + "/" + kImapIndexFile);
    if (!opened) return tl::unexpected(opened.error());
    db = std::move(*opened);
    return {};
  }
  Result<Transaction> Begin(bool write) {
    if (auto r = Connect(); !r) return tl::unexpected(r.error());
    agree_on_commit.clear();  // left by a transaction that did not commit
    return Transaction::Begin(db.get(), write);
  }
  Result<Transaction> Write() { return Begin(true); }
  Result<Transaction> Read() { return Begin(false); }

  Result<void> Commit(Transaction& txn) {
    auto r = txn.Commit();
    if (!r) return Err(path + "/" + kImapIndexFile + ": " + r.error().message);
    for (const auto& [key, stamp] : agree_on_commit) Scans().Agreed(key, stamp);
    agree_on_commit.clear();
    return {};
  }
  // Folders a reconcile brought in line with their directories in the
  // current transaction: they agree once it commits (through Commit()).
  std::vector<std::pair<std::string, ScanCache::Stamp>> agree_on_commit;

  Result<uint32_t> NextUidValidity() {
    auto st =
        Prepare(db.get(), "SELECT last_uidvalidity FROM account WHERE id = 1");
    if (!st) return tl::unexpected(st.error());
    int64_t last = 0;
    if (sqlite3_step(st->get()) == SQLITE_ROW)
      last = sqlite3_column_int64(st->get(), 0);
    // RFC 9051 2.3.1.1: a folder created again under an old name gets a
    // greater UIDVALIDITY, so clients discard what they cached. The clock
    // is only a starting point; the counter guarantees the increase.
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    int64_t next = std::max(now, last + 1);
    if (next > UINT32_MAX) return Err("UIDVALIDITY space exhausted");
    auto up = Prepare(db.get(),
                      "UPDATE account SET last_uidvalidity = ? WHERE id = 1");
    if (!up) return tl::unexpected(up.error());
    sqlite3_bind_int64(up->get(), 1, next);
    if (auto r = Step(up->get()); !r) return tl::unexpected(r.error());
    return static_cast<uint32_t>(next);
  }

  // Run for every message a FETCH reads (OpenMessage): prepared once.
  Result<std::optional<Folder>> LoadFolder(const std::string& name) {
    static constexpr char kLoad[] =
        "SELECT id, uidvalidity, uidnext, highestmodseq, special_use "
        "FROM folders WHERE name = ?";
    auto st = Cached(kLoad);
    if (!st) return tl::unexpected(st.error());
    BindText(*st, 1, name);
    std::optional<Folder> out;
    if (sqlite3_step(*st) == SQLITE_ROW) {
      out = Folder{};
      Folder& f = *out;
      f.id = sqlite3_column_int64(*st, 0);
      f.name = name;
      f.dir = FolderDirectory(name);
      f.uidvalidity = static_cast<uint32_t>(sqlite3_column_int64(*st, 1));
      f.uidnext = static_cast<uint32_t>(sqlite3_column_int64(*st, 2));
      f.highest = static_cast<uint64_t>(sqlite3_column_int64(*st, 3));
      f.use = static_cast<SpecialUse>(sqlite3_column_int(*st, 4));
    }
    sqlite3_reset(*st);  // no statement left open across the transaction's end
    return out;
  }

  Result<void> InsertFolder(const std::string& name, SpecialUse use) {
    auto validity = NextUidValidity();
    if (!validity) return tl::unexpected(validity.error());
    auto st = Prepare(
        db.get(),
        "INSERT INTO folders (name, uidvalidity, uidnext, highestmodseq, "
        "special_use) VALUES (?, ?, 1, 1, ?)");
    if (!st) return tl::unexpected(st.error());
    BindText(st->get(), 1, name);
    sqlite3_bind_int64(st->get(), 2, *validity);
    sqlite3_bind_int(st->get(), 3, static_cast<int>(use));
    return Step(st->get());
  }

  Result<void> SaveFolder(const Folder& f) {
    auto st = Prepare(
        db.get(),
        "UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?");
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, f.uidnext);
    sqlite3_bind_int64(st->get(), 2, static_cast<int64_t>(f.highest));
    sqlite3_bind_int64(st->get(), 3, f.id);
    return Step(st->get());
  }

  static Row ReadRow(sqlite3_stmt* st) {
    Row r;
    r.uid = static_cast<uint32_t>(sqlite3_column_int64(st, 0));
    r.uniq = ColumnText(st, 1);
    r.file = ColumnText(st, 2);
    r.flags = static_cast<Flags>(sqlite3_column_int(st, 3));
    r.keywords = SplitKeywords(ColumnText(st, 4));
    r.modseq = static_cast<uint64_t>(sqlite3_column_int64(st, 5));
    r.date = sqlite3_column_int64(st, 6);
    r.size = static_cast<uint64_t>(sqlite3_column_int64(st, 7));
    return r;
  }
  static constexpr char kRowColumns[] =
      "uid, uniq, file, flags, keywords, modseq, internaldate, size";

  // What SELECT and a sync hand the session, read straight from the
  // columns it needs (no file names: a warm SELECT of a large folder is
  // mostly this loop).
  Result<std::vector<MessageMeta>> Metas(const Folder& f, uint64_t above_modseq = 0) {
    auto st = Prepare(db.get(),
                      "SELECT uid, flags, keywords, modseq, internaldate, size "
                      "FROM messages WHERE folder = ? AND modseq > ? ORDER BY uid");
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, f.id);
    sqlite3_bind_int64(st->get(), 2, static_cast<int64_t>(above_modseq));
    std::vector<MessageMeta> out;
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
      sqlite3_stmt* row = st->get();
      MessageMeta& m = out.emplace_back();
      m.uid = static_cast<uint32_t>(sqlite3_column_int64(row, 0));
      m.flags = static_cast<Flags>(sqlite3_column_int(row, 1));
      if (sqlite3_column_bytes(row, 2) > 0) m.keywords = SplitKeywords(ColumnText(row, 2));
      m.modseq = static_cast<uint64_t>(sqlite3_column_int64(row, 3));
      m.internal_date = sqlite3_column_int64(row, 4);
      m.size = static_cast<uint64_t>(sqlite3_column_int64(row, 5));
    }
    if (rc != SQLITE_DONE) return Err(sqlite::DbError(db.get(), "index"));
    return out;
  }

  Result<std::vector<Row>> Rows(const Folder& f, uint64_t above_modseq = 0) {
    std::string sql =
        std::string("SELECT ") + kRowColumns +
        " FROM messages WHERE folder = ? AND modseq > ? ORDER BY uid";
    auto st = Prepare(db.get(), sql.c_str());
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, f.id);
    sqlite3_bind_int64(st->get(), 2, static_cast<int64_t>(above_modseq));
    std::vector<Row> out;
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW)
      out.push_back(ReadRow(st->get()));
    if (rc != SQLITE_DONE) return Err(sqlite::DbError(db.get(), "index"));
    return out;
  }

  Result<std::optional<Row>> RowByUid(const Folder& f, uint32_t uid) {
    // The columns of kRowColumns, in its order (ReadRow reads them so),
    // spelled out: Cached() keys statements by the literal's address.
    static constexpr char kByUid[] =
        "SELECT uid, uniq, file, flags, keywords, modseq, internaldate, size "
        "FROM messages WHERE folder = ? AND uid = ?";
    auto st = Cached(kByUid);
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(*st, 1, f.id);
    sqlite3_bind_int64(*st, 2, uid);
    std::optional<Row> out;
    if (sqlite3_step(*st) == SQLITE_ROW) out = ReadRow(*st);
    sqlite3_reset(*st);
    return out;
  }

  // A statement prepared once per connection, reset for the caller:
  // for the ones run once per message (a first SELECT inserts thousands
  // of rows). `sql` is a string literal: its address is the key.
  Result<sqlite3_stmt*> Cached(const char* sql) {
    for (auto& [key, st] : cached) {
      if (key == sql) {
        sqlite3_reset(st.get());
        sqlite3_clear_bindings(st.get());
        return st.get();
      }
    }
    auto st = Prepare(db.get(), sql);
    if (!st) return tl::unexpected(st.error());
    cached.emplace_back(sql, std::move(*st));
    return cached.back().second.get();
  }

  Result<void> InsertRow(const Folder& f, const Row& r) {
    static constexpr char kInsert[] =
        "INSERT INTO messages (folder, uid, uniq, file, flags, keywords, modseq, "
        "internaldate, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    auto cached_st = Cached(kInsert);
    if (!cached_st) return tl::unexpected(cached_st.error());
    sqlite3_stmt* st = *cached_st;
    sqlite3_bind_int64(st, 1, f.id);
    sqlite3_bind_int64(st, 2, r.uid);
    BindText(st, 3, r.uniq);
    BindText(st, 4, r.file);
    sqlite3_bind_int(st, 5, r.flags);
    BindText(st, 6, JoinKeywords(r.keywords));
    sqlite3_bind_int64(st, 7, static_cast<int64_t>(r.modseq));
    sqlite3_bind_int64(st, 8, r.date);
    sqlite3_bind_int64(st, 9, static_cast<int64_t>(r.size));
    auto done = Step(st);
    sqlite3_reset(st);
    return done;
  }

  Result<void> UpdateRow(const Folder& f, const Row& r) {
    auto st = Prepare(
        db.get(),
        "UPDATE messages SET file = ?, flags = ?, keywords = ?, modseq = ? "
        "WHERE folder = ? AND uid = ?");
    if (!st) return tl::unexpected(st.error());
    BindText(st->get(), 1, r.file);
    sqlite3_bind_int(st->get(), 2, r.flags);
    BindText(st->get(), 3, JoinKeywords(r.keywords));
    sqlite3_bind_int64(st->get(), 4, static_cast<int64_t>(r.modseq));
    sqlite3_bind_int64(st->get(), 5, f.id);
    sqlite3_bind_int64(st->get(), 6, r.uid);
    return Step(st->get());
  }

  // The row goes; the UID is remembered with the MODSEQ of its removal
  // (RFC 7162 3.2.10: VANISHED (EARLIER) answers from it).
  Result<void> RemoveRow(const Folder& f, uint32_t uid, uint64_t modseq) {
    auto del =
        Prepare(db.get(), "DELETE FROM messages WHERE folder = ? AND uid = ?");
    if (!del) return tl::unexpected(del.error());
    sqlite3_bind_int64(del->get(), 1, f.id);
    sqlite3_bind_int64(del->get(), 2, uid);
    if (auto r = Step(del->get()); !r) return r;
    auto parts =
        Prepare(db.get(), "DELETE FROM parts WHERE folder = ? AND uid = ?");
    if (!parts) return tl::unexpected(parts.error());
    sqlite3_bind_int64(parts->get(), 1, f.id);
    sqlite3_bind_int64(parts->get(), 2, uid);
    if (auto r = Step(parts->get()); !r) return r;
    if (auto r = DropText(f.id, uid, uid); !r) return r;
    auto ins = Prepare(db.get(),
                       "INSERT OR REPLACE INTO expunged (folder, uid, modseq) "
                       "VALUES (?, ?, ?)");
    if (!ins) return tl::unexpected(ins.error());
    sqlite3_bind_int64(ins->get(), 1, f.id);
    sqlite3_bind_int64(ins->get(), 2, uid);
    sqlite3_bind_int64(ins->get(), 3, static_cast<int64_t>(modseq));
    return Step(ins->get());
  }

  // --- Maildir helpers -----------------------------------------------------

  Result<UniqueFd> OpenFolderDir(const Folder& f) {
    if (f.dir.empty()) {
      UniqueFd d(::dup(root.get()));
      if (!d) return io::ErrnoErr("dup", errno);
      return d;
    }
    return io::OpenDirAt(root.get(), f.dir);
  }

  // The files of cur/ and new/ by unique name (cur/ wins when a message is
  // in both, a crash of some other program between link and unlink).
  Result<std::map<std::string, std::string>> ListMessages(int dir, bool cur = true) {
    std::map<std::string, std::string> out;
    for (const char* sub : {"new", "cur"}) {
      if (!cur && sub[0] == 'c') continue;
      auto fd = io::OpenDirAt(dir, sub);
      if (!fd) return tl::unexpected(fd.error());
      auto names = io::ListDir(fd->get());
      if (!names) return tl::unexpected(names.error());
      for (auto& n : *names) {
        if (n.empty() || n[0] == '.') continue;  // Maildir: hidden is not mail
        out[UniquePart(n)] = std::string(sub) + "/" + n;
      }
    }
    return out;
  }

  // Finds a message another program renamed: its current path, or "".
  std::string Relocate(int dir, const std::string& uniq) {
    for (const char* sub : {"cur", "new"}) {
      auto fd = io::OpenDirAt(dir, sub);
      if (!fd) continue;
      auto names = io::ListDir(fd->get());
      if (!names) continue;
      for (auto& n : *names) {
        if (UniquePart(n) == uniq) return std::string(sub) + "/" + n;
      }
    }
    return "";
  }

  // Makes the directory entries of a folder's cur/ and new/ durable.
  Result<void> SyncMessageDirs(int dir, bool with_new) {
    for (const char* sub : {"cur", "new"}) {
      if (!with_new && sub[0] == 'n') continue;
      if (int e = SyncDirAt(dir, sub); e != 0)
        return io::ErrnoErr(std::string("sync ") + sub, e);
    }
    return {};
  }

  Result<void> EnsureMaildirDirs(int parent, const std::string& dir) {
    if (!dir.empty() && ::mkdirat(parent, dir.c_str(), 0700) != 0 &&
        errno != EEXIST) {
      return io::ErrnoErr("mkdir " + dir, errno);
    }
    for (const char* sub : {"tmp", "new", "cur"}) {
      std::string p = Sub(dir, sub);
      if (::mkdirat(parent, p.c_str(), 0700) != 0 && errno != EEXIST) {
        return io::ErrnoErr("mkdir " + p, errno);
      }
    }
    if (!dir.empty()) {
      // Maildir++ (Courier, Dovecot) marks a folder with an empty file.
      std::string marker = dir + "/maildirfolder";
      UniqueFd m(::openat(parent, marker.c_str(),
                          O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
      if (!m) return io::ErrnoErr("create " + marker, errno);
      if (::fsync(m.get()) != 0) return io::ErrnoErr("sync " + marker, errno);
      if (int e = SyncDirAt(parent, dir); e != 0)
        return io::ErrnoErr("sync " + dir, e);
    }
    if (int e = SyncDirAt(parent, dir.empty() ? "." : dir); e != 0) {
      return io::ErrnoErr("sync " + dir, e);
    }
    if (int e = ::fsync(parent); e != 0)
      return io::ErrnoErr("sync Maildir", errno);
    return {};
  }

  std::string NewUniqueName() {
    // time.M<usec>P<pid>Q<n>.host, the Maildir convention; the sequence
    // number makes names from one process distinct (common/unique_name.h).
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    std::string host;
    for (char c : options.hostname)
      host += (c == '/' || c == ':' || c == '.') ? '_' : c;
    if (host.empty()) host = "localhost";
    return std::to_string(us / 1000000) + ".M" + std::to_string(us % 1000000) +
           "P" + std::to_string(::getpid()) + "Q" +
           std::to_string(NextUniqueNumber()) + "I." + host;
  }

  // --- folders -------------------------------------------------------------

  bool DirExists(const std::string& dir) {
    if (dir.empty()) return true;
    struct stat st;
    return ::fstatat(root.get(), dir.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISDIR(st.st_mode);
  }

  // Folder directories in the Maildir: IMAP name -> directory.
  Result<std::map<std::string, std::string>> FolderDirs() {
    auto names = io::ListDir(root.get());
    if (!names) return tl::unexpected(names.error());
    std::map<std::string, std::string> out;
    for (auto& n : *names) {
      auto name = FolderNameOfDirectory(n);
      if (!name || !DirExists(n)) continue;
      // Only the canonical spelling of a name is its folder (".a\2eb", not
      // ".a\2Eb"): one name, one directory.
      if (FolderDirectory(*name) != n) continue;
      out[*name] = n;
    }
    return out;
  }

  // Index rows for folder directories other programs made, none for
  // directories that are gone (run inside a write transaction).
  Result<void> ReconcileFolders() {
    auto dirs = FolderDirs();
    if (!dirs) return tl::unexpected(dirs.error());
    auto st = Prepare(db.get(), "SELECT name FROM folders");
    if (!st) return tl::unexpected(st.error());
    std::set<std::string> known;
    while (sqlite3_step(st->get()) == SQLITE_ROW)
      known.insert(ColumnText(st->get(), 0));
    st->reset();
    for (const auto& name : known) {
      if (name == "INBOX" || dirs->count(name)) continue;
      if (auto r = DropFolderRows(name); !r) return r;
    }
    for (const auto& [name, dir] : *dirs) {
      if (known.count(name)) continue;
      if (auto r = InsertFolder(name, SpecialUse::kNone); !r) return r;
    }
    return {};
  }

  Result<void> DropFolderRows(const std::string& name) {
    auto f = LoadFolder(name);
    if (!f) return tl::unexpected(f.error());
    if (!*f) return {};
    for (const char* sql : {"DELETE FROM messages WHERE folder = ?",
                            "DELETE FROM expunged WHERE folder = ?",
                            "DELETE FROM parts WHERE folder = ?",
                            "DELETE FROM folders WHERE id = ?"}) {
      auto st = Prepare(db.get(), sql);
      if (!st) return tl::unexpected(st.error());
      sqlite3_bind_int64(st->get(), 1, (*f)->id);
      if (auto r = Step(st->get()); !r) return r;
    }
    return DropText((*f)->id, 0, 0xffffffffu);
  }

  // The full-text rows of UIDs first..last of a folder.
  Result<void> DropText(int64_t folder, uint32_t first, uint32_t last) {
    auto ti = Prepare(db.get(),
                      "DELETE FROM textindex WHERE folder = ? AND uid BETWEEN ? AND ?");
    if (!ti) return tl::unexpected(ti.error());
    sqlite3_bind_int64(ti->get(), 1, folder);
    sqlite3_bind_int64(ti->get(), 2, first);
    sqlite3_bind_int64(ti->get(), 3, last);
    if (auto r = Step(ti->get()); !r) return r;
    if (!has_fts) return {};
    auto st = Prepare(db.get(), first == last
                                    ? "DELETE FROM fts WHERE rowid = ?1"
                                    : "DELETE FROM fts WHERE rowid BETWEEN ?1 AND ?2");
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, TextRowid(folder, first));
    if (first != last) sqlite3_bind_int64(st->get(), 2, TextRowid(folder, last));
    return Step(st->get());
  }

  // The folder of a name, inside a write transaction: its row (made for a
  // directory another program created; dropped when the directory is gone).
  Result<Folder> FolderFor(std::string_view raw_name) {
    auto name = CanonicalFolderName(raw_name);
    if (!name) return Fail("invalid mailbox name", EINVAL);
    auto f = LoadFolder(*name);
    if (!f) return tl::unexpected(f.error());
    std::string dir = FolderDirectory(*name);
    bool exists =
        DirExists(dir) && FolderNameOfDirectory(dir).value_or("") == *name;
    if (*name == "INBOX") exists = true;
    if (*f && !exists) {
      if (auto r = DropFolderRows(*name); !r) return tl::unexpected(r.error());
      return Fail("no such mailbox: " + *name, ENOENT);
    }
    if (!*f) {
      if (!exists) return Fail("no such mailbox: " + *name, ENOENT);
      if (auto r = InsertFolder(*name, SpecialUse::kNone); !r)
        return tl::unexpected(r.error());
      f = LoadFolder(*name);
      if (!f) return tl::unexpected(f.error());
      if (!*f) return Err("index: folder row vanished");
    }
    // A bare directory another program made (".Foo" without cur/): make
    // it a Maildir so the folder can be used.
    if (!dir.empty() && !DirExists(dir + "/cur")) {
      if (auto r = EnsureMaildirDirs(root.get(), dir); !r) {
        return tl::unexpected(r.error());
      }
    }
    return std::move(**f);
  }

  // --- reconciliation with the Maildir (RFC 9051 2.3.1.1, RFC 7162 3.1) ----

  // Brings the index of `f` in line with its directories, inside the
  // caller's write transaction. All changes found share one new MODSEQ.
  Result<void> Reconcile(Folder& f) {
    auto dir = OpenFolderDir(f);
    if (!dir) return tl::unexpected(dir.error());
    // Taken before the listing: a change after it moves the mtimes on.
    const std::string scan_key = path + "/" + f.dir;
    std::optional<ScanCache::Stamp> stamp = DirStamp(dir->get());
    if (stamp) {
      if (auto agreed = Scans().Get(scan_key)) {
        bool cur_same = stamp->cur_ns != 0 && agreed->cur_ns == stamp->cur_ns;
        bool new_same = stamp->new_ns != 0 && agreed->new_ns == stamp->new_ns;
        if (cur_same && new_same) return {};
        if (cur_same) {
          auto done = ReconcileNew(f, dir->get(), scan_key, *stamp);
          if (!done) return tl::unexpected(done.error());
          if (*done) return {};
        }
      }
    }
    CleanTmp(dir->get());
    auto files = ListMessages(dir->get());
    if (!files) return tl::unexpected(files.error());
    auto rows = Rows(f);
    if (!rows) return tl::unexpected(rows.error());

    uint64_t modseq = f.highest + 1;
    bool changed = false;
    std::unordered_map<std::string, const Row*> by_uniq;
    std::vector<const Row*> missing;
    for (const Row& r : *rows) {
      by_uniq[r.uniq] = &r;
      if (!files->count(r.uniq)) missing.push_back(&r);
    }
    if (!missing.empty()) {
      // readdir() may miss a file another program renames meanwhile: only
      // what a second listing also misses is gone.
      auto again = ListMessages(dir->get());
      if (!again) return tl::unexpected(again.error());
      for (const Row* r : missing) {
        auto it = again->find(r->uniq);
        if (it != again->end()) {
          (*files)[r->uniq] = it->second;
          continue;
        }
        if (auto x = RemoveRow(f, r->uid, modseq); !x) return x;
        changed = true;
      }
    }

    std::vector<std::pair<std::string, std::string>> fresh;  // uniq, file
    for (const auto& [uniq, file] : *files) {
      auto it = by_uniq.find(uniq);
      if (it == by_uniq.end()) {
        fresh.emplace_back(uniq, file);
        continue;
      }
      const Row& r = *it->second;
      if (r.file == file) continue;
      // Renamed by another program (or by a write of ours that crashed
      // before its commit): the file name's system flags win.
      Row updated = r;
      updated.file = file;
      bool forwarded = false;
      Flags name_flags = FlagsOfFileName(file, &forwarded);
      bool had_forwarded = HasKeyword(r.keywords, kForwarded);
      if (name_flags != r.flags || forwarded != had_forwarded) {
        updated.flags = name_flags;
        if (forwarded && !had_forwarded) updated.keywords.push_back(kForwarded);
        if (!forwarded && had_forwarded) {
          std::erase_if(updated.keywords, [](const std::string& k) {
            return SameKeyword(k, kForwarded);
          });
        }
        SortKeywords(updated.keywords);
        updated.modseq = modseq;
        changed = true;
      }
      if (auto x = UpdateRow(f, updated); !x) return x;
    }

    auto added = AddFresh(f, dir->get(), fresh, modseq);
    if (!added) return tl::unexpected(added.error());
    changed |= *added;
    if (changed) {
      f.highest = modseq;
      if (auto x = SaveFolder(f); !x) return x;
      // Written in the caller's transaction, which may yet fail: these
      // mtimes are trusted only once it commits.
      Scans().Forget(scan_key);
      if (stamp) agree_on_commit.emplace_back(scan_key, *stamp);
    } else if (stamp) {
      Scans().Agreed(scan_key, *stamp);
    }
    return {};
  }

  // Reconcile when only new/ may have changed (cur/ agrees with the index
  // at `stamp.cur_ns`): delivery adds files there, and a file leaving new/
  // for cur/ would have moved cur/'s mtime. Lists new/ alone and reads the
  // index rows of new/ alone, so a delivery into a large folder costs what
  // the new files cost. False: something else happened (a row of new/
  // whose file was renamed, a new file the index has elsewhere): the
  // caller does the whole reconcile.
  Result<bool> ReconcileNew(Folder& f, int dir, const std::string& scan_key,
                            const ScanCache::Stamp& stamp) {
    auto files = ListMessages(dir, false);
    if (!files) return tl::unexpected(files.error());
    std::string sql = std::string("SELECT ") + kRowColumns +
                      " FROM messages WHERE folder = ? AND substr(file, 1, 4) = 'new/'";
    auto st = Prepare(db.get(), sql.c_str());
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, f.id);
    std::map<std::string, Row> in_new;
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
      Row r = ReadRow(st->get());
      std::string uniq = r.uniq;
      in_new.emplace(std::move(uniq), std::move(r));
    }
    if (rc != SQLITE_DONE) return Err(sqlite::DbError(db.get(), "index"));
    st->reset();

    uint64_t modseq = f.highest + 1;
    bool changed = false;
    std::vector<std::pair<std::string, std::string>> fresh;
    for (const auto& [uniq, file] : *files) {
      auto it = in_new.find(uniq);
      if (it != in_new.end()) {
        if (it->second.file != file) return false;
        continue;
      }
      static constexpr char kKnown[] = "SELECT 1 FROM messages WHERE folder = ? AND uniq = ?";
      auto known = Cached(kKnown);
      if (!known) return tl::unexpected(known.error());
      sqlite3_bind_int64(*known, 1, f.id);
      BindText(*known, 2, uniq);
      bool elsewhere = sqlite3_step(*known) == SQLITE_ROW;
      sqlite3_reset(*known);
      if (elsewhere) return false;
      fresh.emplace_back(uniq, file);
    }
    std::vector<const Row*> missing;
    for (const auto& [uniq, r] : in_new) {
      if (!files->count(uniq)) missing.push_back(&r);
    }
    if (!missing.empty()) {
      // As in Reconcile(): only what a second listing misses too is gone.
      auto again = ListMessages(dir, false);
      if (!again) return tl::unexpected(again.error());
      for (const Row* r : missing) {
        if (again->count(r->uniq)) return false;
        if (auto x = RemoveRow(f, r->uid, modseq); !x) return tl::unexpected(x.error());
        changed = true;
      }
    }
    auto added = AddFresh(f, dir, fresh, modseq);
    if (!added) return tl::unexpected(added.error());
    changed |= *added;
    if (changed) {
      f.highest = modseq;
      if (auto x = SaveFolder(f); !x) return tl::unexpected(x.error());
      // cur/ was not touched: it still agrees whatever this transaction
      // becomes; new/ agrees once it commits.
      Scans().Agreed(scan_key, ScanCache::Stamp{0, stamp.cur_ns});
      agree_on_commit.emplace_back(scan_key, stamp);
    } else {
      Scans().Agreed(scan_key, stamp);
    }
    return true;
  }

  // Gives the files (uniq, "new/..." or "cur/...") of `fresh`, which the
  // index does not have, UIDs in arrival order and rows at `modseq`.
  // True when any was added (a file gone meanwhile is skipped).
  Result<bool> AddFresh(Folder& f, int dir,
                        const std::vector<std::pair<std::string, std::string>>& files,
                        uint64_t modseq) {
    struct Fresh {
      std::string uniq, file;
      int64_t mtime_ns;
      int64_t date;
      uint64_t size;
    };
    std::vector<Fresh> fresh;
    bool changed = false;
    // A folder indexed in bulk (a Maildir another server wrote, its first
    // SELECT) is not read now: sizes are counted when first asked for
    // (Sizes()), as Dovecot does. A few new files are counted at once.
    const bool count_sizes = files.size() <= kCountSizesUpTo;
    for (const auto& [uniq, file] : files) {
      // The size IMAP announces (RFC822.SIZE, CRLF octets): from the
      // name when the writer put it there (then the file is not opened),
      // else counted (or left for later).
      std::optional<uint64_t> named = CrlfSizeInName(file);
      if (!named && !count_sizes) named = kUnknownSize;
      struct stat st;
      Result<uint64_t> size = named.value_or(0);
      if (named) {
        if (::fstatat(dir, file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
          if (errno == ENOENT) continue;  // gone meanwhile; or renamed: next time
          return io::ErrnoErr("stat " + Sub(f.dir, file), errno);
        }
        if (!S_ISREG(st.st_mode)) continue;  // as O_NOFOLLOW refuses a link
      } else {
        UniqueFd fd(::openat(dir, file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd) {
          if (errno == ENOENT) continue;  // gone meanwhile; or renamed: next time
          return io::ErrnoErr("open " + Sub(f.dir, file), errno);
        }
        if (::fstat(fd.get(), &st) != 0) return io::ErrnoErr("stat " + file, errno);
        size = CrlfSizeOfFd(fd.get());
      }
      if (!size) return tl::unexpected(size.error());
      fresh.push_back({uniq, file,
                       static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                           st.st_mtim.tv_nsec,
                       static_cast<int64_t>(st.st_mtim.tv_sec), *size});
    }
    // New messages get UIDs in arrival order: the file's mtime (delivery
    // and APPEND set it; Maildir names do not sort by time).
    std::sort(fresh.begin(), fresh.end(), [](const Fresh& a, const Fresh& b) {
      return a.mtime_ns != b.mtime_ns ? a.mtime_ns < b.mtime_ns
                                      : a.uniq < b.uniq;
    });
    for (const Fresh& n : fresh) {
      if (f.uidnext == UINT32_MAX)
        return Err("UID space of " + f.name + " exhausted");
      Row r;
      r.uid = f.uidnext++;
      r.uniq = n.uniq;
      r.file = n.file;
      bool forwarded = false;
      r.flags = FlagsOfFileName(n.file, &forwarded);
      if (forwarded) r.keywords.push_back(kForwarded);
      r.modseq = modseq;
      r.date = n.date;
      r.size = n.size;
      if (auto x = InsertRow(f, r); !x) return tl::unexpected(x.error());
      changed = true;
    }
    return changed;
  }

  // The mtimes of new/ and cur/, each 0 when too recent to trust.
  static std::optional<ScanCache::Stamp> DirStamp(int dir) {
    struct stat cur, fresh;
    if (::fstatat(dir, "cur", &cur, 0) != 0 || ::fstatat(dir, "new", &fresh, 0) != 0) {
      return std::nullopt;
    }
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    auto ns = [](const struct timespec& t) {
      return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
    };
    auto trusted = [&](const struct timespec& t) {
      return ns(now) - ns(t) < 1000000000 ? 0 : ns(t);
    };
    return ScanCache::Stamp{trusted(fresh.st_mtim), trusted(cur.st_mtim)};
  }

  // Maildir: files in tmp/ untouched for 36 hours are left-overs of
  // writers that died (APPENDs of ours included).
  void CleanTmp(int dir) {
    auto fd = io::OpenDirAt(dir, "tmp");
    if (!fd) return;
    auto names = io::ListDir(fd->get());
    if (!names) return;
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    for (auto& n : *names) {
      struct stat st;
      if (::fstatat(fd->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode) &&
          now - static_cast<int64_t>(st.st_atim.tv_sec) > kTmpMaxAge &&
          now - static_cast<int64_t>(st.st_mtim.tv_sec) > kTmpMaxAge) {
        ::unlinkat(fd->get(), n.c_str(), 0);
      }
    }
  }

  Result<Folder> Reconciled(std::string_view name) {
    auto f = FolderFor(name);
    if (!f) return f;
    if (auto r = Reconcile(*f); !r) return tl::unexpected(r.error());
    return f;
  }

  // Counts the sizes the index lacks (kUnknownSize) of `f`'s messages,
  // of all of them or of those in `uids` (ascending), and writes them in
  // the caller's write transaction. A file gone meanwhile is skipped: the
  // next reconcile finds where it went.
  Result<std::vector<std::pair<uint32_t, uint64_t>>> CountSizes(
      const Folder& f, const std::vector<uint32_t>* uids) {
    std::vector<std::pair<uint32_t, uint64_t>> out;
    auto st = Prepare(db.get(),
                      "SELECT uid, file FROM messages WHERE folder = ? AND size < 0 "
                      "ORDER BY uid");
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(st->get(), 1, f.id);
    std::vector<std::pair<uint32_t, std::string>> todo;
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
      auto uid = static_cast<uint32_t>(sqlite3_column_int64(st->get(), 0));
      if (uids && !std::binary_search(uids->begin(), uids->end(), uid)) continue;
      todo.emplace_back(uid, ColumnText(st->get(), 1));
    }
    if (rc != SQLITE_DONE) return Err(sqlite::DbError(db.get(), "index"));
    st->reset();
    if (todo.empty()) return out;
    auto dir = OpenFolderDir(f);
    if (!dir) return tl::unexpected(dir.error());
    for (const auto& [uid, file] : todo) {
      UniqueFd fd(::openat(dir->get(), file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (!fd) {
        if (errno == ENOENT) continue;
        return io::ErrnoErr("open " + Sub(f.dir, file), errno);
      }
      auto size = CrlfSizeOfFd(fd.get());
      if (!size) return tl::unexpected(size.error());
      out.emplace_back(uid, *size);
    }
    if (auto w = WriteSizes(f, out); !w) return tl::unexpected(w.error());
    return out;
  }

  Result<void> WriteSizes(const Folder& f,
                          const std::vector<std::pair<uint32_t, uint64_t>>& sizes) {
    static constexpr char kUpdate[] =
        "UPDATE messages SET size = ? WHERE folder = ? AND uid = ? AND size < 0";
    for (const auto& [uid, size] : sizes) {
      auto st = Cached(kUpdate);
      if (!st) return tl::unexpected(st.error());
      sqlite3_bind_int64(*st, 1, static_cast<int64_t>(size));
      sqlite3_bind_int64(*st, 2, f.id);
      sqlite3_bind_int64(*st, 3, uid);
      if (auto r = Step(*st); !r) return r;
    }
    return {};
  }

  // Commits of what the index can rebuild (the part cache, counted
  // sizes) are not synced while this lives: a long FETCH saves every
  // 256 KiB of output, and an fsync each cost more than the inserts. The
  // next synced commit syncs these frames with its own, and a torn,
  // unsynced commit is dropped by the WAL's checksums.
  struct Unsynced {
    sqlite3* db;
    explicit Unsynced(sqlite3* d) : db(d) { (void)Exec(db, "PRAGMA synchronous=OFF"); }
    ~Unsynced() { (void)Exec(db, "PRAGMA synchronous=FULL"); }
    Unsynced(const Unsynced&) = delete;
    Unsynced& operator=(const Unsynced&) = delete;
  };
  // An unsynced write transaction on an existing folder, for what the
  // index can rebuild. Members end in reverse: the commit (or rollback)
  // comes before synchronous=FULL is back.
  struct CacheWrite {
    std::unique_ptr<Unsynced> unsynced;
    Transaction txn;
    Folder folder;
  };
  Result<CacheWrite> BeginCacheWrite(std::string_view name) {
    if (auto c = Connect(); !c) return tl::unexpected(c.error());
    auto unsynced = std::make_unique<Unsynced>(db.get());
    auto txn = Write();
    if (!txn) return tl::unexpected(txn.error());
    auto f = LoadFolder(CanonicalFolderName(name).value_or(""));
    if (!f) return tl::unexpected(f.error());
    if (!*f) return Fail("no such mailbox", ENOENT);
    return CacheWrite{std::move(unsynced), std::move(*txn), std::move(**f)};
  }

  // --- subscriptions --------------------------------------------------------

  Result<std::set<std::string>> LoadSubscriptions() {
    int err = 0;
    auto text = io::ReadSmallFileAt(root.get(), kSubscriptionsFile,
                                    kMaxSubscriptions, &err);
    std::set<std::string> out;
    if (!text) {
      if (err == ENOENT) return out;
      return tl::unexpected(text.error());
    }
    std::string_view rest = *text;
    while (!rest.empty()) {
      size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      if (auto c = CanonicalFolderName(line)) out.insert(*c);
    }
    return out;
  }

  // --- moving messages between folders ---------------------------------------

  Result<CopyResult> Transfer(std::string_view from_name,
                              const std::vector<uint32_t>& uids,
                              std::string_view to_name, bool move) {
    auto txn = Write();
    if (!txn) return tl::unexpected(txn.error());
    auto from = FolderFor(from_name);
    if (!from) return tl::unexpected(from.error());
    auto to = FolderFor(to_name);
    if (!to) return tl::unexpected(to.error());
    bool same = from->id == to->id;
    auto from_dir = OpenFolderDir(*from);
    if (!from_dir) return tl::unexpected(from_dir.error());
    auto to_dir = OpenFolderDir(*to);
    if (!to_dir) return tl::unexpected(to_dir.error());

    std::vector<uint32_t> sorted = uids;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    CopyResult result;
    result.uidvalidity = to->uidvalidity;
    uint64_t to_modseq = to->highest + 1;
    uint64_t from_modseq = same ? to_modseq : from->highest + 1;
    bool from_new_touched = false;
    for (uint32_t uid : sorted) {
      auto row = RowByUid(*from, uid);
      if (!row) return tl::unexpected(row.error());
      if (!*row)
        continue;  // RFC 9051 6.4.9: a UID that does not exist is ignored
      Row r = std::move(**row);
      std::string target_uniq = NewUniqueName();
      std::string target_file =
          "cur/" + target_uniq + ":2," +
          InfoLetters(r.flags, HasKeyword(r.keywords, kForwarded),
                      OtherLetters(r.file));
      auto place = [&](const std::string& src) {
        return move ? ::renameat(from_dir->get(), src.c_str(), to_dir->get(),
                                 target_file.c_str())
                    : ::linkat(from_dir->get(), src.c_str(), to_dir->get(),
                               target_file.c_str(), 0);
      };
      int rc = place(r.file);
      if (rc != 0 && errno == ENOENT) {
        std::string now = Relocate(from_dir->get(), r.uniq);
        if (now.empty())
          continue;  // deleted by another program: Reconcile will tell
        r.file = now;
        rc = place(r.file);
      }
      if (rc != 0 && !move &&
          (errno == EXDEV || errno == EPERM || errno == EMLINK)) {
        auto copied = CopyFile(from_dir->get(), r.file, to_dir->get(),
                               target_uniq, target_file);
        if (!copied) return tl::unexpected(copied.error());
        rc = 0;
      }
      if (rc != 0)
        return io::ErrnoErr("place " + Sub(from->dir, r.file), errno);
      if (r.file.compare(0, 4, "new/") == 0) from_new_touched = true;
      if (to->uidnext == UINT32_MAX)
        return Err("UID space of " + to->name + " exhausted");
      Row t = r;
      t.uid = to->uidnext++;
      t.uniq = target_uniq;
      t.file = target_file;
      t.modseq = to_modseq;
      if (auto x = InsertRow(*to, t); !x) return tl::unexpected(x.error());
      if (move) {
        if (auto x = RemoveRow(*from, r.uid, from_modseq); !x)
          return tl::unexpected(x.error());
      }
      result.source_uids.push_back(r.uid);
      result.target_uids.push_back(t.uid);
    }
    if (result.source_uids.empty()) return result;
    if (auto x = SyncMessageDirs(to_dir->get(), false); !x)
      return tl::unexpected(x.error());
    if (move) {
      if (auto x = SyncMessageDirs(from_dir->get(), from_new_touched); !x) {
        return tl::unexpected(x.error());
      }
    }
    to->highest = to_modseq;
    if (same) {
      if (auto x = SaveFolder(*to); !x) return tl::unexpected(x.error());
    } else {
      if (auto x = SaveFolder(*to); !x) return tl::unexpected(x.error());
      if (move) {
        from->highest = from_modseq;
        if (auto x = SaveFolder(*from); !x) return tl::unexpected(x.error());
      }
    }
    if (auto x = Commit(*txn); !x) return tl::unexpected(x.error());
    return result;
  }

  // A copy when a hard link cannot be made: tmp/, fsync, rename.
  Result<void> CopyFile(int from_dir, const std::string& src, int to_dir,
                        const std::string& uniq, const std::string& target) {
    UniqueFd in(
        ::openat(from_dir, src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) return io::ErrnoErr("open " + src, errno);
    struct stat st;
    if (::fstat(in.get(), &st) != 0) return io::ErrnoErr("stat " + src, errno);
    std::string tmp = "tmp/" + uniq;
    UniqueFd out(::openat(to_dir, tmp.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) return io::ErrnoErr("create " + tmp, errno);
    std::string buf(64 * 1024, '\0');
    for (;;) {
      ssize_t n = ::read(in.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return io::ErrnoErr("read " + src, errno);
      if (n == 0) break;
      if (int e = io::WriteAll(out.get(), buf.data(), static_cast<size_t>(n));
          e != 0) {
        ::unlinkat(to_dir, tmp.c_str(), 0);
        return io::ErrnoErr("write " + tmp, e);
      }
    }
    // The mtime is the internal date; the access time is now (CleanTmp()).
    struct timespec times[2] = {{0, UTIME_NOW}, st.st_mtim};
    ::futimens(out.get(), times);
    if (::fsync(out.get()) != 0) return io::ErrnoErr("sync " + tmp, errno);
    if (::renameat(to_dir, tmp.c_str(), to_dir, target.c_str()) != 0) {
      return io::ErrnoErr("rename " + tmp, errno);
    }
    return {};
  }
};

MaildirStore::MaildirStore(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
MaildirStore::~MaildirStore() = default;

Result<std::unique_ptr<MaildirStore>> MaildirStore::Open(
    const std::string& maildir, MaildirStoreOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->path = maildir;
  impl->options = std::move(options);
  if (auto made = io::MkdirAll(maildir, 0700); !made)
    return tl::unexpected(made.error());
  auto root = io::OpenDir(maildir);
  if (!root) return tl::unexpected(root.error());
  impl->root = std::move(*root);
  if (auto r = impl->EnsureMaildirDirs(impl->root.get(), ""); !r)
    return tl::unexpected(r.error());

  // Private like the mail, before SQLite creates it with the umask.
  std::string db_path = maildir + "/" + kImapIndexFile;
  int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io::ErrnoErr("open " + db_path, errno);
  ::close(fd);
  auto opened = OpenIndex(db_path);
  if (!opened) return tl::unexpected(opened.error());
  impl->db = std::move(*opened);
  sqlite3* db = impl->db.get();
  {
    auto txn = Transaction::Begin(db, true);
    if (!txn) return Err(db_path + ": " + txn.error().message);
    auto version = Prepare(db, "PRAGMA user_version");
    if (!version) return tl::unexpected(version.error());
    int current = sqlite3_step(version->get()) == SQLITE_ROW
                      ? sqlite3_column_int(version->get(), 0)
                      : 0;
    version->reset();
    if (current > kSchemaVersion) {
      return Err(db_path + ": index was created by a newer tern (schema " +
                 std::to_string(current) + ")");
    }
    if (current < 1) {
      auto ok =
          Exec(db,
               "CREATE TABLE account ("
               "  id INTEGER PRIMARY KEY CHECK (id = 1),"
               "  last_uidvalidity INTEGER NOT NULL);"
               "INSERT INTO account VALUES (1, 0);"
               "CREATE TABLE folders ("
               "  id INTEGER PRIMARY KEY,"
               "  name TEXT NOT NULL UNIQUE,"
               "  uidvalidity INTEGER NOT NULL,"
               "  uidnext INTEGER NOT NULL,"
               "  highestmodseq INTEGER NOT NULL,"
               "  special_use INTEGER NOT NULL DEFAULT 0);"
               "CREATE TABLE messages ("
               "  folder INTEGER NOT NULL,"
               "  uid INTEGER NOT NULL,"
               "  uniq TEXT NOT NULL,"
               "  file TEXT NOT NULL,"
               "  flags INTEGER NOT NULL,"
               "  keywords TEXT NOT NULL,"
               "  modseq INTEGER NOT NULL,"
               "  internaldate INTEGER NOT NULL,"
               "  size INTEGER NOT NULL,"
               "  PRIMARY KEY (folder, uid),"
               "  UNIQUE (folder, uniq)) WITHOUT ROWID;"
               "CREATE INDEX messages_modseq ON messages (folder, modseq);"
               "CREATE TABLE expunged ("
               "  folder INTEGER NOT NULL,"
               "  uid INTEGER NOT NULL,"
               "  modseq INTEGER NOT NULL,"
               "  PRIMARY KEY (folder, uid)) WITHOUT ROWID;"
               "PRAGMA user_version = 1;");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (current < 2) {
      // Schema 2: what FETCH renders from a message's MIME structure
      // (ENVELOPE, BODYSTRUCTURE), kept so the next client's sync need not
      // read and parse every message again. A message never changes, so
      // the rows live as long as the message.
      auto ok = Exec(db,
                     "CREATE TABLE IF NOT EXISTS parts ("
                     "  folder INTEGER NOT NULL,"
                     "  uid INTEGER NOT NULL,"
                     "  kind INTEGER NOT NULL,"
                     "  value BLOB NOT NULL,"
                     "  PRIMARY KEY (folder, uid, kind)) WITHOUT ROWID;"
                     "PRAGMA user_version = 2;");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (current < 3) {
      // Schema 3: the full-text index of SEARCH TEXT and BODY (see
      // SearchText). `textindex` says which messages have their text in
      // `fts` (complete = 0: cut at the session's size limit). Schema 3's
      // `fts` kept trigram positions; schema 4 makes it anew.
      auto ok = Exec(db,
                     "CREATE TABLE IF NOT EXISTS textindex ("
                     "  folder INTEGER NOT NULL,"
                     "  uid INTEGER NOT NULL,"
                     "  complete INTEGER NOT NULL,"
                     "  PRIMARY KEY (folder, uid)) WITHOUT ROWID;"
                     "PRAGMA user_version = 3;");
      if (!ok) return Err(db_path + ": " + ok.error().message);
    }
    if (current < 4) {
      // Schema 4: `fts` without trigram positions (detail=none), less
      // than half of schema 3's size. Schema 3's table is dropped and every
      // message marked unindexed, so SEARCH builds the index again,
      // lazily, as for a new account. The FTS5 table is left out where
      // SQLite lacks FTS5 or its trigram tokenizer (before 3.34): SEARCH
      // then reads every message as before.
      auto ok = Exec(db,
                     "DELETE FROM textindex;"
                     "PRAGMA user_version = 4;");
      if (!ok) return Err(db_path + ": " + ok.error().message);
      (void)Exec(db, "DROP TABLE IF EXISTS fts");
      (void)Exec(db,
                 "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING "
                 "fts5(header, body, tokenize = 'trigram case_sensitive 0', "
                 "detail = none)");
    }
    {
      auto probe = Prepare(db, "SELECT 1 FROM sqlite_master WHERE name = 'fts'");
      if (!probe) return tl::unexpected(probe.error());
      impl->has_fts = sqlite3_step(probe->get()) == SQLITE_ROW;
    }
    auto inbox = impl->LoadFolder("INBOX");
    if (!inbox) return tl::unexpected(inbox.error());
    if (!*inbox) {
      if (auto r = impl->InsertFolder("INBOX", SpecialUse::kNone); !r) {
        return tl::unexpected(r.error());
      }
    }
    if (auto r = txn->Commit(); !r)
      return Err(db_path + ": " + r.error().message);
  }

  // Left-overs of a DeleteFolder that crashed after hiding the directory.
  if (auto names = io::ListDir(impl->root.get()); names) {
    for (auto& n : *names) {
      if (n.rfind(kDeletedPrefix, 0) == 0) {
        std::error_code ec;
        std::filesystem::remove_all(maildir + "/" + n, ec);
      }
    }
  }

  std::unique_ptr<MaildirStore> store(new MaildirStore(std::move(impl)));
  if (store->impl_->options.create_special_folders) {
    // RFC 6154 2: Sent, Drafts, Trash and Junk for every account, found by
    // clients through their attribute rather than their name.
    auto folders = store->ListFolders();
    if (!folders) return tl::unexpected(folders.error());
    for (auto [use, name] : {std::pair{SpecialUse::kSent, "Sent"},
                             std::pair{SpecialUse::kDrafts, "Drafts"},
                             std::pair{SpecialUse::kTrash, "Trash"},
                             std::pair{SpecialUse::kJunk, "Junk"}}) {
      bool have = std::any_of(
          folders->begin(), folders->end(),
          [use = use](const FolderInfo& f) { return f.special_use == use; });
      if (have) continue;
      auto existing = std::find_if(
          folders->begin(), folders->end(),
          [name = name](const FolderInfo& f) { return f.name == name; });
      if (existing != folders->end()) {
        // A folder of that name made by another program: give it the use.
        auto txn = store->impl_->Write();
        if (!txn) return tl::unexpected(txn.error());
        auto st = Prepare(store->impl_->db.get(),
                          "UPDATE folders SET special_use = ? WHERE name = ?");
        if (!st) return tl::unexpected(st.error());
        sqlite3_bind_int(st->get(), 1, static_cast<int>(use));
        BindText(st->get(), 2, name);
        if (auto r = store->impl_->Step(st->get()); !r)
          return tl::unexpected(r.error());
        if (auto r = store->impl_->Commit(*txn); !r)
          return tl::unexpected(r.error());
        continue;
      }
      if (auto r = store->CreateFolder(name, use); !r)
        return tl::unexpected(r.error());
    }
  }
  return store;
}

Result<std::vector<FolderInfo>> MaildirStore::ListFolders() {
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  if (auto r = impl_->ReconcileFolders(); !r) return tl::unexpected(r.error());
  auto st = Prepare(impl_->db.get(),
                    "SELECT name, special_use FROM folders ORDER BY name");
  if (!st) return tl::unexpected(st.error());
  std::vector<FolderInfo> out;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    FolderInfo info;
    info.name = ColumnText(st->get(), 0);
    info.special_use =
        static_cast<SpecialUse>(sqlite3_column_int(st->get(), 1));
    out.push_back(std::move(info));
  }
  st->reset();
  if (auto r = impl_->Commit(*txn); !r) return tl::unexpected(r.error());
  auto subs = impl_->LoadSubscriptions();
  if (!subs) return tl::unexpected(subs.error());
  std::set<std::string> names;
  for (auto& f : out) names.insert(f.name);
  for (auto& f : out) {
    auto lb = names.lower_bound(f.name + "/");
    f.has_children = lb != names.end() && lb->rfind(f.name + "/", 0) == 0;
    f.subscribed = subs->count(f.name) > 0;
  }
  return out;
}

Result<void> MaildirStore::CreateFolder(std::string_view raw_name,
                                        SpecialUse use) {
  auto name = CanonicalFolderName(raw_name);
  if (!name) return Fail("invalid mailbox name", EINVAL);
  if (*name == "INBOX") return Fail("INBOX exists", EEXIST);
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  if (auto r = impl_->ReconcileFolders(); !r) return r;
  auto existing = impl_->LoadFolder(*name);
  if (!existing) return tl::unexpected(existing.error());
  if (*existing) return Fail("mailbox exists: " + *name, EEXIST);
  // RFC 9051 6.3.4: superior names are created as needed ("a/b/c" makes
  // "a" and "a/b"), each a real Maildir++ folder.
  std::vector<std::string> chain;
  for (std::string p = ParentFolder(*name); !p.empty(); p = ParentFolder(p))
    chain.push_back(p);
  std::reverse(chain.begin(), chain.end());
  chain.push_back(*name);
  for (const std::string& level : chain) {
    if (level == "INBOX") continue;
    auto have = impl_->LoadFolder(level);
    if (!have) return tl::unexpected(have.error());
    if (*have) continue;
    // The directory first: a crash before the commit leaves a directory
    // without a row, which the next listing adopts.
    if (auto r =
            impl_->EnsureMaildirDirs(impl_->root.get(), FolderDirectory(level));
        !r) {
      return r;
    }
    if (auto r = impl_->InsertFolder(level,
                                     level == *name ? use : SpecialUse::kNone);
        !r) {
      return r;
    }
  }
  return impl_->Commit(*txn);
}

Result<void> MaildirStore::DeleteFolder(std::string_view raw_name) {
  auto name = CanonicalFolderName(raw_name);
  if (!name) return Fail("invalid mailbox name", EINVAL);
  // RFC 9051 6.3.5: deleting INBOX is an error.
  if (*name == "INBOX") return Fail("INBOX cannot be deleted", EPERM);
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  if (auto r = impl_->ReconcileFolders(); !r) return r;
  auto f = impl_->LoadFolder(*name);
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox: " + *name, ENOENT);
  // A Maildir++ folder cannot stay as a \Noselect name above its
  // inferiors, so those must go first (RFC 9051 7.1 HASCHILDREN).
  // substr() and length() both count characters, so UTF-8 names compare
  // right.
  auto st =
      Prepare(impl_->db.get(),
              "SELECT 1 FROM folders WHERE substr(name, 1, length(?1)) = ?1");
  if (!st) return tl::unexpected(st.error());
  BindText(st->get(), 1, *name + "/");
  if (sqlite3_step(st->get()) == SQLITE_ROW)
    return Fail("mailbox has children: " + *name, ENOTEMPTY);
  st->reset();
  // Hide the directory in one rename (atomic for every reader), forget the
  // folder, then remove the files. A crash after the rename leaves a
  // "tern-deleted.*" directory that Open() removes.
  std::string dir = FolderDirectory(*name);
  std::string hidden = std::string(kDeletedPrefix) + impl_->NewUniqueName();
  if (::renameat(impl_->root.get(), dir.c_str(), impl_->root.get(),
                 hidden.c_str()) != 0) {
    return io::ErrnoErr("rename " + dir, errno);
  }
  if (::fsync(impl_->root.get()) != 0)
    return io::ErrnoErr("sync Maildir", errno);
  if (auto r = impl_->DropFolderRows(*name); !r) return r;
  if (auto r = impl_->Commit(*txn); !r) return r;
  std::error_code ec;
  std::filesystem::remove_all(impl_->path + "/" + hidden, ec);
  return {};
}

Result<void> MaildirStore::RenameFolder(std::string_view raw_from,
                                        std::string_view raw_to) {
  auto from = CanonicalFolderName(raw_from);
  auto to = CanonicalFolderName(raw_to);
  if (!from || !to) return Fail("invalid mailbox name", EINVAL);
  if (*to == "INBOX") return Fail("INBOX exists", EEXIST);
  if (to->rfind(*from + "/", 0) == 0)
    return Fail("cannot rename a mailbox into itself", EINVAL);
  if (*from == "INBOX") {
    // RFC 9051 6.3.6: renaming INBOX moves its messages to the new name
    // and leaves INBOX empty; its inferiors stay.
    if (auto r = CreateFolder(*to, SpecialUse::kNone); !r) return r;
    auto snap = Select("INBOX");
    if (!snap) return tl::unexpected(snap.error());
    std::vector<uint32_t> uids;
    for (auto& m : snap->messages) uids.push_back(m.uid);
    if (uids.empty()) return {};
    auto moved = Move("INBOX", uids, *to);
    if (!moved) return tl::unexpected(moved.error());
    return {};
  }
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  if (auto r = impl_->ReconcileFolders(); !r) return r;
  auto f = impl_->LoadFolder(*from);
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox: " + *from, ENOENT);
  auto exists = impl_->LoadFolder(*to);
  if (!exists) return tl::unexpected(exists.error());
  if (*exists) return Fail("mailbox exists: " + *to, EEXIST);
  // The folder and its inferiors (RFC 9051 6.3.6), each its own Maildir++
  // directory. Rows keep their id, so UIDVALIDITY and UIDs go along.
  auto st = Prepare(impl_->db.get(),
                    "SELECT name FROM folders WHERE name = ?1 OR "
                    "substr(name, 1, length(?2)) = ?2");
  if (!st) return tl::unexpected(st.error());
  BindText(st->get(), 1, *from);
  BindText(st->get(), 2, *from + "/");
  std::vector<std::string> names;
  while (sqlite3_step(st->get()) == SQLITE_ROW)
    names.push_back(ColumnText(st->get(), 0));
  st->reset();
  // Superior names of the target, as CREATE makes them.
  for (std::string p = ParentFolder(*to); !p.empty() && p != "INBOX";
       p = ParentFolder(p)) {
    auto have = impl_->LoadFolder(p);
    if (!have) return tl::unexpected(have.error());
    if (*have || p == *from) continue;
    if (auto r =
            impl_->EnsureMaildirDirs(impl_->root.get(), FolderDirectory(p));
        !r)
      return r;
    if (auto r = impl_->InsertFolder(p, SpecialUse::kNone); !r) return r;
  }
  for (const std::string& old_name : names) {
    std::string new_name = *to + old_name.substr(from->size());
    std::string old_dir = FolderDirectory(old_name),
                new_dir = FolderDirectory(new_name);
    if (::renameat(impl_->root.get(), old_dir.c_str(), impl_->root.get(),
                   new_dir.c_str()) != 0) {
      return io::ErrnoErr("rename " + old_dir, errno);
    }
    auto up =
        Prepare(impl_->db.get(), "UPDATE folders SET name = ? WHERE name = ?");
    if (!up) return tl::unexpected(up.error());
    BindText(up->get(), 1, new_name);
    BindText(up->get(), 2, old_name);
    if (auto r = impl_->Step(up->get()); !r) return r;
  }
  if (::fsync(impl_->root.get()) != 0)
    return io::ErrnoErr("sync Maildir", errno);
  return impl_->Commit(*txn);
}

Result<void> MaildirStore::SetSubscribed(std::string_view raw_name,
                                         bool subscribed) {
  auto name = CanonicalFolderName(raw_name);
  if (!name) return Fail("invalid mailbox name", EINVAL);
  // Serialised with the other writers through the index's write lock.
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  auto subs = impl_->LoadSubscriptions();
  if (!subs) return tl::unexpected(subs.error());
  bool changed =
      subscribed ? subs->insert(*name).second : subs->erase(*name) > 0;
  if (!changed) return {};
  std::string text;
  for (auto& s : *subs) text += s + "\n";
  if (auto r =
          io::AtomicWriteAt(impl_->root.get(), kSubscriptionsFile, text, true);
      !r)
    return r;
  if (::fsync(impl_->root.get()) != 0)
    return io::ErrnoErr("sync Maildir", errno);
  return {};
}

Result<std::vector<std::string>> MaildirStore::Subscriptions() {
  auto subs = impl_->LoadSubscriptions();
  if (!subs) return tl::unexpected(subs.error());
  return std::vector<std::string>(subs->begin(), subs->end());
}

Result<FolderStatus> MaildirStore::Status(std::string_view name, bool with_size) {
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->Reconciled(name);
  if (!f) return tl::unexpected(f.error());
  if (with_size) {
    if (auto counted = impl_->CountSizes(*f, nullptr); !counted) {
      return tl::unexpected(counted.error());
    }
  }
  auto st =
      Prepare(impl_->db.get(),
              "SELECT count(*), coalesce(sum((flags & 1) = 0), 0), "
              "coalesce(sum((flags & 8) != 0), 0), coalesce(sum(max(size, 0)), 0) "
              "FROM messages WHERE folder = ?");
  if (!st) return tl::unexpected(st.error());
  sqlite3_bind_int64(st->get(), 1, f->id);
  FolderStatus status;
  status.state = f->State();
  if (sqlite3_step(st->get()) == SQLITE_ROW) {
    status.messages = static_cast<uint32_t>(sqlite3_column_int64(st->get(), 0));
    status.unseen = static_cast<uint32_t>(sqlite3_column_int64(st->get(), 1));
    status.deleted = static_cast<uint32_t>(sqlite3_column_int64(st->get(), 2));
    status.size = static_cast<uint64_t>(sqlite3_column_int64(st->get(), 3));
  }
  st->reset();
  if (auto r = impl_->Commit(*txn); !r) return tl::unexpected(r.error());
  return status;
}

Result<FolderSnapshot> MaildirStore::Select(std::string_view name) {
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->Reconciled(name);
  if (!f) return tl::unexpected(f.error());
  auto metas = impl_->Metas(*f);
  if (!metas) return tl::unexpected(metas.error());
  if (auto r = impl_->Commit(*txn); !r) return tl::unexpected(r.error());
  FolderSnapshot snap;
  snap.state = f->State();
  snap.messages = std::move(*metas);
  return snap;
}

Result<FolderChanges> MaildirStore::Sync(std::string_view name,
                                         uint64_t since_modseq) {
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->Reconciled(name);
  if (!f) return tl::unexpected(f.error());
  auto rows = impl_->Metas(*f, since_modseq);
  if (!rows) return tl::unexpected(rows.error());
  auto st = Prepare(
      impl_->db.get(),
      "SELECT uid FROM expunged WHERE folder = ? AND modseq > ? ORDER BY uid");
  if (!st) return tl::unexpected(st.error());
  sqlite3_bind_int64(st->get(), 1, f->id);
  sqlite3_bind_int64(st->get(), 2, static_cast<int64_t>(since_modseq));
  FolderChanges changes;
  while (sqlite3_step(st->get()) == SQLITE_ROW) {
    changes.expunged.push_back(
        static_cast<uint32_t>(sqlite3_column_int64(st->get(), 0)));
  }
  st->reset();
  if (auto r = impl_->Commit(*txn); !r) return tl::unexpected(r.error());
  changes.state = f->State();
  changes.changed = std::move(*rows);
  return changes;
}

Result<StoreResult> MaildirStore::StoreFlags(std::string_view name,
                                             const StoreRequest& req) {
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->FolderFor(name);
  if (!f) return tl::unexpected(f.error());
  auto dir = impl_->OpenFolderDir(*f);
  if (!dir) return tl::unexpected(dir.error());
  std::vector<uint32_t> uids = req.uids;
  std::sort(uids.begin(), uids.end());
  uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
  uint64_t modseq = f->highest + 1;
  StoreResult result;
  bool renamed = false, left_new = false;
  for (uint32_t uid : uids) {
    auto row = impl_->RowByUid(*f, uid);
    if (!row) return tl::unexpected(row.error());
    if (!*row) continue;  // expunged meanwhile: ignored (RFC 9051 6.4.9)
    Row r = std::move(**row);
    // RFC 7162 3.1.3: with UNCHANGEDSINCE, a message modified after the
    // given MODSEQ is not changed and is reported back.
    if (req.unchanged_since && r.modseq > *req.unchanged_since) {
      result.failed.push_back(uid);
      continue;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      Row want = r;
      switch (req.mode) {
        case StoreMode::kReplace:
          want.flags = req.flags;
          want.keywords.clear();
          for (auto& k : req.keywords) {
            if (StorableKeyword(k) && !HasKeyword(want.keywords, k))
              want.keywords.push_back(k);
          }
          break;
        case StoreMode::kAdd:
          want.flags |= req.flags;
          for (auto& k : req.keywords) {
            if (StorableKeyword(k) && !HasKeyword(want.keywords, k))
              want.keywords.push_back(k);
          }
          break;
        case StoreMode::kRemove:
          want.flags &= static_cast<Flags>(~req.flags);
          for (auto& k : req.keywords) {
            std::erase_if(want.keywords, [&](const std::string& x) {
              return SameKeyword(x, k);
            });
          }
          break;
      }
      SortKeywords(want.keywords);
      // RFC 7162 3.1.3 leaves MODSEQ alone when nothing changes.
      if (want.flags == r.flags && want.keywords == r.keywords) break;
      bool fwd = HasKeyword(want.keywords, kForwarded);
      bool had_fwd = HasKeyword(r.keywords, kForwarded);
      if (want.flags != r.flags || fwd != had_fwd) {
        // The name first (the Maildir holds system flags), the index at
        // the commit below: see the top of this file.
        std::string target = "cur/" + r.uniq + ":2," +
                             InfoLetters(want.flags, fwd, OtherLetters(r.file));
        if (::renameat(dir->get(), r.file.c_str(), dir->get(),
                       target.c_str()) != 0) {
          if (errno != ENOENT || attempt > 0) {
            return io::ErrnoErr("rename " + Sub(f->dir, r.file), errno);
          }
          // Renamed by another program since the last sync: start from its
          // flags (the file name wins), or skip a message deleted meanwhile.
          std::string now = impl_->Relocate(dir->get(), r.uniq);
          if (now.empty()) break;
          bool now_fwd = false;
          r.file = now;
          r.flags = FlagsOfFileName(now, &now_fwd);
          if (now_fwd && !had_fwd) r.keywords.push_back(kForwarded);
          if (!now_fwd && had_fwd) {
            std::erase_if(r.keywords, [](const std::string& x) {
              return SameKeyword(x, kForwarded);
            });
          }
          SortKeywords(r.keywords);
          continue;
        }
        renamed = true;
        if (r.file.compare(0, 4, "new/") == 0) left_new = true;
        want.file = target;
      }
      want.modseq = modseq;
      if (auto x = impl_->UpdateRow(*f, want); !x)
        return tl::unexpected(x.error());
      result.updated.push_back(want.Meta());
      break;
    }
  }
  if (renamed) {
    if (auto x = impl_->SyncMessageDirs(dir->get(), left_new); !x)
      return tl::unexpected(x.error());
  }
  if (!result.updated.empty()) {
    f->highest = modseq;
    if (auto x = impl_->SaveFolder(*f); !x) return tl::unexpected(x.error());
  }
  if (auto x = impl_->Commit(*txn); !x) return tl::unexpected(x.error());
  result.highest_modseq = f->highest;
  return result;
}

namespace {

// A message arriving for a Maildir folder: written to tmp/ as it comes,
// CRLF turned into LF across chunk edges, its CRLF size counted.
class MaildirAppendStage final : public AppendStage {
 public:
  MaildirAppendStage(std::string folder, UniqueFd dir, std::string uniq,
                     UniqueFd fd)
      : folder_(std::move(folder)),
        dir_(std::move(dir)),
        uniq_(std::move(uniq)),
        fd_(std::move(fd)) {}
  ~MaildirAppendStage() override {
    if (!placed_) ::unlinkat(dir_.get(), tmp().c_str(), 0);
  }

  Result<void> Write(std::string_view chunk) override {
    out_.clear();
    for (char c : chunk) {
      if (pending_cr_) {
        pending_cr_ = false;
        if (c != '\n') out_ += '\r';
      }
      if (c == '\r') {
        pending_cr_ = true;
        continue;
      }
      out_ += c;
    }
    return Emit();
  }

  // The end of the message: the last CR, the internal date as mtime (so a
  // crash before the commit keeps it: Reconcile() reads it back), fsync.
  Result<void> Finish(int64_t date) {
    out_.clear();
    if (pending_cr_) out_ += '\r';
    pending_cr_ = false;
    if (auto r = Emit(); !r) return r;
    // Only the mtime: an access time of now keeps CleanTmp() (36 hours
    // on both times) off a staged file with an old internal date.
    struct timespec times[2] = {{0, UTIME_NOW}, {date, 0}};
    ::futimens(fd_.get(), times);
    if (::fsync(fd_.get()) != 0) return io::ErrnoErr("sync " + tmp(), errno);
    fd_.Reset();
    return {};
  }

  const std::string& folder() const { return folder_; }
  int dir() const { return dir_.get(); }
  const std::string& uniq() const { return uniq_; }
  std::string tmp() const { return "tmp/" + uniq_; }
  uint64_t size() { return sizer_.Finish(); }
  void set_placed(bool placed) { placed_ = placed; }

 private:
  Result<void> Emit() {
    if (out_.empty()) return {};
    if (!fd_) return Err("append: message already finished");
    sizer_.Feed(out_);
    if (int e = io::WriteAll(fd_.get(), out_.data(), out_.size()); e != 0) {
      return io::ErrnoErr("write " + tmp(), e);
    }
    return {};
  }

  std::string folder_;
  UniqueFd dir_;
  std::string uniq_;
  UniqueFd fd_;
  std::string out_;
  bool pending_cr_ = false;
  CrlfSizer sizer_;
  bool placed_ = false;
};

}  // namespace

Result<std::unique_ptr<AppendStage>> MaildirStore::BeginAppend(
    std::string_view name) {
  auto canonical = CanonicalFolderName(name);
  if (!canonical) return Fail("invalid mailbox name", EINVAL);
  // The octets go to tmp/ without the index lock: receiving a large
  // message does not hold up other sessions. A missing folder fails here
  // with ENOENT (RFC 9051 6.3.12: NO [TRYCREATE]).
  Folder where;
  where.dir = FolderDirectory(*canonical);
  auto dir = impl_->OpenFolderDir(where);
  if (!dir) {
    if (dir.error().code == ENOENT) {
      return Fail("no such mailbox: " + *canonical, ENOENT);
    }
    return tl::unexpected(dir.error());
  }
  if (!where.dir.empty() && !impl_->DirExists(where.dir + "/tmp")) {
    // A bare directory another program made (see FolderFor()).
    if (auto r = impl_->EnsureMaildirDirs(impl_->root.get(), where.dir); !r) {
      return tl::unexpected(r.error());
    }
  }
  std::string uniq = impl_->NewUniqueName();
  std::string tmp = "tmp/" + uniq;
  UniqueFd fd(::openat(dir->get(), tmp.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return io::ErrnoErr("create " + Sub(where.dir, tmp), errno);
  return std::unique_ptr<AppendStage>(new MaildirAppendStage(
      *canonical, std::move(*dir), std::move(uniq), std::move(fd)));
}

Result<std::vector<AppendResult>> MaildirStore::CommitAppend(
    std::string_view name, std::vector<StagedAppend> messages) {
  auto canonical = CanonicalFolderName(name);
  if (!canonical) return Fail("invalid mailbox name", EINVAL);
  std::vector<MaildirAppendStage*> stages;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (auto& m : messages) {
    auto* st = dynamic_cast<MaildirAppendStage*>(m.stage.get());
    if (st == nullptr || st->folder() != *canonical) {
      return Fail("append: message staged for another mailbox", EINVAL);
    }
    if (auto r = st->Finish(m.options.internal_date.value_or(now)); !r) {
      return tl::unexpected(r.error());
    }
    stages.push_back(st);
  }
  if (stages.empty()) return std::vector<AppendResult>();

  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->FolderFor(*canonical);
  if (!f) return tl::unexpected(f.error());
  // The files go into cur/ (durable) before the rows are committed: a
  // crash in between leaves files without rows, which the next reconcile
  // adopts with fresh UIDs; the UIDs below were never answered. Any other
  // failure takes the placed files back out: NO means nothing appended
  // (RFC 3502 MULTIAPPEND).
  std::vector<std::string> placed;
  auto undo = [&]() {
    for (size_t i = 0; i < placed.size(); ++i) {
      ::unlinkat(stages[i]->dir(), placed[i].c_str(), 0);
    }
  };
  std::vector<Row> rows;
  uint64_t modseq = f->highest + 1;
  for (size_t i = 0; i < stages.size(); ++i) {
    MaildirAppendStage* st = stages[i];
    const AppendOptions& opt = messages[i].options;
    std::vector<std::string> keywords;
    for (auto& k : opt.keywords) {
      if (StorableKeyword(k) && !HasKeyword(keywords, k)) {
        keywords.push_back(k);
      }
    }
    SortKeywords(keywords);
    std::string file =
        "cur/" + st->uniq() + ":2," +
        InfoLetters(opt.flags, HasKeyword(keywords, kForwarded), "");
    if (::renameat(st->dir(), st->tmp().c_str(), st->dir(), file.c_str()) !=
        0) {
      int e = errno;
      undo();
      return io::ErrnoErr("rename " + Sub(f->dir, st->tmp()), e);
    }
    placed.push_back(file);
    if (f->uidnext == UINT32_MAX) {
      undo();
      return Err("UID space of " + f->name + " exhausted");
    }
    Row r;
    r.uid = f->uidnext++;
    r.uniq = st->uniq();
    r.file = std::move(file);
    r.flags = opt.flags;
    r.keywords = std::move(keywords);
    r.modseq = modseq;
    r.date = opt.internal_date.value_or(now);
    r.size = st->size();
    rows.push_back(std::move(r));
  }
  auto finish = [&]() -> Result<void> {
    if (auto x = impl_->SyncMessageDirs(stages[0]->dir(), false); !x) return x;
    for (const Row& r : rows) {
      if (auto x = impl_->InsertRow(*f, r); !x) return x;
    }
    f->highest = modseq;
    if (auto x = impl_->SaveFolder(*f); !x) return x;
    return impl_->Commit(*txn);
  };
  if (auto x = finish(); !x) {
    undo();
    return tl::unexpected(x.error());
  }
  std::vector<AppendResult> out;
  for (size_t i = 0; i < stages.size(); ++i) {
    stages[i]->set_placed(true);
    out.push_back(AppendResult{f->uidvalidity, rows[i].uid});
  }
  return out;
}

Result<CopyResult> MaildirStore::Copy(std::string_view from,
                                      const std::vector<uint32_t>& uids,
                                      std::string_view to) {
  return impl_->Transfer(from, uids, to, false);
}

Result<CopyResult> MaildirStore::Move(std::string_view from,
                                      const std::vector<uint32_t>& uids,
                                      std::string_view to) {
  return impl_->Transfer(from, uids, to, true);
}

Result<std::vector<uint32_t>> MaildirStore::Expunge(
    std::string_view name, const std::optional<std::vector<uint32_t>>& uids) {
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  // Reconcile first: \Deleted is in the file names, which another program
  // may have changed.
  auto f = impl_->Reconciled(name);
  if (!f) return tl::unexpected(f.error());
  auto dir = impl_->OpenFolderDir(*f);
  if (!dir) return tl::unexpected(dir.error());
  auto rows = impl_->Rows(*f);
  if (!rows) return tl::unexpected(rows.error());
  std::set<uint32_t> only;
  if (uids) only.insert(uids->begin(), uids->end());
  uint64_t modseq = f->highest + 1;
  std::vector<uint32_t> gone;
  bool touched_new = false;
  for (const Row& r : *rows) {
    if (!(r.flags & kDeleted)) continue;
    if (uids && !only.count(r.uid)) continue;
    // Unlink first, forget at the commit: a crash in between leaves a row
    // without a file, which Reconcile() expunges.
    if (::unlinkat(dir->get(), r.file.c_str(), 0) != 0) {
      if (errno != ENOENT)
        return io::ErrnoErr("unlink " + Sub(f->dir, r.file), errno);
      std::string now = impl_->Relocate(dir->get(), r.uniq);
      if (!now.empty() && ::unlinkat(dir->get(), now.c_str(), 0) != 0 &&
          errno != ENOENT) {
        return io::ErrnoErr("unlink " + Sub(f->dir, now), errno);
      }
    }
    if (r.file.compare(0, 4, "new/") == 0) touched_new = true;
    if (auto x = impl_->RemoveRow(*f, r.uid, modseq); !x)
      return tl::unexpected(x.error());
    gone.push_back(r.uid);
  }
  if (!gone.empty()) {
    if (auto x = impl_->SyncMessageDirs(dir->get(), touched_new); !x) {
      return tl::unexpected(x.error());
    }
    f->highest = modseq;
    if (auto x = impl_->SaveFolder(*f); !x) return tl::unexpected(x.error());
  }
  if (auto x = impl_->Commit(*txn); !x) return tl::unexpected(x.error());
  return gone;
}

void MaildirStore::ReleaseMemory() {
  // The connection with its page cache and parsed schema (~14 KiB per
  // idle IMAP session, measured); the next transaction opens it again.
  impl_->cached.clear();
  impl_->db.reset();
  impl_->window = {};
}

Result<std::string> MaildirStore::MessagePath(std::string_view name,
                                              uint32_t uid) {
  auto txn = impl_->Read();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->LoadFolder(CanonicalFolderName(name).value_or(""));
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox", ENOENT);
  auto row = impl_->RowByUid(**f, uid);
  if (!row) return tl::unexpected(row.error());
  if (!*row) return Fail("no such message", ENOENT);
  return Sub((*f)->dir, (*row)->file);
}

Result<std::vector<PartCacheEntry>> MaildirStore::LoadPartCache(
    std::string_view name, uint32_t first_uid, uint32_t last_uid) {
  std::vector<PartCacheEntry> out;
  auto txn = impl_->Read();
  if (!txn) return tl::unexpected(txn.error());
  auto f = impl_->LoadFolder(CanonicalFolderName(name).value_or(""));
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox", ENOENT);
  auto st = Prepare(impl_->db.get(),
                    "SELECT uid, kind, value FROM parts "
                    "WHERE folder = ? AND uid BETWEEN ? AND ?");
  if (!st) return tl::unexpected(st.error());
  sqlite3_bind_int64(st->get(), 1, (*f)->id);
  sqlite3_bind_int64(st->get(), 2, first_uid);
  sqlite3_bind_int64(st->get(), 3, last_uid);
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    PartCacheEntry e;
    e.uid = static_cast<uint32_t>(sqlite3_column_int64(st->get(), 0));
    e.kind = static_cast<uint8_t>(sqlite3_column_int(st->get(), 1));
    const void* blob = sqlite3_column_blob(st->get(), 2);
    int n = sqlite3_column_bytes(st->get(), 2);
    if (blob != nullptr && n > 0) e.value.assign(static_cast<const char*>(blob), n);
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return Fail(sqlite3_errmsg(impl_->db.get()), EIO);
  return out;
}

Result<void> MaildirStore::SavePartCache(std::string_view name,
                                         const std::vector<PartCacheEntry>& entries) {
  if (entries.empty()) return {};
  auto w = impl_->BeginCacheWrite(name);  // a cache need not survive a crash
  if (!w) return tl::unexpected(w.error());
  // Only for messages still there (an expunge may have come between).
  auto st = Prepare(impl_->db.get(),
                    "INSERT OR REPLACE INTO parts (folder, uid, kind, value) "
                    "SELECT ?1, ?2, ?3, ?4 WHERE EXISTS "
                    "(SELECT 1 FROM messages WHERE folder = ?1 AND uid = ?2)");
  if (!st) return tl::unexpected(st.error());
  for (const PartCacheEntry& e : entries) {
    sqlite3_reset(st->get());
    sqlite3_bind_int64(st->get(), 1, w->folder.id);
    sqlite3_bind_int64(st->get(), 2, e.uid);
    sqlite3_bind_int(st->get(), 3, e.kind);
    sqlite3_bind_blob(st->get(), 4, e.value.data(), static_cast<int>(e.value.size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(st->get()) != SQLITE_DONE) {
      return Fail(sqlite3_errmsg(impl_->db.get()), EIO);
    }
  }
  return w->txn.Commit();
}

Result<std::vector<std::pair<uint32_t, uint64_t>>> MaildirStore::Sizes(
    std::string_view name, const std::vector<uint32_t>& uids) {
  if (uids.empty()) return std::vector<std::pair<uint32_t, uint64_t>>{};
  auto w = impl_->BeginCacheWrite(name);  // sizes are counted again if lost
  if (!w) return tl::unexpected(w.error());
  std::vector<uint32_t> sorted = uids;
  std::sort(sorted.begin(), sorted.end());
  auto counted = impl_->CountSizes(w->folder, &sorted);
  if (!counted) return tl::unexpected(counted.error());
  if (auto r = w->txn.Commit(); !r) return tl::unexpected(r.error());
  return counted;
}

Result<void> MaildirStore::SaveSizes(
    std::string_view name, const std::vector<std::pair<uint32_t, uint64_t>>& sizes) {
  if (sizes.empty()) return {};
  auto w = impl_->BeginCacheWrite(name);  // sizes are counted again if lost
  if (!w) return tl::unexpected(w.error());
  if (auto r = impl_->WriteSizes(w->folder, sizes); !r) return r;
  return w->txn.Commit();
}

// SEARCH TEXT and BODY (RFC 9051 6.4.4) through the trigram index: FTS5
// with case_sensitive 0 folds every letter Unicode knows as upper or lower
// case, a superset of what the session's matcher (ContainsFolded: ASCII and
// Latin-1) folds, and a text that contains the needle contains each of its
// trigrams; so every message the matcher would find is among the
// candidates. BODY asks the same as TEXT: detail=none keeps no columns
// either (FTS5 refuses a column filter there), so a needle found only in
// the header makes a false candidate, which the caller's check drops.
Result<std::optional<std::vector<uint32_t>>> MaildirStore::SearchText(
    std::string_view name, std::string_view needle, TextField field) {
  using Out = std::optional<std::vector<uint32_t>>;
  if (!impl_->has_fts) return Out{};
  auto query = TextQuery(needle);
  if (!query) return Out{};
  auto txn = impl_->Read();
  if (!txn) return tl::unexpected(txn.error());
  sqlite3* db = impl_->db.get();
  auto f = impl_->LoadFolder(CanonicalFolderName(name).value_or(""));
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox", ENOENT);
  int64_t id = (*f)->id;
  std::vector<uint32_t> out;
  auto collect = [&](sqlite3_stmt* st) -> Result<void> {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      out.push_back(static_cast<uint32_t>(sqlite3_column_int64(st, 0) & 0xffffffff));
    }
    if (rc != SQLITE_DONE) return Fail(sqlite3_errmsg(db), EIO);
    return {};
  };
  auto matches = Prepare(db,
                         "SELECT rowid FROM fts WHERE fts MATCH ?1 "
                         "AND rowid BETWEEN ?2 AND ?3");
  if (!matches) return tl::unexpected(matches.error());
  sqlite3_bind_text(matches->get(), 1, query->data(),
                    static_cast<int>(query->size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(matches->get(), 2, TextRowid(id, 0));
  sqlite3_bind_int64(matches->get(), 3, TextRowid(id, 0xffffffffu));
  if (auto r = collect(matches->get()); !r) return tl::unexpected(r.error());
  // Messages the index cannot vouch for: cut at the size limit, or not
  // indexed (yet).
  auto rest = Prepare(db,
                      "SELECT uid FROM textindex WHERE folder = ?1 AND complete = 0 "
                      "UNION ALL "
                      "SELECT uid FROM messages m WHERE folder = ?1 AND NOT EXISTS "
                      "(SELECT 1 FROM textindex t WHERE t.folder = ?1 AND t.uid = m.uid)");
  if (!rest) return tl::unexpected(rest.error());
  sqlite3_bind_int64(rest->get(), 1, id);
  if (auto r = collect(rest->get()); !r) return tl::unexpected(r.error());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return Out{std::move(out)};
}

Result<std::vector<uint32_t>> MaildirStore::UnindexedText(std::string_view name,
                                                          size_t limit) {
  std::vector<uint32_t> out;
  if (!impl_->has_fts) return out;
  auto txn = impl_->Read();
  if (!txn) return tl::unexpected(txn.error());
  sqlite3* db = impl_->db.get();
  auto f = impl_->LoadFolder(CanonicalFolderName(name).value_or(""));
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox", ENOENT);
  auto st = Prepare(db,
                    "SELECT uid FROM messages m WHERE folder = ?1 AND NOT EXISTS "
                    "(SELECT 1 FROM textindex t WHERE t.folder = ?1 AND t.uid = m.uid) "
                    "ORDER BY uid LIMIT ?2");
  if (!st) return tl::unexpected(st.error());
  sqlite3_bind_int64(st->get(), 1, (*f)->id);
  sqlite3_bind_int64(st->get(), 2, static_cast<int64_t>(limit));
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    out.push_back(static_cast<uint32_t>(sqlite3_column_int64(st->get(), 0)));
  }
  if (rc != SQLITE_DONE) return Fail(sqlite3_errmsg(db), EIO);
  return out;
}

Result<void> MaildirStore::IndexText(std::string_view name,
                                     const std::vector<TextIndexEntry>& entries) {
  if (!impl_->has_fts || entries.empty()) return {};
  auto txn = impl_->Write();
  if (!txn) return tl::unexpected(txn.error());
  sqlite3* db = impl_->db.get();
  auto f = impl_->LoadFolder(CanonicalFolderName(name).value_or(""));
  if (!f) return tl::unexpected(f.error());
  if (!*f) return Fail("no such mailbox", ENOENT);
  int64_t id = (*f)->id;
  // Only messages still there and not indexed already (another session may
  // have done it meanwhile).
  auto mark = Prepare(db,
                      "INSERT OR IGNORE INTO textindex (folder, uid, complete) "
                      "SELECT ?1, ?2, ?3 WHERE EXISTS "
                      "(SELECT 1 FROM messages WHERE folder = ?1 AND uid = ?2)");
  auto add = Prepare(db, "INSERT INTO fts (rowid, header, body) VALUES (?, ?, ?)");
  if (!mark) return tl::unexpected(mark.error());
  if (!add) return tl::unexpected(add.error());
  for (const TextIndexEntry& e : entries) {
    sqlite3_reset(mark->get());
    sqlite3_bind_int64(mark->get(), 1, id);
    sqlite3_bind_int64(mark->get(), 2, e.uid);
    sqlite3_bind_int(mark->get(), 3, e.complete ? 1 : 0);
    if (sqlite3_step(mark->get()) != SQLITE_DONE) return Fail(sqlite3_errmsg(db), EIO);
    if (sqlite3_changes(db) == 0) continue;
    std::string header = IndexableText(e.header), body = IndexableText(e.body);
    sqlite3_reset(add->get());
    sqlite3_bind_int64(add->get(), 1, TextRowid(id, e.uid));
    sqlite3_bind_text(add->get(), 2, header.data(), static_cast<int>(header.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(add->get(), 3, body.data(), static_cast<int>(body.size()),
                      SQLITE_STATIC);
    if (sqlite3_step(add->get()) != SQLITE_DONE) return Fail(sqlite3_errmsg(db), EIO);
  }
  return txn->Commit();
}

Result<UniqueFd> MaildirStore::OpenMessage(std::string_view name,
                                           uint32_t uid) {
  std::string canonical = CanonicalFolderName(name).value_or("");
  Impl::FileWindow& w = impl_->window;
  if (w.folder != canonical || uid < w.first || uid > w.last) {
    w.folder.clear();
    w.files.clear();
    auto txn = impl_->Read();
    if (!txn) return tl::unexpected(txn.error());
    auto f = impl_->LoadFolder(canonical);
    if (!f) return tl::unexpected(f.error());
    if (!*f) return Fail("no such mailbox", ENOENT);
    static constexpr char kFiles[] =
        "SELECT uid, file FROM messages WHERE folder = ? AND uid >= ? ORDER BY uid LIMIT ?";
    auto st = impl_->Cached(kFiles);
    if (!st) return tl::unexpected(st.error());
    sqlite3_bind_int64(*st, 1, (*f)->id);
    sqlite3_bind_int64(*st, 2, uid);
    sqlite3_bind_int(*st, 3, Impl::kFileWindow);
    while (sqlite3_step(*st) == SQLITE_ROW) {
      w.files.emplace_back(static_cast<uint32_t>(sqlite3_column_int64(*st, 0)),
                           ColumnText(*st, 1));
    }
    sqlite3_reset(*st);
    auto dir = impl_->OpenFolderDir(**f);
    if (!dir) return tl::unexpected(dir.error());
    w.dir = std::move(*dir);
    w.folder = canonical;
    w.first = uid;
    w.last = w.files.size() < Impl::kFileWindow ? UINT32_MAX : w.files.back().first;
  }
  auto it = std::lower_bound(w.files.begin(), w.files.end(), uid,
                             [](const auto& e, uint32_t u) { return e.first < u; });
  if (it != w.files.end() && it->first == uid) {
    UniqueFd fd(::openat(w.dir.get(), it->second.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd) return fd;
  }
  // Not in the window (added since) or its name is stale: the index now.
  std::string file, uniq, folder_dir;
  {
    auto txn = impl_->Read();
    if (!txn) return tl::unexpected(txn.error());
    auto f = impl_->LoadFolder(CanonicalFolderName(name).value_or(""));
    if (!f) return tl::unexpected(f.error());
    if (!*f) return Fail("no such mailbox", ENOENT);
    auto row = impl_->RowByUid(**f, uid);
    if (!row) return tl::unexpected(row.error());
    if (!*row) return Fail("no such message", ENOENT);
    file = (*row)->file;
    uniq = (*row)->uniq;
    folder_dir = (*f)->dir;
  }
  Folder probe;
  probe.dir = folder_dir;
  auto dir = impl_->OpenFolderDir(probe);
  if (!dir) return tl::unexpected(dir.error());
  UniqueFd fd(
      ::openat(dir->get(), file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd && errno == ENOENT) {
    std::string now = impl_->Relocate(dir->get(), uniq);
    if (!now.empty())
      fd.Reset(
          ::openat(dir->get(), now.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  }
  if (!fd) return io::ErrnoErr("open " + Sub(folder_dir, file), errno);
  return fd;
}

}  // namespace tern::store
