// SMTP TLS Reporting (RFC 8460): records, counts, reports, report mail.
#include "delivery/tlsrpt.h"

#include <zlib.h>

#include <cctype>
#include <ctime>

#include "common/base64.h"
#include "common/strings.h"

namespace tern::delivery::tlsrpt {
namespace {

using nlohmann::json;

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 8460 3: tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" /
// "-" / ".")
bool ExtName(std::string_view s) {
  if (s.empty() || s.size() > 32 || !std::isalnum(static_cast<unsigned char>(s[0])))
    return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  }
  return true;
}

// tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): visible, no ";" "=".
bool ExtValue(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || c == ';' || c == '=') return false;
  }
  return true;
}

// A URI as far as the record needs one (RFC 3986 characters, a scheme);
// commas must be percent-encoded in it (RFC 8460 3).
bool UriChars(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (!std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (size_t i = 0; i < colon; ++i) {
    char c = s[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return false;
  }
  if (colon + 1 == s.size()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == ';' || c == ',' || c == '"' || c == '<' ||
        c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' ||
        c == '}')
      return false;
  }
  return true;
}

Result<std::vector<std::string>> ParseRecord(std::string_view rec) {
  // tlsrpt-record = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
  // field-delim = *WSP ";" *WSP
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (true) {
    size_t semi = rec.find(';', pos);
    parts.push_back(rec.substr(pos, semi == std::string_view::npos ? semi : semi - pos));
    if (semi == std::string_view::npos) break;
    pos = semi + 1;
  }
  // The version is exact and case-sensitive (%s"v=TLSRPTv1"), with no
  // space before the first delimiter's *WSP.
  if (TrimWsp(parts[0]) != "v=TLSRPTv1" || (!parts[0].empty() && IsWsp(parts[0][0])))
    return Err("the record does not start with v=TLSRPTv1");
  // A trailing delimiter leaves one empty part, which is fine.
  if (parts.size() > 1 && TrimWsp(parts.back()).empty()) parts.pop_back();
  if (parts.size() < 2) return Err("no fields after the version");
  std::vector<std::string> uris;
  bool have_rua = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view f = TrimWsp(parts[i]);
    size_t eq = f.find('=');
    if (eq == std::string_view::npos) return Err("field without \"=\": " + std::string(f));
    std::string_view name = f.substr(0, eq);
    std::string_view value = f.substr(eq + 1);
    if (name == "rua") {
      if (have_rua) return Err("more than one rua field");
      have_rua = true;
      // tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
      for (const std::string& u : Split(value, ',')) {
        std::string_view uri = TrimWsp(u);
        if (!UriChars(uri)) return Err("bad rua URI: " + std::string(uri));
        if (IStartsWith(uri, "mailto:") || IStartsWith(uri, "https:"))
          uris.emplace_back(uri);
      }
    } else if (!ExtName(name) || !ExtValue(value)) {
      return Err("bad field: " + std::string(f));
    }
  }
  if (!have_rua) return Err("no rua field");
  if (uris.empty()) return Err("no mailto: or https: URI in rua");
  return uris;
}

std::string Utc(int64_t t, const char* fmt) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, fmt, &tm);
  return std::string(buf, n);
}

json PolicyJson(const std::string& domain, const PolicyKey& k) {
  json p = json::object();
  p["policy-type"] = k.type;
  if (!k.strings.empty()) p["policy-string"] = k.strings;
  p["policy-domain"] = domain;
  if (!k.mx_hosts.empty()) p["mx-host"] = k.mx_hosts;
  return p;
}

}  // namespace

void Add(Period* p, const Outcome& o) {
  Counts& c = p->domains[o.domain][o.policy];
  if (o.ok) {
    ++c.successful;
  } else {
    ++c.failed;
    ++c.failures[o.failure];
  }
}

std::string FormatPeriod(const Period& p) {
  json j = json::object();
  j["start"] = p.start;
  j["end"] = p.end;
  j["sent"] = p.sent;
  json doms = json::array();
  for (const auto& [domain, policies] : p.domains) {
    for (const auto& [key, c] : policies) {
      json e = json::object();
      e["domain"] = domain;
      e["type"] = key.type;
      e["strings"] = key.strings;
      e["mx"] = key.mx_hosts;
      e["ok"] = c.successful;
      e["failed"] = c.failed;
      json fs = json::array();
      for (const auto& [f, n] : c.failures) {
        fs.push_back(json::array({f.result_type, f.sending_ip, f.mx_host,
                                  f.receiving_ip, n}));
      }
      e["failures"] = fs;
      doms.push_back(e);
    }
  }
  j["policies"] = doms;
  return j.dump(1) + "\n";
}

Result<Period> ParsePeriod(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Err("not a JSON object");
  try {
    Period p;
    p.start = j.at("start").get<int64_t>();
    p.end = j.at("end").get<int64_t>();
    p.sent = j.value("sent", false);
    for (const json& e : j.at("policies")) {
      PolicyKey key;
      key.type = e.at("type").get<std::string>();
      key.strings = e.at("strings").get<std::vector<std::string>>();
      key.mx_hosts = e.at("mx").get<std::vector<std::string>>();
      Counts& c = p.domains[e.at("domain").get<std::string>()][key];
      c.successful += e.at("ok").get<uint64_t>();
      c.failed += e.at("failed").get<uint64_t>();
      for (const json& f : e.at("failures")) {
        FailureKey fk{f.at(0).get<std::string>(), f.at(1).get<std::string>(),
                      f.at(2).get<std::string>(), f.at(3).get<std::string>()};
        c.failures[fk] += f.at(4).get<uint64_t>();
      }
    }
    return p;
  } catch (const json::exception& e) {
    return Err(std::string("bad period file: ") + e.what());
  }
}

