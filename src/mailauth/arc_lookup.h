// The DNS half of ARC verification: the key queries (TXT at
// SELECTOR._domainkey.DOMAIN, RFC 8617 4.1.3 / RFC 6376 3.6.2) that
// ArcValidation asks for, through the async resolver. Kept apart from
// arc.h so that the I/O-free part builds anywhere, as with dkim_lookup.h.
#pragma once

#include <asio.hpp>
#include <string>

#include "dns/resolver.h"
#include "mailauth/arc.h"

namespace tern::mailauth {

// Runs the checks of `validation` to the end, one query per distinct key
// name (answers are reused within the message).
asio::awaitable<ArcResult> VerifyArc(dns::Resolver& resolver,
                                     ArcValidation validation);

// A whole message in memory (the CLI, tests).
asio::awaitable<ArcResult> VerifyArcMessage(dns::Resolver& resolver,
                                            std::string message,
                                            ArcVerifyOptions options = {});

}  // namespace tern::mailauth
