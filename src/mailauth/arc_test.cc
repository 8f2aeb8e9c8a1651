// Unit tests of ARC (RFC 8617): the field parsers and the structure check,
// messages sealed by Tern once and over several hops verified through a
// fake resolver, every kind of tampering, the cv rules, the 50-set limit,
// key record problems, and what the sealer refuses.
#include "mailauth/arc.h"

#include <gtest/gtest.h>

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "common/base64.h"
#include "dns/fake_resolver.h"
#include "mailauth/arc_lookup.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_keys.h"
#include "mailauth/dkim_sign.h"

namespace tern::mailauth {
namespace {

constexpr int64_t kNow = 1800000000;

constexpr std::string_view kMessage =
    "From: Alice <alice@origin.test>\r\n"
    "To: list@lists.test\r\n"
    "Subject: Minutes of the meeting\r\n"
    "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
    "Message-ID: <minutes@origin.test>\r\n"
    "DKIM-Signature: v=1; a=ed25519-sha256; d=origin.test; s=x; h=From;\r\n"
    " bh=AAAA; b=AAAA\r\n"
    "\r\n"
    "The minutes are attached.\r\n"
    "\r\n"
    "Alice\r\n";

const DkimKey& RsaKey() {
  static const DkimKey key = *GenerateDkimKey(DkimKeyType::kRsa, 2048);
  return key;
}

const DkimKey& EdKey() {
  static const DkimKey key = *GenerateDkimKey(DkimKeyType::kEd25519, 0);
  return key;
}

std::string Record(const DkimKey& key) { return *DkimKeyRecordText(key); }

std::string Header(std::string_view message) {
  return std::string(message.substr(0, message.find("\r\n\r\n") + 2));
}

class ArcTest : public ::testing::Test {
 protected:
  ArcTest() : fake_(io_.get_executor()) {
    fake_.SetTxt("rsa._domainkey.lists.test", {Record(RsaKey())});
    fake_.SetTxt("ed._domainkey.lists.test", {Record(EdKey())});
    fake_.SetTxt("hop2._domainkey.forward.test", {Record(EdKey())});
    fake_.SetTxt("rsa._domainkey.forward.test", {Record(RsaKey())});
  }

  ArcResult Verify(std::string message, ArcVerifyOptions options = {}) {
    ArcResult out;
    bool done = false;
    asio::co_spawn(io_, VerifyArcMessage(fake_, std::move(message), options),
                   [&](std::exception_ptr e, ArcResult r) {
                     if (e) std::rethrow_exception(e);
                     out = std::move(r);
                     done = true;
                   });
    io_.run();
    io_.restart();
    EXPECT_TRUE(done);
    return out;
  }

  // The message with the next set on top, or "" (and a test failure) when
  // sealing is refused.
  std::string Seal(
      std::string_view message, ArcStatus cv,
      const std::string& domain = "lists.test",
      const std::string& selector = "rsa", const DkimKey* key = nullptr,
      std::string auth_results = "spf=pass smtp.mailfrom=origin.test") {
    ArcSealRequest request{"mx." + domain, std::move(auth_results), cv};
    std::vector<DkimSigningKey> keys = {
        {domain, selector, key != nullptr ? *key : RsaKey()}};
    auto fields = ArcSealMessage(message, request, keys, kNow);
    EXPECT_TRUE(fields) << fields.error().message;
    if (!fields) return "";
    return *fields + std::string(message);
  }

  Result<std::string> TrySeal(std::string_view message, ArcStatus cv) {
    ArcSealRequest request{"mx.lists.test", "", cv};
    return ArcSealMessage(message, request, {{"lists.test", "ed", EdKey()}},
                          kNow);
  }

