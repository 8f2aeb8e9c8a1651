// The Sendmail milter protocol, version 6, from the MTA's side and without
// I/O: packet framing, the commands Tern sends to a mail filter (rspamd,
// spamass-milter, clamav-milter) and the filter's replies. The protocol has
// no RFC; what is here was read from sendmail's libmilter (mfdef.h, mfapi.h,
// engine.c, comm.c, smfi.c), sendmail's MTA side (milter.c) and Postfix's
// milter8.c, and checked against rspamd 3.4 (see the notes by the functions).
//
// Every packet, in both directions, is
//   uint32 length (big-endian; counts the command byte and the data)
//   char   command
//   data   (length - 1 octets)
// Integers inside the data are big-endian uint32 (uint16 for the connect
// port); strings are NUL-terminated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace tern::antispam {

namespace milter {

// The version Tern speaks (libmilter SMFI_PROT_VERSION). rspamd closes the
// connection when offered less.
inline constexpr uint32_t kVersion = 6;

// Body chunks are at most this long (libmilter MILTER_CHUNK_SIZE; rspamd
// refuses longer ones): EncodeBody splits there.
inline constexpr size_t kChunkSize = 65535;

// Commands, MTA to filter (libmilter mfdef.h SMFIC_*).
inline constexpr char kCmdAbort = 'A';           // SMFIC_ABORT
inline constexpr char kCmdBody = 'B';            // SMFIC_BODY
inline constexpr char kCmdConnect = 'C';         // SMFIC_CONNECT
inline constexpr char kCmdMacro = 'D';           // SMFIC_MACRO
inline constexpr char kCmdEndOfBody = 'E';       // SMFIC_BODYEOB
inline constexpr char kCmdHelo = 'H';            // SMFIC_HELO
inline constexpr char kCmdQuitNewConn = 'K';     // SMFIC_QUIT_NC (v6)
inline constexpr char kCmdHeader = 'L';          // SMFIC_HEADER
inline constexpr char kCmdMail = 'M';            // SMFIC_MAIL
inline constexpr char kCmdEndOfHeaders = 'N';    // SMFIC_EOH
inline constexpr char kCmdOptNeg = 'O';          // SMFIC_OPTNEG
inline constexpr char kCmdQuit = 'Q';            // SMFIC_QUIT
inline constexpr char kCmdRcpt = 'R';            // SMFIC_RCPT
inline constexpr char kCmdData = 'T';            // SMFIC_DATA
inline constexpr char kCmdUnknown = 'U';         // SMFIC_UNKNOWN

// Replies, filter to MTA (libmilter mfdef.h SMFIR_*). The filter answers
// option negotiation with an 'O' packet of its own (kCmdOptNeg).
inline constexpr char kReplyAddRcpt = '+';       // SMFIR_ADDRCPT
inline constexpr char kReplyDelRcpt = '-';       // SMFIR_DELRCPT
inline constexpr char kReplyAddRcptPar = '2';    // SMFIR_ADDRCPT_PAR
inline constexpr char kReplyShutdown = '4';      // SMFIR_SHUTDOWN
inline constexpr char kReplyAccept = 'a';        // SMFIR_ACCEPT
inline constexpr char kReplyReplaceBody = 'b';   // SMFIR_REPLBODY
inline constexpr char kReplyContinue = 'c';      // SMFIR_CONTINUE
inline constexpr char kReplyDiscard = 'd';       // SMFIR_DISCARD
inline constexpr char kReplyChangeFrom = 'e';    // SMFIR_CHGFROM
inline constexpr char kReplyConnFail = 'f';      // SMFIR_CONN_FAIL
inline constexpr char kReplyAddHeader = 'h';     // SMFIR_ADDHEADER
inline constexpr char kReplyInsertHeader = 'i';  // SMFIR_INSHEADER
inline constexpr char kReplySetSymList = 'l';    // SMFIR_SETSYMLIST
inline constexpr char kReplyChangeHeader = 'm';  // SMFIR_CHGHEADER
inline constexpr char kReplyProgress = 'p';      // SMFIR_PROGRESS
inline constexpr char kReplyQuarantine = 'q';    // SMFIR_QUARANTINE
inline constexpr char kReplyReject = 'r';        // SMFIR_REJECT
inline constexpr char kReplySkip = 's';          // SMFIR_SKIP
inline constexpr char kReplyTempFail = 't';      // SMFIR_TEMPFAIL
inline constexpr char kReplyReplyCode = 'y';     // SMFIR_REPLYCODE

// Address families of the connect command (libmilter mfdef.h SMFIA_*).
inline constexpr char kFamilyUnknown = 'U';  // SMFIA_UNKNOWN: no port, no address
inline constexpr char kFamilyUnix = 'L';     // SMFIA_UNIX: port 0, socket path
inline constexpr char kFamilyInet = '4';     // SMFIA_INET
inline constexpr char kFamilyInet6 = '6';    // SMFIA_INET6

// Actions: what the filter may do at end of body (libmilter mfapi.h SMFIF_*).
// The MTA offers a mask; the filter answers with the subset it will use.
inline constexpr uint32_t kActAddHeaders = 0x001;    // SMFIF_ADDHDRS
inline constexpr uint32_t kActChangeBody = 0x002;    // SMFIF_CHGBODY
inline constexpr uint32_t kActAddRcpt = 0x004;       // SMFIF_ADDRCPT
inline constexpr uint32_t kActDelRcpt = 0x008;       // SMFIF_DELRCPT
inline constexpr uint32_t kActChangeHeaders = 0x010; // SMFIF_CHGHDRS
inline constexpr uint32_t kActQuarantine = 0x020;    // SMFIF_QUARANTINE
inline constexpr uint32_t kActChangeFrom = 0x040;    // SMFIF_CHGFROM
inline constexpr uint32_t kActAddRcptPar = 0x080;    // SMFIF_ADDRCPT_PAR
inline constexpr uint32_t kActSetSymList = 0x100;    // SMFIF_SETSYMLIST
inline constexpr uint32_t kActAll = 0x1ff;           // SMFI_CURR_ACTS

// Protocol steps (libmilter mfdef.h SMFIP_*). The MTA offers the bits it
// honours; the filter sets those it wants. NO* bits: the MTA must not send
// that event. NR_* bits: the filter will not reply to that event, so the
// MTA must not wait for one (rspamd sets them all and replies only at end
// of body).
inline constexpr uint32_t kProtoNoConnect = 0x00000001;  // SMFIP_NOCONNECT
inline constexpr uint32_t kProtoNoHelo = 0x00000002;     // SMFIP_NOHELO
inline constexpr uint32_t kProtoNoMail = 0x00000004;     // SMFIP_NOMAIL
inline constexpr uint32_t kProtoNoRcpt = 0x00000008;     // SMFIP_NORCPT
inline constexpr uint32_t kProtoNoBody = 0x00000010;     // SMFIP_NOBODY
inline constexpr uint32_t kProtoNoHeaders = 0x00000020;  // SMFIP_NOHDRS
inline constexpr uint32_t kProtoNoEoh = 0x00000040;      // SMFIP_NOEOH
inline constexpr uint32_t kProtoNrHeader = 0x00000080;   // SMFIP_NR_HDR (= NOHREPL)
inline constexpr uint32_t kProtoNoUnknown = 0x00000100;  // SMFIP_NOUNKNOWN
inline constexpr uint32_t kProtoNoData = 0x00000200;     // SMFIP_NODATA
inline constexpr uint32_t kProtoSkip = 0x00000400;       // SMFIP_SKIP: MTA takes 's'
inline constexpr uint32_t kProtoRcptRej = 0x00000800;    // SMFIP_RCPT_REJ: send refused RCPTs
inline constexpr uint32_t kProtoNrConnect = 0x00001000;  // SMFIP_NR_CONN
inline constexpr uint32_t kProtoNrHelo = 0x00002000;     // SMFIP_NR_HELO
inline constexpr uint32_t kProtoNrMail = 0x00004000;     // SMFIP_NR_MAIL
inline constexpr uint32_t kProtoNrRcpt = 0x00008000;     // SMFIP_NR_RCPT
inline constexpr uint32_t kProtoNrData = 0x00010000;     // SMFIP_NR_DATA
inline constexpr uint32_t kProtoNrUnknown = 0x00020000;  // SMFIP_NR_UNKN
inline constexpr uint32_t kProtoNrEoh = 0x00040000;      // SMFIP_NR_EOH
inline constexpr uint32_t kProtoNrBody = 0x00080000;     // SMFIP_NR_BODY
// Header values are sent as they follow the colon, leading space included
// (without it the MTA drops one leading space, as sendmail does).
inline constexpr uint32_t kProtoHeaderLeadSpace = 0x00100000;  // SMFIP_HDR_LEADSPC
inline constexpr uint32_t kProtoAll = 0x001fffff;        // SMFI_CURR_PROT
// Larger data limits (libmilter mfapi.h, _FFR_MDS_NEGOTIATE): 256 KiB - 1
// and 1 MiB - 1 instead of 65535.
inline constexpr uint32_t kProtoMds256K = 0x10000000;    // SMFIP_MDS_256K
inline constexpr uint32_t kProtoMds1M = 0x20000000;      // SMFIP_MDS_1M
// Every "no reply" bit.
inline constexpr uint32_t kProtoAllNoReply =
    kProtoNrHeader | kProtoNrConnect | kProtoNrHelo | kProtoNrMail | kProtoNrRcpt |
    kProtoNrData | kProtoNrUnknown | kProtoNrEoh | kProtoNrBody;

// Macro stages (libmilter mfapi.h SMFIM_*): where a filter asks, in its
// negotiation reply, for a list of macros to be sent.
inline constexpr uint32_t kStageConnect = 0;  // SMFIM_CONNECT
inline constexpr uint32_t kStageHelo = 1;     // SMFIM_HELO
inline constexpr uint32_t kStageEnvFrom = 2;  // SMFIM_ENVFROM
inline constexpr uint32_t kStageEnvRcpt = 3;  // SMFIM_ENVRCPT
inline constexpr uint32_t kStageData = 4;     // SMFIM_DATA
inline constexpr uint32_t kStageEom = 5;      // SMFIM_EOM
inline constexpr uint32_t kStageEoh = 6;      // SMFIM_EOH

// Names of the macros Tern sends (sendmail's names, as filters look them
// up with smfi_getsymval; multi-letter names in braces). Which are sent
// with which command is the caller's choice.
namespace macro {
inline constexpr std::string_view kQueueId = "{i}";
inline constexpr std::string_view kHostName = "j";  // our host name
inline constexpr std::string_view kDaemonName = "{daemon_name}";
inline constexpr std::string_view kDaemonAddr = "{daemon_addr}";
inline constexpr std::string_view kVersion = "v";
inline constexpr std::string_view kClientAddr = "{client_addr}";
inline constexpr std::string_view kClientPort = "{client_port}";
inline constexpr std::string_view kClientName = "{client_name}";
inline constexpr std::string_view kClientPtr = "{client_ptr}";
inline constexpr std::string_view kHeloName = "s";
inline constexpr std::string_view kAuthType = "{auth_type}";
inline constexpr std::string_view kAuthAuthen = "{auth_authen}";
inline constexpr std::string_view kTlsVersion = "{tls_version}";
inline constexpr std::string_view kCipher = "{cipher}";
inline constexpr std::string_view kCipherBits = "{cipher_bits}";
inline constexpr std::string_view kCertSubject = "{cert_subject}";
inline constexpr std::string_view kCertIssuer = "{cert_issuer}";
inline constexpr std::string_view kMailAddr = "{mail_addr}";
inline constexpr std::string_view kMailHost = "{mail_host}";
inline constexpr std::string_view kMailMailer = "{mail_mailer}";
inline constexpr std::string_view kRcptAddr = "{rcpt_addr}";
inline constexpr std::string_view kRcptHost = "{rcpt_host}";
inline constexpr std::string_view kRcptMailer = "{rcpt_mailer}";
}  // namespace macro

}  // namespace milter

