// Tests for the TOML configuration loader: a complete file parses into the
// expected values, and each kind of mistake is reported with file, line,
// column and key.
#include "config/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

namespace tern::config {
namespace {

constexpr const char* kFull = R"(hostname = "mx.example.test"
data_dir = "var"
user = "tern"
domains = ["Example.TEST", "other.test"]
trusted_networks = ["192.0.2.0/24", "2001:DB8::/32", "127.0.0.1"]
threads = 0
delivery_threads = 3
shutdown_grace = 15
[log]
level = "debug"
[[listen]]
address = "127.0.0.1:2525"
service = "smtp"
[[listen]]
address = "[::1]:2526"
service = "smtp"
[smtp]
max_message_size = 1000000
max_recipients = 50
max_connections = 200
max_connections_per_ip = 5
max_errors = 3
command_line_limit = 1024
text_line_limit = 2000
max_received_headers = 30
command_timeout = 60
data_block_timeout = 70
final_timeout = 80
vrfy = true
expn = true
)";

// The smallest valid file; tests append or replace lines to break it.
constexpr const char* kMinimal = R"(hostname = "mx.example.test"
domains = ["example.test"]
[[listen]]
address = "127.0.0.1:2525"
service = "smtp"
)";

// Parses `text` and returns the error message ("" when it parsed).
std::string ErrorOf(const std::string& text) {
  auto result = Parse(text, "t.toml");
  return result ? std::string() : result.error().message;
}

