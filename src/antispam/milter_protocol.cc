// The milter protocol codec: see milter_protocol.h for the sources.
#include "antispam/milter_protocol.h"

#include <cstdio>

namespace tern::antispam {
namespace {

void Put32(std::string& out, uint32_t v) {
  out += static_cast<char>((v >> 24) & 0xff);
  out += static_cast<char>((v >> 16) & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
  out += static_cast<char>(v & 0xff);
}

uint32_t Get32(std::string_view s, size_t at) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

// A string as the protocol carries it: its octets, then a NUL. A NUL inside
// would end the string early on the filter's side and shift every later
// field, so it is left out.
void PutString(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c != '\0') out += c;
  }
  out += '\0';
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

// "'y'" for a printable command byte, "0x07" otherwise.
std::string CommandName(char command) {
  unsigned char c = static_cast<unsigned char>(command);
  if (c > 0x20 && c < 0x7f) return std::string("'") + command + "'";
  return Hex(c);
}

std::string EncodeArgs(char command, std::string_view path,
                       const std::vector<std::string>& args) {
  std::string data;
  PutString(data, path);
  for (const std::string& a : args) PutString(data, a);
  return EncodeMilterPacket(command, data);
}

// RFC 5322 2.2: a field name is printable ASCII but the colon. A filter
// asking for another would have Tern write a broken header.
bool ValidHeaderName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == ':') return false;
  }
  return true;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 3463 2: class "." 1*3digit "." 1*3digit, as the start of `text`,
// followed by a space or the end. Returns its length, or 0.
size_t EnhancedCodeLength(std::string_view text) {
  size_t i = 0;
  if (i >= text.size() || !IsDigit(text[i])) return 0;
  ++i;
  for (int part = 0; part < 2; ++part) {
    if (i >= text.size() || text[i] != '.') return 0;
    ++i;
    size_t digits = 0;
    while (i < text.size() && IsDigit(text[i]) && digits < 4) ++i, ++digits;
    if (digits == 0 || digits > 3) return 0;
  }
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

// SMFIR_REPLYCODE: one NUL-terminated string holding an SMTP reply, as
// libmilter smfi_setreply ("550 5.7.1 text") or smfi_setmlreply (lines
// "550-5.7.1 a" CRLF ... "550 5.7.1 z") build it. sendmail milter.c
// checks only that it starts with a 4xx or 5xx code; Tern sends this text
// on to the SMTP client, so every line must carry the same code and no
// control octet may slip in (a bare CR or LF would let the filter write
// extra reply lines).
Result<MilterReply> ParseReplyCode(std::string_view data) {
  auto strings = SplitMilterStrings(data);
  if (!strings) return Err("milter reply 'y': " + strings.error().message);
  if (strings->size() != 1) {
    return Err("milter reply 'y': " + std::to_string(strings->size()) +
               " strings, expected one");
  }
  MilterReply r;
  r.kind = MilterReply::Kind::kReplyCode;
  r.text = (*strings)[0];
  std::string_view rest = r.text;
  for (size_t n = 1;; ++n) {
    size_t crlf = rest.find("\r\n");
    std::string_view line = rest.substr(0, crlf);
    std::string where = "milter reply 'y' line " + std::to_string(n);
    if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) ||
        !IsDigit(line[2])) {
      return Err(where + ": no 3-digit reply code");
    }
    if (line[0] != '4' && line[0] != '5') {
      return Err(where + ": code " + std::string(line.substr(0, 3)) +
                 " is neither 4xx nor 5xx");
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (n == 1) {
      r.code = code;
    } else if (code != r.code) {
      return Err(where + ": code " + std::to_string(code) + " after " +
                 std::to_string(r.code));
    }
    if (line.size() > 3 && line[3] != ' ' && line[3] != '-') {
      return Err(where + ": code not followed by a space or '-'");
    }
    for (char c : line) {
      unsigned char u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        return Err(where + ": control octet " + Hex(u));
      }
    }
    std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
    if (n == 1) {
      size_t e = EnhancedCodeLength(text);
      if (e > 0 && text[0] == line[0]) r.enhanced = std::string(text.substr(0, e));
    }
    r.lines.emplace_back(text);
    if (crlf == std::string_view::npos) break;
    rest.remove_prefix(crlf + 2);
  }
  return r;
}

