// Unit tests of DKIM: tag lists, canonicalization (RFC 6376 3.4.5), the
// streaming body hash, the signed example of RFC 8463 appendix A, the
// verifier's rules with a fake resolver, signing, and key files.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/base64.h"
#include "dns/fake_resolver.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_keys.h"
#include "mailauth/dkim_lookup.h"
#include "mailauth/dkim_record.h"
#include "mailauth/dkim_sign.h"
#include "mailauth/dkim_tags.h"
#include "mailauth/dkim_verify.h"

namespace tern::mailauth {
namespace {

// ---------------------------------------------------------------- tag lists

TEST(DkimTagsTest, ParsesWithWhitespaceAndFolding) {
  std::string_view text = " v=1; a = rsa-sha256 ;\r\n\tb=abc\r\n def ;x=";
  auto list = ParseDkimTagList(text);
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->tags.size(), 4u);
  EXPECT_EQ(list->tags[0].name, "v");
  EXPECT_EQ(list->tags[0].value, "1");
  EXPECT_EQ(list->Find("a")->value, "rsa-sha256");
  EXPECT_EQ(list->Find("b")->value, "abc\r\n def");
  EXPECT_EQ(list->Find("x")->value, "");
  EXPECT_EQ(list->Find("B"), nullptr);  // names are case-sensitive
  // The span of b= runs from after '=' to its ';'.
  const DkimTag* b = list->Find("b");
  EXPECT_EQ(text.substr(b->value_begin, b->value_end - b->value_begin),
            "abc\r\n def ");
  EXPECT_EQ(text[b->value_end], ';');
}

TEST(DkimTagsTest, TrailingSemicolonAndNames) {
  EXPECT_TRUE(ParseDkimTagList("a=1;"));
  EXPECT_TRUE(ParseDkimTagList("a=1; "));
  EXPECT_TRUE(ParseDkimTagList("a_b9=x"));
  auto utf8 = ParseDkimTagList("i=j\xc3\xb6rg@example.com");
  ASSERT_TRUE(utf8);
  EXPECT_EQ(utf8->Find("i")->value, "j\xc3\xb6rg@example.com");
}

TEST(DkimTagsTest, PreciseErrors) {
  auto dup = ParseDkimTagList("a=1; b=2; a=3");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().message, "duplicate tag \"a\" at offset 10");

  auto empty = ParseDkimTagList("a=1;; b=2");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message, "empty tag at offset 4");

  auto noeq = ParseDkimTagList("a=1; b");
  ASSERT_FALSE(noeq);
  EXPECT_EQ(noeq.error().message, "'=' expected after tag \"b\" at the end");

  auto badname = ParseDkimTagList("1a=x");
  ASSERT_FALSE(badname);
  EXPECT_EQ(badname.error().message,
            "tag name expected, found '1' at offset 0");

  auto ctl = ParseDkimTagList("a=x\x01y");
  ASSERT_FALSE(ctl);
  EXPECT_EQ(ctl.error().message,
            "invalid character 0x01 in the value of tag \"a\" at offset 3");

  // A line break not followed by whitespace is not folding.
  EXPECT_FALSE(ParseDkimTagList("a=x\r\nb=y"));
  EXPECT_FALSE(ParseDkimTagList("a=x\ny"));
  EXPECT_FALSE(ParseDkimTagList(""));
  EXPECT_FALSE(ParseDkimTagList("  \r\n "));
  EXPECT_FALSE(ParseDkimTagList("a-b=1"));
}

TEST(DkimTagsTest, Lists) {
  auto items = SplitDkimList("From : to:\r\n Subject");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0], "From");
  EXPECT_EQ(items[1], "to");
  EXPECT_EQ(items[2], "Subject");
  EXPECT_EQ(SplitDkimList("a::b").size(), 3u);
  EXPECT_EQ(StripDkimWhitespace(" ab\r\n\tc d "), "abcd");
}

// ----------------------------------------------------------------
// canonicalization

class StringSink : public DkimBodySink {
 public:
  void Write(std::string_view data) override { text.append(data); }
  std::string text;
};

std::string CanonBody(std::string_view body, DkimCanon canon,
                      size_t chunk = 0) {
  DkimBodyCanonicalizer c(canon);
  StringSink sink;
  if (chunk == 0) chunk = body.size() + 1;
  for (size_t i = 0; i < body.size(); i += chunk) {
    c.Update(body.substr(i, chunk), sink);
  }
  c.Finish(sink);
  return sink.text;
}

std::string CanonHeader(std::string_view field, DkimCanon canon) {
  std::string out;
  CanonicalizeDkimHeaderField(field, canon, &out);
  return out;
}

// RFC 6376 3.4.5, the header fields "A: X" and "B : Y<TAB><CRLF><SP>Z  ".
TEST(DkimCanonTest, Rfc6376HeaderExample) {
  EXPECT_EQ(CanonHeader("A: X", DkimCanon::kRelaxed), "a:X\r\n");
  EXPECT_EQ(CanonHeader("B : Y\t\r\n Z  ", DkimCanon::kRelaxed), "b:Y Z\r\n");
  EXPECT_EQ(CanonHeader("A: X", DkimCanon::kSimple), "A: X\r\n");
  EXPECT_EQ(CanonHeader("B : Y\t\r\n Z  ", DkimCanon::kSimple),
            "B : Y\t\r\n Z  \r\n");
}

// RFC 6376 3.4.5, the body " C <CRLF>D <TAB> E<CRLF><CRLF><CRLF>".
TEST(DkimCanonTest, Rfc6376BodyExample) {
  std::string body = " C \r\nD \t E\r\n\r\n\r\n";
  EXPECT_EQ(CanonBody(body, DkimCanon::kRelaxed), " C\r\nD E\r\n");
  EXPECT_EQ(CanonBody(body, DkimCanon::kSimple), " C \r\nD \t E\r\n");
}