TEST(ConfigTest, FullFileParses) {
  auto cfg = Parse(kFull, "full.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->path, "full.toml");
  EXPECT_EQ(cfg->hostname, "mx.example.test");
  EXPECT_EQ(cfg->data_dir, "var");
  EXPECT_EQ(cfg->user, "tern");
  EXPECT_EQ(cfg->domains,
            (std::vector<std::string>{"example.test", "other.test"}));
  EXPECT_EQ(cfg->trusted_networks,
            (std::vector<std::string>{"192.0.2.0/24", "2001:db8::/32",
                                      "127.0.0.1/32"}));
  EXPECT_EQ(cfg->threads, 0u);
  EXPECT_EQ(cfg->delivery_threads, 3u);
  EXPECT_EQ(cfg->shutdown_grace, 15u);
  EXPECT_EQ(cfg->log_level, "debug");
  ASSERT_EQ(cfg->listeners.size(), 2u);
  EXPECT_EQ(cfg->listeners[0].address, "127.0.0.1:2525");
  EXPECT_EQ(cfg->listeners[0].host, "127.0.0.1");
  EXPECT_EQ(cfg->listeners[0].port, 2525);
  EXPECT_EQ(cfg->listeners[0].service, "smtp");
  EXPECT_EQ(cfg->listeners[1].host, "::1");
  EXPECT_EQ(cfg->listeners[1].port, 2526);
  EXPECT_EQ(cfg->smtp.max_message_size, 1000000u);
  EXPECT_EQ(cfg->smtp.max_recipients, 50u);
  EXPECT_EQ(cfg->smtp.max_connections, 200u);
  EXPECT_EQ(cfg->smtp.max_connections_per_ip, 5u);
  EXPECT_EQ(cfg->smtp.max_errors, 3u);
  EXPECT_EQ(cfg->smtp.command_line_limit, 1024u);
  EXPECT_EQ(cfg->smtp.text_line_limit, 2000u);
  EXPECT_EQ(cfg->smtp.max_received_headers, 30u);
  EXPECT_EQ(cfg->smtp.command_timeout, 60u);
  EXPECT_EQ(cfg->smtp.data_block_timeout, 70u);
  EXPECT_EQ(cfg->smtp.final_timeout, 80u);
  EXPECT_TRUE(cfg->smtp.vrfy);
  EXPECT_TRUE(cfg->smtp.expn);
}

TEST(ConfigTest, MinimalFileKeepsDefaults) {
  auto cfg = Parse(kMinimal, "min.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  Config defaults;
  EXPECT_EQ(cfg->data_dir, defaults.data_dir);
  EXPECT_EQ(cfg->user, "");
  EXPECT_EQ(cfg->threads, defaults.threads);
  EXPECT_EQ(cfg->log_level, "info");
  EXPECT_EQ(cfg->smtp.max_message_size, defaults.smtp.max_message_size);
  EXPECT_FALSE(cfg->smtp.vrfy);
}

TEST(ConfigTest, ShippedFilesParse) {
  // etc/ sits two levels above this source file.
  auto etc =
      std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "etc";
  for (const char* name : {"tern.dev.toml", "tern.example.toml"}) {
    auto path = etc / name;
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
    auto cfg = Load(path.string());
    ASSERT_TRUE(cfg) << cfg.error().message;
    // Every shipped config offers SMTP, submission and implicit TLS, and
    // none allows passwords without TLS.
    for (const char* service : {"smtp", "submission", "submissions"}) {
      EXPECT_TRUE(std::any_of(cfg->listeners.begin(), cfg->listeners.end(),
                              [&](const Listener& l) { return l.service == service; }))
          << name << " " << service;
    }
    for (const Listener& l : cfg->listeners) {
      EXPECT_FALSE(l.allow_plaintext_auth) << name << " " << l.address;
    }
  }
}

TEST(ConfigTest, MissingRequiredKeyPointsAtTable) {
  std::string text = kMinimal;
  text.erase(0, text.find('\n') + 1);  // drop the hostname line
  EXPECT_EQ(ErrorOf(text), "t.toml:1:1: hostname: missing (required)");

  std::string listen_without_service =
      "hostname = \"h.test\"\ndomains = [\"d.test\"]\n\n[[listen]]\n"
      "address = \"127.0.0.1:25\"\n";
  EXPECT_EQ(ErrorOf(listen_without_service),
            "t.toml:4:1: listen[0].service: missing (required)");

  EXPECT_EQ(ErrorOf("hostname = \"h.test\"\ndomains = [\"d.test\"]\n"),
            "t.toml:1:1: listen: missing (at least one [[listen]] table is "
            "required)");
}

TEST(ConfigTest, OnlyAsciiIsAccepted) {
  const std::string err =
      ": only ASCII is supported here; write other characters as \\uXXXX "
      "escapes inside a \"string\"";
  // Inputs that made toml++ 3.3.0 reach __builtin_unreachable() (kept in
  // fuzz/regressions/config/): refused with a position before parsing.
  EXPECT_EQ(ErrorOf("a = 1 \xC2\xA7\n"), "t.toml:1:7" + err);
  EXPECT_EQ(ErrorOf("1\t\xEF\xBB\xBF\t"), "t.toml:1:3" + err);
  EXPECT_EQ(ErrorOf("a = 4x\"::\xC6\xBD\"\n"), "t.toml:1:10" + err);
  EXPECT_EQ(ErrorOf("a = \"\"\"x \\\n  \xC3\xA9\"\"\"\n"), "t.toml:2:3" + err);
  // Strings and comments too: toml++ cannot be trusted to tell them apart.
  EXPECT_EQ(ErrorOf("# caf\xC3\xA9\n"), "t.toml:1:6" + err);
  EXPECT_EQ(ErrorOf("a = \"\xC3\xA9\"\n"), "t.toml:1:6" + err);
  // A leading byte order mark is fine, and escapes carry other characters.
  const std::string ok =
      "\xEF\xBB\xBFhostname = \"mx.example.test\"\n"
      "domains = [\"example.test\"]\n"
      "[[listen]]\naddress = \"127.0.0.1:2525\"\nservice = \"smtp\"\n";
  auto cfg = Parse(ok, "t.toml");
  EXPECT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(ErrorOf(ok + "[pop3]\n\"k\\u00E9\" = \"\\u00E9\"\n"),
            "t.toml:7:1: pop3.k\xC3\xA9: unknown key");
}

TEST(ConfigTest, UnknownKeysAreRejected) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "hostnme = \"x\"\n"),
            "t.toml:6:1: listen[0].hostnme: unknown key");
  EXPECT_EQ(ErrorOf(std::string("hostnam = \"x\"\n") + kMinimal),
            "t.toml:1:1: hostnam: unknown key");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[smtp]\nmax_recipient = 5\n"),
            "t.toml:7:1: smtp.max_recipient: unknown key");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[log]\nlevl = \"info\"\n"),
            "t.toml:7:1: log.levl: unknown key");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[imap4]\n"),
            "t.toml:6:2: imap4: unknown key");
}

