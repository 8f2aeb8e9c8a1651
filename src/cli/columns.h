// Plain-text tables for the command-line tools (`tern queue list`,
// `tern dkim list`): columns padded to their widest cell plus two blanks.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tern::cli {

// Writes `rows` (all of one width) aligned in columns, one line each. The
// last column is not padded, so lines carry no trailing blanks.
void PrintColumns(const std::vector<std::vector<std::string>>& rows, std::ostream& out);

}  // namespace tern::cli
