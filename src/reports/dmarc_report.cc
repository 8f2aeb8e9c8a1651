// DMARC aggregate reports: aggregation, the XML of RFC 7489 appendix C,
// the report mail of 7.2.1.1, the store and the sending run.
#include "reports/dmarc_report.h"

#include <fcntl.h>
#include <unistd.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "common/file_io.h"
#include "common/strings.h"
#include "common/unique_name.h"
#include "dns/resolver.h"
#include "queue/queue.h"

// g++ 12 inlines the coroutine ramps below into one another and then sees
// asio's frame allocation and release as a mismatched pair: a false
// positive (mailauth/spf.cc says more).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace tern::reports {
namespace {

using json = nlohmann::json;

std::string DomainOf(std::string_view address) {
  size_t at = address.rfind('@');
  return ToLower(at == std::string_view::npos ? address : address.substr(at + 1));
}

const char* AlignmentName(mailauth::Alignment a) {
  return a == mailauth::Alignment::kStrict ? "s" : "r";
}

void Element(std::string& out, int indent, std::string_view name, std::string_view value) {
  out.append(static_cast<size_t>(indent) * 2, ' ');
  out += "<";
  out += name;
  out += ">";
  out += XmlEscape(value);
  out += "</";
  out += name;
  out += ">\n";
}

void Open(std::string& out, int indent, std::string_view name) {
  out.append(static_cast<size_t>(indent) * 2, ' ');
  out += "<";
  out += name;
  out += ">\n";
}

void Close(std::string& out, int indent, std::string_view name) {
  out.append(static_cast<size_t>(indent) * 2, ' ');
  out += "</";
  out += name;
  out += ">\n";
}

json RowToJson(const DmarcRow& r) {
  json j;
  j["source_ip"] = r.source_ip;
  j["disposition"] = r.disposition;
  j["dkim"] = r.dkim;
  j["spf"] = r.spf;
  j["reasons"] = json::array();
  for (const auto& x : r.reasons) j["reasons"].push_back({x.type, x.comment});
  j["header_from"] = r.header_from;
  j["envelope_from"] = r.envelope_from;
  j["dkim_auth"] = json::array();
  for (const auto& x : r.dkim_auth) j["dkim_auth"].push_back({x.domain, x.selector, x.result});
  j["spf_auth"] = json::array();
  for (const auto& x : r.spf_auth) j["spf_auth"].push_back({x.domain, x.scope, x.result});
  j["count"] = r.count;
  return j;
}

DmarcRow RowFromJson(const json& j) {
  DmarcRow r;
  r.source_ip = j.at("source_ip").get<std::string>();
  r.disposition = j.at("disposition").get<std::string>();
  r.dkim = j.at("dkim").get<std::string>();
  r.spf = j.at("spf").get<std::string>();
  for (const auto& x : j.at("reasons"))
    r.reasons.push_back({x.at(0).get<std::string>(), x.at(1).get<std::string>()});
  r.header_from = j.at("header_from").get<std::string>();
  r.envelope_from = j.at("envelope_from").get<std::string>();
  for (const auto& x : j.at("dkim_auth"))
    r.dkim_auth.push_back({x.at(0).get<std::string>(), x.at(1).get<std::string>(),
                           x.at(2).get<std::string>()});
  for (const auto& x : j.at("spf_auth"))
    r.spf_auth.push_back({x.at(0).get<std::string>(), x.at(1).get<std::string>(),
                          x.at(2).get<std::string>()});
  r.count = j.at("count").get<uint64_t>();
  return r;
}

std::string FileName(int64_t day) { return DayName(day) + ".json"; }

}  // namespace

std::string DmarcRow::Key() const {
  // Fields joined by a byte none of them holds.
  std::string k = source_ip + '\x1f' + disposition + '\x1f' + dkim + '\x1f' + spf + '\x1f' +
                  header_from + '\x1f' + envelope_from;
  for (const auto& r : reasons) k += '\x1e' + r.type + '\x1f' + r.comment;
  for (const auto& d : dkim_auth) k += '\x1d' + d.domain + '\x1f' + d.selector + '\x1f' + d.result;
  for (const auto& s : spf_auth) k += '\x1c' + s.domain + '\x1f' + s.scope + '\x1f' + s.result;
  return k;
}

uint64_t DmarcDomainDay::Messages() const {
  uint64_t n = 0;
  for (const auto& [key, row] : rows) n += row.count;
  return n;
}