Result<MilterReply> ParseHeaderChange(MilterReply::Kind kind, char command,
                                      std::string_view data, bool indexed) {
  std::string what = "milter reply " + CommandName(command);
  MilterReply r;
  r.kind = kind;
  if (indexed) {
    if (data.size() < 4) {
      return Err(what + ": " + std::to_string(data.size()) +
                 " octets, too short for the header index");
    }
    r.index = Get32(data, 0);
    data.remove_prefix(4);
  }
  auto strings = SplitMilterStrings(data);
  if (!strings) return Err(what + ": " + strings.error().message);
  if (strings->size() != 2) {
    return Err(what + ": " + std::to_string(strings->size()) +
               " strings, expected a name and a value");
  }
  r.name = std::move((*strings)[0]);
  r.value = std::move((*strings)[1]);
  if (!ValidHeaderName(r.name)) return Err(what + ": bad header name");
  return r;
}

// '+', '-': one address. '2', 'e': an address and, optionally, the ESMTP
// parameters as one more string (libmilter smfi_addrcpt_par, smfi_chgfrom).
Result<MilterReply> ParseAddress(MilterReply::Kind kind, char command,
                                 std::string_view data, bool with_args) {
  std::string what = "milter reply " + CommandName(command);
  auto strings = SplitMilterStrings(data);
  if (!strings) return Err(what + ": " + strings.error().message);
  size_t max = with_args ? 2 : 1;
  if (strings->size() > max) {
    return Err(what + ": " + std::to_string(strings->size()) +
               " strings, expected at most " + std::to_string(max));
  }
  MilterReply r;
  r.kind = kind;
  r.address = std::move((*strings)[0]);
  if (r.address.empty()) return Err(what + ": empty address");
  if (strings->size() == 2) r.args = std::move((*strings)[1]);
  return r;
}

// One { uint32 stage, NUL-terminated names } entry at `pos`, as in the
// negotiation reply and SMFIR_SETSYMLIST. Moves `pos` past it.
Result<MilterMacroList> ParseMacroList(std::string_view data, size_t& pos) {
  if (data.size() - pos < 4) {
    return Err("macro list at offset " + std::to_string(pos) +
               ": truncated stage number");
  }
  MilterMacroList list;
  list.stage = Get32(data, pos);
  pos += 4;
  size_t nul = data.find('\0', pos);
  if (nul == std::string_view::npos) {
    return Err("macro list for stage " + std::to_string(list.stage) +
               " has no terminating NUL");
  }
  std::string_view names = data.substr(pos, nul - pos);
  pos = nul + 1;
  // Names are separated by spaces (libmilter smfi_setsymlist takes them
  // that way); commas and tabs are accepted too.
  size_t i = 0;
  while (i < names.size()) {
    size_t end = names.find_first_of(" ,\t", i);
    if (end == std::string_view::npos) end = names.size();
    if (end > i) list.names.emplace_back(names.substr(i, end - i));
    i = end + 1;
  }
  return list;
}

Result<MilterReply> NoData(MilterReply::Kind kind, char command,
                           std::string_view data) {
  if (!data.empty()) {
    return Err("milter reply " + CommandName(command) + ": " +
               std::to_string(data.size()) + " octets of data, expected none");
  }
  MilterReply r;
  r.kind = kind;
  return r;
}

}  // namespace

bool MilterReader::Feed(std::string_view bytes) {
  if (failed()) return false;
  buf_.append(bytes);
  size_t pos = 0;
  while (buf_.size() - pos >= 4) {
    uint32_t length = Get32(buf_, pos);
    if (length == 0) {
      error_ = "milter packet of length 0 (no command)";
      break;
    }
    if (length > max_length_) {
      error_ = "milter packet of length " + std::to_string(length) +
               " above the limit of " + std::to_string(max_length_);
      break;
    }
    if (buf_.size() - pos - 4 < length) break;
    MilterPacket p;
    p.command = buf_[pos + 4];
    p.data = buf_.substr(pos + 5, length - 1);
    done_.push_back(std::move(p));
    pos += 4 + length;
  }
  if (failed()) {
    buf_.clear();
    return false;
  }
  buf_.erase(0, pos);
  return true;
}

MilterPacket MilterReader::Pop() {
  MilterPacket p = std::move(done_.front());
  done_.pop_front();
  return p;
}

