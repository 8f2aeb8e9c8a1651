// Unit tests of DSN building and the retry schedule.
#include "queue/dsn.h"

#include <gtest/gtest.h>

#include "queue/finisher.h"

namespace tern::queue {
namespace {

TEST(DsnTest, StatusOf) {
  EXPECT_EQ(StatusOf("550 5.1.1 no such user", "5.0.0"), "5.1.1");
  EXPECT_EQ(StatusOf("550 no such user", "5.0.0"), "5.0.0");
  EXPECT_EQ(StatusOf("451 try later", "5.0.0"), "4.0.0");
  EXPECT_EQ(StatusOf("550 4.1.1 mismatch", "5.0.0"), "5.0.0");
  EXPECT_EQ(StatusOf("user unknown", "5.1.1"), "5.1.1");
}

TEST(DsnTest, FailureReport) {
  DsnInput in;
  in.reporting_mta = "mx.example.test";
  in.original.id = "ID1";
  in.original.sender = "a@example.test";
  in.original.envid = "E1";
  in.original.received_at = 1700000000;
  std::string msg = "Subject: hi\r\n\r\nbody\r\n";
  in.message = msg;
  in.now = 1700000100;
  in.recipients.push_back({"b@remote.test", "rfc822;b@remote.test", "failed",
                           "5.1.1", "mx.remote.test",
                           "550 5.1.1 no\x01 such user", 1700000050});
  std::string dsn = BuildDsn(in);
  EXPECT_NE(dsn.find("Content-Type: multipart/report; report-type=delivery-status;"),
            std::string::npos);
  EXPECT_NE(dsn.find("Final-Recipient: rfc822; b@remote.test\r\n"), std::string::npos);
  EXPECT_NE(dsn.find("Original-Recipient: rfc822; b@remote.test\r\n"),
            std::string::npos);
  EXPECT_NE(dsn.find("Diagnostic-Code: smtp; 550 5.1.1 no? such user\r\n"),
            std::string::npos);
  EXPECT_NE(dsn.find("Remote-MTA: dns; mx.remote.test\r\n"), std::string::npos);
  EXPECT_NE(dsn.find("Original-Envelope-Id: E1\r\n"), std::string::npos);
  size_t part = dsn.find("Content-Type: message/rfc822\r\n");
  ASSERT_NE(part, std::string::npos);
  EXPECT_NE(dsn.find("\r\n\r\nSubject: hi\r\n\r\nbody\r\n", part),
            std::string::npos);
  Envelope env = DsnEnvelope(in);
  EXPECT_EQ(env.sender, "");
  ASSERT_EQ(env.recipients.size(), 1u);
  EXPECT_EQ(env.recipients[0].address, "a@example.test");
}

TEST(DsnTest, DoubleBounceGoesToThePostmaster) {
  DsnInput in;
  in.reporting_mta = "mx.example.test";
  in.original.id = "ID2";
  in.original.sender = "";  // a bounce
  std::string msg = "Subject: Undelivered Mail\r\n\r\nreport\r\n";
  in.message = msg;
  in.postmaster = "postmaster@example.test";
  in.recipients.push_back({"gone@remote.test", "", "failed", "5.1.1",
                           "mx.remote.test", "550 5.1.1 no such user", 0});
  std::string dsn = BuildDsn(in);
  EXPECT_NE(dsn.find("To: <postmaster@example.test>\r\n"), std::string::npos);
  EXPECT_NE(dsn.find("Subject: Postmaster notify: undeliverable bounce\r\n"),
            std::string::npos);
  EXPECT_NE(dsn.find("Final-Recipient: rfc822; gone@remote.test\r\n"),
            std::string::npos);
  EXPECT_NE(dsn.find("\r\n\r\nSubject: Undelivered Mail\r\n"), std::string::npos);
  Envelope env = DsnEnvelope(in);
  EXPECT_EQ(env.sender, "");
  ASSERT_EQ(env.recipients.size(), 1u);
  EXPECT_EQ(env.recipients[0].address, "postmaster@example.test");
}

TEST(DsnTest, HeadersOnlyForRetHdrs) {
  DsnInput in;
  in.reporting_mta = "mx";
  in.original.id = "ID";
  in.original.sender = "a@x";
  in.original.ret = "HDRS";
  std::string msg = "Subject: s\r\n\r\nsecret body\r\n";
  in.message = msg;
  in.recipients.push_back({"b@y", "", "failed", "5.0.0", "", "550 no", 0});
  std::string dsn = BuildDsn(in);
  EXPECT_NE(dsn.find("text/rfc822-headers"), std::string::npos);
  EXPECT_EQ(dsn.find("secret body"), std::string::npos);
}

// RFC 8689 5: the report on a REQUIRETLS message is redacted.
TEST(DsnTest, RequireTlsReportIsRedacted) {
  DsnInput in;
  in.reporting_mta = "mx";
  in.original.id = "ID";
  in.original.sender = "a@x";
  in.original.requiretls = true;
  std::string msg = "Subject: private matter\r\n\r\nsecret body\r\n";
  in.message = msg;
  in.recipients.push_back({"b@y", "", "failed", "5.7.10", "", "550 5.7.10 no TLS", 0});
  std::string dsn = BuildDsn(in);
  EXPECT_NE(dsn.find("message/delivery-status"), std::string::npos);
  EXPECT_NE(dsn.find("Final-Recipient: rfc822; b@y"), std::string::npos);
  EXPECT_EQ(dsn.find("private matter"), std::string::npos);
  EXPECT_EQ(dsn.find("secret body"), std::string::npos);
  EXPECT_EQ(dsn.find("rfc822-headers"), std::string::npos);
  EXPECT_TRUE(dsn.ends_with("--\r\n"));
  EXPECT_FALSE(DsnEnvelope(in).requiretls);
}

TEST(RetryTest, BackoffDoublesAndCaps) {
  RetryPolicy p;
  p.first = 300;
  p.max = 3600;
  EXPECT_EQ(RetryDelay(p, 1, 0.0), 300);
  EXPECT_EQ(RetryDelay(p, 2, 0.0), 600);
  EXPECT_EQ(RetryDelay(p, 4, 0.0), 2400);
  EXPECT_EQ(RetryDelay(p, 5, 0.0), 3600);
  EXPECT_EQ(RetryDelay(p, 50, 0.0), 3600);
  EXPECT_GE(RetryDelay(p, 1, 0.999), 240);  // at most 20% jitter
  EXPECT_LE(RetryDelay(p, 1, 0.999), 300);
}

TEST(NotifyTest, Defaults) {
  EXPECT_TRUE(NotifyWants("", "FAILURE"));
  EXPECT_TRUE(NotifyWants("", "DELAY"));
  EXPECT_FALSE(NotifyWants("", "SUCCESS"));
  EXPECT_FALSE(NotifyWants("NEVER", "FAILURE"));
  EXPECT_TRUE(NotifyWants("success,failure", "FAILURE"));
}

}  // namespace
}  // namespace tern::queue
