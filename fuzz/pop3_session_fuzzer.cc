// Fuzzes the POP3 session (pop3/session.h) with arbitrary client bytes in
// input-chosen chunks, against a fake connection that checks passwords and
// SASL with the real mechanisms and serves a fake maildrop.
//
// Input: 5 header bytes, then the client's bytes.
//   [0] bits: 1 TLS, 2 STLS available, 4 plaintext allowed, 8 SASL,
//       16 failures are delayed, 32 no USER command, 64 odd messages cannot
//       be opened, 128 UPDATE fails
//   [1] login outcome for right credentials: %8 = 0-4 ok, 5 in use,
//       6 login delay, 7 temporary failure; 8: the second failure locks
//       the client out; 16 EXPIRE, 32 LOGIN-DELAY
//   [2] chunk seed, [3] max chunk length (0: one Feed), [4] messages (%8)
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/sasl.h"
#include "fake_credentials.h"
#include "fuzz_common.h"
#include "pop3/session.h"

namespace {

using tern::fuzz::Printable;
using namespace tern::pop3;

class FakeDrop : public Maildrop {
 public:
  explicit FakeDrop(size_t n) : n_(n) {}
  size_t count() const override { return n_; }
  uint64_t size(size_t i) const override {
    FUZZ_CHECK(i < n_, "size(%zu) of %zu messages", i, n_);
    return 100 * (i + 1) + i;
  }
  std::string uidl(size_t i) const override {
    FUZZ_CHECK(i < n_, "uidl(%zu) of %zu messages", i, n_);
    return "uid-" + std::to_string(i);
  }