  asio::io_context io_;
  dns::FakeResolver fake_;
};

// Replaces the first `from` after `at` (the whole text if empty).
std::string Replace(std::string text, std::string_view from,
                    std::string_view to, std::string_view at = {}) {
  size_t start = at.empty() ? 0 : text.find(at);
  size_t pos = text.find(from, start);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// Removes every field whose text starts with `prefix` (folding included).
std::string RemoveFields(std::string_view message, std::string_view prefix) {
  std::string header = Header(message);
  std::string out;
  for (const DkimHeaderField& f : SplitDkimHeader(header)) {
    if (f.text.substr(0, prefix.size()) == prefix) continue;
    out += std::string(f.text) + "\r\n";
  }
  return out + std::string(message.substr(header.size()));
}

// ---------------------------------------------------------------- parsers

TEST(ArcFieldsTest, AarInstance) {
  EXPECT_EQ(*ParseArcAarInstance(" i=1; mx.example; spf=pass"), 1);
  EXPECT_EQ(*ParseArcAarInstance("i = 12 ;mx.example"), 12);
  EXPECT_EQ(*ParseArcAarInstance("\r\n\ti=3;"), 3);
  EXPECT_EQ(*ParseArcAarInstance(" i=51; x"), 51);  // range is the chain's
  EXPECT_FALSE(ParseArcAarInstance(" mx.example; spf=pass"));
  EXPECT_FALSE(ParseArcAarInstance(" i=1 mx.example;"));
  EXPECT_FALSE(ParseArcAarInstance(" i=0;"));
  EXPECT_FALSE(ParseArcAarInstance(" i=;"));
  EXPECT_FALSE(ParseArcAarInstance(" i=1"));
  EXPECT_FALSE(ParseArcAarInstance(" i=x1;"));
}

TEST(ArcFieldsTest, Seal) {
  auto seal = ParseArcSeal(
      " i=2; a=rsa-sha256; cv=pass; d=Lists.Test; s=k1; t=1700000000;\r\n"
      " b=AAAA");
  ASSERT_TRUE(seal) << seal.error().message;
  EXPECT_EQ(seal->instance, 2);
  EXPECT_EQ(seal->cv, ArcStatus::kPass);
  EXPECT_EQ(seal->signature.domain, "lists.test");
  EXPECT_EQ(seal->signature.selector, "k1");
  EXPECT_EQ(seal->signature.header_canon, DkimCanon::kRelaxed);
  EXPECT_EQ(*seal->signature.timestamp, 1700000000);

  std::string ok = " i=1; a=rsa-sha256; cv=none; d=x.test; s=k; b=AAAA";
  EXPECT_TRUE(ParseArcSeal(ok));
  EXPECT_FALSE(ParseArcSeal(ok + "; h=From"));  // RFC 8617 4.1.3
  EXPECT_FALSE(
      ParseArcSeal(" i=1; a=rsa-sha256; cv=maybe; d=x.test; s=k; b=AAAA"));
  EXPECT_FALSE(ParseArcSeal(" i=1; a=rsa-sha256; d=x.test; s=k; b=AAAA"));
  EXPECT_FALSE(
      ParseArcSeal(" i=1; a=rsa-sha1; cv=none; d=x.test; s=k; b=AAAA"));
  EXPECT_FALSE(
      ParseArcSeal(" i=one; a=rsa-sha256; cv=none; d=x.test; s=k; b=AAAA"));
  EXPECT_FALSE(
      ParseArcSeal(" i=1; a=rsa-sha256; cv=none; d=x..test; s=k; b=AAAA"));
  EXPECT_FALSE(ParseArcSeal(" i=1; a=rsa-sha256; cv=none; d=x.test; s=k; b="));
}

TEST(ArcFieldsTest, MessageSignature) {
  auto ams = ParseArcMessageSignature(
      " i=3; a=ed25519-sha256; c=relaxed/simple; d=x.test; s=k;\r\n"
      " h=From:To:Subject; bh=AAAA; b=AAAA; l=10; v=7");
  ASSERT_TRUE(ams) << ams.error().message;
  EXPECT_EQ(ams->instance, 3);
  EXPECT_EQ(ams->signature.algorithm, DkimAlgorithm::kEd25519Sha256);
  EXPECT_EQ(ams->signature.header_canon, DkimCanon::kRelaxed);
  EXPECT_EQ(ams->signature.body_canon, DkimCanon::kSimple);
  EXPECT_EQ(ams->signature.identity, "@x.test");
  EXPECT_EQ(ams->signature.signed_headers.size(), 3u);
  EXPECT_EQ(*ams->signature.body_length, 10u);
  // No From in h= is acceptable for ARC; missing bh= or h= is not.
  EXPECT_TRUE(ParseArcMessageSignature(
      " i=1; a=rsa-sha256; d=x.test; s=k; h=Subject; bh=AAAA; b=AAAA"));
  EXPECT_FALSE(ParseArcMessageSignature(
      " i=1; a=rsa-sha256; d=x.test; s=k; h=Subject; b=AAAA"));
  EXPECT_FALSE(ParseArcMessageSignature(
      " i=1; a=rsa-sha256; d=x.test; s=k; bh=AAAA; b=AAAA"));
  EXPECT_FALSE(ParseArcMessageSignature(
      " i=1; a=rsa-sha256; c=fancy; d=x.test; s=k; h=From; bh=AAAA; b=AAAA"));
}

// ---------------------------------------------------------------- structure

// A set with placeholder signatures: the structure check reads no crypto.
std::string FakeSet(int i, std::string_view cv, std::string_view extra = "") {
  std::string n = std::to_string(i);
  return "ARC-Seal: i=" + n + "; a=rsa-sha256; cv=" + std::string(cv) +
         "; d=x.test; s=k; b=AAAA" + std::string(extra) +
         "\r\n"
         "ARC-Message-Signature: i=" +
         n +
         "; a=rsa-sha256; d=x.test; s=k; h=From; bh=AAAA; b=AAAA\r\n"
         "ARC-Authentication-Results: i=" +
         n + "; mx.x.test; spf=pass\r\n";
}

ArcChain Chain(const std::string& header) {
  // The chain holds views into its header: kept for the whole test run.
  static std::deque<std::string> kept;
  kept.push_back(header + "From: a@b.test\r\n");
  return CollectArcChain(SplitDkimHeader(kept.back()));
}

std::string Sets(int n) {
  std::string out;
  for (int i = n; i >= 1; --i) out += FakeSet(i, i == 1 ? "none" : "pass");
  return out;
}

TEST(ArcChainTest, NoneAndSound) {
  EXPECT_EQ(Chain("").status, ArcStatus::kNone);
  ArcChain c = Chain(Sets(3));
  EXPECT_EQ(c.status, ArcStatus::kPass) << c.reason;
  ASSERT_EQ(c.sets.size(), 3u);
  EXPECT_EQ(c.sets[2].instance, 3);
  EXPECT_EQ(c.highest_instance, 3);
  EXPECT_FALSE(c.ended);
  // The position of the fields does not matter, their instances do.
  std::string shuffled =
      FakeSet(1, "none") + "X-Other: 1\r\n" + FakeSet(2, "pass");
  EXPECT_EQ(Chain(shuffled).status, ArcStatus::kPass);
}

TEST(ArcChainTest, CvRules) {
  // RFC 8617 5.2 step 3: cv=none at i=1 only, cv=pass above.
  ArcChain first_pass = Chain(FakeSet(1, "pass"));
  EXPECT_EQ(first_pass.status, ArcStatus::kFail);
  EXPECT_EQ(first_pass.reason, "ARC-Seal i=1 has cv=pass, not none");
  ArcChain second_none = Chain(FakeSet(2, "none") + FakeSet(1, "none"));
  EXPECT_EQ(second_none.status, ArcStatus::kFail);
  EXPECT_EQ(second_none.reason, "ARC-Seal i=2 has cv=none, not pass");
  // A cv=fail below the top is a malformed chain too.
  EXPECT_EQ(Chain(FakeSet(3, "pass") + FakeSet(2, "fail") + FakeSet(1, "none"))
                .status,
            ArcStatus::kFail);
  // Step 2: the newest seal says fail: the chain has ended.
  ArcChain ended = Chain(FakeSet(2, "fail") + FakeSet(1, "none"));
  EXPECT_EQ(ended.status, ArcStatus::kFail);
  EXPECT_TRUE(ended.ended);
  EXPECT_EQ(ended.reason, "ARC-Seal i=2 says cv=fail");
}

TEST(ArcChainTest, GapsDuplicatesAndIncompleteSets) {
  ArcChain gap = Chain(FakeSet(3, "pass") + FakeSet(1, "none"));
  EXPECT_EQ(gap.status, ArcStatus::kFail);
  EXPECT_EQ(gap.reason, "ARC set i=2 is missing");
  EXPECT_EQ(gap.highest_instance, 3);
  ArcChain no_first = Chain(FakeSet(2, "pass"));
  EXPECT_EQ(no_first.reason, "ARC set i=1 is missing");

  std::string dup = Sets(2) +
                    "ARC-Message-Signature: i=1; a=rsa-sha256; d=y.test; "
                    "s=k; h=From; bh=AAAA; b=AAAA\r\n";
  ArcChain d = Chain(dup);
  EXPECT_EQ(d.status, ArcStatus::kFail);
  EXPECT_EQ(d.reason, "two ARC-Message-Signature fields with i=1");

  std::string without_aar =
      RemoveFields(Sets(2) + "\r\n", "ARC-Authentication-Results: i=2");
  ArcChain m = Chain(Header(without_aar));
  EXPECT_EQ(m.status, ArcStatus::kFail);
  EXPECT_EQ(m.reason, "ARC set i=2 has no ARC-Authentication-Results");

  ArcChain unreadable =
      Chain(Sets(1) + "ARC-Authentication-Results: mx.x.test; spf=pass\r\n");
  EXPECT_EQ(unreadable.status, ArcStatus::kFail);
  EXPECT_NE(unreadable.reason.find("without a valid instance"),
            std::string::npos);
  ArcChain bad_seal = Chain(FakeSet(1, "none", "; h=From"));
  EXPECT_EQ(bad_seal.status, ArcStatus::kFail);
  EXPECT_EQ(bad_seal.reason, "ARC-Seal i=1: h= is not allowed in an ARC-Seal");
}

TEST(ArcChainTest, FiftyInstances) {
  // RFC 8617 4.2.1.1 / 5.2 step 1.
  EXPECT_EQ(Chain(Sets(50)).status, ArcStatus::kPass);
  ArcChain over = Chain(FakeSet(51, "pass") + Sets(50));
  EXPECT_EQ(over.status, ArcStatus::kFail);
  EXPECT_EQ(over.reason, "instance i=51 is above 50");
  EXPECT_EQ(over.highest_instance, 51);
}

// ---------------------------------------------------------------- verify

TEST_F(ArcTest, NoArcIsNone) {
  ArcResult r = Verify(std::string(kMessage));
  EXPECT_EQ(r.status, ArcStatus::kNone);
  EXPECT_TRUE(r.instances.empty());
  EXPECT_EQ(fake_.queries(), 0);
}

TEST_F(ArcTest, SealedOncePasses) {
  for (const char* selector : {"rsa", "ed"}) {
    const DkimKey& key = std::string(selector) == "rsa" ? RsaKey() : EdKey();
    std::string sealed =
        Seal(kMessage, ArcStatus::kNone, "lists.test", selector, &key);
    ArcResult r = Verify(sealed);
    EXPECT_EQ(r.status, ArcStatus::kPass) << selector << ": " << r.reason;
    ASSERT_EQ(r.instances.size(), 1u);
    EXPECT_EQ(r.instances[0].instance, 1);
    EXPECT_EQ(r.instances[0].domain, "lists.test");
    EXPECT_EQ(r.instances[0].selector, selector);
    EXPECT_EQ(r.instances[0].cv, ArcStatus::kNone);
    EXPECT_EQ(r.oldest_pass, 0);
    EXPECT_EQ(r.LastSealer(), "lists.test");
  }
}

TEST_F(ArcTest, SealedFieldsLookRight) {
  std::string sealed = Seal(kMessage, ArcStatus::kNone);
  std::string header = Header(sealed);
  std::vector<DkimHeaderField> fields = SplitDkimHeader(header);
  ASSERT_GE(fields.size(), 3u);
  // The order of RFC 8617's examples: seal, signature, results.
  EXPECT_EQ(fields[0].name, "ARC-Seal");
  EXPECT_EQ(fields[1].name, "ARC-Message-Signature");
  EXPECT_EQ(fields[2].name, "ARC-Authentication-Results");
  auto starts = [](std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
  };
  EXPECT_TRUE(starts(fields[0].text,
                     "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=lists.test; "
                     "s=rsa; t=1800000000;\r\n b="))
      << fields[0].text;
  EXPECT_TRUE(starts(fields[1].text,
                     "ARC-Message-Signature: i=1; a=rsa-sha256; "
                     "c=relaxed/relaxed; d=lists.test;\r\n s=rsa; "
                     "t=1800000000; h=From:From:To:Subject:Date:"))
      << fields[1].text;
  // h= names the present fields (DKIM-Signature included), From once more,
  // no Authentication-Results and no ARC field.
  auto ams = ParseArcMessageSignature(
      fields[1].text.substr(fields[1].text.find(':') + 1));
  ASSERT_TRUE(ams);
  std::string h;
  for (const std::string& n : ams->signature.signed_headers) h += n + ":";
  EXPECT_EQ(h, "From:From:To:Subject:Date:Message-ID:DKIM-Signature:");
  EXPECT_EQ(fields[2].text,
            "ARC-Authentication-Results: i=1; mx.lists.test;\r\n"
            "\tspf=pass smtp.mailfrom=origin.test;\r\n"
            "\tarc=none");
  for (size_t pos = 0; pos < header.size();) {
    size_t eol = header.find("\r\n", pos);
    EXPECT_LE(eol - pos, 78u) << header.substr(pos, eol - pos);
    pos = eol + 2;
  }
  EXPECT_EQ(sealed.substr(sealed.size() - kMessage.size()), kMessage);
}

TEST_F(ArcTest, TwoHopsPass) {
  std::string once = Seal(kMessage, ArcStatus::kNone);
  ASSERT_EQ(Verify(once).status, ArcStatus::kPass);
  // The second hop (another domain, an Ed25519 key) changes nothing and
  // seals what it verified.
  std::string twice =
      Seal(once, ArcStatus::kPass, "forward.test", "hop2", &EdKey());
  ArcResult r = Verify(twice);
  EXPECT_EQ(r.status, ArcStatus::kPass) << r.reason;
  ASSERT_EQ(r.instances.size(), 2u);
  EXPECT_EQ(r.instances[0].domain, "lists.test");
  EXPECT_EQ(r.instances[1].domain, "forward.test");
  EXPECT_EQ(r.instances[1].cv, ArcStatus::kPass);
  EXPECT_EQ(r.oldest_pass, 0);
  EXPECT_EQ(r.LastSealer(), "forward.test");
  EXPECT_TRUE(ArcSealedByTrusted(r, {"other.test", "Forward.Test."}));
  EXPECT_FALSE(ArcSealedByTrusted(r, {"lists.test"}));
  // Three keys' worth of checks, two distinct key names: two queries.
  EXPECT_EQ(fake_.queries(), 1 + 2);
}

TEST_F(ArcTest, StreamingInChunksChangesNothing) {
  std::string twice = Seal(Seal(kMessage, ArcStatus::kNone), ArcStatus::kPass,
                           "forward.test", "hop2", &EdKey());
  for (size_t chunk : {1u, 2u, 7u, 64u, 1000u}) {
    ArcVerifier verifier;
    for (size_t i = 0; i < twice.size(); i += chunk) {
      verifier.Feed(std::string_view(twice).substr(i, chunk));
    }
    ArcResult r;
    asio::co_spawn(io_, VerifyArc(fake_, verifier.Finish()),
                   [&r](std::exception_ptr e, ArcResult result) {
                     if (e) std::rethrow_exception(e);
                     r = std::move(result);
                   });
    io_.run();
    io_.restart();
    EXPECT_EQ(r.status, ArcStatus::kPass) << chunk << ": " << r.reason;
  }
}

TEST_F(ArcTest, ValidationOutlivesTheVerifier) {
  // The server reads the message, drops the verifier, and queries later.
  std::string sealed = Seal(kMessage, ArcStatus::kNone);
  std::optional<ArcValidation> validation;
  {
    ArcVerifier verifier;
    verifier.Feed(sealed);
    validation = verifier.Finish();
  }
  ArcValidation copy = *validation;
  validation.reset();
  ArcResult r;
  asio::co_spawn(io_, VerifyArc(fake_, std::move(copy)),
                 [&r](std::exception_ptr e, ArcResult result) {
                   if (e) std::rethrow_exception(e);
                   r = std::move(result);
                 });
  io_.run();
  io_.restart();
  EXPECT_EQ(r.status, ArcStatus::kPass) << r.reason;
}

TEST_F(ArcTest, TamperingFails) {
  std::string once = Seal(kMessage, ArcStatus::kNone);
  std::string twice =
      Seal(once, ArcStatus::kPass, "forward.test", "hop2", &EdKey());
  auto fails = [&](const std::string& message, std::string_view reason) {
    ArcResult r = Verify(message);
    EXPECT_EQ(r.status, ArcStatus::kFail);
    EXPECT_NE(r.reason.find(reason), std::string::npos) << r.reason;
    EXPECT_FALSE(r.temporary);
  };
  // The body: the newest AMS.
  fails(Replace(twice, "attached", "deleted"),
        "ARC-Message-Signature i=2: body hash mismatch");
  // A signed header field.
  fails(Replace(twice, "Subject: Minutes", "Subject: Hours"),
        "ARC-Message-Signature i=2: signature did not verify");
  // Another From on top: From is signed once more than it occurs.
  fails("From: mallory@evil.test\r\n" + twice, "ARC-Message-Signature i=2");
  // An AAR, old or new: the seals cover them.
  fails(
      Replace(twice, "spf=pass", "spf=fail", "ARC-Authentication-Results: i=1"),
      "ARC-Seal i=2: signature did not verify");
  fails(
      Replace(twice, "spf=pass", "spf=fail", "ARC-Authentication-Results: i=2"),
      "ARC-Seal i=2: signature did not verify");
  // A seal's tags (its own b= excepted, all of it is signed).
  fails(Replace(twice, "t=1800000000", "t=1800000001", "ARC-Seal: i=1"),
        "ARC-Seal i=2: signature did not verify");
  fails(Replace(twice, "t=1800000000", "t=1800000001", "ARC-Seal: i=2"),
        "ARC-Seal i=2: signature did not verify");
  // The older AMS is covered by the newer seal.
  fails(Replace(twice, "t=1800000000", "t=1800000001",
                "ARC-Message-Signature: i=1"),
        "ARC-Seal i=2: signature did not verify");
  // The oldest set removed leaves a gap. (Without its newest set a chain is
  // what the previous hop sent, which passes: that cannot be told.)
  fails(RemoveFields(RemoveFields(RemoveFields(twice, "ARC-Seal: i=1"),
                                  "ARC-Message-Signature: i=1"),
                     "ARC-Authentication-Results: i=1"),
        "ARC set i=1 is missing");
  // Sets renumbered: i=1 and i=2 swapped in every field.
  std::string swapped = twice;
  for (const char* name : {"ARC-Seal: i=", "ARC-Message-Signature: i=",
                           "ARC-Authentication-Results: i="}) {
    swapped =
        Replace(swapped, std::string(name) + "2", std::string(name) + "X");
    swapped =
        Replace(swapped, std::string(name) + "1", std::string(name) + "2");
    swapped =
        Replace(swapped, std::string(name) + "X", std::string(name) + "1");
  }
  fails(swapped, "ARC-Seal i=1 has cv=pass, not none");
}

TEST_F(ArcTest, SignedFieldsReordered) {
  // Two DKIM-Signature fields, both signed: swapping them breaks the AMS,
  // while moving an ARC set's fields about does not (instances decide).
  std::string two =
      "DKIM-Signature: v=1; d=second.test; b=BBBB\r\n" + std::string(kMessage);
  std::string sealed = Seal(two, ArcStatus::kNone);
  ASSERT_EQ(Verify(sealed).status, ArcStatus::kPass);
  std::string first = "DKIM-Signature: v=1; d=second.test; b=BBBB\r\n";
  std::string moved = Replace(sealed, first, "");
  moved = Replace(moved, "\r\n bh=AAAA; b=AAAA\r\n",
                  "\r\n bh=AAAA; b=AAAA\r\n" + first);
  ArcResult r = Verify(moved);
  EXPECT_EQ(r.status, ArcStatus::kFail);
  EXPECT_EQ(r.reason, "ARC-Message-Signature i=1: signature did not verify");

  std::string header = Header(sealed);
  std::vector<DkimHeaderField> fields = SplitDkimHeader(header);
  std::string reordered = std::string(fields[2].text) + "\r\n" +
                          std::string(fields[0].text) + "\r\n" +
                          std::string(fields[1].text) + "\r\n" +
                          sealed.substr(fields[3].text.data() - header.data());
  EXPECT_EQ(Verify(reordered).status, ArcStatus::kPass);
}

TEST_F(ArcTest, OldestPass) {
  std::string once = Seal(kMessage, ArcStatus::kNone);
  // A list appends a footer, then seals: its own AMS covers the new body,
  // the first one no longer does (RFC 8617 5.2 step 5).
  std::string footed = once + "-- \r\nlist footer\r\n";
  std::string twice =
      Seal(footed, ArcStatus::kPass, "forward.test", "hop2", &EdKey());
  ArcResult r = Verify(twice);
  EXPECT_EQ(r.status, ArcStatus::kPass) << r.reason;
  EXPECT_EQ(r.oldest_pass, 2);
  ArcVerifyOptions quick;
  quick.oldest_pass = false;
  ArcResult q = Verify(twice, quick);
  EXPECT_EQ(q.status, ArcStatus::kPass);
  EXPECT_EQ(q.oldest_pass, 0);
}

TEST_F(ArcTest, FailedChainIsSealedAlone) {
  std::string once = Seal(kMessage, ArcStatus::kNone);
  std::string broken = Replace(once, "attached", "deleted");
  ASSERT_EQ(Verify(broken).status, ArcStatus::kFail);
  // RFC 8617 5.1.2: the next hop seals with cv=fail, over its set only.
  std::string marked =
      Seal(broken, ArcStatus::kFail, "forward.test", "hop2", &EdKey());
  ArcResult r = Verify(marked);
  EXPECT_EQ(r.status, ArcStatus::kFail);
  EXPECT_EQ(r.reason, "ARC-Seal i=2 says cv=fail");
  EXPECT_EQ(fake_.queries(), 0);  // no key was needed to know either

  std::string header = Header(marked);
  std::vector<DkimHeaderField> fields = SplitDkimHeader(header);
  ArcSet own;
  own.instance = 2;
  own.seal = fields[0].text;
  own.ams = fields[1].text;
  own.aar = fields[2].text;
  auto seal = ParseArcSeal(own.seal.substr(own.seal.find(':') + 1));
  ASSERT_TRUE(seal);
  EXPECT_EQ(seal->cv, ArcStatus::kFail);
  EXPECT_TRUE(
      DkimVerify(EdKey(), ArcSealHashInput({own}), seal->signature.signature));
  // Nobody seals after that (RFC 8617 5.1 step 1).
  auto again = TrySeal(marked, ArcStatus::kFail);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("has ended"), std::string::npos);
}

TEST_F(ArcTest, FiftySetsAndNoMore) {
  std::string message(kMessage);
  message = Seal(message, ArcStatus::kNone, "lists.test", "ed", &EdKey());
  for (int i = 2; i <= 50; ++i) {
    message = Seal(message, ArcStatus::kPass, "lists.test", "ed", &EdKey());
  }
  ArcResult r = Verify(message);
  EXPECT_EQ(r.status, ArcStatus::kPass) << r.reason;
  EXPECT_EQ(r.instances.size(), 50u);
  auto more = TrySeal(message, ArcStatus::kPass);
  ASSERT_FALSE(more);
  EXPECT_EQ(more.error().message,
            "the message has ARC sets up to i=50; the limit is 50");
}

TEST_F(ArcTest, KeyRecordProblems) {
  std::string sealed =
      Seal(kMessage, ArcStatus::kNone, "lists.test", "gone", &EdKey());
  // No record.
  ArcResult missing = Verify(sealed);
  EXPECT_EQ(missing.status, ArcStatus::kFail);
  EXPECT_EQ(missing.reason,
            "ARC-Message-Signature i=1: no key record at "
            "gone._domainkey.lists.test");
  EXPECT_FALSE(missing.temporary);
  // Revoked (RFC 6376 3.6.1: empty p=).
  fake_.SetTxt("gone._domainkey.lists.test", {"v=DKIM1; k=ed25519; p="});
  EXPECT_EQ(Verify(sealed).reason, "ARC-Message-Signature i=1: key revoked");
  // The wrong kind of key.
  fake_.SetTxt("gone._domainkey.lists.test", {Record(RsaKey())});
  EXPECT_EQ(Verify(sealed).status, ArcStatus::kFail);
  // A key that does not match.
  fake_.SetTxt("gone._domainkey.lists.test",
               {Record(*GenerateDkimKey(DkimKeyType::kEd25519, 0))});
  EXPECT_EQ(Verify(sealed).reason,
            "ARC-Message-Signature i=1: signature did not verify");
  // SERVFAIL: still fail (RFC 8617 5.2.1), flagged as temporary.
  dns::Answer servfail;
  servfail.status = dns::Status::kTempFail;
  servfail.error = "SERVFAIL";
  fake_.Set("gone._domainkey.lists.test", dns::RrType::kTxt, servfail);
  ArcResult temp = Verify(sealed);
  EXPECT_EQ(temp.status, ArcStatus::kFail);
  EXPECT_TRUE(temp.temporary);
  // Back to the right key.
  fake_.SetTxt("gone._domainkey.lists.test", {Record(EdKey())});
  EXPECT_EQ(Verify(sealed).status, ArcStatus::kPass);
}

TEST_F(ArcTest, WeakRsaKeysNeverPass) {
  // RFC 8301 3.2, as for DKIM.
  DkimKey small = *GenerateDkimKey(DkimKeyType::kRsa, 512);
  fake_.SetTxt("small._domainkey.lists.test", {Record(small)});
  std::string sealed =
      Seal(kMessage, ArcStatus::kNone, "lists.test", "small", &small);
  ArcResult r = Verify(sealed);
  EXPECT_EQ(r.status, ArcStatus::kFail);
  EXPECT_NE(r.reason.find("at least 1024 required"), std::string::npos)
      << r.reason;
}

TEST_F(ArcTest, SealerRefusals) {
  std::string once = Seal(kMessage, ArcStatus::kNone);
  // cv must fit the message: none with sets, pass without a chain.
  auto none = TrySeal(once, ArcStatus::kNone);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message, "cv=none, but the message has ARC fields");
  auto pass = TrySeal(kMessage, ArcStatus::kPass);
  ASSERT_FALSE(pass);
  EXPECT_EQ(pass.error().message, "cv=pass, but the message has no ARC set");
  auto malformed = TrySeal(RemoveFields(once, "ARC-Seal"), ArcStatus::kPass);
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().message,
            "cv=pass, but the chain is malformed: ARC set i=1 has no ARC-Seal");
  // A malformed chain is sealed as failed, one instance up.
  auto failed = TrySeal(RemoveFields(once, "ARC-Seal"), ArcStatus::kFail);
  ASSERT_TRUE(failed) << failed.error().message;
  EXPECT_EQ(failed->substr(0, 38), "ARC-Seal: i=2; a=ed25519-sha256; cv=fa");

