// The message as mail filters change it: see milter_message.h.
#include "antispam/milter_message.h"

#include <algorithm>

#include "common/strings.h"

namespace tern::antispam {

using Kind = MilterReply::Kind;

namespace {

std::string StripAngles(std::string_view a) {
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  return std::string(a);
}

// RFC 5322 2.2: a field name is printable US-ASCII except the colon.
bool ValidFieldName(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name) {
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

// A field value from a filter, after LF -> CRLF: every line break must
// fold (be followed by a space or tab), or the filter could inject whole
// header fields or end the header section; no bare CR; no NUL.
bool ValidFieldValue(std::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\0') return false;
    if (c == '\r' && (i + 2 >= value.size() || value[i + 1] != '\n' ||
                      (value[i + 2] != ' ' && value[i + 2] != '\t'))) {
      return false;
    }
    if (c == '\n' && (i == 0 || value[i - 1] != '\r')) return false;
  }
  return true;
}

// A spam verdict in a header field a filter wrote: rspamd's "X-Spam: Yes"
// (its add_header action), SpamAssassin's "X-Spam-Flag: YES" and
// "X-Spam-Status: Yes, score=...".
bool SpamVerdictField(std::string_view name, std::string_view value) {
  size_t start = value.find_first_not_of(" \t");
  value = start == std::string_view::npos ? std::string_view() : value.substr(start);
  bool yes = value.size() >= 3 && IEquals(value.substr(0, 3), "yes") &&
             (value.size() == 3 || value[3] == ',' || value[3] == ' ' || value[3] == '\r');
  return yes && (IEquals(name, "X-Spam") || IEquals(name, "X-Spam-Flag") ||
                 IEquals(name, "X-Spam-Status"));
}

// An address from a filter: no controls, spaces or angle brackets inside.
bool ValidAddress(std::string_view a) {
  if (a.size() > 320) return false;
  for (char c : a) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 32 || u == 127 || c == '<' || c == '>') return false;
  }
  return true;
}


}  // namespace



MilterMessage MilterMessage::Parse(std::string_view text) {
  MilterMessage m;
  m.separator = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find("\r\n", pos);
    size_t next = eol == std::string_view::npos ? text.size() : eol + 2;
    std::string_view line =
        text.substr(pos, (eol == std::string_view::npos ? text.size() : eol) - pos);
    if (line.empty()) {
      m.separator = true;
      pos = next;
      break;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !m.fields.empty()) {
      m.fields.back().value += "\r\n";
      m.fields.back().value += line;
      pos = next;
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !ValidFieldName(line.substr(0, colon))) break;
    m.fields.push_back({std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))});
    pos = next;
  }
  m.body = std::string(text.substr(pos));
  return m;
}

std::string MilterMessage::Text() const {
  std::string out;
  size_t n = body.size() + 2;
  for (const Field& f : fields) n += f.name.size() + f.value.size() + 3;
  out.reserve(n);
  for (const Field& f : fields) {
    out += f.name;
    out += ':';
    out += f.value;
    out += "\r\n";
  }
  if (separator) out += "\r\n";
  out += body;
  return out;
}

