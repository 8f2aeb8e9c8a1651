// Tests for the account directory: management calls, address validation,
// password checks, and how Resolve expands aliases, tags and catch-alls,
// including changes made by another Directory on the same file; SCRAM keys,
// the schema 1 -> 2 migration, grants and sender ownership.
#include "auth/directory.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>

#include "auth/credentials.h"
#include "auth/sasl.h"

namespace tern::auth {
namespace {

using Kind = Resolution::Kind;
using Strings = std::vector<std::string>;

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tern-dir-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    db_path_ = dir_ + "/tern.db";
    dirs_ = Open();
  }
  void TearDown() override {
    dirs_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<Directory> Open() {
    auto opened = Directory::Open(db_path_, {"Example.test", "second.test"});
    EXPECT_TRUE(opened) << opened.error().message;
    return opened ? std::move(*opened) : nullptr;
  }

  void AddUser(const std::string& address) {
    auto ok = dirs_->AddUser(address, "secret");
    ASSERT_TRUE(ok) << ok.error().message;
  }
  void AddAlias(const std::string& alias, const Strings& targets) {
    auto ok = dirs_->AddAlias(alias, targets);
    ASSERT_TRUE(ok) << ok.error().message;
  }

  std::string dir_;
  std::string db_path_;
  std::unique_ptr<Directory> dirs_;
};

TEST_F(DirectoryTest, AddListDeleteUsers) {
  AddUser("alice@example.test");
  AddUser("bob@second.test");
  auto users = dirs_->ListUsers();
  ASSERT_TRUE(users);
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].address, "alice@example.test");
  EXPECT_EQ((*users)[1].address, "bob@second.test");
  EXPECT_GT((*users)[0].created, 0);

  ASSERT_TRUE(dirs_->DeleteUser("ALICE@example.test"));
  users = dirs_->ListUsers();
  ASSERT_TRUE(users);
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ(dirs_->Resolve("alice@example.test").kind, Kind::kUnknown);

  auto missing = dirs_->DeleteUser("alice@example.test");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "no such user alice@example.test");
}

TEST_F(DirectoryTest, DuplicateUserRejected) {
  AddUser("alice@example.test");
  auto again = dirs_->AddUser("Alice@EXAMPLE.test", "other");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, "user Alice@example.test already exists");
}

TEST_F(DirectoryTest, InvalidAddressesRejected) {
  for (const std::string& address :
       {std::string("../x@example.test"), std::string("a/b@example.test"),
        std::string("..@example.test"), std::string(".hidden@example.test"),
        std::string("a..b@example.test"), std::string("noat"),
        std::string("a@b@example.test"), std::string("@example.test"),
        std::string("a b@example.test"), std::string("a\tb@example.test"),
        std::string("a\r\n@example.test"), std::string("a\0b@example.test", 16),
        std::string(65, 'x') + "@example.test", std::string("a@"),
        std::string("a@bad..domain"), std::string("a@bad_domain.test")}) {
    auto ok = dirs_->AddUser(address, "pw");
    EXPECT_FALSE(ok) << "accepted: " << address;
  }
  auto foreign = dirs_->AddUser("a@elsewhere.test", "pw");
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message.find("not a local domain"),
            std::string::npos);
  EXPECT_TRUE(dirs_->AddUser(std::string(64, 'x') + "@example.test", "pw"));
  EXPECT_FALSE(dirs_->AddUser("empty@example.test", ""));
  auto users = dirs_->ListUsers();
  ASSERT_TRUE(users);
  EXPECT_EQ(users->size(), 1u);
}

TEST_F(DirectoryTest, PasswordVerification) {
  ASSERT_TRUE(dirs_->AddUser("alice@example.test", "correct horse"));
  EXPECT_EQ(dirs_->VerifyPassword("alice@example.test", "correct horse"), true);
  EXPECT_EQ(dirs_->VerifyPassword("ALICE@Example.Test", "correct horse"), true);
  EXPECT_EQ(dirs_->VerifyPassword("alice@example.test", "Correct horse"),
            false);
  EXPECT_EQ(dirs_->VerifyPassword("alice@example.test", ""), false);
  EXPECT_EQ(dirs_->VerifyPassword("nobody@example.test", "correct horse"),
            false);

  ASSERT_TRUE(dirs_->SetPassword("alice@example.test", "battery staple"));
  EXPECT_EQ(dirs_->VerifyPassword("alice@example.test", "correct horse"),
            false);
  EXPECT_EQ(dirs_->VerifyPassword("alice@example.test", "battery staple"),
            true);
  EXPECT_FALSE(dirs_->SetPassword("nobody@example.test", "x"));
  EXPECT_FALSE(dirs_->SetPassword("alice@example.test", ""));
}

