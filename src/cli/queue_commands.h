// `tern queue show` and the `tern queue` commands that act on the running
// server through its control socket (flush, retry, hold, release, delete,
// bounce). Kept out of main.cc so the CLI's dispatcher stays short.
#pragma once

#include <string>

namespace tern::cli {

// Prints envelope, recipients with their last reply, the header and the
// attempt log of one queued message. Returns the exit code.
int QueueShow(const std::string& data_dir, const std::string& id);

// Sends "VERB [ID]" to the control socket; prints the answer. Exit code 0,
// or 1 with "tern: ..." on stderr (also when the server is not running).
int QueueControl(const std::string& data_dir, const std::string& verb,
                 const std::string& id);

}  // namespace tern::cli
