// Unit tests for the IMAP mail store on Maildir++ and its SQLite index:
// special-use folders, UID order and stability, changes by other programs,
// flags in file names, UNCHANGEDSINCE, APPEND/COPY/MOVE/EXPUNGE, folder
// create/rename/delete (non-ASCII and escaped names), subscriptions,
// STATUS, crash states built on disk, a real kill -9, and POP3's Maildir
// code on the same mailbox.
#include "store/maildir_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "store/folder_name.h"
#include "store/maildir.h"

namespace tern::store {
namespace {

namespace fs = std::filesystem;

class StoreImapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() /
           ("tern-imapstore-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    path = (root / "Maildir").string();
  }
  void TearDown() override { fs::remove_all(root); }

  std::unique_ptr<MaildirStore> Open(MaildirStoreOptions options = {}) {
    auto s = MaildirStore::Open(path, options);
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  void Put(const std::string& rel, const std::string& content,
           int age_seconds = 0) {
    std::ofstream(path + "/" + rel, std::ios::binary) << content;
    if (age_seconds != 0) {
      fs::last_write_time(
          path + "/" + rel,
          fs::file_time_type::clock::now() - std::chrono::seconds(age_seconds));
    }
  }
  // File names in a folder's cur/ or new/.
  std::vector<std::string> Files(const std::string& sub) {
    std::vector<std::string> out;
    if (!fs::exists(path + "/" + sub)) return out;
    for (auto& e : fs::directory_iterator(path + "/" + sub))
      out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string ReadAll(int fd) {
    std::string out, buf(4096, '\0');
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0)
      out.append(buf.data(), n);
    return out;
  }
  static std::vector<uint32_t> Uids(const std::vector<MessageMeta>& ms) {
    std::vector<uint32_t> out;
    for (auto& m : ms) out.push_back(m.uid);
    return out;
  }
  AppendResult Append(MaildirStore& s, const std::string& folder,
                      const std::string& text, Flags flags = 0,
                      std::vector<std::string> keywords = {},
                      std::optional<int64_t> date = std::nullopt) {
    AppendRequest req;
    req.message = text;
    req.flags = flags;
    req.keywords = std::move(keywords);
    req.internal_date = date;
    auto r = s.Append(folder, req);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : AppendResult{};
  }
  StoreResult Store(MaildirStore& s, const std::string& folder,
                    std::vector<uint32_t> uids, StoreMode mode, Flags flags,
                    std::vector<std::string> keywords = {},
                    std::optional<uint64_t> unchanged_since = std::nullopt) {
    StoreRequest req;
    req.uids = std::move(uids);
    req.mode = mode;
    req.flags = flags;
    req.keywords = std::move(keywords);
    req.unchanged_since = unchanged_since;
    auto r = s.StoreFlags(folder, req);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : StoreResult{};
  }
  FolderSnapshot Select(MaildirStore& s, const std::string& folder) {
    auto r = s.Select(folder);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : FolderSnapshot{};
  }
  std::map<std::string, FolderInfo> List(MaildirStore& s) {
    auto r = s.ListFolders();
    EXPECT_TRUE(r) << r.error().message;
    std::map<std::string, FolderInfo> out;
    if (r) {
      for (auto& f : *r) out[f.name] = f;
    }
    return out;
  }

  fs::path root;
  std::string path;
};

TEST(StoreFlagNamesTest, FileNameFlags) {
  bool fwd = false;
  EXPECT_EQ(FlagsOfFileName("1.a.h:2,DFPRST", &fwd),
            kDraft | kFlagged | kAnswered | kSeen | kDeleted);
  EXPECT_TRUE(fwd);
  EXPECT_EQ(FlagsOfFileName("1.a.h:2,S", &fwd), kSeen);
  EXPECT_FALSE(fwd);
  EXPECT_EQ(FlagsOfFileName("1.a.h", &fwd), 0);
  EXPECT_EQ(FlagsOfFileName("1.a.h:1,S"), 0);  // experimental info: no flags
  EXPECT_EQ(FlagsOfFileName("1.a.h:2,abS"), kSeen);
  EXPECT_EQ(SystemFlagOf("\\SEEN"), kSeen);
  EXPECT_EQ(SystemFlagOf("$Forwarded"), 0);
  EXPECT_EQ(SystemFlagNames(kSeen | kDraft),
            (std::vector<std::string>{"\\Seen", "\\Draft"}));
  EXPECT_EQ(SpecialUseOf("\\trash"), SpecialUse::kTrash);
  EXPECT_EQ(SpecialUseName(SpecialUse::kJunk), "\\Junk");
}

TEST_F(StoreImapTest, OpenCreatesSpecialUseFolders) {
  auto s = Open();
  auto folders = List(*s);
  ASSERT_EQ(folders.size(), 5u);
  EXPECT_EQ(folders["INBOX"].special_use, SpecialUse::kNone);
  EXPECT_EQ(folders["Sent"].special_use, SpecialUse::kSent);
  EXPECT_EQ(folders["Drafts"].special_use, SpecialUse::kDrafts);
  EXPECT_EQ(folders["Trash"].special_use, SpecialUse::kTrash);
  EXPECT_EQ(folders["Junk"].special_use, SpecialUse::kJunk);
  for (const char* dir : {".Sent", ".Drafts", ".Trash", ".Junk"}) {
    for (const char* sub : {"cur", "new", "tmp"}) {
      EXPECT_TRUE(fs::is_directory(path + "/" + dir + "/" + sub)) << dir << sub;
    }
    EXPECT_TRUE(fs::exists(path + "/" + dir + "/maildirfolder")) << dir;
  }
  EXPECT_TRUE(fs::exists(path + "/" + kImapIndexFile));
  auto sent = s->Status("Sent");
  ASSERT_TRUE(sent);
  s.reset();
  auto again = Open();
  EXPECT_EQ(List(*again).size(), 5u);  // not made twice
  auto sent2 = again->Status("Sent");
  ASSERT_TRUE(sent2);
  EXPECT_EQ(sent2->state.uidvalidity, sent->state.uidvalidity);
}

TEST_F(StoreImapTest, ExistingFolderGetsTheSpecialUse) {
  fs::create_directories(path + "/.Trash/cur");
  fs::create_directories(path + "/.Trash/new");
  fs::create_directories(path + "/.Trash/tmp");
  Put(".Trash/cur/1.old.h:2,S", "old\n");
  auto s = Open();
  auto folders = List(*s);
  EXPECT_EQ(folders["Trash"].special_use, SpecialUse::kTrash);
  EXPECT_EQ(Select(*s, "Trash").messages.size(), 1u);
}

TEST_F(StoreImapTest, NoSpecialFoldersWhenDisabled) {
  MaildirStoreOptions options;
  options.create_special_folders = false;
  auto s = Open(options);
  EXPECT_EQ(List(*s).size(), 1u);
}

TEST_F(StoreImapTest, UidsInArrivalOrderAndStableAcrossReopen) {
  auto s = Open();
  // Names do not sort by arrival; mtimes do.
  Put("new/99.M1.h", "first\n", 30);
  Put("new/100.M1.h", "second\n", 20);
  Put("cur/98.M1.h:2,S", "third\n", 10);
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 3u);
  EXPECT_EQ(Uids(snap.messages), (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(snap.state.uidnext, 4u);
  auto first = s->OpenMessage("INBOX", 1);
  ASSERT_TRUE(first);
  EXPECT_EQ(ReadAll(first->get()), "first\n");
  EXPECT_EQ(snap.messages[0].size, 7u);  // CRLF octets
  EXPECT_EQ(snap.messages[2].flags, kSeen);
  uint32_t validity = snap.state.uidvalidity;
  EXPECT_NE(validity, 0u);
  s.reset();

  Put("new/1.M1.h", "fourth\n");
  auto s2 = Open();
  auto snap2 = Select(*s2, "inbox");
  ASSERT_EQ(snap2.messages.size(), 4u);
  EXPECT_EQ(snap2.state.uidvalidity, validity);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(snap2.messages[i], snap.messages[i]);
  EXPECT_EQ(snap2.messages[3].uid, 4u);
  auto fourth = s2->OpenMessage("INBOX", 4);
  ASSERT_TRUE(fourth);
  EXPECT_EQ(ReadAll(fourth->get()), "fourth\n");
}

TEST_F(StoreImapTest, OutsideChangesArePickedUp) {
  auto s = Open();
  Put("new/1.a.h", "a\n", 30);
  Put("new/2.b.h", "b\n", 20);
  Put("new/3.c.h", "c\n", 10);
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 3u);
  uint64_t known = snap.state.highest_modseq;

  // mutt reads message 1 (new/ -> cur/ with S), flags 2, deletes 3, and
  // a delivery drops a fourth.
  fs::rename(path + "/new/1.a.h", path + "/cur/1.a.h:2,S");
  fs::rename(path + "/new/2.b.h", path + "/cur/2.b.h:2,FP");
  fs::remove(path + "/new/3.c.h");
  Put("new/4.d.h", "d\n");

  auto ch = s->Sync("INBOX", known);
  ASSERT_TRUE(ch) << ch.error().message;
  EXPECT_GT(ch->state.highest_modseq, known);
  ASSERT_EQ(ch->changed.size(), 3u);
  EXPECT_EQ(ch->changed[0].uid, 1u);
  EXPECT_EQ(ch->changed[0].flags, kSeen);
  EXPECT_EQ(ch->changed[1].flags, kFlagged);
  EXPECT_EQ(ch->changed[1].keywords, (std::vector<std::string>{"$Forwarded"}));
  EXPECT_EQ(ch->changed[2].uid, 4u);  // new
  for (auto& m : ch->changed) EXPECT_GT(m.modseq, known);
  EXPECT_EQ(ch->expunged, (std::vector<uint32_t>{3}));
  EXPECT_EQ(ch->state.uidnext, 5u);

  // Nothing new: an empty answer, the same HIGHESTMODSEQ.
  auto quiet = s->Sync("INBOX", ch->state.highest_modseq);
  ASSERT_TRUE(quiet);
  EXPECT_TRUE(quiet->changed.empty());
  EXPECT_TRUE(quiet->expunged.empty());
  EXPECT_EQ(quiet->state.highest_modseq, ch->state.highest_modseq);
  // From the start: everything there, and every expunge (QRESYNC).
  auto all = s->Sync("INBOX", 0);
  ASSERT_TRUE(all);
  EXPECT_EQ(Uids(all->changed), (std::vector<uint32_t>{1, 2, 4}));
  EXPECT_EQ(all->expunged, (std::vector<uint32_t>{3}));
}

TEST_F(StoreImapTest, FlagsInFileNamesAndIndexAgree) {
  auto s = Open();
  Put("new/1.a.h", "a\n");
  Select(*s, "INBOX");
  auto r = Store(*s, "INBOX", {1}, StoreMode::kAdd, kSeen | kFlagged,
                 {"Work", "$Forwarded"});
  ASSERT_EQ(r.updated.size(), 1u);
  EXPECT_EQ(Files("new"), std::vector<std::string>{});
  EXPECT_EQ(Files("cur"), std::vector<std::string>{"1.a.h:2,FPS"});
  auto p = s->MessagePath("INBOX", 1);
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, "cur/1.a.h:2,FPS");
  EXPECT_EQ(r.updated[0].flags, kSeen | kFlagged);
  EXPECT_EQ(r.updated[0].keywords,
            (std::vector<std::string>{"$Forwarded", "Work"}));

