// POP3 session state machine: AUTHORIZATION -> TRANSACTION -> UPDATE
// (RFC 1939 3). Every reply text is built here; the connection only carries
// out the requests (a SASL step, open the maildrop, stream a message,
// delete files). USER/PASS and AUTH share one SASL exchange
// (auth::SaslExchange, as SMTP and IMAP).
#include "pop3/session.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <utility>

#include "auth/sasl_exchange.h"
#include "common/base64.h"
#include "common/strings.h"

namespace tern::pop3 {
namespace {

enum class State : uint8_t {
  kAuthorization,
  kSasl,         // inside an AUTH exchange, the next line is a response
  kSaslFinal,    // SASL success data sent, waiting for the empty answer
  kLoggingIn,    // credentials checked or being checked, maildrop not open
  kTransaction,
  kDone,
};

// RFC 1939 msg arguments: decimal, 1..count. Returns 0 for anything else.
size_t ParseNumber(std::string_view s, size_t count) {
  if (s.empty() || s.size() > 10) return 0;
  size_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  return n >= 1 && n <= count ? n : 0;
}

bool ParseLines(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  *out = n;
  return true;
}

std::vector<std::string_view> Words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
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
  State state = State::kAuthorization;
  uint32_t errors = 0;
  std::string pending_user;  // USER accepted, waiting for PASS
  bool user_given = false;

  std::string line;
  size_t line_len = 0;       // octets seen, including those not buffered
  bool line_overflow = false;

  auth::SaslExchange sasl;
  std::chrono::milliseconds delay{0};
  bool blocked_after_delay = false;  // the failure was the last allowed
  std::string user;
  const Maildrop* drop = nullptr;
  std::vector<bool> deleted;
  size_t send_index = 0;
  int64_t send_lines = -1;
  uint32_t retrieved = 0;

  bool AuthAllowed() const { return client.tls || client.plaintext_ok; }

  void Reply(std::string_view text) {
    out.append(text);
    out += "\r\n";
  }

  // A bad command: the reply, and the end of the session after too many
  // (a client that keeps sending nonsense is not a POP3 client).
  void Error(std::string_view text) {
    Reply(text);
    if (++errors >= config.max_errors) {
      need = Need::kClose;
      state = State::kDone;
    }
  }

  void Capabilities() {
    Reply("+OK Capability list follows");
    Reply("TOP");
    Reply("UIDL");
    Reply("RESP-CODES");      // RFC 2449 6.4
    Reply("AUTH-RESP-CODE");  // RFC 3206
    Reply("PIPELINING");      // RFC 2449 6.6
    if (state == State::kAuthorization) {
      if (client.stls_available && !client.tls) Reply("STLS");  // RFC 2595 4
      if (AuthAllowed()) {
        if (config.user_command) Reply("USER");
        if (config.sasl && !config.sasl_mechanisms.empty()) {
          Reply("SASL " + config.sasl_mechanisms);
        }
      }
    }
    if (!config.expire.empty()) Reply("EXPIRE " + config.expire);
    if (config.login_delay >= 0) {
      Reply("LOGIN-DELAY " + std::to_string(config.login_delay));
    }
    Reply("IMPLEMENTATION " + config.implementation);
    Reply(".");
  }

  size_t LiveCount() const {
    size_t n = 0;
    for (size_t i = 0; i < deleted.size(); ++i) n += !deleted[i];
    return n;
  }
  uint64_t LiveSize() const {
    uint64_t n = 0;
    for (size_t i = 0; i < deleted.size(); ++i) {
      if (!deleted[i]) n += drop->size(i);
    }
    return n;
  }
  std::string DropSummary() const {
    return std::to_string(LiveCount()) + " messages (" +
           std::to_string(LiveSize()) + " octets)";
  }

  // Message number argument that names an undeleted message; 0 after an
  // error reply.
  size_t Message(std::string_view arg) {
    size_t n = ParseNumber(arg, drop->count());
    if (n == 0) {
      Error("-ERR No such message");
      return 0;
    }
    if (deleted[n - 1]) {
      Error("-ERR Message " + std::to_string(n) + " already deleted");
      return 0;
    }
    return n;
  }

