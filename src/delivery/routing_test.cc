// Tests for choosing where remote mail goes: MX ordering (preference, then
// shuffled among equals), implicit and null MX, MX records naming addresses,
// routes and smarthosts; first the pure functions of routing.h, then the
// whole choice in Outbound with scripted DNS (dns/fake_resolver.h) and mail
// hosts that refuse connections, so each hop tried shows in the report.
#include "delivery/routing.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "delivery/outbound.h"
#include "dns/fake_resolver.h"

namespace tern::delivery {
namespace {

using Strings = std::vector<std::string>;

// Scripted DNS data, copied into a FakeResolver wherever one is made.
struct DnsScript {
  std::vector<std::tuple<std::string, dns::RrType, dns::Answer>> answers;

  void Mx(const std::string& name, std::vector<dns::MxRecord> mx) {
    dns::Answer a;
    a.status = dns::Status::kOk;
    a.ttl = 300;
    a.mx = std::move(mx);
    answers.emplace_back(name, dns::RrType::kMx, std::move(a));
  }
  void Addresses(const std::string& name, dns::RrType type, Strings addrs,
                 std::string canonical = "") {
    dns::Answer a;
    a.status = dns::Status::kOk;
    a.ttl = 300;
    a.addresses = std::move(addrs);
    a.canonical_name = std::move(canonical);
    answers.emplace_back(name, type, std::move(a));
  }
  void A(const std::string& name, Strings addrs, std::string canonical = "") {
    Addresses(name, dns::RrType::kA, std::move(addrs), std::move(canonical));
  }
  void Aaaa(const std::string& name, Strings addrs) {
    Addresses(name, dns::RrType::kAaaa, std::move(addrs));
  }
  void TempFail(const std::string& name, dns::RrType type) {
    dns::Answer a;
    a.status = dns::Status::kTempFail;
    a.error = "SERVFAIL";
    answers.emplace_back(name, type, std::move(a));
  }

