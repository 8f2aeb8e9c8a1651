// The selected folder (RFC 9051 6.4): the session's view of it, the
// untagged updates that keep a client in step with changes made elsewhere
// (RFC 9051 7.5; RFC 7162 CONDSTORE/QRESYNC), and CLOSE, UNSELECT,
// EXPUNGE, STORE, COPY and MOVE (RFC 6851).
#include <algorithm>

#include "imap/server/session_impl.h"

namespace tern::imap {
namespace {

store::StoreMode ModeOf(StoreMode m) {
  switch (m) {
    case StoreMode::kAdd: return store::StoreMode::kAdd;
    case StoreMode::kRemove: return store::StoreMode::kRemove;
    case StoreMode::kReplace: break;
  }
  return store::StoreMode::kReplace;
}

using UidRuns = std::vector<SelectedFolder::UidRun>;

// Position (sequence number - 1) of `uid` among ascending runs.
std::optional<size_t> RunIndex(const UidRuns& runs, uint32_t uid) {
  size_t before = 0;
  for (const auto& r : runs) {
    if (uid < r.first) return std::nullopt;
    if (uid <= r.last) return before + (uid - r.first);
    before += static_cast<size_t>(r.last - r.first) + 1;
  }
  return std::nullopt;
}

size_t RunCount(const UidRuns& runs) {
  size_t n = 0;
  for (const auto& r : runs) n += static_cast<size_t>(r.last - r.first) + 1;
  return n;
}

// `uid` above every UID of the runs.
void RunAppend(UidRuns& runs, uint32_t uid) {
  if (!runs.empty() && runs.back().last + 1 == uid) {
    runs.back().last = uid;
  } else {
    runs.push_back({uid, uid});
  }
}

void RunErase(UidRuns& runs, uint32_t uid) {
  auto it = std::find_if(runs.begin(), runs.end(),
                         [&](const SelectedFolder::UidRun& r) { return uid <= r.last; });
  if (it == runs.end() || uid < it->first) return;
  if (it->first == it->last) {
    runs.erase(it);
  } else if (uid == it->first) {
    ++it->first;
  } else if (uid == it->last) {
    --it->last;
  } else {
    SelectedFolder::UidRun tail{uid + 1, it->last};
    it->last = uid - 1;
    runs.insert(it + 1, tail);
  }
}

}  // namespace

bool InSet(const SequenceSet& set, uint32_t n, uint32_t star) {
  for (const SeqRange& r : set.ranges) {
    uint32_t a = r.first == kStar ? star : r.first;
    uint32_t b = r.last == kStar ? star : r.last;
    if (a > b) std::swap(a, b);
    if (n >= a && n <= b) return true;
  }
  return false;
}

std::string Session::Impl::FlagList(const store::MessageMeta& m) const {
  std::string out = "(";
  for (const std::string& f : store::SystemFlagNames(m.flags)) {
    if (out.size() > 1) out += ' ';
    out += f;
  }
  for (const std::string& k : m.keywords) {
    if (out.size() > 1) out += ' ';
    out += k;
  }
  out += ')';
  return out;
}

std::string Session::Impl::FlagsResponse() const {
  std::string out = "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft";
  if (selected) {
    for (const std::string& k : selected->keywords) {
      out += ' ';
      out += k;
    }
  }
  out += ')';
  return out;
}

std::string Session::Impl::FlagsUpdate(size_t seq, const store::MessageMeta& m) const {
  std::string line = "* " + std::to_string(seq) + " FETCH (UID " + std::to_string(m.uid) +
                     " FLAGS " + FlagList(m);
  if (condstore) line += " MODSEQ (" + std::to_string(m.modseq) + ")";
  line += ")\r\n";
  return line;
}

bool Session::Impl::NoteKeywords(const store::MessageMeta& m) {
  bool added = false;
  for (const std::string& k : m.keywords) added |= selected->keywords.insert(k).second;
  return added;
}

void Session::Impl::Refresh(bool expunge_ok) {
  if (!selected || !store) return;
  SelectedFolder& s = *selected;
  auto ch = store->Sync(s.name, s.known_modseq);
  s.last_sync = std::chrono::steady_clock::now();
  woken = false;
  if (!ch) return;  // tried again at the next command
  if (s.hibernated) {
    RefreshHibernated(*ch);
    return;
  }
  std::vector<store::MessageMeta> added;
  bool new_keywords = false;
  std::string fetches;
  for (store::MessageMeta& m : ch->changed) {
    new_keywords |= NoteKeywords(m);
    if (auto i = s.Find(m.uid)) {
      store::MessageMeta& old = s.messages[*i];
      bool differs = old.flags != m.flags || old.keywords != m.keywords;
      old = std::move(m);
      if (differs) fetches += FlagsUpdate(*i + 1, old);
    } else if (s.messages.empty() || m.uid > s.messages.back().uid) {
      added.push_back(std::move(m));
    }
  }
  if (new_keywords) Untagged(FlagsResponse());
  out += fetches;
  for (uint32_t u : ch->expunged) {
    if (s.Find(u) && std::find(s.pending_expunge.begin(), s.pending_expunge.end(), u) ==
                         s.pending_expunge.end()) {
      s.pending_expunge.push_back(u);
    }
  }
  if (expunge_ok) FlushExpunges();
  if (!added.empty()) {
    for (auto& m : added) s.messages.push_back(std::move(m));
    Untagged(std::to_string(s.messages.size()) + " EXISTS");
  }
  s.known_modseq = std::max(s.known_modseq, ch->state.highest_modseq);
  s.uidnext = std::max(s.uidnext, ch->state.uidnext);
}

void Session::Impl::RefreshHibernated(const store::FolderChanges& ch) {
  SelectedFolder& s = *selected;
  bool new_keywords = false;
  std::string fetches;
  std::vector<uint32_t> added;
  uint32_t last = s.idle_uids.empty() ? 0 : s.idle_uids.back().last;
  for (const store::MessageMeta& m : ch.changed) {
    new_keywords |= NoteKeywords(m);
    if (auto i = RunIndex(s.idle_uids, m.uid)) {
      // The flags last told are not kept here, so every change is told,
      // also one that ends where it started (RFC 9051 7.5.2 lets a server
      // send FETCH data at any time).
      fetches += FlagsUpdate(*i + 1, m);
    } else if (m.uid > last) {
      added.push_back(m.uid);
      last = m.uid;
    }
  }
  if (new_keywords) Untagged(FlagsResponse());
  out += fetches;
  // In IDLE expunges are always sent (RFC 9051 7.5.1 holds them back only
  // during FETCH, STORE and SEARCH), so none is pending here.
  std::vector<uint32_t> gone;
  for (uint32_t u : ch.expunged) {  // ascending: each EXPUNGE renumbers
    auto i = RunIndex(s.idle_uids, u);
    if (!i) continue;
    if (!qresync) Untagged(std::to_string(*i + 1) + " EXPUNGE");
    RunErase(s.idle_uids, u);
    gone.push_back(u);
  }
  if (qresync && !gone.empty()) Untagged("VANISHED " + FormatSet(gone));
  if (!added.empty()) {
    for (uint32_t u : added) RunAppend(s.idle_uids, u);
    Untagged(std::to_string(RunCount(s.idle_uids)) + " EXISTS");
  }
  s.known_modseq = std::max(s.known_modseq, ch.state.highest_modseq);
  s.uidnext = std::max(s.uidnext, ch.state.uidnext);
}

void Session::Impl::Hibernate() {
  if (selected) {
    SelectedFolder& s = *selected;
    FlushExpunges();
    if (!s.hibernated) {
      s.idle_uids.clear();
      for (const store::MessageMeta& m : s.messages) RunAppend(s.idle_uids, m.uid);
      s.idle_uids.shrink_to_fit();
      std::vector<store::MessageMeta>().swap(s.messages);
      s.hibernated = true;
    }
  }
  saved.shrink_to_fit();
  if (store) store->ReleaseMemory();
  host.ReleaseMemory();
}

bool Session::Impl::Thaw() {
  SelectedFolder& s = *selected;
  if (!s.hibernated) return true;
  auto snap = store->Select(s.name);
  if (!snap) {
    StoreError(snap.error());  // still hibernated: the next command tries again
    return false;
  }
  // The messages the client knows, as they are now. A change made after
  // the last look (MODSEQ above known_modseq) is told here, since the
  // next Refresh compares with what the view holds; a message gone since
  // then stays with no flags until its EXPUNGE may be sent; newer
  // messages are left for Refresh to announce with EXISTS.
  std::vector<store::MessageMeta> view;
  view.reserve(RunCount(s.idle_uids));
  std::string fetches;
  bool new_keywords = false;
  auto it = snap->messages.begin();
  for (const SelectedFolder::UidRun& r : s.idle_uids) {
    for (uint64_t u = r.first; u <= r.last; ++u) {
      while (it != snap->messages.end() && it->uid < u) ++it;
      if (it != snap->messages.end() && it->uid == u) {
        if (it->modseq > s.known_modseq) {
          new_keywords |= NoteKeywords(*it);
          fetches += FlagsUpdate(view.size() + 1, *it);
        }
        view.push_back(std::move(*it));
      } else {
        store::MessageMeta gone;
        gone.uid = static_cast<uint32_t>(u);
        view.push_back(std::move(gone));
        s.pending_expunge.push_back(static_cast<uint32_t>(u));
      }
    }
  }
  if (new_keywords) Untagged(FlagsResponse());
  out += fetches;
  s.messages = std::move(view);
  s.hibernated = false;
  UidRuns().swap(s.idle_uids);
  return true;
}

void Session::Impl::FlushExpunges() {
  if (!selected || selected->pending_expunge.empty()) return;
  std::vector<uint32_t> uids = std::move(selected->pending_expunge);
  selected->pending_expunge.clear();
  std::sort(uids.begin(), uids.end());
  SendExpunged(uids);
}

void Session::Impl::SendExpunged(const std::vector<uint32_t>& uids) {
  SelectedFolder& s = *selected;
  std::vector<uint32_t> gone;
  for (uint32_t u : uids) {
    auto i = s.Find(u);
    if (!i) continue;
    // RFC 9051 7.5.1: each EXPUNGE renumbers the messages after it, so
    // ascending UIDs are announced with their current numbers.
    if (!qresync) Untagged(std::to_string(*i + 1) + " EXPUNGE");
    s.messages.erase(s.messages.begin() + static_cast<std::ptrdiff_t>(*i));
    gone.push_back(u);
  }
  // RFC 7162 3.2.10: VANISHED instead, once QRESYNC is enabled.
  if (qresync && !gone.empty()) Untagged("VANISHED " + FormatSet(gone));
  auto p = std::remove_if(s.pending_expunge.begin(), s.pending_expunge.end(),
                          [&](uint32_t u) { return !s.Find(u); });
  s.pending_expunge.erase(p, s.pending_expunge.end());
}

void Session::Impl::CountSizes(const std::vector<size_t>* indexes) {
  SelectedFolder& s = *selected;
  std::vector<uint32_t> uids;
  auto want = [&](size_t i) {
    if (s.messages[i].size == store::kUnknownSize) uids.push_back(s.messages[i].uid);
  };
  if (indexes) {
    for (size_t i : *indexes) want(i);
  } else {
    for (size_t i = 0; i < s.messages.size(); ++i) want(i);
  }
  if (uids.empty()) return;
  auto counted = store->Sizes(s.name, uids);
  if (!counted) return;  // they stay unknown: FETCH says the message cannot be read
  for (const auto& [uid, size] : *counted) {
    if (auto i = s.Find(uid)) s.messages[*i].size = size;
  }
}

bool Session::Impl::Resolve(const SequenceSet& set, bool uid, std::vector<size_t>* out) {
  const SelectedFolder& s = *selected;
  out->clear();
  if (set.saved) {
    // RFC 5182 2.1: "$" is the saved result, whatever the command's kind.
    for (uint32_t u : saved) {
      if (auto i = s.Find(u)) out->push_back(*i);
    }
  } else if (uid) {
    if (s.messages.empty()) return true;
    uint32_t max_uid = s.messages.back().uid;
    for (const SeqRange& r : set.ranges) {
      uint32_t a = r.first == kStar ? max_uid : r.first;
      uint32_t b = r.last == kStar ? max_uid : r.last;
      if (a > b) std::swap(a, b);
      auto lo = std::lower_bound(
          s.messages.begin(), s.messages.end(), a,
          [](const store::MessageMeta& m, uint32_t u) { return m.uid < u; });
      for (auto it = lo; it != s.messages.end() && it->uid <= b; ++it) {
        out->push_back(static_cast<size_t>(it - s.messages.begin()));
      }
    }
  } else {
    uint32_t n = static_cast<uint32_t>(s.messages.size());
    for (const SeqRange& r : set.ranges) {
      uint32_t a = r.first == kStar ? n : r.first;
      uint32_t b = r.last == kStar ? n : r.last;
      if (a > b) std::swap(a, b);
      if (n == 0 || b > n || a == 0) {
        // RFC 9051 9: numbers beyond the last message are an error.
        Bad("Invalid sequence number");
        return false;
      }
      for (uint32_t k = a; k <= b; ++k) out->push_back(k - 1);
    }
  }
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
  return true;
}

void Session::Impl::Close(bool expunge) {
  SelectedFolder& s = *selected;
  if (expunge && !s.read_only) {
    // RFC 9051 6.4.1: CLOSE expunges silently.
    auto r = store->Expunge(s.name, std::nullopt);
    if (r && !r->empty()) host.Changed(s.name);
  }
  selected.reset();
  state = State::kAuthenticated;
  host.Watch("");
  Ok(expunge ? "CLOSE completed" : "UNSELECT completed");
}

void Session::Impl::Expunge(const Command& cmd) {
  SelectedFolder& s = *selected;
  std::optional<std::vector<uint32_t>> uids;
  if (cmd.uid) {
    std::vector<size_t> idx;
    if (!Resolve(cmd.get<UidExpungeArgs>().set, true, &idx)) return;
    uids.emplace();
    for (size_t i : idx) uids->push_back(s.messages[i].uid);
  }
  Refresh(true);
  if (host.TracksUsage()) {
    std::vector<size_t> doomed;  // what the quota figure will lose
    for (size_t i = 0; i < s.messages.size(); ++i) {
      if (s.messages[i].flags & store::kDeleted) doomed.push_back(i);
    }
    CountSizes(&doomed);
  }
  auto r = store->Expunge(s.name, uids);
  if (!r) {
    StoreError(r.error());
    return;
  }
  int64_t freed = 0;
  for (uint32_t u : *r) {
    auto i = s.Find(u);
    if (i && s.messages[*i].size != store::kUnknownSize) {
      freed += static_cast<int64_t>(s.messages[*i].size);
    }
  }
  host.UsageChanged(-freed);
  SendExpunged(*r);
  if (!r->empty()) host.Changed(s.name);
  Refresh(true);
  if (condstore) {
    Ok("[HIGHESTMODSEQ " + std::to_string(s.known_modseq) + "] EXPUNGE completed");
  } else {
    Ok("EXPUNGE completed");
  }
}

void Session::Impl::Store(const Command& cmd) {
  SelectedFolder& s = *selected;
  const auto& a = cmd.get<StoreArgs>();
  std::vector<size_t> idx;
  if (!Resolve(a.set, cmd.uid, &idx)) return;
  store::StoreRequest req;
  req.mode = ModeOf(a.mode);
  for (const std::string& f : a.flags) {
    if (!f.empty() && f[0] == '\\') {
      store::Flags bit = store::SystemFlagOf(f);
      if (bit == 0) {
        Bad("Invalid system flag");
        return;
      }
      req.flags |= bit;
    } else if (std::find(req.keywords.begin(), req.keywords.end(), f) ==
               req.keywords.end()) {
      req.keywords.push_back(f);
    }
  }
  if (a.unchanged_since) {
    condstore = true;  // RFC 7162 3.1: using it enables CONDSTORE
    req.unchanged_since = a.unchanged_since;
  }
  for (size_t i : idx) req.uids.push_back(s.messages[i].uid);
  std::vector<store::StoreResult> none;
  store::StoreResult res;
  if (!req.uids.empty()) {
    auto r = store->StoreFlags(s.name, req);
    if (!r) {
      StoreError(r.error());
      return;
    }
    res = std::move(*r);
  }
  bool new_keywords = false;
  for (store::MessageMeta& m : res.updated) {
    new_keywords |= NoteKeywords(m);
    if (auto i = s.Find(m.uid)) s.messages[*i] = std::move(m);
  }
  if (new_keywords) Untagged(FlagsResponse());
  std::vector<uint32_t> failed = res.failed;
  std::sort(failed.begin(), failed.end());
  // RFC 9051 6.4.6: the new flags of each message, unless .SILENT (RFC
  // 7162 3.1.3: with CONDSTORE the MODSEQ goes along).
  for (size_t i : idx) {
    const store::MessageMeta& m = s.messages[i];
    if (std::binary_search(failed.begin(), failed.end(), m.uid)) continue;
    if (a.silent && !condstore) continue;
    std::string line = std::to_string(i + 1) + " FETCH (";
    if (!a.silent) line += "FLAGS " + FlagList(m);
    if (cmd.uid || condstore) {
      if (line.back() != '(') line += ' ';
      line += "UID " + std::to_string(m.uid);
    }
    if (condstore) line += " MODSEQ (" + std::to_string(m.modseq) + ")";
    line += ')';
    if (a.silent && !condstore) continue;
    Untagged(line);
  }
  if (!res.updated.empty()) host.Changed(s.name);
  Refresh(cmd.uid);
  if (!failed.empty()) {
    // RFC 7162 3.1.3: [MODIFIED] names what UNCHANGEDSINCE kept.
    std::vector<uint32_t> names;
    for (uint32_t u : failed) {
      if (cmd.uid) {
        names.push_back(u);
      } else if (auto i = s.Find(u)) {
        names.push_back(static_cast<uint32_t>(*i + 1));
      }
    }
    std::sort(names.begin(), names.end());
    Ok("[MODIFIED " + FormatSet(names) + "] Conditional STORE failed");
    return;
  }
  Ok("STORE completed");
}

void Session::Impl::Copy(const Command& cmd, bool move) {
  SelectedFolder& s = *selected;
  const auto& a = cmd.get<CopyArgs>();
  std::vector<size_t> idx;
  if (!Resolve(a.set, cmd.uid, &idx)) return;
  std::vector<uint32_t> uids;
  for (size_t i : idx) uids.push_back(s.messages[i].uid);
  if (uids.empty()) {
    Ok(move ? "MOVE completed" : "COPY completed");
    return;
  }
  if (!move && host.TracksUsage()) CountSizes(&idx);
  uint64_t octets = 0;
  for (size_t i : idx) {
    if (s.messages[i].size != store::kUnknownSize) octets += s.messages[i].size;
  }
  // A MOVE within the account adds nothing; a COPY adds the copies.
  if (!move && !QuotaAllows(octets)) return;
  auto r = move ? store->Move(s.name, uids, a.mailbox)
                : store->Copy(s.name, uids, a.mailbox);
  if (!r) {
    StoreError(r.error(), true);
    return;
  }
  host.Changed(a.mailbox);
  if (!move) host.UsageChanged(static_cast<int64_t>(octets));
  std::string code;
  if (!r->source_uids.empty()) {
    code = "[COPYUID " + std::to_string(r->uidvalidity) + " " +
           FormatSet(r->source_uids) + " ";
    // RFC 4315 3: the target UIDs in the order of the source UIDs.
    std::string targets;
    bool consecutive = true;
    for (size_t i = 1; i < r->target_uids.size(); ++i) {
      consecutive &= r->target_uids[i] == r->target_uids[i - 1] + 1;
    }
    if (consecutive) {
      targets = FormatSet(r->target_uids);
    } else {
      for (size_t i = 0; i < r->target_uids.size(); ++i) {
        if (i) targets += ',';
        targets += std::to_string(r->target_uids[i]);
      }
    }
    code += targets + "] ";
  }
  if (move) {
    // RFC 6851 4.3: COPYUID comes in an untagged OK before the expunges.
    if (!code.empty()) Untagged("OK " + code + "Moved");
    SendExpunged(r->source_uids);
    host.Changed(s.name);
    Refresh(true);
    Ok("MOVE completed");
    return;
  }
  if (a.mailbox == s.name) Refresh(true);
  Ok(code + "COPY completed");
}

}  // namespace tern::imap
