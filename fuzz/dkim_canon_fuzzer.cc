// Fuzzes DKIM canonicalization (mailauth/dkim_canon.h, RFC 6376 3.4) and the
// streaming verifier front end: the body canonicalizers fed in random
// chunks match a line-by-line reference written here from the RFC, the
// l= limit hashes exactly a prefix, relaxed header forms have the promised
// shape and are stable, and DkimVerifier settles the same things whatever
// the chunking.
//
// Input: 4 header bytes, then the text.
//   [0] chunk seed, [1] max chunk length (0: one Feed), [2] l= limit
//   (0: none, else the limit is byte - 1), [3] unused
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_verify.h"

namespace {

using tern::fuzz::Printable;
using tern::mailauth::DkimCanon;

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// RFC 6376 3.4.3 / 3.4.4 over whole lines. A line ends with CRLF; text
// after the last CRLF is a last line that gets one.
std::string ReferenceBody(std::string_view body, DkimCanon canon) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      lines.emplace_back(body.substr(pos));
      break;
    }
    lines.emplace_back(body.substr(pos, eol - pos));
    pos = eol + 2;
  }
  if (canon == DkimCanon::kRelaxed) {
    for (std::string& line : lines) {
      std::string out;
      bool space = false;
      for (char c : line) {
        if (IsWsp(c)) {
          space = true;
          continue;
        }
        if (space) out += ' ';
        space = false;
        out += c;
      }
      line = out;  // trailing whitespace dropped with `space`
    }
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (const std::string& line : lines) out += line + "\r\n";
  if (out.empty() && canon == DkimCanon::kSimple) out = "\r\n";
  return out;
}

class StringSink : public tern::mailauth::DkimBodySink {
 public:
  void Write(std::string_view data) override { text.append(data); }
  std::string text;
};

std::string Streamed(std::string_view body, DkimCanon canon, uint8_t seed,
                     uint8_t max_chunk) {
  tern::mailauth::DkimBodyCanonicalizer c(canon);
  StringSink sink;
  tern::fuzz::Chunker chunks(body, seed, max_chunk);
  while (!chunks.done()) c.Update(chunks.Next(), sink);
  c.Finish(sink);
  return sink.text;
}

void CheckHeaderField(std::string_view field) {
  std::string simple;
  tern::mailauth::CanonicalizeDkimHeaderField(field, DkimCanon::kSimple,
                                              &simple);
  FUZZ_CHECK(simple == std::string(field) + "\r\n", "simple header changed");

  std::string relaxed;
  tern::mailauth::CanonicalizeDkimHeaderField(field, DkimCanon::kRelaxed,
                                              &relaxed);
  FUZZ_CHECK(relaxed.size() >= 3 &&
                 relaxed.compare(relaxed.size() - 2, 2, "\r\n") == 0,
             "relaxed header without final CRLF");
  std::string_view body(relaxed.data(), relaxed.size() - 2);
  size_t colon = body.find(':');
  FUZZ_CHECK(colon != std::string_view::npos, "relaxed header without colon");
  for (size_t i = 0; i < colon; ++i) {
    FUZZ_CHECK(!(body[i] >= 'A' && body[i] <= 'Z'), "upper case in name");
  }
  FUZZ_CHECK(colon == 0 || !IsWsp(body[colon - 1]), "whitespace before colon");
  std::string_view value = body.substr(colon + 1);
  FUZZ_CHECK(value.empty() || (!IsWsp(value.front()) && value.back() != ' '),
             "value not trimmed: %s", Printable(relaxed).c_str());
  FUZZ_CHECK(value.find('\t') == std::string_view::npos &&
                 value.find("  ") == std::string_view::npos &&
                 value.find("\r\n") == std::string_view::npos,
             "whitespace not reduced: %s", Printable(relaxed).c_str());
  // Stable: the relaxed form of the relaxed form is itself.
  std::string twice;
  tern::mailauth::CanonicalizeDkimHeaderField(body, DkimCanon::kRelaxed,
                                              &twice);
  FUZZ_CHECK(twice == relaxed, "relaxed not stable:\n  once:  %s\n  twice: %s",
             Printable(relaxed).c_str(), Printable(twice).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::fuzz::Input in(data, size, 4);
  std::string_view text = in.body();
  uint8_t seed = in.byte(0), max_chunk = in.byte(1);

  // Bodies.
  for (DkimCanon canon : {DkimCanon::kSimple, DkimCanon::kRelaxed}) {
    std::string want = ReferenceBody(text, canon);
    std::string got = Streamed(text, canon, seed, max_chunk);
    FUZZ_CHECK(got == want,
               "%s body differs\n  in:   %s\n  got:  %s\n  want: %s",
               tern::mailauth::DkimCanonName(canon), Printable(text).c_str(),
               Printable(got).c_str(), Printable(want).c_str());
    std::optional<uint64_t> limit;
    if (in.byte(2) != 0) limit = in.byte(2) - 1;
    tern::mailauth::DkimBodyHasher hasher(canon, limit);
    tern::fuzz::Chunker chunks(text, seed ^ 0x5a, max_chunk);
    while (!chunks.done()) hasher.Update(chunks.Next());
    hasher.Finish();
    std::string hashed = limit ? want.substr(0, *limit) : want;
    FUZZ_CHECK(hasher.digest() == tern::mailauth::Sha256Digest(hashed),
               "body hash is not the hash of the (limited) canonical body");
    FUZZ_CHECK(hasher.canonical_length() == want.size(), "length %llu vs %zu",
               static_cast<unsigned long long>(hasher.canonical_length()),
               want.size());
  }

  // Header fields: the text as a header section.
  size_t end = text.find("\r\n\r\n");
  std::string_view header =
      text.substr(0, end == std::string_view::npos ? text.size() : end + 2);
  auto fields = tern::mailauth::SplitDkimHeader(header);
  for (const auto& field : fields) {
    if (field.text.find(':') != std::string_view::npos)
      CheckHeaderField(field.text);
  }

  // The verifier's settled part does not depend on chunking.
  tern::mailauth::DkimVerifier whole(1800000000);
  whole.Feed(text);
  auto a = whole.Finish();
  tern::mailauth::DkimVerifier pieces(1800000000);
  tern::fuzz::Chunker chunks(text, seed ^ 0xa5, max_chunk);
  while (!chunks.done()) pieces.Feed(chunks.Next());
  auto b = pieces.Finish();
  FUZZ_CHECK(a.size() == b.size(), "signature count depends on chunking");
  for (size_t i = 0; i < a.size(); ++i) {
    FUZZ_CHECK(a[i].needs_key == b[i].needs_key &&
                   a[i].result.status == b[i].result.status &&
                   a[i].result.reason == b[i].result.reason &&
                   a[i].signed_data == b[i].signed_data,
               "signature %zu settled differently when chunked", i);
  }
  return 0;
}
