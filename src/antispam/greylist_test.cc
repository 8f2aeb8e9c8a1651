// Tests for the greylisting store: the network of a client address, the
// life of a triplet (deferred, too early, passed, known, forgotten), the
// auto-whitelist, the hourly purge, a restart, concurrent callers, and
// what a failing database does (let the mail through).
#include "antispam/greylist.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace tern::antispam {
namespace {

using Why = GreylistVerdict::Why;

constexpr int64_t kT0 = 1'800'000'000;  // some time in 2027
constexpr char kNet[] = "192.0.2.0/24";

TEST(GreylistSenderTest, ChangingPartsAreTakenOut) {
  EXPECT_EQ(GreylistSender(""), "");
  EXPECT_EQ(GreylistSender("Alice@Example.ORG"), "alice@example.org");
  // BATV: each attempt signs the address anew.
  EXPECT_EQ(GreylistSender("prvs=1234abcdef=alice@example.org"), "alice@example.org");
  EXPECT_EQ(GreylistSender("prvs=9876fedcba=alice@example.org"), "alice@example.org");
  EXPECT_EQ(GreylistSender("btv1==0123abcd4e5==alice@example.org"), "alice@example.org");
  // VERP and numbered bounce addresses: one triplet for every message.
  EXPECT_EQ(GreylistSender("bounce-4711-bob=example.test@lists.example.org"),
            GreylistSender("bounce-4712-bob=example.test@lists.example.org"));
  EXPECT_EQ(GreylistSender("msg-20261205-17@example.org"), "msg-#-#@example.org");
  // The domain keeps its digits (another host is another sender).
  EXPECT_EQ(GreylistSender("a1@mx2.example.org"), "a#@mx2.example.org");
}

TEST(GreylistNetworkTest, Ipv4IsItsSlash24) {
  EXPECT_EQ(GreylistNetwork("192.0.2.77"), "192.0.2.0/24");
  EXPECT_EQ(GreylistNetwork("198.51.100.0"), "198.51.100.0/24");
  EXPECT_EQ(GreylistNetwork("203.0.113.255"), "203.0.113.0/24");
}

TEST(GreylistNetworkTest, Ipv6IsItsSlash64InCanonicalForm) {
  EXPECT_EQ(GreylistNetwork("2001:DB8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(GreylistNetwork("2001:db8::1"), "2001:db8::/64");
  EXPECT_EQ(GreylistNetwork("2001:db8:0:0:ffff::1"), "2001:db8::/64");
  EXPECT_EQ(GreylistNetwork("::1"), "::/64");
  // The zone of a link-local peer is dropped, as the server reports it.
  EXPECT_EQ(GreylistNetwork("fe80::1%eth0"), "fe80::/64");
}

TEST(GreylistNetworkTest, Ipv4MappedIsIpv4) {
  EXPECT_EQ(GreylistNetwork("::ffff:192.0.2.77"), "192.0.2.0/24");
  EXPECT_EQ(GreylistNetwork("::FFFF:c000:24d"), "192.0.2.0/24");
}

TEST(GreylistNetworkTest, GarbageIsEmpty) {
  for (const char* bad :
       {"", "localhost", "192.0.2", "192.0.2.300", "192.0.2.1/24",
        "2001:db8::g", " 192.0.2.1", "192.0.2.01", "1:2:3:4:5:6:7:8:9"}) {
    EXPECT_EQ(GreylistNetwork(bad), "") << bad;
  }
}

TEST(GreylistWhyNameTest, Names) {
  EXPECT_EQ(GreylistWhyName(Why::kNew), "new");
  EXPECT_EQ(GreylistWhyName(Why::kTooEarly), "too-early");
  EXPECT_EQ(GreylistWhyName(Why::kPassed), "passed");
  EXPECT_EQ(GreylistWhyName(Why::kKnown), "known");
  EXPECT_EQ(GreylistWhyName(Why::kWhitelistedNetwork), "whitelisted");
  EXPECT_EQ(GreylistWhyName(Why::kError), "error");
}

class GreylistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tern-grey-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    db_path_ = dir_ + "/greylist.db";
    options_.delay = std::chrono::seconds(300);
    options_.retry_window = std::chrono::seconds(4 * 3600);
    options_.pass_lifetime = std::chrono::seconds(35 * 86400);
    options_.auto_whitelist_after = 3;
    Reopen();
  }
  void TearDown() override {
    grey_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Reopen() {
    grey_.reset();
    auto opened = Greylist::Open(db_path_, options_);
    ASSERT_TRUE(opened) << opened.error().message;
    grey_ = std::move(*opened);
  }

  GreylistVerdict Check(std::string_view sender, std::string_view rcpt,
                        int64_t now, std::string_view network = kNet) {
    GreylistVerdict v = grey_->Check(network, sender, rcpt, now);
    EXPECT_NE(v.why, Why::kError) << v.error;
    return v;
  }

  // Takes the triplet through its first attempt and a retry after the
  // delay, starting at `at`.
  void Pass(std::string_view sender, std::string_view rcpt, int64_t at,
            std::string_view network = kNet) {
    EXPECT_EQ(Check(sender, rcpt, at, network).why, Why::kNew);
    GreylistVerdict v = Check(sender, rcpt, at + 300, network);
    EXPECT_TRUE(v.pass);
    EXPECT_EQ(v.why, Why::kPassed);
  }

  // Rows in `table`, read through a connection of our own.
  int64_t Rows(const char* table) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(db_path_.c_str(), &db, SQLITE_OPEN_READONLY,
                              nullptr),
              SQLITE_OK);
    std::string sql = std::string("SELECT count(*) FROM ") + table;
    sqlite3_stmt* stmt = nullptr;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }

  std::string dir_;
  std::string db_path_;
  GreylistOptions options_;
  std::unique_ptr<Greylist> grey_;
};

TEST_F(GreylistTest, FirstAttemptIsDeferred) {
  GreylistVerdict v = Check("alice@example.org", "bob@example.test", kT0);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.why, Why::kNew);
  EXPECT_EQ(v.retry_in, 300);
  EXPECT_EQ(v.error, "");
}

TEST_F(GreylistTest, TooEarlyRetryIsDeferredWithTheRemainingTime) {
  Check("alice@example.org", "bob@example.test", kT0);
  GreylistVerdict v = Check("alice@example.org", "bob@example.test", kT0 + 60);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.why, Why::kTooEarly);
  EXPECT_EQ(v.retry_in, 240);
  // The delay still runs from the first attempt, not from the early retry.
  v = Check("alice@example.org", "bob@example.test", kT0 + 299);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.why, Why::kTooEarly);
  EXPECT_EQ(v.retry_in, 1);
}

TEST_F(GreylistTest, RetryAfterTheDelayPasses) {
  Check("alice@example.org", "bob@example.test", kT0);
  GreylistVerdict v = Check("alice@example.org", "bob@example.test", kT0 + 300);
  EXPECT_TRUE(v.pass);
  EXPECT_EQ(v.why, Why::kPassed);
  EXPECT_EQ(v.retry_in, 0);
}

TEST_F(GreylistTest, RetryAtTheEndOfTheWindowStillPasses) {
  Check("alice@example.org", "bob@example.test", kT0);
  GreylistVerdict v =
      Check("alice@example.org", "bob@example.test", kT0 + 4 * 3600);
  EXPECT_TRUE(v.pass);
  EXPECT_EQ(v.why, Why::kPassed);
}

TEST_F(GreylistTest, DifferentRecipientIsANewTriplet) {
  Pass("alice@example.org", "bob@example.test", kT0);
  GreylistVerdict v =
      Check("alice@example.org", "carol@example.test", kT0 + 600);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.why, Why::kNew);
  // So is another sender, the null sender, and another network.
  EXPECT_EQ(Check("dave@example.org", "bob@example.test", kT0 + 600).why,
            Why::kNew);
  EXPECT_EQ(Check("", "bob@example.test", kT0 + 600).why, Why::kNew);
  EXPECT_EQ(Check("alice@example.org", "bob@example.test", kT0 + 600,
                  "198.51.100.0/24")
                .why,
            Why::kNew);
}

TEST_F(GreylistTest, SenderAndRecipientIgnoreCase) {
  Check("Alice@Example.ORG", "bob@example.test", kT0);
  GreylistVerdict v = Check("alice@example.org", "BOB@EXAMPLE.TEST", kT0 + 300);
  EXPECT_TRUE(v.pass);
  EXPECT_EQ(v.why, Why::kPassed);
  EXPECT_EQ(Check("ALICE@example.org", "Bob@Example.Test", kT0 + 400).why,
            Why::kKnown);
}

