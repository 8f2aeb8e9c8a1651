// Maildir++ delivery: writes copies into tmp/, syncs, renames into new/,
// syncs again; one syncfs() per file system per step for the whole batch.
#include "delivery/maildir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <mutex>
#include <utility>

#include "common/file_io.h"
#include "store/crlf.h"
#include "common/unique_name.h"

namespace tern::delivery {
namespace {

constexpr mode_t kDirMode = 0700;
constexpr size_t kCopyChunk = 256 * 1024;

// Opens (creating if needed) a directory below `parent` without following a
// symlink in its place.
// `shown` is the path below the mail root, for error messages.
Result<UniqueFd> OpenOrCreateDir(int parent, const std::string& name,
                                 const std::string& shown) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    UniqueFd fd(::openat(parent, name.c_str(),
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) return fd;
    if (errno != ENOENT || attempt > 0)
      return io::ErrnoErr("open " + shown, errno);
    if (::mkdirat(parent, name.c_str(), kDirMode) != 0 && errno != EEXIST) {
      return io::ErrnoErr("mkdir " + shown, errno);
    }
  }
  return io::ErrnoErr("open " + shown, ENOENT);
}

Result<void> CreateMaildirSubdirs(int maildir_fd) {
  for (const char* sub : {"tmp", "new", "cur"}) {
    if (::mkdirat(maildir_fd, sub, kDirMode) != 0 && errno != EEXIST) {
      return io::ErrnoErr(std::string("mkdir ") + sub, errno);
    }
  }
  return {};
}

std::string EscapeHost(std::string_view host) {
  std::string out;
  for (char c : host) {
    if (c == '/') {
      out += "\\057";
    } else if (c == ':') {
      out += "\\072";
    } else {
      out += c;
    }
  }
  return out;
}

// getpid() once per process instead of once per copy; a fork clears it.
std::atomic<pid_t> g_pid{0};

pid_t CachedPid() {
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid != 0) return pid;
  static std::once_flag once;
  std::call_once(once, [] {
    ::pthread_atfork(nullptr, nullptr,
                     [] { g_pid.store(0, std::memory_order_relaxed); });
  });
  pid = ::getpid();
  g_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

}  // namespace

std::string DeliveryHeaders(std::string_view sender, std::string_view mailbox) {
  std::string out;
  out.reserve(40 + sender.size() + mailbox.size());
  out += "Return-Path: <";
  out += sender;
  out += ">\nDelivered-To: ";
  out += mailbox;
  out += '\n';
  return out;
}

void LineEndConverter::Convert(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + 1);
  size_t i = 0;
  if (pending_cr_ && !in.empty()) {
    pending_cr_ = false;
    if (in.front() != '\n') out += '\r';  // a bare CR stays
  }
  while (i < in.size()) {
    size_t cr = in.find('\r', i);
    if (cr == std::string_view::npos) {
      out.append(in.substr(i));
      break;
    }
    out.append(in.substr(i, cr - i));
    if (cr + 1 == in.size()) {
      pending_cr_ = true;  // decided by the next chunk
    } else if (in[cr + 1] != '\n') {
      out += '\r';
    }
    i = cr + 1;
  }
}

void LineEndConverter::Finish(std::string& out) {
  if (pending_cr_) out += '\r';
  pending_cr_ = false;
}

std::string MaildirUniqueName(std::string_view hostname) {
  const pid_t pid = CachedPid();
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto usec_total =
      std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  std::string name =
      std::to_string(usec_total / 1000000) + ".M" +
      std::to_string(usec_total % 1000000) + "P" + std::to_string(pid) +
      "Q" + std::to_string(NextUniqueNumber()) + "." + EscapeHost(hostname);
  return name;
}

struct MaildirBatch::Copy {
  std::string dir;  // "<domain>/<local>/Maildir", for results and logs
  UniqueFd maildir_fd;
  UniqueFd file_fd;
  std::string tmp_name;  // relative to maildir_fd
  std::string new_name;
  dev_t dev = 0;
  bool in_progress = false;  // written, not failed, not yet finished
  bool renamed = false;
  Result<std::string> result;
};

MaildirBatch::MaildirBatch(int mail_root_fd, std::string hostname,
                           SyncFs sync)
    : mail_root_fd_(mail_root_fd),
      hostname_(std::move(hostname)),
      sync_(std::move(sync)) {
  if (!sync_) sync_ = [](int fd) { return ::syncfs(fd) == 0 ? 0 : errno; };
}

