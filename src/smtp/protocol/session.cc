// SMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
// ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS, AUTH): turns client bytes
// into replies and host calls. All framing decisions (what ends a line, a message, a chunk)
// are made here, strictly, so that no input can be read two ways.
#include "smtp/protocol/session.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/base64.h"
#include "common/strings.h"
#include "smtp/protocol/body_reader.h"
#include "smtp/protocol/params.h"
#include "smtp/protocol/rfc5322.h"

namespace tern::smtp {
namespace {

// RFC 5321 4.5.3.1.4 lets extensions lengthen MAIL and RCPT lines; RFC 1870,
// RFC 3461 and RFC 6531 parameters fit in this much more.
constexpr size_t kExtensionAllowance = 600;
// RFC 5321 4.5.3.1.2: a domain (the EHLO argument) is at most 255 octets.
// Bounding it also keeps the Received: lines below 998 octets.
constexpr size_t kMaxHelo = 255;
// Message content is handed to the host in slices of at most this size so
// that a large Feed() never needs a large copy.
constexpr size_t kSlice = 64 * 1024;
// RFC 4954 4: AUTH lines and SASL responses may be 12288 octets long,
// CRLF included.
constexpr size_t kSaslLine = 12288 - 2;
// RFC 5321 4.2.2 / 4.3.2 (452 to DATA and after the data), RFC 3463 X.3.1
// "mail system full": the spool has no room; the client should try later.
constexpr char kNoStorage[] = "452 4.3.1 Insufficient system storage";

enum class Mode : uint8_t { kCommand, kData, kBdat };

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x80;
  });
}

bool IsAscii(const Mailbox& m) { return IsAscii(m.local) && IsAscii(m.domain); }

std::string_view SkipSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

}  // namespace

struct Session::Impl {
  Impl(const SessionConfig& c, SessionHost& h, ClientInfo ci)
      : config(c), host(h), client(std::move(ci)) {}

  SessionConfig config;
  SessionHost& host;
  ClientInfo client;
  std::string out;
  Need need = Need::kInput;
  Mode mode = Mode::kCommand;
  bool helo_done = false;     // EHLO or HELO accepted
  bool mail_open = false;     // MAIL accepted, transaction not ended
  bool message_open = false;  // host.BeginMessage() gave a queue id
  bool bdat_used = false;     // this transaction's content comes by BDAT
  bool write_failed = false;  // host.MessageData() returned false
  uint32_t errors = 0;
  std::chrono::milliseconds delay{0};
  Transaction t;
  std::string queue_id;

  // The command line being assembled; bounded by the line limits.
  std::string line;
  size_t line_len = 0;  // octets seen, including those not buffered
  bool line_cr = false;
  bool line_bare = false;
  bool line_nul = false;

  BodyReader body;
  std::string pending;  // content not yet handed to host.MessageData()

  // The BDAT chunk being read.
  uint64_t bdat_size = 0;
  uint64_t bdat_left = 0;
  bool bdat_last = false;
  bool bdat_reset_after = false;
  const char* bdat_discard = nullptr;  // set: drop the chunk, then reply this

  // The SASL exchange in progress (RFC 4954 4); null outside AUTH.
  std::unique_ptr<auth::SaslMechanism> sasl;
  std::string sasl_name;
  std::string sasl_done_user;  // success with final data: awaiting "" reply
  bool sasl_start = false;      // the pending step is Start, not Next
  std::optional<std::string> sasl_input;  // its input
  std::string tls_version;     // "TLSv1.3", for the Received: header
  std::string tls_cipher;

  size_t BaseLimit() const {
    // Content octets per command line; the limit includes the CRLF.
    return config.command_line_limit > 2 ? config.command_line_limit - 2 : 0;
  }

  // ---- Replies and state changes --------------------------------------

  // Queues one reply line. Every 4xx/5xx counts as a client error; too
  // many of them end the session (as a defence against probing).
  void Reply(std::string_view text) {
    if (need == Need::kClose) return;
    out.append(text);
    out.append("\r\n");
    bool error = text[0] == '4' || text[0] == '5';
    // A 452 for too many recipients is flow control, not misbehaviour:
    // RFC 5321 4.5.3.1.10 expects the client to send the rest later, so it
    // must not cost the transaction already accepted.
    if (error && text.substr(0, 9) != "452 4.5.3") {
      ++errors;
      if (config.max_errors > 0 && errors >= config.max_errors) {
        CloseWith("421 4.7.0 " + config.hostname +
                  " Too many errors, closing connection");
      }
    }
  }

  void CloseWith(std::string_view text) {
    ResetTransaction();
    out.append(text);
    out.append("\r\n");
    need = Need::kClose;
    mode = Mode::kCommand;
  }