TEST(ConfigTest, WrongTypes) {
  EXPECT_EQ(ErrorOf(std::string("threads = \"4\"\n") + kMinimal),
            "t.toml:1:11: threads: expected an integer");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[smtp]\nvrfy = 1\n"),
            "t.toml:7:8: smtp.vrfy: expected true or false");
  EXPECT_EQ(ErrorOf(std::string("trusted_networks = [1]\n") + kMinimal),
            "t.toml:1:21: trusted_networks[0]: expected a string");
  EXPECT_EQ(ErrorOf(std::string("smtp = 3\n") + kMinimal),
            "t.toml:1:8: smtp: expected a table ([smtp])");
}

TEST(ConfigTest, NumbersMustBePositive) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[smtp]\nmax_recipients = 0\n"),
            "t.toml:7:18: smtp.max_recipients: must be positive, got 0");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[smtp]\nmax_errors = -3\n"),
            "t.toml:7:14: smtp.max_errors: must be positive, got -3");
  EXPECT_NE(
      ErrorOf(std::string(kMinimal) + "[smtp]\ncommand_timeout = 5000000000\n"),
      "");
  EXPECT_EQ(ErrorOf(std::string("delivery_threads = 0\n") + kMinimal),
            "t.toml:1:20: delivery_threads: must be positive, got 0");
}

TEST(ConfigTest, HostnameAndDomains) {
  EXPECT_EQ(
      ErrorOf("hostname = \"\"\n" + std::string(kMinimal).substr(
                                        std::string(kMinimal).find('\n') + 1)),
      "t.toml:1:12: hostname: must not be empty");
  std::string text = kMinimal;
  text.replace(text.find("[\"example.test\"]"), 16,
               "[\"ok.test\", \"bad domain\"]");
  EXPECT_EQ(
      ErrorOf(text),
      "t.toml:2:23: domains[1]: \"bad domain\" is not a valid domain name");
  text = kMinimal;
  text.replace(text.find("[\"example.test\"]"), 16, "[]");
  EXPECT_EQ(ErrorOf(text),
            "t.toml:2:11: domains: at least one local domain is required");
}

TEST(ConfigTest, BadListenerAddresses) {
  for (const char* address :
       {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:25x", ":25", "::1:25", "[::1]25", "[::1:25", "[nope]:25",
        "localhost:25", "300.1.1.1:25"}) {
    std::string text = kMinimal;
    text.replace(text.find("127.0.0.1:2525"), 14, address);
    std::string error = ErrorOf(text);
    EXPECT_EQ(error.rfind("t.toml:4:11: listen[0].address: ", 0), 0u)
        << address << " -> " << error;
  }
}

TEST(ConfigTest, DuplicateListenerRejected) {
  std::string text =
      std::string(kMinimal) +
      "[[listen]]\naddress = \"127.0.0.1:2525\"\nservice = \"smtp\"\n";
  EXPECT_EQ(
      ErrorOf(text),
      "t.toml:7:11: listen[1].address: \"127.0.0.1:2525\" is listed twice");
}

TEST(ConfigTest, Services) {
  std::string text = kMinimal;
  text.replace(text.find("\"smtp\""), 6, "\"imap\"");
  EXPECT_TRUE(Parse(text, "t.toml"));
  text = std::string(kMinimal) + "[imap]\nidle_timeout = 60\n";
  EXPECT_NE(ErrorOf(text).find("imap.idle_timeout"), std::string::npos);
  text = kMinimal;
  text.replace(text.find("\"smtp\""), 6, "\"smtpd\"");
  EXPECT_EQ(ErrorOf(text),
            "t.toml:5:11: listen[0].service: unknown service \"smtpd\" "
            "(supported: smtp, submission, submissions, pop3, pop3s, imap, imaps, http, https, "
            "admin)");
  text = std::string(kMinimal) +
         "[[listen]]\naddress = \"127.0.0.1:2587\"\nservice = \"submission\"\n";
  auto cfg = Parse(text, "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->listeners[1].service, "submission");
  EXPECT_FALSE(cfg->listeners[1].allow_plaintext_auth);
}

TEST(ConfigTest, ImplicitTlsNeedsACertificate) {
  std::string text = std::string(kMinimal) +
                     "[[listen]]\naddress = \"127.0.0.1:2465\"\n"
                     "service = \"submissions\"\n";
  EXPECT_EQ(ErrorOf(text),
            "t.toml:6:1: listen[1].service: \"submissions\" needs [tls] "
            "certificates or self_signed = true");
  EXPECT_EQ(ErrorOf(text + "[tls]\nself_signed = true\n"), "");
  auto cfg = Parse(text +
                       "[tls]\ncertificates = [{cert = \"a.pem\", key = \"a.key\"},"
                       " {cert = \"b.pem\", key = \"b.key\"}]\n",
                   "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  ASSERT_EQ(cfg->tls.certificates.size(), 2u);
  EXPECT_EQ(cfg->tls.certificates[1].cert, "b.pem");
  EXPECT_EQ(cfg->tls.certificates[1].key, "b.key");
  EXPECT_FALSE(cfg->tls.self_signed);
}

TEST(ConfigTest, BadTlsSection) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) +
                    "[tls]\ncertificates = [{cert = \"a.pem\"}]\n"),
            "t.toml:7:17: tls.certificates[0].key: missing (required)");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[tls]\ncertificates = \"a.pem\"\n"),
            "t.toml:7:16: tls.certificates: expected an array of "
            "{cert = \"...\", key = \"...\"} tables");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[tls]\nself_signed = 1\n"),
            "t.toml:7:15: tls.self_signed: expected true or false");
}

