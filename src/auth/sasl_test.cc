// Tests for the SASL mechanisms against an in-memory credential store: the
// RFC 7677 section 3 SCRAM-SHA-256 exchange byte for byte, a SCRAM client
// written here from RFC 5802, PLAIN and LOGIN, malformed input, and users
// that do not exist.
#include "auth/sasl.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <map>
#include <string>
#include <utility>

#include "common/base64.h"
#include "common/strings.h"

namespace tern::auth {
namespace {

using Kind = SaslStep::Kind;

class FakeStore : public CredentialStore {
 public:
  void Add(const std::string& address, const std::string& password,
           std::optional<ScramCredentials> scram = std::nullopt) {
    users_[ToLower(address)] = {
        address, password, scram ? *scram : MakeScramCredentials(password)};
  }
  void DropScram(const std::string& address) {
    users_[ToLower(address)].scram = ScramCredentials{};
  }

  PasswordCheck CheckPassword(
      const std::string& user, const std::string& password) override {
    ++password_checks;
    if (broken) return Err("database is locked");
    auto it = users_.find(ToLower(user));
    if (it == users_.end() || it->second.password != password) {
      return std::nullopt;
    }
    return it->second.address;
  }
  ScramAnswer Scram(
      const std::string& user) override {
    last_scram_user = user;
    if (broken) return Err("database is locked");
    auto it = users_.find(ToLower(user));
    if (it == users_.end() || it->second.scram.stored_key.empty()) {
      return std::nullopt;
    }
    return std::make_pair(it->second.address, it->second.scram);
  }

  int password_checks = 0;
  std::string last_scram_user;
  bool broken = false;  // every lookup fails as if the database did

