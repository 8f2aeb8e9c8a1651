// The `tern` command: runs the server (`tern serve`) and manages users,
// aliases and the queue from the shell. Management commands only touch the
// SQLite database and the spool, so they work while the server runs.
#include <sodium.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/directory.h"
#include "cli/columns.h"
#include "cli/arc_commands.h"
#include "cli/check_message.h"
#include "cli/check_spf.h"
#include "cli/setup_commands.h"
#include "cli/dkim_commands.h"
#include "cli/queue_commands.h"
#include "cli/report_commands.h"
#include "cli/report_tls_commands.h"
#include "cli/sendmail.h"
#include "cli/trace_commands.h"
#include "common/result.h"
#include "common/strings.h"
#include "common/version.h"
#include "config/config.h"
#include "control/control.h"
#include "queue/queue.h"
#include "queue/queue_id.h"
#include "server/serve.h"
#include "store/mailbox_path.h"
#include "store/quota.h"

namespace tern::cli {
namespace {

constexpr const char* kDefaultConfig = "etc/tern.dev.toml";
// Used when the binary is invoked as "sendmail" (and TERN_CONFIG is unset).
constexpr const char* kSystemConfig = "/etc/tern/tern.toml";

struct GlobalOptions {
  std::string config_path = kDefaultConfig;
  std::string data_dir;  // empty: use the config's data_dir
};

int Fail(const std::string& message) {
  std::cerr << "tern: " << message << "\n";
  return 1;
}

// Creates the data folder (mode 0700: it holds mail and password hashes).
Result<void> EnsureDataDir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  std::filesystem::create_directories(dir, ec);
  if (ec) return Err("cannot create data folder " + dir + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) {
    return Err("cannot set mode of " + dir + ": " + std::strerror(errno));
  }
  return {};
}

Result<config::Config> LoadConfig(const GlobalOptions& options) {
  auto cfg = config::Load(options.config_path);
  if (!cfg) return cfg;
  if (!options.data_dir.empty()) cfg->data_dir = options.data_dir;
  if (auto ok = EnsureDataDir(cfg->data_dir); !ok) {
    return tl::unexpected(ok.error());
  }
  return cfg;
}

Result<std::unique_ptr<auth::Directory>> OpenDirectory(
    const GlobalOptions& options) {
  auto cfg = LoadConfig(options);
  if (!cfg) return tl::unexpected(cfg.error());
  return auth::Directory::Open(cfg->data_dir + "/tern.db", cfg->domains,
                               auth::LocalRouting::FromSystem(cfg->postmaster));
}

// "512M" -> 536870912; bytes with an optional K, M or G (powers of 1024).
std::optional<uint64_t> ParseSize(const std::string& text) {
  if (text.empty()) return std::nullopt;
  uint64_t mult = 1;
  std::string digits = text;
  switch (text.back()) {
    case 'K': case 'k': mult = 1ull << 10; digits.pop_back(); break;
    case 'M': case 'm': mult = 1ull << 20; digits.pop_back(); break;
    case 'G': case 'g': mult = 1ull << 30; digits.pop_back(); break;
    default: break;
  }
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoull(digits) * mult;
}

// The form the directory stores: domain lower-cased, local part as given.
std::string Canonical(const std::string& address) {
  size_t at = address.rfind('@');
  if (at == std::string::npos) return address;
  return address.substr(0, at + 1) + ToLower(address.substr(at + 1));
}

// Turns off terminal echo for the lifetime of the object.
class NoEcho {
 public:
  NoEcho() {
    if (tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios quiet = saved_;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      active_ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
    }
  }
  ~NoEcho() {
    if (active_) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }
  NoEcho(const NoEcho&) = delete;
  NoEcho& operator=(const NoEcho&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

// Wipes a password from memory when it goes out of scope.
struct Secret {
  std::string value;
  ~Secret() { sodium_memzero(value.data(), value.size()); }
};

bool ReadLine(std::string* line) {
  if (!std::getline(std::cin, *line)) return false;
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return true;
}

// One line from stdin (scripts pipe it in); on a terminal, asks twice
// without echo so a typo does not lock the user out.
Result<void> ReadPassword(Secret* password) {
  if (isatty(STDIN_FILENO)) {
    Secret again;
    {
      NoEcho no_echo;
      std::cerr << "Password: " << std::flush;
      bool got = ReadLine(&password->value);
      std::cerr << "\nRepeat password: " << std::flush;
      got = got && ReadLine(&again.value);
      std::cerr << "\n";
      if (!got) return Err("no password given");
    }
    if (password->value != again.value) return Err("passwords do not match");
  } else if (!ReadLine(&password->value)) {
    return Err("no password on standard input");
  }
  if (password->value.empty()) return Err("password must not be empty");
  return {};
}

// --- queue list -----------------------------------------------------------

std::string Duration(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 86400) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

std::string NextAttempt(int64_t next, int64_t now) {
  if (next == 0) return "-";
  if (next <= now) return "now";
  return "in " + Duration(next - now);
}

// Error texts come from remote servers; keep the table on one line each.
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\r' || c == '\n' || c == '\t') c = ' ';
  }
  return text;
}

std::string RecipientsColumn(const queue::Entry& entry) {
  std::string out;
  const auto& recipients = entry.envelope.recipients;
  for (size_t i = 0; i < recipients.size(); ++i) {
    auto state = i < entry.state.size() ? entry.state[i]
                                        : queue::RecipientState::kPending;
    if (state == queue::RecipientState::kDelivered) continue;
    if (!out.empty()) out += ", ";
    out += recipients[i].address;
    if (state == queue::RecipientState::kFailed) out += " (failed)";
  }
  return out.empty() ? "-" : out;
}

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

const char* StateName(queue::RecipientState state) {
  switch (state) {
    case queue::RecipientState::kPending:
      return "pending";
    case queue::RecipientState::kDelivered:
      return "delivered";
    case queue::RecipientState::kFailed:
      return "failed";
  }
  return "pending";
}

// One JSON object per entry, printed as the listing streams.
void PrintQueueJsonEntry(const queue::Entry& e, int64_t now, bool first) {
  const queue::Envelope& env = e.envelope;
  std::cout << (first ? "\n " : ",\n ") << "{\"id\": " << JsonString(env.id)
            << ", \"received_at\": " << env.received_at
            << ", \"age\": " << (now - env.received_at)
            << ", \"size\": " << e.size
            << ", \"sender\": " << JsonString(env.sender)
            << ", \"recipients\": [";
  for (size_t r = 0; r < env.recipients.size(); ++r) {
    auto state =
        r < e.state.size() ? e.state[r] : queue::RecipientState::kPending;
    std::cout << (r ? ", " : "")
              << "{\"address\": " << JsonString(env.recipients[r].address)
              << ", \"state\": \"" << StateName(state) << "\"}";
  }
  std::cout << "], \"attempts\": " << e.attempts
            << ", \"next_attempt\": " << e.next_attempt
            << ", \"last_error\": " << JsonString(e.last_error)
            << ", \"held\": " << (e.held ? "true" : "false") << "}";
}

// The table, printed in blocks of rows as the listing streams: each block's
// columns are as wide as its own widest cell, so a queue of up to one
// block prints as one aligned table and a huge one starts at once.
class QueueTable {
 public:
  static constexpr size_t kBlock = 1000;
  explicit QueueTable(int64_t now) : now_(now) {
    rows_.push_back({"ID", "AGE", "SENDER", "RECIPIENTS", "NEXT", "LAST ERROR"});
  }
  void Add(const queue::Entry& e) {
    const queue::Envelope& env = e.envelope;
    rows_.push_back({env.id, Duration(now_ - env.received_at),
                     env.sender.empty() ? "<>" : env.sender,
                     RecipientsColumn(e),
                     e.held ? "held" : NextAttempt(e.next_attempt, now_),
                     e.last_error.empty() ? "-" : OneLine(e.last_error)});
    if (rows_.size() >= kBlock) Flush();
  }
  void Flush() {
    if (rows_.empty()) return;
    PrintColumns(rows_, std::cout);
    std::cout.flush();
    rows_.clear();
  }