  // Ends the transaction (RFC 5321 4.1.1.5), keeping the EHLO/HELO state.
  // The host hears about a begun message that was not committed.
  void ResetTransaction() {
    if (message_open) host.AbortMessage();
    message_open = false;
    mail_open = false;
    bdat_used = false;
    write_failed = false;
    std::string helo = std::move(t.helo);
    bool esmtp = t.esmtp;
    t = Transaction();
    t.helo = std::move(helo);
    t.esmtp = esmtp;
    queue_id.clear();
    std::string().swap(pending);  // give back the content buffer
  }

  // ---- Input ----------------------------------------------------------

  size_t Feed(std::string_view data) {
    size_t pos = 0;
    while (pos < data.size() && need == Need::kInput) {
      std::string_view rest = data.substr(pos);
      switch (mode) {
        case Mode::kCommand:
          pos += FeedCommand(rest);
          break;
        case Mode::kData:
          pos += FeedData(rest);
          break;
        case Mode::kBdat:
          pos += FeedBdat(rest);
          break;
      }
    }
    // RFC 3207 5 / CVE-2011-0411: whatever followed STARTTLS in plaintext
    // is dropped, never executed once TLS is up.
    if (need == Need::kStartTls) return data.size();
    return pos;
  }

  // How much of the current line to keep. Only AUTH lines and SASL
  // responses may be long, so only they get the larger buffer.
  size_t LineCap() const {
    size_t cap = BaseLimit() + kExtensionAllowance;
    if (sasl != nullptr ||
        (line.size() >= 5 && IStartsWith(line, "AUTH "))) {
      cap = std::max(cap, kSaslLine);
    }
    return cap;
  }

  // Collects one command line. RFC 5321 2.3.8: only CRLF ends a line; a
  // bare CR or LF (or a NUL) poisons the line, which is still read to its
  // CRLF and then rejected whole. Octets beyond the longest allowed line
  // are counted but not kept, so memory stays bounded.
  size_t FeedCommand(std::string_view data) {
    size_t cap = LineCap();
    for (size_t i = 0; i < data.size(); ++i) {
      char c = data[i];
      if (line_cr) {
        line_cr = false;
        if (c == '\n') {
          ProcessLine();
          return i + 1;
        }
        line_bare = true;  // the CR was bare; look at `c` normally
        ++line_len;
      }
      if (c == '\r') {
        line_cr = true;
        continue;
      }
      if (c == '\n') {
        line_bare = true;
        ++line_len;
        continue;
      }
      if (c == '\0') line_nul = true;
      ++line_len;
      if (line.size() < cap) {
        line.push_back(c);
        if (line.size() == 5) cap = LineCap();
      }
    }
    return data.size();
  }

  size_t FeedData(std::string_view data) {
    bool done = false;
    size_t used = body.Scan(data.substr(0, kSlice), &pending, &done);
    FlushPending();
    if (done) FinishMessage();
    return used;
  }

  size_t FeedBdat(std::string_view data) {
    // RFC 3030 2: exactly the announced octets, whatever they contain.
    size_t n = static_cast<size_t>(
        std::min<uint64_t>({data.size(), bdat_left, kSlice}));
    if (bdat_discard == nullptr) {
      bool done;
      body.Scan(data.substr(0, n), &pending, &done);
      FlushPending();
    }
    bdat_left -= n;
    if (bdat_left == 0) FinishChunk();
    return n;
  }

  void FlushPending() {
    if (pending.empty()) return;
    if (!write_failed && body.storing() && !host.MessageData(pending)) {
      write_failed = true;
    }
    pending.clear();
  }

  // ---- Commands -------------------------------------------------------

  void ProcessLine() {
    bool bare = line_bare, nul = line_nul;
    size_t len = line_len;
    const size_t cap = LineCap();
    line_bare = line_nul = false;
    line_len = 0;
    std::string text;
    text.swap(line);
    if (sasl != nullptr) {
      if (bare || nul || len > kSaslLine) {
        // RFC 4954 4: a response line that is too long ends the exchange.
        EndSasl();
        Reply(len > kSaslLine ? "500 5.5.6 Authentication exchange line is too long"
                              : "501 5.5.2 Invalid authentication response");
      } else {
        SaslResponse(text);
      }
    } else if (bare) {
      Reply("500 5.5.2 Bare CR or LF not allowed");
    } else if (nul) {
      Reply("500 5.5.2 NUL character not allowed");
    } else if (len > cap) {
      Reply("500 5.5.2 Line too long");
    } else {
      Dispatch(text, len);
    }
    // Keep a small buffer for the next line, drop a large one.
    if (text.capacity() <= 128) {
      text.clear();
      line.swap(text);
    }
  }

