// 8-bit to 7-bit conversion for a peer without 8BITMIME (RFC 6152 3: a
// client that cannot pass 8-bit data on must either convert it to 7-bit
// MIME or return it as undeliverable). Pure: bytes in, bytes out.
//
// The MIME tree is walked by its boundaries (RFC 2046 5.1). Every leaf part
// whose body holds octets above 127 (Content-Transfer-Encoding 8bit, binary
// or none) is re-encoded as quoted-printable (RFC 2045 6.7) and its
// Content-Transfer-Encoding field changed. A message/rfc822 part cannot be
// encoded itself (RFC 2046 5.2.1 allows only 7bit, 8bit and binary), so the
// message inside it is converted instead and the part relabelled 7bit;
// other message/* types with 8-bit content cannot be converted.
//
// The conversion fails when a header holds raw 8-bit octets (only SMTPUTF8,
// RFC 6532, allows them; no encoding of the body can help), when 8-bit
// octets sit in a multipart preamble or epilogue, in a part that claims
// base64 or quoted-printable, or in a structure too deep or broken to walk.
//
// The converted copy changes the body, so a DKIM signature made over the
// 8-bit body no longer verifies (RFC 6376 5.3 asks signers to encode first;
// Postfix converts the same way).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern::smtp::client {

// The message as 7-bit MIME, or nullopt with *error set. A message without
// any 8-bit octet comes back unchanged.
std::optional<std::string> DowngradeTo7Bit(std::string_view message,
                                           std::string* error);

// RFC 2045 6.7 quoted-printable of `data`: CRLF pairs stay hard line breaks,
// every other octet outside 33..126 (and "=") is =XX, trailing white space
// of a line is encoded, encoded lines stay within 76 characters.
std::string EncodeQuotedPrintable(std::string_view data);

}  // namespace tern::smtp::client
