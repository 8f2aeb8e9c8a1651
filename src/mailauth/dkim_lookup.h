// The DNS half of DKIM verification: the key queries (RFC 6376 3.6.2, TXT
// at SELECTOR._domainkey.DOMAIN) through the async resolver, as coroutines.
// Kept apart from dkim_verify.h so that the I/O-free part builds anywhere
// (asio leaves its coroutine support out of the clang fuzz build).
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "dns/resolver.h"
#include "mailauth/dkim_verify.h"

namespace tern::mailauth {

// The results for what DkimVerifier::Finish gave, in the same order. One
// TXT query per distinct key name, one after the other.
asio::awaitable<std::vector<DkimResult>> VerifyDkim(
    dns::Resolver& resolver, std::vector<DkimPending> pending,
    DkimVerifyOptions options = {});

// A whole message in memory (the CLI, tests).
asio::awaitable<std::vector<DkimResult>> VerifyDkimMessage(
    dns::Resolver& resolver, std::string message, int64_t now,
    DkimVerifyOptions options = {});

}  // namespace tern::mailauth