  void Dispatch(std::string_view text, size_t len) {
    size_t sp = text.find(' ');
    std::string_view verb = text.substr(0, sp);
    std::string_view arg =
        sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
    bool mail = IEquals(verb, "MAIL"), rcpt = IEquals(verb, "RCPT");
    bool auth = IEquals(verb, "AUTH");
    // RFC 5321 4.5.3.1.4: 512 octets per command line, CRLF included;
    // MAIL and RCPT get the extension allowance, AUTH RFC 4954's 12288.
    size_t limit = mail || rcpt ? BaseLimit() + kExtensionAllowance
                   : auth       ? kSaslLine
                                : BaseLimit();
    if (len > limit) {
      Reply("500 5.5.2 Line too long");
    } else if (IEquals(verb, "EHLO")) {
      Helo(arg, true);
    } else if (IEquals(verb, "HELO")) {
      Helo(arg, false);
    } else if (mail) {
      Mail(text.substr(4));
    } else if (rcpt) {
      Rcpt(text.substr(4));
    } else if (IEquals(verb, "DATA")) {
      Data(arg);
    } else if (IEquals(verb, "BDAT")) {
      Bdat(arg);
    } else if (IEquals(verb, "RSET")) {
      // RFC 5321 4.1.1.5: RSET takes no argument.
      if (!Trim(arg).empty()) return Reply("501 5.5.4 Syntax: RSET");
      ResetTransaction();
      Reply("250 2.0.0 Ok");
    } else if (IEquals(verb, "NOOP")) {
      // RFC 5321 4.1.1.9: NOOP [ SP String ], the string is ignored.
      Reply("250 2.0.0 Ok");
    } else if (IEquals(verb, "QUIT")) {
      // RFC 5321 4.1.1.10.
      CloseWith("221 2.0.0 Bye");
    } else if (IEquals(verb, "VRFY")) {
      Verify(arg, config.vrfy, "VRFY");
    } else if (IEquals(verb, "EXPN")) {
      Verify(arg, config.expn, "EXPN");
    } else if (IEquals(verb, "HELP")) {
      std::string help =
          "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP "
          "QUIT VRFY EXPN HELP";
      if (config.tls_available) help += " STARTTLS";
      if (config.auth) help += " AUTH";
      Reply(help);
    } else if (IEquals(verb, "STARTTLS") && config.tls_available) {
      StartTls(arg);
    } else if (auth && config.auth) {
      Auth(arg);
    } else {
      Reply("500 5.5.1 Error: command not recognized");
    }
  }

  // RFC 5321 4.1.1.1 EHLO/HELO; 4.1.4: either one resets the transaction.
  void Helo(std::string_view arg, bool esmtp) {
    arg = Trim(arg);
    if (arg.empty()) {
      return Reply(esmtp ? "501 5.5.4 Syntax: EHLO hostname"
                         : "501 5.5.4 Syntax: HELO hostname");
    }
    // Only the first word is the name; it goes into the Received: header,
    // so it must be printable ASCII (no SMTPUTF8 before EHLO, RFC 6531
    // 3.7.1) and short.
    arg = arg.substr(0, arg.find(' '));
    if (arg.size() > kMaxHelo ||
        !std::all_of(arg.begin(), arg.end(),
                     [](char c) { return c > 32 && c < 127; })) {
      return Reply("501 5.5.2 Invalid hostname");
    }
    ResetTransaction();
    t.helo = std::string(arg);
    t.esmtp = esmtp;
    helo_done = true;
    if (!esmtp) {
      // The HELO reply carries no enhanced code: it was not negotiated.
      out += "250 " + config.hostname + "\r\n";
      return;
    }
    out += "250-" + config.hostname + "\r\n";
    out += "250-PIPELINING\r\n";  // RFC 2920
    out += "250-SIZE " + std::to_string(config.max_message_size) + "\r\n";
    out += "250-ENHANCEDSTATUSCODES\r\n";  // RFC 2034
    out += "250-8BITMIME\r\n";             // RFC 6152
    out += "250-DSN\r\n";                  // RFC 3461
    out += "250-SMTPUTF8\r\n";             // RFC 6531
    if (config.tls_available && !client.tls) out += "250-STARTTLS\r\n";
    if (AuthOffered() && client.auth_user.empty()) {
      out += "250-AUTH " + std::string(auth::kSaslMechanisms) + "\r\n";
    }
    out += "250-HELP\r\n";
    out += "250 CHUNKING\r\n";  // RFC 3030
  }

  // RFC 4954 4 and RFC 8314 / RFC 3207: passwords travel only inside TLS,
  // unless the listener is loopback and explicitly allows it.
  bool AuthOffered() const {
    return config.auth && (client.tls || config.auth_allowed_plaintext);
  }

  // ---- STARTTLS (RFC 3207) --------------------------------------------

  void StartTls(std::string_view arg) {
    // RFC 3207 4: STARTTLS takes no parameters.
    if (!Trim(arg).empty()) return Reply("501 5.5.4 Syntax: STARTTLS");
    if (client.tls) return Reply("503 5.5.1 Error: TLS already active");
    if (!helo_done) return Reply("503 5.5.1 Error: send HELO/EHLO first");
    if (mail_open) return Reply("503 5.5.1 Error: MAIL transaction in progress");
    Reply("220 2.0.0 Ready to start TLS");
    need = Need::kStartTls;
  }

