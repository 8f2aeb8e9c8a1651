// MessageText: see message.h.
#include "imap/server/message.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/strings.h"
#include "store/crlf.h"

namespace tern::imap {

struct MessageText::Parsed {
  size_t header_end = 0;  // just after the blank line (or the end)
};

MessageText::MessageText(std::string crlf) : crlf_(std::move(crlf)) {}
MessageText::MessageText(MessageText&&) noexcept = default;
MessageText& MessageText::operator=(MessageText&&) noexcept = default;
MessageText::~MessageText() = default;

MessageText::Parsed& MessageText::parsed() {
  if (!parsed_) {
    parsed_ = std::make_unique<Parsed>();
    size_t p = crlf_.find("\r\n\r\n");
    if (crlf_.rfind("\r\n", 0) == 0) {
      parsed_->header_end = 2;
    } else {
      parsed_->header_end = p == std::string::npos ? crlf_.size() : p + 4;
    }
  }
  return *parsed_;
}

std::string MessageText::Envelope(bool utf8) {
  return "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";
}

std::string MessageText::BodyStructure(bool extensible, bool utf8) {
  size_t body = crlf_.size() - parsed().header_end;
  return "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" " +
         std::to_string(body) + " 0)";
}

std::string MessageText::SectionOctets(const Section& section) {
  const Parsed& p = parsed();
  if (!section.part.empty()) return {};
  switch (section.text) {
    case SectionText::kNone: return crlf_;
    case SectionText::kHeader: return crlf_.substr(0, p.header_end);
    case SectionText::kText: return crlf_.substr(p.header_end);
    default: return {};
  }
}

std::optional<std::string> MessageText::Binary(const std::vector<uint32_t>& part) {
  if (part.empty()) return crlf_;
  return std::string();
}

std::vector<std::string> MessageText::HeaderValues(std::string_view field) {
  return {};
}

std::string MessageText::HeaderBlock() { return crlf_.substr(0, parsed().header_end); }

std::string MessageText::BodyText() { return crlf_.substr(parsed().header_end); }

std::optional<int64_t> MessageText::SentDate() { return std::nullopt; }

Result<MessageText> LoadMessage(store::MailStore& store, std::string_view folder,
                                uint32_t uid) {
  auto fd = store.OpenMessage(folder, uid);
  if (!fd) return tl::unexpected(fd.error());
  store::CrlfEncoder enc;
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(std::string("read: ") + std::strerror(errno), errno);
    if (n == 0) break;
    enc.Feed(std::string_view(buf, static_cast<size_t>(n)), out);
  }
  enc.Finish(out);
  return MessageText(std::move(out));
}

}  // namespace tern::imap
