// Messages read by the mail-authentication commands (`tern check`, `tern
// dkim sign`, `tern arc seal`): saved files and Maildir copies usually have
// LF line ends, while DKIM and ARC work on the CRLF form SMTP carries.
#pragma once

#include <istream>
#include <string>
#include <string_view>

namespace tern::cli {

std::string ReadAll(std::istream& in);
// Every LF not already preceded by CR gets one.
std::string ToCrlf(std::string_view text);
// Every CRLF becomes LF (for output in the input's own convention).
std::string ToLf(std::string_view text);

}  // namespace tern::cli
