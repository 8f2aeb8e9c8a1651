// Writes strings for IMAP output in the form the grammar allows for their
// content (RFC 9051 4.3): an atom where an astring may be one, a quoted
// string, or a literal for what a quoted string cannot carry.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern::imap {

enum class StringForm { kAtom, kQuoted, kLiteral };

// Longer strings go out as literals, keeping lines short.
inline constexpr size_t kMaxQuoted = 1024;

// How `s` goes out where the grammar says astring (atom allowed) or string
// (atom_ok false). utf8: the client enabled IMAP4rev2 or UTF8=ACCEPT, so a
// quoted string may carry UTF-8 (RFC 9051 9 QUOTED-CHAR, RFC 6855 3);
// IMAP4rev1 quoted strings are 7-bit. CR, LF and NUL always need a literal
// (a NUL cannot be sent in a string at all: it goes out as is, in a
// literal, and callers must not depend on it).
StringForm ChooseForm(std::string_view s, bool atom_ok, bool utf8);

// The wire text: `abc`, `"a b"`, `{3}\r\nx\ny`.
std::string FormatAstring(std::string_view s, bool utf8);
std::string FormatString(std::string_view s, bool utf8);
std::string FormatNstring(const std::optional<std::string>& s, bool utf8);

// RFC 9051 9 ATOM-CHAR and ASTRING-CHAR.
bool IsAtomChar(char c);
bool IsAstringChar(char c);

}  // namespace tern::imap
