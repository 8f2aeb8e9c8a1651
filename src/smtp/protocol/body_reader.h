// Incremental reader for message content after DATA (dot-stuffed, ends at
// CRLF "." CRLF) or inside BDAT chunks (raw octets, framed by the caller).
// Internal to smtp/protocol: the Session owns one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tern::smtp {

class BodyReader {
 public:
  struct Limits {
    uint64_t max_size = 0;    // octets of content, CRLFs included
    uint32_t line_limit = 0;  // octets per line including CRLF
    uint32_t max_hops = 0;    // Received: header fields allowed
    // Keep the From: and Sender: fields of the header section (for sender
    // identity checks on authenticated sessions).
    bool capture_senders = false;
  };
  // Captured From:/Sender: text is bounded; a message whose fields do not
  // fit cannot be checked and is refused by the caller.
  static constexpr size_t kMaxCapture = 16 * 1024;
  // Why a message must be refused, in the order the reply reports them
  // (the first that applies wins).
  enum class Fault { kNone, kBareEol, kLineTooLong, kTooBig, kTooManyHops };

  // Starts a new message. dot_stuffed selects DATA rules (RFC 5321 4.5.2)
  // over BDAT rules (RFC 3030: content is octet-counted, nothing is special).
  void Start(bool dot_stuffed, const Limits& limits);

  // Consumes content and appends the bytes to store (unstuffed, CRLF line
  // ends) to *out, but only while nothing is wrong with the message: once a
  // fault is seen there is no point in storing it. With DATA rules it stops
  // right after the terminating "." line and sets *done.
  size_t Scan(std::string_view data, std::string* out, bool* done);

  // BDAT LAST: the octet count ended the message. A CR still waiting for
  // its LF is a bare CR; an unterminated last line gets its CRLF.
  void Finish(std::string* out);

  Fault fault() const;
  bool storing() const { return fault() == Fault::kNone; }
  uint64_t size() const { return size_; }
  // The captured fields, "Name:value\r\n" with continuation lines kept.
  const std::string& sender_fields() const { return capture_; }
  bool capture_overflow() const { return capture_overflow_; }

 private:
  void AddContent(const char* p, size_t n, std::string* out);
  void EndLine(std::string* out);
  void CaptureHeader(const char* p, size_t n);

  Limits limits_;
  uint64_t size_ = 0;
  uint32_t line_len_ = 0;  // octets of the current line as sent, no CRLF
  uint32_t hops_ = 0;
  bool dot_stuffed_ = false;
  bool cr_ = false;        // the last octet was a CR, its fate unknown yet
  bool dot_line_ = false;  // the current line began with a removed '.'
  bool in_headers_ = true;
  bool bare_eol_ = false;
  bool too_long_ = false;
  bool too_big_ = false;
  uint8_t prefix_len_ = 0;
  char prefix_[9] = {};  // start of the current line, for "Received:"
  // Header capture: where the current line stands.
  enum class Field : uint8_t { kName, kKeep, kSkip };
  Field field_ = Field::kSkip;
  bool line_start_ = true;
  bool capture_overflow_ = false;
  uint8_t name_len_ = 0;
  char name_[8] = {};
  std::string capture_;
};

}  // namespace tern::smtp