// One packet as framed on the wire, either direction.
struct MilterPacket {
  char command = 0;
  std::string data;
  bool operator==(const MilterPacket&) const = default;
};

// Incremental packet decoder: Feed() it bytes as they arrive, in chunks of
// any size, and Pop() the complete packets. Bounded: a length field of 0
// (no command byte) or above max_length fails the stream, before anything
// of that size is buffered.
class MilterReader {
 public:
  // libmilter's largest negotiable data size is 1 MiB - 1 (SMFIP_MDS_1M)
  // and Postfix sends 65535-octet chunks as 65536-long data; the slack
  // leaves room for the command byte and such off-by-ones.
  static constexpr uint32_t kDefaultMaxLength = (1u << 20) + 1024;

  explicit MilterReader(uint32_t max_length = kDefaultMaxLength)
      : max_length_(max_length) {}

  // Consumes bytes. Returns false once the stream is broken; error() says
  // why and every later Feed fails.
  bool Feed(std::string_view bytes);
  bool HasPacket() const { return !done_.empty(); }
  MilterPacket Pop();
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // True while a packet is begun but not complete (a reply cut by EOF).
  bool partial() const { return !buf_.empty(); }

 private:
  uint32_t max_length_;
  std::string buf_;
  std::deque<MilterPacket> done_;
  std::string error_;
};

