// ESMTP MAIL/RCPT parameter parsing and validation. Values are checked
// strictly because they end up in the queue and in delivery status
// notifications.
#include "smtp/protocol/params.h"

#include <vector>

#include "common/strings.h"
#include "smtp/protocol/utf8.h"

namespace tern::smtp {
namespace {

// RFC 3461 4.4: ENVID is at most 100 characters; 4.2: ORCPT at most 500.
constexpr size_t kMaxEnvid = 100;
constexpr size_t kMaxOrcpt = 500;

bool IsAlnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}

// RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
bool IsKeyword(std::string_view k) {
  if (k.empty() || !IsAlnum(static_cast<unsigned char>(k[0]))) return false;
  for (char c : k) {
    if (!IsAlnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

bool IsHex(unsigned char c) {
  // RFC 3461 4: hexchar uses upper-case hex digits only.
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

// RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+"
// and "="; hexchar = "+" 2HEXDIG. With utf8, RFC 6533 3 also allows
// UTF-8 characters (utf-8-addr-xtext / unitext).
bool IsXtext(std::string_view v, bool utf8) {
  for (size_t i = 0; i < v.size();) {
    unsigned char c = static_cast<unsigned char>(v[i]);
    if (c == '+') {
      if (i + 2 >= v.size()) return false;
      if (!IsHex(static_cast<unsigned char>(v[i + 1])) ||
          !IsHex(static_cast<unsigned char>(v[i + 2]))) {
        return false;
      }
      i += 3;
    } else if (c >= 33 && c <= 126 && c != '=') {
      ++i;
    } else if (c >= 0x80 && utf8) {
      size_t n = Utf8Len(v, i);
      if (n == 0) return false;
      i += n;
    } else {
      return false;
    }
  }
  return true;
}

bool ParseSize(std::string_view v, uint64_t* out) {
  if (v.empty() || v.size() > 20) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    // Saturate: anything this large is above every limit anyway.
    n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
  }
  *out = n;
  return true;
}

// Splits "KEY[=VALUE]" items separated by spaces and calls f(key, value,
// has_value) for each; stops at the first status that is not kOk.
template <typename F>
ParamStatus ForEachParam(std::string_view rest, F f) {
  // The path must be followed by SP or the end of the line (RFC 5321
  // 4.1.1.2); extra spaces are tolerated as most servers do.
  if (!rest.empty() && rest[0] != ' ') return ParamStatus::kSyntax;
  while (true) {
    while (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
    if (rest.empty()) return ParamStatus::kOk;
    size_t sp = rest.find(' ');
    std::string_view item = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp);
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    bool has_value = eq != std::string_view::npos;
    std::string_view value =
        has_value ? item.substr(eq + 1) : std::string_view();
    if (!IsKeyword(key)) return ParamStatus::kSyntax;
    // RFC 5321 4.1.2: esmtp-value = 1*(%d33-60 / %d62-126), so never empty.
    if (has_value && value.empty()) return ParamStatus::kSyntax;
    ParamStatus s = f(key, value, has_value);
    if (s != ParamStatus::kOk) return s;
  }
}

}  // namespace

ParamStatus ParseMailParams(std::string_view rest, uint64_t max_size,
                            MailParams* out) {
  bool seen_size = false;
  return ForEachParam(
      rest, [&](std::string_view key, std::string_view value, bool has_value) {
        if (IEquals(key, "SIZE")) {
          // RFC 1870 3: SIZE=1*20DIGIT.
          if (seen_size || !ParseSize(value, &out->size)) {
            return ParamStatus::kSyntax;
          }
          seen_size = true;
          if (out->size > max_size) return ParamStatus::kTooBig;
          return ParamStatus::kOk;
        }
        if (IEquals(key, "BODY")) {
          // RFC 6152 2: BODY=7BIT / 8BITMIME. BINARYMIME is not offered.
          if (!out->body.empty()) return ParamStatus::kSyntax;
          if (IEquals(value, "7BIT")) {
            out->body = "7BIT";
          } else if (IEquals(value, "8BITMIME")) {
            out->body = "8BITMIME";
          } else {
            return ParamStatus::kSyntax;
          }
          return ParamStatus::kOk;
        }
        if (IEquals(key, "SMTPUTF8")) {
          // RFC 6531 3.4: the parameter has no value.
          if (has_value || out->smtputf8) return ParamStatus::kSyntax;
          out->smtputf8 = true;
          return ParamStatus::kOk;
        }
        if (IEquals(key, "REQUIRETLS")) {
          // RFC 8689 3: the parameter has no value. Whether the session
          // may use it (TLS) is the Session's decision.
          if (has_value || out->requiretls) return ParamStatus::kSyntax;
          out->requiretls = true;
          return ParamStatus::kOk;
        }
        if (IEquals(key, "RET")) {
          // RFC 3461 4.3: RET=FULL / HDRS.
          if (!out->ret.empty()) return ParamStatus::kSyntax;
          if (IEquals(value, "FULL")) {
            out->ret = "FULL";
          } else if (IEquals(value, "HDRS")) {
            out->ret = "HDRS";
          } else {
            return ParamStatus::kSyntax;
          }
          return ParamStatus::kOk;
        }
        if (IEquals(key, "ENVID")) {
          // RFC 3461 4.4: ENVID=xtext, at most 100 characters.
          if (!has_value || !out->envid.empty() || value.size() > kMaxEnvid ||
              !IsXtext(value, false)) {
            return ParamStatus::kSyntax;
          }
          out->envid = std::string(value);
          return ParamStatus::kOk;
        }
        return ParamStatus::kUnknown;
      });
}

ParamStatus ParseRcptParams(std::string_view rest, bool utf8, RcptParams* out) {
  return ForEachParam(rest, [&](std::string_view key, std::string_view value,
                                bool has_value) {
    if (IEquals(key, "NOTIFY")) {
      // RFC 3461 4.1: "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY.
      if (!out->notify.empty()) return ParamStatus::kSyntax;
      std::vector<std::string> items = Split(value, ',');
      bool never = false, success = false, failure = false, delay = false;
      for (const std::string& item : items) {
        bool* flag = nullptr;
        if (IEquals(item, "NEVER")) flag = &never;
        if (IEquals(item, "SUCCESS")) flag = &success;
        if (IEquals(item, "FAILURE")) flag = &failure;
        if (IEquals(item, "DELAY")) flag = &delay;
        if (flag == nullptr || *flag) return ParamStatus::kSyntax;
        *flag = true;
      }
      if (never && items.size() > 1) return ParamStatus::kSyntax;
      // Store in canonical upper case for the queue.
      out->notify.clear();
      for (const char* word : {"NEVER", "SUCCESS", "FAILURE", "DELAY"}) {
        bool on = (word[0] == 'N' && never) || (word[0] == 'S' && success) ||
                  (word[0] == 'F' && failure) || (word[0] == 'D' && delay);
        if (!on) continue;
        if (!out->notify.empty()) out->notify.push_back(',');
        out->notify += word;
      }
      return ParamStatus::kOk;
    }
    if (IEquals(key, "ORCPT")) {
      // RFC 3461 4.2: ORCPT=addr-type ";" xtext, addr-type an atom such
      // as "rfc822" (or "utf-8", RFC 6533 3).
      if (!out->orcpt.empty() || value.size() > kMaxOrcpt) {
        return ParamStatus::kSyntax;
      }
      size_t semi = value.find(';');
      if (semi == std::string_view::npos || semi + 1 == value.size() ||
          !IsKeyword(value.substr(0, semi)) ||
          !IsXtext(value.substr(semi + 1), utf8)) {
        return ParamStatus::kSyntax;
      }
      out->orcpt = std::string(value);
      return ParamStatus::kOk;
    }
    return ParamStatus::kUnknown;
  });
}

}  // namespace tern::smtp
