// DKIM signing of mail as it streams in (SMTP DATA of an authenticated or
// trusted client): the keys depend on the From domain, which is known only
// once the header section is complete, so the header is held until then
// and the signer (dkim_sign.h) starts from it; the body is hashed as it
// arrives. Signed once, at queue time: the stored bytes never change.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "mailauth/dkim_sign.h"

namespace tern::mailauth {

using DkimKeyMap = std::map<std::string, std::vector<DkimSigningKey>>;

class OutboundSigner {
 public:
  // `keys` by lower-case domain; must outlive the signer.
  OutboundSigner(const DkimKeyMap& keys, int64_t now);
  void Feed(std::string_view chunk);
  // The DKIM-Signature fields (CRLF lines) for the message, or "" when
  // its From domain has no keys (or it has no single From).
  Result<std::string> Finish();
  // The From domain, once the header section was seen ("" before, or
  // when it could not be read).
  const std::string& domain() const { return domain_; }

 private:
  void StartBody();

  const DkimKeyMap& keys_;
  int64_t now_;
  std::string header_;       // until the empty line
  bool header_done_ = false;
  std::string domain_;
  std::unique_ptr<DkimSigner> signer_;
};

}  // namespace tern::mailauth
