// The MTA side of the Sendmail milter protocol over sockets: one SMTP
// connection's conversations with the configured mail filters (rspamd,
// spamass-milter, clamav-milter), in order, with their timeouts and
// on_error policy. The wire format is milter_protocol.h.
//
// When each event is sent. A filter is connected at the client's first
// MAIL FROM (connect and HELO events then, with their macros), asked about
// MAIL and each RCPT as they come, so a refusal reaches the client in the
// reply to that command; the message itself (DATA, header fields, end of
// headers, body, end of body) goes to one filter after the other once it
// is complete, each filter seeing the message as the filters before it
// left it (Postfix shows every filter the message as received). A
// filter's changes are kept aside until its final reply to the end of the
// body: a filter that dies or times out mid-message changes nothing.
//
// Failures (no connection, a timeout, a broken packet, a reply the
// protocol does not allow at that point) follow the filter's on_error:
// "tempfail" refuses with 451 4.7.1 (the client retries), "reject" with
// 550 5.7.1, "accept" carries on without that filter. A failed filter is
// dropped for the rest of the connection's current transaction and
// connected again at the next MAIL FROM.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio.hpp>

#include "antispam/milter_message.h"
#include "antispam/milter_protocol.h"
#include "config/config.h"

namespace tern::antispam {

// What the filters are told about the SMTP connection (sendmail macros).
struct MilterConnectionInfo {
  std::string hostname;     // j: our host name
  std::string daemon_name;  // {daemon_name}: the listener ("smtp", "submission")
  std::string daemon_addr;  // {daemon_addr}
  std::string client_addr;  // {client_addr}
  uint16_t client_port = 0;
  std::string client_name;  // {client_name}: "[ip]" (no reverse lookup)
  std::string helo;
  std::string tls_version;  // {tls_version}, empty without TLS
  std::string cipher;       // {cipher}
  std::string auth_type;    // {auth_type}: the SASL mechanism
  std::string auth_authen;  // {auth_authen}: the login
};

// The verdict on one event.
struct MilterVerdict {
  enum class Kind {
    kContinue,  // go on (also: every filter accepted)
    kRefuse,    // `reply` (4xx or 5xx) ends this command, or the message
    kDiscard,   // accept the message with a 250 and drop it
  };
  Kind kind = Kind::kContinue;
  std::string reply;  // kRefuse: full reply, lines joined by CRLF, no final CRLF
  bool temporary() const { return !reply.empty() && reply[0] == '4'; }
};

// What the filters did to a message at its end.
struct MilterResult {
  MilterVerdict verdict;
  bool changed_text = false;      // header fields or body changed
  bool changed_envelope = false;  // sender or recipients changed
  std::string quarantine;         // non-empty: hold the message, this reason
  // A filter marked the message as spam with a header field it added or
  // changed ("X-Spam: Yes" from rspamd, "X-Spam-Flag: YES" from
  // SpamAssassin): it goes to the Junk folder. Fields the message came
  // with do not count.
  bool spam = false;
  std::vector<std::string> log;   // what each filter did, for the log
};

class MilterChain {
 public:
  MilterChain(const std::vector<config::MilterConfig>& filters, MilterConnectionInfo info);
  ~MilterChain();
  MilterChain(const MilterChain&) = delete;
  MilterChain& operator=(const MilterChain&) = delete;

  bool empty() const { return filters_.empty(); }
  // The SMTP session learnt something (TLS after STARTTLS, AUTH).
  MilterConnectionInfo& info() { return info_; }

  // MAIL FROM: connects filters not connected yet (sending connect and
  // HELO), aborts a transaction a filter still has open, then sends MAIL.
  asio::awaitable<MilterVerdict> Mail(std::string sender, std::vector<std::string> args);
  // RCPT TO (a refusal refuses this recipient only).
  asio::awaitable<MilterVerdict> Rcpt(std::string rcpt, std::vector<std::string> args);
  // The whole message: DATA to end of body, filter after filter. `message`
  // is changed in place by the filters' accepted modifications.
  asio::awaitable<MilterResult> Message(MilterMessage& message, std::string queue_id);
  // A transaction that ended without its message (RSET, a refusal) is
  // aborted at each filter by the next Mail().
  // Sends QUIT to every connected filter without waiting, and closes them.
  void Quit();

  struct Filter;  // one configured filter and its connection (the .cc)

 private:
  std::vector<std::unique_ptr<Filter>> filters_;
  MilterConnectionInfo info_;
  bool discard_ = false;  // a filter discarded the transaction already
};

}  // namespace tern::antispam
