// The IMAP command parser (command.h): tag, command name and the arguments
// of every command but FETCH, STORE, SEARCH, SORT and THREAD, whose larger
// grammars are in command_fetch.cc and command_search.cc.
#include "imap/protocol/command.h"

#include <algorithm>
#include <utility>

#include "common/strings.h"
#include "imap/protocol/parser.h"
#include "imap/protocol/quote.h"

namespace tern::imap {
namespace {

struct NameEntry {
  std::string_view name;
  CommandName value;
};

constexpr NameEntry kNames[] = {
    {"CAPABILITY", CommandName::kCapability},
    {"NOOP", CommandName::kNoop},
    {"LOGOUT", CommandName::kLogout},
    {"STARTTLS", CommandName::kStartTls},
    {"AUTHENTICATE", CommandName::kAuthenticate},
    {"LOGIN", CommandName::kLogin},
    {"ENABLE", CommandName::kEnable},
    {"SELECT", CommandName::kSelect},
    {"EXAMINE", CommandName::kExamine},
    {"CREATE", CommandName::kCreate},
    {"DELETE", CommandName::kDelete},
    {"RENAME", CommandName::kRename},
    {"SUBSCRIBE", CommandName::kSubscribe},
    {"UNSUBSCRIBE", CommandName::kUnsubscribe},
    {"LIST", CommandName::kList},
    {"LSUB", CommandName::kLsub},
    {"NAMESPACE", CommandName::kNamespace},
    {"STATUS", CommandName::kStatus},
    {"APPEND", CommandName::kAppend},
    {"IDLE", CommandName::kIdle},
    {"ID", CommandName::kId},
    {"GETQUOTA", CommandName::kGetQuota},
    {"GETQUOTAROOT", CommandName::kGetQuotaRoot},
    {"SETQUOTA", CommandName::kSetQuota},
    {"COMPRESS", CommandName::kCompress},
    {"CHECK", CommandName::kCheck},
    {"CLOSE", CommandName::kClose},
    {"UNSELECT", CommandName::kUnselect},
    {"EXPUNGE", CommandName::kExpunge},
    {"SEARCH", CommandName::kSearch},
    {"FETCH", CommandName::kFetch},
    {"STORE", CommandName::kStore},
    {"COPY", CommandName::kCopy},
    {"MOVE", CommandName::kMove},
    {"SORT", CommandName::kSort},
    {"THREAD", CommandName::kThread},
};

struct StatusEntry {
  std::string_view name;
  StatusItem value;
};

constexpr StatusEntry kStatusItems[] = {
    {"MESSAGES", StatusItem::kMessages},
    {"UIDNEXT", StatusItem::kUidNext},
    {"UIDVALIDITY", StatusItem::kUidValidity},
    {"UNSEEN", StatusItem::kUnseen},
    {"DELETED", StatusItem::kDeleted},
    {"SIZE", StatusItem::kSize},
    {"RECENT", StatusItem::kRecent},
    {"HIGHESTMODSEQ", StatusItem::kHighestModSeq},
    {"APPENDLIMIT", StatusItem::kAppendLimit},
};

// "(" status-att *(SP status-att) ")"
bool StatusItems(Parser& p, std::vector<StatusItem>* out) {
  if (!p.Expect('(', "'(' to open the status items")) return false;
  do {
    std::string word = p.Word();
    auto it = std::find_if(std::begin(kStatusItems), std::end(kStatusItems),
                           [&](const StatusEntry& e) { return e.name == word; });
    if (it == std::end(kStatusItems)) {
      return p.Fail(word.empty() ? "Expected status item" : "Unknown status item");
    }
    out->push_back(it->value);
  } while (p.Take(' '));
  return p.Expect(')', "')' to close the status items");
}

bool ParseAuthenticate(Parser& p, AuthenticateArgs* out) {
  if (!p.Sp("AUTHENTICATE") || !p.Atom(&out->mechanism, "SASL mechanism")) {
    return false;
  }
  out->mechanism = Parser::Upper(out->mechanism);
  if (p.Take(' ')) {
    // RFC 4959 3: SASL-IR. The base64 is checked here so that junk never
    // reaches a mechanism; decoding is the exchange's.
    std::string resp;
    if (!p.Atom(&resp, "initial response")) return false;
    if (!IsSaslInitialResponse(resp)) {
      return p.Fail("Invalid base64 in the initial response");
    }
    out->initial_response = std::move(resp);
  }
  return p.End();
}

bool ParseLogin(Parser& p, LoginArgs* out) {
  return p.Sp("LOGIN") && p.Astring(&out->user, "user name") &&
         p.Sp("user name") && p.Astring(&out->password, "password") && p.End();
}

bool ParseEnable(Parser& p, EnableArgs* out) {
  // RFC 5161 3: ENABLE 1*(SP capability)
  if (!p.Sp("ENABLE")) return false;
  do {
    std::string cap;
    if (!p.Atom(&cap, "capability")) return false;
    out->capabilities.push_back(Parser::Upper(cap));
  } while (p.Take(' '));
  return p.End();
}

bool ParseQresync(Parser& p, QresyncParams* out) {
  // RFC 7162 3.2.5: QRESYNC (uidvalidity modseq [known-uids]
  //                           [(known-sequence-set known-uid-set)])
  if (!p.Sp("QRESYNC") || !p.Expect('(', "'(' after QRESYNC") ||
      !p.NzNumber(&out->uid_validity, "UIDVALIDITY") ||
      !p.Sp("UIDVALIDITY") || !p.NzNumber64(&out->mod_seq, "mod-sequence")) {
    return false;
  }
  if (p.Take(' ')) {
    if (p.Peek() != '(') {
      SequenceSet uids;
      if (!p.SeqSet(&uids, false)) return false;
      if (uids.saved) return p.Fail("\"$\" not allowed in known UIDs");
      out->known_uids = std::move(uids);
      if (!p.Take(' ')) return p.Expect(')', "')' to close QRESYNC");
    }
    QresyncParams::SeqMatch match;
    if (!p.Expect('(', "'(' to open the sequence match data") ||
        !p.SeqSet(&match.seqs, false) || !p.Sp("known sequence set") ||
        !p.SeqSet(&match.uids, false) ||
        !p.Expect(')', "')' to close the sequence match data")) {
      return false;
    }
    if (match.seqs.saved || match.uids.saved) {
      return p.Fail("\"$\" not allowed in sequence match data");
    }
    out->seq_match = std::move(match);
  }
  return p.Expect(')', "')' to close QRESYNC");
}

bool ParseSelect(Parser& p, SelectArgs* out) {
  if (!p.Sp("SELECT") || !p.Mailbox(&out->mailbox)) return false;
  if (p.Take(' ')) {
    // RFC 4466 2.1 select-params; RFC 7162 3.1.8 and 3.2.5.
    if (!p.Expect('(', "'(' to open the select parameters")) return false;
    do {
      std::string word = p.Word();
      if (word == "CONDSTORE") {
        out->condstore = true;
      } else if (word == "QRESYNC") {
        if (out->qresync) return p.Fail("QRESYNC given twice");
        QresyncParams q;
        if (!ParseQresync(p, &q)) return false;
        out->qresync = std::move(q);
      } else {
        return p.Fail(word.empty() ? "Expected select parameter"
                                   : "Unknown select parameter");
      }
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the select parameters")) return false;
  }
  return p.End();
}

bool ParseCreate(Parser& p, CreateArgs* out) {
  if (!p.Sp("CREATE") || !p.Mailbox(&out->mailbox)) return false;
  if (p.Take(' ')) {
    // RFC 4466 2.2 create-params; RFC 6154 3 USE (use-attrs).
    if (!p.Expect('(', "'(' to open the CREATE parameters")) return false;
    do {
      std::string word = p.Word();
      if (word != "USE") {
        return p.Fail(word.empty() ? "Expected CREATE parameter"
                                   : "Unknown CREATE parameter");
      }
      if (out->use) return p.Fail("USE given twice");
      std::vector<std::string> attrs;
      if (!p.Sp("USE") || !p.Expect('(', "'(' after USE")) return false;
      if (!p.Take(')')) {
        do {
          std::string attr;
          if (!p.Expect('\\', "special-use attribute") ||
              !p.Atom(&attr, "special-use attribute")) {
            return false;
          }
          attrs.push_back(CanonicalFlag("\\" + attr));
        } while (p.Take(' '));
        if (!p.Expect(')', "')' to close USE")) return false;
      }
      out->use = std::move(attrs);
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the CREATE parameters")) return false;
  }
  return p.End();
}

bool ParseMailboxOnly(Parser& p, std::string_view command, MailboxArgs* out) {
  return p.Sp(command) && p.Mailbox(&out->mailbox) && p.End();
}

bool ParseRename(Parser& p, RenameArgs* out) {
  return p.Sp("RENAME") && p.Mailbox(&out->from) && p.Sp("mailbox name") &&
         p.Mailbox(&out->to) && p.End();
}

bool ParseList(Parser& p, ListArgs* out) {
  if (!p.Sp("LIST")) return false;
  if (p.Peek() == '(') {
    // RFC 5258 3 list-select-opts.
    p.Take('(');
    out->has_select = true;
    if (!p.Take(')')) {
      do {
        std::string word = p.Word();
        if (word == "SUBSCRIBED") {
          out->select.push_back(ListSelect::kSubscribed);
        } else if (word == "REMOTE") {
          out->select.push_back(ListSelect::kRemote);
        } else if (word == "RECURSIVEMATCH") {
          out->select.push_back(ListSelect::kRecursiveMatch);
        } else if (word == "SPECIAL-USE") {
          out->select.push_back(ListSelect::kSpecialUse);
        } else {
          // RFC 5258 3: unknown selection options get BAD.
          return p.Fail(word.empty() ? "Expected selection option"
                                     : "Unknown LIST selection option");
        }
      } while (p.Take(' '));
      if (!p.Expect(')', "')' to close the selection options")) return false;
    }
    auto has = [&](ListSelect s) {
      return std::find(out->select.begin(), out->select.end(), s) !=
             out->select.end();
    };
    // RFC 5258 3.1: RECURSIVEMATCH needs an option that selects.
    if (has(ListSelect::kRecursiveMatch) && !has(ListSelect::kSubscribed) &&
        !has(ListSelect::kSpecialUse)) {
      return p.Fail("RECURSIVEMATCH without SUBSCRIBED");
    }
    if (!p.Sp("selection options")) return false;
  }
  if (!p.Mailbox(&out->reference) || !p.Sp("reference name")) return false;
  if (p.Take('(')) {
    out->pattern_list = true;
    do {
      std::string pattern;
      if (!p.ListMailbox(&pattern)) return false;
      out->patterns.push_back(std::move(pattern));
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the patterns")) return false;
  } else {
    std::string pattern;
    if (!p.ListMailbox(&pattern)) return false;
    out->patterns.push_back(std::move(pattern));
  }
  if (p.Take(' ')) {
    // RFC 5258 3 list-return-opts; RFC 5819 STATUS; RFC 6154 SPECIAL-USE.
    if (p.Word() != "RETURN") return p.Fail("Expected RETURN");
    if (!p.Sp("RETURN") || !p.Expect('(', "'(' after RETURN")) return false;
    out->has_return = true;
    if (!p.Take(')')) {
      do {
        std::string word = p.Word();
        if (word == "SUBSCRIBED") {
          out->returns.push_back(ListReturn::kSubscribed);
        } else if (word == "CHILDREN") {
          out->returns.push_back(ListReturn::kChildren);
        } else if (word == "SPECIAL-USE") {
          out->returns.push_back(ListReturn::kSpecialUse);
        } else if (word == "STATUS") {
          if (std::find(out->returns.begin(), out->returns.end(),
                        ListReturn::kStatus) != out->returns.end()) {
            return p.Fail("STATUS given twice");
          }
          out->returns.push_back(ListReturn::kStatus);
          if (!p.Sp("STATUS") || !StatusItems(p, &out->status)) return false;
        } else {
          return p.Fail(word.empty() ? "Expected return option"
                                     : "Unknown LIST return option");
        }
      } while (p.Take(' '));
      if (!p.Expect(')', "')' to close the return options")) return false;
    }
  }
  return p.End();
}

bool ParseLsub(Parser& p, ListArgs* out) {
  std::string pattern;
  if (!p.Sp("LSUB") || !p.Mailbox(&out->reference) ||
      !p.Sp("reference name") || !p.ListMailbox(&pattern)) {
    return false;
  }
  out->patterns.push_back(std::move(pattern));
  return p.End();
}

bool ParseStatus(Parser& p, StatusArgs* out) {
  return p.Sp("STATUS") && p.Mailbox(&out->mailbox) && p.Sp("mailbox name") &&
         StatusItems(p, &out->items) && p.End();
}

bool ParseAppend(Parser& p, AppendArgs* out) {
  // RFC 9051 6.3.12 append; RFC 3502 MULTIAPPEND repeats the message part;
  // RFC 6855 4 UTF8 (literal8).
  if (!p.Sp("APPEND") || !p.Mailbox(&out->mailbox) || !p.Sp("mailbox name")) {
    return false;
  }
  while (true) {
    AppendMessage msg;
    if (p.Peek() == '(') {
      if (!p.FlagList(&msg.flags) || !p.Sp("flags")) return false;
    }
    if (p.Peek() == '"') {
      DateTime dt;
      if (!p.QuotedDateTime(&dt) || !p.Sp("date-time")) return false;
      msg.date = dt;
    }
    bool utf8 = false;
    if (p.PeekWord("UTF8")) {
      if (!p.options().utf8) {
        return p.Fail("APPEND UTF8 needs ENABLE UTF8=ACCEPT");
      }
      p.Word();
      if (!p.Sp("UTF8") || !p.Expect('(', "'(' after UTF8")) return false;
      if (p.Peek() != '~') return p.Fail("Expected binary literal after UTF8 (");
      utf8 = true;
    }
    if (p.Peek() != '{' && p.Peek() != '~') {
      return p.Fail("Expected message literal");
    }
    const Literal* lit = nullptr;
    size_t index = 0;
    if (!p.LiteralString(&msg.data, true, true, &lit, &index)) return false;
    msg.binary = lit->binary;
    msg.utf8 = utf8;
    msg.size = lit->size;
    if (lit->streamed) msg.literal = index;
    if (utf8 && !p.Expect(')', "')' after the UTF8 literal")) return false;
    out->messages.push_back(std::move(msg));
    if (p.AtEnd()) return true;
    if (!p.Sp("message literal")) return false;
  }
}

bool ParseId(Parser& p, IdArgs* out) {
  // RFC 2971 4: "(" *(string SP nstring) ")" / nil; at most 30 pairs,
  // fields up to 30 octets, values up to 1024 (RFC 2971 3.3).
  if (!p.Sp("ID")) return false;
  if (p.PeekWord("NIL")) {
    p.Word();
    return p.End();
  }
  if (!p.Expect('(', "'(' or NIL after ID")) return false;
  std::vector<std::pair<std::string, std::optional<std::string>>> params;
  if (!p.Take(')')) {
    do {
      std::string field;
      std::optional<std::string> value;
      if (!p.String(&field, "ID field") || !p.Sp("ID field") ||
          !p.Nstring(&value, "ID value")) {
        return false;
      }
      if (field.size() > 30) return p.Fail("ID field longer than 30 octets");
      if (value && value->size() > 1024) {
        return p.Fail("ID value longer than 1024 octets");
      }
      params.emplace_back(std::move(field), std::move(value));
      if (params.size() > 30) return p.Fail("More than 30 ID fields");
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the ID list")) return false;
  }
  out->params = std::move(params);
  return p.End();
}

bool ParseSetQuota(Parser& p, SetQuotaArgs* out) {
  // RFC 9208 4.4: SETQUOTA root (resource limit ...)
  if (!p.Sp("SETQUOTA") || !p.Astring(&out->root, "quota root") ||
      !p.Sp("quota root") || !p.Expect('(', "'(' to open the quota limits")) {
    return false;
  }
  if (!p.Take(')')) {
    do {
      std::string resource;
      uint64_t limit = 0;
      if (!p.Atom(&resource, "quota resource") || !p.Sp("quota resource") ||
          !p.Number64(&limit, "quota limit")) {
        return false;
      }
      out->limits.emplace_back(Parser::Upper(resource), limit);
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the quota limits")) return false;
  }
  return p.End();
}

bool ParseCopy(Parser& p, std::string_view command, CopyArgs* out) {
  return p.Sp(command) && p.SeqSet(&out->set) && p.Sp("sequence set") &&
         p.Mailbox(&out->mailbox) && p.End();
}

}  // namespace

std::string_view CommandNameString(CommandName name) {
  for (const NameEntry& e : kNames) {
    if (e.value == name) return e.name;
  }
  return "";
}

bool IsIdleDone(std::string_view line) { return IEquals(line, "DONE"); }

std::optional<std::string> AppendTarget(const FramedCommand& partial,
                                        const ParseOptions& options) {
  if (partial.name != "APPEND") return std::nullopt;
  Parser p(partial, options);
  // The tag was framed by the reader; skip it and the command name.
  size_t sp = partial.text.find(' ');
  if (sp == std::string::npos) return std::nullopt;
  p.Rewind(sp + 1);
  std::string word;
  std::string mailbox;
  if (!p.Atom(&word, "command name") || !p.Sp("APPEND") || !p.Mailbox(&mailbox) ||
      !p.Sp("mailbox name")) {
    return std::nullopt;
  }
  return mailbox;
}

Result<Command> ParseCommand(const FramedCommand& framed,
                             const ParseOptions& options) {
  Parser p(framed, options);
  Command cmd;
  // RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">
  size_t start = p.pos();
  while (!p.AtEnd() && IsAstringChar(p.Peek()) && p.Peek() != '+') {
    cmd.tag += p.Peek();
    p.Take(p.Peek());
  }
  if (p.pos() == start) {
    return Err(p.AtEnd() ? "Empty command line" : "Invalid tag");
  }
  if (!p.Take(' ')) {
    return Err(p.AtEnd() ? "Missing command after tag"
                         : (p.Peek() == '+' ? "Invalid tag"
                                            : "Expected SP after tag"));
  }
  std::string word;
  if (!p.Atom(&word, "command name")) return Err(p.error());
  word = Parser::Upper(word);
  if (word == "UID") {
    // RFC 9051 6.4.9 UID; RFC 4315 2.1 UID EXPUNGE; RFC 5256 UID SORT/THREAD.
    cmd.uid = true;
    if (!p.Sp("UID") || !p.Atom(&word, "command after UID")) {
      return Err(p.error());
    }
    word = Parser::Upper(word);
    static constexpr std::string_view kUidCommands[] = {
        "FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT", "THREAD"};
    if (std::find(std::begin(kUidCommands), std::end(kUidCommands), word) ==
        std::end(kUidCommands)) {
      return Err("Unknown UID command");
    }
  }
  auto it = std::find_if(std::begin(kNames), std::end(kNames),
                         [&](const NameEntry& e) { return e.name == word; });
  if (it == std::end(kNames)) return Err("Unknown command");
  cmd.name = it->value;
  std::string_view name = it->name;

  bool ok = false;
  switch (cmd.name) {
    case CommandName::kCapability:
    case CommandName::kNoop:
    case CommandName::kLogout:
    case CommandName::kStartTls:
    case CommandName::kNamespace:
    case CommandName::kIdle:
    case CommandName::kCheck:
    case CommandName::kClose:
    case CommandName::kUnselect:
      ok = p.End();
      break;
    case CommandName::kExpunge:
      if (cmd.uid) {
        UidExpungeArgs a;
        ok = p.Sp("EXPUNGE") && p.SeqSet(&a.set) && p.End();
        cmd.args = std::move(a);
      } else {
        ok = p.End();
      }
      break;
    case CommandName::kAuthenticate: {
      AuthenticateArgs a;
      ok = ParseAuthenticate(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kLogin: {
      LoginArgs a;
      ok = ParseLogin(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kEnable: {
      EnableArgs a;
      ok = ParseEnable(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kSelect:
    case CommandName::kExamine: {
      SelectArgs a;
      ok = ParseSelect(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kCreate: {
      CreateArgs a;
      ok = ParseCreate(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kDelete:
    case CommandName::kSubscribe:
    case CommandName::kUnsubscribe:
    case CommandName::kGetQuotaRoot: {
      MailboxArgs a;
      ok = ParseMailboxOnly(p, name, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kRename: {
      RenameArgs a;
      ok = ParseRename(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kList: {
      ListArgs a;
      ok = ParseList(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kLsub: {
      ListArgs a;
      ok = ParseLsub(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kStatus: {
      StatusArgs a;
      ok = ParseStatus(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kAppend: {
      AppendArgs a;
      ok = ParseAppend(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kId: {
      IdArgs a;
      ok = ParseId(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kGetQuota: {
      QuotaRootArgs a;
      ok = p.Sp("GETQUOTA") && p.Astring(&a.root, "quota root") && p.End();
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kSetQuota: {
      SetQuotaArgs a;
      ok = ParseSetQuota(p, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kCompress: {
      CompressArgs a;
      ok = p.Sp("COMPRESS") && p.Atom(&a.algorithm, "compression algorithm") &&
           p.End();
      a.algorithm = Parser::Upper(a.algorithm);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kSearch: {
      SearchArgs a;
      ok = ParseSearch(p, &a) && p.End();
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kFetch: {
      FetchArgs a;
      ok = ParseFetch(p, cmd.uid, &a) && p.End();
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kStore: {
      StoreArgs a;
      ok = ParseStore(p, &a) && p.End();
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kCopy:
    case CommandName::kMove: {
      CopyArgs a;
      ok = ParseCopy(p, name, &a);
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kSort: {
      SortArgs a;
      ok = ParseSort(p, &a) && p.End();
      cmd.args = std::move(a);
      break;
    }
    case CommandName::kThread: {
      ThreadArgs a;
      ok = ParseThread(p, &a) && p.End();
      cmd.args = std::move(a);
      break;
    }
  }
  if (!ok) return Err(p.error().empty() ? "Invalid arguments" : p.error());
  if (!p.LiteralsDone()) return Err("Literal announced inside a quoted string");
  return cmd;
}

}  // namespace tern::imap
