// DKIM signing (RFC 6376 5, RFC 8463): DKIM-Signature fields for a message
// that streams in, one per key (Tern signs with an Ed25519 and an RSA key by
// default, so receivers that know only RSA still get a signature).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "mailauth/dkim_canon.h"
#include "mailauth/dkim_crypto.h"

namespace tern::mailauth {

struct DkimSigningKey {
  std::string domain;    // d=
  std::string selector;  // s=
  DkimKey key;           // its type chooses a=
};

// The header fields signed when present (RFC 6376 5.4.1 recommends these).
const std::vector<std::string>& DefaultDkimSignedHeaders();

struct DkimSignOptions {
  std::vector<std::string> headers = DefaultDkimSignedHeaders();
  // Seconds until x=; unset: no expiry.
  std::optional<int64_t> expire_after;
};

// Feeds a whole message (header section included) and produces the fields
// that sign it: relaxed/relaxed, t= set, h= naming every present field of
// `headers` as often as it occurs, and From once more (RFC 6376 8.15: a
// From added later then breaks the signature), folded to 78 columns.
class DkimSigner {
 public:
  DkimSigner(std::vector<DkimSigningKey> keys, int64_t now,
             DkimSignOptions options = {});
  void Feed(std::string_view chunk);
  // One DKIM-Signature field per key, in key order, each ending in CRLF,
  // to be put on top of the message. Fails for a message without From.
  Result<std::string> Finish();

 private:
  std::vector<DkimSigningKey> keys_;
  int64_t now_;
  DkimSignOptions options_;
  DkimMessageSplitter splitter_;
  DkimBodyHasher body_;
};

Result<std::string> DkimSignMessage(std::string_view message,
                                    const std::vector<DkimSigningKey>& keys,
                                    int64_t now, DkimSignOptions options = {});

}  // namespace tern::mailauth
