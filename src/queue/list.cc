// `tern queue list`: reads the spool of a data folder without a running
// server, skipping messages still being received.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "common/file_io.h"
#include "common/unique_fd.h"
#include "queue/queue.h"
#include "queue/queue_id.h"
#include "queue/spool_format.h"

namespace tern::queue {

Result<std::vector<Entry>> List(const std::string& data_dir) {
  std::vector<Entry> entries;
  auto msg_fd = io::OpenDir(data_dir + "/queue/msg");
  if (!msg_fd) {
    struct stat st;
    if (::stat((data_dir + "/queue/msg").c_str(), &st) != 0 &&
        errno == ENOENT) {
      return entries;  // nothing was ever queued
    }
    return tl::unexpected(msg_fd.error());
  }
  auto state_fd = io::OpenDir(data_dir + "/queue/state");
  auto names = io::ListDir(msg_fd->get());
  if (!names) return tl::unexpected(names.error());
  std::sort(names->begin(), names->end());
  for (const std::string& name : *names) {
    if (!IsValidQueueId(name)) continue;
    UniqueFd fd(::openat(msg_fd->get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;  // delivered meanwhile
    // Messages still being received (or torn) fail this check: skip them.
    auto file = ReadMessageMeta(fd.get());
    // A reused file still holding an earlier message: not written yet.
    if (!file || file->envelope.id != name) continue;
    Entry entry;
    entry.envelope = std::move(file->envelope);
    entry.envelope.id = name;
    entry.size = file->size();
    MessageState state = InitialState(entry.envelope);
    if (state_fd) {
      auto raw = io::ReadSmallFileAt(state_fd->get(), name, 64u << 20);
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
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace tern::queue