  void TlsStarted(std::string version, std::string cipher) {
    // RFC 3207 4.2: discard all knowledge obtained from the client before
    // TLS, including an AUTH made in plaintext.
    EndSasl();
    ResetTransaction();
    t = Transaction();
    helo_done = false;
    client.tls = true;
    client.auth_user.clear();
    tls_version = std::move(version);
    tls_cipher = std::move(cipher);
    line.clear();
    line_len = 0;
    line_cr = line_bare = line_nul = false;
    mode = Mode::kCommand;
    if (need == Need::kStartTls) need = Need::kInput;
  }

  // ---- AUTH (RFC 4954) ------------------------------------------------

  void Auth(std::string_view arg) {
    if (!helo_done || !t.esmtp) return Reply("503 5.5.1 Error: send EHLO first");
    // RFC 4954 4: no second AUTH, none inside a transaction.
    if (!client.auth_user.empty()) {
      return Reply("503 5.5.1 Error: already authenticated");
    }
    if (mail_open) {
      return Reply("503 5.5.1 Error: AUTH not permitted during a mail transaction");
    }
    if (!AuthOffered()) {
      return Reply(
          "538 5.7.11 Encryption required for requested authentication "
          "mechanism");
    }
    arg = Trim(arg);
    size_t sp = arg.find(' ');
    std::string_view name = arg.substr(0, sp);
    std::string_view initial =
        sp == std::string_view::npos ? std::string_view() : Trim(arg.substr(sp + 1));
    if (name.empty() || initial.find(' ') != std::string_view::npos) {
      return Reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
    }
    if (host.AuthBlocked()) {
      return CloseWith("421 4.7.0 " + config.hostname +
                       " Too many failed authentications, try again later");
    }
    sasl = host.MakeSaslMechanism(name);
    if (sasl == nullptr) {
      return Reply("504 5.5.4 Unrecognized authentication type");
    }
    sasl_name = std::string(name);
    for (char& c : sasl_name) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    std::optional<std::string> first;
    if (initial == "=") {
      first = std::string();  // RFC 4954 4: "=" is an empty initial response
    } else if (!initial.empty()) {
      first = Base64Decode(initial);
      if (!first) {
        EndSasl();
        return Reply("501 5.5.2 Invalid base64 data");
      }
    }
    RunOrPend(true, std::move(first));
  }

  // Runs the mechanism now, or (async_sasl) leaves it to the connection.
  void RunOrPend(bool start, std::optional<std::string> input) {
    sasl_start = start;
    sasl_input = std::move(input);
    if (config.async_sasl) {
      need = Need::kSaslStep;
      return;
    }
    Step(RunSaslStep());
  }

  auth::SaslStep RunSaslStep() {
    if (sasl == nullptr) return auth::SaslStep{auth::SaslStep::Kind::kMalformed, {}, {}};
    std::optional<std::string> input = std::move(sasl_input);
    sasl_input.reset();
    if (sasl_start) return sasl->Start(input);
    return sasl->Next(input ? *input : std::string());
  }

  void SaslStepDone(const auth::SaslStep& step) {
    if (need != Need::kSaslStep) return;
    need = Need::kInput;
    Step(step);
  }

  void SaslResponse(std::string_view text) {
    if (text == "*") {
      EndSasl();
      return Reply("501 5.0.0 Authentication cancelled");
    }
    if (!sasl_done_user.empty()) {
      // Success data went out in a 334 (RFC 4954 4 has no "additional data
      // with success"); the client acknowledges with an empty line.
      if (!text.empty()) {
        EndSasl();
        return Reply("501 5.5.2 Invalid authentication response");
      }
      std::string user = std::move(sasl_done_user);
      return Succeed(user);
    }
    std::optional<std::string> decoded =
        text.empty() ? std::optional<std::string>(std::string())
                     : Base64Decode(text);
    if (!decoded) {
      EndSasl();
      return Reply("501 5.5.2 Invalid base64 data");
    }
    RunOrPend(false, std::move(decoded));
  }

  void Step(const auth::SaslStep& step) {
    switch (step.kind) {
      case auth::SaslStep::Kind::kChallenge:
        // RFC 4954 4: "334" SP base64 challenge.
        return Reply("334 " + Base64Encode(step.data));
      case auth::SaslStep::Kind::kSuccess:
        if (!step.data.empty()) {
          sasl_done_user = step.user.empty() ? "?" : step.user;
          return Reply("334 " + Base64Encode(step.data));
        }
        return Succeed(step.user);
      case auth::SaslStep::Kind::kFailure: {
        std::string name = sasl_name;
        EndSasl();
        delay = host.AuthFailed(name, step.user);
        Reply("535 5.7.8 Authentication credentials invalid");
        if (delay.count() > 0 && need == Need::kInput) need = Need::kDelay;
        return;
      }
      case auth::SaslStep::Kind::kMalformed:
        EndSasl();
        return Reply("501 5.5.2 Invalid authentication exchange");
      case auth::SaslStep::Kind::kTempFailure:
        // RFC 4954 6: the account store could not answer; the client may
        // try again later. Not counted as a failed attempt.
        EndSasl();
        return Reply("454 4.7.0 Temporary authentication failure");
    }
  }

