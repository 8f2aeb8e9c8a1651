// STARTTLS load generator for the TLS bench cell (bench/tls_load.py runs
// it): --sessions threads, each sending one message per new TCP connection
// and TLS session (EHLO, STARTTLS, EHLO, pipelined MAIL/RCPT/DATA, the
// message, QUIT) until --count messages are taken. With --resume each
// thread offers the TLS session (ticket) of its previous connection.
// Prints one JSON object: sent, resumed, errors, wall seconds, an error
// example. Blocking sockets and OpenSSL; loopback addresses only.
// --sink: a TLS SMTP sink instead (the generator's ceiling).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <csignal>
#include <cctype>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int sessions = 32;
  long count = 1000;
  size_t size = 1024;
  bool resume = false;
  std::string sender = "sender@client.test";
  std::string rcpt = "user@bench.test";
  std::string helo = "client.bench.test";
};

// One connection's input, read through the socket or through TLS.
class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {}
  ~Conn() {
    // close_notify first: OpenSSL marks the session of a connection freed
    // without it as not resumable.
    if (ssl_ && SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool Send(std::string_view s) {
    while (!s.empty()) {
      long n = ssl_ ? SSL_write(ssl_, s.data(), static_cast<int>(s.size()))
                    : send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Reads one reply; true when its code starts with `code`.
  bool Expect(const char* code, std::string* last) {
    for (;;) {
      size_t eol;
      while ((eol = in_.find("\r\n", pos_)) == std::string::npos) {
        if (pos_ > 0) {
          in_.erase(0, pos_);
          pos_ = 0;
        }
        char buf[4096];
        long n = ssl_ ? SSL_read(ssl_, buf, sizeof buf) : recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) {
          *last = "connection closed";
          return false;
        }
        in_.append(buf, static_cast<size_t>(n));
      }
      std::string line = in_.substr(pos_, eol - pos_);
      pos_ = eol + 2;
      if (line.size() >= 4 && line[3] == '-') continue;
      *last = line;
      return line.compare(0, 3, code) == 0;
    }
  }
  bool StartTls(SSL_CTX* ctx, SSL_SESSION* session) {
    if (pos_ != in_.size()) return false;  // nothing may precede TLS
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "mx.bench.test");
    if (session) SSL_set_session(ssl_, session);
    return SSL_connect(ssl_) == 1;
  }
  SSL* ssl() { return ssl_; }
  // One line without its CRLF (the sink).
  bool ReadLine(std::string* line) {
    size_t eol;
    while ((eol = in_.find("\r\n", pos_)) == std::string::npos) {
      if (pos_ > 0) {
        in_.erase(0, pos_);
        pos_ = 0;
      }
      char buf[4096];
      long n = ssl_ ? SSL_read(ssl_, buf, sizeof buf) : recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      in_.append(buf, static_cast<size_t>(n));
    }
    *line = in_.substr(pos_, eol - pos_);
    pos_ = eol + 2;
    return true;
  }
  bool AcceptTls(SSL_CTX* ctx) {
    if (pos_ != in_.size()) return false;
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    return SSL_accept(ssl_) == 1;
  }

 private:
  int fd_;
  SSL* ssl_ = nullptr;
  std::string in_;
  size_t pos_ = 0;
};

std::string Message(const Options& o) {
  std::string m = "From: <" + o.sender + ">\r\nTo: <" + o.rcpt +
                  ">\r\nSubject: tern tls bench\r\n"
                  "Message-ID: <tls-bench@client.bench.test>\r\n\r\n";
  std::string line(78, 'x');
  line += "\r\n";
  do {
    m += line;
  } while (m.size() + line.size() <= o.size);
  return m;
}

struct Shared {
  std::atomic<long> next{0};
  std::atomic<long> sent{0};
  std::atomic<long> resumed{0};
  std::atomic<long> errors{0};
  std::mutex mu;
  std::string example;
};

// One message; returns false with `why` on failure. `*session` is replaced
// with the connection's session when it has one to offer next time.
bool OneMessage(const Options& o, SSL_CTX* ctx, const std::string& tail,
                SSL_SESSION** session, bool* resumed, std::string* why) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::string("socket: ") + strerror(errno);
    return false;
  }
  Conn c(fd);
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *why = std::string("connect: ") + strerror(errno);
    return false;
  }
  std::string last;
  std::string ehlo = "EHLO " + o.helo + "\r\n";
  if (!c.Expect("220", &last) || !c.Send(ehlo) || !c.Expect("250", &last) ||
      !c.Send("STARTTLS\r\n") || !c.Expect("220", &last)) {
    *why = "before TLS: " + last;
    return false;
  }
  if (!c.StartTls(ctx, o.resume ? *session : nullptr)) {
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    *why = std::string("TLS handshake: ") + buf;
    return false;
  }
  *resumed = SSL_session_reused(c.ssl()) == 1;
  std::string txn = ehlo;
  if (!c.Send(txn) || !c.Expect("250", &last)) {
    *why = "EHLO after TLS: " + last;
    return false;
  }
  txn = "MAIL FROM:<" + o.sender + ">\r\nRCPT TO:<" + o.rcpt + ">\r\nDATA\r\n";
  if (!c.Send(txn) || !c.Expect("250", &last) || !c.Expect("250", &last) ||
      !c.Expect("354", &last) || !c.Send(tail) || !c.Expect("250", &last)) {
    *why = "transaction: " + last;
    return false;
  }
  c.Expect("221", &last);  // the message is in; QUIT's reply is a courtesy
  if (o.resume) {
    // TLS 1.3 tickets arrive after the handshake; by now they are in.
    // The latest session, as Python's SSLSocket.session gives it (after a
    // resumption without a new ticket: the resumed one).
    if (SSL_SESSION* s = SSL_get1_session(c.ssl())) {
      if (*session) SSL_SESSION_free(*session);
      *session = s;
    }
  }
  return true;
}

