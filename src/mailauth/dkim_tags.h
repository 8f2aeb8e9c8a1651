// DKIM tag lists (RFC 6376 3.2), the "name=value; ..." syntax shared by the
// DKIM-Signature header field and the key records in DNS. A pure function
// over untrusted text: every rejection says what and where.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace tern::mailauth {

struct DkimTag {
  std::string_view name;
  // Without the whitespace around it; whitespace (and folding) between the
  // words of a value stays as written, for the tags that allow it.
  std::string_view value;
  // Offsets into the parsed text: just after the '=', and of the ';' that
  // ends the tag (or the end of the text). Erasing [value_begin, value_end)
  // empties the value "including all surrounding whitespace", as the b= tag
  // must be before hashing (RFC 6376 3.5).
  size_t value_begin = 0;
  size_t value_end = 0;
};

struct DkimTagList {
  std::vector<DkimTag> tags;  // in the order written
  // Tag names are case-sensitive (RFC 6376 3.2). nullptr when absent.
  const DkimTag* Find(std::string_view name) const;
};

// Parses `text` (a field body after the colon, or one TXT record). Errors:
// a tag name that does not start with a letter or holds other than letters,
// digits and '_', a missing '=', a control character or bare CR/LF in a
// value, an empty tag between two semicolons, a tag given twice (RFC 6376
// 3.2: "MUST be interpreted as an error"). A final ';' is allowed. Octets
// above 0x7f are accepted in values for internationalized addresses
// (RFC 8616 4).
Result<DkimTagList> ParseDkimTagList(std::string_view text);

// Whitespace as the tag-list grammar allows it (RFC 6376 2.8 FWS): SP, HTAB,
// or CRLF followed by SP or HTAB. Returns the number of octets at `pos`
// that form whitespace (0 if none).
size_t DkimWhitespaceAt(std::string_view text, size_t pos);

// `value` with every whitespace octet (SP, HTAB, CR, LF) removed: base64
// values (b=, bh=, p=) may be folded anywhere (RFC 6376 3.5, 3.6.1).
std::string StripDkimWhitespace(std::string_view value);

// Splits a colon-separated value (h=, q=, and the key record's h=, s=, t=)
// into its items with surrounding whitespace trimmed. Empty items are kept,
// so the caller can reject them.
std::vector<std::string_view> SplitDkimList(std::string_view value);

}  // namespace tern::mailauth
