// RFC 5322 3.4 address lists as they appear in From:, Sender: and friends,
// with the obsolete forms of RFC 5322 4.4 tolerated and RFC 2047 encoded
// words decoded in display names. Used to check sender identity.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::smtp {

// RFC 5322 3.2.3 atext; octets >= 0x80 count as atext too (RFC 6532 3.2).
bool IsAtext(unsigned char c);

struct HeaderMailbox {
  std::string display_name;  // RFC 2047 decoded; empty when absent
  std::string local;         // unquoted content ("a b" for "\"a b\"")
  std::string domain;        // as written; domain literals keep the brackets
  bool quoted = false;       // some part of the local part was quoted
  std::string address() const { return local + "@" + domain; }
};

// Parses a field body (everything after "Name:", folding allowed) as an
// RFC 5322 address-list. Groups are flattened into their mailboxes; an
// empty group contributes none. Returns nullopt on any syntax error: a
// caller deciding who sent a message must not guess.
std::optional<std::vector<HeaderMailbox>> ParseAddressList(
    std::string_view body);

// Decodes RFC 2047 encoded words ("=?charset?Q|B?text?=") in a phrase.
// UTF-8 and US-ASCII pass through, ISO-8859-1 is converted to UTF-8, other
// charsets are kept as their raw bytes. Whitespace between two adjacent
// encoded words is dropped (RFC 2047 6.2). Malformed words stay as written.
std::string DecodeEncodedWords(std::string_view phrase);

struct HeaderField {
  std::string name;   // as written, without trailing whitespace
  std::string value;  // unfolded (CRLFs removed, RFC 5322 2.2.3)
};

// Splits a header block ("Name: value\r\n\tmore\r\n...") into fields.
// Lines without a colon that are not continuations are skipped.
std::vector<HeaderField> SplitHeaderFields(std::string_view block);

}  // namespace tern::smtp
