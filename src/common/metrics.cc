#include "common/metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace tern::metrics {
namespace {

// Exposition format: label values escape backslash, double quote and
// line feed; HELP text escapes backslash and line feed.
std::string EscapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<int64_t>(v));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// {a="x",b="y"} (with `extra` appended, for "le"), or "" without labels.
std::string Labels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                   std::string_view extra = {}) {
  if (names.empty() && extra.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ",";
    out += names[i] + "=\"" + EscapeLabel(i < values.size() ? values[i] : "") + "\"";
  }
  if (!extra.empty()) {
    if (!names.empty()) out += ",";
    out += extra;
  }
  return out + "}";
}

}  // namespace

Series::Series(const std::vector<double>* buckets) : buckets_(buckets) {
  if (buckets_ != nullptr) {
    bucket_counts_ = std::make_unique<std::atomic<uint64_t>[]>(buckets_->size());
    for (size_t i = 0; i < buckets_->size(); ++i) bucket_counts_[i] = 0;
  }
}

void Series::Observe(double value) {
  if (buckets_ == nullptr) return;
  // Cumulative buckets are summed at output: one add per observation.
  for (size_t i = 0; i < buckets_->size(); ++i) {
    if (value <= (*buckets_)[i]) {
      bucket_counts_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(static_cast<uint64_t>(std::max(0.0, value) * 1e6),
                       std::memory_order_relaxed);
}

Family::Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
               std::vector<double> buckets)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      labels_(std::move(labels)),
      buckets_(std::move(buckets)) {}

Series& Family::With(std::initializer_list<std::string_view> values) {
  std::string key;
  std::vector<std::string> list;
  for (std::string_view v : values) {
    key.append(v);
    key += '\x1f';
    list.emplace_back(v);
  }
  MutexLock lock(mu_);
  auto it = series_.find(key);
  if (it != series_.end()) return *it->second;
  auto s = std::make_unique<Series>(type_ == Type::kHistogram ? &buckets_ : nullptr);
  Series* raw = s.get();
  series_.emplace(std::move(key), std::move(s));
  order_.emplace_back(std::move(list), raw);
  return *raw;
}

void Family::SetCallback(std::function<double()> read) {
  MutexLock lock(mu_);
  read_ = std::move(read);
}

void Family::Write(std::string& out) const {
  static constexpr const char* kTypes[] = {"counter", "gauge", "histogram"};
  out += "# HELP " + name_ + " " + EscapeHelp(help_) + "\n";
  out += "# TYPE " + name_ + " " + kTypes[static_cast<int>(type_)] + "\n";
  MutexLock lock(mu_);
  if (read_) {
    out += name_ + " " + Number(read_()) + "\n";
    return;
  }
  for (const auto& [values, s] : order_) {
    std::string labels = Labels(labels_, values);
    if (type_ == Type::kCounter) {
      out += name_ + labels + " " + std::to_string(s->count_.load(std::memory_order_relaxed)) +
             "\n";
    } else if (type_ == Type::kGauge) {
      out += name_ + labels + " " + std::to_string(s->gauge_.load(std::memory_order_relaxed)) +
             "\n";
    } else {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < buckets_.size(); ++i) {
        cumulative += s->bucket_counts_[i].load(std::memory_order_relaxed);
        out += name_ + "_bucket" +
               Labels(labels_, values, "le=\"" + Number(buckets_[i]) + "\"") + " " +
               std::to_string(cumulative) + "\n";
      }
      uint64_t count = s->count_.load(std::memory_order_relaxed);
      out += name_ + "_bucket" + Labels(labels_, values, "le=\"+Inf\"") + " " +
             std::to_string(count) + "\n";
      out += name_ + "_sum" + labels + " " +
             Number(static_cast<double>(s->sum_micro_.load(std::memory_order_relaxed)) / 1e6) +
             "\n";
      out += name_ + "_count" + labels + " " + std::to_string(count) + "\n";
    }
  }
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,   30,
                                        60,    120};
  return b;
}

Catalog::Catalog() {
  up_since.With().Set(static_cast<int64_t>(std::time(nullptr)));
  // Unlabelled families show a zero before their first event.
  auth_lockouts.With();
  smtp_commit_seconds.With();
}

std::vector<const Family*> Catalog::all() const {
  return {&connections,   &connections_refused, &connections_open, &tls_handshakes,
          &tls_failures,  &smtp_accepted,       &smtp_refusals,    &smtp_commit_seconds,
          &auth,          &auth_lockouts,       &mailauth,         &queue_messages,
          &queue_oldest,  &deliveries,          &delivery_seconds, &bounces,
          &http_requests,       &mta_sts,          &up_since};
}

Catalog& Get() {
  static Catalog catalog;
  return catalog;
}

void CountDelivery(std::string_view destination, std::string_view result,
                   uint64_t queued_micros) {
  Catalog& m = Get();
  m.deliveries.With({destination, result}).Inc();
  if (result != "delivered" || queued_micros == 0) return;
  auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  double seconds = static_cast<double>(now - static_cast<int64_t>(queued_micros)) / 1e6;
  m.delivery_seconds.With({destination}).Observe(std::max(0.0, seconds));
}

std::string Text() {
  std::string out;
  for (const Family* f : Get().all()) f->Write(out);
  return out;
}

}  // namespace tern::metrics
