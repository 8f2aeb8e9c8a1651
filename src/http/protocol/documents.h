// What Tern's web listeners tell mail clients and sending servers, as pure
// functions of the mail endpoints: Thunderbird autoconfig, Microsoft
// Autodiscover (the "POX" form Outlook and many mobile clients use),
// Apple configuration profiles and the MTA-STS policy (RFC 8461 3.2).
// The connection (http/server/) decides which domain a request is for.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::http {

// Where the mail services of a domain are reached; a port of 0 means the
// service is not offered (no such listener).
struct MailEndpoints {
  std::string domain;    // the mail domain, "example.org"
  std::string hostname;  // the server's name (its certificate's)
  uint16_t imaps = 0;        // implicit TLS (RFC 8314)
  uint16_t imap = 0;         // STARTTLS
  uint16_t pop3s = 0;
  uint16_t pop3 = 0;
  uint16_t submissions = 0;  // implicit TLS
  uint16_t submission = 0;   // STARTTLS
};

// Text for XML character data and attribute values (&, <, >, ", ').
std::string XmlEscape(std::string_view text);

// Thunderbird's autoconfig file (config-v1.1.xml): each offered service,
// implicit TLS first; the login is the whole address (%EMAILADDRESS%).
std::string AutoconfigXml(const MailEndpoints& m);

// The EMailAddress of an Autodiscover request body (the Outlook 2006
// request schema), or nullopt when there is none.
std::optional<std::string> AutodiscoverRequestEmail(std::string_view body);

// The Autodiscover answer (Outlook 2006a response schema) for `email`.
std::string AutodiscoverXml(const MailEndpoints& m, std::string_view email);

// An unsigned Apple configuration profile (.mobileconfig plist) with one
// IMAP account for `email` (POP3 when no IMAP is offered). Its UUIDs are
// derived from the address, so a second download replaces the first.
std::string MobileConfig(const MailEndpoints& m, std::string_view email);

// RFC 8461 3.2: the policy file served at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
std::string MtaStsPolicy(std::string_view mode, const std::vector<std::string>& mx,
                         uint32_t max_age);

}  // namespace tern::http
