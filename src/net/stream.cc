// OpenSSL on a non-blocking socket, driven by asio readiness waits: see
// stream.h.
#include "net/stream.h"

#include <openssl/err.h>

#include <sys/socket.h>

#include <asio/ssl/error.hpp>
#include <cerrno>

namespace tern::net {

using asio::ip::tcp;

namespace {

// OpenSSL's socket BIO writes with write(), which raises SIGPIPE (and ends
// the server) when the peer has gone; this one writes with send() and
// MSG_NOSIGNAL, as asio does, and borrows everything else from it.
int SendNoSignal(BIO* b, const char* data, int len) {
  int fd = -1;
  BIO_get_fd(b, &fd);
  BIO_clear_retry_flags(b);
  ssize_t n = ::send(fd, data, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(b);
  }
  return static_cast<int>(n);
}

const BIO_METHOD* SocketMethod() {
  static const BIO_METHOD* method = [] {
    const BIO_METHOD* base = BIO_s_socket();
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
                                     BIO_TYPE_DESCRIPTOR,
                                 "tern socket");
    if (m == nullptr) return base;
    BIO_meth_set_write(m, &SendNoSignal);
    BIO_meth_set_read(m, BIO_meth_get_read(base));
    BIO_meth_set_puts(m, BIO_meth_get_puts(base));
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(base));
    BIO_meth_set_create(m, BIO_meth_get_create(base));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(base));
    return static_cast<const BIO_METHOD*>(m);
  }();
  return method;
}

// Not a coroutine of its own: every nested frame stays allocated while a
// session waits, which is most of its life.
tcp::socket::wait_type WaitType(Stream::Next next) {
  return next == Stream::Next::kRead ? tcp::socket::wait_read : tcp::socket::wait_write;
}

}  // namespace

Stream::Next Stream::Classify(int result, asio::error_code& ec) {
  int saved_errno = errno;
  int err = SSL_get_error(ssl_.get(), result);
  switch (err) {
    case SSL_ERROR_WANT_READ: return Next::kRead;
    case SSL_ERROR_WANT_WRITE: return Next::kWrite;
    case SSL_ERROR_ZERO_RETURN:
      ec = asio::error::eof;  // close_notify: a clean end (RFC 8446 6.1)
      break;
    case SSL_ERROR_SYSCALL: {
      unsigned long e = ERR_get_error();
      if (e != 0 && ERR_SYSTEM_ERROR(e)) {
        ec = asio::error_code(ERR_GET_REASON(e), asio::system_category());
      } else if (saved_errno != 0 && saved_errno != EAGAIN) {
        ec = asio::error_code(saved_errno, asio::system_category());
      } else {
        ec = asio::ssl::error::stream_truncated;  // TCP closed mid-stream
      }
      break;
    }
    case SSL_ERROR_SSL: {
      unsigned long e = ERR_get_error();
      // OpenSSL 3 reports a TCP close without close_notify this way; name
      // it as asio::ssl::stream did.
      if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
          ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = asio::ssl::error::stream_truncated;
      } else {
        ec = asio::error_code(static_cast<int>(e), asio::error::get_ssl_category());
      }
      break;
    }
    default:
      ec = asio::ssl::error::unexpected_result;
  }
  ERR_clear_error();
  return Next::kFailed;
}

asio::awaitable<void> Stream::Handshake(std::shared_ptr<TlsContexts> contexts,
                                        asio::error_code& ec) {
  contexts_ = std::move(contexts);
  ssl_.reset(SSL_new(contexts_->default_context().native_handle()));
  BIO* bio = ssl_ ? BIO_new(SocketMethod()) : nullptr;
  if (bio == nullptr) {
    ERR_clear_error();
    ssl_.reset();
    ec = asio::error::no_memory;
    co_return;
  }
  BIO_set_fd(bio, static_cast<int>(socket_.native_handle()), BIO_NOCLOSE);
  SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns it from here
  // SSL_write returns after each record it wrote (Write() loops), and a
  // retry after WANT_WRITE need not pass the same pointer.
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_accept_state(ssl_.get());
  socket_.non_blocking(true, ec);
  if (ec) co_return;
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) co_return;
    Next next = Classify(r, ec);
    if (next == Next::kFailed) co_return;
    co_await socket_.async_wait(WaitType(next),
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

namespace {

constexpr size_t kReadBuffer = 4096;

// Not inlined: the thread may change across a suspension, and the
// address of a thread_local must be taken after it.
[[gnu::noinline]] char* ThreadReadBuffer() {
  static thread_local char buffer[kReadBuffer];
  return buffer;
}

}  // namespace

asio::awaitable<std::string_view> Stream::Read(asio::error_code& ec) {
  if (!socket_.non_blocking()) {
    socket_.non_blocking(true, ec);
    if (ec) co_return std::string_view();
  }
  // TLS asks OpenSSL first: it may hold input read with an earlier record.
  bool wait = !ssl_ && !last_full_;
  for (;;) {
    if (wait) {
      co_await socket_.async_wait(tcp::socket::wait_read,
                                  asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::string_view();
    }
    char* buffer = ThreadReadBuffer();
    if (!ssl_) {
      size_t n = socket_.read_some(asio::buffer(buffer, kReadBuffer), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec.clear();
        wait = true;
        continue;
      }
      if (ec) co_return std::string_view();
      last_full_ = n == kReadBuffer;
      co_return std::string_view(buffer, n);
    }
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_read_ex(ssl_.get(), buffer, kReadBuffer, &n);
    if (r == 1) co_return std::string_view(buffer, n);
    Next next = Classify(r, ec);
    if (next == Next::kFailed) co_return std::string_view();
    if (next == Next::kWrite) {
      co_await socket_.async_wait(WaitType(next),
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return std::string_view();
      wait = false;
      continue;
    }
    wait = true;
  }
}

asio::awaitable<void> Stream::Write(asio::const_buffer buffer, asio::error_code& ec) {
  if (!ssl_) {
    co_await asio::async_write(socket_, buffer,
                               asio::redirect_error(asio::use_awaitable, ec));
    co_return;
  }
  const char* p = static_cast<const char*>(buffer.data());
  size_t left = buffer.size();
  while (left > 0) {
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_write_ex(ssl_.get(), p, left, &n);
    if (r == 1) {
      p += n;
      left -= n;
      continue;
    }
    Next next = Classify(r, ec);
    if (next == Next::kFailed) co_return;
    co_await socket_.async_wait(WaitType(next),
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

asio::awaitable<void> Stream::TlsShutdown(asio::error_code& ec) {
  for (bool sent = false;;) {
    ERR_clear_error();
    // 0: our close_notify is out, the peer's not yet in; the next call
    // waits for it.
    int r = SSL_shutdown(ssl_.get());
    if (r == 1) co_return;
    if (r == 0 && !sent) {
      sent = true;
      continue;
    }
    if (r == 0) co_return;
    Next next = Classify(r, ec);
    if (next == Next::kFailed) co_return;
    co_await socket_.async_wait(WaitType(next),
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

}  // namespace tern::net
