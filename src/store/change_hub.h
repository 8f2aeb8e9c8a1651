// Tells the sessions of an account that one of its folders changed, inside
// one Tern process: IMAP sessions after their own writes, local delivery
// after new mail, POP3 after UPDATE. An IMAP session in IDLE hears of a
// delivery at once instead of at its next poll (RFC 2177; RFC 9051 7.5).
// Programs outside the process (mutt, another node) are not heard: the
// session looks at the folder again before answering commands anyway.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/mutex.h"

namespace tern::store {

class ChangeHub {
 public:
  // Called on the publisher's thread with the folder that changed; it must
  // be quick (post to the session's executor).
  using Callback = std::function<void(std::string_view folder)>;

  // `account` is the account's mailbox path key ("domain/local", as
  // store::MailboxPathFor gives it). Returns an id for Unsubscribe().
  uint64_t Subscribe(std::string account, Callback callback);
  void Unsubscribe(uint64_t id);
  // Folder is the canonical IMAP name ("INBOX" for new mail). `except`
  // is the publisher's own subscription, which is not told.
  void Publish(std::string_view account, std::string_view folder,
               uint64_t except = 0);

 private:
  struct Entry {
    std::string account;
    Callback callback;
  };
  Mutex mu_;
  uint64_t next_ GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Entry> subscribers_ GUARDED_BY(mu_);
  std::multimap<std::string, uint64_t, std::less<>> by_account_ GUARDED_BY(mu_);
};

}  // namespace tern::store