  void Command(std::string_view line_text);
  void Authorization(const std::string& verb, std::string_view rest,
                     const std::vector<std::string_view>& args);
  void Transaction(const std::string& verb, std::string_view rest,
                   const std::vector<std::string_view>& args);
  void SaslResponse(std::string_view line_text);
  // Before USER/PASS (as PLAIN) or AUTH; false after the lockout reply.
  bool BeginAuth();
  void OnSasl(auth::SaslExchange::Event event);
  void AuthFailedReply();
};

void Session::Impl::Command(std::string_view text) {
  if (state == State::kSasl || state == State::kSaslFinal) {
    SaslResponse(text);
    return;
  }
  size_t sp = text.find(' ');
  std::string verb = ToLower(text.substr(0, sp));
  std::string_view rest = sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
  // RFC 2449 4: keywords are 3 or 4 characters.
  if (verb.size() < 3 || verb.size() > 4) {
    Error("-ERR Unknown command");
    return;
  }
  // RFC 2449 4: 255 octets per command line; AUTH is exempt (RFC 5034 4).
  if (line_len > config.command_line_limit && verb != "auth") {
    Error("-ERR Command line too long");
    return;
  }
  std::vector<std::string_view> args = Words(rest);
  if (verb == "capa") {  // RFC 2449 5: in every state
    if (!args.empty()) return Error("-ERR CAPA takes no argument");
    Capabilities();
    return;
  }
  if (state == State::kAuthorization) {
    Authorization(verb, rest, args);
  } else {
    Transaction(verb, rest, args);
  }
}

void Session::Impl::Authorization(const std::string& verb, std::string_view rest,
                                  const std::vector<std::string_view>& args) {
  if (verb == "quit") {
    Reply("+OK " + config.hostname + " POP3 server signing off");
    need = Need::kClose;
    state = State::kDone;
    return;
  }
  if (verb == "stls") {
    // RFC 2595 4: only in AUTHORIZATION, only once, never after TLS.
    if (!client.stls_available || client.tls) return Error("-ERR STLS not available");
    if (!args.empty()) return Error("-ERR STLS takes no argument");
    Reply("+OK Begin TLS negotiation");
    need = Need::kStartTls;
    user_given = false;
    pending_user.clear();
    return;
  }
  if (verb == "user") {
    if (!config.user_command) return Error("-ERR Unknown command");
    if (!AuthAllowed()) {
      return Error("-ERR [AUTH] Plaintext authentication is disabled: use STLS or POP3S");
    }
    // A name may hold spaces (quoted local parts): take the whole rest.
    std::string_view name = Trim(rest);
    if (name.empty()) return Error("-ERR USER needs a name");
    pending_user = std::string(name);
    user_given = true;
    Reply("+OK Send PASS");
    return;
  }
  if (verb == "pass") {
    if (!user_given) return Error("-ERR USER first");
    user_given = false;
    // RFC 1939 7: the password may contain spaces; all of the rest is it.
    // Checked as SASL PLAIN (RFC 4616 2: authzid, authcid, passwd) so that
    // every login goes through one exchange.
    std::string message = '\0' + pending_user + '\0' + std::string(rest);
    pending_user.clear();
    if (!BeginAuth()) return;
    OnSasl(sasl.StartRaw(host.MakeSaslMechanism("PLAIN"), "USER", std::move(message)));
    return;
  }
  if (verb == "apop") {
    user_given = false;
    return Error("-ERR APOP not available");
  }
  if (verb == "auth") {
    user_given = false;
    if (!config.sasl) return Error("-ERR Unknown command");
    if (!AuthAllowed()) {
      return Error("-ERR [AUTH] Authentication is disabled here: use STLS or POP3S");
    }
    if (args.empty()) {
      // Not in RFC 5034, but older clients (RFC 1734 era) probe with a
      // bare AUTH and expect the mechanism list.
      Reply("+OK Mechanisms follow");
      for (std::string_view m : Words(config.sasl_mechanisms)) Reply(m);
      Reply(".");
      return;
    }
    if (args.size() > 2) return Error("-ERR Syntax: AUTH mechanism [initial-response]");
    std::string mech(args[0]);
    for (char& c : mech) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    bool known = false;
    for (std::string_view m : Words(config.sasl_mechanisms)) known |= (m == mech);
    std::unique_ptr<auth::SaslMechanism> mechanism;
    if (known) mechanism = host.MakeSaslMechanism(mech);
    if (mechanism == nullptr) return Error("-ERR Unsupported authentication mechanism");
    if (!BeginAuth()) return;
    auto event = sasl.Start(std::move(mechanism), mech,
                            args.size() == 2 ? std::optional<std::string_view>(args[1])
                                             : std::nullopt);
    if (event == auth::SaslExchange::Event::kBadBase64) {
      state = State::kAuthorization;
      return Error("-ERR Invalid base64 in initial response");
    }
    OnSasl(event);
    return;
  }
  static constexpr std::string_view kTransactionOnly[] = {
      "stat", "list", "retr", "dele", "noop", "rset", "top", "uidl"};
  if (std::find(std::begin(kTransactionOnly), std::end(kTransactionOnly), verb) !=
      std::end(kTransactionOnly)) {
    Error("-ERR Not logged in yet");
    return;
  }
  Error("-ERR Unknown command");
}

// Before an exchange: the lockout (RFC 5034 doesn't say; SMTP's rule).
bool Session::Impl::BeginAuth() {
  if (host.AuthBlocked()) {
    state = State::kDone;
    Reply("-ERR [AUTH] Too many failed logins, try again later");
    need = Need::kClose;
    return false;
  }
  state = State::kSasl;
  return true;
}

// What the exchange asks for, in POP3 words (RFC 5034 4, RFC 3206).
void Session::Impl::OnSasl(auth::SaslExchange::Event event) {
  using Event = auth::SaslExchange::Event;
  switch (event) {
    case Event::kStep:
      state = State::kLoggingIn;
      need = Need::kSaslStep;
      return;
    case Event::kChallenge:
      // RFC 5034 4 has no room for data with +OK, so success data goes out
      // as a challenge too; the client answers it with an empty line.
      state = sasl.final_challenge() ? State::kSaslFinal : State::kSasl;
      Reply("+ " + sasl.challenge());
      return;
    case Event::kSuccess:
      host.AuthSucceeded(sasl.mechanism(), sasl.user());
      user = sasl.user();
      state = State::kLoggingIn;
      need = Need::kLogin;
      return;
    case Event::kFailure:
      delay = host.AuthFailed(sasl.mechanism(), sasl.user());
      sasl.Reset();
      blocked_after_delay = true;
      if (delay.count() > 0) {
        need = Need::kDelay;
        return;
      }
      AuthFailedReply();
      return;
    case Event::kCancelled:  // RFC 5034 4: the client cancels
      sasl.Reset();
      state = State::kAuthorization;
      return Error("-ERR Authentication cancelled");
    case Event::kBadBase64:
      sasl.Reset();
      state = State::kAuthorization;
      return Error("-ERR Invalid base64 in response");
    case Event::kBadFinalAck:
      sasl.Reset();
      state = State::kAuthorization;
      return Error("-ERR Expected an empty response");
    case Event::kMalformed:
      sasl.Reset();
      state = State::kAuthorization;
      return Error("-ERR Malformed authentication message");
    case Event::kTempFailure:
      // RFC 3206 4: the account store failed; not the client's fault, and
      // not a strike.
      sasl.Reset();
      state = State::kAuthorization;
      return Reply("-ERR [SYS/TEMP] Mailbox unavailable, try again later");
  }
}

// After a wrong password (and its delay): the answer, or the lockout when
// that was one failure too many.
void Session::Impl::AuthFailedReply() {
  blocked_after_delay = false;
  if (host.AuthBlocked()) {
    state = State::kDone;
    Reply("-ERR [AUTH] Too many failed logins, try again later");
    need = Need::kClose;
    return;
  }
  state = State::kAuthorization;
  Error("-ERR [AUTH] Authentication failed");
}

void Session::Impl::SaslResponse(std::string_view text) {
  if (line_len > config.auth_line_limit) {
    sasl.Reset();
    state = State::kAuthorization;
    Error("-ERR Authentication line too long");
    return;
  }
  OnSasl(sasl.Respond(text));
}

void Session::Impl::Transaction(const std::string& verb, std::string_view rest,
                                const std::vector<std::string_view>& args) {
  const size_t count = drop->count();
  if (verb == "stat") {
    if (!args.empty()) return Error("-ERR STAT takes no argument");
    Reply("+OK " + std::to_string(LiveCount()) + " " + std::to_string(LiveSize()));
    return;
  }
  if (verb == "list" || verb == "uidl") {
    bool list = verb == "list";
    if (args.size() > 1) return Error("-ERR Too many arguments");
    if (args.size() == 1) {
      size_t n = Message(args[0]);
      if (n == 0) return;
      Reply("+OK " + std::to_string(n) + " " +
            (list ? std::to_string(drop->size(n - 1)) : drop->uidl(n - 1)));
      return;
    }
    Reply(list ? "+OK " + DropSummary() : std::string("+OK Unique-ID listing follows"));
    for (size_t i = 0; i < count; ++i) {
      if (deleted[i]) continue;
      out += std::to_string(i + 1);
      out += ' ';
      out += list ? std::to_string(drop->size(i)) : drop->uidl(i);
      out += "\r\n";
    }
    Reply(".");
    return;
  }
  if (verb == "retr" || verb == "top") {
    bool top = verb == "top";
    if (args.size() != (top ? 2u : 1u)) {
      return Error(top ? "-ERR Syntax: TOP msg n" : "-ERR Syntax: RETR msg");
    }
    size_t n = Message(args[0]);
    if (n == 0) return;
    int64_t lines = -1;
    if (top && !ParseLines(args[1], &lines)) {
      return Error("-ERR Line count must be a non-negative number");
    }
    send_index = n - 1;
    send_lines = lines;
    need = Need::kSend;
    return;
  }
  if (verb == "dele") {
    if (args.size() != 1) return Error("-ERR Syntax: DELE msg");
    size_t n = Message(args[0]);
    if (n == 0) return;
    deleted[n - 1] = true;
    Reply("+OK Message " + std::to_string(n) + " deleted");
    return;
  }
  if (verb == "noop") {
    if (!args.empty()) return Error("-ERR NOOP takes no argument");
    Reply("+OK");
    return;
  }
  if (verb == "rset") {
    if (!args.empty()) return Error("-ERR RSET takes no argument");
    std::fill(deleted.begin(), deleted.end(), false);
    Reply("+OK Maildrop has " + DropSummary());
    return;
  }
  if (verb == "quit") {
    // RFC 1939 6: QUIT from TRANSACTION enters UPDATE.
    bool any = std::find(deleted.begin(), deleted.end(), true) != deleted.end();
    if (!any) {
      Reply("+OK " + config.hostname + " POP3 server signing off (" +
            DropSummary() + " left)");
      need = Need::kClose;
      state = State::kDone;
      return;
    }
    need = Need::kUpdate;
    return;
  }
  static constexpr std::string_view kAuthOnly[] = {"user", "pass", "apop", "auth", "stls"};
  if (std::find(std::begin(kAuthOnly), std::end(kAuthOnly), verb) != std::end(kAuthOnly)) {
    Error("-ERR Already logged in");
    return;
  }
  (void)rest;
  Error("-ERR Unknown command");
}

Session::Session(const SessionConfig& config, SessionHost& host, ClientInfo client)
    : impl_(std::make_unique<Impl>(config, host, std::move(client))) {}
Session::~Session() = default;

void Session::Greet() {
  impl_->Reply("+OK " + impl_->config.hostname + " POP3 server ready");
}

size_t Session::Feed(std::string_view data) {
  Impl& s = *impl_;
  size_t used = 0;
  while (used < data.size() && s.need == Need::kInput) {
    size_t lf = data.find('\n', used);
    size_t end = lf == std::string_view::npos ? data.size() : lf;
    size_t chunk = end - used;
    s.line_len += chunk;
    // Buffer at most the AUTH limit; beyond it the line is only counted.
    if (!s.line_overflow) {
      if (s.line.size() + chunk > s.config.auth_line_limit) {
        s.line_overflow = true;
        s.line.clear();
      } else {
        s.line.append(data.substr(used, chunk));
      }
    }
    used = end;
    if (lf == std::string_view::npos) break;
    ++used;  // the LF
    s.line_len += 1;
    bool overflow = s.line_overflow;
    std::string text = std::move(s.line);
    s.line.clear();
    s.line_overflow = false;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (overflow) {
      if (s.state == State::kSasl || s.state == State::kSaslFinal) {
        s.sasl.Reset();
        s.state = State::kAuthorization;
      }
      s.Error("-ERR Line too long");
    } else {
      s.Command(text);
    }
    s.line_len = 0;
    if (s.need == Need::kStartTls) {
      // RFC 2595 4 / CVE-2011-0411: nothing sent before the handshake may
      // be taken as a command after it.
      return data.size();
    }
  }
  return used;
}

Need Session::need() const { return impl_->need; }
std::string& Session::output() { return impl_->out; }
auth::SaslStep Session::RunSaslStep() { return impl_->sasl.Run(); }

void Session::SaslStepDone(const auth::SaslStep& step) {
  Impl& s = *impl_;
  if (s.need != Need::kSaslStep) return;
  s.need = Need::kInput;
  s.OnSasl(s.sasl.Stepped(step));
}

std::chrono::milliseconds Session::delay() const { return impl_->delay; }

void Session::DelayDone() {
  Impl& s = *impl_;
  if (s.need != Need::kDelay) return;
  s.need = Need::kInput;
  s.delay = std::chrono::milliseconds(0);
  s.AuthFailedReply();
}

const std::string& Session::login_user() const { return impl_->user; }

void Session::LoginDone(LoginResult r) {
  Impl& s = *impl_;
  if (s.need != Need::kLogin) return;
  s.need = Need::kInput;
  s.sasl.Reset();
  using K = LoginResult::Kind;
  if (r.kind == K::kOk) {
    s.drop = r.maildrop;
    s.deleted.assign(s.drop->count(), false);
    s.errors = 0;
    s.state = State::kTransaction;
    s.Reply("+OK Logged in, maildrop has " + s.DropSummary());
    return;
  }
  s.user.clear();
  s.state = State::kAuthorization;
  switch (r.kind) {
    case K::kInUse:
      s.Error("-ERR [IN-USE] Mailbox is in use by another session");
      return;
    case K::kLoginDelay:
      s.Error("-ERR [LOGIN-DELAY] Logged in too recently, wait before trying again");
      return;
    case K::kTempFail:
      s.Reply("-ERR [SYS/TEMP] Mailbox unavailable, try again later");
      return;
    case K::kPermFail:
    case K::kOk:
      s.Reply("-ERR [SYS/PERM] Mailbox unavailable");
      return;
  }
}

size_t Session::send_index() const { return impl_->send_index; }
int64_t Session::send_lines() const { return impl_->send_lines; }

void Session::SendOpened(bool ok) {
  Impl& s = *impl_;
  s.need = Need::kInput;
  if (!ok) {
    s.Reply("-ERR [SYS/TEMP] Message " + std::to_string(s.send_index + 1) +
            " cannot be read now");
    return;
  }
  if (s.send_lines < 0) {
    ++s.retrieved;
    s.Reply("+OK " + std::to_string(s.drop->size(s.send_index)) + " octets");
  } else {
    s.Reply("+OK Top of message follows");
  }
}

std::vector<size_t> Session::deleted() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < impl_->deleted.size(); ++i) {
    if (impl_->deleted[i]) out.push_back(i);
  }
  return out;
}