TEST(DkimCanonTest, EmptyAndUnterminatedBodies) {
  EXPECT_EQ(CanonBody("", DkimCanon::kSimple), "\r\n");
  EXPECT_EQ(CanonBody("", DkimCanon::kRelaxed), "");
  EXPECT_EQ(CanonBody("\r\n\r\n", DkimCanon::kSimple), "\r\n");
  EXPECT_EQ(CanonBody("\r\n\r\n", DkimCanon::kRelaxed), "");
  // Whitespace-only lines are empty once relaxed.
  EXPECT_EQ(CanonBody("a\r\n \t\r\n  \r\n", DkimCanon::kRelaxed), "a\r\n");
  EXPECT_EQ(CanonBody("a\r\n \t\r\n", DkimCanon::kSimple), "a\r\n \t\r\n");
  // A last line without CRLF gets one.
  EXPECT_EQ(CanonBody("abc", DkimCanon::kSimple), "abc\r\n");
  EXPECT_EQ(CanonBody("abc  ", DkimCanon::kRelaxed), "abc\r\n");
  // Empty lines inside the body stay; a lone CR or LF is content.
  EXPECT_EQ(CanonBody("a\r\n\r\n\r\nb\r\n", DkimCanon::kRelaxed),
            "a\r\n\r\n\r\nb\r\n");
  EXPECT_EQ(CanonBody("a\rb\nc\r", DkimCanon::kSimple), "a\rb\nc\r\r\n");
  EXPECT_EQ(CanonBody("a \r b\r\n", DkimCanon::kRelaxed), "a \r b\r\n");
}

