// Typed IMAP client commands (RFC 9051 6, the IMAP4rev1 forms of RFC 3501
// clients still send, and the extensions Tern offers) and the parser that
// makes them from a framed command (reader.h). No execution here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/result.h"
#include "imap/protocol/datetime.h"
#include "imap/protocol/reader.h"

namespace tern::imap {

// A sequence number or UID of a set; kStar is "*", the largest in use.
inline constexpr uint32_t kStar = 0;

struct SeqRange {
  uint32_t first = 1;
  uint32_t last = 1;  // as written: 5:2 stays 5:2 (it means 2:5); first for one number
  bool operator==(const SeqRange&) const = default;
};

// RFC 9051 9 sequence-set, and "$" (RFC 9051 6.4.4.1, RFC 5182 SEARCHRES):
// the result a SEARCH with RETURN (SAVE) kept.
struct SequenceSet {
  bool saved = false;
  std::vector<SeqRange> ranges;  // as written; empty when saved
  bool operator==(const SequenceSet&) const = default;
};

// RFC 9051 6.4.5 section-spec.
enum class SectionText {
  kNone,             // BODY[] / BODY[1.2]
  kHeader,           // HEADER
  kHeaderFields,     // HEADER.FIELDS (fields)
  kHeaderFieldsNot,  // HEADER.FIELDS.NOT (fields)
  kText,             // TEXT
  kMime,             // MIME (after a part number only)
};

struct Section {
  std::vector<uint32_t> part;       // 1.2.3; empty for the whole message
  SectionText text = SectionText::kNone;
  std::vector<std::string> fields;  // header field names, as sent
  bool operator==(const Section&) const = default;
};

// <offset.length> (RFC 9051 6.4.5); length is never 0.
struct Partial {
  uint64_t offset = 0;
  uint64_t length = 1;
  bool operator==(const Partial&) const = default;
};

enum class FetchAtt {
  kEnvelope,
  kFlags,
  kInternalDate,
  kRfc822Size,
  kBody,           // BODY without a section: BODYSTRUCTURE without extensions
  kBodyStructure,
  kUid,
  kModSeq,         // RFC 7162 3.1.4.1
  kBodySection,    // BODY[...] and BODY.PEEK[...]
  kBinary,         // BINARY[...] and BINARY.PEEK[...] (RFC 9051 6.4.5)
  kBinarySize,     // BINARY.SIZE[...]
  kRfc822,         // IMAP4rev1: BODY[]
  kRfc822Header,   // IMAP4rev1: BODY.PEEK[HEADER]
  kRfc822Text,     // IMAP4rev1: BODY[TEXT]
};

struct FetchItem {
  FetchAtt att = FetchAtt::kUid;
  Section section;                 // kBodySection, kBinary, kBinarySize
  bool peek = false;               // .PEEK: do not set \Seen
  std::optional<Partial> partial;  // kBodySection, kBinary
  bool operator==(const FetchItem&) const = default;
};

struct FetchArgs {
  SequenceSet set;
  // Macros are expanded (RFC 9051 6.4.5): ALL = FLAGS INTERNALDATE
  // RFC822.SIZE ENVELOPE, FAST = the first three, FULL = ALL and BODY.
  std::vector<FetchItem> items;
  std::optional<uint64_t> changed_since;  // RFC 7162 3.1.4.1 CHANGEDSINCE
  bool vanished = false;                  // RFC 7162 3.2.6, UID FETCH only
  bool operator==(const FetchArgs&) const = default;
};

enum class StoreMode { kReplace, kAdd, kRemove };  // FLAGS, +FLAGS, -FLAGS

struct StoreArgs {
  SequenceSet set;
  std::optional<uint64_t> unchanged_since;  // RFC 7162 3.1.3 UNCHANGEDSINCE
  StoreMode mode = StoreMode::kReplace;
  bool silent = false;                      // .SILENT
  std::vector<std::string> flags;           // system flags in canonical case
  bool operator==(const StoreArgs&) const = default;
};

struct SearchKey {
  enum class Kind {
    kAll, kAnswered, kDeleted, kDraft, kFlagged, kSeen,
    kUnanswered, kUndeleted, kUndraft, kUnflagged, kUnseen,
    kNew, kOld, kRecent, kUnrecent,           // IMAP4rev1 only (\Recent)
    kBcc, kBody, kCc, kFrom, kSubject, kText, kTo,  // text
    kHeader,                                  // header, text
    kKeyword, kUnkeyword,                     // text: the keyword
    kBefore, kOn, kSince, kSentBefore, kSentOn, kSentSince,  // date
    kLarger, kSmaller,                        // number
    kUid, kSequenceSet,                       // set
    kModSeq,                                  // RFC 7162 3.1.5: number, entry
    kNot,                                     // keys[0]
    kOr,                                      // keys[0], keys[1]
    kAnd,                                     // "(" keys ")"
  };
  Kind kind = Kind::kAll;
  std::string text;
  std::string header;      // kHeader: field name; kModSeq: entry name
  std::string entry_type;  // kModSeq: "priv", "shared", "all" (lower case)
  Date date;
  uint64_t number = 0;
  SequenceSet set;
  std::vector<SearchKey> keys;
  bool operator==(const SearchKey&) const = default;
};

// RFC 4731 3.1 ESEARCH RETURN options; SAVE is RFC 9051 6.4.4.1 (SEARCHRES).
enum class SearchReturn { kMin, kMax, kAll, kCount, kSave };

struct SearchArgs {
  bool has_return = false;               // RETURN (...) given: answer ESEARCH
  std::vector<SearchReturn> returns;     // "RETURN ()" means ALL
  std::optional<std::string> charset;    // as sent
  std::vector<SearchKey> keys;           // all of them must match
  bool operator==(const SearchArgs&) const = default;
};

// RFC 5256 3 sort-key; DISPLAYFROM/DISPLAYTO are RFC 5957.
enum class SortKey {
  kArrival, kCc, kDate, kFrom, kSize, kSubject, kTo, kDisplayFrom, kDisplayTo
};

struct SortCriterion {
  bool reverse = false;
  SortKey key = SortKey::kArrival;
  bool operator==(const SortCriterion&) const = default;
};

struct SortArgs {
  bool has_return = false;  // RFC 5267 ESORT
  std::vector<SearchReturn> returns;
  std::vector<SortCriterion> criteria;
  std::string charset;
  std::vector<SearchKey> keys;
  bool operator==(const SortArgs&) const = default;
};

struct ThreadArgs {
  std::string algorithm;  // upper case: ORDEREDSUBJECT, REFERENCES, ...
  std::string charset;
  std::vector<SearchKey> keys;
  bool operator==(const ThreadArgs&) const = default;
};

enum class StatusItem {
  kMessages, kUidNext, kUidValidity, kUnseen, kDeleted, kSize,  // RFC 9051
  kRecent,         // IMAP4rev1
  kHighestModSeq,  // RFC 7162 3.1.2.3
  kAppendLimit,    // RFC 7889 3
};

// RFC 5258 LIST-EXTENDED selection and return options; SPECIAL-USE is RFC
// 6154 5.1, STATUS is RFC 5819 (LIST-STATUS).
enum class ListSelect { kSubscribed, kRemote, kRecursiveMatch, kSpecialUse };
enum class ListReturn { kSubscribed, kChildren, kSpecialUse, kStatus };

struct ListArgs {
  bool has_select = false;          // "(...)" before the reference
  std::vector<ListSelect> select;
  std::string reference;            // decoded like a mailbox name
  std::vector<std::string> patterns;  // decoded; "*" and "%" kept
  bool pattern_list = false;        // "(" patterns ")" (RFC 5258)
  bool has_return = false;          // RETURN (...)
  std::vector<ListReturn> returns;
  std::vector<StatusItem> status;   // RETURN (STATUS (...))
  bool operator==(const ListArgs&) const = default;
};

struct LoginArgs {
  std::string user;
  std::string password;
  bool operator==(const LoginArgs&) const = default;
};

struct AuthenticateArgs {
  std::string mechanism;  // upper case
  // RFC 4959 SASL-IR: base64 text as sent, "=" for an empty response.
  std::optional<std::string> initial_response;
  bool operator==(const AuthenticateArgs&) const = default;
};

struct EnableArgs {
  std::vector<std::string> capabilities;  // upper case
  bool operator==(const EnableArgs&) const = default;
};

// Mailbox names are UTF-8 after decoding (modified UTF-7 unless the
// client enabled UTF-8); INBOX in any case is "INBOX" (RFC 9051 5.1).
struct MailboxArgs {  // DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT
  std::string mailbox;
  bool operator==(const MailboxArgs&) const = default;
};

// RFC 7162 3.2.5 QRESYNC select parameter.
struct QresyncParams {
  uint32_t uid_validity = 1;
  uint64_t mod_seq = 1;
  std::optional<SequenceSet> known_uids;
  struct SeqMatch {
    SequenceSet seqs;
    SequenceSet uids;
    bool operator==(const SeqMatch&) const = default;
  };
  std::optional<SeqMatch> seq_match;
  bool operator==(const QresyncParams&) const = default;
};

struct SelectArgs {  // SELECT, EXAMINE
  std::string mailbox;
  bool condstore = false;  // RFC 7162 3.1.8
  std::optional<QresyncParams> qresync;
  bool operator==(const SelectArgs&) const = default;
};

struct CreateArgs {
  std::string mailbox;
  // RFC 6154 3 CREATE-SPECIAL-USE: (USE (\Sent ...)), canonical case.
  std::optional<std::vector<std::string>> use;
  bool operator==(const CreateArgs&) const = default;
};

struct RenameArgs {
  std::string from;
  std::string to;
  bool operator==(const RenameArgs&) const = default;
};

struct StatusArgs {
  std::string mailbox;
  std::vector<StatusItem> items;
  bool operator==(const StatusArgs&) const = default;
};

struct AppendMessage {
  std::vector<std::string> flags;
  std::optional<DateTime> date;
  bool binary = false;  // ~{n} (RFC 9051 4.3.1)
  bool utf8 = false;    // UTF8 (~{n}) of RFC 6855 4
  // The message, unless its literal was streamed out (Literal::streamed):
  // then `data` is empty and `literal` indexes FramedCommand::literals.
  std::string data;
  uint64_t size = 0;
  std::optional<size_t> literal;
  bool operator==(const AppendMessage&) const = default;
};

struct AppendArgs {
  std::string mailbox;
  std::vector<AppendMessage> messages;  // more than one: MULTIAPPEND (RFC 3502)
  bool operator==(const AppendArgs&) const = default;
};

struct CopyArgs {  // COPY, MOVE (RFC 6851)
  SequenceSet set;
  std::string mailbox;
  bool operator==(const CopyArgs&) const = default;
};

struct UidExpungeArgs {  // RFC 4315 2.1
  SequenceSet set;
  bool operator==(const UidExpungeArgs&) const = default;
};

struct IdArgs {  // RFC 2971 3.1
  // nullopt for "ID NIL"; values nullopt for NIL.
  std::optional<std::vector<std::pair<std::string, std::optional<std::string>>>>
      params;
  bool operator==(const IdArgs&) const = default;
};

struct QuotaRootArgs {  // GETQUOTA (RFC 9208 4.2)
  std::string root;
  bool operator==(const QuotaRootArgs&) const = default;
};

struct SetQuotaArgs {  // RFC 9208 4.4
  std::string root;
  std::vector<std::pair<std::string, uint64_t>> limits;  // resource upper case
  bool operator==(const SetQuotaArgs&) const = default;
};

struct CompressArgs {  // RFC 4978 3
  std::string algorithm;  // upper case ("DEFLATE")
  bool operator==(const CompressArgs&) const = default;
};

enum class CommandName {
  kCapability, kNoop, kLogout,                              // any state
  kStartTls, kAuthenticate, kLogin,                         // not authenticated
  kEnable, kSelect, kExamine, kCreate, kDelete, kRename,    // authenticated
  kSubscribe, kUnsubscribe, kList, kLsub, kNamespace, kStatus, kAppend,
  kIdle, kId, kGetQuota, kGetQuotaRoot, kSetQuota, kCompress,
  kCheck, kClose, kUnselect, kExpunge, kSearch, kFetch,     // selected
  kStore, kCopy, kMove, kSort, kThread,
};

struct Command {
  std::string tag;
  CommandName name = CommandName::kNoop;
  // UID FETCH, STORE, COPY, MOVE, SEARCH, EXPUNGE, SORT, THREAD.
  bool uid = false;
  std::variant<std::monostate, LoginArgs, AuthenticateArgs, EnableArgs,
               MailboxArgs, SelectArgs, CreateArgs, RenameArgs, ListArgs,
               StatusArgs, AppendArgs, SearchArgs, FetchArgs, StoreArgs,
               CopyArgs, UidExpungeArgs, IdArgs, QuotaRootArgs, SetQuotaArgs,
               CompressArgs, SortArgs, ThreadArgs>
      args;

