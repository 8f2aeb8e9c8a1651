// Builds RFC 3464 reports. The text parts are ours; the machine-readable
// part follows RFC 3464 2.2 (per-message) and 2.3 (per-recipient) fields.
#include "queue/dsn.h"

#include <algorithm>

#include "common/strings.h"

namespace tern::queue {
namespace {

// A report returning more than this carries only the header section.
constexpr size_t kMaxReturned = 10u << 20;
// Keeps every generated line under RFC 5322 2.1.1's 998 octets.
constexpr size_t kMaxFieldText = 900;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Fields of message/delivery-status are US-ASCII (RFC 3464 2.1.1): no
// control characters, no 8-bit, bounded length.
std::string Clean(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, std::min(text.size(), kMaxFieldText))) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u > 0x7e) ? '?' : c;
  }
  return out;
}

bool HasCode(std::string_view text) {
  return text.size() >= 3 && IsDigit(text[0]) && IsDigit(text[1]) &&
         IsDigit(text[2]) && (text.size() == 3 || text[3] == ' ');
}

// "rfc822;user@x" as received -> "rfc822; user@x" (RFC 3464 2.3.1 form).
std::string OriginalRecipient(const std::string& orcpt) {
  size_t semi = orcpt.find(';');
  if (semi == std::string::npos) return "";
  return Clean(orcpt.substr(0, semi)) + "; " + Clean(orcpt.substr(semi + 1));
}

}  // namespace

std::string StatusOf(std::string_view text, std::string_view fallback) {
  // Look for "X.Y.Z" at the start or after the reply code.
  std::string_view rest = text;
  int code_class = 0;
  if (HasCode(text)) {
    code_class = text[0] - '0';
    rest = text.size() > 4 ? text.substr(4) : std::string_view();
  }
  size_t end = rest.find(' ');
  std::string_view word = rest.substr(0, end);
  std::vector<std::string> parts = Split(word, '.');
  bool enhanced = parts.size() == 3 && parts[0].size() == 1 &&
                  (parts[0] == "2" || parts[0] == "4" || parts[0] == "5");
  for (const std::string& p : parts) {
    if (p.empty() || p.size() > 3 ||
        !std::all_of(p.begin(), p.end(), IsDigit)) {
      enhanced = false;
    }
  }
  if (enhanced && (code_class == 0 || parts[0][0] - '0' == code_class))
    return std::string(word);
  if (code_class == 5) return "5.0.0";
  if (code_class == 4) return "4.0.0";
  if (code_class == 2) return "2.0.0";
  return std::string(fallback);
}

std::string_view HeaderSection(std::string_view message) {
  if (message.starts_with("\r\n")) return message.substr(0, 2);
  size_t end = message.find("\r\n\r\n");
  if (end == std::string_view::npos) return message;
  return message.substr(0, end + 4);
}

Envelope DsnEnvelope(const DsnInput& in) {
  Envelope env;
  env.sender = "";
  env.recipients.push_back(Recipient{
      in.postmaster.empty() ? in.original.sender : in.postmaster, "", ""});
  // The report may carry the original 8-bit or UTF-8 content.
  env.body = in.original.body;
  env.smtputf8 = in.original.smtputf8;
  env.received_at = in.now;
  return env;
}

