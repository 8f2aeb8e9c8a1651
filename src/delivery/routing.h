// Where mail for a domain goes (RFC 5321 5.1): configured routes
// (smarthost, per-domain relays) first, else the domain's MX hosts in
// preference order, else the domain itself (implicit MX). Pure functions;
// the lookups themselves happen in outbound.cc.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "dns/resolver.h"
#include "smtp/client/session.h"

namespace tern::delivery {

struct RouteConfig {
  std::string domain;      // lower case; "*" for the default route
  std::string relay_host;  // name or IP literal
  uint16_t relay_port = 25;
  smtp::client::TlsPolicy tls = smtp::client::TlsPolicy::kOpportunistic;
  std::string auth_user;   // empty: no AUTH
  std::string auth_password;
  std::string ca_file;     // extra trusted CAs for this relay
};

// The route for a recipient domain: an exact [[route]] first, then the
// default ("*"); null when mail goes to the domain's MX hosts.
const RouteConfig* FindRoute(const std::vector<RouteConfig>& routes,
                             const std::string& domain);

struct MxPlan {
  enum class Kind { kHosts, kNullMx, kUnusable };
  Kind kind = Kind::kHosts;
  std::vector<std::string> hosts;  // in the order to try
  bool implicit = false;           // no MX: the domain itself
  std::string error;               // for kUnusable
};

// Orders the MX records of an answer with status kOk: ascending preference,
// random order among equal preferences (RFC 5321 5.1). No records means the
// implicit MX; a lone "0 ." is a null MX (RFC 7505 3).
MxPlan PlanMx(const dns::Answer& answer, const std::string& domain,
              std::mt19937& rng);

// RFC 5321 5.1: "If the SMTP client finds that it is itself an MX host
// for the domain (i.e. its own name is among the exchanges), it MUST discard
// that record and every record with an equal or higher preference number."
// `self` is our host name. Returns true when it was among the exchanges
// (then only better hosts remain, possibly none: a routing loop, 5.4.6).
bool DropSelfAndWorseMx(std::vector<dns::MxRecord>& records,
                        std::string_view self);

// Host names compared as DNS does: ASCII case folded, a trailing dot
// ignored.
bool SameHostName(std::string_view a, std::string_view b);

// The domain part of an address, lower case ("" when there is none).
std::string DomainOf(const std::string& address);

bool IsIpLiteral(const std::string& host);

// "smtp.provider.test:587" / "[192.0.2.1]:25" / "host" -> host and port.
bool ParseHostPort(const std::string& text, uint16_t default_port,
                   std::string* host, uint16_t* port);

}  // namespace tern::delivery
