// MessageText: see message.h. The parsing and rendering are
// imap/protocol/mime.h, fetch_render.h and mime_search.h.
#include "imap/server/message.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "imap/protocol/datetime.h"
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

std::optional<int64_t> MessageText::SentTime() {
  auto value = FindHeaderField(parsed().header(), "Date");
  if (!value) return std::nullopt;
  auto dt = ParseHeaderDate(Unfold(*value));
  if (!dt) return std::nullopt;
  return ToUnixSeconds(*dt);
}

std::optional<std::string> MessageText::RawHeader(std::string_view field) {
  auto value = FindHeaderField(parsed().header(), field);
  if (!value) return std::nullopt;
  return Unfold(*value);
}

namespace {

// Reads the message into CRLF form; with `header_only`, stops once the
// blank line that ends the header has been read and cuts there.
Result<MessageText> Load(store::MailStore& store, std::string_view folder,
                         uint32_t uid, bool header_only) {
  auto fd = store.OpenMessage(folder, uid);
  if (!fd) return tl::unexpected(fd.error());
  // POP3 TOP's cut with no body lines keeps the header and its blank line.
  store::CrlfEncoder enc(false, header_only ? 0 : -1);
  std::string out;
  struct stat st;
  if (!header_only && ::fstat(fd->get(), &st) == 0 && st.st_size > 0) {
    // Room for the CRLF form (a CR per ~40 octets of line, mostly) so
    // the string does not grow by copying itself.
    auto size = static_cast<size_t>(st.st_size);
    out.reserve(size + size / 32 + 64);
  }
  char buf[64 * 1024];
  // Headers are mostly a few KiB: do not read 64 KiB of body for them.
  size_t want = header_only ? 8 * 1024 : sizeof buf;
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Err(std::string("read: ") + std::strerror(errno), errno);
    if (n == 0) break;
    enc.Feed(std::string_view(buf, static_cast<size_t>(n)), out);
    if (enc.done()) break;
  }
  enc.Finish(out);
  return MessageText(std::move(out));
}

}  // namespace

Result<MessageText> LoadMessage(store::MailStore& store, std::string_view folder,
                                uint32_t uid) {
  return Load(store, folder, uid, false);
}

Result<MessageText> LoadHeader(store::MailStore& store, std::string_view folder,
                               uint32_t uid) {
  return Load(store, folder, uid, true);
}

}  // namespace tern::imap
