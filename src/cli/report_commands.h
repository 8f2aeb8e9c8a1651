// `tern report dmarc`: the DMARC aggregate of one UTC day as the server
// persisted it (data_dir/dmarc-reports), as a table or as the report XML;
// `--send` asks the running server to send every report now.
#pragma once

#include <functional>

#include "common/result.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tern::cli {

void RegisterReportCommands(CLI::App& app,
                            std::function<Result<config::Config>()> load_config,
                            std::function<int()>* action);

}  // namespace tern::cli