// --- the sink: the generator's ceiling ------------------------------------
// A TLS SMTP server that accepts everything and stores nothing: a thread
// per connection, one SSL_CTX (so one ticket key: resumption works).
void SinkConn(int fd, SSL_CTX* ctx) {
  Conn c(fd);
  std::string line;
  if (!c.Send("220 sink.bench.test ESMTP\r\n")) return;
  bool tls = false;
  for (;;) {
    if (!c.ReadLine(&line)) return;
    std::string cmd = line.substr(0, 4);
    for (char& ch : cmd) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
    bool ok = true;
    if (cmd == "EHLO") {
      ok = c.Send(tls ? "250-sink.bench.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                      : "250-sink.bench.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    } else if (cmd == "STAR" && !tls) {
      ok = c.Send("220 2.0.0 Ready\r\n") && c.AcceptTls(ctx);
      tls = true;
    } else if (cmd == "DATA") {
      ok = c.Send("354 go\r\n");
      while (ok && (ok = c.ReadLine(&line)) && line != ".") {
      }
      ok = ok && c.Send("250 2.0.0 Ok\r\n");
    } else if (cmd == "QUIT") {
      c.Send("221 2.0.0 Bye\r\n");
      return;
    } else {
      ok = c.Send("250 2.0.0 Ok\r\n");
    }
    if (!ok) return;
  }
}

int Sink(const Options& o, const std::string& cert, const std::string& key) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    std::fprintf(stderr, "tern_tls_load: cannot load %s / %s\n", cert.c_str(), key.c_str());
    return 2;
  }
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  static const unsigned char kSid[] = "sink";
  SSL_CTX_set_session_id_context(ctx, kSid, sizeof kSid - 1);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  if (bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(ls, 1024) != 0) {
    std::fprintf(stderr, "tern_tls_load: listen: %s\n", strerror(errno));
    return 2;
  }
  for (;;) {
    int fd = accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::thread(SinkConn, fd, ctx).detach();
  }
}

int Usage() {
  std::fprintf(stderr,
               "usage: tern_tls_load --port P [--host 127.0.0.1] [--sessions 32] "
               "[--count 1000] [--size 1024] [--resume] [--sender A] [--rcpt A] "
               "[--helo NAME]\n"
               "       tern_tls_load --sink --port P --cert PEM --key PEM\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool sink = false;
  std::string cert, key;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--host") o.host = value();
    else if (a == "--port") o.port = std::atoi(value().c_str());
    else if (a == "--sessions") o.sessions = std::atoi(value().c_str());
    else if (a == "--count") o.count = std::atol(value().c_str());
    else if (a == "--size") o.size = static_cast<size_t>(std::atol(value().c_str()));
    else if (a == "--resume") o.resume = true;
    else if (a == "--sender") o.sender = value();
    else if (a == "--rcpt") o.rcpt = value();
    else if (a == "--helo") o.helo = value();
    else if (a == "--sink") sink = true;
    else if (a == "--cert") cert = value();
    else if (a == "--key") key = value();
    else return Usage();
  }
  if (o.port <= 0 || o.sessions <= 0 || o.count <= 0) return Usage();
  // Loopback only: this tool never addresses anything else.
  if (o.host.rfind("127.", 0) != 0) {
    std::fprintf(stderr, "tern_tls_load: --host must be a 127.0.0.0/8 address\n");
    return 2;
  }

  if (sink) {
    signal(SIGPIPE, SIG_IGN);
    return Sink(o, cert, key);
  }
  signal(SIGPIPE, SIG_IGN);  // a server that hangs up is an error, not an exit
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // a self-signed bench certificate
  const std::string tail = Message(o) + ".\r\nQUIT\r\n";

  Shared shared;
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < o.sessions; ++t) {
    threads.emplace_back([&] {
      SSL_SESSION* session = nullptr;
      while (shared.next.fetch_add(1) < o.count) {
        bool resumed = false;
        std::string why;
        if (OneMessage(o, ctx, tail, &session, &resumed, &why)) {
          shared.sent++;
          if (resumed) shared.resumed++;
        } else {
          shared.errors++;
          if (session) SSL_SESSION_free(session);
          session = nullptr;
          std::lock_guard<std::mutex> lock(shared.mu);
          if (shared.example.empty()) shared.example = why;
        }
      }
      if (session) SSL_SESSION_free(session);
    });
  }
  for (auto& t : threads) t.join();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  SSL_CTX_free(ctx);
  std::string example;
  for (char ch : shared.example) {
    if (ch == '"' || ch == '\\') example += '\\';
    example += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
  }
  std::printf("{\"sent\": %ld, \"resumed\": %ld, \"errors\": %ld, \"wall_s\": %.4f, "
              "\"error_example\": \"%s\"}\n",
              shared.sent.load(), shared.resumed.load(), shared.errors.load(), wall,
              example.c_str());
  return shared.errors.load() == 0 ? 0 : 1;
}
