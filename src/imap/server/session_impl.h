// The inside of imap::Session, shared by its files: session.cc (framing,
// states, authentication, the commands that need no mail store),
// folders.cc (LIST, CREATE, STATUS, SELECT, APPEND...), selected.cc (the
// selected folder's view and its untagged updates, STORE, EXPUNGE, COPY)
// and fetch.cc / search.cc / sort.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl_exchange.h"
#include "imap/protocol/command.h"
#include "imap/protocol/reader.h"
#include "imap/server/message.h"
#include "imap/server/session.h"
#include "store/mail_store.h"

namespace tern::imap {

// The folder a session has selected, as the client knows it: its messages
// in sequence-number order (RFC 9051 2.3.1.2) with the flags last told.
struct SelectedFolder {
  std::string name;  // canonical
  bool read_only = false;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t known_modseq = 0;  // changes up to this one were looked at
  std::vector<store::MessageMeta> messages;
  // Expunged elsewhere but not yet announced (RFC 9051 7.5.1 holds them
  // back during FETCH, STORE and SEARCH, and SORT and THREAD, which RFC
  // 5256 makes behave as SEARCH): still in `messages`.
  std::vector<uint32_t> pending_expunge;
  // Keywords seen in the folder, for the FLAGS response.
  std::set<std::string> keywords;
  std::chrono::steady_clock::time_point last_sync;

  // A session in IDLE (RFC 2177) may wait there for hours, and a server
  // holds thousands of them, so it keeps only its UIDs, as ascending runs,
  // with `messages` empty (Session::Impl::Hibernate); the next command
  // loads the rest from the store again (Thaw). Wake-ups in IDLE work on
  // the runs alone.
  struct UidRun {
    uint32_t first;
    uint32_t last;
  };
  bool hibernated = false;
  std::vector<UidRun> idle_uids;

  // Index (sequence number - 1) of `uid`, or nullopt.
  std::optional<size_t> Find(uint32_t uid) const;
};

// What matching search keys against one message keeps: the message once
// a key needed its text (SORT and THREAD read their keys from it too).
struct SearchContext {
  std::optional<MessageText> text;
  bool load_failed = false;
  uint64_t max_modseq = 0;
  bool used_modseq = false;
};

struct Session::Impl {
  enum class State { kNotAuthenticated, kAuthenticated, kSelected, kLogout };
  // What Work() is to do.
  enum class Job {
    kNone,
    kSaslStep,    // the SASL mechanism's step
    kLogin,       // open the account's store
    kCommand,     // run `command`
    kAppendData,  // write buffered APPEND literal octets to their stage
    kIdleSync,    // in IDLE: look at the folder, send what changed
  };

  Impl(const SessionConfig& c, SessionHost& h, ClientInfo ci);

  // --- session.cc ---
  size_t Feed(std::string_view data);
  void OnCommand(FramedCommand framed);
  void OnContinue();
  void OnLiteralData(std::string_view chunk);
  void OnLine(std::string line);
  void OnReject(const Rejection& r);
  void Dispatch(Command cmd);
  void Capability();
  std::string Capabilities() const;
  bool AuthAllowed() const;
  void StartSasl(const Command& cmd);
  void OnSasl(auth::SaslExchange::Event event);
  void SaslLine(std::string_view line);
  void Enable(const Command& cmd);
  void Id(const Command& cmd);
  void Compress(const Command& cmd);
  void Work();
  void FinishLogin();
  void RunCommand();

  // Response helpers.
  void Untagged(std::string_view text);
  void Tagged(std::string_view status, std::string_view text);  // tag_
  void Ok(std::string_view text) { Tagged("OK", text); }
  void No(std::string_view text) { Tagged("NO", text); }
  void Bad(std::string_view text);
  // A store error as NO with the response code RFC 9051 7.1 gives it.
  void StoreError(const Error& e, bool trycreate = false);
  // A mailbox name as the client reads it (modified UTF-7 unless UTF-8 is
  // enabled), as an astring.
  std::string MailboxOut(std::string_view name) const;
  bool utf8() const { return rev2 || utf8_accept; }

  // --- folders.cc (authenticated state) ---
  void List(const Command& cmd);
  void Lsub(const Command& cmd);
  void Namespace();
  void Create(const Command& cmd);
  void Delete(const Command& cmd);
  void Rename(const Command& cmd);
  void Subscribe(const Command& cmd, bool on);
  void Status(const Command& cmd);
  std::string StatusItems(const store::FolderStatus& st,
                          const std::vector<StatusItem>& items) const;
  void Select(const Command& cmd);
  void Append(const Command& cmd);
  // RFC 9208: GETQUOTA, GETQUOTAROOT, SETQUOTA; and the check before
  // APPEND and COPY add `octets` (false: NO [OVERQUOTA] sent).
  void QuotaCommand(const Command& cmd);
  bool QuotaAllows(uint64_t octets);
  void WriteAppendData();
  void DropAppend();

