// The IMAP session's framing, states and authentication (RFC 9051 3, 6.1,
// 6.2), and the commands that need no mail store. See session.h.
#include "imap/server/session.h"

#include <algorithm>
#include <utility>

#include "common/strings.h"
#include "imap/protocol/quote.h"
#include "imap/protocol/mutf7.h"
#include "imap/server/session_impl.h"

namespace tern::imap {
namespace {

// RFC 4422 3: SASL lines are base64 and SCRAM messages are short.
constexpr size_t kSaslLineLimit = 16 * 1024;
// "DONE" and a little slack (RFC 2177 3).
constexpr size_t kIdleLineLimit = 1024;

ReaderLimits LimitsFor(const SessionConfig& c) {
  ReaderLimits l;
  l.append_limit = c.append_limit;
  l.literal_plus = true;
  return l;
}

}  // namespace

std::optional<size_t> SelectedFolder::Find(uint32_t uid) const {
  auto it = std::lower_bound(
      messages.begin(), messages.end(), uid,
      [](const store::MessageMeta& m, uint32_t u) { return m.uid < u; });
  if (it == messages.end() || it->uid != uid) return std::nullopt;
  return static_cast<size_t>(it - messages.begin());
}

std::string FormatSet(const std::vector<uint32_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(v[i]);
    if (j > i) out += ':' + std::to_string(v[j]);
    i = j + 1;
  }
  return out;
}

Session::Impl::Impl(const SessionConfig& c, SessionHost& h, ClientInfo ci)
    : config(c), host(h), client(std::move(ci)), reader(LimitsFor(c)) {}

void Session::Impl::Untagged(std::string_view text) {
  out += "* ";
  out += text;
  out += "\r\n";
}

void Session::Impl::Tagged(std::string_view status, std::string_view text) {
  out += tag_;
  out += ' ';
  out += status;
  out += ' ';
  out += text;
  out += "\r\n";
  if (status != "BAD") errors = 0;
}

void Session::Impl::Bad(std::string_view text) {
  Tagged("BAD", text);
  if (++errors >= config.max_errors) {
    Untagged("BYE Too many invalid commands");
    state = State::kLogout;
    need = Need::kClose;
  }
}

void Session::Impl::StoreError(const Error& e, bool trycreate) {
  switch (e.code) {
    case ENOENT:
      No(trycreate ? "[TRYCREATE] No such mailbox" : "[NONEXISTENT] No such mailbox");
      return;
    case EEXIST: No("[ALREADYEXISTS] Mailbox already exists"); return;
    case ENOTEMPTY: No("[HASCHILDREN] Mailbox has children"); return;
    case EINVAL: No("[CANNOT] Invalid mailbox name"); return;
    case EPERM: No("[CANNOT] " + e.message); return;
    default: break;
  }
  if (e.NoSpace()) {
    No("[OVERQUOTA] Out of storage space");
    return;
  }
  No("[UNAVAILABLE] Mailbox store failed, try again later");
  errors = 0;
}

std::string Session::Impl::MailboxOut(std::string_view name) const {
  if (utf8()) return FormatAstring(name, true);
  auto enc = EncodeMutf7(name);
  return FormatAstring(enc ? *enc : std::string(name), false);
}

bool Session::Impl::AuthAllowed() const {
  return client.tls || client.plaintext_ok;
}

std::string Session::Impl::Capabilities() const {
  // Only what is implemented is offered (RFC 9051 7.2.2).
  std::string caps = "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE";
  if (state == State::kNotAuthenticated) {
    if (client.starttls_available && !client.tls) caps += " STARTTLS";
    if (!AuthAllowed()) {
      caps += " LOGINDISABLED";  // RFC 9051 6.2.3
    } else {
      for (const std::string& m : Split(config.sasl_mechanisms, ' ')) {
        caps += " AUTH=";
        caps += m;
      }
    }
    return caps;
  }
  caps +=
      " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE CREATE-SPECIAL-USE"
      " LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES CONDSTORE QRESYNC"
      " SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES"
      " STATUS=SIZE UTF8=ACCEPT MULTIAPPEND BINARY COMPRESS=DEFLATE QUOTA QUOTA=RES-STORAGE"
      " APPENDLIMIT=";
  caps += std::to_string(config.append_limit);
  return caps;
}

void Session::Impl::Capability() {
  Untagged("CAPABILITY " + Capabilities());
  Ok("CAPABILITY completed");
}