// Frames one packet: length, command, data.
std::string EncodeMilterPacket(char command, std::string_view data);

// --- MTA to filter. Each returns the framed packet(s). Strings cannot hold
// a NUL on the wire (it ends them): encoders drop NULs found in them.

// 'O': what Tern offers; the filter answers with its own 'O' packet.
std::string EncodeOptNeg(uint32_t version, uint32_t actions, uint32_t protocol);

struct MilterMacro {
  std::string name;  // e.g. milter::macro::kQueueId
  std::string value;
};
// 'D': macros for the command `for_command` (e.g. kCmdMail), sent just
// before that command: its code, then name and value pairs.
std::string EncodeMacros(char for_command, const std::vector<MilterMacro>& macros);

// 'C': the client's host name ("[192.0.2.1]" when it has none, as sendmail
// and Postfix send), family, port and address. kFamilyUnknown sends
// neither port nor address.
std::string EncodeConnect(std::string_view hostname, char family, uint16_t port,
                          std::string_view address);
// 'H': the HELO/EHLO argument.
std::string EncodeHelo(std::string_view helo);
// 'M' and 'R': the path as given ("<a@b>", "<>") then each ESMTP
// parameter ("SIZE=123") as its own string.
std::string EncodeMail(std::string_view path, const std::vector<std::string>& args);
std::string EncodeRcpt(std::string_view path, const std::vector<std::string>& args);
std::string EncodeData();  // 'T'
// 'L': a header field's name and its value as received (unfolded or not,
// see kProtoHeaderLeadSpace).
std::string EncodeHeader(std::string_view name, std::string_view value);
std::string EncodeEndOfHeaders();  // 'N'
// 'B' packets: the body (CRLF line ends, no dot-stuffing) cut into chunks
// of at most kChunkSize; nothing for an empty body.
std::string EncodeBody(std::string_view body);
std::string EncodeEndOfBody();          // 'E'
std::string EncodeAbort();              // 'A': end of this message only
std::string EncodeQuit();               // 'Q'
std::string EncodeQuitNewConnection();  // 'K': v6, the filter stays for another connection
// 'U': an SMTP command the MTA did not know, as the client sent it.
std::string EncodeUnknown(std::string_view command_line);

