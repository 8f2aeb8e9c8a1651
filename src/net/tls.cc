// TLS context construction and SNI selection, and the dev self-signed
// certificate. All OpenSSL handles are owned by RAII wrappers; errors come
// back as values naming the file and OpenSSL's reason.
#include "net/tls.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "common/mutex.h"
#include "common/strings.h"

namespace tern::net {
namespace {

// TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are
// all acceptable and keep OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct FileClose {
  void operator()(FILE* f) const { std::fclose(f); }
};
struct NamesFree {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using FilePtr = std::unique_ptr<FILE, FileClose>;

// The most recent OpenSSL error, and the queue cleared.
std::string SslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

// DNS names a certificate is for: subjectAltName DNS entries, or the
// subject CN when there are none (RFC 6125 6.4.4).
std::vector<std::string> CertificateNames(X509* cert) {
  std::vector<std::string> names;
  std::unique_ptr<GENERAL_NAMES, NamesFree> sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      names.push_back(ToLower(std::string_view(
          reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<size_t>(ASN1_STRING_length(s)))));
    }
  }
  if (names.empty()) {
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
                                      NID_commonName, cn, sizeof cn);
    if (n > 0) names.push_back(ToLower(std::string_view(cn, n)));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<X509Ptr> ReadCertificate(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "r"));
  if (!f) return Err("tls cert " + path + ": " + std::strerror(errno));
  X509Ptr cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return Err("tls cert " + path + ": " + SslError());
  return cert;
}

// A fresh context with our protocol rules.
// RFC 7301 3.2: the server picks a protocol the client offered, or none
// (NOACK: the handshake goes on without ALPN, which is what every mail
// client expects). Only ACME's "acme-tls/1" is ever picked, and only
// while a TLS-ALPN-01 challenge for the requested name is pending.
int OnAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
           const unsigned char* in, unsigned int inlen, void*) {
  static constexpr std::string_view kAcme = "acme-tls/1";
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    std::string_view proto(reinterpret_cast<const char*>(in + i + 1), len);
    if (proto == kAcme) {
      const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      if (name == nullptr || !AlpnChallenges::Get().Apply(ssl, ToLower(name))) {
        return SSL_TLSEXT_ERR_NOACK;
      }
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

Result<std::unique_ptr<asio::ssl::context>> NewContext() {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  // RFC 8996 retires TLS 1.0/1.1; RFC 9325 4.1 recommends 1.2 and 1.3.
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1) {
    return Err("tls: " + SslError());
  }
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                             SSL_OP_NO_RENEGOTIATION);
  // Idle sessions are the common case: give OpenSSL's record buffers back
  // whenever they are empty (net::Stream keeps no buffers of its own), so
  // an idle session holds only its connection state. Read-ahead fills the
  // read buffer with whatever the socket has: one read() per record, or
  // several records, instead of a header read and a body read.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(c, 1);
  // Session resumption through tickets keeps repeat handshakes cheap; the
  // id context is required once resumption is on.
  static const unsigned char kSid[] = "tern-smtp";
  SSL_CTX_set_session_id_context(c, kSid, sizeof kSid - 1);
  // One TLS 1.3 ticket per full handshake instead of OpenSSL's two (RFC
  // 8446 4.6.1 leaves the number to the server): mail clients resume one
  // session at a time, and each ticket costs an encryption and a record.
  // A resumed handshake gets its one new ticket as before.
  SSL_CTX_set_num_tickets(c, 1);
  SSL_CTX_set_alpn_select_cb(c, &OnAlpn, nullptr);
  return ctx;
}

}  // namespace

Result<std::shared_ptr<TlsContexts>> TlsContexts::Load(
    const std::vector<CertificateFiles>& certificates) {
  if (certificates.empty()) return Err("tls: no certificates configured");
  std::shared_ptr<TlsContexts> set(new TlsContexts());
  std::vector<std::vector<std::string>> context_names;
  for (const CertificateFiles& c : certificates) {
    auto cert = ReadCertificate(c.cert);
    if (!cert) return Err(cert.error().message);
    std::vector<std::string> names = CertificateNames(cert->get());
    auto same = std::find(context_names.begin(), context_names.end(), names);
    size_t index = static_cast<size_t>(same - context_names.begin());
    if (same == context_names.end()) {
      auto ctx = NewContext();
      if (!ctx) return Err(ctx.error().message);
      set->contexts_.push_back(std::move(*ctx));
      context_names.push_back(names);
    }
    // A second pair for the same names adds its key type (RSA beside
    // ECDSA); OpenSSL keeps one certificate per key type in a context.
    SSL_CTX* ctx = set->contexts_[index]->native_handle();
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      return Err("tls cert " + c.cert + ": " + SslError());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Err("tls key " + c.key + ": " + SslError());
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return Err("tls key " + c.key + " does not match " + c.cert + ": " +
                 SslError());
    }
    for (const std::string& n : names) {
      if (set->by_name_.emplace(n, index).second) set->names_.push_back(n);
    }
  }
  for (auto& ctx : set->contexts_) {
    SSL_CTX_set_tlsext_servername_callback(ctx->native_handle(),
                                           &TlsContexts::OnServerName);
    SSL_CTX_set_tlsext_servername_arg(ctx->native_handle(), set.get());
  }
  return set;
}

SSL_CTX* TlsContexts::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    // RFC 6125 6.4.3: a wildcard matches exactly one leftmost label.
    size_t dot = name.find('.');
    if (dot != std::string::npos) it = by_name_.find("*" + name.substr(dot));
  }
  return it == by_name_.end() ? nullptr : contexts_[it->second]->native_handle();
}

