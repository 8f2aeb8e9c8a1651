// Message content in the SMTP session: DATA (RFC 5321 4.1.1.4) and BDAT
// (RFC 3030) framing, our Received: header, the checks at the end of the
// message (size, line length, hops, From:/Sender: of a sender who logged in).
#include <algorithm>
#include <string>
#include <vector>

#include "common/strings.h"
#include "smtp/protocol/rfc5322.h"
#include "smtp/protocol/session_impl.h"

namespace tern::smtp {
namespace {

// Message content is handed to the host in slices of at most this size so
// that a large Feed() never needs a large copy.
constexpr size_t kSlice = 64 * 1024;
// RFC 5321 4.2.2 / 4.3.2 (452 to DATA and after the data), RFC 3463 X.3.1
// "mail system full": the spool has no room; the client should try later.
constexpr char kNoStorage[] = "452 4.3.1 Insufficient system storage";

}  // namespace

// Checks shared by DATA and BDAT; returns the refusal or nullptr.
const char* Session::Impl::ContentRefusal() const {
  switch (state) {
    case State::kNoHelo:
      return "503 5.5.1 Error: send HELO/EHLO first";
    case State::kReady:
      return "503 5.5.1 Error: need MAIL command";
    case State::kMail:
      return "503 5.5.1 Error: no valid recipients";
    default:
      return nullptr;
  }
}

const char* Session::Impl::CheckData(std::string_view arg) const {
  if (!Trim(arg).empty()) return "501 5.5.4 Syntax: DATA";
  if (const char* refusal = ContentRefusal()) return refusal;
  // RFC 3030 3: DATA and BDAT are not mixed in one transaction.
  if (state == State::kChunking) {
    return "503 5.5.1 Error: DATA not allowed after BDAT";
  }
  return nullptr;
}

// RFC 5321 4.1.1.4 DATA.
void Session::Impl::Data(std::string_view) {
  if (!BeginMessage()) {
    const char* refusal =
        host.StorageFull() ? kNoStorage : "451 4.3.0 Error: temporary failure";
    ResetTransaction();
    return Reply(refusal);
  }
  body.Start(true, Limits());
  SetState(State::kData);
  Reply("354 End data with <CR><LF>.<CR><LF>");
}

// RFC 3030 2 BDAT chunk-size [SP "LAST"].
void Session::Impl::Bdat(std::string_view arg) {
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
  // A refused chunk is still read (its size is known) and dropped; the
  // refusal is its reply.
  const char* refusal = ContentRefusal();
  if (refusal == nullptr && !t.esmtp) {
    refusal = "503 5.5.1 Error: BDAT requires EHLO";
  }
  if (refusal == nullptr && state != State::kChunking) {
    if (BeginMessage()) {
      body.Start(false, Limits());
    } else {
      refusal = host.StorageFull() ? kNoStorage
                                   : "451 4.3.0 Error: temporary failure";
      bdat_reset_after = true;
    }
  }
  if (refusal != nullptr) {
    bdat_refusal = refusal;
    bdat_resume = state;
    SetState(State::kSkipChunk);
  } else {
    SetState(State::kChunk);
  }
  if (size == 0) FinishChunk();
}

size_t Session::Impl::FeedData(std::string_view data) {
  bool done = false;
  size_t used = body.Scan(data.substr(0, kSlice), &pending, &done);
  FlushPending();
  if (done) FinishMessage();
  return used;
}

size_t Session::Impl::FeedBdat(std::string_view data) {
  // RFC 3030 2: exactly the announced octets, whatever they contain.
  size_t n =
      static_cast<size_t>(std::min<uint64_t>({data.size(), bdat_left, kSlice}));
  if (state == State::kChunk) {
    bool done;
    body.Scan(data.substr(0, n), &pending, &done);
    FlushPending();
  }
  bdat_left -= n;
  if (bdat_left == 0) FinishChunk();
  return n;
}

void Session::Impl::FlushPending() {
  if (pending.empty()) return;
  if (!write_failed && body.storing() && !host.MessageData(pending)) {
    write_failed = true;
  }
  pending.clear();
}

void Session::Impl::FinishChunk() {
  if (state == State::kSkipChunk) {
    const char* reply = bdat_refusal;
    bdat_refusal = nullptr;
    SetState(bdat_resume);
    if (bdat_reset_after) ResetTransaction();
    return Reply(reply);
  }
  if (!bdat_last) {
    SetState(State::kChunking);
    return Reply("250 2.0.0 " + std::to_string(bdat_size) + " octets received");
  }
  body.Finish(&pending);
  FlushPending();
  FinishMessage();
}

BodyReader::Limits Session::Impl::Limits() const {
  BodyReader::Limits l;
  l.max_size = config.max_message_size;
  l.line_limit = config.text_line_limit;
  l.max_hops = config.max_received_headers;
  l.capture_senders = !client.auth_user.empty();
  return l;
}

// Asks the host for a queue id and writes our Received: header first. The
// caller moves to kData or kChunk at once, where the message counts as open.
bool Session::Impl::BeginMessage() {
  std::string id = host.BeginMessage(t);
  if (id.empty()) return false;
  queue_id = std::move(id);
  refused.queue_id = queue_id;
  write_failed = !host.MessageData(ReceivedHeader());
  return true;
}

// RFC 5321 4.4 trace field; "with" keywords from RFC 3848 and RFC 6531
// 3.7.3. Each line holds one variable element of bounded length (EHLO
// name <= 255, path <= 256), so none exceeds RFC 5322 2.1.1's 998.
std::string Session::Impl::ReceivedHeader() const {
  std::string ip = client.ip.empty() ? "unknown" : client.ip;
  std::string literal =
      ip.find(':') != std::string::npos ? "[IPv6:" + ip + "]" : "[" + ip + "]";
  std::string proto = "SMTP";
  if (t.esmtp) {
    proto = t.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (client.tls) proto += 'S';
    if (!client.auth_user.empty()) proto += 'A';
  }
  std::string r = "Received: from " + t.helo + " (" + literal + ")\r\n";
  r += "\tby " + config.hostname + " (Tern) with " + proto + " id " + queue_id;
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
void Session::Impl::FinishMessage() {
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
  SetState(State::kCommit);
}

// RFC 5322 3.6.2: every mailbox in From: and the one in Sender: must
// belong to the authenticated user. Returns the refusal, or "".
std::string Session::Impl::HeaderSenderRefusal() {
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
                         std::all_of(shown.begin(), shown.end(),
                                     [](char c) { return c >= 32 && c < 127; });
        return std::string("550 5.7.1 ") + field + ": address " +
               (printable ? "<" + shown + "> " : std::string()) +
               "not owned by user " + client.auth_user;
      }
    }
  }
  return "";
}

// The connection's answer to Need::kCommit.
void Session::Impl::Committed(bool ok, bool no_space) {
  if (state != State::kCommit) return;
  if (ok) {
    std::string reply = "250 2.0.0 Ok: queued as " + queue_id;
    SetState(State::kReady);  // durable now: nothing to abort
    ResetTransaction();
    return Reply(reply);
  }
  ResetTransaction();
  Reply(no_space ? kNoStorage : "451 4.3.0 Error: queue file write error");
}

void Session::Impl::CommitRefused(std::string_view reply) {
  if (state != State::kCommit) return;
  ResetTransaction();  // the message is dropped (AbortMessage); kReady
  Reply(reply);
}

}  // namespace tern::smtp