  void Fill(dns::FakeResolver& resolver) const {
    for (const auto& [name, type, answer] : answers) {
      resolver.Set(name, type, answer);
    }
  }
  // The answer the fake resolver gives, as outbound would receive it.
  dns::Answer Query(const std::string& name, dns::RrType type) const {
    asio::io_context io;
    dns::FakeResolver resolver(io.get_executor());
    Fill(resolver);
    dns::Answer out;
    resolver.Query(name, type, [&](dns::Answer a) { out = std::move(a); });
    io.run();
    return out;
  }
};

dns::MxRecord Mx(uint16_t preference, std::string exchange) {
  return dns::MxRecord{preference, std::move(exchange)};
}

// ---------------------------------------------------------------------------
// PlanMx and friends.

MxPlan Plan(const dns::Answer& answer, const std::string& domain,
            uint32_t seed = 1) {
  std::mt19937 rng(seed);
  return PlanMx(answer, domain, rng);
}

TEST(PlanMxTest, AscendingPreference) {
  DnsScript dns;
  dns.Mx("example.test", {Mx(30, "c.example.test"), Mx(10, "a.example.test"),
                          Mx(20, "b.example.test"), Mx(65535, "last.test"),
                          Mx(0, "first.test")});
  MxPlan plan =
      Plan(dns.Query("example.test", dns::RrType::kMx), "example.test");
  EXPECT_EQ(plan.kind, MxPlan::Kind::kHosts);
  EXPECT_FALSE(plan.implicit);
  EXPECT_EQ(plan.hosts,
            (Strings{"first.test", "a.example.test", "b.example.test",
                     "c.example.test", "last.test"}));
}

TEST(PlanMxTest, EqualPreferencesAreShuffled) {
  // RFC 5321 5.1: hosts of equal preference are tried in random order, so
  // that load spreads; lower preferences still always come first.
  dns::Answer answer;
  answer.status = dns::Status::kOk;
  answer.mx = {Mx(20, "z.test"), Mx(10, "a.test"), Mx(10, "b.test"),
               Mx(10, "c.test"), Mx(30, "y.test"), Mx(30, "x.test")};
  std::set<Strings> orders;
  std::map<std::string, int> first;
  for (uint32_t seed = 0; seed < 300; ++seed) {
    MxPlan plan = Plan(answer, "example.test", seed);
    ASSERT_EQ(plan.hosts.size(), 6u);
    Strings head(plan.hosts.begin(), plan.hosts.begin() + 3);
    std::sort(head.begin(), head.end());
    ASSERT_EQ(head, (Strings{"a.test", "b.test", "c.test"})) << seed;
    ASSERT_EQ(plan.hosts[3], "z.test") << seed;
    Strings tail(plan.hosts.begin() + 4, plan.hosts.end());
    std::sort(tail.begin(), tail.end());
    ASSERT_EQ(tail, (Strings{"x.test", "y.test"})) << seed;
    orders.insert(plan.hosts);
    ++first[plan.hosts[0]];
  }
  // Every order of the three (3! x 2! = 12 plans) shows up, and each of
  // them leads about a third of the time.
  EXPECT_EQ(orders.size(), 12u);
  for (const char* host : {"a.test", "b.test", "c.test"}) {
    EXPECT_GT(first[host], 60) << host;
  }
}

TEST(PlanMxTest, RepeatedHostsAreTriedOnce) {
  dns::Answer answer;
  answer.status = dns::Status::kOk;
  answer.mx = {Mx(10, "a.test"), Mx(20, "a.test"), Mx(30, "b.test"),
               Mx(40, "a.test")};
  EXPECT_EQ(Plan(answer, "example.test").hosts, (Strings{"a.test", "b.test"}));
}

TEST(PlanMxTest, NoMxRecordsMeansImplicitMx) {
  // RFC 5321 5.1: without MX records the domain is its own mail host.
  DnsScript dns;
  dns.Mx("example.test", {});
  MxPlan plan =
      Plan(dns.Query("example.test", dns::RrType::kMx), "example.test");
  EXPECT_EQ(plan.kind, MxPlan::Kind::kHosts);
  EXPECT_TRUE(plan.implicit);
  EXPECT_EQ(plan.hosts, (Strings{"example.test"}));
}

TEST(PlanMxTest, NullMx) {
  // RFC 7505 3: a lone "0 ." says the domain takes no mail.
  DnsScript dns;
  dns.Mx("example.test", {Mx(0, "")});
  MxPlan plan =
      Plan(dns.Query("example.test", dns::RrType::kMx), "example.test");
  EXPECT_EQ(plan.kind, MxPlan::Kind::kNullMx);
  EXPECT_TRUE(plan.hosts.empty());
  // A "." among real hosts is not a null MX (RFC 7505 3 forbids the mix);
  // the "." is skipped and the others used.
  dns::Answer mixed;
  mixed.status = dns::Status::kOk;
  mixed.mx = {Mx(0, ""), Mx(10, "mx.example.test")};
  plan = Plan(mixed, "example.test");
  EXPECT_EQ(plan.kind, MxPlan::Kind::kHosts);
  EXPECT_EQ(plan.hosts, (Strings{"mx.example.test"}));
}

TEST(PlanMxTest, MxNamingAnAddressIsUnusable) {
  // RFC 5321 5.1: the MX names a host; an address in its place is not one,
  // and if nothing usable is left that is an error, not an implicit MX.
  dns::Answer answer;
  answer.status = dns::Status::kOk;
  answer.mx = {Mx(10, "192.0.2.1"), Mx(20, "2001:db8::1")};
  MxPlan plan = Plan(answer, "example.test");
  EXPECT_EQ(plan.kind, MxPlan::Kind::kUnusable);
  EXPECT_TRUE(plan.hosts.empty());
  EXPECT_EQ(plan.error,
            "the MX records of example.test name no usable host (192.0.2.1, "
            "2001:db8::1)");
  answer.mx = {Mx(10, "192.0.2.1"), Mx(20, "mx.example.test")};
  plan = Plan(answer, "example.test");
  EXPECT_EQ(plan.kind, MxPlan::Kind::kHosts);
  EXPECT_EQ(plan.hosts, (Strings{"mx.example.test"}));
}

TEST(RoutingTest, FindRoute) {
  std::vector<RouteConfig> routes(3);
  routes[0].domain = "*";
  routes[0].relay_host = "smarthost.test";
  routes[1].domain = "partner.test";
  routes[1].relay_host = "gateway.partner.test";
  routes[2].domain = "other.test";
  routes[2].relay_host = "192.0.2.25";
  // The exact domain wins over "*", wherever "*" stands in the list.
  EXPECT_EQ(FindRoute(routes, "partner.test"), &routes[1]);
  EXPECT_EQ(FindRoute(routes, "other.test"), &routes[2]);
  EXPECT_EQ(FindRoute(routes, "remote.test"), &routes[0]);
  // Subdomains are other domains.
  EXPECT_EQ(FindRoute(routes, "sub.partner.test"), &routes[0]);
  EXPECT_EQ(FindRoute(routes, ""), &routes[0]);
  routes.erase(routes.begin());
  EXPECT_EQ(FindRoute(routes, "remote.test"), nullptr);
  EXPECT_EQ(FindRoute(routes, "partner.test"), &routes[0]);
  EXPECT_EQ(FindRoute({}, "remote.test"), nullptr);
}

TEST(RoutingTest, DomainOf) {
  EXPECT_EQ(DomainOf("user@Example.TEST"), "example.test");
  EXPECT_EQ(DomainOf("\"a@b\"@c.test"), "c.test");
  EXPECT_EQ(DomainOf("u@[IPv6:2001:DB8::1]"), "[ipv6:2001:db8::1]");
  EXPECT_EQ(DomainOf("postmaster"), "");
  EXPECT_EQ(DomainOf("user@"), "");
}

TEST(RoutingTest, IsIpLiteral) {
  for (const char* ip : {"192.0.2.1", "2001:db8::1", "::1", "::ffff:1.2.3.4"})
    EXPECT_TRUE(IsIpLiteral(ip)) << ip;
  for (const char* not_ip : {"mx.example.test", "[192.0.2.1]", "", "1.2.3",
                             "01.2.3.4", "fe80::1%eth0", "192.0.2.1 "})
    EXPECT_FALSE(IsIpLiteral(not_ip)) << not_ip;
}

TEST(RoutingTest, ParseHostPort) {
  std::string host;
  uint16_t port = 0;
  auto parse = [&](const std::string& text) {
    host.clear();
    port = 0;
    return ParseHostPort(text, 25, &host, &port);
  };
  ASSERT_TRUE(parse("smtp.provider.test:587"));
  EXPECT_EQ(host, "smtp.provider.test");
  EXPECT_EQ(port, 587);
  ASSERT_TRUE(parse("Relay.Example.TEST"));
  EXPECT_EQ(host, "relay.example.test");
  EXPECT_EQ(port, 25);
  ASSERT_TRUE(parse("[192.0.2.1]:2525"));
  EXPECT_EQ(host, "192.0.2.1");
  EXPECT_EQ(port, 2525);
  ASSERT_TRUE(parse("[2001:DB8::1]:465"));
  EXPECT_EQ(host, "2001:db8::1");
  EXPECT_EQ(port, 465);
  ASSERT_TRUE(parse("[2001:db8::1]"));
  EXPECT_EQ(host, "2001:db8::1");
  EXPECT_EQ(port, 25);
  ASSERT_TRUE(parse("192.0.2.1:65535"));
  EXPECT_EQ(port, 65535);
  for (const char* bad : {"", ":25", "[]:25", "2001:db8::1", "[2001:db8::1",
                          "[::1]x", "[::1]:x", "host:0", "host:65536",
                          "host:123456", "host:+25", "host:2 5", "a:b:c"}) {
    EXPECT_FALSE(parse(bad)) << bad;
  }
}

// ---------------------------------------------------------------------------
// The choice as Outbound makes it.

// A TCP port with a socket bound to it on every IPv4 address but never
// listening: connections to it are refused at once, on 127.0.0.x as well.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof sa;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      ADD_FAILURE() << "cannot reserve a port";
      return;
    }
    port_ = ntohs(sa.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

class OutboundRoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tern-route-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    std::ofstream(dir_ + "/message") << body_;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Sends one message to `rcpts` through an Outbound that asks `dns` and
  // returns the report.
  queue::RemoteReport Deliver(const Strings& rcpts,
                              std::vector<RouteConfig> routes = {}) {
    OutboundOptions options;
    options.hostname = "tern.test";
    options.mx_port = mx_port_.port();
    options.routes = std::move(routes);
    options.connect_timeout = 5;
    options.greeting_timeout = 5;
    DnsScript script = dns;
    options.make_resolver = [script](asio::any_io_executor ex) {
      auto resolver = std::make_unique<dns::FakeResolver>(std::move(ex));
      script.Fill(*resolver);
      return resolver;
    };
    auto outbound = Outbound::Start(std::move(options));
    EXPECT_TRUE(outbound) << outbound.error().message;
    if (!outbound) return {};

    queue::RemoteJob job;
    job.id = "ROUTETEST";
    job.envelope.sender = "sender@example.test";
    job.path = dir_ + "/message";
    job.body_len = body_.size();
    for (size_t i = 0; i < rcpts.size(); ++i) {
      job.envelope.recipients.push_back({rcpts[i], "", ""});
      job.rcpts.push_back({i, {rcpts[i], "", ""}});
    }
    std::promise<queue::RemoteReport> promise;
    std::future<queue::RemoteReport> done = promise.get_future();
    (*outbound)->Send(std::move(job), [&promise](queue::RemoteReport r) {
      promise.set_value(std::move(r));
    });
    if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "no report";
      (*outbound)->Stop();
      return {};
    }
    queue::RemoteReport report = done.get();
    (*outbound)->Stop();
    return report;
  }