TEST(DkimCanonTest, EmptyBodyHashes) {
  // RFC 6376 3.4.3/3.4.4 (and their errata): SHA-256 of CRLF and of "".
  DkimBodyHasher simple(DkimCanon::kSimple, std::nullopt);
  simple.Finish();
  EXPECT_EQ(Base64Encode(simple.digest()),
            "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
  DkimBodyHasher relaxed(DkimCanon::kRelaxed, std::nullopt);
  relaxed.Finish();
  EXPECT_EQ(Base64Encode(relaxed.digest()),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

TEST(DkimCanonTest, ChunkingChangesNothing) {
  std::string body =
      "  Leading\t space\r\nTrailing \t \r\n\r\n\r\nmiddle\r\n\r\rcr\r\n"
      "bare\nlf\r\n \r\n\t\r\nend  \r\n\r\n \r\n\r\n";
  for (DkimCanon canon : {DkimCanon::kSimple, DkimCanon::kRelaxed}) {
    std::string whole = CanonBody(body, canon);
    for (size_t chunk = 1; chunk <= 19; ++chunk) {
      EXPECT_EQ(CanonBody(body, canon, chunk), whole)
          << DkimCanonName(canon) << " chunk " << chunk;
    }
    DkimBodyHasher one(canon, std::nullopt);
    one.Update(body);
    one.Finish();
    for (size_t chunk : {1u, 2u, 3u, 7u, 64u}) {
      DkimBodyHasher h(canon, std::nullopt);
      for (size_t i = 0; i < body.size(); i += chunk)
        h.Update(body.substr(i, chunk));
      h.Finish();
      EXPECT_EQ(h.digest(), one.digest());
      EXPECT_EQ(h.canonical_length(), whole.size());
    }
  }
}

TEST(DkimCanonTest, LongRunOfEmptyLines) {
  std::string body = "a\r\n";
  for (int i = 0; i < 100000; ++i) body += "\r\n";
  EXPECT_EQ(CanonBody(body, DkimCanon::kSimple), "a\r\n");
  std::string with_tail = body + "b\r\n";
  std::string canon = CanonBody(with_tail, DkimCanon::kRelaxed, 4096);
  EXPECT_EQ(canon.size(), with_tail.size());
}

TEST(DkimCanonTest, BodyLengthLimit) {
  std::string body = "Hello world\r\nsecond line\r\n";
  DkimBodyHasher limited(DkimCanon::kSimple, 5);
  limited.Update(body);
  limited.Finish();
  EXPECT_EQ(limited.digest(), Sha256Digest("Hello"));
  EXPECT_EQ(limited.canonical_length(), body.size());
  DkimBodyHasher zero(DkimCanon::kRelaxed, 0);
  zero.Update(body);
  zero.Finish();
  EXPECT_EQ(zero.digest(), Sha256Digest(""));
}

TEST(DkimCanonTest, SplitsHeaderFields) {
  std::string header =
      "From: a@b\r\nSubject: one\r\n two\r\n\tthree\r\nX-No-Colon\r\n"
      "To : c@d\r\n";
  auto fields = SplitDkimHeader(header);
  ASSERT_EQ(fields.size(), 4u);
  EXPECT_EQ(fields[0].name, "From");
  EXPECT_EQ(fields[1].text, "Subject: one\r\n two\r\n\tthree");
  EXPECT_EQ(fields[2].name, "");
  EXPECT_EQ(fields[3].name, "To");
  EXPECT_EQ(fields[3].text, "To : c@d");
}

TEST(DkimCanonTest, SplitterFindsTheBodyAcrossChunks) {
  std::string message = "A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n";
  for (size_t chunk = 1; chunk <= message.size(); ++chunk) {
    DkimMessageSplitter s;
    std::string body;
    for (size_t i = 0; i < message.size(); i += chunk) {
      body += std::string(s.Feed(std::string_view(message).substr(i, chunk)));
    }
    s.Finish();
    EXPECT_EQ(s.header(), "A: 1\r\nB: 2\r\n") << chunk;
    EXPECT_EQ(body, "body\r\n\r\nmore\r\n") << chunk;
  }
  DkimMessageSplitter empty_header;
  EXPECT_EQ(empty_header.Feed("\r"), "");
  EXPECT_EQ(empty_header.Feed("\nbody"), "body");
  EXPECT_EQ(empty_header.header(), "");
  DkimMessageSplitter no_body;
  EXPECT_EQ(no_body.Feed("A: 1\r\nB: 2"), "");
  no_body.Finish();
  EXPECT_EQ(no_body.header(), "A: 1\r\nB: 2\r\n");
  DkimMessageSplitter small(10);
  small.Feed("Subject: far too long\r\n");
  EXPECT_TRUE(small.overflow());
}

// ---------------------------------------------------------------- RFC 8463
// appendix A

constexpr std::string_view kRfc8463Signed =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n"
    "\r\n";

// RFC 8463 A.2 key records; the Ed25519 key is RFC 8032 7.1 test 1.
constexpr const char* kBrisbaneRecord =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
constexpr const char* kTestRecord =
    "v=DKIM1; k=rsa; "
    "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5q"
    "hdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj"
    "+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
constexpr const char* kBrisbaneSeed =
    "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";

constexpr int64_t kNow = 1800000000;

std::vector<DkimResult> Verify(dns::FakeResolver& fake, asio::io_context& io,
                               std::string message, int64_t now = kNow,
                               DkimVerifyOptions options = {}) {
  std::vector<DkimResult> out;
  asio::co_spawn(io, VerifyDkimMessage(fake, std::move(message), now, options),
                 [&out](std::exception_ptr e, std::vector<DkimResult> r) {
                   if (e) std::rethrow_exception(e);
                   out = std::move(r);
                 });
  io.run();
  io.restart();
  return out;
}

// PKCS#8 PEM of an Ed25519 private key from its 32-octet seed.
std::string Ed25519Pem(std::string_view seed_base64) {
  std::string der(
      "\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16);
  der += *Base64Decode(seed_base64);
  return "-----BEGIN PRIVATE KEY-----\n" + Base64Encode(der) +
         "\n-----END PRIVATE KEY-----\n";
}

TEST(DkimRfc8463Test, BothSignaturesPass) {
  asio::io_context io;
  dns::FakeResolver fake(io.get_executor());
  fake.SetTxt("brisbane._domainkey.football.example.com", {kBrisbaneRecord});
  fake.SetTxt("test._domainkey.football.example.com", {kTestRecord});
  auto results = Verify(fake, io, std::string(kRfc8463Signed));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status, DkimStatus::kPass) << results[0].reason;
  EXPECT_EQ(results[0].domain, "football.example.com");
  EXPECT_EQ(results[0].selector, "brisbane");
  EXPECT_EQ(results[0].identity, "@football.example.com");
  EXPECT_EQ(results[0].header_b, "/gCrinpcQOoI");
  EXPECT_EQ(results[0].key_bits, 256);
  EXPECT_EQ(results[1].status, DkimStatus::kPass) << results[1].reason;
  EXPECT_EQ(results[1].selector, "test");
  EXPECT_EQ(results[1].key_bits, 1024);
}

TEST(DkimRfc8463Test, StreamingInOddChunksGivesTheSameResults) {
  for (size_t chunk : {1u, 2u, 3u, 5u, 13u, 64u, 997u}) {
    asio::io_context io;
    dns::FakeResolver fake(io.get_executor());
    fake.SetTxt("brisbane._domainkey.football.example.com", {kBrisbaneRecord});
    fake.SetTxt("test._domainkey.football.example.com", {kTestRecord});
    DkimVerifier verifier(kNow);
    std::string_view m = kRfc8463Signed;
    for (size_t i = 0; i < m.size(); i += chunk)
      verifier.Feed(m.substr(i, chunk));
    std::vector<DkimResult> results;
    asio::co_spawn(io, VerifyDkim(fake, verifier.Finish()),
                   [&results](std::exception_ptr, std::vector<DkimResult> r) {
                     results = std::move(r);
                   });
    io.run();
    ASSERT_EQ(results.size(), 2u);
    EXPECT_EQ(results[0].status, DkimStatus::kPass) << chunk;
    EXPECT_EQ(results[1].status, DkimStatus::kPass) << chunk;
    // One key record per selector, no more.
    EXPECT_EQ(fake.queries(), 2);
  }
}

TEST(DkimRfc8463Test, BodyHashesOfTheExample) {
  std::string_view body =
      "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n\r\n";
  DkimBodyHasher relaxed(DkimCanon::kRelaxed, std::nullopt);
  relaxed.Update(body);
  relaxed.Finish();
  EXPECT_EQ(Base64Encode(relaxed.digest()),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
  DkimBodyHasher simple(DkimCanon::kSimple, std::nullopt);
  simple.Update(body);
  simple.Finish();
  EXPECT_EQ(Base64Encode(simple.digest()),
            "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=");
}

// Ed25519 signatures are deterministic: signing the example's header with
// the RFC 8032 key gives the published b= back.
TEST(DkimRfc8463Test, SigningReproducesTheExample) {
  auto key = ParseDkimPrivateKeyPem(Ed25519Pem(kBrisbaneSeed));
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(key->type(), DkimKeyType::kEd25519);
  EXPECT_EQ(*DkimKeyRecordText(*key), kBrisbaneRecord);
  std::string_view m = kRfc8463Signed;
  size_t header_end = m.find("\r\n\r\n") + 2;
  auto fields = SplitDkimHeader(m.substr(0, header_end));
  std::string own(fields[0].text);
  own.erase(own.find(" b=") + 3);
  std::string data =
      DkimHeaderHashInput(fields,
                          {"from", "to", "subject", "date", "message-id",
                           "from", "subject", "date"},
                          own, DkimCanon::kRelaxed);
  EXPECT_EQ(data.substr(0, 45),
            "from:Joe SixPack <joe@football.example.com>\r\n");
  auto sig = DkimSign(*key, data);
  ASSERT_TRUE(sig);
  EXPECT_EQ(Base64Encode(*sig),
            "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5"
            "OsU7ZbnKELq+eXdp1Q1Dw==");
}

TEST(DkimRfc8463Test, TamperingFails) {
  asio::io_context io;
  dns::FakeResolver fake(io.get_executor());
  fake.SetTxt("brisbane._domainkey.football.example.com", {kBrisbaneRecord});
  fake.SetTxt("test._domainkey.football.example.com", {kTestRecord});
  std::string body_changed(kRfc8463Signed);
  body_changed.replace(body_changed.find("hungry"), 6, "HUNGRY");
  auto r = Verify(fake, io, body_changed);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, DkimStatus::kFail);
  EXPECT_EQ(r[0].reason, "body hash mismatch");
  std::string header_changed(kRfc8463Signed);
  header_changed.replace(header_changed.find("dinner"), 6, "supper");
  r = Verify(fake, io, header_changed);
  EXPECT_EQ(r[0].status, DkimStatus::kFail);
  EXPECT_EQ(r[0].reason, "signature did not verify");
  EXPECT_EQ(r[1].status, DkimStatus::kFail);
  // Relaxed canonicalization forgives whitespace changes.
  std::string respaced(kRfc8463Signed);
  respaced.replace(respaced.find("Subject: Is"), 11, "SUBJECT :  Is");
  r = Verify(fake, io, respaced);
  EXPECT_EQ(r[0].status, DkimStatus::kPass) << r[0].reason;
}

// ---------------------------------------------------------------- verifier
// rules

// Keys made once for the whole test program: RSA generation is slow.
const DkimKey& TestKey(DkimKeyType type, int bits = 2048) {
  static const DkimKey ed = *GenerateDkimKey(DkimKeyType::kEd25519, 0);
  static const DkimKey rsa = *GenerateDkimKey(DkimKeyType::kRsa, 2048);
  static const DkimKey rsa512 = *GenerateDkimKey(DkimKeyType::kRsa, 512);
  if (type == DkimKeyType::kEd25519) return ed;
  return bits == 512 ? rsa512 : rsa;
}

std::string Record(const DkimKey& key) { return *DkimKeyRecordText(key); }

constexpr std::string_view kMessage =
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: Lunch\r\n"
    "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
    "\r\n"
    "Noon at the usual place?\r\n"
    "\r\n"
    "-- \r\nAlice\r\n";

// A DKIM-Signature with the given tags (everything but bh= and b=), signed
// by `key` over `message` as the tags say, put on top of the message.
std::string SignWithTags(std::string tags, const DkimKey& key,
                         std::string_view message, DkimCanon header_canon,
                         DkimCanon body_canon,
                         std::optional<uint64_t> length = std::nullopt,
                         std::vector<std::string> names = {"From", "To",
                                                           "Subject"}) {
  size_t split = message.find("\r\n\r\n");
  std::string_view header = message.substr(0, split + 2);
  DkimBodyHasher body(body_canon, length);
  body.Update(message.substr(split + 4));
  body.Finish();
  std::string field = "DKIM-Signature: " + tags +
                      " bh=" + Base64Encode(body.digest()) + ";\r\n b=";
  auto fields = SplitDkimHeader(header);
  std::string data = DkimHeaderHashInput(fields, names, field, header_canon);
  auto sig = DkimSign(key, data);
  return field + Base64Encode(*sig) + "\r\n" + std::string(message);
}

std::string Sign(std::string tags, DkimKeyType type = DkimKeyType::kEd25519,
                 std::string_view message = kMessage) {
  return SignWithTags(std::move(tags), TestKey(type), message,
                      DkimCanon::kRelaxed, DkimCanon::kRelaxed);
}

class DkimVerifyTest : public ::testing::Test {
 protected:
  DkimVerifyTest() : fake_(io_.get_executor()) {
    fake_.SetTxt("ed._domainkey.example.org",
                 {Record(TestKey(DkimKeyType::kEd25519))});
    fake_.SetTxt("rsa._domainkey.example.org",
                 {Record(TestKey(DkimKeyType::kRsa))});
  }
  DkimResult One(std::string message, int64_t now = kNow,
                 DkimVerifyOptions options = {}) {
    auto r = Verify(fake_, io_, std::move(message), now, options);
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? DkimResult{} : r[0];
  }
  asio::io_context io_;
  dns::FakeResolver fake_;
};

constexpr const char* kEdTags =
    "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=ed; "
    "h=From:To:Subject;";

TEST_F(DkimVerifyTest, PassesBothAlgorithmsAndCanonicalizations) {
  for (DkimCanon hc : {DkimCanon::kSimple, DkimCanon::kRelaxed}) {
    for (DkimCanon bc : {DkimCanon::kSimple, DkimCanon::kRelaxed}) {
      std::string c =
          std::string("c=") + DkimCanonName(hc) + "/" + DkimCanonName(bc) + ";";
      std::string ed =
          SignWithTags("v=1; a=ed25519-sha256; " + c +
                           " d=example.org; s=ed; h=From:To:Subject;",
                       TestKey(DkimKeyType::kEd25519), kMessage, hc, bc);
      EXPECT_EQ(One(ed).status, DkimStatus::kPass) << c;
      std::string rsa =
          SignWithTags("v=1; a=rsa-sha256; " + c +
                           " d=example.org; s=rsa; h=From:To:Subject;",
                       TestKey(DkimKeyType::kRsa), kMessage, hc, bc);
      DkimResult r = One(rsa);
      EXPECT_EQ(r.status, DkimStatus::kPass) << c << " " << r.reason;
      EXPECT_EQ(r.key_bits, 2048);
    }
  }
  // c= absent means simple/simple; "relaxed" alone means relaxed/simple.
  EXPECT_EQ(
      One(SignWithTags("v=1; a=ed25519-sha256; d=example.org; s=ed; h=From;",
                       TestKey(DkimKeyType::kEd25519), kMessage,
                       DkimCanon::kSimple, DkimCanon::kSimple, std::nullopt,
                       {"From"}))
          .status,
      DkimStatus::kPass);
  EXPECT_EQ(One(SignWithTags("v=1; a=ed25519-sha256; c=relaxed; d=example.org; "
                             "s=ed; h=From;",
                             TestKey(DkimKeyType::kEd25519), kMessage,
                             DkimCanon::kRelaxed, DkimCanon::kSimple,
                             std::nullopt, {"From"}))
                .status,
            DkimStatus::kPass);
}

TEST_F(DkimVerifyTest, BodyLengthLimit) {
  std::string tags =
      "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=ed; "
      "h=From:To:Subject; l=26;";
  std::string signed_msg =
      SignWithTags(tags, TestKey(DkimKeyType::kEd25519), kMessage,
                   DkimCanon::kRelaxed, DkimCanon::kRelaxed, 26);
  EXPECT_EQ(One(signed_msg).status, DkimStatus::kPass);
  // Text after the first l= octets is not covered (RFC 6376 8.2 warns).
  EXPECT_EQ(One(signed_msg + "Appended by a list\r\n").status,
            DkimStatus::kPass);
  // A change inside the covered part fails.
  std::string changed = signed_msg;
  changed.replace(changed.find("Noon"), 4, "Nine");
  EXPECT_EQ(One(changed).status, DkimStatus::kFail);
  // l= longer than the body.
  std::string too_long = SignWithTags(
      "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=ed; "
      "h=From:To:Subject; l=5000;",
      TestKey(DkimKeyType::kEd25519), kMessage, DkimCanon::kRelaxed,
      DkimCanon::kRelaxed, 5000);
  DkimResult r = One(too_long);
  EXPECT_EQ(r.status, DkimStatus::kFail);
  EXPECT_EQ(r.reason, "l= is longer than the body");
}

TEST_F(DkimVerifyTest, Timestamps) {
  // x= in the past: RFC 6376 6.1.1 PERMFAIL (signature expired).
  DkimResult expired =
      One(Sign(std::string(kEdTags) + " t=1700000000; x=1700086400;"));
  EXPECT_EQ(expired.status, DkimStatus::kPermError);
  EXPECT_EQ(expired.reason, "signature expired (x=)");
  EXPECT_EQ(
      One(Sign(std::string(kEdTags) + " t=1799999000; x=1800086400;")).status,
      DkimStatus::kPass);
  // x= not after t= is malformed.
  EXPECT_EQ(
      One(Sign(std::string(kEdTags) + " t=1800000000; x=1800000000;")).status,
      DkimStatus::kPermError);
  // t= far in the future: refused; a little clock skew is tolerated.
  EXPECT_EQ(One(Sign(std::string(kEdTags) + " t=1800090000;")).status,
            DkimStatus::kPolicy);
  EXPECT_EQ(One(Sign(std::string(kEdTags) + " t=1800000600;")).status,
            DkimStatus::kPass);
  EXPECT_EQ(One(Sign(std::string(kEdTags) + " t=17e8;")).status,
            DkimStatus::kPermError);
}

TEST_F(DkimVerifyTest, Identity) {
  DkimResult sub =
      One(Sign(std::string(kEdTags) + " i=alice@mail.example.org;"));
  EXPECT_EQ(sub.status, DkimStatus::kPass) << sub.reason;
  EXPECT_EQ(sub.identity, "alice@mail.example.org");
  DkimResult outside =
      One(Sign(std::string(kEdTags) + " i=alice@example.com;"));
  EXPECT_EQ(outside.status, DkimStatus::kPermError);
  // "badexample.org" is not under "example.org".
  EXPECT_EQ(One(Sign(std::string(kEdTags) + " i=@badexample.org;")).status,
            DkimStatus::kPermError);
  // t=s in the key: the i= domain must be d= itself.
  fake_.SetTxt("strict._domainkey.example.org",
               {"v=DKIM1; k=ed25519; t=s; p=" +
                *DkimPublicKeyRecordValue(TestKey(DkimKeyType::kEd25519))});
  std::string strict_tags =
      "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=strict; "
      "h=From:To:Subject;";
  EXPECT_EQ(One(Sign(strict_tags + " i=alice@example.org;")).status,
            DkimStatus::kPass);
  EXPECT_EQ(One(Sign(strict_tags + " i=alice@mail.example.org;")).status,
            DkimStatus::kPermError);
}

TEST_F(DkimVerifyTest, RefusedCrypto) {
  // RFC 8301 3.1: rsa-sha1 never passes, whatever the signature.
  DkimResult sha1 =
      One(Sign("v=1; a=rsa-sha1; c=relaxed/relaxed; d=example.org; s=rsa; "
               "h=From:To:Subject;",
               DkimKeyType::kRsa));
  EXPECT_EQ(sha1.status, DkimStatus::kPolicy);
  EXPECT_EQ(fake_.queries(), 0);
  // RFC 8301 3.2: RSA keys under 1024 bits never pass.
  fake_.SetTxt("short._domainkey.example.org",
               {Record(TestKey(DkimKeyType::kRsa, 512))});
  std::string short_key = SignWithTags(
      "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=short; "
      "h=From:To:Subject;",
      TestKey(DkimKeyType::kRsa, 512), kMessage, DkimCanon::kRelaxed,
      DkimCanon::kRelaxed);
  DkimResult r = One(short_key);
  EXPECT_EQ(r.status, DkimStatus::kPolicy);
  EXPECT_EQ(r.key_bits, 512);
}

TEST_F(DkimVerifyTest, SignatureSyntax) {
  auto status = [&](std::string tags) { return One(Sign(tags)).status; };
  // Missing required tags, wrong version, unknown algorithm or c=.
  EXPECT_EQ(status("v=1; a=ed25519-sha256; d=example.org; h=From:To:Subject;"),
            DkimStatus::kPermError);
  EXPECT_EQ(
      status("v=2; a=ed25519-sha256; d=example.org; s=ed; h=From:To:Subject;"),
      DkimStatus::kPermError);
  EXPECT_EQ(
      status("v=1; a=ed448-sha256; d=example.org; s=ed; h=From:To:Subject;"),
      DkimStatus::kPermError);
  EXPECT_EQ(
      status("v=1; a=ed25519-sha256; c=loose; d=example.org; s=ed; h=From;"),
      DkimStatus::kPermError);
  // From must be signed (RFC 6376 6.1.1).
  EXPECT_EQ(status("v=1; a=ed25519-sha256; d=example.org; s=ed; h=To:Subject;"),
            DkimStatus::kPermError);
  // Duplicate tags make the whole field unusable; d= and s= still shown.
  DkimResult dup =
      One(Sign("v=1; a=ed25519-sha256; d=example.org; s=ed; s=ed; h=From;"));
  EXPECT_EQ(dup.status, DkimStatus::kPermError);
  EXPECT_EQ(dup.reason.substr(0, 24), "syntax: duplicate tag \"s");
  // q= must offer dns/txt.
  EXPECT_EQ(status(std::string(kEdTags) + " q=dns/txt;"), DkimStatus::kPass);
  EXPECT_EQ(status(std::string(kEdTags) + " q=http/well-known;"),
            DkimStatus::kPermError);
  // z= and unknown tags are ignored.
  EXPECT_EQ(status(std::string(kEdTags) + " z=From:alice|To:bob; foo=bar;"),
            DkimStatus::kPass);
  EXPECT_EQ(status("v=1; a=ed25519-sha256; d=exa mple.org; s=ed; h=From;"),
            DkimStatus::kPermError);
}

TEST_F(DkimVerifyTest, KeyRecords) {
  const std::string p =
      *DkimPublicKeyRecordValue(TestKey(DkimKeyType::kEd25519));
  auto with_record = [&](std::vector<std::string> txt) {
    fake_.SetTxt("k._domainkey.example.org", std::move(txt));
    return One(
        Sign("v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; "
             "s=k; h=From:To:Subject;"));
  };
  EXPECT_EQ(with_record({"k=ed25519; p=" + p}).status, DkimStatus::kPass);
  EXPECT_EQ(
      with_record({"v=DKIM1; k=ed25519; h=sha256; s=email; p=" + p}).status,
      DkimStatus::kPass);
  // Empty p=: revoked.
  DkimResult revoked = with_record({"v=DKIM1; k=ed25519; p="});
  EXPECT_EQ(revoked.status, DkimStatus::kPermError);
  EXPECT_EQ(revoked.reason, "key revoked");
  // k= defaults to rsa, which does not fit a=ed25519-sha256.
  EXPECT_EQ(with_record({"p=" + p}).status, DkimStatus::kPermError);
  EXPECT_EQ(with_record({"v=DKIM1; k=ed25519; h=sha1; p=" + p}).status,
            DkimStatus::kPermError);
  EXPECT_EQ(with_record({"v=DKIM1; k=ed25519; s=tlsrpt; p=" + p}).status,
            DkimStatus::kPermError);
  EXPECT_EQ(with_record({"v=DKIM2; k=ed25519; p=" + p}).status,
            DkimStatus::kPermError);
  EXPECT_EQ(with_record({"k=ed25519; v=DKIM1; p=" + p}).status,
            DkimStatus::kPermError);
  EXPECT_EQ(with_record({"v=DKIM1; k=ed25519; p=" + p + "; p=" + p}).status,
            DkimStatus::kPermError);
  EXPECT_EQ(with_record({"v=DKIM1; k=ed25519; p=AAAA"}).status,
            DkimStatus::kPermError);
  // t=y marks a testing domain; the result stands.
  DkimResult testing = with_record({"v=DKIM1; k=ed25519; t=y; p=" + p});
  EXPECT_EQ(testing.status, DkimStatus::kPass);
  EXPECT_TRUE(testing.testing);
  // Several records: one usable one is enough.
  EXPECT_EQ(with_record({"v=spf1 -all", "v=DKIM1; k=ed25519; p=" + p}).status,
            DkimStatus::kPass);
  // No record, a failed lookup.
  fake_.Set("k._domainkey.example.org", dns::RrType::kTxt, dns::Answer{});
  DkimResult temp =
      One(Sign("v=1; a=ed25519-sha256; c=relaxed/relaxed; "
               "d=example.org; s=k; h=From:To:Subject;"));
  EXPECT_EQ(temp.status, DkimStatus::kTempError);
  DkimResult missing =
      One(Sign("v=1; a=ed25519-sha256; c=relaxed/relaxed; "
               "d=example.org; s=nokey; h=From:To:Subject;"));
  EXPECT_EQ(missing.status, DkimStatus::kPermError);
}

TEST(DkimRecordTest, ParsesKeyRecords) {
  auto r = ParseDkimKeyRecord(
      "v=DKIM1; k=rsa; h=sha1:sha256; s=*; t=y:s; n=hi; p=AAAA");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->type, DkimKeyType::kRsa);
  EXPECT_EQ(r->public_key, std::string(3, '\0'));
  EXPECT_EQ(r->hash_algorithms.size(), 2u);
  EXPECT_TRUE(r->testing);
  EXPECT_TRUE(r->strict);
  EXPECT_TRUE(r->email);
  EXPECT_FALSE(ParseDkimKeyRecord("v=DKIM1; k=dsa; p=AAAA"));
  EXPECT_FALSE(ParseDkimKeyRecord("v=DKIM1; k=rsa"));
  EXPECT_FALSE(ParseDkimKeyRecord("v=DKIM1; p=!!!!"));
  // Base64 may be split by whitespace, as when TXT strings are joined.
  EXPECT_TRUE(ParseDkimKeyRecord("p=AA AA"));
}

TEST_F(DkimVerifyTest, HeaderRules) {
  std::string signed_msg = Sign(kEdTags);
  EXPECT_EQ(One(signed_msg).status, DkimStatus::kPass);
  // A Subject added below the signed one is the instance a verifier takes
  // (from the bottom, RFC 6376 5.4.2), so the signature breaks.
  std::string added_below = signed_msg;
  added_below.insert(added_below.find("\r\n\r\n") + 2, "Subject: Spam\r\n");
  EXPECT_EQ(One(added_below).status, DkimStatus::kFail);
  // Unsigned fields may be added.
  std::string unsigned_added = "Received: from somewhere\r\n" + signed_msg;
  EXPECT_EQ(One(unsigned_added).status, DkimStatus::kPass);
  // Header names are matched without regard to case; relaxed forgives
  // refolding.
  std::string refolded = signed_msg;
  refolded.replace(refolded.find("To: bob"), 7, "to:\r\n\tbob");
  EXPECT_EQ(One(refolded).status, DkimStatus::kPass);
}

TEST_F(DkimVerifyTest, ManySignaturesAreCapped) {
  std::string msg = std::string(kMessage);
  for (int i = 0; i < 4; ++i) msg = Sign(kEdTags, DkimKeyType::kEd25519, msg);
  DkimVerifyOptions options;
  options.max_signatures = 2;
  auto results = Verify(fake_, io_, msg, kNow, options);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].status, DkimStatus::kPass);
  EXPECT_EQ(results[1].status, DkimStatus::kPass);
  EXPECT_EQ(results[2].status, DkimStatus::kPolicy);
  EXPECT_EQ(results[3].status, DkimStatus::kPolicy);
  EXPECT_EQ(results[3].domain, "example.org");
}

