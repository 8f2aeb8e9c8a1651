// Tests for the mailbox layout: path safety of account addresses.
#include "store/mailbox_path.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::store {
namespace {

TEST(StoreMailboxPathTest, SafePathComponents) {
  EXPECT_TRUE(IsSafePathComponent("bob"));
  EXPECT_TRUE(IsSafePathComponent("bob.smith+tag"));
  EXPECT_TRUE(IsSafePathComponent("j\xc3\xbcrgen"));
  EXPECT_FALSE(IsSafePathComponent(""));
  EXPECT_FALSE(IsSafePathComponent("."));
  EXPECT_FALSE(IsSafePathComponent(".."));
  EXPECT_FALSE(IsSafePathComponent(".hidden"));
  EXPECT_FALSE(IsSafePathComponent("a/b"));
  EXPECT_FALSE(IsSafePathComponent(std::string("a\0b", 3)));
}

TEST(StoreMailboxPathTest, MailboxPaths) {
  auto p = MailboxPathFor("Bob@Example.TEST");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->domain, "example.test");
  EXPECT_EQ(p->local, "Bob");
  // The last '@' separates the domain (quoted local parts may contain '@').
  auto q = MailboxPathFor("\"a@b\"@example.test");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->local, "\"a@b\"");
  for (const char* bad :
       {"../x@example.test", "..@example.test", "a/b@example.test", "bob@..",
        "bob@", "@example.test", "nodomain", "bob@a/b", ".bob@example.test"}) {
    EXPECT_FALSE(MailboxPathFor(bad)) << bad;
  }
}

}  // namespace
}  // namespace tern::store