  // "host[address]:port" of every attempt, in order.
  static Strings Hops(const queue::RemoteReport& report) {
    Strings hops;
    for (const queue::Attempt& a : report.attempts) hops.push_back(a.host);
    return hops;
  }
  std::string Hop(const std::string& host, const std::string& address) const {
    return host + "[" + address + "]:" + std::to_string(mx_port_.port());
  }
  // The one outcome of a single-recipient report, as "state reply".
  static std::string Outcome(const queue::RemoteReport& report) {
    if (report.rcpts.size() != 1) return "no single outcome";
    const queue::RemoteOutcome& o = report.rcpts[0];
    const char* state = o.state == queue::RecipientState::kDelivered ? "sent"
                        : o.state == queue::RecipientState::kFailed
                            ? "bounced"
                            : "deferred";
    return std::string(state) + " " + o.reply;
  }

  DnsScript dns;
  RefusingPort mx_port_;
  RefusingPort relay_port_;
  std::string dir_;
  const std::string body_ = "Subject: routing\r\n\r\nHello\r\n";
};

TEST_F(OutboundRoutingTest, NullMxBouncesWith556) {
  dns.Mx("nullmx.test", {Mx(0, "")});
  queue::RemoteReport report = Deliver({"user@nullmx.test"});
  EXPECT_EQ(report.id, "ROUTETEST");
  // RFC 7505 3.2 / 4: 556 and RFC 7505's enhanced code 5.1.10, no attempt
  // to connect anywhere.
  EXPECT_EQ(Outcome(report),
            "bounced 556 5.1.10 recipient domain nullmx.test does not accept "
            "mail (null MX)");
  ASSERT_EQ(report.rcpts.size(), 1u);
  EXPECT_EQ(report.rcpts[0].status, "5.1.10");
  EXPECT_EQ(report.rcpts[0].address, "user@nullmx.test");
  EXPECT_EQ(Hops(report), (Strings{"nullmx.test"}));
}