 private:
  struct User {
    std::string address;
    std::string password;
    ScramCredentials scram;
  };
  std::map<std::string, User> users_;
};

// ----------------------------------------------------------- SCRAM --

constexpr char kRfcClientFirst[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr char kRfcServerNonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr char kRfcServerFirst[] =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr char kRfcClientFinal[] =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr char kRfcServerFinal[] =
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramCredentials RfcCredentials() {
  return MakeScramCredentialsWithSalt(
      "pencil", *Base64Decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
}

TEST(SaslScramTest, Rfc7677ExampleExchange) {
  FakeStore store;
  store.Add("user", "pencil", RfcCredentials());
  auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
  SaslStep first = mech->Start(std::string_view(kRfcClientFirst));
  ASSERT_EQ(first.kind, Kind::kChallenge);
  EXPECT_EQ(first.data, kRfcServerFirst);
  SaslStep final_step = mech->Next(kRfcClientFinal);
  ASSERT_EQ(final_step.kind, Kind::kSuccess);
  EXPECT_EQ(final_step.data, kRfcServerFinal);
  EXPECT_EQ(final_step.user, "user");
  // Nothing more is expected once the exchange is over.
  EXPECT_EQ(mech->Next("x").kind, Kind::kMalformed);
}

TEST(SaslScramTest, Rfc7677ExampleWithoutInitialResponse) {
  FakeStore store;
  store.Add("user", "pencil", RfcCredentials());
  auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
  SaslStep empty = mech->Start(std::nullopt);
  ASSERT_EQ(empty.kind, Kind::kChallenge);
  EXPECT_EQ(empty.data, "");
  EXPECT_EQ(mech->Next(kRfcClientFirst).data, kRfcServerFirst);
  SaslStep done = mech->Next(kRfcClientFinal);
  EXPECT_EQ(done.kind, Kind::kSuccess);
  EXPECT_EQ(done.data, kRfcServerFinal);
}

TEST(SaslScramTest, WrongPasswordProofFails) {
  FakeStore store;
  store.Add("user", "pencil2",
            MakeScramCredentialsWithSalt(
                "pen", *Base64Decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096));
  auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
  ASSERT_EQ(mech->Start(std::string_view(kRfcClientFirst)).data,
            kRfcServerFirst);
  SaslStep done = mech->Next(kRfcClientFinal);
  EXPECT_EQ(done.kind, Kind::kFailure);
  EXPECT_EQ(done.data, "");
  EXPECT_EQ(done.user, "");
}

// A client built from RFC 5802 3, independent of the server code path.
struct TestClient {
  TestClient(std::string user, std::string password, std::string gs2 = "n,,")
      : user(std::move(user)),
        password(std::move(password)),
        gs2(std::move(gs2)) {}

  std::string user;  // already saslname-encoded
  std::string password;
  std::string gs2;
  std::string client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
  std::string first_bare;

  std::string First() {
    first_bare = "n=" + user + ",r=" + client_nonce;
    return gs2 + first_bare;
  }

  static std::string Hmac(std::string_view key, std::string_view data) {
    unsigned char out[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
         &len);
    return std::string(reinterpret_cast<char*>(out), len);
  }

  // Returns client-final for a server-first, and the expected server-final.
  std::pair<std::string, std::string> Final(const std::string& server_first) {
    auto attrs = Split(server_first, ',');
    std::string nonce = attrs.at(0).substr(2);
    std::string salt = *Base64Decode(attrs.at(1).substr(2));
    int iterations = std::stoi(attrs.at(2).substr(2));
    unsigned char salted[32];
    PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                      reinterpret_cast<const unsigned char*>(salt.data()),
                      static_cast<int>(salt.size()), iterations, EVP_sha256(),
                      32, salted);
    std::string salted_password(reinterpret_cast<char*>(salted), 32);
    std::string client_key = Hmac(salted_password, "Client Key");
    unsigned char stored[32];
    SHA256(reinterpret_cast<const unsigned char*>(client_key.data()), 32,
           stored);
    std::string without_proof = "c=" + Base64Encode(gs2) + ",r=" + nonce;
    std::string auth_message =
        first_bare + "," + server_first + "," + without_proof;
    std::string signature =
        Hmac(std::string(reinterpret_cast<char*>(stored), 32), auth_message);
    std::string proof(32, '\0');
    for (int i = 0; i < 32; ++i) proof[i] = client_key[i] ^ signature[i];
    std::string server_key = Hmac(salted_password, "Server Key");
    return {without_proof + ",p=" + Base64Encode(proof),
            "v=" + Base64Encode(Hmac(server_key, auth_message))};
  }
};

TEST(SaslScramTest, RandomNonceAndSaltRoundTrip) {
  FakeStore store;
  store.Add("Alice@example.test", "correct horse");
  auto mech = MakeMechanism("scram-sha-256", store);
  ASSERT_NE(mech, nullptr);
  TestClient client{"alice@example.test", "correct horse"};
  SaslStep first = mech->Start(std::string_view(client.First()));
  ASSERT_EQ(first.kind, Kind::kChallenge);
  // r= starts with the client nonce and adds at least 24 random bytes
  // (32 base64 characters).
  ASSERT_TRUE(first.data.rfind("r=" + client.client_nonce, 0) == 0);
  size_t comma = first.data.find(',');
  EXPECT_GE(comma - 2 - client.client_nonce.size(), 32u);
  EXPECT_NE(first.data.find(",i=4096"), std::string::npos);
  auto [final_message, expected] = client.Final(first.data);
  SaslStep done = mech->Next(final_message);
  ASSERT_EQ(done.kind, Kind::kSuccess);
  EXPECT_EQ(done.user, "Alice@example.test");
  EXPECT_EQ(done.data, expected);

  // Two exchanges never share a server nonce.
  auto again = MakeMechanism("SCRAM-SHA-256", store);
  TestClient client2{"alice@example.test", "correct horse"};
  EXPECT_NE(again->Start(std::string_view(client2.First())).data, first.data);
}

TEST(SaslScramTest, AuthzidAndYFlag) {
  FakeStore store;
  store.Add("alice@example.test", "pw");
  store.Add("bob@example.test", "pw");
  for (const std::string& gs2 :
       {std::string("y,,"), std::string("n,a=alice@example.test,"),
        std::string("n,a=ALICE@example.test,")}) {
    auto mech = MakeMechanism("SCRAM-SHA-256", store);
    TestClient client{"alice@example.test", "pw", gs2};
    SaslStep first = mech->Start(std::string_view(client.First()));
    ASSERT_EQ(first.kind, Kind::kChallenge) << gs2;
    SaslStep done = mech->Next(client.Final(first.data).first);
    EXPECT_EQ(done.kind, Kind::kSuccess) << gs2;
  }
  // Someone else as authzid: the right password is not enough.
  auto mech = MakeMechanism("SCRAM-SHA-256", store);
  TestClient client{"alice@example.test", "pw", "n,a=bob@example.test,"};
  SaslStep first = mech->Start(std::string_view(client.First()));
  ASSERT_EQ(first.kind, Kind::kChallenge);
  EXPECT_EQ(mech->Next(client.Final(first.data).first).kind, Kind::kFailure);
}

TEST(SaslScramTest, EscapedUserName) {
  FakeStore store;
  store.Add("a,b=c@example.test", "pw");
  auto mech = MakeMechanism("SCRAM-SHA-256", store);
  TestClient client{"a=2Cb=3Dc@example.test", "pw"};
  SaslStep first = mech->Start(std::string_view(client.First()));
  ASSERT_EQ(first.kind, Kind::kChallenge);
  EXPECT_EQ(store.last_scram_user, "a,b=c@example.test");
  SaslStep done = mech->Next(client.Final(first.data).first);
  EXPECT_EQ(done.kind, Kind::kSuccess);
  EXPECT_EQ(done.user, "a,b=c@example.test");
}

TEST(SaslScramTest, ChannelBindingRequestFails) {
  FakeStore store;
  store.Add("user", "pencil", RfcCredentials());
  auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
  EXPECT_EQ(mech->Start(std::string_view("p=tls-unique,,n=user,r=abc")).kind,
            Kind::kFailure);
  auto mext = MakeScramSha256ForTest(store, kRfcServerNonce);
  EXPECT_EQ(mext->Start(std::string_view("n,,m=x,n=user,r=abc")).kind,
            Kind::kFailure);
}

TEST(SaslScramTest, MalformedClientFirst) {
  FakeStore store;
  store.Add("user", "pencil", RfcCredentials());
  for (const std::string& bad :
       {std::string("n"), std::string("n,,"), std::string("x,,n=user,r=abc"),
        std::string("n,b=user,n=user,r=abc"), std::string("n,,r=abc,n=user"),
        std::string("n,,n=user"), std::string("n,,n=,r=abc"),
        std::string("n,,n=us=41er,r=abc"), std::string("n,,n=user=,r=abc"),
        std::string("n,,n=us\x01r,r=abc"), std::string("n,,n=\xff,r=abc"),
        std::string("n,,n=user,r="), std::string("n,,n=user,r=a b"),
        std::string("n,,n=user,r=abc,"), std::string("n,,n=user,,r=abc"),
        std::string("n,a=,n=user,r=abc"),
        std::string("n,,n=user,r=") + std::string(9000, 'x')}) {
    auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
    EXPECT_EQ(mech->Start(std::string_view(bad)).kind, Kind::kMalformed) << bad;
    EXPECT_EQ(mech->Next(kRfcClientFinal).kind, Kind::kMalformed) << bad;
  }
}

TEST(SaslScramTest, BadClientFinal) {
  FakeStore store;
  store.Add("user", "pencil", RfcCredentials());
  const std::string nonce =
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  const std::string proof = ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  struct Case {
    std::string message;
    Kind kind;
  };
  const Case cases[] = {
      {"c=biws," + nonce, Kind::kMalformed},              // no proof
      {"c=biws," + nonce + ",p=AAAA", Kind::kMalformed},  // short proof
      {"c=biws," + nonce + ",p=not base64!", Kind::kMalformed},
      {nonce + ",c=biws" + proof, Kind::kMalformed},  // order
      {"c=biws" + proof, Kind::kMalformed},           // no nonce
      {"c=eSws," + nonce + proof, Kind::kFailure},    // "y,," header
      {"c=biws,r=rOprNGfwEbeRWgbNEkqO" + proof, Kind::kFailure},  // nonce
      {"c=biws," + nonce + "x" + proof, Kind::kFailure},
      {"c=biws," + nonce + ",p=" + Base64Encode(std::string(32, 'x')),
       Kind::kFailure},
  };
  for (const Case& c : cases) {
    auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
    ASSERT_EQ(mech->Start(std::string_view(kRfcClientFirst)).kind,
              Kind::kChallenge);
    EXPECT_EQ(mech->Next(c.message).kind, c.kind) << c.message;
  }
  // Extensions before the proof are allowed, but change AuthMessage, so the
  // RFC proof no longer fits.
  auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
  mech->Start(std::string_view(kRfcClientFirst));
  EXPECT_EQ(mech->Next("c=biws," + nonce + ",x=ext" + proof).kind,
            Kind::kFailure);
}

TEST(SaslScramTest, UnknownUserLooksLikeWrongPassword) {
  FakeStore store;
  store.Add("user", "pencil", RfcCredentials());
  auto mech = MakeScramSha256ForTest(store, kRfcServerNonce);
  SaslStep first =
      mech->Start(std::string_view("n,,n=ghost,r=rOprNGfwEbeRWgbNEkqO"));
  ASSERT_EQ(first.kind, Kind::kChallenge);
  // Same shape as a real server-first: nonce, a 16-byte salt, 4096.
  auto attrs = Split(first.data, ',');
  ASSERT_EQ(attrs.size(), 3u);
  EXPECT_EQ(attrs[0], "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
  auto salt = Base64Decode(attrs[1].substr(2));
  ASSERT_TRUE(salt);
  EXPECT_EQ(salt->size(), 16u);
  EXPECT_EQ(attrs[2], "i=4096");
  SaslStep done = mech->Next(kRfcClientFinal);
  EXPECT_EQ(done.kind, Kind::kFailure);

  // The fake salt is stable per name (a real one would be too) and does
  // not depend on letter case, like the account lookup.
  auto again = MakeScramSha256ForTest(store, kRfcServerNonce);
  EXPECT_EQ(
      again->Start(std::string_view("n,,n=GHOST,r=rOprNGfwEbeRWgbNEkqO")).data,
      first.data);
  auto other = MakeScramSha256ForTest(store, kRfcServerNonce);
  EXPECT_NE(
      other->Start(std::string_view("n,,n=ghost2,r=rOprNGfwEbeRWgbNEkqO")).data,
      first.data);

  // Even a client that knows the password fails for an account without
  // stored SCRAM keys (created before they existed).
  store.Add("old@example.test", "pw");
  store.DropScram("old@example.test");
  auto old = MakeMechanism("SCRAM-SHA-256", store);
  TestClient client{"old@example.test", "pw"};
  SaslStep old_first = old->Start(std::string_view(client.First()));
  ASSERT_EQ(old_first.kind, Kind::kChallenge);
  EXPECT_EQ(old->Next(client.Final(old_first.data).first).kind, Kind::kFailure);
}

TEST(SaslTest, StoreFailureIsTemporaryForEveryMechanism) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  store.broken = true;
  auto plain = MakeMechanism("PLAIN", store);
  EXPECT_EQ(plain->Start(std::string_view("\0alice@example.test\0secret", 26))
                .kind,
            Kind::kTempFailure);
  auto login = MakeMechanism("LOGIN", store);
  ASSERT_EQ(login->Start(std::string_view("alice@example.test")).kind,
            Kind::kChallenge);
  EXPECT_EQ(login->Next("secret").kind, Kind::kTempFailure);
  auto scram = MakeMechanism("SCRAM-SHA-256", store);
  EXPECT_EQ(scram->Start(std::string_view("n,,n=alice@example.test,r=abcdefgh"))
                .kind,
            Kind::kTempFailure);
}

TEST(SaslScramTest, CredentialsDerivation) {
  ScramCredentials rfc = RfcCredentials();
  EXPECT_EQ(rfc.iterations, 4096u);
  EXPECT_EQ(rfc.stored_key.size(), 32u);
  EXPECT_EQ(rfc.server_key.size(), 32u);
  ScramCredentials a = MakeScramCredentials("pencil");
  ScramCredentials b = MakeScramCredentials("pencil");
  EXPECT_EQ(a.salt.size(), 16u);
  EXPECT_NE(a.salt, b.salt);
  EXPECT_NE(a.stored_key, b.stored_key);
  EXPECT_EQ(MakeScramCredentials("pencil", 10).iterations, 4096u);
  EXPECT_EQ(MakeScramCredentials("pencil", 5000).iterations, 5000u);
}

// ----------------------------------------------------------- PLAIN --

TEST(SaslPlainTest, InitialResponse) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  auto mech = MakeMechanism("plain", store);
  ASSERT_NE(mech, nullptr);
  SaslStep step =
      mech->Start(std::string_view("\0ALICE@example.test\0secret", 26));
  EXPECT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.user, "alice@example.test");
  EXPECT_EQ(step.data, "");
  EXPECT_EQ(mech->Next("again").kind, Kind::kMalformed);
}

TEST(SaslPlainTest, ChallengeThenMessage) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  for (std::optional<std::string_view> initial :
       {std::optional<std::string_view>(),
        std::optional<std::string_view>("")}) {
    auto mech = MakeMechanism("PLAIN", store);
    SaslStep step = mech->Start(initial);
    ASSERT_EQ(step.kind, Kind::kChallenge);
    EXPECT_EQ(step.data, "");
    step = mech->Next(std::string_view("\0alice@example.test\0secret", 26));
    EXPECT_EQ(step.kind, Kind::kSuccess);
    EXPECT_EQ(step.user, "alice@example.test");
  }
}

