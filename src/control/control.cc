// The control socket server (on the server's io_context) and its blocking
// client for the CLI.
#include "control/control.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/strings.h"

namespace tern::control {
namespace {

using asio::local::stream_protocol;

constexpr size_t kMaxRequest = 1024;

class ServerImpl;

asio::awaitable<void> Serve(ServerImpl* self, stream_protocol::socket socket);
asio::awaitable<void> AcceptLoop(ServerImpl* self);

class ServerImpl final : public ControlServer {
 public:
  ServerImpl(asio::io_context& io, std::string path, queue::Queue& queue,
             const antispam::RateLimiter* rate)
      : acceptor_(io), path_(std::move(path)), queue_(queue), rate_(rate) {}
  ~ServerImpl() override { Close(); }

  Result<void> Bind() {
    // A leftover socket from a crashed server: remove it, but never one a
    // running server still answers on.
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path_.size() >= sizeof sa.sun_path)
      return Err("control socket path too long: " + path_);
    std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
    if (probe >= 0) {
      bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&sa),
                            sizeof sa) == 0;
      ::close(probe);
      if (live) return Err("another server owns " + path_);
    }
    ::unlink(path_.c_str());
    asio::error_code ec;
    acceptor_.open(stream_protocol(), ec);
    // Created with mode 0600: no window in which others could connect.
    mode_t old = ::umask(0177);
    if (!ec) acceptor_.bind(stream_protocol::endpoint(path_), ec);
    ::umask(old);
    if (!ec) acceptor_.listen(16, ec);
    if (ec) return Err("control socket " + path_ + ": " + ec.message());
    ::chmod(path_.c_str(), 0600);
    return {};
  }

  void SetDmarcSend(AsyncCommand fn) override { dmarc_send_ = std::move(fn); }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    acceptor_.close(ignored);
    ::unlink(path_.c_str());
  }

  friend asio::awaitable<void> Serve(ServerImpl* self,
                                     stream_protocol::socket socket);
  friend asio::awaitable<void> AcceptLoop(ServerImpl* self);

 private:
  stream_protocol::acceptor acceptor_;
  std::string path_;
  queue::Queue& queue_;
  const antispam::RateLimiter* rate_;
  AsyncCommand dmarc_send_;
  bool closed_ = false;
};

asio::awaitable<void> Serve(ServerImpl* self, stream_protocol::socket socket) {
  std::string line;
  asio::error_code ec;
  co_await asio::async_read_until(socket,
                                  asio::dynamic_buffer(line, kMaxRequest), '\n',
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  line.resize(line.find('\n'));
  std::string reply;
  if (ToLower(Trim(line)) == "dmarc-send") {
    // Sending waits for DNS (RFC 7489 7.1 checks), so it is awaited here
    // rather than in the synchronous Dispatch.
    if (self->dmarc_send_) {
      std::string summary = co_await self->dmarc_send_();
      spdlog::info("control: dmarc-send: {}", summary);
      reply = "OK " + summary + "\n";
    } else {
      reply = "ERR DMARC reports are off ([mailauth] dmarc_reports)\n";
    }
  } else {
    reply = Dispatch(self->queue_, line, self->rate_) + "\n";
  }
  co_await asio::async_write(socket, asio::buffer(reply),
                             asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> AcceptLoop(ServerImpl* self) {
  while (!self->closed_) {
    asio::error_code ec;
    stream_protocol::socket s = co_await self->acceptor_.async_accept(
        asio::redirect_error(asio::use_awaitable, ec));
    if (ec || self->closed_) co_return;
    asio::co_spawn(self->acceptor_.get_executor(), Serve(self, std::move(s)),
                   asio::detached);
  }
}

}  // namespace

std::string SocketPath(const std::string& data_dir) {
  return data_dir + "/control.sock";
}

std::string Dispatch(queue::Queue& queue, const std::string& raw,
                     const antispam::RateLimiter* rate) {
  std::string line(Trim(raw));
  size_t space = line.find(' ');
  std::string verb = ToLower(line.substr(0, space));
  std::string arg =
      space == std::string::npos ? "" : std::string(Trim(line.substr(space + 1)));
  Result<std::string> r = Err("unknown command \"" + verb + "\"");
  if (verb == "ping") {
    r = std::string("pong");
  } else if (verb == "usage") {
    // An account's sending this hour and day (rate limits): counted in
    // this process only, so it is asked here rather than read from disk.
    if (arg.empty()) {
      r = Err("usage needs an address");
    } else if (rate == nullptr) {
      r = Err("no rate counters in this server");
    } else {
      antispam::UserUsage u = rate->Usage(arg, static_cast<int64_t>(std::time(nullptr)));
      r = "messages_hour=" + std::to_string(u.messages_hour) +
          " messages_day=" + std::to_string(u.messages_day) +
          " recipients_hour=" + std::to_string(u.recipients_hour) +
          " recipients_day=" + std::to_string(u.recipients_day);
    }
  } else if (verb == "flush") {
    r = queue.Flush();
  } else if (arg.empty() && (verb == "retry" || verb == "hold" ||
                             verb == "release" || verb == "delete" ||
                             verb == "bounce")) {
    r = Err(verb + " needs a queue id");
  } else if (verb == "retry") {
    r = queue.Retry(arg);
  } else if (verb == "hold") {
    r = queue.Hold(arg);
  } else if (verb == "release") {
    r = queue.Release(arg);
  } else if (verb == "delete") {
    r = queue.Delete(arg);
  } else if (verb == "bounce") {
    r = queue.Bounce(arg);
  }
  if (r) {
    spdlog::info("control: {} {}: {}", verb, arg, *r);
    return "OK " + *r;
  }
  return "ERR " + r.error().message;
}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(
    asio::io_context& io, const std::string& data_dir, queue::Queue& queue,
    const antispam::RateLimiter* rate) {
  auto server = std::make_unique<ServerImpl>(io, SocketPath(data_dir), queue, rate);
  if (auto ok = server->Bind(); !ok) return tl::unexpected(ok.error());
  asio::co_spawn(io, AcceptLoop(server.get()), asio::detached);
  return std::unique_ptr<ControlServer>(std::move(server));
}

Result<std::string> Request(const std::string& data_dir,
                            const std::string& request) {
  const std::string path = SocketPath(data_dir);
  const std::string not_running =
      "server is not running (no control socket at " + path + ")";
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path)
    return Err("control socket path too long: " + path);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Err(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int err = errno;
    ::close(fd);
    if (err == ENOENT || err == ECONNREFUSED) return Err(not_running);
    return Err("control socket " + path + ": " + std::strerror(err));
  }
  std::string out = request + "\n";
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Err(std::string("control socket write: ") + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  std::string reply;
  char buf[4096];
  while (reply.size() < 1u << 20) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r'))
    reply.pop_back();
  if (reply.rfind("OK", 0) == 0) return reply.size() > 3 ? reply.substr(3) : "";
  if (reply.rfind("ERR ", 0) == 0) return Err(reply.substr(4));
  return Err("unexpected reply from the server: " + reply);
}

}  // namespace tern::control
