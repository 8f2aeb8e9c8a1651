// Tests for the milter protocol codec: packet framing and the reader fed in
// any chunks, the exact bytes of a few commands (written out by hand from
// libmilter mfdef.h and engine.c), the filter's negotiation reply (rspamd's
// with every no-reply bit, one with macro lists), every reply kind, and
// malformed replies refused with a reason.
#include "antispam/milter_protocol.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

namespace tern::antispam {
namespace {

using namespace std::string_literals;
using Kind = MilterReply::Kind;

// Every packet in `wire`, read at once; fails the test on a framing error.
std::vector<MilterPacket> ReadAll(std::string_view wire) {
  MilterReader reader;
  EXPECT_TRUE(reader.Feed(wire)) << reader.error();
  EXPECT_FALSE(reader.partial());
  std::vector<MilterPacket> out;
  while (reader.HasPacket()) out.push_back(reader.Pop());
  return out;
}

MilterPacket ReadOne(std::string_view wire) {
  std::vector<MilterPacket> all = ReadAll(wire);
  EXPECT_EQ(all.size(), 1u);
  return all.empty() ? MilterPacket{} : all[0];
}

std::vector<std::string> Strings(std::string_view data) {
  auto s = SplitMilterStrings(data);
  EXPECT_TRUE(s.has_value()) << s.error().message;
  return s ? *s : std::vector<std::string>{};
}

// Byte-exact encodings ----------------------------------------------------

TEST(MilterEncodeTest, OptNegBytes) {
  // Length 13 (command + three uint32), 'O', version 6, actions 0x1ff,
  // protocol 0x1fffff, all big-endian.
  EXPECT_EQ(EncodeOptNeg(6, milter::kActAll, milter::kProtoAll),
            "\x00\x00\x00\x0d" "O"
            "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff"s);
}

TEST(MilterEncodeTest, ConnectBytes) {
  // Host name NUL, family '4', port 25 as uint16, address NUL.
  EXPECT_EQ(EncodeConnect("mx.example.org", milter::kFamilyInet, 25, "192.0.2.1"),
            "\x00\x00\x00\x1d" "C" "mx.example.org\0" "4" "\x00\x19"
            "192.0.2.1\0"s);
  // Port 0x1234 keeps its byte order; an unknown family ends the data.
  EXPECT_EQ(EncodeConnect("h", milter::kFamilyInet6, 0x1234, "2001:db8::1"),
            "\x00\x00\x00\x12" "C" "h\0" "6" "\x12\x34" "2001:db8::1\0"s);
  EXPECT_EQ(EncodeConnect("localhost", milter::kFamilyUnknown, 25, "ignored"),
            "\x00\x00\x00\x0c" "C" "localhost\0" "U"s);
}

TEST(MilterEncodeTest, MacroBytes) {
  EXPECT_EQ(EncodeMacros(milter::kCmdMail, {{"{i}", "4Xyz"}, {"j", "mx"}}),
            "\x00\x00\x00\x10" "D" "M" "{i}\0" "4Xyz\0" "j\0" "mx\0"s);
}

TEST(MilterEncodeTest, MailRcptHeaderBytes) {
  EXPECT_EQ(EncodeMail("<a@b.example>", {"SIZE=10", "BODY=8BITMIME"}),
            "\x00\x00\x00\x25" "M" "<a@b.example>\0" "SIZE=10\0"
            "BODY=8BITMIME\0"s);
  EXPECT_EQ(EncodeRcpt("<c@d>", {}), "\x00\x00\x00\x07" "R" "<c@d>\0"s);
  EXPECT_EQ(EncodeHeader("Subject", " hi"),
            "\x00\x00\x00\x0d" "L" "Subject\0" " hi\0"s);
  EXPECT_EQ(EncodeHelo("client.example"),
            "\x00\x00\x00\x10" "H" "client.example\0"s);
  EXPECT_EQ(EncodeUnknown("XFOO bar"), "\x00\x00\x00\x0a" "U" "XFOO bar\0"s);
}

TEST(MilterEncodeTest, EmptyCommandsAreFiveBytes) {
  EXPECT_EQ(EncodeData(), "\x00\x00\x00\x01T"s);
  EXPECT_EQ(EncodeEndOfHeaders(), "\x00\x00\x00\x01N"s);
  EXPECT_EQ(EncodeEndOfBody(), "\x00\x00\x00\x01" "E"s);
  EXPECT_EQ(EncodeAbort(), "\x00\x00\x00\x01" "A"s);
  EXPECT_EQ(EncodeQuit(), "\x00\x00\x00\x01Q"s);
  EXPECT_EQ(EncodeQuitNewConnection(), "\x00\x00\x00\x01K"s);
}

TEST(MilterEncodeTest, NulInsideAStringIsDropped) {
  // A NUL would end the string early and shift every field after it.
  EXPECT_EQ(EncodeHelo("a\0b"s), EncodeHelo("ab"));
}

// Framing round trips -----------------------------------------------------

TEST(MilterFramingTest, EveryCommandRoundTrips) {
  struct Case {
    std::string wire;
    char command;
    std::string data;
  } cases[] = {
      {EncodeOptNeg(6, 3, 7), 'O', "\0\0\0\x06\0\0\0\x03\0\0\0\x07"s},
      {EncodeMacros('C', {{"j", "mx"}}), 'D', "Cj\0mx\0"s},
      {EncodeConnect("h", '4', 25, "192.0.2.1"), 'C', "h\0" "4\0\x19" "192.0.2.1\0"s},
      {EncodeHelo("x"), 'H', "x\0"s},
      {EncodeMail("<a@b>", {"SIZE=1"}), 'M', "<a@b>\0SIZE=1\0"s},
      {EncodeRcpt("<c@d>", {"NOTIFY=NEVER"}), 'R', "<c@d>\0NOTIFY=NEVER\0"s},
      {EncodeData(), 'T', ""},
      {EncodeHeader("From", " a@b"), 'L', "From\0 a@b\0"s},
      {EncodeEndOfHeaders(), 'N', ""},
      {EncodeBody("line\r\n"), 'B', "line\r\n"},
      {EncodeEndOfBody(), 'E', ""},
      {EncodeAbort(), 'A', ""},
      {EncodeQuit(), 'Q', ""},
      {EncodeQuitNewConnection(), 'K', ""},
      {EncodeUnknown("HELP"), 'U', "HELP\0"s},
  };
  for (const Case& c : cases) {
    MilterPacket p = ReadOne(c.wire);
    EXPECT_EQ(p.command, c.command);
    EXPECT_EQ(p.data, c.data) << c.command;
  }
  // Field by field for the string commands.
  EXPECT_EQ(Strings(ReadOne(EncodeMail("<a@b>", {"X=1", "Y=2"})).data),
            (std::vector<std::string>{"<a@b>", "X=1", "Y=2"}));
  EXPECT_EQ(Strings(ReadOne(EncodeHeader("Subject", "")).data),
            (std::vector<std::string>{"Subject", ""}));
}

TEST(MilterFramingTest, BodyIsCutAt65535) {
  std::string body(2 * milter::kChunkSize + 10, 'x');
  body[milter::kChunkSize] = 'y';
  std::vector<MilterPacket> packets = ReadAll(EncodeBody(body));
  ASSERT_EQ(packets.size(), 3u);
  EXPECT_EQ(packets[0].data.size(), 65535u);
  EXPECT_EQ(packets[1].data.size(), 65535u);
  EXPECT_EQ(packets[1].data[0], 'y');
  EXPECT_EQ(packets[2].data.size(), 10u);
  std::string joined;
  for (const MilterPacket& p : packets) {
    EXPECT_EQ(p.command, 'B');
    joined += p.data;
  }
  EXPECT_EQ(joined, body);
  EXPECT_EQ(EncodeBody(""), "");
  EXPECT_EQ(ReadAll(EncodeBody(std::string(65535, 'z'))).size(), 1u);
}

TEST(MilterReaderTest, OneByteAtATimeGivesTheSamePackets) {
  std::string wire = EncodeOptNeg(6, 0, 0) + EncodeConnect("h", '6', 1, "::1") +
                     EncodeBody(std::string(70000, 'b')) + EncodeEndOfBody() +
                     EncodeMilterPacket('y', "554 5.7.1 no\0"s);
  std::vector<MilterPacket> whole = ReadAll(wire);
  ASSERT_EQ(whole.size(), 6u);
  MilterReader reader;
  std::vector<MilterPacket> got;
  for (char c : wire) {
    ASSERT_TRUE(reader.Feed(std::string_view(&c, 1))) << reader.error();
    while (reader.HasPacket()) got.push_back(reader.Pop());
  }
  EXPECT_FALSE(reader.partial());
  EXPECT_EQ(got, whole);
}

TEST(MilterReaderTest, PartialPacketWaits) {
  std::string wire = EncodeHelo("client");
  MilterReader reader;
  ASSERT_TRUE(reader.Feed(wire.substr(0, wire.size() - 1)));
  EXPECT_FALSE(reader.HasPacket());
  EXPECT_TRUE(reader.partial());
  ASSERT_TRUE(reader.Feed(wire.substr(wire.size() - 1)));
  ASSERT_TRUE(reader.HasPacket());
  EXPECT_EQ(reader.Pop().data, "client\0"s);
  EXPECT_FALSE(reader.partial());
}

TEST(MilterReaderTest, ZeroLengthFails) {
  MilterReader reader;
  EXPECT_FALSE(reader.Feed("\0\0\0\0c"s));
  EXPECT_TRUE(reader.failed());
  EXPECT_NE(reader.error().find("length 0"), std::string::npos) << reader.error();
  // And stays failed.
  EXPECT_FALSE(reader.Feed(EncodeMilterPacket('c', "")));
  EXPECT_FALSE(reader.HasPacket());
}

TEST(MilterReaderTest, OversizedLengthFailsBeforeTheData) {
  MilterReader reader;
  // 0x7fffffff announced: refused on the four length bytes alone.
  EXPECT_FALSE(reader.Feed("\x7f\xff\xff\xff"s));
  EXPECT_NE(reader.error().find("above the limit"), std::string::npos)
      << reader.error();

  MilterReader small(100);
  EXPECT_TRUE(small.Feed(EncodeMilterPacket('b', std::string(99, 'x'))));
  EXPECT_TRUE(small.HasPacket());
  EXPECT_FALSE(small.Feed(EncodeMilterPacket('b', std::string(100, 'x'))));

  // The default admits a 1 MiB - 1 replace-body chunk (SMFIP_MDS_1M).
  MilterReader big;
  EXPECT_TRUE(big.Feed(EncodeMilterPacket('b', std::string((1 << 20) - 1, 'x'))));
  EXPECT_TRUE(big.HasPacket());
}

TEST(MilterReaderTest, TruncatedLengthIsOnlyPartial) {
  MilterReader reader;
  EXPECT_TRUE(reader.Feed("\0\0"s));
  EXPECT_FALSE(reader.HasPacket());
  EXPECT_TRUE(reader.partial());
}

// Negotiation -------------------------------------------------------------

std::string U32(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>(v >> shift);
  return s;
}

TEST(MilterNegotiationTest, RspamdStyleEveryNoReplyBit) {
  // rspamd 3.4 answers with version 6, the actions it may use and every
  // NR_* bit: it replies only after end of body.
  uint32_t actions = milter::kActAddHeaders | milter::kActChangeHeaders |
                     milter::kActChangeBody | milter::kActQuarantine |
                     milter::kActAddRcpt | milter::kActDelRcpt |
                     milter::kActChangeFrom;
  uint32_t protocol = milter::kProtoAllNoReply | milter::kProtoSkip;
  auto r = ParseMilterReply('O', U32(6) + U32(actions) + U32(protocol));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->kind, Kind::kNegotiate);
  EXPECT_EQ(r->negotiation.version, 6u);
  EXPECT_EQ(r->negotiation.actions, actions);
  EXPECT_EQ(r->negotiation.protocol, protocol);
  EXPECT_EQ(r->negotiation.protocol & milter::kProtoAllNoReply,
            milter::kProtoAllNoReply);
  EXPECT_TRUE(r->negotiation.macro_lists.empty());
  EXPECT_TRUE(CheckMilterNegotiation(r->negotiation, milter::kActAll,
                                     milter::kProtoAll)
                  .has_value());
  EXPECT_EQ(milter::kProtoAllNoReply, 0x000ff080u);
}

TEST(MilterNegotiationTest, MacroLists) {
  std::string data = U32(6) + U32(milter::kActAddHeaders) + U32(0) +
                     U32(milter::kStageConnect) + "{client_addr} j\0"s +
                     U32(milter::kStageEnvFrom) + "{mail_addr},{auth_authen}\0"s +
                     U32(milter::kStageEom) + "\0"s;
  auto n = ParseMilterNegotiation(data);
  ASSERT_TRUE(n.has_value()) << n.error().message;
  ASSERT_EQ(n->macro_lists.size(), 3u);
  EXPECT_EQ(n->macro_lists[0].stage, milter::kStageConnect);
  EXPECT_EQ(n->macro_lists[0].names,
            (std::vector<std::string>{"{client_addr}", "j"}));
  EXPECT_EQ(n->macro_lists[1].stage, milter::kStageEnvFrom);
  EXPECT_EQ(n->macro_lists[1].names,
            (std::vector<std::string>{"{mail_addr}", "{auth_authen}"}));
  EXPECT_EQ(n->macro_lists[2].stage, milter::kStageEom);
  EXPECT_TRUE(n->macro_lists[2].names.empty());
}

TEST(MilterNegotiationTest, Malformed) {
  std::string head = U32(6) + U32(0) + U32(0);
  for (const std::string& bad : {
           ""s, U32(6) + U32(0),                 // fewer than 12 octets
           U32(1) + U32(0) + U32(0),             // version too old
           U32(7) + U32(0) + U32(0),             // version from the future
           head + "\0\0"s,                       // truncated stage
           head + U32(1) + "j"s,                 // list without NUL
           head + U32(1),                        // stage with no list
       }) {
    auto n = ParseMilterNegotiation(bad);
    EXPECT_FALSE(n.has_value()) << testing::PrintToString(bad);
  }
  EXPECT_NE(ParseMilterNegotiation(U32(6)).error().message.find("needs 12"),
            std::string::npos);
}

TEST(MilterNegotiationTest, MoreThanOfferedIsRefused) {
  MilterNegotiation n{6, milter::kActChangeFrom, 0, {}};
  auto ok = CheckMilterNegotiation(n, milter::kActAddHeaders, milter::kProtoAll);
  ASSERT_FALSE(ok.has_value());
  EXPECT_NE(ok.error().message.find("0x40"), std::string::npos) << ok.error().message;
  n = {6, 0, milter::kProtoMds1M, {}};
  EXPECT_FALSE(CheckMilterNegotiation(n, milter::kActAll, milter::kProtoAll));
}

// Replies -----------------------------------------------------------------

TEST(MilterReplyTest, SimpleReplies) {
  struct {
    char command;
    Kind kind;
  } cases[] = {
      {'a', Kind::kAccept},   {'c', Kind::kContinue}, {'d', Kind::kDiscard},
      {'r', Kind::kReject},   {'t', Kind::kTempFail}, {'s', Kind::kSkip},
      {'p', Kind::kProgress}, {'f', Kind::kConnFail}, {'4', Kind::kShutdown},
  };
  for (const auto& c : cases) {
    auto r = ParseMilterReply(c.command, "");
    ASSERT_TRUE(r.has_value()) << c.command << ": " << r.error().message;
    EXPECT_EQ(r->kind, c.kind) << c.command;
    EXPECT_EQ(r->final(), c.kind != Kind::kProgress) << c.command;
    EXPECT_FALSE(r->modification());
    // Data where none belongs.
    EXPECT_FALSE(ParseMilterReply(c.command, "x")) << c.command;
  }
}

TEST(MilterReplyTest, ReplyCodeAsRspamdSendsIt) {
  auto r = ParseMilterReply('y', "554 5.7.1 Gtube pattern\0"s);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->kind, Kind::kReplyCode);
  EXPECT_TRUE(r->final());
  EXPECT_EQ(r->code, 554);
  EXPECT_EQ(r->enhanced, "5.7.1");
  EXPECT_EQ(r->lines, (std::vector<std::string>{"5.7.1 Gtube pattern"}));
  EXPECT_EQ(r->text, "554 5.7.1 Gtube pattern");
}

