// Tests for the protocol-independent AUTH exchange: base64 framing, "=" and
// "*", success data as a last challenge, failures with the user for logs.
#include "auth/sasl_exchange.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/base64.h"

namespace tern::auth {
namespace {

using Event = SaslExchange::Event;

// A mechanism that replays a script: each step returns the next entry and
// records what it was given.
class Scripted : public SaslMechanism {
 public:
  explicit Scripted(std::vector<SaslStep> steps, std::vector<std::string>* seen)
      : steps_(std::move(steps)), seen_(seen) {}
  SaslStep Start(std::optional<std::string_view> initial) override {
    seen_->push_back(initial ? "start:" + std::string(*initial) : "start");
    return Take();
  }
  SaslStep Next(std::string_view response) override {
    seen_->push_back("next:" + std::string(response));
    return Take();
  }

 private:
  SaslStep Take() {
    SaslStep s = steps_.at(i_++);
    return s;
  }
  std::vector<SaslStep> steps_;
  std::vector<std::string>* seen_;
  size_t i_ = 0;
};

using K = SaslStep::Kind;

TEST(SaslExchangeTest, ChallengesAndSuccess) {
  std::vector<std::string> seen;
  SaslExchange x;
  auto m = std::make_unique<Scripted>(
      std::vector<SaslStep>{{K::kChallenge, "Password:", ""},
                            {K::kSuccess, "", "u@example.test"}},
      &seen);
  EXPECT_EQ(x.Start(std::move(m), "login", Base64Encode("u")), Event::kStep);
  EXPECT_EQ(x.mechanism(), "LOGIN");
  EXPECT_EQ(x.Stepped(x.Run()), Event::kChallenge);
  EXPECT_EQ(x.challenge(), Base64Encode("Password:"));
  EXPECT_FALSE(x.final_challenge());
  EXPECT_EQ(x.Respond(Base64Encode("pw")), Event::kStep);
  EXPECT_EQ(x.Stepped(x.Run()), Event::kSuccess);
  EXPECT_EQ(x.user(), "u@example.test");
  EXPECT_EQ(seen, (std::vector<std::string>{"start:u", "next:pw"}));
}

TEST(SaslExchangeTest, EmptyInitialResponseAndNone) {
  std::vector<std::string> seen;
  SaslExchange x;
  std::vector<SaslStep> fail{{K::kFailure, "", "who"}};
  x.Start(std::make_unique<Scripted>(fail, &seen), "PLAIN", "=");
  x.Stepped(x.Run());
  x.Start(std::make_unique<Scripted>(fail, &seen), "PLAIN", std::nullopt);
  EXPECT_EQ(x.Stepped(x.Run()), Event::kFailure);
  EXPECT_EQ(x.user(), "who");  // kept for the log
  EXPECT_FALSE(x.active());
  EXPECT_EQ(seen, (std::vector<std::string>{"start:", "start"}));
}

TEST(SaslExchangeTest, SuccessDataIsALastChallenge) {
  std::vector<std::string> seen;
  SaslExchange x;
  x.Start(std::make_unique<Scripted>(
              std::vector<SaslStep>{{K::kSuccess, "v=abc", "u@example.test"}}, &seen),
          "SCRAM-SHA-256", std::nullopt);
  EXPECT_EQ(x.Stepped(x.Run()), Event::kChallenge);
  EXPECT_TRUE(x.final_challenge());
  EXPECT_EQ(x.challenge(), Base64Encode("v=abc"));
  EXPECT_EQ(x.Respond(""), Event::kSuccess);
  EXPECT_EQ(x.user(), "u@example.test");

  x.Start(std::make_unique<Scripted>(
              std::vector<SaslStep>{{K::kSuccess, "v=abc", "u@example.test"}}, &seen),
          "SCRAM-SHA-256", std::nullopt);
  x.Stepped(x.Run());
  EXPECT_EQ(x.Respond("eA=="), Event::kBadFinalAck);
  EXPECT_FALSE(x.active());
}

TEST(SaslExchangeTest, CancelBadBase64AndErrors) {
  std::vector<std::string> seen;
  SaslExchange x;
  std::vector<SaslStep> challenge{{K::kChallenge, "", ""}};
  EXPECT_EQ(x.Start(std::make_unique<Scripted>(challenge, &seen), "PLAIN", "!!!"),
            Event::kBadBase64);
  x.Start(std::make_unique<Scripted>(challenge, &seen), "PLAIN", std::nullopt);
  EXPECT_EQ(x.Stepped(x.Run()), Event::kChallenge);
  EXPECT_EQ(x.Respond("*"), Event::kCancelled);  // RFC 4422 3.5
  EXPECT_FALSE(x.active());
  x.Start(std::make_unique<Scripted>(challenge, &seen), "PLAIN", std::nullopt);
  x.Stepped(x.Run());
  EXPECT_EQ(x.Respond("@@@"), Event::kBadBase64);
  x.Start(std::make_unique<Scripted>(std::vector<SaslStep>{{K::kMalformed, "", ""}},
                                     &seen),
          "PLAIN", std::nullopt);
  EXPECT_EQ(x.Stepped(x.Run()), Event::kMalformed);
  x.Start(std::make_unique<Scripted>(std::vector<SaslStep>{{K::kTempFailure, "", ""}},
                                     &seen),
          "PLAIN", std::nullopt);
  EXPECT_EQ(x.Stepped(x.Run()), Event::kTempFailure);
}

TEST(SaslExchangeTest, RawInitialResponse) {
  std::vector<std::string> seen;
  SaslExchange x;
  x.StartRaw(std::make_unique<Scripted>(
                 std::vector<SaslStep>{{K::kSuccess, "", "u@example.test"}}, &seen),
             "USER", std::string("\0u\0p", 4));
  EXPECT_EQ(x.Stepped(x.Run()), Event::kSuccess);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], std::string("start:\0u\0p", 10));
}

}  // namespace
}  // namespace tern::auth
