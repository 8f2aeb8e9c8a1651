// `tern check message` and `tern check dmarc`: the inbound mail
// authentication of `tern serve` (mailauth/inbound.h) run from the shell
// on a message read from stdin, with the server's DNS settings: the
// Authentication-Results header it would add, or the DMARC verdict alone.
#pragma once

#include <functional>

#include "common/result.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tern::cli {

// Adds "message" and "dmarc" under `check`.
void RegisterCheckMessage(CLI::App* check,
                          std::function<Result<config::Config>()> load_config,
                          std::function<int()>* action);

}  // namespace tern::cli
