// Unit tests for IMAP folder names and their Maildir++ directories: INBOX
// case, refused names, the "\" hex escape of "." and "\", UTF-8 names,
// and directory names other programs made.
#include "store/folder_name.h"

#include <gtest/gtest.h>

namespace tern::store {
namespace {

TEST(StoreFolderNameTest, Canonical) {
  EXPECT_EQ(CanonicalFolderName("inbox"), "INBOX");
  EXPECT_EQ(CanonicalFolderName("InBox/Sub"), "INBOX/Sub");
  EXPECT_EQ(CanonicalFolderName("Sent"), "Sent");
  EXPECT_EQ(CanonicalFolderName("a/inbox"), "a/inbox");  // only the first level
  EXPECT_EQ(CanonicalFolderName(""), std::nullopt);
  EXPECT_EQ(CanonicalFolderName("a//b"), std::nullopt);
  EXPECT_EQ(CanonicalFolderName("/a"), std::nullopt);
  EXPECT_EQ(CanonicalFolderName("a/"), std::nullopt);
  EXPECT_EQ(CanonicalFolderName("a\xff"), std::nullopt);     // not UTF-8
  EXPECT_EQ(CanonicalFolderName("\xc0\xaf"), std::nullopt);  // overlong "/"
  EXPECT_EQ(CanonicalFolderName(std::string("a\0b", 3)), std::nullopt);
}

TEST(StoreFolderNameTest, Directories) {
  EXPECT_EQ(FolderDirectory("INBOX"), "");
  EXPECT_EQ(FolderDirectory("Sent"), ".Sent");
  EXPECT_EQ(FolderDirectory("Archive/2024"), ".Archive.2024");
  EXPECT_EQ(FolderDirectory("INBOX/Lists"), ".INBOX.Lists");
  EXPECT_EQ(FolderDirectory("a.b"), ".a\\2eb");
  EXPECT_EQ(FolderDirectory("a\\b/c"), ".a\\5cb.c");
  EXPECT_EQ(FolderDirectory(".."), ".\\2e\\2e");  // never a path step
  EXPECT_EQ(FolderDirectory("Ümlaut/日本"), ".Ümlaut.日本");
  EXPECT_EQ(FolderDirectory("tab\there"), ".tab\\09here");
}

TEST(StoreFolderNameTest, RoundTrip) {
  for (const char* name :
       {"Sent", "Archive/2024", "a.b", "a\\b/c.d", "..", "Ümlaut/日本",
        "INBOX/x", "with space", "tab\there", "a\\2eb"}) {
    auto back = FolderNameOfDirectory(FolderDirectory(name));
    ASSERT_TRUE(back) << name;
    EXPECT_EQ(*back, name);
  }
}

TEST(StoreFolderNameTest, ForeignDirectories) {
  EXPECT_EQ(FolderNameOfDirectory(".Trash"), "Trash");
  EXPECT_EQ(FolderNameOfDirectory(".a.b.c"), "a/b/c");
  EXPECT_EQ(FolderNameOfDirectory("cur"), std::nullopt);  // not a folder
  EXPECT_EQ(FolderNameOfDirectory("tern-index"), std::nullopt);
  EXPECT_EQ(FolderNameOfDirectory("."), std::nullopt);
  EXPECT_EQ(FolderNameOfDirectory(".."), std::nullopt);
  EXPECT_EQ(FolderNameOfDirectory(".a..b"), std::nullopt);  // empty level
  EXPECT_EQ(FolderNameOfDirectory(".a."), std::nullopt);
  EXPECT_EQ(FolderNameOfDirectory(".INBOX"),
            std::nullopt);  // INBOX is the Maildir
  EXPECT_EQ(FolderNameOfDirectory(".inbox"), std::nullopt);
  EXPECT_EQ(FolderNameOfDirectory(".a\\2fb"),
            std::nullopt);  // "/" inside a level
  EXPECT_EQ(FolderNameOfDirectory(".bad\xff"), std::nullopt);
  EXPECT_EQ(FolderNameOfDirectory(".x\\zz"), "x\\zz");  // not an escape: kept
  EXPECT_EQ(FolderNameOfDirectory(".&AOQ-"), "&AOQ-");  // modified UTF-7 as is
}

TEST(StoreFolderNameTest, ParentAndInbox) {
  EXPECT_EQ(ParentFolder("a/b/c"), "a/b");
  EXPECT_EQ(ParentFolder("a"), "");
  EXPECT_TRUE(IsInbox("iNbOx"));
  EXPECT_FALSE(IsInbox("INBOX2"));
}

}  // namespace
}  // namespace tern::store