// --- Filter to MTA.

struct MilterMacroList {
  uint32_t stage = 0;              // milter::kStage*
  std::vector<std::string> names;  // as sent, e.g. "{auth_authen}"
};

// The filter's answer to 'O'.
struct MilterNegotiation {
  uint32_t version = 0;
  uint32_t actions = 0;
  uint32_t protocol = 0;
  // v6: macros the filter wants at each stage instead of the MTA's default.
  std::vector<MilterMacroList> macro_lists;
};

// The data of the filter's 'O' packet: three uint32 (version, actions,
// protocol), then (v6, libmilter engine.c st_optionneg / sendmail milter.c
// milter_getsymlist) any number of { uint32 stage, NUL-terminated list of
// macro names separated by spaces }. Versions outside 2..6 are refused, as
// sendmail does. Stages above kStageEoh are kept (Postfix has more): the
// caller ignores what it does not know.
Result<MilterNegotiation> ParseMilterNegotiation(std::string_view data);

// Checks a negotiation reply against Tern's offer: the filter may not ask
// for actions or protocol bits that were not offered (sendmail milter.c
// milter_negotiate refuses the filter then).
Result<void> CheckMilterNegotiation(const MilterNegotiation& reply,
                                    uint32_t offered_actions,
                                    uint32_t offered_protocol);

