// SEARCH, SORT and THREAD arguments: the search-key grammar of RFC 9051
// 6.4.4 (with the IMAP4rev1 \Recent keys and RFC 7162 3.1.5 MODSEQ), ESEARCH
// RETURN options (RFC 4731 3.1, RFC 9051 6.4.4.1 SAVE), RFC 5256 SORT and
// THREAD, RFC 5267 ESORT.
#include <algorithm>
#include <utility>

#include "common/strings.h"
#include "imap/protocol/parser.h"

namespace tern::imap {
namespace {

using Kind = SearchKey::Kind;

enum class Arg { kNone, kText, kHeader, kKeyword, kDate, kNumber, kSet, kNot, kOr, kModSeq };

struct KeyEntry {
  std::string_view name;
  Kind kind;
  Arg arg;
};

constexpr KeyEntry kKeys[] = {
    {"ALL", Kind::kAll, Arg::kNone},
    {"ANSWERED", Kind::kAnswered, Arg::kNone},
    {"DELETED", Kind::kDeleted, Arg::kNone},
    {"DRAFT", Kind::kDraft, Arg::kNone},
    {"FLAGGED", Kind::kFlagged, Arg::kNone},
    {"SEEN", Kind::kSeen, Arg::kNone},
    {"UNANSWERED", Kind::kUnanswered, Arg::kNone},
    {"UNDELETED", Kind::kUndeleted, Arg::kNone},
    {"UNDRAFT", Kind::kUndraft, Arg::kNone},
    {"UNFLAGGED", Kind::kUnflagged, Arg::kNone},
    {"UNSEEN", Kind::kUnseen, Arg::kNone},
    {"NEW", Kind::kNew, Arg::kNone},
    {"OLD", Kind::kOld, Arg::kNone},
    {"RECENT", Kind::kRecent, Arg::kNone},
    {"UNRECENT", Kind::kUnrecent, Arg::kNone},
    {"BCC", Kind::kBcc, Arg::kText},
    {"BODY", Kind::kBody, Arg::kText},
    {"CC", Kind::kCc, Arg::kText},
    {"FROM", Kind::kFrom, Arg::kText},
    {"SUBJECT", Kind::kSubject, Arg::kText},
    {"TEXT", Kind::kText, Arg::kText},
    {"TO", Kind::kTo, Arg::kText},
    {"HEADER", Kind::kHeader, Arg::kHeader},
    {"KEYWORD", Kind::kKeyword, Arg::kKeyword},
    {"UNKEYWORD", Kind::kUnkeyword, Arg::kKeyword},
    {"BEFORE", Kind::kBefore, Arg::kDate},
    {"ON", Kind::kOn, Arg::kDate},
    {"SINCE", Kind::kSince, Arg::kDate},
    {"SENTBEFORE", Kind::kSentBefore, Arg::kDate},
    {"SENTON", Kind::kSentOn, Arg::kDate},
    {"SENTSINCE", Kind::kSentSince, Arg::kDate},
    {"LARGER", Kind::kLarger, Arg::kNumber},
    {"SMALLER", Kind::kSmaller, Arg::kNumber},
    {"UID", Kind::kUid, Arg::kSet},
    {"NOT", Kind::kNot, Arg::kNot},
    {"OR", Kind::kOr, Arg::kOr},
    {"MODSEQ", Kind::kModSeq, Arg::kModSeq},
};

bool Key(Parser& p, int depth, SearchKey* out);

bool ModSeqKey(Parser& p, SearchKey* out) {
  // RFC 7162 3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP
  // mod-sequence-valzer, entry-name = DQUOTE "/flags/" attr-flag DQUOTE.
  if (p.Peek() == '"') {
    if (!p.String(&out->header, "MODSEQ entry name")) return false;
    if (!IStartsWith(out->header, "/flags/") || out->header.size() <= 7) {
      return p.Fail("Invalid MODSEQ entry name");
    }
    std::string type;
    if (!p.Sp("MODSEQ entry name") || !p.Atom(&type, "MODSEQ entry type")) {
      return false;
    }
    type = ToLower(type);
    if (type != "priv" && type != "shared" && type != "all") {
      return p.Fail("Invalid MODSEQ entry type");
    }
    out->entry_type = std::move(type);
    if (!p.Sp("MODSEQ entry type")) return false;
  }
  return p.Number64(&out->number, "mod-sequence");
}

bool Key(Parser& p, int depth, SearchKey* out) {
  if (depth > p.options().max_depth) {
    return p.Fail("Search keys nested too deeply");
  }
  char c = p.Peek();
  if (p.AtEnd()) return p.Fail("Missing search key");
  if (c == '(') {
    p.Take('(');
    out->kind = Kind::kAnd;
    do {
      SearchKey k;
      if (!Key(p, depth + 1, &k)) return false;
      out->keys.push_back(std::move(k));
    } while (p.Take(' '));
    return p.Expect(')', "')' to close the search keys");
  }
  if ((c >= '0' && c <= '9') || c == '*' || c == '$') {
    out->kind = Kind::kSequenceSet;
    return p.SeqSet(&out->set);
  }
  std::string word = p.Word();
  auto it = std::find_if(std::begin(kKeys), std::end(kKeys),
                         [&](const KeyEntry& e) { return e.name == word; });
  if (it == std::end(kKeys)) {
    return p.Fail(word.empty() ? "Expected search key" : "Unknown search key");
  }
  out->kind = it->kind;
  switch (it->arg) {
    case Arg::kNone:
      return true;
    case Arg::kText:
      return p.Sp(it->name) && p.Astring(&out->text, "search string");
    case Arg::kHeader:
      return p.Sp("HEADER") && p.Astring(&out->header, "header field name") &&
             p.Sp("header field name") &&
             p.Astring(&out->text, "search string");
    case Arg::kKeyword:
      return p.Sp(it->name) && p.Atom(&out->text, "keyword");
    case Arg::kDate:
      return p.Sp(it->name) && p.SearchDate(&out->date);
    case Arg::kNumber:
      return p.Sp(it->name) && p.Number64(&out->number, "size");
    case Arg::kSet:
      return p.Sp("UID") && p.SeqSet(&out->set);
    case Arg::kNot: {
      SearchKey k;
      if (!p.Sp("NOT") || !Key(p, depth + 1, &k)) return false;
      out->keys.push_back(std::move(k));
      return true;
    }
    case Arg::kOr: {
      SearchKey a, b;
      if (!p.Sp("OR") || !Key(p, depth + 1, &a) || !p.Sp("search key") ||
          !Key(p, depth + 1, &b)) {
        return false;
      }
      out->keys.push_back(std::move(a));
      out->keys.push_back(std::move(b));
      return true;
    }
    case Arg::kModSeq:
      return p.Sp("MODSEQ") && ModSeqKey(p, out);
  }
  return false;
}

// 1*(SP search-key) after the charset or the command.
bool Keys(Parser& p, std::vector<SearchKey>* out) {
  do {
    SearchKey k;
    if (!Key(p, 1, &k)) return false;
    out->push_back(std::move(k));
  } while (p.Take(' '));
  return true;
}

// [SP "RETURN" SP "(" [option *(SP option)] ")"], when the next word is RETURN.
bool ReturnOptions(Parser& p, bool* has, std::vector<SearchReturn>* out) {
  if (!p.PeekWord("RETURN")) return true;
  p.Word();
  *has = true;
  if (!p.Sp("RETURN") || !p.Expect('(', "'(' after RETURN")) return false;
  if (p.Take(')')) return p.Sp("RETURN options");
  do {
    std::string word = p.Word();
    if (word == "MIN") {
      out->push_back(SearchReturn::kMin);
    } else if (word == "MAX") {
      out->push_back(SearchReturn::kMax);
    } else if (word == "ALL") {
      out->push_back(SearchReturn::kAll);
    } else if (word == "COUNT") {
      out->push_back(SearchReturn::kCount);
    } else if (word == "SAVE") {
      out->push_back(SearchReturn::kSave);
    } else {
      // RFC 4731 3.1: unknown options are an error.
      return p.Fail(word.empty() ? "Expected RETURN option"
                                 : "Unknown RETURN option");
    }
  } while (p.Take(' '));
  return p.Expect(')', "')' to close the RETURN options") &&
         p.Sp("RETURN options");
}

}  // namespace

bool ParseSearch(Parser& p, SearchArgs* out) {
  if (!p.Sp("SEARCH") || !ReturnOptions(p, &out->has_return, &out->returns)) {
    return false;
  }
  if (p.PeekWord("CHARSET")) {
    p.Word();
    std::string charset;
    if (!p.Sp("CHARSET") || !p.Astring(&charset, "charset") ||
        !p.Sp("charset")) {
      return false;
    }
    out->charset = std::move(charset);
  }
  return Keys(p, &out->keys);
}

bool ParseSort(Parser& p, SortArgs* out) {
  // RFC 5256 3: SORT (sort-criteria) charset 1*(SP search-key)
  if (!p.Sp("SORT") || !ReturnOptions(p, &out->has_return, &out->returns) ||
      !p.Expect('(', "'(' to open the sort criteria")) {
    return false;
  }
  struct SortEntry {
    std::string_view name;
    SortKey key;
  };
  static constexpr SortEntry kSortKeys[] = {
      {"ARRIVAL", SortKey::kArrival}, {"CC", SortKey::kCc},
      {"DATE", SortKey::kDate},       {"FROM", SortKey::kFrom},
      {"SIZE", SortKey::kSize},       {"SUBJECT", SortKey::kSubject},
      {"TO", SortKey::kTo},           {"DISPLAYFROM", SortKey::kDisplayFrom},
      {"DISPLAYTO", SortKey::kDisplayTo},
  };
  do {
    SortCriterion c;
    std::string word = p.Word();
    if (word == "REVERSE") {
      c.reverse = true;
      if (!p.Sp("REVERSE")) return false;
      word = p.Word();
    }
    auto it = std::find_if(std::begin(kSortKeys), std::end(kSortKeys),
                           [&](const SortEntry& e) { return e.name == word; });
    if (it == std::end(kSortKeys)) {
      return p.Fail(word.empty() ? "Expected sort key" : "Unknown sort key");
    }
    c.key = it->key;
    out->criteria.push_back(c);
  } while (p.Take(' '));
  return p.Expect(')', "')' to close the sort criteria") &&
         p.Sp("sort criteria") && p.Astring(&out->charset, "charset") &&
         p.Sp("charset") && Keys(p, &out->keys);
}

bool ParseThread(Parser& p, ThreadArgs* out) {
  // RFC 5256 3: THREAD thread-alg SP charset 1*(SP search-key)
  if (!p.Sp("THREAD") || !p.Atom(&out->algorithm, "thread algorithm")) {
    return false;
  }
  out->algorithm = Parser::Upper(out->algorithm);
  return p.Sp("thread algorithm") && p.Astring(&out->charset, "charset") &&
         p.Sp("charset") && Keys(p, &out->keys);
}

}  // namespace tern::imap
