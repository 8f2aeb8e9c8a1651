// ESMTP parameters of MAIL and RCPT (RFC 5321 4.1.2 Mail-parameters):
// SIZE, BODY, SMTPUTF8, REQUIRETLS, RET, ENVID, NOTIFY, ORCPT. Internal to
// smtp/protocol; the Session maps the outcome to a reply.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/protocol/session.h"

namespace tern::smtp {

enum class ParamStatus {
  kOk,
  kSyntax,   // malformed or repeated parameter: 501 5.5.4
  kUnknown,  // parameter we do not offer: 555 5.5.4 (RFC 5321 4.1.1.11)
  kTooBig,   // SIZE above our maximum: 552 5.3.4 (RFC 1870 6)
};

struct MailParams {
  uint64_t size = 0;
  std::string body;
  std::string ret;
  std::string envid;
  bool smtputf8 = false;
  bool requiretls = false;  // RFC 8689 3
};

// `rest` is what follows the path's '>': empty or SP-separated parameters.
ParamStatus ParseMailParams(std::string_view rest, uint64_t max_size,
                            MailParams* out);
// utf8: the transaction uses SMTPUTF8, so ORCPT may carry UTF-8 (RFC 6533).
ParamStatus ParseRcptParams(std::string_view rest, bool utf8, RcptParams* out);

}  // namespace tern::smtp