TEST_F(OutboundRoutingTest, MxNamingAnAddressBounces) {
  dns.Mx("ipmx.test", {Mx(10, "192.0.2.1")});
  dns.A("192.0.2.1", {"127.0.0.2"});  // must not be asked
  EXPECT_EQ(Outcome(Deliver({"user@ipmx.test"})),
            "bounced 554 5.4.4 the MX records of ipmx.test name no usable "
            "host (192.0.2.1)");
}

TEST_F(OutboundRoutingTest, MxNamingAnAddressAmongHostsIsSkipped) {
  dns.Mx("mixed.test", {Mx(10, "127.0.0.9"), Mx(20, "mx.mixed.test")});
  dns.A("mx.mixed.test", {"127.0.0.2"});
  queue::RemoteReport report = Deliver({"user@mixed.test"});
  EXPECT_EQ(Hops(report), (Strings{Hop("mx.mixed.test", "127.0.0.2")}));
}

TEST_F(OutboundRoutingTest, DnsFailures) {
  // No such domain: permanent (RFC 5321 5.1 leaves no implicit MX).
  EXPECT_EQ(Outcome(Deliver({"user@nowhere.test"})),
            "bounced 550 5.1.2 domain nowhere.test does not exist (DNS)");
  // SERVFAIL: try again later.
  dns.TempFail("flaky.test", dns::RrType::kMx);
  EXPECT_EQ(Outcome(Deliver({"user@flaky.test"})),
            "deferred 451 4.4.3 DNS lookup of MX for flaky.test failed: "
            "SERVFAIL");
  // MX hosts without addresses.
  dns.Mx("noaddr.test", {Mx(10, "mx1.noaddr.test"), Mx(20, "mx2.noaddr.test")});
  EXPECT_EQ(Outcome(Deliver({"user@noaddr.test"})),
            "bounced 554 5.4.4 the MX hosts of noaddr.test have no address");
  // ... unless a lookup failed for the time being.
  dns.TempFail("mx2.noaddr.test", dns::RrType::kA);
  EXPECT_EQ(Outcome(Deliver({"user@noaddr.test"})),
            "deferred 451 4.4.3 DNS lookup of mx2.noaddr.test failed: "
            "SERVFAIL");
}

