// Fuzzes the outbound SMTP client's reply parser (smtp/client/reply.h) with
// hostile server bytes, and (mode 1) the client session driven by them:
// replies stay bounded and clean, credentials and mail never go in clear
// text when TLS is required, and delivery is never reported without it.
//
// Input: 4 header bytes, then the server's bytes.
//   [0] bits: 1 drive a ClientSession (else the parser alone), 2|4 TLS
//       policy (none, opportunistic, required), 8 AUTH credentials set,
//       16 TLS handshake fails, 32 8-bit/SMTPUTF8 message, 64 big message
//   [1] recipients (%4 + 1)
//   [2] chunk seed, [3] max chunk length (0: one Feed)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "smtp/client/reply.h"
#include "smtp/client/session.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::smtp::client;

void CheckReply(const Reply& r) {
  FUZZ_CHECK(r.code >= 200 && r.code <= 559 && r.code % 100 / 10 <= 5,
             "reply code %d", r.code);
  FUZZ_CHECK(!r.lines.empty() && r.lines.size() <= ReplyParser::kMaxLines,
             "%zu lines", r.lines.size());
  for (const std::string& l : r.lines) {
    FUZZ_CHECK(l.size() <= ReplyParser::kMaxLine, "line of %zu", l.size());
    for (char c : l) {
      unsigned char u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u >= 0x20 && u != 0x7f, "control octet kept: %s",
                 Printable(l).c_str());
    }
  }
  if (!r.enhanced.empty()) {
    const std::string& e = r.enhanced;
    FUZZ_CHECK(e[0] - '0' == r.code / 100 && e.size() >= 5 && e.size() <= 9 &&
                   e[1] == '.' && r.lines[0].rfind(e, 0) == 0,
               "enhanced code %s for %d", Printable(e).c_str(), r.code);
  }
  std::string status = r.Status();
  FUZZ_CHECK(status.size() >= 5 &&
                 (status[0] == '2' || status[0] == '4' || status[0] == '5' ||
                  status[0] == '3') &&
                 status[1] == '.',
             "status %s", Printable(status).c_str());
}

bool SameReply(const Reply& a, const Reply& b) {
  return a.code == b.code && a.enhanced == b.enhanced && a.lines == b.lines;
}

void ParserOnly(std::string_view text, uint8_t seed, uint8_t max_chunk) {
  ReplyParser whole;
  whole.Feed(text);
  std::vector<Reply> expected;
  while (whole.HasReply()) expected.push_back(whole.Pop());

  ReplyParser parts;
  std::vector<Reply> got;
  tern::fuzz::Chunker chunks(text, seed, max_chunk);
  while (!chunks.done()) {
    bool ok = parts.Feed(chunks.Next());
    FUZZ_CHECK(ok == !parts.failed(), "Feed result and failed() disagree");
    while (parts.HasReply()) got.push_back(parts.Pop());
  }
  // Chunk boundaries must not change what is read.
  FUZZ_CHECK(whole.failed() == parts.failed() && whole.error() == parts.error(),
             "failure differs with chunking: '%s' vs '%s'",
             whole.error().c_str(), parts.error().c_str());
  FUZZ_CHECK(got.size() == expected.size(), "%zu replies vs %zu", got.size(),
             expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(SameReply(got[i], expected[i]), "reply %zu differs", i);
    CheckReply(got[i]);
  }
  if (parts.failed())
    FUZZ_CHECK(!parts.Feed("250 ok\r\n"), "fed after failure");
}

// Client commands: CRLF lines, no control octets (addresses and names come
// from our own queue, so nothing the server said may appear in them).
void CheckCommands(const std::string& out) {
  FUZZ_CHECK(out.empty() || (out.size() >= 2 &&
                             out.compare(out.size() - 2, 2, "\r\n") == 0),
             "unterminated command: %s", Printable(out).c_str());
  FUZZ_CHECK(tern::fuzz::OnlyCrlfLineEnds(out), "bare CR/LF in commands: %s",
             Printable(out).c_str());
}

