// MessageText: see message.h. The parsing and rendering are
// imap/protocol/mime.h, fetch_render.h and mime_search.h.
#include "imap/server/message.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "imap/protocol/fetch_render.h"
#include "imap/protocol/mime.h"
#include "imap/protocol/mime_search.h"
#include "store/crlf.h"

namespace tern::imap {

struct MessageText::Parsed {
  MimeMessage mime;  // views into *crlf_
  std::string_view header() const {
    return mime.text.substr(mime.root.offset, mime.root.header_size);
  }
};

MessageText::MessageText(std::string crlf)
    : crlf_(std::make_unique<std::string>(std::move(crlf))) {}
MessageText::MessageText(MessageText&&) noexcept = default;
MessageText& MessageText::operator=(MessageText&&) noexcept = default;
MessageText::~MessageText() = default;

MessageText::Parsed& MessageText::parsed() {
  if (!parsed_) {
    parsed_ = std::make_unique<Parsed>();
    parsed_->mime = ParseMime(*crlf_);
  }
  return *parsed_;
}

std::string MessageText::Envelope(bool utf8) {
  return RenderEnvelope(parsed().mime, utf8);
}

std::string MessageText::BodyStructure(bool extensible, bool utf8) {
  return RenderBodyStructure(parsed().mime, extensible, utf8);
}

std::string MessageText::SectionOctets(const Section& section) {
  std::string scratch;
  std::string_view v = imap::SectionOctets(parsed().mime, section, &scratch);
  return std::string(v);
}

std::optional<std::string> MessageText::Binary(const std::vector<uint32_t>& part) {
  auto r = BinaryContent(parsed().mime, part);
  if (!r) return std::nullopt;
  return std::move(*r);
}

std::vector<std::string> MessageText::HeaderValues(std::string_view field) {
  return DecodedHeaderValues(parsed().header(), field);
}

std::string MessageText::HeaderBlock() { return SearchableHeader(parsed().header()); }

std::string MessageText::BodyText() { return SearchableBody(parsed().mime); }

std::optional<Date> MessageText::SentDate() {
  auto values = FindHeaderField(parsed().header(), "Date");
  if (!values) return std::nullopt;
  auto dt = ParseHeaderDate(Unfold(*values));
  if (!dt) return std::nullopt;
  // RFC 9051 6.4.4 SENT*: the date as written, time and zone disregarded.
  return dt->date;
}

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