  void Succeed(const std::string& user) {
    std::string name = sasl_name;
    EndSasl();
    client.auth_user = user;
    host.AuthSucceeded(name, user);
    Reply("235 2.7.0 Authentication successful");
  }

  void EndSasl() {
    sasl.reset();
    sasl_input.reset();
    std::string().swap(sasl_name);
    std::string().swap(sasl_done_user);
  }

  // RFC 5321 4.1.1.2 MAIL FROM:<reverse-path> [SP Mail-parameters].
  void Mail(std::string_view rest) {
    if (!helo_done) return Reply("503 5.5.1 Error: send HELO/EHLO first");
    if (mail_open) return Reply("503 5.5.1 Error: nested MAIL command");
    // RFC 6409 4.3 / RFC 4954 6: submission needs AUTH first.
    if (config.submission && client.auth_user.empty()) {
      return Reply("530 5.7.0 Authentication required");
    }
    if (!IStartsWith(rest, " FROM:")) {
      return Reply("501 5.5.2 Syntax: MAIL FROM:<address>");
    }
    // Like most servers, accept spaces after the colon ("FROM: <a@b>").
    std::string_view arg = SkipSpaces(rest.substr(6));
    // Parse with UTF-8 allowed; whether it was allowed is known only
    // after the parameters (SMTPUTF8) have been read.
    std::optional<PathParse> path = ParsePath(arg, true, true);
    if (!path) return Reply("501 5.1.7 Bad sender address syntax");
    if (!t.esmtp && !Trim(path->rest).empty()) {
      // Parameters are ESMTP (RFC 5321 4.1.1.11): none after HELO.
      return Reply("555 5.5.4 Parameters not allowed after HELO");
    }
    MailParams params;
    switch (ParseMailParams(path->rest, config.max_message_size, &params)) {
      case ParamStatus::kOk:
        break;
      case ParamStatus::kSyntax:
        return Reply("501 5.5.4 Invalid parameter");
      case ParamStatus::kUnknown:
        return Reply("555 5.5.4 Unsupported parameter");
      case ParamStatus::kTooBig:
        return Reply(
            "552 5.3.4 Message size exceeds fixed maximum message size");
    }
    if (!params.smtputf8 && !IsAscii(path->mailbox)) {
      // RFC 6531 3.7.4.1.
      return Reply("553 5.6.7 Non-ASCII address requires SMTPUTF8");
    }
    std::string addr = "<" + path->mailbox.ToString() + ">";
    switch (host.CheckMailFrom(path->mailbox).kind) {
      case SenderVerdict::Kind::kAccept:
        break;
      case SenderVerdict::Kind::kNotOwned:
        return Reply("553 5.7.1 " + addr +
                     ": Sender address rejected: not owned by user " +
                     client.auth_user);
      case SenderVerdict::Kind::kLocalSpoof:
        return Reply("550 5.7.1 " + addr +
                     ": Sender address rejected: local domain needs "
                     "authentication");
    }
    t.mail_from = std::move(path->mailbox);
    t.declared_size = params.size;
    t.body = std::move(params.body);
    t.ret = std::move(params.ret);
    t.envid = std::move(params.envid);
    t.smtputf8 = params.smtputf8;
    mail_open = true;
    Reply("250 2.1.0 Ok");
  }