void Session::UpdateDone(bool ok) {
  Impl& s = *impl_;
  s.state = State::kDone;
  s.need = Need::kClose;
  if (ok) {
    s.Reply("+OK " + s.config.hostname + " POP3 server signing off (" +
            s.DropSummary() + " left)");
  } else {
    // RFC 1939 6: the reply says the deletions did not all happen.
    s.Reply("-ERR [SYS/TEMP] Some deleted messages not removed");
  }
}

void Session::TlsStarted() {
  Impl& s = *impl_;
  s.client.tls = true;
  s.client.stls_available = false;
  s.state = State::kAuthorization;
  s.sasl.Reset();  // RFC 2595 4: nothing said before TLS counts
  s.user_given = false;
  s.pending_user.clear();
  s.line.clear();
  s.line_len = 0;
  s.line_overflow = false;
  s.need = Need::kInput;
}

void Session::Timeout() {
  Impl& s = *impl_;
  // RFC 1939 3: an autologout does not enter UPDATE; nothing is deleted.
  s.Reply("-ERR Autologout: idle for too long");
  s.state = State::kDone;
  s.need = Need::kClose;
}

void Session::Shutdown() {
  Impl& s = *impl_;
  s.Reply("-ERR [SYS/TEMP] Server shutting down, try again later");
  s.state = State::kDone;
  s.need = Need::kClose;
}

bool Session::InTransaction() const {
  return impl_->state == State::kTransaction;
}
const std::string& Session::user() const { return impl_->user; }
const ClientInfo& Session::client() const { return impl_->client; }
uint32_t Session::retrieved() const { return impl_->retrieved; }

}  // namespace tern::pop3
