// SMTP connections on the shared connection core (net::LineConnection):
// the session's view of the queue, the directory and the AUTH throttle,
// and its own requests (group commit of a message, a SASL step off the io
// thread, the delay after a failed AUTH); and the listeners that make them.
#include "smtp/server/server.h"
#include "store/mailbox_path.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <optional>

#include "antispam/dnsbl.h"
#include "antispam/greylist.h"
#include "antispam/milter_client.h"
#include "antispam/rate_limit.h"
#include "auth/recording_credentials.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "common/trace.h"
#include "net/address.h"
#include "net/line_connection.h"
#include "policy/recipient.h"
#include "policy/sender.h"
#include "reports/dmarc_report.h"
#include "smtp/protocol/rfc5322.h"
#include "smtp/protocol/session.h"
#include "smtp/server/envelope.h"

namespace tern::smtp {
namespace {

using asio::ip::tcp;

using auth::RecordingCredentials;

// A message taken: counted, and its commit time observed. Outside the
// coroutines (g++ 12 and braced lists in coroutine bodies).
void CountAccepted(const std::string& listener, std::chrono::steady_clock::time_point started) {
  metrics::Get().smtp_accepted.With({listener}).Inc();
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  metrics::Get().smtp_commit_seconds.With().Observe(took.count());
}

// The header section is kept (up to this much) for the Message-ID of the
// trace; longer sections go without one.
constexpr size_t kMaxTraceHead = 64 * 1024;

// The Message-ID field of a header section (RFC 5322 3.6.4), trimmed and
// bounded; empty when there is none.
std::string MessageIdOf(std::string_view head) {
  size_t end = head.find("\r\n\r\n");
  if (end != std::string_view::npos) head = head.substr(0, end + 2);
  for (const HeaderField& f : SplitHeaderFields(head)) {
    if (IEquals(f.name, "Message-ID")) return std::string(Trim(f.value).substr(0, 256));
  }
  return "";
}

class Connection : public net::LineConnection, public SessionHost {
 public:
  Connection(tcp::socket socket, net::LineConnection::Options options,
             const ServerDeps& deps, std::shared_ptr<const Settings> settings,
             const SessionConfig& session_config, ClientInfo client)
      : net::LineConnection(std::move(socket), std::move(options)),
        deps_(deps),
        settings_(std::move(settings)),
        credentials_(deps.credentials),
        session_(session_config, *this, std::move(client)) {}

  // --- SessionHost ---
  RcptVerdict CheckRecipient(const Transaction& t, const Mailbox& rcpt) override {
    RcptVerdict v = policy::CheckRecipient(deps_.directory, session_.client(), rcpt);
    if (v.kind == RcptVerdict::Kind::kAccept && Limited()) {
      std::string refusal =
          deps_.rate->Recipient(settings_->rate, session_.client().auth_user, t.rcpts.size(),
                                static_cast<int64_t>(std::time(nullptr)));
      if (!refusal.empty()) {
        spdlog::info("smtp rcpt refused client={} user={} rcpt=<{}> reason=ratelimit: {}",
                     client_ip(), session_.client().auth_user, rcpt.ToString(), refusal);
        v.kind = RcptVerdict::Kind::kRefused;
        v.reply = std::move(refusal);
        return v;
      }
    }
    if (v.kind == RcptVerdict::Kind::kAccept && MailboxFull(rcpt)) {
      spdlog::info("smtp rcpt refused client={} rcpt=<{}> reason=mailbox-full",
                   session_.client().ip, rcpt.ToString());
      v.kind = RcptVerdict::Kind::kMailboxFull;
    }
    return v;
  }

  // The recipient is one account (not an alias to several) over its
  // storage quota. Usage is cached (store/quota.h), so a busy mailbox is
  // not rescanned for every recipient.
  bool MailboxFull(const Mailbox& rcpt) {
    if (deps_.quota == nullptr) return false;
    auth::Resolution r = deps_.directory.Resolve(rcpt.ToString());
    if (r.kind != auth::Resolution::Kind::kLocal || r.mailboxes.size() != 1 ||
        !r.remote.empty()) {
      return false;
    }
    const std::string& account = r.mailboxes[0];
    uint64_t limit =
        deps_.directory.QuotaOf(account).value_or(settings_->quota_storage);
    if (limit == 0) return false;
    auto path = store::MailboxPathFor(account);
    if (!path) return false;
    auto used = deps_.quota->Usage(deps_.mail_root + "/" + path->domain + "/" +
                                   path->local + "/Maildir");
    return used && *used >= limit;
  }

  std::string BeginMessage(const Transaction& t) override {
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    queue::Envelope env = MakeEnvelope(t, session_.client(), now);
    StartMailauth(now);
    summary_sender_ = env.sender;
    summary_rcpts_ = env.recipients.size();
    auto w = deps_.queue.Begin(std::move(env));
    no_space_ = false;
    if (!w) {
      spdlog::error("smtp queue unavailable client={} error={}", client_ip(),
                    w.error().message);
      no_space_ = w.error().NoSpace();
      return {};
    }
    writer_ = std::move(*w);
    trace_head_.clear();
    head_done_ = !trace::Enabled();
    mailauth_summary_.clear();
    milter_copy_.clear();
    discarded_ = false;
    return writer_->id();
  }

