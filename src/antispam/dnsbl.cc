#include "antispam/dnsbl.h"

#include "common/cidr.h"
#include "common/strings.h"

// g++ 12 with -fsanitize inlines these coroutine ramps and then reports
// asio's frame allocation (aligned_alloc in its operator new) as
// mismatched with its operator delete: a false positive, as in
// mailauth/spf.cc; both go through asio's own pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace tern::antispam {
namespace {

constexpr size_t kMaxReason = 200;  // octets of a list's TXT text in a reply

}  // namespace

std::string DnsListQueryName(std::string_view ip, std::string_view zone) {
  std::optional<IpOctets> a = ParseClientAddress(ip);
  if (!a) return "";
  std::string out;
  if (IsIpv4(*a)) {
    // RFC 5782 2.1: 192.0.2.99 -> 99.2.0.192.zone
    for (int i = 15; i >= 12; --i) out += std::to_string((*a)[i]) + ".";
  } else {
    // RFC 5782 2.4: every nibble, least significant first.
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      out += kHex[(*a)[i] & 0xf];
      out += '.';
      out += kHex[(*a)[i] >> 4];
      out += '.';
    }
  }
  return out + std::string(zone);
}

ListAnswer ClassifyListAnswer(std::string_view zone, const dns::Answer& answer) {
  ListAnswer out;
  out.zone = std::string(zone);
  if (answer.status == dns::Status::kNxDomain) return out;
  if (answer.status == dns::Status::kTempFail) {
    out.kind = ListAnswer::Kind::kError;
    out.error = answer.error.empty() ? "lookup failed" : answer.error;
    return out;
  }
  for (const std::string& a : answer.addresses) {
    std::optional<IpOctets> parsed = ParseClientAddress(a);
    if (!parsed || !IsIpv4(*parsed) || (*parsed)[12] != 127) {
      out.kind = ListAnswer::Kind::kError;
      out.error = "answer " + a + " is outside 127.0.0.0/8";
      out.codes.clear();
      return out;
    }
    if ((*parsed)[13] == 255 && (*parsed)[14] == 255) {
      // The list refuses this resolver (Spamhaus: 127.255.255.252-255).
      out.kind = ListAnswer::Kind::kError;
      out.error = "the list refused the query (" + a + ")";
      out.codes.clear();
      return out;
    }
    out.codes.push_back(a);
  }
  if (!out.codes.empty()) out.kind = ListAnswer::Kind::kListed;
  return out;
}

asio::awaitable<ListAnswer> QueryList(dns::Resolver& resolver, std::string ip,
                                      std::string zone, bool want_reason) {
  std::string name = DnsListQueryName(ip, zone);
  if (name.empty()) {
    ListAnswer bad;
    bad.zone = zone;
    bad.kind = ListAnswer::Kind::kError;
    bad.error = "no list query for address " + ip;
    co_return bad;
  }
  dns::Answer a = co_await dns::AsyncQuery(resolver, name, dns::RrType::kA, asio::use_awaitable);
  ListAnswer out = ClassifyListAnswer(zone, a);
  if (out.kind == ListAnswer::Kind::kListed && want_reason) {
    // RFC 5782 2.1: the TXT record at the same name may say why.
    dns::Answer t =
        co_await dns::AsyncQuery(resolver, name, dns::RrType::kTxt, asio::use_awaitable);
    if (t.status == dns::Status::kOk && !t.txt.empty()) out.reason = t.txt.front();
  }
  co_return out;
}

void Prefetch(dns::Resolver& resolver, std::string_view ip,
              const std::vector<std::string>& zones) {
  for (const std::string& zone : zones) {
    std::string name = DnsListQueryName(ip, zone);
    if (!name.empty()) resolver.Query(name, dns::RrType::kA, [](dns::Answer) {});
  }
}

asio::awaitable<ClientListing> CheckClientLists(dns::Resolver& resolver, std::string ip,
                                                std::vector<std::string> dnswl,
                                                std::vector<std::string> dnsbl) {
  ClientListing out;
  for (const std::string& zone : dnswl) {
    ListAnswer a = co_await QueryList(resolver, ip, zone, false);
    if (a.kind == ListAnswer::Kind::kListed) {
      out.allowed_by = zone;
      co_return out;
    }
    if (a.kind == ListAnswer::Kind::kError) out.errors.push_back(std::move(a));
  }
  for (const std::string& zone : dnsbl) {
    ListAnswer a = co_await QueryList(resolver, ip, zone);
    if (a.kind == ListAnswer::Kind::kListed) {
      out.blocked = std::move(a);
      co_return out;
    }
    if (a.kind == ListAnswer::Kind::kError) out.errors.push_back(std::move(a));
  }
  co_return out;
}

std::string DnsblRefusal(std::string_view ip, const ListAnswer& listing) {
  std::string out = "554 5.7.1 Service unavailable; client [" + std::string(ip) +
                    "] blocked using " + ToLower(listing.zone);
  if (!listing.reason.empty()) {
    std::string reason;
    for (char c : listing.reason) {
      if (reason.size() >= kMaxReason) break;
      reason += (c >= 0x20 && c < 0x7f) ? c : ' ';
    }
    out += "; " + reason;
  }
  return out;
}

}  // namespace tern::antispam
