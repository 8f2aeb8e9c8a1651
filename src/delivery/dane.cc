// The RFC 7672 decision table and OpenSSL's DANE verifier (libssl has
// RFC 7671 matching built in since 1.1.0: SSL_dane_enable and friends).
#include "delivery/dane.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace tern::delivery {
namespace {

// RFC 6698 2.1.1 / RFC 7218 mnemonics.
constexpr uint8_t kDaneTa = 2;
constexpr uint8_t kDaneEe = 3;

}  // namespace

const char* DaneStateName(DaneState state) {
  switch (state) {
    case DaneState::kDane:
      return "dane";
    case DaneState::kUnusable:
      return "dane-unusable";
    case DaneState::kFail:
      return "dane-fail";
    case DaneState::kNone:
      break;
  }
  return "none";
}

std::string TlsaName(uint16_t port, const std::string& host) {
  return "_" + std::to_string(port) + "._tcp." + host;
}

bool UsableTlsa(const dns::TlsaRecord& r) {
  if (r.usage != kDaneTa && r.usage != kDaneEe) return false;
  if (r.selector > 1) return false;
  switch (r.mtype) {
    case 0:
      return !r.data.empty();
    case 1:
      return r.data.size() == 32;
    case 2:
      return r.data.size() == 64;
    default:
      return false;
  }
}

bool NeedTlsaLookup(dns::Security mx, dns::Security address, std::string* why) {
  std::string reason;
  // RFC 7672 2.2.1 lets a client use DANE even below an insecure MX RRset;
  // like Postfix we do not: an attacker who can forge the MX can name a
  // host of his own, with TLSA records of his own.
  if (mx != dns::Security::kSecure) {
    reason = std::string("MX answer ") + dns::SecurityName(mx);
  } else if (address != dns::Security::kSecure) {
    // RFC 7672 2.2.2: no TLSA lookup below insecure address records.
    reason = std::string("address answer ") + dns::SecurityName(address);
  }
  if (why != nullptr) *why = reason;
  return reason.empty();
}

DaneDecision DecideDane(dns::Security mx, dns::Security address,
                        const dns::Answer* tlsa) {
  DaneDecision d;
  if (!NeedTlsaLookup(mx, address, &d.why) || tlsa == nullptr) {
    if (d.why.empty()) d.why = "no TLSA lookup";
    return d;
  }
  // RFC 7672 2.1.1: bogus is checked before anything else; bogus and
  // failed lookups (SERVFAIL, timeout) leave the host unusable: it may be
  // an attacker hiding the records, and plain text would be a downgrade.
  if (tlsa->security == dns::Security::kBogus) {
    d.state = DaneState::kFail;
    d.why = "TLSA answer bogus" +
            (tlsa->error.empty() ? std::string() : ": " + tlsa->error);
    return d;
  }
  if (tlsa->status == dns::Status::kTempFail) {
    d.state = DaneState::kFail;
    d.why = "TLSA lookup failed" +
            (tlsa->error.empty() ? std::string() : ": " + tlsa->error);
    return d;
  }
  // RFC 7672 2.2: insecure TLSA records (or an insecure denial) are as
  // good as none.
  if (tlsa->security != dns::Security::kSecure) {
    d.why = "TLSA answer insecure";
    return d;
  }
  if (tlsa->status == dns::Status::kNxDomain || tlsa->tlsa.empty()) {
    d.why = "no TLSA records";
    return d;
  }
  for (const dns::TlsaRecord& r : tlsa->tlsa) {
    if (UsableTlsa(r)) d.records.push_back(r);
  }
  if (d.records.empty()) {
    // RFC 7672 3.1: the server still promised TLS; with nothing to check
    // the certificate against, the client insists on encryption only.
    d.state = DaneState::kUnusable;
    d.why = "no usable TLSA record (TLS required, unauthenticated)";
    return d;
  }
  d.state = DaneState::kDane;
  d.why = std::to_string(d.records.size()) + " usable TLSA record" +
          (d.records.size() == 1 ? "" : "s");
  return d;
}

bool EnableDane(SSL_CTX* ctx) { return SSL_CTX_dane_enable(ctx) > 0; }

std::string ArmDane(SSL* ssl, const DaneDecision& decision,
                    const std::string& host, const std::string& domain) {
  // RFC 7672 8.1: SNI carries the MX host name (the TLSA base domain).
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1)
    return "cannot set SNI " + host;
  // Also makes `host` the first reference identifier (DANE-TA name check).
  if (SSL_dane_enable(ssl, host.c_str()) <= 0)
    return "cannot enable DANE for " + host;
  // RFC 7672 3.2.2: the next-hop domain is a reference identifier too.
  if (!domain.empty() && domain != host && SSL_add1_host(ssl, domain.c_str()) != 1)
    return "cannot add reference identifier " + domain;
  // RFC 7672 3.1.1: for DANE-EE neither names nor dates are checked.
  SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
  int added = 0;
  for (const dns::TlsaRecord& r : decision.records) {
    // The RFC 7671 rules are OpenSSL's: a record it rejects (0) is skipped,
    // a broken one (< 0) ends the attempt.
    int rc = SSL_dane_tlsa_add(
        ssl, r.usage, r.selector, r.mtype,
        reinterpret_cast<const unsigned char*>(r.data.data()), r.data.size());
    if (rc < 0) return "TLSA record rejected by the TLS library";
    if (rc > 0) ++added;
  }
  if (added == 0) return "no TLSA record usable by the TLS library";
  return "";
}

DaneResult CheckDane(SSL* ssl) {
  DaneResult out;
  if (SSL_get0_peer_certificate(ssl) == nullptr) {
    out.text = "no server certificate";
    return out;
  }
  long vr = SSL_get_verify_result(ssl);
  if (vr != X509_V_OK) {
    out.text = X509_verify_cert_error_string(vr);
    return out;
  }
  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t mtype = 0;
  if (SSL_get0_dane_authority(ssl, nullptr, nullptr) < 0 ||
      SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, nullptr, nullptr) < 0) {
    out.text = "no TLSA record matched";
    return out;
  }
  out.ok = true;
  out.text = usage == kDaneEe ? "dane-ee" : "dane-ta";
  return out;
}

}  // namespace tern::delivery
