#include "imap/server/text_indexer.h"

#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "imap/server/message.h"

namespace tern::imap {
namespace {

// Decoded text above this size (header or body) is not indexed: such a
// message is a candidate for every needle and read at each SEARCH.
constexpr size_t kIndexedTextLimit = 1 << 20;
// Messages read and indexed per write transaction.
constexpr size_t kIndexBatch = 256;
constexpr size_t kIndexBatchBytes = 16 << 20;  // text held before it is written

}  // namespace

bool IndexFolderText(store::MailStore& store, std::string_view folder,
                     std::chrono::steady_clock::time_point deadline,
                     const std::atomic<bool>* stop) {
  for (;;) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) return false;
    auto uids = store.UnindexedText(folder, kIndexBatch);
    if (!uids) return false;
    if (uids->empty()) return true;
    std::vector<store::TextIndexEntry> entries;
    size_t bytes = 0;
    for (uint32_t uid : *uids) {
      if (bytes > kIndexBatchBytes) break;  // the rest in the next round
      store::TextIndexEntry e;
      e.uid = uid;
      auto t = LoadMessage(store, folder, uid);
      if (t) {
        e.header = t->HeaderBlock();
        e.body = t->BodyText();
      }
      // Unreadable or too large: kept as a candidate for every needle, so
      // SEARCH reads it as it would without an index.
      if (!t || e.header.size() > kIndexedTextLimit || e.body.size() > kIndexedTextLimit) {
        e.header.clear();
        e.body.clear();
        e.complete = false;
      }
      bytes += e.header.size() + e.body.size();
      entries.push_back(std::move(e));
    }
    if (!store.IndexText(folder, entries)) return false;
  }
}

TextIndexer::~TextIndexer() {
  stop_.store(true);
  {
    MutexLock lock(mu_);
    cv_.NotifyAll();
  }
  if (thread_.joinable()) thread_.join();
}

void TextIndexer::Request(std::string key, std::string folder, Opener open) {
  MutexLock lock(mu_);
  if (stop_.load() || std::find(busy_.begin(), busy_.end(), key) != busy_.end()) return;
  busy_.push_back(key);
  queue_.push_back(Job{std::move(key), std::move(folder), std::move(open)});
  if (!started_) {
    started_ = true;
    thread_ = std::thread([this] { Run(); });
  }
  cv_.NotifyOne();
}

void TextIndexer::Run() {
  // Background work: the lowest CPU priority (nice 19) and the idle I/O
  // class for this thread only (Linux: both apply per thread), so sessions
  // and deliveries go first.
  pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19) != 0) {
    spdlog::debug("imap text index: setpriority: {}", errno);
  }
#if defined(SYS_ioprio_set)
  constexpr int kIoprioWhoProcess = 1, kIoprioClassIdle = 3, kIoprioClassShift = 13;
  ::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid, kIoprioClassIdle << kIoprioClassShift);
#endif
  for (;;) {
    Job job;
    {
      MutexLock lock(mu_);
      while (queue_.empty() && !stop_.load()) cv_.Wait(mu_);
      if (stop_.load()) return;
      job = std::move(queue_.front());
      queue_.erase(queue_.begin());
    }
    auto started = std::chrono::steady_clock::now();
    bool done = false;
    if (auto st = job.open(); st) {
      done = IndexFolderText(**st, job.folder, std::chrono::steady_clock::time_point::max(),
                             &stop_);
    } else {
      spdlog::warn("imap text index {}: {}", job.key, st.error().message);
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    spdlog::info("imap text index folder={} complete={} ms={}", job.key, done, ms);
    MutexLock lock(mu_);
    busy_.erase(std::remove(busy_.begin(), busy_.end(), job.key), busy_.end());
  }
}

}  // namespace tern::imap
