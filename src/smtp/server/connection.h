// One SMTP connection: the coroutine that owns the socket and feeds the
// sans-I/O session, plus the session's view of the queue and directory.
#pragma once

#include <asio.hpp>

#include "server/context.h"

namespace tern::smtp {

// Takes over an accepted socket (bound to its own strand) and serves it to
// the end, as the listener's service says (smtp, submission, submissions).
// The connection slot in ctx.limiter() must already be acquired; it is
// released when the connection ends.
void StartConnection(asio::ip::tcp::socket socket, server::Context& ctx,
                     const config::Listener& listener);

// Answers 421 and closes, for a connection over the limits.
void RefuseConnection(asio::ip::tcp::socket socket, const std::string& hostname);

}  // namespace tern::smtp
