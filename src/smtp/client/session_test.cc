// Unit tests of the SMTP client core: the reply parser against broken and
// hostile input, EHLO parsing, and the session state machine driven by
// scripted replies (pipelining, fallbacks, STARTTLS, AUTH, refusals).
#include "smtp/client/session.h"

#include <gtest/gtest.h>

#include "smtp/client/reply.h"

namespace tern::smtp::client {
namespace {

TEST(ReplyParserTest, SingleAndMultiline) {
  ReplyParser p;
  ASSERT_TRUE(p.Feed("250-mx.test hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
                     "550 5.1.1 no such user\r\n"));
  ASSERT_TRUE(p.HasReply());
  Reply r = p.Pop();
  EXPECT_EQ(r.code, 250);
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[2], "SIZE 1000");
  r = p.Pop();
  EXPECT_EQ(r.code, 550);
  EXPECT_EQ(r.enhanced, "5.1.1");
  EXPECT_EQ(r.Text(), "550 5.1.1 no such user");
  EXPECT_TRUE(r.permanent());
}

TEST(ReplyParserTest, SplitAcrossFeedsAndBareLf) {
  ReplyParser p;
  ASSERT_TRUE(p.Feed("22"));
  ASSERT_TRUE(p.Feed("0 hi\n"));
  ASSERT_TRUE(p.HasReply());
  EXPECT_EQ(p.Pop().code, 220);
  ASSERT_TRUE(p.Feed("250"));
  EXPECT_FALSE(p.HasReply());
  ASSERT_TRUE(p.Feed("\r\n"));
  EXPECT_EQ(p.Pop().lines, std::vector<std::string>{""});
}

TEST(ReplyParserTest, RejectsBadCodes) {
  for (const char* bad : {"abc hello\r\n", "25\r\n", "199 x\r\n", "650 x\r\n",
                          "260 x\r\n", "250_x\r\n", "2 50 x\r\n"}) {
    ReplyParser p;
    EXPECT_FALSE(p.Feed(bad)) << bad;
    EXPECT_TRUE(p.failed());
    EXPECT_FALSE(p.Feed("250 ok\r\n"));  // dead after an error
  }
}

TEST(ReplyParserTest, RejectsMixedMultilineCodes) {
  ReplyParser p;
  EXPECT_FALSE(p.Feed("250-first\r\n550 second\r\n"));
  EXPECT_NE(p.error().find("mixes codes"), std::string::npos);
}

TEST(ReplyParserTest, NeverEndingLineIsBounded) {
  ReplyParser p;
  std::string chunk(1000, 'x');
  bool ok = p.Feed("250 ");
  for (int i = 0; i < 10 && ok; ++i) ok = p.Feed(chunk);
  EXPECT_FALSE(ok);
  EXPECT_NE(p.error().find("longer than"), std::string::npos);
}

TEST(ReplyParserTest, EndlessMultilineIsBounded) {
  ReplyParser p;
  bool ok = true;
  for (int i = 0; i < 1000 && ok; ++i) ok = p.Feed("250-more\r\n");
  EXPECT_FALSE(ok);
}

TEST(ReplyParserTest, ControlCharactersAreCleaned) {
  ReplyParser p;
  ASSERT_TRUE(p.Feed(std::string("550 bad\x1b[31m\0x\r\n", 16)));
  Reply r = p.Pop();
  EXPECT_EQ(r.lines[0].find('\x1b'), std::string::npos);
  EXPECT_EQ(r.lines[0].find('\0'), std::string::npos);
}

TEST(ReplyParserTest, EnhancedCodeMustMatchClass) {
  ReplyParser p;
  ASSERT_TRUE(p.Feed("550 4.1.1 odd\r\n250 2.1.5 ok\r\n451 4.3.0.1 no\r\n"));
  EXPECT_EQ(p.Pop().enhanced, "");
  EXPECT_EQ(p.Pop().enhanced, "2.1.5");
  EXPECT_EQ(p.Pop().enhanced, "");
}

TEST(EhloTest, Keywords) {
  ReplyParser p;
  ASSERT_TRUE(p.Feed(
      "250-mx\r\n250-pipelining\r\n250-SIZE 5000\r\n250-8BITMIME\r\n"
      "250-AUTH=LOGIN\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n"
      "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"));
  Capabilities c = ParseEhlo(p.Pop());
  EXPECT_TRUE(c.pipelining && c.eightbitmime && c.starttls && c.dsn &&
              c.smtputf8 && c.chunking && c.size);
  EXPECT_EQ(c.size_limit, 5000u);
  EXPECT_EQ(c.auth, (std::vector<std::string>{"LOGIN", "PLAIN", "LOGIN"}));
}

// Feeds a reply and returns (and clears) what the session wrote.
std::string Step(ClientSession& s, const std::string& reply) {
  s.Feed(reply);
  std::string out = s.output();
  s.ClearOutput();
  return out;
}

TxnRequest Txn(std::vector<std::string> rcpts) {
  TxnRequest t;
  t.sender = "a@x.test";
  for (auto& r : rcpts) t.rcpts.push_back({r, "", ""});
  t.size = 100;
  return t;
}

TEST(ClientSessionTest, PipelinedTransaction) {
  ClientSession s(ClientOptions{"me.test"});
  EXPECT_EQ(Step(s, "220 hi\r\n"), "EHLO me.test\r\n");
  Step(s, "250-mx\r\n250-PIPELINING\r\n250 SIZE\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kReady);
  s.StartTransaction(Txn({"b@y.test", "c@y.test"}));
  EXPECT_EQ(s.output(),
            "MAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\n"
            "RCPT TO:<c@y.test>\r\nDATA\r\n");
  s.ClearOutput();
  Step(s, "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kBody);
  EXPECT_FALSE(s.use_bdat());
  s.BodySent();
  Step(s, "250 queued\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  TxnResult r = s.TakeResult();
  EXPECT_TRUE(r.For(0).positive());
  EXPECT_EQ(r.For(1).code, 550);
  EXPECT_EQ(s.need(), ClientSession::Need::kReady);
  s.Quit();
  EXPECT_EQ(s.output(), "QUIT\r\n");
}

// The I/O layer times each reply from the last complete one (RFC 5321
// 4.5.3.2): octets of an unfinished reply must not count as progress.
TEST(ClientSessionTest, RepliesCountsOnlyCompleteReplies) {
  ClientSession s(ClientOptions{"me.test"});
  EXPECT_EQ(s.replies(), 0u);
  Step(s, "220 hi\r\n");
  EXPECT_EQ(s.replies(), 1u);
  Step(s, "250-mx\r\n250-PIPELINING\r\n");
  Step(s, "250-SIZE");
  EXPECT_EQ(s.replies(), 1u);
  Step(s, "\r\n250 8BITMIME\r\n");
  EXPECT_EQ(s.replies(), 2u);
  ASSERT_EQ(s.need(), ClientSession::Need::kReady);
}

TEST(ClientSessionTest, UnpipelinedStopsAfterMailRefusal) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  Step(s, "250 mx\r\n");
  s.StartTransaction(Txn({"b@y.test"}));
  EXPECT_EQ(s.output(), "MAIL FROM:<a@x.test>\r\n");
  s.ClearOutput();
  Step(s, "451 4.3.0 later\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  TxnResult r = s.TakeResult();
  EXPECT_TRUE(r.For(0).transient());
  EXPECT_EQ(s.output(), "RSET\r\n");
  s.ClearOutput();
  Step(s, "250 ok\r\n");
  EXPECT_EQ(s.need(), ClientSession::Need::kReady);
}

TEST(ClientSessionTest, AllRecipientsRefusedWithPipelinedData) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  Step(s, "250-mx\r\n250 PIPELINING\r\n");
  s.StartTransaction(Txn({"b@y.test"}));
  s.ClearOutput();
  // RFC 2920: the server took DATA anyway; the client ends it empty.
  EXPECT_EQ(Step(s, "250 ok\r\n550 no\r\n354 go\r\n"), ".\r\n");
  Step(s, "554 no valid recipients\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  EXPECT_EQ(s.TakeResult().For(0).code, 550);
}

// A server that answers DATA with 250 never received the body: that must
// not count as delivered (found by the smtp_client_reply fuzzer).
TEST(ClientSessionTest, DataAnsweredWithSuccessIsAProtocolError) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  Step(s, "250-mx\r\n250 PIPELINING\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kReady);
  s.StartTransaction(Txn({"b@y.test"}));
  s.ClearOutput();
  Step(s, "250 ok\r\n250 ok\r\n250 2.0.0 Ok\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  auto r = s.TakeResult();
  EXPECT_FALSE(r.For(0).positive());
  EXPECT_EQ(r.For(0).code / 100, 4);
}

TEST(ClientSessionTest, HeloFallback) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  EXPECT_EQ(Step(s, "502 what\r\n"), "HELO me.test\r\n");
  Step(s, "250 hello\r\n");
  EXPECT_EQ(s.need(), ClientSession::Need::kReady);
  EXPECT_FALSE(s.capabilities().esmtp);
}

TEST(ClientSessionTest, GreetingRefused) {
  ClientSession s(ClientOptions{"me.test"});
  EXPECT_EQ(Step(s, "554 go away\r\n"), "QUIT\r\n");
  EXPECT_EQ(s.need(), ClientSession::Need::kClosed);
  EXPECT_EQ(s.failure()->code, 554);
}

TEST(ClientSessionTest, StartTlsThenAuthPlain) {
  ClientOptions o{"me.test", TlsPolicy::kRequired, "user", "pw"};
  ClientSession s(o);
  Step(s, "220 hi\r\n");
  EXPECT_EQ(Step(s, "250-mx\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n"),
            "STARTTLS\r\n");
  Step(s, "220 go ahead\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kStartTls);
  s.TlsStarted(true, "");
  EXPECT_EQ(s.output(), "EHLO me.test\r\n");
  s.ClearOutput();
  // base64("\0user\0pw")
  EXPECT_EQ(Step(s, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n"),
            "AUTH PLAIN AHVzZXIAcHc=\r\n");
  Step(s, "235 ok\r\n");
  EXPECT_EQ(s.need(), ClientSession::Need::kReady);
}

TEST(ClientSessionTest, RequiredTlsNotOffered) {
  ClientSession s(ClientOptions{"me.test", TlsPolicy::kRequired});
  Step(s, "220 hi\r\n");
  Step(s, "250 mx\r\n");
  EXPECT_EQ(s.need(), ClientSession::Need::kClosed);
  EXPECT_EQ(s.failure()->code, 451);
}

TEST(ClientSessionTest, NoCredentialsInClear) {
  ClientSession s(ClientOptions{"me.test", TlsPolicy::kOpportunistic, "u", "p"});
  Step(s, "220 hi\r\n");
  std::string out = Step(s, "250-mx\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(out.find("AUTH"), std::string::npos);
  EXPECT_EQ(s.need(), ClientSession::Need::kClosed);
}

TEST(ClientSessionTest, RefusesWhatThePeerCannotTake) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  Step(s, "250-mx\r\n250 SIZE 50\r\n");
  s.StartTransaction(Txn({"b@y.test"}));  // 100 octets
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  EXPECT_TRUE(s.output().empty());
  TxnResult r = s.TakeResult();
  EXPECT_EQ(r.For(0).Status(), "5.3.4");
  TxnRequest t = Txn({"b@y.test"});
  t.size = 10;
  t.has_8bit = true;
  s.StartTransaction(t);
  EXPECT_EQ(s.TakeResult().For(0).Status(), "5.6.3");
  t.has_8bit = false;
  t.smtputf8 = true;
  s.StartTransaction(t);
  EXPECT_EQ(s.TakeResult().For(0).Status(), "5.6.7");
}

// RFC 8689 4.2.1: REQUIRETLS goes only over TLS to a peer offering it.
TEST(ClientSessionTest, RequireTls) {
  TxnRequest t = Txn({"b@y.test"});
  t.requiretls = true;
  {
    // No TLS at all.
    ClientSession s(ClientOptions{"me.test"});
    Step(s, "220 hi\r\n");
    Step(s, "250-mx\r\n250 REQUIRETLS\r\n");
    s.StartTransaction(t);
    EXPECT_TRUE(s.output().empty());
    EXPECT_EQ(s.TakeResult().For(0).Status(), "5.7.30");
  }
  ClientSession s(ClientOptions{"me.test", TlsPolicy::kRequired});
  Step(s, "220 hi\r\n");
  Step(s, "250-mx\r\n250 STARTTLS\r\n");
  Step(s, "220 go ahead\r\n");
  s.TlsStarted(true, "");
  s.ClearOutput();
  Step(s, "250-mx\r\n250 PIPELINING\r\n");
  s.StartTransaction(t);  // TLS, but REQUIRETLS is not offered
  EXPECT_TRUE(s.output().empty());
  TxnResult r = s.TakeResult();
  EXPECT_EQ(r.For(0).code, 550);
  EXPECT_EQ(r.For(0).Status(), "5.7.30");

  ClientSession ok(ClientOptions{"me.test", TlsPolicy::kRequired});
  Step(ok, "220 hi\r\n");
  Step(ok, "250-mx\r\n250 STARTTLS\r\n");
  Step(ok, "220 go ahead\r\n");
  ok.TlsStarted(true, "");
  ok.ClearOutput();
  Step(ok, "250-mx\r\n250-PIPELINING\r\n250 REQUIRETLS\r\n");
  ok.StartTransaction(t);
  EXPECT_EQ(ok.output().substr(0, ok.output().find("\r\n")),
            "MAIL FROM:<a@x.test> REQUIRETLS");
}

TEST(ClientSessionTest, DsnAndBdat) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  Step(s, "250-mx\r\n250-PIPELINING\r\n250-DSN\r\n250-8BITMIME\r\n250 CHUNKING\r\n");
  TxnRequest t = Txn({"b@y.test"});
  t.rcpts[0].notify = "SUCCESS,FAILURE";
  t.rcpts[0].orcpt = "rfc822;b@y.test";
  t.ret = "HDRS";
  t.envid = "abc";
  t.body_8bitmime = true;
  s.StartTransaction(t);
  EXPECT_EQ(s.output(),
            "MAIL FROM:<a@x.test> BODY=8BITMIME RET=HDRS ENVID=abc\r\n"
            "RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.test\r\n");
  s.ClearOutput();
  Step(s, "250 ok\r\n250 ok\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kBody);
  EXPECT_TRUE(s.use_bdat());
  s.BodySent();
  Step(s, "250 done\r\n");
  TxnResult r = s.TakeResult();
  EXPECT_TRUE(r.dsn_passed);
  EXPECT_TRUE(r.For(0).positive());
}

TEST(ClientSessionTest, ConnectionLostMidTransaction) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n");
  Step(s, "250-mx\r\n250 PIPELINING\r\n");
  s.StartTransaction(Txn({"b@y.test"}));
  Step(s, "250 ok\r\n");
  s.ConnectionLost("reset");
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  EXPECT_TRUE(s.TakeResult().For(0).transient());
  EXPECT_EQ(s.need(), ClientSession::Need::kClosed);
}

TEST(ClientSessionTest, UnsolicitedRepliesAreAnError) {
  ClientSession s(ClientOptions{"me.test"});
  Step(s, "220 hi\r\n250 extra\r\n250 more\r\n");
  EXPECT_EQ(s.need(), ClientSession::Need::kClosed);
}

TEST(DotStufferTest, StuffsAcrossChunks) {
  DotStuffer d;
  std::string out;
  d.Convert(".a\r\nb\r", out);
  d.Convert("\n.", out);
  d.Convert(".c", out);
  d.Finish(out);
  EXPECT_EQ(out, "..a\r\nb\r\n...c\r\n.\r\n");
}

// One-shot reference: every line that starts with "." gets another one
// (RFC 5321 4.5.2); an unterminated last line is ended with CRLF.
std::string StuffWhole(std::string_view in) {
  std::string out;
  bool line_start = true;
  for (char c : in) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  if (!in.empty() && in.back() == '\r') {
    out += '\n';
  } else if (!in.empty() && in.back() != '\n') {
    out += "\r\n";
  }
  return out + ".\r\n";
}

std::string StuffPieces(std::string_view in, const std::vector<size_t>& cuts) {
  DotStuffer d;
  std::string out;
  size_t from = 0;
  for (size_t cut : cuts) {
    d.Convert(in.substr(from, cut - from), out);
    from = cut;
  }
  d.Convert(in.substr(from), out);
  d.Finish(out);
  return out;
}

TEST(DotStufferTest, DotOpensTheNextPiece) {
  // The line starts in the piece before; its "." is the next piece's first octet.
  EXPECT_EQ(StuffPieces("a\r\n.b\r\n", {3}), "a\r\n..b\r\n.\r\n");
  // The lone "." line, which would end DATA early if not stuffed.
  EXPECT_EQ(StuffPieces("a\r\n.\r\nb\r\n", {3, 4}), "a\r\n..\r\nb\r\n.\r\n");
  // A "." in mid-line at the start of a piece stays single.
  EXPECT_EQ(StuffPieces("ab.c\r\n", {2}), "ab.c\r\n.\r\n");
}

TEST(DotStufferTest, CrlfSplitBetweenPieces) {
  EXPECT_EQ(StuffPieces("a\r\n.b\r\n", {2}), "a\r\n..b\r\n.\r\n");
  EXPECT_EQ(StuffPieces("a\r\n..b", {1, 2, 3, 4}), "a\r\n...b\r\n.\r\n");
  // The message ends between CR and LF: the LF is added, then the dot.
  EXPECT_EQ(StuffPieces("a\r", {}), "a\r\n.\r\n");
  EXPECT_EQ(StuffPieces("a\r\n", {2}), "a\r\n.\r\n");
}

TEST(DotStufferTest, EmptyPiecesChangeNothing) {
  EXPECT_EQ(StuffPieces(".a\r\n.b", {0, 0, 4, 4, 4}), "..a\r\n..b\r\n.\r\n");
  EXPECT_EQ(StuffPieces("", {0}), ".\r\n");
}

TEST(DotStufferTest, EverySplitMatchesTheWholeMessage) {
  const std::string msg =
      ".top\r\nSubject: x\r\n\r\n..two\r\n.\r\n\r\n.\r\nmid.dot\r\n."
      "\r\n.\r\r\n.last";
  const std::string want = StuffWhole(msg);
  EXPECT_EQ(StuffPieces(msg, {}), want);
  for (size_t i = 0; i <= msg.size(); ++i) {
    for (size_t j = i; j <= msg.size(); ++j) {
      ASSERT_EQ(StuffPieces(msg, {i, j}), want) << "cut at " << i << ", " << j;
    }
  }
  // And one octet at a time.
  std::vector<size_t> every;
  for (size_t i = 1; i < msg.size(); ++i) every.push_back(i);
  EXPECT_EQ(StuffPieces(msg, every), want);
}

MessageScan ScanPieces(std::string_view in, const std::vector<size_t>& cuts) {
  MessageScan scan;
  size_t from = 0;
  for (size_t cut : cuts) {
    scan.Feed(in.substr(from, cut - from));
    from = cut;
  }
  scan.Feed(in.substr(from));
  scan.Finish();
  return scan;
}

TEST(MessageScanTest, TlsRequiredNoInTheHeaderOnly) {
  const std::string yes = "From: a@b\r\ntls-required:   no \r\n\r\nbody\r\n";
  for (size_t i = 0; i <= yes.size(); ++i) {
    MessageScan s = ScanPieces(yes, {i});
    EXPECT_TRUE(s.tls_required_no()) << "cut at " << i;
    EXPECT_FALSE(s.has_8bit());
  }
  // After the blank line it is body text.
  const std::string body = "From: a@b\r\n\r\nTLS-Required: No\r\n";
  for (size_t i = 0; i <= body.size(); ++i)
    EXPECT_FALSE(ScanPieces(body, {i}).tls_required_no()) << "cut at " << i;
  EXPECT_FALSE(ScanPieces("TLS-Required: Yes\r\n\r\n", {}).tls_required_no());
  // The end of the header section is known as soon as its blank line is in.
  MessageScan partial;
  partial.Feed("A: b\r\n\r");
  EXPECT_FALSE(partial.header_done());
  partial.Feed("\nbody");
  EXPECT_TRUE(partial.header_done());
  EXPECT_FALSE(ScanPieces("X-TLS-Required: No\r\n\r\n", {}).tls_required_no());
  // An unterminated last header line counts too.
  EXPECT_TRUE(ScanPieces("A: b\r\nTLS-Required: No", {10}).tls_required_no());
  // A line too long to be the field is not taken for it.
  std::string long_line = "TLS-Required: No" + std::string(2000, ' ') + "x\r\n\r\n";
  EXPECT_FALSE(ScanPieces(long_line, {100, 1500}).tls_required_no());
}

TEST(MessageScanTest, EightBitAnywhere) {
  std::string msg = "A: b\r\n\r\n" + std::string(100000, 'x') + "\xc3\xa9\r\n";
  EXPECT_TRUE(ScanPieces(msg, {65536}).has_8bit());
  EXPECT_TRUE(ScanPieces(msg, {msg.size() - 3}).has_8bit());
  EXPECT_FALSE(ScanPieces(std::string(100000, 'x'), {500}).has_8bit());
}

}  // namespace
}  // namespace tern::smtp::client