  // RFC 5321 4.1.1.3 RCPT TO:<forward-path> [SP Rcpt-parameters].
  void Rcpt(std::string_view rest) {
    if (!mail_open) return Reply("503 5.5.1 Error: need MAIL command");
    if (bdat_used) {
      // The Received: header naming the recipient is already written.
      return Reply("503 5.5.1 Error: RCPT not allowed after BDAT");
    }
    if (!IStartsWith(rest, " TO:")) {
      return Reply("501 5.5.2 Syntax: RCPT TO:<address>");
    }
    std::string_view arg = SkipSpaces(rest.substr(4));
    Mailbox rcpt;
    std::string_view params_text;
    constexpr std::string_view kPostmaster = "<postmaster>";
    if (IStartsWith(arg, kPostmaster)) {
      // RFC 5321 4.1.1.3: "<Postmaster>" without a domain, any case.
      rcpt.local = "postmaster";
      params_text = arg.substr(kPostmaster.size());
    } else {
      std::optional<PathParse> path = ParsePath(arg, false, true);
      if (!path) {
        host.RcptSyntaxError(arg);
        return Reply("501 5.1.3 Bad recipient address syntax");
      }
      rcpt = std::move(path->mailbox);
      params_text = path->rest;
    }
    if (!t.esmtp && !Trim(params_text).empty()) {
      return Reply("555 5.5.4 Parameters not allowed after HELO");
    }
    RcptParams params;
    switch (ParseRcptParams(params_text, t.smtputf8, &params)) {
      case ParamStatus::kOk:
        break;
      case ParamStatus::kSyntax:
      case ParamStatus::kTooBig:
        return Reply("501 5.5.4 Invalid parameter");
      case ParamStatus::kUnknown:
        return Reply("555 5.5.4 Unsupported parameter");
    }
    if (!t.smtputf8 && !IsAscii(rcpt)) {
      return Reply("553 5.6.7 Non-ASCII address requires SMTPUTF8");
    }
    // RFC 5321 4.5.3.1.8 and 4.5.3.1.10.
    if (t.rcpts.size() >= config.max_recipients) {
      return Reply("452 4.5.3 Too many recipients");
    }
    std::string addr = "<" + rcpt.ToString() + ">";
    switch (host.CheckRecipient(t, rcpt).kind) {
      case RcptVerdict::Kind::kAccept:
        t.rcpts.push_back(std::move(rcpt));
        t.rcpt_params.push_back(std::move(params));
        return Reply("250 2.1.5 Ok");
      case RcptVerdict::Kind::kUnknownUser:
        return Reply("550 5.1.1 " + addr +
                     ": Recipient address rejected: User unknown");
      case RcptVerdict::Kind::kRelayDenied:
        return Reply("554 5.7.1 " + addr + ": Relay access denied");
      case RcptVerdict::Kind::kTempFail:
        return Reply("451 4.3.0 " + addr + ": Temporary lookup failure");
    }
  }

  // Checks shared by DATA and BDAT; returns the refusal or nullptr.
  const char* ContentRefusal() const {
    if (!helo_done) return "503 5.5.1 Error: send HELO/EHLO first";
    if (!mail_open) return "503 5.5.1 Error: need MAIL command";
    if (t.rcpts.empty()) return "503 5.5.1 Error: no valid recipients";
    return nullptr;
  }

  // RFC 5321 4.1.1.4 DATA.
  void Data(std::string_view arg) {
    if (!Trim(arg).empty()) return Reply("501 5.5.4 Syntax: DATA");
    if (const char* refusal = ContentRefusal()) return Reply(refusal);
    // RFC 3030 3: DATA and BDAT are not mixed in one transaction.
    if (bdat_used) return Reply("503 5.5.1 Error: DATA not allowed after BDAT");
    if (!BeginMessage()) {
      const char* refusal = host.StorageFull()
                                ? kNoStorage
                                : "451 4.3.0 Error: temporary failure";
      ResetTransaction();
      return Reply(refusal);
    }
    body.Start(true, Limits());
    mode = Mode::kData;
    Reply("354 End data with <CR><LF>.<CR><LF>");
  }

  // RFC 3030 2 BDAT chunk-size [SP "LAST"].
  void Bdat(std::string_view arg) {
    std::vector<std::string> words;
    for (std::string& w : Split(Trim(arg), ' ')) {
      if (!w.empty()) words.push_back(std::move(w));
    }
    uint64_t size = 0;
    bool ok = !words.empty() && words.size() <= 2 && words[0].size() <= 19;
    for (size_t i = 0; ok && i < words[0].size(); ++i) {
      char c = words[0][i];
      ok = c >= '0' && c <= '9';
      size = size * 10 + static_cast<uint64_t>(c - '0');
    }
    bool last = words.size() == 2;
    if (ok && last) ok = IEquals(words[1], "LAST");
    if (!ok) {
      // Without a size the chunk cannot be skipped: what follows is read
      // as commands.
      return Reply("501 5.5.4 Syntax: BDAT size [LAST]");
    }
    bdat_size = bdat_left = size;
    bdat_last = last;
    bdat_reset_after = false;
    bdat_discard = ContentRefusal();
    if (bdat_discard == nullptr && !t.esmtp) {
      bdat_discard = "503 5.5.1 Error: BDAT requires EHLO";
    }
    if (bdat_discard == nullptr && !message_open) {
      if (BeginMessage()) {
        bdat_used = true;
        body.Start(false, Limits());
      } else {
        bdat_discard = host.StorageFull()
                           ? kNoStorage
                           : "451 4.3.0 Error: temporary failure";
        bdat_reset_after = true;
      }
    }
    mode = Mode::kBdat;
    if (size == 0) FinishChunk();
  }

