// Message text for SEARCH (RFC 9051 6.4.4) and SORT keys (RFC 5256),
// from the MIME structure of mime.h: header values with RFC 2047 words
// decoded, the readable text of the body in UTF-8, a case-insensitive
// substring match, and the Date: header as a date.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imap/protocol/datetime.h"
#include "imap/protocol/mime.h"

namespace tern::imap {

// The value of every field called `name` (ASCII case-insensitive) in a
// header block, unfolded and with RFC 2047 encoded words decoded
// (smtp::DecodeEncodedWords: UTF-8, US-ASCII and ISO-8859-1 become UTF-8,
// other charsets keep their octets). SEARCH HEADER, FROM, SUBJECT, ...
std::vector<std::string> DecodedHeaderValues(std::string_view header,
                                             std::string_view name);

// Every field of a header block as "Name: decoded value\n" (SEARCH TEXT
// looks at the header as well as the body).
std::string SearchableHeader(std::string_view header);

// The text SEARCH BODY looks in: each text/* part with its transfer
// encoding undone and its charset converted to UTF-8 (CharsetToUtf8), and
// the header and text of embedded messages, one "\n" between parts.
// Non-text parts (images, archives) are left out.
std::string SearchableBody(const MimeMessage& message);

// Whether `needle` occurs in `haystack`, ignoring case: ASCII letters and
// the Latin-1 letters of UTF-8 (U+00C0..U+00DE against U+00E0..U+00FE)
// are folded; every other octet must match exactly. An empty needle
// matches.
bool ContainsFolded(std::string_view haystack, std::string_view needle);

// A Date: field value (RFC 5322 3.3, with the obsolete forms of 4.3: two-
// and three-digit years, named zones, comments). The zone stays in
// zone_minutes, so .date is the date as written (SENTBEFORE, SENTON and
// SENTSINCE disregard time and zone) and ToUnixSeconds() the instant (SORT
// DATE). nullopt when it does not parse.
std::optional<DateTime> ParseHeaderDate(std::string_view value);

// RFC 5256 2.1 base subject: encoded words decoded, whitespace collapsed,
// trailing "(fwd)", leading "Re:", "Fw:", "Fwd:" and "[blob]" prefixes and
// a "[fwd: ...]" wrapper removed, repeatedly. *reply_or_forward (when
// given) tells whether steps (2), (4) or (6) removed anything: what THREAD
// REFERENCES calls a reply or forward (RFC 5256 2.1, 4 step 6).
std::string BaseSubject(std::string_view subject, bool* reply_or_forward = nullptr);

// RFC 5256 3 FROM, TO, CC sort keys: the mailbox (local part) of the first
// address of an address-list field value; empty when there is none.
std::string FirstMailbox(std::string_view value);

}  // namespace tern::imap
