// Small POSIX file helpers for the spool, Maildir and store code: whole
// writes that survive short writes and EINTR, directory creation and listing.
#include "common/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "common/unique_name.h"

namespace tern::io {

tl::unexpected<Error> ErrnoErr(std::string_view what, int err) {
  std::string message(what);
  message += ": ";
  // std::system_category().message is thread-safe, unlike strerror().
  message += std::system_category().message(err);
  return Err(std::move(message), err);
}

int WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

int PwriteAll(int fd, const void* data, size_t size, off_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return 0;
}

int WritevAll(int fd, struct iovec* iov, int count) {
  while (count > 0) {
    ssize_t n = ::writev(fd, iov, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    // Skip fully written buffers, then trim the partly written one.
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

int PreadAll(int fd, void* data, size_t size, off_t offset) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return ENODATA;  // the file is shorter than its header says
    p += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return 0;
}

Result<UniqueFd> OpenDir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoErr("open " + path, errno);
  return fd;
}

Result<UniqueFd> OpenDirAt(int dir_fd, const std::string& name) {
  UniqueFd fd(::openat(dir_fd, name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoErr("open " + name, errno);
  return fd;
}

Result<void> MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return Err("mkdir: empty path");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty()) continue;
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoErr("mkdir " + prefix, errno);
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoErr("stat " + path, errno);
  if (!S_ISDIR(st.st_mode)) return ErrnoErr("mkdir " + path, ENOTDIR);
  return {};
}

Result<std::vector<std::string>> ListDir(int dir_fd) {
  // A fresh open of "." rather than dup(): a dup shares the read offset,
  // which would make concurrent scans of one directory interfere.
  int dup_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return ErrnoErr("open directory", errno);
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    int err = errno;
    ::close(dup_fd);
    return ErrnoErr("fdopendir", err);
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return ErrnoErr("readdir", err);
  return names;
}

Result<void> AtomicWriteAt(int dir_fd, const std::string& name,
                           std::string_view data, bool sync) {
  std::string tmp = "." + name + "." + std::to_string(::getpid()) + "." +
                    std::to_string(NextUniqueNumber()) + ".tmp";
  UniqueFd fd(::openat(dir_fd, tmp.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return ErrnoErr("create " + tmp, errno);
  int err = WriteAll(fd.get(), data.data(), data.size());
  if (err == 0 && sync && ::fsync(fd.get()) != 0) err = errno;
  if (err == 0 && ::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) {
    err = errno;
  }
  if (err != 0) {
    ::unlinkat(dir_fd, tmp.c_str(), 0);
    return ErrnoErr("write " + name, err);
  }
  return {};
}

Result<std::string> ReadSmallFileAt(int dir_fd, const std::string& name,
                                    size_t max_size, int* err_out) {
  if (err_out) *err_out = 0;
  UniqueFd fd(
      ::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (err_out) *err_out = errno;
    return ErrnoErr("open " + name, errno);
  }
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (err_out) *err_out = errno;
      return ErrnoErr("read " + name, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size) {
      if (err_out) *err_out = EFBIG;
      return ErrnoErr("read " + name, EFBIG);
    }
  }
  return out;
}

}  // namespace tern::io