MaildirBatch::~MaildirBatch() {
  // Copies that never made it into new/ leave nothing behind in tmp/.
  for (Copy& c : copies_) {
    if (c.maildir_fd && !c.tmp_name.empty() && !c.renamed) {
      ::unlinkat(c.maildir_fd.get(), c.tmp_name.c_str(), 0);
    }
  }
}

void MaildirBatch::Fail(Copy& copy, tl::unexpected<Error> error) {
  copy.in_progress = false;
  if (copy.maildir_fd && !copy.tmp_name.empty() && !copy.renamed) {
    ::unlinkat(copy.maildir_fd.get(), copy.tmp_name.c_str(), 0);
    copy.tmp_name.clear();
  }
  copy.file_fd.Reset();
  copy.result = std::move(error);
}

size_t MaildirBatch::Add(const store::MailboxPath& mailbox,
                         std::string_view headers,
                         const MessageSource& source, std::string_view folder_dir) {
  copies_.emplace_back();
  Copy& c = copies_.back();
  c.dir = mailbox.domain + "/" + mailbox.local + "/Maildir";
  if (!folder_dir.empty()) c.dir += "/" + std::string(folder_dir);
  if (auto written = WriteCopy(c, mailbox, headers, source, folder_dir); !written) {
    Fail(c, tl::unexpected(written.error()));
  } else {
    c.in_progress = true;
  }
  return copies_.size() - 1;
}