size_t Session::Impl::Feed(std::string_view data) {
  size_t used = 0;
  while (need == Need::kInput && state != State::kLogout) {
    size_t n = reader.Feed(data.substr(used));
    used += n;
    switch (reader.event()) {
      case ReaderEvent::kNone:
        return used;
      case ReaderEvent::kCommand:
        OnCommand(reader.TakeCommand());
        break;
      case ReaderEvent::kContinue:
        OnContinue();
        break;
      case ReaderEvent::kLiteralData:
        OnLiteralData(reader.literal_data());
        break;
      case ReaderEvent::kLine:
        OnLine(reader.TakeLine());
        break;
      case ReaderEvent::kReject:
        OnReject(reader.rejection());
        break;
    }
    if (used >= data.size() && reader.event() == ReaderEvent::kNone) break;
  }
  return used;
}

void Session::Impl::OnReject(const Rejection& r) {
  if (in_sasl) {
    // An over-long SASL line (RFC 9051 6.2.2: the exchange fails).
    in_sasl = false;
    sasl.Reset();
    Bad("SASL response too long");
    return;
  }
  if (idling) {
    idling = false;
    Bad("Expected DONE");
    return;
  }
  DropAppend();
  out += r.Response();
  if (!r.no && ++errors >= config.max_errors) {
    Untagged("BYE Too many invalid commands");
    state = State::kLogout;
    need = Need::kClose;
  }
  if (r.close) {
    if (need != Need::kClose) Untagged("BYE Cannot resynchronize with the client");
    state = State::kLogout;
    need = Need::kClose;
  }
}

void Session::Impl::OnContinue() {
  const FramedCommand& partial = reader.partial();
  // Only LOGIN (a password), AUTHENTICATE and the commands of the
  // authenticated states take literals; an APPEND before login is refused
  // before its octets come (RFC 9051 7.5: the client then drops it).
  if (partial.name == "APPEND" && state == State::kNotAuthenticated) {
    tag_ = ValidTag(partial.tag) ? partial.tag : "*";
    Bad("Log in first");
    reader.RejectLiteral();
    return;
  }
  out += "+ Ready for literal data\r\n";
  reader.AcceptLiteral();
}

void Session::Impl::OnLiteralData(std::string_view chunk) {
  // Only APPEND literals are streamed (reader.h). Before login nothing is
  // kept: the command is refused when it is complete.
  if (state == State::kNotAuthenticated) return;
  if (!appending) appending = Appending{};
  Appending& a = *appending;
  if (a.error) return;
  if (!a.mailbox) a.mailbox = AppendTarget(reader.partial(), {utf8()});
  size_t index = reader.literal_index();
  if (a.pending.empty() || a.pending.back().first != index) {
    a.pending.emplace_back(index, std::string());
  }
  a.pending.back().second.append(chunk);
  a.pending_bytes += chunk.size();
  // Written on the blocking pool a megabyte at a time.
  if (a.pending_bytes >= 1024 * 1024) {
    job = Job::kAppendData;
    need = Need::kWork;
  }
}

void Session::Impl::DropAppend() { appending.reset(); }

void Session::Impl::OnLine(std::string line) {
  if (in_sasl) {
    SaslLine(line);
    return;
  }
  if (idling) {
    idling = false;
    if (IsIdleDone(line)) {
      Ok("IDLE terminated");
    } else {
      Bad("Expected DONE");
    }
    return;
  }
}

void Session::Impl::OnCommand(FramedCommand framed) {
  ++commands;
  ParseOptions po;
  po.utf8 = utf8();
  auto cmd = ParseCommand(framed, po);
  if (!cmd) {
    DropAppend();
    tag_ = ValidTag(framed.tag) ? framed.tag : "*";
    Bad(cmd.error().message);
    return;
  }
  tag_ = cmd->tag;
  Dispatch(std::move(*cmd));
}

