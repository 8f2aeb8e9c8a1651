// DMARC aggregate reports (RFC 7489 7.2, the XML of its appendix C) for the
// mail this server receives: what inbound mail authentication decided is
// counted per policy domain and UTC day, kept under data_dir/dmarc-reports/
// so a restart keeps the day, and once the day is over sent as gzipped XML
// to the domain's "rua" mailto: addresses (after the external destination
// check of RFC 7489 7.1).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include "common/mutex.h"
#include "common/result.h"
#include "mailauth/dmarc.h"
#include "mailauth/inbound.h"

namespace tern::dns {
class Resolver;
}  // namespace tern::dns

namespace tern::reports {

// Appendix C PolicyPublishedType.
struct DmarcPolicyPublished {
  std::string domain;  // where the record was found
  std::string adkim = "r";
  std::string aspf = "r";
  std::string p = "none";
  std::string sp = "none";
  int pct = 100;
};

// Appendix C DKIMAuthResultType and SPFAuthResultType.
struct DmarcDkimAuth {
  std::string domain, selector, result;
};
struct DmarcSpfAuth {
  std::string domain, scope, result;
};
// Appendix C PolicyOverrideReason.
struct DmarcReason {
  std::string type, comment;
};

// One <record>: the messages that share all of these, and how many.
struct DmarcRow {
  std::string source_ip;
  std::string disposition = "none";  // policy_evaluated: none/quarantine/reject
  std::string dkim = "fail";         // the DMARC-aligned DKIM result
  std::string spf = "fail";          // the DMARC-aligned SPF result
  std::vector<DmarcReason> reasons;
  std::string header_from;
  std::string envelope_from;
  std::vector<DmarcDkimAuth> dkim_auth;
  std::vector<DmarcSpfAuth> spf_auth;
  uint64_t count = 0;
  // What makes two messages one row (everything above but the count).
  std::string Key() const;
};

// One report: a policy domain's rows of one UTC day.
struct DmarcDomainDay {
  int64_t day = 0;  // days since 1970-01-01 (UTC)
  DmarcPolicyPublished policy;
  std::vector<mailauth::DmarcUri> rua;
  std::map<std::string, DmarcRow> rows;  // by DmarcRow::Key()
  uint64_t Messages() const;
};

// What one message adds.
struct DmarcEvent {
  int64_t time = 0;  // unix seconds
  DmarcPolicyPublished policy;
  std::vector<mailauth::DmarcUri> rua;
  DmarcRow row;  // count 1
};

// The event for a message whose DMARC evaluation found a record with
// "rua" and gave pass or fail; nullopt otherwise (nobody asked for a
// report, or there is no result to report).
std::optional<DmarcEvent> DmarcEventFromVerdict(const mailauth::InboundVerdict& v,
                                                const mailauth::SmtpIdentity& who,
                                                int64_t now);

// Pure aggregation: one day's reports by policy domain.
using DmarcDay = std::map<std::string, DmarcDomainDay>;
void AddDmarcEvent(DmarcDay& day, const DmarcEvent& event);

int64_t DayOf(int64_t unix_seconds);
std::string DayName(int64_t day);  // "2026-12-06"
std::optional<int64_t> ParseDayName(std::string_view name);

// report_metadata (Appendix C ReportMetadataType).
struct DmarcReportMeta {
  std::string org_name;  // the submitter: our domain
  std::string email;     // the reporting address
  std::string report_id;
  int64_t begin = 0, end = 0;  // unix seconds
};

// Characters that XML 1.0 2.4 and 3.3.3 reserve, as entities; control
// characters XML cannot carry become '?'.
std::string XmlEscape(std::string_view text);
std::string BuildDmarcXml(const DmarcDomainDay& report, const DmarcReportMeta& meta);

// RFC 1952 gzip of `data` (zlib).
Result<std::string> Gzip(std::string_view data);

// The report mail of RFC 7489 7.2.1.1: its Subject, a text part and the
// gzipped XML as application/gzip in base64. CRLF lines.
std::string BuildReportMessage(const DmarcDomainDay& report, const DmarcReportMeta& meta,
                               const std::string& to, std::string_view gz, int64_t now);

// JSON form of a day (the files under data_dir/dmarc-reports/).
std::string DmarcDayToJson(const DmarcDay& day);
Result<DmarcDay> DmarcDayFromJson(std::string_view text);

// The persisted days in `dir`, oldest first, and one of them.
std::vector<int64_t> ListDmarcDays(const std::string& dir);
Result<DmarcDay> LoadDmarcDay(const std::string& dir, int64_t day);

// The thread-safe store the SMTP sessions record into (from any io thread).
class DmarcReportStore {
 public:
  explicit DmarcReportStore(std::string dir) : dir_(std::move(dir)) {}
  // Reads the days already on disk (after a restart).
  Result<void> Load();
  void Record(const DmarcEvent& event);
  // Rewrites (atomically) the days that changed since the last Save.
  Result<void> Save();
  // Removes and returns every day before `before_day` (its file too).
  std::vector<DmarcDomainDay> Take(int64_t before_day);
  const std::string& dir() const { return dir_; }

 private:
  const std::string dir_;
  Mutex mu_;
  std::map<int64_t, DmarcDay> days_ GUARDED_BY(mu_);
  std::set<int64_t> dirty_ GUARDED_BY(mu_);
};

struct DmarcSendSettings {
  std::string data_dir;   // queue::Inject's
  std::string submitter;  // org_name and the Subject's "Submitter"
  std::string email;      // From and the envelope sender
};


// RFC 7489 7.1: whether `rua_domain` accepts reports about `policy_domain`.
// Same organizational domain: yes; else the TXT records at
// <policy_domain>._report._dmarc.<rua_domain> must include one that
// begins with "v=DMARC1". An error text when it cannot be told (DNS).
asio::awaitable<Result<bool>> VerifyExternalDestination(dns::Resolver& resolver,
                                                        std::string policy_domain,
                                                        std::string rua_domain);

// Sends every day before `before_day` (the current day too when it is
// tomorrow's number): each report to each usable mailto: "rua", queued
// with queue::Inject. Returns a one-line summary ("sent 2 skipped 1").
asio::awaitable<std::string> SendDmarcReports(dns::Resolver& resolver,
                                              DmarcReportStore& store,
                                              DmarcSendSettings settings,
                                              int64_t before_day, int64_t now);

}  // namespace tern::reports
