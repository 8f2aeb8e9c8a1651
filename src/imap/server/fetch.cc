// FETCH and UID FETCH (RFC 9051 6.4.5, RFC 7162 CHANGEDSINCE/VANISHED, RFC
// 3516 BINARY): answered in pieces of about SessionConfig::output_chunk so
// that `FETCH 1:* BODY[]` of a large folder streams instead of piling up.
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "imap/protocol/datetime.h"
#include "imap/protocol/quote.h"
#include "imap/server/message.h"
#include "imap/server/session_impl.h"
#include "store/crlf.h"

namespace tern::imap {
namespace {

bool SetsSeen(const FetchItem& item) {
  switch (item.att) {
    case FetchAtt::kBodySection:
    case FetchAtt::kBinary:
      return !item.peek;
    case FetchAtt::kRfc822:
    case FetchAtt::kRfc822Text:
      return true;
    default:
      return false;
  }
}

// Part-cache kinds (store::PartCacheEntry::kind); +8 for the UTF-8 form.
constexpr uint8_t kCacheEnvelope = 1;
constexpr uint8_t kCacheBody = 2;
constexpr uint8_t kCacheBodyStructure = 3;
constexpr uint8_t kCacheUtf8 = 8;
// How many messages' cache entries are read at once.
constexpr size_t kCacheBatch = 1000;

uint8_t CacheKind(FetchAtt att) {
  switch (att) {
    case FetchAtt::kEnvelope: return kCacheEnvelope;
    case FetchAtt::kBody: return kCacheBody;
    case FetchAtt::kBodyStructure: return kCacheBodyStructure;
    default: return 0;
  }
}

// Items that need the message's octets (the cacheable renderings are
// looked up first).
bool NeedsContent(const FetchItem& item) {
  switch (item.att) {
    case FetchAtt::kBodySection:
    case FetchAtt::kBinary:
    case FetchAtt::kBinarySize:
    case FetchAtt::kRfc822:
    case FetchAtt::kRfc822Header:
    case FetchAtt::kRfc822Text:
      return true;
    default:
      return false;
  }
}

// The section as the response names it (RFC 9051 7.5.2 section).
std::string SectionName(const Section& s, bool utf8) {
  std::string out;
  for (size_t i = 0; i < s.part.size(); ++i) {
    if (i) out += '.';
    out += std::to_string(s.part[i]);
  }
  std::string_view text;
  switch (s.text) {
    case SectionText::kNone: break;
    case SectionText::kHeader: text = "HEADER"; break;
    case SectionText::kHeaderFields: text = "HEADER.FIELDS"; break;
    case SectionText::kHeaderFieldsNot: text = "HEADER.FIELDS.NOT"; break;
    case SectionText::kText: text = "TEXT"; break;
    case SectionText::kMime: text = "MIME"; break;
  }
  if (!text.empty()) {
    if (!out.empty()) out += '.';
    out += text;
  }
  if (s.text == SectionText::kHeaderFields || s.text == SectionText::kHeaderFieldsNot) {
    out += " (";
    for (size_t i = 0; i < s.fields.size(); ++i) {
      if (i) out += ' ';
      out += FormatAstring(s.fields[i], utf8);
    }
    out += ')';
  }
  return out;
}

std::string_view Slice(std::string_view data, const std::optional<Partial>& p) {
  if (!p) return data;
  if (p->offset >= data.size()) return {};
  return data.substr(p->offset, p->length);
}

void AppendLiteral(std::string& out, std::string_view data, bool binary) {
  bool nul = binary && data.find('\0') != std::string_view::npos;
  if (nul) out += '~';  // RFC 9051 4.3.1 literal8
  out += '{';
  out += std::to_string(data.size());
  out += "}\r\n";
  out += data;
}

}  // namespace

void Session::Impl::Fetch(const Command& cmd) {
  SelectedFolder& s = *selected;
  const auto& a = cmd.get<FetchArgs>();
  std::vector<size_t> idx;
  if (!Resolve(a.set, cmd.uid, &idx)) return;
  if (a.changed_since) {
    condstore = true;  // RFC 7162 3.1: use enables it
    idx.erase(std::remove_if(idx.begin(), idx.end(),
                             [&](size_t i) {
                               return s.messages[i].modseq <= *a.changed_since;
                             }),
              idx.end());
    if (a.vanished) {
      if (!qresync) {
        Bad("VANISHED needs QRESYNC enabled");
        return;
      }
      // RFC 7162 3.2.6: the UIDs of the set expunged since then.
      auto ch = store->Sync(s.name, *a.changed_since);
      if (ch) {
        std::vector<uint32_t> gone;
        uint32_t star = s.messages.empty() ? 0 : s.messages.back().uid;
        for (uint32_t u : ch->expunged) {
          if (InSet(a.set, u, star)) gone.push_back(u);
        }
        if (!gone.empty()) Untagged("VANISHED (EARLIER) " + FormatSet(gone));
      }
    }
  }
  Fetching f;
  f.cmd = cmd;
  f.indexes = std::move(idx);
  f.seen_set.assign(f.indexes.size(), false);
  bool sets_seen = false;
  for (const FetchItem& item : a.items) sets_seen |= SetsSeen(item);
  if (sets_seen && !s.read_only) {
    // RFC 9051 6.4.5: fetching the text sets \Seen; the FETCH response
    // then includes the new FLAGS.
    store::StoreRequest req;
    req.mode = store::StoreMode::kAdd;
    req.flags = store::kSeen;
    for (size_t i : f.indexes) {
      if (!(s.messages[i].flags & store::kSeen)) req.uids.push_back(s.messages[i].uid);
    }
    if (!req.uids.empty()) {
      auto r = store->StoreFlags(s.name, req);
      if (r) {
        for (store::MessageMeta& m : r->updated) {
          if (auto i = s.Find(m.uid)) s.messages[*i] = std::move(m);
        }
        for (size_t k = 0; k < f.indexes.size(); ++k) {
          uint32_t uid = s.messages[f.indexes[k]].uid;
          f.seen_set[k] = std::find(req.uids.begin(), req.uids.end(), uid) != req.uids.end();
        }
        host.Changed(s.name);
      }
    }
  }
  fetching = std::move(f);
  FetchMore();
}

void Session::Impl::FetchMore() {
  SelectedFolder& s = *selected;
  Fetching& f = *fetching;
  const auto& a = f.cmd.get<FetchArgs>();
  tag_ = f.cmd.tag;
  bool want_uid = f.cmd.uid;
  bool has_flags = false, has_modseq = false;
  bool content = false, cacheable = false, has_size = false;
  for (const FetchItem& item : a.items) {
    want_uid &= item.att != FetchAtt::kUid;
    has_size |= item.att == FetchAtt::kRfc822Size;
    has_flags |= item.att == FetchAtt::kFlags;
    has_modseq |= item.att == FetchAtt::kModSeq;
    content |= NeedsContent(item);
    cacheable |= CacheKind(item.att) != 0;
  }
  if (has_modseq) condstore = true;
  bool u8 = utf8();
  const uint8_t form = u8 ? kCacheUtf8 : 0;
  auto save_cache = [&] {
    if (!f.to_save.empty()) {
      (void)store->SavePartCache(s.name, f.to_save);  // a cache: best effort
      f.to_save.clear();
    }
    if (!f.sizes_to_save.empty()) {
      (void)store->SaveSizes(s.name, f.sizes_to_save);  // else counted again
      f.sizes_to_save.clear();
    }
  };
  while (f.next < f.indexes.size()) {
    size_t k = f.next++;
    size_t i = f.indexes[k];
    store::MessageMeta& m = s.messages[i];
    if (cacheable && k >= f.cached_until) {
      // The next batch's renderings, in one read of the index.
      size_t end = std::min(f.indexes.size(), k + kCacheBatch);
      f.cached.clear();
      auto got = store->LoadPartCache(s.name, m.uid, s.messages[f.indexes[end - 1]].uid);
      if (got) {
        for (auto& e : *got) {
          f.cached.emplace(uint64_t{e.uid} << 8 | e.kind, std::move(e.value));
        }
      }
      f.cached_until = end;
    }
    // The cached rendering of `att` for this message, or nullptr.
    auto cached = [&](FetchAtt att) -> const std::string* {
      auto it = f.cached.find(uint64_t{m.uid} << 8 | (CacheKind(att) | form));
      return it == f.cached.end() ? nullptr : &it->second;
    };
    // A size the index lacks is counted from the octets read for it.
    bool need_text = content || (has_size && m.size == store::kUnknownSize);
    if (!need_text && cacheable) {
      for (const FetchItem& item : a.items) {
        if (CacheKind(item.att) != 0 && cached(item.att) == nullptr) need_text = true;
      }
    }
    std::optional<MessageText> text;
    if (need_text) {
      auto t = LoadMessage(*store, s.name, m.uid);
      if (!t) {
        // RFC 9051 7.1: the message cannot be read now; the rest goes on.
        Untagged("NO [UNAVAILABLE] Message " + std::to_string(i + 1) +
                 " cannot be read");
        continue;
      }
      text = std::move(*t);
      if (m.size == store::kUnknownSize) {
        m.size = text->crlf().size();
        f.sizes_to_save.emplace_back(m.uid, m.size);
      }
    }
    // A rendering from the cache, or made now and kept for next time.
    auto render = [&](FetchAtt att) -> std::string {
      if (const std::string* c = cached(att)) return *c;
      std::string v = att == FetchAtt::kEnvelope ? text->Envelope(u8)
                      : att == FetchAtt::kBody   ? text->BodyStructure(false, u8)
                                                 : text->BodyStructure(true, u8);
      f.to_save.push_back({m.uid, static_cast<uint8_t>(CacheKind(att) | form), v});
      return v;
    };
    std::string line = "* " + std::to_string(i + 1) + " FETCH (";
    size_t start = line.size();
    auto sep = [&] {
      if (line.size() > start) line += ' ';
    };
    bool ok = true;
    for (const FetchItem& item : a.items) {
      sep();
      switch (item.att) {
        case FetchAtt::kUid:
          line += "UID " + std::to_string(m.uid);
          break;
        case FetchAtt::kFlags:
          line += "FLAGS " + FlagList(m);
          break;
        case FetchAtt::kInternalDate:
          line += "INTERNALDATE \"" + FormatInternalDate(m.internal_date, 0) + "\"";
          break;
        case FetchAtt::kRfc822Size:
          line += "RFC822.SIZE " + std::to_string(m.size);
          break;
        case FetchAtt::kModSeq:
          line += "MODSEQ (" + std::to_string(m.modseq) + ")";
          break;
        case FetchAtt::kEnvelope:
          line += "ENVELOPE " + render(item.att);
          break;
        case FetchAtt::kBody:
          line += "BODY " + render(item.att);
          break;
        case FetchAtt::kBodyStructure:
          line += "BODYSTRUCTURE " + render(item.att);
          break;
        case FetchAtt::kRfc822:
          line += "RFC822 ";
          AppendLiteral(line, text->crlf(), false);
          break;
        case FetchAtt::kRfc822Header:
          line += "RFC822.HEADER ";
          AppendLiteral(line, text->SectionOctets({{}, SectionText::kHeader, {}}), false);
          break;
        case FetchAtt::kRfc822Text:
          line += "RFC822.TEXT ";
          AppendLiteral(line, text->SectionOctets({{}, SectionText::kText, {}}), false);
          break;
        case FetchAtt::kBodySection: {
          std::string octets = text->SectionOctets(item.section);
          line += "BODY[" + SectionName(item.section, u8) + "]";
          if (item.partial) line += "<" + std::to_string(item.partial->offset) + ">";
          line += ' ';
          AppendLiteral(line, Slice(octets, item.partial), false);
          break;
        }
        case FetchAtt::kBinary:
        case FetchAtt::kBinarySize: {
          auto decoded = text->Binary(item.section.part);
          if (!decoded) {
            ok = false;
            break;
          }
          if (item.att == FetchAtt::kBinarySize) {
            line += "BINARY.SIZE[" + SectionName(item.section, u8) + "] " +
                    std::to_string(decoded->size());
          } else {
            line += "BINARY[" + SectionName(item.section, u8) + "]";
            if (item.partial) line += "<" + std::to_string(item.partial->offset) + ">";
            line += ' ';
            AppendLiteral(line, Slice(*decoded, item.partial), true);
          }
          break;
        }
      }
      if (!ok) break;
    }
    if (!ok) {
      // RFC 3516 4.1 / RFC 9051 6.4.5: an encoding we cannot undo.
      fetching.reset();
      Untagged("NO [UNKNOWN-CTE] Cannot decode message " + std::to_string(i + 1));
      No("[UNKNOWN-CTE] Unknown Content-Transfer-Encoding");
      return;
    }
    if (f.seen_set[k] && !has_flags) {
      sep();
      line += "FLAGS " + FlagList(m);
    }
    if (want_uid) {
      sep();
      line += "UID " + std::to_string(m.uid);
    }
    if ((a.changed_since || (condstore && f.seen_set[k])) && !has_modseq) {
      sep();
      line += "MODSEQ (" + std::to_string(m.modseq) + ")";
    }
    line += ")\r\n";
    out += line;
    ++fetched;
    if (out.size() >= config.output_chunk && f.next < f.indexes.size()) {
      // The connection writes this much, then calls Work() again.
      save_cache();
      job = Job::kCommand;
      need = Need::kWork;
      return;
    }
  }
  save_cache();
  bool uid = f.cmd.uid;
  fetching.reset();
  Refresh(uid);
  Ok(uid ? "UID FETCH completed" : "FETCH completed");
}

}  // namespace tern::imap