TEST_F(DirectoryTest, CaseInsensitiveLookupPreservesStoredCase) {
  AddUser("Bob.Smith@EXAMPLE.Test");
  auto users = dirs_->ListUsers();
  ASSERT_TRUE(users);
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ((*users)[0].address, "Bob.Smith@example.test");

  for (const char* address :
       {"bob.smith@example.test", "BOB.SMITH@example.TEST",
        "Bob.Smith@example.test"}) {
    Resolution r = dirs_->Resolve(address);
    EXPECT_EQ(r.kind, Kind::kLocal) << address;
    EXPECT_EQ(r.mailboxes, Strings{"Bob.Smith@example.test"}) << address;
    EXPECT_TRUE(r.remote.empty());
  }
  EXPECT_TRUE(dirs_->IsLocalDomain("EXAMPLE.TEST"));
  EXPECT_FALSE(dirs_->IsLocalDomain("example.org"));
}

TEST_F(DirectoryTest, NotLocalAndUnknown) {
  AddUser("alice@example.test");
  EXPECT_EQ(dirs_->Resolve("alice@example.org").kind, Kind::kNotLocal);
  EXPECT_EQ(dirs_->Resolve("carol@example.test").kind, Kind::kUnknown);
  EXPECT_EQ(dirs_->Resolve("@example.test").kind, Kind::kUnknown);
  EXPECT_EQ(dirs_->Resolve("alice").kind, Kind::kUnknown);
}

TEST_F(DirectoryTest, PlusTagFallsBackToUser) {
  AddUser("alice@example.test");
  AddUser("bob@example.test");
  AddAlias("bob+sales@example.test", {"alice@example.test"});

  Resolution r = dirs_->Resolve("Alice+news@example.test");
  EXPECT_EQ(r.kind, Kind::kLocal);
  EXPECT_EQ(r.mailboxes, Strings{"alice@example.test"});
  // An alias for the exact tagged address wins over the tag fallback.
  EXPECT_EQ(dirs_->Resolve("bob+sales@example.test").mailboxes,
            Strings{"alice@example.test"});
  EXPECT_EQ(dirs_->Resolve("bob+other@example.test").mailboxes,
            Strings{"bob@example.test"});
  EXPECT_EQ(dirs_->Resolve("+x@example.test").kind, Kind::kUnknown);
}

TEST_F(DirectoryTest, AliasChainsExpandWithoutDuplicates) {
  AddUser("alice@example.test");
  AddUser("bob@second.test");
  AddAlias("team@example.test",
           {"alice@example.test", "bob@second.test", "ext@remote.test"});
  AddAlias("all@example.test",
           {"team@example.test", "ALICE@example.test", "Ext@Remote.TEST"});

  Resolution r = dirs_->Resolve("All@Example.test");
  EXPECT_EQ(r.kind, Kind::kLocal);
  EXPECT_EQ(r.mailboxes, (Strings{"alice@example.test", "bob@second.test"}));
  EXPECT_EQ(r.remote, (Strings{"ext@remote.test", "Ext@remote.test"}));

  auto aliases = dirs_->ListAliases();
  ASSERT_TRUE(aliases);
  ASSERT_EQ(aliases->size(), 2u);
  EXPECT_EQ((*aliases)[0].alias, "all@example.test");
  EXPECT_EQ(
      (*aliases)[0].targets,
      (Strings{"team@example.test", "ALICE@example.test", "Ext@remote.test"}));
  EXPECT_EQ((*aliases)[1].alias, "team@example.test");
}

