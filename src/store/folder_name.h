// IMAP mailbox names and the Maildir++ folder directories that hold them.
//
// IMAP4rev2 names are UTF-8 (RFC 9051 5.1; RFC 6855 3 for IMAP4rev1
// clients that ENABLE UTF8=ACCEPT; modified UTF-7 for older clients is
// converted in the protocol layer, imap/protocol/mutf7.h). Tern's
// hierarchy separator is "/" (RFC 9051 5.1.1 lets the server choose).
// Maildir++ keeps every folder as a directory ".A.B" directly in the
// account's Maildir, "." separating the levels, and INBOX is the Maildir
// itself.
//
// Escaping, so that a directory name can always be split back into the
// levels of the IMAP name: inside one level, "." (the Maildir++
// separator), "\" (the escape character itself) and octets below 0x20 or
// 0x7F are written as "\" and two lower-case hex digits ("a.b" becomes
// "a\2eb"). "/" never needs it: it separates levels and cannot appear in
// a file name. Everything else, UTF-8 included, is kept as it is. The form
// ("\" and two hex digits) is the one of Dovecot's listescape plugin, and
// plain names need no escape at all, so mutt and Dovecot (with UTF-8 folder
// names on disk) list ".Sent", ".Archive.2024" and ".Ümlaut" as they are.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern::store {

// True for "INBOX" in any case (RFC 9051 5.1: INBOX is case-insensitive).
bool IsInbox(std::string_view name);

// A valid IMAP name in canonical form: INBOX in upper case (also as the
// first level, "inbox/x" -> "INBOX/x"), or nullopt for names Tern refuses:
// empty, empty levels ("a//b", "/a", "a/"), invalid UTF-8, NUL.
std::optional<std::string> CanonicalFolderName(std::string_view name);

// The Maildir++ directory (".A.B") of a canonical name; "" for INBOX.
std::string FolderDirectory(std::string_view canonical);

// The IMAP name of a Maildir++ directory name (".A.B" -> "A/B"), or
// nullopt when it is no folder Tern can show: no leading ".", "." or
// "..", empty levels, or a decoded name that is not valid UTF-8 (written
// by some other program; left alone).
std::optional<std::string> FolderNameOfDirectory(std::string_view dir);

// The parent of "A/B/C" is "A/B"; of "A" it is "".
std::string ParentFolder(std::string_view canonical);

bool ValidUtf8(std::string_view s);

}  // namespace tern::store
