// Errors are values: every fallible operation returns Result<T>.
// Exceptions are used only at start-up (config, CLI parsing).
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace tern {

// What went wrong, for a person (`message`), and for the code that must
// act on it (`code`: the errno of a failed system call, 0 otherwise), so
// that "disk full" is told by ENOSPC, never by matching text.
struct Error {
  std::string message;
  int code = 0;

  // The storage is full (RFC 5321 4.2.2's 452 "insufficient system
  // storage", RFC 3463 X.3.1), as opposed to any other failure.
  bool NoSpace() const { return code == ENOSPC || code == EDQUOT; }
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> Err(std::string message, int code = 0) {
  return tl::unexpected<Error>(Error{std::move(message), code});
}

}  // namespace tern
