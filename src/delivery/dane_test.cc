// The RFC 7672 decision table: which DNSSEC outcomes give DANE, mandatory
// unauthenticated TLS, no DANE, or an unusable host; and ArmDane/CheckDane
// in an in-memory handshake.
#include "delivery/dane.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace tern::delivery {
namespace {

using dns::Answer;
using dns::Security;
using dns::Status;
using dns::TlsaRecord;

TlsaRecord Rec(uint8_t usage, uint8_t selector, uint8_t mtype, size_t len) {
  TlsaRecord r;
  r.usage = usage;
  r.selector = selector;
  r.mtype = mtype;
  r.data.assign(len, '\x5a');
  return r;
}

Answer TlsaAnswer(Status status, Security security,
                  std::vector<TlsaRecord> records = {}) {
  Answer a;
  a.status = status;
  a.security = security;
  a.tlsa = std::move(records);
  return a;
}

TEST(DaneTest, TlsaName) {
  EXPECT_EQ(TlsaName(25, "mx.example.org"), "_25._tcp.mx.example.org");
  EXPECT_EQ(TlsaName(2525, "mx"), "_2525._tcp.mx");
}

TEST(DaneTest, UsableRecords) {
  // RFC 7672 3.1: DANE-TA(2) and DANE-EE(3) only.
  EXPECT_TRUE(UsableTlsa(Rec(3, 1, 1, 32)));
  EXPECT_TRUE(UsableTlsa(Rec(3, 0, 2, 64)));
  EXPECT_TRUE(UsableTlsa(Rec(2, 0, 1, 32)));
  EXPECT_TRUE(UsableTlsa(Rec(2, 1, 0, 300)));
  EXPECT_FALSE(UsableTlsa(Rec(0, 0, 1, 32)));  // PKIX-TA
  EXPECT_FALSE(UsableTlsa(Rec(1, 1, 1, 32)));  // PKIX-EE
  EXPECT_FALSE(UsableTlsa(Rec(4, 1, 1, 32)));
  EXPECT_FALSE(UsableTlsa(Rec(3, 2, 1, 32)));  // unknown selector
  EXPECT_FALSE(UsableTlsa(Rec(3, 1, 3, 32)));  // unknown matching type
  // A digest of the wrong length matches nothing.
  EXPECT_FALSE(UsableTlsa(Rec(3, 1, 1, 31)));
  EXPECT_FALSE(UsableTlsa(Rec(3, 1, 2, 32)));
  EXPECT_FALSE(UsableTlsa(Rec(3, 1, 0, 0)));
}

TEST(DaneTest, NoLookupBelowInsecureMxOrAddresses) {
  std::string why;
  EXPECT_TRUE(NeedTlsaLookup(Security::kSecure, Security::kSecure, &why));
  EXPECT_EQ(why, "");
  EXPECT_FALSE(NeedTlsaLookup(Security::kInsecure, Security::kSecure, &why));
  EXPECT_EQ(why, "MX answer insecure");
  EXPECT_FALSE(NeedTlsaLookup(Security::kSecure, Security::kInsecure, &why));
  EXPECT_EQ(why, "address answer insecure");
  DaneDecision d = DecideDane(Security::kInsecure, Security::kSecure, nullptr);
  EXPECT_EQ(d.state, DaneState::kNone);
  EXPECT_EQ(d.why, "MX answer insecure");
  EXPECT_FALSE(d.tls_required());
  // Even with records at hand, an insecure address answer means no DANE.
  Answer good = TlsaAnswer(Status::kOk, Security::kSecure, {Rec(3, 1, 1, 32)});
  d = DecideDane(Security::kSecure, Security::kInsecure, &good);
  EXPECT_EQ(d.state, DaneState::kNone);
  EXPECT_EQ(d.why, "address answer insecure");
}

TEST(DaneTest, UsableRecordsGiveDane) {
  Answer a = TlsaAnswer(Status::kOk, Security::kSecure,
                        {Rec(3, 1, 1, 32), Rec(1, 1, 1, 32), Rec(2, 0, 1, 32)});
  DaneDecision d = DecideDane(Security::kSecure, Security::kSecure, &a);
  EXPECT_EQ(d.state, DaneState::kDane);
  EXPECT_TRUE(d.tls_required());
  ASSERT_EQ(d.records.size(), 2u);  // the PKIX-EE record is left out
  EXPECT_EQ(d.records[0].usage, 3);
  EXPECT_EQ(d.records[1].usage, 2);
  EXPECT_EQ(d.why, "2 usable TLSA records");
  EXPECT_STREQ(DaneStateName(d.state), "dane");
}

TEST(DaneTest, OnlyUnusableRecordsMeanTlsWithoutAuthentication) {
  Answer a = TlsaAnswer(Status::kOk, Security::kSecure,
                        {Rec(0, 0, 1, 32), Rec(3, 1, 1, 20)});
  DaneDecision d = DecideDane(Security::kSecure, Security::kSecure, &a);
  EXPECT_EQ(d.state, DaneState::kUnusable);
  EXPECT_TRUE(d.tls_required());
  EXPECT_TRUE(d.records.empty());
}

TEST(DaneTest, SecureDenialMeansNoDane) {
  Answer nodata = TlsaAnswer(Status::kOk, Security::kSecure);
  DaneDecision d = DecideDane(Security::kSecure, Security::kSecure, &nodata);
  EXPECT_EQ(d.state, DaneState::kNone);
  EXPECT_EQ(d.why, "no TLSA records");
  Answer nx = TlsaAnswer(Status::kNxDomain, Security::kSecure);
  EXPECT_EQ(DecideDane(Security::kSecure, Security::kSecure, &nx).state,
            DaneState::kNone);
}

TEST(DaneTest, InsecureTlsaAnswerIsIgnored) {
  Answer a = TlsaAnswer(Status::kOk, Security::kInsecure, {Rec(3, 1, 1, 32)});
  DaneDecision d = DecideDane(Security::kSecure, Security::kSecure, &a);
  EXPECT_EQ(d.state, DaneState::kNone);
  EXPECT_EQ(d.why, "TLSA answer insecure");
  EXPECT_TRUE(d.records.empty());
}

TEST(DaneTest, FailedOrBogusLookupMakesTheHostUnusable) {
  Answer servfail = TlsaAnswer(Status::kTempFail, Security::kInsecure);
  servfail.error = "DNS error rcode 2";
  DaneDecision d = DecideDane(Security::kSecure, Security::kSecure, &servfail);
  EXPECT_EQ(d.state, DaneState::kFail);
  EXPECT_EQ(d.why, "TLSA lookup failed: DNS error rcode 2");
  EXPECT_FALSE(d.tls_required());  // not used at all, so no TLS either
  // Bogus comes first, even on an answer that looks fine otherwise.
  Answer bogus = TlsaAnswer(Status::kOk, Security::kBogus, {Rec(3, 1, 1, 32)});
  d = DecideDane(Security::kSecure, Security::kSecure, &bogus);
  EXPECT_EQ(d.state, DaneState::kFail);
  EXPECT_TRUE(d.records.empty());
}

// ---- The OpenSSL side: a client armed by ArmDane against an in-memory
// server, so the usages, the name checks and the result text are those of
// the TLS library itself.

struct Issued {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
};

Issued MakeCert(const char* cn, const char* san, const Issued* issuer) {
  static long serial = 1;
  Issued out;
  out.key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, out.key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer->cert : x, x, nullptr, nullptr, 0);
  std::string alt = std::string("DNS:") + san;
  const char* bc = issuer ? "critical,CA:FALSE" : "critical,CA:TRUE";
  for (auto [nid, value] : {std::pair<int, const char*>{NID_basic_constraints, bc},
                            {NID_subject_alt_name, alt.c_str()}}) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  X509_sign(x, issuer ? issuer->key : out.key, EVP_sha256());
  out.cert = x;
  return out;
}

