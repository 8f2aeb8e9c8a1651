// Modified UTF-7 for mailbox names (RFC 3501 5.1.3), the encoding IMAP4rev1
// clients use; IMAP4rev2 and UTF8=ACCEPT clients send UTF-8 instead (RFC
// 9051 5.1, RFC 6855 3). Also a UTF-8 check for names and strings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace tern::imap {

// True when `s` is well-formed UTF-8 (RFC 3629 4: no overlongs, no
// surrogates, nothing above U+10FFFF).
bool IsUtf8(std::string_view s);

// UTF-8 to modified UTF-7. Fails on malformed UTF-8.
Result<std::string> EncodeMutf7(std::string_view utf8);

// Modified UTF-7 to UTF-8. Only the canonical form is accepted, the one
// EncodeMutf7 gives: no raw 8-bit or control octets, no "&" without "-",
// no printable ASCII or adjacent runs in base64, zero padding bits, whole
// UTF-16 surrogate pairs.
Result<std::string> DecodeMutf7(std::string_view mutf7);

}  // namespace tern::imap