TEST_F(OutboundRoutingTest, HostsAreTriedByPreference) {
  dns.Mx("order.test", {Mx(30, "c.order.test"), Mx(10, "a.order.test"),
                        Mx(20, "b.order.test")});
  dns.A("a.order.test", {"127.0.0.2"});
  dns.A("b.order.test", {"127.0.0.3", "127.0.0.4"});
  dns.A("c.order.test", {"127.0.0.5"});
  queue::RemoteReport report = Deliver({"user@order.test"});
  EXPECT_EQ(Hops(report), (Strings{Hop("a.order.test", "127.0.0.2"),
                                   Hop("b.order.test", "127.0.0.3"),
                                   Hop("b.order.test", "127.0.0.4"),
                                   Hop("c.order.test", "127.0.0.5")}));
  // Every host refused: deferred with the last reason (RFC 5321 4.5.4.1).
  EXPECT_EQ(Outcome(report), "deferred 451 4.4.1 connect to " +
                                 Hop("c.order.test", "127.0.0.5") +
                                 " failed: Connection refused");
}

TEST_F(OutboundRoutingTest, Ipv6AddressesFirst) {
  dns.Mx("dual.test", {Mx(10, "mx.dual.test")});
  dns.Aaaa("mx.dual.test", {"::1"});
  dns.A("mx.dual.test", {"127.0.0.2"});
  EXPECT_EQ(
      Hops(Deliver({"user@dual.test"})),
      (Strings{Hop("mx.dual.test", "::1"), Hop("mx.dual.test", "127.0.0.2")}));
}

TEST_F(OutboundRoutingTest, AtMostTenHosts) {
  std::vector<dns::MxRecord> mx;
  Strings expected;
  for (int i = 0; i < 12; ++i) {
    std::string host = "mx" + std::to_string(10 + i) + ".many.test";
    std::string address = "127.0.1." + std::to_string(10 + i);
    mx.push_back(Mx(static_cast<uint16_t>(10 + i), host));
    dns.A(host, {address});
    if (i < 10) expected.push_back(Hop(host, address));
  }
  dns.Mx("many.test", mx);
  EXPECT_EQ(Hops(Deliver({"user@many.test"})), expected);
}

