// ENVELOPE, BODYSTRUCTURE and section octets (fetch_render.h).
#include "imap/protocol/fetch_render.h"

#include <cstring>

#include "common/strings.h"
#include "imap/protocol/quote.h"
#include "smtp/protocol/rfc5322.h"

namespace tern::imap {
namespace {

constexpr std::string_view kMissingMailbox = "MISSING_MAILBOX";
constexpr std::string_view kMissingDomain = "MISSING_DOMAIN";

// RFC 9051 7.4.2 says nothing of a multipart with no parts, but the
// grammar (body-type-mpart = 1*body) needs one: an empty text/plain, as
// Dovecot sends.
constexpr std::string_view kEmptyBody =
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
constexpr std::string_view kEmptyBodyExt =
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL "
    "NIL NIL)";
constexpr std::string_view kEmptyEnvelope =
    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";

// ---- address lists (RFC 5322 3.4, obsolete forms of 4.4) ----
// A lenient tokenizer of its own: smtp::ParseAddressList is strict, flattens
// groups and decodes names, where ENVELOPE keeps all three as written.

struct AddrToken {
  enum class Kind { kWord, kQuoted, kLiteral, kComment, kSpecial };
  Kind kind;
  std::string_view raw;  // word, literal or special as written
  std::string text;      // quoted-string or comment content, unquoted
  bool space_before;
};

// Never fails: an unclosed quote or comment runs to the end, and an octet
// that fits nowhere is a one-octet special that the list parser skips.
void TokenizeAddresses(std::string_view s, std::vector<AddrToken>* out) {
  size_t i = 0;
  bool space = false;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = true;
      ++i;
    } else if (c == '(' || c == '"') {
      char close = c == '(' ? ')' : '"';
      std::string text;
      int depth = 1;
      size_t j = i + 1;
      for (; j < s.size(); ++j) {
        char d = s[j];
        if (d == '\\' && j + 1 < s.size()) {
          text.push_back(s[++j]);
          continue;
        }
        if (c == '(' && d == '(') ++depth;
        if (d == close && --depth == 0) break;
        if (d != '\r' && d != '\n') text.push_back(d);
      }
      out->push_back({c == '(' ? AddrToken::Kind::kComment : AddrToken::Kind::kQuoted,
                      {}, std::move(text), space});
      i = std::min(j + 1, s.size());
      space = c == '(';  // a comment counts as whitespace
    } else if (c == '[') {
      size_t close = s.find(']', i);
      size_t end = close == std::string_view::npos ? s.size() : close + 1;
      out->push_back({AddrToken::Kind::kLiteral, s.substr(i, end - i), {}, space});
      space = false;
      i = end;
    } else if (smtp::IsAtext(c)) {
      size_t j = i;
      while (j < s.size() && smtp::IsAtext(static_cast<unsigned char>(s[j]))) ++j;
      out->push_back({AddrToken::Kind::kWord, s.substr(i, j - i), {}, space});
      space = false;
      i = j;
    } else {
      out->push_back({AddrToken::Kind::kSpecial, s.substr(i, 1), {}, space});
      space = false;
      ++i;
    }
  }
}

class AddressParser {
 public:
  explicit AddressParser(std::string_view value) { TokenizeAddresses(value, &t_); }

