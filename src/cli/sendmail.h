// `tern sendmail`: the /usr/sbin/sendmail interface that cron, mail(),
// git send-email and other Unix programs expect.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace tern::cli {

// `args` are the arguments after "sendmail" (sendmail flags untouched).
// Reads the message from stdin. Returns the exit code (0 when queued).
int Sendmail(const config::Config& cfg, const std::vector<std::string>& args);

}  // namespace tern::cli