TEST_F(DirectoryTest, AliasLoopsAreCut) {
  AddUser("alice@example.test");
  AddAlias("x@example.test", {"y@example.test"});
  AddAlias("y@example.test", {"x@example.test", "alice@example.test"});
  Resolution r = dirs_->Resolve("x@example.test");
  EXPECT_EQ(r.kind, Kind::kLocal);
  EXPECT_EQ(r.mailboxes, Strings{"alice@example.test"});

  AddAlias("p@example.test", {"q@example.test"});
  AddAlias("q@example.test", {"p@example.test"});
  EXPECT_EQ(dirs_->Resolve("p@example.test").kind, Kind::kUnknown);

  // An alias on a real mailbox that includes itself keeps a local copy.
  AddUser("carol@example.test");
  AddAlias("carol@example.test", {"carol@example.test", "c@remote.test"});
  r = dirs_->Resolve("carol@example.test");
  EXPECT_EQ(r.mailboxes, Strings{"carol@example.test"});
  EXPECT_EQ(r.remote, Strings{"c@remote.test"});
}

TEST_F(DirectoryTest, AliasDepthIsLimited) {
  AddUser("alice@example.test");
  // a0 -> a1 -> ... -> a11 -> alice: too deep to reach alice.
  for (int i = 0; i < 12; ++i) {
    AddAlias("a" + std::to_string(i) + "@example.test",
             {"a" + std::to_string(i + 1) + "@example.test"});
  }
  AddAlias("a12@example.test", {"alice@example.test"});
  EXPECT_EQ(dirs_->Resolve("a0@example.test").kind, Kind::kUnknown);
  EXPECT_EQ(dirs_->Resolve("a5@example.test").mailboxes,
            Strings{"alice@example.test"});
}

TEST_F(DirectoryTest, CatchAllComesLast) {
  AddUser("alice@example.test");
  AddUser("bob@example.test");
  AddAlias("@Example.Test", {"bob@example.test"});
  EXPECT_EQ(dirs_->Resolve("alice@example.test").mailboxes,
            Strings{"alice@example.test"});
  EXPECT_EQ(dirs_->Resolve("anything@example.test").mailboxes,
            Strings{"bob@example.test"});
  EXPECT_EQ(dirs_->Resolve("alice+tag@example.test").mailboxes,
            Strings{"alice@example.test"});
  EXPECT_EQ(dirs_->Resolve("nobody@second.test").kind, Kind::kUnknown);

  auto aliases = dirs_->ListAliases();
  ASSERT_TRUE(aliases);
  ASSERT_EQ(aliases->size(), 1u);
  EXPECT_EQ((*aliases)[0].alias, "@example.test");
  EXPECT_FALSE(dirs_->AddAlias("@elsewhere.test", {"bob@example.test"}));
}

TEST_F(DirectoryTest, RemoteOnlyAliasAndUnknownLocalTarget) {
  AddAlias("fwd@example.test", {"someone@remote.test"});
  Resolution r = dirs_->Resolve("fwd@example.test");
  EXPECT_EQ(r.kind, Kind::kLocal);
  EXPECT_TRUE(r.mailboxes.empty());
  EXPECT_EQ(r.remote, Strings{"someone@remote.test"});

  AddUser("alice@example.test");
  AddAlias("mixed@example.test", {"ghost@example.test", "alice@example.test"});
  EXPECT_EQ(dirs_->Resolve("mixed@example.test").mailboxes,
            Strings{"alice@example.test"});
  AddAlias("dead@example.test", {"ghost@example.test"});
  EXPECT_EQ(dirs_->Resolve("dead@example.test").kind, Kind::kUnknown);
}

TEST_F(DirectoryTest, AliasValidation) {
  EXPECT_FALSE(dirs_->AddAlias("list@elsewhere.test", {"a@example.test"}));
  EXPECT_FALSE(dirs_->AddAlias("../list@example.test", {"a@example.test"}));
  EXPECT_FALSE(dirs_->AddAlias("list@example.test", {}));
  EXPECT_FALSE(dirs_->AddAlias("list@example.test", {"not an address"}));
  EXPECT_FALSE(dirs_->AddAlias("list@example.test", {"a/b@remote.test"}));
  AddAlias("list@example.test", {"a@remote.test"});
  auto dup = dirs_->AddAlias("LIST@example.test", {"b@remote.test"});
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("already exists"), std::string::npos);

  ASSERT_TRUE(dirs_->DeleteAlias("List@Example.test"));
  EXPECT_EQ(dirs_->Resolve("list@example.test").kind, Kind::kUnknown);
  auto missing = dirs_->DeleteAlias("list@example.test");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "no such alias list@example.test");
}