void Free(Issued& i) {
  X509_free(i.cert);
  EVP_PKEY_free(i.key);
}

std::string Sha256(const unsigned char* der, int len) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(der, static_cast<size_t>(len), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), n);
}

std::string SpkiSha256(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  std::string out = Sha256(der, len);
  OPENSSL_free(der);
  return out;
}

std::string CertSha256(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  std::string out = Sha256(der, len);
  OPENSSL_free(der);
  return out;
}

// The server presents `leaf` (and `ca` in its chain); the client is armed
// with `records` for MX host "mx.example.test" of domain "example.test".
DaneResult Handshake(const Issued& leaf, const Issued& ca,
                     std::vector<TlsaRecord> records) {
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(sctx, leaf.cert);
  SSL_CTX_use_PrivateKey(sctx, leaf.key);
  SSL_CTX_add1_chain_cert(sctx, ca.cert);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  EXPECT_TRUE(EnableDane(cctx));
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, nullptr);  // as outbound.cc
  SSL* client = SSL_new(cctx);
  SSL* server = SSL_new(sctx);
  BIO* cbio = nullptr;
  BIO* sbio = nullptr;
  BIO_new_bio_pair(&cbio, 0, &sbio, 0);
  SSL_set_bio(client, cbio, cbio);
  SSL_set_bio(server, sbio, sbio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  DaneDecision d;
  d.state = DaneState::kDane;
  d.records = std::move(records);
  EXPECT_EQ(ArmDane(client, d, "mx.example.test", "example.test"), "");
  bool cdone = false;
  bool sdone = false;
  for (int i = 0; i < 50 && !(cdone && sdone); ++i) {
    if (!cdone) cdone = SSL_do_handshake(client) == 1;
    if (!sdone) sdone = SSL_do_handshake(server) == 1;
  }
  EXPECT_TRUE(cdone && sdone);
  DaneResult r = CheckDane(client);
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  return r;
}

