// The serve loop shared by the line protocols: see line_connection.h.
#include "net/line_connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/metrics.h"

namespace tern::net {
namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

// A client gets this long for a TLS handshake (the protocols set none; it
// is generous for any real client and short for a slow-loris), and never
// longer than its command timeout.
constexpr uint32_t kHandshakeTimeout = 30;
// After a timeout or for close_notify: a short last chance to be heard.
constexpr uint32_t kGoodbyeTimeout = 5;
constexpr uint32_t kCloseNotifyTimeout = 2;
// LingerOnClose(): how long, and how much, is read and dropped.
constexpr uint32_t kLingerTimeout = 2;
constexpr size_t kLingerBytes = 1024 * 1024;
// Compressed input is inflated this much at a time and handed to the
// session before more is inflated: a decompression bomb (DEFLATE reaches
// about 1000:1) costs the session what the same plain input would, never
// a buffer of its whole expansion.
constexpr size_t kInflateChunk = 16 * 1024;
// Encode()'s buffer is let go above this (a long FETCH's piece).
constexpr size_t kKeepDeflated = 64 * 1024;

// Plain functions: g++ 12 mishandles braced lists of temporaries in
// coroutine bodies.
void CountTlsHandshake(const std::string& protocol, const std::string& version) {
  metrics::Get().tls_handshakes.With({protocol, version}).Inc();
}

void CountTlsFailure(const std::string& protocol) {
  metrics::Get().tls_failures.With({protocol}).Inc();
}

}  // namespace

std::string_view EndReasonName(EndReason reason) {
  switch (reason) {
    case EndReason::kEof: return "eof";
    case EndReason::kClosed: return "closed";
    case EndReason::kShutdown: return "shutdown";
    case EndReason::kTimeout: return "timeout";
    case EndReason::kWriteTimeout: return "write-timeout";
    case EndReason::kReadError: return "read-error";
    case EndReason::kWriteError: return "write-error";
    case EndReason::kTlsHandshakeFailed: return "tls-handshake-failed";
    case EndReason::kBadCompression: return "bad-compression";
  }
  return "unknown";
}

LineConnection::LineConnection(tcp::socket socket, Options options)
    : stream_(std::move(socket)),
      deadline_(stream_.socket()),
      options_(std::move(options)),
      started_(Clock::now()) {}

LineConnection::~LineConnection() = default;

asio::awaitable<void> RunLineConnection(std::shared_ptr<LineConnection> c,
                                        std::function<void()> finished) {
  co_await c->Run();
  if (finished) finished();
}

void LineConnection::Start(std::function<void()> finished) {
  auto self = shared_from_this();
  auto ex = stream_.socket().get_executor();
  asio::dispatch(ex, [self] { Deadline::Start(self, &self->deadline_); });
  asio::co_spawn(ex, RunLineConnection(self, std::move(finished)),
                 asio::detached);
}

void LineConnection::RequestShutdown(bool force) {
  asio::post(stream_.socket().get_executor(),
             [self = shared_from_this(), force] {
               self->shutdown_ = true;
               // A reader waiting for a command is stopped at once (the loop
               // then says goodbye); anything else finishes first unless
               // the grace period is over.
               if (force || (self->reading_ && !self->Busy())) {
                 self->force_ = force;
                 asio::error_code ignored;
                 self->stream_.socket().cancel(ignored);
               }
             });
}

void LineConnection::Wake() {
  asio::post(stream_.socket().get_executor(), [self = shared_from_this()] {
    if (self->Woken() && self->reading_) {
      self->woken_ = true;
      asio::error_code ignored;
      self->stream_.socket().cancel(ignored);
    }
  });
}

LineConnection::CompressionStats LineConnection::compression() const {
  CompressionStats st;
  if (!deflater_) return st;
  st.active = true;
  st.sent_plain = deflater_->plain_octets();
  st.sent_wire = deflater_->compressed_octets();
  st.received_wire = inflater_->compressed_octets();
  st.received_plain = inflater_->plain_octets();
  return st;
}

