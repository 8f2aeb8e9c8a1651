// MilterChain: see milter_client.h.
#include "antispam/milter_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "common/result.h"
#include "common/strings.h"

// g++ 12 warns, wrongly, about mismatched new/delete of asio's coroutine
// frames (as in spf.cc and dnsbl.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace tern::antispam {

using Socket = asio::generic::stream_protocol::socket;
using Kind = MilterReply::Kind;

namespace {

constexpr char kVersionMacro[] = "Tern";

// What each configured failure costs (milter_client.h).
std::string OnErrorReply(const config::MilterConfig& cfg) {
  if (cfg.on_error == "reject") return "550 5.7.1 Mail filter unavailable, mail refused";
  if (cfg.on_error == "accept") return "";
  // RFC 3463 4.7.1: delivery not authorized, for now.
  return "451 4.7.1 Mail filter unavailable, try again later";
}

// The filter's 'y' reply as SMTP reply lines (the last with a space).
std::string ReplyText(const MilterReply& r) {
  std::string out;
  std::string code = std::to_string(r.code);
  for (size_t i = 0; i < r.lines.size(); ++i) {
    if (i) out += "\r\n";
    out += code + (i + 1 == r.lines.size() ? " " : "-") + r.lines[i];
  }
  if (r.lines.empty()) out = code;
  return out;
}

}  // namespace

// --- one filter ------------------------------------------------------------

struct MilterChain::Filter {
  config::MilterConfig cfg;
  std::shared_ptr<Socket> sock;
  MilterReader reader;
  MilterNegotiation neg;
  bool connected = false;  // negotiated; connect and HELO sent
  bool in_txn = false;     // MAIL sent, the transaction not finished
  bool skip_txn = false;   // accepted this transaction: no more events
  bool skip_conn = false;  // accepted at connect or HELO: none at all
  bool failed = false;     // failed in this transaction (on_error applied)
  std::string refused;     // its refusal of the connection, for every MAIL

  bool Active() const { return connected && !failed && !skip_txn && !skip_conn; }
  bool Wants(uint32_t no_bit) const { return (neg.protocol & no_bit) == 0; }
  bool Replies(uint32_t nr_bit) const { return (neg.protocol & nr_bit) == 0; }

  // Events the filter said it will not answer wait here and leave with
  // the next one it does answer (or end of body): one write instead of
  // one per event.
  std::string out;

  void Close() {
    out.clear();
    if (sock) {
      asio::error_code ec;
      sock->close(ec);
    }
    sock.reset();
    reader = MilterReader();
    connected = false;
    in_txn = false;
  }
};