  std::vector<EnvelopeAddress> Parse() {
    std::vector<EnvelopeAddress> out;
    bool in_group = false;
    while (pos_ < t_.size()) {
      SkipComments();
      if (pos_ >= t_.size()) break;
      if (Special(',')) {
        ++pos_;
        continue;
      }
      if (Special(';')) {
        ++pos_;
        if (in_group) {
          out.push_back({});
          in_group = false;
        }
        continue;
      }
      size_t start = pos_;
      while (pos_ < t_.size() && (IsPhrasePart(t_[pos_]) || Special('.'))) ++pos_;
      size_t end = pos_;
      if (pos_ < t_.size() && Special(':') && !in_group) {
        // RFC 9051 7.5.2: group start is (NIL NIL "name" NIL).
        EnvelopeAddress group;
        group.mailbox = Phrase(start, end);
        out.push_back(std::move(group));
        ++pos_;
        in_group = true;
        continue;
      }
      EnvelopeAddress a;
      if (pos_ < t_.size() && Special('<')) {
        if (end > start) a.name = Phrase(start, end);
        ++pos_;
        AngleAddr(&a);
      } else if (pos_ < t_.size() && Special('@')) {
        pos_ = start;
        AddrSpec(&a, /*in_angle=*/false);
        // "addr (Name)": the comment is the only name there is.
        if (pos_ < t_.size() && t_[pos_].kind == AddrToken::Kind::kComment) {
          const std::string& c = t_[pos_].text;
          std::string_view trimmed = Trim(c);
          if (!trimmed.empty()) a.name = std::string(trimmed);
        }
      } else if (end > start) {
        // Words and no "@": a local part without its domain.
        a.mailbox = Local(start, end);
        a.host = std::string(kMissingDomain);
      } else {
        ++pos_;  // an octet that starts nothing
        continue;
      }
      out.push_back(std::move(a));
      // Anything up to the next "," or ";" is junk.
      while (pos_ < t_.size() && !Special(',') && !Special(';')) ++pos_;
    }
    if (in_group) out.push_back({});
    return out;
  }

 private:
  bool Special(char c) const {
    return t_[pos_].kind == AddrToken::Kind::kSpecial && t_[pos_].raw[0] == c;
  }
  static bool IsPhrasePart(const AddrToken& t) {
    return t.kind == AddrToken::Kind::kWord || t.kind == AddrToken::Kind::kQuoted ||
           t.kind == AddrToken::Kind::kComment;
  }
  void SkipComments() {
    while (pos_ < t_.size() && t_[pos_].kind == AddrToken::Kind::kComment) ++pos_;
  }

  // Display name: words joined by one space where there was space between
  // them (quoted strings unquoted, comments dropped, encoded words kept).
  std::string Phrase(size_t start, size_t end) const {
    std::string s;
    bool first = true;
    bool pending_space = false;
    for (size_t i = start; i < end; ++i) {
      const AddrToken& t = t_[i];
      if (t.kind == AddrToken::Kind::kComment) {
        pending_space = true;
        continue;
      }
      if (!first && (t.space_before || pending_space)) s.push_back(' ');
      pending_space = false;
      first = false;
      if (t.kind == AddrToken::Kind::kQuoted) {
        s += t.text;
      } else {
        s.append(t.raw);
      }
    }
    return s;
  }

  // A local part: words and dots, no spaces, quoted strings unquoted.
  std::string Local(size_t start, size_t end) const {
    std::string s;
    for (size_t i = start; i < end; ++i) {
      const AddrToken& t = t_[i];
      if (t.kind == AddrToken::Kind::kComment) continue;
      if (t.kind == AddrToken::Kind::kQuoted) {
        s += t.text;
      } else {
        s.append(t.raw);
      }
    }
    return s;
  }

  void AngleAddr(EnvelopeAddress* a) {
    SkipComments();
    // RFC 5322 4.4 obs-route "@a,@b:" goes to adl.
    if (pos_ < t_.size() && Special('@')) {
      size_t route_start = pos_;
      size_t j = pos_;
      while (j < t_.size() && !(t_[j].kind == AddrToken::Kind::kSpecial &&
                                (t_[j].raw[0] == ':' || t_[j].raw[0] == '>'))) {
        ++j;
      }
      if (j < t_.size() && t_[j].raw[0] == ':') {
        std::string adl;
        for (size_t i = route_start; i < j; ++i) {
          if (t_[i].kind != AddrToken::Kind::kComment) adl.append(t_[i].raw);
        }
        a->adl = std::move(adl);
        pos_ = j + 1;
      }
    }
    AddrSpec(a, /*in_angle=*/true);
    while (pos_ < t_.size() && !Special('>')) ++pos_;
    if (pos_ < t_.size()) ++pos_;
  }