TEST(MilterReplyTest, ReplyCodeMultiLineAndBare) {
  auto r = ParseMilterReply('y', "451-4.7.1 Try again\r\n451 4.7.1 later\0"s);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->code, 451);
  EXPECT_EQ(r->enhanced, "4.7.1");
  EXPECT_EQ(r->lines, (std::vector<std::string>{"4.7.1 Try again", "4.7.1 later"}));

  r = ParseMilterReply('y', "550\0"s);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->code, 550);
  EXPECT_EQ(r->enhanced, "");
  EXPECT_EQ(r->lines, (std::vector<std::string>{""}));

  // An enhanced code of the wrong class is just text.
  r = ParseMilterReply('y', "550 4.7.1 odd\0"s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->enhanced, "");
}

TEST(MilterReplyTest, BadReplyCodes) {
  for (const std::string& bad : {
           "250 ok\0"s,                          // not 4xx or 5xx
           "554 5.7.1 no NUL"s,                  // unterminated
           ""s,                                  // nothing
           "55\0"s,                              // short code
           "5x4 no\0"s,                          // not digits
           "554x text\0"s,                       // no separator
           "554 a\0" "554 b\0"s,                  // two strings
           "554-a\r\n451 b\0"s,                  // codes differ
           "554 a\r\n\0"s,                       // empty last line
           "554 a\nX-Injected: 1\0"s,            // bare LF
           "554 a\rb\0"s,                        // bare CR
           "554 a\x01\0"s,                       // control octet
       }) {
    auto r = ParseMilterReply('y', bad);
    EXPECT_FALSE(r.has_value()) << testing::PrintToString(bad);
  }
  auto r = ParseMilterReply('y', "250 ok\0"s);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("neither 4xx nor 5xx"), std::string::npos)
      << r.error().message;
}

