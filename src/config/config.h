// Tern's configuration: one TOML file, loaded and validated at start-up and
// on SIGHUP. Errors name the file, line and key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace tern::config {

// One listening socket. `service` says which protocol runs on it.
struct Listener {
  std::string address;   // "127.0.0.1:2525", "[::1]:2525", "0.0.0.0:25"
  // "smtp" (port 25, STARTTLS), "submission" (587, STARTTLS, AUTH before
  // MAIL; RFC 6409) or "submissions" (465, implicit TLS; RFC 8314);
  // "pop3" (110, STLS) or "pop3s" (995, implicit TLS);
  // "imap" (143, STARTTLS) or "imaps" (993, implicit TLS);
  // "http" (80: client autoconfig, ACME HTTP-01, redirects to HTTPS),
  // "https" (443: autoconfig, Autodiscover, MTA-STS policy) or "admin"
  // (/metrics and /health; loopback and trusted_networks clients only).
  std::string service;
  std::string host;      // parsed from address, brackets removed
  uint16_t port = 0;     // parsed from address
  // AUTH without TLS; only for loopback listeners (a local webmail, say).
  bool allow_plaintext_auth = false;
};

// One certificate chain and its key, PEM files (Let's Encrypt's
// fullchain.pem and privkey.pem work as they are).
struct Certificate {
  std::string cert;
  std::string key;
};

struct TlsSettings {
  std::vector<Certificate> certificates;  // RSA and/or ECDSA, several names
  // Generate a self-signed certificate for `hostname` under data_dir/tls
  // when none exists (dev setups only).
  bool self_signed = false;
};

// Brute-force defence for AUTH, per client IP.
struct AuthSettings {
  uint32_t max_failures = 10;      // failures within `window` before lockout
  uint32_t window = 600;           // seconds
  uint32_t lockout = 900;          // seconds refused after the limit
  uint32_t delay_step_ms = 250;    // reply delay added per recent failure
  uint32_t max_delay_ms = 5000;
};

// POP3 (RFC 1939) limits and the RFC 2449 capabilities that are policy.
struct Pop3Settings {
  uint32_t idle_timeout = 600;      // RFC 1939 3: autologout >= 10 minutes
  uint32_t max_errors = 10;         // bad commands before disconnect
  uint32_t max_connections = 1000;  // POP3 listeners together
  uint32_t max_connections_per_ip = 20;
  std::string expire;               // RFC 2449 6.7: "", "NEVER" or days
  int64_t login_delay = -1;         // RFC 2449 6.8 seconds; -1: not offered
};

// IMAP (RFC 9051) limits.
struct ImapSettings {
  uint32_t idle_timeout = 1800;     // RFC 9051 5.4: autologout >= 30 minutes
  uint32_t max_errors = 20;         // invalid commands in a row
  uint32_t max_connections = 2000;  // IMAP listeners together
  uint32_t max_connections_per_ip = 50;  // clients open one per folder
  uint64_t append_limit = 50ull * 1024 * 1024;  // RFC 7889 APPENDLIMIT
};

// [http]: the web listeners (issue 16).
struct HttpSettings {
  uint32_t idle_timeout = 30;          // seconds for each request (keep-alive)
  uint32_t max_connections = 500;      // http, https and admin together
  uint32_t max_connections_per_ip = 20;
  // The MTA-STS policy served at https://mta-sts.DOMAIN/ (RFC 8461 3.2):
  // "testing" reports failures without refusing, "enforce" makes senders
  // refuse a host without a valid certificate, "none" withdraws a policy.
  std::string mta_sts_mode = "testing";
  uint32_t mta_sts_max_age = 604800;   // seconds senders keep the policy
};

// [acme]: certificates from an ACME CA (RFC 8555), e.g. Let's Encrypt
// (issue 16). Off while `directory` is empty.
struct AcmeSettings {
  std::string directory;           // "https://acme-v02.api.letsencrypt.org/directory"
  std::string contact;             // an address the CA may write to
  std::vector<std::string> names;  // the certificate's names; default: hostname
  // "http-01" (port 80, the http listener) or "tls-alpn-01" (RFC 8737:
  // any implicit-TLS listener, 443 in production); default: http-01 when
  // an http listener exists.
  std::string challenge;
  std::string ca_file;             // a CA for the ACME server's own HTTPS
  uint32_t renew_days = 30;        // renew when fewer days are left
  uint32_t check_interval = 43200; // seconds between checks
};

// [trace]: the message trace (`tern trace`), JSON lines in
// data_dir/trace/, one file per UTC day.
struct TraceSettings {
  uint32_t keep_days = 14;  // files older than this are deleted; 0: no trace
};

