// Inbound mail authentication of one message: see inbound.h.
#include "mailauth/inbound.h"

#include <algorithm>
#include <utility>

#include "common/metrics.h"
#include "common/strings.h"
#include "dns/resolver.h"
#include "mailauth/arc_lookup.h"
#include "mailauth/dkim_lookup.h"

namespace tern::mailauth {
namespace {

// The header section kept for DMARC's From (and the limit past which
// header fields are no longer examined): far above real messages.
constexpr size_t kMaxHeader = 1 << 20;

bool IsAuthResults(std::string_view field, std::string_view* body) {
  constexpr std::string_view kName = "authentication-results";
  size_t colon = field.find(':');
  if (colon == std::string_view::npos) return false;
  if (!IEquals(Trim(field.substr(0, colon)), kName)) return false;
  *body = field.substr(colon + 1);
  return true;
}

// The domain SPF checked, for DMARC alignment (RFC 7489 4.1): the MAIL
// FROM domain, or the HELO name for the null sender.
std::string SpfDomain(const SmtpIdentity& who) {
  if (who.mail_from.empty()) return ToLower(who.helo);
  size_t at = who.mail_from.rfind('@');
  return ToLower(at == std::string::npos ? who.mail_from
                                         : who.mail_from.substr(at + 1));
}

// tern_mailauth_results_total, one count per method and message (the
// best DKIM result when there are several signatures). A plain function:
// Finish() is a coroutine, and g++ 12 mishandles braced lists in those.
void CountResults(const InboundVerdict& v, std::string_view spf) {
  metrics::Catalog& m = metrics::Get();
  m.mailauth.With({"spf", spf}).Inc();
  std::string_view dkim = "none";
  for (const DkimResult& d : v.dkim) {
    dkim = DkimStatusName(d.status);
    if (d.status == DkimStatus::kPass) break;
  }
  m.mailauth.With({"dkim", dkim}).Inc();
  m.mailauth.With({"dmarc", DmarcResultName(v.dmarc.result)}).Inc();
}

}  // namespace

asio::awaitable<SpfOutcome> CheckSender(dns::Resolver& resolver,
                                        SmtpIdentity who, std::string receiver) {
  SpfRequest request;
  request.ip = who.ip;
  request.helo = who.helo;
  request.mail_from = who.mail_from;
  request.receiver = std::move(receiver);
  co_return co_await CheckHost(resolver, std::move(request));
}

std::string SpfRefusal(const SpfOutcome& spf, const InboundSettings& settings) {
  if (!settings.spf_reject || spf.result != SpfResult::kFail) return {};
  // RFC 7208 8.4: a fail may be refused, with the domain's explanation.
  std::string text = spf.explanation.empty()
                         ? "SPF of " + spf.domain + " does not allow this sender"
                         : spf.explanation;
  return "550 5.7.23 " + text;
}

InboundMessage::InboundMessage(InboundSettings settings, int64_t now, bool verify)
    : settings_(std::move(settings)), verify_(verify), dkim_(now) {}

void InboundMessage::Feed(std::string_view chunk, std::string* out) {
  if (verify_) {
    dkim_.Feed(chunk);
    arc_.Feed(chunk);
  }
  while (!chunk.empty() && !in_body_) {
    size_t lf = chunk.find('\n');
    if (lf == std::string_view::npos) {
      line_.append(chunk);
      if (line_.size() > kMaxHeader) {
        // A header line of a megabyte: give up examining, keep the bytes.
        header_too_big_ = true;
        FlushField(out);
        out->append(line_);
        line_.clear();
        in_body_ = true;
      }
      return;
    }
    line_.append(chunk.substr(0, lf + 1));
    chunk.remove_prefix(lf + 1);
    std::string line = std::move(line_);
    line_.clear();
    HeaderLine(line, out);
  }
  out->append(chunk);
}

void InboundMessage::HeaderLine(std::string_view line, std::string* out) {
  if (line == "\r\n" || line == "\n") {
    // RFC 5322 2.1: the empty line ends the header section.
    FlushField(out);
    out->append(line);
    in_body_ = true;
    return;
  }
  if (header_copy_.size() + line.size() <= kMaxHeader) {
    header_copy_.append(line);
  } else {
    header_too_big_ = true;
  }
  if (!line.empty() && (line[0] == ' ' || line[0] == '\t') && !field_.empty()) {
    field_.append(line);  // RFC 5322 2.2.3: a folded continuation
    return;
  }
  FlushField(out);
  field_.assign(line);
}

void InboundMessage::FlushField(std::string* out) {
  if (field_.empty()) return;
  std::string_view body;
  if (!header_too_big_ && IsAuthResults(field_, &body) &&
      ClaimsAuthServId(body, settings_.authserv_id)) {
    ++removed_;
  } else {
    out->append(field_);
  }
  field_.clear();
}

void InboundMessage::End(std::string* out) {
  FlushField(out);
  out->append(line_);
  line_.clear();
}

asio::awaitable<InboundVerdict> InboundMessage::Finish(
    dns::Resolver& resolver, SmtpIdentity who, std::optional<SpfOutcome> spf,
    std::optional<SpfOutcome> helo_spf) {
  InboundVerdict v;
  std::vector<AuthMethodResult> results;
  DmarcInput input;
  if (spf) {
    v.spf = *spf;
    results.push_back(SpfAuthResult(SpfResultName(spf->result),
                                    who.mail_from.empty() ? who.helo : who.mail_from,
                                    who.mail_from.empty()));
    input.spf_result = SpfResultName(spf->result);
    input.spf_domain = SpfDomain(who);
  }
  if (helo_spf && !who.mail_from.empty() && !who.helo.empty()) {
    // RFC 7208 2.3: the HELO identity on its own; DMARC still aligns
    // with the MAIL FROM result (RFC 7489 4.1).
    results.push_back(SpfAuthResult(SpfResultName(helo_spf->result), who.helo, true));
  }

  v.dkim = co_await VerifyDkim(resolver, dkim_.Finish());
  if (v.dkim.empty()) {
    results.push_back(AuthMethodResult{"dkim", "none"});
  }
  for (const DkimResult& d : v.dkim) {
    results.push_back(DkimAuthResult(DkimStatusName(d.status), d.domain,
                                     d.selector, d.header_b,
                                     d.status == DkimStatus::kPass ? "" : d.reason));
    input.dkim.push_back({DkimStatusName(d.status), d.domain});
  }

  // RFC 8617 5.2: the chain as it arrived, before DMARC so that a
  // trusted sealer's word can count (RFC 8617 7.2).
  v.arc = co_await VerifyArc(resolver, arc_.Finish());
  {
    AuthMethodResult arc = ArcAuthResult(ArcStatusName(v.arc.status), who.ip);
    if (v.arc.status == ArcStatus::kPass) {
      // RFC 8617 10.1: header.oldest-pass, the oldest instance whose AMS
      // still validates (0: all of them).
      arc.properties.push_back({"header", "oldest-pass",
                                std::to_string(v.arc.oldest_pass)});
    } else if (v.arc.status == ArcStatus::kFail) {
      arc.comment = v.arc.reason;
    }
    results.push_back(std::move(arc));
  }

  auto from = FromDomainOfHeader(header_copy_);
  if (!from) {
    // RFC 7489 6.6.1: without exactly one From domain DMARC cannot be
    // applied; recorded, not acted on.
    v.dmarc.result = DmarcResult::kPermError;
    v.dmarc.reason = from.error().message;
    results.push_back(DmarcAuthResult("permerror", "", from.error().message));
  } else {
    input.from_domain = *from;
    v.dmarc = co_await CheckDmarc(resolver, input);
    std::string comment;
    if (v.dmarc.result == DmarcResult::kFail) {
      comment = std::string("p=") + DmarcPolicyName(v.dmarc.requested);
      if (v.dmarc.sampled_out) comment += " sampled out by pct";
      if (ArcSealedByTrusted(v.arc, settings_.arc_trusted_sealers)) {
        // RFC 7489 10.1 (forwarders and lists break DMARC) and RFC 8617
        // 7.2: the receiver may trust what a known sealer saw instead.
        v.arc_override = v.arc.LastSealer();
        comment += " overridden by ARC sealer " + v.arc_override;
      }
    }
    results.push_back(
        DmarcAuthResult(DmarcResultName(v.dmarc.result), v.dmarc.from_domain, comment));
  }

  v.header_fields = FormatAuthResults(settings_.authserv_id, results);
  v.summary = "spf=" + std::string(spf ? SpfResultName(spf->result) : "none");
  for (const DkimResult& d : v.dkim) {
    v.summary += " dkim=" + std::string(DkimStatusName(d.status)) + "/" + d.domain;
  }
  if (v.dkim.empty()) v.summary += " dkim=none";
  v.summary += " dmarc=" + std::string(DmarcResultName(v.dmarc.result));
  if (!v.dmarc.from_domain.empty()) v.summary += "/" + v.dmarc.from_domain;

  if (v.arc.status != ArcStatus::kNone) {
    v.summary += " arc=" + std::string(ArcStatusName(v.arc.status));
    if (!v.arc.LastSealer().empty()) v.summary += "/" + v.arc.LastSealer();
  }
  if (!v.arc_override.empty()) v.summary += " (dmarc overridden by arc)";
  CountResults(v, spf ? SpfResultName(spf->result) : "none");

  if (v.dmarc.result == DmarcResult::kFail && v.arc_override.empty()) {
    // RFC 7489 6.6.4 and 6.7: the domain's policy, as sampled by pct.
    if (v.dmarc.policy == DmarcPolicy::kReject && settings_.dmarc_reject) {
      v.action = InboundVerdict::Action::kReject;
      v.reply = "550 5.7.1 Email rejected per DMARC policy for " + v.dmarc.from_domain;
    } else if ((v.dmarc.policy == DmarcPolicy::kReject ||
                v.dmarc.policy == DmarcPolicy::kQuarantine) &&
               settings_.dmarc_quarantine) {
      v.action = InboundVerdict::Action::kJunk;
      v.header_fields += "X-Spam: yes (DMARC " +
                         std::string(DmarcPolicyName(v.dmarc.policy)) +
                         " policy of " + v.dmarc.from_domain + ")\r\n";
    }
  }
  co_return v;
}

}  // namespace tern::mailauth
