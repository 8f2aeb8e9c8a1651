// Unit tests of the DNS layer: RDATA decoding against hostile input, the
// upstream notation, and the TTL cache (with a fake resolver and clock).
#include <gtest/gtest.h>

#include "dns/cache.h"
#include "dns/fake_resolver.h"
#include "dns/rdata.h"
#include "dns/unbound_resolver.h"

namespace tern::dns {
namespace {

std::string Wire(std::initializer_list<std::string> labels) {
  std::string out;
  for (const std::string& l : labels) {
    out += static_cast<char>(l.size());
    out += l;
  }
  out += '\0';
  return out;
}

TEST(RdataTest, Mx) {
  std::string rdata = std::string("\x00\x0a", 2) + Wire({"MX1", "Remote", "test"});
  auto mx = ParseMx(rdata);
  ASSERT_TRUE(mx);
  EXPECT_EQ(mx->preference, 10);
  EXPECT_EQ(mx->exchange, "mx1.remote.test");
}

TEST(RdataTest, Srv) {
  std::string rdata = std::string("\x00\x01\x00\x02\x01\xd1", 6) + Wire({"MX", "Example", "org"});
  auto srv = ParseSrv(rdata);
  ASSERT_TRUE(srv);
  EXPECT_EQ(srv->priority, 1);
  EXPECT_EQ(srv->weight, 2);
  EXPECT_EQ(srv->port, 465);
  EXPECT_EQ(srv->target, "mx.example.org");
  // RFC 6186 4: target "." says the service is not offered.
  auto none = ParseSrv(std::string("\0\0\0\0\0\0\0", 7));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->target, "");
  EXPECT_FALSE(ParseSrv(std::string("\0\0\0\0\0\0", 6)));
}

TEST(RdataTest, NullMx) {
  auto mx = ParseMx(std::string("\x00\x00\x00", 3));
  ASSERT_TRUE(mx);
  EXPECT_EQ(mx->preference, 0);
  EXPECT_EQ(mx->exchange, "");
}

TEST(RdataTest, RejectsMalformedNames) {
  EXPECT_FALSE(NameFromWire(""));
  EXPECT_FALSE(NameFromWire(std::string("\x05" "ab", 3)));         // short label
  EXPECT_FALSE(NameFromWire(std::string("\x02" "ab", 3)));         // no root
  EXPECT_FALSE(NameFromWire(std::string("\xc0\x0c", 2)));          // pointer
  EXPECT_FALSE(NameFromWire(std::string("\x01" "a\x00x", 4)));     // trailing
  EXPECT_FALSE(NameFromWire(std::string("\x03" "a.b\x00", 5)));    // dot
  EXPECT_FALSE(ParseMx(std::string("\x00", 1)));
  std::string longname;
  for (int i = 0; i < 60; ++i) longname += std::string("\x04" "abcd");
  longname += '\0';
  EXPECT_FALSE(NameFromWire(longname));  // > 255 octets
}

TEST(RdataTest, Addresses) {
  EXPECT_EQ(ParseAddress(RrType::kA, std::string("\x7f\x00\x00\x05", 4)),
            "127.0.0.5");
  std::string v6(16, '\0');
  v6[15] = 1;
  EXPECT_EQ(ParseAddress(RrType::kAaaa, v6), "::1");
  EXPECT_FALSE(ParseAddress(RrType::kA, "abc"));
  EXPECT_FALSE(ParseAddress(RrType::kAaaa, "abcd"));
}

TEST(RdataTest, Txt) {
  // RFC 1035 3.3.14: character-strings, joined (RFC 7208 3.3).
  EXPECT_EQ(ParseTxt(std::string("\x06v=spf1\x05 -all", 13)), "v=spf1 -all");
  EXPECT_EQ(ParseTxt(std::string("\x00", 1)), "");
  EXPECT_EQ(ParseTxt(""), "");
  EXPECT_FALSE(ParseTxt(std::string("\x05" "abc", 4)));  // length past the end
}

TEST(RdataTest, Tlsa) {
  // RFC 6698 2.1: usage, selector, matching type, then the data.
  std::string digest(32, '\xab');
  auto r = ParseTlsa(std::string("\x03\x01\x01", 3) + digest);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->usage, 3);
  EXPECT_EQ(r->selector, 1);
  EXPECT_EQ(r->mtype, 1);
  EXPECT_EQ(r->data, digest);
  // Octets above 127 stay unsigned.
  auto high = ParseTlsa(std::string("\xff\x80\xfe\x00", 4));
  ASSERT_TRUE(high);
  EXPECT_EQ(high->usage, 255);
  EXPECT_EQ(high->selector, 128);
  EXPECT_EQ(high->mtype, 254);
  EXPECT_EQ(high->data, std::string(1, '\0'));
  EXPECT_FALSE(ParseTlsa(""));
  EXPECT_FALSE(ParseTlsa(std::string("\x03\x01\x01", 3)));  // no data
}

