// The HTTP/1.1 server session (RFC 9112 message syntax, RFC 9110
// semantics), sans-I/O like the mail protocols: bytes in, requests out,
// responses serialized into output(). The parsing itself is libhttp-parser
// (Debian's libhttp-parser-dev; why that library: docs/architecture.md,
// "HTTP"); this class adds the limits, the Host rules, keep-alive and the
// error answers. The connection (http/server/) routes each request and
// hands the response back with Respond().
//
// Deliberately small: requests with Content-Length or chunked bodies up
// to Limits::max_body, no upgrades (WebSocket, h2c), no CONNECT, one
// request answered at a time (pipelined requests wait in the input).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::http {

struct Request {
  std::string method;  // "GET", upper case as sent
  std::string target;  // as sent: "/path?query" (or absolute-form)
  std::string path;    // the target's path, "/" when empty; not decoded
  std::string query;   // after '?', not decoded
  // RFC 9112 3.2: from the Host field (or an absolute-form target), lower
  // case, without the port.
  std::string host;
  int version_minor = 1;  // HTTP/1.x
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  std::string body;

  // The first field named `name` (lower case), or null.
  const std::string* Header(std::string_view name) const;
  // A query parameter's value, percent-decoded ("emailaddress").
  std::optional<std::string> QueryParam(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type;  // empty: no Content-Type (no body)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra fields
  // Set by Respond() for HEAD: the headers of the GET answer, no body.
};

struct Limits {
  size_t max_header_bytes = 16 * 1024;  // request line and fields
  size_t max_fields = 100;
  size_t max_body = 64 * 1024;
  uint32_t max_requests = 100;          // per connection, then close
};

enum class Need {
  kInput,    // read more
  kRespond,  // request() is complete: call Respond()
  kClose,    // write output() and close
};

// The reason phrase for a status code (RFC 9110 15).
std::string_view ReasonPhrase(int status);

// RFC 9110 5.6.7 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
std::string HttpDate(int64_t unix_seconds);

class Session {
 public:
  explicit Session(Limits limits = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Feeds received bytes; returns how many were used. Stops after a
  // complete request (the rest is fed again after Respond()) or at an
  // error (the error answer is in output() and need() is kClose).
  size_t Feed(std::string_view data);
  Need need() const { return need_; }
  const Request& request() const { return request_; }
  // Serializes the answer to request(); the connection stays open for the
  // next request unless either side asked to close, the request limit is
  // reached, or CloseAfterResponse() was called.
  void Respond(Response response, int64_t now_unix);
  // No more requests after the one in progress (the server stops).
  void CloseAfterResponse() { closing_ = true; }
  std::string& output() { return output_; }

  // The read deadline passed: 408 when a request had begun (RFC 9110
  // 15.5.9), silence on an idle keep-alive connection.
  void Timeout(int64_t now_unix);
  // The server stops: an idle connection just closes.
  void Shutdown();
  // True while a request is partly read or waiting for its answer.
  bool busy() const { return started_ || need_ == Need::kRespond; }

  uint32_t requests() const { return requests_; }
  // The status of the last answer (for the access log).
  int last_status() const { return last_status_; }

 private:
  struct Parser;
  friend struct Parser;
  void Fail(int status, int64_t now_unix);
  void Write(const Response& response, bool head, bool close, int64_t now_unix);

  Limits limits_;
  std::unique_ptr<Parser> parser_;
  Request request_;
  std::string field_;  // the field name being read
  bool in_value_ = false;
  size_t header_bytes_ = 0;
  bool started_ = false;
  bool keep_alive_ = true;
  bool closing_ = false;
  int error_status_ = 0;  // set by a callback that refuses the request
  uint32_t requests_ = 0;
  int last_status_ = 0;
  Need need_ = Need::kInput;
  std::string output_;
};

}  // namespace tern::http
