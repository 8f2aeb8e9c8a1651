// A Maildir mailbox as POP3 (and later IMAP) read it: a listing of new/ and
// cur/ with sizes in CRLF form and UIDs cached in an index file, opening and
// flagging messages, and a journaled expunge that completes or not at all.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace tern::store {

// The Maildir unique name of a file: everything before the ':' that starts
// the info part ("unique:2,FLAGS"). Renames for flags keep it, so it
// identifies a message for ever.
std::string_view UniqueOf(std::string_view file_name);

// RFC 1939 7 UIDL: 1 to 70 octets in 0x21..0x7E, never reused. The unique
// name itself when it qualifies (the usual case), else a hash of it.
std::string UidlFor(std::string_view unique);

struct MessageInfo {
  std::string unique;  // Maildir unique name, stable across renames
  std::string path;    // below the Maildir: "new/NAME" or "cur/NAME:2,FL"
  uint64_t size = 0;   // octets in CRLF form (store/crlf.h)
  uint32_t uid = 0;    // ascending in arrival order (IMAP UID)
};

// An exclusive hold on a mailbox for one POP3 session (RFC 1939 8: the
// maildrop is locked). It is an flock() on a file in the Maildir: it stops
// a second session in this process (each hold opens its own file
// description, and flock conflicts between descriptions) and in any other
// process that uses the same lock, and vanishes with the process.
class MailboxLock {
 public:
  // nullopt when another session holds the mailbox.
  static Result<std::optional<MailboxLock>> TryAcquire(int maildir_fd);
  MailboxLock(MailboxLock&&) = default;
  MailboxLock& operator=(MailboxLock&&) = default;

 private:
  explicit MailboxLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class Maildir {
 public:
  // Opens the Maildir at `path` (creating it and tmp/ new/ cur/ with mode
  // 0700 when missing, as a mailbox with no mail yet).
  static Result<std::unique_ptr<Maildir>> Open(const std::string& path);
  ~Maildir();

  int fd() const { return dir_.get(); }
  const std::string& path() const { return path_; }

  // Completes an expunge a crash interrupted, then lists new/ and cur/,
  // sorted by UID. Sizes and UIDs come from the index; only messages not
  // seen before are read (once), and the index is rewritten if it changed.
  Result<void> Scan();
  const std::vector<MessageInfo>& messages() const { return messages_; }
  uint32_t uidvalidity() const { return uidvalidity_; }
  // Files read to size them in the last Scan() (for tests and logs).
  size_t last_scan_reads() const { return last_scan_reads_; }

  // Opens message `i` for reading. Finds it again if another program
  // (a MUA changing flags) renamed it since the scan.
  Result<UniqueFd> OpenMessage(size_t i);
  // Marks message `i` seen: new/NAME -> cur/NAME:2,S, or adds S to the
  // flags of a file already in cur/ (Maildir: flags sorted by ASCII).
  Result<void> MarkSeen(size_t i);
  // Removes messages for good. The names are first written to a journal
  // that is made durable; then the files are unlinked and the directories
  // synced; then the journal goes. A crash before the journal is durable
  // deletes nothing; after it, the next Scan() (under the session lock)
  // finishes the job. Names are never reused, so finishing twice is safe.
  Result<void> Expunge(const std::vector<size_t>& indexes);

 private:
  Maildir(std::string path, UniqueFd dir) : path_(std::move(path)), dir_(std::move(dir)) {}
  struct IndexEntry;
  Result<void> ReplayJournal();
  bool Relocate(MessageInfo& m);
  Result<void> UnlinkByName(const std::string& unique, const std::string& path);

  std::string path_;
  UniqueFd dir_;
  std::vector<MessageInfo> messages_;
  uint32_t uidvalidity_ = 0;
  uint32_t next_uid_ = 1;
  size_t last_scan_reads_ = 0;
};

}  // namespace tern::store