TEST(CacheTest, TlsaAnswersAreCachedWithTheirRecords) {
  asio::io_context io;
  FakeResolver fake(io.get_executor());
  Answer tlsa;
  tlsa.status = Status::kOk;
  tlsa.security = Security::kSecure;
  tlsa.ttl = 3600;
  tlsa.tlsa.push_back(TlsaRecord{3, 1, 1, std::string(32, 'x')});
  fake.Set("_25._tcp.mx.remote.test", RrType::kTlsa, tlsa);
  auto now = CachingResolver::Clock::time_point{};
  CachingResolver cache(fake, io.get_executor(), [&] { return now; });
  std::vector<Answer> got;
  auto ask = [&] {
    cache.Query("_25._tcp.MX.remote.test", RrType::kTlsa,
                [&](Answer a) { got.push_back(std::move(a)); });
    io.run();
    io.restart();
  };
  ask();
  // More than the 15 minutes a negative answer would be kept: the records
  // make this a positive answer, kept for its TTL.
  now += std::chrono::seconds(1000);
  ask();
  EXPECT_EQ(fake.queries(), 1);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].security, Security::kSecure);
  ASSERT_EQ(got[1].tlsa.size(), 1u);
  EXPECT_EQ(got[1].tlsa[0], tlsa.tlsa[0]);
}

TEST(UpstreamTest, Notation) {
  EXPECT_EQ(UnboundUpstream("127.0.0.1:5353").value(), "127.0.0.1@5353");
  EXPECT_EQ(UnboundUpstream("127.0.0.1").value(), "127.0.0.1@53");
  EXPECT_EQ(UnboundUpstream("[::1]:53").value(), "::1@53");
  EXPECT_EQ(UnboundUpstream("::1").value(), "::1@53");
  EXPECT_FALSE(UnboundUpstream("dns.example:53"));
  EXPECT_FALSE(UnboundUpstream("127.0.0.1:0"));
  EXPECT_FALSE(UnboundUpstream("127.0.0.1:x"));
}

TEST(UnboundTest, UnreadableTrustAnchorIsAStartupError) {
  asio::io_context io;
  UnboundOptions options;
  options.upstreams = {"127.0.0.1:9"};
  options.trust_anchor_file = "/nonexistent/root.key";
  auto r = MakeUnboundResolver(io.get_executor(), options);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent/root.key"), std::string::npos);
}

TEST(CacheTest, AnswersLiveForTheirTtl) {
  asio::io_context io;
  FakeResolver fake(io.get_executor());
  fake.SetMx("remote.test", {{10, "mx.remote.test"}}, 60);
  auto now = CachingResolver::Clock::time_point{};
  CachingResolver cache(fake, io.get_executor(), [&] { return now; });
  int answers = 0;
  auto ask = [&] {
    cache.Query("Remote.Test", RrType::kMx, [&](Answer a) {
      EXPECT_EQ(a.status, Status::kOk);
      ASSERT_EQ(a.mx.size(), 1u);
      ++answers;
    });
  };
  ask();
  ask();  // coalesced with the first
  io.run();
  io.restart();
  EXPECT_EQ(fake.queries(), 1);
  ask();
  io.run();
  io.restart();
  EXPECT_EQ(fake.queries(), 1);
  now += std::chrono::seconds(61);
  ask();
  io.run();
  EXPECT_EQ(fake.queries(), 2);
  EXPECT_EQ(answers, 4);
}

TEST(CacheTest, TemporaryFailuresAreNotCached) {
  asio::io_context io;
  FakeResolver fake(io.get_executor());
  Answer fail;
  fail.status = Status::kTempFail;
  fail.ttl = 300;
  fake.Set("down.test", RrType::kMx, fail);
  CachingResolver cache(fake, io.get_executor());
  for (int i = 0; i < 2; ++i) {
    cache.Query("down.test", RrType::kMx, [](Answer) {});
    io.run();
    io.restart();
  }
  EXPECT_EQ(fake.queries(), 2);
}

}  // namespace
}  // namespace tern::dns
