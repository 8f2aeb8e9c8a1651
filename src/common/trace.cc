// The message trace writer (trace.h): JSON text built by hand (the
// objects are flat: strings, numbers and lists of strings) and appended
// under one mutex to the current day's file.
#include "common/trace.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/file_io.h"
#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "common/unique_fd.h"

namespace tern::trace {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// The length of the UTF-8 sequence at s[i] (RFC 3629 4), or 0 when the
// bytes there are not one: overlong forms, surrogates and values above
// U+10FFFF included.
size_t Utf8Length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

std::string Rfc3339(int64_t seconds, int millis) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

// "YYYY-MM-DD.jsonl": the day, or empty for other names.
std::string DayOfFile(const std::string& name) {
  constexpr std::string_view kExt = ".jsonl";
  if (name.size() != 10 + kExt.size() || name.compare(10, kExt.size(), kExt) != 0) return "";
  for (size_t i = 0; i < 10; ++i) {
    bool dash = i == 4 || i == 7;
    if (dash ? name[i] != '-' : (name[i] < '0' || name[i] > '9')) return "";
  }
  return name.substr(0, 10);
}

class Writer {
 public:
  bool Open(const std::string& dir, uint32_t keep_days) {
    MutexLock lock(mu_);
    if (auto made = io::MkdirAll(dir, 0750); !made) {
      spdlog::error("trace: cannot create {}: {}", dir, made.error().message);
      return false;
    }
    dir_ = dir;
    keep_days_ = keep_days;
    day_.clear();
    fd_.Reset();
    warned_ = false;
    Prune(dir_, keep_days_, std::time(nullptr));
    enabled_.store(true, std::memory_order_release);
    return true;
  }

  void Close() {
    MutexLock lock(mu_);
    enabled_.store(false, std::memory_order_release);
    fd_.Reset();
    day_.clear();
  }

  bool enabled() const { return enabled_.load(std::memory_order_acquire); }

  void Write(const std::string& line) {
    MutexLock lock(mu_);
    if (!enabled()) return;
    std::time_t now = std::time(nullptr);
    std::string day = DayOf(now);
    if (day != day_ || !fd_) {
      if (!day_.empty() && day != day_) Prune(dir_, keep_days_, now);
      std::string path = dir_ + "/" + day + ".jsonl";
      fd_.Reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
      if (!fd_) {
        Warn("open " + path, errno);
        return;
      }
      day_ = day;
    }
    // One write of the whole line: O_APPEND puts it after every other.
    if (int err = io::WriteAll(fd_.get(), line.data(), line.size()); err != 0) {
      Warn("write " + dir_ + "/" + day_ + ".jsonl", err);
      fd_.Reset();  // reopened at the next event
    }
  }

 private:
  void Warn(const std::string& what, int err) REQUIRES(mu_) {
    if (warned_) return;
    warned_ = true;  // once: a full disk must not flood the log
    spdlog::warn("trace: {}: {}", what, std::strerror(err));
  }

  Mutex mu_;
  std::atomic<bool> enabled_{false};
  std::string dir_ GUARDED_BY(mu_);
  uint32_t keep_days_ GUARDED_BY(mu_) = 0;
  std::string day_ GUARDED_BY(mu_);
  UniqueFd fd_ GUARDED_BY(mu_);
  bool warned_ GUARDED_BY(mu_) = false;
};

Writer& TheWriter() {
  static Writer* writer = new Writer();  // never destroyed: used until exit
  return *writer;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (size_t n = Utf8Length(s, i); n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
}

Event::Event(std::string_view type) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
  json_ = "{\"time\":\"" + Rfc3339(ms / 1000, static_cast<int>(ms % 1000)) + "\",\"event\":";
  AppendJsonString(json_, type);
}

Event::Event(std::string_view type, int64_t seconds, int millis) {
  json_ = "{\"time\":\"" + Rfc3339(seconds, millis) + "\",\"event\":";
  AppendJsonString(json_, type);
}

void Event::Key(std::string_view key) {
  json_ += ',';
  AppendJsonString(json_, key);
  json_ += ':';
}

Event& Event::Add(std::string_view key, std::string_view value) {
  if (value.empty()) return *this;
  Key(key);
  AppendJsonString(json_, value);
  return *this;
}

Event& Event::Add(std::string_view key, uint64_t value) {
  Key(key);
  json_ += std::to_string(value);
  return *this;
}

Event& Event::Add(std::string_view key, const std::vector<std::string>& values) {
  if (values.empty()) return *this;
  Key(key);
  json_ += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) json_ += ',';
    AppendJsonString(json_, values[i]);
  }
  json_ += ']';
  return *this;
}

std::string DayOf(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday);
  return buf;
}

bool Open(const std::string& dir, uint32_t keep_days) {
  return TheWriter().Open(dir, keep_days);
}

void Close() { TheWriter().Close(); }

bool Enabled() { return TheWriter().enabled(); }

void Record(const Event& event) {
  if (!Enabled()) return;
  TheWriter().Write(event.Line());
}

void RecordLine(const std::string& line) {
  if (!Enabled() || line.empty()) return;
  TheWriter().Write(line);
}

int Prune(const std::string& dir, uint32_t keep_days, std::time_t now) {
  if (keep_days == 0) return 0;
  auto fd = io::OpenDir(dir);
  if (!fd) return 0;
  auto names = io::ListDir(fd->get());
  if (!names) return 0;
  // Kept: today and the keep_days - 1 days before it.
  std::string oldest = DayOf(now - static_cast<std::time_t>(keep_days - 1) * 86400);
  int removed = 0;
  for (const std::string& name : *names) {
    std::string day = DayOfFile(name);
    if (day.empty() || day >= oldest) continue;
    if (::unlinkat(fd->get(), name.c_str(), 0) == 0) {
      ++removed;
    } else {
      spdlog::warn("trace: cannot delete {}/{}: {}", dir, name, std::strerror(errno));
    }
  }
  if (removed > 0) spdlog::info("trace: deleted {} file(s) older than {} days", removed, keep_days);
  return removed;
}

}  // namespace tern::trace
