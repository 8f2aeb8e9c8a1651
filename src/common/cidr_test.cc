// Tests for the CIDR parser and matcher: accepted forms and their canonical
// text, every refusal with its reason, the IPv4-mapped form, zone ids, and
// generated networks (parse of ToString is the identity, the network holds
// exactly the addresses that share its prefix).
#include "common/cidr.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <string>

namespace tern {
namespace {

// The reason `text` is refused, or "accepted as ..." when it is not.
std::string ReasonOf(std::string_view text) {
  Result<Cidr> net = ParseCidr(text);
  return net ? "accepted as " + net->ToString() : net.error().message;
}

// The canonical form of an accepted network, or "refused: ...".
std::string Canonical(std::string_view text) {
  Result<Cidr> net = ParseCidr(text);
  return net ? net->ToString() : "refused: " + net.error().message;
}

bool In(std::string_view network, std::string_view client) {
  Result<Cidr> net = ParseCidr(network);
  EXPECT_TRUE(net) << network << ": " << net.error().message;
  std::optional<IpOctets> address = ParseClientAddress(client);
  return net && address && net->Contains(*address);
}

TEST(CidrTest, ParsesIpv4) {
  Result<Cidr> net = ParseCidr("10.0.0.0/8");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_TRUE(net->ipv4);
  EXPECT_EQ(net->prefix, 104);
  EXPECT_EQ(net->WrittenPrefix(), 8);
  EXPECT_EQ(net->network,
            (IpOctets{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0}));
  EXPECT_EQ(net->ToString(), "10.0.0.0/8");
  EXPECT_EQ(Canonical("192.0.2.0/24"), "192.0.2.0/24");
  EXPECT_EQ(Canonical("10.1.2.0/23"), "10.1.2.0/23");
  EXPECT_EQ(Canonical("255.255.255.255"), "255.255.255.255/32");
}

TEST(CidrTest, ParsesIpv6) {
  Result<Cidr> net = ParseCidr("2001:db8::/32");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_FALSE(net->ipv4);
  EXPECT_EQ(net->prefix, 32);
  EXPECT_EQ(net->WrittenPrefix(), 32);
  // RFC 5952 4: lower case, leading zeros dropped, longest zero run "::".
  EXPECT_EQ(Canonical("2001:DB8::/32"), "2001:db8::/32");
  EXPECT_EQ(Canonical("2001:0db8:0000:0000::/64"), "2001:db8::/64");
  EXPECT_EQ(Canonical("::1/128"), "::1/128");
  EXPECT_EQ(Canonical("fe80::/10"), "fe80::/10");
}

TEST(CidrTest, BareAddressIsOneHost) {
  EXPECT_EQ(Canonical("127.0.0.1"), "127.0.0.1/32");
  EXPECT_EQ(Canonical("::1"), "::1/128");
  EXPECT_EQ(Canonical("2001:db8::7"), "2001:db8::7/128");
  EXPECT_EQ(*ParseCidr("192.0.2.7"), *ParseCidr("192.0.2.7/32"));
  EXPECT_TRUE(In("192.0.2.7", "192.0.2.7"));
  EXPECT_FALSE(In("192.0.2.7", "192.0.2.8"));
  EXPECT_TRUE(In("::1", "::1"));
  EXPECT_FALSE(In("::1", "::2"));
}

TEST(CidrTest, PrefixBounds) {
  EXPECT_EQ(Canonical("0.0.0.0/0"), "0.0.0.0/0");
  EXPECT_EQ(Canonical("::/0"), "::/0");
  EXPECT_EQ(Canonical("192.0.2.1/32"), "192.0.2.1/32");
  EXPECT_EQ(Canonical("2001:db8::1/128"), "2001:db8::1/128");
  EXPECT_EQ(ReasonOf("10.0.0.0/33"),
            "prefix length 33 is out of range for IPv4 (0-32)");
  EXPECT_EQ(ReasonOf("::/129"),
            "prefix length 129 is out of range for IPv6 (0-128)");
  EXPECT_EQ(ReasonOf("10.0.0.0/1000"),
            "prefix length 1000 is out of range for IPv4 (0-32)");
  EXPECT_EQ(ReasonOf("::/99999999999999999999"),
            "prefix length 99999999999999999999 is out of range for IPv6 "
            "(0-128)");
  // A decimal prefix length has no octal reading: "08" is 8.
  EXPECT_EQ(Canonical("10.0.0.0/08"), "10.0.0.0/8");
  EXPECT_EQ(Canonical("::/000"), "::/0");
}

TEST(CidrTest, HostBitsAreRefusedWithTheNetwork) {
  EXPECT_EQ(ReasonOf("10.0.0.1/8"), "host bits set: did you mean 10.0.0.0/8?");
  EXPECT_EQ(ReasonOf("10.1.0.0/15"),
            "host bits set: did you mean 10.0.0.0/15?");
  EXPECT_EQ(ReasonOf("192.0.2.255/25"),
            "host bits set: did you mean 192.0.2.128/25?");
  EXPECT_EQ(ReasonOf("0.0.0.1/0"), "host bits set: did you mean 0.0.0.0/0?");
  EXPECT_EQ(ReasonOf("2001:db8::1/32"),
            "host bits set: did you mean 2001:db8::/32?");
  EXPECT_EQ(ReasonOf("fe80::1/10"), "host bits set: did you mean fe80::/10?");
  EXPECT_EQ(ReasonOf("::1/0"), "host bits set: did you mean ::/0?");
}

TEST(CidrTest, MalformedIpv4) {
  EXPECT_EQ(ReasonOf("10.0.0/8"),
            "an IPv4 address has four numbers separated by dots, not 3");
  EXPECT_EQ(ReasonOf("10.0.0.0.0"),
            "an IPv4 address has four numbers separated by dots, not 5");
  EXPECT_EQ(ReasonOf("10"),
            "an IPv4 address has four numbers separated by dots, not 1");
  EXPECT_EQ(ReasonOf("10.0.0."), "empty number in IPv4 address");
  EXPECT_EQ(ReasonOf(".10.0.0"), "empty number in IPv4 address");
  EXPECT_EQ(ReasonOf("10..0.0"), "empty number in IPv4 address");
  EXPECT_EQ(ReasonOf("256.0.0.0/8"),
            "IPv4 address number 256 is out of range (0-255)");
  EXPECT_EQ(ReasonOf("1.2.3.4000"),
            "IPv4 address number 4000 is out of range (0-255)");
  EXPECT_EQ(ReasonOf("1.2.3.99999999999999999999"),
            "IPv4 address number 99999999999999999999 is out of range "
            "(0-255)");
  EXPECT_EQ(ReasonOf("-1.0.0.0"),
            "not an IP address (host names are not allowed)");
  EXPECT_EQ(ReasonOf("0x7f.0.0.1"),
            "not an IP address (host names are not allowed)");
}

TEST(CidrTest, LeadingZerosInIpv4AreRefused) {
  // 010 is 8 to inet_aton and 10 to inet_pton: neither guess is safe.
  EXPECT_EQ(ReasonOf("010.0.0.0/8"),
            "IPv4 address number 010 has a leading zero (octal to some "
            "programs)");
  EXPECT_EQ(ReasonOf("10.0.0.01"),
            "IPv4 address number 01 has a leading zero (octal to some "
            "programs)");
  EXPECT_EQ(ReasonOf("10.00.0.0/16"),
            "IPv4 address number 00 has a leading zero (octal to some "
            "programs)");
  // A lone zero is no leading zero; IPv6 groups may carry them (RFC 4291
  // 2.2) up to four hex digits.
  EXPECT_EQ(Canonical("0.0.0.0/8"), "0.0.0.0/8");
  EXPECT_EQ(Canonical("2001:0db8::/32"), "2001:db8::/32");
  EXPECT_EQ(ReasonOf("2001:00db8::/32"), "not an IPv6 address");
}

TEST(CidrTest, MalformedIpv6) {
  EXPECT_EQ(ReasonOf("2001:db8::g/32"), "not an IPv6 address");
  EXPECT_EQ(ReasonOf("1::2::3"), "not an IPv6 address");
  EXPECT_EQ(ReasonOf("1:2:3:4:5:6:7:8:9"), "not an IPv6 address");
  EXPECT_EQ(ReasonOf(":"), "not an IPv6 address");
  EXPECT_EQ(ReasonOf("[::1]/128"), "not an IPv6 address");
  EXPECT_EQ(ReasonOf("::ffff:010.0.0.1"), "not an IPv6 address");
}

TEST(CidrTest, MalformedPrefixAndShape) {
  EXPECT_EQ(ReasonOf(""),
            "empty (expected a network such as 192.0.2.0/24 or "
            "2001:db8::/32)");
  EXPECT_EQ(ReasonOf("/8"), "missing address before \"/\"");
  EXPECT_EQ(ReasonOf("10.0.0.0/"), "missing prefix length after \"/\"");
  EXPECT_EQ(ReasonOf("10.0.0.0/a"),
            "prefix length \"a\" is not a decimal number");
  EXPECT_EQ(ReasonOf("10.0.0.0/+8"),
            "prefix length \"+8\" is not a decimal number");
  EXPECT_EQ(ReasonOf("10.0.0.0/-1"),
            "prefix length \"-1\" is not a decimal number");
  EXPECT_EQ(ReasonOf("10.0.0.0/8/8"),
            "prefix length \"8/8\" is not a decimal number");
  EXPECT_EQ(ReasonOf("x"), "not an IP address (host names are not allowed)");
  EXPECT_EQ(ReasonOf("localhost/8"),
            "not an IP address (host names are not allowed)");
  EXPECT_EQ(ReasonOf("10.0.0.0\xff/8"),
            "not an IP address (host names are not allowed)");
  EXPECT_EQ(ReasonOf(std::string_view("10.0.0.0\0/8", 11)),
            "not an IP address (host names are not allowed)");
}

TEST(CidrTest, WhiteSpaceIsRefused) {
  for (const char* text :
       {" 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0.0 /8", "10.0.0.0/ 8",
        "10.0.0.0/8\n", "\t::1", "::1 /128", " "}) {
    EXPECT_EQ(ReasonOf(text), "contains white space") << "[" << text << "]";
  }
}

TEST(CidrTest, ZoneIdsAreRefusedInNetworks) {
  EXPECT_EQ(ReasonOf("fe80::1%eth0"),
            "IPv6 zone id \"%eth0\" is not allowed here (a zone names an "
            "interface of this machine, not a network)");
  EXPECT_EQ(ReasonOf("fe80::%2/64"),
            "IPv6 zone id \"%2\" is not allowed here (a zone names an "
            "interface of this machine, not a network)");
  EXPECT_EQ(ReasonOf("10.0.0.1%eth0"),
            "not an IP address (host names are not allowed)");
}

TEST(CidrTest, Ipv4MappedIpv6) {
  // Written as IPv6, the prefix counts all 128 bits.
  Result<Cidr> net = ParseCidr("::ffff:10.0.0.0/104");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_FALSE(net->ipv4);
  EXPECT_EQ(net->ToString(), "::ffff:10.0.0.0/104");
  EXPECT_EQ(net->network, ParseCidr("10.0.0.0/8")->network);
  EXPECT_EQ(net->prefix, ParseCidr("10.0.0.0/8")->prefix);
  EXPECT_TRUE(In("::ffff:10.0.0.0/104", "10.9.8.7"));
  EXPECT_TRUE(In("::ffff:10.0.0.0/104", "::ffff:10.9.8.7"));
  EXPECT_FALSE(In("::ffff:10.0.0.0/104", "11.0.0.1"));
  EXPECT_EQ(ReasonOf("::ffff:10.0.0.0/8"), "host bits set: did you mean ::/8?");
  // IPv4 networks hold the mapped form of their clients.
  EXPECT_TRUE(In("127.0.0.0/8", "::ffff:127.0.0.1"));
  EXPECT_TRUE(In("127.0.0.0/8", "::FFFF:127.0.0.1"));
  EXPECT_TRUE(In("0.0.0.0/0", "::ffff:192.0.2.1"));
  EXPECT_FALSE(In("0.0.0.0/0", "::1"));
  EXPECT_FALSE(In("0.0.0.0/0", "2001:db8::1"));
  // And an IPv6 network covering ::ffff:0:0/96 covers IPv4 (as before).
  EXPECT_TRUE(In("::ffff:0:0/96", "192.0.2.1"));
  EXPECT_TRUE(In("::/0", "192.0.2.1"));
  EXPECT_FALSE(In("2001:db8::/32", "192.0.2.1"));
  EXPECT_FALSE(In("::1/128", "127.0.0.1"));
}

TEST(CidrTest, Matches) {
  EXPECT_TRUE(In("10.0.0.0/8", "10.255.255.255"));
  EXPECT_FALSE(In("10.0.0.0/8", "11.0.0.0"));
  EXPECT_FALSE(In("10.0.0.0/8", "9.255.255.255"));
  EXPECT_TRUE(In("10.0.0.0/15", "10.1.200.1"));
  EXPECT_FALSE(In("10.0.0.0/15", "10.2.0.1"));
  EXPECT_TRUE(In("192.0.2.128/25", "192.0.2.200"));
  EXPECT_FALSE(In("192.0.2.128/25", "192.0.2.127"));
  EXPECT_TRUE(In("0.0.0.0/0", "203.0.113.9"));
  EXPECT_TRUE(In("2001:db8::/32", "2001:db8:ffff::1"));
  EXPECT_FALSE(In("2001:db8::/32", "2001:db9::1"));
  EXPECT_TRUE(In("2001:db8::/33", "2001:db8:7fff::1"));
  EXPECT_FALSE(In("2001:db8::/33", "2001:db8:8000::1"));
  EXPECT_TRUE(In("::/0", "2001:db8::1"));
}

TEST(CidrTest, ClientAddresses) {
  EXPECT_TRUE(ParseClientAddress("192.0.2.1"));
  EXPECT_TRUE(ParseClientAddress("::1"));
  EXPECT_EQ(ParseClientAddress("::ffff:192.0.2.1"),
            ParseClientAddress("192.0.2.1"));
  // A link-local peer's zone says where it came in; the address matches.
  EXPECT_EQ(ParseClientAddress("fe80::1%eth0"), ParseClientAddress("fe80::1"));
  EXPECT_TRUE(In("fe80::/10", "fe80::1%eth0"));
  EXPECT_TRUE(In("fe80::/10", "fe80::1%2"));
  EXPECT_FALSE(ParseClientAddress(""));
  EXPECT_FALSE(ParseClientAddress("unknown"));
  EXPECT_FALSE(ParseClientAddress("192.0.2.1%eth0"));
  EXPECT_FALSE(ParseClientAddress("192.0.2.1:25"));
  EXPECT_FALSE(ParseClientAddress("[::1]"));
  EXPECT_FALSE(ParseClientAddress(" 192.0.2.1"));
  EXPECT_FALSE(ParseClientAddress("010.0.0.1"));
  EXPECT_FALSE(ParseClientAddress("10.0.0.0/8"));
  EXPECT_FALSE(In("0.0.0.0/0", "not-an-ip"));
}

TEST(CidrTest, ParseIpAddress) {
  EXPECT_EQ(ParseIpAddress("192.0.2.1").value(),
            (IpOctets{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}));
  EXPECT_EQ(ParseIpAddress("::1").value(),
            (IpOctets{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(ParseIpAddress("").error().message, "missing address");
  EXPECT_EQ(ParseIpAddress("10.0.0.0/8").error().message,
            "not an IP address (host names are not allowed)");
}

// Generated networks: the canonical text parses back to the same network,
// which contains its own address and the addresses that agree with it up
// to the prefix, and no address that differs within the prefix.
RC_GTEST_PROP(CidrProperties, CanonicalTextRoundTripsAndMatches, ()) {
  const bool ipv4 = *rc::gen::arbitrary<bool>();
  IpOctets address{};
  for (auto& octet : address) octet = *rc::gen::arbitrary<uint8_t>();
  if (ipv4) {
    for (int i = 0; i < 10; ++i) address[i] = 0;
    address[10] = address[11] = 0xff;
  }
  const int written = *rc::gen::inRange(0, ipv4 ? 33 : 129);
  const int prefix = ipv4 ? written + 96 : written;
  IpOctets network = address;
  for (int bit = prefix; bit < 128; ++bit) {
    network[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  Cidr net{network, prefix, ipv4};
  Result<Cidr> back = ParseCidr(net.ToString());
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == net);
  RC_ASSERT(back->Contains(address));
  RC_ASSERT(back->Contains(network));
  if (prefix > (ipv4 ? 96 : 0)) {
    // Flip one bit inside the prefix (within the IPv4 part for IPv4).
    const int bit = *rc::gen::inRange(ipv4 ? 96 : 0, prefix);
    IpOctets other = address;
    other[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
    RC_ASSERT(!back->Contains(other));
  }
  if (prefix < 128) {
    // Setting a host bit in the network text is refused, naming `net`.
    const int bit = *rc::gen::inRange(prefix, 128);
    IpOctets host = network;
    host[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    Cidr bad{host, prefix, ipv4};
    Result<Cidr> refused = ParseCidr(bad.ToString());
    RC_ASSERT(!refused.has_value());
    RC_ASSERT(refused.error().message ==
              "host bits set: did you mean " + net.ToString() + "?");
  }
}

}  // namespace
}  // namespace tern
