// Fuzzes the configuration loader (config/config.h) on arbitrary TOML
// text: Parse() must return a value or an error, never throw, and a
// config it accepts must hold the invariants the server relies on.
//
// Input: the TOML text.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "config/config.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tern::fuzz::Printable;
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto cfg = tern::config::Parse(text, "fuzz.toml");
    if (!cfg) {
      // "FILE:LINE:COL: ..." so users can find the mistake.
      FUZZ_CHECK(cfg.error().message.rfind("fuzz.toml:", 0) == 0,
                 "error without a location: %s",
                 Printable(cfg.error().message).c_str());
      return 0;
    }
    FUZZ_CHECK(!cfg->domains.empty(), "accepted without local domains");
    for (const std::string& d : cfg->domains) {
      for (char c : d) {
        FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "domain not lower case: %s",
                   Printable(d).c_str());
      }
    }
    for (const auto& l : cfg->listeners) {
      FUZZ_CHECK(!l.host.empty() && l.port != 0, "listener %s parsed as %s:%u",
                 Printable(l.address).c_str(), Printable(l.host).c_str(),
                 l.port);
    }
    FUZZ_CHECK(!cfg->hostname.empty(), "accepted an empty hostname");
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, "exception escaped Parse(): %s", e.what());
  } catch (...) {
    FUZZ_CHECK(false, "non-standard exception escaped Parse()");
  }
  return 0;
}
