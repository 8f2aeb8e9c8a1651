// AUTH in the SMTP session (RFC 4954): when it is offered, the exchange of
// 334 challenges and base64 responses, and its end. The mechanisms
// themselves are in auth/sasl; a step may run on another thread.
#include <optional>
#include <string>
#include <utility>

#include "common/base64.h"
#include "common/strings.h"
#include "smtp/protocol/session_impl.h"

namespace tern::smtp {

// RFC 4954 4 and RFC 8314 / RFC 3207: passwords travel only inside TLS,
// unless the listener is loopback and explicitly allows it.
bool Session::Impl::AuthOffered() const {
  return config.auth && (client.tls || config.auth_allowed_plaintext);
}

const char* Session::Impl::CheckAuth(std::string_view) const {
  if (state == State::kNoHelo || !t.esmtp) {
    return "503 5.5.1 Error: send EHLO first";
  }
  // RFC 4954 4: no second AUTH, none inside a transaction.
  if (!client.auth_user.empty())
    return "503 5.5.1 Error: already authenticated";
  if (state != State::kReady) {
    return "503 5.5.1 Error: AUTH not permitted during a mail transaction";
  }
  if (!AuthOffered()) {
    return "538 5.7.11 Encryption required for requested authentication "
           "mechanism";
  }
  return nullptr;
}

void Session::Impl::Auth(std::string_view arg) {
  arg = Trim(arg);
  size_t sp = arg.find(' ');
  std::string_view name = arg.substr(0, sp);
  std::string_view initial = sp == std::string_view::npos
                                 ? std::string_view()
                                 : Trim(arg.substr(sp + 1));
  if (name.empty() || initial.find(' ') != std::string_view::npos) {
    return Reply("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
  }
  if (host.AuthBlocked()) {
    return CloseWith("421 4.7.0 " + config.hostname +
                     " Too many failed authentications, try again later");
  }
  std::unique_ptr<auth::SaslMechanism> mechanism = host.MakeSaslMechanism(name);
  if (mechanism == nullptr) {
    return Reply("504 5.5.4 Unrecognized authentication type");
  }
  SetState(State::kSasl);
  OnSasl(sasl.Start(std::move(mechanism), name,
                    initial.empty() ? std::nullopt
                                    : std::optional<std::string_view>(initial)));
}

// What the exchange asks for, in SMTP words (RFC 4954 4 and 6).
void Session::Impl::OnSasl(auth::SaslExchange::Event event) {
  using Event = auth::SaslExchange::Event;
  switch (event) {
    case Event::kStep:
      // The mechanism runs now, or (async_sasl) on the connection's pool.
      if (config.async_sasl) return SetState(State::kSaslStep);
      return OnSasl(sasl.Stepped(sasl.Run()));
    case Event::kChallenge:
      // RFC 4954 4: "334" SP base64 challenge. Success data goes out the
      // same way (no "additional data with success" in SMTP).
      SetState(sasl.final_challenge() ? State::kSaslFinal : State::kSasl);
      return Reply("334 " + sasl.challenge());
    case Event::kSuccess:
      return Succeed(sasl.user().empty() ? "?" : sasl.user());
    case Event::kFailure: {
      std::string name = sasl.mechanism();
      std::string user = sasl.user();
      EndSasl();
      delay = host.AuthFailed(name, user);
      Reply("535 5.7.8 Authentication credentials invalid");
      // Unless that reply was one error too many and closed the session.
      if (delay.count() > 0 && state == State::kReady) {
        SetState(State::kAuthDelay);
      }
      return;
    }
    case Event::kCancelled:
      EndSasl();
      return Reply("501 5.0.0 Authentication cancelled");
    case Event::kBadBase64:
      EndSasl();
      return Reply("501 5.5.2 Invalid base64 data");
    case Event::kBadFinalAck:
      EndSasl();
      return Reply("501 5.5.2 Invalid authentication response");
    case Event::kMalformed:
      EndSasl();
      return Reply("501 5.5.2 Invalid authentication exchange");
    case Event::kTempFailure:
      // RFC 4954 6: the account store could not answer; the client may
      // try again later. Not counted as a failed attempt.
      EndSasl();
      return Reply("454 4.7.0 Temporary authentication failure");
  }
}

auth::SaslStep Session::Impl::RunSaslStep() { return sasl.Run(); }

void Session::Impl::SaslStepDone(const auth::SaslStep& step) {
  if (state != State::kSaslStep) return;
  SetState(State::kSasl);
  OnSasl(sasl.Stepped(step));
}

void Session::Impl::SaslResponse(std::string_view text) {
  OnSasl(sasl.Respond(text));
}

void Session::Impl::Succeed(const std::string& user) {
  std::string name = sasl.mechanism();
  EndSasl();
  client.auth_user = user;
  host.AuthSucceeded(name, user);
  Reply("235 2.7.0 Authentication successful");
}

// Ends the exchange, successful or not; also when TLS starts (RFC 3207
// 4.2 forgets everything said before).
void Session::Impl::EndSasl() {
  sasl.Reset();
  if (state == State::kSasl || state == State::kSaslFinal ||
      state == State::kSaslStep) {
    SetState(State::kReady);
  }
}

}  // namespace tern::smtp
