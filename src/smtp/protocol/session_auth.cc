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
  sasl = host.MakeSaslMechanism(name);
  if (sasl == nullptr) {
    return Reply("504 5.5.4 Unrecognized authentication type");
  }
  SetState(State::kSasl);
  sasl_name = std::string(name);
  for (char& c : sasl_name) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  std::optional<std::string> first;
  if (initial == "=") {
    first = std::string();  // RFC 4954 4: "=" is an empty initial response
  } else if (!initial.empty()) {
    first = Base64Decode(initial);
    if (!first) {
      EndSasl();
      return Reply("501 5.5.2 Invalid base64 data");
    }
  }
  RunOrPend(true, std::move(first));
}

// Runs the mechanism now, or (async_sasl) leaves it to the connection.
void Session::Impl::RunOrPend(bool start, std::optional<std::string> input) {
  sasl_start = start;
  sasl_input = std::move(input);
  if (config.async_sasl) return SetState(State::kSaslStep);
  Step(RunSaslStep());
}

auth::SaslStep Session::Impl::RunSaslStep() {
  if (sasl == nullptr) {
    return auth::SaslStep{auth::SaslStep::Kind::kMalformed, {}, {}};
  }
  std::optional<std::string> input = std::move(sasl_input);
  sasl_input.reset();
  if (sasl_start) return sasl->Start(input);
  return sasl->Next(input ? *input : std::string());
}

void Session::Impl::SaslStepDone(const auth::SaslStep& step) {
  if (state != State::kSaslStep) return;
  SetState(State::kSasl);
  Step(step);
}

void Session::Impl::SaslResponse(std::string_view text) {
  if (text == "*") {
    EndSasl();
    return Reply("501 5.0.0 Authentication cancelled");
  }
  if (state == State::kSaslFinal) {
    // Success data went out in a 334 (RFC 4954 4 has no "additional data
    // with success"); the client acknowledges with an empty line.
    if (!text.empty()) {
      EndSasl();
      return Reply("501 5.5.2 Invalid authentication response");
    }
    std::string user = std::move(sasl_done_user);
    return Succeed(user);
  }
  std::optional<std::string> decoded =
      text.empty() ? std::optional<std::string>(std::string())
                   : Base64Decode(text);
  if (!decoded) {
    EndSasl();
    return Reply("501 5.5.2 Invalid base64 data");
  }
  RunOrPend(false, std::move(decoded));
}

void Session::Impl::Step(const auth::SaslStep& step) {
  switch (step.kind) {
    case auth::SaslStep::Kind::kChallenge:
      // RFC 4954 4: "334" SP base64 challenge.
      return Reply("334 " + Base64Encode(step.data));
    case auth::SaslStep::Kind::kSuccess:
      if (!step.data.empty()) {
        sasl_done_user = step.user.empty() ? "?" : step.user;
        SetState(State::kSaslFinal);
        return Reply("334 " + Base64Encode(step.data));
      }
      return Succeed(step.user);
    case auth::SaslStep::Kind::kFailure: {
      std::string name = sasl_name;
      EndSasl();
      delay = host.AuthFailed(name, step.user);
      Reply("535 5.7.8 Authentication credentials invalid");
      // Unless that reply was one error too many and closed the session.
      if (delay.count() > 0 && state == State::kReady) {
        SetState(State::kAuthDelay);
      }
      return;
    }
    case auth::SaslStep::Kind::kMalformed:
      EndSasl();
      return Reply("501 5.5.2 Invalid authentication exchange");
    case auth::SaslStep::Kind::kTempFailure:
      // RFC 4954 6: the account store could not answer; the client may
      // try again later. Not counted as a failed attempt.
      EndSasl();
      return Reply("454 4.7.0 Temporary authentication failure");
  }
}

void Session::Impl::Succeed(const std::string& user) {
  std::string name = sasl_name;
  EndSasl();
  client.auth_user = user;
  host.AuthSucceeded(name, user);
  Reply("235 2.7.0 Authentication successful");
}

// Ends the exchange, successful or not; also when TLS starts (RFC 3207
// 4.2 forgets everything said before).
void Session::Impl::EndSasl() {
  sasl.reset();
  sasl_input.reset();
  std::string().swap(sasl_name);
  std::string().swap(sasl_done_user);
  if (state == State::kSasl || state == State::kSaslFinal ||
      state == State::kSaslStep) {
    SetState(State::kReady);
  }
}

}  // namespace tern::smtp
