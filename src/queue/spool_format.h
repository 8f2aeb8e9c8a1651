// The on-disk formats of the queue: message files (envelope + message bytes,
// validated so crash-torn files are detected) and per-message state files.
//
// Layout under data_dir/queue:
//   msg/<id>        one file per message (written once, never modified
//                   after commit); removed when every recipient is done.
//   state/<id>      optional delivery state, replaced atomically (tmp +
//                   rename); absent means "every envelope recipient pending".
//   incoming/<id>   complete message files dropped by `tern sendmail`
//                   (hidden ".*" names while being written); the server
//                   moves them into msg/.
//
// Message file (all integers little-endian):
//   0  8 bytes  magic "TernMsg1"
//   8  u32      format version (2; version 1 files are still read)
//   12 u32      envelope length E
//   16 u64      message length B
//   24 u32      CRC-32C of the message bytes
//   28 u32      CRC-32C of bytes 0..27 followed by the envelope bytes
//   32 B bytes  message bytes, exactly as received (CRLF lines)
//   32+B        E bytes envelope (below)
// Version 1 had the envelope before the message (32: envelope, 32+E:
// message). Version 2 writes it last because it may learn fields from the
// whole message (`prepend`: header fields added after the last byte, such
// as DKIM-Signature and Authentication-Results).
// A file is valid only when the magic, version and both CRCs match and its
// size is exactly 32+E+B. A writer whose message outgrew memory writes a
// zeroed header first and the real one last, so until the commit sync a
// crash leaves a file that fails validation: it was never acknowledged and
// recovery discards it.
//
// Envelope encoding: a sequence of fields, strings as u32 length + bytes:
//   str id, str sender, u32 n, n x (str address, str notify, str orcpt),
//   str ret, str envid, str body, u8 smtputf8, str client_ip, str helo,
//   str auth_user, i64 received_at, (version 2:) str prepend,
//   [str quarantine [u8 flags]] (present only when not empty / not 0;
//   flags: 1 = REQUIRETLS, RFC 8689)
//
// State file: 8 bytes magic "TernSta2", u32 payload length P, u32 CRC-32C of
// the payload, then the payload:
//   u32 attempts, i64 next_attempt, str last_error, u8 held, u8 delay_warned,
//   u32 a, a x (i64 time, str host, str reply)          -- attempt log
//   u32 n, n x (u8 state (0 pending, 1 delivered, 2 failed), str address,
//        str notify, str orcpt, str error, str status, str remote_mta,
//        u8 flags (1 = DSN sent or not wanted, 2 = DSN duty passed to the
//        next hop, RFC 3461 4.1, 4 = forwarded by an alias))
// Version 1 ("TernSta1") files lack held .. attempt log and status ..
// flags; they are still read. The recipient list replaces the envelope's:
// alias expansion appends the remote targets as new recipients. An invalid
// state file is ignored (the message is then treated as all-pending: at
// worst a second delivery).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "queue/queue.h"

namespace tern::queue {

inline constexpr size_t kMessageHeaderSize = 32;
inline constexpr uint32_t kFormatVersion = 2;

std::string EncodeEnvelope(const Envelope& env);
// `version` 1 envelopes end at received_at (no `prepend`).
Result<Envelope> DecodeEnvelope(std::string_view data,
                                uint32_t version = kFormatVersion);

// The final header for an envelope encoding and a message of body_len bytes.
std::array<char, kMessageHeaderSize> EncodeMessageHeader(
    std::string_view encoded_envelope, uint64_t body_len, uint32_t body_crc);

struct MessageFile {
  Envelope envelope;
  uint64_t body_offset = 0;  // of the message bytes as received
  uint64_t body_len = 0;
  uint32_t body_crc = 0;
  // The message as delivered: envelope.prepend, then body_len bytes at
  // body_offset.
  uint64_t size() const { return envelope.prepend.size() + body_len; }
};

// Reads and checks the header and envelope and that the file size matches;
// does not read the message bytes.
Result<MessageFile> ReadMessageMeta(int fd);
// Reads the message bytes and checks their CRC (recovery and pickup).
Result<void> VerifyMessageBody(int fd, const MessageFile& file);
// Both of the above.
Result<MessageFile> ReadAndVerifyMessage(int fd);
// The message as delivered (prepend, then the bytes received), at most
// `max` octets of it.
Result<std::string> ReadMessageText(int fd, const MessageFile& file,
                                    uint64_t max = UINT64_MAX);

struct RecipientRecord {
  Recipient recipient;
  RecipientState state = RecipientState::kPending;
  std::string error;       // why it failed or is still pending (reply text)
  std::string status;      // RFC 3463 status for DSNs, empty: from `error`
  std::string remote_mta;  // host that answered, for DSN Remote-MTA
  bool notified = false;   // a DSN went out for it, or none is wanted
  bool dsn_passed = false; // relayed to a DSN-capable host with NOTIFY
  // Added by alias expansion to a remote address: the message is being
  // forwarded, so its sender is rewritten with SRS on the way out.
  bool forwarded = false;
};

struct MessageState {
  std::vector<RecipientRecord> recipients;
  uint32_t attempts = 0;
  int64_t next_attempt = 0;
  std::string last_error;
  bool held = false;          // `tern queue hold`: not delivered until released
  bool delay_warned = false;  // the RFC 3464 "delayed" DSN went out
  std::vector<Attempt> log;   // recent attempts, oldest first
};

// Most recent attempts kept per message (`tern queue show`).
inline constexpr size_t kMaxAttemptLog = 30;

MessageState InitialState(const Envelope& env);
std::string EncodeState(const MessageState& state);
Result<MessageState> DecodeState(std::string_view data);

}  // namespace tern::queue