TEST(SaslPlainTest, Authzid) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  store.Add("bob@example.test", "secret");
  auto same = MakeMechanism("PLAIN", store);
  EXPECT_EQ(
      same->Start(std::string_view(
                      "alice@example.test\0alice@example.test\0secret", 44))
          .kind,
      Kind::kSuccess);
  auto other = MakeMechanism("PLAIN", store);
  EXPECT_EQ(other
                ->Start(std::string_view(
                    "bob@example.test\0alice@example.test\0secret", 42))
                .kind,
            Kind::kFailure);
}

TEST(SaslPlainTest, WrongPasswordAndUnknownUser) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  auto wrong = MakeMechanism("PLAIN", store);
  EXPECT_EQ(
      wrong->Start(std::string_view("\0alice@example.test\0Secret", 26)).kind,
      Kind::kFailure);
  auto unknown = MakeMechanism("PLAIN", store);
  EXPECT_EQ(
      unknown->Start(std::string_view("\0ghost@example.test\0secret", 26)).kind,
      Kind::kFailure);
  EXPECT_EQ(store.password_checks, 2);
}

TEST(SaslPlainTest, Malformed) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  for (const std::string& bad :
       {std::string("alice secret"), std::string("\0alice", 6),
        std::string("\0\0secret", 8), std::string("\0alice\0", 7),
        std::string("\0alice\0sec\0ret", 14),
        std::string("\0al\x01ice\0secret", 14),
        std::string("\0al\xc3ice\0secret", 14)}) {
    auto mech = MakeMechanism("PLAIN", store);
    EXPECT_EQ(mech->Start(std::string_view(bad)).kind, Kind::kMalformed);
  }
  EXPECT_EQ(store.password_checks, 0);
}