  bool MessageData(std::string_view data) override {
    if (!head_done_) KeepHead(data);
    if (inbound_) {
      // Our own Authentication-Results claims go (RFC 8601 5); DKIM sees
      // the message as it came.
      filtered_.clear();
      inbound_->Feed(data, &filtered_);
      data = filtered_;
    }
    if (signer_) signer_->Feed(data);
    if (milters_) milter_copy_.append(data);
    if (writer_ && writer_->Write(data)) return true;
    if (writer_ && !no_space_) {
      int err = writer_->error();
      no_space_ = err == ENOSPC || err == EDQUOT;
      spdlog::error("smtp queue write failed client={} errno={}", client_ip(),
                    err);
    }
    return false;
  }

  bool StorageFull() override { return no_space_; }

  void AbortMessage() override {
    milter_copy_.clear();
    writer_.reset();
    inbound_.reset();
    signer_.reset();
  }

  std::string Now() override { return Rfc5322Date(std::time(nullptr)); }

  // The message trace: what was refused, with what the session knew.
  void Refused(const Refusal& r, std::string_view reply) override {
    if (!trace::Enabled()) return;
    trace::Event e("refused");
    e.Add("stage", r.stage)
        .Add("client", client_ip())
        .Add("listener", options().listener)
        .Add("helo", session_.transaction().helo)
        .Add("user", session_.client().auth_user)
        .Add("from", r.from)
        .Add("rcpts", r.rcpts)
        .Add("id", r.queue_id);
    if (r.stage == "data") {
      e.Add("message_id", MessageIdOf(trace_head_)).Add("mailauth", mailauth_summary_);
    }
    e.Add("reply", reply);
    trace::Record(e);
  }

  SenderVerdict CheckMailFrom(const Mailbox& from) override {
    SenderVerdict v = policy::CheckMailFrom(deps_.directory, session_.client(), from);
    if (v.kind == SenderVerdict::Kind::kAccept && Limited()) {
      std::string refusal = deps_.rate->Mail(settings_->rate, client_ip(),
                                             session_.client().auth_user, RateDomain(from),
                                             static_cast<int64_t>(std::time(nullptr)));
      if (!refusal.empty()) {
        spdlog::info("smtp mail refused client={} user={} from=<{}> reason=ratelimit: {}",
                     client_ip(), session_.client().auth_user, from.ToString(), refusal);
        v.kind = SenderVerdict::Kind::kRefused;
        v.reply = std::move(refusal);
      }
    }
    return v;
  }

  // Rate limits (antispam/rate_limit.h) count authenticated users and
  // untrusted clients; trusted networks and `tern sendmail` are not
  // limited.
  bool Limited() const {
    return deps_.rate != nullptr &&
           (!session_.client().auth_user.empty() || !session_.client().trusted);
  }
  // Port-25 mail from strangers counts per MAIL FROM domain too.
  std::string RateDomain(const Mailbox& from) const {
    if (!Screened() || from.null()) return "";
    return from.domain;
  }

  bool HeaderSenderAllowed(const std::string& address,
                           std::string_view field) override {
    return policy::HeaderSenderAllowed(deps_.directory, session_.client(),
                                       address, field);
  }

  void RcptSyntaxError(std::string_view arg) override {
    // Bounded and printable: the text comes straight from the client.
    std::string shown(arg.substr(0, 300));
    for (char& ch : shown) {
      if (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) >= 127) {
        ch = '?';
      }
    }
    spdlog::info("smtp rcpt rejected client={} user={} arg={} reason=syntax",
                 client_ip(), session_.client().auth_user, shown);
  }

  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    credentials_.clear();
    return auth::MakeMechanism(name, credentials_);
  }

  bool AuthBlocked() override {
    if (!deps_.throttle.Blocked(client_ip())) return false;
    spdlog::warn("smtp auth refused client={} reason=too-many-failures",
                 client_ip());
    return true;
  }

  std::chrono::milliseconds AuthFailed(std::string_view mechanism,
                                       std::string_view user) override {
    metrics::Get().auth.With({"smtp", "failure"}).Inc();
    auto delay = deps_.throttle.Failure(client_ip());
    // Never the password or the SASL payload: the name and the outcome.
    spdlog::warn("smtp auth failed client={} listener={} mechanism={} user={} "
                 "delay_ms={}",
                 client_ip(), options().listener, mechanism,
                 user.empty() ? credentials_.user() : std::string(user),
                 delay.count());
    return delay;
  }

  void AuthSucceeded(std::string_view mechanism,
                     const std::string& user) override {
    metrics::Get().auth.With({"smtp", "success"}).Inc();
    deps_.throttle.Success(client_ip());
    auth_mechanism_ = std::string(mechanism);
    spdlog::info("smtp auth ok client={} listener={} mechanism={} user={}",
                 client_ip(), options().listener, mechanism, user);
  }