TEST_F(OutboundRoutingTest, ImplicitMx) {
  // RFC 5321 5.1: no MX records (NODATA), so the domain's own addresses.
  dns.Mx("plain.test", {});
  dns.A("plain.test", {"127.0.0.6"});
  EXPECT_EQ(Hops(Deliver({"user@plain.test"})),
            (Strings{Hop("plain.test", "127.0.0.6")}));
  dns.Mx("bare.test", {});
  EXPECT_EQ(Outcome(Deliver({"user@bare.test"})),
            "bounced 554 5.4.4 domain bare.test has no MX and no address");
}

TEST_F(OutboundRoutingTest, MxNamingAnAliasIsFollowed) {
  // RFC 2181 10.3 says an MX must not name a CNAME; mail goes through it
  // anyway, to the addresses the resolver found at the end of the chain,
  // and the hop keeps the name from the MX record (for TLS and logs).
  dns.Mx("cname.test", {Mx(10, "alias.cname.test")});
  dns.A("alias.cname.test", {"127.0.0.7"}, "real.cname.test");
  EXPECT_EQ(Hops(Deliver({"user@cname.test"})),
            (Strings{Hop("alias.cname.test", "127.0.0.7")}));
}

TEST_F(OutboundRoutingTest, AddressLiteralsNeedNoDns) {
  // RFC 5321 4.1.3.
  EXPECT_EQ(Hops(Deliver({"user@[127.0.0.8]"})),
            (Strings{Hop("127.0.0.8", "127.0.0.8")}));
  EXPECT_EQ(Hops(Deliver({"user@[IPv6:::1]"})), (Strings{Hop("::1", "::1")}));
  EXPECT_EQ(Outcome(Deliver({"user@[300.0.0.1]"})),
            "bounced 550 5.1.2 bad address literal [300.0.0.1]");
}

TEST_F(OutboundRoutingTest, RoutesGoToTheirRelay) {
  std::vector<RouteConfig> routes(2);
  routes[0].domain = "*";
  routes[0].relay_host = "smarthost.test";
  routes[0].relay_port = relay_port_.port();
  routes[1].domain = "partner.test";
  routes[1].relay_host = "127.0.0.9";  // no DNS for an address
  routes[1].relay_port = relay_port_.port();
  dns.A("smarthost.test", {"127.0.0.10"});
  // The recipient domain's own DNS does not matter any more.
  dns.Mx("nullmx.test", {Mx(0, "")});
  std::string relay = ":" + std::to_string(relay_port_.port());
  queue::RemoteReport report = Deliver({"user@nullmx.test"}, routes);
  EXPECT_EQ(Hops(report), (Strings{"smarthost.test[127.0.0.10]" + relay}));
  EXPECT_EQ(Outcome(report),
            "deferred 451 4.4.1 connect to "
            "smarthost.test[127.0.0.10]" +
                relay + " failed: Connection refused");
  EXPECT_EQ(Hops(Deliver({"user@partner.test"}, routes)),
            (Strings{"127.0.0.9[127.0.0.9]" + relay}));
  // Two domains for one relay: one destination, one attempt.
  report = Deliver({"a@one.test", "b@two.test"}, routes);
  EXPECT_EQ(Hops(report), (Strings{"smarthost.test[127.0.0.10]" + relay}));
  EXPECT_EQ(report.rcpts.size(), 2u);
}

TEST_F(OutboundRoutingTest, UnresolvableRelayDefers) {
  // Our configuration's problem, not the sender's: retry, never bounce.
  std::vector<RouteConfig> routes(1);
  routes[0].domain = "*";
  routes[0].relay_host = "missing.test";
  routes[0].relay_port = relay_port_.port();
  EXPECT_EQ(Outcome(Deliver({"user@remote.test"}, routes)),
            "deferred 451 4.4.3 relay host missing.test has no address");
  dns.TempFail("missing.test", dns::RrType::kA);
  EXPECT_EQ(Outcome(Deliver({"user@remote.test"}, routes)),
            "deferred 451 4.4.3 DNS lookup of missing.test failed: SERVFAIL");
}

}  // namespace
}  // namespace tern::delivery
