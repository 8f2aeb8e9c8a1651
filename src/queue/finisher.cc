// The end of every delivery step: expiry, DSNs, retry schedule, removal.
// DSNs are queued (durably) before the records that say they were sent, so
// a crash can repeat a report but never lose one.
#include "queue/finisher.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "common/file_io.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "common/trace.h"
#include "common/unique_fd.h"
#include "queue/dsn.h"
#include "queue/file_pool.h"

namespace tern::queue {
namespace {

constexpr size_t kMaxStateFile = 64u << 20;
// Beyond this only the header is read for a report (dsn.cc returns the
// header only for such messages anyway).
constexpr uint64_t kMaxReturnedRead = 10u << 20;
constexpr size_t kHeaderProbe = 256 * 1024;

bool AnyPending(const MessageState& state) {
  return std::any_of(state.recipients.begin(), state.recipients.end(),
                     [](const RecipientRecord& r) {
                       return r.state == RecipientState::kPending;
                     });
}

// Whether `rec` is, or was expanded from, `address`: an alias expansion
// keeps the address the sender used as its RFC 3461 ORCPT ("rfc822;" and
// xtext, where "+XX" stands for one octet).
bool AddressedTo(const RecipientRecord& rec, const std::string& address) {
  if (IEquals(rec.recipient.address, address)) return true;
  std::string_view orcpt = rec.recipient.orcpt;
  constexpr std::string_view kType = "rfc822;";
  if (orcpt.size() < kType.size() || !IEquals(orcpt.substr(0, kType.size()), kType))
    return false;
  std::string decoded;
  for (size_t i = kType.size(); i < orcpt.size(); ++i) {
    if (orcpt[i] == '+' && i + 2 < orcpt.size() &&
        std::isxdigit(static_cast<unsigned char>(orcpt[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(orcpt[i + 2]))) {
      decoded += static_cast<char>(
          std::stoi(std::string(orcpt.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      decoded += orcpt[i];
    }
  }
  return IEquals(Trim(decoded), address);
}

// The trace's record of a recipient given up by the queue itself
// (expired, or failed by the operator), not by a delivery attempt.
void TraceGivenUp(const std::string& id, const RecipientRecord& rec, const std::string& why) {
  if (!trace::Enabled()) return;
  trace::Event e("delivery");
  e.Add("id", id)
      .Add("rcpt", rec.recipient.address)
      .Add("destination", "queue")
      .Add("result", "failed")
      .Add("reply", why);
  trace::Record(e);
}

// The trace's "bounce": the DSN (RFC 3464) queued for message `id`.
void TraceBounce(const std::string& id, const std::string& dsn_id, const std::string& to,
                 bool double_bounce, const std::vector<DsnRecipient>& report) {
  if (!trace::Enabled()) return;
  std::vector<std::string> actions;
  for (const DsnRecipient& d : report) actions.push_back(d.action + " <" + d.address + ">");
  trace::Event e("bounce");
  e.Add("id", id)
      .Add("dsn", dsn_id)
      .Add("to", to)
      .Add("kind", double_bounce ? "double bounce" : "dsn")
      .Add("actions", actions);
  trace::Record(e);
}

// The trace's "done": the message left the queue; each recipient's end.
void TraceDone(const std::string& id, const MessageState& state) {
  if (!trace::Enabled()) return;
  std::vector<std::string> delivered, failed;
  for (const RecipientRecord& r : state.recipients) {
    if (r.state == RecipientState::kDelivered && r.error != "expanded") {
      delivered.push_back(r.recipient.address);
    } else if (r.state == RecipientState::kFailed) {
      failed.push_back(r.recipient.address);
    }
  }
  trace::Event e("done");
  e.Add("id", id).Add("delivered", delivered).Add("failed", failed);
  trace::Record(e);
}

}  // namespace

bool NotifyWants(std::string_view notify, std::string_view what) {
  if (notify.empty()) return what == "FAILURE" || what == "DELAY";
  for (const std::string& word : Split(notify, ',')) {
    if (IEquals(Trim(word), what)) return true;
  }
  return false;
}

int64_t RetryDelay(const RetryPolicy& policy, uint32_t attempts,
                   double random01) {
  int64_t delay = std::max<int64_t>(policy.first, 1);
  for (uint32_t i = 1; i < attempts && delay < policy.max; ++i) delay *= 2;
  delay = std::min(delay, std::max<int64_t>(policy.max, 1));
  delay -= static_cast<int64_t>(static_cast<double>(delay) * 0.2 * random01);
  return std::max<int64_t>(delay, 1);
}

Result<LoadedMessage> LoadMessage(int msg_dir_fd, int state_dir_fd,
                                  const std::string& id) {
  UniqueFd fd(::openat(msg_dir_fd, id.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return io::ErrnoErr("open msg/" + id, errno);
  auto file = ReadMessageMeta(fd.get());
  if (!file) return tl::unexpected(file.error());
  LoadedMessage loaded;
  loaded.file = std::move(*file);
  int err = 0;
  auto raw = io::ReadSmallFileAt(state_dir_fd, id, kMaxStateFile, &err);
  if (raw) {
    if (auto state = DecodeState(*raw)) {
      loaded.state = std::move(*state);
    } else {
      spdlog::warn("queue {}: ignoring state file: {}", id,
                   state.error().message);
      loaded.state = InitialState(loaded.file.envelope);
    }
  } else {
    if (err != ENOENT) {
      spdlog::warn("queue {}: ignoring state file: {}", id,
                   raw.error().message);
    }
    loaded.state = InitialState(loaded.file.envelope);
  }
  loaded.fd = fd.Release();
  return loaded;
}

Finisher::Finisher(int msg_dir_fd, int state_dir_fd, std::string hostname,
                   RetryPolicy policy, Enqueue enqueue, FilePool* pool,
                   std::string postmaster)
    : msg_dir_fd_(msg_dir_fd),
      state_dir_fd_(state_dir_fd),
      hostname_(std::move(hostname)),
      policy_(policy),
      enqueue_(std::move(enqueue)),
      pool_(pool),
      postmaster_(std::move(postmaster)) {}

bool Finisher::SendReports(const std::string& id, int msg_fd,
                           const MessageFile& file, MessageState& state,
                           int64_t now) {
  const Envelope& env = file.envelope;
  std::vector<DsnRecipient> report;
  std::vector<size_t> marks;
  int64_t last_attempt = state.log.empty() ? 0 : state.log.back().time;
  for (size_t i = 0; i < state.recipients.size(); ++i) {
    RecipientRecord& rec = state.recipients[i];
    if (rec.notified || rec.state == RecipientState::kPending) continue;
    const std::string& notify = rec.recipient.notify;
    if (rec.state == RecipientState::kFailed) {
      if (env.sender.empty()) {
        // RFC 5321 4.5.5 / 6.1: never bounce a bounce (mail loops). It goes
        // to the postmaster instead (a double bounce, sender <> again);
        // only one that fails on its way there is dropped.
        if (postmaster_.empty() || AddressedTo(rec, postmaster_)) {
          spdlog::error(
              "queue {}: <{}> failed and the sender is <>: the postmaster "
              "cannot be told either; dropped ({})",
              id, rec.recipient.address, rec.error);
          rec.notified = true;
          continue;
        }
      } else if (!NotifyWants(notify, "FAILURE")) {
        rec.notified = true;
        continue;
      }
      DsnRecipient d;
      d.address = rec.recipient.address;
      d.orcpt = rec.recipient.orcpt;
      d.action = "failed";
      d.status = rec.status.empty() ? StatusOf(rec.error, "5.0.0") : rec.status;
      d.remote_mta = rec.remote_mta;
      d.diagnostic = rec.error;
      d.last_attempt = last_attempt ? last_attempt : now;
      report.push_back(std::move(d));
      marks.push_back(i);
    } else {
      // Delivered: a success report only when NOTIFY asked for it and no
      // next hop took the duty over (RFC 3461 4.1 / 6.2).
      if (env.sender.empty() || notify.empty() ||
          !NotifyWants(notify, "SUCCESS") || rec.dsn_passed) {
        rec.notified = true;
        continue;
      }
      DsnRecipient d;
      d.address = rec.recipient.address;
      d.orcpt = rec.recipient.orcpt;
      d.action = rec.remote_mta.empty() ? "delivered" : "relayed";
      d.status = "2.0.0";
      d.remote_mta = rec.remote_mta;
      d.diagnostic = rec.error;
      d.last_attempt = now;
      report.push_back(std::move(d));
      marks.push_back(i);
    }
  }
  bool warned_now = false;
  if (!state.delay_warned && policy_.delay_warning > 0 &&
      now - env.received_at >= policy_.delay_warning && AnyPending(state)) {
    state.delay_warned = true;
    warned_now = true;
    if (!env.sender.empty()) {
      for (const RecipientRecord& rec : state.recipients) {
        if (rec.state != RecipientState::kPending ||
            !NotifyWants(rec.recipient.notify, "DELAY")) {
          continue;
        }
        DsnRecipient d;
        d.address = rec.recipient.address;
        d.orcpt = rec.recipient.orcpt;
        d.action = "delayed";
        d.status = rec.status.empty() ? StatusOf(rec.error, "4.0.0")
                                      : rec.status;
        d.remote_mta = rec.remote_mta;
        d.diagnostic = rec.error;
        d.last_attempt = last_attempt;
        report.push_back(std::move(d));
      }
    }
  }
  if (report.empty()) return true;

  // The original, or enough of it for its header.
  uint64_t want = file.size() <= kMaxReturnedRead ? file.size() : kHeaderProbe;
  auto text = ReadMessageText(msg_fd, file, want);
  if (!text) {
    spdlog::error("queue {}: reading for a DSN failed: {}", id,
                  text.error().message);
    if (warned_now) state.delay_warned = false;
    return false;
  }
  std::string message = std::move(*text);
  if (file.size() > kMaxReturnedRead) {
    // Keep only whole header lines.
    message = std::string(HeaderSection(message));
  }
  DsnInput in;
  in.reporting_mta = hostname_;
  in.original = env;
  in.original.id = id;
  in.message = message;
  in.recipients = report;
  in.now = now;
  in.retry_until = env.received_at + policy_.lifetime;
  if (env.sender.empty()) in.postmaster = postmaster_;
  Envelope report_env = DsnEnvelope(in);
  const std::string report_to = report_env.recipients[0].address;
  auto queued = enqueue_(std::move(report_env), BuildDsn(in));
  if (!queued) {
    spdlog::error("queue {}: cannot queue a DSN: {}", id,
                  queued.error().message);
    if (warned_now) state.delay_warned = false;
    return false;
  }
  for (size_t i : marks) state.recipients[i].notified = true;
  std::string what;
  for (const DsnRecipient& d : report) {
    metrics::Get().bounces.With({d.action}).Inc();
    what += (what.empty() ? "" : ", ") + d.action + " <" + d.address + ">";
  }
  spdlog::info("queue {}: {} {} to <{}>: {}", id,
               env.sender.empty() ? "double bounce" : "DSN", *queued,
               report_to, what);
  TraceBounce(id, *queued, report_to, env.sender.empty(), report);
  return true;
}

FinishOutcome Finisher::Finish(const std::string& id, int msg_fd,
                               const MessageFile& file, MessageState& state,
                               bool temp_failure, int64_t now) {
  FinishOutcome out;
  const Envelope& env = file.envelope;
  if (AnyPending(state) && now - env.received_at >= policy_.lifetime) {
    for (RecipientRecord& rec : state.recipients) {
      if (rec.state != RecipientState::kPending) continue;
      rec.state = RecipientState::kFailed;
      // RFC 3463 4.4.7: delivery time expired; the last reply stays as
      // the diagnostic.
      rec.status = "4.4.7";
      if (rec.error.empty()) rec.error = "delivery time expired";
      spdlog::warn("queue {}: <{}> expired after {}s in the queue: {}", id,
                   rec.recipient.address, now - env.received_at, rec.error);
      TraceGivenUp(id, rec, "4.4.7 expired after " + std::to_string(now - env.received_at) +
                                "s in the queue: " + rec.error);
    }
    temp_failure = false;
  }
  bool reported = SendReports(id, msg_fd, file, state, now);
  bool pending = AnyPending(state);
  bool unreported = std::any_of(
      state.recipients.begin(), state.recipients.end(),
      [](const RecipientRecord& r) {
        return r.state != RecipientState::kPending && !r.notified;
      });
  if (!pending && !unreported) {
    // Message first: an orphaned state file is cleaned up at start, while
    // a message without its state would be delivered again.
    int err = pool_ != nullptr ? pool_->Remove(id)
              : ::unlinkat(msg_dir_fd_, id.c_str(), 0) == 0 ? 0
                                                            : errno;
    if (err != 0 && err != ENOENT) {
      spdlog::error("queue {}: remove failed (errno {})", id, err);
    }
    ::unlinkat(state_dir_fd_, id.c_str(), 0);
    TraceDone(id, state);
    out.removed = true;
    return out;
  }
  if (pending && temp_failure) {
    ++state.attempts;
    state.next_attempt =
        now + RetryDelay(policy_, state.attempts,
                         static_cast<double>(std::rand() % 1000) / 1000.0);
    out.retry = true;
  } else if (!reported) {
    state.next_attempt = now + std::max<int64_t>(policy_.first, 1);
    out.retry = true;
  } else {
    state.next_attempt = 0;  // waiting for another delivery step
  }
  out.retry_at = state.next_attempt;
  // Not synced: losing this update after a crash only means doing again
  // what it records as done (duplicates, never loss).
  if (auto saved =
          io::AtomicWriteAt(state_dir_fd_, id, EncodeState(state), false);
      !saved) {
    spdlog::error("queue {}: saving state: {}", id, saved.error().message);
  }
  return out;
}

FinishOutcome Finisher::FailAll(const std::string& id, int msg_fd,
                                const MessageFile& file, MessageState& state,
                                const std::string& reason, int64_t now) {
  for (RecipientRecord& rec : state.recipients) {
    if (rec.state != RecipientState::kPending) continue;
    rec.state = RecipientState::kFailed;
    rec.error = reason;
    rec.status = StatusOf(reason, "5.0.0");
    TraceGivenUp(id, rec, reason);
  }
  return Finish(id, msg_fd, file, state, false, now);
}

}  // namespace tern::queue