Result<MilterChangeSummary> ApplyMilterChanges(const std::vector<MilterReply>& changes,
                                               MilterMessage& m, std::string_view filter) {
  MilterMessage out = m;
  bool body_replaced = false;
  bool text = false, envelope = false, spam = false;
  std::string quarantine;
  for (const MilterReply& c : changes) {
    switch (c.kind) {
      case Kind::kAddHeader:
      case Kind::kInsertHeader:
      case Kind::kChangeHeader: {
        std::string value = MilterValueToCrlf(c.value);
        if (!ValidFieldName(c.name) || !ValidFieldValue(value)) {
          return Err("malformed header field \"" + c.name.substr(0, 60) + "\"");
        }
        // sendmail writes "Name: value" unless the value starts with
        // white space (SMFIP_HDR_LEADSPC filters send it that way).
        if (!value.empty() && value[0] != ' ' && value[0] != '\t') value.insert(0, " ");
        if (SpamVerdictField(c.name, value)) spam = true;
        if (c.kind == Kind::kAddHeader) {
          out.fields.push_back({c.name, value});
        } else if (c.kind == Kind::kInsertHeader) {
          size_t at = std::min<size_t>(c.index, out.fields.size());
          out.fields.insert(out.fields.begin() + static_cast<ptrdiff_t>(at), {c.name, value});
        } else {
          // libmilter smfi_chgheader: the index-th (from 1) field of that
          // name; an empty value deletes it; a missing one is added.
          uint32_t seen = 0;
          auto it = std::find_if(out.fields.begin(), out.fields.end(), [&](const auto& f) {
            return IEquals(f.name, c.name) && ++seen == std::max<uint32_t>(c.index, 1);
          });
          bool empty = c.value.find_first_not_of(" \t") == std::string::npos;
          if (it == out.fields.end()) {
            if (!empty) out.fields.push_back({c.name, value});
          } else if (empty) {
            out.fields.erase(it);
          } else {
            it->value = value;
          }
        }
        text = true;
        break;
      }
      case Kind::kReplaceBody:
        if (!body_replaced) out.body.clear();
        body_replaced = true;
        out.body += MilterValueToCrlf(c.body);
        text = true;
        break;
      case Kind::kChangeFrom: {
        std::string a = StripAngles(c.address);
        if (!ValidAddress(a)) {
          return Err("malformed sender \"" + c.address.substr(0, 80) + "\"");
        }
        out.sender = a;
        envelope = true;
        break;
      }
      case Kind::kAddRcpt:
      case Kind::kAddRcptPar: {
        std::string a = StripAngles(c.address);
        if (a.empty() || !ValidAddress(a)) {
          return Err("malformed recipient \"" + c.address.substr(0, 80) + "\"");
        }
        if (std::none_of(out.rcpts.begin(), out.rcpts.end(),
                         [&](const std::string& x) { return IEquals(x, a); })) {
          out.rcpts.push_back(a);
        }
        envelope = true;
        break;
      }
      case Kind::kDelRcpt: {
        std::string a = StripAngles(c.address);
        std::erase_if(out.rcpts, [&](const std::string& x) { return IEquals(x, a); });
        envelope = true;
        break;
      }
      case Kind::kQuarantine:
        quarantine = c.reason.empty() ? "by " + std::string(filter) : c.reason;
        break;
      default:
        break;
    }
  }
  if (body_replaced && !out.body.empty() && !out.body.ends_with("\r\n")) out.body += "\r\n";
  // A body that followed the fields without an empty line (the message
  // was malformed) gets one once fields change: a body line starting
  // with white space would otherwise fold into a field the filter added.
  if (text && !out.separator && !out.body.empty()) out.separator = true;
  m = std::move(out);
  MilterChangeSummary summary;
  summary.text = text;
  summary.envelope = envelope;
  summary.spam = spam;
  summary.quarantine = std::move(quarantine);
  return summary;
}

std::string DescribeMilterChanges(const std::vector<MilterReply>& changes) {
  int headers = 0, body = 0, rcpts = 0, from = 0, quarantine = 0;
  for (const MilterReply& c : changes) {
    switch (c.kind) {
      case Kind::kAddHeader:
      case Kind::kInsertHeader:
      case Kind::kChangeHeader: ++headers; break;
      case Kind::kReplaceBody: body = 1; break;
      case Kind::kAddRcpt:
      case Kind::kAddRcptPar:
      case Kind::kDelRcpt: ++rcpts; break;
      case Kind::kChangeFrom: from = 1; break;
      case Kind::kQuarantine: quarantine = 1; break;
      default: break;
    }
  }
  std::string out;
  auto add = [&](int n, const char* what) {
    if (n) out += (out.empty() ? "" : ",") + std::to_string(n) + " " + what;
  };
  add(headers, "header");
  add(body, "body");
  add(from, "sender");
  add(rcpts, "recipient");
  add(quarantine, "quarantine");
  return out.empty() ? "no changes" : out;
}


}  // namespace tern::antispam