TEST_F(DirectoryTest, PostmasterWithoutDomain) {
  AddUser("postmaster@example.test");
  for (const char* address : {"postmaster", "Postmaster", "POSTMASTER"}) {
    Resolution r = dirs_->Resolve(address);
    EXPECT_EQ(r.kind, Kind::kLocal) << address;
    EXPECT_EQ(r.mailboxes, Strings{"postmaster@example.test"}) << address;
  }
  ASSERT_TRUE(dirs_->DeleteUser("postmaster@example.test"));
  AddUser("alice@example.test");
  AddAlias("postmaster@example.test", {"alice@example.test"});
  EXPECT_EQ(dirs_->Resolve("postmaster").mailboxes,
            Strings{"alice@example.test"});
}

// RFC 5321 4.5.1 and RFC 2142: role addresses and the machine's users reach
// the postmaster with nothing configured, and explicit entries still win.
TEST_F(DirectoryTest, RoleAddressesAndSystemUsersGoToThePostmaster) {
  dirs_->SetRouting(LocalRouting{"", {"root", "Daemon"}});
  EXPECT_EQ(dirs_->FallbackPostmaster(), "postmaster@example.test");
  for (const char* address :
       {"postmaster", "postmaster@example.test", "PostMaster@SECOND.test",
        "abuse@second.test", "mailer-daemon@example.test", "root@example.test",
        "daemon@second.test", "root+cron@example.test"}) {
    Resolution r = dirs_->Resolve(address);
    EXPECT_EQ(r.kind, Kind::kLocal) << address;
    EXPECT_EQ(r.mailboxes, Strings{"postmaster@example.test"}) << address;
  }
  EXPECT_EQ(dirs_->Resolve("nosuchuser@example.test").kind, Kind::kUnknown);
  EXPECT_EQ(dirs_->Resolve("root@remote.test").kind, Kind::kNotLocal);

  // The setting: a local account, then a remote address.
  AddUser("admin@example.test");
  dirs_->SetRouting(LocalRouting{"admin@example.test", {"root"}});
  EXPECT_EQ(dirs_->Resolve("root@second.test").mailboxes,
            Strings{"admin@example.test"});
  dirs_->SetRouting(LocalRouting{"ops@remote.test", {"root"}});
  Resolution remote = dirs_->Resolve("abuse@example.test");
  EXPECT_EQ(remote.kind, Kind::kLocal);
  EXPECT_TRUE(remote.mailboxes.empty());
  EXPECT_EQ(remote.remote, Strings{"ops@remote.test"});
  // A setting that leads nowhere falls back to the postmaster mailbox.
  dirs_->SetRouting(LocalRouting{"gone@example.test", {"root"}});
  EXPECT_EQ(dirs_->Resolve("root@example.test").mailboxes,
            Strings{"postmaster@example.test"});
  // ... as does one naming a role itself, without looping.
  dirs_->SetRouting(LocalRouting{"root@example.test", {"root"}});
  EXPECT_EQ(dirs_->Resolve("postmaster").mailboxes,
            Strings{"postmaster@example.test"});

  // Explicit accounts and aliases come first; then roles; then catch-alls.
  dirs_->SetRouting(LocalRouting{"admin@example.test", {"root"}});
  AddUser("root@second.test");
  AddAlias("abuse@example.test", {"bob@remote.test"});
  AddAlias("@example.test", {"admin@example.test"});
  EXPECT_EQ(dirs_->Resolve("root@second.test").mailboxes,
            Strings{"root@second.test"});
  EXPECT_EQ(dirs_->Resolve("abuse@example.test").remote,
            Strings{"bob@remote.test"});
  AddUser("carol@example.test");
  AddAlias("@second.test", {"carol@example.test"});
  EXPECT_EQ(dirs_->Resolve("postmaster@second.test").mailboxes,
            Strings{"admin@example.test"});
  EXPECT_EQ(dirs_->Resolve("anyone@second.test").mailboxes,
            Strings{"carol@example.test"});
  // An alias pointing at a system user reaches the postmaster too.
  AddAlias("ops@second.test", {"root@example.test"});
  EXPECT_EQ(dirs_->Resolve("ops@second.test").mailboxes,
            Strings{"admin@example.test"});
}