  void FinishChunk() {
    mode = Mode::kCommand;
    if (bdat_discard != nullptr) {
      const char* reply = bdat_discard;
      bdat_discard = nullptr;
      if (bdat_reset_after) ResetTransaction();
      return Reply(reply);
    }
    if (!bdat_last) {
      return Reply("250 2.0.0 " + std::to_string(bdat_size) +
                   " octets received");
    }
    body.Finish(&pending);
    FlushPending();
    FinishMessage();
  }

  // RFC 5321 4.1.1.2 / 4.1.1.3 VRFY and EXPN. Both are off by default
  // (RFC 5321 7.3: they help address harvesting). When on, a mailbox is
  // checked like a recipient; lists are not expanded.
  void Verify(std::string_view arg, bool enabled, std::string_view verb) {
    if (!enabled) {
      if (verb == "VRFY") {
        return Reply(
            "252 2.5.2 Cannot VRFY user, but will accept message "
            "and attempt delivery");
      }
      return Reply("502 5.5.1 EXPN not supported");
    }
    arg = Trim(arg);
    if (arg.empty())
      return Reply("501 5.5.4 Syntax: " + std::string(verb) + " address");
    Mailbox mb;
    if (IEquals(arg, "postmaster") || IEquals(arg, "<postmaster>")) {
      mb.local = "postmaster";
    } else if (arg[0] == '<') {
      std::optional<PathParse> path = ParsePath(arg, false, false);
      if (!path || !Trim(path->rest).empty()) {
        return Reply("501 5.1.3 Bad address syntax");
      }
      mb = std::move(path->mailbox);
    } else {
      std::optional<Mailbox> parsed = ParseMailbox(arg, false);
      if (!parsed) return Reply("501 5.1.3 Bad address syntax");
      mb = std::move(*parsed);
    }
    std::string addr = "<" + mb.ToString() + ">";
    switch (host.CheckRecipient(t, mb).kind) {
      case RcptVerdict::Kind::kAccept:
        return Reply("250 2.1.5 " + addr);
      case RcptVerdict::Kind::kUnknownUser:
        return Reply("550 5.1.1 " + addr +
                     ": Recipient address rejected: User unknown");
      case RcptVerdict::Kind::kRelayDenied:
        return Reply("554 5.7.1 " + addr + ": Relay access denied");
      case RcptVerdict::Kind::kTempFail:
        return Reply("451 4.3.0 " + addr + ": Temporary lookup failure");
    }
  }

  // ---- Message content ------------------------------------------------

  BodyReader::Limits Limits() const {
    BodyReader::Limits l;
    l.max_size = config.max_message_size;
    l.line_limit = config.text_line_limit;
    l.max_hops = config.max_received_headers;
    l.capture_senders = !client.auth_user.empty();
    return l;
  }

  // Asks the host for a queue id and writes our Received: header first.
  bool BeginMessage() {
    std::string id = host.BeginMessage(t);
    if (id.empty()) return false;
    queue_id = std::move(id);
    message_open = true;
    write_failed = !host.MessageData(ReceivedHeader());
    return true;
  }

  // RFC 5321 4.4 trace field; "with" keywords from RFC 3848 and RFC 6531
  // 3.7.3. Each line holds one variable element of bounded length (EHLO
  // name <= 255, path <= 256), so none exceeds RFC 5322 2.1.1's 998.
  std::string ReceivedHeader() const {
    std::string ip = client.ip.empty() ? "unknown" : client.ip;
    std::string literal = ip.find(':') != std::string::npos
                              ? "[IPv6:" + ip + "]"
                              : "[" + ip + "]";
    std::string proto = "SMTP";
    if (t.esmtp) {
      proto = t.smtputf8 ? "UTF8SMTP" : "ESMTP";
      if (client.tls) proto += 'S';
      if (!client.auth_user.empty()) proto += 'A';
    }
    std::string r = "Received: from " + t.helo + " (" + literal + ")\r\n";
    r +=
        "\tby " + config.hostname + " (Tern) with " + proto + " id " + queue_id;
    if (client.tls && !tls_version.empty()) {
      // RFC 8314 4.3 asks for the TLS facts in the trace; version and
      // cipher names are short OpenSSL tokens.
      r += "\r\n\t(using " + tls_version.substr(0, 32) + " with cipher " +
           tls_cipher.substr(0, 64) + ")";
    }
    // A single recipient may be named; more would disclose Bcc recipients
    // to each other.
    if (t.rcpts.size() == 1) r += "\r\n\tfor <" + t.rcpts[0].ToString() + ">";
    r += "; " + host.Now() + "\r\n";
    return r;
  }

