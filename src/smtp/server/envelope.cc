// The queue envelope of an SMTP transaction.
#include "smtp/server/envelope.h"

#include "policy/recipient.h"

namespace tern::smtp {

queue::Envelope MakeEnvelope(const Transaction& t, const ClientInfo& client,
                             int64_t received_at) {
  queue::Envelope env;
  env.sender = t.mail_from.null() ? std::string() : t.mail_from.ToString();
  env.recipients.reserve(t.rcpts.size());
  for (size_t i = 0; i < t.rcpts.size(); ++i) {
    queue::Recipient r;
    r.address = policy::DirectoryAddress(t.rcpts[i]);
    if (i < t.rcpt_params.size()) {
      r.notify = t.rcpt_params[i].notify;
      r.orcpt = t.rcpt_params[i].orcpt;
    }
    env.recipients.push_back(std::move(r));
  }
  env.ret = t.ret;
  env.envid = t.envid;
  env.body = t.body;
  env.smtputf8 = t.smtputf8;
  env.requiretls = t.requiretls;
  env.client_ip = client.ip;
  env.helo = t.helo;
  env.auth_user = client.auth_user;
  env.received_at = received_at;
  return env;
}

}  // namespace tern::smtp
