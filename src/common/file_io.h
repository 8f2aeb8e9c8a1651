// Small POSIX file helpers for the spool, Maildir and store code: whole
// writes that survive short writes and EINTR, directory creation and
// listing, and errno to tern::Error conversion (the strerror text reaches
// SMTP replies/logs).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace tern::io {

// "what: strerror(err)", e.g. "write msg/X: No space left on device".
tl::unexpected<Error> ErrnoErr(std::string_view what, int err);

// Each returns 0 or an errno value; they retry EINTR and short writes.
int WriteAll(int fd, const void* data, size_t size);
int PwriteAll(int fd, const void* data, size_t size, off_t offset);
int WritevAll(int fd, struct iovec* iov, int count);
// Reads exactly `size` bytes at `offset`; EIO-like error when the file ends.
int PreadAll(int fd, void* data, size_t size, off_t offset);

Result<UniqueFd> OpenDir(const std::string& path);
Result<UniqueFd> OpenDirAt(int dir_fd, const std::string& name);
// mkdir -p; existing directories are fine.
Result<void> MkdirAll(const std::string& path, mode_t mode);
// Names in the directory except "." and "..".
Result<std::vector<std::string>> ListDir(int dir_fd);
// Writes `data` to a hidden temp file, optionally fsyncs it, then renames it
// over `name`, so readers see the old or the new content, never a mix.
Result<void> AtomicWriteAt(int dir_fd, const std::string& name,
                           std::string_view data, bool sync);
// Reads a whole (small) file; ENOENT is returned as errno via `*err`.
Result<std::string> ReadSmallFileAt(int dir_fd, const std::string& name,
                                    size_t max_size, int* err = nullptr);

}  // namespace tern::io
