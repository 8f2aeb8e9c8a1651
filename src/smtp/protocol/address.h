// RFC 5321 4.1.2 mailbox syntax: parsing of reverse-path / forward-path
// arguments, with RFC 6531 UTF-8 when the transaction allows it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern::smtp {

struct Mailbox {
  std::string local;   // local part, unquoted content ("a b" for "\"a b\"")
  std::string domain;  // domain or address literal as written ("[192.0.2.1]")
  bool quoted = false; // local part was a quoted-string
  bool null() const { return local.empty() && domain.empty(); }
  // local@domain, re-quoting the local part when it needs it.
  std::string ToString() const;
  bool operator==(const Mailbox&) const = default;
};

struct PathParse {
  Mailbox mailbox;
  std::string_view rest;  // what follows the closing '>' (parameters)
};

// Parses "<...>" at the start of `arg` (after "MAIL FROM:" / "RCPT TO:").
// Accepts "<>" only when allow_null. Source routes "<@a,@b:user@d>" are
// accepted and ignored (RFC 5321 4.1.1.3). UTF-8 in local part and domain
// only when allow_utf8. Returns nullopt on a syntax error.
std::optional<PathParse> ParsePath(std::string_view arg, bool allow_null,
                                   bool allow_utf8);

// Parses a bare "local@domain" (no brackets), for the CLI and config.
std::optional<Mailbox> ParseMailbox(std::string_view text, bool allow_utf8);

}  // namespace tern::smtp
