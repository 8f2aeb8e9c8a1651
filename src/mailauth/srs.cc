// SRS0/SRS1 rewriting and its reversal with keyed hashes, day stamps and
// key rotation (srs.h describes the forms and why a forged address is
// refused).
#include "mailauth/srs.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>

#include "common/base64.h"
#include "common/strings.h"

namespace tern::mailauth {
namespace {

constexpr std::string_view kBase32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr int kStampDays = 1024;  // two base32 characters
constexpr int kMaxHashLength = 43;  // unpadded base64 of a SHA-256 digest

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 5321 4.1.2 Dot-string: atoms of atext joined by single dots. SRS
// puts the local part after other fields, so a quoted one cannot be kept.
bool IsDotString(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    bool atext = IsAlnum(c) || std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) !=
                                   std::string_view::npos;
    if (c == '.' && prev == '.') return false;
    if (!atext && c != '.') return false;
    prev = c;
  }
  return true;
}

bool IsDnsName(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.')
    return false;
  char prev = 0;
  for (char c : d) {
    if (c == '.' && prev == '.') return false;
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return false;
    prev = c;
  }
  return true;
}

// SRS0, SRS1 and the separators libsrs2 accepts after them.
bool HasTag(std::string_view local, std::string_view tag) {
  return local.size() > tag.size() && IStartsWith(local, tag) &&
         std::string_view("=+-").find(local[tag.size()]) != std::string_view::npos;
}

// Splits "a=b=c..." into `n` fields at the first n-1 '=' signs; the last
// field keeps any further '='. Empty fields are allowed here and checked
// by the caller.
bool SplitFields(std::string_view s, size_t n, std::vector<std::string_view>* out) {
  out->clear();
  for (size_t i = 0; i + 1 < n; ++i) {
    size_t eq = s.find('=');
    if (eq == std::string_view::npos) return false;
    out->push_back(s.substr(0, eq));
    s.remove_prefix(eq + 1);
  }
  out->push_back(s);
  return true;
}

char LowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

// Unpadded base64 of HMAC-SHA256 over the lower-cased data: what comes back
// in a bounce may have been case folded on the way (libsrs2 hashes lower
// case for the same reason).
std::string FullHash(const std::string& key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  std::string lower = ToLower(data);
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(lower.data()), lower.size(), md,
       &md_len);
  std::string b64 =
      Base64Encode(std::string_view(reinterpret_cast<const char*>(md), md_len));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return b64;
}

int Base32Value(char c) {
  size_t pos = kBase32.find(static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c));
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

}  // namespace

Result<Srs> Srs::Create(SrsOptions options) {
  if (options.key.empty()) return Err("SRS needs a secret key");
  for (const std::string& k : options.old_keys) {
    if (k.empty()) return Err("SRS: an old key is empty");
  }
  if (options.max_age_days < 1 || options.max_age_days > 1000) {
    // The stamp wraps after 1024 days; one day of slack is kept for
    // clocks that disagree (Reverse).
    return Err("SRS max_age_days must be between 1 and 1000");
  }
  if (options.hash_length < 4 || options.hash_length > kMaxHashLength) {
    return Err("SRS hash_length must be between 4 and 43");
  }
  return Srs(std::move(options));
}

