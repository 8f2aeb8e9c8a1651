#include "http/protocol/session.h"

#include <http_parser.h>

#include <ctime>

#include "common/strings.h"

namespace tern::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of one query component: '+'
// is a space, %XX an octet; a malformed escape stays as it is.
std::string FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

// RFC 9110 5.5: field values are visible ASCII, spaces, tabs and obs-text;
// a Host value is narrower still (RFC 3986 3.2.2 host [":" port]).
bool ValidHost(std::string_view host) {
  if (host.empty()) return false;
  for (char c : host) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' ||
        c == '\\' || c == '"') {
      return false;
    }
  }
  return true;
}

// "Example.test:443" -> "example.test"; "[::1]:80" -> "::1".
std::string HostWithoutPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return ToLower(host);
    return ToLower(host.substr(1, close - 1));
  }
  size_t colon = host.rfind(':');
  if (colon != std::string_view::npos) host = host.substr(0, colon);
  return ToLower(host);
}

}  // namespace

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return &v;
  }
  return nullptr;
}

std::optional<std::string> Request::QueryParam(std::string_view name) const {
  for (std::string_view part : Split(query, '&')) {
    size_t eq = part.find('=');
    std::string key = FormDecode(part.substr(0, eq));
    if (key != name) continue;
    if (eq == std::string_view::npos) return std::string();
    return FormDecode(part.substr(eq + 1));
  }
  return std::nullopt;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string HttpDate(int64_t unix_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7],
           tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
           tm.tm_sec);
  return buf;
}

// The C parser and its callbacks, which write into the session. A callback
// returning non-zero stops the parser with an error; the session then
// answers with error_status_ (or 400).
struct Session::Parser {
  http_parser parser;
  http_parser_settings settings;

  static Session& Of(http_parser* p) { return *static_cast<Session*>(p->data); }

  // on_headers_complete's answers: 0 goes on, 1 and 2 mean "no body"
  // and "upgrade" to the parser; anything else stops it with an error.
  static constexpr int kRefuse = -1;

  // Counts request-line and field octets against the limit; too long a
  // target is 414 (RFC 9110 15.5.15), too many field octets 431 (RFC 6585 5).
  static bool Charge(Session& s, size_t n, bool target) {
    s.header_bytes_ += n;
    if (s.header_bytes_ > s.limits_.max_header_bytes) {
      s.error_status_ = target ? 414 : 431;
      return false;
    }
    return true;
  }

  static int OnMessageBegin(http_parser* p) {
    Session& s = Of(p);
    s.started_ = true;
    s.request_ = Request();
    s.field_.clear();
    s.in_value_ = false;
    s.header_bytes_ = 0;
    return 0;
  }
  static int OnUrl(http_parser* p, const char* at, size_t n) {
    Session& s = Of(p);
    if (!Charge(s, n, true)) return 1;
    s.request_.target.append(at, n);
    return 0;
  }
  static int OnHeaderField(http_parser* p, const char* at, size_t n) {
    Session& s = Of(p);
    if (!Charge(s, n, false)) return 1;
    if (s.in_value_) {
      s.field_.clear();
      s.in_value_ = false;
    }
    s.field_.append(at, n);
    return 0;
  }
  static int OnHeaderValue(http_parser* p, const char* at, size_t n) {
    Session& s = Of(p);
    if (!Charge(s, n, false)) return 1;
    if (!s.in_value_) {
      if (s.request_.headers.size() >= s.limits_.max_fields) {
        s.error_status_ = 431;
        return 1;
      }
      s.request_.headers.emplace_back(ToLower(s.field_), std::string());
      s.in_value_ = true;
    }
    s.request_.headers.back().second.append(at, n);
    return 0;
  }
  static int OnHeadersComplete(http_parser* p) {
    Session& s = Of(p);
    Request& r = s.request_;
    r.method = http_method_str(static_cast<http_method>(p->method));
    r.version_minor = p->http_major == 1 ? p->http_minor : 0;
    if (p->http_major != 1) {
      s.error_status_ = 505;
      return kRefuse;
    }
    // A request for a WebSocket or h2c upgrade, or CONNECT, is answered as
    // a plain request and the connection closed after it.
    if (p->upgrade) s.keep_alive_ = false;
    else s.keep_alive_ = http_should_keep_alive(p) != 0;
    for (auto& [name, value] : r.headers) value = std::string(Trim(value));

    struct http_parser_url url;
    http_parser_url_init(&url);
    bool connect = p->method == HTTP_CONNECT;
    if (http_parser_parse_url(r.target.data(), r.target.size(), connect ? 1 : 0, &url) != 0) {
      s.error_status_ = 400;
      return kRefuse;
    }
    auto part = [&](int field) -> std::string {
      if (!(url.field_set & (1 << field))) return {};
      return r.target.substr(url.field_data[field].off, url.field_data[field].len);
    };
    // RFC 9112 3.2: origin-form ("/path"), absolute-form (with scheme and
    // host), authority-form for CONNECT, "*" for OPTIONS; nothing else.
    bool origin = !r.target.empty() && r.target[0] == '/';
    bool absolute = (url.field_set & (1 << UF_SCHEMA)) && (url.field_set & (1 << UF_HOST));
    bool asterisk = r.target == "*" && p->method == HTTP_OPTIONS;
    if (!connect && !origin && !absolute && !asterisk) {
      s.error_status_ = 400;
      return kRefuse;
    }
    r.path = asterisk ? "*" : part(UF_PATH);
    if (r.path.empty()) r.path = "/";
    r.query = part(UF_QUERY);

    // RFC 9112 3.2: exactly one valid Host field; an absolute-form target
    // names the host itself and overrides the field (3.2.2).
    size_t hosts = 0;
    const std::string* host = nullptr;
    for (const auto& [name, value] : r.headers) {
      if (name == "host") {
        ++hosts;
        host = &value;
      }
    }
    if (hosts > 1 || (host != nullptr && !host->empty() && !ValidHost(*host))) {
      s.error_status_ = 400;
      return kRefuse;
    }
    std::string target_host = part(UF_HOST);
    if (!target_host.empty()) {
      r.host = ToLower(target_host);
    } else if (host != nullptr) {
      r.host = HostWithoutPort(*host);
    } else if (r.version_minor >= 1) {
      s.error_status_ = 400;  // "MUST respond with 400" to HTTP/1.1 without Host
      return kRefuse;
    }

    // RFC 9110 8.6: a body larger than we take is refused before it comes.
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > s.limits_.max_body) {
      s.error_status_ = 413;
      return kRefuse;
    }
    // RFC 9110 10.1.1: a client waiting for 100 (Continue) gets it before
    // it sends the body.
    if (const std::string* expect = r.Header("expect"); expect != nullptr) {
      if (ToLower(*expect) != "100-continue") {
        s.error_status_ = 417;
        return kRefuse;
      }
      if (r.version_minor >= 1 && (p->flags & F_CONTENTLENGTH) && p->content_length > 0) {
        s.output_ += "HTTP/1.1 100 Continue\r\n\r\n";
      }
    }
    return 0;
  }
  static int OnBody(http_parser* p, const char* at, size_t n) {
    Session& s = Of(p);
    if (s.request_.body.size() + n > s.limits_.max_body) {
      s.error_status_ = 413;
      return 1;
    }
    s.request_.body.append(at, n);
    return 0;
  }
  static int OnMessageComplete(http_parser* p) {
    Session& s = Of(p);
    s.need_ = Need::kRespond;
    s.started_ = false;
    ++s.requests_;
    // One request at a time: the parser stops here and Feed() reports the
    // octets used so far; the rest is fed again after Respond().
    http_parser_pause(p, 1);
    return 0;
  }
};

