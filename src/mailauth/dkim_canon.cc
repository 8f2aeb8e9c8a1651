// DKIM canonicalization (RFC 6376 3.4) and the header/body split of a
// message that arrives in pieces. The body side keeps a few flags and a
// count between chunks, never the body itself.
#include "mailauth/dkim_canon.h"

#include <algorithm>
#include <map>

#include "common/strings.h"

namespace tern::mailauth {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// Writes of held-back empty lines come from here, so a long run of empty
// lines costs no memory.
constexpr std::string_view kCrlfBlock =
    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

constexpr size_t kFlushAt = 8192;

}  // namespace

const char* DkimCanonName(DkimCanon canon) {
  return canon == DkimCanon::kSimple ? "simple" : "relaxed";
}

// ---------------------------------------------------------------- header

std::vector<DkimHeaderField> SplitDkimHeader(std::string_view header) {
  std::vector<DkimHeaderField> fields;
  size_t start = 0, end = 0;  // the open field, end excluding its CRLF
  bool open = false;
  auto close = [&] {
    if (!open) return;
    DkimHeaderField field;
    field.text = header.substr(start, end - start);
    size_t colon = field.text.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = field.text.substr(0, colon);
      while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
      field.name = name;
    }
    fields.push_back(field);
    open = false;
  };
  size_t pos = 0;
  while (pos < header.size()) {
    size_t eol = header.find("\r\n", pos);
    size_t line_end = eol == std::string_view::npos ? header.size() : eol;
    if (!(open && IsWsp(header[pos]))) {
      close();
      open = true;
      start = pos;
    }
    end = line_end;
    pos = eol == std::string_view::npos ? header.size() : eol + 2;
  }
  close();
  return fields;
}

void CanonicalizeDkimHeaderField(std::string_view field, DkimCanon canon,
                                 std::string* out) {
  if (canon == DkimCanon::kSimple) {
    out->append(field);
    out->append("\r\n");
    return;
  }
  size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  for (char c : name) {
    out->push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  }
  out->push_back(':');
  if (colon != std::string_view::npos) {
    std::string_view value = field.substr(colon + 1);
    bool space = false;
    bool any = false;  // leading whitespace goes with the colon
    for (size_t i = 0; i < value.size(); ++i) {
      char c = value[i];
      // Unfolding: a CRLF inside a field is always followed by WSP, which
      // the run below turns into one SP.
      if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
        ++i;
        continue;
      }
      if (IsWsp(c)) {
        space = true;
        continue;
      }
      if (space && any) out->push_back(' ');
      space = false;
      any = true;
      out->push_back(c);
    }
  }
  out->append("\r\n");
}

std::string DkimHeaderHashInput(const std::vector<DkimHeaderField>& fields,
                                const std::vector<std::string>& signed_names,
                                std::string_view signature_field,
                                DkimCanon canon) {
  // The instances of each name, bottom first, and how many are used up:
  // an index keeps a long h= over a long header linear, not a product.
  struct Instances {
    std::vector<size_t> bottom_up;
    size_t used = 0;
  };
  std::map<std::string, Instances> by_name;
  for (size_t i = fields.size(); i-- > 0;) {
    if (!fields[i].name.empty()) {
      by_name[ToLower(fields[i].name)].bottom_up.push_back(i);
    }
  }
  std::string out;
  for (const std::string& wanted : signed_names) {
    auto it = by_name.find(ToLower(wanted));
    if (it == by_name.end()) continue;
    Instances& inst = it->second;
    if (inst.used < inst.bottom_up.size()) {
      CanonicalizeDkimHeaderField(fields[inst.bottom_up[inst.used++]].text,
                                  canon, &out);
    }
  }
  CanonicalizeDkimHeaderField(signature_field, canon, &out);
  out.resize(out.size() - 2);  // RFC 6376 3.7: no CRLF after the signature
  return out;
}

// ---------------------------------------------------------------- body

void DkimBodyCanonicalizer::WriteHeldLines(DkimBodySink& sink) {
  if (empty_lines_ == 0) return;
  Flush(sink);
  while (empty_lines_ > 0) {
    size_t n = std::min<uint64_t>(empty_lines_, kCrlfBlock.size() / 2);
    sink.Write(kCrlfBlock.substr(0, n * 2));
    empty_lines_ -= n;
  }
  wrote_any_ = true;
}

void DkimBodyCanonicalizer::Content(char c, DkimBodySink& sink) {
  // Empty lines followed by content are part of the body after all.
  WriteHeldLines(sink);
  if (space_) {
    out_.push_back(' ');
    space_ = false;
  }
  out_.push_back(c);
  line_has_content_ = true;
}

