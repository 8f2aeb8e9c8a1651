// Unit tests of the Sender Rewriting Scheme: round trips, SRS1 chains,
// tampering, expiry, case changes and key rotation.
#include "mailauth/srs.h"

#include <cctype>
#include <string_view>

#include <gtest/gtest.h>


namespace tern::mailauth {
namespace {

constexpr int64_t kDay = 86400;
// 2026-11-27 12:00 UTC, an ordinary day.
constexpr int64_t kNoon = 1795780800;

// Hand-written matchers: std::regex trips GCC 12's maybe-uninitialized
// warning in the sanitizer build.
bool IsHash(std::string_view s) {
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  }
  return s.size() == 6;
}

bool EndsWith(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// PREFIX, a hash of `hash_len`, SEP, a two-letter base32 day stamp if
// `stamp`, then exactly TAIL.
bool LooksLike(std::string_view s, std::string_view prefix, size_t hash_len,
               std::string_view sep, bool stamp, std::string_view tail) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  if (s.size() < hash_len || !IsHash(s.substr(0, hash_len))) return false;
  s.remove_prefix(hash_len);
  if (s.substr(0, sep.size()) != sep) return false;
  s.remove_prefix(sep.size());
  if (stamp) {
    if (s.size() < 2) return false;
    for (char c : s.substr(0, 2)) {
      if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'))) return false;
    }
    s.remove_prefix(2);
  }
  return s == tail;
}

class SrsTest : public ::testing::Test {
 protected:
  Srs Make(std::string key, std::vector<std::string> old_keys = {},
           int hash_length = 6) {
    SrsOptions o;
    o.key = std::move(key);
    o.old_keys = std::move(old_keys);
    o.hash_length = hash_length;
    o.now = [this] { return now_; };
    auto srs = Srs::Create(std::move(o));
    EXPECT_TRUE(srs) << srs.error().message;
    return std::move(*srs);
  }

  int64_t now_ = kNoon;
};

TEST_F(SrsTest, Srs0RoundTrip) {
  Srs srs = Make("secret");
  auto fwd = srs.Forward("alice@example.com", "fwd.example");
  ASSERT_TRUE(fwd) << fwd.error().message;
  EXPECT_TRUE(LooksLike(*fwd, "SRS0=", 6, "=", true, "=example.com=alice@fwd.example"))
      << *fwd;
  EXPECT_TRUE(Srs::IsSrsAddress(*fwd));
  auto back = srs.Reverse(*fwd);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, "alice@example.com");
  // The same input on the same day gives the same address.
  EXPECT_EQ(*srs.Forward("alice@example.com", "fwd.example"), *fwd);
}

TEST_F(SrsTest, LocalPartsWithSeparatorsAndDots) {
  Srs srs = Make("secret");
  for (const char* sender : {"a=b@example.com", "first.last@example.org",
                             "x+tag@sub.example.co.uk", "SRS@example.com",
                             "bounce-123=user=x.example@lists.example.net"}) {
    auto fwd = srs.Forward(sender, "fwd.example");
    ASSERT_TRUE(fwd) << sender;
    auto back = srs.Reverse(*fwd);
    ASSERT_TRUE(back) << *fwd << ": " << back.error().message;
    // The domain comes back in lower case; the local part as it was.
    std::string expected(sender);
    EXPECT_EQ(*back, expected);
  }
}