TlsaRecord Tlsa(uint8_t usage, uint8_t selector, std::string data) {
  TlsaRecord r;
  r.usage = usage;
  r.selector = selector;
  r.mtype = 1;
  r.data = std::move(data);
  return r;
}

class DaneTlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ca_ = MakeCert("Test CA", "ca.invalid", nullptr); }
  void TearDown() override { Free(ca_); }
  Issued ca_;
};

TEST_F(DaneTlsTest, DaneEeMatchesTheKeyWhateverTheName) {
  Issued leaf = MakeCert("elsewhere", "elsewhere.invalid", &ca_);
  DaneResult r = Handshake(leaf, ca_, {Tlsa(3, 1, SpkiSha256(leaf.key))});
  EXPECT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.text, "dane-ee");
  Free(leaf);
}

TEST_F(DaneTlsTest, DaneEeMismatchFails) {
  Issued leaf = MakeCert("mx", "mx.example.test", &ca_);
  DaneResult r = Handshake(leaf, ca_, {Tlsa(3, 1, std::string(32, '\0'))});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.text.find("TLSA"), std::string::npos) << r.text;
  Free(leaf);
}

TEST_F(DaneTlsTest, DaneTaChecksTheMxNameOrTheDomain) {
  std::string ta = CertSha256(ca_.cert);
  Issued mx = MakeCert("mx", "mx.example.test", &ca_);
  DaneResult r = Handshake(mx, ca_, {Tlsa(2, 0, ta)});
  EXPECT_TRUE(r.ok) << r.text;
  EXPECT_EQ(r.text, "dane-ta");
  // RFC 7672 3.2.2: the next-hop domain is a reference identifier too.
  Issued domain = MakeCert("domain", "example.test", &ca_);
  EXPECT_TRUE(Handshake(domain, ca_, {Tlsa(2, 0, ta)}).ok);
  Issued other = MakeCert("other", "other.example.test", &ca_);
  r = Handshake(other, ca_, {Tlsa(2, 0, ta)});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.text, "hostname mismatch");
  Free(mx);
  Free(domain);
  Free(other);
}

}  // namespace
}  // namespace tern::delivery
