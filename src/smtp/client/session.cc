// The SMTP client state machine. Every transition happens in OnReply or one
// of the event methods; the I/O layer only moves bytes and does TLS.
#include "smtp/client/session.h"

#include <openssl/evp.h>

#include <algorithm>

#include "common/strings.h"

namespace tern::smtp::client {
namespace {

// RFC 4648 4 without line breaks, for AUTH (the SASL code of the server
// side has its own; this one never sees untrusted input).
std::string B64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string FirstWord(const Reply& reply) {
  if (reply.lines.empty()) return "";
  const std::string& l = reply.lines[0];
  return l.substr(0, l.find(' '));
}

}  // namespace

Capabilities ParseEhlo(const Reply& reply) {
  Capabilities caps;
  caps.esmtp = true;
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::vector<std::string> words;
    for (const std::string& w : Split(reply.lines[i], ' ')) {
      if (!w.empty()) words.push_back(ToUpper(w));
    }
    if (words.empty()) continue;
    const std::string& key = words[0];
    if (key == "PIPELINING") {
      caps.pipelining = true;
    } else if (key == "STARTTLS") {
      caps.starttls = true;
    } else if (key == "8BITMIME") {
      caps.eightbitmime = true;
    } else if (key == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (key == "DSN") {
      caps.dsn = true;
    } else if (key == "CHUNKING") {
      caps.chunking = true;
    } else if (key == "REQUIRETLS") {
      caps.requiretls = true;
    } else if (key == "SIZE") {
      caps.size = true;
      // RFC 1870 4: an optional limit; 0 or absent means none.
      if (words.size() > 1 && words[1].size() <= 19 &&
          words[1].find_first_not_of("0123456789") == std::string::npos) {
        caps.size_limit = std::stoull(words[1]);
      }
    } else if (key == "AUTH" || key.rfind("AUTH=", 0) == 0) {
      // "AUTH=PLAIN LOGIN" is the pre-RFC 4954 form some servers still send.
      if (key.size() > 5) caps.auth.push_back(key.substr(5));
      for (size_t w = 1; w < words.size(); ++w) caps.auth.push_back(words[w]);
    }
  }
  return caps;
}

Reply TxnResult::For(size_t i) const {
  if (refused) return *refused;
  if (!mail.positive()) return mail;
  if (i < rcpt.size() && !rcpt[i].positive()) return rcpt[i];
  return final_reply;
}

ClientSession::ClientSession(ClientOptions options)
    : options_(std::move(options)) {}

ClientSession::Phase ClientSession::phase() const {
  switch (state_) {
    case State::kGreeting:
      return Phase::kGreeting;
    case State::kTxn:
      return !expect_.empty() && expect_.back() == Expect::kData
                 ? Phase::kDataInit
                 : Phase::kCommand;
    case State::kBody:
      return Phase::kBody;
    case State::kFinal:
      return Phase::kFinal;
    default:
      return Phase::kCommand;
  }
}

void ClientSession::Send(std::string line) {
  output_ += line;
  output_ += "\r\n";
}

void ClientSession::Fail(Reply reply) {
  failure_ = std::move(reply);
  state_ = State::kClosed;
  need_ = Need::kClosed;
}

bool ClientSession::Feed(std::string_view data) {
  if (state_ == State::kClosed) return false;
  if (!parser_.Feed(data)) {
    ConnectionLost("protocol error: " + parser_.error());
    return false;
  }
  while (parser_.HasReply() && need_ == Need::kReply) {
    ++replies_;
    OnReply(parser_.Pop());
  }
  if (parser_.HasReply() && state_ != State::kClosed &&
      state_ != State::kResult) {
    // Replies nobody asked for: a server that does not follow the
    // command/reply lock-step (or pipelining) cannot be trusted with mail.
    ConnectionLost("protocol error: unexpected reply from the server");
    return false;
  }
  return state_ != State::kClosed || !failure_;
}

void ClientSession::ConnectionLost(const std::string& why) {
  if (state_ == State::kQuit || state_ == State::kClosed) {
    state_ = State::kClosed;
    need_ = Need::kClosed;
    return;
  }
  Reply lost = LocalReply(451, "4.4.2", "lost connection with the server: " + why);
  if (state_ == State::kTxn || state_ == State::kBody ||
      state_ == State::kFinal) {
    // Fill in what never came, so every recipient gets an outcome.
    if (result_.mail.code == 0) result_.mail = lost;
    for (Reply& r : result_.rcpt) {
      if (r.code == 0) r = lost;
    }
    if (result_.final_reply.code == 0) result_.final_reply = lost;
    failure_ = lost;
    expect_.clear();
    state_ = State::kResult;
    need_ = Need::kResult;
    rset_after_ = false;
    closed_after_result_ = true;
    return;
  }
  Fail(lost);
}

void ClientSession::TlsStarted(bool ok, const std::string& why) {
  if (!ok) {
    Fail(LocalReply(451, "4.7.5", "TLS handshake failed: " + why));
    return;
  }
  // RFC 3207 4.2: forget what was learned before TLS and ask again.
  tls_active_ = true;
  caps_ = Capabilities();
  Send("EHLO " + options_.helo_name);
  state_ = State::kEhlo;
  need_ = Need::kReply;
}

void ClientSession::BodySent() {
  state_ = State::kFinal;
  need_ = Need::kReply;
}

void ClientSession::Quit() {
  Send("QUIT");
  state_ = State::kQuit;
  need_ = Need::kReply;
}

void ClientSession::Abort(Reply reply) {
  Send("QUIT");
  Fail(std::move(reply));
}

void ClientSession::OnReply(const Reply& reply) {
  switch (state_) {
    case State::kGreeting:
      greeting_ = reply.Text();
      greeting_name_ = FirstWord(reply);
      if (reply.code == 220) {
        Send("EHLO " + options_.helo_name);
        state_ = State::kEhlo;
      } else {
        // RFC 5321 3.1: a 554 (or any refusal) greeting: say QUIT.
        Abort(reply);
      }
      return;
    case State::kEhlo:
      if (reply.positive()) {
        ehlo_name_ = FirstWord(reply);
        caps_ = ParseEhlo(reply);
        AfterEhlo();
      } else if (reply.permanent() && !tls_active_) {
        // RFC 5321 4.1.4 / 3.2: a server without EHLO gets HELO.
        Send("HELO " + options_.helo_name);
        state_ = State::kHelo;
      } else {
        Abort(reply);
      }
      return;
    case State::kHelo:
      if (reply.positive()) {
        ehlo_name_ = FirstWord(reply);
        caps_ = Capabilities();
        AfterEhlo();
      } else {
        Abort(reply);
      }
      return;
    case State::kStartTls:
      if (reply.code == 220) {
        state_ = State::kTlsHandshake;
        need_ = Need::kStartTls;
      } else if (options_.tls == TlsPolicy::kRequired) {
        Abort(LocalReply(451, "4.7.4",
                         "TLS is required but STARTTLS was refused: " +
                             reply.Text()));
      } else {
        // Opportunistic: carry on in the clear.
        caps_.starttls = false;
        AfterEhlo();
      }
      return;
    case State::kAuthLogin1:
      if (reply.code == 334) {
        Send(B64(options_.auth_user));
        state_ = State::kAuthLogin2;
      } else {
        AuthFailed(reply);
      }
      return;
    case State::kAuthLogin2:
      if (reply.code == 334) {
        Send(B64(options_.auth_password));
        state_ = State::kAuth;
      } else {
        AuthFailed(reply);
      }
      return;
    case State::kAuth:
      if (reply.code == 235) {
        state_ = State::kReady;
        need_ = Need::kReady;
      } else {
        AuthFailed(reply);
      }
      return;
    case State::kTxn:
      OnTxnReply(reply);
      return;
    case State::kFinal:
      result_.final_reply = reply;
      FinishTxn();
      return;
    case State::kRset:
      if (reply.positive()) {
        state_ = State::kReady;
        need_ = Need::kReady;
      } else {
        Abort(reply);
      }
      return;
    case State::kQuit:
      state_ = State::kClosed;
      need_ = Need::kClosed;
      return;
    default:
      ConnectionLost("protocol error: unexpected reply " + reply.Text());
      return;
  }
}

void ClientSession::AuthFailed(const Reply& reply) {
  // A refused login is our configuration's fault, not the message's:
  // defer (as a 4xx) so mail waits for the credentials to be fixed.
  Abort(LocalReply(454, "4.7.0",
                   "authentication to the relay failed: " + reply.Text()));
}

void ClientSession::AfterEhlo() {
  if (!tls_active_ && options_.tls != TlsPolicy::kNone && caps_.starttls) {
    Send("STARTTLS");
    state_ = State::kStartTls;
    need_ = Need::kReply;
    return;
  }
  if (!tls_active_ && options_.tls == TlsPolicy::kRequired) {
    Abort(LocalReply(451, "4.7.4",
                     "TLS is required but the server does not offer "
                     "STARTTLS"));
    return;
  }
  if (!options_.auth_user.empty()) {
    StartAuth();
    return;
  }
  state_ = State::kReady;
  need_ = Need::kReady;
}

void ClientSession::StartAuth() {
  if (!tls_active_) {
    Abort(LocalReply(451, "4.7.0",
                     "not sending credentials over an unencrypted "
                     "connection (the relay offers no STARTTLS)"));
    return;
  }
  auto has = [&](const char* mech) {
    return std::find(caps_.auth.begin(), caps_.auth.end(), mech) !=
           caps_.auth.end();
  };
  if (has("PLAIN")) {
    // RFC 4616 2 message, sent as the RFC 4954 4 initial response.
    std::string msg;
    msg += '\0';
    msg += options_.auth_user;
    msg += '\0';
    msg += options_.auth_password;
    Send("AUTH PLAIN " + B64(msg));
    state_ = State::kAuth;
  } else if (has("LOGIN")) {
    Send("AUTH LOGIN");
    state_ = State::kAuthLogin1;
  } else {
    Abort(LocalReply(451, "4.7.0",
                     "the relay offers no AUTH mechanism we support "
                     "(PLAIN, LOGIN)"));
    return;
  }
  need_ = Need::kReply;
}

std::string ClientSession::MailCommand() const {
  std::string cmd = "MAIL FROM:<" + txn_.sender + ">";
  if (caps_.size) cmd += " SIZE=" + std::to_string(txn_.size);
  if (txn_.body_8bitmime && caps_.eightbitmime) cmd += " BODY=8BITMIME";
  if (txn_.smtputf8 && caps_.smtputf8) cmd += " SMTPUTF8";
  if (txn_.requiretls) cmd += " REQUIRETLS";  // RFC 8689 4.2.1
  if (caps_.dsn) {
    // RFC 3461 4.3 / 4.4: passed on unchanged to a DSN-capable relay.
    if (!txn_.ret.empty()) cmd += " RET=" + txn_.ret;
    if (!txn_.envid.empty()) cmd += " ENVID=" + txn_.envid;
  }
  return cmd;
}

std::string ClientSession::RcptCommand(const TxnRecipient& r) const {
  std::string cmd = "RCPT TO:<" + r.address + ">";
  if (caps_.dsn) {
    if (!r.notify.empty()) cmd += " NOTIFY=" + r.notify;
    if (!r.orcpt.empty()) cmd += " ORCPT=" + r.orcpt;
  }
  return cmd;
}

void ClientSession::StartTransaction(TxnRequest request) {
  txn_ = std::move(request);
  result_ = TxnResult();
  result_.rcpt.assign(txn_.rcpts.size(), Reply());
  expect_.clear();
  next_rcpt_ = 0;
  rcpt_sent_ = 0;
  rset_after_ = false;
  state_ = State::kResult;
  need_ = Need::kResult;
  // Refuse locally what the peer announced it cannot take.
  if (caps_.size_limit > 0 && txn_.size > caps_.size_limit) {
    result_.refused = LocalReply(
        552, "5.3.4",
        "message size " + std::to_string(txn_.size) +
            " exceeds the limit of the receiving server (" +
            std::to_string(caps_.size_limit) + ")");
    return;
  }
  if (txn_.requiretls && (!tls_active_ || !caps_.requiretls)) {
    // RFC 8689 4.2.1: only over TLS, and only to a server that offers
    // REQUIRETLS after the TLS handshake; else the message is not sent.
    result_.refused = LocalReply(
        550, "5.7.30",
        !tls_active_ ? "REQUIRETLS support required: the message must not "
                       "travel without TLS"
                     : "REQUIRETLS support required: the receiving server "
                       "does not offer REQUIRETLS (RFC 8689)");
    return;
  }
  if (txn_.smtputf8 && !caps_.smtputf8) {
    result_.refused = LocalReply(
        550, "5.6.7",
        "the message needs SMTPUTF8 (RFC 6531) and the receiving server "
        "does not support it");
    return;
  }
  if (txn_.has_8bit && !caps_.eightbitmime) {
    result_.refused = LocalReply(
        554, "5.6.3",
        "the message contains 8-bit data and the receiving server does "
        "not support 8BITMIME (RFC 6152)" +
            (txn_.downgrade_error.empty()
                 ? std::string()
                 : "; conversion to 7-bit failed: " + txn_.downgrade_error));
    return;
  }
  result_.dsn_passed = caps_.dsn;
  state_ = State::kTxn;
  need_ = Need::kReply;
  Send(MailCommand());
  expect_.push_back(Expect::kMail);
  if (caps_.pipelining) {
    // RFC 2920 3.1: MAIL, RCPT and a final DATA go out as one group.
    for (const TxnRecipient& r : txn_.rcpts) {
      Send(RcptCommand(r));
      expect_.push_back(Expect::kRcpt);
    }
    rcpt_sent_ = txn_.rcpts.size();
    if (!use_bdat()) {
      Send("DATA");
      expect_.push_back(Expect::kData);
    }
  }
}

bool ClientSession::AnyRcptAccepted() const {
  return std::any_of(result_.rcpt.begin(), result_.rcpt.end(),
                     [](const Reply& r) { return r.positive(); });
}

void ClientSession::SendNextUnpipelined() {
  if (rcpt_sent_ < txn_.rcpts.size()) {
    Send(RcptCommand(txn_.rcpts[rcpt_sent_++]));
    expect_.push_back(Expect::kRcpt);
    return;
  }
  if (!AnyRcptAccepted()) {
    FinishTxn();
    return;
  }
  if (use_bdat()) {
    state_ = State::kBody;
    need_ = Need::kBody;
    return;
  }
  Send("DATA");
  expect_.push_back(Expect::kData);
}

void ClientSession::OnTxnReply(const Reply& reply) {
  if (expect_.empty()) {
    ConnectionLost("protocol error: unexpected reply " + reply.Text());
    return;
  }
  Expect e = expect_.front();
  expect_.pop_front();
  switch (e) {
    case Expect::kMail:
      result_.mail = reply;
      if (!caps_.pipelining) {
        if (reply.positive()) {
          SendNextUnpipelined();
        } else {
          FinishTxn();
        }
      }
      return;
    case Expect::kRcpt:
      if (next_rcpt_ < result_.rcpt.size()) result_.rcpt[next_rcpt_++] = reply;
      if (!caps_.pipelining) {
        SendNextUnpipelined();
      } else if (use_bdat() && expect_.empty()) {
        if (result_.mail.positive() && AnyRcptAccepted()) {
          state_ = State::kBody;
          need_ = Need::kBody;
        } else {
          FinishTxn();
        }
      }
      return;
    case Expect::kData:
      if (reply.code == 354) {
        if (result_.mail.positive() && AnyRcptAccepted()) {
          state_ = State::kBody;
          need_ = Need::kBody;
        } else {
          // RFC 2920 3.1: DATA was accepted although no recipient was;
          // end the (empty) message so the server returns to command mode.
          Send(".");
          expect_.push_back(Expect::kDot);
        }
      } else if (reply.code / 100 == 4 || reply.code / 100 == 5) {
        result_.final_reply = reply;
        FinishTxn();
      } else {
        // RFC 5321 4.3.2: DATA is answered 354 or refused with 4yz/5yz.
        // Any other success would read as "delivered" although the body
        // was never sent; such a server cannot be trusted with the mail.
        ConnectionLost("protocol error: DATA answered with " +
                       std::to_string(reply.code));
      }
      return;
    case Expect::kDot:
      FinishTxn();
      return;
  }
}

void ClientSession::FinishTxn() {
  expect_.clear();
  // Anything but a delivered message leaves transaction state behind.
  rset_after_ = !(result_.mail.positive() && result_.final_reply.positive());
  state_ = State::kResult;
  need_ = Need::kResult;
}

TxnResult ClientSession::TakeResult() {
  TxnResult r = std::move(result_);
  result_ = TxnResult();
  if (closed_after_result_) {
    state_ = State::kClosed;
    need_ = Need::kClosed;
  } else if (rset_after_) {
    Send("RSET");
    state_ = State::kRset;
    need_ = Need::kReply;
  } else {
    state_ = State::kReady;
    need_ = Need::kReady;
  }
  return r;
}

void DotStuffer::Convert(std::string_view in, std::string& out) {
  size_t start = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (at_line_start_ && c == '.') {
      // RFC 5321 4.5.2: a line starting with "." gets one more.
      out.append(in.data() + start, i - start);
      out += '.';
      start = i;
    }
    at_line_start_ = c == '\n';
  }
  out.append(in.data() + start, in.size() - start);
  if (!in.empty()) last_ = in.back();
}

