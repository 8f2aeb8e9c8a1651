// Tests for Base64: the RFC 4648 section 10 vectors, binary round trips and
// the strictness the SASL code relies on.
#include "common/base64.h"

#include <gtest/gtest.h>

#include <string>

namespace tern {
namespace {

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded) << plain;
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded) << encoded;
    EXPECT_EQ(*decoded, plain);
  }
}

TEST(Base64Test, BinaryRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t len = 0; len <= all.size(); len += 17) {
    std::string data = all.substr(0, len);
    auto decoded = Base64Decode(Base64Encode(data));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, data);
  }
  EXPECT_EQ(Base64Encode(std::string("\0\0", 2)), "AAA=");
  EXPECT_EQ(Base64Encode("\xff\xfe\xfd"), "//79");
  EXPECT_EQ(Base64Decode("AGFsaWNlAHNlY3JldA=="),
            std::string("\0alice\0secret", 13));
}

TEST(Base64Test, RejectsMalformedInput) {
  for (const char* bad :
       {"Zg", "Zg=", "Zm9", "Zm9vY", "Z===", "====", "Zg==Zg==", "Zm9v\r\n",
        " Zm9v", "Zm 9v", "Zm9v-_==", "Zh==", "Zm9=", "Zm=v", "=m9v",
        "Zm9vYmFy="}) {
    EXPECT_FALSE(Base64Decode(bad)) << bad;
  }
  // Padding bits must be zero: "Zh==" and "Zm9=" differ from the canonical
  // "Zg==" / "Zm8=" only in those bits.
  EXPECT_TRUE(Base64Decode("Zg=="));
  EXPECT_TRUE(Base64Decode("Zm8="));
  EXPECT_FALSE(Base64Decode(std::string("Zm9v\0", 5)));
}

}  // namespace
}  // namespace tern
