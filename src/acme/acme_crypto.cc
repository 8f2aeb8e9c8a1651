#include "acme/acme_crypto.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <ctime>

#include "common/base64.h"
#include "net/tls.h"

namespace tern::acme {
namespace {

std::string SslError(std::string_view what) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  char buf[256] = "unknown OpenSSL error";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  return std::string(what) + ": " + buf;
}

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using SigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;

std::string Sha256(std::string_view data) {
  unsigned char h[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), h);
  return std::string(reinterpret_cast<char*>(h), sizeof h);
}

// A P-256 public coordinate as its 32 octets.
std::string Coordinate(EVP_PKEY* key, const char* param) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, param, &raw) != 1) return {};
  BnPtr bn(raw);
  std::string out(32, '\0');
  BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), 32);
  return out;
}

// "DNS:a,DNS:b" for X509V3_EXT_conf_nid.
std::string SanList(const std::vector<std::string>& names) {
  std::string san;
  for (const std::string& n : names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
  return san;
}

}  // namespace

std::string Base64Url(std::string_view data) {
  std::string s = Base64Encode(data);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  return s;
}

Result<Key> Key::Generate() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (k == nullptr) return Err(SslError("acme key"));
  return Key(k);
}

Result<Key> Key::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* k = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (k == nullptr) return Err(SslError("acme key"));
  if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC || EVP_PKEY_get_bits(k) != 256) {
    EVP_PKEY_free(k);
    return Err("acme key: not an ECDSA P-256 key");
  }
  return Key(k);
}

Key::Key(Key&& o) noexcept : key_(o.key_) { o.key_ = nullptr; }

Key& Key::operator=(Key&& o) noexcept {
  if (this != &o) {
    EVP_PKEY_free(key_);
    key_ = o.key_;
    o.key_ = nullptr;
  }
  return *this;
}

Key::~Key() { EVP_PKEY_free(key_); }

Result<std::string> Key::Pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key_, nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    return Err(SslError("acme key"));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string Key::Jwk() const {
  return "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" +
         Base64Url(Coordinate(key_, OSSL_PKEY_PARAM_EC_PUB_X)) + "\",\"y\":\"" +
         Base64Url(Coordinate(key_, OSSL_PKEY_PARAM_EC_PUB_Y)) + "\"}";
}

std::string Key::Thumbprint() const { return Base64Url(Sha256(Jwk())); }

Result<std::string> Key::SignEs256(std::string_view input) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return Err(SslError("acme signature"));
  }
  std::string der(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    return Err(SslError("acme signature"));
  }
  // OpenSSL writes the DER SEQUENCE of RFC 3279; JWS wants R || S.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  SigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)));
  if (!sig) return Err(SslError("acme signature"));
  std::string raw(64, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out + 32, 32);
  return Base64Url(raw);
}

Result<std::string> SignRequest(const Key& account, std::string_view kid,
                                std::string_view nonce, std::string_view url,
                                std::string_view payload) {
  // The values are URLs and base64url nonces from the server: no quote or
  // backslash can occur in them (checked, since they go into JSON as is).
  for (std::string_view v : {kid, nonce, url}) {
    if (v.find_first_of("\"\\\r\n") != std::string_view::npos) {
      return Err("acme: unexpected characters in a server-given value");
    }
  }
  std::string header = "{\"alg\":\"ES256\",";
  if (kid.empty()) {
    header += "\"jwk\":" + account.Jwk() + ",";
  } else {
    header += "\"kid\":\"" + std::string(kid) + "\",";
  }
  header += "\"nonce\":\"" + std::string(nonce) + "\",\"url\":\"" + std::string(url) + "\"}";
  std::string protected64 = Base64Url(header);
  std::string payload64 = Base64Url(payload);
  auto sig = account.SignEs256(protected64 + "." + payload64);
  if (!sig) return Err(sig.error().message);
  return "{\"protected\":\"" + protected64 + "\",\"payload\":\"" + payload64 +
         "\",\"signature\":\"" + *sig + "\"}";
}

std::string KeyAuthorization(std::string_view token, const Key& account) {
  return std::string(token) + "." + account.Thumbprint();
}

Result<std::string> CertificateRequest(const Key& key, const std::vector<std::string>& names) {
  if (names.empty()) return Err("acme: no names for the certificate");
  ReqPtr req(X509_REQ_new());
  X509_NAME* subject = req ? X509_REQ_get_subject_name(req.get()) : nullptr;
  bool ok = subject != nullptr && X509_REQ_set_version(req.get(), 0) == 1 &&
            X509_NAME_add_entry_by_txt(
                subject, "CN", MBSTRING_ASC,
                reinterpret_cast<const unsigned char*>(names.front().c_str()), -1, -1, 0) == 1 &&
            X509_REQ_set_pubkey(req.get(), key.get()) == 1;
  if (ok) {
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    std::string san = SanList(names);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name,
                                              san.c_str());
    ok = exts != nullptr && ext != nullptr && sk_X509_EXTENSION_push(exts, ext) > 0 &&
         X509_REQ_add_extensions(req.get(), exts) == 1;
    if (ext != nullptr && (exts == nullptr || sk_X509_EXTENSION_num(exts) == 0)) {
      X509_EXTENSION_free(ext);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  ok = ok && X509_REQ_sign(req.get(), key.get(), EVP_sha256()) > 0;
  if (!ok) return Err(SslError("acme certificate request"));
  int len = i2d_X509_REQ(req.get(), nullptr);
  std::string der(static_cast<size_t>(std::max(len, 0)), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (len <= 0 || i2d_X509_REQ(req.get(), &p) != len) {
    return Err(SslError("acme certificate request"));
  }
  return der;
}

Result<ChallengeCertificate> TlsAlpnCertificate(std::string_view name,
                                                std::string_view key_authorization) {
  // RFC 8737 3: id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), critical, its
  // value the DER of an OCTET STRING holding SHA-256(key authorization);
  // the name as the one dNSName.
  std::string digest = Sha256(key_authorization);
  std::string der = std::string("\x04\x20", 2) + digest;  // OCTET STRING, 32 octets
  net::RawExtension ext{"1.3.6.1.5.5.7.1.31", true, der};
  auto made = net::MakeSelfSigned(std::string(name), 7, {ext});
  if (!made) return Err("acme tls-alpn-01 certificate: " + made.error().message);
  return ChallengeCertificate{made->cert, made->key};
}

Result<CertificateInfo> ReadCertificateInfo(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return Err(SslError("certificate"));
  CertificateInfo info;
  struct tm tm {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &tm) != 1) {
    return Err(SslError("certificate notAfter"));
  }
  info.not_after = static_cast<int64_t>(timegm(&tm));
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = g->d.dNSName;
    info.names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                            static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(sans);
  BnPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
  if (serial) {
    char* hex = BN_bn2hex(serial.get());
    if (hex != nullptr) info.serial = hex;
    OPENSSL_free(hex);
  }
  return info;
}

}  // namespace tern::acme