void DotStuffer::Finish(std::string& out) {
  if (last_ == '\r') {
    out += '\n';
  } else if (last_ != '\n') {
    out += "\r\n";
  }
  out += ".\r\n";
}

bool Has8Bit(std::string_view data) {
  return std::any_of(data.begin(), data.end(), [](char c) {
    return static_cast<unsigned char>(c) > 127;
  });
}

void MessageScan::Feed(std::string_view data) {
  if (!has_8bit_) has_8bit_ = Has8Bit(data);
  if (!in_header_) return;
  size_t pos = 0;
  while (in_header_ && pos < data.size()) {
    size_t nl = data.find('\n', pos);
    std::string_view piece =
        data.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (line_.size() <= kKeep)
      line_.append(piece.substr(0, kKeep + 1 - line_.size()));
    if (nl == std::string_view::npos) break;
    EndLine();
    pos = nl + 1;
  }
}

void MessageScan::Finish() {
  if (in_header_ && !line_.empty()) EndLine();
  in_header_ = false;
}

void MessageScan::EndLine() {
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    in_header_ = false;  // the end of the header section
  } else if (line.size() <= kKeep) {
    constexpr std::string_view kName = "TLS-Required:";
    if (IStartsWith(line, kName) && IEquals(Trim(line.substr(kName.size())), "No"))
      tls_required_no_ = true;
  }
  line_.clear();
}

}  // namespace tern::smtp::client
