// Maildir listing with a size/UID index, message access that survives
// renames by other programs, and the journaled expunge POP3's UPDATE state
// needs (RFC 1939 6).
#include "store/maildir.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <unordered_map>
#include <unordered_set>

#include "common/file_io.h"
#include "store/crlf.h"

namespace tern::store {
namespace {

constexpr char kIndexFile[] = "tern-index";
constexpr char kIndexMagic[] = "tern-index 1";
constexpr char kJournalFile[] = "tern-expunge";
constexpr char kLockFile[] = "tern-pop3.lock";
constexpr size_t kMaxIndexSize = 256u << 20;
constexpr size_t kReadChunk = 64 * 1024;

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = n;
  return true;
}

// A name the index can hold on one tab-separated line.
bool Indexable(std::string_view unique) {
  return unique.find_first_of("\t\n") == std::string_view::npos;
}

Result<uint64_t> SizeOfFile(int fd, const std::string& shown) {
  std::string buf(kReadChunk, '\0');
  CrlfSizer sizer;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::ErrnoErr("read " + shown, errno);
    }
    if (n == 0) break;
    sizer.Feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  return sizer.Finish();
}

int SyncDir(int parent, const char* name) {
  UniqueFd d(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) return errno;
  return ::fsync(d.get()) == 0 ? 0 : errno;
}

// "cur/NAME:2,FLAGS" with S added, or "" when already seen or when the
// info part is not the ":2," kind (left alone: its meaning is unknown).
std::string SeenName(const std::string& file_name) {
  size_t colon = file_name.find(':');
  if (colon == std::string::npos) return file_name + ":2,S";
  std::string_view info = std::string_view(file_name).substr(colon + 1);
  if (info.substr(0, 2) != "2,") return "";
  std::string flags(info.substr(2));
  if (flags.find('S') != std::string::npos) return "";
  flags += 'S';
  std::sort(flags.begin(), flags.end());
  return file_name.substr(0, colon) + ":2," + flags;
}

}  // namespace

std::string_view UniqueOf(std::string_view file_name) {
  return file_name.substr(0, file_name.find(':'));
}

