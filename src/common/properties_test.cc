// Property tests (RapidCheck) of the shared codecs: RFC 4648 base64
// encoding and decoding are exact inverses on generated values.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <string>

#include "common/base64.h"

namespace tern {
namespace {

RC_GTEST_PROP(CodecProperties, Base64DecodesWhatItEncodes,
              (const std::string& data)) {
  const std::string text = Base64Encode(data);
  RC_ASSERT(text.size() == (data.size() + 2) / 3 * 4);  // RFC 4648 4
  auto back = Base64Decode(text);
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == data);
}

}  // namespace
}  // namespace tern