  // End of DATA or of the BDAT LAST chunk: accept for commit or refuse.
  void FinishMessage() {
    mode = Mode::kCommand;
    const char* refusal = nullptr;
    switch (body.fault()) {
      case BodyReader::Fault::kBareEol:
        refusal = "554 5.6.0 Message contains bare CR or LF";
        break;
      case BodyReader::Fault::kLineTooLong:
        refusal = "554 5.6.0 Message line too long (RFC 5321 4.5.3.1.6)";
        break;
      case BodyReader::Fault::kTooBig:
        refusal = "552 5.3.4 Message size exceeds fixed maximum message size";
        break;
      case BodyReader::Fault::kTooManyHops:
        refusal = "554 5.4.6 Too many hops";  // RFC 5321 6.3
        break;
      case BodyReader::Fault::kNone:
        if (write_failed) {
          refusal = host.StorageFull()
                        ? kNoStorage
                        : "451 4.3.0 Error: queue file write error";
        }
        break;
    }
    if (refusal != nullptr) {
      ResetTransaction();
      return Reply(refusal);
    }
    if (!client.auth_user.empty()) {
      std::string forged = HeaderSenderRefusal();
      if (!forged.empty()) {
        ResetTransaction();
        return Reply(forged);
      }
    }
    need = Need::kCommit;
  }

  // RFC 5322 3.6.2: every mailbox in From: and the one in Sender: must
  // belong to the authenticated user. Returns the refusal, or "".
  std::string HeaderSenderRefusal() {
    if (body.capture_overflow()) {
      return "550 5.7.1 From:/Sender: header fields too large to check";
    }
    for (const HeaderField& f : SplitHeaderFields(body.sender_fields())) {
      bool from = IEquals(f.name, "From");
      const char* field = from ? "From" : "Sender";
      auto list = ParseAddressList(f.value);
      // From: needs one or more mailboxes, Sender: exactly one.
      if (!list || list->empty() || (!from && list->size() != 1)) {
        return std::string("550 5.7.1 Cannot verify the ") + field +
               ": header field (RFC 5322 3.6.2)";
      }
      for (const HeaderMailbox& m : *list) {
        if (!host.HeaderSenderAllowed(m.address(), field)) {
          // The address is echoed only when it is short printable ASCII:
          // header text must not shape our reply lines.
          std::string shown = Mailbox{m.local, m.domain, m.quoted}.ToString();
          bool printable = shown.size() <= 256 &&
                           std::all_of(shown.begin(), shown.end(), [](char c) {
                             return c >= 32 && c < 127;
                           });
          return std::string("550 5.7.1 ") + field + ": address " +
                 (printable ? "<" + shown + "> " : std::string()) +
                 "not owned by user " + client.auth_user;
        }
      }
    }
    return "";
  }

  void Committed(bool ok, bool no_space) {
    if (need != Need::kCommit) return;
    need = Need::kInput;
    if (ok) {
      std::string reply = "250 2.0.0 Ok: queued as " + queue_id;
      message_open = false;  // durable now: nothing to abort
      ResetTransaction();
      return Reply(reply);
    }
    ResetTransaction();
    Reply(no_space ? kNoStorage : "451 4.3.0 Error: queue file write error");
  }
};

Session::Session(const SessionConfig& config, SessionHost& host,
                 ClientInfo client)
    : impl_(std::make_unique<Impl>(config, host, std::move(client))) {}

// A message begun but never committed is abandoned with the connection.
Session::~Session() {
  if (impl_->message_open) impl_->host.AbortMessage();
}

void Session::Greet() {
  // RFC 5321 4.2: the greeting carries no enhanced code (none negotiated).
  impl_->out += "220 " + impl_->config.hostname + " ESMTP Tern\r\n";
}

size_t Session::Feed(std::string_view data) { return impl_->Feed(data); }

Need Session::need() const { return impl_->need; }

std::string& Session::output() { return impl_->out; }

void Session::TlsStarted(std::string version, std::string cipher) {
  impl_->TlsStarted(std::move(version), std::move(cipher));
}

std::chrono::milliseconds Session::delay() const { return impl_->delay; }

auth::SaslStep Session::RunSaslStep() { return impl_->RunSaslStep(); }

void Session::SaslStepDone(const auth::SaslStep& step) {
  impl_->SaslStepDone(step);
}

void Session::DelayDone() {
  if (impl_->need == Need::kDelay) impl_->need = Need::kInput;
  impl_->delay = std::chrono::milliseconds(0);
}

void Session::Committed(bool ok, bool no_space) {
  impl_->Committed(ok, no_space);
}

void Session::Timeout() {
  if (impl_->need == Need::kClose) return;
  impl_->CloseWith("421 4.4.2 " + impl_->config.hostname +
                   " Error: timeout exceeded");
}

void Session::Shutdown() {
  if (impl_->need == Need::kClose) return;
  impl_->CloseWith("421 4.3.2 " + impl_->config.hostname +
                   " Service shutting down");
}

bool Session::InTransaction() const { return impl_->mail_open; }

bool Session::InData() const { return impl_->mode != Mode::kCommand; }

const ClientInfo& Session::client() const { return impl_->client; }

ClientInfo& Session::mutable_client() { return impl_->client; }

}  // namespace tern::smtp