  // Keywords only live in the index: no rename, but a new MODSEQ.
  auto k = Store(*s, "INBOX", {1}, StoreMode::kAdd, 0, {"Later"});
  ASSERT_EQ(k.updated.size(), 1u);
  EXPECT_GT(k.updated[0].modseq, r.updated[0].modseq);
  EXPECT_EQ(Files("cur"), std::vector<std::string>{"1.a.h:2,FPS"});

  // Replace; letters Tern does not know (Dovecot keyword letters) stay.
  fs::rename(path + "/cur/1.a.h:2,FPS", path + "/cur/1.a.h:2,FPSab");
  Select(*s, "INBOX");
  Store(*s, "INBOX", {1}, StoreMode::kReplace, kAnswered | kDeleted | kDraft,
        {});
  EXPECT_EQ(Files("cur"), std::vector<std::string>{"1.a.h:2,DRTab"});
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 1u);
  EXPECT_EQ(snap.messages[0].flags, kAnswered | kDeleted | kDraft);
  EXPECT_TRUE(snap.messages[0].keywords.empty());

  Store(*s, "INBOX", {1}, StoreMode::kRemove, kDeleted | kDraft);
  EXPECT_EQ(Files("cur"), std::vector<std::string>{"1.a.h:2,Rab"});

  // A reopened store sees the same (no outside change detected).
  s.reset();
  auto s2 = Open();
  auto again = Select(*s2, "INBOX");
  ASSERT_EQ(again.messages.size(), 1u);
  EXPECT_EQ(again.messages[0].flags, kAnswered);
  EXPECT_EQ(again.state.highest_modseq,
            s2->Status("INBOX")->state.highest_modseq);
}

TEST_F(StoreImapTest, StoreFindsFileRenamedByAnotherProgram) {
  auto s = Open();
  Put("new/1.a.h", "a\n");
  Select(*s, "INBOX");
  // mutt marks it read after our last sync; our STORE adds \Flagged on top.
  fs::rename(path + "/new/1.a.h", path + "/cur/1.a.h:2,S");
  auto r = Store(*s, "INBOX", {1}, StoreMode::kAdd, kFlagged);
  ASSERT_EQ(r.updated.size(), 1u);
  EXPECT_EQ(r.updated[0].flags, kSeen | kFlagged);
  EXPECT_EQ(Files("cur"), std::vector<std::string>{"1.a.h:2,FS"});
  // Gone meanwhile: nothing to store, no error.
  fs::remove(path + "/cur/1.a.h:2,FS");
  auto gone = Store(*s, "INBOX", {1}, StoreMode::kAdd, kDeleted);
  EXPECT_TRUE(gone.updated.empty());
}

TEST_F(StoreImapTest, UnchangedSince) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n");
  auto b = Append(*s, "INBOX", "b\r\n");
  auto snap = Select(*s, "INBOX");
  uint64_t ms_a = snap.messages[0].modseq, ms_b = snap.messages[1].modseq;
  ASSERT_LT(ms_a, ms_b);
  // RFC 7162 3.1.3: b changed after ms_a, so only a is stored.
  auto r = Store(*s, "INBOX", {a.uid, b.uid}, StoreMode::kAdd, kSeen, {}, ms_a);
  EXPECT_EQ(r.failed, (std::vector<uint32_t>{b.uid}));
  ASSERT_EQ(r.updated.size(), 1u);
  EXPECT_EQ(r.updated[0].uid, a.uid);
  EXPECT_GT(r.updated[0].modseq, ms_b);
  EXPECT_EQ(r.highest_modseq, r.updated[0].modseq);
  // Stale now for a as well.
  auto r2 = Store(*s, "INBOX", {a.uid}, StoreMode::kAdd, kFlagged, {}, ms_b);
  EXPECT_EQ(r2.failed, (std::vector<uint32_t>{a.uid}));
  EXPECT_TRUE(r2.updated.empty());
  // A no-op store does not move MODSEQ.
  auto r3 = Store(*s, "INBOX", {a.uid}, StoreMode::kAdd, kSeen);
  EXPECT_TRUE(r3.updated.empty());
  EXPECT_EQ(r3.highest_modseq, r.highest_modseq);
  // UNCHANGEDSINCE 0 fails everything (mod-sequences are positive).
  auto r4 =
      Store(*s, "INBOX", {a.uid, b.uid}, StoreMode::kAdd, kDeleted, {}, 0);
  EXPECT_EQ(r4.failed.size(), 2u);
  // UIDs that do not exist are ignored.
  auto r5 = Store(*s, "INBOX", {999}, StoreMode::kAdd, kDeleted);
  EXPECT_TRUE(r5.updated.empty() && r5.failed.empty());
}

TEST_F(StoreImapTest, AppendWritesMaildirAndIndex) {
  auto s = Open();
  auto a = Append(*s, "Sent", "Subject: x\r\n\r\nbody\r\n", kSeen | kAnswered,
                  {"$label1"}, int64_t{1700000000});
  EXPECT_EQ(a.uid, 1u);
  auto status = s->Status("Sent");
  ASSERT_TRUE(status);
  EXPECT_EQ(a.uidvalidity, status->state.uidvalidity);
  auto files = Files(".Sent/cur");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].find(":2,RS"), std::string::npos);
  EXPECT_TRUE(Files(".Sent/tmp").empty());
  std::ifstream in(path + "/.Sent/cur/" + files[0], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "Subject: x\n\nbody\n");  // LF on disk, like delivery
  auto mtime = fs::last_write_time(path + "/.Sent/cur/" + files[0]);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::file_clock::to_sys(mtime).time_since_epoch())
                  .count();
  EXPECT_EQ(secs, 1700000000);
  auto snap = Select(*s, "Sent");
  ASSERT_EQ(snap.messages.size(), 1u);
  EXPECT_EQ(snap.messages[0].size, 20u);  // as sent, CRLF
  EXPECT_EQ(snap.messages[0].internal_date, 1700000000);
  EXPECT_EQ(snap.messages[0].keywords, (std::vector<std::string>{"$label1"}));
  EXPECT_EQ(snap.messages[0].flags, kSeen | kAnswered);
  auto b = Append(*s, "Sent", "x\r\n");
  EXPECT_EQ(b.uid, 2u);

  AppendRequest req;
  req.message = "x\r\n";
  auto missing = s->Append("NoSuchFolder", req);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);  // -> [TRYCREATE]
  EXPECT_TRUE(Files("tmp").empty());
}

