// The RFC 7672 decision table: which DNSSEC outcomes give DANE, mandatory
// unauthenticated TLS, no DANE, or an unusable host.
#include "delivery/dane.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tern::delivery
