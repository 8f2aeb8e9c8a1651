// The ARC commands of `tern`: `tern check arc` verifies the chain of a
// message on stdin with the configured DNS, `tern arc seal` adds the next
// ARC set to it. Registered by one call from main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "common/result.h"
#include "config/config.h"

namespace tern::cli {

// Adds the `arc` group to `app` and `arc` to the `check` group. A parsed
// command stores its work in `*action`; `load_config` reads the
// configuration (with --config/--data-dir applied) when the work runs.
void RegisterArcCommands(CLI::App& app, CLI::App& check,
                         std::function<Result<config::Config>()> load_config,
                         std::function<int()>* action);

}  // namespace tern::cli
