// A connection's byte stream: a TCP socket that may be upgraded to TLS in
// place (STARTTLS) or start with it (implicit TLS). Plain connections carry
// one null pointer; the SSL object exists only once TLS is asked for.
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <memory>
#include <string>

#include "net/tls.h"

namespace tern::net {

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  asio::ip::tcp::socket& socket() { return socket_; }
  bool tls() const { return ssl_ != nullptr; }

  // Server-side handshake with the given set (kept alive as long as the
  // stream: the SNI callback refers to it).
  template <class Token>
  auto AsyncHandshake(std::shared_ptr<TlsContexts> contexts, Token&& token) {
    contexts_ = std::move(contexts);
    ssl_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(
        socket_, contexts_->default_context());
    return ssl_->async_handshake(asio::ssl::stream_base::server,
                                 std::forward<Token>(token));
  }

  template <class Buffer, class Token>
  auto AsyncReadSome(const Buffer& buffer, Token&& token) {
    if (ssl_) return ssl_->async_read_some(buffer, std::forward<Token>(token));
    return socket_.async_read_some(buffer, std::forward<Token>(token));
  }

  template <class Buffer, class Token>
  auto AsyncWrite(const Buffer& buffer, Token&& token) {
    if (ssl_) return asio::async_write(*ssl_, buffer, std::forward<Token>(token));
    return asio::async_write(socket_, buffer, std::forward<Token>(token));
  }

  // Sends TLS close_notify (RFC 8446 6.1) and waits for the peer's.
  template <class Token>
  auto AsyncTlsShutdown(Token&& token) {
    return ssl_->async_shutdown(std::forward<Token>(token));
  }

  // "TLSv1.3" and "TLS_AES_256_GCM_SHA384"; empty without TLS.
  std::string version() const {
    return ssl_ ? SSL_get_version(ssl_->native_handle()) : "";
  }
  std::string cipher() const {
    return ssl_ ? SSL_get_cipher_name(ssl_->native_handle()) : "";
  }
  // The handshake resumed an earlier session (RFC 8446 2.2).
  bool resumed() const { return ssl_ && SSL_session_reused(ssl_->native_handle()) == 1; }
  // The SNI name the client sent, if any.
  std::string server_name() const {
    const char* n =
        ssl_ ? SSL_get_servername(ssl_->native_handle(), TLSEXT_NAMETYPE_host_name)
             : nullptr;
    return n ? n : "";
  }

 private:
  asio::ip::tcp::socket socket_;
  std::shared_ptr<TlsContexts> contexts_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> ssl_;
};

}  // namespace tern::net