 protected:
  // --- net::LineConnection ---
  void Greet() override { session_.Greet(); }
  size_t Feed(std::string_view data) override { return session_.Feed(data); }
  Want want() override {
    switch (session_.need()) {
      case Need::kInput: return Want::kInput;
      case Need::kClose: return Want::kClose;
      case Need::kStartTls: return Want::kStartTls;
      case Need::kCommit:
      case Need::kDelay:
      case Need::kSaslStep:
      case Need::kSenderCheck:
      case Need::kRcptCheck:
      case Need::kGreetWait: return Want::kWork;
    }
    return Want::kClose;
  }
  std::string& output() override { return session_.output(); }
  bool Busy() override { return session_.InTransaction(); }
  void SayShutdown() override { session_.Shutdown(); }
  void SayTimeout() override { session_.Timeout(); }
  void TlsStarted() override {
    session_.TlsStarted(stream().version(), stream().cipher());
  }
  uint32_t CommandTimeout() override { return limits().command_timeout; }
  // RFC 5321 4.5.3.2.6: the data block timeout bounds each read of content.
  uint32_t ReadTimeout() override {
    return session_.InData() ? limits().data_block_timeout : 0;
  }
  asio::awaitable<bool> Work() override;
  void Ended(net::EndReason reason, std::chrono::milliseconds elapsed) override {
    writer_.reset();
    milters_.reset();  // QUIT to each filter
    spdlog::info("smtp session client={} listener={} messages={} end={} ms={}",
                 client_ip(), options().listener, messages_,
                 net::EndReasonName(reason), elapsed.count());
  }

 private:
  const std::string& client_ip() const { return session_.client().ip; }
  const config::SmtpLimits& limits() const { return settings_->limits; }
  // Clients that authenticated or are trusted get their mail signed; the
  // others, on port 25, get it checked.
  bool Vouched() const {
    return !session_.client().auth_user.empty() || session_.client().trusted;
  }
  bool Verifies() const {
    return settings_->verify && deps_.resolver != nullptr &&
           options().listener == "smtp" && !Vouched();
  }
  void StartMailauth(int64_t now);
  // The start of the message, for its Message-ID in the trace.
  void KeepHead(std::string_view data) {
    size_t from = trace_head_.size() < 3 ? 0 : trace_head_.size() - 3;
    trace_head_.append(data.substr(0, kMaxTraceHead - trace_head_.size()));
    head_done_ = trace_head_.find("\r\n\r\n", from) != std::string::npos ||
                 trace_head_.size() >= kMaxTraceHead;
  }
  // The trace's "received" (or "discarded") event of the message in
  // writer_, made before the commit takes the writer.
  std::string ReceivedTrace(const char* type, const std::string& id, uint64_t size);
  asio::awaitable<void> CheckSender();
  // Port-25 clients neither authenticated nor trusted meet [antispam].
  bool Screened() const { return options().listener == "smtp" && !Vouched(); }
  asio::awaitable<void> CheckRcpt();
  std::string Greylisted(const Mailbox& rcpt);
  // False when the message was refused (DMARC) instead of committed.
  asio::awaitable<bool> FinishMailauth();
  asio::awaitable<void> Commit();
  // [[milter]]: the chain, made at the first MAIL; the message for it.
  void UpdateMilterInfo();
  // False when the filters refused the message (CommitRefused called).
  asio::awaitable<bool> RunMilters();

  const ServerDeps& deps_;
  std::shared_ptr<const Settings> settings_;
  // Declared before the session: its SASL mechanism refers to it.
  RecordingCredentials credentials_;
  // Declared before the session: ~Session may call AbortMessage().
  std::unique_ptr<queue::Writer> writer_;
  bool no_space_ = false;  // the last Begin or Write failed for want of space
  // Mail authentication of the current transaction.
  mailauth::SmtpIdentity who_;
  std::optional<mailauth::SpfOutcome> spf_;
  // RFC 7208 2.3: the HELO identity's own result, kept for the session's
  // HELO name (checked once, not per message).
  std::optional<mailauth::SpfOutcome> helo_spf_;
  std::string helo_spf_name_;
  std::unique_ptr<mailauth::InboundMessage> inbound_;
  bool verifying_ = false;  // inbound_ checks, not only filters
  std::shared_ptr<const mailauth::DkimKeyMap> keys_;  // kept for signer_
  std::unique_ptr<mailauth::OutboundSigner> signer_;
  std::string filtered_;
  // The client's DNS list verdict, asked once (at the first RCPT).
  std::optional<antispam::ClientListing> listing_;
  std::unique_ptr<antispam::MilterChain> milters_;
  std::string milter_copy_;  // the message as written, for the filters
  bool discarded_ = false;   // a filter discarded the current message
  std::string auth_mechanism_;
  Session session_;
  uint32_t messages_ = 0;
  std::string summary_sender_;
  size_t summary_rcpts_ = 0;
  // For the trace: the message's header section so far, and the mail
  // authentication results ("spf=pass dkim=... dmarc=...").
  std::string trace_head_;
  bool head_done_ = true;
  std::string mailauth_summary_;
};

