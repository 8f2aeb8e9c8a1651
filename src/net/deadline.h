// A connection's deadline, the one timeout mechanism of every protocol,
// server side and client side: when it passes, the socket's pending reads,
// writes and handshakes are cancelled and timed_out() says why. The owner
// moves it forward (ExpiresAfter) when a wait starts: a command, a reply,
// a data block, a handshake. Like OpenSMTPD's io_set_timeout or Beast's
// basic_stream::expires_after, but with one watchdog coroutine per
// connection rather than a timer per operation.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

namespace tern::net {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // What expiry does to the socket: a server cancels the pending operation
  // and still says goodbye (421, -ERR); a client closes the connection, so
  // that one left idle for reuse cannot be picked up half dead.
  enum class OnExpiry { kCancel, kClose };

  explicit Deadline(asio::ip::tcp::socket& socket,
                    OnExpiry on_expiry = OnExpiry::kCancel)
      : socket_(socket),
        timer_(socket.get_executor(), Clock::time_point::max()),
        on_expiry_(on_expiry) {}

  // The pending operations will be cancelled `seconds` from now. Moving the
  // deadline later costs nothing: the watchdog wakes at the old one and
  // waits again; only an earlier deadline re-arms the timer.
  void ExpiresAfter(uint32_t seconds) {
    deadline_ = Clock::now() + std::chrono::seconds(seconds);
    if (deadline_ < timer_.expiry()) timer_.expires_at(deadline_);
  }
  void Never() { deadline_ = Clock::time_point::max(); }

  // The last cancellation came from the deadline (not from a shutdown or
  // the peer). Clear it to go on after answering the timeout.
  bool timed_out() const { return timed_out_; }
  void ClearTimeout() { timed_out_ = false; }

  // Ends the watchdog; call when the connection is closed.
  void Stop() {
    stopped_ = true;
    timer_.cancel();
  }

  // The watchdog as a plain timer handler rather than a coroutine: no
  // coroutine frames per connection (a server connection waits for most of
  // its life, and idle connections are counted in thousands). Call it on
  // the socket's executor with the owner of the Deadline, which the pending
  // handler keeps alive until Stop(). Same rules as Watch() below.
  template <class Owner>
  static void Start(std::shared_ptr<Owner> owner, Deadline* d) {
    if (d->stopped_ || !d->Expire()) return;
    d->timer_.expires_at(d->deadline_);
    d->timer_.async_wait([owner = std::move(owner), d](const asio::error_code&) mutable {
      Start(std::move(owner), d);
    });
  }

  // The watchdog. Spawn it on the socket's executor with the owner of the
  // Deadline, which it keeps alive until Stop():
  //   asio::co_spawn(ex, Deadline::Watch(self, &self->deadline_), detached);
  template <class Owner>
  static asio::awaitable<void> Watch(std::shared_ptr<Owner> owner, Deadline* d) {
    while (!d->stopped_ && d->Expire()) {
      d->timer_.expires_at(d->deadline_);
      asio::error_code ec;
      co_await d->timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

 private:
  // The watchdog's check at each wake-up: once the deadline has passed,
  // the socket's pending operations are cancelled (or the socket closed).
  // False when it was closed: the watchdog then stops.
  bool Expire() {
    if (deadline_ > Clock::now()) return true;
    timed_out_ = true;
    deadline_ = Clock::time_point::max();
    asio::error_code ignored;
    if (on_expiry_ == OnExpiry::kClose) {
      socket_.close(ignored);
      return false;
    }
    socket_.cancel(ignored);
    return true;
  }

  asio::ip::tcp::socket& socket_;
  asio::steady_timer timer_;
  const OnExpiry on_expiry_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  bool stopped_ = false;
};

}  // namespace tern::net
