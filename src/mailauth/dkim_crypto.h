// The cryptography DKIM needs, on OpenSSL 3 with RAII handles: SHA-256,
// public keys from key records (RSA per RFC 6376 3.6.1, Ed25519 per
// RFC 8463 4.2), private keys from PEM files, signing and verifying with
// rsa-sha256 (RFC 6376 3.3.1) and ed25519-sha256 (RFC 8463 3).
#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace tern::mailauth {

enum class DkimKeyType { kRsa, kEd25519 };

// "rsa" / "ed25519", as in the k= tag and in key file names.
const char* DkimKeyTypeName(DkimKeyType type);

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const;
};
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// Incremental SHA-256. A failure inside OpenSSL (out of memory) leaves an
// empty digest, which matches no bh= and verifies nothing.
class Sha256 {
 public:
  Sha256();
  void Update(std::string_view data);
  std::string Final();  // 32 octets; the object is spent afterwards

 private:
  std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter> ctx_;
  bool ok_ = false;
};

std::string Sha256Digest(std::string_view data);

// A key shared between threads: OpenSSL keys are safe to use concurrently
// for signing and verifying, each operation with its own context.
class DkimKey {
 public:
  DkimKey() = default;
  DkimKey(EvpPkeyPtr key, DkimKeyType type);

  bool valid() const { return key_ != nullptr; }
  DkimKeyType type() const { return type_; }
  int bits() const;  // modulus size for RSA, 256 for Ed25519
  EVP_PKEY* get() const { return key_.get(); }

 private:
  std::shared_ptr<EVP_PKEY> key_;
  DkimKeyType type_ = DkimKeyType::kRsa;
};

// The p= value of a key record, base64-decoded: for RSA a DER
// SubjectPublicKeyInfo or a bare PKCS#1 RSAPublicKey (RFC 6376 3.6.1 names
// the latter, signers publish the former); for Ed25519 the 32 raw octets.
Result<DkimKey> ParseDkimPublicKey(DkimKeyType type, std::string_view data);

// A private key from PEM text: PKCS#8 ("BEGIN PRIVATE KEY", RSA or
// Ed25519, as `openssl genpkey` writes) or traditional RSA ("BEGIN RSA
// PRIVATE KEY"). Encrypted keys are refused: the server has no one to ask
// for a pass phrase.
Result<DkimKey> ParseDkimPrivateKeyPem(std::string_view pem);

// A new key: RSA of `bits` bits, or Ed25519 (bits ignored).
Result<DkimKey> GenerateDkimKey(DkimKeyType type, int bits);

// PKCS#8 PEM of a private key, for the key files.
Result<std::string> DkimPrivateKeyPem(const DkimKey& key);

// The p= value for a key record: base64 of the DER SubjectPublicKeyInfo for
// RSA, of the raw 32 octets for Ed25519 (RFC 8463 4.2).
Result<std::string> DkimPublicKeyRecordValue(const DkimKey& key);

// The DKIM signature of `data` (the header hash input): RSASSA-PKCS1-v1_5
// with SHA-256 over the data (RFC 6376 3.3.1), or Ed25519 over the SHA-256
// digest of the data (RFC 8463 3).
Result<std::string> DkimSign(const DkimKey& key, std::string_view data);

// True when `signature` is a valid signature of `data` by `key`, under the
// same rules as DkimSign.
bool DkimVerify(const DkimKey& key, std::string_view data,
                std::string_view signature);

}  // namespace tern::mailauth
