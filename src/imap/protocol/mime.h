// The MIME structure of a message (RFC 2045, RFC 2046, RFC 2231) as IMAP
// FETCH and SEARCH need it: each part's header and body as offsets into the
// message text, its Content-* fields, and the tree of multipart and
// message/rfc822 parts. Sans-I/O: the caller gives the whole message (in
// the CRLF form IMAP counts octets in; bare LF is tolerated) and keeps it
// alive for as long as the parse result is used, since fields are views
// into it.
//
// One pass per nesting level with no per-line allocation: a part costs a
// handful of small strings (type, subtype, parameters). Hostile input is
// bounded by kMimeMaxDepth and kMimeMaxParts; past either limit the rest
// of a part is kept as an opaque body.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::imap {

inline constexpr int kMimeMaxDepth = 64;
inline constexpr size_t kMimeMaxParts = 10000;

// A Content-Type or Content-Disposition parameter.
// RFC 2231 sections ("name*0", "name*1*") are joined into one parameter.
// An extended value ("name*=utf-8'en'%E2%82%AC") stays in its encoded
// form, which is how BODYSTRUCTURE passes it on (a client decodes it, and
// an IMAP4rev1 string cannot carry 8-bit text anyway); DecodedValue()
// gives the text.
struct MimeParam {
  std::string name;       // lower case, without the RFC 2231 suffixes
  std::string value;      // unquoted; for an extended value its encoded form
  bool extended = false;  // RFC 2231 extended: the wire name is name + "*"
};

// The parameter's value as UTF-8: an extended value's %XX octets decoded
// and converted from its charset (kept as is when the charset is unknown).
std::string DecodedValue(const MimeParam& param);

struct MimePart {
  size_t offset = 0;       // where the part's header starts in the message
  size_t header_size = 0;  // the header with the blank line that ends it
  size_t body_size = 0;    // octets of the body
  size_t body_lines = 0;   // lines of the body (RFC 9051 body-fld-lines)

  // RFC 2045 5: lower case; text/plain (message/rfc822 in a
  // multipart/digest) when the field is absent or does not parse.
  std::string type = "text";
  std::string subtype = "plain";
  std::vector<MimeParam> params;  // charset=us-ascii added for the default

  // The other Content-* fields as written (views into the message, folded
  // as they came); nullopt when absent.
  std::optional<std::string_view> id;           // Content-ID
  std::optional<std::string_view> description;  // Content-Description
  std::optional<std::string_view> encoding;     // Content-Transfer-Encoding
  std::optional<std::string_view> disposition;  // Content-Disposition
  std::optional<std::string_view> language;     // Content-Language
  std::optional<std::string_view> location;     // Content-Location
  std::optional<std::string_view> md5;          // Content-MD5

  // multipart/*: its body parts. message/rfc822 and message/global: one
  // part, the embedded message (its header is the message's header, its
  // body the message's body; it has children of its own when multipart).
  std::vector<MimePart> children;

  size_t body_offset() const { return offset + header_size; }
  bool is_multipart() const { return type == "multipart"; }
  // A message/rfc822 (or message/global) whose embedded message was parsed.
  bool is_message() const { return type == "message" && !children.empty(); }
  // The parameter `name` (lower case), or nullptr.
  const MimeParam* param(std::string_view name) const;
};

struct MimeMessage {
  std::string_view text;  // the whole message; not owned
  MimePart root;          // the message itself: header = the message header
  bool limited = false;   // a depth or part-count limit was reached
};

MimeMessage ParseMime(std::string_view message);

// One header field of a header block, as views into the block.
struct RawHeaderField {
  std::string_view name;   // as written, trailing whitespace removed
  std::string_view value;  // after the colon, folding kept, no final CRLF
  std::string_view lines;  // the whole field with its line ends
};

// Iterates the fields of a header block: starts at *pos (0 first), fills
// *field and advances *pos; false at the end of the block (the blank line)
// or of the text. Lines without a colon that do not continue a field are
// skipped.
bool NextHeaderField(std::string_view header, size_t* pos,
                     RawHeaderField* field);

// The value of the first field called `name` (ASCII case-insensitive),
// folded as written; nullopt when absent.
std::optional<std::string_view> FindHeaderField(std::string_view header,
                                                std::string_view name);

// RFC 5322 2.2.3 unfolding: line ends removed (the whitespace after them
// stays); leading and trailing whitespace trimmed.
std::string Unfold(std::string_view value);

// Content-Transfer-Encoding decoding (RFC 2045 6). `encoding` is the field
// value (nullopt: 7bit). Returns false only for an encoding this does not
// know; malformed base64 or quoted-printable decodes leniently (bad octets
// are skipped, bad escapes kept as written), as readers of mail must.
bool DecodeTransferEncoding(std::optional<std::string_view> encoding,
                            std::string_view body, std::string* out);

// `bytes` in `charset` converted to UTF-8 with iconv. US-ASCII and UTF-8
// pass through; an unknown charset or an octet that does not convert
// keeps the input's octets (searching raw bytes beats finding nothing).
std::string CharsetToUtf8(std::string_view charset, std::string_view bytes);

// A Content-Type-like value ("type/subtype; a=b" or "attachment; a=b"):
// the leading token (lower case, may be empty) and its parameters.
// RFC 2045 5.1 syntax with RFC 822 comments; RFC 2231 continuations are
// joined and extended values %-decoded.
struct MimeValue {
  std::string token;
  std::vector<MimeParam> params;
};
MimeValue ParseMimeValue(std::string_view value);

}  // namespace tern::imap
