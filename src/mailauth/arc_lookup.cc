// ARC key lookups: ArcValidation says which key it needs next; answers are
// kept by name, since one sealer usually signs the AMS and the AS with the
// same key. No switch statements here (g++ 12 miscompiles co_await inside
// them).
#include "mailauth/arc_lookup.h"

#include <map>
#include <utility>

namespace tern::mailauth {

asio::awaitable<ArcResult> VerifyArc(dns::Resolver& resolver,
                                     ArcValidation validation) {
  std::map<std::string, dns::Answer> answers;
  while (!validation.done()) {
    std::string name = validation.key_name();
    auto it = answers.find(name);
    if (it == answers.end()) {
      dns::Answer answer = co_await dns::AsyncQuery(
          resolver, name, dns::RrType::kTxt, asio::use_awaitable);
      it = answers.emplace(name, std::move(answer)).first;
    }
    validation.Step(it->second);
  }
  co_return validation.result();
}

asio::awaitable<ArcResult> VerifyArcMessage(dns::Resolver& resolver,
                                            std::string message,
                                            ArcVerifyOptions options) {
  ArcVerifier verifier(options);
  verifier.Feed(message);
  ArcResult result = co_await VerifyArc(resolver, verifier.Finish());
  co_return result;
}

}  // namespace tern::mailauth