TEST_F(StoreImapTest, StreamedMultiAppend) {
  auto s = Open();
  auto one = s->BeginAppend("Drafts");
  ASSERT_TRUE(one) << one.error().message;
  // CRLF split across chunks, and a lone CR kept.
  for (std::string_view chunk : {"Subject: a\r", "\n\r", "\nbody\rx\r", "\n"}) {
    ASSERT_TRUE((*one)->Write(chunk));
  }
  auto two = s->BeginAppend("Drafts");
  ASSERT_TRUE(two);
  ASSERT_TRUE((*two)->Write("second\r\n"));
  EXPECT_EQ(Files(".Drafts/tmp").size(), 2u);  // staged, not visible
  EXPECT_TRUE(Select(*s, "Drafts").messages.empty());
  std::vector<StagedAppend> batch;
  batch.push_back({std::move(*one), AppendOptions{kDraft, {}, int64_t{1000}}});
  batch.push_back({std::move(*two), AppendOptions{0, {"Todo"}, std::nullopt}});
  auto done = s->CommitAppend("Drafts", std::move(batch));
  ASSERT_TRUE(done) << done.error().message;
  ASSERT_EQ(done->size(), 2u);
  EXPECT_EQ((*done)[0].uid, 1u);
  EXPECT_EQ((*done)[1].uid, 2u);
  EXPECT_TRUE(Files(".Drafts/tmp").empty());
  auto snap = Select(*s, "Drafts");
  ASSERT_EQ(snap.messages.size(), 2u);
  EXPECT_EQ(snap.messages[0].flags, kDraft);
  EXPECT_EQ(snap.messages[0].internal_date, 1000);
  EXPECT_EQ(snap.messages[0].modseq, snap.messages[1].modseq);  // one change
  auto fd = s->OpenMessage("Drafts", 1);
  ASSERT_TRUE(fd);
  EXPECT_EQ(ReadAll(fd->get()), "Subject: a\n\nbody\rx\n");
  EXPECT_EQ(snap.messages[0].size, 22u);  // as sent again: 19 + 3 CRs

  // A stage dropped without commit leaves nothing; one for another folder
  // is refused, and nothing of the batch is appended.
  {
    auto dropped = s->BeginAppend("Drafts");
    ASSERT_TRUE(dropped);
  }
  EXPECT_TRUE(Files(".Drafts/tmp").empty());
  auto good = s->BeginAppend("Drafts");
  auto wrong = s->BeginAppend("Sent");
  ASSERT_TRUE(good && wrong);
  std::vector<StagedAppend> mixed;
  mixed.push_back({std::move(*good), {}});
  mixed.push_back({std::move(*wrong), {}});
  auto refused = s->CommitAppend("Drafts", std::move(mixed));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EINVAL);
  EXPECT_EQ(Select(*s, "Drafts").messages.size(), 2u);
  EXPECT_TRUE(Files(".Drafts/tmp").empty());
  EXPECT_TRUE(Files(".Sent/tmp").empty());
  auto missing = s->BeginAppend("Nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
}

TEST_F(StoreImapTest, CopyKeepsFlagsAndMapsUids) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n", kSeen, {"Work"}, int64_t{1600000000});
  auto b = Append(*s, "INBOX", "b\r\n", kFlagged);
  Append(*s, "Trash", "already\r\n");
  auto c = s->Copy("INBOX", {b.uid, a.uid, 77}, "Trash");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->source_uids, (std::vector<uint32_t>{a.uid, b.uid}));
  EXPECT_EQ(c->target_uids, (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(c->uidvalidity, s->Status("Trash")->state.uidvalidity);
  auto trash = Select(*s, "Trash");
  ASSERT_EQ(trash.messages.size(), 3u);
  EXPECT_EQ(trash.messages[1].flags, kSeen);
  EXPECT_EQ(trash.messages[1].keywords, (std::vector<std::string>{"Work"}));
  EXPECT_EQ(trash.messages[1].internal_date, 1600000000);
  EXPECT_EQ(trash.messages[2].flags, kFlagged);
  auto fd = s->OpenMessage("Trash", 3);
  ASSERT_TRUE(fd);
  EXPECT_EQ(ReadAll(fd->get()), "b\n");
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);  // source unchanged
  // The copy is its own message: flags change separately.
  Store(*s, "Trash", {3}, StoreMode::kAdd, kDeleted);
  EXPECT_EQ(Select(*s, "INBOX").messages[1].flags, kFlagged);
  // Into the same folder: new UIDs there.
  auto self = s->Copy("INBOX", {a.uid}, "INBOX");
  ASSERT_TRUE(self);
  EXPECT_EQ(self->target_uids, (std::vector<uint32_t>{3}));
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 3u);
  auto none = s->Copy("INBOX", {a.uid}, "Nope");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ENOENT);
}

TEST_F(StoreImapTest, MoveExpungesInSource) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n", kSeen);
  auto b = Append(*s, "INBOX", "b\r\n");
  uint64_t before = Select(*s, "INBOX").state.highest_modseq;
  auto m = s->Move("INBOX", {a.uid}, "Junk");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->source_uids, (std::vector<uint32_t>{a.uid}));
  EXPECT_EQ(m->target_uids, (std::vector<uint32_t>{1}));
  auto ch = s->Sync("INBOX", before);
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->expunged, (std::vector<uint32_t>{a.uid}));
  EXPECT_EQ(Uids(Select(*s, "INBOX").messages), (std::vector<uint32_t>{b.uid}));
  auto junk = Select(*s, "Junk");
  ASSERT_EQ(junk.messages.size(), 1u);
  EXPECT_EQ(junk.messages[0].flags, kSeen);
  EXPECT_EQ(Files(".Junk/cur").size(), 1u);
  EXPECT_EQ(Files("cur").size(), 1u);
  // Moved files keep their content.
  auto fd = s->OpenMessage("Junk", 1);
  ASSERT_TRUE(fd);
  EXPECT_EQ(ReadAll(fd->get()), "a\n");
}

TEST_F(StoreImapTest, ExpungeAndUidExpunge) {
  auto s = Open();
  for (int i = 0; i < 4; ++i)
    Append(*s, "INBOX", "m" + std::to_string(i) + "\r\n");
  Store(*s, "INBOX", {1, 2, 4}, StoreMode::kAdd, kDeleted);
  // RFC 4315 2.1: only the given UIDs, and only if \Deleted.
  auto some = s->Expunge("INBOX", std::vector<uint32_t>{2, 3});
  ASSERT_TRUE(some) << some.error().message;
  EXPECT_EQ(*some, (std::vector<uint32_t>{2}));
  auto all = s->Expunge("INBOX", std::nullopt);
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, (std::vector<uint32_t>{1, 4}));
  EXPECT_EQ(Uids(Select(*s, "INBOX").messages), (std::vector<uint32_t>{3}));
  EXPECT_EQ(Files("cur").size(), 1u);
  // \Deleted set by another program counts too.
  auto files = Files("cur");
  fs::rename(path + "/cur/" + files[0], path + "/cur/" + files[0] + "T");
  auto outside = s->Expunge("INBOX", std::nullopt);
  ASSERT_TRUE(outside);
  EXPECT_EQ(*outside, (std::vector<uint32_t>{3}));
  // UIDs are not reused, not even after a reopen of an empty folder.
  s.reset();
  auto s2 = Open();
  EXPECT_EQ(Append(*s2, "INBOX", "next\r\n").uid, 5u);
}

TEST_F(StoreImapTest, StatusCounts) {
  auto s = Open();
  Append(*s, "INBOX", "a\r\n", kSeen);
  Append(*s, "INBOX", "bb\r\n", kDeleted);
  Put("new/9.x.h", "ccc\n");  // delivered, not yet seen by the index
  auto st = s->Status("INBOX");
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->messages, 3u);
  EXPECT_EQ(st->unseen, 2u);
  EXPECT_EQ(st->deleted, 1u);
  EXPECT_EQ(st->size, 3u + 4u + 5u);
  EXPECT_EQ(st->state.uidnext, 4u);
  EXPECT_GT(st->state.highest_modseq, 1u);
  auto missing = s->Status("Nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
}