TEST(ConfigTest, PlaintextAuthOnlyOnLoopback) {
  std::string text = kMinimal;
  text += "allow_plaintext_auth = true\n";
  auto cfg = Parse(text, "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_TRUE(cfg->listeners[0].allow_plaintext_auth);
  text.replace(text.find("127.0.0.1:2525"), 14, "192.0.2.1:25");
  EXPECT_EQ(ErrorOf(text),
            "t.toml:6:24: listen[0].allow_plaintext_auth: only allowed on a "
            "loopback address (127.0.0.0/8, ::1)");
  text.replace(text.find("192.0.2.1:25"), 12, "[::1]:25");
  EXPECT_EQ(ErrorOf(text), "");
}

TEST(ConfigTest, AuthThrottleSettings) {
  auto cfg = Parse(kMinimal, "t.toml");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->auth.max_failures, 10u);
  EXPECT_EQ(cfg->auth.window, 600u);
  EXPECT_EQ(cfg->auth.lockout, 900u);
  cfg = Parse(std::string(kMinimal) +
                  "[auth]\nmax_failures = 5\nwindow = 60\nlockout = 30\n"
                  "delay_step_ms = 0\nmax_delay_ms = 100\n",
              "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->auth.max_failures, 5u);
  EXPECT_EQ(cfg->auth.window, 60u);
  EXPECT_EQ(cfg->auth.lockout, 30u);
  EXPECT_EQ(cfg->auth.delay_step_ms, 0u);
  EXPECT_EQ(cfg->auth.max_delay_ms, 100u);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[auth]\nmax_failures = 0\n"),
            "t.toml:7:16: auth.max_failures: must be positive, got 0");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[auth]\nretries = 3\n"),
            "t.toml:7:1: auth.retries: unknown key");
}

TEST(ConfigTest, BadCidr) {
  for (const char* cidr : {"10.0.0.0/33", "10.0.0.1/8", "10.0.0/8", "10.0.0.0/",
                           "10.0.0.0/a", "::/129", "2001:db8::1/32", "x",
                           "010.0.0.0/8", " 10.0.0.0/8", "fe80::1%eth0", ""}) {
    std::string text =
        std::string("trusted_networks = [\"") + cidr + "\"]\n" + kMinimal;
    std::string error = ErrorOf(text);
    EXPECT_EQ(error.rfind("t.toml:1:21: trusted_networks[0]: ", 0), 0u)
        << cidr << " -> " << error;
  }
  auto cfg = Parse(std::string("trusted_networks = [\"0.0.0.0/0\", \"::/0\", "
                               "\"10.1.2.0/23\"]\n") +
                       kMinimal,
                   "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->trusted_networks,
            (std::vector<std::string>{"0.0.0.0/0", "::/0", "10.1.2.0/23"}));
}