 private:
  int64_t now_;
  std::vector<std::vector<std::string>> rows_;
};

// "90", "90s", "15m", "2h", "3d": seconds, or -1 when malformed.
int64_t ParseAge(const std::string& text) {
  if (text.empty()) return -1;
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  if (digits == 0 || digits > 9) return -1;
  int64_t n = std::stoll(text.substr(0, digits));
  std::string unit = text.substr(digits);
  if (unit.empty() || unit == "s") return n;
  if (unit == "m") return n * 60;
  if (unit == "h") return n * 3600;
  if (unit == "d") return n * 86400;
  return -1;
}

// --- sendmail ---------------------------------------------------------------

// Takes --config/--data-dir out of a sendmail argument list; everything else
// is sendmail's own syntax and passes through untouched.
std::vector<std::string> TakeGlobalOptions(std::vector<std::string> args,
                                           GlobalOptions* options) {
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string* target = nullptr;
    std::string name;
    if (arg == "--config" || arg.rfind("--config=", 0) == 0) {
      target = &options->config_path;
      name = "--config";
    } else if (arg == "--data-dir" || arg.rfind("--data-dir=", 0) == 0) {
      target = &options->data_dir;
      name = "--data-dir";
    }
    if (target == nullptr) {
      rest.push_back(arg);
    } else if (arg.size() > name.size()) {
      *target = arg.substr(name.size() + 1);
    } else if (i + 1 < args.size()) {
      *target = args[++i];
    } else {
      rest.push_back(arg);  // dangling; let sendmail complain about it
    }
  }
  return rest;
}