  ArcSealRequest injected{"mx.lists.test", "spf=pass\r\nBcc: x@y.test",
                          ArcStatus::kNone};
  EXPECT_FALSE(ArcSealMessage(kMessage, injected,
                              {{"lists.test", "ed", EdKey()}}, kNow));
  ArcSealRequest no_id{"", "", ArcStatus::kNone};
  EXPECT_FALSE(
      ArcSealMessage(kMessage, no_id, {{"lists.test", "ed", EdKey()}}, kNow));
  ArcSealRequest ok{"mx.lists.test", "", ArcStatus::kNone};
  EXPECT_FALSE(ArcSealMessage(kMessage, ok, {}, kNow));
}

TEST_F(ArcTest, ResultsText) {
  auto aar = [&](std::string results, ArcStatus cv = ArcStatus::kNone) {
    ArcSealRequest request{"mx.lists.test", std::move(results), cv};
    auto fields = ArcSealMessage(kMessage, request,
                                 {{"lists.test", "ed", EdKey()}}, kNow);
    EXPECT_TRUE(fields);
    std::string text = *fields;
    size_t at = text.find("ARC-Authentication-Results:");
    return text.substr(at, text.size() - at - 2);
  };
  EXPECT_EQ(aar(""),
            "ARC-Authentication-Results: i=1; mx.lists.test;\r\n\tarc=none");
  EXPECT_EQ(aar("none"), aar(""));
  // Folded input is unfolded and laid out again; an arc result is kept.
  EXPECT_EQ(aar("spf=pass smtp.mailfrom=a.test;\r\n\tarc=none (\"x;y\");"),
            "ARC-Authentication-Results: i=1; mx.lists.test;\r\n"
            "\tspf=pass smtp.mailfrom=a.test;\r\n"
            "\tarc=none (\"x;y\")");
  // Long results are folded between words.
  std::string long_result = "dkim=pass";
  for (int i = 0; i < 12; ++i)
    long_result += " header.x" + std::to_string(i) + "=abcdef";
  std::string folded = aar(long_result);
  for (size_t pos = 0; pos < folded.size();) {
    size_t eol = folded.find("\r\n", pos);
    if (eol == std::string::npos) eol = folded.size();
    EXPECT_LE(eol - pos, 78u);
    pos = eol + 2;
  }
  // An authserv-id that is not a token is quoted (RFC 8601 2.2).
  ArcSealRequest odd{"mx lists", "", ArcStatus::kNone};
  auto fields =
      ArcSealMessage(kMessage, odd, {{"lists.test", "ed", EdKey()}}, kNow);
  ASSERT_TRUE(fields);
  EXPECT_NE(fields->find("i=1; \"mx lists\";"), std::string::npos);
}

