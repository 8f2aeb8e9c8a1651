// What FETCH sends about a message's content, from its MIME structure
// (mime.h): ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 7.5.2, the grammar
// of RFC 9051 9), the octets of BODY[section] (RFC 9051 6.4.5) and the
// decoded content of BINARY[section] (RFC 9051 6.4.5, RFC 3516). Results
// are plain strings so that a store can cache them per message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "imap/protocol/command.h"
#include "imap/protocol/mime.h"

namespace tern::imap {

// The ENVELOPE list of a header block. Strings are unfolded but otherwise
// as written (RFC 2047 encoded words are not decoded: the client does).
// utf8: the client enabled IMAP4rev2 or UTF8=ACCEPT (quote.h).
std::string RenderEnvelope(std::string_view header, bool utf8);
// Of the message itself.
std::string RenderEnvelope(const MimeMessage& message, bool utf8);

// BODYSTRUCTURE (extensible true) or BODY (false) of the message.
std::string RenderBodyStructure(const MimeMessage& message, bool extensible,
                                bool utf8);

// The part that section-part numbers name (RFC 9051 6.4.5): part 1 of a
// non-multipart entity is the entity itself, and a number after a
// message/rfc822 part counts the parts of its embedded message. Empty
// numbers: the message. nullptr when there is no such part.
const MimePart* FindPart(const MimeMessage& message,
                         const std::vector<uint32_t>& numbers);

// The octets of BODY[section]: a view into the message, or into *scratch
// for HEADER.FIELDS and HEADER.FIELDS.NOT (which keep the blank line).
// HEADER, TEXT and HEADER.FIELDS after part numbers apply to a
// message/rfc822 part's embedded message; MIME is the part's own header.
// A part that does not exist, or a section that does not apply to it,
// gives the empty string: RFC 9051 6.4.5 does not make it an error.
std::string_view SectionOctets(const MimeMessage& message,
                               const Section& section, std::string* scratch);

// <offset.length> of RFC 9051 6.4.5: past the end is empty, a length past
// the end stops at the end.
std::string_view ApplyPartial(std::string_view octets,
                              const std::optional<Partial>& partial);

// BINARY[part]: the part's body with its Content-Transfer-Encoding undone
// (the whole message as is for empty numbers; empty for a part that does
// not exist). An encoding this does not know is an error, for the caller
// to answer NO [UNKNOWN-CTE] (RFC 3516 4.3).
Result<std::string> BinaryContent(const MimeMessage& message,
                                  const std::vector<uint32_t>& numbers);
// BINARY.SIZE[part]: the size of the same.
Result<uint64_t> BinarySize(const MimeMessage& message,
                            const std::vector<uint32_t>& numbers);

// One address of an address list as ENVELOPE describes it (RFC 9051
// 7.5.2): a group start has only `mailbox` (the group name), a group end
// none of them.
struct EnvelopeAddress {
  std::optional<std::string> name;   // display name as written, unquoted
  std::optional<std::string> adl;    // obsolete source route "@a,@b"
  std::optional<std::string> mailbox;
  std::optional<std::string> host;   // nullopt only for group start and end
};

// Leniently parses an address-list field value: never fails, and marks
// what is missing with "MISSING_MAILBOX" / "MISSING_DOMAIN" (as Dovecot
// does) because a NIL host would read as group syntax.
std::vector<EnvelopeAddress> ParseEnvelopeAddresses(std::string_view value);

}  // namespace tern::imap
