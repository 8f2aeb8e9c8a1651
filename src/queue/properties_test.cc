// Property tests (RapidCheck) of the spool's envelope encoding: decoding
// gives back exactly what was encoded, for generated envelopes.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

#include "queue/queue.h"
#include "queue/spool_format.h"

namespace tern {
namespace {

RC_GTEST_PROP(CodecProperties, EnvelopeDecodesWhatItEncodes,
              (const std::string& sender, const std::string& helo,
               const std::vector<std::string>& addresses, bool utf8,
               int64_t received_at)) {
  queue::Envelope env;
  env.id = "0123456789ABCDEF";
  env.sender = sender;
  env.helo = helo;
  env.smtputf8 = utf8;
  env.received_at = received_at;
  env.ret = *rc::gen::element<std::string>("", "FULL", "HDRS");
  env.body = *rc::gen::element<std::string>("", "7BIT", "8BITMIME");
  env.envid = *rc::gen::arbitrary<std::string>();
  for (const std::string& a : addresses) {
    env.recipients.push_back(
        {a, *rc::gen::element<std::string>("", "NEVER", "SUCCESS,FAILURE"),
         *rc::gen::arbitrary<std::string>()});
  }
  auto back = queue::DecodeEnvelope(queue::EncodeEnvelope(env));
  RC_ASSERT(back.has_value());
  RC_ASSERT(back->id == env.id);
  RC_ASSERT(back->sender == env.sender);
  RC_ASSERT(back->helo == env.helo);
  RC_ASSERT(back->smtputf8 == env.smtputf8);
  RC_ASSERT(back->received_at == env.received_at);
  RC_ASSERT(back->ret == env.ret);
  RC_ASSERT(back->body == env.body);
  RC_ASSERT(back->envid == env.envid);
  RC_ASSERT(back->recipients.size() == env.recipients.size());
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    RC_ASSERT(back->recipients[i].address == env.recipients[i].address);
    RC_ASSERT(back->recipients[i].notify == env.recipients[i].notify);
    RC_ASSERT(back->recipients[i].orcpt == env.recipients[i].orcpt);
  }
}

}  // namespace
}  // namespace tern