// A folder indexed in bulk (more new files than the reconcile counts at
// once) has no sizes until they are asked for; every way of asking gives
// the CRLF size and keeps it.
TEST_F(StoreImapTest, BulkIndexedSizesAreCountedWhenAsked) {
  auto s = Open();
  const int n = 100;  // above the reconcile's count-at-once limit
  uint64_t total = 0;
  std::vector<uint64_t> crlf;  // by UID - 1 (the oldest file first)
  for (int i = 0; i < n; ++i) {
    std::string body = "Subject: " + std::to_string(i) + "\n\n" + std::string(i, 'x') + "\n";
    crlf.push_back(body.size() + 3);  // three LFs become CRLF
    total += crlf.back();
    Put("cur/" + std::to_string(1000 + i) + ".M1.h,S=" + std::to_string(body.size()) +
            ":2,S",
        body, n - i);
  }
  Put("cur/2000.M1.h,W=77:2,", "named\n", 0);  // ",W=" is believed
  total += 77;
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), static_cast<size_t>(n + 1));
  EXPECT_EQ(snap.messages[0].size, kUnknownSize);
  EXPECT_EQ(snap.messages[n].size, 77u);
  EXPECT_NE(snap.messages[0].internal_date, 0);  // dates are known

  // STATUS without SIZE leaves them; with SIZE counts them all.
  auto quick = s->Status("INBOX", false);
  ASSERT_TRUE(quick) << quick.error().message;
  EXPECT_EQ(quick->messages, static_cast<uint32_t>(n + 1));
  EXPECT_EQ(Select(*s, "INBOX").messages[1].size, kUnknownSize);

  // Sizes() counts those asked for and keeps them.
  auto some = s->Sizes("INBOX", {3, 1, 2, static_cast<uint32_t>(n + 1), 9999});
  ASSERT_TRUE(some) << some.error().message;
  ASSERT_EQ(some->size(), 3u);  // the named one had one; 9999 is no message
  EXPECT_EQ((*some)[0], (std::pair<uint32_t, uint64_t>{1, crlf[0]}));
  EXPECT_EQ((*some)[2], (std::pair<uint32_t, uint64_t>{3, crlf[2]}));
  auto again = Select(*s, "INBOX");
  EXPECT_EQ(again.messages[0].size, crlf[0]);
  EXPECT_EQ(again.messages[3].size, kUnknownSize);
  // What a session counted itself.
  ASSERT_TRUE(s->SaveSizes("INBOX", {{4, 12345}}));
  EXPECT_EQ(Select(*s, "INBOX").messages[3].size, 12345u);
  total = total - crlf[3] + 12345;  // message 4 is now believed to be that large

  auto st = s->Status("INBOX");
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->size, total);
  for (const MessageMeta& m : Select(*s, "INBOX").messages) EXPECT_NE(m.size, kUnknownSize);

  // A delivery of a few is counted at once.
  Put("new/3000.M1.h", "late\n");
  auto late = Select(*s, "INBOX");
  EXPECT_EQ(late.messages.back().size, 6u);
}

// OpenMessage() along a run of UIDs reads the names of the next ones at
// once; a name gone stale (a flag change renamed the file, another program
// moved it) still opens the message.
TEST_F(StoreImapTest, OpenMessageAfterRenames) {
  auto s = Open();
  for (int i = 0; i < 5; ++i) {
    Put("new/" + std::to_string(10 + i) + ".M1.h", "m" + std::to_string(i) + "\n", 10 - i);
  }
  Select(*s, "INBOX");
  auto one = s->OpenMessage("INBOX", 1);
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(ReadAll(one->get()), "m0\n");
  Store(*s, "INBOX", {2}, StoreMode::kAdd, kSeen);
  fs::rename(path + "/new/12.M1.h", path + "/cur/12.M1.h:2,F");
  for (uint32_t uid = 2; uid <= 3; ++uid) {
    auto fd = s->OpenMessage("INBOX", uid);
    ASSERT_TRUE(fd) << uid << ": " << fd.error().message;
    EXPECT_EQ(ReadAll(fd->get()), "m" + std::to_string(uid - 1) + "\n");
  }
  Append(*s, "INBOX", "six\r\n");
  auto six = s->OpenMessage("INBOX", 6);
  ASSERT_TRUE(six) << six.error().message;
  EXPECT_EQ(ReadAll(six->get()), "six\n");
  auto none = s->OpenMessage("INBOX", 7);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ENOENT);
}

TEST_F(StoreImapTest, CreateRenameDeleteFolders) {
  auto s = Open();
  ASSERT_TRUE(s->CreateFolder("Projects/Tern/2026", SpecialUse::kNone));
  auto folders = List(*s);
  EXPECT_TRUE(folders.count("Projects"));
  EXPECT_TRUE(folders.count("Projects/Tern"));
  EXPECT_TRUE(folders["Projects"].has_children);
  EXPECT_FALSE(folders["Projects/Tern/2026"].has_children);
  EXPECT_TRUE(fs::is_directory(path + "/.Projects.Tern.2026/cur"));
  EXPECT_EQ(s->CreateFolder("Projects", SpecialUse::kNone).error().code,
            EEXIST);
  EXPECT_EQ(s->CreateFolder("inbox", SpecialUse::kNone).error().code, EEXIST);
  EXPECT_EQ(s->CreateFolder("a//b", SpecialUse::kNone).error().code, EINVAL);
  ASSERT_TRUE(s->CreateFolder("Archive", SpecialUse::kArchive));
  EXPECT_EQ(List(*s)["Archive"].special_use, SpecialUse::kArchive);

  auto a = Append(*s, "Projects/Tern", "x\r\n");
  uint32_t validity = s->Status("Projects/Tern")->state.uidvalidity;
  // RFC 9051 6.3.6: inferiors go along; UIDs and UIDVALIDITY stay.
  ASSERT_TRUE(s->RenameFolder("Projects", "Old/Projects"));
  folders = List(*s);
  EXPECT_FALSE(folders.count("Projects"));
  EXPECT_TRUE(folders.count("Old"));
  EXPECT_TRUE(folders.count("Old/Projects/Tern/2026"));
  EXPECT_TRUE(fs::is_directory(path + "/.Old.Projects.Tern"));
  EXPECT_FALSE(fs::exists(path + "/.Projects"));
  auto moved = s->Status("Old/Projects/Tern");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->state.uidvalidity, validity);
  EXPECT_EQ(Uids(Select(*s, "Old/Projects/Tern").messages),
            (std::vector<uint32_t>{a.uid}));
  EXPECT_EQ(s->RenameFolder("Nope", "X").error().code, ENOENT);
  EXPECT_EQ(s->RenameFolder("Old", "Sent").error().code, EEXIST);
  EXPECT_EQ(s->RenameFolder("Old", "Old/Sub").error().code, EINVAL);

  // RFC 9051 6.3.5: INBOX stays; a folder with inferiors cannot go first.
  EXPECT_EQ(s->DeleteFolder("INBOX").error().code, EPERM);
  EXPECT_EQ(s->DeleteFolder("Old/Projects").error().code, ENOTEMPTY);
  ASSERT_TRUE(s->DeleteFolder("Old/Projects/Tern/2026"));
  ASSERT_TRUE(s->DeleteFolder("Old/Projects/Tern"));
  EXPECT_FALSE(fs::exists(path + "/.Old.Projects.Tern"));
  EXPECT_EQ(s->DeleteFolder("Old/Projects/Tern").error().code, ENOENT);
  // Created again: a greater UIDVALIDITY (RFC 9051 2.3.1.1), UIDs from 1.
  ASSERT_TRUE(s->CreateFolder("Old/Projects/Tern", SpecialUse::kNone));
  auto fresh = s->Status("Old/Projects/Tern");
  ASSERT_TRUE(fresh);
  EXPECT_GT(fresh->state.uidvalidity, validity);
  EXPECT_EQ(fresh->state.uidnext, 1u);
  for (auto& e : fs::directory_iterator(path)) {
    EXPECT_NE(e.path().filename().string().rfind("tern-deleted.", 0), 0u);
  }
}

TEST_F(StoreImapTest, RenameInboxMovesItsMessages) {
  auto s = Open();
  Append(*s, "INBOX", "a\r\n", kSeen);
  Append(*s, "INBOX", "b\r\n");
  ASSERT_TRUE(s->RenameFolder("INBOX", "Old Mail"));
  EXPECT_TRUE(Select(*s, "INBOX").messages.empty());
  auto old = Select(*s, "Old Mail");
  ASSERT_EQ(old.messages.size(), 2u);
  EXPECT_EQ(old.messages[0].flags, kSeen);
}