TEST(MilterReplyTest, HeaderModifications) {
  auto add = ParseMilterReply('h', "X-Spam\0Yes\0"s);
  ASSERT_TRUE(add.has_value()) << add.error().message;
  EXPECT_EQ(add->kind, Kind::kAddHeader);
  EXPECT_TRUE(add->modification());
  EXPECT_FALSE(add->final());
  EXPECT_EQ(add->name, "X-Spam");
  EXPECT_EQ(add->value, "Yes");

  // rspamd folds with a bare LF; the value comes as sent.
  auto ins = ParseMilterReply('i', U32(1) + "X-Spamd-Result\0default: False\n\t[0.00 / 15.00]\0"s);
  ASSERT_TRUE(ins.has_value()) << ins.error().message;
  EXPECT_EQ(ins->kind, Kind::kInsertHeader);
  EXPECT_EQ(ins->index, 1u);
  EXPECT_EQ(ins->name, "X-Spamd-Result");
  EXPECT_EQ(ins->value, "default: False\n\t[0.00 / 15.00]");
  EXPECT_EQ(MilterValueToCrlf(ins->value), "default: False\r\n\t[0.00 / 15.00]");

  auto del = ParseMilterReply('m', U32(2) + "X-Spam-Status\0\0"s);
  ASSERT_TRUE(del.has_value()) << del.error().message;
  EXPECT_EQ(del->kind, Kind::kChangeHeader);
  EXPECT_EQ(del->index, 2u);
  EXPECT_EQ(del->value, "");  // deletes the second X-Spam-Status

  for (const auto& [cmd, bad] : std::vector<std::pair<char, std::string>>{
           {'h', "X-Spam\0"s},                // no value
           {'h', "X-Spam\0Yes"s},             // value without NUL
           {'h', "X-Spam\0Yes\0extra\0"s},    // three strings
           {'h', "Bad Name\0v\0"s},           // space in the name
           {'h', "Bad:Name\0v\0"s},           // colon in the name
           {'h', "\0v\0"s},                   // empty name
           {'i', "\0\0\0"s},                  // truncated index
           {'m', U32(1) + "Name"s},           // no NUL
           {'m', ""s},                        // nothing at all
       }) {
    EXPECT_FALSE(ParseMilterReply(cmd, bad)) << cmd << " " << testing::PrintToString(bad);
  }
  EXPECT_NE(ParseMilterReply('i', "\0\0"s).error().message.find("header index"),
            std::string::npos);
}