struct SmtpLimits {
  uint64_t max_message_size = 50ull * 1024 * 1024;  // RFC 1870 SIZE
  uint32_t max_recipients = 100;       // RFC 5321 4.5.3.1.8 minimum is 100
  uint32_t max_connections = 1000;     // in total
  uint32_t max_connections_per_ip = 50;
  uint32_t max_errors = 10;            // protocol errors before disconnect
  uint32_t command_line_limit = 512;   // RFC 5321 4.5.3.1.4
  uint32_t text_line_limit = 1000;     // RFC 5321 4.5.3.1.6
  uint32_t max_received_headers = 100; // RFC 5321 6.3 loop detection
  uint32_t command_timeout = 300;      // seconds, RFC 5321 4.5.3.2.7
  uint32_t data_block_timeout = 180;   // RFC 5321 4.5.3.2.6
  uint32_t final_timeout = 600;        // RFC 5321 4.5.3.2.8 (after final dot)
  bool vrfy = false;                   // VRFY answers 252 when false
  bool expn = false;                   // EXPN answers 502 when false
};

// Outbound delivery ([delivery]): MX port, TLS policy, retry schedule,
// limits and RFC 5321 4.5.3.2 client timeouts (seconds).
struct DeliverySettings {
  uint16_t mx_port = 25;               // tests point this at a high port
  std::string tls = "opportunistic";   // for MX hosts: none, opportunistic, required
  std::string ca_file;                 // extra CAs for certificate checks
  bool mta_sts = true;                 // honour MTA-STS policies (RFC 8461)
  uint16_t mta_sts_port = 443;         // of mta-sts.DOMAIN; tests change it
  // TLS-RPT (RFC 8460): report outbound TLS results to the domains that
  // ask for them, once per tlsrpt_interval seconds (a UTC day).
  bool tlsrpt = true;
  uint32_t tlsrpt_interval = 86400;
  uint32_t retry_first = 300;          // first retry after a temporary failure
  uint32_t retry_max = 3600;           // cap between tries
  uint32_t max_lifetime = 5 * 86400;   // then bounce
  uint32_t delay_warning = 4 * 3600;   // "delayed" DSN after this; 0 = never
  // Outbound SMTP connections at once, in total: as many as Postfix runs
  // smtp processes by default (default_process_limit); a connection is a
  // coroutine here, not a process. Fewer left most of 100 destinations
  // waiting for a slot (issue 18, bench/relay_cell.sh).
  uint32_t max_connections = 100;
  uint32_t max_connections_per_destination = 4;
  uint32_t max_messages_per_connection = 100;
  uint32_t connect_timeout = 30;
  uint32_t greeting_timeout = 300;
  uint32_t command_timeout = 300;
  uint32_t data_init_timeout = 120;
  uint32_t data_block_timeout = 180;
  uint32_t final_timeout = 600;
};

// [dns]: where outbound delivery resolves MX and address records.
struct DnsSettings {
  std::vector<std::string> upstream;   // "ip:port"; empty = /etc/resolv.conf
  std::string trust_anchor;            // DNSSEC root key file; empty = none
};

// [mailauth]: SPF, DKIM, DMARC and ARC for mail that arrives (RFC 7208,
// 6376, 7489, 8617), DKIM signatures and SRS for mail that leaves.
struct MailauthSettings {
  // Check SPF, DKIM and DMARC for clients that are neither authenticated
  // nor in trusted_networks, and record the results in an
  // Authentication-Results header (RFC 8601).
  bool verify = true;
  bool dmarc_reject = true;      // p=reject: 550 5.7.1 after the final dot
  bool dmarc_quarantine = true;  // p=quarantine: delivered marked as junk
  // An SPF "fail" for a domain without DMARC: "record" it only, or
  // "reject" the MAIL (550 5.7.23, RFC 7372).
  std::string spf_fail = "record";
  // Domains whose valid ARC chain (the last seal's d=) may override a
  // DMARC failure: mailing lists and forwarders trusted to check.
  std::vector<std::string> arc_trusted_sealers;
  // DKIM-sign mail from authenticated and trusted clients and `tern
  // sendmail`, for every domain with keys under data_dir/dkim.
  bool sign = true;
  // Rewrite the envelope sender of mail forwarded by aliases to remote
  // addresses (SRS), so the next hop's SPF check passes; the key is kept
  // in data_dir/srs.key.
  bool srs = true;
  uint32_t srs_max_age_days = 21;
  // DMARC aggregate reports (RFC 7489 7.2): count the DMARC results of
  // arriving mail per sending domain and UTC day (data_dir/dmarc-reports)
  // and mail them to the domains' "rua" addresses after the day ends.
  bool dmarc_reports = false;
};