TEST_F(SrsTest, CaseChangesAreTolerated) {
  Srs srs = Make("secret");
  std::string fwd = *srs.Forward("Alice@Example.COM", "fwd.example");
  std::string upper, lower;
  for (char c : fwd) {
    upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  auto a = srs.Reverse(upper);
  ASSERT_TRUE(a) << upper;
  EXPECT_EQ(*a, "ALICE@EXAMPLE.COM");
  auto b = srs.Reverse(lower);
  ASSERT_TRUE(b) << lower;
  EXPECT_EQ(*b, "alice@example.com");
}

TEST_F(SrsTest, OtherSeparatorsAfterTheTag) {
  // libsrs2 also reads "SRS0+" and "SRS0-".
  Srs srs = Make("secret");
  std::string fwd = *srs.Forward("alice@example.com", "fwd.example");
  for (char sep : {'+', '-'}) {
    std::string alt = fwd;
    alt[4] = sep;
    auto back = srs.Reverse(alt);
    ASSERT_TRUE(back) << alt;
    EXPECT_EQ(*back, "alice@example.com");
  }
}

TEST_F(SrsTest, TamperingIsRefused) {
  Srs srs = Make("secret");
  std::string fwd = *srs.Forward("alice@example.com", "fwd.example");
  auto tamper = [&](const std::string& from, const std::string& to) {
    std::string t = fwd;
    size_t pos = t.find(from);
    EXPECT_NE(pos, std::string::npos);
    t.replace(pos, from.size(), to);
    return t;
  };
  // Another victim, another domain, a moved boundary, another stamp.
  EXPECT_FALSE(srs.Reverse(tamper("=alice@", "=mallory@")));
  EXPECT_FALSE(srs.Reverse(tamper("=example.com=", "=example.net=")));
  EXPECT_FALSE(srs.Reverse(tamper("=example.com=alice", "=example.coma=lice")));
  std::string stamp = fwd.substr(12, 2);
  std::string other_stamp = stamp == "AA" ? "AB" : "AA";
  EXPECT_FALSE(srs.Reverse(tamper("=" + stamp + "=", "=" + other_stamp + "=")));
  // A changed hash character (other than by case).
  std::string bad_hash = fwd;
  bad_hash[5] = bad_hash[5] == '0' ? '1' : '0';
  EXPECT_FALSE(srs.Reverse(bad_hash));
  // A shortened hash: fewer characters would mean better odds for guesses.
  std::string shorter = fwd;
  shorter.erase(9, 2);
  EXPECT_FALSE(srs.Reverse(shorter));
  // Another key.
  EXPECT_FALSE(Make("other").Reverse(fwd));
  // Not SRS at all, or malformed.
  EXPECT_FALSE(srs.Reverse("alice@fwd.example"));
  EXPECT_FALSE(srs.Reverse("SRS0=abc@fwd.example"));
  EXPECT_FALSE(srs.Reverse("SRS0=AAAAAA=AA=example.com=@fwd.example"));
  EXPECT_FALSE(srs.Reverse("SRS0=AAAAAA=A1=example.com=a@fwd.example"));
  EXPECT_FALSE(srs.Reverse("SRS0=AAAAAA=AA=exa mple.com=a@fwd.example"));
  EXPECT_FALSE(srs.Reverse("SRS1=AAAAAA=fwd1.example@fwd.example"));
  EXPECT_FALSE(srs.Reverse(""));
}

TEST_F(SrsTest, Expiry) {
  Srs srs = Make("secret");
  std::string fwd = *srs.Forward("alice@example.com", "fwd.example");
  now_ = kNoon + 21 * kDay;
  EXPECT_TRUE(srs.Reverse(fwd));  // max_age_days = 21 by default
  now_ = kNoon + 22 * kDay;
  auto expired = srs.Reverse(fwd);
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message.find("expired"), std::string::npos);
  // A forwarder whose clock is a day ahead of ours.
  now_ = kNoon - kDay;
  EXPECT_TRUE(srs.Reverse(fwd));
  now_ = kNoon - 2 * kDay;
  EXPECT_FALSE(srs.Reverse(fwd));
  now_ = kNoon + 500 * kDay;
  EXPECT_FALSE(srs.Reverse(fwd));
  // The 10-bit stamp wraps: 1024 days on, the address looks new again
  // (as in libsrs2). The hash is what keeps strangers out.
  now_ = kNoon + 1030 * kDay;
  EXPECT_TRUE(srs.Reverse(fwd));
}

TEST_F(SrsTest, ExpiryAcrossTheStampWrap) {
  Srs srs = Make("secret");
  // The day number modulo 1024 is 1023 on this day.
  int64_t day = kNoon / kDay;
  now_ = (day + (1023 - day % 1024)) * kDay + 3600;
  std::string fwd = *srs.Forward("alice@example.com", "fwd.example");
  EXPECT_NE(fwd.find("=77="), std::string::npos) << fwd;
  now_ += 5 * kDay;  // stamp 4 now
  EXPECT_TRUE(srs.Reverse(fwd));
}

TEST_F(SrsTest, KeyRotation) {
  now_ = kNoon;
  std::string fwd = *Make("old-key").Forward("alice@example.com", "fwd.example");
  Srs rotated = Make("new-key", {"old-key"});
  auto back = rotated.Reverse(fwd);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, "alice@example.com");
  // New addresses use the new key only.
  std::string fresh = *rotated.Forward("alice@example.com", "fwd.example");
  EXPECT_NE(fresh, fwd);
  EXPECT_TRUE(Make("new-key").Reverse(fresh));
  EXPECT_FALSE(Make("old-key").Reverse(fresh));
  // Once the old key is dropped, its addresses are refused.
  EXPECT_FALSE(Make("new-key").Reverse(fwd));
}

