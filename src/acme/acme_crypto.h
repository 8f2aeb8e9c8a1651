// The cryptography of an ACME client (RFC 8555), without I/O: the account
// key and its JWK (RFC 7517) and thumbprint (RFC 7638), JWS requests
// signed with ES256 (RFC 8555 6.2, RFC 7515, RFC 7518 3.4), key
// authorizations (8.1), certificate requests (7.4), the TLS-ALPN-01
// challenge certificate (RFC 8737 3) and certificate expiry.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace tern::acme {

// RFC 4648 5, without padding (RFC 7515 2).
std::string Base64Url(std::string_view data);

// An ECDSA P-256 key.
class Key {
 public:
  static Result<Key> Generate();
  static Result<Key> FromPem(std::string_view pem);
  Key(Key&&) noexcept;
  Key& operator=(Key&&) noexcept;
  ~Key();

  Result<std::string> Pem() const;  // PKCS#8 private key
  // {"crv":"P-256","kty":"EC","x":...,"y":...}: the members in the order
  // RFC 7638 3.2 hashes them.
  std::string Jwk() const;
  // RFC 7638: base64url(SHA-256(Jwk())).
  std::string Thumbprint() const;
  // ES256 over `input`: the 64-octet R || S of RFC 7518 3.4, base64url.
  Result<std::string> SignEs256(std::string_view input) const;
  EVP_PKEY* get() const { return key_; }

 private:
  explicit Key(EVP_PKEY* key) : key_(key) {}
  EVP_PKEY* key_ = nullptr;
};

// A flattened JWS (RFC 7515 7.2.2) as ACME wants it: protected header with
// alg, nonce, url and either the account's jwk (new accounts) or its kid.
// An empty `payload` with `post_as_get` is the POST-as-GET of 6.3.
Result<std::string> SignRequest(const Key& account, std::string_view kid,
                                std::string_view nonce, std::string_view url,
                                std::string_view payload);

// RFC 8555 8.1: token "." thumbprint.
std::string KeyAuthorization(std::string_view token, const Key& account);

// A PKCS#10 request (DER) for `names` (the first is the subject CN, all
// are subjectAltName dNSNames), signed with `key`.
Result<std::string> CertificateRequest(const Key& key, const std::vector<std::string>& names);

// RFC 8737 3: a self-signed certificate for `name` with the critical
// acmeIdentifier extension holding SHA-256(key authorization). PEM
// certificate and key.
struct ChallengeCertificate {
  std::string cert_pem;
  std::string key_pem;
};
Result<ChallengeCertificate> TlsAlpnCertificate(std::string_view name,
                                                std::string_view key_authorization);

// The first certificate of a PEM chain: its notAfter (Unix time) and its
// subjectAltName dNSNames.
struct CertificateInfo {
  int64_t not_after = 0;
  std::vector<std::string> names;
  std::string serial;  // hex
};
Result<CertificateInfo> ReadCertificateInfo(std::string_view pem);

}  // namespace tern::acme
