// A message as mail filters see it and change it, without I/O: split
// into header fields and body, and one filter's modifications (milter
// replies to end of body) applied all or nothing, each checked so that no
// filter can inject header fields or malformed addresses.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "antispam/milter_protocol.h"
#include "common/result.h"

namespace tern::antispam {

// A message as the filters see and change it.
struct MilterMessage {
  std::string sender;                 // address without <>; empty for <>
  std::vector<std::string> mail_args; // ESMTP parameters of MAIL ("SIZE=12")
  std::vector<std::string> rcpts;     // addresses without <>
  struct Field {
    std::string name;
    // Everything after the colon up to the field's final CRLF: the
    // leading space and any folding (CRLF + whitespace) included.
    std::string value;
  };
  std::vector<Field> fields;
  bool separator = true;  // an empty line followed the header fields
  std::string body;       // CRLF lines

  // Splits a message (CRLF lines) into fields and body. A line that is
  // neither a field nor a continuation ends the header section there.
  static MilterMessage Parse(std::string_view text);
  // The message text again: fields, the empty line, the body.
  std::string Text() const;
};

// What one filter's changes did.
struct MilterChangeSummary {
  bool text = false;      // header fields or body changed
  bool envelope = false;  // sender or recipients changed
  // A spam verdict in a field the filter added or changed (rspamd's
  // "X-Spam: Yes", SpamAssassin's "X-Spam-Flag: YES" or "X-Spam-Status:
  // Yes, ..."): the message belongs in Junk.
  bool spam = false;
  std::string quarantine;  // the filter asked for quarantine, this reason
};

// Applies one filter's modifications, in order, to `m`: header fields
// added (at the end), inserted (at an index, 0 = first), changed or
// deleted (libmilter smfi_chgheader: the index-th field of that name from
// 1; an empty value deletes; a missing one is added); the body replaced
// (the replacement's chunks joined, LF made CRLF); sender changed;
// recipients added or deleted; quarantine. Field values get LF made CRLF
// and a leading space. A malformed change (a field name with a colon or
// control, a value whose line breaks do not fold, an address with spaces
// or controls) is an error and `m` is left as it was. `filter` names the
// filter in a quarantine reason it did not give.
Result<MilterChangeSummary> ApplyMilterChanges(const std::vector<MilterReply>& changes,
                                               MilterMessage& m, std::string_view filter);

// "2 header,1 recipient" for the log.
std::string DescribeMilterChanges(const std::vector<MilterReply>& changes);

}  // namespace tern::antispam