std::string_view LineConnection::Encode(std::string_view data) {
  if (!deflater_) return data;
  if (deflated_.capacity() > kKeepDeflated) {
    std::string().swap(deflated_);
  } else {
    deflated_.clear();
  }
  // One sync flush per batch of replies (RFC 4978 4): the client can
  // decode every response we have written.
  deflater_->Compress(data, &deflated_);
  return deflated_;
}

bool LineConnection::FeedPending(std::string& pending) {
  while (want() == Want::kInput) {
    if (!pending.empty()) {
      size_t n = Feed(pending);
      pending.erase(0, n);
      continue;
    }
    if (!inflater_ || !inflater_->more()) break;
    if (!inflater_->Inflate(kInflateChunk, &pending)) {
      spdlog::info("{} compression error client={} listener={} error={}",
                   options_.protocol, options_.client_ip, options_.listener,
                   inflater_->error());
      end_ = EndReason::kBadCompression;
      return false;
    }
  }
  return true;
}

asio::awaitable<bool> LineConnection::Write(std::string& data) {
  if (data.empty()) co_return true;
  deadline_.ExpiresAfter(CommandTimeout());
  asio::error_code ec;
  std::string_view wire = Encode(data);
  co_await stream_.Write(asio::buffer(wire.data(), wire.size()), ec);
  data.clear();
  if (ec) {
    end_ = deadline_.timed_out() ? EndReason::kWriteTimeout : EndReason::kWriteError;
    co_return false;
  }
  co_return true;
}

