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
  std::string service;   // "smtp" (later: submission, submissions, pop3, pop3s)
  std::string host;      // parsed from address, brackets removed
  uint16_t port = 0;     // parsed from address
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

struct Config {
  std::string path;                    // the file it came from
  std::string hostname = "localhost";
  std::string data_dir = "var";        // relative paths are from the cwd
  std::string user;                    // drop privileges to this user if set
  std::vector<std::string> domains;    // local domains, lower case
  std::vector<std::string> trusted_networks;  // CIDR, may relay
  std::vector<Listener> listeners;
  SmtpLimits smtp;
  uint32_t threads = 1;                // io threads; 0 = number of cores
  std::string log_level = "info";
  uint32_t shutdown_grace = 10;        // seconds for transactions in flight
  uint32_t delivery_threads = 2;       // local delivery workers
};

// Loads and validates the file. Error text: "FILE:LINE:COL: key: reason",
// one line per problem found.
Result<Config> Load(const std::string& path);

// Parses TOML text (for tests); `name` is used in error messages.
Result<Config> Parse(const std::string& text, const std::string& name);

}  // namespace tern::config
