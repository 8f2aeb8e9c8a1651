// Building the full-text index (MailStore::SearchText) of a folder: a
// few batches inline at SEARCH, the rest in the background.
//
// SEARCH TEXT or BODY in a folder whose messages are not all indexed
// indexes for a short while inline (IndexFolderText with a deadline; what
// is left stays a candidate and is read as without an index) and asks the
// TextIndexer to finish the folder on its own thread, through a store of
// its own. So the first search of a large folder costs about a scan, and
// the following ones use the complete index (a 10,000-message folder
// takes seconds to index, 100,000 about a minute).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"
#include "store/mail_store.h"

namespace tern::imap {

// Indexes messages of `folder` not indexed yet, a batch per write
// transaction, until none is left (true), `deadline` passes or `stop` is
// set (false). Store errors end it (false): the messages stay candidates.
bool IndexFolderText(store::MailStore& store, std::string_view folder,
                     std::chrono::steady_clock::time_point deadline,
                     const std::atomic<bool>* stop = nullptr);

// One background thread, started at the first request, indexing one
// folder after another. Requests for a folder already waiting or being
// indexed are dropped. The destructor stops at the end of the current
// batch and joins.
class TextIndexer {
 public:
  using Opener = std::function<Result<std::unique_ptr<store::MailStore>>()>;

  TextIndexer() = default;
  ~TextIndexer();
  TextIndexer(const TextIndexer&) = delete;
  TextIndexer& operator=(const TextIndexer&) = delete;

  // `key` names the folder across accounts (the Maildir path and the
  // folder name); `open` gives a store of the account.
  void Request(std::string key, std::string folder, Opener open);

 private:
  struct Job {
    std::string key;
    std::string folder;
    Opener open;
  };
  void Run();

  Mutex mu_;
  CondVar cv_;
  std::vector<Job> queue_ GUARDED_BY(mu_);
  std::vector<std::string> busy_ GUARDED_BY(mu_);  // keys queued or running
  bool started_ GUARDED_BY(mu_) = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tern::imap