void DriveSession(std::string_view text, const tern::fuzz::Input& in) {
  uint8_t bits = in.byte(0);
  ClientOptions options;
  options.helo_name = "mx.example.test";
  int policy = (bits >> 1) & 3;
  options.tls = policy == 0   ? TlsPolicy::kNone
                : policy == 1 ? TlsPolicy::kOpportunistic
                              : TlsPolicy::kRequired;
  if (bits & 8) {
    options.auth_user = "relay-user";
    options.auth_password = "relay-password";
  }
  TxnRequest req;
  req.sender = "sender@example.test";
  for (int i = 0; i <= in.byte(1) % 4; ++i) {
    req.rcpts.push_back({"rcpt" + std::to_string(i) + "@example.org",
                         i == 0 ? "SUCCESS,FAILURE" : "",
                         i == 0 ? "rfc822;rcpt0@example.org" : ""});
  }
  req.size = (bits & 64) ? 100000000 : 1234;
  req.has_8bit = req.body_8bitmime = req.smtputf8 = bits & 32;
  req.ret = "HDRS";
  req.envid = "QID1";

  ClientSession s(options);
  tern::fuzz::Chunker chunks(text, in.byte(2), in.byte(3));
  int transactions = 0;
  bool tls_tried = false;
  bool body_sent = false;  // the I/O layer was asked to send the message
  // RFC 3207 / our policy: nothing after the EHLO goes out in clear text
  // when TLS is required, and credentials never do. Checked after every
  // step, before the next one can start TLS.
  auto drain = [&] {
    const std::string& out = s.output();
    CheckCommands(out);
    bool clear = !s.tls_active();
    if (clear && options.tls == TlsPolicy::kRequired) {
      FUZZ_CHECK(out.find("MAIL FROM") == std::string::npos,
                 "mail sent in clear text with TLS required: %s",
                 Printable(out).c_str());
    }
    if (clear) {
      FUZZ_CHECK(out.find("AUTH") == std::string::npos,
                 "credentials sent without TLS: %s", Printable(out).c_str());
    }
    s.ClearOutput();
  };
  // Server data is also cut after each LF: a real server answers only what
  // it was asked, so whole lines never run ahead of the client's commands
  // (the fuzzer still moves the cuts inside lines).
  std::string_view piece;
  while (s.need() != ClientSession::Need::kClosed) {
    if (piece.empty()) {
      if (chunks.done()) break;
      piece = chunks.Next();
    }
    size_t lf = piece.find('\n');
    size_t n = lf == std::string_view::npos ? piece.size() : lf + 1;
    s.Feed(piece.substr(0, n));
    piece.remove_prefix(n);
    drain();
    for (int rounds = 0; s.need() != ClientSession::Need::kReply &&
                         s.need() != ClientSession::Need::kClosed;
         ++rounds) {
      FUZZ_CHECK(rounds < 100, "session does not settle");
      switch (s.need()) {
        case ClientSession::Need::kStartTls:
          FUZZ_CHECK(!tls_tried && !s.tls_active(), "STARTTLS twice");
          tls_tried = true;
          s.TlsStarted(!(bits & 16), "handshake failure");
          break;
        case ClientSession::Need::kBody:
          body_sent = true;
          s.BodySent();
          break;
        case ClientSession::Need::kReady:
          if (transactions++ < 2) {
            body_sent = false;
            s.StartTransaction(req);
          } else {
            s.Quit();
          }
          break;
        case ClientSession::Need::kResult: {
          TxnResult r = s.TakeResult();
          FUZZ_CHECK(r.rcpt.size() == req.rcpts.size(), "%zu rcpt replies",
                     r.rcpt.size());
          // Known finding "data-250": a 2xx answer to DATA is taken as the
          // final reply (regressions/smtp_client_reply/data-answered-250*).
          if (!body_sent && tern::fuzz::Known("data-250")) break;
          bool any = false;
          for (const Reply& rr : r.rcpt) any |= rr.positive();
          if (r.final_reply.positive() && !r.refused) {
            FUZZ_CHECK(r.mail.positive() && any,
                       "delivery reported without MAIL and a recipient");
          }
          // outbound.cc marks a recipient delivered when For(i) is
          // positive: that must mean the server took the message itself.
          for (size_t i = 0; i < req.rcpts.size(); ++i) {
            if (r.For(i).positive()) {
              FUZZ_CHECK(r.rcpt[i].positive() && r.final_reply.positive(),
                         "recipient %zu delivered without acceptance", i);
              FUZZ_CHECK(body_sent,
                         "recipient %zu reported delivered (%s) but the "
                         "message was never sent",
                         i, r.final_reply.Text().c_str());
            }
          }
          break;
        }
        default:
          break;
      }
      drain();
    }
  }
  if (s.need() == ClientSession::Need::kReply) s.ConnectionLost("EOF");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 4);
  if (in.byte(0) & 1) {
    DriveSession(in.body(), in);
  } else {
    ParserOnly(in.body(), in.byte(2), in.byte(3));
  }
  return 0;
}