// Role routing is for delivery: it never makes the postmaster the owner of
// root@ or abuse@ as a sender address.
TEST_F(DirectoryTest, RoleRoutingGrantsNoSenderAddresses) {
  AddUser("admin@example.test");
  dirs_->SetRouting(LocalRouting{"admin@example.test", {"root"}});
  EXPECT_FALSE(dirs_->Owns("admin@example.test", "root@example.test"));
  EXPECT_FALSE(dirs_->Owns("admin@example.test", "postmaster@example.test"));
  auto owned = dirs_->OwnedAddresses("admin@example.test");
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned, Strings{"admin@example.test"});
}

TEST(LocalRoutingTest, FromSystemReadsThePasswdDatabase) {
  LocalRouting r = LocalRouting::FromSystem("pm@example.test");
  EXPECT_EQ(r.postmaster, "pm@example.test");
  // Every Unix system has root.
  EXPECT_NE(std::find(r.system_users.begin(), r.system_users.end(), "root"),
            r.system_users.end());
}

TEST_F(DirectoryTest, ChangesFromAnotherInstanceBecomeVisible) {
  std::unique_ptr<Directory> other = Open();
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(dirs_->Resolve("dave@example.test").kind, Kind::kUnknown);

  ASSERT_TRUE(other->AddUser("dave@example.test", "pw"));
  EXPECT_EQ(dirs_->Resolve("dave@example.test").mailboxes,
            Strings{"dave@example.test"});

  ASSERT_TRUE(other->AddAlias("d@example.test", {"dave@example.test"}));
  EXPECT_EQ(dirs_->Resolve("d@example.test").mailboxes,
            Strings{"dave@example.test"});

  ASSERT_TRUE(other->DeleteUser("dave@example.test"));
  EXPECT_EQ(dirs_->Resolve("dave@example.test").kind, Kind::kUnknown);

  // And the other way round.
  AddUser("erin@example.test");
  EXPECT_EQ(other->Resolve("erin@example.test").kind, Kind::kLocal);
}

TEST_F(DirectoryTest, DataSurvivesReopen) {
  AddUser("alice@example.test");
  AddAlias("a@example.test", {"alice@example.test"});
  dirs_.reset();
  dirs_ = Open();
  ASSERT_NE(dirs_, nullptr);
  EXPECT_EQ(dirs_->Resolve("a@example.test").mailboxes,
            Strings{"alice@example.test"});
  EXPECT_EQ(dirs_->VerifyPassword("alice@example.test", "secret"), true);
  EXPECT_EQ(std::filesystem::status(db_path_).permissions() &
                std::filesystem::perms::others_read,
            std::filesystem::perms::none);
}

TEST_F(DirectoryTest, ConcurrentResolveDuringChanges) {
  AddUser("alice@example.test");
  std::unique_ptr<Directory> writer = Open();
  ASSERT_NE(writer, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        if (dirs_->Resolve("alice@example.test").mailboxes !=
            Strings{"alice@example.test"}) {
          ++failures;
        }
      }
    });
  }
  for (int i = 0; i < 10; ++i) {
    std::string alias = "l" + std::to_string(i) + "@example.test";
    ASSERT_TRUE(writer->AddAlias(alias, {"alice@example.test"}));
    EXPECT_EQ(dirs_->Resolve(alias).kind, Kind::kLocal);
  }
  stop = true;
  for (auto& thread : readers) thread.join();
  EXPECT_EQ(failures, 0);
}

// --- SCRAM keys -------------------------------------------------------

// The stored keys must be the ones RFC 5802 3 derives from the password
// with the stored salt and iteration count.
void ExpectScramFor(Directory& dir, const std::string& address,
                    const std::string& canonical, const std::string& password) {
  auto found = dir.ScramLookup(address);
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_TRUE(found->has_value()) << address;
  const auto& [account, scram] = **found;
  EXPECT_EQ(account, canonical);
  EXPECT_EQ(scram.salt.size(), 16u);
  EXPECT_EQ(scram.iterations, 4096u);
  ScramCredentials expected =
      MakeScramCredentialsWithSalt(password, scram.salt, scram.iterations);
  EXPECT_EQ(scram.stored_key, expected.stored_key);
  EXPECT_EQ(scram.server_key, expected.server_key);
}