std::string Connection::ReceivedTrace(const char* type, const std::string& id,
                                      uint64_t size) {
  if (!trace::Enabled()) return "";
  const ClientInfo& c = session_.client();
  std::vector<std::string> rcpts;
  std::string from = summary_sender_;
  std::string quarantine;
  if (writer_) {
    const queue::Envelope& env = writer_->envelope();
    for (const queue::Recipient& r : env.recipients) rcpts.push_back(r.address);
    from = env.sender;
    quarantine = env.quarantine;
  }
  trace::Event e(type);
  e.Add("id", id)
      .Add("message_id", MessageIdOf(trace_head_))
      .Add("client", c.ip)
      .Add("helo", session_.transaction().helo)
      .Add("listener", options().listener);
  if (c.tls) e.Add("tls", stream().version() + " " + stream().cipher());
  e.Add("user", c.auth_user)
      .Add("from", from)
      .Add("rcpts", rcpts)
      .Add("size", size)
      .Add("mailauth", mailauth_summary_)
      .Add("quarantine", quarantine);
  return e.Line();
}

// Commits the current message through the queue's group commit and resumes
// on the connection's strand with the result.
asio::awaitable<Result<void>> CommitMessage(queue::Queue& queue,
                                            std::unique_ptr<queue::Writer> w) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(Result<void>)>(
      [&queue, &w](auto handler) {
        using Handler = decltype(handler);
        auto h = std::make_shared<Handler>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        queue.Commit(std::move(w), [h, ex](Result<void> r) {
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      asio::use_awaitable);
}

void Connection::StartMailauth(int64_t now) {
  inbound_.reset();
  signer_.reset();
  verifying_ = Verifies();
  // Every message loses forged claims of our authserv-id (RFC 8601 5);
  // only port-25 mail from strangers is checked.
  inbound_ = std::make_unique<mailauth::InboundMessage>(settings_->inbound, now,
                                                        verifying_);
  if (Vouched() && settings_->sign && deps_.dkim_keys != nullptr) {
    keys_ = deps_.dkim_keys->get();
    if (keys_ && !keys_->empty()) {
      signer_ = std::make_unique<mailauth::OutboundSigner>(*keys_, now);
    }
  }
}

// RFC 7208 2.3/2.4 at MAIL time: SPF for MAIL FROM (or HELO for <>).
asio::awaitable<void> Connection::CheckSender() {
  spf_.reset();
  std::string refusal;
  if (Verifies()) {
    const Transaction& t = session_.transaction();
    who_ = {client_ip(), t.helo,
            t.mail_from.null() ? std::string() : t.mail_from.ToString()};
    mailauth::SpfOutcome spf =
        co_await mailauth::CheckSender(*deps_.resolver, who_, settings_->hostname);
    spdlog::info("smtp spf client={} helo={} from=<{}> result={} reason={}",
                 client_ip(), who_.helo, who_.mail_from,
                 mailauth::SpfResultName(spf.result), spf.reason);
    refusal = mailauth::SpfRefusal(spf, settings_->inbound);
    if (!refusal.empty()) {
      // Only "SPF fail without DMARC": a domain with a DMARC record has
      // its say after the message (an aligned DKIM signature may pass).
      mailauth::DmarcLookup dmarc =
          co_await mailauth::DiscoverDmarc(*deps_.resolver, spf.domain);
      if (dmarc.status != mailauth::DmarcLookup::Status::kNone) refusal.clear();
    }
    spf_ = std::move(spf);
    if (!who_.mail_from.empty() && !who_.helo.empty() &&
        (!helo_spf_ || helo_spf_name_ != who_.helo)) {
      mailauth::SmtpIdentity helo_only{who_.ip, who_.helo, ""};
      helo_spf_ = co_await mailauth::CheckSender(*deps_.resolver, helo_only,
                                                 settings_->hostname);
      helo_spf_name_ = who_.helo;
      spdlog::info("smtp spf client={} helo={} identity=helo result={} reason={}",
                   client_ip(), who_.helo, mailauth::SpfResultName(helo_spf_->result),
                   helo_spf_->reason);
    }
  }
  if (refusal.empty() && !settings_->milters.empty()) {
    UpdateMilterInfo();  // makes the chain at the first MAIL
    const Transaction& t = session_.transaction();
    std::vector<std::string> args;
    if (t.declared_size > 0) args.push_back("SIZE=" + std::to_string(t.declared_size));
    if (!t.body.empty()) args.push_back("BODY=" + t.body);
    if (!t.ret.empty()) args.push_back("RET=" + t.ret);
    if (!t.envid.empty()) args.push_back("ENVID=" + t.envid);
    if (t.smtputf8) args.push_back("SMTPUTF8");
    if (t.requiretls) args.push_back("REQUIRETLS");
    // Named, not temporaries: g++ 12 may destroy temporaries of a co_await
    // expression twice.
    std::string from = t.mail_from.null() ? std::string() : t.mail_from.ToString();
    antispam::MilterVerdict v = co_await milters_->Mail(std::move(from), std::move(args));
    if (v.kind == antispam::MilterVerdict::Kind::kRefuse) {
      spdlog::info("smtp mail refused client={} from=<{}> reason=milter", client_ip(),
                   t.mail_from.ToString());
      refusal = v.reply;
    }
  }
  session_.SenderChecked(refusal);
}

// What the filters are told of the connection, as it stands at MAIL.
void Connection::UpdateMilterInfo() {
  if (!milters_) {
    milters_ = std::make_unique<antispam::MilterChain>(settings_->milters,
                                                       antispam::MilterConnectionInfo());
  }
  antispam::MilterConnectionInfo& i = milters_->info();
  const ClientInfo& c = session_.client();
  i.hostname = settings_->hostname;
  i.daemon_name = options().listener;
  i.daemon_addr = c.local_ip;
  i.client_addr = c.ip;
  i.client_port = c.port;
  i.client_name = "[" + c.ip + "]";
  i.helo = session_.transaction().helo;
  i.tls_version = c.tls ? stream().version() : std::string();
  i.cipher = c.tls ? stream().cipher() : std::string();
  i.auth_authen = c.auth_user;
  i.auth_type = c.auth_user.empty() ? std::string() : auth_mechanism_;
}

// [[milter]] at the end of the message: the filters see it (after our
// own Authentication-Results filtering, before DKIM signing) and may
// refuse, discard, quarantine or change it. Changes rewrite the spooled
// message and envelope before the commit; a filter that fails changes
// nothing (milter_client.h).
asio::awaitable<bool> Connection::RunMilters() {
  if (!milters_ || !writer_) co_return true;
  queue::Envelope& env = writer_->envelope();
  antispam::MilterMessage m = antispam::MilterMessage::Parse(milter_copy_);
  m.sender = env.sender;
  for (const queue::Recipient& r : env.recipients) m.rcpts.push_back(r.address);
  std::string id = writer_->id();
  antispam::MilterResult r = co_await milters_->Message(m, std::move(id));
  std::string what;
  for (const std::string& l : r.log) what += (what.empty() ? "" : "; ") + l;
  if (!what.empty()) spdlog::info("smtp milter id={} client={} {}", writer_->id(), client_ip(), what);
  if (r.verdict.kind == antispam::MilterVerdict::Kind::kRefuse) {
    spdlog::info("smtp message refused id={} client={} reason=milter reply=\"{}\"",
                 writer_->id(), client_ip(), r.verdict.reply.substr(0, r.verdict.reply.find('\r')));
    session_.CommitRefused(r.verdict.reply);
    co_return false;
  }
  if (r.verdict.kind == antispam::MilterVerdict::Kind::kDiscard) {
    discarded_ = true;
    co_return true;
  }
  if (r.changed_envelope) {
    std::vector<queue::Recipient> rcpts;
    for (const std::string& a : m.rcpts) {
      auto same = std::find_if(env.recipients.begin(), env.recipients.end(),
                               [&](const queue::Recipient& x) { return x.address == a; });
      if (same != env.recipients.end()) {
        rcpts.push_back(*same);
      } else {
        queue::Recipient added;
        added.address = a;
        rcpts.push_back(std::move(added));
      }
    }
    env.sender = m.sender;
    env.recipients = std::move(rcpts);
    summary_sender_ = env.sender;
    summary_rcpts_ = env.recipients.size();
    if (env.recipients.empty()) {
      // Every recipient taken away: nowhere left to deliver it.
      spdlog::info("smtp milter id={} removed every recipient: discarded", writer_->id());
      discarded_ = true;
      co_return true;
    }
  }
  if (r.changed_text) {
    std::string text = m.Text();
    if (!writer_->Restart() || !writer_->Write(text)) {
      spdlog::error("smtp queue write failed client={} errno={}", client_ip(), writer_->error());
      session_.CommitRefused("451 4.3.0 Error writing the message, try again later");
      co_return false;
    }
    if (signer_ && keys_) {
      // The signature must cover the message as it leaves.
      signer_ = std::make_unique<mailauth::OutboundSigner>(*keys_, env.received_at);
      signer_->Feed(text);
    }
  }
  if (r.spam) {
    // Local delivery files messages marked so into the Junk folder
    // (delivery/local_delivery.cc MarkedJunk), as for DMARC quarantine.
    env.prepend += "X-Spam: yes (mail filter verdict)\r\n";
    spdlog::info("smtp milter id={} marked the message as spam: Junk folder", writer_->id());
  }
  if (!r.quarantine.empty()) {
    env.quarantine = r.quarantine;
    spdlog::warn("smtp milter id={} quarantined: {}", writer_->id(), r.quarantine);
  }
  co_return true;
}

// Issue 15 at RCPT: the DNS lists (RFC 5782; queried since the connect),
// then greylisting, then the mail filters. The decision waits for RCPT so
// that the client sees why in the reply to a command. Mail to postmaster
// skips the lists and greylisting: RFC 5321 4.5.1 wants it taken, and a
// listed sender must be able to ask why (the filters still see it).
asio::awaitable<void> Connection::CheckRcpt() {
  const config::AntispamSettings& as = settings_->antispam;
  std::string refusal;
  const char* reason = "";
  const Mailbox& rcpt = session_.pending_recipient();
  const bool postmaster = IEquals(rcpt.local, "postmaster");
  if (Screened() && !postmaster) {
    if (!listing_ && deps_.resolver != nullptr && (!as.dnsbl.empty() || !as.dnswl.empty())) {
      listing_ = co_await antispam::CheckClientLists(*deps_.resolver, client_ip(), as.dnswl,
                                                     as.dnsbl);
      for (const antispam::ListAnswer& e : listing_->errors) {
        spdlog::warn("smtp dnsbl lookup failed client={} list={} error={}", client_ip(),
                     e.zone, e.error);
      }
      if (!listing_->allowed_by.empty()) {
        spdlog::info("smtp dnswl client={} list={}", client_ip(), listing_->allowed_by);
      } else if (listing_->blocked) {
        std::string codes;
        for (const std::string& c : listing_->blocked->codes) {
          codes += (codes.empty() ? "" : ",") + c;
        }
        spdlog::info("smtp dnsbl listed client={} list={} codes={}", client_ip(),
                     listing_->blocked->zone, codes);
      }
    }
    bool allowed = listing_ && !listing_->allowed_by.empty();
    if (listing_ && listing_->blocked) {
      refusal = antispam::DnsblRefusal(client_ip(), *listing_->blocked);
      reason = "dnsbl";
    } else if (!allowed && as.greylist && deps_.greylist != nullptr) {
      refusal = Greylisted(session_.pending_recipient());
      reason = "greylist";
    }
  }
  if (refusal.empty() && milters_) {
    std::string address = rcpt.ToString();
    std::vector<std::string> no_args;
    antispam::MilterVerdict v = co_await milters_->Rcpt(std::move(address), std::move(no_args));
    if (v.kind == antispam::MilterVerdict::Kind::kRefuse) {
      refusal = v.reply;
      reason = "milter";
    }
  }
  if (!refusal.empty()) {
    spdlog::info("smtp rcpt refused client={} from=<{}> rcpt=<{}> reason={}", client_ip(),
                 session_.transaction().mail_from.ToString(),
                 session_.pending_recipient().ToString(), reason);
  }
  session_.RcptChecked(refusal);
}

// Greylisting: a new (client network, sender, recipient) triplet is
// deferred; RFC 5321 4.5.4.1 has a real client retry, which passes after
// the delay. Empty when it passes (or when the store fails: greylisting
// never costs mail).
std::string Connection::Greylisted(const Mailbox& rcpt) {
  const Transaction& t = session_.transaction();
  std::string network = antispam::GreylistNetwork(client_ip());
  if (network.empty()) return "";
  antispam::GreylistVerdict v =
      deps_.greylist->Check(network,
                            antispam::GreylistSender(t.mail_from.null() ? ""
                                                                        : t.mail_from.ToString()),
                            rcpt.ToString(), static_cast<int64_t>(std::time(nullptr)));
  if (v.why == antispam::GreylistVerdict::Why::kError) {
    spdlog::warn("smtp greylist unavailable client={}: {}", client_ip(), v.error);
    return "";
  }
  spdlog::debug("smtp greylist client={} network={} rcpt=<{}> verdict={}", client_ip(),
                network, rcpt.ToString(), antispam::GreylistWhyName(v.why));
  if (v.pass) return "";
  // RFC 3463 4.7.1: delivery not authorized, for now; RFC 6647 4.2.1
  // (greylisting): a temporary failure at RCPT.
  return "451 4.7.1 <" + rcpt.ToString() + ">: Greylisted, try again in " +
         std::to_string(std::max<int64_t>(v.retry_in, 1)) + " seconds";
}

asio::awaitable<bool> Connection::FinishMailauth() {
  if (inbound_) {
    std::string tail;
    inbound_->End(&tail);
    if (!tail.empty() && writer_) writer_->Write(tail);
    if (signer_) signer_->Feed(tail);
    if (milters_) milter_copy_ += tail;
    if (inbound_->removed() > 0) {
      spdlog::info("smtp removed {} Authentication-Results claiming {} client={}",
                   inbound_->removed(), settings_->hostname, client_ip());
    }
  }
  if (inbound_ && verifying_) {
    mailauth::InboundVerdict v =
        co_await inbound_->Finish(*deps_.resolver, who_, spf_, helo_spf_);
    spdlog::info("smtp mailauth client={} id={} {} action={}", client_ip(),
                 writer_ ? writer_->id() : std::string("-"), v.summary,
                 v.action == mailauth::InboundVerdict::Action::kReject ? "reject"
                 : v.action == mailauth::InboundVerdict::Action::kJunk ? "junk"
                                                                       : "accept");
    mailauth_summary_ = v.summary;
    if (deps_.dmarc_reports) {
      auto event = reports::DmarcEventFromVerdict(
          v, who_, static_cast<int64_t>(std::time(nullptr)));
      if (event) deps_.dmarc_reports->Record(*event);
    }
    if (v.action == mailauth::InboundVerdict::Action::kReject) {
      session_.CommitRefused(v.reply);
      co_return false;
    }
    if (writer_) writer_->SetPrepend(std::move(v.header_fields));
  }
  inbound_.reset();
  if (milters_) {
    if (!co_await RunMilters()) co_return false;
    milter_copy_.clear();
  }
  if (signer_) {
    auto signatures = signer_->Finish();
    if (!signatures) {
      spdlog::warn("smtp dkim not signed client={} reason={}", client_ip(),
                   signatures.error().message);
    } else if (!signatures->empty()) {
      spdlog::info("smtp dkim signed client={} domain={}", client_ip(),
                   signer_->domain());
      // Before what the filters added (an X-Spam mark).
      if (writer_) writer_->SetPrepend(*signatures + writer_->envelope().prepend);
    }
    signer_.reset();
  }
  co_return true;
}

asio::awaitable<void> Connection::Commit() {
  auto commit_started = std::chrono::steady_clock::now();
  // RFC 5321 4.5.3.2.8: the client waits up to 10 minutes here.
  deadline().ExpiresAfter(limits().final_timeout);
  if (!co_await FinishMailauth()) co_return;
  if (discarded_) {
    // RFC 5321 has no way to say "dropped": the client hears 250.
    spdlog::info("smtp discarded id={} from=<{}> client={} reason=milter",
                 writer_ ? writer_->id() : std::string("-"), summary_sender_, client_ip());
    std::string discarded =
        ReceivedTrace("discarded", writer_ ? writer_->id() : std::string(), 0);
    trace::RecordLine(discarded);
    writer_.reset();
    discarded_ = false;
    ++messages_;
    session_.Committed(true);
    co_return;
  }
  std::string id = writer_ ? writer_->id() : std::string();
  uint64_t size = writer_ ? writer_->size() : 0;
  std::string received = ReceivedTrace("received", id, size);
  auto r = co_await CommitMessage(deps_.queue, std::move(writer_));
  bool no_space = !r && r.error().NoSpace();
  if (r) {
    ++messages_;
    if (Limited()) {
      const Transaction& t = session_.transaction();
      deps_.rate->Accepted(settings_->rate, client_ip(), session_.client().auth_user,
                           RateDomain(t.mail_from),
                           t.rcpts.size(), static_cast<int64_t>(std::time(nullptr)));
    }
    spdlog::info("smtp accepted id={} size={} from=<{}> rcpts={} client={}",
                 id, size, summary_sender_, summary_rcpts_, client_ip());
    CountAccepted(options().listener, commit_started);
    trace::RecordLine(received);
  } else {
    spdlog::error("smtp commit failed client={} error={}", client_ip(),
                  r.error().message);
  }
  session_.Committed(static_cast<bool>(r), no_space);
}

// One SASL mechanism step, run off the io thread.
struct SaslJob {
  Session* session;
  auth::SaslStep step;
  void Run() { step = session->RunSaslStep(); }
};

// g++ 12 and coroutines: no co_await inside a switch (see pop3).
asio::awaitable<bool> Connection::Work() {
  Need need = session_.need();
  if (need == Need::kCommit) {
    co_await Commit();
  } else if (need == Need::kSenderCheck) {
    deadline().ExpiresAfter(limits().command_timeout);
    co_await CheckSender();
  } else if (need == Need::kGreetWait) {
    // Pregreet (postscreen's test): a client that does not wait for the
    // 220 (RFC 5321 4.3.1) is a bot that speaks blind. Whatever it sent
    // waits unread in the socket; nothing else reads it meanwhile.
    deadline().ExpiresAfter(limits().command_timeout);
    co_await Sleep(session_.config().pregreet_wait);
    asio::error_code ec;
    size_t waiting = stream().socket().available(ec);
    if (!ec && waiting > 0) {
      spdlog::info("smtp pregreet client={} bytes={} action=reject", client_ip(), waiting);
    }
    session_.GreetWaitDone(!ec && waiting > 0);
  } else if (need == Need::kRcptCheck) {
    deadline().ExpiresAfter(limits().command_timeout);
    co_await CheckRcpt();
  } else if (need == Need::kSaslStep) {
    // Argon2id or PBKDF2 work runs on the blocking pool; the session is
    // untouched by this coroutine until the step is done.
    SaslJob job{&session_, {}};
    deadline().ExpiresAfter(limits().command_timeout);
    co_await Blocking(&job);
    session_.SaslStepDone(job.step);
  } else if (need == Need::kDelay) {
    deadline().ExpiresAfter(limits().command_timeout);
    co_await Sleep(session_.delay());
    session_.DelayDone();
  }
  co_return true;
}

// One smtp, submission or submissions listener.
class Listener : public net::Service {
 public:
  Listener(Server& server, config::Listener listener)
      : server_(server), listener_(std::move(listener)) {}

  std::string_view protocol() const override { return "smtp"; }
  std::string_view listener() const override { return listener_.service; }
  net::ConnectionLimiter& limiter() override { return server_.limiter(); }
  Limits limits() override {
    auto s = server_.settings();
    return {s->limits.max_connections, s->limits.max_connections_per_ip};
  }
  std::string RefusalLine() override {
    // A plaintext 421 means nothing to a client expecting TLS.
    if (implicit_tls()) return {};
    return "421 4.7.0 " + server_.settings()->hostname +
           " Too many connections, try again later\r\n";
  }
  std::shared_ptr<net::LineConnection> Make(tcp::socket socket,
                                            const std::string& ip) override;

 private:
  // RFC 8314: submissions begins with TLS.
  bool implicit_tls() const { return listener_.service == "submissions"; }

  Server& server_;
  config::Listener listener_;
};

}  // namespace

std::shared_ptr<const Settings> MakeSettings(const config::Config& cfg) {
  auto s = std::make_shared<Settings>();
  s->limits = cfg.smtp;
  s->quota_storage = cfg.quota_storage;
  s->hostname = cfg.hostname;
  s->session.hostname = cfg.hostname;
  s->session.max_message_size = cfg.smtp.max_message_size;
  s->session.max_recipients = cfg.smtp.max_recipients;
  s->session.max_errors = cfg.smtp.max_errors;
  s->session.command_line_limit = cfg.smtp.command_line_limit;
  s->session.text_line_limit = cfg.smtp.text_line_limit;
  s->session.max_received_headers = cfg.smtp.max_received_headers;
  s->session.vrfy = cfg.smtp.vrfy;
  s->session.expn = cfg.smtp.expn;
  s->trusted = policy::NetworkList(cfg.trusted_networks);
  s->verify = cfg.mailauth.verify;
  s->inbound.authserv_id = cfg.hostname;
  s->inbound.dmarc_reject = cfg.mailauth.dmarc_reject;
  s->inbound.dmarc_quarantine = cfg.mailauth.dmarc_quarantine;
  s->inbound.spf_reject = cfg.mailauth.spf_fail == "reject";
  s->inbound.arc_trusted_sealers = cfg.mailauth.arc_trusted_sealers;
  s->sign = cfg.mailauth.sign;
  s->antispam = cfg.antispam;
  s->rate = cfg.ratelimit;
  s->milters = cfg.milters;
  return s;
}

std::shared_ptr<net::LineConnection> Listener::Make(tcp::socket socket,
                                                    const std::string& ip) {
  asio::error_code ec;
  ClientInfo client;
  auto remote = socket.remote_endpoint(ec);
  auto local = socket.local_endpoint(ec);
  client.ip = ip;
  client.port = remote.port();
  client.local_ip = local.address().to_string();
  client.local_port = local.port();
  auto settings = server_.settings();
  client.trusted = settings->trusted.Contains(client.ip);
  net::LineConnection::Options options;
  options.protocol = "smtp";
  options.listener = listener_.service;
  options.client_ip = client.ip;
  options.implicit_tls = implicit_tls();
  options.tls = server_.deps().tls.get();
  options.blocking = &server_.deps().blocking;
  SessionConfig sc = settings->session;
  sc.tls_available = options.tls != nullptr && !options.implicit_tls;
  sc.auth = true;
  sc.auth_allowed_plaintext = listener_.allow_plaintext_auth;
  // RFC 6409 4.3 / RFC 8314: both submission ports require AUTH.
  sc.submission = listener_.service != "smtp";
  sc.listener = listener_.service;
  sc.async_sasl = true;
  // SPF waits at MAIL where it may apply (port 25, a resolver to ask).
  sc.sender_check = settings->verify && server_.deps().resolver != nullptr &&
                    listener_.service == "smtp";
  // [antispam] at RCPT for strangers on port 25 (AUTH may still make
  // one a known client: the check looks again).
  const config::AntispamSettings& as = settings->antispam;
  bool lists = !as.dnsbl.empty() || !as.dnswl.empty();
  sc.rcpt_check = listener_.service == "smtp" && !client.trusted &&
                  ((lists && server_.deps().resolver != nullptr) ||
                   (as.greylist && server_.deps().greylist != nullptr));
  if (!settings->milters.empty()) {
    // Mail filters hear of MAIL and each RCPT before the 250.
    sc.sender_check = true;
    sc.rcpt_check = true;
  }
  if (server_.deps().rate != nullptr && !client.trusted) {
    // Counted at connect, before AUTH could tell who it is.
    sc.greet_refusal = server_.deps().rate->Connection(
        settings->rate, client.ip, static_cast<int64_t>(std::time(nullptr)));
    if (!sc.greet_refusal.empty()) {
      spdlog::info("smtp connection refused client={} listener={} reason=ratelimit",
                   client.ip, listener_.service);
    }
  }
  if (listener_.service == "smtp" && !client.trusted && as.pregreet) {
    sc.pregreet_wait = std::chrono::milliseconds(as.pregreet_wait_ms);
  }
  if (sc.rcpt_check && lists && server_.deps().resolver != nullptr) {
    // RFC 5782 lists are asked now; the answers wait in the cache.
    std::vector<std::string> zones = as.dnswl;
    zones.insert(zones.end(), as.dnsbl.begin(), as.dnsbl.end());
    antispam::Prefetch(*server_.deps().resolver, client.ip, zones);
  }
  return std::make_shared<Connection>(std::move(socket), std::move(options),
                                      server_.deps(), std::move(settings), sc,
                                      std::move(client));
}

Server::Server(ServerDeps deps, const config::Config& cfg)
    : deps_(deps), settings_(MakeSettings(cfg)) {}

std::unique_ptr<net::Service> Server::MakeListener(
    const config::Listener& listener) {
  return std::make_unique<Listener>(*this, listener);
}

}  // namespace tern::smtp
