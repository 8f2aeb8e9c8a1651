// One message as FETCH and SEARCH see it: its octets in CRLF form (what
// IMAP counts and sends, RFC 9051 2.3.4) and, parsed when first asked for,
// its MIME structure (imap/protocol/mime.h).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "imap/protocol/command.h"
#include "store/mail_store.h"

namespace tern::imap {

class MessageText {
 public:
  explicit MessageText(std::string crlf);
  MessageText(MessageText&&) noexcept;
  MessageText& operator=(MessageText&&) noexcept;
  ~MessageText();

  std::string_view crlf() const { return *crlf_; }
  // RFC 9051 7.5.2 ENVELOPE, BODY and BODYSTRUCTURE.
  std::string Envelope(bool utf8);
  std::string BodyStructure(bool extensible, bool utf8);
  // BODY[section] octets (empty for a part that does not exist).
  std::string SectionOctets(const Section& section);
  // BINARY[part]: the part's body with its transfer encoding undone;
  // nullopt for an encoding that cannot be undone (NO [UNKNOWN-CTE]).
  std::optional<std::string> Binary(const std::vector<uint32_t>& part);

  // SEARCH (RFC 9051 6.4.4): a header field's values, decoded (RFC 2047)
  // and unfolded, and the decoded text of the body, both UTF-8.
  std::vector<std::string> HeaderValues(std::string_view field);
  std::string HeaderBlock();
  std::string BodyText();
  // The date of the Date: header as written, if it parses.
  std::optional<Date> SentDate();
  // SORT and THREAD (RFC 5256): the Date: header as an instant (seconds
  // since the epoch, UTC), if it parses; the first field called `field`,
  // unfolded but not decoded (address lists and Message-IDs are parsed
  // from it), nullopt when absent.
  std::optional<int64_t> SentTime();
  std::optional<std::string> RawHeader(std::string_view field);

 private:
  struct Parsed;
  Parsed& parsed();
  // Owned through a pointer: the parsed views stay valid when moved.
  std::unique_ptr<std::string> crlf_;
  std::unique_ptr<Parsed> parsed_;
};

// Reads message `uid` of `folder` and converts it to CRLF.
Result<MessageText> LoadMessage(store::MailStore& store, std::string_view folder,
                                uint32_t uid);

// The same for the header only (up to and with the blank line, or all of
// a message without one): what SORT and THREAD read.
Result<MessageText> LoadHeader(store::MailStore& store, std::string_view folder,
                               uint32_t uid);

}  // namespace tern::imap