asio::awaitable<void> LineConnection::Sleep(std::chrono::milliseconds delay) {
  asio::steady_timer t(stream_.socket().get_executor(), delay);
  asio::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<bool> LineConnection::Handshake() {
  if (!options_.tls) co_return false;
  asio::error_code ec;
  deadline_.ExpiresAfter(std::min(kHandshakeTimeout, CommandTimeout()));
  co_await stream_.Handshake(options_.tls, ec);
  if (ec) {
    CountTlsFailure(options_.protocol);
    spdlog::info("{} tls handshake failed client={} listener={} error={}",
                 options_.protocol, options_.client_ip, options_.listener,
                 deadline_.timed_out() ? std::string("timeout") : ec.message());
    co_return false;
  }
  spdlog::info("{} tls client={} listener={} version={} cipher={} sni={} resumed={}",
               options_.protocol, options_.client_ip, options_.listener,
               stream_.version(), stream_.cipher(), stream_.server_name(),
               stream_.resumed() ? "yes" : "no");
  CountTlsHandshake(options_.protocol, stream_.version());
  TlsStarted();
  co_return true;
}

asio::awaitable<void> LineConnection::Run() {
  std::string pending;  // input the session has not consumed yet
  // The command deadline runs from our reply to the end of the next
  // command, not from byte to byte (see CommandTimeout()).
  bool awaiting_command = true;

  // RFC 8314 3.3: on implicit-TLS ports TLS comes first, then the protocol.
  bool run = true;
  if (options_.implicit_tls && !co_await Handshake()) {
    end_ = EndReason::kTlsHandshakeFailed;
    run = false;
  } else {
    Greet();
  }
  while (run) {
    if (!FeedPending(pending)) break;
    if (want() == Want::kWork) {
      if (!co_await Work()) break;
      awaiting_command = true;
      continue;
    }
    if (want() == Want::kInput && shutdown_ && !Busy()) {
      SayShutdown();
      end_ = EndReason::kShutdown;
    }
    if (!output().empty()) awaiting_command = true;
    if (!co_await Write(output())) break;
    if (want() == Want::kClose) {
      if (end_ == EndReason::kEof) end_ = EndReason::kClosed;
      break;
    }
    if (want() == Want::kStartTls) {
      // The session dropped what followed STARTTLS/STLS; nothing read so
      // far may reach the TLS session (RFC 3207 5, RFC 2595 4;
      // CVE-2011-0411).
      pending.clear();
      if (deflater_) {
        // TLS goes under compression, never over it (RFC 4978 3 orders
        // them; IMAP refuses STARTTLS after login anyway).
        end_ = EndReason::kClosed;
        break;
      }
      if (!co_await Handshake()) {
        end_ = EndReason::kTlsHandshakeFailed;
        break;
      }
      awaiting_command = true;
      continue;
    }
    if (want() == Want::kCompress) {
      // RFC 4978 3: compression starts right after the CRLF of the tagged
      // OK, written above as it is. What the client sent after COMPRESS
      // (it should have waited, but may pipeline) is already compressed.
      if (!deflater_) {
        deflater_ = std::make_unique<Deflater>();
        inflater_ = std::make_unique<Inflater>();
        inflater_->Append(pending);
        pending.clear();
      }
      CompressionStarted();
      awaiting_command = true;
      continue;
    }
    // Woken() during the write may have given the session work to do.
    if (want() == Want::kWork) continue;
    if (uint32_t per_read = ReadTimeout(); per_read > 0) {
      deadline_.ExpiresAfter(per_read);
    } else if (awaiting_command) {
      deadline_.ExpiresAfter(CommandTimeout());
      awaiting_command = false;
      // Waiting for the next command, perhaps for minutes: the reply
      // buffer (an EHLO reply is a few hundred octets) goes back.
      if (output().empty() && pending.empty()) std::string().swap(output());
    }
    asio::error_code ec;
    woken_ = false;
    reading_ = true;
    std::string_view in = co_await stream_.Read(ec);
    reading_ = false;
    if (ec) {
      if (deadline_.timed_out()) {
        end_ = EndReason::kTimeout;
        SayTimeout();
        deadline_.ClearTimeout();
        deadline_.ExpiresAfter(kGoodbyeTimeout);
        std::string_view wire = Encode(output());
        co_await stream_.Write(asio::buffer(wire.data(), wire.size()), ec);
        output().clear();
        break;
      }
      if (ec == asio::error::operation_aborted && woken_ && !force_) {
        continue;  // Wake(): the loop top runs the session's work
      }
      if (ec == asio::error::operation_aborted && shutdown_ && !force_) {
        continue;  // the loop top says goodbye once the session is idle
      }
      end_ = ec == asio::error::eof ? EndReason::kEof : EndReason::kReadError;
      break;
    }
    // `in` lives in a buffer shared by the thread's connections: it is
    // fed or copied before anything else can run.
    if (inflater_) {
      inflater_->Append(in);  // the loop top inflates it piece by piece
    } else if (pending.empty()) {
      size_t used = Feed(in);
      if (used < in.size()) pending.assign(in.substr(used));
    } else {
      pending.append(in);
    }
  }

  if (stream_.tls() &&
      (end_ == EndReason::kClosed || end_ == EndReason::kShutdown)) {
    // close_notify (RFC 8446 6.1), briefly: the peer may just hang up.
    deadline_.ExpiresAfter(kCloseNotifyTimeout);
    asio::error_code ec;
    co_await stream_.TlsShutdown(ec);
  }
  if (!stream_.tls() && end_ == EndReason::kClosed && LingerOnClose()) {
    asio::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    deadline_.ExpiresAfter(kLingerTimeout);
    for (size_t dropped = 0; !ec && dropped < kLingerBytes;) {
      std::string_view in = co_await stream_.Read(ec);
      dropped += in.size();
    }
  }
  deadline_.Stop();
  asio::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
  Ended(end_, std::chrono::duration_cast<std::chrono::milliseconds>(
                  Clock::now() - started_));
}

void Refuse(tcp::socket socket, std::string_view line) {
  // The reply is far smaller than a socket buffer: one non-blocking write
  // either fits or the client is not worth waiting for.
  asio::error_code ec;
  if (!line.empty()) {
    socket.non_blocking(true, ec);
    socket.write_some(asio::buffer(line.data(), line.size()), ec);
  }
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

}  // namespace tern::net
