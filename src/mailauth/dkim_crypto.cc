// OpenSSL 3 behind the DKIM key and signature operations. Every failure
// clears OpenSSL's per-thread error queue, so that a bad key record from a
// stranger cannot leave an error behind for the next TLS call on the thread.
#include "mailauth/dkim_crypto.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/base64.h"

namespace tern::mailauth {
namespace {

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;

// The reason of the last OpenSSL error, for messages; empties the queue.
std::string OpensslError() {
  unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    text = buf;
  }
  ERR_clear_error();
  return text.empty() ? "unknown OpenSSL error" : text;
}

Result<DkimKeyType> TypeOf(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) return DkimKeyType::kRsa;
  if (EVP_PKEY_is_a(key, "ED25519")) return DkimKeyType::kEd25519;
  return Err("key is neither RSA nor Ed25519");
}

// Answers "no" to any pass phrase request instead of reading the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

}  // namespace

void EvpMdCtxDeleter::operator()(EVP_MD_CTX* ctx) const {
  EVP_MD_CTX_free(ctx);
}
void EvpPkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

const char* DkimKeyTypeName(DkimKeyType type) {
  return type == DkimKeyType::kRsa ? "rsa" : "ed25519";
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  ok_ = ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1;
  if (!ok_) ERR_clear_error();
}

void Sha256::Update(std::string_view data) {
  if (ok_ && !data.empty()) {
    ok_ = EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) == 1;
  }
}

std::string Sha256::Final() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ok_ || EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1) {
    ok_ = false;
    ERR_clear_error();
    return {};
  }
  ok_ = false;
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string Sha256Digest(std::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.Final();
}

DkimKey::DkimKey(EvpPkeyPtr key, DkimKeyType type)
    : key_(key.release(), EvpPkeyDeleter()), type_(type) {}

int DkimKey::bits() const { return key_ ? EVP_PKEY_get_bits(key_.get()) : 0; }

Result<DkimKey> ParseDkimPublicKey(DkimKeyType type, std::string_view data) {
  if (type == DkimKeyType::kEd25519) {
    // RFC 8463 4.2: the bare 32-octet public key, no ASN.1 around it.
    if (data.size() != 32) {
      return Err("Ed25519 public key of " + std::to_string(data.size()) +
                 " octets, 32 expected");
    }
    EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr,
        reinterpret_cast<const unsigned char*>(data.data()), data.size()));
    if (!key) return Err("bad Ed25519 public key: " + OpensslError());
    return DkimKey(std::move(key), type);
  }
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  long len = static_cast<long>(data.size());
  const unsigned char* cursor = p;
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &cursor, len));
  if (!key || cursor != p + len) {
    ERR_clear_error();
    cursor = p;
    key.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &cursor, len));
    if (!key || cursor != p + len) {
      ERR_clear_error();
      return Err("p= is not a DER RSA public key");
    }
  }
  auto actual = TypeOf(key.get());
  if (!actual || *actual != DkimKeyType::kRsa) {
    return Err("p= holds a key that is not RSA");
  }
  return DkimKey(std::move(key), type);
}

Result<DkimKey> ParseDkimPrivateKeyPem(std::string_view pem) {
  if (pem.find("ENCRYPTED") != std::string_view::npos) {
    return Err(
        "the key is encrypted; DKIM keys must be stored unencrypted "
        "(mode 0600)");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Err("out of memory: " + OpensslError());
  EvpPkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (!key) return Err("no PEM private key found: " + OpensslError());
  auto type = TypeOf(key.get());
  if (!type) return tl::unexpected(type.error());
  return DkimKey(std::move(key), *type);
}

Result<DkimKey> GenerateDkimKey(DkimKeyType type, int bits) {
  EvpPkeyPtr key;
  if (type == DkimKeyType::kEd25519) {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  } else {
    key.reset(
        EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
  }
  if (!key) return Err("key generation failed: " + OpensslError());
  return DkimKey(std::move(key), type);
}

Result<std::string> DkimPrivateKeyPem(const DkimKey& key) {
  if (!key.valid()) return Err("no key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr,
                                       0, nullptr, nullptr) != 1) {
    return Err("cannot write the key: " + OpensslError());
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> DkimPublicKeyRecordValue(const DkimKey& key) {
  if (!key.valid()) return Err("no key");
  if (key.type() == DkimKeyType::kEd25519) {
    unsigned char raw[32];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key.get(), raw, &len) != 1 || len != 32) {
      return Err("cannot read the Ed25519 public key: " + OpensslError());
    }
    return Base64Encode(std::string_view(reinterpret_cast<char*>(raw), len));
  }
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key.get(), &der);
  if (len <= 0) return Err("cannot encode the public key: " + OpensslError());
  std::string out = Base64Encode(
      std::string_view(reinterpret_cast<char*>(der), static_cast<size_t>(len)));
  OPENSSL_free(der);
  return out;
}

Result<std::string> DkimSign(const DkimKey& key, std::string_view data) {
  if (!key.valid()) return Err("no key");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return Err("out of memory: " + OpensslError());
  std::string digest;
  std::string_view input = data;
  const EVP_MD* md = EVP_sha256();
  if (key.type() == DkimKeyType::kEd25519) {
    // RFC 8463 3: PureEdDSA over the SHA-256 of the data, not the data.
    digest = Sha256Digest(data);
    input = digest;
    md = nullptr;
  }
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1) {
    return Err("cannot sign: " + OpensslError());
  }
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) {
    return Err("cannot sign: " + OpensslError());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()),
                     &len, in, input.size()) != 1) {
    return Err("cannot sign: " + OpensslError());
  }
  sig.resize(len);
  return sig;
}

bool DkimVerify(const DkimKey& key, std::string_view data,
                std::string_view signature) {
  if (!key.valid()) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) {
    ERR_clear_error();
    return false;
  }
  std::string digest;
  std::string_view input = data;
  const EVP_MD* md = EVP_sha256();
  if (key.type() == DkimKeyType::kEd25519) {
    digest = Sha256Digest(data);
    input = digest;
    md = nullptr;
  }
  bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) == 1 &&
      EVP_DigestVerify(ctx.get(),
                       reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(),
                       reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace tern::mailauth
