// Tests for the spool file pool: reuse, limits, clashes, draining, start.
#include "queue/file_pool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/file_io.h"
#include "queue/queue_test_util.h"

namespace tern::queue {
namespace {

using testing::CountFiles;
using testing::ReadFile;
using testing::TempDir;

class FilePoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() + "/msg");
    std::filesystem::create_directories(dir_.path() + "/free");
    msg_ = std::move(*io::OpenDir(dir_.path() + "/msg"));
    free_ = std::move(*io::OpenDir(dir_.path() + "/free"));
  }
  void Put(const std::string& id, size_t size) {
    std::ofstream(dir_.path() + "/msg/" + id, std::ios::binary)
        << std::string(size, 'o');
  }
  std::string Msg(const std::string& id) { return dir_.path() + "/msg/" + id; }
  size_t Free() { return CountFiles(dir_.path() + "/free"); }

  TempDir dir_;
  UniqueFd msg_, free_;
};

TEST_F(FilePoolTest, RemovedFileIsReusedWithItsOldSize) {
  FilePool pool(msg_.get(), free_.get(), {});
  Put("A", 500);
  struct stat before;
  ASSERT_EQ(::stat(Msg("A").c_str(), &before), 0);
  EXPECT_EQ(pool.Remove("A"), 0);
  EXPECT_FALSE(std::filesystem::exists(Msg("A")));
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_EQ(Free(), 1u);

  auto created = pool.Create("B");
  ASSERT_TRUE(created.fd);
  EXPECT_EQ(created.old_size, 500u);
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_EQ(Free(), 0u);
  struct stat after;
  ASSERT_EQ(::fstat(created.fd.get(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);  // the same inode, renamed
  // Open for writing at offset 0, not appending.
  ASSERT_EQ(::write(created.fd.get(), "new", 3), 3);
  EXPECT_EQ(ReadFile(Msg("B")).substr(0, 4), "newo");
}

TEST_F(FilePoolTest, EmptyPoolCreatesNewFilesExclusively) {
  FilePool pool(msg_.get(), free_.get(), {});
  auto created = pool.Create("A");
  ASSERT_TRUE(created.fd);
  EXPECT_EQ(created.old_size, 0u);
  auto clash = pool.Create("A");
  EXPECT_FALSE(clash.fd);
  EXPECT_EQ(errno, EEXIST);
}

TEST_F(FilePoolTest, ClashWithPooledFileKeepsItPooled) {
  FilePool pool(msg_.get(), free_.get(), {});
  Put("A", 10);
  Put("B", 10);
  ASSERT_EQ(pool.Remove("A"), 0);
  auto clash = pool.Create("B");
  EXPECT_FALSE(clash.fd);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_EQ(ReadFile(Msg("B")), std::string(10, 'o'));  // untouched
}

TEST_F(FilePoolTest, LimitsDeleteInsteadOfPooling) {
  FilePool::Limits limits;
  limits.max_files = 2;
  limits.max_bytes = 1000;
  limits.max_file_bytes = 600;
  FilePool pool(msg_.get(), free_.get(), limits);
  Put("big", 601);
  EXPECT_EQ(pool.Remove("big"), 0);
  EXPECT_EQ(pool.size(), 0u);  // too big for the pool: deleted
  EXPECT_FALSE(std::filesystem::exists(Msg("big")));
  Put("a", 500);
  Put("b", 500);
  Put("c", 1);
  Put("d", 1);
  EXPECT_EQ(pool.Remove("a"), 0);
  EXPECT_EQ(pool.Remove("b"), 0);
  EXPECT_EQ(pool.Remove("c"), 0);  // over max_bytes and max_files
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_EQ(Free(), 2u);
  EXPECT_EQ(CountFiles(dir_.path() + "/msg"), 1u);
  EXPECT_EQ(pool.Remove("missing"), ENOENT);
}

TEST_F(FilePoolTest, DrainDeletesEveryPooledFile) {
  FilePool pool(msg_.get(), free_.get(), {});
  for (const char* id : {"a", "b", "c"}) {
    Put(id, 100);
    ASSERT_EQ(pool.Remove(id), 0);
  }
  EXPECT_EQ(Free(), 3u);
  pool.Drain();
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_EQ(Free(), 0u);
  auto created = pool.Create("x");  // still works: a new file
  ASSERT_TRUE(created.fd);
  EXPECT_EQ(created.old_size, 0u);
}

TEST_F(FilePoolTest, LoadKeepsOurFilesAndRemovesStrangers) {
  {
    FilePool pool(msg_.get(), free_.get(), {});
    Put("a", 10);
    Put("b", 20);
    ASSERT_EQ(pool.Remove("a"), 0);
    ASSERT_EQ(pool.Remove("b"), 0);
  }
  std::ofstream(dir_.path() + "/free/stranger") << "x";
  std::ofstream(dir_.path() + "/free/f12x") << "x";
  FilePool pool(msg_.get(), free_.get(), {});
  pool.Load();
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_EQ(Free(), 2u);
  // New pool names do not collide with the loaded ones.
  Put("c", 5);
  ASSERT_EQ(pool.Remove("c"), 0);
  EXPECT_EQ(pool.size(), 3u);
  EXPECT_EQ(Free(), 3u);
}

}  // namespace
}  // namespace tern::queue