void DkimBodyCanonicalizer::Flush(DkimBodySink& sink) {
  if (!out_.empty()) {
    sink.Write(out_);
    out_.clear();
    wrote_any_ = true;
  }
}

void DkimBodyCanonicalizer::EndLine(DkimBodySink& sink) {
  if (line_has_content_) {
    out_.append("\r\n");
    line_has_content_ = false;
  } else {
    ++empty_lines_;
  }
  space_ = false;  // relaxed: whitespace at the end of a line goes
}

void DkimBodyCanonicalizer::Update(std::string_view data, DkimBodySink& sink) {
  bool relaxed = canon_ == DkimCanon::kRelaxed;
  for (char c : data) {
    if (cr_) {
      cr_ = false;
      if (c == '\n') {
        EndLine(sink);
        continue;
      }
      Content('\r', sink);  // a CR not followed by LF is content
    }
    if (c == '\r') {
      cr_ = true;
    } else if (relaxed && IsWsp(c)) {
      space_ = true;
    } else {
      Content(c, sink);
    }
    if (out_.size() >= kFlushAt) Flush(sink);
  }
  Flush(sink);
}

void DkimBodyCanonicalizer::Finish(DkimBodySink& sink) {
  if (cr_) {
    cr_ = false;
    Content('\r', sink);  // a CR at the very end is not half a line break
  }
  // RFC 6376 3.4.3, 3.4.4: a last line without CRLF gets one.
  if (line_has_content_) {
    out_.append("\r\n");
    line_has_content_ = false;
  }
  space_ = false;
  empty_lines_ = 0;  // empty lines at the end are not part of the body
  Flush(sink);
  if (!wrote_any_ && canon_ == DkimCanon::kSimple) {
    sink.Write("\r\n");
    wrote_any_ = true;
  }
}

DkimBodyHasher::DkimBodyHasher(DkimCanon canon, std::optional<uint64_t> limit)
    : canon_(canon), limit_(limit), canonicalizer_(canon) {}

void DkimBodyHasher::Update(std::string_view data) {
  canonicalizer_.Update(data, *this);
}

void DkimBodyHasher::Finish() {
  canonicalizer_.Finish(*this);
  digest_ = sha_.Final();
}

void DkimBodyHasher::Write(std::string_view data) {
  if (limit_) {
    uint64_t room = *limit_ > length_ ? *limit_ - length_ : 0;
    if (room < data.size()) {
      sha_.Update(data.substr(0, room));
    } else {
      sha_.Update(data);
    }
  } else {
    sha_.Update(data);
  }
  length_ += data.size();
}

// ---------------------------------------------------------------- message

std::string_view DkimMessageSplitter::Feed(std::string_view chunk) {
  if (done_) return overflow_ ? std::string_view() : chunk;
  size_t old = header_.size();
  if (old < 2) {
    // An empty line at the very start: no header fields, all body.
    std::string start = header_ + std::string(chunk.substr(0, 2 - old));
    if (start == "\r\n") {
      done_ = true;
      header_.clear();
      return chunk.substr(2 - old);
    }
  }
  // The empty line may begin in what was kept and end in this chunk.
  size_t keep = std::min<size_t>(old, 3);
  std::string edge =
      header_.substr(old - keep) + std::string(chunk.substr(0, 3));
  size_t body_at = std::string_view::npos;  // offset in `chunk`
  if (size_t e = edge.find("\r\n\r\n"); e != std::string::npos) {
    body_at = e + 4 - keep;
  } else if (size_t f = chunk.find("\r\n\r\n"); f != std::string_view::npos) {
    body_at = f + 4;
  }
  if (body_at != std::string_view::npos) {
    size_t header_end = old + body_at - 2;  // keeps the last field's CRLF
    if (header_end > max_header_) {
      done_ = overflow_ = true;
      return {};
    }
    header_.append(chunk.substr(0, body_at));
    header_.resize(header_end);
    done_ = true;
    return chunk.substr(body_at);
  }
  if (old + chunk.size() > max_header_) {
    done_ = overflow_ = true;
    return {};
  }
  header_.append(chunk);
  return {};
}

void DkimMessageSplitter::Finish() {
  if (done_) return;
  done_ = true;
  // A message without an empty line is all header (RFC 5322 2.1: the body
  // is optional).
  if (header_.size() < 2 ||
      header_.compare(header_.size() - 2, 2, "\r\n") != 0) {
    if (!header_.empty()) header_.append("\r\n");
  }
}

}  // namespace tern::mailauth
