// DKIM signing of a streaming message: see outbound_signer.h.
#include "mailauth/outbound_signer.h"

#include <utility>

#include "common/strings.h"
#include "mailauth/dmarc.h"

namespace tern::mailauth {
namespace {

constexpr size_t kMaxHeader = 1 << 20;

}  // namespace

OutboundSigner::OutboundSigner(const DkimKeyMap& keys, int64_t now)
    : keys_(keys), now_(now) {}

void OutboundSigner::Feed(std::string_view chunk) {
  if (header_done_) {
    if (signer_) signer_->Feed(chunk);
    return;
  }
  header_.append(chunk);
  // The header section ends at the first empty line (RFC 5322 2.1).
  size_t end = header_.find("\r\n\r\n");
  size_t skip = 4;
  if (header_.rfind("\r\n", 0) == 0) {
    end = 0;  // no header at all
    skip = 2;
  }
  if (end == std::string::npos) {
    if (header_.size() > kMaxHeader) {
      // A header section too large to hold: left unsigned.
      header_done_ = true;
      header_.clear();
    }
    return;
  }
  header_done_ = true;
  auto from = FromDomainOfHeader(std::string_view(header_).substr(0, end + skip));
  if (from) {
    domain_ = ToLower(*from);
    if (auto it = keys_.find(domain_); it != keys_.end() && !it->second.empty()) {
      signer_ = std::make_unique<DkimSigner>(it->second, now_);
      signer_->Feed(header_);
    }
  }
  std::string().swap(header_);
}

Result<std::string> OutboundSigner::Finish() {
  if (!header_done_) {
    // The message ended inside its header section (no body at all).
    header_done_ = true;
    auto from = FromDomainOfHeader(header_);
    if (from) {
      domain_ = ToLower(*from);
      if (auto it = keys_.find(domain_); it != keys_.end() && !it->second.empty()) {
        signer_ = std::make_unique<DkimSigner>(it->second, now_);
        signer_->Feed(header_);
      }
    }
  }
  if (!signer_) return std::string();
  return signer_->Finish();
}

}  // namespace tern::mailauth
