// Micro-benchmarks of the sans-I/O SMTP session (src/smtp/protocol): DATA
// content throughput in bytes/s and command rate (NOOP, MAIL/RCPT/RSET,
// whole small transactions, session set-up), with no sockets or disk.
//
// CMake (top-level CMakeLists.txt; `libbenchmark-dev` provides the package):
//   find_package(benchmark QUIET)
//   if(benchmark_FOUND)
//     add_executable(tern_parser_bench bench/parser_bench.cc)
//     target_link_libraries(tern_parser_bench PRIVATE tern_core benchmark::benchmark)
//   endif()
// bench/run.sh runs build/tern_parser_bench when it exists; by hand:
//   build/tern_parser_bench --benchmark_filter=Data
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/protocol/session.h"

namespace {

using tern::smtp::ClientInfo;
using tern::smtp::Mailbox;
using tern::smtp::Need;
using tern::smtp::RcptVerdict;
using tern::smtp::Session;
using tern::smtp::SessionConfig;
using tern::smtp::SessionHost;
using tern::smtp::Transaction;

// Accepts every recipient and swallows the content, counting it.
class NullHost : public SessionHost {
 public:
  RcptVerdict CheckRecipient(const Transaction&, const Mailbox&) override {
    return RcptVerdict{};
  }
  std::string BeginMessage(const Transaction&) override { return "BENCH0001"; }
  bool MessageData(std::string_view data) override {
    bytes += data.size();
    benchmark::DoNotOptimize(data.data());
    return true;
  }
  void AbortMessage() override { ++aborted; }
  std::string Now() override { return "Fri, 27 Nov 2026 12:00:00 +0000"; }

  uint64_t bytes = 0;
  uint64_t aborted = 0;
};

ClientInfo Client() {
  ClientInfo c;
  c.ip = "127.0.0.1";
  c.port = 40000;
  c.local_ip = "127.0.0.1";
  c.local_port = 25;
  return c;
}

SessionConfig Config() {
  SessionConfig c;
  c.hostname = "mx.bench.test";
  c.max_message_size = 64ull * 1024 * 1024;
  return c;
}

// Feeds all of `data`, committing every message the session asks for, as
// the connection coroutine would. Returns false if the session wants to
// close.
bool FeedAll(Session& s, std::string_view data) {
  while (!data.empty()) {
    size_t n = s.Feed(data);
    data.remove_prefix(n);
    if (s.need() == Need::kCommit) {
      s.Committed(true);
    } else if (s.need() == Need::kClose) {
      return false;
    }
  }
  return true;
}

// A body of `size` octets in 78-octet lines (76 + CRLF), one line in 64
// starting with a stuffed dot, ending with CRLF; without the final ".".
std::string MakeBody(size_t size) {
  std::string body =
      "From: <sender@bench.test>\r\nTo: <user@bench.test>\r\n"
      "Subject: parser benchmark\r\nMessage-ID: <1@client.bench.test>\r\n\r\n";
  std::string line(76, 'x');
  for (size_t i = 0; body.size() < size; ++i) {
    if (i % 64 == 63) {
      body += "..";
      body.append(line, 0, 74);
    } else {
      body += line;
    }
    body += "\r\n";
  }
  return body;
}

constexpr std::string_view kEnvelope =
    "MAIL FROM:<sender@bench.test>\r\n"
    "RCPT TO:<user@bench.test>\r\n"
    "DATA\r\n";

// DATA content: a 1 MiB message fed in chunks of range(0) octets.
void BM_DataThroughput(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  const std::string body = MakeBody(1 << 20) + ".\r\n";
  NullHost host;
  Session s(Config(), host, Client());
  s.Greet();
  FeedAll(s, "EHLO client.bench.test\r\n");
  s.output().clear();
  for (auto _ : state) {
    FeedAll(s, kEnvelope);
    for (size_t off = 0; off < body.size(); off += chunk) {
      FeedAll(s, std::string_view(body).substr(off, chunk));
    }
    if (s.output().find("250 2.0.0 Ok: queued") == std::string::npos) {
      state.SkipWithError(("message not accepted: " + s.output()).c_str());
      break;
    }
    s.output().clear();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  // Octets handed to the host per message (unstuffed, Received: added).
  state.counters["stored_bytes"] =
      benchmark::Counter(static_cast<double>(host.bytes), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_DataThroughput)->Arg(4096)->Arg(65536)->Unit(benchmark::kMicrosecond);

// Whole small transactions over one connection: MAIL, RCPT, DATA, a 1 KiB
// body, the final dot, commit. Items are messages.
void BM_SmallMessage(benchmark::State& state) {
  const std::string body = MakeBody(1024) + ".\r\n";
  std::string txn(kEnvelope);
  NullHost host;
  Session s(Config(), host, Client());
  s.Greet();
  FeedAll(s, "EHLO client.bench.test\r\n");
  s.output().clear();
  for (auto _ : state) {
    FeedAll(s, txn);
    FeedAll(s, body);
    s.output().clear();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (txn.size() + body.size())));
}
BENCHMARK(BM_SmallMessage);

// NOOP commands, one per Feed.
void BM_Noop(benchmark::State& state) {
  NullHost host;
  Session s(Config(), host, Client());
  s.Greet();
  FeedAll(s, "EHLO client.bench.test\r\n");
  s.output().clear();
  for (auto _ : state) {
    FeedAll(s, "NOOP\r\n");
    s.output().clear();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Noop);

// MAIL/RCPT/RSET cycles, pipelined in one Feed. Items are commands.
void BM_MailRcptRset(benchmark::State& state) {
  constexpr std::string_view kCycle =
      "MAIL FROM:<sender@bench.test>\r\nRCPT TO:<user@bench.test>\r\nRSET\r\n";
  NullHost host;
  Session s(Config(), host, Client());
  s.Greet();
  FeedAll(s, "EHLO client.bench.test\r\n");
  s.output().clear();
  for (auto _ : state) {
    FeedAll(s, kCycle);
    s.output().clear();
  }
  state.SetItemsProcessed(state.iterations() * 3);
}
BENCHMARK(BM_MailRcptRset);

// A connection's protocol cost without a message: construct, greet, EHLO,
// QUIT, destroy. Items are sessions.
void BM_SessionSetup(benchmark::State& state) {
  NullHost host;
  const SessionConfig config = Config();
  const ClientInfo client = Client();
  for (auto _ : state) {
    Session s(config, host, client);
    s.Greet();
    FeedAll(s, "EHLO client.bench.test\r\nQUIT\r\n");
    benchmark::DoNotOptimize(s.output().data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SessionSetup);

}  // namespace

BENCHMARK_MAIN();