int TlsContexts::OnServerName(SSL* ssl, int* alert, void* arg) {
  const auto* self = static_cast<const TlsContexts*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  // No or unknown name: keep the default certificate rather than fail;
  // SMTP clients rarely verify names, and a refusal helps nobody.
  if (name == nullptr || self->contexts_.size() < 2) return SSL_TLSEXT_ERR_OK;
  SSL_CTX* ctx = self->Find(ToLower(name));
  if (ctx != nullptr && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

struct AlpnChallenges::State {
  Mutex mu;
  std::unordered_map<std::string, std::pair<X509Ptr, PkeyPtr>> by_name GUARDED_BY(mu);
};

AlpnChallenges::AlpnChallenges() : state_(std::make_shared<State>()) {}

AlpnChallenges& AlpnChallenges::Get() {
  static AlpnChallenges* challenges = new AlpnChallenges();  // never destroyed
  return *challenges;
}

Result<void> AlpnChallenges::Set(const std::string& name, const std::string& cert_pem,
                                 const std::string& key_pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> cb(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), &BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> kb(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), &BIO_free);
  X509Ptr cert(cb ? PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr) : nullptr);
  PkeyPtr key(kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert || !key) return Err("acme challenge certificate: " + SslError());
  MutexLock lock(state_->mu);
  state_->by_name[ToLower(name)] = {std::move(cert), std::move(key)};
  return {};
}

void AlpnChallenges::Clear(const std::string& name) {
  MutexLock lock(state_->mu);
  state_->by_name.erase(ToLower(name));
}

bool AlpnChallenges::Apply(SSL* ssl, const std::string& name) {
  MutexLock lock(state_->mu);
  auto it = state_->by_name.find(name);
  if (it == state_->by_name.end()) return false;
  // The ALPN callback runs before the certificate is chosen for the
  // handshake, so this one is what the validator sees.
  return SSL_use_certificate(ssl, it->second.first.get()) == 1 &&
         SSL_use_PrivateKey(ssl, it->second.second.get()) == 1;
}

Result<SelfSignedPem> MakeSelfSigned(const std::string& name, long days,
                                     const std::vector<RawExtension>& extensions) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  if (!key || !cert) return Err("tls self-signed: " + SslError());
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // RFC 5280 4.1.2.2: positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = bn != nullptr && X509_set_version(cert.get(), 2) == 1 &&
            BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
       X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * 86400) != nullptr &&
       X509_set_pubkey(cert.get(), key.get()) == 1;
  X509_NAME* subject = X509_get_subject_name(cert.get());
  ok = ok &&
       X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>(name.c_str()), -1,
                                  -1, 0) == 1 &&
       X509_set_issuer_name(cert.get(), subject) == 1;
  if (ok) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
    std::string san = "DNS:" + name;
    X509_EXTENSION* ext =
        X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str());
    ok = ext != nullptr && X509_add_ext(cert.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
  }
  for (const RawExtension& e : extensions) {
    if (!ok) break;
    ASN1_OBJECT* oid = OBJ_txt2obj(e.oid.c_str(), 1);
    ASN1_OCTET_STRING* value = ASN1_OCTET_STRING_new();
    X509_EXTENSION* ext = nullptr;
    if (oid != nullptr && value != nullptr &&
        ASN1_OCTET_STRING_set(value, reinterpret_cast<const unsigned char*>(e.der.data()),
                              static_cast<int>(e.der.size())) == 1) {
      ext = X509_EXTENSION_create_by_OBJ(nullptr, oid, e.critical ? 1 : 0, value);
    }
    ok = ext != nullptr && X509_add_ext(cert.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(value);
    ASN1_OBJECT_free(oid);
  }
  ok = ok && X509_sign(cert.get(), key.get(), EVP_sha256()) > 0;
  if (!ok) return Err("tls self-signed: " + SslError());
  auto pem = [](auto write) -> std::string {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    if (!bio || !write(bio.get())) return {};
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
  };
  SelfSignedPem out;
  out.cert = pem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()) == 1; });
  out.key = pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
  if (out.cert.empty() || out.key.empty()) return Err("tls self-signed: " + SslError());
  return out;
}

Result<CertificateFiles> EnsureSelfSigned(const std::string& dir,
                                             const std::string& hostname,
                                             bool* created) {
  *created = false;
  CertificateFiles out{dir + "/cert.pem", dir + "/key.pem"};
  std::error_code ec;
  if (std::filesystem::exists(out.cert, ec) && std::filesystem::exists(out.key, ec)) {
    return out;
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return Err("tls dir " + dir + ": " + ec.message());
  chmod(dir.c_str(), 0700);

  auto made = MakeSelfSigned(hostname, 3650);
  if (!made) return Err(made.error().message);
  // The key file is created 0600 before anything is written into it.
  std::string key_tmp = out.key + ".tmp", cert_tmp = out.cert + ".tmp";
  for (const auto& [path, text, mode] :
       {std::tuple(key_tmp, &made->key, 0600), std::tuple(cert_tmp, &made->cert, 0644)}) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return Err("tls self-signed " + path + ": " + std::strerror(errno));
    bool ok = ::write(fd, text->data(), text->size()) == static_cast<ssize_t>(text->size());
    ::close(fd);
    if (!ok) return Err("tls self-signed: cannot write " + path);
  }
  std::filesystem::rename(key_tmp, out.key, ec);
  if (!ec) std::filesystem::rename(cert_tmp, out.cert, ec);
  if (ec) return Err("tls self-signed: " + ec.message());
  *created = true;
  return out;
}

}  // namespace tern::net
