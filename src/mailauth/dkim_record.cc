// DKIM-Signature and key record validation (RFC 6376 3.5, 3.6.1, 6.1.1).
// Each rule carries its section; each rejection says which tag and why, so
// that `tern check dkim` can explain a permerror.
#include "mailauth/dkim_record.h"

#include "common/base64.h"
#include "common/strings.h"

namespace tern::mailauth {
namespace {

Result<std::string> DecodeBase64Tag(std::string_view name,
                                    std::string_view value) {
  std::string text = StripDkimWhitespace(value);
  if (text.empty()) return Err(std::string(name) + "= is empty");
  auto decoded = Base64Decode(text);
  if (!decoded) return Err(std::string(name) + "= is not valid base64");
  return *decoded;
}

// Decimal digits only; up to 18 of them so the value fits in 63 bits.
Result<uint64_t> Number(std::string_view name, std::string_view value) {
  if (value.empty() || value.size() > 18) {
    return Err(std::string(name) + "= is not a number of 1 to 18 digits");
  }
  uint64_t n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') {
      return Err(std::string(name) + "= is not a decimal number");
    }
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

bool IsFieldNameChar(char c) {
  // RFC 5322 3.6.8 ftext: printable ASCII but the colon.
  return c >= 33 && c <= 126 && c != ':';
}

}  // namespace

const char* DkimAlgorithmName(DkimAlgorithm algorithm) {
  switch (algorithm) {
    case DkimAlgorithm::kRsaSha256:
      return "rsa-sha256";
    case DkimAlgorithm::kEd25519Sha256:
      return "ed25519-sha256";
    case DkimAlgorithm::kRsaSha1:
      return "rsa-sha1";
  }
  return "rsa-sha256";
}

DkimKeyType DkimAlgorithmKeyType(DkimAlgorithm algorithm) {
  return algorithm == DkimAlgorithm::kEd25519Sha256 ? DkimKeyType::kEd25519
                                                    : DkimKeyType::kRsa;
}

bool IsDkimDomainName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

Result<DkimSignature> ParseDkimSignature(const DkimTagList& tags) {
  // RFC 6376 6.1.1: required tags.
  for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"}) {
    if (tags.Find(required) == nullptr) {
      return Err(std::string("missing required tag ") + required + "=");
    }
  }
  DkimSignature sig;
  // RFC 6376 3.5 v=: "MUST have the value "1"" and 6.1.1: anything else
  // is an incompatible version.
  if (tags.Find("v")->value != "1") {
    return Err("v=" + std::string(tags.Find("v")->value) + " is not version 1");
  }

  std::string_view a = tags.Find("a")->value;
  if (a == "rsa-sha256") {
    sig.algorithm = DkimAlgorithm::kRsaSha256;
  } else if (a == "ed25519-sha256") {  // RFC 8463 3
    sig.algorithm = DkimAlgorithm::kEd25519Sha256;
  } else if (a == "rsa-sha1") {
    sig.algorithm = DkimAlgorithm::kRsaSha1;
  } else {
    return Err("unknown algorithm a=" + std::string(a));
  }

  if (const DkimTag* c = tags.Find("c")) {
    // RFC 6376 3.5 c=: "header/body", body defaulting to simple.
    std::string_view value = c->value;
    size_t slash = value.find('/');
    std::string_view header = value.substr(0, slash);
    std::string_view body = slash == std::string_view::npos
                                ? std::string_view("simple")
                                : value.substr(slash + 1);
    auto canon = [](std::string_view v) -> std::optional<DkimCanon> {
      if (v == "simple") return DkimCanon::kSimple;
      if (v == "relaxed") return DkimCanon::kRelaxed;
      return std::nullopt;
    };
    auto h = canon(header), b = canon(body);
    if (!h || !b)
      return Err("unknown canonicalization c=" + std::string(value));
    sig.header_canon = *h;
    sig.body_canon = *b;
  }

  sig.domain = ToLower(tags.Find("d")->value);
  if (!IsDkimDomainName(sig.domain)) {
    return Err("d=" + std::string(tags.Find("d")->value) +
               " is not a domain name");
  }
  sig.selector = ToLower(tags.Find("s")->value);
  if (!IsDkimDomainName(sig.selector)) {
    return Err("s=" + std::string(tags.Find("s")->value) +
               " is not a valid selector");
  }
  if (sig.selector.size() + sizeof("._domainkey.") - 1 + sig.domain.size() >
      253) {
    return Err("s= and d= make a DNS name longer than 253 octets");
  }

  for (std::string_view name : SplitDkimList(tags.Find("h")->value)) {
    if (name.empty()) return Err("empty header field name in h=");
    for (char c : name) {
      if (!IsFieldNameChar(c)) {
        return Err("h= holds an invalid header field name");
      }
    }
    sig.signed_headers.emplace_back(name);
  }
  // RFC 6376 5.4 / 6.1.1: "the From header field MUST be signed".
  bool has_from = false;
  for (const std::string& name : sig.signed_headers) {
    has_from = has_from || IEquals(name, "from");
  }
  if (!has_from) return Err("h= does not include From");

