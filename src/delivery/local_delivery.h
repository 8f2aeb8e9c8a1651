// Local delivery of queued messages: resolves each pending recipient, writes
// Maildir copies for local mailboxes (batched syncs), records what stays
// queued (remote targets, temporary failures) and removes finished messages.
// The queue calls it through queue::LocalDeliverer (queue/local.h).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "auth/directory.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "queue/local.h"
#include "store/mailbox_path.h"

namespace tern::delivery {

struct LocalDeliveryOptions {
  std::string mail_dir;  // the mail root, data_dir/mail; made when missing
  std::string hostname;  // for Maildir file names
  // Called after new mail reached an account, with its mailbox path key
  // ("domain/local") and the folder ("INBOX", "Junk", or the folder a
  // "user+folder@" detail named): wakes IMAP sessions (store::ChangeHub).
  std::function<void(const std::string& account, const std::string& folder)> delivered;
};

// Thread-safe as long as concurrent calls get different message ids.
class LocalDelivery final : public queue::LocalDeliverer {
 public:
  // Resolves a recipient address at delivery time (auth::Directory::Resolve
  // in the server; a fake in tests). Called from delivery threads.
  using Resolver = std::function<auth::Resolution(const std::string& address)>;

  // Creates (mode 0700) and opens the mail root.
  static Result<std::unique_ptr<LocalDelivery>> Open(
      LocalDeliveryOptions options, Resolver resolver);

  // Delivers the messages together: all their copies share one sync before
  // and one after the renames into new/. The queue files are updated or
  // removed only after that, so a crash can duplicate but never lose mail.
  std::vector<queue::LocalOutcome> DeliverBatch(
      const queue::LocalSpool& spool,
      const std::vector<std::string>& ids) override;

  // Direct delivery before the 250 (queue/local.h): the same copies, names,
  // folders and side effects as DeliverBatch, or null when some recipient
  // is not a plain local mailbox (remote, unknown, forwarded by an alias)
  // or a copy cannot be written.
  std::unique_ptr<queue::DirectDelivery> PrepareDirect(
      const queue::Envelope& env, std::string_view message, dev_t dev) override;
  size_t ReplayDirect(std::string_view log) override;

 private:
  LocalDelivery(UniqueFd mail_root, std::string hostname, Resolver resolver,
                std::function<void(const std::string&, const std::string&)> delivered);
  bool FolderExists(const store::MailboxPath& path, const std::string& folder) const;
  // The folder a copy for `rcpt` (resolved to `mailbox`) is filed into, the
  // same for direct and queued delivery: Junk for a quarantined message
  // (DMARC), an existing folder named by the address's detail
  // ("user+Work@"), else "" (INBOX).
  std::string FolderFor(bool junk, const std::string& rcpt, const std::string& mailbox,
                        const store::MailboxPath& path) const;

  const UniqueFd mail_root_;
  const std::string hostname_;
  const Resolver resolver_;
  const std::function<void(const std::string&, const std::string&)> delivered_;
};

// RFC 3461 4.2 ORCPT value for an address: "rfc822;" + xtext (RFC 3461 4),
// used when alias expansion creates new recipients.
std::string OrcptFor(const std::string& address);

}  // namespace tern::delivery
