// The control socket: a Unix socket (mode 0600) in the data folder through
// which `tern queue flush|retry|hold|release|delete|bounce` reach the running
// server. One request line per connection, one reply line:
//   request  VERB [ARG] LF      (FLUSH, RETRY id, HOLD id, RELEASE id,
//                                DELETE id, BOUNCE id, PING, USAGE user,
//                                DMARC-SEND)
//   reply    "OK text" LF or "ERR text" LF, then the server closes.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>

#include "common/result.h"
#include "antispam/rate_limit.h"
#include "queue/queue.h"

namespace tern::control {

std::string SocketPath(const std::string& data_dir);

class ControlServer {
 public:
  // Binds data_dir/control.sock (replacing a stale one) and starts
  // accepting on `io`.
  // `rate` (may be null) answers USAGE.
  static Result<std::unique_ptr<ControlServer>> Start(
      asio::io_context& io, const std::string& data_dir, queue::Queue& queue,
      const antispam::RateLimiter* rate = nullptr);
  virtual ~ControlServer() = default;
  // A request the server answers after awaiting something (DMARC-SEND:
  // send the DMARC aggregate reports now, `tern report dmarc --send`).
  using AsyncCommand = std::function<asio::awaitable<std::string>()>;
  virtual void SetDmarcSend(AsyncCommand fn) = 0;
  // Stops accepting and removes the socket file.
  virtual void Close() = 0;
};

// Executes one request line against the queue (the socket's dispatcher,
// exposed for tests). Returns the reply line without LF.
std::string Dispatch(queue::Queue& queue, const std::string& line,
                     const antispam::RateLimiter* rate = nullptr);

// Client side: sends `request`, returns the reply text after "OK ", or an
// error: the "ERR" text, or "server is not running (no control socket at
// PATH)".
Result<std::string> Request(const std::string& data_dir,
                            const std::string& request);

}  // namespace tern::control
