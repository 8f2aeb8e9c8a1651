// The private half of smtp::Session, shared by the files that implement it:
// session.cc (framing, state, command table), session_envelope.cc (MAIL,
// RCPT, VRFY, EXPN), session_auth.cc (AUTH), session_data.cc (DATA, BDAT).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "auth/sasl.h"
#include "auth/sasl_exchange.h"
#include "smtp/protocol/body_reader.h"
#include "smtp/protocol/session.h"

namespace tern::smtp {

struct Session::Impl {
  // Where the session stands in the dialogue. need(), InTransaction() and
  // InData() are read from it, and every change goes through SetState():
  //
  //   (with a pregreet wait: kGreetWait -GreetWaitDone()-> kNoHelo, or
  //   kClosed for a client that talked first)
  //   kNoHelo -EHLO/HELO-> kReady -MAIL-> kMail -RCPT-> kRcpt
  //   (with sender checks: kReady -MAIL-> kSenderCheck -SenderChecked()->
  //   kMail, or kReady when refused)
  //   (with recipient checks: kMail or kRcpt -RCPT-> kRcptCheck
  //   -RcptChecked()-> kRcpt, or back to rcpt_resume when refused)
  //   kRcpt -DATA-> kData -"."-> kCommit -Committed()-> kReady
  //   kRcpt -BDAT-> kChunk -> kChunking -BDAT-> kChunk ... -LAST-> kCommit
  //   kReady -AUTH-> kSasl <-> kSaslStep, kSaslFinal; then kReady, or
  //       kAuthDelay -DelayDone()-> kReady after a failure
  //   kReady -STARTTLS-> kStartTls -TlsStarted()-> kNoHelo
  //   a refused BDAT chunk is read in kSkipChunk, then back to bdat_resume
  //   RSET, EHLO/HELO and a refused message end a transaction in kReady;
  //   QUIT, timeouts and too many errors end everything in kClosed.
  //
  // Facts that hold across states stay plain members: TLS and the
  // authenticated user (client), EHLO versus HELO (t.esmtp).
  enum class State : uint8_t {
    // Reading command lines:
    kNoHelo,     // before EHLO/HELO, and again after STARTTLS
    kReady,      // EHLO/HELO done, no transaction
    kMail,       // MAIL accepted, no recipient yet
    kRcpt,       // one or more recipients accepted
    kChunking,   // BDAT chunks stored, more of them to come
    kSasl,       // AUTH: each line is a SASL response
    kSaslFinal,  // success data went out in a 334; awaiting an empty line
    // Reading message content:
    kData,       // DATA content, up to <CRLF>.<CRLF>
    kChunk,      // the octets of a BDAT chunk, stored
    kSkipChunk,  // the octets of a refused BDAT chunk, dropped
    // Waiting for the connection (need() is not kInput):
    kGreetWait,  // the 220 is held back (pregreet test, Need::kGreetWait)
    kSaslStep,   // a SASL step runs outside (Need::kSaslStep)
    kAuthDelay,  // the reply to a failed AUTH is held back (Need::kDelay)
    kSenderCheck,  // MAIL passed policy; the host checks it (SPF) outside
    kRcptCheck,  // RCPT passed policy; the host checks it (DNSBL, greylist)
    kCommit,     // the message is complete; the host makes it durable
    kStartTls,   // 220 to STARTTLS queued; the handshake comes next
    kClosed,     // the last reply is queued
  };

  // How long a command line may be (RFC 5321 4.5.3.1.4, RFC 4954 4).
  enum class LineLimit : uint8_t { kCommand, kEnvelope, kSasl };

  // Returns the refusal of a command line in the current state (or for its
  // syntax, where that is checked first), or nullptr when it may run.
  using Check = const char* (Impl::*)(std::string_view arg) const;
  using Handler = void (Impl::*)(std::string_view arg);

  // One SMTP verb: dispatch and HELP both read the table (session.cc).
  struct Command {
    std::string_view verb;
    LineLimit limit;
    // Null: always there; otherwise the configuration must switch it on,
    // or the verb is "not recognized" and missing from HELP.
    bool (*offered)(const SessionConfig& config);
    Check check;  // null: allowed in every command state
    Handler handler;
    std::string_view help;  // the reply to "HELP verb"
  };
  static const Command kCommands[];