// Hostile sizes: 50,000 tags, and an h= of 50,000 names over 50,000
// fields, must cost time in proportion, not the product (which would take
// minutes here).
TEST_F(DkimVerifyTest, LargeListsStayLinear) {
  std::string tags;
  for (int i = 0; i < 50000; ++i) tags += "t" + std::to_string(i) + "=x;";
  auto list = ParseDkimTagList(tags);
  ASSERT_TRUE(list);
  EXPECT_EQ(list->tags.size(), 50000u);

  std::string header;
  std::string names = "From";
  for (int i = 0; i < 50000; ++i) {
    header += "X-F" + std::to_string(i % 1000) + ": v\r\n";
    names += ":X-F" + std::to_string(i % 1000);
  }
  std::string message = header + std::string(kMessage);
  std::string signed_msg = Sign(
      "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=ed; h=" +
          names + ";",
      DkimKeyType::kEd25519, message);
  // Signed over From, To, Subject only (the helper's list), so it fails;
  // what matters is that it finishes.
  EXPECT_EQ(One(signed_msg).status, DkimStatus::kFail);
}

TEST_F(DkimVerifyTest, NoSignature) {
  EXPECT_TRUE(Verify(fake_, io_, std::string(kMessage)).empty());
  EXPECT_TRUE(Verify(fake_, io_, "").empty());
}

