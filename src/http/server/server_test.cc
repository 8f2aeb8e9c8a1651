// Unit tests for the web listeners' routes and documents: which domain a
// request is for, admin access, ACME HTTP-01, redirects, and the XML and
// plist documents' escaping.
#include "http/server/server.h"

#include <gtest/gtest.h>

#include "common/metrics.h"
#include "config/config.h"

namespace tern::http {
namespace {

Settings TestSettings() {
  auto cfg = config::Parse(R"(
hostname = "mx.example.test"
domains = ["example.test", "Other.Test"]
trusted_networks = ["192.0.2.0/24"]
[[listen]]
address = "127.0.0.1:25"
service = "smtp"
[[listen]]
address = "127.0.0.1:993"
service = "imaps"
[[listen]]
address = "127.0.0.1:587"
service = "submission"
[[listen]]
address = "127.0.0.1:443"
service = "https"
[tls]
self_signed = true
)",
                           "test.toml");
  EXPECT_TRUE(cfg) << cfg.error().message;
  return SettingsFrom(*cfg);
}

Request Get(std::string host, std::string path, std::string query = "") {
  Request r;
  r.method = "GET";
  r.host = std::move(host);
  r.path = std::move(path);
  r.query = std::move(query);
  return r;
}

TEST(HttpRoute, EndpointsComeFromTheListeners) {
  Settings s = TestSettings();
  EXPECT_EQ(s.endpoints.imaps, 993);
  EXPECT_EQ(s.endpoints.submission, 587);
  EXPECT_EQ(s.endpoints.imap, 0);
  EXPECT_EQ(s.endpoints.submissions, 0);
  EXPECT_EQ(s.domains, (std::vector<std::string>{"example.test", "other.test"}));
}

TEST(HttpRoute, AutoconfigPicksTheDomain) {
  Settings s = TestSettings();
  RouteContext ctx;
  ctx.site = Site::kHttps;
  Response r = Route(s, Get("autoconfig.other.test", "/mail/config-v1.1.xml"), ctx);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("<domain>other.test</domain>"), std::string::npos);
  // Only the offered services, STARTTLS submission on 587.
  EXPECT_NE(r.body.find("<port>587</port>"), std::string::npos);
  EXPECT_EQ(r.body.find("pop3"), std::string::npos);
  r = Route(s, Get("mx.example.test", "/mail/config-v1.1.xml",
                   "emailaddress=a%40other.test"), ctx);
  EXPECT_NE(r.body.find("<domain>other.test</domain>"), std::string::npos);
  // The server's own name answers for the first domain.
  r = Route(s, Get("mx.example.test", "/.well-known/autoconfig/mail/config-v1.1.xml"), ctx);
  EXPECT_NE(r.body.find("<domain>example.test</domain>"), std::string::npos);
  EXPECT_EQ(Route(s, Get("elsewhere.test", "/mail/config-v1.1.xml"), ctx).status, 404);
}

TEST(HttpRoute, AdminOnlyForLoopbackAndTrustedNetworks) {
  Settings s = TestSettings();
  RouteContext ctx;
  ctx.site = Site::kAdmin;
  for (const char* ip : {"127.0.0.1", "127.8.9.10", "::1", "192.0.2.77"}) {
    ctx.client_ip = ip;
    EXPECT_EQ(Route(s, Get("x", "/health"), ctx).status, 200) << ip;
  }
  for (const char* ip : {"198.51.100.1", "::2", "2001:db8::1", "bogus"}) {
    ctx.client_ip = ip;
    EXPECT_EQ(Route(s, Get("x", "/metrics"), ctx).status, 403) << ip;
  }
  ctx.client_ip = "127.0.0.1";
  ctx.healthy = [](std::string* why) {
    *why = "disk full";
    return false;
  };
  Response r = Route(s, Get("x", "/health"), ctx);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "unhealthy: disk full\n");
  r = Route(s, Get("x", "/metrics"), ctx);
  EXPECT_NE(r.body.find("# TYPE tern_connections_total counter"), std::string::npos);
}

TEST(HttpRoute, AcmeHttp01OnlyOnPort80) {
  Settings s = TestSettings();
  RouteContext ctx;
  ctx.site = Site::kHttp;
  ctx.acme_http01 = [](const std::string& token) -> std::optional<std::string> {
    if (token == "tok") return "tok.thumb";
    return std::nullopt;
  };
  Response r = Route(s, Get("mx.example.test", "/.well-known/acme-challenge/tok"), ctx);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "tok.thumb");
  EXPECT_EQ(Route(s, Get("mx.example.test", "/.well-known/acme-challenge/no"), ctx).status,
            404);
  ctx.site = Site::kHttps;
  EXPECT_EQ(Route(s, Get("mx.example.test", "/.well-known/acme-challenge/tok"), ctx).status,
            404);
}

TEST(HttpRoute, MtaStsOnlyOnThePolicyHost) {
  Settings s = TestSettings();
  RouteContext ctx;
  Response r = Route(s, Get("mta-sts.other.test", "/.well-known/mta-sts.txt"), ctx);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "version: STSv1\r\nmode: testing\r\nmx: mx.example.test\r\n"
                    "max_age: 604800\r\n");
  EXPECT_EQ(Route(s, Get("other.test", "/.well-known/mta-sts.txt"), ctx).status, 404);
  EXPECT_EQ(Route(s, Get("mta-sts.evil.test", "/.well-known/mta-sts.txt"), ctx).status, 404);
}

TEST(HttpDocuments, EscapingAndAutodiscoverParsing) {
  EXPECT_EQ(XmlEscape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
  EXPECT_EQ(AutodiscoverRequestEmail("<Request><EMailAddress> a&amp;b@x.test </EMailAddress>"),
            "a&b@x.test");
  EXPECT_EQ(AutodiscoverRequestEmail("<a:EMailAddress>a&#64;&#x62;.test</a:EMailAddress>"),
            "a@b.test");
  EXPECT_EQ(AutodiscoverRequestEmail("<EMailAddressX>no</EMailAddressX>"), std::nullopt);
  EXPECT_EQ(AutodiscoverRequestEmail("<EMailAddress>"), std::nullopt);
  MailEndpoints m;
  m.domain = "example.test";
  m.hostname = "mx.example.test";
  m.imaps = 993;
  m.submissions = 465;
  std::string x = AutodiscoverXml(m, "o'neil@example.test");
  EXPECT_NE(x.find("<LoginName>o&apos;neil@example.test</LoginName>"), std::string::npos);
  std::string p = MobileConfig(m, "o'neil@example.test");
  EXPECT_NE(p.find("<string>o&apos;neil@example.test</string>"), std::string::npos);
  EXPECT_NE(p.find("<string>test.example.tern."), std::string::npos);
}

}  // namespace
}  // namespace tern::http