struct MilterReply {
  enum class Kind {
    kNegotiate,     // 'O': negotiation
    kAccept,        // 'a': accept the message (or connection), stop filtering
    kContinue,      // 'c'
    kDiscard,       // 'd': accept and drop silently
    kReject,        // 'r': 5xx
    kTempFail,      // 't': 4xx
    kReplyCode,     // 'y': reject or tempfail with this SMTP reply: code, enhanced, lines
    kSkip,          // 's': no more body chunks wanted (SMFIP_SKIP)
    kProgress,      // 'p': still working, restart the timeout
    kConnFail,      // 'f': drop the SMTP connection
    kShutdown,      // '4': 421 and close
    kSetSymList,    // 'l': macro_list
    kAddHeader,     // 'h': name, value
    kInsertHeader,  // 'i': index, name, value
    kChangeHeader,  // 'm': index, name, value (empty value deletes)
    kAddRcpt,       // '+': address
    kAddRcptPar,    // '2': address, args
    kDelRcpt,       // '-': address
    kChangeFrom,    // 'e': address, args
    kReplaceBody,   // 'b': body (one chunk of the new body)
    kQuarantine,    // 'q': reason
  };
  Kind kind = Kind::kContinue;

  MilterNegotiation negotiation;  // kNegotiate
  MilterMacroList macro_list;     // kSetSymList

  // kReplyCode. `text` is the reply as the filter sent it (lines joined by
  // CRLF, no final CRLF), e.g. "554 5.7.1 Gtube pattern"; `code` its
  // 3-digit code; `enhanced` the RFC 3463 code of the first line if there
  // is one; `lines` the text after "NNN " or "NNN-" on each line.
  int code = 0;
  std::string enhanced;
  std::vector<std::string> lines;
  std::string text;

  uint32_t index = 0;  // kInsertHeader, kChangeHeader
  std::string name;    // header modifications
  std::string value;   // as sent: folded with bare LF by rspamd, see MilterValueToCrlf
  std::string address; // recipient and sender modifications
  std::string args;    // kAddRcptPar, kChangeFrom: ESMTP parameters, may be empty
  std::string body;    // kReplaceBody
  std::string reason;  // kQuarantine

  // The replies that end the filter's handling of the current command.
  bool final() const {
    return kind == Kind::kAccept || kind == Kind::kContinue ||
           kind == Kind::kDiscard || kind == Kind::kReject ||
           kind == Kind::kTempFail || kind == Kind::kReplyCode ||
           kind == Kind::kSkip || kind == Kind::kConnFail ||
           kind == Kind::kShutdown;
  }
  // The message modifications, valid only in answer to end of body.
  bool modification() const {
    return kind == Kind::kAddHeader || kind == Kind::kInsertHeader ||
           kind == Kind::kChangeHeader || kind == Kind::kAddRcpt ||
           kind == Kind::kAddRcptPar || kind == Kind::kDelRcpt ||
           kind == Kind::kChangeFrom || kind == Kind::kReplaceBody ||
           kind == Kind::kQuarantine;
  }
};

// Parses one packet from the filter. Malformed data (a missing NUL, a
// truncated integer, extra data, a bad reply code, an unknown command) is
// an error saying what was wrong; no input makes it read out of bounds.
Result<MilterReply> ParseMilterReply(char command, std::string_view data);

// The NUL-terminated strings of `data`, which must end with a NUL.
Result<std::vector<std::string>> SplitMilterStrings(std::string_view data);

// A header value with each bare LF (rspamd folds its headers that way)
// turned into CRLF; CRLF stays as it is.
std::string MilterValueToCrlf(std::string_view value);

}  // namespace tern::antispam