TEST(MilterReplyTest, EnvelopeModifications) {
  auto add = ParseMilterReply('+', "<x@example.org>\0"s);
  ASSERT_TRUE(add.has_value()) << add.error().message;
  EXPECT_EQ(add->kind, Kind::kAddRcpt);
  EXPECT_EQ(add->address, "<x@example.org>");

  auto par = ParseMilterReply('2', "<y@example.org>\0NOTIFY=NEVER\0"s);
  ASSERT_TRUE(par.has_value()) << par.error().message;
  EXPECT_EQ(par->kind, Kind::kAddRcptPar);
  EXPECT_EQ(par->address, "<y@example.org>");
  EXPECT_EQ(par->args, "NOTIFY=NEVER");

  auto del = ParseMilterReply('-', "<z@example.org>\0"s);
  ASSERT_TRUE(del.has_value());
  EXPECT_EQ(del->kind, Kind::kDelRcpt);
  EXPECT_EQ(del->address, "<z@example.org>");

  auto from = ParseMilterReply('e', "<>\0"s);
  ASSERT_TRUE(from.has_value());
  EXPECT_EQ(from->kind, Kind::kChangeFrom);
  EXPECT_EQ(from->address, "<>");
  EXPECT_EQ(from->args, "");
  from = ParseMilterReply('e', "<a@b>\0SIZE=5\0"s);
  ASSERT_TRUE(from.has_value());
  EXPECT_EQ(from->args, "SIZE=5");

  EXPECT_FALSE(ParseMilterReply('+', "<x@y>"s));           // no NUL
  EXPECT_FALSE(ParseMilterReply('+', "<x@y>\0A=1\0"s));     // args not allowed
  EXPECT_FALSE(ParseMilterReply('-', "\0"s));              // empty address
  EXPECT_FALSE(ParseMilterReply('e', "<a>\0b\0c\0"s));     // three strings
}