void Session::Impl::Dispatch(Command cmd) {
  using N = CommandName;
  N name = cmd.name;
  if (name != N::kAppend) DropAppend();
  // Any state (RFC 9051 6.1).
  if (name == N::kLogout) {
    Untagged("BYE Logging out");
    Ok("LOGOUT completed");
    state = State::kLogout;
    need = Need::kClose;
    return;
  }
  if (state == State::kNotAuthenticated) {
    switch (name) {
      case N::kCapability: Capability(); return;
      case N::kNoop: Ok("NOOP completed"); return;
      case N::kId: Id(cmd); return;
      case N::kStartTls:
        if (client.tls || !client.starttls_available) {
          Bad("TLS is already active or not available");
          return;
        }
        Ok("Begin TLS negotiation now");
        need = Need::kStartTls;
        return;
      case N::kLogin: {
        if (!AuthAllowed()) {
          No("[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS");
          return;
        }
        if (host.AuthBlocked()) {
          No("[UNAVAILABLE] Too many failed logins, try again later");
          return;
        }
        const auto& a = cmd.get<LoginArgs>();
        std::string message;
        message += '\0';
        message += a.user;
        message += '\0';
        message += a.password;
        auto mech = host.MakeSaslMechanism("PLAIN");
        if (!mech) {
          No("[UNAVAILABLE] Authentication is not available");
          return;
        }
        OnSasl(sasl.StartRaw(std::move(mech), "LOGIN", std::move(message)));
        return;
      }
      case N::kAuthenticate:
        StartSasl(cmd);
        return;
      default:
        Bad("Log in first");
        return;
    }
  }
  if (name == N::kStartTls || name == N::kLogin || name == N::kAuthenticate) {
    Bad("Already authenticated");
    return;
  }
  if (name == N::kCapability) {
    Capability();
    return;
  }
  if (name == N::kId) {
    Id(cmd);
    return;
  }
  if (name == N::kEnable) {
    Enable(cmd);
    return;
  }
  if (name == N::kNamespace) {
    Namespace();
    return;
  }
  if (name == N::kCompress) {
    Compress(cmd);
    return;
  }
  static constexpr N kSelectedOnly[] = {N::kCheck, N::kClose, N::kUnselect,
                                        N::kExpunge, N::kSearch, N::kFetch,
                                        N::kStore, N::kCopy, N::kMove,
                                        N::kSort, N::kThread};
  bool selected_only = std::find(std::begin(kSelectedOnly), std::end(kSelectedOnly),
                                 name) != std::end(kSelectedOnly);
  if (selected_only && state != State::kSelected) {
    Bad("No mailbox selected");
    return;
  }
  switch (name) {
    case N::kNoop:
      if (state != State::kSelected) {
        Ok("NOOP completed");
        return;
      }
      break;
    default:
      break;
  }
  if (name == N::kStore || name == N::kExpunge || name == N::kMove ||
      (name == N::kCopy && false)) {
    if (selected && selected->read_only && name != N::kCopy) {
      No("[READ-ONLY] Mailbox is read-only");
      return;
    }
  }
  // Everything else reads or writes the store: on the blocking pool.
  command = std::move(cmd);
  job = Job::kCommand;
  need = Need::kWork;
}

void Session::Impl::Id(const Command& cmd) {
  // RFC 2971 3.3: the server's identity; nothing about its version.
  Untagged("ID (\"name\" \"Tern\")");
  Ok("ID completed");
}

void Session::Impl::Compress(const Command& cmd) {
  // RFC 4978 5: "command-auth =/ compress", so the authenticated and the
  // selected state only (before login Dispatch says "Log in first").
  // RFC 4978 3: BAD for an unknown argument; "DEFLATE" is the one there is.
  if (cmd.get<CompressArgs>().algorithm != "DEFLATE") {
    Bad("Unknown compression algorithm");
    return;
  }
  if (compressed) {
    // Once on, compression stays on for the connection. RFC 4978 3
    // allows BAD here and gives NO [COMPRESSIONACTIVE] when some layer
    // already compresses; RFC 5530 3 defines that code as "compression is
    // already active", which is the case, so the client gets the code.
    No("[COMPRESSIONACTIVE] DEFLATE is already active");
    return;
  }
  // RFC 4978 3: the server compresses starting right after the CRLF of
  // this OK, and the client from its next command on. The connection
  // writes the OK as it is, then switches (Need::kCompress); whatever
  // the reader has not taken yet is compressed.
  Ok("DEFLATE active");
  need = Need::kCompress;
}

void Session::Impl::Enable(const Command& cmd) {
  // RFC 5161 3.1: ENABLED lists what this command newly enabled.
  std::string enabled;
  for (const std::string& c : cmd.get<EnableArgs>().capabilities) {
    bool* flag = nullptr;
    if (c == "IMAP4REV2") flag = &rev2;
    else if (c == "UTF8=ACCEPT") flag = &utf8_accept;
    else if (c == "CONDSTORE") flag = &condstore;
    else if (c == "QRESYNC") flag = &qresync;
    if (flag == nullptr || *flag) continue;
    *flag = true;
    if (flag == &qresync) condstore = true;  // RFC 7162 3.2.3
    enabled += ' ';
    enabled += c == "IMAP4REV2" ? "IMAP4rev2" : c;
  }
  Untagged("ENABLED" + enabled);
  Ok("ENABLE completed");
}

