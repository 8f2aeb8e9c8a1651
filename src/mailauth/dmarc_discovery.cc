// DMARC policy discovery (RFC 7489 6.6.3) through the asynchronous
// resolver, and CheckDmarc(), discovery followed by the verdict. Kept apart
// from dmarc.cc so that the parser and the verdict build without Asio.
#include <string>
#include <utility>
#include <vector>

#include <asio.hpp>

#include "common/strings.h"
#include "dns/resolver.h"
#include "mailauth/dmarc.h"

namespace tern::mailauth {
namespace {

struct RecordSet {
  bool temp_error = false;
  std::string error;
  std::vector<DmarcRecord> records;
};

// The DMARC records at `_dmarc.<domain>`: TXT records that are not
// DMARC's are dropped (6.6.3 steps 2 and 4); NXDOMAIN and NODATA are an
// empty set.
asio::awaitable<RecordSet> QueryRecords(dns::Resolver& resolver,
                                        std::string domain) {
  RecordSet set;
  std::string name = "_dmarc." + domain;
  // RFC 1035 2.3.4: a longer name cannot exist.
  if (name.size() > 253) co_return set;
  dns::Answer answer = co_await dns::AsyncQuery(
      resolver, name, dns::RrType::kTxt, asio::use_awaitable);
  if (answer.status == dns::Status::kTempFail) {
    set.temp_error = true;
    set.error = "DNS lookup of " + name + " failed: " + answer.error;
    co_return set;
  }
  if (answer.status != dns::Status::kOk) co_return set;
  for (const std::string& txt : answer.txt) {
    if (auto record = ParseDmarcRecord(txt)) {
      set.records.push_back(std::move(*record));
    }
  }
  co_return set;
}

}  // namespace

asio::awaitable<DmarcLookup> DiscoverDmarc(dns::Resolver& resolver,
                                           std::string from_domain) {
  if (!from_domain.empty() && from_domain.back() == '.') from_domain.pop_back();
  from_domain = ToLower(from_domain);
  DmarcLookup lookup;
  if (!IsDnsDomainName(from_domain)) {
    lookup.detail = "the From domain is not a DNS domain name";
    co_return lookup;
  }
  // Step 1: the From domain itself.
  RecordSet set = co_await QueryRecords(resolver, from_domain);
  std::string where = from_domain;
  if (set.temp_error) {
    lookup.status = DmarcLookup::Status::kTempError;
    lookup.detail = std::move(set.error);
    co_return lookup;
  }
  // Step 3: only an empty set falls back to the organizational domain;
  // several records at the From domain end discovery (step 5).
  if (set.records.empty()) {
    std::string org = OrganizationalDomain(from_domain);
    if (org != from_domain) {
      set = co_await QueryRecords(resolver, org);
      where = org;
      if (set.temp_error) {
        lookup.status = DmarcLookup::Status::kTempError;
        lookup.detail = std::move(set.error);
        co_return lookup;
      }
    }
  }
  // Step 5: none, or more than one, means no DMARC for this message.
  if (set.records.empty()) {
    lookup.detail = "no DMARC record";
    co_return lookup;
  }
  if (set.records.size() > 1) {
    lookup.detail = "several DMARC records at _dmarc." + where;
    co_return lookup;
  }
  lookup.status = DmarcLookup::Status::kFound;
  lookup.record = std::move(set.records.front());
  lookup.record_domain = std::move(where);
  co_return lookup;
}

asio::awaitable<DmarcOutcome> CheckDmarc(dns::Resolver& resolver,
                                         DmarcInput input, PercentRoll roll) {
  // DiscoverDmarc asks nothing for a From domain that is no DNS name, and
  // EvaluateDmarc makes that a permerror. (An `if` around this co_await
  // made g++ 12 warn about a mismatched delete of the frame.)
  DmarcLookup lookup = co_await DiscoverDmarc(resolver, input.from_domain);
  co_return EvaluateDmarc(input, lookup, roll);
}

}  // namespace tern::mailauth