  Impl(const SessionConfig& c, SessionHost& h, ClientInfo ci)
      : config(c), host(h), client(std::move(ci)) {}

  SessionConfig config;
  SessionHost& host;
  ClientInfo client;
  std::string out;
  State state = State::kNoHelo;
  uint32_t errors = 0;
  std::chrono::milliseconds delay{0};
  Transaction t;
  std::string queue_id;
  bool write_failed = false;  // host.MessageData() returned false

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
  // kSkipChunk: the reply once the chunk is dropped, the state to go back
  // to, and whether the transaction ends there (no queue file for it).
  const char* bdat_refusal = nullptr;
  State bdat_resume = State::kNoHelo;
  bool bdat_reset_after = false;

  // kRcptCheck: the recipient the host checks, and the state to go back
  // to when it is refused.
  Mailbox rcpt_pending;
  RcptParams rcpt_pending_params;
  State rcpt_resume = State::kMail;

  // The SASL exchange (RFC 4954 4), active exactly in kSasl, kSaslFinal
  // and kSaslStep (where the connection runs its step).
  auth::SaslExchange sasl;

  // What a 4xx/5xx reply refuses (SessionHost::Refused): set when a MAIL,
  // RCPT, DATA or BDAT line is dispatched and filled in as the command
  // learns its address; its stage is empty for the other commands.
  Refusal refused;

  std::string tls_version;  // "TLSv1.3", for the Received: header
  std::string tls_cipher;

  // ---- State and replies (session.cc) ---------------------------------
  void SetState(State next);
  Need need() const;
  bool InTransaction() const;
  bool InData() const;
  bool MessageOpen() const;
  void Reply(std::string_view text);
  void CloseWith(std::string_view text);
  void ResetTransaction();

  // ---- Command lines and dispatch (session.cc) ------------------------
  size_t Feed(std::string_view data);
  size_t BaseLimit() const;
  size_t LineCap() const;
  size_t FeedCommand(std::string_view data);
  void ProcessLine();
  static const Command* FindCommand(std::string_view verb);
  bool Offered(const Command& command) const;
  void Dispatch(std::string_view text, size_t len);
  void SetRefusalSubject(std::string_view verb);

  // ---- Session commands (session.cc) ----------------------------------
  void Ehlo(std::string_view arg);
  void Helo(std::string_view arg);
  void Hello(std::string_view arg, bool esmtp);
  const char* CheckRset(std::string_view arg) const;
  void Rset(std::string_view arg);
  void Noop(std::string_view arg);
  void Quit(std::string_view arg);
  void Help(std::string_view arg);
  const char* CheckStartTls(std::string_view arg) const;
  void StartTls(std::string_view arg);
  void TlsStarted(std::string version, std::string cipher);

  // ---- Envelope (session_envelope.cc) ---------------------------------
  const char* CheckMail(std::string_view arg) const;
  void Mail(std::string_view arg);
  const char* CheckRcpt(std::string_view arg) const;
  void Rcpt(std::string_view arg);
  void Vrfy(std::string_view arg);
  void Expn(std::string_view arg);
  void Verify(std::string_view arg, bool enabled, std::string_view verb);

  // ---- AUTH (session_auth.cc) -----------------------------------------
  bool AuthOffered() const;
  const char* CheckAuth(std::string_view arg) const;
  void Auth(std::string_view arg);
  void OnSasl(auth::SaslExchange::Event event);
  auth::SaslStep RunSaslStep();
  void SaslStepDone(const auth::SaslStep& step);
  void SaslResponse(std::string_view text);
  void Succeed(const std::string& user);
  void EndSasl();

  // ---- Message content (session_data.cc) ------------------------------
  const char* ContentRefusal() const;
  const char* CheckData(std::string_view arg) const;
  void Data(std::string_view arg);
  void Bdat(std::string_view arg);
  size_t FeedData(std::string_view data);
  size_t FeedBdat(std::string_view data);
  void FlushPending();
  void FinishChunk();
  BodyReader::Limits Limits() const;
  bool BeginMessage();
  std::string ReceivedHeader() const;
  void FinishMessage();
  std::string HeaderSenderRefusal();
  void Committed(bool ok, bool no_space);
  void CommitRefused(std::string_view reply);
  void SenderChecked(std::string_view refusal);
  void RcptChecked(std::string_view refusal);
};

}  // namespace tern::smtp
