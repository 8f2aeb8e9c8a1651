// The mailboxes of one account as IMAP sees them: folders, UIDs, flags,
// MODSEQs. An interface, so that the IMAP session does not know where mail
// lives: MaildirStore (store/maildir_store.h) keeps it in Maildir++ with a
// SQLite index; a networked backend (PostgreSQL, several Tern nodes) can
// implement the same calls later.
//
// Folder names are canonical IMAP names (store/folder_name.h): UTF-8, "/"
// between levels, "INBOX" in upper case. Messages are named by UID; the
// session maps sequence numbers, "*" and "$" to UIDs.
//
// Errors carry an errno-style code the session maps to response codes
// (RFC 9051 7.1):
//   ENOENT     no such folder            -> NO [NONEXISTENT] (or [TRYCREATE]
//                                           for APPEND/COPY/MOVE targets)
//   EEXIST     folder exists             -> NO [ALREADYEXISTS]
//   ENOTEMPTY  folder has inferiors      -> NO [HASCHILDREN]
//   EINVAL     name refused              -> NO (or BAD for a malformed name)
//   EPERM      INBOX cannot be deleted   -> NO
//   ENOSPC/EDQUOTA (Error::NoSpace())    -> NO [OVERQUOTA] / [LIMIT]
//   other                                -> NO [SERVERBUG]/[UNAVAILABLE]
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace tern::store {

// System flags (RFC 9051 2.3.2) as bits. \Recent is gone in IMAP4rev2
// and not kept.
enum Flag : uint8_t {
  kSeen = 1,
  kAnswered = 2,
  kFlagged = 4,
  kDeleted = 8,
  kDraft = 16,
};
using Flags = uint8_t;

// "\Seen" -> kSeen (case-insensitive, RFC 9051 2.3.2), 0 for anything else.
Flags SystemFlagOf(std::string_view name);
// The flag names in the canonical case, in bit order.
std::vector<std::string> SystemFlagNames(Flags flags);

// RFC 6154 2 special-use attributes (one per folder here).
enum class SpecialUse {
  kNone,
  kAll,
  kArchive,
  kDrafts,
  kFlagged,
  kJunk,
  kSent,
  kTrash
};
std::string_view SpecialUseName(SpecialUse use);  // "\Sent", "" for kNone
std::optional<SpecialUse> SpecialUseOf(std::string_view name);

inline constexpr uint64_t kUnknownSize = UINT64_MAX;

struct MessageMeta {
  uint32_t uid = 0;
  uint64_t modseq = 0;  // RFC 7162 mod-sequence: positive
  Flags flags = 0;
  std::vector<std::string> keywords;  // sorted, as first set (case kept)
  int64_t internal_date = 0;  // seconds since the epoch (RFC 9051 2.3.3)
  // RFC822.SIZE: octets as sent (CRLF). kUnknownSize when the folder was
  // indexed in bulk without reading the files (MailStore::Sizes).
  uint64_t size = 0;
  bool operator==(const MessageMeta&) const = default;
};

struct FolderState {
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 1;  // RFC 7162 3.1.2.1
};

// SELECT/EXAMINE: the state and every message, by ascending UID (the
// sequence numbers are the positions).
struct FolderSnapshot {
  FolderState state;
  std::vector<MessageMeta> messages;
};

// What happened since a MODSEQ the session knew: messages added or changed
// (modseq above it; new ones have UIDs at or above the UIDNEXT the session
// knew) and UIDs expunged (RFC 7162 3.2.10 VANISHED needs the same).
struct FolderChanges {
  FolderState state;
  std::vector<MessageMeta> changed;  // ascending UID
  std::vector<uint32_t> expunged;    // ascending
};

struct FolderInfo {
  std::string name;
  SpecialUse special_use = SpecialUse::kNone;
  bool has_children = false;  // RFC 9051 7.3.1 \HasChildren / \HasNoChildren
  bool subscribed = false;
};

// RFC 9051 6.3.11 STATUS, RFC 7162 3.1.2.3 HIGHESTMODSEQ, RFC 8438 SIZE.
struct FolderStatus {
  FolderState state;
  uint32_t messages = 0;
  uint32_t unseen = 0;
  uint32_t deleted = 0;
  uint64_t size = 0;
};

enum class StoreMode { kReplace, kAdd, kRemove };

struct StoreRequest {
  std::vector<uint32_t> uids;
  StoreMode mode = StoreMode::kReplace;
  Flags flags = 0;
  std::vector<std::string> keywords;
  // RFC 7162 3.1.3 UNCHANGEDSINCE: messages whose MODSEQ is above it are
  // left alone and reported in `failed`.
  std::optional<uint64_t> unchanged_since;
};

struct StoreResult {
  std::vector<MessageMeta> updated;  // changed now, with their new MODSEQ
  std::vector<uint32_t> failed;      // RFC 7162 3.1.3 [MODIFIED]
  uint64_t highest_modseq = 0;
};

// A message being received. APPEND literals reach the session in pieces
// (imap/protocol/reader.h streams those above max_literal), so the store
// takes them as they come: into tmp/ for Maildir. Nothing is visible
// before MailStore::CommitAppend(); a stage dropped without it leaves
// nothing behind.
class AppendStage {
 public:
  virtual ~AppendStage() = default;
  // The next octets of the message as the client sent them (CRLF).
  virtual Result<void> Write(std::string_view chunk) = 0;
};

// What APPEND says about a message besides its octets (RFC 9051 6.3.12).
struct AppendOptions {
  Flags flags = 0;
  std::vector<std::string> keywords;
  std::optional<int64_t> internal_date;  // default: now
};

struct StagedAppend {
  std::unique_ptr<AppendStage> stage;
  AppendOptions options;
};

// A whole message in memory (Append() below).
struct AppendRequest {
  std::string_view message;  // as received (CRLF); stored with LF line ends
  Flags flags = 0;
  std::vector<std::string> keywords;
  std::optional<int64_t> internal_date;  // default: now
};

// RFC 4315 3 APPENDUID / COPYUID.
struct AppendResult {
  uint32_t uidvalidity = 0;
  uint32_t uid = 0;
};
struct CopyResult {
  uint32_t uidvalidity = 0;  // the target's
  std::vector<uint32_t>
      source_uids;  // ascending; UIDs that no longer exist are left out
  std::vector<uint32_t> target_uids;  // same order
};

// A rendering of a message the IMAP session keeps (ENVELOPE,
// BODYSTRUCTURE...): `kind` is the session's own code.
struct PartCacheEntry {
  uint32_t uid = 0;
  uint8_t kind = 0;
  std::string value;
};

// The full-text index SEARCH TEXT and BODY can use (RFC 9051 6.4.4). The
// store keeps text it is given; what the text is (decoded header fields,
// the body's text parts in UTF-8) is the session's business.
struct TextIndexEntry {
  uint32_t uid = 0;
  std::string header;
  std::string body;
  // False when the text given is not all of the message's (cut at a size
  // limit): the message is then a candidate for every needle.
  bool complete = true;
};

enum class TextField { kText, kBody };  // header and body, or body only

class MailStore {
 public:
  virtual ~MailStore() = default;

  // Folders (RFC 9051 6.3.4 to 6.3.9, RFC 6154 SPECIAL-USE).
  virtual Result<std::vector<FolderInfo>> ListFolders() = 0;
  virtual Result<void> CreateFolder(std::string_view name,
                                    SpecialUse use = SpecialUse::kNone) = 0;
  virtual Result<void> DeleteFolder(std::string_view name) = 0;
  virtual Result<void> RenameFolder(std::string_view from,
                                    std::string_view to) = 0;
  virtual Result<void> SetSubscribed(std::string_view name,
                                     bool subscribed) = 0;
  virtual Result<std::vector<std::string>> Subscriptions() = 0;
  // `with_size`: FolderStatus::size is wanted (RFC 8438 STATUS=SIZE); it
  // may cost reading messages whose size the index does not have yet.
  virtual Result<FolderStatus> Status(std::string_view name, bool with_size = true) = 0;

  // Picks up changes made by other programs, then returns everything.
  virtual Result<FolderSnapshot> Select(std::string_view name) = 0;
  // Picks up changes made by other programs, then returns what changed
  // after `since_modseq`.
  virtual Result<FolderChanges> Sync(std::string_view name,
                                     uint64_t since_modseq) = 0;

  // All the writes below are durable before they return success: an OK
  // built on them survives a crash.
  virtual Result<StoreResult> StoreFlags(std::string_view name,
                                         const StoreRequest& req) = 0;
  // APPEND in two steps: stage each message while its literal arrives,
  // then commit them together. All or none (RFC 3502 MULTIAPPEND), UIDs
  // ascending in the given order (RFC 4315 3 APPENDUID). Stages must come
  // from BeginAppend() of this store for the same folder. A missing folder
  // fails already in BeginAppend() (ENOENT, NO [TRYCREATE]).
  virtual Result<std::unique_ptr<AppendStage>> BeginAppend(
      std::string_view name) = 0;
  virtual Result<std::vector<AppendResult>> CommitAppend(
      std::string_view name, std::vector<StagedAppend> messages) = 0;
  // One message already in memory: BeginAppend, Write, CommitAppend.
  Result<AppendResult> Append(std::string_view name, const AppendRequest& req) {
    auto stage = BeginAppend(name);
    if (!stage) return tl::unexpected(stage.error());
    if (auto w = (*stage)->Write(req.message); !w) {
      return tl::unexpected(w.error());
    }
    std::vector<StagedAppend> one;
    one.push_back(StagedAppend{
        std::move(*stage),
        AppendOptions{req.flags, req.keywords, req.internal_date}});
    auto done = CommitAppend(name, std::move(one));
    if (!done) return tl::unexpected(done.error());
    return done->at(0);
  }
  virtual Result<CopyResult> Copy(std::string_view from,
                                  const std::vector<uint32_t>& uids,
                                  std::string_view to) = 0;
  // RFC 6851 MOVE: copy, then expunge in the source.
  virtual Result<CopyResult> Move(std::string_view from,
                                  const std::vector<uint32_t>& uids,
                                  std::string_view to) = 0;
  // RFC 9051 6.4.3 EXPUNGE (every \Deleted message) or, with `uids`, RFC
  // 4315 2.1 UID EXPUNGE (only those among them that are \Deleted).
  // Returns the expunged UIDs, ascending.
  virtual Result<std::vector<uint32_t>> Expunge(
      std::string_view name,
      const std::optional<std::vector<uint32_t>>& uids) = 0;

  // The message's octets as stored (LF line ends: store/crlf.h sends them).
  virtual Result<UniqueFd> OpenMessage(std::string_view name, uint32_t uid) = 0;

  // RFC822.SIZE of messages indexed without one (kUnknownSize): counted
  // from the files now and kept in the index. Returns (uid, size) for
  // those still there, ascending by UID.
  virtual Result<std::vector<std::pair<uint32_t, uint64_t>>> Sizes(
      std::string_view name, const std::vector<uint32_t>& uids) = 0;
  // Sizes the caller counted itself (from the octets of a message it
  // read). Need not be durable.
  virtual Result<void> SaveSizes(std::string_view name,
                                 const std::vector<std::pair<uint32_t, uint64_t>>& sizes) = 0;

  // A cache of what the session renders from messages (they never change,
  // so entries live as long as the message). Optional for a backend: the
  // defaults keep nothing. Saving need not be durable.
  virtual Result<std::vector<PartCacheEntry>> LoadPartCache(std::string_view name,
                                                            uint32_t first_uid,
                                                            uint32_t last_uid) {
    return std::vector<PartCacheEntry>{};
  }
  virtual Result<void> SavePartCache(std::string_view name,
                                     const std::vector<PartCacheEntry>& entries) {
    return {};
  }

  // The full-text index. Optional for a backend: the defaults have none
  // (SearchText returns nullopt and the session reads every message).
  //
  // SearchText: the UIDs of the folder that may contain `needle` (valid
  // UTF-8, at least three characters) ignoring case: every message whose
  // indexed text has it, every message indexed incompletely and every
  // message not indexed at all, ascending. A superset: the caller checks
  // each one. nullopt when the index cannot answer this needle.
  virtual Result<std::optional<std::vector<uint32_t>>> SearchText(
      std::string_view name, std::string_view needle, TextField field) {
    return std::optional<std::vector<uint32_t>>{};
  }
  // Up to `limit` UIDs of the folder whose text is not indexed yet,
  // ascending (empty for a backend without an index).
  virtual Result<std::vector<uint32_t>> UnindexedText(std::string_view name,
                                                      size_t limit) {
    return std::vector<uint32_t>{};
  }
  // Adds text to the index (messages expunged meanwhile are skipped).
  virtual Result<void> IndexText(std::string_view name,
                                 const std::vector<TextIndexEntry>& entries) {
    return {};
  }

  // The session will wait for a long time (IMAP IDLE): give back what
  // caches hold. The next call refills them.
  virtual void ReleaseMemory() {}
};

}  // namespace tern::store
