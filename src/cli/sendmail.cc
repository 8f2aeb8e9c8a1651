// `tern sendmail`: reads a message on stdin and queues it. The message goes
// through the same SMTP session state machine as network mail (from a
// trusted local client), so it is refused for the same reasons with the
// same reply text, and is then written durably into the queue's incoming
// folder for the running server to pick up.
#include "cli/sendmail.h"

#include <pwd.h>
#include <sysexits.h>
#include <unistd.h>

#include <ctime>
#include <iostream>
#include <iterator>
#include <random>

#include "auth/directory.h"
#include "common/strings.h"
#include "mailauth/dkim_keys.h"
#include "mailauth/outbound_signer.h"
#include "policy/recipient.h"
#include "queue/queue.h"
#include "queue/queue_id.h"
#include "smtp/protocol/session.h"
#include "smtp/server/envelope.h"

namespace tern::cli {
namespace {

struct Options {
  bool from_headers = false;  // -t
  bool ignore_dots = false;   // -i / -oi
  std::string sender;         // -f
  bool sender_given = false;
  std::vector<std::string> recipients;
};

Result<Options> ParseArgs(const std::vector<std::string>& args) {
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      for (++i; i < args.size(); ++i) o.recipients.push_back(args[i]);
      break;
    }
    if (a.empty() || a[0] != '-') {
      o.recipients.push_back(a);
      continue;
    }
    if (a == "-t") {
      o.from_headers = true;
    } else if (a == "-i" || a == "-oi") {
      o.ignore_dots = true;
    } else if (a == "-f" || a == "-r") {
      if (++i >= args.size()) return Err(a + " needs an address");
      o.sender = args[i];
      o.sender_given = true;
    } else if (a.rfind("-f", 0) == 0 || a.rfind("-r", 0) == 0) {
      o.sender = a.substr(2);
      o.sender_given = true;
    } else if (a == "-F" || a == "-O" || a == "-o" || a == "-B" || a == "-N" ||
               a == "-R" || a == "-V" || a == "-L") {
      ++i;  // options with a separate value that do not change delivery here
    } else if (a.rfind("-o", 0) == 0 || a.rfind("-F", 0) == 0 ||
               a.rfind("-B", 0) == 0 || a.rfind("-N", 0) == 0 ||
               a.rfind("-R", 0) == 0 || a.rfind("-O", 0) == 0 ||
               a.rfind("-V", 0) == 0 || a.rfind("-L", 0) == 0 || a == "-bm" ||
               a == "-v" || a == "-m" || a == "-em" || a == "-ep" || a == "-eq" ||
               a == "-U") {
      // Accepted and ignored, as other sendmail implementations do.
    } else {
      return Err("unsupported option " + a);
    }
  }
  // A sender given as "<addr>" is common in scripts.
  if (o.sender.size() >= 2 && o.sender.front() == '<' && o.sender.back() == '>') {
    o.sender = o.sender.substr(1, o.sender.size() - 2);
  }
  return o;
}

// Reads stdin as the message: LF or CRLF line ends in, CRLF out. Without
// -i a line holding a single "." ends the input, as sendmail always did.
std::string ReadMessage(bool ignore_dots) {
  std::string in((std::istreambuf_iterator<char>(std::cin)),
                 std::istreambuf_iterator<char>());
  std::string out;
  out.reserve(in.size() + in.size() / 40 + 2);
  size_t pos = 0;
  while (pos < in.size()) {
    size_t nl = in.find('\n', pos);
    std::string_view line(in.data() + pos,
                          (nl == std::string::npos ? in.size() : nl) - pos);
    pos = nl == std::string::npos ? in.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!ignore_dots && line == ".") break;
    // A stray CR inside a line cannot be sent over SMTP (RFC 5321 2.3.8).
    std::string clean(line);
    for (char& c : clean) {
      if (c == '\r') c = ' ';
    }
    out += clean;
    out += "\r\n";
  }
  return out;
}

// Headers of the message as (name, value) with the end of the header block.
struct Header {
  std::string name;
  std::string value;  // unfolded
  size_t begin = 0, end = 0;
};

std::vector<Header> ParseHeaders(const std::string& msg, size_t* body_start) {
  std::vector<Header> out;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t eol = msg.find("\r\n", pos);
    if (eol == std::string::npos) eol = msg.size();
    std::string_view line(msg.data() + pos, eol - pos);
    size_t next = std::min(msg.size(), eol + 2);
    if (line.empty()) {
      *body_start = next;
      return out;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().value += " ";
      out.back().value += std::string(Trim(line));
      out.back().end = next;
    } else {
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) {  // not a header: body starts
        *body_start = pos;
        return out;
      }
      out.push_back({std::string(Trim(line.substr(0, colon))),
                     std::string(Trim(line.substr(colon + 1))), pos, next});
    }
    pos = next;
  }
  *body_start = msg.size();
  return out;
}

