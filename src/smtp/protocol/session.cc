// SMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
// ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS, AUTH): the state, the
// command-line framing and the command table that dispatch and HELP share.
// Every framing decision (what ends a line, a message, a chunk) is strict,
// so that no input can be read two ways; content framing is in
// session_data.cc.
#include "smtp/protocol/session.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/metrics.h"
#include "common/strings.h"
#include "smtp/protocol/session_impl.h"

namespace tern::smtp {
namespace {

// RFC 5321 4.5.3.1.4 lets extensions lengthen MAIL and RCPT lines; RFC 1870,
// RFC 3461 and RFC 6531 parameters fit in this much more.
constexpr size_t kExtensionAllowance = 600;
// RFC 5321 4.5.3.1.2: a domain (the EHLO argument) is at most 255 octets.
// Bounding it also keeps the Received: lines below 998 octets.
constexpr size_t kMaxHelo = 255;
// RFC 4954 4: AUTH lines and SASL responses may be 12288 octets long,
// CRLF included.
constexpr size_t kSaslLine = 12288 - 2;

// tern_smtp_refusals_total: "550 5.7.1 ..." counts as code 550, status
// 5.7.1 (the enhanced status code of RFC 3463 when the reply has one).
void CountRefusal(const std::string& listener, std::string_view text) {
  std::string_view code = text.substr(0, 3);
  std::string_view status;
  if (text.size() > 4) {
    std::string_view rest = text.substr(4);
    size_t end = rest.find(' ');
    std::string_view word = rest.substr(0, end);
    bool enhanced = word.size() >= 5 && word.size() <= 11 &&
                    (word[0] == '4' || word[0] == '5') && word[1] == '.' &&
                    std::count(word.begin(), word.end(), '.') == 2 &&
                    word.find_first_not_of("0123456789.") == std::string_view::npos;
    if (enhanced) status = word;
  }
  metrics::Get().smtp_refusals.With({listener, code, status}).Inc();
}

}  // namespace

// ---- The command table --------------------------------------------------

// In HELP order. Each check tests syntax, facts and state in its verb's own
// order: which refusal wins when several apply is part of the protocol
// behaviour the tests pin down.
const Session::Impl::Command Session::Impl::kCommands[] = {
    // RFC 5321 4.1.1.1.
    {"EHLO", LineLimit::kCommand, nullptr, nullptr, &Impl::Ehlo,
     "EHLO hostname"},
    {"HELO", LineLimit::kCommand, nullptr, nullptr, &Impl::Helo,
     "HELO hostname"},
    // RFC 5321 4.1.1.2, parameters from RFC 1870, 6152, 6531, 3461, 8689.
    {"MAIL", LineLimit::kEnvelope, nullptr, &Impl::CheckMail, &Impl::Mail,
     "MAIL FROM:<address> [SIZE=octets] [BODY=7BIT|8BITMIME] [SMTPUTF8] "
     "[RET=FULL|HDRS] [ENVID=id] [REQUIRETLS]"},
    // RFC 5321 4.1.1.3, parameters from RFC 3461.
    {"RCPT", LineLimit::kEnvelope, nullptr, &Impl::CheckRcpt, &Impl::Rcpt,
     "RCPT TO:<address> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] "
     "[ORCPT=type;address]"},
    // RFC 5321 4.1.1.4.
    {"DATA", LineLimit::kCommand, nullptr, &Impl::CheckData, &Impl::Data,
     "DATA, then the message and a line with a single dot"},
    // RFC 3030 2; refusals come after the chunk (session_data.cc).
    {"BDAT", LineLimit::kCommand, nullptr, nullptr, &Impl::Bdat,
     "BDAT octets [LAST], then exactly that many octets of the message"},
    // RFC 5321 4.1.1.5, 4.1.1.9, 4.1.1.10.
    {"RSET", LineLimit::kCommand, nullptr, &Impl::CheckRset, &Impl::Rset,
     "RSET"},
    {"NOOP", LineLimit::kCommand, nullptr, nullptr, &Impl::Noop, "NOOP [text]"},
    {"QUIT", LineLimit::kCommand, nullptr, nullptr, &Impl::Quit, "QUIT"},
    // RFC 5321 3.5; answered even when switched off (session_envelope.cc).
    {"VRFY", LineLimit::kCommand, nullptr, nullptr, &Impl::Vrfy,
     "VRFY address"},
    {"EXPN", LineLimit::kCommand, nullptr, nullptr, &Impl::Expn,
     "EXPN address"},
    // RFC 5321 4.1.1.8.
    {"HELP", LineLimit::kCommand, nullptr, nullptr, &Impl::Help,
     "HELP [command]"},
    // RFC 3207.
    {"STARTTLS", LineLimit::kCommand,
     [](const SessionConfig& c) { return c.tls_available; },
     &Impl::CheckStartTls, &Impl::StartTls, "STARTTLS"},
    // RFC 4954.
    {"AUTH", LineLimit::kSasl, [](const SessionConfig& c) { return c.auth; },
     &Impl::CheckAuth, &Impl::Auth, "AUTH mechanism [initial-response]"},
};

// ---- State and replies --------------------------------------------------

void Session::Impl::SetState(State next) { state = next; }

Need Session::Impl::need() const {
  switch (state) {
    case State::kSaslStep:
      return Need::kSaslStep;
    case State::kAuthDelay:
      return Need::kDelay;
    case State::kSenderCheck:
      return Need::kSenderCheck;
    case State::kRcptCheck:
      return Need::kRcptCheck;
    case State::kGreetWait:
      return Need::kGreetWait;
    case State::kCommit:
      return Need::kCommit;
    case State::kStartTls:
      return Need::kStartTls;
    case State::kClosed:
      return Need::kClose;
    default:
      return Need::kInput;
  }
}

// From an accepted MAIL until the transaction ends, whether or not the
// message has begun (a refused chunk keeps the transaction it came in).
bool Session::Impl::InTransaction() const {
  switch (state == State::kSkipChunk ? bdat_resume : state) {
    case State::kMail:
    case State::kRcpt:
    case State::kChunking:
    case State::kData:
    case State::kChunk:
    case State::kSenderCheck:
    case State::kRcptCheck:
    case State::kCommit:
      return true;
    default:
      return false;
  }
}

bool Session::Impl::InData() const {
  return state == State::kData || state == State::kChunk ||
         state == State::kSkipChunk;
}

// host.BeginMessage() gave a queue id that is neither committed nor
// aborted yet.
bool Session::Impl::MessageOpen() const {
  return state == State::kData || state == State::kChunk ||
         state == State::kChunking || state == State::kCommit;
}

// Queues one reply line. Every 4xx/5xx counts as a client error; too
// many of them end the session (as a defence against probing).
void Session::Impl::Reply(std::string_view text) {
  if (state == State::kClosed) return;
  out.append(text);
  out.append("\r\n");
  bool error = text[0] == '4' || text[0] == '5';
  // A multi-line reply counts once, at its last line.
  bool last_line = text.size() < 4 || text[3] != '-';
  if (error && !config.listener.empty() && last_line) {
    CountRefusal(config.listener, text);
  }
  if (error && last_line && !refused.stage.empty()) host.Refused(refused, text);
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

void Session::Impl::CloseWith(std::string_view text) {
  ResetTransaction();
  out.append(text);
  out.append("\r\n");
  SetState(State::kClosed);
}

// Ends the transaction (RFC 5321 4.1.1.5) in kReady; outside one the state
// stays. The EHLO/HELO name is kept. The host hears about a begun message
// that was not committed.
void Session::Impl::ResetTransaction() {
  if (MessageOpen()) host.AbortMessage();
  if (InTransaction()) SetState(State::kReady);
  write_failed = false;
  std::string helo = std::move(t.helo);
  bool esmtp = t.esmtp;
  t = Transaction();
  t.helo = std::move(helo);
  t.esmtp = esmtp;
  queue_id.clear();
  std::string().swap(pending);  // give back the content buffer
}

// ---- Command lines ------------------------------------------------------

size_t Session::Impl::Feed(std::string_view data) {
  size_t pos = 0;
  while (pos < data.size() && need() == Need::kInput) {
    std::string_view rest = data.substr(pos);
    switch (state) {
      case State::kData:
        pos += FeedData(rest);
        break;
      case State::kChunk:
      case State::kSkipChunk:
        pos += FeedBdat(rest);
        break;
      default:
        pos += FeedCommand(rest);
        break;
    }
  }
  // RFC 3207 5 / CVE-2011-0411: whatever followed STARTTLS in plaintext
  // is dropped, never executed once TLS is up.
  if (state == State::kStartTls) return data.size();
  return pos;
}

size_t Session::Impl::BaseLimit() const {
  // Content octets per command line; the limit includes the CRLF.
  return config.command_line_limit > 2 ? config.command_line_limit - 2 : 0;
}

// How much of the current line to keep. Only AUTH lines and SASL
// responses may be long, so only they get the larger buffer.
size_t Session::Impl::LineCap() const {
  size_t cap = BaseLimit() + kExtensionAllowance;
  if (state == State::kSasl || state == State::kSaslFinal ||
      (line.size() >= 5 && IStartsWith(line, "AUTH "))) {
    cap = std::max(cap, kSaslLine);
  }
  return cap;
}

// Collects one command line. RFC 5321 2.3.8: only CRLF ends a line; a
// bare CR or LF (or a NUL) poisons the line, which is still read to its
// CRLF and then rejected whole. Octets beyond the longest allowed line
// are counted but not kept, so memory stays bounded.
size_t Session::Impl::FeedCommand(std::string_view data) {
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

void Session::Impl::ProcessLine() {
  bool bare = line_bare, nul = line_nul;
  size_t len = line_len;
  const size_t cap = LineCap();
  line_bare = line_nul = false;
  line_len = 0;
  std::string text;
  text.swap(line);
  if (state == State::kSasl || state == State::kSaslFinal) {
    if (bare || nul || len > kSaslLine) {
      // RFC 4954 4: a response line that is too long ends the exchange.
      EndSasl();
      Reply(len > kSaslLine
                ? "500 5.5.6 Authentication exchange line is too long"
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

// ---- Dispatch -----------------------------------------------------------

const Session::Impl::Command* Session::Impl::FindCommand(
    std::string_view verb) {
  for (const Command& command : kCommands) {
    if (IEquals(verb, command.verb)) return &command;
  }
  return nullptr;
}

bool Session::Impl::Offered(const Command& command) const {
  return command.offered == nullptr || command.offered(config);
}

void Session::Impl::Dispatch(std::string_view text, size_t len) {
  size_t sp = text.find(' ');
  std::string_view verb = text.substr(0, sp);
  std::string_view arg =
      sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
  const Command* command = FindCommand(verb);
  SetRefusalSubject(verb);
  // RFC 5321 4.5.3.1.4: 512 octets per command line, CRLF included;
  // MAIL and RCPT get the extension allowance, AUTH RFC 4954's 12288.
  // The verb's limit holds even when the verb is switched off.
  size_t limit = BaseLimit();
  if (command != nullptr && command->limit == LineLimit::kEnvelope) {
    limit = BaseLimit() + kExtensionAllowance;
  } else if (command != nullptr && command->limit == LineLimit::kSasl) {
    limit = kSaslLine;
  }
  if (len > limit) return Reply("500 5.5.2 Line too long");
  if (command == nullptr || !Offered(*command)) {
    return Reply("500 5.5.1 Error: command not recognized");
  }
  if (command->check != nullptr) {
    if (const char* refusal = (this->*command->check)(arg)) {
      return Reply(refusal);
    }
  }
  (this->*command->handler)(arg);
}

// What a refusal of this command line would refuse (Refusal): the
// envelope as it stands; MAIL and RCPT add their address once parsed.
void Session::Impl::SetRefusalSubject(std::string_view verb) {
  refused = Refusal();
  if (IEquals(verb, "MAIL")) {
    refused.stage = "mail";
  } else if (IEquals(verb, "RCPT")) {
    refused.stage = "rcpt";
  } else if (IEquals(verb, "DATA") || IEquals(verb, "BDAT")) {
    refused.stage = "data";
    for (const Mailbox& m : t.rcpts) refused.rcpts.push_back(m.ToString());
    if (MessageOpen()) refused.queue_id = queue_id;
  } else {
    return;
  }
  // A MAIL names its own sender (Mail() adds it).
  if (refused.stage != "mail" && InTransaction()) refused.from = t.mail_from.ToString();
}

// ---- Session commands ---------------------------------------------------

void Session::Impl::Ehlo(std::string_view arg) { Hello(arg, true); }

void Session::Impl::Helo(std::string_view arg) { Hello(arg, false); }

// RFC 5321 4.1.1.1 EHLO/HELO; 4.1.4: either one resets the transaction.
void Session::Impl::Hello(std::string_view arg, bool esmtp) {
  arg = Trim(arg);
  if (arg.empty()) {
    return Reply(esmtp ? "501 5.5.4 Syntax: EHLO hostname"
                       : "501 5.5.4 Syntax: HELO hostname");
  }
  // Only the first word is the name; it goes into the Received: header,
  // so it must be printable ASCII (no SMTPUTF8 before EHLO, RFC 6531
  // 3.7.1) and short.
  arg = arg.substr(0, arg.find(' '));
  if (arg.size() > kMaxHelo || !std::all_of(arg.begin(), arg.end(), [](char c) {
        return c > 32 && c < 127;
      })) {
    return Reply("501 5.5.2 Invalid hostname");
  }
  ResetTransaction();
  t.helo = std::string(arg);
  t.esmtp = esmtp;
  SetState(State::kReady);
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
  // RFC 8689 4.1: REQUIRETLS may only be used on a TLS session, so it is
  // offered only there (before STARTTLS the client could not use it).
  if (client.tls) out += "250-REQUIRETLS\r\n";
  if (AuthOffered() && client.auth_user.empty()) {
    out += "250-AUTH " + std::string(auth::kSaslMechanisms) + "\r\n";
  }
  out += "250-HELP\r\n";
  out += "250 CHUNKING\r\n";  // RFC 3030
}

// RFC 5321 4.1.1.5: RSET takes no argument.
const char* Session::Impl::CheckRset(std::string_view arg) const {
  return Trim(arg).empty() ? nullptr : "501 5.5.4 Syntax: RSET";
}

void Session::Impl::Rset(std::string_view) {
  ResetTransaction();
  Reply("250 2.0.0 Ok");
}

// RFC 5321 4.1.1.9: NOOP [ SP String ], the string is ignored.
void Session::Impl::Noop(std::string_view) { Reply("250 2.0.0 Ok"); }

// RFC 5321 4.1.1.10.
void Session::Impl::Quit(std::string_view) { CloseWith("221 2.0.0 Bye"); }

// RFC 5321 4.1.1.8: HELP lists the verbs; "HELP verb" gives its syntax.
// Anything else after HELP gets the list.
void Session::Impl::Help(std::string_view arg) {
  arg = Trim(arg);
  const Command* asked = FindCommand(arg.substr(0, arg.find(' ')));
  if (asked != nullptr && Offered(*asked)) {
    return Reply("214 2.0.0 " + std::string(asked->help));
  }
  std::string help = "214 2.0.0 Commands:";
  for (const Command& command : kCommands) {
    if (!Offered(command)) continue;
    help += ' ';
    help += command.verb;
  }
  Reply(help);
}

// ---- STARTTLS (RFC 3207) ------------------------------------------------

const char* Session::Impl::CheckStartTls(std::string_view arg) const {
  // RFC 3207 4: STARTTLS takes no parameters.
  if (!Trim(arg).empty()) return "501 5.5.4 Syntax: STARTTLS";
  if (client.tls) return "503 5.5.1 Error: TLS already active";
  switch (state) {
    case State::kNoHelo:
      return "503 5.5.1 Error: send HELO/EHLO first";
    case State::kReady:
      return nullptr;
    default:
      return "503 5.5.1 Error: MAIL transaction in progress";
  }
}

void Session::Impl::StartTls(std::string_view) {
  Reply("220 2.0.0 Ready to start TLS");
  SetState(State::kStartTls);
}

// Called after Need::kStartTls, or before the greeting for implicit TLS.
void Session::Impl::TlsStarted(std::string version, std::string cipher) {
  // RFC 3207 4.2: discard all knowledge obtained from the client before
  // TLS, including an AUTH made in plaintext.
  EndSasl();
  ResetTransaction();
  t = Transaction();
  client.tls = true;
  client.auth_user.clear();
  tls_version = std::move(version);
  tls_cipher = std::move(cipher);
  line.clear();
  line_len = 0;
  line_cr = line_bare = line_nul = false;
  if (state != State::kClosed) SetState(State::kNoHelo);
}

// ---- Session ------------------------------------------------------------

Session::Session(const SessionConfig& config, SessionHost& host,
                 ClientInfo client)
    : impl_(std::make_unique<Impl>(config, host, std::move(client))) {}

// A message begun but never committed is abandoned with the connection.
Session::~Session() {
  if (impl_->MessageOpen()) impl_->host.AbortMessage();
}

void Session::Greet() {
  if (!impl_->config.greet_refusal.empty()) {
    impl_->out += impl_->config.greet_refusal + "\r\n";
    impl_->SetState(Impl::State::kClosed);
    Refusal connect;
    connect.stage = "connect";
    impl_->host.Refused(connect, impl_->config.greet_refusal);
    return;
  }
  if (impl_->config.pregreet_wait.count() > 0) {
    impl_->SetState(Impl::State::kGreetWait);
    return;
  }
  // RFC 5321 4.2: the greeting carries no enhanced code (none negotiated).
  impl_->out += "220 " + impl_->config.hostname + " ESMTP Tern\r\n";
}

void Session::GreetWaitDone(bool talked_first) {
  if (impl_->state != Impl::State::kGreetWait) return;
  if (talked_first) {
    // RFC 5321 3.1: a 554 in place of the 220 refuses the session; the
    // client must send QUIT, which we do not wait for. RFC 5321 4.3.1
    // has the client wait for the greeting; RFC 3463 5.5.1: invalid
    // command (sequence).
    impl_->out += "554 5.5.1 " + impl_->config.hostname +
                  " Protocol error: commands sent before the greeting\r\n";
    impl_->SetState(Impl::State::kClosed);
    return;
  }
  impl_->SetState(Impl::State::kNoHelo);
  impl_->out += "220 " + impl_->config.hostname + " ESMTP Tern\r\n";
}

size_t Session::Feed(std::string_view data) { return impl_->Feed(data); }

Need Session::need() const { return impl_->need(); }

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
  if (impl_->state == Impl::State::kAuthDelay) {
    impl_->SetState(Impl::State::kReady);
  }
  impl_->delay = std::chrono::milliseconds(0);
}

const Transaction& Session::transaction() const { return impl_->t; }

void Session::SenderChecked(std::string_view refusal) {
  impl_->SenderChecked(refusal);
}

void Session::RcptChecked(std::string_view refusal) { impl_->RcptChecked(refusal); }

const SessionConfig& Session::config() const { return impl_->config; }

const Mailbox& Session::pending_recipient() const { return impl_->rcpt_pending; }

void Session::CommitRefused(std::string_view reply) {
  impl_->CommitRefused(reply);
}

void Session::Committed(bool ok, bool no_space) {
  impl_->Committed(ok, no_space);
}

void Session::Timeout() {
  if (impl_->state == Impl::State::kClosed) return;
  impl_->CloseWith("421 4.4.2 " + impl_->config.hostname +
                   " Error: timeout exceeded");
}

void Session::Shutdown() {
  if (impl_->state == Impl::State::kClosed) return;
  impl_->CloseWith("421 4.3.2 " + impl_->config.hostname +
                   " Service shutting down");
}

bool Session::InTransaction() const { return impl_->InTransaction(); }

bool Session::InData() const { return impl_->InData(); }

const ClientInfo& Session::client() const { return impl_->client; }

ClientInfo& Session::mutable_client() { return impl_->client; }

}  // namespace tern::smtp
