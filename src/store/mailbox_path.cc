// The mail store's layout: an account address to its mailbox directory
// below the mail root, refusing anything that could leave it.
#include "store/mailbox_path.h"

#include "common/strings.h"

namespace tern::store {

bool IsSafePathComponent(std::string_view s) {
  if (s.empty() || s == "." || s == ".." || s.front() == '.') return false;
  for (char c : s) {
    if (c == '/' || c == '\0') return false;
  }
  return true;
}

Result<MailboxPath> MailboxPathFor(std::string_view mailbox) {
  size_t at = mailbox.rfind('@');
  if (at == std::string_view::npos)
    return Err("mailbox has no domain: " + std::string(mailbox));
  MailboxPath path{ToLower(mailbox.substr(at + 1)),
                   std::string(mailbox.substr(0, at))};
  if (!IsSafePathComponent(path.domain) || !IsSafePathComponent(path.local)) {
    return Err("unsafe mailbox path refused");
  }
  return path;
}

}  // namespace tern::store
