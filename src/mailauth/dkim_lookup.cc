// DKIM key lookups: one TXT query per distinct key name, in order, each
// answer handed to CheckDkimWithKey. No switch statements here (g++ 12
// miscompiles co_await inside them).
#include "mailauth/dkim_lookup.h"

#include <map>
#include <utility>

namespace tern::mailauth {

asio::awaitable<std::vector<DkimResult>> VerifyDkim(
    dns::Resolver& resolver, std::vector<DkimPending> pending,
    DkimVerifyOptions options) {
  std::vector<DkimResult> results;
  std::map<std::string, dns::Answer> answers;
  for (const DkimPending& p : pending) {
    if (!p.needs_key) {
      results.push_back(p.result);
      continue;
    }
    auto it = answers.find(p.key_name);
    if (it == answers.end()) {
      dns::Answer answer = co_await dns::AsyncQuery(
          resolver, p.key_name, dns::RrType::kTxt, asio::use_awaitable);
      it = answers.emplace(p.key_name, std::move(answer)).first;
    }
    results.push_back(CheckDkimWithKey(p, it->second, options));
  }
  co_return results;
}

asio::awaitable<std::vector<DkimResult>> VerifyDkimMessage(
    dns::Resolver& resolver, std::string message, int64_t now,
    DkimVerifyOptions options) {
  DkimVerifier verifier(now, options);
  verifier.Feed(message);
  std::vector<DkimPending> pending = verifier.Finish();
  std::vector<DkimResult> results =
      co_await VerifyDkim(resolver, std::move(pending), options);
  co_return results;
}

}  // namespace tern::mailauth
