// MailStore on Maildir++ with a SQLite index per account
// (docs/architecture.md, "The IMAP index"). The Maildir keeps the
// messages and their system flags (in the file names, so mutt and Dovecot
// agree); `tern-imap.sqlite` in the account's Maildir keeps what Maildir
// cannot: UIDVALIDITY, UIDNEXT, UIDs, MODSEQs, keywords, internal dates,
// sizes, special-use, and the UIDs expunged (for QRESYNC).
//
// One object per session, used by one thread at a time. Sessions in this
// or other processes share the index: every write runs in a SQLite write
// transaction (BEGIN IMMEDIATE), which also orders them against each
// other's Maildir changes. Other programs change the Maildir without it;
// every Select/Sync/Status/Expunge first reconciles the index with the
// directories.
#pragma once

#include <memory>
#include <string>

#include "store/mail_store.h"

namespace tern::store {

// The file names the store keeps in the account's Maildir (next to
// POP3's tern-index, tern-expunge and tern-pop3.lock, which it leaves alone).
inline constexpr char kImapIndexFile[] = "tern-imap.sqlite";
inline constexpr char kSubscriptionsFile[] = "tern-subscriptions";

struct MaildirStoreOptions {
  // Folders every account has (RFC 6154 2); created at Open when no folder
  // has the use yet.
  bool create_special_folders = true;
  // Host name for new Maildir file names.
  std::string hostname = "localhost";
};

class MaildirStore final : public MailStore {
 public:
  // Opens (creating when missing) the Maildir at `maildir` and its index.
  static Result<std::unique_ptr<MaildirStore>> Open(
      const std::string& maildir, MaildirStoreOptions options = {});
  ~MaildirStore() override;

  Result<std::vector<FolderInfo>> ListFolders() override;
  Result<void> CreateFolder(std::string_view name, SpecialUse use) override;
  Result<void> DeleteFolder(std::string_view name) override;
  Result<void> RenameFolder(std::string_view from,
                            std::string_view to) override;
  Result<void> SetSubscribed(std::string_view name, bool subscribed) override;
  Result<std::vector<std::string>> Subscriptions() override;
  Result<FolderStatus> Status(std::string_view name, bool with_size = true) override;
  Result<FolderSnapshot> Select(std::string_view name) override;
  Result<FolderChanges> Sync(std::string_view name,
                             uint64_t since_modseq) override;
  Result<StoreResult> StoreFlags(std::string_view name,
                                 const StoreRequest& req) override;
  Result<std::unique_ptr<AppendStage>> BeginAppend(
      std::string_view name) override;
  Result<std::vector<AppendResult>> CommitAppend(
      std::string_view name, std::vector<StagedAppend> messages) override;
  using MailStore::Append;
  Result<CopyResult> Copy(std::string_view from,
                          const std::vector<uint32_t>& uids,
                          std::string_view to) override;
  Result<CopyResult> Move(std::string_view from,
                          const std::vector<uint32_t>& uids,
                          std::string_view to) override;
  Result<std::vector<uint32_t>> Expunge(
      std::string_view name,
      const std::optional<std::vector<uint32_t>>& uids) override;
  Result<UniqueFd> OpenMessage(std::string_view name, uint32_t uid) override;
  Result<std::vector<std::pair<uint32_t, uint64_t>>> Sizes(
      std::string_view name, const std::vector<uint32_t>& uids) override;
  Result<void> SaveSizes(std::string_view name,
                         const std::vector<std::pair<uint32_t, uint64_t>>& sizes) override;
  Result<std::vector<PartCacheEntry>> LoadPartCache(std::string_view name,
                                                    uint32_t first_uid,
                                                    uint32_t last_uid) override;
  Result<void> SavePartCache(std::string_view name,
                             const std::vector<PartCacheEntry>& entries) override;
  void ReleaseMemory() override;
  Result<std::optional<std::vector<uint32_t>>> SearchText(
      std::string_view name, std::string_view needle, TextField field) override;
  Result<std::vector<uint32_t>> UnindexedText(std::string_view name,
                                              size_t limit) override;
  Result<void> IndexText(std::string_view name,
                         const std::vector<TextIndexEntry>& entries) override;

  // Where message `uid` of folder `name` is, relative to the account's
  // Maildir ("cur/NAME:2,S", ".Sent/cur/NAME:2,S"), as the index has it.
  // For tests and tools.
  Result<std::string> MessagePath(std::string_view name, uint32_t uid);

 private:
  struct Impl;
  explicit MaildirStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The Maildir info flags ("2,DFPRST", https://cr.yp.to/proto/maildir.html)
// of a file name: D \Draft, F \Flagged, R \Answered, S \Seen, T \Deleted.
// P (passed) is the keyword $Forwarded. Exposed for tests.
Flags FlagsOfFileName(std::string_view file_name, bool* forwarded = nullptr);

}  // namespace tern::store