TEST_F(DirectoryTest, ScramKeysFollowThePassword) {
  ASSERT_TRUE(dirs_->AddUser("Alice@example.test", "correct horse"));
  ExpectScramFor(*dirs_, "alice@EXAMPLE.test", "Alice@example.test",
                 "correct horse");
  auto before = dirs_->ScramLookup("alice@example.test");
  ASSERT_TRUE(before && *before);

  ASSERT_TRUE(dirs_->SetPassword("alice@example.test", "battery staple"));
  ExpectScramFor(*dirs_, "alice@example.test", "Alice@example.test",
                 "battery staple");
  auto after = dirs_->ScramLookup("alice@example.test");
  ASSERT_TRUE(after && *after);
  EXPECT_NE((*before)->second.salt, (*after)->second.salt);

  auto missing = dirs_->ScramLookup("nobody@example.test");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
}

TEST_F(DirectoryTest, AuthenticateReturnsCanonicalAddress) {
  ASSERT_TRUE(dirs_->AddUser("Bob.Smith@Example.test", "pw"));
  auto ok = dirs_->Authenticate("bob.smith@example.TEST", "pw");
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, std::optional<std::string>("Bob.Smith@example.test"));
  auto wrong = dirs_->Authenticate("bob.smith@example.test", "PW");
  ASSERT_TRUE(wrong);
  EXPECT_FALSE(wrong->has_value());
  auto unknown = dirs_->Authenticate("ghost@example.test", "pw");
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->has_value());
  auto huge =
      dirs_->Authenticate("bob.smith@example.test", std::string(5000, 'x'));
  ASSERT_TRUE(huge);
  EXPECT_FALSE(huge->has_value());
}

TEST_F(DirectoryTest, CredentialsAdapterForSasl) {
  ASSERT_TRUE(dirs_->AddUser("alice@example.test", "secret"));
  AddAlias("a@example.test", {"alice@example.test"});
  DirectoryCredentials store(*dirs_);
  EXPECT_EQ(store.CheckPassword("ALICE@example.test", "secret").value(),
            std::optional<std::string>("alice@example.test"));
  EXPECT_EQ(store.CheckPassword("alice@example.test", "Secret").value(),
            std::nullopt);
  // Aliases and tags deliver to the account but are not login names.
  EXPECT_EQ(store.CheckPassword("a@example.test", "secret").value(),
            std::nullopt);
  EXPECT_EQ(store.CheckPassword("alice+x@example.test", "secret").value(),
            std::nullopt);
  auto scram = store.Scram("Alice@Example.Test").value();
  ASSERT_TRUE(scram);
  EXPECT_EQ(scram->first, "alice@example.test");
  EXPECT_EQ(store.Scram("a@example.test").value(), std::nullopt);

  // And through a mechanism, end to end.
  auto plain = MakeMechanism("PLAIN", store);
  SaslStep step =
      plain->Start(std::string_view("\0alice@example.test\0secret", 26));
  EXPECT_EQ(step.kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(step.user, "alice@example.test");
}

// Builds the database exactly as the schema 1 code did, with one account
// whose password hash is real, then lets the current code open it.
TEST_F(DirectoryTest, MigratesSchemaOneDatabase) {
  dirs_.reset();
  std::filesystem::remove(db_path_);
  std::filesystem::remove(db_path_ + "-wal");
  std::filesystem::remove(db_path_ + "-shm");
  {
    ASSERT_EQ(sodium_init() >= 0, true);
    char hash[crypto_pwhash_STRBYTES];
    ASSERT_EQ(crypto_pwhash_str(hash, "old secret", 10,
                                crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_MEMLIMIT_INTERACTIVE),
              0);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    std::string sql =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE accounts ("
        "  address TEXT NOT NULL UNIQUE COLLATE NOCASE,"
        "  password TEXT NOT NULL,"
        "  created INTEGER NOT NULL);"
        "CREATE TABLE aliases ("
        "  alias TEXT NOT NULL COLLATE NOCASE,"
        "  target TEXT NOT NULL COLLATE NOCASE,"
        "  UNIQUE (alias, target));"
        "PRAGMA user_version = 1;"
        "INSERT INTO accounts VALUES ('old@example.test', '" +
        std::string(hash) +
        "', 1700000000);"
        "INSERT INTO aliases VALUES ('o@example.test', 'old@example.test');";
    char* error = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }

  dirs_ = Open();
  ASSERT_NE(dirs_, nullptr);
  EXPECT_EQ(dirs_->VerifyPassword("old@example.test", "old secret"), true);
  EXPECT_EQ(dirs_->Resolve("o@example.test").mailboxes,
            Strings{"old@example.test"});
  // No SCRAM keys until the password is set again; PLAIN still works.
  auto scram = dirs_->ScramLookup("old@example.test");
  ASSERT_TRUE(scram);
  EXPECT_FALSE(scram->has_value());
  DirectoryCredentials store(*dirs_);
  EXPECT_EQ(store.Scram("old@example.test").value(), std::nullopt);
  EXPECT_EQ(store.CheckPassword("old@example.test", "old secret").value(),
            std::optional<std::string>("old@example.test"));
  ASSERT_TRUE(dirs_->Grant("old@example.test", "*@elsewhere.test"));
  ASSERT_TRUE(dirs_->SetPassword("old@example.test", "new secret"));
  ExpectScramFor(*dirs_, "old@example.test", "old@example.test", "new secret");

  // Opening again (now schema 2) changes nothing.
  dirs_.reset();
  dirs_ = Open();
  ASSERT_NE(dirs_, nullptr);
  ExpectScramFor(*dirs_, "old@example.test", "old@example.test", "new secret");
  EXPECT_TRUE(dirs_->Owns("old@example.test", "x@elsewhere.test"));
  AddUser("fresh@example.test");
  ExpectScramFor(*dirs_, "fresh@example.test", "fresh@example.test", "secret");

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 3);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  // Schema 3's per-account quota works on the migrated accounts.
  EXPECT_EQ(dirs_->QuotaOf("old@example.test"), std::nullopt);
  ASSERT_TRUE(dirs_->SetQuota("old@example.test", 4096));
  EXPECT_EQ(dirs_->QuotaOf("OLD@example.test"), 4096u);
  ASSERT_TRUE(dirs_->SetQuota("old@example.test", std::nullopt));
  EXPECT_EQ(dirs_->QuotaOf("old@example.test"), std::nullopt);
  EXPECT_FALSE(dirs_->SetQuota("nobody@example.test", 1));
}

TEST_F(DirectoryTest, NewerSchemaRefused) {
  dirs_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto opened = Directory::Open(db_path_, {"example.test"});
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find("newer tern"), std::string::npos);
}

