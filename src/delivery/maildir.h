// Maildir++ delivery (https://cr.yp.to/proto/maildir.html): copies are
// written into tmp/, made durable, renamed into new/, and the renames made
// durable — for a whole batch of copies with one syncfs() per step.
#pragma once

#include <cstdint>
#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "store/mailbox_path.h"

namespace tern::delivery {

// The trace fields prepended to each copy (RFC 5321 4.4: Return-Path is
// added at final delivery; Delivered-To is the common loop-detection field).
// A null sender gives "Return-Path: <>".
std::string DeliveryHeaders(std::string_view sender, std::string_view mailbox);

// Converts CRLF line ends to LF across chunk boundaries (Maildir files use
// Unix line ends). A bare CR is kept as it is.
class LineEndConverter {
 public:
  void Convert(std::string_view in, std::string& out);
  // Flushes a CR held back at the end of the last chunk.
  void Finish(std::string& out);

 private:
  bool pending_cr_ = false;
};

// "<sec>.M<usec>P<pid>Q<counter>.<host>" with '/' and ':' in the host name
// replaced by their octal escapes, as the Maildir convention asks.
std::string MaildirUniqueName(std::string_view hostname);

// Where the message bytes of one queued message come from: converted text
// in memory for small messages, else the spool file, converted while copied.
struct MessageSource {
  const std::string* lf_body = nullptr;  // already converted, or null
  int fd = -1;                           // spool file when lf_body is null
  uint64_t offset = 0;
  uint64_t length = 0;
};

// syncfs() for the file system of an open file: 0 or an errno value. The
// queue passes one that shares its group-commit flush (queue/committer.cc).
using SyncFs = std::function<int(int fd)>;

// A set of copies delivered together so they share syncs.
class MaildirBatch {
 public:
  MaildirBatch(int mail_root_fd, std::string hostname, SyncFs sync = {});
  ~MaildirBatch();
  MaildirBatch(const MaildirBatch&) = delete;
  MaildirBatch& operator=(const MaildirBatch&) = delete;

  // Writes one copy into the mailbox's tmp/, creating the Maildir (mode
  // 0700) when missing. Returns the copy's index for result().
  // `folder_dir` names a Maildir++ folder (".Junk") to deliver into
  // instead of the INBOX; it is created when missing.
  size_t Add(const store::MailboxPath& mailbox, std::string_view headers,
             const MessageSource& source, std::string_view folder_dir = {});
  // Syncs the written copies, renames them into new/ and syncs the renames.
  // A copy is reported delivered only when its file in new/ is durable.
  // The same in steps, for a caller that flushes on its own (direct
  // delivery shares the queue's group commit): Link() once the data is
  // durable, Finalize() once a flush after Link() finished (`durable`
  // false when it failed: the copies are then reported as errors).
  void Commit();
  // `keep_tmp`: hard-links each copy into new/ and keeps its tmp/ name
  // until DropTmpNames(), for a caller that must not risk a rename torn
  // by a crash (ext4 without a journal can lose both names of a file).
  void Link(bool keep_tmp = false);
  void Finalize(bool durable);
  // After Link(true) and a flush that made the links durable.
  void DropTmpNames();
  // Before Commit or Link: whether copy `index` was written (else its
  // result() holds the error) and the file system it is on.
  bool written(size_t index) const;
  dev_t device(size_t index) const;
  // Paths below the mail root of copy `index` in tmp/ and in new/.
  std::string tmp_path(size_t index) const;
  std::string new_path(size_t index) const;
  // After Commit: the path below the mail root of the delivered file, or the
  // error (the copy is then not in new/, or is there but maybe not durable
  // — a retry may deliver it twice, never lose it).
  const Result<std::string>& result(size_t index) const;

 private:
  struct Copy;
  Result<void> WriteCopy(Copy& copy, const store::MailboxPath& mailbox,
                         std::string_view headers, const MessageSource& source,
                         std::string_view folder_dir);
  void Fail(Copy& copy, tl::unexpected<Error> error);
  void SyncAll(bool after_rename);

  int mail_root_fd_;
  std::string hostname_;
  SyncFs sync_;
  std::vector<Copy> copies_;
};

}  // namespace tern::delivery