 private:
  size_t n_;
};

// Every line CRLF-terminated and printable ASCII (nothing the client sent
// is echoed), at most RFC 2449 4's 512 octets (SASL challenges aside), and
// no line of a multi-line response left unstuffed.
void Drain(std::string& out) {
  std::string_view s = out;
  while (!s.empty()) {
    size_t eol = s.find("\r\n");
    FUZZ_CHECK(eol != std::string_view::npos, "unterminated response: %s",
               Printable(s).c_str());
    std::string_view line = s.substr(0, eol);
    s.remove_prefix(eol + 2);
    FUZZ_CHECK(!line.empty(), "empty response line");
    for (char c : line) {
      FUZZ_CHECK(c >= 0x20 && c < 0x7f, "non-printable response: %s",
                 Printable(line).c_str());
    }
    bool challenge = line.rfind("+ ", 0) == 0;
    FUZZ_CHECK(challenge || line.size() + 2 <= 512, "response of %zu octets",
               line.size() + 2);
    FUZZ_CHECK(line[0] != '.' || line == ".", "unstuffed line %s",
               Printable(line).c_str());
  }
  out.clear();
}

// The connection's side of AUTH, with the real mechanisms.
class Host : public SessionHost {
 public:
  std::unique_ptr<tern::auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    return tern::auth::MakeMechanism(name, store);
  }
  bool AuthBlocked() override { return blocked; }
  std::chrono::milliseconds AuthFailed(std::string_view, std::string_view) override {
    if (++failures >= 2 && lock_out) blocked = true;
    return std::chrono::milliseconds(delay ? 100 : 0);
  }
  tern::fuzz::FakeCredentials store;
  bool blocked = false;
  bool lock_out = false;
  bool delay = false;
  int failures = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 5);
  uint8_t bits = in.byte(0), outcome = in.byte(1);

  SessionConfig config;
  config.hostname = "mx.example.test";
  config.sasl = bits & 8;
  config.sasl_mechanisms = "PLAIN LOGIN SCRAM-SHA-256";
  config.user_command = !(bits & 32);
  config.expire = (outcome & 16) ? "NEVER" : "";
  config.login_delay = (outcome & 32) ? 900 : -1;
  ClientInfo client;
  client.ip = "192.0.2.7";
  client.tls = bits & 1;
  client.stls_available = bits & 2;
  client.plaintext_ok = bits & 4;

  FakeDrop drop(in.byte(4) % 8);
  Host host;
  host.lock_out = outcome & 8;
  host.delay = bits & 16;
  bool logged_in = false;

  Session s(config, host, client);
  s.Greet();
  Drain(s.output());
  tern::fuzz::Chunker chunks(in.body(), in.byte(2), in.byte(3));
  bool closed = false;
  while (!closed && !chunks.done()) {
    std::string_view chunk = chunks.Next();
    int rounds = 0;
    while (!chunk.empty() && !closed) {
      FUZZ_CHECK(++rounds < 100000, "no progress");
      size_t used = s.Feed(chunk);
      FUZZ_CHECK(used <= chunk.size(), "consumed %zu of %zu", used,
                 chunk.size());
      FUZZ_CHECK(used == chunk.size() || s.need() != Need::kInput,
                 "stopped at %zu of %zu while still wanting input", used,
                 chunk.size());
      chunk.remove_prefix(used);
      switch (s.need()) {
        case Need::kInput:
          break;
        case Need::kSaslStep:
          // What pop3/connection.cc does, on its pool.
          FUZZ_CHECK(!s.InTransaction(), "authentication after login");
          s.SaslStepDone(s.RunSaslStep());
          break;
        case Need::kDelay:
          FUZZ_CHECK(host.delay, "a delay nobody asked for");
          s.DelayDone();
          break;
        case Need::kLogin: {
          // No login without a password check that really succeeded (the
          // fuzzer cannot forge a SCRAM proof).
          FUZZ_CHECK(host.store.granted > 0, "login of %s without a good password",
                     Printable(s.login_user()).c_str());
          FUZZ_CHECK(s.login_user() == tern::fuzz::kAccount, "login as %s",
                     Printable(s.login_user()).c_str());
          LoginResult r;
          switch (outcome % 8) {
            case 5:
              r.kind = LoginResult::Kind::kInUse;
              break;
            case 6:
              r.kind = LoginResult::Kind::kLoginDelay;
              break;
            case 7:
              r.kind = LoginResult::Kind::kTempFail;
              break;
            default:
              r.kind = LoginResult::Kind::kOk;
              r.maildrop = &drop;
              logged_in = true;
          }
          s.LoginDone(r);
          break;
        }
        case Need::kSend: {
          FUZZ_CHECK(logged_in, "send before login");
          size_t i = s.send_index();
          FUZZ_CHECK(i < drop.count(), "send of message %zu of %zu", i,
                     drop.count());
          for (size_t d : s.deleted()) {
            FUZZ_CHECK(d != i, "send of deleted message %zu", i);
          }
          s.SendOpened(!((bits & 64) && i % 2 == 1));
          break;
        }
        case Need::kUpdate: {
          FUZZ_CHECK(logged_in, "UPDATE before login");
          auto del = s.deleted();
          FUZZ_CHECK(!del.empty(), "UPDATE with nothing to delete");
          for (size_t d : del) FUZZ_CHECK(d < drop.count(), "deleted %zu", d);
          s.UpdateDone(!(bits & 128));
          FUZZ_CHECK(s.need() == Need::kClose, "no close after UPDATE");
          break;
        }
        case Need::kStartTls:
          FUZZ_CHECK(chunk.empty(), "input after STLS was kept");
          FUZZ_CHECK(!s.InTransaction(), "STLS after login");
          Drain(s.output());
          s.TlsStarted();
          break;
        case Need::kClose:
          closed = true;
          break;
      }
      Drain(s.output());
    }
  }
  if (!closed) {
    if (bits & 128) {
      s.Timeout();
    } else {
      s.Shutdown();
    }
    FUZZ_CHECK(s.need() == Need::kClose, "no close after Timeout/Shutdown");
    Drain(s.output());
  }
  return 0;
}
