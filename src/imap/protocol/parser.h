// The lexical layer of the IMAP command parser: atoms, strings, literals,
// numbers, sequence sets, flags, mailbox names and dates over a framed
// command. Internal to imap/protocol (command.cc, command_fetch.cc,
// command_search.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imap/protocol/command.h"

namespace tern::imap {

// A cursor over FramedCommand::text. Every method returns false on a syntax
// error after recording the first one (error()), so a command's grammar
// reads as a chain of `&&`.
class Parser {
 public:
  Parser(const FramedCommand& framed, const ParseOptions& options)
      : f_(framed), text_(framed.text), options_(options) {}

  static std::string Upper(std::string_view s);

  const ParseOptions& options() const { return options_; }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool Fail(std::string_view message);

  bool AtEnd() const { return pos_ >= text_.size(); }
  // Every literal the reader framed was read as one: none was swallowed by
  // a quoted string whose line ended in "{n}" (its octets would otherwise
  // be taken as command syntax).
  bool LiteralsDone() const { return next_literal_ == f_.literals.size(); }
  char Peek(size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  size_t pos() const { return pos_; }
  void Rewind(size_t pos) { pos_ = pos; }
  bool Take(char c);  // consumes c if it is next
  // Requires c next; "Expected <what>" otherwise.
  bool Expect(char c, std::string_view what);
  // SP; "Expected SP after <after>" otherwise.
  bool Sp(std::string_view after);
  // Requires the end of the command.
  bool End();
  // Looks ahead: the next word (ATOM-CHARs but "[") equals w, any case.
  bool PeekWord(std::string_view w) const;
  // Consumes a word (ATOM-CHARs but "["), upper case; empty if none.
  std::string Word();

  bool Atom(std::string* out, std::string_view what);
  bool Astring(std::string* out, std::string_view what);
  bool String(std::string* out, std::string_view what);
  bool Nstring(std::optional<std::string>* out, std::string_view what);
  // A literal at the cursor ("{n}", "{n+}" or, with binary_ok, "~{n}").
  // With stream_ok a streamed literal is accepted: *out stays empty and
  // *index gets its place in FramedCommand::literals.
  bool LiteralString(std::string* out, bool binary_ok, bool stream_ok,
                     const Literal** literal, size_t* index);

  bool Number(uint32_t* out, std::string_view what);    // 32-bit
  bool NzNumber(uint32_t* out, std::string_view what);  // 1..2^32-1
  bool Number64(uint64_t* out, std::string_view what);  // 0..2^63-1
  bool NzNumber64(uint64_t* out, std::string_view what);

  // RFC 9051 9 sequence-set or "$"; star_ok false for RFC 7162 known-uids.
  bool SeqSet(SequenceSet* out, bool star_ok = true);
  bool Flag(std::string* out);
  bool FlagList(std::vector<std::string>* out);  // "(" [flag *(SP flag)] ")"
  // A mailbox name decoded to UTF-8; INBOX in any case becomes "INBOX".
  bool Mailbox(std::string* out);
  // list-mailbox: like a mailbox name, with "%" and "*" allowed in atoms.
  bool ListMailbox(std::string* out);
  bool SearchDate(Date* out);            // date: date-text or quoted
  bool QuotedDateTime(DateTime* out);    // date-time, always quoted

 private:
  bool Quoted(std::string* out, std::string_view what);
  bool DecodeName(std::string raw, std::string* out);

  const FramedCommand& f_;
  std::string_view text_;
  const ParseOptions& options_;
  size_t pos_ = 0;
  size_t next_literal_ = 0;
  std::string error_;
};

// System flags and special-use attributes in their canonical spelling
// (they are case-insensitive); anything else as given.
std::string CanonicalFlag(std::string_view flag);

// RFC 4959 3 initial-resp: base64, or "=" for an empty response.
bool IsSaslInitialResponse(std::string_view s);

// In command_fetch.cc and command_search.cc.
bool ParseFetch(Parser& p, bool uid, FetchArgs* out);
bool ParseStore(Parser& p, StoreArgs* out);
bool ParseSearch(Parser& p, SearchArgs* out);
bool ParseSort(Parser& p, SortArgs* out);
bool ParseThread(Parser& p, ThreadArgs* out);

}  // namespace tern::imap
