// One SASL authentication exchange (RFC 4422 3) as every protocol runs it:
// SMTP AUTH (RFC 4954), POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE (RFC
// 9051 6.2.2). They differ only in how a challenge is framed ("334 " or
// "+ ") and how the outcome is worded; the exchange itself — base64 lines,
// "=" for an empty initial response, "*" to cancel, the mechanism's steps
// (which may run on another thread: Argon2id and PBKDF2 cost tens of
// milliseconds), success data sent as a last challenge that the client
// acknowledges with an empty line — is this one class, sans-I/O.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/sasl.h"

namespace tern::auth {

class SaslExchange {
 public:
  // What the protocol session does next.
  enum class Event {
    kStep,         // call Run() (off the io thread), then Stepped()
    kChallenge,    // send challenge() (base64) and Respond() to the answer
    kSuccess,      // user() is authenticated
    kFailure,      // wrong credentials
    kBadBase64,    // a client line was not base64
    kBadFinalAck,  // the answer to the success data was not empty
    kMalformed,    // the mechanism found the client message malformed
    kCancelled,    // the client sent "*" (RFC 4422 3.5)
    kTempFailure,  // the account store failed: not the client's fault
  };

  // Starts an exchange with `mechanism` (the caller made it from its
  // name; it must not be null). `initial` is the initial response as sent
  // on the wire (base64; "=" is an empty one), nullopt when there is none.
  Event Start(std::unique_ptr<SaslMechanism> mechanism, std::string_view name,
              std::optional<std::string_view> initial);
  // The same with an initial response that is not base64 framed (a POP3
  // PASS or IMAP LOGIN run as PLAIN).
  Event StartRaw(std::unique_ptr<SaslMechanism> mechanism,
                 std::string_view name, std::string initial);
  // A client line while a challenge is outstanding.
  Event Respond(std::string_view line);
  // The mechanism's step for kStep. Nothing else may touch the exchange
  // until Stepped() has the result.
  SaslStep Run();
  Event Stepped(const SaslStep& step);

  bool active() const { return mechanism_ != nullptr || awaiting_ack_; }
  // The outstanding challenge carries the success data: the answer must
  // be an empty line.
  bool final_challenge() const { return awaiting_ack_; }
  const std::string& challenge() const { return challenge_; }  // base64
  // The mechanism name in upper case, for replies and logs.
  const std::string& mechanism() const { return name_; }
  // After kSuccess: the canonical account. After kFailure: the user name
  // the client gave, when the mechanism got that far (for the log).
  const std::string& user() const { return user_; }
  // Forgets everything (the end of an exchange, or TLS starting: RFC 3207
  // 4.2 and RFC 2595 4 forget what was said before).
  void Reset();

 private:
  Event Finish(Event e);

  std::unique_ptr<SaslMechanism> mechanism_;
  std::string name_;
  bool started_ = false;            // Start() of the mechanism has run
  std::optional<std::string> input_;  // for the next Run()
  bool awaiting_ack_ = false;       // success data sent as a challenge
  std::string challenge_;
  std::string user_;
};

}  // namespace tern::auth