// --- grants and ownership ---------------------------------------------

TEST_F(DirectoryTest, GrantAndRevoke) {
  AddUser("Alice@example.test");
  ASSERT_TRUE(dirs_->Grant("alice@example.test", "Boss@Corp.TEST"));
  ASSERT_TRUE(dirs_->Grant("ALICE@example.test", "*@Shop.Test"));
  auto dup = dirs_->Grant("alice@example.test", "boss@corp.test");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().message,
            "Alice@example.test already has grant boss@corp.test");

  auto owned = dirs_->OwnedAddresses("alice@example.test");
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned,
            (Strings{"Alice@example.test", "Boss@corp.test", "*@shop.test"}));

  EXPECT_FALSE(dirs_->Grant("ghost@example.test", "x@corp.test"));
  for (const char* bad : {"", "*", "*@", "a@b@c", "no-at", "*@bad..domain",
                          "a b@corp.test", "*@*.corp.test"}) {
    EXPECT_FALSE(dirs_->Grant("alice@example.test", bad)) << bad;
  }

  ASSERT_TRUE(dirs_->Revoke("alice@example.test", "BOSS@corp.test"));
  auto missing = dirs_->Revoke("alice@example.test", "boss@corp.test");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message,
            "no grant boss@corp.test for alice@example.test");
  owned = dirs_->OwnedAddresses("alice@example.test");
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned, (Strings{"Alice@example.test", "*@shop.test"}));

  // Grants leave with the account.
  ASSERT_TRUE(dirs_->DeleteUser("alice@example.test"));
  AddUser("alice@example.test");
  owned = dirs_->OwnedAddresses("alice@example.test");
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned, Strings{"alice@example.test"});
  EXPECT_FALSE(dirs_->Owns("alice@example.test", "x@shop.test"));
}