// The reasons come from common/cidr.h, after the value they are about.
TEST(ConfigTest, CidrReasons) {
  auto error_for = [](const std::string& cidr) {
    return ErrorOf("trusted_networks = [\"192.0.2.0/24\", \"" + cidr +
                   "\"]\n" + kMinimal);
  };
  EXPECT_EQ(error_for("10.0.0.1/8"),
            "t.toml:1:37: trusted_networks[1]: \"10.0.0.1/8\": host bits "
            "set: did you mean 10.0.0.0/8?");
  EXPECT_EQ(error_for("10.0.0.0/33"),
            "t.toml:1:37: trusted_networks[1]: \"10.0.0.0/33\": prefix "
            "length 33 is out of range for IPv4 (0-32)");
  EXPECT_EQ(error_for("mx.example.test"),
            "t.toml:1:37: trusted_networks[1]: \"mx.example.test\": not an "
            "IP address (host names are not allowed)");
  // Written forms are normalized (RFC 5952 for IPv6).
  auto cfg = Parse(std::string("trusted_networks = [\"2001:0DB8:0::/48\", "
                               "\"::FFFF:10.0.0.0/104\", \"10.0.0.0/08\"]\n") +
                       kMinimal,
                   "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->trusted_networks,
            (std::vector<std::string>{"2001:db8::/48", "::ffff:10.0.0.0/104",
                                      "10.0.0.0/8"}));
}

TEST(ConfigTest, BadLogLevel) {
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[log]\nlevel = \"loud\"\n"),
            "t.toml:7:9: log.level: \"loud\" is not one of trace, debug, info, "
            "warn, error, critical, off");
}

TEST(ConfigTest, AllErrorsReportedInFileOrder) {
  std::string text = std::string("threads = -1\nbogus = 1\n") + kMinimal +
                     "[smtp]\nmax_errors = 0\n";
  EXPECT_EQ(ErrorOf(text),
            "t.toml:1:11: threads: must be at least 0, got -1\n"
            "t.toml:2:1: bogus: unknown key\n"
            "t.toml:9:14: smtp.max_errors: must be positive, got 0");
}

TEST(ConfigTest, SyntaxErrorNamesLine) {
  std::string error = ErrorOf("hostname = \"a\"\ndomains = [\n");
  EXPECT_EQ(error.rfind("t.toml:", 0), 0u) << error;
  EXPECT_NE(error.find(":2:"), std::string::npos) << error;
}

TEST(ConfigTest, LoadMissingFile) {
  auto cfg = Load("/nonexistent/tern.toml");
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().message.rfind("/nonexistent/tern.toml: ", 0), 0u);
}

}  // namespace
}  // namespace tern::config

