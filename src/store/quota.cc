// QuotaUsage: see quota.h.
#include "store/quota.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "common/unique_fd.h"

namespace tern::store {
namespace {

// ",S=1234" in a Maildir file name (before the ":2," info), or -1.
int64_t SizeInName(std::string_view name) {
  size_t colon = name.find(':');
  std::string_view base = name.substr(0, colon);
  size_t at = base.find(",S=");
  if (at == std::string_view::npos) return -1;
  int64_t v = 0;
  size_t i = at + 3;
  if (i >= base.size()) return -1;
  for (; i < base.size() && base[i] >= '0' && base[i] <= '9'; ++i) {
    v = v * 10 + (base[i] - '0');
    if (v > (int64_t{1} << 50)) return -1;
  }
  return v;
}

Result<uint64_t> ScanDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return uint64_t{0};
    return Err(dir + ": " + std::strerror(errno), errno);
  }
  uint64_t total = 0;
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    int64_t size = SizeInName(name);
    if (size < 0) {
      struct stat st;
      if (fstatat(dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
      size = st.st_size;
    }
    total += static_cast<uint64_t>(size);
  }
  closedir(d);
  return total;
}

}  // namespace

Result<uint64_t> ScanMaildirUsage(const std::string& maildir) {
  uint64_t total = 0;
  for (const char* sub : {"/cur", "/new"}) {
    auto n = ScanDir(maildir + sub);
    if (!n) return n;
    total += *n;
  }
  // Maildir++ folders: ".Name" directories with their own cur/ and new/.
  DIR* d = opendir(maildir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return total;
    return Err(maildir + ": " + std::strerror(errno), errno);
  }
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() < 2 || name[0] != '.' || name == "..") continue;
    for (const char* sub : {"/cur", "/new"}) {
      auto n = ScanDir(maildir + "/" + std::string(name) + sub);
      if (n) total += *n;
    }
  }
  closedir(d);
  return total;
}

Result<uint64_t> QuotaUsage::Usage(const std::string& maildir) {
  auto now = std::chrono::steady_clock::now();
  {
    MutexLock lock(mu_);
    auto it = cache_.find(maildir);
    if (it != cache_.end() && now - it->second.scanned < max_age_) {
      return it->second.octets;
    }
  }
  // Scanned without the lock: two scans of one Maildir at once only cost.
  auto n = ScanMaildirUsage(maildir);
  if (!n) return n;
  MutexLock lock(mu_);
  if (cache_.size() > 100000) cache_.clear();
  cache_[maildir] = Entry{*n, now};
  return *n;
}

void QuotaUsage::Adjust(const std::string& maildir, int64_t delta) {
  MutexLock lock(mu_);
  auto it = cache_.find(maildir);
  if (it == cache_.end()) return;
  if (delta < 0 && static_cast<uint64_t>(-delta) > it->second.octets) {
    it->second.octets = 0;
  } else {
    it->second.octets += delta;
  }
}

void QuotaUsage::Invalidate(const std::string& maildir) {
  MutexLock lock(mu_);
  cache_.erase(maildir);
}

}  // namespace tern::store
