// `tern serve`: runs every configured listener until SIGTERM/SIGINT.
#pragma once

#include "config/config.h"

namespace tern::server {

// Binds the listeners, drops privileges, recovers the queue and serves.
// Returns the process exit code.
int Serve(const config::Config& cfg);

}  // namespace tern::server