// Addresses from an address-list header (To/Cc/Bcc): "<a@b>" parts, or
// bare comma-separated addresses; comments and quoted names skipped.
std::vector<std::string> AddressesOf(const std::string& value) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  bool quoted = false;
  auto flush = [&] {
    std::string_view t = Trim(cur);
    size_t lt = t.rfind('<');
    size_t gt = t.rfind('>');
    if (lt != std::string_view::npos && gt != std::string_view::npos && gt > lt) {
      t = t.substr(lt + 1, gt - lt - 1);
    } else if (size_t sp = t.rfind(' '); sp != std::string_view::npos) {
      t = t.substr(sp + 1);
    }
    if (t.find('@') != std::string_view::npos) out.emplace_back(t);
    cur.clear();
  };
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (quoted) {
      if (c == '\\' && i + 1 < value.size()) {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (depth > 0) --depth;
    } else if (depth == 0) {
      if (c == ',' || c == ';') {
        flush();
      } else if (c == ':' && cur.find('<') == std::string::npos) {
        cur.clear();  // group name "team: a@b, c@d;"
      } else {
        cur += c;
      }
    }
  }
  flush();
  return out;
}

// A bare login name ("root", cron's MAILTO) means that user on this
// machine, as with every sendmail: the first local domain, where the
// directory routes system users to the postmaster.
std::string Qualify(const std::string& address, const config::Config& cfg) {
  if (address.empty() || address.find('@') != std::string::npos) return address;
  return address + "@" +
         (cfg.domains.empty() ? cfg.hostname : cfg.domains.front());
}

std::string DefaultSender(const config::Config& cfg) {
  std::string user = "root";
  if (struct passwd* pw = getpwuid(getuid())) user = pw->pw_name;
  return Qualify(user, cfg);
}

// The session's surroundings for local submission: the message is kept in
// memory and injected into the queue's incoming folder on commit.
class LocalHost : public smtp::SessionHost {
 public:
  LocalHost(auth::Directory& dir, const config::Config& cfg)
      : dir_(dir), cfg_(cfg) {}

  smtp::RcptVerdict CheckRecipient(const smtp::Transaction& t,
                                   const smtp::Mailbox& rcpt) override {
    return policy::CheckRecipient(dir_, client_, rcpt);
  }
  std::string BeginMessage(const smtp::Transaction& t) override {
    env_ = smtp::MakeEnvelope(t, client_, static_cast<int64_t>(std::time(nullptr)));
    // Local submission: the login name stands where SMTP AUTH would.
    if (struct passwd* pw = getpwuid(getuid())) env_.auth_user = pw->pw_name;
    data_.clear();
    env_.id = queue::NewQueueId();  // Inject keeps it: Received: names it
    return env_.id;
  }
  bool MessageData(std::string_view d) override {
    data_.append(d);
    return true;
  }
  void AbortMessage() override { data_.clear(); }
  std::string Now() override { return Rfc5322Date(std::time(nullptr)); }

  const smtp::ClientInfo& client() const { return client_; }
  queue::Envelope& envelope() { return env_; }
  const std::string& data() const { return data_; }

 private:
  auth::Directory& dir_;
  const config::Config& cfg_;
  smtp::ClientInfo client_{"127.0.0.1", 0, "127.0.0.1", 0, false, "", true};
  queue::Envelope env_;
  std::string data_;
};

bool NonAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return true;
  }
  return false;
}

// Sends one command through the session; returns the reply.
std::string Exchange(smtp::Session& s, const std::string& line) {
  s.output().clear();
  s.Feed(line);
  std::string r = s.output();
  s.output().clear();
  while (!r.empty() && (r.back() == '\n' || r.back() == '\r')) r.pop_back();
  return r;
}

int Fail(const std::string& reply) {
  std::cerr << "tern sendmail: " << reply << "\n";
  if (reply.find("5.1.1") != std::string::npos) return EX_NOUSER;
  if (!reply.empty() && reply[0] == '4') return EX_TEMPFAIL;
  return EX_DATAERR;
}

}  // namespace