  void AddrSpec(EnvelopeAddress* a, bool in_angle) {
    size_t start = pos_;
    while (pos_ < t_.size() && (IsPhrasePart(t_[pos_]) || Special('.'))) ++pos_;
    std::string local = Local(start, pos_);
    a->mailbox = local.empty() ? std::string(kMissingMailbox) : local;
    std::string domain;
    if (pos_ < t_.size() && Special('@')) {
      ++pos_;
      while (pos_ < t_.size()) {
        const AddrToken& t = t_[pos_];
        if (t.kind == AddrToken::Kind::kWord || t.kind == AddrToken::Kind::kLiteral ||
            Special('.')) {
          domain.append(t.raw);
        } else if (t.kind != AddrToken::Kind::kComment) {
          break;
        } else if (!in_angle) {
          break;  // "a@b (Name)": leave the comment for the caller
        }
        ++pos_;
      }
    }
    a->host = domain.empty() ? std::string(kMissingDomain) : domain;
  }

  std::vector<AddrToken> t_;
  size_t pos_ = 0;
};

// ---- output helpers ----

void AppendNstring(std::string* out, const std::optional<std::string>& s,
                   bool utf8) {
  out->append(FormatNstring(s, utf8));
}

void AppendString(std::string* out, std::string_view s, bool utf8) {
  out->append(FormatString(s, utf8));
}

void AppendAddressList(std::string* out, std::optional<std::string_view> value,
                       bool utf8) {
  std::vector<EnvelopeAddress> list;
  if (value) list = ParseEnvelopeAddresses(*value);
  if (list.empty()) {
    out->append("NIL");
    return;
  }
  out->push_back('(');
  for (const EnvelopeAddress& a : list) {
    out->push_back('(');
    AppendNstring(out, a.name, utf8);
    out->push_back(' ');
    AppendNstring(out, a.adl, utf8);
    out->push_back(' ');
    AppendNstring(out, a.mailbox, utf8);
    out->push_back(' ');
    AppendNstring(out, a.host, utf8);
    out->push_back(')');
  }
  out->push_back(')');
}

std::optional<std::string> UnfoldedOrNil(std::optional<std::string_view> v) {
  if (!v) return std::nullopt;
  return Unfold(*v);
}

void AppendParams(std::string* out, const std::vector<MimeParam>& params,
                  bool utf8) {
  if (params.empty()) {
    out->append("NIL");
    return;
  }
  out->push_back('(');
  bool first = true;
  for (const MimeParam& p : params) {
    if (!first) out->push_back(' ');
    first = false;
    AppendString(out, p.extended ? p.name + "*" : p.name, utf8);
    out->push_back(' ');
    AppendString(out, p.value, utf8);
  }
  out->push_back(')');
}

// body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 9051 9).
void AppendExtensions(std::string* out, const MimePart& part, bool utf8) {
  out->push_back(' ');
  MimeValue dsp;
  if (part.disposition) dsp = ParseMimeValue(*part.disposition);
  if (dsp.token.empty()) {
    out->append("NIL");
  } else {
    out->push_back('(');
    AppendString(out, dsp.token, utf8);
    out->push_back(' ');
    AppendParams(out, dsp.params, utf8);
    out->push_back(')');
  }
  out->push_back(' ');
  // RFC 3282: Content-Language is a comma-separated list of tags.
  std::vector<std::string> langs;
  if (part.language) {
    std::string v = Unfold(*part.language);
    size_t i = 0;
    while (i <= v.size()) {
      size_t comma = v.find(',', i);
      if (comma == std::string::npos) comma = v.size();
      std::string_view tag = Trim(std::string_view(v).substr(i, comma - i));
      size_t paren = tag.find('(');  // a comment after the tag
      if (paren != std::string_view::npos) tag = Trim(tag.substr(0, paren));
      if (!tag.empty()) langs.emplace_back(tag);
      i = comma + 1;
    }
  }
  if (langs.empty()) {
    out->append("NIL");
  } else {
    out->push_back('(');
    for (size_t i = 0; i < langs.size(); ++i) {
      if (i > 0) out->push_back(' ');
      AppendString(out, langs[i], utf8);
    }
    out->push_back(')');
  }
  out->push_back(' ');
  AppendNstring(out, UnfoldedOrNil(part.location), utf8);
}