std::optional<DmarcEvent> DmarcEventFromVerdict(const mailauth::InboundVerdict& v,
                                                const mailauth::SmtpIdentity& who,
                                                int64_t now) {
  const mailauth::DmarcOutcome& d = v.dmarc;
  if (!d.record || d.record->rua.empty()) return std::nullopt;
  if (d.result != mailauth::DmarcResult::kPass && d.result != mailauth::DmarcResult::kFail)
    return std::nullopt;
  DmarcEvent e;
  e.time = now;
  const mailauth::DmarcRecord& rec = *d.record;
  e.policy.domain = ToLower(d.record_domain);
  e.policy.adkim = AlignmentName(rec.adkim);
  e.policy.aspf = AlignmentName(rec.aspf);
  e.policy.p = mailauth::DmarcPolicyName(rec.p);
  e.policy.sp = mailauth::DmarcPolicyName(rec.sp ? *rec.sp : rec.p);
  e.policy.pct = rec.pct;
  e.rua = rec.rua;
  DmarcRow& r = e.row;
  r.count = 1;
  r.source_ip = who.ip;
  r.header_from = d.from_domain;
  r.envelope_from = who.mail_from.empty() ? ToLower(who.helo) : DomainOf(who.mail_from);
  r.dkim = d.dkim_aligned ? "pass" : "fail";
  r.spf = d.spf_aligned ? "pass" : "fail";
  // Appendix C DispositionType: what was done with the message, which
  // local settings or an ARC override may make milder than the policy.
  using Action = mailauth::InboundVerdict::Action;
  r.disposition = v.action == Action::kReject ? "reject"
                  : v.action == Action::kJunk ? "quarantine"
                                              : "none";
  if (d.sampled_out) r.reasons.push_back({"sampled_out", ""});
  if (!v.arc_override.empty()) {
    r.reasons.push_back({"trusted_forwarder", "arc=pass sealer=" + v.arc_override});
  } else if (r.disposition != mailauth::DmarcPolicyName(d.policy)) {
    r.reasons.push_back({"local_policy", ""});
  }
  for (const mailauth::DkimResult& k : v.dkim) {
    r.dkim_auth.push_back({k.domain, k.selector, mailauth::DkimStatusName(k.status)});
  }
  // Appendix C: spf scope "helo" or "mfrom".
  r.spf_auth.push_back({v.spf.domain, v.spf.identity == "helo" ? "helo" : "mfrom",
                        mailauth::SpfResultName(v.spf.result)});
  return e;
}

void AddDmarcEvent(DmarcDay& day, const DmarcEvent& event) {
  DmarcDomainDay& dd = day[event.policy.domain];
  dd.day = DayOf(event.time);
  // The record as last seen during the day.
  dd.policy = event.policy;
  dd.rua = event.rua;
  std::string key = event.row.Key();
  auto it = dd.rows.find(key);
  if (it == dd.rows.end()) {
    dd.rows.emplace(key, event.row);
  } else {
    it->second.count += event.row.count;
  }
}

int64_t DayOf(int64_t unix_seconds) {
  return unix_seconds >= 0 ? unix_seconds / 86400 : (unix_seconds - 86399) / 86400;
}

