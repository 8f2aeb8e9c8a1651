// Helpers shared by the queue and delivery unit tests: a temporary data
// directory, synchronous commit, polling waits and reading back files (the
// fake directory and the wired-up local delivery: delivery_test_util.h).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "queue/queue.h"

namespace tern::queue::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tern-queue-XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline Envelope MakeEnvelope(std::string sender,
                             std::vector<std::string> rcpts) {
  Envelope env;
  env.sender = std::move(sender);
  for (std::string& r : rcpts)
    env.recipients.push_back(Recipient{std::move(r), "", ""});
  env.client_ip = "192.0.2.1";
  env.helo = "client.example";
  return env;
}

// Begin + Write + Commit, waiting for the callback. Returns the id or the
// error.
inline Result<std::string> CommitMessage(Queue& q, Envelope env,
                                         std::string_view message) {
  auto w = q.Begin(std::move(env));
  if (!w) return tl::unexpected(w.error());
  std::string id = (*w)->id();
  if (!(*w)->Write(message)) return Err("write failed");
  std::promise<Result<void>> p;
  auto f = p.get_future();
  q.Commit(std::move(*w), [&p](Result<void> r) { p.set_value(std::move(r)); });
  Result<void> r = f.get();
  if (!r) return tl::unexpected(r.error());
  return id;
}

inline bool WaitFor(
    const std::function<bool()>& cond,
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

inline std::string MaildirNew(const std::string& data_dir,
                              const std::string& domain,
                              const std::string& local) {
  return data_dir + "/mail/" + domain + "/" + local + "/Maildir/new";
}

inline std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    out.push_back(e.path().string());
  }
  return out;
}

inline size_t CountFiles(const std::string& dir) { return FilesIn(dir).size(); }

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline size_t QueueSize(const std::string& data_dir) {
  auto entries = List(data_dir);
  return entries ? entries->size() : 0;
}

}  // namespace tern::queue::testing
