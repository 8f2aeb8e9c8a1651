// DANE for outbound SMTP (RFC 7672, on RFC 6698 and RFC 7671): which MX
// hosts must be reached over TLS authenticated by their TLSA records, and
// the OpenSSL calls that do the authentication. The decision is a pure
// function of the DNSSEC status of the MX, address and TLSA answers; the
// lookups themselves happen in outbound.cc.
#pragma once

#include <openssl/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dns/resolver.h"

namespace tern::delivery {

enum class DaneState {
  // No DANE for this host (insecure MX or addresses, no TLSA records, an
  // insecure TLSA answer): opportunistic TLS, as without DANE.
  kNone,
  // Usable TLSA records (RFC 7672 2.2, 3.1): TLS is mandatory and the
  // certificate must match one of them; no plain text, ever.
  kDane,
  // A secure, non-empty TLSA RRset none of whose records is usable (RFC
  // 7672 3.1, RFC 7671 4.1): the host committed to TLS, so TLS is
  // mandatory, but there is nothing to authenticate against.
  kUnusable,
  // The TLSA lookup failed or was bogus although the addresses were
  // secure (RFC 7672 2.1.1, 2.2.3): this host is not used at all.
  kFail,
};

const char* DaneStateName(DaneState state);

struct DaneDecision {
  DaneState state = DaneState::kNone;
  std::vector<dns::TlsaRecord> records;  // the usable ones (kDane)
  // Why DANE applies or not, for the log and the trace ("insecure MX",
  // "no TLSA records", "1 usable TLSA record", ...).
  std::string why;

  // A host that must never see a message in plain text, and may not be
  // retried without TLS after a failed handshake.
  bool tls_required() const {
    return state == DaneState::kDane || state == DaneState::kUnusable;
  }
};

// RFC 6698 3 / RFC 7672 2.2.3: "_25._tcp.mx.example.org".
std::string TlsaName(uint16_t port, const std::string& host);

// RFC 7672 3.1: only DANE-TA(2) and DANE-EE(3) apply to SMTP (PKIX-TA(0)
// and PKIX-EE(1) are unusable there); selectors Cert(0) and SPKI(1);
// matching types Full(0), SHA2-256(1) (32 octets) and SHA2-512(2) (64
// octets). A digest of the wrong length can match nothing.
bool UsableTlsa(const dns::TlsaRecord& record);

// RFC 7672 2.2.1 / 2.2.2: TLSA records are looked up only when the MX
// answer and the host's address answers are all DNSSEC-secure. `why` (when
// not null) says why not.
bool NeedTlsaLookup(dns::Security mx, dns::Security address, std::string* why);

// The decision for one MX host. `tlsa` is the answer for TlsaName(...), or
// null when NeedTlsaLookup said no lookup was needed.
DaneDecision DecideDane(dns::Security mx, dns::Security address,
                        const dns::Answer* tlsa);

// OpenSSL. Once per client context, before any DANE connection.
bool EnableDane(SSL_CTX* ctx);

// Before the handshake on a kDane connection: SNI and DANE base domain =
// the MX host name (RFC 7672 3.2.2), its usable records, no name checks
// for DANE-EE (RFC 7672 3.1.1), and for DANE-TA the reference identifiers
// MX host name and next-hop domain (RFC 7672 3.2.2). Returns "" or what
// went wrong.
std::string ArmDane(SSL* ssl, const DaneDecision& decision,
                    const std::string& host, const std::string& domain);

struct DaneResult {
  bool ok = false;
  // "dane-ee" / "dane-ta" (which usage matched), or why nothing did.
  std::string text;
};

// After the handshake: authenticated only when the chain verified and a
// TLSA record matched (RFC 7672 3.1).
DaneResult CheckDane(SSL* ssl);

}  // namespace tern::delivery
