// Encoding, decoding and validation of queue message and state files; the
// format itself is documented in spool_format.h.
#include "queue/spool_format.h"

#include <sys/stat.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <memory>

#include "common/file_io.h"
#include "queue/crc32c.h"

namespace tern::queue {
namespace {

constexpr char kMessageMagic[8] = {'T', 'e', 'r', 'n', 'M', 's', 'g', '1'};
// Bits of the optional envelope flags byte.
constexpr uint8_t kFlagRequireTls = 1;
constexpr char kStateMagicV1[8] = {'T', 'e', 'r', 'n', 'S', 't', 'a', '1'};
constexpr char kStateMagic[8] = {'T', 'e', 'r', 'n', 'S', 't', 'a', '2'};
constexpr size_t kStateHeaderSize = 16;
// Far above any real envelope (100 recipients); bounds what a damaged
// length field can make us allocate.
constexpr uint32_t kMaxEnvelope = 16u << 20;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutStr(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}
uint64_t LoadLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes; i-- > 0;) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Bounds-checked reader over an encoded buffer; any overrun sets !ok.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == data_.size(); }
  uint64_t Int(int bytes) {
    if (!ok_ || data_.size() - pos_ < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t v = LoadLe(data_.data() + pos_, bytes);
    pos_ += static_cast<size_t>(bytes);
    return v;
  }
  std::string Str() {
    uint64_t len = Int(4);
    if (!ok_ || data_.size() - pos_ < len) {
      ok_ = false;
      return {};
    }
    std::string s(data_.substr(pos_, len));
    pos_ += len;
    return s;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string EncodeEnvelope(const Envelope& env) {
  std::string out;
  out.reserve(256);
  PutStr(out, env.id);
  PutStr(out, env.sender);
  PutU32(out, static_cast<uint32_t>(env.recipients.size()));
  for (const Recipient& r : env.recipients) {
    PutStr(out, r.address);
    PutStr(out, r.notify);
    PutStr(out, r.orcpt);
  }
  PutStr(out, env.ret);
  PutStr(out, env.envid);
  PutStr(out, env.body);
  out += static_cast<char>(env.smtputf8 ? 1 : 0);
  PutStr(out, env.client_ip);
  PutStr(out, env.helo);
  PutStr(out, env.auth_user);
  PutU64(out, static_cast<uint64_t>(env.received_at));
  PutStr(out, env.prepend);
  // Optional trailing fields: files without them are as before. The flags
  // byte needs the quarantine string before it (empty when not set).
  uint8_t flags = env.requiretls ? kFlagRequireTls : 0;
  if (!env.quarantine.empty() || flags != 0) PutStr(out, env.quarantine);
  if (flags != 0) out += static_cast<char>(flags);
  return out;
}

Result<Envelope> DecodeEnvelope(std::string_view data, uint32_t version) {
  Reader r(data);
  Envelope env;
  env.id = r.Str();
  env.sender = r.Str();
  uint64_t n = r.Int(4);
  // Each recipient takes at least 12 bytes; reject counts the data cannot hold.
  if (!r.ok() || n > data.size() / 12)
    return Err("envelope: bad recipient count");
  env.recipients.resize(n);
  for (Recipient& rc : env.recipients) {
    rc.address = r.Str();
    rc.notify = r.Str();
    rc.orcpt = r.Str();
  }
  env.ret = r.Str();
  env.envid = r.Str();
  env.body = r.Str();
  env.smtputf8 = r.Int(1) != 0;
  env.client_ip = r.Str();
  env.helo = r.Str();
  env.auth_user = r.Str();
  env.received_at = static_cast<int64_t>(r.Int(8));
  if (version >= 2) env.prepend = r.Str();
  if (version >= 2 && r.ok() && !r.done()) env.quarantine = r.Str();
  if (version >= 2 && r.ok() && !r.done()) {
    uint8_t flags = static_cast<uint8_t>(r.Int(1));
    env.requiretls = (flags & kFlagRequireTls) != 0;
  }
  if (!r.done()) return Err("envelope: malformed");
  return env;
}

std::array<char, kMessageHeaderSize> EncodeMessageHeader(
    std::string_view encoded_envelope, uint64_t body_len, uint32_t body_crc) {
  std::string h(kMessageMagic, sizeof kMessageMagic);
  PutU32(h, kFormatVersion);
  PutU32(h, static_cast<uint32_t>(encoded_envelope.size()));
  PutU64(h, body_len);
  PutU32(h, body_crc);
  uint32_t head_crc = Crc32c(Crc32c(0, h), encoded_envelope);
  PutU32(h, head_crc);
  std::array<char, kMessageHeaderSize> out;
  std::memcpy(out.data(), h.data(), out.size());
  return out;
}

Result<MessageFile> ReadMessageMeta(int fd) {
  char h[kMessageHeaderSize];
  if (int err = io::PreadAll(fd, h, sizeof h, 0); err != 0) {
    return io::ErrnoErr("read header", err);
  }
  if (std::memcmp(h, kMessageMagic, sizeof kMessageMagic) != 0) {
    return Err("bad magic (incomplete or foreign file)");
  }
  const uint32_t version = static_cast<uint32_t>(LoadLe(h + 8, 4));
  if (version != 1 && version != 2) return Err("unknown format version");
  uint64_t env_len = LoadLe(h + 12, 4);
  MessageFile file;
  file.body_len = LoadLe(h + 16, 8);
  file.body_crc = static_cast<uint32_t>(LoadLe(h + 24, 4));
  uint32_t head_crc = static_cast<uint32_t>(LoadLe(h + 28, 4));
  if (env_len > kMaxEnvelope) return Err("envelope too large");
  struct stat st;
  if (::fstat(fd, &st) != 0) return io::ErrnoErr("fstat", errno);
  if (file.body_len > UINT64_MAX - kMessageHeaderSize - env_len ||
      static_cast<uint64_t>(st.st_size) !=
          kMessageHeaderSize + env_len + file.body_len) {
    return Err("size does not match header (torn file)");
  }
  // Version 1: envelope, then message; version 2: message, then envelope.
  uint64_t env_offset = kMessageHeaderSize;
  file.body_offset = kMessageHeaderSize + env_len;
  if (version == 2) {
    file.body_offset = kMessageHeaderSize;
    env_offset = kMessageHeaderSize + file.body_len;
  }
  std::string env(env_len, '\0');
  if (int err = io::PreadAll(fd, env.data(), env.size(),
                             static_cast<off_t>(env_offset));
      err != 0) {
    return io::ErrnoErr("read envelope", err);
  }
  if (Crc32c(Crc32c(0, h, 28), env) != head_crc) {
    return Err("header checksum mismatch (torn file)");
  }
  auto decoded = DecodeEnvelope(env, version);
  if (!decoded) return tl::unexpected(decoded.error());
  file.envelope = std::move(*decoded);
  return file;
}

Result<void> VerifyMessageBody(int fd, const MessageFile& file) {
  constexpr size_t kChunk = 256 * 1024;
  auto buf = std::make_unique<char[]>(kChunk);
  uint32_t crc = 0;
  uint64_t left = file.body_len;
  off_t offset = static_cast<off_t>(file.body_offset);
  while (left > 0) {
    size_t n = left < kChunk ? static_cast<size_t>(left) : kChunk;
    if (int err = io::PreadAll(fd, buf.get(), n, offset); err != 0) {
      return io::ErrnoErr("read message", err);
    }
    crc = Crc32c(crc, buf.get(), n);
    left -= n;
    offset += static_cast<off_t>(n);
  }
  if (crc != file.body_crc) return Err("message checksum mismatch (torn file)");
  return {};
}

Result<std::string> ReadMessageText(int fd, const MessageFile& file,
                                    uint64_t max) {
  const std::string& prepend = file.envelope.prepend;
  std::string out = prepend.substr(0, std::min<uint64_t>(prepend.size(), max));
  uint64_t want = std::min<uint64_t>(file.body_len, max - out.size());
  size_t head = out.size();
  out.resize(head + want);
  if (int err = io::PreadAll(fd, out.data() + head, want,
                             static_cast<off_t>(file.body_offset));
      err != 0) {
    return io::ErrnoErr("read message", err);
  }
  return out;
}

Result<MessageFile> ReadAndVerifyMessage(int fd) {
  auto file = ReadMessageMeta(fd);
  if (!file) return file;
  if (auto ok = VerifyMessageBody(fd, *file); !ok) {
    return tl::unexpected(ok.error());
  }
  return file;
}

MessageState InitialState(const Envelope& env) {
  MessageState state;
  state.recipients.reserve(env.recipients.size());
  for (const Recipient& r : env.recipients) {
    state.recipients.push_back(
        RecipientRecord{r, RecipientState::kPending, {}});
  }
  // A quarantined message starts on hold; once released, its state file
  // says so.
  if (!env.quarantine.empty()) {
    state.held = true;
    state.last_error = "quarantined: " + env.quarantine;
  }
  return state;
}

std::string EncodeState(const MessageState& state) {
  std::string payload;
  PutU32(payload, state.attempts);
  PutU64(payload, static_cast<uint64_t>(state.next_attempt));
  PutStr(payload, state.last_error);
  payload += static_cast<char>(state.held ? 1 : 0);
  payload += static_cast<char>(state.delay_warned ? 1 : 0);
  size_t skip = state.log.size() > kMaxAttemptLog
                    ? state.log.size() - kMaxAttemptLog
                    : 0;
  PutU32(payload, static_cast<uint32_t>(state.log.size() - skip));
  for (size_t i = skip; i < state.log.size(); ++i) {
    PutU64(payload, static_cast<uint64_t>(state.log[i].time));
    PutStr(payload, state.log[i].host);
    PutStr(payload, state.log[i].reply);
  }
  PutU32(payload, static_cast<uint32_t>(state.recipients.size()));
  for (const RecipientRecord& r : state.recipients) {
    payload += static_cast<char>(r.state);
    PutStr(payload, r.recipient.address);
    PutStr(payload, r.recipient.notify);
    PutStr(payload, r.recipient.orcpt);
    PutStr(payload, r.error);
    PutStr(payload, r.status);
    PutStr(payload, r.remote_mta);
    payload += static_cast<char>((r.notified ? 1 : 0) | (r.dsn_passed ? 2 : 0) |
                                 (r.forwarded ? 4 : 0));
  }
  std::string out(kStateMagic, sizeof kStateMagic);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, Crc32c(0, payload));
  out += payload;
  return out;
}

Result<MessageState> DecodeState(std::string_view data) {
  if (data.size() < kStateHeaderSize) return Err("state: bad magic");
  bool v2 = std::memcmp(data.data(), kStateMagic, sizeof kStateMagic) == 0;
  if (!v2 &&
      std::memcmp(data.data(), kStateMagicV1, sizeof kStateMagicV1) != 0) {
    return Err("state: bad magic");
  }
  uint64_t len = LoadLe(data.data() + 8, 4);
  uint32_t crc = static_cast<uint32_t>(LoadLe(data.data() + 12, 4));
  std::string_view payload = data.substr(kStateHeaderSize);
  if (payload.size() != len || Crc32c(0, payload) != crc) {
    return Err("state: torn or damaged");
  }
  Reader r(payload);
  MessageState state;
  state.attempts = static_cast<uint32_t>(r.Int(4));
  state.next_attempt = static_cast<int64_t>(r.Int(8));
  state.last_error = r.Str();
  if (v2) {
    state.held = r.Int(1) != 0;
    state.delay_warned = r.Int(1) != 0;
    uint64_t a = r.Int(4);
    if (!r.ok() || a > payload.size() / 16) return Err("state: bad log count");
    state.log.resize(a);
    for (Attempt& at : state.log) {
      at.time = static_cast<int64_t>(r.Int(8));
      at.host = r.Str();
      at.reply = r.Str();
    }
  }
  uint64_t n = r.Int(4);
  if (!r.ok() || n > payload.size() / 17)
    return Err("state: bad recipient count");
  state.recipients.resize(n);
  for (RecipientRecord& rec : state.recipients) {
    uint64_t s = r.Int(1);
    if (s > 2) return Err("state: bad recipient state");
    rec.state = static_cast<RecipientState>(s);
    rec.recipient.address = r.Str();
    rec.recipient.notify = r.Str();
    rec.recipient.orcpt = r.Str();
    rec.error = r.Str();
    if (v2) {
      rec.status = r.Str();
      rec.remote_mta = r.Str();
      uint64_t flags = r.Int(1);
      rec.notified = (flags & 1) != 0;
      rec.dsn_passed = (flags & 2) != 0;
      rec.forwarded = (flags & 4) != 0;
    }
  }
  if (!r.done()) return Err("state: malformed");
  return state;
}

}  // namespace tern::queue