  // --- selected.cc ---
  // Looks at the folder and sends what changed (RFC 9051 7.5); expunges
  // only when `expunge_ok` (not during FETCH, STORE, SEARCH, SORT, THREAD).
  void Refresh(bool expunge_ok);
  // Refresh of a hibernated view: expunges are always sent (the commands
  // that hold them back thaw the view first).
  void RefreshHibernated(const store::FolderChanges& ch);
  // IDLE: drops the view but its UIDs, and the store's caches.
  void Hibernate();
  // Before a command: the view again, from the store (false: NO sent).
  bool Thaw();
  // Sends and applies the held-back expunges.
  void FlushExpunges();
  void SendExpunged(const std::vector<uint32_t>& uids);
  std::string FlagList(const store::MessageMeta& m) const;
  // "* seq FETCH (UID u FLAGS (...) [MODSEQ (n)])": a flag change told.
  std::string FlagsUpdate(size_t seq, const store::MessageMeta& m) const;
  // Adds the message's keywords to the selected folder's; true when one
  // is new (a FLAGS response is then due).
  bool NoteKeywords(const store::MessageMeta& m);
  std::string FlagsResponse() const;
  // Message indexes of a sequence set (UIDs when `uid`), ascending.
  // False (BAD sent) for sequence numbers beyond the last message.
  bool Resolve(const SequenceSet& set, bool uid, std::vector<size_t>* out);
  // Gives the messages at `indexes` of the selected folder (all of them
  // when null) whose size the index lacks (store::kUnknownSize) their
  // counted size; one the store cannot read keeps kUnknownSize.
  void CountSizes(const std::vector<size_t>* indexes = nullptr);
  void Close(bool expunge);
  void Expunge(const Command& cmd);
  void Store(const Command& cmd);
  void Copy(const Command& cmd, bool move);

  // --- fetch.cc ---
  void Fetch(const Command& cmd);
  // Continues a FETCH that handed output to the connection.
  void FetchMore();

  // --- search.cc ---
  void Search(const Command& cmd);
  bool Matches(const SearchKey& key, size_t index, SearchContext& ctx);
  // Calls `each` for every message (ascending) that matches all `keys`.
  // *used_modseq tells whether a MODSEQ key was seen (RFC 7162 3.1.5).
  void ForEachMatch(const std::vector<SearchKey>& keys, bool* used_modseq,
                    const std::function<void(size_t index, SearchContext& ctx)>& each);
  // The UIDs that can match `key` according to the store's full-text index
  // (ascending), nullopt when the index does not narrow it down.
  std::optional<std::vector<uint32_t>> TextCandidates(const SearchKey& key,
                                                      bool* indexed);
  // Puts the text of the selected folder's messages not yet indexed into
  // the store's index.
  void IndexSelectedText();

  // --- sort.cc (RFC 5256, RFC 5267 ESORT, RFC 5957 DISPLAYFROM/TO) ---
  void Sort(const Command& cmd);
  void Thread(const Command& cmd);

  const SessionConfig& config;
  SessionHost& host;
  ClientInfo client;
  CommandReader reader;
  State state = State::kNotAuthenticated;
  Need need = Need::kInput;
  Job job = Job::kNone;
  std::string out;
  std::string tag_;  // of the command being answered
  std::optional<Command> command;
  uint32_t errors = 0;
  uint64_t commands = 0;
  uint64_t fetched = 0;

  // Authentication.
  auth::SaslExchange sasl;
  bool in_sasl = false;
  std::chrono::milliseconds delay{0};
  std::string after_delay;  // the tagged NO to send after the delay
  std::string user;
  std::unique_ptr<store::MailStore> store;

  // ENABLE (RFC 5161): what the client asked for.
  bool rev2 = false;         // IMAP4rev2
  bool utf8_accept = false;  // UTF8=ACCEPT (RFC 6855)
  bool condstore = false;    // CONDSTORE (RFC 7162 3.1), also by use
  bool qresync = false;      // QRESYNC (RFC 7162 3.2)

  // COMPRESS=DEFLATE (RFC 4978) is on: there is no way back.
  bool compressed = false;

  std::optional<SelectedFolder> selected;
  // RFC 5182 SEARCHRES: the UIDs of the last SEARCH RETURN (SAVE).
  std::vector<uint32_t> saved;

  // IDLE (RFC 2177).
  bool idling = false;
  bool woken = false;

  // An APPEND whose literals arrive (streamed ones above the reader's
  // max_literal go straight to their stage).
  struct Appending {
    std::optional<std::string> mailbox;
    std::vector<std::unique_ptr<store::AppendStage>> stages;  // by literal
    // Octets not yet written, by literal index, in arrival order.
    std::vector<std::pair<size_t, std::string>> pending;
    size_t pending_bytes = 0;
    std::optional<Error> error;  // the first failure; the rest is dropped
  };
  std::optional<Appending> appending;

  // A FETCH answered in pieces.
  struct Fetching {
    Command cmd;
    std::vector<size_t> indexes;
    size_t next = 0;
    std::vector<bool> seen_set;  // FLAGS to add: \Seen was set by it
    // Renderings from the store's part cache (uid << 8 | kind), loaded for
    // the indexes before `cached_until`, and the new ones to save.
    std::unordered_map<uint64_t, std::string> cached;
    size_t cached_until = 0;
    std::vector<store::PartCacheEntry> to_save;
    // RFC822.SIZE counted from messages read for this FETCH whose index
    // row had none (store::kUnknownSize), saved with the renderings.
    std::vector<std::pair<uint32_t, uint64_t>> sizes_to_save;
  };
  std::optional<Fetching> fetching;
};

// `n` is in the set (no "$"), "*" being `star`.
bool InSet(const SequenceSet& set, uint32_t n, uint32_t star);

// "1:3,5" for ascending numbers.
std::string FormatSet(const std::vector<uint32_t>& ascending);

}  // namespace tern::imap
