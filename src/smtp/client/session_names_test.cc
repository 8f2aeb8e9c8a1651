// The names a peer gives itself in its greeting and EHLO reply (used by
// outbound delivery to notice mail that loops back to us), and the refusal
// text when an 8-bit message could not be converted.
#include <gtest/gtest.h>

#include "smtp/client/session.h"

namespace tern::smtp::client {
namespace {

void Feed(ClientSession& s, std::string_view text) {
  s.Feed(text);
  s.ClearOutput();
}

TEST(ClientSessionNamesTest, GreetingAndEhloNames) {
  ClientSession s(ClientOptions{"me.test"});
  EXPECT_EQ(s.peer_greeting_name(), "");
  Feed(s, "220 mx.peer.test ESMTP ready\r\n");
  EXPECT_EQ(s.peer_greeting_name(), "mx.peer.test");
  Feed(s, "250-Other.Name.test hello me.test\r\n250 PIPELINING\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kReady);
  EXPECT_EQ(s.peer_ehlo_name(), "Other.Name.test");
}

TEST(ClientSessionNamesTest, HeloFallbackName) {
  ClientSession s(ClientOptions{"me.test"});
  Feed(s, "220 old.test\r\n");
  Feed(s, "502 no EHLO\r\n");
  Feed(s, "250 old-helo.test\r\n");
  ASSERT_EQ(s.need(), ClientSession::Need::kReady);
  EXPECT_EQ(s.peer_ehlo_name(), "old-helo.test");
}

TEST(ClientSessionNamesTest, EightBitRefusalCarriesTheReason) {
  ClientSession s(ClientOptions{"me.test"});
  Feed(s, "220 seven.test\r\n");
  Feed(s, "250-seven.test\r\n250 PIPELINING\r\n");
  TxnRequest req;
  req.sender = "a@x.test";
  req.rcpts.push_back({"b@y.test", "", ""});
  req.has_8bit = true;
  req.downgrade_error = "8-bit octets in a header field";
  s.StartTransaction(req);
  ASSERT_EQ(s.need(), ClientSession::Need::kResult);
  EXPECT_EQ(s.output(), "");  // nothing went to the peer
  TxnResult r = s.TakeResult();
  ASSERT_TRUE(r.refused);
  EXPECT_EQ(r.refused->Status(), "5.6.3");
  EXPECT_NE(r.refused->Text().find("8-bit octets in a header field"),
            std::string::npos);
}

}  // namespace
}  // namespace tern::smtp::client