TEST_F(DirectoryTest, OwnedAddressesFollowAliases) {
  AddUser("alice@example.test");
  AddUser("bob@example.test");
  AddAlias("sales@example.test", {"alice@example.test"});
  AddAlias("Info@second.test", {"sales@example.test"});  // through an alias
  AddAlias("team@example.test", {"alice@example.test", "bob@example.test"});
  AddAlias("fwd@example.test", {"someone@remote.test"});
  AddAlias("@example.test", {"alice@example.test"});  // catch-all: excluded
  AddAlias("alice@example.test", {"alice@example.test", "a@remote.test"});
  AddAlias("bobs@example.test", {"bob@example.test"});
  ASSERT_TRUE(dirs_->Grant("alice@example.test", "*@shop.test"));

  auto owned = dirs_->OwnedAddresses("ALICE@example.test");
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned, (Strings{"alice@example.test", "Info@second.test",
                             "sales@example.test", "team@example.test",
                             "*@shop.test"}));
  owned = dirs_->OwnedAddresses("bob@example.test");
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned, (Strings{"bob@example.test", "bobs@example.test",
                             "team@example.test"}));
  auto unknown = dirs_->OwnedAddresses("ghost@example.test");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "no such user ghost@example.test");
}

TEST_F(DirectoryTest, Owns) {
  AddUser("Alice@example.test");
  AddUser("bob@example.test");
  AddAlias("sales@example.test", {"alice@example.test"});
  AddAlias("info@second.test", {"sales@example.test"});
  AddAlias("@example.test", {"alice@example.test"});
  ASSERT_TRUE(dirs_->Grant("alice@example.test", "*@shop.test"));
  ASSERT_TRUE(dirs_->Grant("alice@example.test", "ceo@corp.test"));

  for (const char* mine :
       {"alice@example.test", "ALICE@EXAMPLE.TEST", "alice+news@example.test",
        "sales@example.test", "Sales+x@Example.Test", "info@second.test",
        "anyone@shop.test", "x+y@SHOP.test", "ceo@corp.test",
        "CEO+tag@corp.test"}) {
    EXPECT_TRUE(dirs_->Owns("alice@example.test", mine)) << mine;
    EXPECT_TRUE(dirs_->Owns("ALICE@Example.Test", mine)) << mine;
  }
  for (const char* theirs :
       {"", "bob@example.test", "bob+alice@example.test",
        "random@example.test",  // only the catch-all reaches alice
        "alice@second.test", "alice@remote.test", "cfo@corp.test",
        "x@sub.shop.test", "alice", "@example.test", "+x@example.test",
        "ceo@corp.test.evil"}) {
    EXPECT_FALSE(dirs_->Owns("alice@example.test", theirs)) << theirs;
  }
  EXPECT_TRUE(dirs_->Owns("bob@example.test", "bob@example.test"));
  EXPECT_FALSE(dirs_->Owns("bob@example.test", "sales@example.test"));
  EXPECT_FALSE(dirs_->Owns("ghost@example.test", "ghost@example.test"));
  EXPECT_FALSE(dirs_->Owns("", ""));
}

TEST_F(DirectoryTest, GrantsFromAnotherInstanceBecomeVisible) {
  AddUser("alice@example.test");
  std::unique_ptr<Directory> other = Open();
  ASSERT_NE(other, nullptr);
  EXPECT_FALSE(dirs_->Owns("alice@example.test", "x@shop.test"));
  ASSERT_TRUE(other->Grant("alice@example.test", "*@shop.test"));
  EXPECT_TRUE(dirs_->Owns("alice@example.test", "x@shop.test"));
  ASSERT_TRUE(other->Revoke("alice@example.test", "*@shop.test"));
  EXPECT_FALSE(dirs_->Owns("alice@example.test", "x@shop.test"));
}

TEST_F(DirectoryTest, ConcurrentOwnsDuringChanges) {
  AddUser("alice@example.test");
  std::unique_ptr<Directory> writer = Open();
  ASSERT_NE(writer, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        if (!dirs_->Owns("alice@example.test", "alice+t@example.test") ||
            dirs_->Owns("alice@example.test", "other@example.test")) {
          ++failures;
        }
      }
    });
  }
  for (int i = 0; i < 10; ++i) {
    std::string pattern = "*@d" + std::to_string(i) + ".test";
    ASSERT_TRUE(writer->Grant("alice@example.test", pattern));
    EXPECT_TRUE(
        dirs_->Owns("alice@example.test", "a@d" + std::to_string(i) + ".test"));
  }
  stop = true;
  for (auto& thread : readers) thread.join();
  EXPECT_EQ(failures, 0);
}

}  // namespace
}  // namespace tern::auth