void Session::Impl::StartSasl(const Command& cmd) {
  const auto& a = cmd.get<AuthenticateArgs>();
  if (!AuthAllowed()) {
    No("[PRIVACYREQUIRED] Authentication is disabled before STARTTLS");
    return;
  }
  if (host.AuthBlocked()) {
    No("[UNAVAILABLE] Too many failed logins, try again later");
    return;
  }
  bool known = false;
  for (const std::string& m : Split(config.sasl_mechanisms, ' ')) known |= (m == a.mechanism);
  std::unique_ptr<auth::SaslMechanism> mech;
  if (known) mech = host.MakeSaslMechanism(a.mechanism);
  if (!mech) {
    No("[CANNOT] Unsupported authentication mechanism");
    return;
  }
  std::optional<std::string_view> initial;
  if (a.initial_response) initial = *a.initial_response;
  OnSasl(sasl.Start(std::move(mech), a.mechanism, initial));
}

void Session::Impl::SaslLine(std::string_view line) {
  in_sasl = false;
  OnSasl(sasl.Respond(line));
}

void Session::Impl::OnSasl(auth::SaslExchange::Event event) {
  using Event = auth::SaslExchange::Event;
  switch (event) {
    case Event::kStep:
      job = Job::kSaslStep;
      need = Need::kWork;
      return;
    case Event::kChallenge:
      out += "+ " + sasl.challenge() + "\r\n";
      in_sasl = true;
      reader.ExpectLine(kSaslLineLimit);
      return;
    case Event::kSuccess:
      host.AuthSucceeded(sasl.mechanism(), sasl.user());
      user = sasl.user();
      sasl.Reset();
      job = Job::kLogin;
      need = Need::kWork;
      return;
    case Event::kFailure:
      delay = host.AuthFailed(sasl.mechanism(), sasl.user());
      sasl.Reset();
      // RFC 9051 7.1: [AUTHENTICATIONFAILED], after the throttle's delay.
      after_delay = tag_ + " NO [AUTHENTICATIONFAILED] Authentication failed\r\n";
      need = Need::kDelay;
      return;
    case Event::kCancelled:
      sasl.Reset();
      Bad("Authentication cancelled");  // RFC 9051 6.2.2
      return;
    case Event::kBadBase64:
    case Event::kBadFinalAck:
    case Event::kMalformed:
      sasl.Reset();
      Bad("Malformed authentication exchange");
      return;
    case Event::kTempFailure:
      sasl.Reset();
      No("[UNAVAILABLE] Account store unavailable, try again later");
      return;
  }
}

void Session::Impl::FinishLogin() {
  auto st = host.OpenStore(user);
  if (!st) {
    user.clear();
    No("[UNAVAILABLE] Mailbox store unavailable, try again later");
    return;
  }
  store = std::move(*st);
  state = State::kAuthenticated;
  // RFC 9051 6.2.3: the capabilities may change with login.
  Ok("[CAPABILITY " + Capabilities() + "] Logged in");
}

void Session::Impl::Work() {
  Job j = job;
  job = Job::kNone;
  need = Need::kInput;
  switch (j) {
    case Job::kNone:
      return;
    case Job::kSaslStep: {
      auth::SaslStep step = sasl.Run();
      OnSasl(sasl.Stepped(step));
      return;
    }
    case Job::kLogin:
      FinishLogin();
      return;
    case Job::kAppendData:
      WriteAppendData();
      return;
    case Job::kIdleSync:
      if (selected) Refresh(true);
      Hibernate();
      return;
    case Job::kCommand:
      RunCommand();
      return;
  }
}