std::string EncodeMilterPacket(char command, std::string_view data) {
  std::string out;
  out.reserve(5 + data.size());
  Put32(out, static_cast<uint32_t>(data.size() + 1));
  out += command;
  out.append(data);
  return out;
}

std::string EncodeOptNeg(uint32_t version, uint32_t actions, uint32_t protocol) {
  std::string data;
  Put32(data, version);
  Put32(data, actions);
  Put32(data, protocol);
  return EncodeMilterPacket(milter::kCmdOptNeg, data);
}

std::string EncodeMacros(char for_command, const std::vector<MilterMacro>& macros) {
  std::string data(1, for_command);
  for (const MilterMacro& m : macros) {
    PutString(data, m.name);
    PutString(data, m.value);
  }
  return EncodeMilterPacket(milter::kCmdMacro, data);
}

std::string EncodeConnect(std::string_view hostname, char family, uint16_t port,
                          std::string_view address) {
  std::string data;
  PutString(data, hostname);
  data += family;
  // libmilter engine.c st_connectinfo reads no more after SMFIA_UNKNOWN.
  if (family != milter::kFamilyUnknown) {
    data += static_cast<char>(port >> 8);
    data += static_cast<char>(port & 0xff);
    PutString(data, address);
  }
  return EncodeMilterPacket(milter::kCmdConnect, data);
}

std::string EncodeHelo(std::string_view helo) {
  std::string data;
  PutString(data, helo);
  return EncodeMilterPacket(milter::kCmdHelo, data);
}

std::string EncodeMail(std::string_view path, const std::vector<std::string>& args) {
  return EncodeArgs(milter::kCmdMail, path, args);
}

std::string EncodeRcpt(std::string_view path, const std::vector<std::string>& args) {
  return EncodeArgs(milter::kCmdRcpt, path, args);
}

std::string EncodeData() { return EncodeMilterPacket(milter::kCmdData, {}); }

std::string EncodeHeader(std::string_view name, std::string_view value) {
  std::string data;
  PutString(data, name);
  PutString(data, value);
  return EncodeMilterPacket(milter::kCmdHeader, data);
}

std::string EncodeEndOfHeaders() {
  return EncodeMilterPacket(milter::kCmdEndOfHeaders, {});
}

std::string EncodeBody(std::string_view body) {
  std::string out;
  while (!body.empty()) {
    std::string_view chunk = body.substr(0, milter::kChunkSize);
    out += EncodeMilterPacket(milter::kCmdBody, chunk);
    body.remove_prefix(chunk.size());
  }
  return out;
}

std::string EncodeEndOfBody() { return EncodeMilterPacket(milter::kCmdEndOfBody, {}); }
std::string EncodeAbort() { return EncodeMilterPacket(milter::kCmdAbort, {}); }
std::string EncodeQuit() { return EncodeMilterPacket(milter::kCmdQuit, {}); }
std::string EncodeQuitNewConnection() {
  return EncodeMilterPacket(milter::kCmdQuitNewConn, {});
}

std::string EncodeUnknown(std::string_view command_line) {
  std::string data;
  PutString(data, command_line);
  return EncodeMilterPacket(milter::kCmdUnknown, data);
}

Result<std::vector<std::string>> SplitMilterStrings(std::string_view data) {
  if (data.empty() || data.back() != '\0') {
    return Err(data.empty() ? "no data where a string was expected"
                            : "string not terminated by NUL");
  }
  std::vector<std::string> out;
  size_t start = 0;
  while (start < data.size()) {
    size_t nul = data.find('\0', start);
    out.emplace_back(data.substr(start, nul - start));
    start = nul + 1;
  }
  return out;
}

Result<MilterNegotiation> ParseMilterNegotiation(std::string_view data) {
  if (data.size() < 12) {
    return Err("milter negotiation reply of " + std::to_string(data.size()) +
               " octets, needs 12 (version, actions, protocol)");
  }
  MilterNegotiation n;
  n.version = Get32(data, 0);
  n.actions = Get32(data, 4);
  n.protocol = Get32(data, 8);
  if (n.version < 2 || n.version > milter::kVersion) {
    return Err("milter negotiation: filter speaks version " +
               std::to_string(n.version) + ", not 2 to " +
               std::to_string(milter::kVersion));
  }
  size_t pos = 12;
  while (pos < data.size()) {
    auto list = ParseMacroList(data, pos);
    if (!list) return Err("milter negotiation: " + list.error().message);
    n.macro_lists.push_back(std::move(*list));
  }
  return n;
}

