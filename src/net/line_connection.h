// The connection core every line protocol shares (SMTP, POP3, and IMAP
// next): one coroutine that owns the socket, feeds a sans-I/O session and
// writes its replies, with the deadline, implicit TLS and STARTTLS,
// DEFLATE above the stream (IMAP COMPRESS), the timeout reply, graceful
// and forced shutdown, TLS close_notify and the closing log line. A
// protocol subclasses it with its session and a handler for its own
// requests (SMTP: commit, AUTH delay; POP3: send a message, UPDATE) and
// nothing else.
#pragma once

#include <asio.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/deadline.h"
#include "net/deflate.h"
#include "net/off_thread.h"
#include "net/stream.h"
#include "net/tls.h"

namespace tern::net {

// Something a graceful shutdown (or a fair-share eviction) must reach.
class Stoppable {
 public:
  virtual ~Stoppable() = default;
  // Called from any thread; the implementation posts to its own executor.
  // Not forced: an idle session is told goodbye at once, a busy one
  // finishes first. Forced: the connection is cut now.
  virtual void RequestShutdown(bool force) = 0;
};

// Why a connection ended, for its closing log line.
enum class EndReason {
  kEof,                 // the client hung up
  kClosed,              // the session closed it (QUIT, too many errors)
  kShutdown,            // the server is stopping (or evicted the client)
  kTimeout,             // no command (or data) in time
  kWriteTimeout,        // the client did not read our replies in time
  kReadError,
  kWriteError,
  kTlsHandshakeFailed,
  kBadCompression,      // the client's compressed stream did not inflate
};
std::string_view EndReasonName(EndReason reason);

class LineConnection : public Stoppable,
                       public std::enable_shared_from_this<LineConnection> {
 public:
  struct Options {
    std::string protocol;     // "smtp", "pop3": log prefix
    std::string listener;     // the listener's service name, for logs
    std::string client_ip;
    bool implicit_tls = false;   // TLS before the greeting (RFC 8314 3.3)
    std::shared_ptr<TlsContexts> tls;  // as at accept time; null: no TLS
    asio::thread_pool* blocking = nullptr;  // for OffThread()
  };

  LineConnection(asio::ip::tcp::socket socket, Options options);
  ~LineConnection() override;
  LineConnection(const LineConnection&) = delete;
  LineConnection& operator=(const LineConnection&) = delete;

  // Runs the connection on the socket's executor; `finished` is called
  // once at the very end (release the connection slot).
  void Start(std::function<void()> finished);

  void RequestShutdown(bool force) override;

  // Something the session may want to hear of happened elsewhere (IMAP: a
  // folder changed). Callable from any thread: Woken() runs on the
  // connection's executor, and when it says so a read waiting for the
  // client is interrupted so the loop can call Work().
  void Wake();

 protected:
  // What the session asks of the loop, mapped from the protocol's own
  // "need" by want().
  enum class Want {
    kInput,     // write output(), then read and Feed()
    kClose,     // write output() and close
    kStartTls,  // write output(), then the TLS handshake, then TlsStarted()
    kWork,      // the protocol's own request: the loop calls Work()
    // Write output() as it is, then compress both directions from the next
    // octet on (IMAP COMPRESS=DEFLATE, RFC 4978 3), then
    // CompressionStarted(). Input already read after the command is
    // compressed: it is inflated, not fed as it is.
    kCompress,
  };

  // --- the session, as every line protocol has one ---
  virtual void Greet() = 0;
  virtual size_t Feed(std::string_view data) = 0;
  virtual Want want() = 0;
  virtual std::string& output() = 0;
  // True while the session must not be cut short by a graceful shutdown
  // (an SMTP transaction); such a session gets its goodbye once idle.
  virtual bool Busy() { return false; }
  virtual void SayShutdown() = 0;  // queue the goodbye for a shutdown
  virtual void SayTimeout() = 0;   // queue the goodbye for a timeout
  // TLS is up (implicit, or after STARTTLS): stream() tells the details.
  virtual void TlsStarted() = 0;
  // Compression is on (after Want::kCompress).
  virtual void CompressionStarted() {}

  // --- deadlines (seconds) ---
  // Armed when a reply goes out: the client has this long to send its
  // next command (RFC 5321 4.5.3.2.7, RFC 1939 3 autologout). Bytes that
  // do not complete a command do not extend it (slow-loris).
  virtual uint32_t CommandTimeout() = 0;
  // A deadline for each read instead (SMTP's data block timeout, RFC 5321
  // 4.5.3.2.6), or 0 for the command rule.
  virtual uint32_t ReadTimeout() { return 0; }

  // --- the protocol's own requests (Want::kWork) ---
  // Returns false when the connection cannot go on (set_end() says why).
  virtual asio::awaitable<bool> Work() = 0;
  // Wake() arrived. True: interrupt a pending read (the session now wants
  // Work()).
  virtual bool Woken() { return false; }
  // True: when the session closes a plain-TCP connection, stop sending,
  // then read and drop what the client still sends (briefly) before the
  // close. Without it the kernel answers unread input with a reset, which
  // can destroy replies the client has not read yet (RFC 9112 9.6: an
  // HTTP server closing after a pipelined request or an error).
  virtual bool LingerOnClose() { return false; }
  // The connection has ended: log the closing line, let go of resources.
  virtual void Ended(EndReason reason, std::chrono::milliseconds elapsed) = 0;

  // --- for subclasses ---
  Stream& stream() { return stream_; }
  const Options& options() const { return options_; }
  Deadline& deadline() { return deadline_; }
  bool shutting_down() const { return shutdown_; }
  void set_end(EndReason reason) { end_ = reason; }
  // Octet counts of a compressed connection, for the closing log line.
  struct CompressionStats {
    bool active = false;
    uint64_t sent_plain = 0, sent_wire = 0;          // deflated
    uint64_t received_wire = 0, received_plain = 0;  // inflated
  };
  CompressionStats compression() const;
  // Writes and clears `data`, after arming CommandTimeout() (each chunk of
  // a long answer gets its own). False on error (the end reason is set).
  asio::awaitable<bool> Write(std::string& data);
  // Waits without holding the thread (AUTH failure delays).
  asio::awaitable<void> Sleep(std::chrono::milliseconds delay);
  // Runs job->Run() on the server's blocking pool (password checks,
  // directory syncs) and resumes here; nothing else touches the
  // connection meanwhile.
  template <class Job>
  asio::awaitable<void> Blocking(Job* job) {
    co_await OffThread(*options_.blocking, job);
  }

 private:
  friend asio::awaitable<void> RunLineConnection(
      std::shared_ptr<LineConnection> c, std::function<void()> finished);
  asio::awaitable<void> Run();
  asio::awaitable<bool> Handshake();
  // Feeds the session what it has been sent, inflating compressed input a
  // piece at a time; stops when the session wants something else or all
  // input is used. False when compressed input is corrupt (end_ is set).
  bool FeedPending(std::string& pending);
  // What goes on the wire for `data`: itself, or its deflated form.
  std::string_view Encode(std::string_view data);

  Stream stream_;
  Deadline deadline_;
  Options options_;
  // Compression (RFC 4978) sits here, above the Stream and so above TLS:
  // TLS records carry deflated octets. Null until Want::kCompress.
  std::unique_ptr<Deflater> deflater_;
  std::unique_ptr<Inflater> inflater_;
  std::string deflated_;  // Encode()'s output, kept for its capacity
  std::chrono::steady_clock::time_point started_;
  EndReason end_ = EndReason::kEof;
  bool reading_ = false;
  bool shutdown_ = false;
  bool force_ = false;
  bool woken_ = false;  // a read was cancelled by Wake()
};

// Answers a connection over the limits with `line` (nothing for implicit
// TLS listeners: plaintext means nothing to a client expecting TLS) and
// closes it, without waiting for a slow reader.
void Refuse(asio::ip::tcp::socket socket, std::string_view line);

}  // namespace tern::net