Session::Session(Limits limits) : limits_(limits), parser_(std::make_unique<Parser>()) {
  http_parser_init(&parser_->parser, HTTP_REQUEST);
  parser_->parser.data = this;
  http_parser_settings_init(&parser_->settings);
  parser_->settings.on_message_begin = Parser::OnMessageBegin;
  parser_->settings.on_url = Parser::OnUrl;
  parser_->settings.on_header_field = Parser::OnHeaderField;
  parser_->settings.on_header_value = Parser::OnHeaderValue;
  parser_->settings.on_headers_complete = Parser::OnHeadersComplete;
  parser_->settings.on_body = Parser::OnBody;
  parser_->settings.on_message_complete = Parser::OnMessageComplete;
}

Session::~Session() = default;

size_t Session::Feed(std::string_view data) {
  if (need_ != Need::kInput || data.empty()) return need_ == Need::kClose ? data.size() : 0;
  http_parser& p = parser_->parser;
  size_t used = http_parser_execute(&p, &parser_->settings, data.data(), data.size());
  http_errno err = HTTP_PARSER_ERRNO(&p);
  if (err == HPE_PAUSED) {
    http_parser_pause(&p, 0);
    return used;
  }
  if (err != HPE_OK) {
    int status = error_status_ != 0 ? error_status_ : 400;
    if (error_status_ == 0 && err == HPE_HEADER_OVERFLOW) status = 431;
    Fail(status, static_cast<int64_t>(std::time(nullptr)));
    return data.size();
  }
  if (p.upgrade && need_ == Need::kInput) {
    // Upgrade requests end the HTTP stream after their headers; what
    // follows is not HTTP. The request is answered, then the connection
    // closed (keep_alive_ is off).
    need_ = Need::kRespond;
    started_ = false;
    ++requests_;
  }
  return used;
}

void Session::Write(const Response& response, bool head, bool close, int64_t now_unix) {
  last_status_ = response.status;
  output_ += "HTTP/1.1 " + std::to_string(response.status) + " ";
  output_ += ReasonPhrase(response.status);
  output_ += "\r\nDate: " + HttpDate(now_unix) + "\r\n";
  bool no_body = response.status == 204 || response.status == 304 ||
                 response.status < 200;
  if (!response.content_type.empty()) {
    output_ += "Content-Type: " + response.content_type + "\r\n";
  }
  if (!no_body) {
    output_ += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  }
  for (const auto& [name, value] : response.headers) {
    output_ += name + ": " + value + "\r\n";
  }
  output_ += close ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
  output_ += "\r\n";
  if (!head && !no_body) output_ += response.body;
}

void Session::Respond(Response response, int64_t now_unix) {
  if (need_ != Need::kRespond) return;
  bool close = closing_ || !keep_alive_ || requests_ >= limits_.max_requests;
  Write(response, request_.method == "HEAD", close, now_unix);
  need_ = close ? Need::kClose : Need::kInput;
}

void Session::Fail(int status, int64_t now_unix) {
  Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::string(ReasonPhrase(status)) + "\n";
  Write(r, false, true, now_unix);
  started_ = false;
  need_ = Need::kClose;
}

void Session::Timeout(int64_t now_unix) {
  if (started_) {
    Fail(408, now_unix);
  } else {
    need_ = Need::kClose;
  }
}

void Session::Shutdown() {
  closing_ = true;
  if (!busy()) need_ = Need::kClose;
}

}  // namespace tern::http