int RunSendmail(GlobalOptions options, const std::vector<std::string>& raw) {
  std::vector<std::string> args = TakeGlobalOptions(raw, &options);
  auto cfg = LoadConfig(options);
  if (!cfg) return Fail(cfg.error().message);
  return Sendmail(*cfg, args);
}

// `tern sendmail ...` is dispatched before CLI11 sees the arguments: sendmail
// flags such as -oi or -f would otherwise be parsed as tern options, and a
// recipient named like a subcommand could be mistaken for one. Returns the
// index of "sendmail" in argv, or 0.
int FindSendmail(int argc, char** argv, GlobalOptions* options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "sendmail") return i;
    if ((arg == "--config" || arg == "--data-dir") && i + 1 < argc) {
      (arg == "--config" ? options->config_path : options->data_dir) =
          argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      options->config_path = arg.substr(9);
    } else if (arg.rfind("--data-dir=", 0) == 0) {
      options->data_dir = arg.substr(11);
    } else {
      return 0;
    }
  }
  return 0;
}

void SetUpLogging(const std::string& level) {
  // Logs go to stderr so that stdout carries only command output.
  auto logger = spdlog::stderr_color_mt("tern");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

int Main(int argc, char** argv) {
  std::string program = std::filesystem::path(argv[0]).filename().string();
  GlobalOptions options;
  // Installed as a "sendmail" link, tern behaves like sendmail(8). Programs
  // calling sendmail run from anywhere, so the dev default makes no sense.
  if (program == "sendmail") {
    const char* env = std::getenv("TERN_CONFIG");
    options.config_path = env != nullptr && *env != '\0' ? env : kSystemConfig;
    SetUpLogging("warn");
    return RunSendmail(options,
                       std::vector<std::string>(argv + 1, argv + argc));
  }
  if (int at = FindSendmail(argc, argv, &options); at > 0) {
    SetUpLogging("warn");
    return RunSendmail(options,
                       std::vector<std::string>(argv + at + 1, argv + argc));
  }
  options = GlobalOptions();

  CLI::App app("Tern mail server", "tern");
  app.set_version_flag("--version", VersionLine(), "print the version and exit");
  app.require_subcommand(1);
  // Lets --config/--data-dir appear after the subcommand as well.
  app.fallthrough();
  app.add_option("--config", options.config_path, "configuration file")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir,
                 "data folder (overrides data_dir from the configuration)");

  std::function<int()> action;
  bool json = false;
  std::string address;
  std::string alias;
  std::string pattern;
  std::vector<std::string> targets;

  auto* serve = app.add_subcommand("serve", "run the mail server");
  serve->callback([&] {
    action = [&] {
      auto cfg = LoadConfig(options);
      if (!cfg) return Fail(cfg.error().message);
      spdlog::set_level(spdlog::level::from_str(cfg->log_level));
      return server::Serve(*cfg);
    };
  });

  auto* user = app.add_subcommand("user", "manage mail accounts");
  user->require_subcommand(1);
  auto* user_add =
      user->add_subcommand("add", "add an account; password from stdin");
  user_add->add_option("address", address, "local@domain")->required();
  user_add->callback([&] {
    action = [&] {
      Secret password;
      if (auto ok = ReadPassword(&password); !ok)
        return Fail(ok.error().message);
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      if (auto ok = (*dir)->AddUser(address, password.value); !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "added user " << Canonical(address) << "\n";
      return 0;
    };
  });
  auto* user_del = user->add_subcommand("del", "delete an account");
  user_del->add_option("address", address, "local@domain")->required();
  user_del->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      if (auto ok = (*dir)->DeleteUser(address); !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "deleted user " << address << "\n";
      return 0;
    };
  });
  auto* user_list = user->add_subcommand("list", "list accounts");
  user_list->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      auto users = (*dir)->ListUsers();
      if (!users) return Fail(users.error().message);
      for (const auth::Account& account : *users) {
        std::cout << account.address << "\n";
      }
      return 0;
    };
  });
  auto* user_passwd =
      user->add_subcommand("passwd", "set a password; password from stdin");
  user_passwd->add_option("address", address, "local@domain")->required();
  user_passwd->callback([&] {
    action = [&] {
      Secret password;
      if (auto ok = ReadPassword(&password); !ok)
        return Fail(ok.error().message);
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      // Also renews the SCRAM-SHA-256 keys, which is how accounts made
      // before the directory kept them become usable with SCRAM.
      if (auto ok = (*dir)->SetPassword(address, password.value); !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "changed password of " << address << "\n";
      return 0;
    };
  });
  auto* user_grant = user->add_subcommand(
      "grant", "let an account send as another address or as *@domain");
  user_grant->add_option("address", address, "local@domain")->required();
  user_grant->add_option("pattern", pattern, "an address or *@domain")
      ->required();
  user_grant->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      if (auto ok = (*dir)->Grant(address, pattern); !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "granted " << pattern << " to " << address << "\n";
      return 0;
    };
  });
  auto* user_revoke =
      user->add_subcommand("revoke", "take back a grant made by user grant");
  user_revoke->add_option("address", address, "local@domain")->required();
  user_revoke->add_option("pattern", pattern, "the pattern as granted")
      ->required();
  user_revoke->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      if (auto ok = (*dir)->Revoke(address, pattern); !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "revoked " << pattern << " from " << address << "\n";
      return 0;
    };
  });
  auto* user_show = user->add_subcommand(
      "show",
      "print the account, then every address it may send as, one per line, "
      "then what it sent this hour and today against [ratelimit]");
  user_show->add_option("address", address, "local@domain")->required();
  user_show->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      auto owned = (*dir)->OwnedAddresses(address);
      if (!owned) return Fail(owned.error().message);
      // The first entry is the account itself, so scripts can read the
      // canonical spelling from line one.
      for (const std::string& entry : *owned) std::cout << entry << "\n";
      auto cfg = LoadConfig(options);
      if (!cfg) return Fail(cfg.error().message);
      // The counts live in the running server (antispam/rate_limit.h).
      auto usage = control::Request(cfg->data_dir, "usage " + owned->front());
      if (!usage) {
        std::cout << "sending: unknown (" << usage.error().message << ")\n";
        return 0;
      }
      std::map<std::string, std::string> n;
      for (std::string_view rest = *usage; !rest.empty();) {
        size_t sp = rest.find(' ');
        std::string_view item = rest.substr(0, sp);
        rest.remove_prefix(sp == std::string_view::npos ? rest.size() : sp + 1);
        size_t eq = item.find('=');
        if (eq != std::string_view::npos) {
          n[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
        }
      }
      auto limit = [](uint32_t v) { return v == 0 ? std::string("none") : std::to_string(v); };
      const config::RateLimitConfig& r = cfg->ratelimit;
      std::cout << "sent this hour: " << n["messages_hour"] << " messages (limit "
                << limit(r.user_messages_per_hour) << "), " << n["recipients_hour"]
                << " recipients (limit " << limit(r.user_recipients_per_hour) << ")\n"
                << "sent today: " << n["messages_day"] << " messages (limit "
                << limit(r.user_messages_per_day) << "), " << n["recipients_day"]
                << " recipients (limit " << limit(r.user_recipients_per_day) << ")\n";
      return 0;
    };
  });

  auto* user_quota = user->add_subcommand(
      "quota",
      "show an account's storage quota and use, or set it: SIZE in bytes "
      "(K, M, G suffixes), 0 for unlimited, 'default' for the config's");
  user_quota->add_option("address", address, "local@domain")->required();
  user_quota->add_option("size", pattern, "SIZE, 0 or default");
  user_quota->callback([&] {
    action = [&] {
      auto cfg = LoadConfig(options);
      if (!cfg) return Fail(cfg.error().message);
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      auto res = (*dir)->Resolve(address);
      if (res.kind != auth::Resolution::Kind::kLocal || res.mailboxes.size() != 1 ||
          ToLower(res.mailboxes[0]) != ToLower(Canonical(address))) {
        return Fail("no such user " + address);
      }
      const std::string account = res.mailboxes[0];
      if (!pattern.empty()) {
        std::optional<uint64_t> octets;
        if (pattern != "default") {
          auto n = ParseSize(pattern);
          if (!n) return Fail("bad size \"" + pattern + "\": bytes with K, M or G");
          octets = *n;
        }
        if (auto ok = (*dir)->SetQuota(account, octets); !ok) {
          return Fail(ok.error().message);
        }
      }
      auto own = (*dir)->QuotaOf(account);
      uint64_t limit = own.value_or(cfg->quota_storage);
      auto path = store::MailboxPathFor(account);
      if (!path) return Fail(path.error().message);
      auto used = store::ScanMaildirUsage(cfg->data_dir + "/mail/" + path->domain +
                                          "/" + path->local + "/Maildir");
      if (!used) return Fail(used.error().message);
      std::cout << account << " quota: "
                << (limit == 0 ? std::string("unlimited") : std::to_string(limit))
                << (own ? " (own)" : " (default)") << " used: " << *used << "\n";
      return 0;
    };
  });

  auto* alias_cmd = app.add_subcommand("alias", "manage aliases");
  alias_cmd->require_subcommand(1);
  auto* alias_add = alias_cmd->add_subcommand(
      "add", "add an alias (ALIAS may be @domain for a catch-all)");
  alias_add->add_option("alias", alias, "local@domain or @domain")->required();
  alias_add->add_option("targets", targets, "TARGET[,TARGET...]")->required();
  alias_add->callback([&] {
    action = [&] {
      std::vector<std::string> list;
      for (const std::string& arg : targets) {
        for (const std::string& part : Split(arg, ',')) {
          std::string_view target = Trim(part);
          if (!target.empty()) list.emplace_back(target);
        }
      }
      if (list.empty()) return Fail("alias needs at least one target");
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      if (auto ok = (*dir)->AddAlias(alias, list); !ok) {
        return Fail(ok.error().message);
      }
      std::string joined;
      for (const std::string& target : list) {
        joined += (joined.empty() ? "" : ", ") + target;
      }
      std::cout << "added alias " << Canonical(alias) << " -> " << joined
                << "\n";
      return 0;
    };
  });
  auto* alias_del = alias_cmd->add_subcommand("del", "delete an alias");
  alias_del->add_option("alias", alias, "local@domain or @domain")->required();
  alias_del->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      if (auto ok = (*dir)->DeleteAlias(alias); !ok) {
        return Fail(ok.error().message);
      }
      std::cout << "deleted alias " << alias << "\n";
      return 0;
    };
  });
  auto* alias_list = alias_cmd->add_subcommand("list", "list aliases");
  alias_list->callback([&] {
    action = [&] {
      auto dir = OpenDirectory(options);
      if (!dir) return Fail(dir.error().message);
      auto aliases = (*dir)->ListAliases();
      if (!aliases) return Fail(aliases.error().message);
      for (const auth::Alias& entry : *aliases) {
        std::string joined;
        for (const std::string& target : entry.targets) {
          joined += (joined.empty() ? "" : ", ") + target;
        }
        std::cout << entry.alias << " -> " << joined << "\n";
      }
      return 0;
    };
  });

  auto* queue_cmd =
      app.add_subcommand("queue", "inspect and control the mail queue");
  queue_cmd->require_subcommand(1);
  auto* queue_list = queue_cmd->add_subcommand("list", "list queued messages");
  queue_list->add_flag("--json", json, "print JSON instead of a table");
  queue::ListFilter list_filter;
  std::string older_than, newer_than;
  queue_list->add_option("--limit", list_filter.limit,
                         "at most this many messages (0: all)");
  queue_list->add_option("--after", list_filter.after,
                         "only messages after this queue id (the next page)");
  queue_list->add_option("--sender", list_filter.sender,
                         "sender address contains this (<> for the null sender)");
  queue_list->add_option("--recipient", list_filter.recipient,
                         "a waiting recipient's address contains this");
  queue_list->add_option("--domain", list_filter.domain,
                         "a waiting recipient is in this domain");
  queue_list->add_option("--older-than", older_than,
                         "received at least this long ago (90s, 15m, 2h, 3d)");
  queue_list->add_option("--newer-than", newer_than,
                         "received at most this long ago (90s, 15m, 2h, 3d)");
  queue_list->callback([&] {
    action = [&] {
      auto cfg = LoadConfig(options);
      if (!cfg) return Fail(cfg.error().message);
      queue::ListFilter filter = list_filter;
      if (!older_than.empty() && (filter.min_age = ParseAge(older_than)) < 0)
        return Fail("--older-than: not a duration: " + older_than);
      if (!newer_than.empty() && (filter.max_age = ParseAge(newer_than)) < 0)
        return Fail("--newer-than: not a duration: " + newer_than);
      if (!filter.after.empty() && !queue::IsValidQueueId(filter.after))
        return Fail("--after: not a queue id: " + filter.after);
      if (!filter.domain.empty() && filter.domain[0] == '@')
        filter.domain.erase(0, 1);
      const bool filtered = !filter.after.empty() || !filter.sender.empty() ||
                            !filter.recipient.empty() || !filter.domain.empty() ||
                            filter.min_age >= 0 || filter.max_age >= 0;
      int64_t now = static_cast<int64_t>(std::time(nullptr));
      filter.now = now;
      // Streamed: the first lines appear while later messages are read.
      QueueTable table(now);
      std::string last_id;
      if (json) std::cout << "[";
      auto listed = queue::ListEach(cfg->data_dir, filter, [&](queue::Entry& e) {
        if (json) {
          PrintQueueJsonEntry(e, now, last_id.empty());
          if (last_id.empty()) std::cout.flush();
        } else {
          table.Add(e);
        }
        last_id = e.envelope.id;
        return true;
      });
      if (json) {
        std::cout << (last_id.empty() ? "]\n" : "\n]\n");
      } else if (last_id.empty()) {
        std::cout << (filtered ? "No matching messages\n" : "Queue is empty\n");
      } else {
        table.Flush();
      }
      std::cout.flush();
      if (!listed) return Fail(listed.error().message);
      if (filter.limit > 0 && *listed == filter.limit) {
        // stderr, so that scripts reading JSON are not disturbed.
        std::cerr << "(limit reached; next page: --after " << last_id << ")\n";
      }
      return 0;
    };
  });
  // `queue show` reads the spool; the rest act through the running server.
  std::string queue_id;
  auto* queue_show =
      queue_cmd->add_subcommand("show", "envelope, header and attempts of one message");
  queue_show->add_option("id", queue_id, "queue id")->required();
  queue_show->callback([&] {
    action = [&] {
      auto cfg = LoadConfig(options);
      if (!cfg) return Fail(cfg.error().message);
      return QueueShow(cfg->data_dir, queue_id);
    };
  });
  struct ControlVerb {
    const char* name;
    const char* help;
    bool needs_id;
  };
  static constexpr ControlVerb kControlVerbs[] = {
      {"flush", "retry every waiting message now", false},
      {"retry", "retry one message now", true},
      {"hold", "keep a message from being delivered", true},
      {"release", "let a held message be delivered again", true},
      {"delete", "remove a message without notice", true},
      {"bounce", "fail a message now, with a DSN to its sender", true},
  };
  for (const ControlVerb& verb : kControlVerbs) {
    auto* sub = queue_cmd->add_subcommand(verb.name, verb.help);
    if (verb.needs_id) sub->add_option("id", queue_id, "queue id")->required();
    sub->callback([&, name = std::string(verb.name)] {
      action = [&, name] {
        auto cfg = LoadConfig(options);
        if (!cfg) return Fail(cfg.error().message);
        return QueueControl(cfg->data_dir, name, queue_id);
      };
    });
  }

  // `tern check ...`: mail authentication from the shell, one file each.
  CLI::App* check = app.add_subcommand("check", "check mail authentication and DNS records");
  check->require_subcommand(1);
  RegisterCheckSpf(check, [&options] { return LoadConfig(options); }, &action);
  RegisterCheckMessage(check, [&options] { return LoadConfig(options); }, &action);
  RegisterDkimCommands(app, *check, [&] { return LoadConfig(options); },
                       &action);
  RegisterArcCommands(app, *check, [&] { return LoadConfig(options); },
                      &action);
  RegisterSetupCommands(app, *check, [&] { return LoadConfig(options); },
                        [&] { return options.config_path; }, &action);

  RegisterTraceCommand(app, [&] { return LoadConfig(options); }, &action);
  RegisterReportCommands(app, [&] { return LoadConfig(options); }, &action);
  RegisterReportTlsCommand(app, [&] { return LoadConfig(options); }, &action);

  // Only for --help: the real dispatch happens in FindSendmail above.
  app.add_subcommand("sendmail",
                     "submit a message from stdin like sendmail(8): "
                     "[-t] [-i] [-f SENDER] [-oi] [RCPT...]");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);  // prints the version line, exit status 0
  } catch (const CLI::ParseError& e) {
    std::cerr << "tern: " << e.what() << "\n"
              << "Run 'tern --help' for usage.\n";
    return 1;
  }
  if (!action) return Fail("nothing to do");
  SetUpLogging("warn");
  return action();
}

}  // namespace
}  // namespace tern::cli

int main(int argc, char** argv) {
  try {
    return tern::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "tern: " << e.what() << "\n";
    return 1;
  }
}