Result<std::vector<std::string>> ParseTxt(const std::vector<std::string>& records) {
  // RFC 8460 3: records not starting with "v=TLSRPTv1;" are discarded;
  // unless exactly one is left, the domain does not do TLSRPT.
  std::vector<std::string_view> found;
  for (const std::string& r : records) {
    std::string_view v = r;
    if (v.substr(0, 10) == "v=TLSRPTv1") {
      std::string_view rest = TrimWsp(v.substr(10));
      if (!rest.empty() && rest.front() == ';') found.push_back(v);
    }
  }
  if (found.empty()) return Err("no v=TLSRPTv1 record");
  if (found.size() > 1) return Err("more than one v=TLSRPTv1 record");
  return ParseRecord(found[0]);
}

std::string TlsaText(int usage, int selector, int mtype, std::string_view data) {
  static const char* d = "0123456789abcdef";
  std::string out = std::to_string(usage) + " " + std::to_string(selector) + " " +
                    std::to_string(mtype) + " ";
  for (char c : data) {
    auto u = static_cast<unsigned char>(c);
    out += d[u >> 4];
    out += d[u & 15];
  }
  return out;
}

std::string DateTime(int64_t t) { return Utc(t, "%Y-%m-%dT%H:%M:%SZ"); }

std::string ReportId(const Period& p, const std::string& domain,
                     const std::string& submitter) {
  // Unique per period, domain and submitter (RFC 8460 4.4).
  return Utc(p.start, "%Y%m%dT%H%M%SZ") + "." + domain + "@" + submitter;
}

json BuildReport(const Period& p, const std::string& domain, const ReportMeta& meta) {
  // RFC 8460 4.4 (the field names), 4.3 (result types).
  json r = json::object();
  r["organization-name"] = meta.organization;
  r["date-range"] = {{"start-datetime", DateTime(p.start)},
                     {"end-datetime", DateTime(p.end)}};
  r["contact-info"] = meta.contact;
  r["report-id"] = ReportId(p, domain, meta.submitter);
  json policies = json::array();
  auto it = p.domains.find(domain);
  if (it != p.domains.end()) {
    for (const auto& [key, c] : it->second) {
      json e = json::object();
      e["policy"] = PolicyJson(domain, key);
      e["summary"] = {{"total-successful-session-count", c.successful},
                      {"total-failure-session-count", c.failed}};
      json details = json::array();
      for (const auto& [f, n] : c.failures) {
        json d = json::object();
        d["result-type"] = f.result_type;
        if (!f.sending_ip.empty()) d["sending-mta-ip"] = f.sending_ip;
        if (!f.mx_host.empty()) d["receiving-mx-hostname"] = f.mx_host;
        if (!f.receiving_ip.empty()) d["receiving-ip"] = f.receiving_ip;
        d["failed-session-count"] = n;
        details.push_back(d);
      }
      if (!details.empty()) e["failure-details"] = details;
      policies.push_back(e);
    }
  }
  r["policies"] = policies;
  return r;
}

std::string Gzip(std::string_view data) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer (RFC 1952).
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return "";
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END ? out : "";
}

std::string FileName(const Period& p, const std::string& domain,
                     const std::string& submitter) {
  // RFC 8460 5.1: the timestamps are Unix seconds; the unique id ours.
  return submitter + "!" + domain + "!" + std::to_string(p.start) + "!" +
         std::to_string(p.end) + "!" + Utc(p.start, "%Y%m%d%H%M%S") + ".json.gz";
}

std::string BuildMail(const Period& p, const std::string& domain,
                      const ReportMeta& meta, const std::string& from,
                      const std::string& to, const std::string& gz, int64_t now) {
  const std::string id = ReportId(p, domain, meta.submitter);
  const std::string file = FileName(p, domain, meta.submitter);
  const std::string boundary = "=_tlsrpt_" + std::to_string(now) + "_" +
                               std::to_string(p.start);
  std::string m;
  m += "From: <" + from + ">\r\n";
  m += "To: <" + to + ">\r\n";
  m += "Date: " + Utc(now, "%a, %d %b %Y %H:%M:%S +0000") + "\r\n";
  // RFC 8460 5.3: the subject and the two header fields.
  m += "Subject: Report Domain: " + domain + " Submitter: " + meta.submitter +
       " Report-ID: <" + id + ">\r\n";
  m += "Message-ID: <tlsrpt." + id + ">\r\n";
  m += "TLS-Report-Domain: " + domain + "\r\n";
  m += "TLS-Report-Submitter: " + meta.submitter + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
       "\tboundary=\"" + boundary + "\"\r\n";
  m += "\r\n";
  m += "This is a multipart message in MIME format.\r\n";
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is an aggregate TLS report (RFC 8460) from " + meta.submitter +
       "\r\nabout the mail it sent to " + domain + " from " + DateTime(p.start) +
       "\r\nto " + DateTime(p.end) + ". The report is attached.\r\n";
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: application/tlsrpt+gzip;\r\n\tname=\"" + file + "\"\r\n";
  m += "Content-Transfer-Encoding: base64\r\n";
  m += "Content-Disposition: attachment;\r\n\tfilename=\"" + file + "\"\r\n\r\n";
  std::string b64 = Base64Encode(gz);
  for (size_t i = 0; i < b64.size(); i += 76) m += b64.substr(i, 76) + "\r\n";
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace tern::delivery::tlsrpt