namespace {

// The outcome of one exchange with a filter.
struct Step {
  enum class What { kContinue, kAccept, kRefuse, kDiscard, kSkip, kError };
  What what = What::kContinue;
  std::string reply;  // kRefuse
  std::string error;  // kError
};

// Arms a timer that cancels the filter's socket when it fires; disarmed
// (cancelled) when this goes out of scope.
class Watchdog {
 public:
  Watchdog(const asio::any_io_executor& ex, const std::shared_ptr<Socket>& sock,
           std::chrono::seconds after)
      : timer_(ex), fired_(std::make_shared<bool>(false)) {
    timer_.expires_after(after);
    timer_.async_wait([weak = std::weak_ptr<Socket>(sock), fired = fired_](asio::error_code ec) {
      if (ec) return;
      *fired = true;
      if (auto s = weak.lock()) {
        asio::error_code ignored;
        s->cancel(ignored);
      }
    });
  }
  ~Watchdog() { timer_.cancel(); }
  bool fired() const { return *fired_; }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<bool> fired_;
};

asio::awaitable<Result<void>> Send(MilterChain::Filter& f, const std::string& bytes) {
  if (!f.sock) co_return Err("not connected");
  auto ex = co_await asio::this_coro::executor;
  Watchdog dog(ex, f.sock, std::chrono::seconds(f.cfg.timeout));
  asio::error_code ec;
  co_await asio::async_write(*f.sock, asio::buffer(bytes),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (dog.fired()) co_return Err("timed out sending after " + std::to_string(f.cfg.timeout) + " s");
  if (ec) co_return Err("send: " + ec.message());
  co_return Result<void>{};
}

// The next packet from the filter, progress replies ('p') swallowed, each
// one restarting the timeout (libmilter smfi_progress).
asio::awaitable<Result<MilterReply>> Receive(MilterChain::Filter& f) {
  if (!f.sock) co_return Err("not connected");
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    while (f.reader.HasPacket()) {
      MilterPacket p = f.reader.Pop();
      auto reply = ParseMilterReply(p.command, p.data);
      if (!reply) co_return tl::unexpected(reply.error());
      if (reply->kind == Kind::kProgress) continue;
      co_return reply;
    }
    if (f.reader.failed()) co_return Err(f.reader.error());
    char buf[8192];
    asio::error_code ec;
    size_t n;
    bool fired;
    {
      Watchdog dog(ex, f.sock, std::chrono::seconds(f.cfg.timeout));
      n = co_await f.sock->async_read_some(asio::buffer(buf),
                                           asio::redirect_error(asio::use_awaitable, ec));
      fired = dog.fired();
    }
    if (fired) co_return Err("no reply within " + std::to_string(f.cfg.timeout) + " s");
    if (ec == asio::error::eof) co_return Err("the filter closed the connection");
    if (ec) co_return Err("receive: " + ec.message());
    if (!f.reader.Feed(std::string_view(buf, n))) co_return Err(f.reader.error());
    // A progress packet arriving restarts the wait: the loop starts a new
    // watchdog for each read.
  }
}

// The reply to an ordinary event (not end of body): what it means.
Step Interpret(const MilterReply& r, const char* event) {
  Step s;
  switch (r.kind) {
    case Kind::kContinue: s.what = Step::What::kContinue; break;
    case Kind::kAccept: s.what = Step::What::kAccept; break;
    case Kind::kSkip: s.what = Step::What::kSkip; break;
    case Kind::kDiscard: s.what = Step::What::kDiscard; break;
    case Kind::kReject:
      s.what = Step::What::kRefuse;
      s.reply = "550 5.7.1 Refused by the mail filter";
      break;
    case Kind::kTempFail:
      s.what = Step::What::kRefuse;
      s.reply = "451 4.7.1 Refused for now by the mail filter, try again later";
      break;
    case Kind::kReplyCode:
      s.what = Step::What::kRefuse;
      s.reply = ReplyText(r);
      break;
    case Kind::kConnFail:
    case Kind::kShutdown:
      // The filter gives up on this connection: treated as its failure.
      s.what = Step::What::kError;
      s.error = std::string("the filter ended the connection at ") + event;
      break;
    default:
      s.what = Step::What::kError;
      s.error = std::string("a reply not allowed in answer to ") + event;
      if (r.modification()) {
        s.error = std::string("a message change in answer to ") + event +
                  " (only allowed at end of body)";
      }
      break;
  }
  return s;
}

// The macros for `stage`: those the filter asked for in its negotiation
// (v6), else all of them; empty values are left out.
std::string Macros(const MilterNegotiation& neg, uint32_t stage, char command,
                   std::vector<MilterMacro> all) {
  for (const MilterMacroList& list : neg.macro_lists) {
    if (list.stage != stage) continue;
    std::erase_if(all, [&](const MilterMacro& m) {
      return std::find(list.names.begin(), list.names.end(), m.name) == list.names.end();
    });
  }
  std::erase_if(all, [](const MilterMacro& m) { return m.value.empty(); });
  if (all.empty()) return {};
  return EncodeMacros(command, all);
}

// g++ 12 destroys braced temporaries in coroutine bodies twice: every
// packet with a macro list and every aggregate holding a string is built
// here, outside the coroutines.
Step ErrorStep(std::string why) {
  Step s;
  s.what = Step::What::kError;
  s.error = std::move(why);
  return s;
}

MilterVerdict Refusal(std::string reply) {
  MilterVerdict v;
  v.kind = MilterVerdict::Kind::kRefuse;
  v.reply = std::move(reply);
  return v;
}

std::string ConnectPacket(const MilterNegotiation& neg, const MilterConnectionInfo& info) {
  std::string packet = Macros(
      neg, milter::kStageConnect, milter::kCmdConnect,
      {{std::string(milter::macro::kHostName), info.hostname},
       {std::string(milter::macro::kDaemonName), info.daemon_name},
       {std::string(milter::macro::kDaemonAddr), info.daemon_addr},
       {std::string(milter::macro::kVersion), kVersionMacro},
       {std::string(milter::macro::kClientAddr), info.client_addr},
       {std::string(milter::macro::kClientPort), std::to_string(info.client_port)},
       {std::string(milter::macro::kClientName), info.client_name},
       {std::string(milter::macro::kClientPtr), info.client_name}});
  char family = info.client_addr.find(':') != std::string::npos ? milter::kFamilyInet6
                                                                 : milter::kFamilyInet;
  return packet + EncodeConnect(info.client_name, family, info.client_port, info.client_addr);
}

std::string HeloPacket(const MilterNegotiation& neg, const MilterConnectionInfo& info) {
  return Macros(neg, milter::kStageHelo, milter::kCmdHelo,
                {{std::string(milter::macro::kTlsVersion), info.tls_version},
                 {std::string(milter::macro::kCipher), info.cipher}}) +
         EncodeHelo(info.helo);
}

std::string MailPacket(const MilterNegotiation& neg, const MilterConnectionInfo& info,
                       const std::string& sender, const std::vector<std::string>& args) {
  return Macros(neg, milter::kStageEnvFrom, milter::kCmdMail,
                {{std::string(milter::macro::kMailAddr), sender},
                 {std::string(milter::macro::kAuthType), info.auth_type},
                 {std::string(milter::macro::kAuthAuthen), info.auth_authen}}) +
         EncodeMail("<" + sender + ">", args);
}

std::string RcptPacket(const MilterNegotiation& neg, const std::string& rcpt,
                       const std::vector<std::string>& args) {
  return Macros(neg, milter::kStageEnvRcpt, milter::kCmdRcpt,
                {{std::string(milter::macro::kRcptAddr), rcpt}}) +
         EncodeRcpt("<" + rcpt + ">", args);
}

// The queue id macro before DATA, end of headers and end of body.
std::string IdMacro(const MilterNegotiation& neg, uint32_t stage, char command,
                    const std::string& id) {
  return Macros(neg, stage, command, {{std::string(milter::macro::kQueueId), id}});
}

// Sends one event (its macros first) and, unless the filter said it would
// not answer it, reads the answer.
asio::awaitable<Step> Event(MilterChain::Filter& f, std::string packet,
                                   uint32_t no_reply_bit, const char* event) {
  f.out += packet;
  if (!f.Replies(no_reply_bit)) co_return Step{};
  auto sent = co_await Send(f, f.out);
  f.out.clear();
  if (!sent) co_return ErrorStep(sent.error().message);
  auto reply = co_await Receive(f);
  if (!reply) co_return ErrorStep(reply.error().message);
  co_return Interpret(*reply, event);
}

// Connects, negotiates, and sends connect and HELO.
asio::awaitable<Step> Open(MilterChain::Filter& f, const MilterConnectionInfo& info) {
  f.Close();
  f.failed = false;
  f.skip_conn = false;
  f.refused.clear();
  auto ex = co_await asio::this_coro::executor;
  f.sock = std::make_shared<Socket>(ex);
  asio::error_code ec;
  {
    Watchdog dog(ex, f.sock, std::chrono::seconds(f.cfg.timeout));
    if (!f.cfg.path.empty()) {
      asio::local::stream_protocol::endpoint ep(f.cfg.path);
      co_await f.sock->async_connect(asio::generic::stream_protocol::endpoint(ep),
                                     asio::redirect_error(asio::use_awaitable, ec));
    } else {
      asio::ip::tcp::endpoint ep(asio::ip::make_address(f.cfg.host, ec), f.cfg.port);
      if (!ec) {
        co_await f.sock->async_connect(asio::generic::stream_protocol::endpoint(ep),
                                       asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    if (dog.fired()) co_return ErrorStep("connect timed out");
  }
  if (ec) co_return ErrorStep("connect: " + ec.message());
  if (f.cfg.path.empty()) {
    // Small packets, each waited for: without this, Nagle's algorithm
    // holds a packet back until the filter acknowledges the last one,
    // which it delays (40 ms per message with rspamd).
    f.sock->set_option(asio::ip::tcp::no_delay(true), ec);
  }

  // What Tern honours: every action, every protocol step except
  // SMFIP_RCPT_REJ (refused recipients are not shown) and the larger
  // data sizes (body chunks stay at 65,535 octets).
  constexpr uint32_t kActions = milter::kActAll;
  constexpr uint32_t kProtocol = milter::kProtoAll & ~milter::kProtoRcptRej;
  const std::string offer = EncodeOptNeg(milter::kVersion, kActions, kProtocol);
  auto sent = co_await Send(f, offer);
  if (!sent) co_return ErrorStep(sent.error().message);
  auto reply = co_await Receive(f);
  if (!reply) co_return ErrorStep(reply.error().message);
  if (reply->kind != Kind::kNegotiate) {
    co_return ErrorStep("no option negotiation reply");
  }
  if (auto ok = CheckMilterNegotiation(reply->negotiation, kActions, kProtocol); !ok) {
    co_return ErrorStep(ok.error().message);
  }
  f.neg = reply->negotiation;
  f.connected = true;

  // Connect.
  if (f.Wants(milter::kProtoNoConnect)) {
    std::string packet = ConnectPacket(f.neg, info);
    Step s = co_await Event(f, std::move(packet), milter::kProtoNrConnect, "connect");
    if (s.what == Step::What::kAccept) f.skip_conn = true;
    if (s.what != Step::What::kContinue && s.what != Step::What::kSkip) co_return s;
  }
  // HELO.
  if (f.Wants(milter::kProtoNoHelo) && !info.helo.empty()) {
    std::string packet = HeloPacket(f.neg, info);
    Step s = co_await Event(f, std::move(packet), milter::kProtoNrHelo, "HELO");
    if (s.what == Step::What::kAccept) f.skip_conn = true;
    if (s.what != Step::What::kContinue && s.what != Step::What::kSkip) co_return s;
  }
  co_return Step{};
}

// A failed filter: logged, closed, and its on_error as the verdict.
MilterVerdict Failed(MilterChain::Filter& f, const std::string& why, const char* stage) {
  spdlog::warn("milter {} failed at {}: {} (on_error={})", f.cfg.address, stage, why,
               f.cfg.on_error);
  f.Close();
  f.failed = true;
  MilterVerdict v;
  std::string reply = OnErrorReply(f.cfg);
  if (!reply.empty()) {
    v.kind = MilterVerdict::Kind::kRefuse;
    v.reply = std::move(reply);
  }
  return v;
}

// What a filter's answer to MAIL or RCPT (`what`, for the log) means for
// the chain. True when `*verdict` is to be given to the client now; false
// to go on with the next filter.
bool Settle(MilterChain::Filter& f, const Step& s, const char* stage, const std::string& what,
            bool* discard, MilterVerdict* verdict) {
  switch (s.what) {
    case Step::What::kError:
      *verdict = Failed(f, s.error, stage);
      return verdict->kind != MilterVerdict::Kind::kContinue;
    case Step::What::kAccept:
      f.skip_txn = true;
      return false;
    case Step::What::kDiscard:
      *discard = true;
      return false;
    case Step::What::kRefuse:
      spdlog::info("milter {} refused {}: {}", f.cfg.address, what, s.reply);
      *verdict = Refusal(s.reply);
      return true;
    default:
      return false;
  }
}

}  // namespace

// --- the chain ---------------------------------------------------------------

MilterChain::MilterChain(const std::vector<config::MilterConfig>& filters,
                         MilterConnectionInfo info)
    : info_(std::move(info)) {
  for (const config::MilterConfig& c : filters) {
    auto f = std::make_unique<Filter>();
    f->cfg = c;
    filters_.push_back(std::move(f));
  }
}

MilterChain::~MilterChain() { Quit(); }

void MilterChain::Quit() {
  for (auto& f : filters_) {
    if (f->sock && f->connected) {
      // Best effort and without waiting: a filter that does not read it
      // sees the close.
      std::string q = EncodeQuit();  // what waits in `out` is dropped
      asio::error_code ec;
      f->sock->non_blocking(true, ec);
      if (!ec) f->sock->write_some(asio::buffer(q), ec);
    }
    f->Close();
  }
}

asio::awaitable<MilterVerdict> MilterChain::Mail(std::string sender,
                                                 std::vector<std::string> args) {
  discard_ = false;
  for (auto& fp : filters_) {
    Filter& f = *fp;
    f.skip_txn = false;
    f.failed = false;
    if (!f.connected) {
      Step s = co_await Open(f, info_);
      if (s.what == Step::What::kError) {
        MilterVerdict v = Failed(f, s.error, "connect");
        if (v.kind != MilterVerdict::Kind::kContinue) co_return v;
        continue;
      }
      if (s.what == Step::What::kRefuse) {
        spdlog::info("milter {} refused the connection: {}", f.cfg.address, s.reply);
        f.refused = s.reply;
      }
      if (s.what == Step::What::kDiscard) f.skip_conn = true;
    }
    // A filter that refused the connection refuses each transaction.
    if (!f.refused.empty()) co_return Refusal(f.refused);
    if (!f.Active()) continue;
    if (f.in_txn) {
      // The last transaction ended without its message (RSET, a
      // refusal); no reply to it, so it goes with MAIL.
      f.out += EncodeAbort();
    }
    f.in_txn = true;
    if (!f.Wants(milter::kProtoNoMail)) continue;
    std::string packet = MailPacket(f.neg, info_, sender, args);
    Step s = co_await Event(f, std::move(packet), milter::kProtoNrMail, "MAIL");
    MilterVerdict v;
    if (Settle(f, s, "MAIL", "MAIL FROM:<" + sender + ">", &discard_, &v)) co_return v;
  }
  co_return MilterVerdict{};
}

asio::awaitable<MilterVerdict> MilterChain::Rcpt(std::string rcpt,
                                                 std::vector<std::string> args) {
  for (auto& fp : filters_) {
    Filter& f = *fp;
    if (!f.Active() || !f.Wants(milter::kProtoNoRcpt)) continue;
    std::string packet = RcptPacket(f.neg, rcpt, args);
    Step s = co_await Event(f, std::move(packet), milter::kProtoNrRcpt, "RCPT");
    MilterVerdict v;
    if (Settle(f, s, "RCPT", "RCPT TO:<" + rcpt + ">", &discard_, &v)) co_return v;
  }
  co_return MilterVerdict{};
}

asio::awaitable<MilterResult> MilterChain::Message(MilterMessage& message, std::string queue_id) {
  MilterResult result;
  if (discard_) {
    result.verdict.kind = MilterVerdict::Kind::kDiscard;
    co_return result;
  }
  for (auto& fp : filters_) {
    Filter& f = *fp;
    if (!f.Active()) continue;
    const char* stage = "DATA";
    std::vector<MilterReply> changes;
    Step s;
    bool done = false;  // accepted before the end: no changes, next filter
    // DATA.
    if (f.Wants(milter::kProtoNoData)) {
      std::string packet =
          IdMacro(f.neg, milter::kStageData, milter::kCmdData, queue_id) + EncodeData();
      s = co_await Event(f, std::move(packet), milter::kProtoNrData, "DATA");
    }
    // Header fields.
    if (s.what == Step::What::kContinue && f.Wants(milter::kProtoNoHeaders)) {
      stage = "header";
      bool lead = (f.neg.protocol & milter::kProtoHeaderLeadSpace) != 0;
      for (const MilterMessage::Field& field : message.fields) {
        std::string_view value = field.value;
        // Without SMFIP_HDR_LEADSPC the space after the colon is not sent.
        if (!lead && !value.empty() && value[0] == ' ') value.remove_prefix(1);
        std::string packet = EncodeHeader(field.name, value);
        s = co_await Event(f, std::move(packet), milter::kProtoNrHeader, "header");
        if (s.what != Step::What::kContinue) break;
      }
    }
    if (s.what == Step::What::kContinue && f.Wants(milter::kProtoNoEoh)) {
      stage = "end of headers";
      std::string packet =
          IdMacro(f.neg, milter::kStageEoh, milter::kCmdEndOfHeaders, queue_id) +
          EncodeEndOfHeaders();
      s = co_await Event(f, std::move(packet), milter::kProtoNrEoh, "end of headers");
    }
    // Body, in chunks; 's' (SMFIP_SKIP) stops it.
    if (s.what == Step::What::kContinue && f.Wants(milter::kProtoNoBody)) {
      stage = "body";
      std::string_view body = message.body;
      while (!body.empty()) {
        size_t n = std::min(body.size(), milter::kChunkSize);
        std::string packet = EncodeBody(body.substr(0, n));
        s = co_await Event(f, std::move(packet), milter::kProtoNrBody, "body");
        body.remove_prefix(n);
        if (s.what != Step::What::kContinue) break;
      }
      if (s.what == Step::What::kSkip) s.what = Step::What::kContinue;
    }
    if (s.what == Step::What::kAccept) done = true;
    // End of body: changes, then the final reply.
    if (s.what == Step::What::kContinue && !done) {
      stage = "end of body";
      std::string packet =
          IdMacro(f.neg, milter::kStageEom, milter::kCmdEndOfBody, queue_id) + EncodeEndOfBody();
      f.out += packet;
      auto sent = co_await Send(f, f.out);
      f.out.clear();
      if (!sent) {
        s = ErrorStep(sent.error().message);
      } else {
        for (;;) {
          auto reply = co_await Receive(f);
          if (!reply) {
            s = ErrorStep(reply.error().message);
            break;
          }
          if (reply->modification()) {
            uint32_t bit = 0;
            switch (reply->kind) {
              case Kind::kAddHeader: bit = milter::kActAddHeaders; break;
              case Kind::kInsertHeader:
              case Kind::kChangeHeader: bit = milter::kActChangeHeaders; break;
              case Kind::kReplaceBody: bit = milter::kActChangeBody; break;
              case Kind::kAddRcpt: bit = milter::kActAddRcpt; break;
              case Kind::kAddRcptPar: bit = milter::kActAddRcptPar; break;
              case Kind::kDelRcpt: bit = milter::kActDelRcpt; break;
              case Kind::kChangeFrom: bit = milter::kActChangeFrom; break;
              case Kind::kQuarantine: bit = milter::kActQuarantine; break;
              default: break;
            }
            // sendmail milter.c: a change the filter did not negotiate is
            // a protocol error.
            if ((f.neg.actions & bit) == 0) {
              s = ErrorStep("a change it did not negotiate");
              break;
            }
            if (changes.size() >= 10000) {
              s = ErrorStep("too many changes");
              break;
            }
            changes.push_back(std::move(*reply));
            continue;
          }
          s = Interpret(*reply, "end of body");
          if (s.what == Step::What::kSkip) {
            s = ErrorStep("'s' in answer to end of body");
          }
          break;
        }
      }
      f.in_txn = false;
    }
    if (s.what == Step::What::kError) {
      MilterVerdict v = Failed(f, s.error, stage);
      result.log.push_back(f.cfg.address + " failed");
      if (v.kind != MilterVerdict::Kind::kContinue) {
        result.verdict = v;
        co_return result;
      }
      continue;
    }
    if (s.what == Step::What::kRefuse) {
      spdlog::info("milter {} refused message {}: {}", f.cfg.address, queue_id, s.reply);
      result.verdict = Refusal(s.reply);
      result.log.push_back(f.cfg.address + " refused");
      co_return result;
    }
    if (s.what == Step::What::kDiscard) {
      result.verdict.kind = MilterVerdict::Kind::kDiscard;
      result.log.push_back(f.cfg.address + " discarded");
      co_return result;
    }
    if (done) {
      f.in_txn = true;  // ended early: aborted at the next MAIL
      result.log.push_back(f.cfg.address + " accepted");
      continue;
    }
    auto applied = ApplyMilterChanges(changes, message, f.cfg.address);
    if (!applied) {
      MilterVerdict v = Failed(f, applied.error().message, "end of body");
      result.log.push_back(f.cfg.address + " failed");
      if (v.kind != MilterVerdict::Kind::kContinue) {
        result.verdict = v;
        co_return result;
      }
      continue;
    }
    result.changed_text |= applied->text;
    result.changed_envelope |= applied->envelope;
    result.spam |= applied->spam;
    if (!applied->quarantine.empty()) result.quarantine = applied->quarantine;
    result.log.push_back(f.cfg.address + " " + DescribeMilterChanges(changes));
  }
  co_return result;
}

}  // namespace tern::antispam
