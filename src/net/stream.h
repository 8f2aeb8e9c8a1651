// A connection's byte stream: a TCP socket that may be upgraded to TLS in
// place (STARTTLS) or start with it (implicit TLS). Plain connections carry
// one null pointer; the SSL object exists only once TLS is asked for.
//
// TLS runs OpenSSL straight on the non-blocking socket (a socket BIO) and
// waits for readiness through asio, rather than through asio::ssl::stream:
// that one keeps two 17 KiB transfer buffers and a BIO pair with two more
// for as long as the connection lives, about 70 KiB per idle session.
// Here, with SSL_MODE_RELEASE_BUFFERS, an idle TLS session holds only
// OpenSSL's connection state (a few KiB), and every record costs one
// read or write system call and no extra copy. Reads go to a per-thread
// buffer for the same reason.
#pragma once

#include <openssl/ssl.h>

#include <asio.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "net/tls.h"

namespace tern::net {

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  asio::ip::tcp::socket& socket() { return socket_; }
  bool tls() const { return ssl_ != nullptr; }

  // Server-side handshake with the given set (kept alive as long as the
  // stream: the SNI callback refers to it). Sets `ec` on failure.
  asio::awaitable<void> Handshake(std::shared_ptr<TlsContexts> contexts,
                                  asio::error_code& ec);
  // Waits for input and reads some into a buffer shared by the
  // connections of this thread (an idle connection holds none): the view
  // stays valid until the caller's next suspension, so it must be used or
  // copied right away. Empty with `ec` set at the end: eof when the peer
  // closed cleanly (TLS: asio::ssl::error::stream_truncated when it hung
  // up without close_notify).
  asio::awaitable<std::string_view> Read(asio::error_code& ec);
  // All of `buffer`, or `ec` set.
  asio::awaitable<void> Write(asio::const_buffer buffer, asio::error_code& ec);
  // Sends TLS close_notify (RFC 8446 6.1) and waits for the peer's.
  asio::awaitable<void> TlsShutdown(asio::error_code& ec);

  // "TLSv1.3" and "TLS_AES_256_GCM_SHA384"; empty without TLS.
  std::string version() const { return ssl_ ? SSL_get_version(ssl_.get()) : ""; }
  std::string cipher() const { return ssl_ ? SSL_get_cipher_name(ssl_.get()) : ""; }
  // The SNI name the client sent, if any.
  std::string server_name() const {
    const char* n =
        ssl_ ? SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name) : nullptr;
    return n ? n : "";
  }
  // The handshake resumed an earlier session (RFC 8446 2.2).
  bool resumed() const { return ssl_ && SSL_session_reused(ssl_.get()) == 1; }

  // What an OpenSSL call needs before it is called again (internal).
  enum class Next { kRead, kWrite, kFailed };

 private:
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  // After an OpenSSL call returned `result`: what to wait for before
  // calling it again, or kFailed with `ec` set.
  Next Classify(int result, asio::error_code& ec);

  asio::ip::tcp::socket socket_;
  std::shared_ptr<TlsContexts> contexts_;
  std::unique_ptr<SSL, SslFree> ssl_;
  // The last plain read filled the buffer: more is probably waiting, so
  // the next one tries before waiting.
  bool last_full_ = false;
};

}  // namespace tern::net