// [antispam]: what port 25 asks of clients that are neither authenticated
// nor in trusted_networks (issue 15).
struct AntispamSettings {
  // RFC 5782 DNS lists: a client listed in a dnsbl zone is refused at
  // RCPT (554 5.7.1 naming the list); one listed in a dnswl zone skips
  // the blocklists and greylisting.
  std::vector<std::string> dnsbl;
  std::vector<std::string> dnswl;
  // Greylisting: the first RCPT of a new (client /24 or /64, sender,
  // recipient) triplet gets 451 4.7.1; a retry after greylist_delay
  // seconds (and within 4 hours) passes. Kept in data_dir/greylist.sqlite.
  bool greylist = false;
  uint32_t greylist_delay = 300;
  // Pregreet: the 220 waits pregreet_wait_ms; a client that talks before
  // it (a bot that does not wait for the greeting) gets 554 5.5.1.
  bool pregreet = false;
  uint32_t pregreet_wait_ms = 1000;
};

// [ratelimit] (issue 15): 0 turns a limit off. Authenticated users are
// counted by account, other untrusted clients by address and, on port 25,
// by MAIL FROM domain. Fixed windows of the clock (antispam/rate_limit.h).
struct RateLimitConfig {
  uint32_t client_connections_per_minute = 0;
  uint32_t client_messages_per_minute = 0;
  uint32_t user_messages_per_hour = 0;
  uint32_t user_messages_per_day = 0;
  uint32_t user_recipients_per_hour = 0;
  uint32_t user_recipients_per_day = 0;
  uint32_t sender_domain_messages_per_hour = 0;
};

// [[milter]] (issue 15): a mail filter speaking the Sendmail milter
// protocol (rspamd, spamass-milter, clamav-milter). Every SMTP listener's
// mail passes each one in order (antispam/milter_client.h).
struct MilterConfig {
  std::string address;  // as written: "host:port", "[v6]:port", "unix:/path"
  std::string host;     // parsed: an IP address, or empty for a socket path
  uint16_t port = 0;
  std::string path;     // a Unix socket
  // What a filter that cannot be reached, times out or breaks the
  // protocol costs the message: "tempfail" (451 4.7.1, the client retries),
  // "accept" (the filter is skipped), "reject" (550 5.7.1).
  std::string on_error = "tempfail";
  uint32_t timeout = 30;  // seconds for each reply of the filter
};

// [[route]]: mail for `domain` ("*" = every remote domain) goes to `relay`
// (a smarthost) instead of the domain's MX hosts.
struct Route {
  std::string domain;
  std::string relay;                   // "host:port" as written
  std::string relay_host;              // parsed
  uint16_t relay_port = 25;
  std::string tls = "opportunistic";   // none, opportunistic, required
  std::string auth_user;
  std::string auth_password;
  std::string ca_file;
};

struct Config {
  std::string path;                    // the file it came from
  std::string hostname = "localhost";
  std::string data_dir = "var";        // relative paths are from the cwd
  std::string user;                    // drop privileges to this user if set
  std::vector<std::string> domains;    // local domains, lower case
  // Who reads mail for postmaster@, abuse@ and the machine's system users
  // (auth::LocalRouting); empty: the Maildir of postmaster@<first domain>.
  std::string postmaster;
  std::vector<std::string> trusted_networks;  // CIDR, may relay
  std::vector<Listener> listeners;
  SmtpLimits smtp;
  Pop3Settings pop3;
  ImapSettings imap;
  HttpSettings http;
  AcmeSettings acme;
  TraceSettings trace;
  // [quota] storage: octets each account may keep in all its folders
  // together (RFC 9208 STORAGE); 0 is unlimited. `tern user quota` sets
  // one account's own. SMTP refuses mail for a full mailbox (552 5.2.2),
  // IMAP APPEND and COPY say NO [OVERQUOTA].
  uint64_t quota_storage = 0;
  TlsSettings tls;
  AuthSettings auth;
  uint32_t threads = 1;                // io threads; 0 = number of cores
  std::string log_level = "info";
  uint32_t shutdown_grace = 10;        // seconds for transactions in flight
  uint32_t delivery_threads = 2;       // local delivery workers
  DeliverySettings delivery;
  DnsSettings dns;
  std::vector<Route> routes;
  MailauthSettings mailauth;
  AntispamSettings antispam;
  RateLimitConfig ratelimit;
  std::vector<MilterConfig> milters;
};

// Loads and validates the file. Error text: "FILE:LINE:COL: key: reason",
// one line per problem found.
Result<Config> Load(const std::string& path);

// Parses TOML text (for tests); `name` is used in error messages.
Result<Config> Parse(const std::string& text, const std::string& name);

}  // namespace tern::config