TEST(MilterReplyTest, BodyQuarantineSymList) {
  std::string chunk = "new body\r\n\0with a NUL"s;
  auto body = ParseMilterReply('b', chunk);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(body->kind, Kind::kReplaceBody);
  EXPECT_EQ(body->body, chunk);

  auto q = ParseMilterReply('q', "virus found\0"s);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->kind, Kind::kQuarantine);
  EXPECT_EQ(q->reason, "virus found");
  EXPECT_FALSE(ParseMilterReply('q', "virus found"s));

  auto l = ParseMilterReply('l', U32(milter::kStageEnvRcpt) + "{rcpt_addr}\0"s);
  ASSERT_TRUE(l.has_value()) << l.error().message;
  EXPECT_EQ(l->kind, Kind::kSetSymList);
  EXPECT_EQ(l->macro_list.stage, milter::kStageEnvRcpt);
  EXPECT_EQ(l->macro_list.names, (std::vector<std::string>{"{rcpt_addr}"}));
  EXPECT_FALSE(ParseMilterReply('l', U32(3) + "{rcpt_addr}"s));
  EXPECT_FALSE(ParseMilterReply('l', U32(3) + "a\0b"s));
}

TEST(MilterReplyTest, UnknownCommand) {
  auto r = ParseMilterReply('Z', "");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("unknown milter reply 'Z'"), std::string::npos);
  EXPECT_FALSE(ParseMilterReply('\x01', ""));
}