TEST(ArcKeysTest, ChooseKey) {
  std::vector<DkimSigningKey> keys = {{"d.test", "e", EdKey()},
                                      {"d.test", "r", RsaKey()}};
  EXPECT_EQ(ChooseArcKey(keys, true)->selector, "r");
  EXPECT_EQ(ChooseArcKey(keys, false)->selector, "e");
  EXPECT_EQ(ChooseArcKey({keys[0]}, true)->selector, "e");
  EXPECT_EQ(ChooseArcKey({}, true), nullptr);
}

// Forwarding through an alias (what `tern serve` seals on the way out):
// cv comes from our own Authentication-Results, as verified on arrival.
TEST_F(ArcTest, SealForwardedTakesCvFromOurResults) {
  std::vector<DkimSigningKey> keys = {{"forward.test", "rsa", RsaKey()}};
  const std::string ours =
      "Authentication-Results: mx.forward.test;\r\n\tdkim=none;\r\n"
      "\tarc=pass smtp.remote-ip=192.0.2.1 header.oldest-pass=0\r\n";
  std::string once = Seal(kMessage, ArcStatus::kNone);
  // Someone else's claim about arc= is not ours and does not count.
  std::string theirs =
      "Authentication-Results: mx.elsewhere.test; arc=fail\r\n";
  auto fields = SealForwarded(ours + theirs + once, "MX.forward.test", keys, kNow);
  ASSERT_TRUE(fields) << fields.error().message;
  std::string twice = *fields + ours + theirs + once;
  ArcResult r = Verify(twice);
  EXPECT_EQ(r.status, ArcStatus::kPass) << r.reason;
  ASSERT_EQ(r.instances.size(), 2u);
  EXPECT_EQ(r.instances[1].cv, ArcStatus::kPass);
  EXPECT_NE(fields->find("ARC-Authentication-Results: i=2; MX.forward.test;"),
            std::string::npos)
      << *fields;
  EXPECT_NE(fields->find("dkim=none"), std::string::npos) << *fields;

  // Our results say the chain failed: the seal says so (and covers only
  // itself, RFC 8617 5.1.2); the chain has ended for everyone after us.
  std::string failed = "Authentication-Results: mx.forward.test; arc=fail\r\n";
  fields = SealForwarded(failed + once, "mx.forward.test", keys, kNow);
  ASSERT_TRUE(fields) << fields.error().message;
  EXPECT_NE(fields->find("cv=fail"), std::string::npos) << *fields;

  // Never verified here (a trusted client's mail): a message without ARC
  // fields is sealed cv=none, one with a chain is not vouched for.
  fields = SealForwarded(std::string(kMessage), "mx.forward.test", keys, kNow);
  ASSERT_TRUE(fields) << fields.error().message;
  EXPECT_NE(fields->find("cv=none"), std::string::npos);
  EXPECT_EQ(Verify(*fields + std::string(kMessage)).status, ArcStatus::kPass);
  EXPECT_FALSE(SealForwarded(once, "mx.forward.test", keys, kNow));
  EXPECT_FALSE(SealForwarded(theirs + once, "mx.forward.test", keys, kNow));
}


}  // namespace
}  // namespace tern::mailauth