int Sendmail(const config::Config& cfg, const std::vector<std::string>& args) {
  auto opts = ParseArgs(args);
  if (!opts) {
    std::cerr << "tern sendmail: " << opts.error().message << "\n";
    return EX_USAGE;
  }
  std::string msg = ReadMessage(opts->ignore_dots);

  size_t body_start = 0;
  auto headers = ParseHeaders(msg, &body_start);
  std::vector<std::string> rcpts = opts->recipients;
  if (opts->from_headers) {
    // -t: recipients come from To/Cc/Bcc, and Bcc is removed from the copy.
    std::string kept;
    size_t last = 0;
    for (const auto& h : headers) {
      if (IEquals(h.name, "To") || IEquals(h.name, "Cc") || IEquals(h.name, "Bcc")) {
        for (auto& a : AddressesOf(h.value)) rcpts.push_back(a);
      }
      if (IEquals(h.name, "Bcc")) {
        kept.append(msg, last, h.begin - last);
        last = h.end;
      }
    }
    kept.append(msg, last, std::string::npos);
    msg = std::move(kept);
    headers = ParseHeaders(msg, &body_start);
  }
  if (rcpts.empty()) {
    std::cerr << "tern sendmail: no recipients\n";
    return EX_USAGE;
  }
  std::string sender =
      opts->sender_given ? Qualify(opts->sender, cfg) : DefaultSender(cfg);

  // Headers a message must have (RFC 5322 3.6): From and Date; Message-ID
  // is added as submission servers do (RFC 6409 8).
  bool has_from = false, has_date = false, has_id = false;
  for (const auto& h : headers) {
    has_from |= IEquals(h.name, "From");
    has_date |= IEquals(h.name, "Date");
    has_id |= IEquals(h.name, "Message-ID");
  }
  std::string add;
  if (!has_from) add += "From: " + (sender.empty() ? DefaultSender(cfg) : sender) + "\r\n";
  if (!has_date) add += "Date: " + Rfc5322Date(std::time(nullptr)) + "\r\n";
  if (!has_id) {
    std::random_device rd;
    char id[64];
    snprintf(id, sizeof id, "%lld.%08x%08x", static_cast<long long>(std::time(nullptr)),
             rd(), rd());
    add += std::string("Message-ID: <") + id + "@" + cfg.hostname + ">\r\n";
  }
  msg = add + msg;

  auto dir = auth::Directory::Open(cfg.data_dir + "/tern.db", cfg.domains,
                                   auth::LocalRouting::FromSystem(cfg.postmaster));
  if (!dir) {
    std::cerr << "tern sendmail: " << dir.error().message << "\n";
    return EX_TEMPFAIL;
  }
  smtp::SessionConfig scfg;
  scfg.hostname = cfg.hostname;
  scfg.max_message_size = cfg.smtp.max_message_size;
  scfg.max_recipients = cfg.smtp.max_recipients;
  scfg.max_errors = 1000;
  scfg.command_line_limit = cfg.smtp.command_line_limit;
  scfg.text_line_limit = cfg.smtp.text_line_limit;
  scfg.max_received_headers = cfg.smtp.max_received_headers;
  LocalHost host(**dir, cfg);
  smtp::Session session(scfg, host, host.client());
  session.Greet();
  session.output().clear();

  bool utf8 = NonAscii(sender) || NonAscii(msg);
  for (const auto& r : rcpts) utf8 |= NonAscii(r);
  std::string reply = Exchange(session, "EHLO localhost\r\n");
  if (reply.rfind("250", 0) != 0) return Fail(reply);
  std::string mail = "MAIL FROM:<" + sender + ">";
  if (NonAscii(msg)) mail += " BODY=8BITMIME";
  if (utf8) mail += " SMTPUTF8";
  reply = Exchange(session, mail + "\r\n");
  if (reply.rfind("250", 0) != 0) return Fail(reply);
  for (const auto& r : rcpts) {
    std::string addr = r;
    if (addr.size() >= 2 && addr.front() == '<' && addr.back() == '>') {
      addr = addr.substr(1, addr.size() - 2);
    }
    addr = Qualify(addr, cfg);
    reply = Exchange(session, "RCPT TO:<" + addr + ">\r\n");
    if (reply.rfind("250", 0) != 0) return Fail(reply);
  }
  reply = Exchange(session, "DATA\r\n");
  if (reply.rfind("354", 0) != 0) return Fail(reply);
  // Dot-stuff (RFC 5321 4.5.2) and terminate.
  std::string wire;
  wire.reserve(msg.size() + 16);
  size_t pos = 0;
  while (pos < msg.size()) {
    if (msg[pos] == '.') wire += '.';
    size_t eol = msg.find("\r\n", pos);
    size_t next = eol == std::string::npos ? msg.size() : eol + 2;
    wire.append(msg, pos, next - pos);
    pos = next;
  }
  wire += ".\r\n";
  session.output().clear();
  session.Feed(wire);
  if (session.need() != smtp::Need::kCommit) {
    reply = session.output();
    while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r')) reply.pop_back();
    return Fail(reply);
  }
  // DKIM signatures for our domains (the same as the server adds for its
  // authenticated clients), when this user may read the keys.
  if (cfg.mailauth.sign) {
    if (auto keys = mailauth::LoadAllDkimSigningKeys(cfg.data_dir); keys && !keys->empty()) {
      mailauth::OutboundSigner signer(*keys, static_cast<int64_t>(std::time(nullptr)));
      signer.Feed(host.data());
      if (auto signatures = signer.Finish(); signatures) {
        host.envelope().prepend = std::move(*signatures);
      } else {
        std::cerr << "tern sendmail: not DKIM-signed: " << signatures.error().message << "\n";
      }
    }
  }
  auto id = queue::Inject(cfg.data_dir, host.envelope(), host.data());
  if (!id) {
    // The session's 451/452 is in its output (Exchange() would clear it
    // first, leaving no code: the failure then looked permanent, EX_DATAERR,
    // to the caller instead of EX_TEMPFAIL).
    session.output().clear();
    session.Committed(false, id.error().NoSpace());
    reply = session.output();
    while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r')) reply.pop_back();
    return Fail(reply + " (" + id.error().message + ")");
  }
  return 0;
}

}  // namespace tern::cli