TEST_F(StoreImapTest, NonAsciiAndEscapedNames) {
  auto s = Open();
  ASSERT_TRUE(s->CreateFolder("Ürün/日本語", SpecialUse::kNone));
  ASSERT_TRUE(s->CreateFolder("v1.2", SpecialUse::kNone));
  ASSERT_TRUE(s->CreateFolder("back\\slash", SpecialUse::kNone));
  EXPECT_TRUE(fs::is_directory(path + "/.Ürün.日本語/cur"));
  EXPECT_TRUE(fs::is_directory(path + "/.v1\\2e2/cur"));
  EXPECT_TRUE(fs::is_directory(path + "/.back\\5cslash/cur"));
  EXPECT_FALSE(fs::exists(path + "/.v1.2"));
  Append(*s, "v1.2", "x\r\n");
  Append(*s, "Ürün/日本語", "y\r\n");
  s.reset();
  auto s2 = Open();
  auto folders = List(*s2);
  EXPECT_TRUE(folders.count("Ürün"));
  EXPECT_TRUE(folders.count("Ürün/日本語"));
  EXPECT_TRUE(folders.count("v1.2"));
  EXPECT_FALSE(folders.count("v1"));
  EXPECT_TRUE(folders.count("back\\slash"));
  EXPECT_EQ(Select(*s2, "v1.2").messages.size(), 1u);
  ASSERT_TRUE(s2->RenameFolder("Ürün", "Çok"));
  EXPECT_EQ(Select(*s2, "Çok/日本語").messages.size(), 1u);
  EXPECT_FALSE(s2->CreateFolder("bad\xff", SpecialUse::kNone));
}

TEST_F(StoreImapTest, FoldersMadeOrRemovedByOtherPrograms) {
  auto s = Open();
  // mutt creates a Maildir++ folder and files a message there.
  for (const char* sub : {"cur", "new", "tmp"})
    fs::create_directories(path + "/.Lists.tern/" + sub);
  Put(".Lists.tern/cur/5.z.h:2,S", "list mail\n");
  auto folders = List(*s);
  EXPECT_TRUE(folders.count("Lists/tern"));
  auto snap = Select(*s, "Lists/tern");
  ASSERT_EQ(snap.messages.size(), 1u);
  EXPECT_EQ(snap.messages[0].flags, kSeen);
  // and removes it again.
  fs::remove_all(path + "/.Lists.tern");
  EXPECT_FALSE(List(*s).count("Lists/tern"));
  auto gone = s->Select("Lists/tern");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ENOENT);
  // A bare directory becomes a usable folder.
  fs::create_directories(path + "/.Bare");
  EXPECT_TRUE(List(*s).count("Bare"));
  EXPECT_EQ(Append(*s, "Bare", "x\r\n").uid, 1u);
  EXPECT_TRUE(fs::is_directory(path + "/.Bare/new"));
  // Made again by hand: a new UIDVALIDITY, since the old UIDs are lost.
  for (const char* sub : {"cur", "new", "tmp"})
    fs::create_directories(path + "/.Lists.tern/" + sub);
  auto again = Select(*s, "Lists/tern");
  EXPECT_GT(again.state.uidvalidity, snap.state.uidvalidity);
}

TEST_F(StoreImapTest, Subscriptions) {
  auto s = Open();
  ASSERT_TRUE(s->SetSubscribed("Sent", true));
  ASSERT_TRUE(s->SetSubscribed("inbox", true));
  ASSERT_TRUE(
      s->SetSubscribed("Gone/Later", true));  // RFC 9051 6.3.7: need not exist
  ASSERT_TRUE(s->SetSubscribed("Sent", true));
  auto subs = s->Subscriptions();
  ASSERT_TRUE(subs);
  EXPECT_EQ(*subs, (std::vector<std::string>{"Gone/Later", "INBOX", "Sent"}));
  EXPECT_TRUE(List(*s)["Sent"].subscribed);
  EXPECT_FALSE(List(*s)["Trash"].subscribed);
  ASSERT_TRUE(s->SetSubscribed("Gone/Later", false));
  s.reset();
  auto s2 = Open();
  EXPECT_EQ(*s2->Subscriptions(), (std::vector<std::string>{"INBOX", "Sent"}));
  EXPECT_TRUE(fs::exists(path + "/" + kSubscriptionsFile));
}

TEST_F(StoreImapTest, TwoSessionsShareTheIndex) {
  auto one = Open();
  auto two = Open();
  auto snap = Select(*two, "INBOX");
  auto a = Append(*one, "INBOX", "a\r\n");
  Store(*one, "INBOX", {a.uid}, StoreMode::kAdd, kSeen);
  auto ch = two->Sync("INBOX", snap.state.highest_modseq);
  ASSERT_TRUE(ch);
  ASSERT_EQ(ch->changed.size(), 1u);
  EXPECT_EQ(ch->changed[0].uid, a.uid);
  EXPECT_EQ(ch->changed[0].flags, kSeen);
  auto b = Append(*two, "INBOX", "b\r\n");
  EXPECT_EQ(b.uid, a.uid + 1);
}

// --- crash states: what a kill -9 between two steps leaves on disk -------

TEST_F(StoreImapTest, CrashAfterAppendLinkBeforeCommit) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n");
  // Append's steps: tmp/ + fsync + mtime, link into cur/ with the flags,
  // sync cur/, then the commit. Killed before the commit: the file is in
  // cur/ with no row.
  Put("cur/1700000000.M1P1Q1I.host:2,FS", "crashed\n");
  fs::last_write_time(
      path + "/cur/1700000000.M1P1Q1I.host:2,FS",
      std::chrono::file_clock::from_sys(
          std::chrono::sys_seconds(std::chrono::seconds(1700000000))));
  // and a half-written file in tmp/ of an even earlier attempt, left long ago.
  Put("tmp/1600000000.M1P1Q0I.host", "partial", 0);
  auto old = fs::file_time_type::clock::now() - std::chrono::hours(48);
  fs::last_write_time(path + "/tmp/1600000000.M1P1Q0I.host", old);
  struct timespec times[2] = {{1600000000, 0}, {1600000000, 0}};
  ::utimensat(AT_FDCWD, (path + "/tmp/1600000000.M1P1Q0I.host").c_str(), times,
              0);
  s.reset();
  auto s2 = Open();
  auto snap = Select(*s2, "INBOX");
  ASSERT_EQ(snap.messages.size(), 2u);
  EXPECT_EQ(snap.messages[0].uid, a.uid);
  EXPECT_EQ(snap.messages[1].uid, a.uid + 1);  // the next UID, never an old one
  EXPECT_EQ(snap.messages[1].flags, kSeen | kFlagged);
  EXPECT_EQ(snap.messages[1].internal_date, 1700000000);  // from the mtime
  EXPECT_TRUE(Files("tmp").empty());  // Maildir's 36-hour rule
}

TEST_F(StoreImapTest, CrashAfterStoreRenameBeforeCommit) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n");
  uint64_t before = Select(*s, "INBOX").state.highest_modseq;
  // StoreFlags renames first, commits second. Killed in between: the name
  // has the flags, the index not. The name wins (the client got no OK, so
  // either outcome is allowed; this one keeps both readers in agreement).
  auto files = Files("cur");
  ASSERT_EQ(files.size(), 1u);
  fs::rename(path + "/cur/" + files[0],
             path + "/cur/" + std::string(UniqueOf(files[0])) + ":2,ST");
  s.reset();
  auto s2 = Open();
  auto ch = s2->Sync("INBOX", before);
  ASSERT_TRUE(ch);
  ASSERT_EQ(ch->changed.size(), 1u);
  EXPECT_EQ(ch->changed[0].uid, a.uid);
  EXPECT_EQ(ch->changed[0].flags, kSeen | kDeleted);
  EXPECT_GT(ch->changed[0].modseq, before);
}

TEST_F(StoreImapTest, CrashAfterExpungeUnlinkBeforeCommit) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n");
  auto b = Append(*s, "INBOX", "b\r\n");
  uint64_t before = Select(*s, "INBOX").state.highest_modseq;
  auto p = s->MessagePath("INBOX", b.uid);
  ASSERT_TRUE(p);
  fs::remove(path + "/" + *p);  // unlinked, row still there
  s.reset();
  auto s2 = Open();
  auto ch = s2->Sync("INBOX", before);
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->expunged, (std::vector<uint32_t>{b.uid}));
  EXPECT_EQ(Uids(Select(*s2, "INBOX").messages),
            (std::vector<uint32_t>{a.uid}));
  EXPECT_EQ(Append(*s2, "INBOX", "c\r\n").uid,
            b.uid + 1);  // b's UID is not reused
}

TEST_F(StoreImapTest, CrashDuringMove) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "a\r\n", kFlagged);
  Append(*s, "Trash", "t\r\n");
  // Move renames into the target's cur/ and commits both folders' rows
  // together. Killed before the commit: the file is in .Trash, the rows
  // say INBOX.
  auto p = s->MessagePath("INBOX", a.uid);
  ASSERT_TRUE(p);
  fs::rename(path + "/" + *p, path + "/.Trash/cur/1.moved.h:2,F");
  s.reset();
  auto s2 = Open();
  EXPECT_TRUE(Select(*s2, "INBOX").messages.empty());
  auto trash = Select(*s2, "Trash");
  ASSERT_EQ(trash.messages.size(), 2u);
  EXPECT_EQ(trash.messages[1].uid, 2u);
  EXPECT_EQ(trash.messages[1].flags, kFlagged);
  auto fd = s2->OpenMessage("Trash", 2);
  ASSERT_TRUE(fd);
  EXPECT_EQ(ReadAll(fd->get()), "a\n");  // neither lost nor doubled
}

