// DNS block- and allowlists (RFC 5782): query names, what answers mean,
// the order of allow- and blocklists, and the refusal text.
#include "antispam/dnsbl.h"

#include <gtest/gtest.h>

#include "dns/fake_resolver.h"

namespace tern::antispam {
namespace {

TEST(DnsblTest, QueryNames) {
  EXPECT_EQ(DnsListQueryName("192.0.2.99", "bl.example"), "99.2.0.192.bl.example");
  EXPECT_EQ(DnsListQueryName("::ffff:192.0.2.99", "bl.example"), "99.2.0.192.bl.example");
  // RFC 5782 2.4's example address.
  EXPECT_EQ(DnsListQueryName("2001:db8:1:2:3:4:567:89ab", "bl.example"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example");
  EXPECT_EQ(DnsListQueryName("not an address", "bl.example"), "");
  EXPECT_EQ(DnsListQueryName("192.0.2.999", "bl.example"), "");
}

TEST(DnsblTest, WhatAnswersMean) {
  dns::Answer nx;
  nx.status = dns::Status::kNxDomain;
  EXPECT_EQ(ClassifyListAnswer("bl", nx).kind, ListAnswer::Kind::kNotListed);

  dns::Answer nodata;
  nodata.status = dns::Status::kOk;
  EXPECT_EQ(ClassifyListAnswer("bl", nodata).kind, ListAnswer::Kind::kNotListed);

  dns::Answer listed;
  listed.status = dns::Status::kOk;
  listed.addresses = {"127.0.0.2", "127.0.0.10"};
  ListAnswer l = ClassifyListAnswer("bl", listed);
  EXPECT_EQ(l.kind, ListAnswer::Kind::kListed);
  EXPECT_EQ(l.codes, (std::vector<std::string>{"127.0.0.2", "127.0.0.10"}));

  dns::Answer refused = listed;
  refused.addresses = {"127.255.255.254"};
  ListAnswer r = ClassifyListAnswer("bl", refused);
  EXPECT_EQ(r.kind, ListAnswer::Kind::kError);
  EXPECT_NE(r.error.find("refused"), std::string::npos);

  dns::Answer wildcard = listed;
  wildcard.addresses = {"198.51.100.7"};
  EXPECT_EQ(ClassifyListAnswer("bl", wildcard).kind, ListAnswer::Kind::kError);

  dns::Answer failed;
  failed.status = dns::Status::kTempFail;
  EXPECT_EQ(ClassifyListAnswer("bl", failed).kind, ListAnswer::Kind::kError);
}

class DnsblLookupTest : public ::testing::Test {
 protected:
  ClientListing Check(const std::string& ip, std::vector<std::string> wl,
                      std::vector<std::string> bl) {
    ClientListing out;
    asio::co_spawn(io_, CheckClientLists(fake_, ip, std::move(wl), std::move(bl)),
                   [&](std::exception_ptr e, ClientListing r) {
                     if (e) std::rethrow_exception(e);
                     out = std::move(r);
                   });
    io_.restart();
    io_.run();
    return out;
  }
  asio::io_context io_;
  dns::FakeResolver fake_{io_.get_executor()};
};

TEST_F(DnsblLookupTest, BlockedWithReason) {
  fake_.SetA("2.2.0.192.bl.test", {"127.0.0.2"});
  fake_.SetTxt("2.2.0.192.bl.test", {"Listed: see https://bl.test/q?192.0.2.2"});
  ClientListing c = Check("192.0.2.2", {}, {"quiet.test", "bl.test"});
  ASSERT_TRUE(c.blocked);
  EXPECT_EQ(c.blocked->zone, "bl.test");
  EXPECT_EQ(DnsblRefusal("192.0.2.2", *c.blocked),
            "554 5.7.1 Service unavailable; client [192.0.2.2] blocked using bl.test; "
            "Listed: see https://bl.test/q?192.0.2.2");
  EXPECT_TRUE(c.allowed_by.empty());
}

TEST_F(DnsblLookupTest, AllowlistWinsAndBlocklistsAreNotAsked) {
  fake_.SetA("3.2.0.192.wl.test", {"127.0.10.1"});
  fake_.SetA("3.2.0.192.bl.test", {"127.0.0.2"});
  ClientListing c = Check("192.0.2.3", {"wl.test"}, {"bl.test"});
  EXPECT_EQ(c.allowed_by, "wl.test");
  EXPECT_FALSE(c.blocked);
  EXPECT_EQ(fake_.queries(), 1);
}

TEST_F(DnsblLookupTest, RefusedQueryIsNotAListing) {
  fake_.SetA("4.2.0.192.bl.test", {"127.255.255.254"});
  ClientListing c = Check("192.0.2.4", {}, {"bl.test"});
  EXPECT_FALSE(c.blocked);
  ASSERT_EQ(c.errors.size(), 1u);
  EXPECT_EQ(c.errors[0].zone, "bl.test");
}

TEST(DnsblTest, RefusalTextIsCleaned) {
  ListAnswer l;
  l.kind = ListAnswer::Kind::kListed;
  l.zone = "BL.Test";
  l.reason = "bad\r\n250 ok" + std::string(300, 'x');
  std::string r = DnsblRefusal("2001:db8::1", l);
  EXPECT_EQ(r.find('\r'), std::string::npos);
  EXPECT_EQ(r.find('\n'), std::string::npos);
  EXPECT_EQ(r.rfind("554 5.7.1 Service unavailable; client [2001:db8::1] blocked using "
                    "bl.test; bad  250 ok",
                    0),
            0u);
  EXPECT_LT(r.size(), 300u);
}

}  // namespace
}  // namespace tern::antispam
