// FETCH and STORE arguments (RFC 9051 6.4.5, 6.4.6): fetch attributes and
// macros, body sections and partial ranges, the IMAP4rev1 RFC822 forms,
// CONDSTORE/QRESYNC modifiers (RFC 7162 3.1.3, 3.1.4, 3.2.6).
#include <utility>

#include "imap/protocol/parser.h"

namespace tern::imap {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsLetter(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// header-list = "(" header-fld-name *(SP header-fld-name) ")"
bool HeaderList(Parser& p, std::vector<std::string>* out) {
  if (!p.Sp("HEADER.FIELDS") ||
      !p.Expect('(', "'(' to open the header field list")) {
    return false;
  }
  do {
    std::string field;
    if (!p.Astring(&field, "header field name")) return false;
    out->push_back(std::move(field));
  } while (p.Take(' '));
  return p.Expect(')', "')' to close the header field list");
}

// "[" [section-spec] "]", or with binary "[" [section-part] "]".
bool SectionSpec(Parser& p, bool binary, Section* out) {
  if (!p.Expect('[', "'[' to open the section")) return false;
  if (p.Take(']')) return true;
  if (IsDigit(p.Peek())) {
    // section-part = nz-number *("." nz-number)
    do {
      uint32_t n = 0;
      if (!p.NzNumber(&n, "section part")) return false;
      out->part.push_back(n);
    } while (IsDigit(p.Peek(1)) && p.Take('.'));
    if (binary || p.Peek() != '.' || p.AtEnd()) {
      return p.Expect(']', "']' to close the section");
    }
    p.Take('.');
    if (!IsLetter(p.Peek())) return p.Fail("Invalid section");
  } else if (binary) {
    return p.Fail("Invalid binary section");
  }
  std::string word = p.Word();
  if (word == "HEADER") {
    out->text = SectionText::kHeader;
  } else if (word == "HEADER.FIELDS") {
    out->text = SectionText::kHeaderFields;
    if (!HeaderList(p, &out->fields)) return false;
  } else if (word == "HEADER.FIELDS.NOT") {
    out->text = SectionText::kHeaderFieldsNot;
    if (!HeaderList(p, &out->fields)) return false;
  } else if (word == "TEXT") {
    out->text = SectionText::kText;
  } else if (word == "MIME" && !out->part.empty()) {
    // RFC 9051 6.4.5: MIME only after a part number.
    out->text = SectionText::kMime;
  } else {
    return p.Fail("Invalid section");
  }
  return p.Expect(']', "']' to close the section");
}

// partial = "<" number64 "." nz-number64 ">"
bool PartialRange(Parser& p, std::optional<Partial>* out) {
  if (!p.Take('<')) return true;
  Partial r;
  if (!p.Number64(&r.offset, "partial offset") ||
      !p.Expect('.', "'.' in the partial range") ||
      !p.NzNumber64(&r.length, "partial length") ||
      !p.Expect('>', "'>' to close the partial range")) {
    return false;
  }
  *out = r;
  return true;
}

bool FetchAttribute(Parser& p, FetchItem* out) {
  std::string word = p.Word();
  struct Simple {
    std::string_view name;
    FetchAtt att;
  };
  static constexpr Simple kSimple[] = {
      {"ENVELOPE", FetchAtt::kEnvelope},
      {"FLAGS", FetchAtt::kFlags},
      {"INTERNALDATE", FetchAtt::kInternalDate},
      {"RFC822.SIZE", FetchAtt::kRfc822Size},
      {"BODYSTRUCTURE", FetchAtt::kBodyStructure},
      {"UID", FetchAtt::kUid},
      {"MODSEQ", FetchAtt::kModSeq},
      {"RFC822", FetchAtt::kRfc822},
      {"RFC822.HEADER", FetchAtt::kRfc822Header},
      {"RFC822.TEXT", FetchAtt::kRfc822Text},
  };
  for (const Simple& s : kSimple) {
    if (word == s.name) {
      out->att = s.att;
      return true;
    }
  }
  if (word == "BODY" && p.Peek() != '[') {
    out->att = FetchAtt::kBody;
    return true;
  }
  if (word == "BODY" || word == "BODY.PEEK") {
    out->att = FetchAtt::kBodySection;
    out->peek = word == "BODY.PEEK";
    return SectionSpec(p, false, &out->section) &&
           PartialRange(p, &out->partial);
  }
  if (word == "BINARY" || word == "BINARY.PEEK") {
    out->att = FetchAtt::kBinary;
    out->peek = word == "BINARY.PEEK";
    return SectionSpec(p, true, &out->section) &&
           PartialRange(p, &out->partial);
  }
  if (word == "BINARY.SIZE") {
    out->att = FetchAtt::kBinarySize;
    return SectionSpec(p, true, &out->section);
  }
  return p.Fail(word.empty() ? "Expected fetch attribute"
                             : "Unknown fetch attribute");
}

void Expand(std::string_view macro, std::vector<FetchItem>* out) {
  // RFC 9051 6.4.5 macros.
  for (FetchAtt att : {FetchAtt::kFlags, FetchAtt::kInternalDate,
                       FetchAtt::kRfc822Size}) {
    FetchItem item;
    item.att = att;
    out->push_back(item);
  }
  if (macro == "FAST") return;
  FetchItem envelope;
  envelope.att = FetchAtt::kEnvelope;
  out->push_back(envelope);
  if (macro == "ALL") return;
  FetchItem body;
  body.att = FetchAtt::kBody;
  out->push_back(body);
}

}  // namespace

bool ParseFetch(Parser& p, bool uid, FetchArgs* out) {
  if (!p.Sp("FETCH") || !p.SeqSet(&out->set) || !p.Sp("sequence set")) {
    return false;
  }
  if (p.Take('(')) {
    do {
      FetchItem item;
      if (!FetchAttribute(p, &item)) return false;
      out->items.push_back(std::move(item));
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the fetch attributes")) return false;
  } else if (p.PeekWord("ALL") || p.PeekWord("FAST") || p.PeekWord("FULL")) {
    Expand(p.Word(), &out->items);
  } else {
    FetchItem item;
    if (!FetchAttribute(p, &item)) return false;
    out->items.push_back(std::move(item));
  }
  if (p.Take(' ')) {
    // RFC 4466 2.4 fetch-modifiers.
    if (!p.Expect('(', "'(' to open the fetch modifiers")) return false;
    do {
      std::string word = p.Word();
      if (word == "CHANGEDSINCE") {
        uint64_t modseq = 0;
        if (out->changed_since) return p.Fail("CHANGEDSINCE given twice");
        if (!p.Sp("CHANGEDSINCE") || !p.NzNumber64(&modseq, "mod-sequence")) {
          return false;
        }
        out->changed_since = modseq;
      } else if (word == "VANISHED") {
        out->vanished = true;
      } else {
        return p.Fail(word.empty() ? "Expected fetch modifier"
                                   : "Unknown fetch modifier");
      }
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the fetch modifiers")) return false;
    // RFC 7162 3.2.6: VANISHED only in UID FETCH, and with CHANGEDSINCE.
    if (out->vanished && (!uid || !out->changed_since)) {
      return p.Fail("VANISHED needs UID FETCH with CHANGEDSINCE");
    }
  }
  return true;
}

bool ParseStore(Parser& p, StoreArgs* out) {
  if (!p.Sp("STORE") || !p.SeqSet(&out->set) || !p.Sp("sequence set")) {
    return false;
  }
  if (p.Take('(')) {
    // RFC 7162 3.1.3 store-modifiers: (UNCHANGEDSINCE mod-sequence-valzer)
    do {
      std::string word = p.Word();
      if (word != "UNCHANGEDSINCE") {
        return p.Fail(word.empty() ? "Expected store modifier"
                                   : "Unknown store modifier");
      }
      if (out->unchanged_since) return p.Fail("UNCHANGEDSINCE given twice");
      uint64_t modseq = 0;
      if (!p.Sp("UNCHANGEDSINCE") || !p.Number64(&modseq, "mod-sequence")) {
        return false;
      }
      out->unchanged_since = modseq;
    } while (p.Take(' '));
    if (!p.Expect(')', "')' to close the store modifiers") ||
        !p.Sp("store modifiers")) {
      return false;
    }
  }
  if (p.Take('+')) {
    out->mode = StoreMode::kAdd;
  } else if (p.Take('-')) {
    out->mode = StoreMode::kRemove;
  }
  std::string word = p.Word();
  if (word == "FLAGS.SILENT") {
    out->silent = true;
  } else if (word != "FLAGS") {
    return p.Fail("Expected FLAGS, +FLAGS or -FLAGS");
  }
  if (!p.Sp(word)) return false;
  if (p.Peek() == '(') return p.FlagList(&out->flags);
  // RFC 9051 9 store-att-flags: flag-list or flags without parentheses.
  do {
    std::string flag;
    if (!p.Flag(&flag)) return false;
    out->flags.push_back(std::move(flag));
  } while (p.Take(' '));
  return true;
}

}  // namespace tern::imap