TEST_F(SrsTest, Srs1ForRefowarding) {
  Srs first = Make("key-one");
  Srs second = Make("key-two");
  Srs third = Make("key-three");
  std::string srs0 = *first.Forward("alice@example.com", "one.example");
  // The second forwarder points at the first and keeps its part.
  auto srs1 = second.Forward(srs0, "two.example");
  ASSERT_TRUE(srs1);
  std::string opaque = srs0.substr(4, srs0.find('@') - 4);  // "=HH=TT=..."
  EXPECT_EQ(srs1->substr(0, 5), "SRS1=") << *srs1;
  EXPECT_TRUE(IsHash(srs1->substr(5, 6))) << *srs1;
  EXPECT_EQ(srs1->substr(11, 13), "=one.example=") << *srs1;
  EXPECT_TRUE(EndsWith(*srs1, "@two.example")) << *srs1;
  EXPECT_NE(srs1->find("=one.example=" + opaque + "@"), std::string::npos) << *srs1;
  // A bounce to the second forwarder goes back to the first ...
  auto to_first = second.Reverse(*srs1);
  ASSERT_TRUE(to_first) << to_first.error().message;
  EXPECT_EQ(*to_first, srs0);
  // ... which sends it to the sender.
  EXPECT_EQ(*first.Reverse(*to_first), "alice@example.com");
  // The second forwarder cannot vouch for the first's hash, and does not.
  EXPECT_FALSE(second.Reverse(srs0));

  // A third forwarder keeps pointing at the first.
  auto srs1b = third.Forward(*srs1, "three.example");
  ASSERT_TRUE(srs1b);
  EXPECT_NE(srs1b->find("=one.example=" + opaque + "@three.example"),
            std::string::npos) << *srs1b;
  EXPECT_EQ(*third.Reverse(*srs1b), srs0);
  EXPECT_FALSE(second.Reverse(*srs1b));

  // Tampering with the SRS1 address.
  std::string forged = *srs1;
  forged.replace(forged.find("one.example"), 11, "evil.example");
  EXPECT_FALSE(second.Reverse(forged));
}

TEST_F(SrsTest, SendersLeftAlone) {
  Srs srs = Make("secret");
  EXPECT_EQ(*srs.Forward("", "fwd.example"), "");
  EXPECT_EQ(*srs.Forward("bob@Fwd.Example", "fwd.example"), "bob@Fwd.Example");
  EXPECT_FALSE(srs.Forward("no-domain", "fwd.example"));
  EXPECT_FALSE(srs.Forward("\"a b\"@example.com", "fwd.example"));
  EXPECT_FALSE(srs.Forward("a..b@example.com", "fwd.example"));
  EXPECT_FALSE(srs.Forward("a@[192.0.2.1]", "fwd.example"));
  EXPECT_FALSE(srs.Forward("a@example.com", "bad domain"));
}

TEST_F(SrsTest, Options) {
  EXPECT_FALSE(Srs::Create(SrsOptions{}));
  EXPECT_FALSE(Srs::Create(SrsOptions{.key = "k", .old_keys = {""}}));
  EXPECT_FALSE(Srs::Create(SrsOptions{.key = "k", .max_age_days = 0}));
  EXPECT_FALSE(Srs::Create(SrsOptions{.key = "k", .max_age_days = 1023}));
  EXPECT_FALSE(Srs::Create(SrsOptions{.key = "k", .hash_length = 3}));
  EXPECT_FALSE(Srs::Create(SrsOptions{.key = "k", .hash_length = 44}));
  // The system clock by default.
  auto srs = Srs::Create(SrsOptions{.key = "k"});
  ASSERT_TRUE(srs);
  std::string fwd = *srs->Forward("a@example.com", "fwd.example");
  EXPECT_EQ(*srs->Reverse(fwd), "a@example.com");
  // A longer hash than configured (hash_length lowered since) verifies.
  std::string long_fwd = *Make("k", {}, 10).Forward("a@example.com", "fwd.example");
  EXPECT_TRUE(Make("k", {}, 4).Reverse(long_fwd));
  EXPECT_FALSE(Make("k", {}, 12).Reverse(long_fwd));
}

TEST(SrsAddressTest, IsSrsAddress) {
  EXPECT_TRUE(Srs::IsSrsAddress("SRS0=a=b=c=d@x"));
  EXPECT_TRUE(Srs::IsSrsAddress("srs1+a=b=c@x"));
  EXPECT_FALSE(Srs::IsSrsAddress("SRS0@x"));
  EXPECT_FALSE(Srs::IsSrsAddress("SRS2=a@x"));
  EXPECT_FALSE(Srs::IsSrsAddress("alice@x"));
}

}  // namespace
}  // namespace tern::mailauth