TEST_F(GreylistTest, RetryAfterTheWindowIsNewAgain) {
  Check("alice@example.org", "bob@example.test", kT0);
  int64_t late = kT0 + 4 * 3600 + 1;
  GreylistVerdict v = Check("alice@example.org", "bob@example.test", late);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.why, Why::kNew);
  EXPECT_EQ(v.retry_in, 300);
  // The delay now runs from the new first attempt.
  EXPECT_EQ(Check("alice@example.org", "bob@example.test", late + 100).why,
            Why::kTooEarly);
  EXPECT_EQ(Check("alice@example.org", "bob@example.test", late + 300).why,
            Why::kPassed);
}

TEST_F(GreylistTest, PassedTripletIsRemembered) {
  Pass("alice@example.org", "bob@example.test", kT0);
  // Each use keeps it for another pass_lifetime from then.
  int64_t t = kT0 + 300;
  for (int i = 0; i < 3; ++i) {
    t += 30 * 86400;
    GreylistVerdict v = Check("alice@example.org", "bob@example.test", t);
    EXPECT_TRUE(v.pass);
    EXPECT_EQ(v.why, Why::kKnown);
  }
}

TEST_F(GreylistTest, PassedTripletIsForgottenAfterItsLifetime) {
  Pass("alice@example.org", "bob@example.test", kT0);
  int64_t last_use = kT0 + 300;
  EXPECT_EQ(
      Check("alice@example.org", "bob@example.test", last_use + 35 * 86400)
          .why,
      Why::kKnown);
  last_use += 35 * 86400;
  GreylistVerdict v = Check("alice@example.org", "bob@example.test",
                            last_use + 35 * 86400 + 1);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.why, Why::kNew);
}

TEST_F(GreylistTest, NetworkIsWhitelistedAfterEnoughPassedTriplets) {
  Pass("a@example.org", "bob@example.test", kT0);
  Pass("b@example.org", "bob@example.test", kT0 + 1000);
  // Two of three: still greylisted.
  EXPECT_EQ(Check("c@example.org", "bob@example.test", kT0 + 2000).why,
            Why::kNew);
  EXPECT_EQ(Check("c@example.org", "bob@example.test", kT0 + 2300).why,
            Why::kPassed);
  // Three: any triplet of the network passes at once.
  GreylistVerdict v = Check("new@example.net", "carol@example.test", kT0 + 2400);
  EXPECT_TRUE(v.pass);
  EXPECT_EQ(v.why, Why::kWhitelistedNetwork);
  EXPECT_EQ(Check("", "dave@example.test", kT0 + 2500).why,
            Why::kWhitelistedNetwork);
  // Not another network.
  EXPECT_EQ(Check("new@example.net", "carol@example.test", kT0 + 2500,
                  "198.51.100.0/24")
                .why,
            Why::kNew);
}

TEST_F(GreylistTest, WhitelistStaysWhileTheNetworkSends) {
  Pass("a@example.org", "bob@example.test", kT0);
  Pass("b@example.org", "bob@example.test", kT0);
  Pass("c@example.org", "bob@example.test", kT0);
  // Mail with other triplets keeps the network whitelisted long after the
  // triplets that earned it were last used (and purged).
  int64_t t = kT0 + 300;
  for (int i = 0; i < 4; ++i) {
    t += 20 * 86400;
    EXPECT_EQ(Check("x" + std::to_string(i) + "@example.org",
                    "bob@example.test", t)
                  .why,
              Why::kWhitelistedNetwork);
  }
  // Silent for longer than pass_lifetime: forgotten.
  EXPECT_EQ(Check("y@example.org", "bob@example.test", t + 35 * 86400 + 1).why,
            Why::kNew);
}

TEST_F(GreylistTest, ForgottenTripletsDoNotCountForTheWhitelist) {
  Pass("a@example.org", "bob@example.test", kT0);
  Pass("b@example.org", "bob@example.test", kT0);
  // The first two are forgotten by the time the third passes.
  int64_t later = kT0 + 300 + 35 * 86400 + 1;
  Pass("c@example.org", "bob@example.test", later);
  EXPECT_EQ(Check("d@example.org", "bob@example.test", later + 400).why,
            Why::kNew);
}

TEST_F(GreylistTest, AutoWhitelistZeroIsOff) {
  options_.auto_whitelist_after = 0;
  Reopen();
  for (int i = 0; i < 5; ++i) {
    Pass("s" + std::to_string(i) + "@example.org", "bob@example.test", kT0);
  }
  EXPECT_EQ(Check("t@example.org", "bob@example.test", kT0 + 400).why,
            Why::kNew);
}

