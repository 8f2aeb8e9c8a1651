// The protocol-independent part of AUTH: see sasl_exchange.h.
#include "auth/sasl_exchange.h"

#include <cctype>
#include <utility>

#include "common/base64.h"

namespace tern::auth {

SaslExchange::Event SaslExchange::Start(std::unique_ptr<SaslMechanism> mechanism,
                                        std::string_view name,
                                        std::optional<std::string_view> initial) {
  std::optional<std::string> raw;
  if (initial) {
    if (*initial == "=") {
      raw = std::string();  // RFC 4954 4, RFC 5034 4: an empty response
    } else {
      raw = Base64Decode(*initial);
      if (!raw) {
        Reset();
        return Event::kBadBase64;
      }
    }
  }
  Reset();
  mechanism_ = std::move(mechanism);
  name_ = std::string(name);
  for (char& c : name_) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  input_ = std::move(raw);
  return Event::kStep;
}

SaslExchange::Event SaslExchange::StartRaw(std::unique_ptr<SaslMechanism> mechanism,
                                           std::string_view name,
                                           std::string initial) {
  Reset();
  mechanism_ = std::move(mechanism);
  name_ = std::string(name);
  input_ = std::move(initial);
  return Event::kStep;
}

SaslExchange::Event SaslExchange::Respond(std::string_view line) {
  // RFC 4422 3.5: the client may abort at any time.
  if (line == "*") return Finish(Event::kCancelled);
  if (awaiting_ack_) {
    if (!line.empty()) return Finish(Event::kBadFinalAck);
    awaiting_ack_ = false;
    return Event::kSuccess;
  }
  std::optional<std::string> raw =
      line.empty() ? std::optional<std::string>(std::string()) : Base64Decode(line);
  if (!raw) return Finish(Event::kBadBase64);
  input_ = std::move(raw);
  return Event::kStep;
}

SaslStep SaslExchange::Run() {
  if (mechanism_ == nullptr) return SaslStep{SaslStep::Kind::kMalformed, {}, {}};
  std::optional<std::string> input = std::move(input_);
  input_.reset();
  if (!started_) {
    started_ = true;
    return mechanism_->Start(input);
  }
  return mechanism_->Next(input ? *input : std::string());
}

SaslExchange::Event SaslExchange::Stepped(const SaslStep& step) {
  switch (step.kind) {
    case SaslStep::Kind::kChallenge:
      challenge_ = Base64Encode(step.data);
      return Event::kChallenge;
    case SaslStep::Kind::kSuccess:
      mechanism_.reset();
      user_ = step.user;
      if (!step.data.empty()) {
        // RFC 4954 4 and RFC 5034 4 have no room for data with the final
        // reply: it goes out as one more challenge.
        challenge_ = Base64Encode(step.data);
        awaiting_ack_ = true;
        return Event::kChallenge;
      }
      return Event::kSuccess;
    case SaslStep::Kind::kFailure:
      user_ = step.user;
      return Finish(Event::kFailure);
    case SaslStep::Kind::kMalformed:
      return Finish(Event::kMalformed);
    case SaslStep::Kind::kTempFailure:
      return Finish(Event::kTempFailure);
  }
  return Finish(Event::kMalformed);
}

SaslExchange::Event SaslExchange::Finish(Event e) {
  mechanism_.reset();
  input_.reset();
  awaiting_ack_ = false;
  started_ = false;
  return e;
}

void SaslExchange::Reset() {
  mechanism_.reset();
  input_.reset();
  awaiting_ack_ = false;
  started_ = false;
  name_.clear();
  challenge_.clear();
  user_.clear();
}

}  // namespace tern::auth