std::string_view HeaderOf(const MimeMessage& m, const MimePart& p) {
  return m.text.substr(p.offset, p.header_size);
}

std::string_view BodyOf(const MimeMessage& m, const MimePart& p) {
  return m.text.substr(p.body_offset(), p.body_size);
}

void AppendBody(std::string* out, const MimeMessage& m, const MimePart& part,
                bool ext, bool utf8) {
  out->push_back('(');
  if (part.is_multipart()) {
    if (part.children.empty()) out->append(ext ? kEmptyBodyExt : kEmptyBody);
    for (const MimePart& child : part.children) AppendBody(out, m, child, ext, utf8);
    out->push_back(' ');
    AppendString(out, part.subtype, utf8);
    if (ext) {
      out->push_back(' ');
      AppendParams(out, part.params, utf8);
      AppendExtensions(out, part, utf8);
    }
    out->push_back(')');
    return;
  }
  AppendString(out, part.type, utf8);
  out->push_back(' ');
  AppendString(out, part.subtype, utf8);
  out->push_back(' ');
  AppendParams(out, part.params, utf8);
  out->push_back(' ');
  AppendNstring(out, UnfoldedOrNil(part.id), utf8);
  out->push_back(' ');
  AppendNstring(out, UnfoldedOrNil(part.description), utf8);
  out->push_back(' ');
  std::string encoding = part.encoding ? Unfold(*part.encoding) : std::string();
  AppendString(out, encoding.empty() ? std::string("7bit") : encoding, utf8);
  out->push_back(' ');
  out->append(std::to_string(part.body_size));
  bool message = part.type == "message" &&
                 (part.subtype == "rfc822" || part.subtype == "global");
  if (message) {
    // body-type-msg: envelope, body and lines of the embedded message. An
    // embedded message that was not parsed (encoded, or past the limits)
    // shows as empty.
    out->push_back(' ');
    if (part.children.empty()) {
      out->append(kEmptyEnvelope);
      out->push_back(' ');
      out->append(ext ? kEmptyBodyExt : kEmptyBody);
    } else {
      out->append(RenderEnvelope(HeaderOf(m, part.children[0]), utf8));
      out->push_back(' ');
      AppendBody(out, m, part.children[0], ext, utf8);
    }
  }
  if (message || part.type == "text") {
    out->push_back(' ');
    out->append(std::to_string(part.body_lines));
  }
  if (ext) {
    out->push_back(' ');
    AppendNstring(out, UnfoldedOrNil(part.md5), utf8);
    AppendExtensions(out, part, utf8);
  }
  out->push_back(')');
}

bool NameListed(std::string_view name, const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    if (IEquals(name, n)) return true;
  }
  return false;
}

}  // namespace

std::vector<EnvelopeAddress> ParseEnvelopeAddresses(std::string_view value) {
  return AddressParser(value).Parse();
}

std::string RenderEnvelope(std::string_view header, bool utf8) {
  // RFC 9051 7.5.2: the first of each field counts.
  enum { kDate, kSubject, kFrom, kSender, kReplyTo, kTo, kCc, kBcc, kInReplyTo,
         kMessageId, kCount };
  static constexpr std::string_view kNames[kCount] = {
      "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
      "in-reply-to", "message-id"};
  std::optional<std::string_view> v[kCount];
  size_t pos = 0;
  RawHeaderField f;
  while (NextHeaderField(header, &pos, &f)) {
    for (int i = 0; i < kCount; ++i) {
      if (!v[i] && IEquals(f.name, kNames[i])) {
        v[i] = f.value;
        break;
      }
    }
  }
  // Sender and Reply-To absent or empty are the From list.
  auto empty_list = [](std::optional<std::string_view> s) {
    return !s || ParseEnvelopeAddresses(*s).empty();
  };
  if (empty_list(v[kSender])) v[kSender] = v[kFrom];
  if (empty_list(v[kReplyTo])) v[kReplyTo] = v[kFrom];

  std::string out = "(";
  AppendNstring(&out, UnfoldedOrNil(v[kDate]), utf8);
  out.push_back(' ');
  AppendNstring(&out, UnfoldedOrNil(v[kSubject]), utf8);
  for (int i : {kFrom, kSender, kReplyTo, kTo, kCc, kBcc}) {
    out.push_back(' ');
    AppendAddressList(&out, v[i], utf8);
  }
  out.push_back(' ');
  AppendNstring(&out, UnfoldedOrNil(v[kInReplyTo]), utf8);
  out.push_back(' ');
  AppendNstring(&out, UnfoldedOrNil(v[kMessageId]), utf8);
  out.push_back(')');
  return out;
}

