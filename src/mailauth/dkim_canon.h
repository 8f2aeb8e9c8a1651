// DKIM canonicalization (RFC 6376 3.4): the header field forms, a streaming
// body canonicalizer and body hasher (chunks of any size, so the hash grows
// while DATA arrives), and the split of a streamed message into its header
// section and body.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailauth/dkim_crypto.h"

namespace tern::mailauth {

enum class DkimCanon { kSimple, kRelaxed };

const char* DkimCanonName(DkimCanon canon);

// ---------------------------------------------------------------- header

struct DkimHeaderField {
  // Before the colon, with trailing whitespace removed (RFC 5322 4.5
  // obsolete syntax allows "Subject :"); empty for a line without a colon,
  // which then matches no name in h=.
  std::string_view name;
  // The whole field as written, folding included, without its final CRLF.
  std::string_view text;
};

// Splits a header section (CRLF lines, the blank line excluded) into fields:
// a line starting with SP or HTAB continues the previous field.
std::vector<DkimHeaderField> SplitDkimHeader(std::string_view header);

// Appends `field` (as in DkimHeaderField::text) in canonical form with a
// final CRLF. Simple (RFC 6376 3.4.1): unchanged. Relaxed (3.4.2): name in
// lower case, folding removed, whitespace runs as one SP, no whitespace at
// the end of the value nor around the colon.
void CanonicalizeDkimHeaderField(std::string_view field, DkimCanon canon,
                                 std::string* out);

// The data that b= signs (RFC 6376 3.7): the fields named in `signed_names`
// in order, each name taking the next instance from the bottom of the header
// (5.4.2; a name with no instance left contributes nothing), then the
// DKIM-Signature field itself with its b= value already removed and without
// a final CRLF.
std::string DkimHeaderHashInput(const std::vector<DkimHeaderField>& fields,
                                const std::vector<std::string>& signed_names,
                                std::string_view signature_field,
                                DkimCanon canon);

// ---------------------------------------------------------------- body

class DkimBodySink {
 public:
  virtual ~DkimBodySink() = default;
  virtual void Write(std::string_view data) = 0;
};

// Body canonicalization (RFC 6376 3.4.3 simple, 3.4.4 relaxed) over a body
// fed in pieces. Empty lines are held back as a count until a line with
// content follows, since "all empty lines at the end of the body" are
// dropped and the end is known only at Finish(). Lines end with CRLF; a
// lone CR or LF is an ordinary octet.
class DkimBodyCanonicalizer {
 public:
  explicit DkimBodyCanonicalizer(DkimCanon canon) : canon_(canon) {}
  void Update(std::string_view data, DkimBodySink& sink);
  // Ends the body: completes a last line without CRLF, drops trailing
  // empty lines; an empty body is one CRLF in simple (RFC 6376 3.4.3) and
  // stays empty in relaxed (3.4.4).
  void Finish(DkimBodySink& sink);

 private:
  void Content(char c, DkimBodySink& sink);
  void EndLine(DkimBodySink& sink);
  void WriteHeldLines(DkimBodySink& sink);
  void Flush(DkimBodySink& sink);

  DkimCanon canon_;
  std::string out_;           // canonical octets not yet written
  uint64_t empty_lines_ = 0;  // held back
  bool line_has_content_ = false;
  bool cr_ = false;     // the previous octet was a CR
  bool space_ = false;  // relaxed: whitespace seen, written only before content
  bool wrote_any_ = false;
};

// Hashes the canonical body with SHA-256, up to `limit` octets when the
// signature has l= (RFC 6376 3.5), while counting the whole canonical body
// so a verifier can tell whether l= is longer than the body.
class DkimBodyHasher final : private DkimBodySink {
 public:
  DkimBodyHasher(DkimCanon canon, std::optional<uint64_t> limit);
  void Update(std::string_view data);
  void Finish();
  // After Finish(): the 32-octet digest and the canonical body length.
  const std::string& digest() const { return digest_; }
  uint64_t canonical_length() const { return length_; }
  DkimCanon canon() const { return canon_; }
  std::optional<uint64_t> limit() const { return limit_; }

 private:
  void Write(std::string_view data) override;

  DkimCanon canon_;
  std::optional<uint64_t> limit_;
  DkimBodyCanonicalizer canonicalizer_;
  Sha256 sha_;
  uint64_t length_ = 0;
  std::string digest_;
};

// ---------------------------------------------------------------- message

// Splits a message fed in chunks of any size into its header section, kept
// in memory (up to `max_header` octets), and its body, handed back chunk by
// chunk. The header ends at the first empty line (RFC 5322 2.1); a message
// that starts with an empty line has an empty header.
class DkimMessageSplitter {
 public:
  explicit DkimMessageSplitter(size_t max_header = 1 << 20)
      : max_header_(max_header) {}
  // Returns the part of `chunk` that belongs to the body (a view into
  // `chunk`), empty while the header goes on.
  std::string_view Feed(std::string_view chunk);
  // The message ended: whatever came is the header when no empty line came.
  void Finish();

  bool header_complete() const { return done_; }
  // The header section was longer than max_header: it is cut short and the
  // body is unknown.
  bool overflow() const { return overflow_; }
  // The header fields' lines, each with its CRLF, without the empty line.
  const std::string& header() const { return header_; }

 private:
  size_t max_header_;
  std::string header_;
  bool done_ = false;
  bool overflow_ = false;
};

}  // namespace tern::mailauth