TEST_F(StoreImapTest, CrashDuringDeleteFolder) {
  auto s = Open();
  ASSERT_TRUE(s->CreateFolder("Doomed", SpecialUse::kNone));
  Append(*s, "Doomed", "x\r\n");
  // DeleteFolder hides the directory, then forgets the rows, then removes
  // the files. Killed after the hiding rename:
  fs::rename(path + "/.Doomed", path + "/tern-deleted.1.x");
  s.reset();
  auto s2 = Open();
  EXPECT_FALSE(fs::exists(path + "/tern-deleted.1.x"));
  EXPECT_FALSE(List(*s2).count("Doomed"));
  EXPECT_EQ(s2->Status("Doomed").error().code, ENOENT);
}

TEST_F(StoreImapTest, CrashDuringCreateFolder) {
  auto s = Open();
  s.reset();
  // The directory is made before the row is committed.
  for (const char* sub : {"cur", "new", "tmp"})
    fs::create_directories(path + "/.Half/" + sub);
  auto s2 = Open();
  EXPECT_TRUE(List(*s2).count("Half"));
  EXPECT_EQ(s2->CreateFolder("Half", SpecialUse::kNone).error().code, EEXIST);
}

// A real kill -9 in the middle of APPENDs and STOREs. The child reports on
// a pipe each UID once APPEND returned, and each flag once STORE returned;
// after the kill every reported UID must hold its message and every
// reported flag must be set.
TEST_F(StoreImapTest, KillNineKeepsAcknowledgedWork) {
  { auto s = Open(); }
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto s = MaildirStore::Open(path);
      if (!s) ::_exit(2);
      for (int i = 0;; ++i) {
        std::string body = "round " + std::to_string(round) + " msg " +
                           std::to_string(i) + "\r\n";
        AppendRequest req;
        req.message = body;
        auto a = (*s)->Append("INBOX", req);
        if (!a) ::_exit(3);
        std::string line = "A " + std::to_string(a->uid) + " " +
                           std::to_string(round) + " " + std::to_string(i) +
                           "\n";
        if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(4);
        StoreRequest st;
        st.uids = {a->uid};
        st.mode = StoreMode::kAdd;
        st.flags = kFlagged;
        auto r = (*s)->StoreFlags("INBOX", st);
        if (!r) ::_exit(5);
        line = "F " + std::to_string(a->uid) + "\n";
        if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(4);
        if (i % 3 == 1) {
          // Every third message is deleted and expunged again.
          st.flags = kDeleted;
          if (!(*s)->StoreFlags("INBOX", st)) ::_exit(5);
          auto e = (*s)->Expunge("INBOX", std::vector<uint32_t>{a->uid});
          if (!e || e->size() != 1) ::_exit(6);
          line = "E " + std::to_string(a->uid) + "\n";
          if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(4);
        } else if (i % 3 == 2) {
          // and every other third is moved to Trash.
          auto m = (*s)->Move("INBOX", {a->uid}, "Trash");
          if (!m || m->target_uids.size() != 1) ::_exit(7);
          line = "M " + std::to_string(a->uid) + " " +
                 std::to_string(m->target_uids[0]) + " " +
                 std::to_string(round) + " " + std::to_string(i) + "\n";
          if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(4);
        }
      }
    }
    ::close(fds[1]);
    // Let it run for a while, then kill it at an arbitrary point.
    std::string got;
    char buf[4096];
    size_t acks = 0;
    while (acks < 20u + 7u * static_cast<size_t>(round)) {
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      acks = static_cast<size_t>(std::count(got.begin(), got.end(), '\n'));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child ended on its own: " << status;
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
      got.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);

    auto s = Open();
    auto snap = Select(*s, "INBOX");
    // What the child was told, per message of this round.
    struct Acked {
      uint32_t uid = 0;
      bool flagged = false, expunged = false, moved = false;
      uint32_t trash_uid = 0;
    };
    std::map<int, Acked> acked;  // by message number i
    std::map<uint32_t, int> number_of;
    std::istringstream lines(got);
    std::string line;
    size_t checked = 0;
    while (std::getline(lines, line)) {
      std::istringstream in(line);
      std::string kind;
      uint32_t uid = 0;
      in >> kind >> uid;
      if (kind == "A") {
        int r = 0, i = 0;
        in >> r >> i;
        // A UID is given out once, ever.
        EXPECT_TRUE(number_of.emplace(uid, i).second)
            << "UID " << uid << " reused";
        acked[i].uid = uid;
      } else if (kind == "F") {
        acked[number_of[uid]].flagged = true;
      } else if (kind == "E") {
        acked[number_of[uid]].expunged = true;
      } else if (kind == "M") {
        uint32_t target = 0;
        in >> target;
        acked[number_of[uid]].moved = true;
        acked[number_of[uid]].trash_uid = target;
      }
      ++checked;
    }
    std::map<std::string, int> copies;  // message text -> where found
    std::map<std::string, MessageMeta> meta_of;
    auto collect = [&](const std::string& folder) {
      for (auto& m : Select(*s, folder).messages) {
        auto fd = s->OpenMessage(folder, m.uid);
        ASSERT_TRUE(fd);
        std::string text = ReadAll(fd->get());
        ++copies[text];
        meta_of[folder + "\n" + text] = m;
      }
    };
    collect("INBOX");
    collect("Trash");
    for (auto& [i, a] : acked) {
      std::string text =
          "round " + std::to_string(round) + " msg " + std::to_string(i) + "\n";
      std::string in_inbox = "INBOX\n" + text, in_trash = "Trash\n" + text;
      if (a.expunged) {
        EXPECT_EQ(copies[text], 0) << "acknowledged expunge undone: " << i;
      } else if (a.moved) {
        EXPECT_EQ(copies[text], 1) << i;
        ASSERT_TRUE(meta_of.count(in_trash)) << "acknowledged move lost: " << i;
        EXPECT_EQ(meta_of[in_trash].uid, a.trash_uid);
        EXPECT_TRUE(meta_of[in_trash].flags & kFlagged);
      } else if (i % 3 == 0) {
        // Never to be removed: present, under its UID, with its flag.
        ASSERT_TRUE(meta_of.count(in_inbox)) << "acknowledged UID lost: " << i;
        EXPECT_EQ(meta_of[in_inbox].uid, a.uid) << "UID changed: " << i;
        if (a.flagged) {
          EXPECT_TRUE(meta_of[in_inbox].flags & kFlagged) << i;
        }
      } else {
        // Killed during its expunge or move: any outcome but a lost or
        // doubled move.
        EXPECT_LE(copies[text], 1) << i;
        if (i % 3 == 2) {
          EXPECT_EQ(copies[text], 1) << "move lost or doubled: " << i;
        }
        if (meta_of.count(in_inbox)) {
          EXPECT_EQ(meta_of[in_inbox].uid, a.uid);
          if (a.flagged) {
            EXPECT_TRUE(meta_of[in_inbox].flags & kFlagged);
          }
        }
      }
    }
    EXPECT_GE(checked, 20u);
    // UIDs strictly ascending, none twice, all below UIDNEXT.
    std::set<uint32_t> uids;
    for (auto& m : snap.messages) {
      EXPECT_TRUE(uids.insert(m.uid).second);
      EXPECT_LT(m.uid, snap.state.uidnext);
    }
  }
}

// --- POP3's Maildir code on the same mailbox ------------------------------

TEST_F(StoreImapTest, Pop3AndImapOnOneMailbox) {
  auto s = Open();
  auto a = Append(*s, "INBOX", "one\r\n");
  auto b = Append(*s, "INBOX", "two\r\n");
  Put("new/3.delivered.h", "three\n");
  uint64_t before = Select(*s, "INBOX").state.highest_modseq;

  auto md = Maildir::Open(path);
  ASSERT_TRUE(md);
  // POP3's lock does not stop IMAP.
  auto lock = MailboxLock::TryAcquire((*md)->fd());
  ASSERT_TRUE(lock && *lock);
  ASSERT_TRUE((*md)->Scan());
  ASSERT_EQ((*md)->messages().size(), 3u);  // the index files are not mail
  EXPECT_TRUE(fs::exists(path + "/tern-index"));
  EXPECT_TRUE(fs::exists(path + "/" + kImapIndexFile));
  // POP3 RETR marks the first seen, DELE+QUIT removes the second.
  size_t one = 0, two = 0;
  for (size_t i = 0; i < (*md)->messages().size(); ++i) {
    auto fd = (*md)->OpenMessage(i);
    ASSERT_TRUE(fd);
    std::string text = ReadAll(fd->get());
    if (text == "one\n") one = i;
    if (text == "two\n") two = i;
  }
  ASSERT_TRUE((*md)->MarkSeen(one));
  ASSERT_TRUE((*md)->Expunge({two}));

  auto ch = s->Sync("INBOX", before);
  ASSERT_TRUE(ch) << ch.error().message;
  EXPECT_EQ(ch->expunged,
            (std::vector<uint32_t>{b.uid}));  // POP3 DELE -> EXPUNGE
  ASSERT_EQ(ch->changed.size(), 1u);
  EXPECT_EQ(ch->changed[0].uid, a.uid);
  EXPECT_EQ(ch->changed[0].flags, kSeen);
  Store(*s, "INBOX", {a.uid}, StoreMode::kAdd, kFlagged);
  Append(*s, "INBOX", "four\r\n");

  // And POP3 still lists what IMAP changed, folders not included.
  auto md2 = Maildir::Open(path);
  ASSERT_TRUE(md2);
  ASSERT_TRUE((*md2)->Scan());
  EXPECT_EQ((*md2)->messages().size(), 3u);
}

}  // namespace
}  // namespace tern::store