int64_t Srs::Now() const {
  if (options_.now) return options_.now();
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Srs::Hash(const std::string& key, std::string_view data) const {
  return FullHash(key, data).substr(0, static_cast<size_t>(options_.hash_length));
}

bool Srs::HashMatches(std::string_view hash, std::string_view data) const {
  // Longer hashes than we write are checked in full (a hash_length that
  // was lowered); shorter ones are refused, or the odds of a guess would
  // grow as an attacker shortens the hash.
  if (hash.size() < static_cast<size_t>(options_.hash_length) ||
      hash.size() > static_cast<size_t>(kMaxHashLength)) {
    return false;
  }
  auto check = [&](const std::string& key) {
    std::string full = FullHash(key, data);
    // Every character is compared, whatever the first difference, so that
    // the time taken says nothing about the right hash.
    unsigned diff = 0;
    for (size_t i = 0; i < hash.size(); ++i) {
      diff |= static_cast<unsigned>(LowerAscii(hash[i]) ^ LowerAscii(full[i]));
    }
    return diff == 0;
  };
  bool ok = check(options_.key);
  for (const std::string& k : options_.old_keys) ok = check(k) || ok;
  return ok;
}

bool Srs::IsSrsAddress(std::string_view address) {
  std::string_view local = address.substr(0, address.rfind('@'));
  return HasTag(local, "SRS0") || HasTag(local, "SRS1");
}

Result<std::string> Srs::Forward(std::string_view sender,
                                 std::string_view our_domain) const {
  // The null reverse-path stays null: bounces are never bounced.
  if (sender.empty()) return std::string();
  if (!IsDnsName(our_domain)) return Err("SRS: invalid forwarding domain");
  size_t at = sender.rfind('@');
  if (at == std::string_view::npos) return Err("SRS: sender has no domain");
  std::string_view local = sender.substr(0, at);
  std::string_view domain = sender.substr(at + 1);
  if (!IsDnsName(domain)) return Err("SRS: sender domain is not a DNS name");
  // Mail from our own domain passes SPF for us as it is.
  if (IEquals(domain, our_domain)) return std::string(sender);
  if (!IsDotString(local)) {
    return Err("SRS: cannot rewrite the local part \"" + std::string(local) + "\"");
  }
  std::string ours(our_domain);

  if (HasTag(local, "SRS0")) {
    // Re-forwarding: point at the forwarder that made the SRS0 address and
    // keep its part as it is (from its separator on), so that only it
    // needs to verify that part.
    std::string opaque(local.substr(4));
    std::string host = ToLower(domain);
    return "SRS1=" + Hash(options_.key, host + "=" + opaque) + "=" + host +
           "=" + opaque + "@" + ours;
  }
  if (HasTag(local, "SRS1")) {
    // An SRS1 address keeps pointing at the first forwarder; only our hash
    // replaces the last forwarder's.
    std::vector<std::string_view> f;
    if (SplitFields(local.substr(5), 3, &f) && IsDnsName(f[1]) && !f[2].empty()) {
      std::string host = ToLower(f[1]);
      std::string opaque(f[2]);
      return "SRS1=" + Hash(options_.key, host + "=" + opaque) + "=" + host +
             "=" + opaque + "@" + ours;
    }
    // Not really SRS1: rewritten as any other sender below.
  }

  int day = static_cast<int>((Now() / 86400) % kStampDays);
  std::string stamp{kBase32[static_cast<size_t>(day >> 5)],
                    kBase32[static_cast<size_t>(day & 31)]};
  std::string host = ToLower(domain);
  std::string user(local);
  return "SRS0=" + Hash(options_.key, stamp + "=" + host + "=" + user) + "=" +
         stamp + "=" + host + "=" + user + "@" + ours;
}

Result<std::string> Srs::Reverse(std::string_view address) const {
  size_t at = address.rfind('@');
  std::string_view local = address.substr(0, at);
  std::vector<std::string_view> f;

  if (HasTag(local, "SRS0")) {
    // hash = stamp = domain = user (the user may hold '=' itself).
    if (!SplitFields(local.substr(5), 4, &f)) return Err("SRS: malformed SRS0 address");
    std::string_view hash = f[0], stamp = f[1], domain = f[2], user = f[3];
    if (stamp.size() != 2 || Base32Value(stamp[0]) < 0 || Base32Value(stamp[1]) < 0 ||
        !IsDnsName(domain) || user.empty()) {
      return Err("SRS: malformed SRS0 address");
    }
    std::string data = std::string(stamp) + "=" + std::string(domain) + "=" +
                       std::string(user);
    if (!HashMatches(hash, data)) return Err("SRS: invalid hash");
    int then = Base32Value(stamp[0]) * 32 + Base32Value(stamp[1]);
    int today = static_cast<int>((Now() / 86400) % kStampDays);
    int age = (today - then + kStampDays) % kStampDays;
    // A stamp one day ahead is a forwarder whose clock is past midnight
    // already, not an address 1023 days old.
    if (age > options_.max_age_days && age != kStampDays - 1) {
      return Err("SRS: address expired");
    }
    return std::string(user) + "@" + std::string(domain);
  }

  if (HasTag(local, "SRS1")) {
    // hash = first forwarder = its SRS0 part from the separator on.
    if (!SplitFields(local.substr(5), 3, &f) || !IsDnsName(f[1]) || f[2].empty()) {
      return Err("SRS: malformed SRS1 address");
    }
    std::string_view hash = f[0], host = f[1], opaque = f[2];
    if (!HashMatches(hash, std::string(host) + "=" + std::string(opaque))) {
      return Err("SRS: invalid hash");
    }
    return "SRS0" + std::string(opaque) + "@" + std::string(host);
  }
  return Err("not an SRS address");
}

}  // namespace tern::mailauth