Result<void> MaildirBatch::WriteCopy(Copy& c, const store::MailboxPath& mailbox,
                                     std::string_view headers,
                                     const MessageSource& source,
                                     std::string_view folder_dir) {
  auto domain_fd =
      OpenOrCreateDir(mail_root_fd_, mailbox.domain, mailbox.domain);
  if (!domain_fd) return tl::unexpected(domain_fd.error());
  auto user_fd = OpenOrCreateDir(domain_fd->get(), mailbox.local,
                                 mailbox.domain + "/" + mailbox.local);
  if (!user_fd) return tl::unexpected(user_fd.error());
  auto maildir_fd = OpenOrCreateDir(user_fd->get(), "Maildir", c.dir);
  if (!maildir_fd) return tl::unexpected(maildir_fd.error());
  if (!folder_dir.empty()) {
    // A Maildir++ folder: the same layout one level down.
    auto folder_fd =
        OpenOrCreateDir(maildir_fd->get(), std::string(folder_dir), c.dir);
    if (!folder_fd) return tl::unexpected(folder_fd.error());
    maildir_fd = std::move(folder_fd);
  }
  c.maildir_fd = std::move(*maildir_fd);

  std::string unique = MaildirUniqueName(hostname_);
  std::string tmp = "tmp/" + unique;
  c.file_fd.Reset(::openat(c.maildir_fd.get(), tmp.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!c.file_fd && errno == ENOENT) {
    // A new (or damaged) Maildir: create tmp/ new/ cur/ and try again.
    if (auto made = CreateMaildirSubdirs(c.maildir_fd.get()); !made)
      return made;
    c.file_fd.Reset(::openat(c.maildir_fd.get(), tmp.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  }
  if (!c.file_fd) return io::ErrnoErr("create " + c.dir + "/" + tmp, errno);
  c.tmp_name = tmp;

  uint64_t size = headers.size();
  // The size in CRLF form too, for the ",W=" of the name: IMAP's
  // RFC822.SIZE without reading the file again (Dovecot reads it too).
  store::CrlfSizer crlf;
  crlf.Feed(headers);
  int err = 0;
  if (source.lf_body != nullptr) {
    struct iovec iov[2] = {
        {const_cast<char*>(headers.data()), headers.size()},
        {const_cast<char*>(source.lf_body->data()), source.lf_body->size()}};
    err = io::WritevAll(c.file_fd.get(), iov, 2);
    size += source.lf_body->size();
    crlf.Feed(*source.lf_body);
  } else {
    // Large message: convert while copying so it never sits in memory.
    err = io::WriteAll(c.file_fd.get(), headers.data(), headers.size());
    auto chunk = std::make_unique<char[]>(kCopyChunk);
    LineEndConverter conv;
    std::string out;
    uint64_t left = source.length;
    off_t offset = static_cast<off_t>(source.offset);
    while (err == 0 && left > 0) {
      size_t n = left < kCopyChunk ? static_cast<size_t>(left) : kCopyChunk;
      err = io::PreadAll(source.fd, chunk.get(), n, offset);
      if (err != 0) break;
      out.clear();
      conv.Convert(std::string_view(chunk.get(), n), out);
      if (left == n) conv.Finish(out);
      err = io::WriteAll(c.file_fd.get(), out.data(), out.size());
      size += out.size();
      crlf.Feed(out);
      left -= n;
      offset += static_cast<off_t>(n);
    }
  }
  if (err != 0) return io::ErrnoErr("write " + c.dir + "/" + tmp, err);

  struct stat st;
  if (::fstat(c.file_fd.get(), &st) != 0) {
    return io::ErrnoErr("fstat " + c.dir + "/" + tmp, errno);
  }
  c.dev = st.st_dev;
  c.new_name = "new/" + unique + ",S=" + std::to_string(size) +
               ",W=" + std::to_string(crlf.Finish());
  return {};
}

void MaildirBatch::SyncAll(bool after_rename) {
  // syncfs() flushes a whole file system, so one call per device covers
  // every copy on it; on Linux >= 5.8 it also reports writeback errors
  // since the descriptor was opened. On error fall back to syncing each
  // copy on that device to find out which ones are really durable.
  std::vector<std::pair<dev_t, bool>> devices;  // device, syncfs ok
  for (Copy& c : copies_) {
    if (!c.in_progress) continue;
    auto it = devices.begin();
    while (it != devices.end() && it->first != c.dev) ++it;
    if (it == devices.end()) {
      bool ok = sync_(c.file_fd.get()) == 0;
      devices.emplace_back(c.dev, ok);
      it = devices.end() - 1;
    }
    if (it->second) continue;
    int err = 0;
    if (!after_rename) {
      if (::fsync(c.file_fd.get()) != 0) err = errno;
    } else {
      UniqueFd new_dir(::openat(c.maildir_fd.get(), "new",
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!new_dir || ::fsync(new_dir.get()) != 0) err = errno;
    }
    if (err != 0) Fail(c, io::ErrnoErr("sync " + c.dir, err));
  }
}

void MaildirBatch::Commit() {
  // Step 1: the data must be durable before the name appears in new/, so a
  // crash never exposes a partial file to readers (Maildir protocol).
  SyncAll(false);
  // Step 2: rename into new/.
  Link();
  // Step 3: the renames must be durable before the queue forgets the
  // message; otherwise a crash could lose the copy.
  SyncAll(true);
  Finalize(true);
}

void MaildirBatch::Link(bool keep_tmp) {
  auto move = [&](Copy& c) {
    return keep_tmp ? ::linkat(c.maildir_fd.get(), c.tmp_name.c_str(),
                               c.maildir_fd.get(), c.new_name.c_str(), 0)
                    : ::renameat(c.maildir_fd.get(), c.tmp_name.c_str(),
                                 c.maildir_fd.get(), c.new_name.c_str());
  };
  for (Copy& c : copies_) {
    if (!c.in_progress) continue;
    int rc = move(c);
    if (rc != 0 && errno == ENOENT) {
      // new/ may have been removed while tmp/ survived.
      (void)CreateMaildirSubdirs(c.maildir_fd.get());
      rc = move(c);
    }
    if (rc != 0) {
      Fail(c, io::ErrnoErr("rename into " + c.dir + "/new", errno));
      continue;
    }
    c.renamed = true;
  }
}

void MaildirBatch::Finalize(bool durable) {
  for (Copy& c : copies_) {
    if (!c.in_progress) continue;
    if (!durable) {
      // In new/ maybe, but not known to be durable: an error, so that the
      // caller keeps the message (a duplicate at worst).
      Fail(c, Err("sync " + c.dir + ": the flush failed"));
      continue;
    }
    c.in_progress = false;
    c.file_fd.Reset();
    c.result = c.dir + "/" + c.new_name;
  }
}

void MaildirBatch::DropTmpNames() {
  for (Copy& c : copies_) {
    if (c.renamed && c.maildir_fd && !c.tmp_name.empty()) {
      ::unlinkat(c.maildir_fd.get(), c.tmp_name.c_str(), 0);
      c.tmp_name.clear();
    }
  }
}

bool MaildirBatch::written(size_t index) const {
  return copies_[index].in_progress;
}

dev_t MaildirBatch::device(size_t index) const { return copies_[index].dev; }

std::string MaildirBatch::tmp_path(size_t index) const {
  return copies_[index].dir + "/" + copies_[index].tmp_name;
}

std::string MaildirBatch::new_path(size_t index) const {
  return copies_[index].dir + "/" + copies_[index].new_name;
}

const Result<std::string>& MaildirBatch::result(size_t index) const {
  return copies_[index].result;
}

}  // namespace tern::delivery