std::string RenderEnvelope(const MimeMessage& message, bool utf8) {
  return RenderEnvelope(HeaderOf(message, message.root), utf8);
}

std::string RenderBodyStructure(const MimeMessage& message, bool extensible,
                                bool utf8) {
  std::string out;
  AppendBody(&out, message, message.root, extensible, utf8);
  return out;
}

const MimePart* FindPart(const MimeMessage& message,
                         const std::vector<uint32_t>& numbers) {
  const MimePart* cur = &message.root;
  for (size_t i = 0; i < numbers.size(); ++i) {
    uint32_t n = numbers[i];
    if (i > 0 && cur->type == "message" &&
        (cur->subtype == "rfc822" || cur->subtype == "global")) {
      if (cur->children.empty()) return nullptr;
      cur = &cur->children[0];
    }
    if (cur->is_multipart()) {
      if (n == 0 || n > cur->children.size()) return nullptr;
      cur = &cur->children[n - 1];
    } else if (n != 1) {
      return nullptr;
    }
  }
  return cur;
}

std::string_view SectionOctets(const MimeMessage& message,
                               const Section& section, std::string* scratch) {
  const MimePart* part = FindPart(message, section.part);
  if (part == nullptr) return {};
  if (section.text == SectionText::kNone) {
    return section.part.empty() ? message.text : BodyOf(message, *part);
  }
  if (section.text == SectionText::kMime) {
    return section.part.empty() ? std::string_view() : HeaderOf(message, *part);
  }
  // HEADER, HEADER.FIELDS, TEXT: of the message, or of the message a
  // message/rfc822 part holds.
  const MimePart* msg = part;
  if (!section.part.empty()) {
    if (!part->is_message()) return {};
    msg = &part->children[0];
  }
  std::string_view header = HeaderOf(message, *msg);
  switch (section.text) {
    case SectionText::kHeader:
      return header;
    case SectionText::kText:
      return BodyOf(message, *msg);
    case SectionText::kHeaderFields:
    case SectionText::kHeaderFieldsNot: {
      bool want = section.text == SectionText::kHeaderFields;
      scratch->clear();
      size_t pos = 0;
      RawHeaderField f;
      while (NextHeaderField(header, &pos, &f)) {
        if (NameListed(f.name, section.fields) != want) continue;
        scratch->append(f.lines);
        if (f.lines.back() != '\n') scratch->append("\r\n");
      }
      scratch->append("\r\n");  // the blank line that ends a header
      return *scratch;
    }
    default:
      return {};
  }
}

std::string_view ApplyPartial(std::string_view octets,
                              const std::optional<Partial>& partial) {
  if (!partial) return octets;
  if (partial->offset >= octets.size()) return {};
  return octets.substr(static_cast<size_t>(partial->offset),
                       static_cast<size_t>(std::min<uint64_t>(
                           partial->length, octets.size() - partial->offset)));
}

Result<std::string> BinaryContent(const MimeMessage& message,
                                  const std::vector<uint32_t>& numbers) {
  if (numbers.empty()) return std::string(message.text);
  const MimePart* part = FindPart(message, numbers);
  if (part == nullptr) return std::string();
  std::string out;
  if (!DecodeTransferEncoding(part->encoding, BodyOf(message, *part), &out)) {
    return Err("unknown Content-Transfer-Encoding");
  }
  return out;
}

Result<uint64_t> BinarySize(const MimeMessage& message,
                            const std::vector<uint32_t>& numbers) {
  auto content = BinaryContent(message, numbers);
  if (!content) return tl::unexpected(content.error());
  return content->size();
}

}  // namespace tern::imap
