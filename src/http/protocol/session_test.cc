// Unit tests for the sans-I/O HTTP session: request parsing, the Host
// rules of RFC 9112 3.2, keep-alive and pipelining, HEAD, the limits and
// their status codes, timeouts and shutdown.
#include "http/protocol/session.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::http {
namespace {

constexpr int64_t kNow = 1796500000;

Response Ok(std::string body) {
  Response r;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

TEST(HttpSession, ParsesARequest) {
  Session s;
  std::string in =
      "GET /mail/config-v1.1.xml?emailaddress=a%40b.test&x=1+2 HTTP/1.1\r\n"
      "Host: Autoconfig.Example.TEST:8080\r\nUser-Agent:  t \r\n\r\n";
  EXPECT_EQ(s.Feed(in), in.size());
  ASSERT_EQ(s.need(), Need::kRespond);
  const Request& r = s.request();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/mail/config-v1.1.xml");
  EXPECT_EQ(r.host, "autoconfig.example.test");
  EXPECT_EQ(*r.Header("user-agent"), "t");
  EXPECT_EQ(r.QueryParam("emailaddress"), "a@b.test");
  EXPECT_EQ(r.QueryParam("x"), "1 2");
  EXPECT_FALSE(r.QueryParam("y").has_value());
  s.Respond(Ok("hi"), kNow);
  EXPECT_EQ(s.need(), Need::kInput);
  EXPECT_EQ(s.output(),
            "HTTP/1.1 200 OK\r\nDate: " + HttpDate(kNow) +
                "\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                "Connection: keep-alive\r\n\r\nhi");
}

TEST(HttpSession, HttpDateIsImfFixdate) {
  EXPECT_EQ(HttpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST(HttpSession, PipelinedRequestsOneAtATime) {
  Session s;
  std::string in = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t used = s.Feed(in);
  ASSERT_EQ(s.need(), Need::kRespond);
  EXPECT_EQ(s.request().path, "/a");
  ASSERT_LT(used, in.size());
  s.Respond(Ok("1"), kNow);
  EXPECT_EQ(s.Feed(std::string_view(in).substr(used)), in.size() - used);
  ASSERT_EQ(s.need(), Need::kRespond);
  EXPECT_EQ(s.request().path, "/b");
  EXPECT_EQ(s.requests(), 2u);
}

TEST(HttpSession, ByteAtATime) {
  Session s;
  std::string in = "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
  for (char c : in) {
    ASSERT_EQ(s.need(), Need::kInput);
    EXPECT_EQ(s.Feed(std::string_view(&c, 1)), 1u);
  }
  ASSERT_EQ(s.need(), Need::kRespond);
  EXPECT_EQ(s.request().body, "abc");
}

TEST(HttpSession, ChunkedBody) {
  Session s;
  s.Feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  ASSERT_EQ(s.need(), Need::kRespond);
  EXPECT_EQ(s.request().body, "abcde");
}

TEST(HttpSession, HostRules) {
  auto status = [](std::string in) {
    Session s;
    s.Feed(in);
    if (s.need() == Need::kRespond) return 0;
    EXPECT_EQ(s.need(), Need::kClose);
    return std::stoi(s.output().substr(9, 3));
  };
  EXPECT_EQ(status("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
  // RFC 9112 3.2: the request-target forms.
  EXPECT_EQ(status("GET *mail/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
  // RFC 9112 3.2: an empty Host is allowed (a target without authority).
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 0);
  // HTTP/1.0 may leave Host out; absolute-form names the host itself.
  EXPECT_EQ(status("GET / HTTP/1.0\r\n\r\n"), 0);
  Session s;
  s.Feed("GET http://Mta-Sts.Example.test/.well-known/mta-sts.txt HTTP/1.1\r\n"
         "Host: other\r\n\r\n");
  ASSERT_EQ(s.need(), Need::kRespond);
  EXPECT_EQ(s.request().host, "mta-sts.example.test");
  EXPECT_EQ(s.request().path, "/.well-known/mta-sts.txt");
}

TEST(HttpSession, KeepAliveAndClose) {
  {
    Session s;
    s.Feed("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.Respond(Ok(""), kNow);
    EXPECT_EQ(s.need(), Need::kClose);
    EXPECT_NE(s.output().find("Connection: close"), std::string::npos);
  }
  {
    // HTTP/1.0 closes unless asked to keep the connection.
    Session s;
    s.Feed("GET / HTTP/1.0\r\n\r\n");
    s.Respond(Ok(""), kNow);
    EXPECT_EQ(s.need(), Need::kClose);
  }
  {
    Limits l;
    l.max_requests = 1;
    Session s(l);
    s.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.Respond(Ok(""), kNow);
    EXPECT_EQ(s.need(), Need::kClose);
  }
}

TEST(HttpSession, HeadHasNoBody) {
  Session s;
  s.Feed("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  s.Respond(Ok("hello"), kNow);
  EXPECT_NE(s.output().find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_TRUE(s.output().ends_with("\r\n\r\n"));
}

TEST(HttpSession, Limits) {
  auto status = [](std::string in, Limits l = {}) {
    Session s(l);
    s.Feed(in);
    EXPECT_EQ(s.need(), Need::kClose) << in.substr(0, 60);
    return s.output().size() > 12 ? std::stoi(s.output().substr(9, 3)) : 0;
  };
  EXPECT_EQ(status("GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"), 414);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: x\r\nA: " + std::string(17000, 'b') + "\r\n\r\n"),
            431);
  std::string many = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 120; ++i) many += "F" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(status(many + "\r\n"), 431);
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"), 413);
  Limits small;
  small.max_body = 4;
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nabcde\r\n0\r\n\r\n",
                   small),
            413);
  EXPECT_EQ(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
  EXPECT_EQ(status("\x16\x03\x01garbage\r\n\r\n"), 400);
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n"), 417);
}

TEST(HttpSession, ExpectContinue) {
  Session s;
  s.Feed("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(s.need(), Need::kInput);
  EXPECT_EQ(s.output(), "HTTP/1.1 100 Continue\r\n\r\n");
  s.output().clear();
  s.Feed("ok");
  EXPECT_EQ(s.need(), Need::kRespond);
}

TEST(HttpSession, TimeoutAndShutdown) {
  {
    Session s;
    s.Timeout(kNow);  // idle: closed without a word
    EXPECT_EQ(s.need(), Need::kClose);
    EXPECT_TRUE(s.output().empty());
  }
  {
    Session s;
    s.Feed("GET / HTTP/1.1\r\nHo");
    EXPECT_TRUE(s.busy());
    s.Timeout(kNow);
    EXPECT_EQ(s.need(), Need::kClose);
    EXPECT_TRUE(s.output().starts_with("HTTP/1.1 408 Request Timeout\r\n"));
  }
  {
    // A request being answered finishes; the connection closes after it.
    Session s;
    s.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.Shutdown();
    EXPECT_EQ(s.need(), Need::kRespond);
    s.Respond(Ok(""), kNow);
    EXPECT_EQ(s.need(), Need::kClose);
  }
}

TEST(HttpSession, UpgradeIsAnsweredThenClosed) {
  Session s;
  s.Feed("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
         "\x81\x85" "binary");
  ASSERT_EQ(s.need(), Need::kRespond);
  s.Respond(Ok(""), kNow);
  EXPECT_EQ(s.need(), Need::kClose);
}

}  // namespace
}  // namespace tern::http
