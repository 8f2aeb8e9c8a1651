// Local delivery of queued messages: resolve, write Maildir copies for a
// batch of messages with shared syncs, then update or remove queue files.
#include "delivery/local_delivery.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>
#include <set>
#include <system_error>
#include <utility>

#include "common/file_io.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "common/trace.h"
#include "common/unique_fd.h"
#include "delivery/intent_log.h"
#include "delivery/maildir.h"
#include "queue/crc32c.h"
#include "queue/finisher.h"
#include "queue/queue_id.h"
#include "queue/spool_format.h"
#include "store/folder_name.h"
#include "store/mailbox_path.h"

namespace tern::delivery {
namespace {

// The trace's record of one local delivery attempt: `mailbox` is the
// account a recipient (or an alias) led to.
void TraceLocal(const std::string& id, const std::string& rcpt, const char* result,
                const std::string& mailbox, const std::string& folder,
                const std::string& reply) {
  if (!trace::Enabled()) return;
  trace::Event e("delivery");
  e.Add("id", id)
      .Add("rcpt", rcpt)
      .Add("destination", "local")
      .Add("result", result)
      .Add("mailbox", mailbox)
      .Add("folder", folder)
      .Add("reply", reply);
  trace::Record(e);
}

using Kind = auth::Resolution::Kind;
using queue::LocalOutcome;
using queue::RecipientRecord;
using queue::RecipientState;

constexpr mode_t kDirMode = 0700;
// Messages up to this size are converted to LF once and written to every
// mailbox from memory; larger ones are converted while copied.
constexpr uint64_t kMemoryBodyLimit = 1u << 20;
constexpr size_t kMaxStateFile = 64u << 20;
constexpr char kRemotePending[] = "waiting for remote delivery";

struct Target {
  std::string mailbox;
  std::string folder;  // canonical IMAP name; empty: the INBOX
  int copy = -1;      // index in the MaildirBatch; -1 when refused
  std::string error;  // why it was refused
};

// What happens to one pending recipient in this run.
struct Plan {
  size_t rcpt = 0;
  Kind kind = Kind::kNotLocal;
  std::vector<Target> targets;
  std::vector<std::string> remote;
};

struct Work {
  std::string id;
  UniqueFd fd;
  queue::MessageFile file;
  queue::MessageState state;
  std::string lf_body;
  bool in_memory = false;
  // Header fields added at commit (queue::Envelope::prepend), LF lines:
  // they go after our Return-Path and Delivered-To.
  std::string lf_prepend;
  std::vector<Plan> plans;
  std::set<std::string> remote;  // pending addresses for remote delivery
};

std::string ErrnoText(int err) { return std::system_category().message(err); }

// Appends a recipient created by alias expansion unless the same address is
// already among the recipients, so a target reached twice is queued once.
void AppendRecipient(queue::MessageState& state, const RecipientRecord& parent,
                     const std::string& address, RecipientState rs,
                     std::string error, bool forwarded = false) {
  for (const RecipientRecord& r : state.recipients) {
    if (r.recipient.address == address &&
        r.state != RecipientState::kDelivered) {
      return;
    }
  }
  RecipientRecord rec;
  rec.recipient.address = address;
  rec.recipient.notify = parent.recipient.notify;
  // RFC 3461 4.2: the ORCPT names the address the sender used.
  rec.recipient.orcpt = parent.recipient.orcpt.empty()
                            ? OrcptFor(parent.recipient.address)
                            : parent.recipient.orcpt;
  rec.state = rs;
  rec.error = std::move(error);
  rec.forwarded = forwarded;
  state.recipients.push_back(std::move(rec));
}

}  // namespace

std::string OrcptFor(const std::string& address) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = "rfc822;";
  for (unsigned char c : address) {
    // RFC 3461 4: xtext encodes '+', '=' and anything outside 33..126.
    if (c < 33 || c > 126 || c == '+' || c == '=') {
      out += '+';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

namespace {

// Mail that inbound checks marked as junk (DMARC p=quarantine) carries our
// X-Spam field among the fields SMTP added (mailauth/inbound.cc).
bool MarkedJunk(std::string_view prepend) {
  return prepend.rfind("X-Spam: yes", 0) == 0 ||
         prepend.find("\nX-Spam: yes") != std::string_view::npos;
}

// "user+Work@domain" names the folder "Work" of user@domain's account, as
// Dovecot's LDA does with a detail; nullopt when there is no detail or it
// is no folder name.
std::optional<std::string> DetailFolder(const std::string& rcpt,
                                        const std::string& account) {
  size_t at = rcpt.rfind('@');
  size_t plus = rcpt.find('+');
  if (at == std::string::npos || plus == std::string::npos || plus == 0 ||
      plus > at) {
    return std::nullopt;
  }
  // Only for the account itself, not an alias that happens to have a '+'.
  std::string base = rcpt.substr(0, plus) + rcpt.substr(at);
  if (ToLower(base) != ToLower(account)) return std::nullopt;
  return store::CanonicalFolderName(rcpt.substr(plus + 1, at - plus - 1));
}

// The trace's "done" of a message delivered before its 250: every
// recipient reached its mailboxes (as the queue's finisher records it).
void TraceDirectDone(const std::string& id, const queue::Envelope& env) {
  if (!trace::Enabled()) return;
  std::vector<std::string> delivered;
  for (const queue::Recipient& r : env.recipients) delivered.push_back(r.address);
  trace::Event e("done");
  e.Add("id", id).Add("delivered", delivered).Add("failed", std::vector<std::string>());
  trace::Record(e);
}

// One message delivered into Maildirs before the reply to its DATA: the
// copies live in a MaildirBatch whose flushes the queue's committer makes.
class DirectCopies final : public queue::DirectDelivery {
 public:
  struct Target {
    std::string mailbox;
    std::string folder;  // empty: the INBOX
    size_t copy = 0;
  };

  DirectCopies(int mail_root_fd, const std::string& hostname,
               const queue::Envelope& env,
               std::function<void(const std::string&, const std::string&)> delivered)
      : batch_(mail_root_fd, hostname),
        id_(env.id),
        env_(env),
        delivered_(std::move(delivered)) {}

  MaildirBatch& batch() { return batch_; }
  std::vector<std::vector<Target>>& targets() { return targets_; }
  std::string& intent() { return intent_; }

  std::string Intent() const override { return intent_; }

  void Link() override { batch_.Link(/*keep_tmp=*/true); }
  void Cleanup() override { batch_.DropTmpNames(); }

  std::vector<size_t> Complete() override {
    // The intent log makes a move durable across a crash: the copy is
    // delivered once it is in new/.
    batch_.Finalize(true);
    std::vector<size_t> rest;
    for (size_t i = 0; i < targets_.size(); ++i) {
      const std::string& rcpt = env_.recipients[i].address;
      bool all = true;
      for (const Target& t : targets_[i]) {
        const Result<std::string>& r = batch_.result(t.copy);
        if (r) {
          // Told before the log line, as in DeliverBatch (the quota cache).
          if (delivered_) {
            if (auto path = store::MailboxPathFor(t.mailbox)) {
              delivered_(path->domain + "/" + path->local,
                         t.folder.empty() ? std::string("INBOX") : t.folder);
            }
          }
          spdlog::info("queue {}: <{}> delivered to {}: {}", id_, rcpt,
                       t.mailbox, *r);
          metrics::CountDelivery("local", "delivered", queue::QueueIdMicros(id_));
          TraceLocal(id_, rcpt, "delivered", t.mailbox, t.folder, "");
        } else {
          all = false;
          spdlog::warn("queue {}: <{}> direct delivery to {} failed, queued: {}",
                       id_, rcpt, t.mailbox, r.error().message);
        }
      }
      if (!all) rest.push_back(i);
    }
    if (rest.empty()) TraceDirectDone(id_, env_);
    return rest;
  }

 private:
  MaildirBatch batch_;
  std::string id_;
  queue::Envelope env_;  // sender and recipients, for logs and the trace
  std::function<void(const std::string&, const std::string&)> delivered_;
  std::vector<std::vector<Target>> targets_;  // per envelope recipient
  std::string intent_;  // the intent log lines of the copies
};

}  // namespace

std::unique_ptr<queue::DirectDelivery> LocalDelivery::PrepareDirect(
    const queue::Envelope& env, std::string_view message, dev_t dev) {
  // Resolve everything first: one recipient that is not a plain local
  // mailbox sends the whole message through the queue.
  std::vector<auth::Resolution> resolved;
  resolved.reserve(env.recipients.size());
  for (const queue::Recipient& r : env.recipients) {
    auth::Resolution res = resolver_(r.address);
    if (res.kind != Kind::kLocal || !res.remote.empty() || res.mailboxes.empty()) {
      return nullptr;
    }
    resolved.push_back(std::move(res));
  }
  std::string lf_prepend;
  if (!env.prepend.empty()) {
    LineEndConverter conv;
    conv.Convert(env.prepend, lf_prepend);
    conv.Finish(lf_prepend);
  }
  std::string lf_body;
  {
    LineEndConverter conv;
    conv.Convert(message, lf_body);
    conv.Finish(lf_body);
  }
  MessageSource source;
  source.lf_body = &lf_body;
  const bool junk = MarkedJunk(lf_prepend);

  auto direct = std::make_unique<DirectCopies>(mail_root_.get(), hostname_, env,
                                               delivered_);
  MaildirBatch& batch = direct->batch();
  std::map<std::string, size_t> copies;  // one copy per Maildir folder
  direct->targets().resize(env.recipients.size());
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    for (std::string& mailbox : resolved[i].mailboxes) {
      DirectCopies::Target t;
      t.mailbox = std::move(mailbox);
      auto path = store::MailboxPathFor(t.mailbox);
      if (!path) return nullptr;  // DeliverBatch fails it, with its log line
      t.folder = FolderFor(junk, env.recipients[i].address, t.mailbox, *path);
      std::string key = path->domain + "/" + path->local + "/" + t.folder;
      auto it = copies.find(key);
      if (it != copies.end()) {
        t.copy = it->second;
      } else {
        t.copy = batch.Add(
            *path, DeliveryHeaders(env.sender, t.mailbox) + lf_prepend, source,
            t.folder.empty() ? std::string() : store::FolderDirectory(t.folder));
        if (!batch.written(t.copy)) {
          spdlog::warn("queue {}: direct delivery to {} not possible, queued: {}",
                       env.id, t.mailbox, batch.result(t.copy).error().message);
          return nullptr;  // removes what was written
        }
        if (batch.device(t.copy) != dev) return nullptr;  // not our flush
        const std::string tmp = batch.tmp_path(t.copy);
        const std::string dest = batch.new_path(t.copy);
        // Only paths the replay accepts (intent_log.h): a copy whose
        // record replay would skip goes through the queue instead.
        if (!SafeRelativePath(tmp) || !SafeRelativePath(dest)) return nullptr;
        const std::string headers =
            DeliveryHeaders(env.sender, t.mailbox) + lf_prepend;
        AppendIntent(direct->intent(),
                     IntentRecord{Crc32c(Crc32c(0, headers), lf_body),
                                  headers.size() + lf_body.size(), tmp, dest});
        copies.emplace(key, t.copy);
      }
      direct->targets()[i].push_back(std::move(t));
    }
  }
  return direct;
}

size_t LocalDelivery::ReplayDirect(std::string_view log) {
  size_t moved = 0;
  std::vector<std::string> drop;  // tmp/ names of linked copies
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string_view::npos) break;  // torn last record
    std::string_view line = log.substr(start, end - start);
    start = end + 1;
    std::optional<IntentRecord> rec = ParseIntent(line);
    if (!rec) {
      spdlog::warn("queue: intent log: skipping a malformed record");
      continue;
    }
    const auto& [crc, size, tmp, dest] = *rec;
    struct stat st;
    if (::fstatat(mail_root_.get(), dest.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      // Linked before the crash: only the tmp/ name may be left to drop.
      struct stat tmp_st;
      if (::fstatat(mail_root_.get(), tmp.c_str(), &tmp_st, AT_SYMLINK_NOFOLLOW) == 0 &&
          tmp_st.st_ino == st.st_ino && tmp_st.st_dev == st.st_dev) {
        drop.push_back(tmp);
      }
      continue;
    }
    UniqueFd fd(::openat(mail_root_.get(), tmp.c_str(),
                         O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) continue;  // moved on (to cur/), removed, or never written
    std::string data;
    bool whole = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) &&
                 static_cast<uint64_t>(st.st_size) == size;
    if (whole) {
      data.resize(size);
      whole = io::PreadAll(fd.get(), data.data(), data.size(), 0) == 0 &&
              Crc32c(0, data) == crc;
    }
    if (!whole) {
      // Its flush never finished, so no 250 was sent for it.
      spdlog::warn("queue: intent log: {} is incomplete, removed", tmp);
      ::unlinkat(mail_root_.get(), tmp.c_str(), 0);
      continue;
    }
    if (::linkat(mail_root_.get(), tmp.c_str(), mail_root_.get(),
                 dest.c_str(), 0) != 0) {
      spdlog::error("queue: intent log: linking {} into new/: {}", tmp,
                    ErrnoText(errno));
      continue;
    }
    spdlog::info("queue: intent log: {} moved into new/", dest);
    drop.push_back(tmp);
    ++moved;
  }
  // The tmp/ names go once the links are durable.
  if (!drop.empty() && ::syncfs(mail_root_.get()) == 0) {
    for (const std::string& t : drop) ::unlinkat(mail_root_.get(), t.c_str(), 0);
  }
  return moved;
}

std::string LocalDelivery::FolderFor(bool junk, const std::string& rcpt,
                                     const std::string& mailbox,
                                     const store::MailboxPath& path) const {
  if (junk) return "Junk";
  auto f = DetailFolder(rcpt, mailbox);
  if (f && !store::IsInbox(*f) && FolderExists(path, *f)) return *f;
  return "";
}

bool LocalDelivery::FolderExists(const store::MailboxPath& path,
                                 const std::string& folder) const {
  std::string rel = path.domain + "/" + path.local + "/Maildir/" +
                    store::FolderDirectory(folder) + "/cur";
  struct stat st;
  return ::fstatat(mail_root_.get(), rel.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode);
}

Result<std::unique_ptr<LocalDelivery>> LocalDelivery::Open(
    LocalDeliveryOptions options, Resolver resolver) {
  if (!resolver) return Err("local delivery: no resolver");
  if (auto made = io::MkdirAll(options.mail_dir, kDirMode); !made)
    return tl::unexpected(made.error());
  auto root = io::OpenDir(options.mail_dir);
  if (!root) return tl::unexpected(root.error());
  return std::unique_ptr<LocalDelivery>(new LocalDelivery(
      std::move(*root), std::move(options.hostname), std::move(resolver),
      std::move(options.delivered)));
}

LocalDelivery::LocalDelivery(UniqueFd mail_root, std::string hostname,
                             Resolver resolver,
                             std::function<void(const std::string&, const std::string&)> delivered)
    : mail_root_(std::move(mail_root)),
      hostname_(std::move(hostname)),
      resolver_(std::move(resolver)),
      delivered_(std::move(delivered)) {}

std::vector<LocalOutcome> LocalDelivery::DeliverBatch(
    const queue::LocalSpool& spool, const std::vector<std::string>& ids) {
  std::vector<LocalOutcome> outcomes;
  std::vector<Work> works;
  works.reserve(ids.size());

  // Phase 1: load each message and its state.
  for (const std::string& id : ids) {
    outcomes.push_back(LocalOutcome{id, false, 0});
    Work w;
    w.id = id;
    w.fd.Reset(::openat(spool.msg_dir_fd, id.c_str(), O_RDONLY | O_CLOEXEC));
    if (!w.fd) {
      // Removed meanwhile (e.g. by an operator): nothing left to deliver.
      if (errno != ENOENT)
        spdlog::error("queue {}: open: {}", id, ErrnoText(errno));
      continue;
    }
    auto file = queue::ReadMessageMeta(w.fd.get());
    if (!file) {
      spdlog::error("queue {}: unreadable message file left in place: {}", id,
                    file.error().message);
      continue;
    }
    w.file = std::move(*file);
    int err = 0;
    auto raw = io::ReadSmallFileAt(spool.state_dir_fd, id, kMaxStateFile, &err);
    if (raw) {
      auto state = queue::DecodeState(*raw);
      if (state) {
        w.state = std::move(*state);
      } else {
        spdlog::warn("queue {}: ignoring state file: {}", id,
                     state.error().message);
        w.state = queue::InitialState(w.file.envelope);
      }
    } else {
      if (err != ENOENT) {
        spdlog::warn("queue {}: ignoring state file: {}", id,
                     raw.error().message);
      }
      w.state = queue::InitialState(w.file.envelope);
    }
    if (!w.file.envelope.prepend.empty()) {
      LineEndConverter conv;
      conv.Convert(w.file.envelope.prepend, w.lf_prepend);
      conv.Finish(w.lf_prepend);
    }
    if (w.file.body_len <= kMemoryBodyLimit) {
      std::string body(w.file.body_len, '\0');
      if (int rerr = io::PreadAll(w.fd.get(), body.data(), body.size(),
                                  static_cast<off_t>(w.file.body_offset));
          rerr != 0) {
        spdlog::error("queue {}: read: {}", id, ErrnoText(rerr));
        outcomes.back().retry = true;
        outcomes.back().retry_at =
            std::time(nullptr) + spool.finisher->policy().first;
        continue;
      }
      LineEndConverter conv;
      conv.Convert(body, w.lf_body);
      conv.Finish(w.lf_body);
      w.in_memory = true;
    }
    works.push_back(std::move(w));
  }

  // Phase 2: resolve pending recipients and write every copy into tmp/.
  MaildirBatch batch(mail_root_.get(), hostname_, spool.sync);
  for (Work& w : works) {
    MessageSource source;
    if (w.in_memory) {
      source.lf_body = &w.lf_body;
    } else {
      source.fd = w.fd.get();
      source.offset = w.file.body_offset;
      source.length = w.file.body_len;
    }
    std::map<std::string, int> copies;  // Maildir path -> copy, one per message
    const bool junk = MarkedJunk(w.lf_prepend);
    for (size_t i = 0; i < w.state.recipients.size(); ++i) {
      if (w.state.recipients[i].state != RecipientState::kPending) continue;
      Plan plan;
      plan.rcpt = i;
      auth::Resolution res = resolver_(w.state.recipients[i].recipient.address);
      plan.kind = res.kind;
      if (res.kind == Kind::kLocal) {
        for (std::string& mailbox : res.mailboxes) {
          Target t;
          t.mailbox = std::move(mailbox);
          auto path = store::MailboxPathFor(t.mailbox);
          if (!path) {
            t.error = path.error().message;
          } else {
            // Junk (DMARC quarantine) goes to the Junk folder; a detail
            // naming an existing folder ("user+Work@") to that folder.
            t.folder = FolderFor(junk, w.state.recipients[i].recipient.address,
                                 t.mailbox, *path);
            std::string key = path->domain + "/" + path->local + "/" + t.folder;
            auto it = copies.find(key);
            if (it != copies.end()) {
              t.copy = it->second;
            } else {
              t.copy = static_cast<int>(batch.Add(
                  *path,
                  DeliveryHeaders(w.file.envelope.sender, t.mailbox) + w.lf_prepend,
                  source,
                  t.folder.empty() ? std::string() : store::FolderDirectory(t.folder)));
              copies.emplace(key, t.copy);
            }
          }
          plan.targets.push_back(std::move(t));
        }
        plan.remote = std::move(res.remote);
      }
      w.plans.push_back(std::move(plan));
    }
  }

  // Phase 3: one sync before and one after the renames into new/.
  batch.Commit();

  // Phase 4: record the results; only now may the queue forget anything.
  const int64_t now = std::time(nullptr);
  for (size_t wi = 0; wi < works.size(); ++wi) {
    Work& w = works[wi];
    LocalOutcome& outcome =
        *std::find_if(outcomes.begin(), outcomes.end(),
                      [&](const LocalOutcome& o) { return o.id == w.id; });
    bool temp_failure = false;
    std::string last_error;
    for (const Plan& plan : w.plans) {
      // Copy: AppendRecipient may grow the vector.
      RecipientRecord rec = w.state.recipients[plan.rcpt];
      const std::string& rcpt = rec.recipient.address;
      if (plan.kind == Kind::kNotLocal) {
        // Keeps the last remote reply, if any, for `tern queue list`.
        if (rec.error.empty()) rec.error = kRemotePending;
        if (last_error.empty()) last_error = rec.error;
        w.remote.insert(rcpt);
        w.state.recipients[plan.rcpt] = std::move(rec);
        continue;
      }
      if (plan.kind == Kind::kUnknown ||
          (plan.targets.empty() && plan.remote.empty())) {
        rec.state = RecipientState::kFailed;
        rec.error = "user unknown";
        rec.status = "5.1.1";  // RFC 3463: bad destination mailbox
        spdlog::warn("queue {}: <{}> failed: user unknown", w.id, rcpt);
        metrics::CountDelivery("local", "failed", 0);
        TraceLocal(w.id, rcpt, "failed", "", "", "5.1.1 user unknown");
        w.state.recipients[plan.rcpt] = std::move(rec);
        continue;
      }
      // kLocal: classify each mailbox copy.
      struct Done {
        const Target* target;
        std::string error;
      };
      std::vector<const Target*> ok;
      std::vector<Done> temp, perm;
      for (const Target& t : plan.targets) {
        if (t.copy < 0) {
          spdlog::error("queue {}: <{}> mailbox {} refused: {}", w.id, rcpt,
                        t.mailbox, t.error);
          perm.push_back({&t, t.error});
          metrics::CountDelivery("local", "failed", 0);
          TraceLocal(w.id, rcpt, "failed", t.mailbox, t.folder, t.error);
          continue;
        }
        const Result<std::string>& r =
            batch.result(static_cast<size_t>(t.copy));
        if (r) {
          ok.push_back(&t);
          // Told before the log line, so whoever reads the log (the quota
          // test) sees the quota cache invalidated already.
          if (delivered_) {
            if (auto path = store::MailboxPathFor(t.mailbox)) {
              delivered_(path->domain + "/" + path->local,
                         t.folder.empty() ? std::string("INBOX") : t.folder);
            }
          }
          spdlog::info("queue {}: <{}> delivered to {}: {}", w.id, rcpt,
                       t.mailbox, *r);
          metrics::CountDelivery("local", "delivered", queue::QueueIdMicros(w.id));
          TraceLocal(w.id, rcpt, "delivered", t.mailbox, t.folder, "");
        } else {
          spdlog::warn("queue {}: <{}> delivery to {} deferred: {}", w.id, rcpt,
                       t.mailbox, r.error().message);
          temp.push_back({&t, r.error().message});
          metrics::CountDelivery("local", "deferred", 0);
          TraceLocal(w.id, rcpt, "deferred", t.mailbox, t.folder, r.error().message);
        }
      }
      bool expanded = !(plan.targets.size() == 1 && plan.remote.empty() &&
                        plan.targets[0].mailbox == rcpt);
      if (ok.size() == plan.targets.size() && plan.remote.empty()) {
        rec.state = RecipientState::kDelivered;
        rec.error.clear();
      } else if (!expanded || (ok.empty() && plan.remote.empty() &&
                               (perm.empty() || temp.empty()))) {
        // Nothing was delivered for it: the recipient itself stays pending
        // (or fails), and a retry cannot duplicate anything.
        if (!temp.empty()) {
          rec.error = temp.front().error;
          temp_failure = true;
          last_error = rec.error;
        } else {
          rec.state = RecipientState::kFailed;
          rec.error = perm.front().error;
          rec.status = "5.2.0";
        }
      } else {
        // Partly delivered alias expansion: mark the alias done and queue
        // what is left as recipients of their own, so a retry re-delivers
        // only those (RFC 3461 ORCPT keeps the original address).
        rec.state = RecipientState::kDelivered;
        rec.error = "expanded";
        for (const Done& d : temp) {
          AppendRecipient(w.state, rec, d.target->mailbox,
                          RecipientState::kPending, d.error);
          temp_failure = true;
          last_error = d.error;
        }
        for (const Done& d : perm) {
          AppendRecipient(w.state, rec, d.target->mailbox,
                          RecipientState::kFailed, d.error);
        }
        for (const std::string& remote : plan.remote) {
          spdlog::info("queue {}: <{}> expands to <{}>: remote", w.id, rcpt,
                       remote);
          AppendRecipient(w.state, rec, remote, RecipientState::kPending,
                          kRemotePending, /*forwarded=*/true);
          w.remote.insert(remote);
          if (last_error.empty()) last_error = kRemotePending;
        }
      }
      w.state.recipients[plan.rcpt] = std::move(rec);
    }

    if (!last_error.empty()) w.state.last_error = last_error;
    if (temp_failure) w.state.log.push_back({now, "local", last_error});
    queue::FinishOutcome fin = spool.finisher->Finish(
        w.id, w.fd.get(), w.file, w.state, temp_failure, now);
    outcome.retry = fin.retry;
    outcome.retry_at = fin.retry_at;
    if (fin.removed) continue;
    for (size_t i = 0; i < w.state.recipients.size(); ++i) {
      const RecipientRecord& r = w.state.recipients[i];
      if (r.state == RecipientState::kPending &&
          w.remote.count(r.recipient.address)) {
        outcome.remote.push_back({i, r.recipient, r.forwarded});
      }
    }
    if (!outcome.remote.empty()) {
      outcome.envelope = w.file.envelope;
      outcome.body_offset = w.file.body_offset;
      outcome.body_len = w.file.body_len;
    }
  }
  return outcomes;
}

}  // namespace tern::delivery
