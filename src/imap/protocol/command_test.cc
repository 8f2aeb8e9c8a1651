// Unit tests for the IMAP command parser: every command of RFC 9051 6 and
// the IMAP4rev1 forms (RFC 3501) clients still send, the extensions Tern
// offers (CONDSTORE/QRESYNC, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE,
// MULTIAPPEND, UTF8=ACCEPT, ESEARCH, SORT/THREAD, QUOTA, ID, ENABLE,
// COMPRESS, UIDPLUS), malformed input with its exact BAD text, and the
// date, modified UTF-7 and string output helpers.
#include "imap/protocol/command.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imap/protocol/datetime.h"
#include "imap/protocol/mutf7.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/reader.h"

namespace tern::imap {
namespace {

using Kind = SearchKey::Kind;

// Frames `wire` (CRLF added) as a connection would, saying "+" to every
// literal; exactly one command must come out.
FramedCommand Frame(std::string wire) {
  ReaderLimits limits;
  limits.literal_plus = true;
  CommandReader r(limits);
  wire += "\r\n";
  std::string_view in = wire;
  std::vector<FramedCommand> out;
  while (!in.empty()) {
    in.remove_prefix(r.Feed(in));
    switch (r.event()) {
      case ReaderEvent::kCommand:
        out.push_back(r.TakeCommand());
        break;
      case ReaderEvent::kContinue:
        r.AcceptLiteral();
        break;
      case ReaderEvent::kReject:
        ADD_FAILURE() << "reader refused: " << r.rejection().Response();
        return {};
      default:
        break;
    }
  }
  EXPECT_EQ(out.size(), 1u) << wire;
  return out.empty() ? FramedCommand() : out[0];
}

Command Ok(const std::string& wire, const ParseOptions& o = {}) {
  auto r = ParseCommand(Frame(wire), o);
  EXPECT_TRUE(r.has_value()) << wire << "\n  -> " << r.error().message;
  return r ? *r : Command();
}

std::string Bad(const std::string& wire, const ParseOptions& o = {}) {
  auto r = ParseCommand(Frame(wire), o);
  EXPECT_FALSE(r.has_value()) << wire;
  return r ? std::string("(parsed)") : r.error().message;
}

SequenceSet Set(std::vector<SeqRange> ranges) {
  SequenceSet s;
  s.ranges = std::move(ranges);
  return s;
}

SearchKey K(Kind kind) {
  SearchKey k;
  k.kind = kind;
  return k;
}

SearchKey KText(Kind kind, std::string text) {
  SearchKey k = K(kind);
  k.text = std::move(text);
  return k;
}

SearchKey KKeys(Kind kind, std::vector<SearchKey> keys) {
  SearchKey k = K(kind);
  k.keys = std::move(keys);
  return k;
}

FetchItem Item(FetchAtt att) {
  FetchItem i;
  i.att = att;
  return i;
}

// ---- tag and command name --------------------------------------------

TEST(ImapCommand, SimpleCommands) {
  struct Case {
    const char* wire;
    CommandName name;
  };
  const Case cases[] = {
      {"a CAPABILITY", CommandName::kCapability},
      {"a noop", CommandName::kNoop},
      {"a LOGOUT", CommandName::kLogout},
      {"a STARTTLS", CommandName::kStartTls},
      {"a NAMESPACE", CommandName::kNamespace},
      {"a IDLE", CommandName::kIdle},
      {"a CHECK", CommandName::kCheck},
      {"a CLOSE", CommandName::kClose},
      {"a UNSELECT", CommandName::kUnselect},
      {"a EXPUNGE", CommandName::kExpunge},
  };
  for (const Case& c : cases) {
    Command cmd = Ok(c.wire);
    EXPECT_EQ(cmd.tag, "a");
    EXPECT_EQ(cmd.name, c.name) << c.wire;
    EXPECT_FALSE(cmd.uid);
    EXPECT_TRUE(std::holds_alternative<std::monostate>(cmd.args));
  }
}

TEST(ImapCommand, TagIsKeptAsSent) {
  EXPECT_EQ(Ok("A001.x] NOOP").tag, "A001.x]");
}

TEST(ImapCommand, BadTagAndName) {
  EXPECT_EQ(Bad(" NOOP"), "Invalid tag");
  EXPECT_EQ(Bad("a+1 NOOP"), "Invalid tag");
  EXPECT_EQ(Bad("+ NOOP"), "Invalid tag");
  EXPECT_EQ(Bad("a*1 NOOP"), "Expected SP after tag");
  EXPECT_EQ(Bad("a"), "Missing command after tag");
  EXPECT_EQ(Bad("a  NOOP"), "Expected command name");
  EXPECT_EQ(Bad("a FROB"), "Unknown command");
  EXPECT_EQ(Bad("a NOOP x"), "Unexpected argument at the end of the command");
  EXPECT_EQ(Bad("a NOOP("), "Expected end of command");
  EXPECT_EQ(Bad("a UID"), "Missing argument after UID");
  EXPECT_EQ(Bad("a UID LOGIN"), "Unknown UID command");
  EXPECT_EQ(Bad("a UID APPEND x {1}\r\nm"), "Unknown UID command");
}

TEST(ImapCommand, CommandNameString) {
  EXPECT_EQ(CommandNameString(CommandName::kGetQuotaRoot), "GETQUOTAROOT");
  EXPECT_EQ(CommandNameString(CommandName::kStartTls), "STARTTLS");
  EXPECT_EQ(CommandNameString(CommandName::kFetch), "FETCH");
}

// ---- not authenticated -------------------------------------------------

TEST(ImapCommand, Login) {
  Command c = Ok("a LOGIN alice@example.test \"pa ss\\\"\\\\\"");
  ASSERT_EQ(c.name, CommandName::kLogin);
  EXPECT_EQ(c.get<LoginArgs>(),
            (LoginArgs{"alice@example.test", "pa ss\"\\"}));
  c = Ok("a LOGIN {5}\r\nalice {6+}\r\nse\r\nt\x01");
  EXPECT_EQ(c.get<LoginArgs>(), (LoginArgs{"alice", "se\r\nt\x01"}));
  // UTF-8 passwords come quoted or as literals.
  c = Ok("a login u \"p\xc3\xa4ss\"");
  EXPECT_EQ(c.get<LoginArgs>().password, "p\xc3\xa4ss");
}

TEST(ImapCommand, LoginMalformed) {
  EXPECT_EQ(Bad("a LOGIN"), "Missing argument after LOGIN");
  EXPECT_EQ(Bad("a LOGIN alice"), "Missing argument after user name");
  EXPECT_EQ(Bad("a LOGIN alice secret extra"),
            "Unexpected argument at the end of the command");
  EXPECT_EQ(Bad("a LOGIN \"alice secret"),
            "Missing '\"' at the end of a quoted string");
  EXPECT_EQ(Bad("a LOGIN \"a\\lice\" s"), "Invalid escape in a quoted string");
  EXPECT_EQ(Bad("a LOGIN p\xc3\xa4ss s"),
            "8-bit octets in user name need a quoted string or literal");
  EXPECT_EQ(Bad("a LOGIN (x) s"), "Expected user name");
  EXPECT_EQ(Bad("a LOGIN u {1}x"), "Literal not at the end of a line");
  std::string nul = "a LOGIN u {1}\r\n";
  nul += '\0';
  EXPECT_EQ(Bad(nul), "NUL octet in a literal (use a binary literal ~{n})");
  EXPECT_EQ(Bad("a LOGIN u ~{1}\r\nx"), "Binary literal not allowed here");
}

// A quoted string whose line ends in "{n}" must not let the literal's
// octets be read as command syntax.
TEST(ImapCommand, LiteralInsideQuotedStringIsRefused) {
  EXPECT_EQ(Bad("a LOGIN \"u {2}\r\n\" x"),
            "Literal announced inside a quoted string");
}

TEST(ImapCommand, AuthenticateWithSaslIr) {
  Command c = Ok("a AUTHENTICATE plain");
  EXPECT_EQ(c.get<AuthenticateArgs>(), (AuthenticateArgs{"PLAIN", std::nullopt}));
  // RFC 4959 3.
  c = Ok("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==");
  EXPECT_EQ(c.get<AuthenticateArgs>().initial_response, "AGFsaWNlAHNlY3JldA==");
  c = Ok("a AUTHENTICATE EXTERNAL =");
  EXPECT_EQ(c.get<AuthenticateArgs>().initial_response, "=");
  c = Ok("a AUTHENTICATE SCRAM-SHA-256 biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlx");
  EXPECT_EQ(c.get<AuthenticateArgs>().mechanism, "SCRAM-SHA-256");
}

TEST(ImapCommand, AuthenticateMalformed) {
  EXPECT_EQ(Bad("a AUTHENTICATE"), "Missing argument after AUTHENTICATE");
  EXPECT_EQ(Bad("a AUTHENTICATE PLAIN abc"),
            "Invalid base64 in the initial response");
  EXPECT_EQ(Bad("a AUTHENTICATE PLAIN a=bc"),
            "Invalid base64 in the initial response");
  EXPECT_EQ(Bad("a AUTHENTICATE PLAIN ===="),
            "Invalid base64 in the initial response");
  EXPECT_EQ(Bad("a AUTHENTICATE PLAIN AAAA AAAA"),
            "Unexpected argument at the end of the command");
  EXPECT_EQ(Bad("a AUTHENTICATE \"PLAIN\""), "Expected SASL mechanism");
}

// ---- authenticated ------------------------------------------------------

TEST(ImapCommand, Enable) {
  Command c = Ok("a ENABLE imap4rev2 CONDSTORE UTF8=ACCEPT");
  EXPECT_EQ(c.get<EnableArgs>().capabilities,
            (std::vector<std::string>{"IMAP4REV2", "CONDSTORE", "UTF8=ACCEPT"}));
  EXPECT_EQ(Bad("a ENABLE"), "Missing argument after ENABLE");
  EXPECT_EQ(Bad("a ENABLE \"x\""), "Expected capability");
}

TEST(ImapCommand, SelectAndExamine) {
  Command c = Ok("a SELECT inbox");
  EXPECT_EQ(c.name, CommandName::kSelect);
  EXPECT_EQ(c.get<SelectArgs>(), (SelectArgs{"INBOX"}));
  c = Ok("a EXAMINE \"Sent Items\"");
  EXPECT_EQ(c.name, CommandName::kExamine);
  EXPECT_EQ(c.get<SelectArgs>().mailbox, "Sent Items");
  // RFC 7162 3.1.8.
  c = Ok("a SELECT INBOX (CONDSTORE)");
  EXPECT_TRUE(c.get<SelectArgs>().condstore);
  EXPECT_FALSE(c.get<SelectArgs>().qresync);
}

TEST(ImapCommand, SelectQresync) {
  // RFC 7162 3.2.5.1 example.
  Command c = Ok("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 "
                 "41,43:211,214:541))");
  const SelectArgs& a = c.get<SelectArgs>();
  ASSERT_TRUE(a.qresync);
  EXPECT_EQ(a.qresync->uid_validity, 67890007u);
  EXPECT_EQ(a.qresync->mod_seq, 20050715194045000u);
  EXPECT_EQ(a.qresync->known_uids, Set({{41, 41}, {43, 211}, {214, 541}}));
  EXPECT_FALSE(a.qresync->seq_match);

  c = Ok("B04 SELECT INBOX (CONDSTORE QRESYNC (67890007 90060115194045000 "
         "1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,"
         "29976,29979,29982,29985,29988,29991,29994,29997)))");
  const SelectArgs& b = c.get<SelectArgs>();
  EXPECT_TRUE(b.condstore);
  ASSERT_TRUE(b.qresync && b.qresync->seq_match);
  EXPECT_EQ(b.qresync->known_uids, Set({{1, 29997}}));
  EXPECT_EQ(b.qresync->seq_match->seqs.ranges.size(), 4u);
  EXPECT_EQ(b.qresync->seq_match->uids.ranges.size(), 13u);

  // Sequence match data without known UIDs.
  c = Ok("a SELECT x (QRESYNC (1 2 (1:2 5:6)))");
  EXPECT_FALSE(c.get<SelectArgs>().qresync->known_uids);
  EXPECT_TRUE(c.get<SelectArgs>().qresync->seq_match);
  c = Ok("a SELECT x (QRESYNC (1 2))");
  EXPECT_TRUE(c.get<SelectArgs>().qresync);
}

TEST(ImapCommand, SelectMalformed) {
  EXPECT_EQ(Bad("a SELECT"), "Missing argument after SELECT");
  EXPECT_EQ(Bad("a SELECT INBOX ()"), "Expected select parameter");
  EXPECT_EQ(Bad("a SELECT INBOX (FOO)"), "Unknown select parameter");
  EXPECT_EQ(Bad("a SELECT INBOX CONDSTORE"),
            "Expected '(' to open the select parameters");
  EXPECT_EQ(Bad("a SELECT INBOX (CONDSTORE"),
            "Expected ')' to close the select parameters");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (0 2))"), "Zero is not allowed (UIDVALIDITY)");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (1 0))"),
            "Zero is not allowed (mod-sequence)");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (1 2 1:*))"), "\"*\" not allowed in this set");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (1 2 $))"),
            "\"$\" not allowed in known UIDs");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (1 2 1:5 (1 2) 3))"),
            "Expected ')' to close QRESYNC");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (1 2) QRESYNC (1 2))"),
            "QRESYNC given twice");
  EXPECT_EQ(Bad("a SELECT x (QRESYNC (4294967296 2))"),
            "Number too large (UIDVALIDITY)");
}

