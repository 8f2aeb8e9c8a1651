// Tests for the account directory: management calls, address validation,
// password checks, and how Resolve expands aliases, tags and catch-alls,
// including changes made by another Directory on the same file.
#include "auth/directory.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>

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

}  // namespace
}  // namespace tern::auth