std::string UidlFor(std::string_view unique) {
  bool fits = !unique.empty() && unique.size() <= 70 &&
              std::all_of(unique.begin(), unique.end(), [](char c) {
                return c >= 0x21 && c <= 0x7e;
              });
  if (fits) return std::string(unique);
  // Hex of SHA-256: 64 octets, no '.', so it cannot collide with a
  // conventional Maildir name (those contain dots).
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(unique.data(), unique.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

Result<std::optional<MailboxLock>> MailboxLock::TryAcquire(int maildir_fd) {
  UniqueFd fd(::openat(maildir_fd, kLockFile,
                       O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return io::ErrnoErr(std::string("open ") + kLockFile, errno);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return std::optional<MailboxLock>();
    return io::ErrnoErr(std::string("lock ") + kLockFile, errno);
  }
  return std::optional<MailboxLock>(MailboxLock(std::move(fd)));
}

struct Maildir::IndexEntry {
  uint32_t uid = 0;
  uint64_t size = 0;
};

Result<std::unique_ptr<Maildir>> Maildir::Open(const std::string& path) {
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir && errno == ENOENT) {
    if (auto made = io::MkdirAll(path, 0700); !made)
      return tl::unexpected(made.error());
    dir.Reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!dir) return io::ErrnoErr("open " + path, errno);
  for (const char* sub : {"tmp", "new", "cur"}) {
    if (::mkdirat(dir.get(), sub, 0700) != 0 && errno != EEXIST) {
      return io::ErrnoErr("mkdir " + path + "/" + sub, errno);
    }
  }
  return std::unique_ptr<Maildir>(new Maildir(path, std::move(dir)));
}

Maildir::~Maildir() = default;

Result<void> Maildir::Scan() {
  if (auto r = ReplayJournal(); !r) return r;

  // The index: "tern-index 1 UIDVALIDITY NEXTUID", then "UID SIZE UNIQUE".
  std::unordered_map<std::string, IndexEntry> index;
  bool index_dirty = false;
  int err = 0;
  auto text = io::ReadSmallFileAt(dir_.get(), kIndexFile, kMaxIndexSize, &err);
  bool loaded = false;
  if (text) {
    std::string_view rest = *text;
    size_t eol = rest.find('\n');
    std::string_view head = rest.substr(0, eol);
    if (head.substr(0, sizeof(kIndexMagic) - 1) == kIndexMagic &&
        eol != std::string_view::npos) {
      std::string_view nums = head.substr(sizeof(kIndexMagic) - 1);
      uint64_t validity = 0, next = 0;
      size_t sp = nums.find(' ', 1);
      if (!nums.empty() && nums[0] == ' ' && sp != std::string_view::npos &&
          ParseU64(nums.substr(1, sp - 1), &validity) &&
          ParseU64(nums.substr(sp + 1), &next) && validity > 0 &&
          validity <= UINT32_MAX && next > 0 && next <= UINT32_MAX) {
        loaded = true;
        uidvalidity_ = static_cast<uint32_t>(validity);
        next_uid_ = static_cast<uint32_t>(next);
        rest.remove_prefix(eol + 1);
        while (!rest.empty()) {
          size_t end = rest.find('\n');
          std::string_view line = rest.substr(0, end);
          rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
          size_t t1 = line.find('\t');
          size_t t2 = t1 == std::string_view::npos ? t1 : line.find('\t', t1 + 1);
          uint64_t uid = 0, size = 0;
          if (t2 == std::string_view::npos ||
              !ParseU64(line.substr(0, t1), &uid) ||
              !ParseU64(line.substr(t1 + 1, t2 - t1 - 1), &size) || uid == 0 ||
              uid >= next_uid_) {
            index_dirty = true;  // a damaged line: drop it, re-read the file
            continue;
          }
          index[std::string(line.substr(t2 + 1))] = {static_cast<uint32_t>(uid), size};
        }
      }
    }
  } else if (err != ENOENT) {
    return tl::unexpected(text.error());
  }
  if (!loaded) {
    // New or unreadable index: new UIDVALIDITY (RFC 3501 2.3.1.1), since
    // UIDs handed out before cannot be known any more.
    uidvalidity_ = static_cast<uint32_t>(std::time(nullptr));
    next_uid_ = 1;
    index.clear();
    index_dirty = true;
  }

  std::vector<MessageInfo> found;
  std::unordered_set<std::string> seen;
  for (const char* sub : {"cur", "new"}) {
    auto sub_fd = io::OpenDirAt(dir_.get(), sub);
    if (!sub_fd) return tl::unexpected(sub_fd.error());
    auto names = io::ListDir(sub_fd->get());
    if (!names) return tl::unexpected(names.error());
    for (std::string& name : *names) {
      if (name.empty() || name[0] == '.') continue;  // Maildir: hidden = not mail
      std::string unique(UniqueOf(name));
      // The same message in new/ and cur/ (a crash between link and unlink
      // in some other program): list it once.
      if (!seen.insert(unique).second) continue;
      MessageInfo m;
      m.unique = std::move(unique);
      m.path = std::string(sub) + "/" + name;
      found.push_back(std::move(m));
    }
  }

  last_scan_reads_ = 0;
  std::vector<size_t> fresh;  // indexes into `found` without an index entry
  std::vector<int64_t> mtime(found.size(), 0);  // ns, for fresh ones
  size_t used = 0;
  for (size_t i = 0; i < found.size(); ++i) {
    MessageInfo& m = found[i];
    auto it = index.find(m.unique);
    if (it != index.end()) {
      m.uid = it->second.uid;
      m.size = it->second.size;
      ++used;
      continue;
    }
    UniqueFd f(::openat(dir_.get(), m.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!f && errno == ENOENT && Relocate(m)) {
      f.Reset(::openat(dir_.get(), m.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    }
    if (!f) {
      if (errno == ENOENT) {
        m.uid = 0;  // deleted meanwhile by another program: skip it
        continue;
      }
      return io::ErrnoErr("open " + path_ + "/" + m.path, errno);
    }
    struct stat st;
    if (::fstat(f.get(), &st) == 0) {
      mtime[i] = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    }
    auto size = SizeOfFile(f.get(), path_ + "/" + m.path);
    if (!size) return tl::unexpected(size.error());
    ++last_scan_reads_;
    m.size = *size;
    fresh.push_back(i);
  }
  if (used != index.size()) index_dirty = true;  // entries for gone files

  // New messages get UIDs in arrival order: the file's mtime is when it
  // was written (names are no help: "M99" sorts after "M100").
  std::sort(fresh.begin(), fresh.end(), [&found, &mtime](size_t a, size_t b) {
    if (mtime[a] != mtime[b]) return mtime[a] < mtime[b];
    return found[a].unique < found[b].unique;
  });
  for (size_t i : fresh) {
    found[i].uid = next_uid_++;
    if (Indexable(found[i].unique)) index_dirty = true;
  }
  std::erase_if(found, [](const MessageInfo& m) { return m.uid == 0; });
  std::sort(found.begin(), found.end(),
            [](const MessageInfo& a, const MessageInfo& b) { return a.uid < b.uid; });
  messages_ = std::move(found);

  if (index_dirty || !fresh.empty()) {
    std::string out = std::string(kIndexMagic) + " " + std::to_string(uidvalidity_) +
                      " " + std::to_string(next_uid_) + "\n";
    out.reserve(out.size() + messages_.size() * 64);
    for (const MessageInfo& m : messages_) {
      if (!Indexable(m.unique)) continue;
      out += std::to_string(m.uid);
      out += '\t';
      out += std::to_string(m.size);
      out += '\t';
      out += m.unique;
      out += '\n';
    }
    // A cache, not a promise: no fsync. Lost, it is rebuilt (with a new
    // UIDVALIDITY, which IMAP clients handle by resyncing).
    if (auto w = io::AtomicWriteAt(dir_.get(), kIndexFile, out, false); !w) {
      return tl::unexpected(w.error());
    }
  }
  return {};
}

bool Maildir::Relocate(MessageInfo& m) {
  for (const char* sub : {"cur", "new"}) {
    auto sub_fd = io::OpenDirAt(dir_.get(), sub);
    if (!sub_fd) continue;
    auto names = io::ListDir(sub_fd->get());
    if (!names) continue;
    for (const std::string& name : *names) {
      if (UniqueOf(name) == m.unique) {
        m.path = std::string(sub) + "/" + name;
        return true;
      }
    }
  }
  return false;
}

Result<UniqueFd> Maildir::OpenMessage(size_t i) {
  MessageInfo& m = messages_.at(i);
  UniqueFd f(::openat(dir_.get(), m.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!f && errno == ENOENT && Relocate(m)) {
    f.Reset(::openat(dir_.get(), m.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  }
  if (!f) return io::ErrnoErr("open " + path_ + "/" + m.path, errno);
  return f;
}

Result<void> Maildir::MarkSeen(size_t i) {
  MessageInfo& m = messages_.at(i);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string name = m.path.substr(4);  // after "new/" or "cur/"
    std::string target = SeenName(name);
    if (target.empty()) {
      if (m.path.compare(0, 4, "cur/") == 0) return {};
      target = name;  // odd info part in new/: move it, flags unchanged
    }
    target = "cur/" + target;
    if (::renameat(dir_.get(), m.path.c_str(), dir_.get(), target.c_str()) == 0) {
      m.path = std::move(target);
      return {};
    }
    if (errno != ENOENT || !Relocate(m)) break;
  }
  return io::ErrnoErr("rename " + path_ + "/" + m.path, errno);
}

Result<void> Maildir::UnlinkByName(const std::string& unique, const std::string& path) {
  if (::unlinkat(dir_.get(), path.c_str(), 0) == 0) return {};
  if (errno != ENOENT) return io::ErrnoErr("unlink " + path_ + "/" + path, errno);
  MessageInfo m;
  m.unique = unique;
  if (!Relocate(m)) return {};  // already gone: the goal is reached
  if (::unlinkat(dir_.get(), m.path.c_str(), 0) == 0 || errno == ENOENT) return {};
  return io::ErrnoErr("unlink " + path_ + "/" + m.path, errno);
}

Result<void> Maildir::Expunge(const std::vector<size_t>& indexes) {
  if (indexes.empty()) return {};
  std::string journal;
  for (size_t i : indexes) {
    const MessageInfo& m = messages_.at(i);
    journal += m.unique;
    journal += '\t';
    journal += m.path;
    journal += '\n';
  }
  // Step 1: the intent is durable (file data, then its name).
  if (auto w = io::AtomicWriteAt(dir_.get(), kJournalFile, journal, true); !w) {
    return w;
  }
  if (::fsync(dir_.get()) != 0) return io::ErrnoErr("sync " + path_, errno);
  // Step 2: carry it out and make the unlinks durable, then forget it.
  return ReplayJournal();
}

Result<void> Maildir::ReplayJournal() {
  int err = 0;
  auto text = io::ReadSmallFileAt(dir_.get(), kJournalFile, kMaxIndexSize, &err);
  if (!text) {
    if (err == ENOENT) return {};
    return tl::unexpected(text.error());
  }
  std::string_view rest = *text;
  Result<void> result;
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    if (end == std::string_view::npos) break;  // cannot happen: written whole
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 1);
    size_t tab = line.find('\t');
    if (tab == std::string_view::npos) continue;
    auto r = UnlinkByName(std::string(line.substr(0, tab)),
                          std::string(line.substr(tab + 1)));
    if (!r && result) result = r;
  }
  if (!result) return result;  // keep the journal: the next Scan() retries
  for (const char* sub : {"cur", "new"}) {
    if (int e = SyncDir(dir_.get(), sub); e != 0) {
      return io::ErrnoErr("sync " + path_ + "/" + sub, e);
    }
  }
  if (::unlinkat(dir_.get(), kJournalFile, 0) != 0 && errno != ENOENT) {
    return io::ErrnoErr(std::string("unlink ") + kJournalFile, errno);
  }
  return {};
}

}  // namespace tern::store
