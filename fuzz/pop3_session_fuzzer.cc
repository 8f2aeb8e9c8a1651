// Fuzzes the POP3 session (pop3/session.h) with arbitrary client bytes in
// input-chosen chunks, against a fake connection that checks passwords and
// SASL with the real mechanisms and serves a fake maildrop.
//
// Input: 5 header bytes, then the client's bytes.
//   [0] bits: 1 TLS, 2 STLS available, 4 plaintext allowed, 8 SASL, 16 APOP,
//       32 no USER command, 64 odd messages cannot be opened, 128 UPDATE fails
//   [1] login outcome for right credentials: %8 = 0-4 ok, 5 in use,
//       6 login delay, 7 temporary failure; 8: bad credentials are
//       "blocked"; 16 EXPIRE, 32 LOGIN-DELAY; 64 SASL success carries data
//   [2] chunk seed, [3] max chunk length (0: one Feed), [4] messages (%8)
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 5);
  uint8_t bits = in.byte(0), outcome = in.byte(1);

  SessionConfig config;
  config.hostname = "mx.example.test";
  config.sasl = bits & 8;
  config.sasl_mechanisms = "PLAIN LOGIN SCRAM-SHA-256";
  config.apop = bits & 16;
  config.user_command = !(bits & 32);
  config.expire = (outcome & 16) ? "NEVER" : "";
  config.login_delay = (outcome & 32) ? 900 : -1;
  ClientInfo client;
  client.ip = "192.0.2.7";
  client.tls = bits & 1;
  client.stls_available = bits & 2;
  client.plaintext_ok = bits & 4;

  FakeDrop drop(in.byte(4) % 8);
  tern::fuzz::FakeCredentials store;
  std::unique_ptr<tern::auth::SaslMechanism> sasl;
  bool logged_in = false;

  Session s(config, client);
  s.Greet("<1896.697170952@mx.example.test>");
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
        case Need::kAuth: {
          // What pop3/connection.cc does, with fakes.
          FUZZ_CHECK(!s.InTransaction(), "authentication after login");
          const AuthRequest& req = s.auth_request();
          AuthResult r;
          std::optional<std::string> account;
          if (req.kind == AuthRequest::Kind::kPass) {
            account = store.CheckPassword(req.user, req.secret).value();
          } else if (req.kind == AuthRequest::Kind::kApop) {
            FUZZ_CHECK(config.apop, "APOP request while APOP is off");
            r.kind = AuthResult::Kind::kPermFail;
          } else {
            FUZZ_CHECK(config.sasl, "SASL request while SASL is off");
            tern::auth::SaslStep step;
            step.kind = tern::auth::SaslStep::Kind::kMalformed;
            if (req.kind == AuthRequest::Kind::kSaslStart) {
              sasl = tern::auth::MakeMechanism(req.mechanism, store);
              FUZZ_CHECK(sasl != nullptr, "unknown mechanism %s passed on",
                         Printable(req.mechanism).c_str());
              step = sasl->Start(
                  req.has_initial ? std::optional<std::string_view>(req.secret)
                                  : std::nullopt);
            } else if (sasl) {
              step = sasl->Next(req.secret);
            }
            using K = tern::auth::SaslStep::Kind;
            if (step.kind == K::kChallenge) {
              r.kind = AuthResult::Kind::kChallenge;
              r.data = step.data;
            } else if (step.kind == K::kSuccess) {
              account = step.user;
              r.data = step.data;
            } else if (step.kind == K::kMalformed) {
              r.kind = AuthResult::Kind::kMalformed;
            }
            if (step.kind != K::kChallenge) sasl.reset();
          }
          if (account) {
            switch (outcome % 8) {
              case 5:
                r.kind = AuthResult::Kind::kInUse;
                break;
              case 6:
                r.kind = AuthResult::Kind::kLoginDelay;
                break;
              case 7:
                r.kind = AuthResult::Kind::kTempFail;
                break;
              default:
                r.kind = AuthResult::Kind::kOk;
                r.user = *account;
                r.maildrop = &drop;
                // Success data (as SCRAM sends) exercises the empty-answer
                // step, which the fuzzer cannot reach with a real proof.
                if ((outcome & 64) && r.data.empty() &&
                    req.kind != AuthRequest::Kind::kPass) {
                  r.data = "v=fuzz";
                }
                logged_in = true;
            }
          } else if (r.kind == AuthResult::Kind::kBadCredentials &&
                     (outcome & 8) && store.checks > 1) {
            r.kind = AuthResult::Kind::kBlocked;
          }
          s.AuthDone(std::move(r));
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