TEST_F(GreylistTest, StateSurvivesReopening) {
  Check("alice@example.org", "bob@example.test", kT0);
  Pass("carol@example.org", "bob@example.test", kT0);
  Reopen();
  EXPECT_EQ(Check("alice@example.org", "bob@example.test", kT0 + 100).why,
            Why::kTooEarly);
  EXPECT_EQ(Check("alice@example.org", "bob@example.test", kT0 + 300).why,
            Why::kPassed);
  EXPECT_EQ(Check("carol@example.org", "bob@example.test", kT0 + 400).why,
            Why::kKnown);
  // The network's count survives too: one more passed triplet whitelists.
  Pass("dave@example.org", "bob@example.test", kT0 + 500);
  Reopen();
  EXPECT_EQ(Check("eve@example.org", "bob@example.test", kT0 + 900).why,
            Why::kWhitelistedNetwork);
}

TEST_F(GreylistTest, OldRowsArePurgedHourly) {
  Check("waiting@example.org", "bob@example.test", kT0);  // first purge here
  Pass("passed@example.org", "bob@example.test", kT0 + 10);
  EXPECT_EQ(Rows("triplets"), 2);
  EXPECT_EQ(Rows("networks"), 1);

  // A 30-minute window, so that first attempts expire within the test's
  // hours. The first Check after opening purges.
  options_.retry_window = std::chrono::seconds(1800);
  Reopen();
  Check("other@example.org", "bob@example.test", kT0 + 3000,
        "198.51.100.0/24");
  EXPECT_EQ(Rows("triplets"), 2);  // "waiting" went, "other" came
  Check("late@example.org", "bob@example.test", kT0 + 3000 + 1900,
        "203.0.113.0/24");
  EXPECT_EQ(Rows("triplets"), 3);  // within the hour: "other" stays
  Check("later@example.org", "bob@example.test", kT0 + 3000 + 3600,
        "203.0.113.0/24");
  EXPECT_EQ(Rows("triplets"), 3);  // "other" went, "later" came

  // Beyond pass_lifetime everything goes, and the networks with it.
  Check("last@example.org", "bob@example.test", kT0 + 40 * 86400,
        "2001:db8::/64");
  EXPECT_EQ(Rows("triplets"), 1);
  EXPECT_EQ(Rows("networks"), 0);
}

TEST_F(GreylistTest, ConcurrentChecksAllGetAnAnswer) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::atomic<int> answered{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Shared triplets (i % 10) and each thread's own; time moves on so
        // that some pass.
        std::string sender = (i % 2 == 0)
                                 ? "shared" + std::to_string(i % 10)
                                 : "t" + std::to_string(t) + "-" +
                                       std::to_string(i);
        GreylistVerdict v =
            grey_->Check(kNet, sender + "@example.org", "bob@example.test",
                         kT0 + i * 10);
        if (v.why == Why::kError) ++errors;
        ++answered;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(answered.load(), kThreads * kPerThread);
  EXPECT_EQ(errors.load(), 0);
  // The shared triplets first came at i < 10 and again after the delay.
  EXPECT_EQ(Check("shared0@example.org", "bob@example.test", kT0 + 3000).why,
            Why::kWhitelistedNetwork);
}

TEST_F(GreylistTest, OpenFailsOnAPathThatCannotBeOpened) {
  std::string bad = dir_ + "/no/such/dir/greylist.db";
  auto opened = Greylist::Open(bad, options_);
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find(bad), std::string::npos)
      << opened.error().message;
  EXPECT_NE(opened.error().message.find("No such file or directory"),
            std::string::npos)
      << opened.error().message;
}

TEST_F(GreylistTest, OpenRefusesOptionsThatMakeNoSense) {
  GreylistOptions bad = options_;
  bad.retry_window = std::chrono::seconds(60);  // shorter than the delay
  EXPECT_FALSE(Greylist::Open(db_path_, bad));
  bad = options_;
  bad.delay = std::chrono::seconds(-1);
  EXPECT_FALSE(Greylist::Open(db_path_, bad));
}

TEST_F(GreylistTest, DatabaseErrorLetsTheMailThrough) {
  Check("alice@example.org", "bob@example.test", kT0);
  // Another connection breaks the database under the open Greylist.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, "DROP TABLE triplets", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  GreylistVerdict v =
      grey_->Check(kNet, "alice@example.org", "bob@example.test", kT0 + 60);
  EXPECT_TRUE(v.pass);
  EXPECT_EQ(v.why, Why::kError);
  EXPECT_NE(v.error.find("triplets"), std::string::npos) << v.error;
}

}  // namespace
}  // namespace tern::antispam