  template <class T>
  const T& get() const {
    return std::get<T>(args);
  }
  bool operator==(const Command&) const = default;
};

struct ParseOptions {
  // The client enabled UTF8=ACCEPT (RFC 6855 3) or IMAP4rev2 (RFC 9051
  // 5.1): mailbox names are UTF-8 rather than modified UTF-7, and APPEND
  // takes the UTF8 data form.
  bool utf8 = false;
  // Nesting of search keys ("(", NOT, OR), bounding the recursion.
  int max_depth = 32;
};

// The command's name as written on the wire ("UID FETCH" is name FETCH
// with uid set, so this gives "FETCH").
std::string_view CommandNameString(CommandName name);

// Parses a framed command. On failure the message is the text of a BAD
// response (with a response code in brackets when one applies); the tag to
// answer is framed.tag when ValidTag(framed.tag), else "*".
Result<Command> ParseCommand(const FramedCommand& framed,
                             const ParseOptions& options = {});

// The mailbox of an APPEND whose literal is still arriving (the reader's
// partial() command at kContinue or kLiteralData), so the session can
// stage the message in that folder before the command is complete;
// nullopt when the text so far is not "tag APPEND mailbox SP".
std::optional<std::string> AppendTarget(const FramedCommand& partial,
                                        const ParseOptions& options = {});

// True for the line that ends IDLE (RFC 2177 3: "DONE", any case).
bool IsIdleDone(std::string_view line);

}  // namespace tern::imap
