// DNS blocklists and allowlists (RFC 5782): is the connecting client's
// address listed under a zone such as zen.spamhaus.org? The SMTP
// connection asks at connect (Prefetch: the answers wait in the resolver's
// TTL cache) and decides at RCPT (CheckClientLists), so a refused client
// learns why in the reply to its first recipient.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio.hpp>

#include "dns/resolver.h"

namespace tern::antispam {

// RFC 5782 2.1 and 2.4: the name to ask about `ip` under `zone`: an IPv4
// address's octets reversed ("2.0.0.127.zone"), an IPv6 address's 32
// nibbles reversed; an IPv4-mapped IPv6 address as IPv4. Empty when `ip`
// does not parse.
std::string DnsListQueryName(std::string_view ip, std::string_view zone);

struct ListAnswer {
  enum class Kind { kNotListed, kListed, kError };
  Kind kind = Kind::kNotListed;
  std::string zone;
  std::vector<std::string> codes;  // kListed: the 127.0.0.x answers
  std::string reason;              // kListed: the list's TXT text, if any
  std::string error;               // kError: why no answer counts
};

// RFC 5782 2.3: what an A answer for a list query means. NXDOMAIN or no
// address: not listed. Addresses in 127.0.0.0/8: listed, except
// 127.255.255.0/24, which lists use to refuse the query (an open resolver,
// too many queries): that, an address outside 127/8 (a wildcard or a
// hijacking resolver) and a failed lookup are errors, never listings.
ListAnswer ClassifyListAnswer(std::string_view zone, const dns::Answer& answer);

// Asks the A records (and, when listed and `want_reason`, the TXT
// reason) of `ip` in `zone`.
asio::awaitable<ListAnswer> QueryList(dns::Resolver& resolver, std::string ip,
                                      std::string zone, bool want_reason = true);

// Starts the A queries of every list without waiting: the resolver's
// cache holds the answers (or shares the queries still in flight) when
// CheckClientLists asks again.
void Prefetch(dns::Resolver& resolver, std::string_view ip,
              const std::vector<std::string>& zones);

struct ClientListing {
  std::string allowed_by;             // the first dnswl zone listing it
  std::optional<ListAnswer> blocked;  // the first dnsbl zone listing it
  std::vector<ListAnswer> errors;     // lists that gave no usable answer
};

// The allowlists first: a client on one is not looked up in blocklists.
asio::awaitable<ClientListing> CheckClientLists(dns::Resolver& resolver, std::string ip,
                                                std::vector<std::string> dnswl,
                                                std::vector<std::string> dnsbl);

// "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using ZONE"
// and the list's reason (RFC 3463 5.7.1: delivery not authorized), as one
// reply line without CRLF; the reason is cut and cleaned to printable
// ASCII, since it comes from whoever runs the list.
std::string DnsblRefusal(std::string_view ip, const ListAnswer& listing);

}  // namespace tern::antispam