std::string BuildDsn(const DsnInput& in) {
  bool any_failed = false;
  bool any_delayed = false;
  for (const DsnRecipient& r : in.recipients) {
    any_failed |= r.action == "failed";
    any_delayed |= r.action == "delayed";
  }
  const Envelope& env = in.original;
  const bool double_bounce = !in.postmaster.empty();
  const std::string boundary = env.id + "/" + in.reporting_mta;
  std::string subject = double_bounce ? "Postmaster notify: undeliverable bounce"
                        : any_failed  ? "Undelivered Mail Returned to Sender"
                        : any_delayed ? "Delayed Mail (still being retried)"
                                      : "Successful Mail Delivery Report";
  std::string m;
  auto line = [&m](std::string_view text) {
    m.append(text);
    m += "\r\n";
  };
  line("From: Mail Delivery System <MAILER-DAEMON@" + in.reporting_mta + ">");
  line("To: <" + Clean(double_bounce ? in.postmaster : env.sender) + ">");
  line("Subject: " + subject);
  line("Date: " + Rfc5322Date(in.now));
  line("Message-ID: <" + env.id + ".dsn." + std::to_string(in.now) + "@" +
       in.reporting_mta + ">");
  // RFC 3834 5: automatic replies must not trigger more of them.
  line("Auto-Submitted: auto-replied");
  line("MIME-Version: 1.0");
  line("Content-Type: multipart/report; report-type=delivery-status;");
  line("\tboundary=\"" + boundary + "\"");
  line("");
  line("This is a MIME-encapsulated message.");
  line("");

  // 1. The human-readable part.
  line("--" + boundary);
  line("Content-Type: text/plain; charset=us-ascii");
  line("Content-Description: Notification");
  line("");
  line("This is the mail system at " + in.reporting_mta + ".");
  line("");
  if (double_bounce) {
    // Postfix's 2bounce notice: a report that had nowhere to go.
    line("A message with the null sender <> (a bounce or other delivery");
    line("report) could not be delivered, and there is no sender to return");
    line("it to. The reason given for each recipient is below; the message");
    line("is attached.");
  } else if (any_failed) {
    line("Your message could not be delivered to one or more recipients.");
    line("The reason given for each is below; the message is attached.");
  } else if (any_delayed) {
    line("Your message has not been delivered to one or more recipients");
    line("yet. Nothing needs to be done: delivery will be retried until");
    line(Rfc5322Date(in.retry_until) + ".");
  } else {
    line("Your message was delivered, or passed on to a mail system that");
    line("does not report delivery, for these recipients (as you asked).");
  }
  if (env.requiretls) {
    line("");
    line("The message was sent with REQUIRETLS, so none of it is attached:");
    line("this report need not travel over verified TLS (RFC 8689 5).");
  }
  line("");
  for (const DsnRecipient& r : in.recipients) {
    line("<" + Clean(r.address) + ">: " + r.action);
    if (!r.diagnostic.empty()) {
      line("    " + (r.remote_mta.empty() ? std::string()
                                           : Clean(r.remote_mta) + " said: ") +
           Clean(r.diagnostic));
    }
  }
  line("");

  // 2. The machine-readable part, RFC 3464 2.2 and 2.3.
  line("--" + boundary);
  line("Content-Type: message/delivery-status");
  line("Content-Description: Delivery report");
  line("");
  line("Reporting-MTA: dns; " + in.reporting_mta);
  line("X-Tern-Queue-ID: " + env.id);
  if (!env.envid.empty()) line("Original-Envelope-Id: " + Clean(env.envid));
  if (!env.sender.empty()) line("X-Original-Sender: rfc822; " + Clean(env.sender));
  if (env.received_at > 0) line("Arrival-Date: " + Rfc5322Date(env.received_at));
  for (const DsnRecipient& r : in.recipients) {
    line("");
    if (!r.orcpt.empty()) {
      std::string orig = OriginalRecipient(r.orcpt);
      if (!orig.empty()) line("Original-Recipient: " + orig);
    }
    line("Final-Recipient: rfc822; " + Clean(r.address));
    line("Action: " + r.action);
    line("Status: " + r.status);
    if (!r.remote_mta.empty()) line("Remote-MTA: dns; " + Clean(r.remote_mta));
    if (!r.diagnostic.empty()) {
      line(std::string("Diagnostic-Code: ") +
           (HasCode(r.diagnostic) ? "smtp; " : "x-tern; ") +
           Clean(r.diagnostic));
    }
    if (r.last_attempt > 0)
      line("Last-Attempt-Date: " + Rfc5322Date(r.last_attempt));
    if (r.action == "delayed" && in.retry_until > 0)
      line("Will-Retry-Until: " + Rfc5322Date(in.retry_until));
  }
  line("");

  // 3. The original message or its header (RFC 3462 text/rfc822-headers).
  // RFC 8689 5: a report about a REQUIRETLS message would have to travel
  // under REQUIRETLS too, unless it is redacted; it is redacted: nothing of
  // the original comes back (RFC 6522 3: the third part is optional).
  if (env.requiretls) {
    line("--" + boundary + "--");
    return m;
  }
  bool full = any_failed && !IEquals(env.ret, "HDRS") &&
              in.message.size() <= kMaxReturned;
  line("--" + boundary);
  if (full) {
    line("Content-Type: message/rfc822");
    line("Content-Description: Undelivered message");
    // RFC 2046 5.2.1: 7bit unless the original carries 8-bit octets.
    if (IEquals(env.body, "8BITMIME")) line("Content-Transfer-Encoding: 8bit");
    line("");
    m.append(in.message);
    if (!in.message.empty() && !in.message.ends_with("\r\n")) m += "\r\n";
  } else {
    line("Content-Type: text/rfc822-headers");
    line("Content-Description: Message header");
    line("");
    std::string_view headers = HeaderSection(in.message);
    m.append(headers);
    if (!headers.ends_with("\r\n")) m += "\r\n";
  }
  line("");
  line("--" + boundary + "--");
  return m;
}

}  // namespace tern::queue
