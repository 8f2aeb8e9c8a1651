// Fuzzes the web listeners' request side: http::Session (libhttp-parser
// under Tern's limits and Host rules) fed in input-chosen chunks, each
// complete request answered, and the documents' XML reader
// (AutodiscoverRequestEmail) on each request body. Properties: Feed()
// never takes more than given, and takes nothing only when the session
// waits for an answer or has closed; the answers are whole responses with
// a status line, a Date, exactly one Connection field and a body of its
// Content-Length (none for HEAD); a request the session hands out respects the
// limits (target and fields within max_header_bytes, at most max_fields
// fields, body within max_body) and has a path starting with '/' (or '*'
// for OPTIONS); an HTTP/1.1 request always has a Host field or an
// absolute target; the same input
// fed whole and in chunks gives the same requests.
//
// Input: 4 header bytes, then the client's bytes.
//   [0] bit 1: small limits (256 octets of header, 8 fields, 16 octets
//       of body, 3 requests)
//   [1] chunk seed, [2] max chunk length (0: one Feed), [3] unused
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "http/protocol/documents.h"
#include "http/protocol/session.h"

namespace {

using tern::fuzz::Chunker;
using tern::fuzz::Input;
using tern::fuzz::Printable;
using tern::http::Limits;
using tern::http::Need;
using tern::http::Request;
using tern::http::Response;
using tern::http::Session;

constexpr int64_t kNow = 1796500000;

struct Run {
  std::vector<std::string> requests;  // "METHOD host path body-size"
  bool closed = false;
};

void CheckRequest(const Request& r, const Limits& limits) {
  FUZZ_CHECK(!r.method.empty(), "empty method");
  FUZZ_CHECK(r.target.size() <= limits.max_header_bytes, "target of %zu octets",
             r.target.size());
  FUZZ_CHECK(r.headers.size() <= limits.max_fields, "%zu fields", r.headers.size());
  size_t octets = r.target.size();
  for (const auto& [name, value] : r.headers) {
    octets += name.size() + value.size();
    for (char c : name) {
      FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "field name not lower case: %s",
                 Printable(name).c_str());
    }
  }
  FUZZ_CHECK(octets <= limits.max_header_bytes, "%zu header octets", octets);
  FUZZ_CHECK(r.body.size() <= limits.max_body, "body of %zu octets", r.body.size());
  FUZZ_CHECK(r.path == "*" || (!r.path.empty() && (r.path[0] == '/' || r.method == "CONNECT")),
             "path %s", Printable(r.path).c_str());
  // RFC 9112 3.2: an HTTP/1.1 request has a Host field (its value may be
  // empty) or an absolute-form target naming the host.
  if (r.version_minor >= 1 && r.method != "CONNECT") {
    FUZZ_CHECK(r.Header("host") != nullptr || !r.host.empty(),
               "HTTP/1.1 request without a host");
  }
  // The Autodiscover reader on any body: whatever it returns is text
  // without markup once escaped.
  if (auto email = tern::http::AutodiscoverRequestEmail(r.body)) {
    std::string escaped = tern::http::XmlEscape(*email);
    FUZZ_CHECK(escaped.find('<') == std::string::npos, "unescaped markup");
  }
}

// Checks what one step appended: interim 100 (Continue) lines, then at
// most one whole response. `head_request`: its body is left out.
void CheckStep(std::string_view out, bool head_request) {
  constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  while (out.substr(0, kContinue.size()) == kContinue) out.remove_prefix(kContinue.size());
  if (out.empty()) return;
  FUZZ_CHECK(out.substr(0, 9) == "HTTP/1.1 ", "response starts %s",
             Printable(out.substr(0, 40)).c_str());
  size_t end = out.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string_view::npos, "unterminated head");
  std::string_view head = out.substr(0, end + 2);
  std::string_view body = out.substr(end + 4);
  FUZZ_CHECK(head.find("\r\nDate: ") != std::string_view::npos, "no Date");
  size_t connection = 0;
  for (size_t at = head.find("\r\nConnection: "); at != std::string_view::npos;
       at = head.find("\r\nConnection: ", at + 1)) {
    ++connection;
  }
  FUZZ_CHECK(connection == 1, "%zu Connection fields", connection);
  size_t cl = head.find("\r\nContent-Length: ");
  FUZZ_CHECK(cl != std::string_view::npos, "no Content-Length");
  size_t eol = head.find("\r\n", cl + 2);
  std::string n(head.substr(cl + 18, eol - cl - 18));
  size_t length = std::stoul(n);
  FUZZ_CHECK(body.size() == (head_request ? 0 : length), "body of %zu octets, length %zu",
             body.size(), length);
}

Run Drive(std::string_view text, const Limits& limits, uint8_t seed, uint8_t max_chunk) {
  Run run;
  Session s(limits);
  Chunker chunks(text, seed, max_chunk);
  std::string pending;
  while (!run.closed && (!chunks.done() || !pending.empty())) {
    if (pending.empty()) pending.assign(chunks.Next());
    size_t offered = pending.size();
    size_t used = s.Feed(pending);
    FUZZ_CHECK(used <= offered, "Feed took %zu of %zu", used, offered);
    // Input is taken whole unless a request is complete (the rest waits
    // for its answer) or the session has closed.
    FUZZ_CHECK(used == offered || s.need() != Need::kInput, "Feed took %zu of %zu",
               used, offered);
    pending.erase(0, used);
    bool head = false;
    if (s.need() == Need::kRespond) {
      const Request& r = s.request();
      CheckRequest(r, limits);
      head = r.method == "HEAD";
      run.requests.push_back(r.method + " " + r.host + " " + r.path + " " +
                             std::to_string(r.body.size()));
      Response ok;
      ok.content_type = "text/plain";
      ok.body = "ok";
      s.Respond(ok, kNow);
    }
    CheckStep(s.output(), head);
    s.output().clear();
    if (s.need() == Need::kClose) run.closed = true;
  }
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size, 4);
  Limits limits;
  if (in.byte(0) & 1) {
    limits.max_header_bytes = 256;
    limits.max_fields = 8;
    limits.max_body = 16;
    limits.max_requests = 3;
  }
  Run chunked = Drive(in.body(), limits, in.byte(1), in.byte(2));
  Run whole = Drive(in.body(), limits, 0, 0);
  FUZZ_CHECK(chunked.requests == whole.requests, "%zu requests chunked, %zu whole",
             chunked.requests.size(), whole.requests.size());
  return 0;
}
