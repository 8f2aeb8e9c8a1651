// Wire-format decoding of MX, SRV, TXT, TLSA, A and AAAA record data; every length is checked
// against the buffer because the data is remote input.
#include "dns/rdata.h"

#include <arpa/inet.h>

#include "common/strings.h"

namespace tern::dns {

std::optional<std::string> NameFromWire(std::string_view data) {
  std::string name;
  size_t pos = 0;
  // RFC 1035 2.3.4: 255 octets at most on the wire.
  if (data.size() > 255) return std::nullopt;
  while (true) {
    if (pos >= data.size()) return std::nullopt;
    auto len = static_cast<unsigned char>(data[pos++]);
    if (len == 0) break;
    // 0xC0 marks a compression pointer: libunbound hands out decompressed
    // RDATA, so one here means the data is not what we think it is.
    if (len > 63 || data.size() - pos < len) return std::nullopt;
    if (!name.empty()) name += '.';
    for (size_t i = 0; i < len; ++i) {
      char c = data[pos + i];
      // A dot or NUL inside a label cannot be written as a host name.
      if (c == '.' || c == '\0') return std::nullopt;
      name += c;
    }
    pos += len;
  }
  if (pos != data.size()) return std::nullopt;
  return ToLower(name);
}

std::optional<MxRecord> ParseMx(std::string_view rdata) {
  if (rdata.size() < 3) return std::nullopt;
  MxRecord mx;
  mx.preference = static_cast<uint16_t>(
      (static_cast<unsigned char>(rdata[0]) << 8) |
      static_cast<unsigned char>(rdata[1]));
  auto name = NameFromWire(rdata.substr(2));
  if (!name) return std::nullopt;
  mx.exchange = std::move(*name);
  return mx;
}

std::optional<SrvRecord> ParseSrv(std::string_view rdata) {
  if (rdata.size() < 7) return std::nullopt;
  auto u16 = [&](size_t at) {
    return static_cast<uint16_t>((static_cast<unsigned char>(rdata[at]) << 8) |
                                 static_cast<unsigned char>(rdata[at + 1]));
  };
  SrvRecord srv;
  srv.priority = u16(0);
  srv.weight = u16(2);
  srv.port = u16(4);
  auto name = NameFromWire(rdata.substr(6));
  if (!name) return std::nullopt;
  srv.target = std::move(*name);
  return srv;
}

std::optional<TlsaRecord> ParseTlsa(std::string_view rdata) {
  // RFC 6698 2.1 gives no lower bound for the data; an empty field can
  // match nothing, so it is treated as malformed here.
  if (rdata.size() < 4) return std::nullopt;
  TlsaRecord r;
  r.usage = static_cast<uint8_t>(rdata[0]);
  r.selector = static_cast<uint8_t>(rdata[1]);
  r.mtype = static_cast<uint8_t>(rdata[2]);
  r.data.assign(rdata.substr(3));
  return r;
}

std::optional<std::string> ParseAddress(RrType type, std::string_view rdata) {
  char text[INET6_ADDRSTRLEN];
  if (type == RrType::kA && rdata.size() == 4) {
    if (inet_ntop(AF_INET, rdata.data(), text, sizeof text) == nullptr)
      return std::nullopt;
    return std::string(text);
  }
  if (type == RrType::kAaaa && rdata.size() == 16) {
    if (inet_ntop(AF_INET6, rdata.data(), text, sizeof text) == nullptr)
      return std::nullopt;
    return std::string(text);
  }
  return std::nullopt;
}

const char* SecurityName(Security s) {
  switch (s) {
    case Security::kSecure:
      return "secure";
    case Security::kBogus:
      return "bogus";
    case Security::kInsecure:
      break;
  }
  return "insecure";
}

std::optional<std::string> ParseTxt(std::string_view rdata) {
  std::string out;
  size_t i = 0;
  while (i < rdata.size()) {
    size_t len = static_cast<unsigned char>(rdata[i]);
    if (i + 1 + len > rdata.size()) return std::nullopt;
    out.append(rdata.substr(i + 1, len));
    i += 1 + len;
  }
  return out;
}

}  // namespace tern::dns