Result<void> CheckMilterNegotiation(const MilterNegotiation& reply,
                                    uint32_t offered_actions,
                                    uint32_t offered_protocol) {
  if (uint32_t extra = reply.actions & ~offered_actions) {
    return Err("milter negotiation: filter wants actions " + Hex(extra) +
               " that were not offered");
  }
  if (uint32_t extra = reply.protocol & ~offered_protocol) {
    return Err("milter negotiation: filter wants protocol steps " + Hex(extra) +
               " that were not offered");
  }
  return {};
}

Result<MilterReply> ParseMilterReply(char command, std::string_view data) {
  using Kind = MilterReply::Kind;
  switch (command) {
    case milter::kCmdOptNeg: {
      auto n = ParseMilterNegotiation(data);
      if (!n) return tl::unexpected(n.error());
      MilterReply r;
      r.kind = Kind::kNegotiate;
      r.negotiation = std::move(*n);
      return r;
    }
    case milter::kReplyAccept: return NoData(Kind::kAccept, command, data);
    case milter::kReplyContinue: return NoData(Kind::kContinue, command, data);
    case milter::kReplyDiscard: return NoData(Kind::kDiscard, command, data);
    case milter::kReplyReject: return NoData(Kind::kReject, command, data);
    case milter::kReplyTempFail: return NoData(Kind::kTempFail, command, data);
    case milter::kReplySkip: return NoData(Kind::kSkip, command, data);
    case milter::kReplyProgress: return NoData(Kind::kProgress, command, data);
    case milter::kReplyConnFail: return NoData(Kind::kConnFail, command, data);
    case milter::kReplyShutdown: return NoData(Kind::kShutdown, command, data);
    case milter::kReplyReplyCode: return ParseReplyCode(data);
    case milter::kReplySetSymList: {
      size_t pos = 0;
      auto list = ParseMacroList(data, pos);
      if (!list) return Err("milter reply 'l': " + list.error().message);
      if (pos != data.size()) {
        return Err("milter reply 'l': " + std::to_string(data.size() - pos) +
                   " octets after the macro list");
      }
      MilterReply r;
      r.kind = Kind::kSetSymList;
      r.macro_list = std::move(*list);
      return r;
    }
    case milter::kReplyAddHeader:
      return ParseHeaderChange(Kind::kAddHeader, command, data, false);
    case milter::kReplyInsertHeader:
      return ParseHeaderChange(Kind::kInsertHeader, command, data, true);
    case milter::kReplyChangeHeader:
      return ParseHeaderChange(Kind::kChangeHeader, command, data, true);
    case milter::kReplyAddRcpt:
      return ParseAddress(Kind::kAddRcpt, command, data, false);
    case milter::kReplyAddRcptPar:
      return ParseAddress(Kind::kAddRcptPar, command, data, true);
    case milter::kReplyDelRcpt:
      return ParseAddress(Kind::kDelRcpt, command, data, false);
    case milter::kReplyChangeFrom:
      return ParseAddress(Kind::kChangeFrom, command, data, true);
    case milter::kReplyReplaceBody: {
      // Raw octets, no NUL (libmilter smfi_replacebody).
      MilterReply r;
      r.kind = Kind::kReplaceBody;
      r.body = std::string(data);
      return r;
    }
    case milter::kReplyQuarantine: {
      auto strings = SplitMilterStrings(data);
      if (!strings) return Err("milter reply 'q': " + strings.error().message);
      if (strings->size() != 1) {
        return Err("milter reply 'q': " + std::to_string(strings->size()) +
                   " strings, expected one reason");
      }
      MilterReply r;
      r.kind = Kind::kQuarantine;
      r.reason = std::move((*strings)[0]);
      return r;
    }
    default:
      return Err("unknown milter reply " + CommandName(command));
  }
}

std::string MilterValueToCrlf(std::string_view value) {
  std::string out;
  out.reserve(value.size() + value.size() / 32);
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r')) out += '\r';
    out += value[i];
  }
  return out;
}

}  // namespace tern::antispam