TEST(ImapCommand, Create) {
  Command c = Ok("a CREATE Archive/2024");
  EXPECT_EQ(c.get<CreateArgs>(), (CreateArgs{"Archive/2024", std::nullopt}));
  // RFC 6154 3 / 5.3.
  c = Ok("a CREATE MySpecialTrash (USE (\\trash \\Junk))");
  EXPECT_EQ(c.get<CreateArgs>().use,
            (std::vector<std::string>{"\\Trash", "\\Junk"}));
  c = Ok("a CREATE x (USE ())");
  EXPECT_EQ(c.get<CreateArgs>().use, std::vector<std::string>());
  EXPECT_EQ(Bad("a CREATE x (FOO)"), "Unknown CREATE parameter");
  EXPECT_EQ(Bad("a CREATE x (USE (Trash))"),
            "Expected special-use attribute");
  EXPECT_EQ(Bad("a CREATE x (USE (\\Trash) USE (\\Sent))"), "USE given twice");
  EXPECT_EQ(Bad("a CREATE x (USE (\\Trash)"),
            "Expected ')' to close the CREATE parameters");
}

TEST(ImapCommand, DeleteRenameSubscribe) {
  EXPECT_EQ(Ok("a DELETE foo").get<MailboxArgs>().mailbox, "foo");
  Command c = Ok("a RENAME foo \"bar baz\"");
  EXPECT_EQ(c.get<RenameArgs>(), (RenameArgs{"foo", "bar baz"}));
  c = Ok("a SUBSCRIBE INBOX.x");
  EXPECT_EQ(c.name, CommandName::kSubscribe);
  EXPECT_EQ(c.get<MailboxArgs>().mailbox, "INBOX.x");
  c = Ok("a UNSUBSCRIBE {3}\r\nabc");
  EXPECT_EQ(c.name, CommandName::kUnsubscribe);
  EXPECT_EQ(c.get<MailboxArgs>().mailbox, "abc");
  EXPECT_EQ(Bad("a RENAME foo"), "Missing argument after mailbox name");
  EXPECT_EQ(Bad("a DELETE"), "Missing argument after DELETE");
}

// RFC 9051 5.1: INBOX is case-insensitive, other names are not.
TEST(ImapCommand, InboxInAnyCase) {
  EXPECT_EQ(Ok("a SELECT iNbOx").get<SelectArgs>().mailbox, "INBOX");
  EXPECT_EQ(Ok("a SELECT \"inbox\"").get<SelectArgs>().mailbox, "INBOX");
  EXPECT_EQ(Ok("a SELECT Inboxes").get<SelectArgs>().mailbox, "Inboxes");
}