// ---------------------------------------------------------------- signer

TEST_F(DkimVerifyTest, SignerOutputVerifies) {
  std::vector<DkimSigningKey> keys = {
      {"example.org", "ed", TestKey(DkimKeyType::kEd25519)},
      {"example.org", "rsa", TestKey(DkimKeyType::kRsa)}};
  auto fields = DkimSignMessage(kMessage, keys, kNow);
  ASSERT_TRUE(fields) << fields.error().message;
  auto results = Verify(fake_, io_, *fields + std::string(kMessage));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status, DkimStatus::kPass) << results[0].reason;
  EXPECT_EQ(results[0].algorithm, "ed25519-sha256");
  EXPECT_EQ(results[1].status, DkimStatus::kPass) << results[1].reason;
  EXPECT_EQ(results[1].algorithm, "rsa-sha256");
  // Folded to 78 columns, tags as promised.
  size_t pos = 0;
  while (pos < fields->size()) {
    size_t eol = fields->find("\r\n", pos);
    ASSERT_NE(eol, std::string::npos);
    EXPECT_LE(eol - pos, 78u) << fields->substr(pos, eol - pos);
    pos = eol + 2;
  }
  std::string unfolded;
  for (char c : *fields) {
    if (c != '\r' && c != '\n') unfolded += c;
  }
  EXPECT_NE(unfolded.find("c=relaxed/relaxed;"), std::string::npos);
  EXPECT_NE(unfolded.find("t=1800000000;"), std::string::npos);
  EXPECT_NE(unfolded.find("h=From:From:To:Subject:Date;"), std::string::npos);
  // A From: added later breaks the signature (From is signed once more
  // than it occurs).
  std::string with_from =
      *fields + "From: mallory@example.org\r\n" + std::string(kMessage);
  auto again = Verify(fake_, io_, with_from);
  EXPECT_EQ(again[0].status, DkimStatus::kFail);
  EXPECT_EQ(again[1].status, DkimStatus::kFail);
}

