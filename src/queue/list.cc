// `tern queue list` and `tern queue show`: read the spool of a data folder
// without a running server, skipping messages still being received. A
// listing reads each message's envelope and state (the envelope is at the
// end of the file, spool_format.h: two small reads), never the message.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/file_io.h"
#include "common/strings.h"
#include "common/unique_fd.h"
#include "queue/queue.h"
#include "queue/queue_id.h"
#include "queue/spool_format.h"

namespace tern::queue {
namespace {

using Key = std::array<char, 16>;  // a queue id (16 characters)
// memcmp, not std::array's element-wise compare: sorting a million ids
// took half of a listing's start-up time with the latter.
struct KeyLess {
  bool operator()(const Key& a, const Key& b) const {
    return std::memcmp(a.data(), b.data(), a.size()) < 0;
  }
};

// The queue ids in msg/, sorted (ids sort by time).
Result<std::vector<Key>> SortedIds(int dir_fd) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io::ErrnoErr("open queue/msg", errno);
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int err = errno;
    ::close(fd);
    return io::ErrnoErr("open queue/msg", err);
  }
  std::vector<Key> ids;
  errno = 0;
  while (const struct dirent* e = ::readdir(dir)) {
    std::string_view name = e->d_name;
    if (!IsValidQueueId(name)) continue;
    Key k;
    std::memcpy(k.data(), name.data(), k.size());
    ids.push_back(k);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return io::ErrnoErr("read queue/msg", err);
  std::sort(ids.begin(), ids.end(), KeyLess{});
  return ids;
}

// The entry of msg/<name>, or nothing when it is gone, still being
// received, torn, or a reused file not yet rewritten.
std::optional<Entry> ReadEntry(int msg_fd, int state_fd,
                               const std::string& name) {
  UniqueFd fd(::openat(msg_fd, name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;  // delivered meanwhile
  // Messages still being received (or torn) fail this check: skip them.
  auto file = ReadMessageMeta(fd.get());
  // A reused file still holding an earlier message: not written yet.
  if (!file || file->envelope.id != name) return std::nullopt;
  Entry entry;
  entry.envelope = std::move(file->envelope);
  entry.envelope.id = name;
  entry.size = file->size();
  MessageState state = InitialState(entry.envelope);
  if (state_fd >= 0) {
    auto raw = io::ReadSmallFileAt(state_fd, name, 64u << 20);
    if (raw) {
      if (auto decoded = DecodeState(*raw)) state = std::move(*decoded);
    }
  }
  entry.envelope.recipients.clear();
  for (RecipientRecord& r : state.recipients) {
    entry.envelope.recipients.push_back(std::move(r.recipient));
    entry.state.push_back(r.state);
    entry.errors.push_back(std::move(r.error));
  }
  entry.held = state.held;
  entry.log = std::move(state.log);
  entry.attempts = state.attempts;
  entry.next_attempt = state.next_attempt;
  entry.last_error = std::move(state.last_error);
  return entry;
}

bool IContains(std::string_view text, std::string_view part) {
  if (part.size() > text.size()) return false;
  for (size_t i = 0; i + part.size() <= text.size(); ++i) {
    if (IEquals(text.substr(i, part.size()), part)) return true;
  }
  return false;
}

bool Matches(const Entry& e, const ListFilter& f) {
  const int64_t age = f.now - e.envelope.received_at;
  if (f.min_age >= 0 && age < f.min_age) return false;
  if (f.max_age >= 0 && age > f.max_age) return false;
  if (!f.sender.empty()) {
    if (f.sender == "<>") {
      if (!e.envelope.sender.empty()) return false;
    } else if (!IContains(e.envelope.sender, f.sender)) {
      return false;
    }
  }
  if (f.recipient.empty() && f.domain.empty()) return true;
  // Recipients already delivered are not what the queue holds.
  const auto& rcpts = e.envelope.recipients;
  for (size_t i = 0; i < rcpts.size(); ++i) {
    if (i < e.state.size() && e.state[i] == RecipientState::kDelivered)
      continue;
    const std::string& a = rcpts[i].address;
    if (!f.recipient.empty() && !IContains(a, f.recipient)) continue;
    if (!f.domain.empty()) {
      size_t at = a.rfind('@');
      if (at == std::string::npos || !IEquals(a.substr(at + 1), f.domain))
        continue;
    }
    return true;
  }
  return false;
}

struct SpoolDirs {
  UniqueFd msg;
  UniqueFd state;  // may be invalid
};

// Both spool directories; nullopt when nothing was ever queued.
Result<std::optional<SpoolDirs>> OpenSpoolDirs(const std::string& data_dir) {
  auto msg_fd = io::OpenDir(data_dir + "/queue/msg");
  if (!msg_fd) {
    struct stat st;
    if (::stat((data_dir + "/queue/msg").c_str(), &st) != 0 &&
        errno == ENOENT) {
      return std::optional<SpoolDirs>();
    }
    return tl::unexpected(msg_fd.error());
  }
  SpoolDirs dirs;
  dirs.msg = std::move(*msg_fd);
  if (auto state_fd = io::OpenDir(data_dir + "/queue/state"))
    dirs.state = std::move(*state_fd);
  return std::optional<SpoolDirs>(std::move(dirs));
}

}  // namespace

Result<size_t> ListEach(const std::string& data_dir, const ListFilter& filter,
                        const std::function<bool(Entry&)>& each) {
  auto dirs = OpenSpoolDirs(data_dir);
  if (!dirs) return tl::unexpected(dirs.error());
  if (!*dirs) return size_t{0};
  auto ids = SortedIds((*dirs)->msg.get());
  if (!ids) return tl::unexpected(ids.error());
  auto it = ids->begin();
  if (!filter.after.empty()) {
    Key after{};
    std::memcpy(after.data(), filter.after.data(),
                std::min(filter.after.size(), after.size()));
    it = std::upper_bound(ids->begin(), ids->end(), after, KeyLess{});
  }
  size_t passed = 0;
  const int state_fd = (*dirs)->state ? (*dirs)->state.get() : -1;
  for (; it != ids->end(); ++it) {
    if (filter.limit > 0 && passed >= filter.limit) break;
    std::string name(it->data(), it->size());
    auto entry = ReadEntry((*dirs)->msg.get(), state_fd, name);
    if (!entry || !Matches(*entry, filter)) continue;
    ++passed;
    if (!each(*entry)) break;
  }
  return passed;
}

Result<std::vector<Entry>> List(const std::string& data_dir) {
  std::vector<Entry> entries;
  ListFilter all;
  auto listed = ListEach(data_dir, all, [&](Entry& e) {
    entries.push_back(std::move(e));
    return true;
  });
  if (!listed) return tl::unexpected(listed.error());
  return entries;
}

Result<Entry> ListOne(const std::string& data_dir, const std::string& id) {
  if (!IsValidQueueId(id)) return Err("no such message: " + id);
  auto dirs = OpenSpoolDirs(data_dir);
  if (!dirs) return tl::unexpected(dirs.error());
  if (*dirs) {
    const int state_fd = (*dirs)->state ? (*dirs)->state.get() : -1;
    if (auto entry = ReadEntry((*dirs)->msg.get(), state_fd, id))
      return std::move(*entry);
  }
  return Err("no such message: " + id);
}

}  // namespace tern::queue
