// The envelope commands of the SMTP session: MAIL and RCPT (RFC 5321
// 4.1.1.2-3 with the SIZE, BODY, SMTPUTF8 and DSN parameters), and VRFY and
// EXPN, which check an address the way RCPT does.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "common/strings.h"
#include "smtp/protocol/params.h"
#include "smtp/protocol/session_impl.h"

namespace tern::smtp {
namespace {

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

// RFC 5321 4.1.4: MAIL opens a transaction after EHLO/HELO, never a second
// one inside the first.
const char* Session::Impl::CheckMail(std::string_view) const {
  switch (state) {
    case State::kNoHelo:
      return "503 5.5.1 Error: send HELO/EHLO first";
    case State::kReady:
      break;
    default:
      return "503 5.5.1 Error: nested MAIL command";
  }
  // RFC 6409 4.3 / RFC 4954 6: submission needs AUTH first.
  if (config.submission && client.auth_user.empty()) {
    return "530 5.7.0 Authentication required";
  }
  return nullptr;
}

// RFC 5321 4.1.1.2 MAIL FROM:<reverse-path> [SP Mail-parameters].
void Session::Impl::Mail(std::string_view arg) {
  if (!IStartsWith(arg, "FROM:")) {
    return Reply("501 5.5.2 Syntax: MAIL FROM:<address>");
  }
  // Like most servers, accept spaces after the colon ("FROM: <a@b>").
  arg = SkipSpaces(arg.substr(5));
  // Parse with UTF-8 allowed; whether it was allowed is known only
  // after the parameters (SMTPUTF8) have been read.
  std::optional<PathParse> path = ParsePath(arg, true, true);
  if (!path) return Reply("501 5.1.7 Bad sender address syntax");
  refused.from = path->mailbox.ToString();
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
      return Reply("552 5.3.4 Message size exceeds fixed maximum message size");
  }
  if (params.requiretls && !client.tls) {
    // RFC 8689 4.1: the option is only meaningful on a session that is
    // itself protected by TLS; it is not offered before STARTTLS.
    return Reply("530 5.7.10 REQUIRETLS needs a TLS session: STARTTLS first");
  }
  if (!params.smtputf8 && !IsAscii(path->mailbox)) {
    // RFC 6531 3.7.4.1.
    return Reply("553 5.6.7 Non-ASCII address requires SMTPUTF8");
  }
  std::string addr = "<" + path->mailbox.ToString() + ">";
  SenderVerdict sv = host.CheckMailFrom(path->mailbox);
  switch (sv.kind) {
    case SenderVerdict::Kind::kAccept:
      break;
    case SenderVerdict::Kind::kRefused:
      return Reply(sv.reply);
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
  t.requiretls = params.requiretls;
  // The host may want to check the sender outside (SPF queries DNS): the
  // 250 waits for SenderChecked().
  if (config.sender_check) return SetState(State::kSenderCheck);
  SetState(State::kMail);
  Reply("250 2.1.0 Ok");
}

void Session::Impl::SenderChecked(std::string_view refusal) {
  if (state != State::kSenderCheck) return;
  if (refusal.empty()) {
    SetState(State::kMail);
    return Reply("250 2.1.0 Ok");
  }
  ResetTransaction();  // back to kReady
  Reply(refusal);
}

void Session::Impl::RcptChecked(std::string_view refusal) {
  if (state != State::kRcptCheck) return;
  if (!refusal.empty()) {
    // RFC 5321 4.1.1.3: a refused recipient leaves the transaction as it
    // was; the client may go on with others.
    SetState(rcpt_resume);
    rcpt_pending = {};
    return Reply(refusal);
  }
  t.rcpts.push_back(std::move(rcpt_pending));
  t.rcpt_params.push_back(std::move(rcpt_pending_params));
  rcpt_pending = {};
  rcpt_pending_params = {};
  SetState(State::kRcpt);
  Reply("250 2.1.5 Ok");
}

const char* Session::Impl::CheckRcpt(std::string_view) const {
  switch (state) {
    case State::kMail:
    case State::kRcpt:
      return nullptr;
    case State::kChunking:
      // The Received: header naming the recipient is already written.
      return "503 5.5.1 Error: RCPT not allowed after BDAT";
    default:
      return "503 5.5.1 Error: need MAIL command";
  }
}

// RFC 5321 4.1.1.3 RCPT TO:<forward-path> [SP Rcpt-parameters].
void Session::Impl::Rcpt(std::string_view arg) {
  if (!IStartsWith(arg, "TO:")) {
    return Reply("501 5.5.2 Syntax: RCPT TO:<address>");
  }
  arg = SkipSpaces(arg.substr(3));
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
  refused.rcpts.assign(1, rcpt.ToString());
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
  RcptVerdict rv = host.CheckRecipient(t, rcpt);
  switch (rv.kind) {
    case RcptVerdict::Kind::kRefused:
      return Reply(rv.reply);
    case RcptVerdict::Kind::kAccept:
      if (config.rcpt_check) {
        // The host checks outside (DNS lists, greylisting): the 250
        // waits for RcptChecked().
        rcpt_pending = std::move(rcpt);
        rcpt_pending_params = std::move(params);
        rcpt_resume = state;
        return SetState(State::kRcptCheck);
      }
      t.rcpts.push_back(std::move(rcpt));
      t.rcpt_params.push_back(std::move(params));
      SetState(State::kRcpt);
      return Reply("250 2.1.5 Ok");
    case RcptVerdict::Kind::kUnknownUser:
      return Reply("550 5.1.1 " + addr +
                   ": Recipient address rejected: User unknown");
    case RcptVerdict::Kind::kRelayDenied:
      return Reply("554 5.7.1 " + addr + ": Relay access denied");
    case RcptVerdict::Kind::kTempFail:
      return Reply("451 4.3.0 " + addr + ": Temporary lookup failure");
    case RcptVerdict::Kind::kMailboxFull:
      // RFC 5321 4.2.2 552 "exceeded storage allocation"; RFC 3463 X.2.2.
      return Reply("552 5.2.2 " + addr + ": Mailbox full");
  }
}

void Session::Impl::Vrfy(std::string_view arg) {
  Verify(arg, config.vrfy, "VRFY");
}

void Session::Impl::Expn(std::string_view arg) {
  Verify(arg, config.expn, "EXPN");
}

// RFC 5321 4.1.1.2 / 4.1.1.3 VRFY and EXPN. Both are off by default
// (RFC 5321 7.3: they help address harvesting). When on, a mailbox is
// checked like a recipient; lists are not expanded.
void Session::Impl::Verify(std::string_view arg, bool enabled,
                           std::string_view verb) {
  if (!enabled) {
    if (verb == "VRFY") {
      return Reply(
          "252 2.5.2 Cannot VRFY user, but will accept message "
          "and attempt delivery");
    }
    return Reply("502 5.5.1 EXPN not supported");
  }
  arg = Trim(arg);
  if (arg.empty()) {
    return Reply("501 5.5.4 Syntax: " + std::string(verb) + " address");
  }
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
  RcptVerdict rv = host.CheckRecipient(t, mb);
  switch (rv.kind) {
    case RcptVerdict::Kind::kRefused:
      return Reply(rv.reply);
    case RcptVerdict::Kind::kAccept:
      return Reply("250 2.1.5 " + addr);
    case RcptVerdict::Kind::kUnknownUser:
      return Reply("550 5.1.1 " + addr +
                   ": Recipient address rejected: User unknown");
    case RcptVerdict::Kind::kRelayDenied:
      return Reply("554 5.7.1 " + addr + ": Relay access denied");
    case RcptVerdict::Kind::kTempFail:
      return Reply("451 4.3.0 " + addr + ": Temporary lookup failure");
    case RcptVerdict::Kind::kMailboxFull:
      return Reply("552 5.2.2 " + addr + ": Mailbox full");
  }
}

}  // namespace tern::smtp