namespace tern::store {
namespace {

TEST_F(StoreImapTest, PartCacheLivesAsLongAsItsMessage) {
  auto s = Open();
  Put("new/1.M1.h", "a\n", 30);
  Put("new/2.M1.h", "b\n", 20);
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 2u);
  ASSERT_TRUE(s->SavePartCache("INBOX", {{1, 3, "(\"text\")"}, {2, 3, "(\"x\")"},
                                         {7, 3, "no such message"}}));
  auto got = s->LoadPartCache("INBOX", 1, 100);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);  // UID 7 does not exist: not kept
  EXPECT_EQ((*got)[0].value, "(\"text\")");
  StoreRequest del;
  del.uids = {1};
  del.mode = StoreMode::kAdd;
  del.flags = kDeleted;
  ASSERT_TRUE(s->StoreFlags("INBOX", del));
  ASSERT_TRUE(s->Expunge("INBOX", std::nullopt));
  got = s->LoadPartCache("INBOX", 1, 100);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].uid, 2u);
  EXPECT_FALSE(s->LoadPartCache("Nope", 1, 2));
}

}  // namespace
}  // namespace tern::store

namespace tern::store {
namespace {

void AgeDir(const std::string& dir, int seconds) {
  fs::last_write_time(dir, fs::file_time_type::clock::now() - std::chrono::seconds(seconds));
}

// Unchanged directories are not listed again (their mtimes say so), and
// every kind of change still shows: a new file, a rename by another
// program, a removal.
TEST_F(StoreImapTest, ReconcileSkipsUnchangedDirectoriesOnly) {
  auto s = Open();
  Put("new/1.M1.h", "a\n", 30);
  Put("new/2.M1.h", "b\n", 20);
  AgeDir(path + "/new", 10);
  AgeDir(path + "/cur", 10);
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);  // skipped: same mtimes
  Put("new/3.M1.h", "c\n");
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 3u);
  AgeDir(path + "/new", 5);
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 3u);
  fs::rename(path + "/new/1.M1.h", path + "/cur/1.M1.h:2,S");
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 3u);
  EXPECT_EQ(snap.messages[0].flags, kSeen);
  AgeDir(path + "/new", 5);
  AgeDir(path + "/cur", 5);
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 3u);
  fs::remove(path + "/cur/1.M1.h:2,S");
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);
  // Another store object of this process trusts the same verification.
  AgeDir(path + "/cur", 5);
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);
  auto other = Open();
  EXPECT_EQ(Select(*other, "INBOX").messages.size(), 2u);
}

// While cur/ keeps the mtime it agreed at, a delivery into new/ is
// reconciled from new/ alone: new files get the next UIDs, files gone from
// new/ are expunged, and cur/ is not even listed (a file slipped into it
// with its mtime put back is not seen until cur/'s mtime moves).
// A reconcile that changed the index trusts the directories' mtimes once
// its transaction commits: the next SELECT lists nothing. Shown by a file
// slipped in with the mtime put back, which only a listing would find.
TEST_F(StoreImapTest, ReconcileThatChangedTheIndexIsTrustedAfterCommit) {
  auto s = Open();
  Put("cur/1.M1.h:2,S", "a\n", 40);
  Put("cur/2.M1.h:2,", "b\n", 30);
  AgeDir(path + "/new", 10);
  AgeDir(path + "/cur", 10);
  auto before = fs::last_write_time(path + "/cur");
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);  // indexed: a change
  Put("cur/3.M1.h:2,", "c\n", 20);
  fs::last_write_time(path + "/cur", before);
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 2u);  // not listed
  AgeDir(path + "/cur", 5);  // any real change moves the mtime
  EXPECT_EQ(Select(*s, "INBOX").messages.size(), 3u);
}

TEST_F(StoreImapTest, ReconcileOfNewAlone) {
  auto s = Open();
  Put("cur/1.M1.h:2,S", "a\n", 40);
  Put("cur/2.M1.h:2,", "b\n", 30);
  AgeDir(path + "/new", 10);
  AgeDir(path + "/cur", 10);
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 2u);
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 2u);  // no change: agreed
  auto cur_time = fs::last_write_time(path + "/cur");
  Put("new/3.M1.h", "c\n", 5);
  Put("new/4.M1.h", "d\n", 4);
  auto snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 4u);
  EXPECT_EQ(snap.messages[2].uid, 3u);
  EXPECT_EQ(snap.messages[3].uid, 4u);
  EXPECT_EQ(snap.messages[0].flags, kSeen);
  // Not seen: cur/ still shows the mtime it agreed at.
  Put("cur/5.M1.h:2,", "e\n", 3);
  fs::last_write_time(path + "/cur", cur_time);
  fs::remove(path + "/new/3.M1.h");
  auto changes = s->Sync("INBOX", snap.messages[3].modseq);
  ASSERT_TRUE(changes) << changes.error().message;
  EXPECT_EQ(changes->expunged, (std::vector<uint32_t>{3}));
  EXPECT_TRUE(changes->changed.empty());
  // cur/'s mtime moves: the whole reconcile finds the file.
  AgeDir(path + "/cur", 2);
  snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 4u);
  EXPECT_EQ(snap.messages[3].uid, 5u);
  // A file in new/ that the index has in cur/ (another program's link
  // before its unlink): the whole reconcile, which lets cur/ win.
  AgeDir(path + "/new", 2);
  AgeDir(path + "/cur", 2);
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 4u);
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 4u);
  cur_time = fs::last_write_time(path + "/cur");
  fs::copy_file(path + "/cur/1.M1.h:2,S", path + "/new/1.M1.h");
  fs::last_write_time(path + "/cur", cur_time);
  snap = Select(*s, "INBOX");
  ASSERT_EQ(snap.messages.size(), 4u);
  EXPECT_EQ(snap.messages[0].uid, 1u);
  EXPECT_EQ(snap.messages[0].flags, kSeen);
}

}  // namespace
}  // namespace tern::store

