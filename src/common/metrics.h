// Counters, gauges and histograms for the admin listener's /metrics, in
// the Prometheus text exposition format (version 0.0.4). Every layer
// counts through the one process-wide catalog below; updates are relaxed
// atomic adds, and finding a labelled series takes a short lock (call
// sites on hot paths keep the Series& they got).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace tern::metrics {

enum class Type { kCounter, kGauge, kHistogram };

// One label combination of a metric.
class Series {
 public:
  explicit Series(const std::vector<double>* buckets);
  void Inc(uint64_t n = 1) { count_.fetch_add(n, std::memory_order_relaxed); }
  void Add(int64_t n) { gauge_.fetch_add(n, std::memory_order_relaxed); }
  void Set(int64_t v) { gauge_.store(v, std::memory_order_relaxed); }
  // A histogram observation, in seconds (or the unit of the buckets).
  void Observe(double value);

 private:
  friend class Family;
  std::atomic<uint64_t> count_{0};
  std::atomic<int64_t> gauge_{0};
  const std::vector<double>* buckets_;  // null unless a histogram
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;
  std::atomic<uint64_t> sum_micro_{0};  // sum of observations, in millionths
};

class Family {
 public:
  Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
         std::vector<double> buckets = {});
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The series for these label values, in the order of the label names;
  // made on first use. Values are free text (escaped on output).
  Series& With(std::initializer_list<std::string_view> values = {});
  // A gauge read when scraped (queue size): replaces the stored series.
  void SetCallback(std::function<double()> read);
  // Appends the family's HELP, TYPE and samples.
  void Write(std::string& out) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_, help_;
  Type type_;
  std::vector<std::string> labels_;
  std::vector<double> buckets_;
  mutable Mutex mu_;
  // Keyed by the joined label values; series are never removed, so the
  // references handed out stay valid.
  std::unordered_map<std::string, std::unique_ptr<Series>> series_ GUARDED_BY(mu_);
  std::vector<std::pair<std::vector<std::string>, Series*>> order_ GUARDED_BY(mu_);
  std::function<double()> read_ GUARDED_BY(mu_);
};

// Latency buckets in seconds, 1 ms to 2 minutes.
const std::vector<double>& LatencyBuckets();

// Every metric Tern exports. Names follow Prometheus' conventions: a
// `tern_` prefix, `_total` on counters, base units (seconds).
struct Catalog {
  Catalog();
  // Connections accepted and refused at the limits, by protocol and
  // listener (net::AcceptLoop); open ones by protocol.
  Family connections{"tern_connections_total", "Connections accepted",
                     Type::kCounter, {"protocol", "listener"}};
  Family connections_refused{"tern_connections_refused_total",
                             "Connections refused at the connection limits",
                             Type::kCounter, {"protocol", "listener"}};
  Family connections_open{"tern_connections_open", "Connections open now",
                          Type::kGauge, {"protocol"}};
  Family tls_handshakes{"tern_tls_handshakes_total",
                        "TLS handshakes on the listeners, by protocol version",
                        Type::kCounter, {"protocol", "version"}};
  Family tls_failures{"tern_tls_handshake_failures_total",
                      "TLS handshakes on the listeners that failed", Type::kCounter,
                      {"protocol"}};
  // SMTP: messages taken (250 after the data) and every 4xx/5xx reply by
  // its code and enhanced status code (the reason's class).
  Family smtp_accepted{"tern_smtp_messages_accepted_total",
                       "Messages accepted over SMTP (250 after DATA or BDAT LAST)",
                       Type::kCounter, {"listener"}};
  Family smtp_refusals{"tern_smtp_refusals_total",
                       "SMTP replies refusing something, by reply code and enhanced "
                       "status code",
                       Type::kCounter, {"listener", "code", "status"}};
  Family smtp_commit_seconds{"tern_smtp_commit_seconds",
                             "From the end of a message's data to its 250",
                             Type::kHistogram, {}, LatencyBuckets()};
  Family auth{"tern_auth_total", "AUTH and login attempts by protocol and result",
              Type::kCounter, {"protocol", "result"}};
  Family auth_lockouts{"tern_auth_lockouts_total",
                       "Clients locked out after too many AUTH failures",
                       Type::kCounter, {}};
  Family mailauth{"tern_mailauth_results_total",
                  "SPF, DKIM and DMARC results of arriving mail", Type::kCounter,
                  {"method", "result"}};
  // The queue: its size and oldest message when scraped, and what
  // delivery made of each attempt.
  Family queue_messages{"tern_queue_messages", "Messages in the queue", Type::kGauge, {}};
  Family queue_oldest{"tern_queue_oldest_message_age_seconds",
                      "Age of the oldest message in the queue", Type::kGauge, {}};
  Family deliveries{"tern_delivery_attempts_total",
                    "Delivery attempts by destination class (local, remote) and result "
                    "(delivered, deferred, failed)",
                    Type::kCounter, {"destination", "result"}};
  Family delivery_seconds{"tern_delivery_seconds",
                          "From queueing to delivery, by destination class",
                          Type::kHistogram, {"destination"}, LatencyBuckets()};
  Family bounces{"tern_bounces_total", "Delivery status notifications sent, by action",
                 Type::kCounter, {"action"}};
  Family http_requests{"tern_http_requests_total", "HTTP requests by listener and status",
                       Type::kCounter, {"listener", "status"}};
  // MTA-STS (RFC 8461) outcomes per policy mode: "success" or an RFC 8460
  // 4.3 failure type, for TLS-RPT.
  Family mta_sts{"tern_mta_sts_results_total",
                 "Outbound TLS results under MTA-STS policies, by mode and result",
                 Type::kCounter, {"mode", "result"}};
  Family up_since{"tern_start_time_seconds", "When the server started (Unix time)",
                  Type::kGauge, {}};

  // All of the above, in this order.
  std::vector<const Family*> all() const;
};

// The process-wide catalog.
Catalog& Get();

// One delivery attempt for one recipient: `destination` "local" or
// "remote", `result` "delivered", "deferred" or "failed"; a delivery also
// observes the time since `queued_micros` (a queue id's time; 0: unknown).
void CountDelivery(std::string_view destination, std::string_view result,
                   uint64_t queued_micros);

// The exposition text of every family.
std::string Text();

}  // namespace tern::metrics