void Session::Impl::RunCommand() {
  using N = CommandName;
  if (fetching) {
    FetchMore();
    return;
  }
  Command cmd = std::move(*command);
  command.reset();
  tag_ = cmd.tag;
  // After IDLE the view comes back from the store for the commands that
  // use messages by number or UID (these are also all the commands that
  // hold expunges back, so a hibernated Refresh() may always send them);
  // the others work on the hibernated view.
  bool thawed = false;
  if (selected && selected->hibernated &&
      (cmd.name == N::kFetch || cmd.name == N::kStore || cmd.name == N::kSearch ||
       cmd.name == N::kSort || cmd.name == N::kThread || cmd.name == N::kCopy ||
       cmd.name == N::kMove || cmd.name == N::kExpunge)) {
    if (!Thaw()) return;
    thawed = true;
  }
  // Changes made elsewhere reach the client before this command's answer
  // when something told us of them, and at least every few seconds
  // otherwise (programs that do not tell: mutt, another Tern node).
  if (selected && cmd.name != N::kNoop && cmd.name != N::kCheck &&
      cmd.name != N::kIdle &&
      (thawed || woken || std::chrono::steady_clock::now() - selected->last_sync >
                    std::chrono::seconds(5))) {
    // RFC 9051 7.5.1; RFC 5256 3: SORT and THREAD are SEARCH here.
    bool held = !cmd.uid && (cmd.name == N::kFetch || cmd.name == N::kStore ||
                             cmd.name == N::kSearch || cmd.name == N::kSort ||
                             cmd.name == N::kThread);
    Refresh(!held);
  }
  switch (cmd.name) {
    case N::kNoop:
    case N::kCheck:
      Refresh(true);
      Ok(cmd.name == N::kNoop ? "NOOP completed" : "CHECK completed");
      return;
    case N::kIdle:
      if (selected) Refresh(true);
      out += "+ idling\r\n";
      idling = true;
      woken = false;
      reader.ExpectLine(kIdleLineLimit);
      Hibernate();
      return;
    case N::kSelect:
    case N::kExamine: Select(cmd); return;
    case N::kCreate: Create(cmd); return;
    case N::kDelete: Delete(cmd); return;
    case N::kRename: Rename(cmd); return;
    case N::kSubscribe: Subscribe(cmd, true); return;
    case N::kUnsubscribe: Subscribe(cmd, false); return;
    case N::kList: List(cmd); return;
    case N::kLsub: Lsub(cmd); return;
    case N::kStatus: Status(cmd); return;
    case N::kAppend: Append(cmd); return;
    case N::kClose: Close(true); return;
    case N::kUnselect: Close(false); return;
    case N::kExpunge: Expunge(cmd); return;
    case N::kSearch: Search(cmd); return;
    case N::kSort: Sort(cmd); return;
    case N::kThread: Thread(cmd); return;
    case N::kFetch: Fetch(cmd); return;
    case N::kStore: Store(cmd); return;
    case N::kCopy: Copy(cmd, false); return;
    case N::kMove: Copy(cmd, true); return;
    case N::kGetQuota:
    case N::kGetQuotaRoot:
    case N::kSetQuota: QuotaCommand(cmd); return;
    default:
      Bad("Command not supported");
      return;
  }
}

Session::Session(const SessionConfig& config, SessionHost& host, ClientInfo client)
    : impl_(std::make_unique<Impl>(config, host, std::move(client))) {}

Session::~Session() = default;

void Session::Greet() {
  impl_->Untagged("OK [CAPABILITY " + impl_->Capabilities() + "] " +
                  impl_->config.hostname + " Tern IMAP4rev2 ready");
}

size_t Session::Feed(std::string_view data) { return impl_->Feed(data); }
Need Session::need() const { return impl_->need; }
std::string& Session::output() { return impl_->out; }
void Session::Work() { impl_->Work(); }
std::chrono::milliseconds Session::delay() const { return impl_->delay; }

void Session::DelayDone() {
  Impl& s = *impl_;
  if (s.need != Need::kDelay) return;
  s.need = Need::kInput;
  s.out += s.after_delay;
  s.after_delay.clear();
}

void Session::TlsStarted() {
  Impl& s = *impl_;
  s.client.tls = true;
  s.sasl.Reset();  // RFC 9051 6.2.1: nothing said before TLS counts
  if (s.need == Need::kStartTls) s.need = Need::kInput;
}

void Session::CompressionStarted() {
  Impl& s = *impl_;
  s.compressed = true;
  if (s.need == Need::kCompress) s.need = Need::kInput;
}

bool Session::Wake() {
  Impl& s = *impl_;
  s.woken = true;
  if (s.idling && s.selected && s.need == Need::kInput && s.job == Impl::Job::kNone) {
    s.job = Impl::Job::kIdleSync;
    s.need = Need::kWork;
    return true;
  }
  return false;
}

bool Session::idling() const { return impl_->idling; }

void Session::Timeout() {
  // RFC 9051 5.4: the autologout timer.
  impl_->out += "* BYE Autologout; idle for too long\r\n";
  impl_->state = Impl::State::kLogout;
  impl_->need = Need::kClose;
}

void Session::Shutdown() {
  impl_->out += "* BYE Server shutting down\r\n";
  impl_->state = Impl::State::kLogout;
  impl_->need = Need::kClose;
}

bool Session::Busy() const {
  const Impl& s = *impl_;
  if (s.idling || s.in_sasl) return false;
  return s.appending.has_value() || s.fetching.has_value() || !s.reader.idle();
}

const std::string& Session::user() const { return impl_->user; }
const ClientInfo& Session::client() const { return impl_->client; }
uint64_t Session::commands() const { return impl_->commands; }
uint64_t Session::fetched() const { return impl_->fetched; }

}  // namespace tern::imap