  auto bh = DecodeBase64Tag("bh", tags.Find("bh")->value);
  if (!bh) return tl::unexpected(bh.error());
  sig.body_hash = std::move(*bh);
  sig.signature_base64 = StripDkimWhitespace(tags.Find("b")->value);
  auto b = DecodeBase64Tag("b", tags.Find("b")->value);
  if (!b) return tl::unexpected(b.error());
  sig.signature = std::move(*b);

  // RFC 6376 3.5 i=: "the domain part of the address MUST be the same as,
  // or a subdomain of, the value of the "d=" tag" (6.1.1: else PERMFAIL).
  if (const DkimTag* i = tags.Find("i")) {
    std::string_view identity = i->value;
    size_t at = identity.rfind('@');
    if (at == std::string_view::npos) return Err("i= has no '@'");
    std::string domain = ToLower(identity.substr(at + 1));
    bool inside = domain == sig.domain ||
                  (domain.size() > sig.domain.size() &&
                   domain.compare(domain.size() - sig.domain.size(),
                                  sig.domain.size(), sig.domain) == 0 &&
                   domain[domain.size() - sig.domain.size() - 1] == '.');
    if (!inside) {
      return Err("i= domain " + domain + " is not within d=" + sig.domain);
    }
    sig.identity = std::string(identity);
  } else {
    sig.identity = "@" + sig.domain;
  }

  if (const DkimTag* l = tags.Find("l")) {
    auto n = Number("l", l->value);
    if (!n) return tl::unexpected(n.error());
    sig.body_length = *n;
  }
  // RFC 6376 3.5 q=: a colon-separated list; dns/txt is the only method.
  if (const DkimTag* q = tags.Find("q")) {
    bool dns = false;
    for (std::string_view method : SplitDkimList(q->value)) {
      dns = dns || method == "dns/txt" || method.substr(0, 8) == "dns/txt/";
    }
    if (!dns) return Err("q=" + std::string(q->value) + " offers no dns/txt");
  }
  if (const DkimTag* t = tags.Find("t")) {
    auto n = Number("t", t->value);
    if (!n) return tl::unexpected(n.error());
    sig.timestamp = static_cast<int64_t>(*n);
  }
  if (const DkimTag* x = tags.Find("x")) {
    auto n = Number("x", x->value);
    if (!n) return tl::unexpected(n.error());
    sig.expiration = static_cast<int64_t>(*n);
    // RFC 6376 3.5 x=: "MUST be greater than the value of the t= tag".
    if (sig.timestamp && *sig.expiration <= *sig.timestamp) {
      return Err("x= is not after t=");
    }
  }
  return sig;
}

Result<DkimKeyRecord> ParseDkimKeyRecord(std::string_view text) {
  auto parsed = ParseDkimTagList(text);
  if (!parsed) return Err("key record: " + parsed.error().message);
  const DkimTagList& tags = *parsed;
  DkimKeyRecord record;
  // RFC 6376 3.6.1 v=: optional, but first and "DKIM1" when present.
  if (const DkimTag* v = tags.Find("v")) {
    if (&tags.tags.front() != v) return Err("key record: v= is not first");
    if (v->value != "DKIM1") {
      return Err("key record: v=" + std::string(v->value) + " is not DKIM1");
    }
  }
  if (const DkimTag* k = tags.Find("k")) {
    if (k->value == "rsa") {
      record.type = DkimKeyType::kRsa;
    } else if (k->value == "ed25519") {  // RFC 8463 4.1
      record.type = DkimKeyType::kEd25519;
    } else {
      return Err("key record: unknown key type k=" + std::string(k->value));
    }
  }
  const DkimTag* p = tags.Find("p");
  if (p == nullptr) return Err("key record: no p=");
  // An empty p= means the key was revoked (3.6.1); the caller says so.
  if (!p->value.empty()) {
    auto decoded = Base64Decode(StripDkimWhitespace(p->value));
    if (!decoded) return Err("key record: p= is not valid base64");
    record.public_key = std::move(*decoded);
  }
  if (const DkimTag* h = tags.Find("h")) {
    for (std::string_view alg : SplitDkimList(h->value)) {
      record.hash_algorithms.emplace_back(alg);
    }
  }
  if (const DkimTag* s = tags.Find("s")) {
    record.email = false;
    for (std::string_view service : SplitDkimList(s->value)) {
      record.email = record.email || service == "*" || service == "email";
    }
  }
  if (const DkimTag* t = tags.Find("t")) {
    for (std::string_view flag : SplitDkimList(t->value)) {
      record.testing = record.testing || flag == "y";
      record.strict = record.strict || flag == "s";
    }
  }
  return record;
}

}  // namespace tern::mailauth