namespace tern::config {
namespace {

TEST(ConfigTest, Milters) {
  auto cfg = Parse(std::string("milter = [{address = \"127.0.0.1:11332\"}, "
                               "{address = \"unix:/run/f.sock\", on_error = \"accept\", "
                               "timeout = 5}, {address = \"[::1]:8891\"}]\n") +
                       kMinimal,
                   "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  ASSERT_EQ(cfg->milters.size(), 3u);
  EXPECT_EQ(cfg->milters[0].host, "127.0.0.1");
  EXPECT_EQ(cfg->milters[0].port, 11332);
  EXPECT_EQ(cfg->milters[0].on_error, "tempfail");
  EXPECT_EQ(cfg->milters[0].timeout, 30u);
  EXPECT_EQ(cfg->milters[1].path, "/run/f.sock");
  EXPECT_TRUE(cfg->milters[1].host.empty());
  EXPECT_EQ(cfg->milters[1].on_error, "accept");
  EXPECT_EQ(cfg->milters[1].timeout, 5u);
  EXPECT_EQ(cfg->milters[2].host, "::1");
  EXPECT_EQ(cfg->milters[2].port, 8891);
  auto plain = Parse(kMinimal, "t.toml");
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->milters.empty());
  auto error = [](const std::string& entry) {
    return ErrorOf("milter = [" + entry + "]\n" + kMinimal);
  };
  EXPECT_NE(error("{address = \"rspamd:11332\"}").find("is not an IP address"),
            std::string::npos);
  EXPECT_NE(error("{address = \"127.0.0.1\"}").find("milter[0].address"), std::string::npos);
  EXPECT_NE(error("{address = \"127.0.0.1:0\"}").find("port must be a number between 1 and 65535"),
            std::string::npos);
  EXPECT_NE(error("{address = \"unix:run/f\"}").find("must be absolute"), std::string::npos);
  EXPECT_NE(error("{address = \"127.0.0.1:1\", on_error = \"ignore\"}")
                .find("milter[0].on_error"),
            std::string::npos);
  EXPECT_NE(error("{address = \"127.0.0.1:1\", timeout = 0}").find("milter[0].timeout"),
            std::string::npos);
  EXPECT_NE(error("{address = \"127.0.0.1:1\", mode = 1}").find("milter[0].mode"),
            std::string::npos);
}

TEST(ConfigTest, Antispam) {
  auto cfg = Parse(std::string(kMinimal) +
                       "[antispam]\n"
                       "dnsbl = [\"Zen.Example\", \"bl.example\"]\n"
                       "dnswl = [\"wl.example\"]\n"
                       "greylist = true\n"
                       "greylist_delay = 60\n"
                       "pregreet = true\n"
                       "pregreet_wait_ms = 300\n",
                   "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->antispam.dnsbl, (std::vector<std::string>{"zen.example", "bl.example"}));
  EXPECT_EQ(cfg->antispam.dnswl, (std::vector<std::string>{"wl.example"}));
  EXPECT_TRUE(cfg->antispam.greylist);
  EXPECT_EQ(cfg->antispam.greylist_delay, 60u);
  EXPECT_TRUE(cfg->antispam.pregreet);
  EXPECT_EQ(cfg->antispam.pregreet_wait_ms, 300u);

  auto plain = Parse(kMinimal, "t.toml");
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->antispam.dnsbl.empty());
  EXPECT_FALSE(plain->antispam.greylist);
  EXPECT_FALSE(plain->antispam.pregreet);

  EXPECT_NE(ErrorOf(std::string(kMinimal) + "[antispam]\ndnsbl = [\"not a zone\"]\n")
                .find("antispam.dnsbl[0]: \"not a zone\" is not a valid DNS zone name"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "[antispam]\ngreylist_delay = 0\n")
                .find("antispam.greylist_delay"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "[antispam]\ngreylisting = true\n")
                .find("antispam.greylisting"),
            std::string::npos);
}

TEST(ConfigTest, Trace) {
  auto plain = Parse(kMinimal, "t.toml");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->trace.keep_days, 14u);  // on by default
  auto cfg = Parse(std::string(kMinimal) + "[trace]\nkeep_days = 3\n", "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->trace.keep_days, 3u);
  cfg = Parse(std::string(kMinimal) + "[trace]\nkeep_days = 0\n", "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->trace.keep_days, 0u);  // off
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "[trace]\nkeep_days = -1\n")
                .find("trace.keep_days"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "[trace]\ndays = 3\n"),
            "t.toml:7:1: trace.days: unknown key");
}

}  // namespace
}  // namespace tern::config

namespace tern::config {
namespace {

TEST(ConfigTest, MtaStsKnobs) {
  auto defaults = Parse(kMinimal, "t.toml");
  ASSERT_TRUE(defaults);
  EXPECT_TRUE(defaults->delivery.mta_sts);
  EXPECT_EQ(defaults->delivery.mta_sts_port, 443);
  auto cfg = Parse(std::string(kMinimal) + "[delivery]\nmta_sts = false\nmta_sts_port = 8443\n",
                   "t.toml");
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_FALSE(cfg->delivery.mta_sts);
  EXPECT_EQ(cfg->delivery.mta_sts_port, 8443);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "[delivery]\nmta_sts_port = 0\n"), "");
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "[delivery]\nmta_sts = \"yes\"\n"), "");
}

}  // namespace
}  // namespace tern::config
