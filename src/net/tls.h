// Server TLS contexts (OpenSSL 3 through asio::ssl): TLS 1.2 and 1.3 only,
// server cipher preference, RSA and ECDSA certificates side by side, and
// SNI choosing among certificates. A set is immutable once built; SIGHUP
// builds a new one while sessions keep the set they started with.
#pragma once

#include <asio/ssl.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"

namespace tern::net {

// One certificate chain and its key, as PEM file names.
struct CertificateFiles {
  std::string cert;
  std::string key;
};

class TlsContexts {
 public:
  // Loads every certificate/key pair. Pairs naming the same hosts share
  // one context (OpenSSL then picks RSA or ECDSA per client); other pairs
  // get their own context, chosen by SNI. The first pair is the default
  // for clients that send no (or an unknown) server name.
  static Result<std::shared_ptr<TlsContexts>> Load(
      const std::vector<CertificateFiles>& certificates);

  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  // The context new connections start with; SNI may switch it.
  asio::ssl::context& default_context() { return *contexts_.front(); }
  // Names covered, for the log ("mx.example.test", "*.example.test").
  const std::vector<std::string>& names() const { return names_; }

 private:
  TlsContexts() = default;
  static int OnServerName(SSL* ssl, int* alert, void* arg);
  SSL_CTX* Find(const std::string& name) const;

  std::vector<std::unique_ptr<asio::ssl::context>> contexts_;
  std::unordered_map<std::string, size_t> by_name_;  // lower-case names
  std::vector<std::string> names_;
};

// ACME TLS-ALPN-01 (RFC 8737): while a challenge for `name` is pending,
// a handshake that offers ALPN "acme-tls/1" with that server name gets
// the challenge certificate instead of the server's own, and the
// protocol is selected (3: nothing else may be sent on it; the validator
// just closes). Every context TlsContexts builds consults this set.
class AlpnChallenges {
 public:
  static AlpnChallenges& Get();
  // PEM certificate and key made by the ACME client; replaces any for
  // the same name.
  Result<void> Set(const std::string& name, const std::string& cert_pem,
                   const std::string& key_pem);
  void Clear(const std::string& name);
  // From the ALPN callback: true when a challenge for `name` exists (the
  // certificate is then installed on `ssl`).
  bool Apply(SSL* ssl, const std::string& name);

 private:
  AlpnChallenges();
  struct State;
  std::shared_ptr<State> state_;
};

// A self-signed ECDSA P-256 certificate for `name` (its subject CN and
// only subjectAltName dNSName), valid from an hour ago for `days` days,
// with `extensions` added: PEM certificate and PEM (PKCS#8) key.
struct RawExtension {
  std::string oid;    // dotted, "1.3.6.1.5.5.7.1.31"
  bool critical = false;
  std::string der;    // the extension value (extnValue's content)
};
struct SelfSignedPem {
  std::string cert;
  std::string key;
};
Result<SelfSignedPem> MakeSelfSigned(const std::string& name, long days,
                                     const std::vector<RawExtension>& extensions = {});

// Makes sure `dir` holds a self-signed ECDSA P-256 certificate for
// `hostname` (cert.pem, key.pem with mode 0600), creating it if missing.
// Sets *created when it made a new one.
Result<CertificateFiles> EnsureSelfSigned(const std::string& dir,
                                             const std::string& hostname,
                                             bool* created);

}  // namespace tern::net