namespace tern::store {
namespace {

std::vector<uint32_t> Found(MailStore& s, const std::string& folder, std::string_view needle,
                            TextField field = TextField::kText) {
  auto r = s.SearchText(folder, needle, field);
  EXPECT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r && *r) << "no index answer for " << needle;
  return r && *r ? **r : std::vector<uint32_t>{};
}

// The full-text index (schema 4): candidates by trigram, folded like the
// session's matcher or more; unindexed and incomplete messages are always
// candidates; expunge, folder deletion and reopening keep it right.
TEST_F(StoreImapTest, FullTextIndex) {
  auto s = Open();
  Put("new/1.M1.h", "a\n", 30);
  Put("new/2.M1.h", "b\n", 20);
  Put("new/3.M1.h", "c\n", 10);
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 3u);
  auto todo = s->UnindexedText("INBOX", 10);
  ASSERT_TRUE(todo);
  EXPECT_EQ(*todo, (std::vector<uint32_t>{1, 2, 3}));
  // Nothing indexed: everything is a candidate.
  EXPECT_EQ(Found(*s, "INBOX", "zebra"), (std::vector<uint32_t>{1, 2, 3}));
  ASSERT_TRUE(s->IndexText(
      "INBOX", {{1, "Subject: Hello Zebra\n", "body one", true},
                {2, "Subject: x\n", "Ein Ärger mit der ZEBRA-Herde", true},
                {9, "no such message", "zebra", true}}));
  todo = s->UnindexedText("INBOX", 10);
  ASSERT_TRUE(todo);
  EXPECT_EQ(*todo, (std::vector<uint32_t>{3}));
  ASSERT_TRUE(s->IndexText("INBOX", {{3, "", "", false}}));  // too large
  EXPECT_EQ(Found(*s, "INBOX", "zebra"), (std::vector<uint32_t>{1, 2, 3}));
  // BODY asks what TEXT asks (detail=none has no column filter): 1 has the
  // needle in its header only, a false candidate the session's check drops.
  EXPECT_EQ(Found(*s, "INBOX", "zebra", TextField::kBody),
            (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(Found(*s, "INBOX", "ärger", TextField::kBody), (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(Found(*s, "INBOX", "HELLO"), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(Found(*s, "INBOX", "lo z"), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(Found(*s, "INBOX", "\"quoted\""), (std::vector<uint32_t>{3}));
  // Needles the index cannot answer.
  const std::vector<std::string_view> unanswerable = {"ze", "", "\xC3", "ab\xFF", "ÄÄ",
                                                      std::string_view("ab\0", 3)};
  for (std::string_view n : unanswerable) {
    auto r = s->SearchText("INBOX", n, TextField::kText);
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r) << n;
  }
  // Latin-1 letters fold as in the session's matcher.
  EXPECT_EQ(Found(*s, "INBOX", "ÄRG", TextField::kBody), (std::vector<uint32_t>{2, 3}));
  // Malformed UTF-8 in the text does not hide a well-formed needle.
  ASSERT_TRUE(s->Select("INBOX"));
  Put("new/4.M1.h", "d\n");
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 4u);
  ASSERT_TRUE(s->IndexText("INBOX", {{4, "", "x\xC3\xA9t\xC3\xA9\x80\xFFy", true}}));
  EXPECT_EQ(Found(*s, "INBOX", "\xC3\xA9t\xC3\xA9", TextField::kBody),
            (std::vector<uint32_t>{3, 4}));
  EXPECT_EQ(Found(*s, "INBOX", "\xC3\x89T\xC3\x89", TextField::kBody), (std::vector<uint32_t>{3, 4}));
  // Expunge removes the text; reopening keeps the rest.
  Store(*s, "INBOX", {1}, StoreMode::kAdd, kDeleted);
  ASSERT_TRUE(s->Expunge("INBOX", std::nullopt));
  EXPECT_EQ(Found(*s, "INBOX", "zebra"), (std::vector<uint32_t>{2, 3}));
  s.reset();
  s = Open();
  EXPECT_EQ(Found(*s, "INBOX", "zebra"), (std::vector<uint32_t>{2, 3}));
  todo = s->UnindexedText("INBOX", 10);
  ASSERT_TRUE(todo);
  EXPECT_TRUE(todo->empty());
  // A deleted folder takes its text along; a new one of that name starts
  // empty.
  ASSERT_TRUE(s->CreateFolder("Work", SpecialUse::kNone));
  Append(*s, "Work", "Subject: zebra\r\n\r\nzebra\r\n");
  ASSERT_TRUE(s->IndexText("Work", {{1, "Subject: zebra\n", "zebra", true}}));
  EXPECT_EQ(Found(*s, "Work", "zebra"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Found(*s, "Work", "giraffe"), (std::vector<uint32_t>{}));
  ASSERT_TRUE(s->DeleteFolder("Work"));
  ASSERT_TRUE(s->CreateFolder("Work", SpecialUse::kNone));
  Append(*s, "Work", "Subject: other\r\n\r\nother\r\n");
  EXPECT_EQ(Found(*s, "Work", "giraffe"), (std::vector<uint32_t>{1}));  // unindexed
  ASSERT_TRUE(s->IndexText("Work", {{1, "Subject: other\n", "other", true}}));
  EXPECT_EQ(Found(*s, "Work", "zebra"), (std::vector<uint32_t>{}));
  EXPECT_FALSE(s->SearchText("Nope", "zebra", TextField::kText));
}

// Candidates are the messages that have every trigram of the needle,
// anywhere: a superset of those that have the needle.
TEST_F(StoreImapTest, FullTextCandidatesHaveEveryTrigram) {
  auto s = Open();
  Put("new/1.M1.h", "a\n", 20);
  Put("new/2.M1.h", "b\n", 10);
  ASSERT_EQ(Select(*s, "INBOX").messages.size(), 2u);
  std::string numbers;  // many different trigrams
  for (int i = 1000; i < 1300; ++i) numbers += std::to_string(i) + " ";
  ASSERT_TRUE(s->IndexText(
      "INBOX", {{1, "Subject: abcx\n", "bcde aaaa " + numbers, true},
                {2, "Subject: x\n", "ABCDE \"q\"\"", true}}));
  EXPECT_EQ(Found(*s, "INBOX", "abcde"), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(Found(*s, "INBOX", "xbcde"), (std::vector<uint32_t>{}));
  EXPECT_EQ(Found(*s, "INBOX", "aaaaaaa"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Found(*s, "INBOX", "\"q\"\""), (std::vector<uint32_t>{2}));
  EXPECT_EQ(Found(*s, "INBOX", "cde \"q"), (std::vector<uint32_t>{2}));
  EXPECT_EQ(Found(*s, "INBOX", "AND"), (std::vector<uint32_t>{}));
  EXPECT_EQ(Found(*s, "INBOX", "a OR b NOT c"), (std::vector<uint32_t>{}));
  // A long needle is one long AND, still answered.
  EXPECT_EQ(Found(*s, "INBOX", numbers), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Found(*s, "INBOX", numbers + "Z"), (std::vector<uint32_t>{}));
}

// An index of schema 2 gets the full-text tables at open and keeps its
// messages and UIDs.
TEST_F(StoreImapTest, SchemaTwoIndexIsUpgraded) {
  {
    auto s = Open();
    Append(*s, "INBOX", "Subject: old\r\n\r\nold mail\r\n");
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((path + "/tern-imap.sqlite").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "DROP TABLE fts; DROP TABLE textindex; PRAGMA user_version = 2;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = Open();
  ASSERT_TRUE(s);
  EXPECT_EQ(Uids(Select(*s, "INBOX").messages), (std::vector<uint32_t>{1}));
  auto todo = s->UnindexedText("INBOX", 10);
  ASSERT_TRUE(todo);
  EXPECT_EQ(*todo, (std::vector<uint32_t>{1}));
  ASSERT_TRUE(s->IndexText("INBOX", {{1, "Subject: old\n", "old mail", true}}));
  EXPECT_EQ(Found(*s, "INBOX", "OLD MAIL"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Found(*s, "INBOX", "new mail"), (std::vector<uint32_t>{}));
}

// Schema 3's `fts` kept trigram positions (detail=full): at open it is
// dropped and made anew without them, and every message is indexed again.
TEST_F(StoreImapTest, SchemaThreeFullTextIndexIsRebuilt) {
  {
    auto s = Open();
    Append(*s, "INBOX", "Subject: old\r\n\r\nold mail\r\n");
  }
  auto exec = [&](const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((path + "/tern-imap.sqlite").c_str(), &db),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  };
  auto query = [&](const char* sql) {
    sqlite3* db = nullptr;
    std::string out;
    EXPECT_EQ(sqlite3_open((path + "/tern-imap.sqlite").c_str(), &db),
              SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    if (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t != nullptr ? reinterpret_cast<const char*>(t) : "";
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  };
  // What schema 3 made, with the message indexed.
  exec(
      "DROP TABLE fts;"
      "CREATE VIRTUAL TABLE fts USING "
      "fts5(header, body, tokenize = 'trigram case_sensitive 0');"
      "INSERT INTO fts (rowid, header, body) "
      "  SELECT folder << 32 | uid, 'Subject: old', 'old mail' FROM messages;"
      "INSERT INTO textindex (folder, uid, complete) SELECT folder, uid, 1 "
      "FROM messages;"
      "PRAGMA user_version = 3;");
  auto s = Open();
  ASSERT_TRUE(s);
  EXPECT_EQ(query("PRAGMA user_version"), "4");
  EXPECT_NE(query("SELECT sql FROM sqlite_master WHERE name = 'fts'")
                .find("detail = none"),
            std::string::npos);
  EXPECT_EQ(query("SELECT count(*) FROM fts"), "0");
  EXPECT_EQ(Uids(Select(*s, "INBOX").messages), (std::vector<uint32_t>{1}));
  auto todo = s->UnindexedText("INBOX", 10);
  ASSERT_TRUE(todo);
  EXPECT_EQ(*todo, (std::vector<uint32_t>{1}));
  EXPECT_EQ(Found(*s, "INBOX", "new mail"),
            (std::vector<uint32_t>{1}));  // unindexed
  ASSERT_TRUE(s->IndexText("INBOX", {{1, "Subject: old\n", "old mail", true}}));
  EXPECT_EQ(Found(*s, "INBOX", "OLD MAIL"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Found(*s, "INBOX", "new mail"), (std::vector<uint32_t>{}));
  // Opening again changes nothing.
  s.reset();
  s = Open();
  ASSERT_TRUE(s);
  EXPECT_EQ(Found(*s, "INBOX", "OLD MAIL"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(query("SELECT count(*) FROM textindex"), "1");
}

}  // namespace
}  // namespace tern::store
