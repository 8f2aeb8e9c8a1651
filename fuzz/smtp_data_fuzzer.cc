// Round trip of message content through SMTP: a body dot-stuffed by the
// outbound client's DotStuffer (or framed by BDAT) and fed to the server
// session must come out of SessionHost::MessageData exactly as it went in.
//
// Input: 3 header bytes, then the body.
//   [0] mode: 0 DATA (body normalized to CRLF lines of legal length),
//       1 BDAT with the normalized body, 2 BDAT with the raw bytes (then
//       the oracle decides whether the server must accept or refuse)
//   [1] chunk seed, [2] max chunk length (0: everything at once)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "smtp/client/session.h"
#include "smtp/protocol/session.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::smtp;

class RecordingHost : public SessionHost {
 public:
  RcptVerdict CheckRecipient(const Transaction&, const Mailbox&) override {
    return {};
  }
  std::string BeginMessage(const Transaction&) override {
    open = true;
    calls = 0;
    body.clear();
    return "Q1";
  }
  bool MessageData(std::string_view data) override {
    if (calls++ > 0) body.append(data);  // the first call is Received:
    return true;
  }
  void AbortMessage() override { open = false; }
  std::string Now() override { return "Thu, 1 Jan 2026 00:00:00 +0000"; }

  bool open = false;
  int calls = 0;
  std::string body;
};

// RFC 5321 4.5.3.1.6: 1000 octets per line with CRLF.
constexpr size_t kLineLimit = 1000;

// RFC 5321 4.5.3.1.6 does not count the dot added for transparency. With
// the known finding "stuffed-dot-counted" listed in TERN_FUZZ_KNOWN, lines
// starting with '.' are cut one octet shorter so fuzzing can go on past it
// (regressions/smtp_data/dot-line-998-octets).
bool CountStuffedDot() {
  static const bool set = tern::fuzz::Known("stuffed-dot-counted");
  return set;
}

// Lines split at LF, CRs dropped, each cut to the line limit, CRLF ends.
std::string Normalize(std::string_view raw) {
  std::string out;
  size_t len = 0;
  bool dot = false;
  for (char c : raw) {
    if (c == '\r') continue;
    if (c == '\n') {
      out += "\r\n";
      len = 0;
      continue;
    }
    if (len == 0) dot = c == '.' && CountStuffedDot();
    if (len + 2 + (dot ? 1 : 0) < kLineLimit) {
      out += c;
      ++len;
    }
  }
  if (len > 0) out += "\r\n";
  return out;
}

// The simplest statement of RFC 5321 4.5.2, for comparison.
std::string ReferenceStuff(std::string_view body) {
  std::string out;
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  return out + ".\r\n";
}

// Whether a BDAT body must be accepted, and what is stored then.
bool BdatAcceptable(std::string_view raw, std::string* stored) {
  if (!tern::fuzz::OnlyCrlfLineEnds(raw)) return false;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t eol = raw.find("\r\n", pos);
    size_t end = eol == std::string_view::npos ? raw.size() : eol;
    if (end - pos + 2 > kLineLimit) return false;
    pos = eol == std::string_view::npos ? raw.size() : eol + 2;
  }
  stored->assign(raw);
  if (!raw.empty() && raw.back() != '\n') *stored += "\r\n";
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 3);
  uint8_t mode = in.byte(0) % 3;
  std::string_view raw = in.body();

  std::string body = mode == 2 ? std::string(raw) : Normalize(raw);
  std::string expected;
  bool acceptable = BdatAcceptable(body, &expected);
  FUZZ_CHECK(mode == 2 || (acceptable && expected == body),
             "normalization produced an unacceptable body");

  std::string wire =
      "EHLO client.example.org\r\n"
      "MAIL FROM:<sender@example.org>\r\n"
      "RCPT TO:<rcpt@example.test>\r\n";
  if (mode == 0) {
    // The client's stuffer, fed in pieces to cross its chunk boundaries.
    wire += "DATA\r\n";
    client::DotStuffer stuffer;
    std::string stuffed;
    tern::fuzz::Chunker pieces(body, in.byte(1) ^ 0x5a, in.byte(2));
    while (!pieces.done()) stuffer.Convert(pieces.Next(), stuffed);
    stuffer.Finish(stuffed);
    FUZZ_CHECK(stuffed == ReferenceStuff(body),
               "DotStuffer output differs from RFC 5321 4.5.2: %s",
               Printable(stuffed).c_str());
    wire += stuffed;
  } else {
    // BDAT chunks of input-chosen sizes; the last carries LAST.
    tern::fuzz::Chunker pieces(body, in.byte(1) ^ 0xa5, in.byte(2));
    if (pieces.done()) wire += "BDAT 0 LAST\r\n";
    while (!pieces.done()) {
      std::string_view piece = pieces.Next();
      wire += "BDAT " + std::to_string(piece.size()) +
              (pieces.done() ? " LAST\r\n" : "\r\n");
      wire.append(piece);
    }
  }

  SessionConfig config;
  config.hostname = "mx.example.test";
  config.max_received_headers = UINT32_MAX;
  config.max_errors = 0;
  RecordingHost host;
  Session s(config, host, ClientInfo{});
  s.Greet();
  tern::fuzz::Chunker chunks(wire, in.byte(1), in.byte(2));
  bool committed = false;
  while (!chunks.done()) {
    std::string_view chunk = chunks.Next();
    while (!chunk.empty()) {
      size_t used = s.Feed(chunk);
      chunk.remove_prefix(used);
      if (s.need() == Need::kCommit) {
        FUZZ_CHECK(!committed, "two commits for one message");
        committed = true;
        FUZZ_CHECK(acceptable, "refusable body accepted: %s",
                   Printable(body).c_str());
        FUZZ_CHECK(host.body == expected,
                   "stored content differs\n  sent:   %s\n  stored: %s",
                   Printable(expected).c_str(), Printable(host.body).c_str());
        s.Committed(true);
        host.open = false;
      }
      FUZZ_CHECK(s.need() == Need::kInput, "session stopped: %s",
                 Printable(s.output(), 2000).c_str());
    }
  }
  FUZZ_CHECK(committed == acceptable,
             "body %s but the session %s it; replies: %s",
             acceptable ? "acceptable" : "refusable",
             committed ? "accepted" : "did not accept",
             Printable(s.output(), 2000).c_str());
  return 0;
}
