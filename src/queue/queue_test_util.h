// Helpers shared by the queue and delivery unit tests: a temporary data
// directory, a fake resolver, synchronous commit and polling waits.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
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

// Addresses in `users` at example.test are mailboxes of their own, `aliases`
// expand as given, other example.test addresses are unknown and every other
// domain is not local.
struct FakeDirectory {
  std::vector<std::string> users;
  std::map<std::string, auth::Resolution> aliases;

  auth::Resolution Resolve(const std::string& address) const {
    if (auto it = aliases.find(address); it != aliases.end()) return it->second;
    auth::Resolution r;
    size_t at = address.rfind('@');
    std::string domain = at == std::string::npos ? "" : address.substr(at + 1);
    if (domain != "example.test") return r;  // kNotLocal
    for (const std::string& u : users) {
      if (u == address) {
        r.kind = auth::Resolution::Kind::kLocal;
        r.mailboxes = {u};
        return r;
      }
    }
    r.kind = auth::Resolution::Kind::kUnknown;
    return r;
  }
  Queue::Resolver resolver() const {
    return [this](const std::string& a) { return Resolve(a); };
  }
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
