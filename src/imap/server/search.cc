// SEARCH and UID SEARCH (RFC 9051 6.4.4), with ESEARCH results (RFC 4731,
// IMAP4rev2), SEARCHRES "$" (RFC 5182) and MODSEQ (RFC 7162 3.1.5).
// Text keys read and decode each candidate message; see message.h. TEXT
// and BODY ask the store's full-text index first (MailStore::SearchText)
// and read only the messages it names.
#include <algorithm>
#include <chrono>
#include <cctype>
#include <iterator>

#include "imap/protocol/datetime.h"
#include "imap/protocol/mime_search.h"
#include "imap/protocol/quote.h"
#include "imap/server/message.h"
#include "imap/server/session_impl.h"
#include "imap/server/text_indexer.h"

namespace tern::imap {

namespace {

char Fold(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// RFC 9051 6.4.4: case-insensitive substring match (mime_search.h says
// what is folded).
bool ContainsFold(std::string_view hay, std::string_view needle) {
  return ContainsFolded(hay, needle);
}

bool EqualFold(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return Fold(x) == Fold(y); });
}

int64_t DayOf(const Date& d) {
  DateTime dt;
  dt.date = d;
  return ToUnixSeconds(dt) / 86400;
}

int64_t DayOfSeconds(int64_t s) { return s >= 0 ? s / 86400 : (s - 86399) / 86400; }

// SEARCH indexes up to this many messages itself, for at most this long.
constexpr size_t kInlineIndexMax = 256;
constexpr std::chrono::milliseconds kInlineIndexBudget{1000};

// Whether `key` or a key inside it is of `kind`.
bool HasKey(const SearchKey& key, SearchKey::Kind kind) {
  if (key.kind == kind) return true;
  for (const SearchKey& k : key.keys) {
    if (HasKey(k, kind)) return true;
  }
  return false;
}

bool UsesModSeq(const SearchKey& key) { return HasKey(key, SearchKey::Kind::kModSeq); }

std::vector<uint32_t> Intersect(const std::vector<uint32_t>& a,
                                const std::vector<uint32_t>& b) {
  std::vector<uint32_t> out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

std::vector<uint32_t> Unite(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  std::vector<uint32_t> out;
  std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

}  // namespace

bool Session::Impl::Matches(const SearchKey& key, size_t index, SearchContext& ctx) {
  using K = SearchKey::Kind;
  const SelectedFolder& s = *selected;
  const store::MessageMeta& m = s.messages[index];
  auto load = [&]() -> MessageText* {
    if (!ctx.text && !ctx.load_failed) {
      auto t = LoadMessage(*store, s.name, m.uid);
      if (t) {
        ctx.text = std::move(*t);
      } else {
        ctx.load_failed = true;
      }
    }
    return ctx.text ? &*ctx.text : nullptr;
  };
  auto header_has = [&](std::string_view field, std::string_view text) {
    MessageText* t = load();
    if (!t) return false;
    for (const std::string& v : t->HeaderValues(field)) {
      if (ContainsFold(v, text)) return true;
    }
    return false;
  };
  switch (key.kind) {
    case K::kAll: return true;
    case K::kAnswered: return m.flags & store::kAnswered;
    case K::kDeleted: return m.flags & store::kDeleted;
    case K::kDraft: return m.flags & store::kDraft;
    case K::kFlagged: return m.flags & store::kFlagged;
    case K::kSeen: return m.flags & store::kSeen;
    case K::kUnanswered: return !(m.flags & store::kAnswered);
    case K::kUndeleted: return !(m.flags & store::kDeleted);
    case K::kUndraft: return !(m.flags & store::kDraft);
    case K::kUnflagged: return !(m.flags & store::kFlagged);
    case K::kUnseen: return !(m.flags & store::kSeen);
    // No \Recent here (RFC 9051 dropped it): nothing is new or recent.
    case K::kNew: return false;
    case K::kRecent: return false;
    case K::kOld: return true;
    case K::kUnrecent: return true;
    case K::kBcc: return header_has("Bcc", key.text);
    case K::kCc: return header_has("Cc", key.text);
    case K::kFrom: return header_has("From", key.text);
    case K::kTo: return header_has("To", key.text);
    case K::kSubject: return header_has("Subject", key.text);
    case K::kHeader: {
      MessageText* t = load();
      if (!t) return false;
      auto values = t->HeaderValues(key.header);
      if (key.text.empty()) return !values.empty();  // RFC 9051: any value
      for (const std::string& v : values) {
        if (ContainsFold(v, key.text)) return true;
      }
      return false;
    }
    case K::kBody: {
      MessageText* t = load();
      return t && ContainsFold(t->BodyText(), key.text);
    }
    case K::kText: {
      MessageText* t = load();
      return t && (ContainsFold(t->HeaderBlock(), key.text) ||
                   ContainsFold(t->BodyText(), key.text));
    }
    case K::kKeyword:
    case K::kUnkeyword: {
      bool has = false;
      for (const std::string& k : m.keywords) has |= EqualFold(k, key.text);
      return key.kind == K::kKeyword ? has : !has;
    }
    case K::kBefore: return DayOfSeconds(m.internal_date) < DayOf(key.date);
    case K::kOn: return DayOfSeconds(m.internal_date) == DayOf(key.date);
    case K::kSince: return DayOfSeconds(m.internal_date) >= DayOf(key.date);
    case K::kSentBefore:
    case K::kSentOn:
    case K::kSentSince: {
      MessageText* t = load();
      if (!t) return false;
      auto sent = t->SentDate();
      if (!sent) return false;
      int64_t day = DayOf(*sent), want = DayOf(key.date);
      if (key.kind == K::kSentBefore) return day < want;
      if (key.kind == K::kSentOn) return day == want;
      return day >= want;
    }
    // A size that could not be counted (the file is unreadable) matches
    // neither.
    case K::kLarger: return m.size != store::kUnknownSize && m.size > key.number;
    case K::kSmaller: return m.size != store::kUnknownSize && m.size < key.number;
    case K::kUid: {
      if (key.set.saved) {
        return std::find(saved.begin(), saved.end(), m.uid) != saved.end();
      }
      uint32_t star = s.messages.empty() ? 0 : s.messages.back().uid;
      return InSet(key.set, m.uid, star);
    }
    case K::kSequenceSet: {
      if (key.set.saved) {
        return std::find(saved.begin(), saved.end(), m.uid) != saved.end();
      }
      return InSet(key.set, static_cast<uint32_t>(index + 1),
                   static_cast<uint32_t>(s.messages.size()));
    }
    case K::kModSeq:
      ctx.used_modseq = true;
      return m.modseq >= key.number;
    case K::kNot: return !Matches(key.keys[0], index, ctx);
    case K::kOr:
      return Matches(key.keys[0], index, ctx) || Matches(key.keys[1], index, ctx);
    case K::kAnd:
      for (const SearchKey& k : key.keys) {
        if (!Matches(k, index, ctx)) return false;
      }
      return true;
  }
  return false;
}

void Session::Impl::IndexSelectedText() {
  const SelectedFolder& s = *selected;
  // A few messages are indexed here and now; more than a batch go to the
  // background indexer (text_indexer.h), and this SEARCH reads what is not
  // indexed yet, as without an index.
  auto todo = store->UnindexedText(s.name, kInlineIndexMax + 1);
  if (!todo || todo->empty()) return;
  if (todo->size() <= kInlineIndexMax) {
    IndexFolderText(*store, s.name, std::chrono::steady_clock::now() + kInlineIndexBudget);
    return;
  }
  host.IndexTextLater(s.name);
}

std::optional<std::vector<uint32_t>> Session::Impl::TextCandidates(const SearchKey& key,
                                                                   bool* indexed) {
  using K = SearchKey::Kind;
  switch (key.kind) {
    case K::kText:
    case K::kBody: {
      if (!*indexed) {
        IndexSelectedText();
        *indexed = true;
      }
      auto r = store->SearchText(selected->name, key.text,
                                 key.kind == K::kBody ? store::TextField::kBody
                                                      : store::TextField::kText);
      if (!r || !*r) return std::nullopt;
      return std::move(**r);
    }
    case K::kAnd: {
      std::optional<std::vector<uint32_t>> out;
      for (const SearchKey& k : key.keys) {
        auto c = TextCandidates(k, indexed);
        if (c) out = out ? Intersect(*out, *c) : std::move(*c);
      }
      return out;
    }
    case K::kOr: {
      auto a = TextCandidates(key.keys[0], indexed);
      if (!a) return std::nullopt;
      auto b = TextCandidates(key.keys[1], indexed);
      if (!b) return std::nullopt;
      return Unite(*a, *b);
    }
    default:
      return std::nullopt;  // NOT and the rest: every message may match
  }
}

void Session::Impl::ForEachMatch(
    const std::vector<SearchKey>& keys, bool* used_modseq,
    const std::function<void(size_t index, SearchContext& ctx)>& each) {
  // The keys are ANDed (RFC 9051 6.4.4): a message outside the index's
  // candidates for one of them cannot match. The candidates are then
  // matched as without an index, so the answer is the same.
  std::optional<std::vector<uint32_t>> candidates;
  bool indexed = false;
  for (const SearchKey& k : keys) {
    auto c = TextCandidates(k, &indexed);
    if (c) candidates = candidates ? Intersect(*candidates, *c) : std::move(*c);
  }
  if (candidates) {
    // Skipped messages do not reach a MODSEQ key; RFC 7162 3.1.5 has any
    // MODSEQ criterion enable CONDSTORE.
    for (const SearchKey& k : keys) *used_modseq |= UsesModSeq(k);
  }
  for (const SearchKey& k : keys) {
    if (HasKey(k, SearchKey::Kind::kLarger) || HasKey(k, SearchKey::Kind::kSmaller)) {
      CountSizes();
      break;
    }
  }
  for (size_t i = 0; i < selected->messages.size(); ++i) {
    if (candidates && !std::binary_search(candidates->begin(), candidates->end(),
                                          selected->messages[i].uid)) {
      continue;
    }
    SearchContext ctx;
    bool all = true;
    for (const SearchKey& k : keys) {
      if (!Matches(k, i, ctx)) {
        all = false;
        break;
      }
    }
    *used_modseq |= ctx.used_modseq;
    if (all) each(i, ctx);
  }
}

void Session::Impl::Search(const Command& cmd) {
  const SelectedFolder& s = *selected;
  const auto& a = cmd.get<SearchArgs>();
  if (a.charset && !EqualFold(*a.charset, "UTF-8") && !EqualFold(*a.charset, "US-ASCII")) {
    // RFC 9051 6.4.4: the charsets we take.
    No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
    return;
  }
  std::vector<uint32_t> matched;  // UIDs or sequence numbers
  std::vector<uint32_t> matched_uids;
  bool used_modseq = false;
  uint64_t max_modseq = 0;
  ForEachMatch(a.keys, &used_modseq, [&](size_t i, SearchContext&) {
    matched_uids.push_back(s.messages[i].uid);
    matched.push_back(cmd.uid ? s.messages[i].uid : static_cast<uint32_t>(i + 1));
    max_modseq = std::max(max_modseq, s.messages[i].modseq);
  });
  if (used_modseq) condstore = true;
  bool save = false, min = false, max = false, count = false, all = false;
  for (SearchReturn r : a.returns) {
    save |= r == SearchReturn::kSave;
    min |= r == SearchReturn::kMin;
    max |= r == SearchReturn::kMax;
    count |= r == SearchReturn::kCount;
    all |= r == SearchReturn::kAll;
  }
  if (a.has_return && a.returns.empty()) all = true;  // RETURN () means ALL
  if (save) saved = matched_uids;
  bool esearch = a.has_return || rev2;
  if (!a.has_return && rev2) all = true;
  if (!esearch) {
    std::string line = "SEARCH";
    for (uint32_t n : matched) line += ' ' + std::to_string(n);
    if (used_modseq && !matched.empty()) {
      line += " (MODSEQ " + std::to_string(max_modseq) + ")";
    }
    Untagged(line);
  } else if (min || max || count || all) {
    // RFC 4731 3.1 / RFC 9051 7.3.4.
    std::string line = "ESEARCH (TAG " + FormatString(tag_, false) + ")";
    if (cmd.uid) line += " UID";
    if (min && !matched.empty()) line += " MIN " + std::to_string(matched.front());
    if (max && !matched.empty()) line += " MAX " + std::to_string(matched.back());
    if (all && !matched.empty()) line += " ALL " + FormatSet(matched);
    if (count) line += " COUNT " + std::to_string(matched.size());
    if (used_modseq && !matched.empty()) line += " MODSEQ " + std::to_string(max_modseq);
    Untagged(line);
  }
  Refresh(cmd.uid);
  Ok(cmd.uid ? "UID SEARCH completed" : "SEARCH completed");
}

}  // namespace tern::imap
