// The DKIM commands of `tern`: `tern dkim keygen|list|dns|remove|sign` for
// keys and signing, and `tern check dkim` to verify a message from stdin
// with the configured DNS. Registered by one call from main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "common/result.h"
#include "config/config.h"

namespace tern::cli {

// Adds the `dkim` group to `app` and `dkim` to the `check` group. A parsed
// command stores its work in `*action`; `load_config` reads the
// configuration (with --config/--data-dir applied) when the work runs.
void RegisterDkimCommands(CLI::App& app, CLI::App& check,
                          std::function<Result<config::Config>()> load_config,
                          std::function<int()>* action);

}  // namespace tern::cli