std::string DayName(int64_t day) {
  time_t t = static_cast<time_t>(day * 86400);
  struct tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::optional<int64_t> ParseDayName(std::string_view name) {
  int y = 0, m = 0, d = 0;
  char tail = 0;
  std::string s(name);
  if (s.size() != 10 || std::sscanf(s.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
    return std::nullopt;
  if (m < 1 || m > 12 || d < 1 || d > 31 || y < 1970) return std::nullopt;
  struct tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  int64_t t = static_cast<int64_t>(timegm(&tm));
  if (DayName(t / 86400) != s) return std::nullopt;  // 2026-02-31
  return t / 86400;
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 2.2: no C0 controls but tab, LF and CR.
        if (u < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string BuildDmarcXml(const DmarcDomainDay& report, const DmarcReportMeta& meta) {
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n";
  // Appendix C: the version of the format this report follows.
  Element(x, 1, "version", "1.0");
  Open(x, 1, "report_metadata");
  Element(x, 2, "org_name", meta.org_name);
  Element(x, 2, "email", meta.email);
  Element(x, 2, "report_id", meta.report_id);
  Open(x, 2, "date_range");
  Element(x, 3, "begin", std::to_string(meta.begin));
  Element(x, 3, "end", std::to_string(meta.end));
  Close(x, 2, "date_range");
  Close(x, 1, "report_metadata");
  Open(x, 1, "policy_published");
  Element(x, 2, "domain", report.policy.domain);
  Element(x, 2, "adkim", report.policy.adkim);
  Element(x, 2, "aspf", report.policy.aspf);
  Element(x, 2, "p", report.policy.p);
  Element(x, 2, "sp", report.policy.sp);
  Element(x, 2, "pct", std::to_string(report.policy.pct));
  Close(x, 1, "policy_published");
  for (const auto& [key, r] : report.rows) {
    Open(x, 1, "record");
    Open(x, 2, "row");
    Element(x, 3, "source_ip", r.source_ip);
    Element(x, 3, "count", std::to_string(r.count));
    Open(x, 3, "policy_evaluated");
    Element(x, 4, "disposition", r.disposition);
    Element(x, 4, "dkim", r.dkim);
    Element(x, 4, "spf", r.spf);
    for (const DmarcReason& why : r.reasons) {
      Open(x, 4, "reason");
      Element(x, 5, "type", why.type);
      if (!why.comment.empty()) Element(x, 5, "comment", why.comment);
      Close(x, 4, "reason");
    }
    Close(x, 3, "policy_evaluated");
    Close(x, 2, "row");
    Open(x, 2, "identifiers");
    Element(x, 3, "envelope_from", r.envelope_from);
    Element(x, 3, "header_from", r.header_from);
    Close(x, 2, "identifiers");
    Open(x, 2, "auth_results");
    for (const DmarcDkimAuth& k : r.dkim_auth) {
      Open(x, 3, "dkim");
      Element(x, 4, "domain", k.domain);
      if (!k.selector.empty()) Element(x, 4, "selector", k.selector);
      Element(x, 4, "result", k.result);
      Close(x, 3, "dkim");
    }
    for (const DmarcSpfAuth& s : r.spf_auth) {
      Open(x, 3, "spf");
      Element(x, 4, "domain", s.domain);
      Element(x, 4, "scope", s.scope);
      Element(x, 4, "result", s.result);
      Close(x, 3, "spf");
    }
    Close(x, 2, "auth_results");
    Close(x, 1, "record");
  }
  x += "</feedback>\n";
  return x;
}

Result<std::string> Gzip(std::string_view data) {
  z_stream zs{};
  // windowBits 15 + 16: a gzip header and trailer (RFC 1952) around the
  // deflate stream.
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return Err("deflateInit2 failed");
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  size_t n = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return Err("deflate failed");
  out.resize(n);
  return out;
}

std::string BuildReportMessage(const DmarcDomainDay& report, const DmarcReportMeta& meta,
                               const std::string& to, std::string_view gz, int64_t now) {
  // RFC 7489 7.2.1.1: filename = receiver "!" policy-domain "!" begin "!"
  // end [ "!" unique-id ] "." extension, with extension "xml.gz" here.
  std::string filename = meta.org_name + "!" + report.policy.domain + "!" +
                         std::to_string(meta.begin) + "!" + std::to_string(meta.end) +
                         ".xml.gz";
  std::string boundary = "=_dmarc_" + std::to_string(NextUniqueNumber()) + "_" +
                         std::to_string(now);
  std::string m;
  m += "From: <" + meta.email + ">\r\n";
  m += "To: <" + to + ">\r\n";
  // 7.2.1.1: the Subject names the domain, the submitter and the report id.
  m += "Subject: Report Domain: " + report.policy.domain + " Submitter: " + meta.org_name +
       " Report-ID: <" + meta.report_id + ">\r\n";
  m += "Date: " + Rfc5322Date(now) + "\r\n";
  m += "Message-ID: <dmarc." + std::to_string(NextUniqueNumber()) + "." +
       std::to_string(now) + "@" + meta.org_name + ">\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n";
  m += "--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "DMARC aggregate report (RFC 7489) from " + meta.org_name + " for " +
       report.policy.domain + ", " + DayName(report.day) + " UTC: " +
       std::to_string(report.Messages()) + " messages.\r\n\r\n";
  m += "--" + boundary + "\r\n";
  m += "Content-Type: application/gzip; name=\"" + filename + "\"\r\n";
  m += "Content-Transfer-Encoding: base64\r\n";
  m += "Content-Disposition: attachment; filename=\"" + filename + "\"\r\n\r\n";
  std::string b64 = Base64Encode(gz);
  for (size_t i = 0; i < b64.size(); i += 76) m += b64.substr(i, 76) + "\r\n";
  m += "--" + boundary + "--\r\n";
  return m;
}

std::string DmarcDayToJson(const DmarcDay& day) {
  json out = json::array();
  for (const auto& [domain, dd] : day) {
    json j;
    j["day"] = DayName(dd.day);
    j["policy"] = {{"domain", dd.policy.domain}, {"adkim", dd.policy.adkim},
                   {"aspf", dd.policy.aspf},     {"p", dd.policy.p},
                   {"sp", dd.policy.sp},         {"pct", dd.policy.pct}};
    j["rua"] = json::array();
    for (const auto& u : dd.rua) j["rua"].push_back({u.uri, u.max_size});
    j["rows"] = json::array();
    for (const auto& [key, row] : dd.rows) j["rows"].push_back(RowToJson(row));
    out.push_back(std::move(j));
  }
  return out.dump(1) + "\n";
}

Result<DmarcDay> DmarcDayFromJson(std::string_view text) {
  try {
    json in = json::parse(text);
    DmarcDay day;
    for (const auto& j : in) {
      DmarcDomainDay dd;
      auto d = ParseDayName(j.at("day").get<std::string>());
      if (!d) return Err("bad day");
      dd.day = *d;
      const json& p = j.at("policy");
      dd.policy.domain = p.at("domain").get<std::string>();
      dd.policy.adkim = p.at("adkim").get<std::string>();
      dd.policy.aspf = p.at("aspf").get<std::string>();
      dd.policy.p = p.at("p").get<std::string>();
      dd.policy.sp = p.at("sp").get<std::string>();
      dd.policy.pct = p.at("pct").get<int>();
      for (const auto& u : j.at("rua"))
        dd.rua.push_back({u.at(0).get<std::string>(), u.at(1).get<uint64_t>()});
      for (const auto& r : j.at("rows")) {
        DmarcRow row = RowFromJson(r);
        std::string key = row.Key();
        dd.rows.emplace(std::move(key), std::move(row));
      }
      std::string domain = dd.policy.domain;
      day.emplace(std::move(domain), std::move(dd));
    }
    return day;
  } catch (const std::exception& e) {
    return Err(std::string("not a DMARC report day: ") + e.what());
  }
}

std::vector<int64_t> ListDmarcDays(const std::string& dir) {
  std::vector<int64_t> out;
  auto fd = io::OpenDir(dir);
  if (!fd) return out;
  auto names = io::ListDir(fd->get());
  if (!names) return out;
  for (const std::string& n : *names) {
    if (n.size() != 15 || n.substr(10) != ".json") continue;
    if (auto d = ParseDayName(n.substr(0, 10))) out.push_back(*d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<DmarcDay> LoadDmarcDay(const std::string& dir, int64_t day) {
  auto fd = io::OpenDir(dir);
  if (!fd) return tl::unexpected(fd.error());
  auto text = io::ReadSmallFileAt(fd->get(), FileName(day), 256u << 20);
  if (!text) return tl::unexpected(text.error());
  return DmarcDayFromJson(*text);
}

Result<void> DmarcReportStore::Load() {
  if (auto ok = io::MkdirAll(dir_, 0700); !ok) return ok;
  MutexLock lock(mu_);
  for (int64_t d : ListDmarcDays(dir_)) {
    auto day = LoadDmarcDay(dir_, d);
    if (!day) {
      spdlog::warn("dmarc reports: {}/{} not read: {}", dir_, FileName(d),
                   day.error().message);
      continue;
    }
    days_[d] = std::move(*day);
  }
  return {};
}

void DmarcReportStore::Record(const DmarcEvent& event) {
  int64_t d = DayOf(event.time);
  MutexLock lock(mu_);
  AddDmarcEvent(days_[d], event);
  dirty_.insert(d);
}

Result<void> DmarcReportStore::Save() {
  std::vector<std::pair<int64_t, std::string>> todo;
  {
    MutexLock lock(mu_);
    for (int64_t d : dirty_) {
      auto it = days_.find(d);
      if (it != days_.end()) todo.emplace_back(d, DmarcDayToJson(it->second));
    }
    dirty_.clear();
  }
  if (todo.empty()) return {};
  if (auto ok = io::MkdirAll(dir_, 0700); !ok) return ok;
  auto fd = io::OpenDir(dir_);
  if (!fd) return tl::unexpected(fd.error());
  for (const auto& [d, text] : todo) {
    if (auto ok = io::AtomicWriteAt(fd->get(), FileName(d), text, true); !ok) {
      MutexLock lock(mu_);
      dirty_.insert(d);  // try again next time
      return ok;
    }
  }
  return {};
}

std::vector<DmarcDomainDay> DmarcReportStore::Take(int64_t before_day) {
  std::vector<DmarcDomainDay> out;
  std::vector<int64_t> taken;
  {
    MutexLock lock(mu_);
    while (!days_.empty() && days_.begin()->first < before_day) {
      for (auto& [domain, dd] : days_.begin()->second) out.push_back(std::move(dd));
      taken.push_back(days_.begin()->first);
      dirty_.erase(days_.begin()->first);
      days_.erase(days_.begin());
    }
  }
  for (int64_t d : taken) {
    std::string path = dir_ + "/" + FileName(d);
    ::unlink(path.c_str());
  }
  return out;
}

asio::awaitable<Result<bool>> VerifyExternalDestination(dns::Resolver& resolver,
                                                        std::string policy_domain,
                                                        std::string rua_domain) {
  if (mailauth::OrganizationalDomain(policy_domain) ==
      mailauth::OrganizationalDomain(rua_domain)) {
    co_return true;
  }
  // RFC 7489 7.1 steps 1-4: the policy domain, "._report._dmarc.", the
  // destination's host part; a v=DMARC1 TXT record there says yes.
  std::string name = policy_domain + "._report._dmarc." + rua_domain;
  if (name.size() > 253 || !mailauth::IsDnsDomainName(name)) co_return false;
  dns::Answer answer =
      co_await dns::AsyncQuery(resolver, name, dns::RrType::kTxt, asio::use_awaitable);
  if (answer.status == dns::Status::kTempFail) {
    co_return Err("DNS lookup of " + name + " failed: " + answer.error);
  }
  if (answer.status != dns::Status::kOk) co_return false;
  for (const std::string& txt : answer.txt) {
    if (mailauth::ParseDmarcRecord(txt)) co_return true;
  }
  co_return false;
}

asio::awaitable<std::string> SendDmarcReports(dns::Resolver& resolver,
                                              DmarcReportStore& store,
                                              DmarcSendSettings settings,
                                              int64_t before_day, int64_t now) {
  if (auto ok = store.Save(); !ok) {
    spdlog::warn("dmarc reports: saving {}: {}", store.dir(), ok.error().message);
  }
  std::vector<DmarcDomainDay> reports = store.Take(before_day);
  if (reports.empty()) co_return "nothing to send";
  int sent = 0, skipped = 0;
  for (const DmarcDomainDay& report : reports) {
    DmarcReportMeta meta;
    meta.org_name = settings.submitter;
    meta.email = settings.email;
    meta.begin = report.day * 86400;
    meta.end = std::min<int64_t>(meta.begin + 86399, now);
    meta.report_id = report.policy.domain + "." + DayName(report.day) + "." +
                     std::to_string(NextUniqueNumber()) + "@" + settings.submitter;
    std::string xml = BuildDmarcXml(report, meta);
    Result<std::string> gz = Gzip(xml);
    if (!gz) {
      ++skipped;
      continue;
    }
    for (const mailauth::DmarcUri& uri : report.rua) {
      std::string to = MailtoAddress(uri.uri);
      if (to.empty()) {
        // RFC 7489 6.2: only mailto: is required; https is not spoken here.
        spdlog::info("dmarc report domain={} to={} skipped: not a usable mailto: URI",
                     report.policy.domain, uri.uri);
        ++skipped;
        continue;
      }
      std::string policy_domain = report.policy.domain;
      std::string rua_domain = DomainOf(to);
      Result<bool> verified =
          co_await VerifyExternalDestination(resolver, policy_domain, rua_domain);
      if (!verified || !*verified) {
        spdlog::info("dmarc report domain={} to={} skipped: {}", report.policy.domain, to,
                     verified ? "the destination does not accept reports for this "
                                "domain (RFC 7489 7.1)"
                              : verified.error().message);
        ++skipped;
        continue;
      }
      std::string message = BuildReportMessage(report, meta, to, *gz, now);
      // RFC 7489 6.4: "!" gives the most the destination takes; 7.2.1:
      // a report that is bigger is not sent.
      if (uri.max_size > 0 && message.size() > uri.max_size) {
        spdlog::info("dmarc report domain={} to={} skipped: {} octets, limit {}",
                     report.policy.domain, to, message.size(), uri.max_size);
        ++skipped;
        continue;
      }
      queue::Envelope env;
      env.sender = settings.email;
      env.recipients.push_back({to, "", ""});
      env.received_at = now;
      Result<std::string> id = queue::Inject(settings.data_dir, std::move(env), message);
      if (!id) {
        spdlog::warn("dmarc report domain={} to={} not queued: {}", report.policy.domain,
                     to, id.error().message);
        ++skipped;
        continue;
      }
      spdlog::info("dmarc report domain={} day={} to={} messages={} rows={} id={}",
                   report.policy.domain, DayName(report.day), to, report.Messages(),
                   report.rows.size(), *id);
      ++sent;
    }
  }
  std::string summary = "sent " + std::to_string(sent) + " skipped " + std::to_string(skipped);
  spdlog::info("dmarc reports: {}", summary);
  co_return summary;
}

}  // namespace tern::reports
