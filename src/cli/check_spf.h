// `tern check spf IP HELO MAILFROM`: evaluates SPF (RFC 7208) from the
// shell with the server's DNS settings, for debugging a domain's policy
// and for the RFC 7208 test suite (tests/test_spf.py).
#pragma once

#include <functional>

#include "common/result.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tern::cli {

// Adds "spf" under `check` (the `tern check` group). When the command line
// names it, `*action` is set to run it; `load_config` reads the
// configuration then (--config, like every subcommand).
void RegisterCheckSpf(CLI::App* check,
                      std::function<Result<config::Config>()> load_config,
                      std::function<int()>* action);

}  // namespace tern::cli