// RFC 3501 5.1.3 for IMAP4rev1 clients; UTF-8 once enabled.
TEST(ImapCommand, MailboxNameEncoding) {
  EXPECT_EQ(Ok("a SELECT &ZeVnLIqe-").get<SelectArgs>().mailbox,
            "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
  EXPECT_EQ(Ok("a SELECT Tom&-Jerry").get<SelectArgs>().mailbox, "Tom&Jerry");
  EXPECT_EQ(Bad("a SELECT \"Tom&Jerry\""),
            "Mailbox name is not valid modified UTF-7");
  EXPECT_EQ(Bad("a SELECT \"caf\xc3\xa9\""),
            "Mailbox name is not valid modified UTF-7");
  // Characters of two UTF-8 octets (U+0080..U+07FF).
  EXPECT_EQ(Ok("a SELECT caf&AOk-").get<SelectArgs>().mailbox, "caf\xc3\xa9");
  EXPECT_EQ(Ok("a SELECT &BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-")
                .get<SelectArgs>()
                .mailbox,
            "\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb"
            "\xd0\xb5\xd0\xbd\xd0\xbd\xd1\x8b\xd0\xb5");
  ParseOptions utf8;
  utf8.utf8 = true;
  EXPECT_EQ(Ok("a SELECT \"caf\xc3\xa9\"", utf8).get<SelectArgs>().mailbox,
            "caf\xc3\xa9");
  EXPECT_EQ(Ok("a SELECT Tom&Jerry", utf8).get<SelectArgs>().mailbox,
            "Tom&Jerry");
  EXPECT_EQ(Bad("a SELECT \"caf\xe9\"", utf8), "Mailbox name is not valid UTF-8");
}

TEST(ImapCommand, List) {
  Command c = Ok("a LIST \"\" *");
  const ListArgs& a = c.get<ListArgs>();
  EXPECT_FALSE(a.has_select);
  EXPECT_EQ(a.reference, "");
  EXPECT_EQ(a.patterns, (std::vector<std::string>{"*"}));
  EXPECT_FALSE(a.has_return);
  c = Ok("a LIST ~/Mail/ %");
  EXPECT_EQ(c.get<ListArgs>().reference, "~/Mail/");
  EXPECT_EQ(c.get<ListArgs>().patterns, (std::vector<std::string>{"%"}));
  c = Ok("a LIST \"\" \"Sent Items/%\"");
  EXPECT_EQ(c.get<ListArgs>().patterns[0], "Sent Items/%");
  c = Ok("a LIST \"\" Archive/*]");
  EXPECT_EQ(c.get<ListArgs>().patterns[0], "Archive/*]");
}

// RFC 5258 (LIST-EXTENDED), RFC 5819 (LIST-STATUS), RFC 6154 (SPECIAL-USE).
TEST(ImapCommand, ListExtended) {
  Command c = Ok("A01 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"Other/*\") "
                 "RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))");
  const ListArgs& a = c.get<ListArgs>();
  EXPECT_TRUE(a.has_select);
  EXPECT_EQ(a.select, (std::vector<ListSelect>{ListSelect::kSubscribed,
                                               ListSelect::kRecursiveMatch}));
  EXPECT_TRUE(a.pattern_list);
  EXPECT_EQ(a.patterns, (std::vector<std::string>{"%", "Other/*"}));
  EXPECT_TRUE(a.has_return);
  EXPECT_EQ(a.returns, (std::vector<ListReturn>{ListReturn::kChildren,
                                                ListReturn::kSpecialUse,
                                                ListReturn::kStatus}));
  EXPECT_EQ(a.status, (std::vector<StatusItem>{StatusItem::kMessages,
                                               StatusItem::kUnseen,
                                               StatusItem::kSize}));
  c = Ok("a LIST () \"\" % RETURN ()");
  EXPECT_TRUE(c.get<ListArgs>().has_select);
  EXPECT_TRUE(c.get<ListArgs>().select.empty());
  EXPECT_TRUE(c.get<ListArgs>().has_return);
  c = Ok("a LIST (SPECIAL-USE REMOTE) \"\" * RETURN (SUBSCRIBED)");
  EXPECT_EQ(c.get<ListArgs>().select,
            (std::vector<ListSelect>{ListSelect::kSpecialUse, ListSelect::kRemote}));
  EXPECT_EQ(c.get<ListArgs>().returns,
            (std::vector<ListReturn>{ListReturn::kSubscribed}));
}

TEST(ImapCommand, ListMalformed) {
  EXPECT_EQ(Bad("a LIST"), "Missing argument after LIST");
  EXPECT_EQ(Bad("a LIST \"\""), "Missing argument after reference name");
  EXPECT_EQ(Bad("a LIST (FOO) \"\" *"), "Unknown LIST selection option");
  EXPECT_EQ(Bad("a LIST (RECURSIVEMATCH) \"\" *"),
            "RECURSIVEMATCH without SUBSCRIBED");
  EXPECT_EQ(Bad("a LIST \"\" * FOO (CHILDREN)"), "Expected RETURN");
  EXPECT_EQ(Bad("a LIST \"\" * RETURN (FOO)"), "Unknown LIST return option");
  EXPECT_EQ(Bad("a LIST \"\" * RETURN (STATUS (MESSAGES) STATUS (UNSEEN))"),
            "STATUS given twice");
  EXPECT_EQ(Bad("a LIST \"\" * RETURN (STATUS (FOO))"), "Unknown status item");
  EXPECT_EQ(Bad("a LIST \"\" (% *"), "Expected ')' to close the patterns");
  EXPECT_EQ(Bad("a LIST \"\" ("), "Expected mailbox pattern");
}

TEST(ImapCommand, Lsub) {
  Command c = Ok("a LSUB \"#news.\" comp.mail.*");
  EXPECT_EQ(c.name, CommandName::kLsub);
  EXPECT_EQ(c.get<ListArgs>().reference, "#news.");
  EXPECT_EQ(c.get<ListArgs>().patterns,
            (std::vector<std::string>{"comp.mail.*"}));
  EXPECT_EQ(Bad("a LSUB \"\" (*)"), "Expected mailbox pattern");
}

TEST(ImapCommand, Namespace) {
  EXPECT_EQ(Ok("a NAMESPACE").name, CommandName::kNamespace);
}

TEST(ImapCommand, Status) {
  Command c = Ok("A042 STATUS blurdybloop (UIDNEXT MESSAGES uidvalidity UNSEEN "
                 "DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT)");
  EXPECT_EQ(c.get<StatusArgs>().mailbox, "blurdybloop");
  EXPECT_EQ(c.get<StatusArgs>().items,
            (std::vector<StatusItem>{
                StatusItem::kUidNext, StatusItem::kMessages,
                StatusItem::kUidValidity, StatusItem::kUnseen,
                StatusItem::kDeleted, StatusItem::kSize, StatusItem::kRecent,
                StatusItem::kHighestModSeq, StatusItem::kAppendLimit}));
  EXPECT_EQ(Bad("a STATUS x ()"), "Expected status item");
  EXPECT_EQ(Bad("a STATUS x (MESSAGES FOO)"), "Unknown status item");
  EXPECT_EQ(Bad("a STATUS x MESSAGES"), "Expected '(' to open the status items");
  EXPECT_EQ(Bad("a STATUS x (MESSAGES"), "Expected ')' to close the status items");
  EXPECT_EQ(Bad("a STATUS x"), "Missing argument after mailbox name");
}

TEST(ImapCommand, Append) {
  Command c = Ok("A003 APPEND saved-messages (\\Seen $Forwarded) "
                 "\"05-Jul-1996 02:44:25 -0700\" {11}\r\nHello World");
  const AppendArgs& a = c.get<AppendArgs>();
  EXPECT_EQ(a.mailbox, "saved-messages");
  ASSERT_EQ(a.messages.size(), 1u);
  const AppendMessage& m = a.messages[0];
  EXPECT_EQ(m.flags, (std::vector<std::string>{"\\Seen", "$Forwarded"}));
  ASSERT_TRUE(m.date);
  EXPECT_EQ(m.date->date, (Date{1996, 7, 5}));
  EXPECT_EQ(m.date->hour, 2);
  EXPECT_EQ(m.date->zone_minutes, -420);
  EXPECT_EQ(m.data, "Hello World");
  EXPECT_EQ(m.size, 11u);
  EXPECT_FALSE(m.binary);
  EXPECT_FALSE(m.literal);

  c = Ok("a APPEND INBOX {3+}\r\nabc");
  EXPECT_TRUE(c.get<AppendArgs>().messages[0].flags.empty());
  EXPECT_FALSE(c.get<AppendArgs>().messages[0].date);
  c = Ok("a APPEND INBOX () \" 5-Jul-1996 02:44:25 +0000\" {0}\r\n");
  EXPECT_EQ(c.get<AppendArgs>().messages[0].date->date.day, 5);
  EXPECT_EQ(c.get<AppendArgs>().messages[0].data, "");
}

// RFC 9051 4.3.1: a binary literal may carry NUL.
TEST(ImapCommand, AppendBinary) {
  std::string wire = "a APPEND INBOX ~{3}\r\n";
  wire += std::string("a\0b", 3);
  Command c = Ok(wire);
  EXPECT_TRUE(c.get<AppendArgs>().messages[0].binary);
  EXPECT_EQ(c.get<AppendArgs>().messages[0].data, std::string("a\0b", 3));
  std::string nul = "a APPEND INBOX {3}\r\n";
  nul += std::string("a\0b", 3);
  EXPECT_EQ(Bad(nul), "NUL octet in a literal (use a binary literal ~{n})");
}

// RFC 3502 MULTIAPPEND.
TEST(ImapCommand, MultiAppend) {
  Command c = Ok("A003 APPEND saved-messages (\\Seen) {3}\r\nabc "
                 "(\\Draft) \"05-Jul-1996 02:44:25 -0700\" {2+}\r\nde {1}\r\nf");
  const AppendArgs& a = c.get<AppendArgs>();
  ASSERT_EQ(a.messages.size(), 3u);
  EXPECT_EQ(a.messages[0].data, "abc");
  EXPECT_EQ(a.messages[1].flags, (std::vector<std::string>{"\\Draft"}));
  EXPECT_TRUE(a.messages[1].date);
  EXPECT_EQ(a.messages[1].data, "de");
  EXPECT_EQ(a.messages[2].data, "f");
}

// RFC 6855 4: APPEND UTF8 (~{n}) after ENABLE UTF8=ACCEPT.
TEST(ImapCommand, AppendUtf8) {
  ParseOptions utf8;
  utf8.utf8 = true;
  Command c = Ok("a APPEND INBOX UTF8 (~{2}\r\nhi)", utf8);
  EXPECT_TRUE(c.get<AppendArgs>().messages[0].utf8);
  EXPECT_TRUE(c.get<AppendArgs>().messages[0].binary);
  EXPECT_EQ(c.get<AppendArgs>().messages[0].data, "hi");
  EXPECT_EQ(Bad("a APPEND INBOX UTF8 (~{2}\r\nhi)"),
            "APPEND UTF8 needs ENABLE UTF8=ACCEPT");
  EXPECT_EQ(Bad("a APPEND INBOX UTF8 ({2}\r\nhi)", utf8),
            "Expected binary literal after UTF8 (");
  EXPECT_EQ(Bad("a APPEND INBOX UTF8 (~{2}\r\nhi", utf8),
            "Expected ')' after the UTF8 literal");
}

// Literals over ReaderLimits::max_literal arrive streamed: the command
// names the literal instead of holding its octets.
TEST(ImapCommand, AppendStreamed) {
  ReaderLimits limits;
  limits.max_literal = 4;
  CommandReader r(limits);
  std::string wire = "a APPEND INBOX {10}\r\n0123456789\r\n";
  std::string_view in = wire;
  FramedCommand framed;
  while (!in.empty()) {
    in.remove_prefix(r.Feed(in));
    if (r.event() == ReaderEvent::kContinue) r.AcceptLiteral();
    if (r.event() == ReaderEvent::kCommand) framed = r.TakeCommand();
  }
  auto c = ParseCommand(framed);
  ASSERT_TRUE(c) << c.error().message;
  const AppendMessage& m = c->get<AppendArgs>().messages[0];
  EXPECT_EQ(m.data, "");
  EXPECT_EQ(m.size, 10u);
  EXPECT_EQ(m.literal, 0u);
  // A streamed literal anywhere else is refused.
  CommandReader r2(limits);
  wire = "a APPEND {10}\r\n0123456789 {1}\r\nx\r\n";
  in = wire;
  while (!in.empty()) {
    in.remove_prefix(r2.Feed(in));
    if (r2.event() == ReaderEvent::kContinue) r2.AcceptLiteral();
    if (r2.event() == ReaderEvent::kCommand) framed = r2.TakeCommand();
  }
  c = ParseCommand(framed);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "Literal too large");
}

TEST(ImapCommand, AppendMalformed) {
  EXPECT_EQ(Bad("a APPEND INBOX"), "Missing argument after mailbox name");
  EXPECT_EQ(Bad("a APPEND INBOX \"hello\""), "Invalid date-time");
  EXPECT_EQ(Bad("a APPEND INBOX hello"), "Expected message literal");
  EXPECT_EQ(Bad("a APPEND INBOX (\\Seen {1}\r\nx"), "Expected flag");
  EXPECT_EQ(Bad("a APPEND INBOX (\\Seen)"), "Missing argument after flags");
  EXPECT_EQ(Bad("a APPEND INBOX \"32-Jul-1996 02:44:25 -0700\" {1}\r\nx"),
            "Invalid day in date");
  EXPECT_EQ(Bad("a APPEND INBOX {1}\r\nx  {1}\r\ny"), "Expected message literal");
  EXPECT_EQ(Bad("a APPEND INBOX {1}\r\nxy"), "Expected SP after message literal");
}

TEST(ImapCommand, Idle) { EXPECT_EQ(Ok("a IDLE").name, CommandName::kIdle); }

TEST(ImapCommand, IdleDone) {
  EXPECT_TRUE(IsIdleDone("DONE"));
  EXPECT_TRUE(IsIdleDone("done"));
  EXPECT_FALSE(IsIdleDone("DONE "));
  EXPECT_FALSE(IsIdleDone("a DONE"));
}

// RFC 2971.
TEST(ImapCommand, Id) {
  Command c = Ok("a ID (\"name\" \"sodr\" \"version\" \"19.34\" \"os\" NIL)");
  const IdArgs& a = c.get<IdArgs>();
  ASSERT_TRUE(a.params);
  ASSERT_EQ(a.params->size(), 3u);
  EXPECT_EQ((*a.params)[0].first, "name");
  EXPECT_EQ((*a.params)[0].second, "sodr");
  EXPECT_EQ((*a.params)[2].second, std::nullopt);
  EXPECT_FALSE(Ok("a ID NIL").get<IdArgs>().params);
  EXPECT_TRUE(Ok("a ID ()").get<IdArgs>().params->empty());
  EXPECT_EQ(Bad("a ID"), "Missing argument after ID");
  EXPECT_EQ(Bad("a ID (name \"x\")"),
            "Expected ID field (a quoted string or literal)");
  EXPECT_EQ(Bad("a ID (\"name\")"), "Expected SP after ID field");
  EXPECT_EQ(Bad("a ID (\"" + std::string(31, 'f') + "\" NIL)"),
            "ID field longer than 30 octets");
  EXPECT_EQ(Bad("a ID (\"f\" \"" + std::string(1025, 'v') + "\")"),
            "ID value longer than 1024 octets");
  std::string many = "a ID (";
  for (int i = 0; i < 31; ++i) many += (i ? " " : "") + std::string("\"f\" NIL");
  EXPECT_EQ(Bad(many + ")"), "More than 30 ID fields");
}

// RFC 9208.
TEST(ImapCommand, Quota) {
  Command c = Ok("a GETQUOTA \"\"");
  EXPECT_EQ(c.name, CommandName::kGetQuota);
  EXPECT_EQ(c.get<QuotaRootArgs>().root, "");
  c = Ok("a GETQUOTAROOT INBOX");
  EXPECT_EQ(c.name, CommandName::kGetQuotaRoot);
  EXPECT_EQ(c.get<MailboxArgs>().mailbox, "INBOX");
  c = Ok("a SETQUOTA \"\" (storage 512 MESSAGE 1000)");
  EXPECT_EQ(c.get<SetQuotaArgs>().limits,
            (std::vector<std::pair<std::string, uint64_t>>{{"STORAGE", 512},
                                                          {"MESSAGE", 1000}}));
  EXPECT_TRUE(Ok("a SETQUOTA x ()").get<SetQuotaArgs>().limits.empty());
  EXPECT_EQ(Bad("a SETQUOTA x (STORAGE)"), "Expected SP after quota resource");
  EXPECT_EQ(Bad("a SETQUOTA x (STORAGE -1)"), "Expected quota limit");
  EXPECT_EQ(Bad("a SETQUOTA x STORAGE 1"), "Expected '(' to open the quota limits");
}

// RFC 4978.
TEST(ImapCommand, Compress) {
  EXPECT_EQ(Ok("a COMPRESS deflate").get<CompressArgs>().algorithm, "DEFLATE");
  EXPECT_EQ(Bad("a COMPRESS"), "Missing argument after COMPRESS");
  EXPECT_EQ(Bad("a COMPRESS DEFLATE X"),
            "Unexpected argument at the end of the command");
}

// ---- selected: FETCH ---------------------------------------------------

TEST(ImapCommand, FetchMacros) {
  // RFC 9051 6.4.5.
  Command c = Ok("a FETCH 1:* ALL");
  EXPECT_EQ(c.get<FetchArgs>().set, Set({{1, kStar}}));
  EXPECT_EQ(c.get<FetchArgs>().items,
            (std::vector<FetchItem>{Item(FetchAtt::kFlags),
                                    Item(FetchAtt::kInternalDate),
                                    Item(FetchAtt::kRfc822Size),
                                    Item(FetchAtt::kEnvelope)}));
  c = Ok("a FETCH 1 fast");
  EXPECT_EQ(c.get<FetchArgs>().items.size(), 3u);
  c = Ok("a FETCH 1 FULL");
  EXPECT_EQ(c.get<FetchArgs>().items.size(), 5u);
  EXPECT_EQ(c.get<FetchArgs>().items.back(), Item(FetchAtt::kBody));
  EXPECT_EQ(Bad("a FETCH 1 (ALL)"), "Unknown fetch attribute");
}

TEST(ImapCommand, FetchSimpleAttributes) {
  Command c = Ok("a FETCH 2,4:6 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE "
                 "BODYSTRUCTURE BODY MODSEQ RFC822 RFC822.HEADER RFC822.TEXT)");
  EXPECT_EQ(c.get<FetchArgs>().set, Set({{2, 2}, {4, 6}}));
  std::vector<FetchAtt> atts;
  for (const FetchItem& i : c.get<FetchArgs>().items) atts.push_back(i.att);
  EXPECT_EQ(atts, (std::vector<FetchAtt>{
                      FetchAtt::kUid, FetchAtt::kFlags, FetchAtt::kInternalDate,
                      FetchAtt::kRfc822Size, FetchAtt::kEnvelope,
                      FetchAtt::kBodyStructure, FetchAtt::kBody,
                      FetchAtt::kModSeq, FetchAtt::kRfc822,
                      FetchAtt::kRfc822Header, FetchAtt::kRfc822Text}));
  // One attribute without parentheses.
  EXPECT_EQ(Ok("a FETCH 1 uid").get<FetchArgs>().items,
            (std::vector<FetchItem>{Item(FetchAtt::kUid)}));
}

TEST(ImapCommand, FetchBodySections) {
  Command c = Ok("a FETCH 1 (BODY[] BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> "
                 "BODY[1.2.MIME] BODY[3.TEXT]<10.5> BODY[HEADER] "
                 "body.peek[header.fields.not (\"X-Spam\" {4}\r\nDate)] "
                 "BODY[2.HEADER] BODY[4.1])");
  const auto& items = c.get<FetchArgs>().items;
  ASSERT_EQ(items.size(), 8u);
  FetchItem whole = Item(FetchAtt::kBodySection);
  EXPECT_EQ(items[0], whole);
  EXPECT_EQ(items[1].att, FetchAtt::kBodySection);
  EXPECT_TRUE(items[1].peek);
  EXPECT_EQ(items[1].section.text, SectionText::kHeaderFields);
  EXPECT_EQ(items[1].section.fields, (std::vector<std::string>{"From", "Subject"}));
  EXPECT_EQ(items[1].partial, (Partial{0, 100}));
  EXPECT_EQ(items[2].section.part, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(items[2].section.text, SectionText::kMime);
  EXPECT_FALSE(items[2].peek);
  EXPECT_EQ(items[3].section.part, (std::vector<uint32_t>{3}));
  EXPECT_EQ(items[3].section.text, SectionText::kText);
  EXPECT_EQ(items[3].partial, (Partial{10, 5}));
  EXPECT_EQ(items[4].section.text, SectionText::kHeader);
  EXPECT_TRUE(items[5].peek);
  EXPECT_EQ(items[5].section.text, SectionText::kHeaderFieldsNot);
  EXPECT_EQ(items[5].section.fields, (std::vector<std::string>{"X-Spam", "Date"}));
  EXPECT_EQ(items[6].section.part, (std::vector<uint32_t>{2}));
  EXPECT_EQ(items[6].section.text, SectionText::kHeader);
  EXPECT_EQ(items[7].section.part, (std::vector<uint32_t>{4, 1}));
  EXPECT_EQ(items[7].section.text, SectionText::kNone);
}

// RFC 9051 6.4.5 BINARY, BINARY.PEEK, BINARY.SIZE.
TEST(ImapCommand, FetchBinary) {
  Command c = Ok("a FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<0.1024> BINARY.SIZE[2] "
                 "BINARY[])");
  const auto& items = c.get<FetchArgs>().items;
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].att, FetchAtt::kBinary);
  EXPECT_FALSE(items[0].peek);
  EXPECT_EQ(items[1].att, FetchAtt::kBinary);
  EXPECT_TRUE(items[1].peek);
  EXPECT_EQ(items[1].partial, (Partial{0, 1024}));
  EXPECT_EQ(items[2].att, FetchAtt::kBinarySize);
  EXPECT_EQ(items[2].section.part, (std::vector<uint32_t>{2}));
  EXPECT_TRUE(items[3].section.part.empty());
  EXPECT_EQ(Bad("a FETCH 1 BINARY[1.MIME]"), "Expected ']' to close the section");
  EXPECT_EQ(Bad("a FETCH 1 BINARY[TEXT]"), "Invalid binary section");
  EXPECT_EQ(Bad("a FETCH 1 BINARY.SIZE[1]<0.1>"), "Expected end of command");
}

// RFC 7162 3.1.4.1 CHANGEDSINCE, 3.2.6 VANISHED.
TEST(ImapCommand, FetchModifiers) {
  Command c = Ok("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)");
  EXPECT_TRUE(c.uid);
  EXPECT_EQ(c.get<FetchArgs>().changed_since, 12345u);
  EXPECT_TRUE(c.get<FetchArgs>().vanished);
  c = Ok("a FETCH 1:* FLAGS (CHANGEDSINCE 1)");
  EXPECT_EQ(c.get<FetchArgs>().changed_since, 1u);
  EXPECT_FALSE(c.get<FetchArgs>().vanished);
  EXPECT_EQ(Bad("a FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)"),
            "VANISHED needs UID FETCH with CHANGEDSINCE");
  EXPECT_EQ(Bad("a UID FETCH 1:* FLAGS (VANISHED)"),
            "VANISHED needs UID FETCH with CHANGEDSINCE");
  EXPECT_EQ(Bad("a FETCH 1 FLAGS (CHANGEDSINCE 0)"),
            "Zero is not allowed (mod-sequence)");
  EXPECT_EQ(Bad("a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)"),
            "CHANGEDSINCE given twice");
  EXPECT_EQ(Bad("a FETCH 1 FLAGS (FOO)"), "Unknown fetch modifier");
  EXPECT_EQ(Bad("a FETCH 1 FLAGS CHANGEDSINCE 1"),
            "Expected '(' to open the fetch modifiers");
}

TEST(ImapCommand, FetchMalformed) {
  EXPECT_EQ(Bad("a FETCH"), "Missing argument after FETCH");
  EXPECT_EQ(Bad("a FETCH 1"), "Missing argument after sequence set");
  EXPECT_EQ(Bad("a FETCH 0 FLAGS"),
            "Invalid sequence set (0 is not a message number)");
  EXPECT_EQ(Bad("a FETCH x FLAGS"), "Invalid sequence set");
  EXPECT_EQ(Bad("a FETCH 1: FLAGS"), "Invalid sequence set");
  EXPECT_EQ(Bad("a FETCH 1,,2 FLAGS"), "Invalid sequence set");
  EXPECT_EQ(Bad("a FETCH 4294967296 FLAGS"),
            "Number too large (sequence number)");
  EXPECT_EQ(Bad("a FETCH 1 ()"), "Expected fetch attribute");
  EXPECT_EQ(Bad("a FETCH 1 (FLAGS"), "Expected ')' to close the fetch attributes");
  EXPECT_EQ(Bad("a FETCH 1 FROB"), "Unknown fetch attribute");
  EXPECT_EQ(Bad("a FETCH 1 BODY[FOO]"), "Invalid section");
  EXPECT_EQ(Bad("a FETCH 1 BODY[MIME]"), "Invalid section");
  EXPECT_EQ(Bad("a FETCH 1 BODY[1.FOO]"), "Invalid section");
  EXPECT_EQ(Bad("a FETCH 1 BODY[0]"), "Zero is not allowed (section part)");
  EXPECT_EQ(Bad("a FETCH 1 BODY[1"), "Expected ']' to close the section");
  EXPECT_EQ(Bad("a FETCH 1 BODY[HEADER.FIELDS]"),
            "Expected SP after HEADER.FIELDS");
  EXPECT_EQ(Bad("a FETCH 1 BODY[HEADER.FIELDS ()]"), "Expected header field name");
  EXPECT_EQ(Bad("a FETCH 1 BODY[HEADER.FIELDS (A]"),
            "Expected ')' to close the header field list");
  EXPECT_EQ(Bad("a FETCH 1 BODY[]<0>"), "Expected '.' in the partial range");
  EXPECT_EQ(Bad("a FETCH 1 BODY[]<0.0>"), "Zero is not allowed (partial length)");
  EXPECT_EQ(Bad("a FETCH 1 BODY[]<0.1"), "Expected '>' to close the partial range");
  EXPECT_EQ(Bad("a FETCH 1 BODY.PEEK"), "Expected '[' to open the section");
}

TEST(ImapCommand, FetchSectionEdges) {
  Command c = Ok("a FETCH 1 BODY[1.2.3.HEADER.FIELDS (X-A)]");
  EXPECT_EQ(c.get<FetchArgs>().items[0].section.part,
            (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(c.get<FetchArgs>().items[0].section.text,
            SectionText::kHeaderFields);
  EXPECT_EQ(Bad("a FETCH 1 BODY[1.]"), "Invalid section");
  EXPECT_EQ(Bad("a FETCH 1 BODY[1..2]"), "Invalid section");
  EXPECT_EQ(Bad("a FETCH 1 BODY[HEADER.FIELDS(From)]"),
            "Expected SP after HEADER.FIELDS");
  EXPECT_EQ(Bad("a FETCH 1 BODY[HEADER]<>"), "Expected partial offset");
  EXPECT_EQ(Bad("a FETCH 1 (FLAGS  UID)"), "Expected fetch attribute");
  // IMAP4rev1 BODY[] sets \Seen, BODY.PEEK[] does not: the flag says which.
  EXPECT_FALSE(Ok("a FETCH 1 BODY[]").get<FetchArgs>().items[0].peek);
  EXPECT_TRUE(Ok("a FETCH 1 BODY.PEEK[]").get<FetchArgs>().items[0].peek);
}

TEST(ImapCommand, StoreKeywordsAndSearchSets) {
  Command c = Ok("a STORE 1:* +FLAGS ($Forwarded NonJunk \\Flagged)");
  EXPECT_EQ(c.get<StoreArgs>().flags,
            (std::vector<std::string>{"$Forwarded", "NonJunk", "\\Flagged"}));
  EXPECT_EQ(Bad("a STORE 1 +FLAGS (a]b)"), "Expected ')' to close the flag list");
  c = Ok("a SEARCH NOT 1:5 UID 7,9:*");
  const auto& keys = c.get<SearchArgs>().keys;
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].kind, Kind::kNot);
  EXPECT_EQ(keys[0].keys[0].set, Set({{1, 5}}));
  EXPECT_EQ(keys[1].set, Set({{7, 7}, {9, kStar}}));
  c = Ok("a SEARCH * HEADER \"\" \"\"");
  ASSERT_EQ(c.get<SearchArgs>().keys.size(), 2u);
  EXPECT_EQ(c.get<SearchArgs>().keys[0].set, Set({{kStar, kStar}}));
  EXPECT_EQ(c.get<SearchArgs>().keys[1].header, "");
}

TEST(ImapCommand, SequenceSets) {
  EXPECT_EQ(Bad("a FETCH 5:2,*,3:*,$ FLAGS"), "Invalid sequence set");
  Command c = Ok("a FETCH 5:2,*,3:* FLAGS");
  EXPECT_EQ(c.get<FetchArgs>().set, Set({{5, 2}, {kStar, kStar}, {3, kStar}}));
  // RFC 5182 SEARCHRES "$".
  c = Ok("a UID FETCH $ FLAGS");
  EXPECT_TRUE(c.get<FetchArgs>().set.saved);
  EXPECT_TRUE(c.get<FetchArgs>().set.ranges.empty());
  c = Ok("a FETCH 4294967295 FLAGS");
  EXPECT_EQ(c.get<FetchArgs>().set, Set({{4294967295u, 4294967295u}}));
}

// ---- STORE -------------------------------------------------------------

TEST(ImapCommand, Store) {
  Command c = Ok("A003 STORE 2:4 +FLAGS (\\deleted)");
  StoreArgs want;
  want.set = Set({{2, 4}});
  want.mode = StoreMode::kAdd;
  want.flags = {"\\Deleted"};
  EXPECT_EQ(c.get<StoreArgs>(), want);
  c = Ok("a UID STORE 1 -FLAGS.SILENT (\\Seen $Junk)");
  EXPECT_TRUE(c.uid);
  EXPECT_EQ(c.get<StoreArgs>().mode, StoreMode::kRemove);
  EXPECT_TRUE(c.get<StoreArgs>().silent);
  EXPECT_EQ(c.get<StoreArgs>().flags,
            (std::vector<std::string>{"\\Seen", "$Junk"}));
  // Flags without parentheses (RFC 9051 9 store-att-flags).
  c = Ok("a STORE 1 FLAGS \\Answered \\FLAGGED");
  EXPECT_EQ(c.get<StoreArgs>().mode, StoreMode::kReplace);
  EXPECT_EQ(c.get<StoreArgs>().flags,
            (std::vector<std::string>{"\\Answered", "\\Flagged"}));
  c = Ok("a STORE 1 FLAGS ()");
  EXPECT_TRUE(c.get<StoreArgs>().flags.empty());
}

// RFC 7162 3.1.3.
TEST(ImapCommand, StoreUnchangedSince) {
  Command c = Ok("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT "
                 "(\\Deleted)");
  EXPECT_EQ(c.get<StoreArgs>().unchanged_since, 320162338u);
  EXPECT_TRUE(c.get<StoreArgs>().silent);
  EXPECT_EQ(Ok("a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()")
                .get<StoreArgs>()
                .unchanged_since,
            0u);
  EXPECT_EQ(Bad("a STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS ()"),
            "UNCHANGEDSINCE given twice");
  EXPECT_EQ(Bad("a STORE 1 (FOO 1) FLAGS ()"), "Unknown store modifier");
  EXPECT_EQ(Bad("a STORE 1 (UNCHANGEDSINCE 1)"),
            "Missing argument after store modifiers");
}

TEST(ImapCommand, StoreMalformed) {
  EXPECT_EQ(Bad("a STORE 1"), "Missing argument after sequence set");
  EXPECT_EQ(Bad("a STORE 1 LABELS (x)"), "Expected FLAGS, +FLAGS or -FLAGS");
  EXPECT_EQ(Bad("a STORE 1 FLAGS"), "Missing argument after FLAGS");
  EXPECT_EQ(Bad("a STORE 1 FLAGS (\\Seen"), "Expected ')' to close the flag list");
  EXPECT_EQ(Bad("a STORE 1 FLAGS (\\)"), "Expected flag");
  EXPECT_EQ(Bad("a STORE 1 FLAGS (\"x\")"), "Expected flag");
}

// ---- SEARCH ------------------------------------------------------------

TEST(ImapCommand, SearchEveryKey) {
  Command c = Ok(
      "a SEARCH ALL ANSWERED DELETED DRAFT FLAGGED SEEN UNANSWERED UNDELETED "
      "UNDRAFT UNFLAGGED UNSEEN NEW OLD RECENT UNRECENT BCC b BODY \"x y\" CC c "
      "FROM f SUBJECT {3}\r\nsub TEXT t TO to HEADER X-Spam yes KEYWORD $Junk "
      "UNKEYWORD $Sent BEFORE 1-Feb-1994 ON \"01-Mar-2000\" SINCE 29-feb-2024 "
      "SENTBEFORE 1-Jan-2001 SENTON 2-Jan-2001 SENTSINCE 3-Jan-2001 LARGER 100 "
      "SMALLER 2000 UID 1:5 2,4:* MODSEQ 7");
  const auto& keys = c.get<SearchArgs>().keys;
  std::vector<Kind> kinds;
  for (const SearchKey& k : keys) kinds.push_back(k.kind);
  EXPECT_EQ(kinds,
            (std::vector<Kind>{
                Kind::kAll, Kind::kAnswered, Kind::kDeleted, Kind::kDraft,
                Kind::kFlagged, Kind::kSeen, Kind::kUnanswered,
                Kind::kUndeleted, Kind::kUndraft, Kind::kUnflagged,
                Kind::kUnseen, Kind::kNew, Kind::kOld, Kind::kRecent,
                Kind::kUnrecent, Kind::kBcc, Kind::kBody, Kind::kCc,
                Kind::kFrom, Kind::kSubject, Kind::kText, Kind::kTo,
                Kind::kHeader, Kind::kKeyword, Kind::kUnkeyword, Kind::kBefore,
                Kind::kOn, Kind::kSince, Kind::kSentBefore, Kind::kSentOn,
                Kind::kSentSince, Kind::kLarger, Kind::kSmaller, Kind::kUid,
                Kind::kSequenceSet, Kind::kModSeq}));
  EXPECT_EQ(keys[16].text, "x y");
  EXPECT_EQ(keys[19].text, "sub");
  EXPECT_EQ(keys[22].header, "X-Spam");
  EXPECT_EQ(keys[22].text, "yes");
  EXPECT_EQ(keys[23].text, "$Junk");
  EXPECT_EQ(keys[25].date, (Date{1994, 2, 1}));
  EXPECT_EQ(keys[26].date, (Date{2000, 3, 1}));
  EXPECT_EQ(keys[27].date, (Date{2024, 2, 29}));
  EXPECT_EQ(keys[31].number, 100u);
  EXPECT_EQ(keys[33].set, Set({{1, 5}}));
  EXPECT_EQ(keys[34].set, Set({{2, 2}, {4, kStar}}));
  EXPECT_EQ(keys[35].number, 7u);
  EXPECT_FALSE(c.get<SearchArgs>().has_return);
  EXPECT_FALSE(c.get<SearchArgs>().charset);
}

TEST(ImapCommand, SearchCharset) {
  Command c = Ok("a SEARCH CHARSET UTF-8 TEXT {4}\r\n\xc3\xa4\xc3\xb6");
  EXPECT_EQ(c.get<SearchArgs>().charset, "UTF-8");
  EXPECT_EQ(c.get<SearchArgs>().keys[0].text, "\xc3\xa4\xc3\xb6");
  c = Ok("a SEARCH charset \"us-ascii\" ALL");
  EXPECT_EQ(c.get<SearchArgs>().charset, "us-ascii");
  EXPECT_EQ(Bad("a SEARCH CHARSET UTF-8"), "Missing argument after charset");
}

TEST(ImapCommand, SearchNesting) {
  Command c = Ok("a SEARCH OR (FROM a TO b) NOT (SEEN OR DRAFT 1:3) UNDELETED");
  const auto& keys = c.get<SearchArgs>().keys;
  ASSERT_EQ(keys.size(), 2u);
  SearchKey want_or = KKeys(
      Kind::kOr,
      {KKeys(Kind::kAnd, {KText(Kind::kFrom, "a"), KText(Kind::kTo, "b")}),
       KKeys(Kind::kNot,
             {KKeys(Kind::kAnd,
                    {K(Kind::kSeen),
                     KKeys(Kind::kOr,
                           {K(Kind::kDraft), [] {
                              SearchKey s = K(Kind::kSequenceSet);
                              s.set = Set({{1, 3}});
                              return s;
                            }()})})})});
  EXPECT_EQ(keys[0], want_or);
  EXPECT_EQ(keys[1], K(Kind::kUndeleted));
  // OR OR OR chains, as clients build them.
  c = Ok("a UID SEARCH OR OR FROM a FROM b FROM c");
  EXPECT_TRUE(c.uid);
  EXPECT_EQ(c.get<SearchArgs>().keys[0].keys[0].kind, Kind::kOr);
}

TEST(ImapCommand, SearchDepthIsBounded) {
  std::string deep = "a SEARCH ";
  for (int i = 0; i < 40; ++i) deep += "NOT ";
  deep += "SEEN";
  EXPECT_EQ(Bad(deep), "Search keys nested too deeply");
  std::string parens = "a SEARCH " + std::string(40, '(') + "SEEN" +
                       std::string(40, ')');
  EXPECT_EQ(Bad(parens), "Search keys nested too deeply");
  std::string ok = "a SEARCH ";
  for (int i = 0; i < 20; ++i) ok += "NOT ";
  ok += "SEEN";
  Ok(ok);
}

// RFC 4731 ESEARCH, RFC 9051 6.4.4.1 SAVE.
TEST(ImapCommand, SearchReturn) {
  Command c = Ok("a SEARCH RETURN (MIN MAX COUNT ALL SAVE) UNSEEN");
  EXPECT_TRUE(c.get<SearchArgs>().has_return);
  EXPECT_EQ(c.get<SearchArgs>().returns,
            (std::vector<SearchReturn>{SearchReturn::kMin, SearchReturn::kMax,
                                       SearchReturn::kCount, SearchReturn::kAll,
                                       SearchReturn::kSave}));
  c = Ok("a UID SEARCH RETURN () CHARSET UTF-8 $");
  EXPECT_TRUE(c.get<SearchArgs>().has_return);
  EXPECT_TRUE(c.get<SearchArgs>().returns.empty());
  EXPECT_TRUE(c.get<SearchArgs>().keys[0].set.saved);
  EXPECT_EQ(Bad("a SEARCH RETURN (FOO) ALL"), "Unknown RETURN option");
  EXPECT_EQ(Bad("a SEARCH RETURN (MIN)"), "Missing argument after RETURN options");
  EXPECT_EQ(Bad("a SEARCH RETURN MIN ALL"), "Expected '(' after RETURN");
}

TEST(ImapCommand, SearchModSeq) {
  // RFC 7162 3.1.5.
  Command c = Ok("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338");
  const SearchKey& k = c.get<SearchArgs>().keys[0];
  EXPECT_EQ(k.kind, Kind::kModSeq);
  EXPECT_EQ(k.header, "/flags/\\draft");
  EXPECT_EQ(k.entry_type, "all");
  EXPECT_EQ(k.number, 620162338u);
  EXPECT_EQ(Bad("a SEARCH MODSEQ \"/x\" all 1"), "Invalid MODSEQ entry name");
  EXPECT_EQ(Bad("a SEARCH MODSEQ \"/flags/x\" mine 1"),
            "Invalid MODSEQ entry type");
}

TEST(ImapCommand, SearchMalformed) {
  EXPECT_EQ(Bad("a SEARCH"), "Missing argument after SEARCH");
  EXPECT_EQ(Bad("a SEARCH FOO"), "Unknown search key");
  EXPECT_EQ(Bad("a SEARCH ALL "), "Missing search key");
  EXPECT_EQ(Bad("a SEARCH FROM"), "Missing argument after FROM");
  EXPECT_EQ(Bad("a SEARCH HEADER X"), "Missing argument after header field name");
  EXPECT_EQ(Bad("a SEARCH OR SEEN"), "Missing argument after search key");
  EXPECT_EQ(Bad("a SEARCH (SEEN"), "Expected ')' to close the search keys");
  EXPECT_EQ(Bad("a SEARCH ()"), "Expected search key");
  EXPECT_EQ(Bad("a SEARCH SINCE 1-Foo-2000"), "Invalid month in date");
  EXPECT_EQ(Bad("a SEARCH SINCE 31-Apr-2000"), "Invalid day in date");
  EXPECT_EQ(Bad("a SEARCH SINCE 29-Feb-1900"), "Invalid day in date");
  EXPECT_EQ(Bad("a SEARCH SINCE 1-Feb-94"), "Invalid date");
  EXPECT_EQ(Bad("a SEARCH SINCE Feb-1994"), "Invalid date");
  EXPECT_EQ(Bad("a SEARCH LARGER x"), "Expected size");
  EXPECT_EQ(Bad("a SEARCH LARGER 9223372036854775808"), "Number too large (size)");
  EXPECT_EQ(Bad("a SEARCH UID 0"),
            "Invalid sequence set (0 is not a message number)");
  EXPECT_EQ(Bad("a SEARCH KEYWORD \\Seen"), "Expected keyword");
  EXPECT_EQ(Bad("a SEARCH SUBJECT \"x"),
            "Missing '\"' at the end of a quoted string");
}

// ---- SORT and THREAD (RFC 5256, RFC 5267, RFC 5957) ---------------------

TEST(ImapCommand, Sort) {
  Command c = Ok("a UID SORT (REVERSE DATE subject DISPLAYFROM) UTF-8 "
                 "SINCE 1-Feb-1994 NOT SEEN");
  EXPECT_TRUE(c.uid);
  const SortArgs& a = c.get<SortArgs>();
  EXPECT_EQ(a.criteria,
            (std::vector<SortCriterion>{{true, SortKey::kDate},
                                        {false, SortKey::kSubject},
                                        {false, SortKey::kDisplayFrom}}));
  EXPECT_EQ(a.charset, "UTF-8");
  EXPECT_EQ(a.keys.size(), 2u);
  c = Ok("a SORT RETURN (COUNT) (ARRIVAL) US-ASCII ALL");
  EXPECT_TRUE(c.get<SortArgs>().has_return);
  EXPECT_EQ(Bad("a SORT () UTF-8 ALL"), "Expected sort key");
  EXPECT_EQ(Bad("a SORT (NAME) UTF-8 ALL"), "Unknown sort key");
  EXPECT_EQ(Bad("a SORT (REVERSE) UTF-8 ALL"), "Expected SP after REVERSE");
  EXPECT_EQ(Bad("a SORT (DATE) UTF-8"), "Missing argument after charset");
  EXPECT_EQ(Bad("a SORT DATE UTF-8 ALL"), "Expected '(' to open the sort criteria");
}

TEST(ImapCommand, Thread) {
  Command c = Ok("a THREAD references UTF-8 SINCE 5-MAR-2000");
  EXPECT_EQ(c.get<ThreadArgs>().algorithm, "REFERENCES");
  EXPECT_EQ(c.get<ThreadArgs>().charset, "UTF-8");
  c = Ok("a UID THREAD ORDEREDSUBJECT US-ASCII ALL");
  EXPECT_TRUE(c.uid);
  EXPECT_EQ(Bad("a THREAD REFERENCES"), "Missing argument after thread algorithm");
}

// ---- COPY, MOVE, UID EXPUNGE ------------------------------------------

TEST(ImapCommand, CopyMoveExpunge) {
  Command c = Ok("a COPY 2:4 MEETING");
  EXPECT_EQ(c.name, CommandName::kCopy);
  EXPECT_EQ(c.get<CopyArgs>(), (CopyArgs{Set({{2, 4}}), "MEETING"}));
  c = Ok("a UID MOVE 42:69 \"Deleted Items\"");
  EXPECT_EQ(c.name, CommandName::kMove);
  EXPECT_TRUE(c.uid);
  EXPECT_EQ(c.get<CopyArgs>().mailbox, "Deleted Items");
  c = Ok("a uid copy $ inbox");
  EXPECT_TRUE(c.get<CopyArgs>().set.saved);
  EXPECT_EQ(c.get<CopyArgs>().mailbox, "INBOX");
  // RFC 4315 2.1.
  c = Ok("A003 UID EXPUNGE 3000:3002");
  EXPECT_EQ(c.name, CommandName::kExpunge);
  EXPECT_TRUE(c.uid);
  EXPECT_EQ(c.get<UidExpungeArgs>().set, Set({{3000, 3002}}));
  EXPECT_EQ(Bad("a UID EXPUNGE"), "Missing argument after EXPUNGE");
  EXPECT_EQ(Bad("a EXPUNGE 1"), "Unexpected argument at the end of the command");
  EXPECT_EQ(Bad("a COPY 1"), "Missing argument after sequence set");
  EXPECT_EQ(Bad("a MOVE 1:2"), "Missing argument after sequence set");
}

// ---- dates ---------------------------------------------------------------

TEST(ImapDateTime, ParseAndFormatDates) {
  EXPECT_EQ(*ParseDate("1-Feb-1994"), (Date{1994, 2, 1}));
  EXPECT_EQ(*ParseDate("01-feb-1994"), (Date{1994, 2, 1}));
  EXPECT_EQ(FormatDate(Date{1994, 2, 1}), "1-Feb-1994");
  EXPECT_FALSE(ParseDate("001-Feb-1994"));
  EXPECT_FALSE(ParseDate("1-Feb-1994 "));
  EXPECT_FALSE(ParseDate("0-Feb-1994"));
  EXPECT_FALSE(ParseDate("1-Fe-1994"));
  EXPECT_FALSE(ParseDate("1-Feb-19a4"));
  EXPECT_FALSE(ParseDate(""));
  for (int y : {1900, 1999, 2000, 2024, 2100}) {
    for (int m = 1; m <= 12; ++m) {
      for (int d : {1, 15, 28}) {
        Date date{y, m, d};
        EXPECT_EQ(*ParseDate(FormatDate(date)), date);
      }
    }
  }
}

TEST(ImapDateTime, ParseAndFormatDateTimes) {
  auto dt = ParseDateTime("17-Jul-1996 02:44:25 -0700");
  ASSERT_TRUE(dt);
  EXPECT_EQ(dt->date, (Date{1996, 7, 17}));
  EXPECT_EQ(dt->hour, 2);
  EXPECT_EQ(dt->minute, 44);
  EXPECT_EQ(dt->second, 25);
  EXPECT_EQ(dt->zone_minutes, -420);
  EXPECT_EQ(FormatDateTime(*dt), "17-Jul-1996 02:44:25 -0700");
  dt = ParseDateTime(" 5-jan-2000 23:59:60 +0530");
  ASSERT_TRUE(dt);
  EXPECT_EQ(dt->zone_minutes, 330);
  EXPECT_EQ(FormatDateTime(*dt), "05-Jan-2000 23:59:60 +0530");
  EXPECT_EQ(ParseDateTime("17-Jul-1996 24:00:00 -0700").error().message,
            "Invalid time in date-time");
  EXPECT_EQ(ParseDateTime("17-Jul-1996 02:44:25 0700").error().message,
            "Invalid date-time");
  EXPECT_EQ(ParseDateTime("17-Jul-1996 02:44:25 *0700").error().message,
            "Invalid zone in date-time");
  EXPECT_EQ(ParseDateTime("17-Jul-1996 02:44:25 +0760").error().message,
            "Invalid zone in date-time");
  EXPECT_EQ(ParseDateTime("7-Jul-1996 02:44:25 +0000").error().message,
            "Invalid date-time");
  EXPECT_EQ(ParseDateTime("17-Jul-1996T02:44:25 +0000").error().message,
            "Invalid date-time");
}

TEST(ImapDateTime, UnixSecondsRoundTrip) {
  DateTime epoch;
  EXPECT_EQ(ToUnixSeconds(epoch), 0);
  auto dt = ParseDateTime("17-Jul-1996 02:44:25 -0700");
  EXPECT_EQ(ToUnixSeconds(*dt), 837596665);
  EXPECT_EQ(FormatInternalDate(837596665, -420), "17-Jul-1996 02:44:25 -0700");
  EXPECT_EQ(FormatInternalDate(837596665, 0), "17-Jul-1996 09:44:25 +0000");
  EXPECT_EQ(FormatInternalDate(-1, 0), "31-Dec-1969 23:59:59 +0000");
  EXPECT_EQ(FormatInternalDate(951782400, 60), "29-Feb-2000 01:00:00 +0100");
  for (int64_t t : {int64_t{0}, int64_t{86399}, int64_t{951782399},
                    int64_t{1709164800}, int64_t{4102444800}, int64_t{-86401}}) {
    for (int zone : {-720, -420, 0, 330, 840}) {
      DateTime local = FromUnixSeconds(t, zone);
      EXPECT_EQ(ToUnixSeconds(local), t) << t << " " << zone;
      EXPECT_EQ(*ParseDateTime(FormatDateTime(local)), local);
    }
  }
}

// ---- modified UTF-7 (RFC 3501 5.1.3) ----------------------------------

TEST(ImapMutf7, KnownEncodings) {
  // RFC 3501 5.1.3's example: "~peter/mail/台北/日本語".
  std::string utf8 = "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
                     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";
  EXPECT_EQ(*EncodeMutf7(utf8), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  EXPECT_EQ(*DecodeMutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-"), utf8);
  EXPECT_EQ(*EncodeMutf7("Tom & Jerry"), "Tom &- Jerry");
  EXPECT_EQ(*EncodeMutf7("caf\xc3\xa9"), "caf&AOk-");
  // U+1F600, a surrogate pair.
  EXPECT_EQ(*EncodeMutf7("\xf0\x9f\x98\x80"), "&2D3eAA-");
  EXPECT_EQ(*DecodeMutf7("&2D3eAA-"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(*EncodeMutf7(""), "");
}

TEST(ImapMutf7, RefusesNonCanonicalForms) {
  EXPECT_FALSE(DecodeMutf7("&"));
  EXPECT_FALSE(DecodeMutf7("a&bc"));
  EXPECT_FALSE(DecodeMutf7("&AGE-"));          // "a" in base64
  EXPECT_FALSE(DecodeMutf7("&AOk-&AOk-"));     // two adjacent runs
  EXPECT_FALSE(DecodeMutf7("&AOl-"));          // non-zero padding bits
  EXPECT_FALSE(DecodeMutf7("&AOk"));           // unterminated
  EXPECT_FALSE(DecodeMutf7("&2D0-"));          // lone high surrogate
  EXPECT_FALSE(DecodeMutf7("&3gA-"));          // lone low surrogate
  EXPECT_FALSE(DecodeMutf7("&AO/-"));          // "/" is "," here
  EXPECT_FALSE(DecodeMutf7("caf\xc3\xa9"));    // raw 8-bit
  EXPECT_FALSE(DecodeMutf7("a\tb"));           // raw control
  EXPECT_FALSE(EncodeMutf7("caf\xe9"));        // not UTF-8
  EXPECT_FALSE(EncodeMutf7("\xed\xa0\x80"));   // encoded surrogate
}

TEST(ImapMutf7, RoundTrips) {
  const std::string names[] = {
      "INBOX", "a&b", "&&", "\xc3\xa9t\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87/x",
      "tab\there", std::string("nul\0x", 5), "\xf0\x9f\x93\xa7 mail",
      "\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac-", "~/-&-"};
  for (const std::string& n : names) {
    auto enc = EncodeMutf7(n);
    ASSERT_TRUE(enc) << n;
    for (char c : *enc) {
      EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << *enc;
    }
    auto dec = DecodeMutf7(*enc);
    ASSERT_TRUE(dec) << *enc;
    EXPECT_EQ(*dec, n);
  }
}

TEST(ImapMutf7, IsUtf8) {
  EXPECT_TRUE(IsUtf8(""));
  EXPECT_TRUE(IsUtf8("abc\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsUtf8("\x80"));
}

// ---- string output forms (quote.h) --------------------------------------

TEST(ImapQuote, Forms) {
  EXPECT_EQ(FormatAstring("INBOX", false), "INBOX");
  EXPECT_EQ(FormatAstring("a]b", false), "a]b");
  EXPECT_EQ(FormatAstring("", false), "\"\"");
  EXPECT_EQ(FormatAstring("NIL", false), "\"NIL\"");
  EXPECT_EQ(FormatAstring("nil", false), "\"nil\"");
  EXPECT_EQ(FormatString("INBOX", false), "\"INBOX\"");
  EXPECT_EQ(FormatAstring("a b", false), "\"a b\"");
  EXPECT_EQ(FormatAstring("a\"b\\c", false), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(FormatAstring("a\r\nb", false), "{4}\r\na\r\nb");
  EXPECT_EQ(FormatAstring("caf\xc3\xa9", false), "{5}\r\ncaf\xc3\xa9");
  EXPECT_EQ(FormatAstring("caf\xc3\xa9", true), "\"caf\xc3\xa9\"");
  EXPECT_EQ(FormatAstring("caf\xe9", true), "{4}\r\ncaf\xe9");
  EXPECT_EQ(FormatNstring(std::nullopt, false), "NIL");
  EXPECT_EQ(FormatNstring(std::string("x"), false), "\"x\"");
  std::string long_text(kMaxQuoted + 1, 'a');
  EXPECT_EQ(FormatString(long_text, false),
            "{" + std::to_string(long_text.size()) + "}\r\n" + long_text);
}

// What the server writes parses back as the same string.
TEST(ImapQuote, OutputParsesBack) {
  const std::string values[] = {"plain", "with space", "q\"uo\\te", "",
                                "NIL",   "a\r\nb",     "]x", "50%", "st*r"};
  for (const std::string& v : values) {
    Command c = Ok("a LOGIN " + FormatAstring(v, false) + " " +
                   FormatString(v, false));
    EXPECT_EQ(c.get<LoginArgs>().user, v);
    EXPECT_EQ(c.get<LoginArgs>().password, v);
  }
}

}  // namespace
}  // namespace tern::imap
