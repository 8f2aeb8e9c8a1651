// Errors are values: every fallible operation returns Result<T>.
// Exceptions are used only at start-up (config, CLI parsing).
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace tern {

struct Error {
  std::string message;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> Err(std::string message) {
  return tl::unexpected<Error>(Error{std::move(message)});
}

}  // namespace tern
