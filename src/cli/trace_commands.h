// `tern trace ID|ADDRESS`: the story of a message, or of the recent mail
// from or to an address, read from the message trace the server writes
// (common/trace.h, data_dir/trace/YYYY-MM-DD.jsonl).
#pragma once

#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tern::cli {

// Adds "trace" to the command line; `*action` runs it.
void RegisterTraceCommand(CLI::App& app,
                          std::function<Result<config::Config>()> load_config,
                          std::function<int()>* action);

// The events of the newest `days` files in `dir` (today and the days
// before it), oldest first; lines that do not parse are skipped.
std::vector<nlohmann::json> LoadTrace(const std::string& dir, int days, std::time_t now);

// The events that tell the story of `query`:
//  - a queue id (16 characters, as in the logs): that message;
//  - a Message-ID in angle brackets ("<id@host>"): the messages that
//    carried it;
//  - an address: the messages from or to it, and the refusals naming it;
//    when no event names the address, it is tried as a Message-ID
//    written without its brackets.
// A message's story includes its bounces (DSN) and the DSN messages' own
// stories. Empty when nothing matches.
std::vector<nlohmann::json> SelectTrace(const std::vector<nlohmann::json>& events,
                                        const std::string& query);

// The selected events for a person: one block per message (or refusal),
// in the order their first events happened.
std::string FormatTrace(const std::vector<nlohmann::json>& events);

}  // namespace tern::cli
