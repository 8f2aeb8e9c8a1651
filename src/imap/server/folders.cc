// The IMAP commands of the authenticated state (RFC 9051 6.3): folders,
// STATUS, SELECT/EXAMINE (with RFC 7162 CONDSTORE and QRESYNC) and APPEND
// (RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID). Run by Work().
#include <algorithm>
#include <set>

#include "imap/protocol/quote.h"
#include "imap/server/session_impl.h"
#include "store/folder_name.h"

namespace tern::imap {
namespace {

// RFC 9051 6.3.9: "*" matches anything, "%" anything but the hierarchy
// delimiter. INBOX is case-insensitive, so its five letters are too.
bool MatchFrom(std::string_view pattern, size_t p, std::string_view name, size_t n,
               bool inbox_prefix) {
  while (p < pattern.size()) {
    char c = pattern[p];
    if (c == '*' || c == '%') {
      for (size_t k = n; k <= name.size(); ++k) {
        if (MatchFrom(pattern, p + 1, name, k, inbox_prefix)) return true;
        if (k < name.size() && c == '%' && name[k] == '/') return false;
      }
      return false;
    }
    if (n >= name.size()) return false;
    char a = c, b = name[n];
    if (inbox_prefix && n < 5) {
      a = static_cast<char>(std::toupper(static_cast<unsigned char>(a)));
      b = static_cast<char>(std::toupper(static_cast<unsigned char>(b)));
    }
    if (a != b) return false;
    ++p;
    ++n;
  }
  return n == name.size();
}

bool Match(std::string_view pattern, std::string_view name) {
  bool inbox = name == "INBOX" || name.substr(0, 6) == "INBOX/";
  return MatchFrom(pattern, 0, name, 0, inbox);
}

store::Flags FlagsOf(const std::vector<std::string>& flags,
                     std::vector<std::string>* keywords, bool* bad) {
  store::Flags f = 0;
  for (const std::string& name : flags) {
    if (!name.empty() && name[0] == '\\') {
      store::Flags bit = store::SystemFlagOf(name);
      if (bit == 0) {
        *bad = true;  // \Recent and unknown system flags cannot be set
        continue;
      }
      f |= bit;
    } else if (keywords &&
               std::find(keywords->begin(), keywords->end(), name) == keywords->end()) {
      keywords->push_back(name);
    }
  }
  return f;
}

}  // namespace

void Session::Impl::Namespace() {
  // RFC 2342 / RFC 9051 6.3.10: one personal namespace, "/" between levels.
  Untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
  Ok("NAMESPACE completed");
}

namespace {

// RFC 8438 STATUS=SIZE is asked for (it may cost counting sizes).
bool WantsSize(const std::vector<StatusItem>& items) {
  return std::find(items.begin(), items.end(), StatusItem::kSize) != items.end();
}

}  // namespace

std::string Session::Impl::StatusItems(const store::FolderStatus& st,
                                       const std::vector<StatusItem>& items) const {
  std::string out;
  auto add = [&](std::string_view name, uint64_t v) {
    if (!out.empty()) out += ' ';
    out += name;
    out += ' ';
    out += std::to_string(v);
  };
  for (StatusItem item : items) {
    switch (item) {
      case StatusItem::kMessages: add("MESSAGES", st.messages); break;
      case StatusItem::kUidNext: add("UIDNEXT", st.state.uidnext); break;
      case StatusItem::kUidValidity: add("UIDVALIDITY", st.state.uidvalidity); break;
      case StatusItem::kUnseen: add("UNSEEN", st.unseen); break;
      case StatusItem::kDeleted: add("DELETED", st.deleted); break;
      case StatusItem::kSize: add("SIZE", st.size); break;
      case StatusItem::kRecent: add("RECENT", 0); break;  // no \Recent (RFC 9051)
      case StatusItem::kHighestModSeq:
        add("HIGHESTMODSEQ", st.state.highest_modseq);
        break;
      case StatusItem::kAppendLimit: add("APPENDLIMIT", config.append_limit); break;
    }
  }
  return out;
}

void Session::Impl::List(const Command& cmd) {
  const auto& a = cmd.get<ListArgs>();
  bool sel_subscribed = false, sel_special = false;
  for (ListSelect s : a.select) {
    if (s == ListSelect::kSubscribed) sel_subscribed = true;
    if (s == ListSelect::kSpecialUse) sel_special = true;
  }
  bool ret_subscribed = sel_subscribed, ret_status = false;
  for (ListReturn r : a.returns) {
    if (r == ListReturn::kSubscribed) ret_subscribed = true;
    if (r == ListReturn::kStatus) ret_status = true;
  }
  // RFC 9051 6.3.9: an empty pattern asks for the delimiter and root.
  if (!a.has_select && a.patterns.size() == 1 && a.patterns[0].empty()) {
    Untagged("LIST (\\Noselect) \"/\" \"\"");
    Ok("LIST completed");
    return;
  }
  auto folders = store->ListFolders();
  if (!folders) {
    StoreError(folders.error());
    return;
  }
  std::set<std::string> subscribed;
  if (ret_subscribed) {
    auto subs = store->Subscriptions();
    if (!subs) {
      StoreError(subs.error());
      return;
    }
    subscribed.insert(subs->begin(), subs->end());
  }
  std::string reference = a.reference;
  std::vector<std::string> lines;
  std::set<std::string> listed;
  for (const store::FolderInfo& f : *folders) {
    bool match = false;
    for (const std::string& pattern : a.patterns) {
      // RFC 9051 6.3.9: the reference is a prefix of the pattern.
      if (Match(reference + pattern, f.name)) match = true;
    }
    if (!match) continue;
    bool is_sub = subscribed.count(f.name) > 0;
    if (sel_subscribed && !is_sub) continue;
    if (sel_special && f.special_use == store::SpecialUse::kNone) continue;
    std::string attrs = f.has_children ? "\\HasChildren" : "\\HasNoChildren";
    if (f.special_use != store::SpecialUse::kNone) {
      attrs += ' ';
      attrs += store::SpecialUseName(f.special_use);
    }
    if (ret_subscribed && is_sub) attrs += " \\Subscribed";
    listed.insert(f.name);
    Untagged("LIST (" + attrs + ") \"/\" " + MailboxOut(f.name));
    if (ret_status) {
      auto st = store->Status(f.name, WantsSize(a.status));
      if (st) {
        Untagged("STATUS " + MailboxOut(f.name) + " (" + StatusItems(*st, a.status) +
                 ")");
      }
    }
  }
  // Subscribed names whose folder is gone (RFC 5258 3.1: \NonExistent).
  if (sel_subscribed) {
    for (const std::string& name : subscribed) {
      if (listed.count(name)) continue;
      bool match = false;
      for (const std::string& pattern : a.patterns) {
        if (Match(reference + pattern, name)) match = true;
      }
      if (match) {
        Untagged("LIST (\\NonExistent \\Subscribed) \"/\" " + MailboxOut(name));
      }
    }
  }
  Ok("LIST completed");
}

void Session::Impl::Lsub(const Command& cmd) {
  // IMAP4rev1 (RFC 3501 6.3.9): the subscribed names matching the pattern.
  const auto& a = cmd.get<ListArgs>();
  auto subs = store->Subscriptions();
  if (!subs) {
    StoreError(subs.error());
    return;
  }
  for (const std::string& name : *subs) {
    bool match = false;
    for (const std::string& pattern : a.patterns) {
      if (Match(a.reference + pattern, name)) match = true;
    }
    if (match) Untagged("LSUB () \"/\" " + MailboxOut(name));
  }
  Ok("LSUB completed");
}

void Session::Impl::Create(const Command& cmd) {
  const auto& a = cmd.get<CreateArgs>();
  std::string name = a.mailbox;
  // RFC 9051 6.3.4: a trailing delimiter only says children will follow.
  while (!name.empty() && name.back() == '/') name.pop_back();
  if (name.empty()) {
    No("[CANNOT] Invalid mailbox name");
    return;
  }
  store::SpecialUse use = store::SpecialUse::kNone;
  if (a.use) {
    // RFC 6154 3: one use per folder here; an unknown one is [USEATTR].
    if (a.use->size() > 1) {
      No("[USEATTR] Only one special use per mailbox");
      return;
    }
    if (!a.use->empty()) {
      auto u = store::SpecialUseOf((*a.use)[0]);
      if (!u) {
        No("[USEATTR] Unsupported special use");
        return;
      }
      use = *u;
    }
  }
  if (store::IsInbox(name)) {
    No("[ALREADYEXISTS] INBOX always exists");
    return;
  }
  if (auto r = store->CreateFolder(name, use); !r) {
    StoreError(r.error());
    return;
  }
  Ok("CREATE completed");
}

void Session::Impl::Delete(const Command& cmd) {
  const std::string& name = cmd.get<MailboxArgs>().mailbox;
  if (auto r = store->DeleteFolder(name); !r) {
    StoreError(r.error());
    return;
  }
  if (selected && selected->name == name) {
    // RFC 9051 6.3.5 leaves this open; the folder is gone, so is the view.
    selected.reset();
    state = State::kAuthenticated;
    host.Watch("");
  }
  Ok("DELETE completed");
}

void Session::Impl::Rename(const Command& cmd) {
  const auto& a = cmd.get<RenameArgs>();
  if (auto r = store->RenameFolder(a.from, a.to); !r) {
    StoreError(r.error());
    return;
  }
  Ok("RENAME completed");
}

void Session::Impl::Subscribe(const Command& cmd, bool on) {
  const std::string& name = cmd.get<MailboxArgs>().mailbox;
  if (auto r = store->SetSubscribed(name, on); !r) {
    StoreError(r.error());
    return;
  }
  Ok(on ? "SUBSCRIBE completed" : "UNSUBSCRIBE completed");
}

void Session::Impl::Status(const Command& cmd) {
  const auto& a = cmd.get<StatusArgs>();
  for (StatusItem item : a.items) {
    if (item == StatusItem::kHighestModSeq) condstore = true;  // RFC 7162 3.1
  }
  auto st = store->Status(a.mailbox, WantsSize(a.items));
  if (!st) {
    StoreError(st.error());
    return;
  }
  Untagged("STATUS " + MailboxOut(a.mailbox) + " (" + StatusItems(*st, a.items) + ")");
  Ok("STATUS completed");
}

void Session::Impl::Select(const Command& cmd) {
  const auto& a = cmd.get<SelectArgs>();
  bool examine = cmd.name == CommandName::kExamine;
  if (a.qresync && !qresync) {
    Bad("QRESYNC must be enabled first");  // RFC 7162 3.2.5
    return;
  }
  if (selected) {
    // RFC 9051 6.3.2: the previous folder is closed without expunge.
    selected.reset();
    state = State::kAuthenticated;
    host.Watch("");
    Untagged("OK [CLOSED] Previous mailbox closed");
  }
  if (a.condstore) condstore = true;
  auto snap = store->Select(a.mailbox);
  if (!snap) {
    StoreError(snap.error());
    return;
  }
  SelectedFolder f;
  f.name = a.mailbox;
  f.read_only = examine;
  f.uidvalidity = snap->state.uidvalidity;
  f.uidnext = snap->state.uidnext;
  f.known_modseq = snap->state.highest_modseq;
  f.messages = std::move(snap->messages);
  for (const auto& m : f.messages) f.keywords.insert(m.keywords.begin(), m.keywords.end());
  f.last_sync = std::chrono::steady_clock::now();
  selected = std::move(f);
  state = State::kSelected;
  host.Watch(a.mailbox);

  SelectedFolder& s = *selected;
  Untagged(std::to_string(s.messages.size()) + " EXISTS");
  if (!rev2) Untagged("0 RECENT");  // RFC 3501 6.3.1 requires it
  Untagged(FlagsResponse());
  if (examine) {
    Untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
  } else {
    Untagged(
        "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
        "Flags permitted");
  }
  Untagged("OK [UIDVALIDITY " + std::to_string(s.uidvalidity) + "] UIDs valid");
  Untagged("OK [UIDNEXT " + std::to_string(s.uidnext) + "] Predicted next UID");
  if (condstore) {
    Untagged("OK [HIGHESTMODSEQ " + std::to_string(s.known_modseq) + "] Highest");
  }
  if (rev2) Untagged("LIST () \"/\" " + MailboxOut(s.name));  // RFC 9051 6.3.2
  if (a.qresync && a.qresync->uid_validity == s.uidvalidity) {
    // RFC 7162 3.2.5.1: what changed since the client's MODSEQ.
    auto ch = store->Sync(s.name, a.qresync->mod_seq);
    if (ch) {
      std::vector<uint32_t> vanished;
      for (uint32_t u : ch->expunged) {
        if (!a.qresync->known_uids || InSet(*a.qresync->known_uids, u, s.uidnext)) {
          vanished.push_back(u);
        }
      }
      if (!vanished.empty()) Untagged("VANISHED (EARLIER) " + FormatSet(vanished));
      for (const store::MessageMeta& m : ch->changed) {
        auto i = s.Find(m.uid);
        if (!i) continue;
        Untagged(std::to_string(*i + 1) + " FETCH (UID " + std::to_string(m.uid) +
                 " FLAGS " + FlagList(m) + " MODSEQ (" + std::to_string(m.modseq) +
                 "))");
      }
    }
  }
  Ok(examine ? "[READ-ONLY] EXAMINE completed" : "[READ-WRITE] SELECT completed");
}

bool Session::Impl::QuotaAllows(uint64_t octets) {
  auto q = host.Quota();
  if (!q || q->limit == 0 || q->used + octets <= q->limit) return true;
  No("[OVERQUOTA] Mailbox storage quota exceeded");  // RFC 9208 4.3
  return false;
}

void Session::Impl::QuotaCommand(const Command& cmd) {
  // RFC 9208: one quota root per account, named "", with the STORAGE
  // resource in units of 1024 octets.
  auto quota_line = [&](const store::FolderStatus*) {
    auto q = host.Quota();
    std::string res;
    if (q && q->limit > 0) {
      res = "STORAGE " + std::to_string((q->used + 1023) / 1024) + " " +
            std::to_string(q->limit / 1024);
    }
    Untagged("QUOTA \"\" (" + res + ")");
  };
  if (cmd.name == CommandName::kSetQuota) {
    No("[NOPERM] Quotas are set by the administrator (tern user quota)");
    return;
  }
  if (cmd.name == CommandName::kGetQuota) {
    if (!cmd.get<QuotaRootArgs>().root.empty()) {
      No("[NONEXISTENT] No such quota root");
      return;
    }
    quota_line(nullptr);
    Ok("GETQUOTA completed");
    return;
  }
  const std::string& mailbox = cmd.get<MailboxArgs>().mailbox;
  auto st = store->Status(mailbox, false);
  if (!st) {
    StoreError(st.error());
    return;
  }
  Untagged("QUOTAROOT " + MailboxOut(mailbox) + " \"\"");
  quota_line(nullptr);
  Ok("GETQUOTAROOT completed");
}

void Session::Impl::WriteAppendData() {
  if (!appending) return;
  Appending& a = *appending;
  for (auto& [index, data] : a.pending) {
    if (a.error) break;
    if (a.stages.size() <= index) a.stages.resize(index + 1);
    if (!a.stages[index]) {
      if (!a.mailbox) {
        a.error = Error{"APPEND mailbox name unreadable", EINVAL};
        break;
      }
      auto st = store->BeginAppend(*a.mailbox);
      if (!st) {
        a.error = st.error();
        break;
      }
      a.stages[index] = std::move(*st);
    }
    if (auto w = a.stages[index]->Write(data); !w) a.error = w.error();
  }
  a.pending.clear();
  a.pending_bytes = 0;
}

void Session::Impl::Append(const Command& cmd) {
  const auto& a = cmd.get<AppendArgs>();
  WriteAppendData();
  std::optional<Appending> streamed = std::move(appending);
  appending.reset();
  if (streamed && streamed->error) {
    StoreError(*streamed->error, true);
    return;
  }
  uint64_t octets = 0;
  for (const AppendMessage& m : a.messages) octets += m.size;
  if (!QuotaAllows(octets)) return;
  std::vector<store::StagedAppend> staged;
  for (const AppendMessage& m : a.messages) {
    store::StagedAppend sa;
    bool bad = false;
    sa.options.flags = FlagsOf(m.flags, &sa.options.keywords, &bad);
    if (bad) {
      Bad("Invalid system flag in APPEND");
      return;
    }
    if (m.date) sa.options.internal_date = ToUnixSeconds(*m.date);
    if (m.literal) {
      if (!streamed || streamed->stages.size() <= *m.literal ||
          !streamed->stages[*m.literal]) {
        No("[SERVERBUG] Message data lost");
        return;
      }
      sa.stage = std::move(streamed->stages[*m.literal]);
    } else {
      auto st = store->BeginAppend(a.mailbox);
      if (!st) {
        StoreError(st.error(), true);
        return;
      }
      if (auto w = (*st)->Write(m.data); !w) {
        StoreError(w.error(), true);
        return;
      }
      sa.stage = std::move(*st);
    }
    staged.push_back(std::move(sa));
  }
  auto done = store->CommitAppend(a.mailbox, std::move(staged));
  if (!done) {
    StoreError(done.error(), true);
    return;
  }
  host.Changed(a.mailbox);
  host.UsageChanged(static_cast<int64_t>(octets));
  if (selected && selected->name == a.mailbox) Refresh(true);
  std::vector<uint32_t> uids;
  for (const auto& r : *done) uids.push_back(r.uid);
  std::string set;
  // RFC 4315 3: the UIDs in the order of the messages.
  for (size_t i = 0; i < uids.size(); ++i) {
    if (i) set += ',';
    set += std::to_string(uids[i]);
  }
  if (uids.size() > 1 && uids.back() == uids.front() + uids.size() - 1) {
    set = std::to_string(uids.front()) + ":" + std::to_string(uids.back());
  }
  Ok("[APPENDUID " + std::to_string(done->empty() ? 0 : done->front().uidvalidity) +
     " " + set + "] APPEND completed");
}

}  // namespace tern::imap
