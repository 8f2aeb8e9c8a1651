// `tern report tls [--day YYYY-MM-DD] [--json]`: the TLS-RPT (RFC 8460)
// reports the server would send (or has sent) for a UTC day, read from
// data_dir/tlsrpt without a running server.
#pragma once

#include <functional>

#include "common/result.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tern::cli {

// Adds "report tls" to the command line (and "report" when no other
// command has added it yet); `*action` runs it.
void RegisterReportTlsCommand(CLI::App& app,
                              std::function<Result<config::Config>()> load_config,
                              std::function<int()>* action);

}  // namespace tern::cli
