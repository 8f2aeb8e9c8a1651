// Queue inspection (read from the spool, works with the server stopped) and
// queue control (through the running server's control socket).
#include "cli/queue_commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <iostream>

#include "common/file_io.h"
#include "common/strings.h"
#include "common/unique_fd.h"
#include "control/control.h"
#include "queue/dsn.h"
#include "queue/queue.h"
#include "queue/queue_id.h"
#include "queue/spool_format.h"

namespace tern::cli {
namespace {

constexpr size_t kHeaderProbe = 64 * 1024;

const char* StateText(queue::RecipientState s) {
  switch (s) {
    case queue::RecipientState::kDelivered:
      return "delivered";
    case queue::RecipientState::kFailed:
      return "failed";
    case queue::RecipientState::kPending:
      break;
  }
  return "pending";
}

std::string When(int64_t t) { return t > 0 ? Rfc5322Date(t) : "-"; }

}  // namespace

int QueueShow(const std::string& data_dir, const std::string& id) {
  // Reads this message alone, not the whole queue.
  auto entry = queue::ListOne(data_dir, id);
  if (!entry) {
    std::cerr << "tern: " << entry.error().message << "\n";
    return 1;
  }
  const queue::Entry& e = *entry;
  const queue::Envelope& env = e.envelope;
  std::cout << "id: " << env.id << "\n"
            << "size: " << e.size << "\n"
            << "received: " << When(env.received_at) << "\n"
            << "sender: <" << env.sender << ">\n";
  if (!env.client_ip.empty() || !env.helo.empty())
    std::cout << "client: " << env.helo << " [" << env.client_ip << "]\n";
  if (!env.auth_user.empty()) std::cout << "auth: " << env.auth_user << "\n";
  if (!env.body.empty()) std::cout << "body: " << env.body << "\n";
  if (env.smtputf8) std::cout << "smtputf8: yes\n";
  if (env.requiretls) std::cout << "requiretls: yes\n";
  if (!env.ret.empty()) std::cout << "ret: " << env.ret << "\n";
  if (!env.envid.empty()) std::cout << "envid: " << env.envid << "\n";
  std::cout << "status: "
            << (e.held ? "on hold"
                       : e.next_attempt > 0
                             ? "next attempt " + When(e.next_attempt)
                             : std::string("waiting"))
            << "\n"
            << "attempts: " << e.attempts << "\n"
            << "recipients:\n";
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    const queue::Recipient& r = env.recipients[i];
    std::cout << "  <" << r.address << "> "
              << StateText(i < e.state.size() ? e.state[i]
                                              : queue::RecipientState::kPending);
    if (!r.notify.empty()) std::cout << " notify=" << r.notify;
    if (i < e.errors.size() && !e.errors[i].empty())
      std::cout << ": " << e.errors[i];
    std::cout << "\n";
  }
  std::cout << "attempt log:\n";
  if (e.log.empty()) std::cout << "  (none)\n";
  for (const queue::Attempt& a : e.log) {
    std::cout << "  " << When(a.time) << "  " << a.host << "  " << a.reply
              << "\n";
  }
  // The header, read straight from the spool file.
  UniqueFd fd(::open((data_dir + "/queue/msg/" + id).c_str(),
                     O_RDONLY | O_CLOEXEC));
  if (fd && queue::IsValidQueueId(id)) {
    if (auto file = queue::ReadMessageMeta(fd.get())) {
      if (auto head = queue::ReadMessageText(fd.get(), *file, kHeaderProbe)) {
        std::string_view h = queue::HeaderSection(*head);
        std::cout << "headers:\n";
        for (const std::string& line : Split(h, '\n')) {
          std::string l = line;
          if (!l.empty() && l.back() == '\r') l.pop_back();
          if (!l.empty()) std::cout << "  " << l << "\n";
        }
      }
    }
  }
  return 0;
}

int QueueControl(const std::string& data_dir, const std::string& verb,
                 const std::string& id) {
  auto reply = control::Request(data_dir, id.empty() ? verb : verb + " " + id);
  if (!reply) {
    std::cerr << "tern: " << reply.error().message << "\n";
    return 1;
  }
  std::cout << *reply << "\n";
  return 0;
}

}  // namespace tern::cli