TEST_F(DkimVerifyTest, SignerStreamsAndChecksItsInput) {
  std::vector<DkimSigningKey> keys = {
      {"example.org", "ed", TestKey(DkimKeyType::kEd25519)}};
  DkimSigner signer(keys, kNow);
  std::string_view m = kMessage;
  for (size_t i = 0; i < m.size(); i += 3) signer.Feed(m.substr(i, 3));
  auto fields = signer.Finish();
  ASSERT_TRUE(fields);
  EXPECT_EQ(*fields, *DkimSignMessage(kMessage, keys, kNow));
  EXPECT_FALSE(DkimSignMessage("To: x@y\r\n\r\nbody\r\n", keys, kNow));
  // Repeated fields are listed as often as they occur.
  std::string two_to =
      "From: a@example.org\r\nTo: x@y\r\nTo: z@w\r\n\r\nhi\r\n";
  auto f2 = DkimSignMessage(two_to, keys, kNow);
  ASSERT_TRUE(f2);
  EXPECT_NE(f2->find("h=From:From:To:To;"), std::string::npos);
  EXPECT_EQ(Verify(fake_, io_, *f2 + two_to)[0].status, DkimStatus::kPass);
}

// ---------------------------------------------------------------- keys

std::string TraditionalRsaPem(const DkimKey& key) {
  OSSL_ENCODER_CTX* ctx = OSSL_ENCODER_CTX_new_for_pkey(
      key.get(), OSSL_KEYMGMT_SELECT_KEYPAIR, "PEM", "type-specific", nullptr);
  unsigned char* data = nullptr;
  size_t len = 0;
  EXPECT_EQ(OSSL_ENCODER_to_data(ctx, &data, &len), 1);
  OSSL_ENCODER_CTX_free(ctx);
  std::string pem(reinterpret_cast<char*>(data), len);
  OPENSSL_free(data);
  return pem;
}