// ----------------------------------------------------------- LOGIN --

TEST(SaslLoginTest, Challenges) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  auto mech = MakeMechanism("LOGIN", store);
  ASSERT_NE(mech, nullptr);
  SaslStep step = mech->Start(std::nullopt);
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.data, "Username:");
  step = mech->Next("alice@example.test");
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.data, "Password:");
  step = mech->Next("secret");
  EXPECT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.user, "alice@example.test");
  EXPECT_EQ(mech->Next("more").kind, Kind::kMalformed);
}

TEST(SaslLoginTest, InitialResponseIsTheUserName) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  auto mech = MakeMechanism("login", store);
  SaslStep step = mech->Start(std::string_view("Alice@Example.test"));
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.data, "Password:");
  step = mech->Next("secret");
  EXPECT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.user, "alice@example.test");
}

TEST(SaslLoginTest, Failures) {
  FakeStore store;
  store.Add("alice@example.test", "secret");
  auto wrong = MakeMechanism("LOGIN", store);
  wrong->Start(std::string_view("alice@example.test"));
  EXPECT_EQ(wrong->Next("nope").kind, Kind::kFailure);
  auto unknown = MakeMechanism("LOGIN", store);
  unknown->Start(std::string_view("ghost@example.test"));
  EXPECT_EQ(unknown->Next("secret").kind, Kind::kFailure);
  auto empty = MakeMechanism("LOGIN", store);
  empty->Start(std::nullopt);
  empty->Next("alice@example.test");
  EXPECT_EQ(empty->Next("").kind, Kind::kFailure);
  auto control = MakeMechanism("LOGIN", store);
  control->Start(std::nullopt);
  EXPECT_EQ(control->Next("ali\nce").kind, Kind::kMalformed);
  auto nul = MakeMechanism("LOGIN", store);
  nul->Start(std::string_view("alice@example.test"));
  EXPECT_EQ(nul->Next(std::string_view("sec\0ret", 7)).kind, Kind::kMalformed);
}

TEST(SaslTest, MechanismNames) {
  FakeStore store;
  EXPECT_EQ(MakeMechanism("CRAM-MD5", store), nullptr);
  EXPECT_EQ(MakeMechanism("", store), nullptr);
  EXPECT_EQ(MakeMechanism("SCRAM-SHA-256-PLUS", store), nullptr);
  for (const std::string& name : Split(kSaslMechanisms, ' ')) {
    EXPECT_NE(MakeMechanism(name, store), nullptr) << name;
  }
}

}  // namespace
}  // namespace tern::auth