TEST(MilterValueToCrlfTest, OnlyBareLf) {
  EXPECT_EQ(MilterValueToCrlf("a\n b\r\n c\n"), "a\r\n b\r\n c\r\n");
  EXPECT_EQ(MilterValueToCrlf("\n"), "\r\n");
  EXPECT_EQ(MilterValueToCrlf("plain"), "plain");
}

// Properties ---------------------------------------------------------------

RC_GTEST_PROP(MilterPropertyTest, PacketsSurviveAnyChunking,
              (const std::vector<std::string>& payloads, unsigned seed)) {
  std::string wire;
  std::vector<MilterPacket> sent;
  for (size_t i = 0; i < payloads.size(); ++i) {
    char command = static_cast<char>('A' + i % 26);
    wire += EncodeMilterPacket(command, payloads[i]);
    sent.push_back({command, payloads[i]});
  }
  MilterReader reader;
  std::vector<MilterPacket> got;
  size_t pos = 0;
  unsigned state = seed | 1;
  while (pos < wire.size()) {
    state = state * 1103515245u + 12345u;
    size_t n = 1 + (state >> 16) % 17;
    RC_ASSERT(reader.Feed(std::string_view(wire).substr(pos, n)));
    pos += n;
    while (reader.HasPacket()) got.push_back(reader.Pop());
  }
  RC_ASSERT(got == sent);
  RC_ASSERT(!reader.partial());
}

RC_GTEST_PROP(MilterPropertyTest, ParserNeverCrashesAndErrorsSaySomething,
              (char command, const std::string& data)) {
  auto r = ParseMilterReply(command, data);
  if (!r) RC_ASSERT(!r.error().message.empty());
  if (r && r->kind == Kind::kReplyCode) {
    RC_ASSERT(r->code >= 400 && r->code <= 599);
    for (const std::string& line : r->lines) {
      RC_ASSERT(line.find_first_of("\r\n") == std::string::npos);
    }
  }
}

}  // namespace
}  // namespace tern::antispam