TEST(DkimKeysTest, PrivateKeyFormats) {
  const DkimKey& rsa = TestKey(DkimKeyType::kRsa);
  std::string traditional = TraditionalRsaPem(rsa);
  ASSERT_NE(traditional.find("BEGIN RSA PRIVATE KEY"), std::string::npos);
  auto a = ParseDkimPrivateKeyPem(traditional);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->type(), DkimKeyType::kRsa);
  EXPECT_EQ(a->bits(), 2048);
  auto pkcs8 = DkimPrivateKeyPem(rsa);
  ASSERT_TRUE(pkcs8);
  EXPECT_NE(pkcs8->find("BEGIN PRIVATE KEY"), std::string::npos);
  auto b = ParseDkimPrivateKeyPem(*pkcs8);
  ASSERT_TRUE(b);
  EXPECT_EQ(*DkimKeyRecordText(*b), *DkimKeyRecordText(rsa));
  EXPECT_FALSE(
      ParseDkimPrivateKeyPem("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
  EXPECT_FALSE(ParseDkimPrivateKeyPem("not a key"));
  // Public keys: SubjectPublicKeyInfo and bare PKCS#1 both read.
  std::string spki = *Base64Decode(*DkimPublicKeyRecordValue(rsa));
  EXPECT_TRUE(ParseDkimPublicKey(DkimKeyType::kRsa, spki));
  EXPECT_FALSE(ParseDkimPublicKey(DkimKeyType::kRsa, spki + "x"));
  EXPECT_FALSE(ParseDkimPublicKey(DkimKeyType::kEd25519, spki));
  unsigned char* der = nullptr;
  int len = i2d_PublicKey(rsa.get(), &der);
  ASSERT_GT(len, 0);
  std::string pkcs1(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  auto bare = ParseDkimPublicKey(DkimKeyType::kRsa, pkcs1);
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->bits(), 2048);
}

TEST(DkimKeysTest, SelectorsAndRecords) {
  // 2026-12-05 UTC.
  EXPECT_EQ(DefaultDkimSelector(DkimKeyType::kEd25519, 1796472000), "t202612e");
  EXPECT_EQ(DefaultDkimSelector(DkimKeyType::kRsa, 1796472000), "t202612r");
  std::string text(600, 'A');
  std::string line = DkimZoneLine("s._domainkey.example.org", text);
  EXPECT_EQ(line, "s._domainkey.example.org. IN TXT \"" +
                      std::string(255, 'A') + "\" \"" + std::string(255, 'A') +
                      "\" \"" + std::string(90, 'A') + "\"");
}

TEST(DkimKeysTest, CreateListLoadRemove) {
  std::string dir =
      ::testing::TempDir() + "/dkim_keys_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto ed =
      CreateDkimKey(dir, "Example.ORG", "t202612e", DkimKeyType::kEd25519, 0);
  ASSERT_TRUE(ed) << ed.error().message;
  EXPECT_EQ(ed->file.path, dir + "/dkim/example.org/t202612e.ed25519.pem");
  EXPECT_EQ(ed->record_name, "t202612e._domainkey.example.org");
  EXPECT_EQ(ed->record_text.substr(0, 22), "v=DKIM1; k=ed25519; p=");
  struct stat st;
  ASSERT_EQ(::stat(ed->file.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir + "/dkim/example.org").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The same selector again is refused; another one is a rotation.
  EXPECT_FALSE(
      CreateDkimKey(dir, "example.org", "t202612e", DkimKeyType::kEd25519, 0));
  EXPECT_FALSE(
      CreateDkimKey(dir, "example.org", "bad/name", DkimKeyType::kEd25519, 0));
  EXPECT_FALSE(CreateDkimKey(dir, "example.org", "r", DkimKeyType::kRsa, 512));
  ASSERT_TRUE(
      CreateDkimKey(dir, "example.org", "t202701e", DkimKeyType::kEd25519, 0));
  ASSERT_TRUE(CreateDkimKey(dir, "other.test", "r1", DkimKeyType::kRsa, 1024));

  auto list = ListDkimKeys(dir);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].domain, "example.org");
  EXPECT_EQ((*list)[2].domain, "other.test");
  EXPECT_EQ((*list)[2].type, DkimKeyType::kRsa);

  auto keys = LoadDkimSigningKeys(dir, "example.org");
  ASSERT_TRUE(keys) << keys.error().message;
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].domain, "example.org");
  auto all = LoadAllDkimSigningKeys(dir);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at("other.test")[0].key.bits(), 1024);
  EXPECT_TRUE(LoadDkimSigningKeys(dir, "nowhere.test")->empty());

  ASSERT_TRUE(RemoveDkimKey(dir, "example.org", "t202612e"));
  EXPECT_FALSE(RemoveDkimKey(dir, "example.org", "t202612e"));
  EXPECT_EQ(LoadDkimSigningKeys(dir, "example.org")->size(), 1u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tern::mailauth
