// ARC sealing (RFC 8617 5.1): the next set's ARC-Authentication-Results,
// ARC-Message-Signature (a DKIM signature over the message) and ARC-Seal
// (over the ARC sets), each folded before it is signed, so that the signed
// text and the sent text are the same octets.
#include <optional>
#include <utility>

#include "common/base64.h"
#include "common/strings.h"
#include "mailauth/arc.h"
#include "mailauth/auth_results.h"

namespace tern::mailauth {
namespace {

constexpr size_t kWidth = 78;  // RFC 5322 2.1.1: lines SHOULD stay within

// Writes "Name: tag; tag; ..." folded at the tag boundaries.
class FieldWriter {
 public:
  explicit FieldWriter(std::string_view name)
      : text_(std::string(name) + ":"), line_start_(0) {}

  // A unit that must not be split, after a space or on a new line.
  void Add(std::string_view unit) {
    if (Column() + 1 + unit.size() > kWidth && Column() > 1) {
      text_ += "\r\n ";
      line_start_ = text_.size() - 1;
    } else {
      text_ += ' ';
    }
    text_ += unit;
  }

  // "h=a:b:c;" with breaks allowed after each colon.
  void AddList(std::string_view prefix, const std::vector<std::string>& items) {
    for (size_t i = 0; i < items.size(); ++i) {
      std::string unit = (i == 0 ? std::string(prefix) : std::string()) +
                         items[i] + (i + 1 < items.size() ? ":" : ";");
      if (i == 0) {
        Add(unit);
      } else if (Column() + unit.size() > kWidth) {
        text_ += "\r\n ";
        line_start_ = text_.size() - 1;
        text_ += unit;
      } else {
        text_ += unit;
      }
    }
  }

  // "b=" alone at the start of a line: the value comes after signing.
  void StartSignature() {
    text_ += "\r\n b=";
    line_start_ = text_.size() - 3;
  }

  // Base64 may be broken anywhere (RFC 6376 3.5 b=).
  void AddBase64(std::string_view value) {
    while (!value.empty()) {
      if (Column() >= kWidth) {
        text_ += "\r\n ";
        line_start_ = text_.size() - 1;
      }
      size_t n = std::min(value.size(), kWidth - Column());
      text_ += value.substr(0, n);
      value.remove_prefix(n);
    }
  }

  const std::string& text() const { return text_; }

 private:
  size_t Column() const { return text_.size() - line_start_; }

  std::string text_;
  size_t line_start_;
};

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// The caller's results (an Authentication-Results payload) checked and
// unfolded: control characters, or a line break that is not folding,
// would end the field early and let text be injected as a new field.
Result<std::string> Unfold(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r' && i + 2 < text.size() && text[i + 1] == '\n' &&
        IsWsp(text[i + 2])) {
      ++i;
      continue;
    }
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return Err("control character in the Authentication-Results text");
    }
    out += c;
  }
  return out;
}

// Splits at a separator outside quoted strings and comments (RFC 8601
// 2.2: both may hold ';' and spaces); pieces are trimmed, empty ones
// dropped. A space separator takes tabs too.
std::vector<std::string> SplitOutside(std::string_view text, char sep) {
  std::vector<std::string> out;
  std::string piece;
  bool quoted = false;
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if ((quoted || depth > 0) && c == '\\' && i + 1 < text.size()) {
      piece += c;
      piece += text[++i];
      continue;
    }
    if (quoted) {
      quoted = c != '"';
    } else if (c == '"' && depth == 0) {
      quoted = true;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && depth > 0) {
      --depth;
    } else if (depth == 0 && (c == sep || (sep == ' ' && c == '\t'))) {
      std::string_view t = Trim(piece);
      if (!t.empty()) out.emplace_back(t);
      piece.clear();
      continue;
    }
    piece += c;
  }
  std::string_view t = Trim(piece);
  if (!t.empty()) out.emplace_back(t);
  return out;
}

// Whether a resinfo is the "arc" method's ("arc=pass ...", RFC 8601 2.2
// methodspec: the method, optional CFWS, '=').
bool IsArcResult(std::string_view resinfo) {
  if (resinfo.size() < 3 || !IEquals(resinfo.substr(0, 3), "arc")) {
    return false;
  }
  size_t i = 3;
  while (i < resinfo.size() && IsWsp(resinfo[i])) ++i;
  return i < resinfo.size() && resinfo[i] == '=';
}

// The AAR: "ARC-Authentication-Results: i=N; authserv-id;" then one
// result per line (as RFC 8617's examples lay it out), long results folded
// between words.
Result<std::string> AarField(int instance, const ArcSealRequest& request) {
  auto unfolded = Unfold(request.auth_results);
  if (!unfolded) return tl::unexpected(unfolded.error());
  std::vector<std::string> results = SplitOutside(*unfolded, ';');
  // RFC 8601 2.2 no-result: "none" alone stands for no results.
  if (results.size() == 1 && IEquals(results[0], "none")) results.clear();
  bool has_arc = false;
  for (const std::string& r : results) has_arc = has_arc || IsArcResult(r);
  if (!has_arc)
    results.push_back(std::string("arc=") + ArcStatusName(request.cv));

  std::string out =
      "ARC-Authentication-Results: i=" + std::to_string(instance) + "; " +
      AuthResultsValue(request.authserv_id) + ";";
  for (size_t k = 0; k < results.size(); ++k) {
    out += "\r\n\t";
    size_t column = 1;
    std::vector<std::string> words = SplitOutside(results[k], ' ');
    for (size_t w = 0; w < words.size(); ++w) {
      if (w > 0) {
        if (column + 1 + words[w].size() > kWidth) {
          out += "\r\n\t ";
          column = 2;
        } else {
          out += ' ';
          ++column;
        }
      }
      out += words[w];
      column += words[w].size();
    }
    if (k + 1 < results.size()) out += ';';
  }
  return out;
}

bool IsArcOrAuthResults(std::string_view name) {
  return IEquals(name, "ARC-Authentication-Results") ||
         IEquals(name, "ARC-Message-Signature") || IEquals(name, "ARC-Seal") ||
         IEquals(name, "Authentication-Results");
}

DkimAlgorithm AlgorithmOf(const DkimKey& key) {
  return key.type() == DkimKeyType::kEd25519 ? DkimAlgorithm::kEd25519Sha256
                                             : DkimAlgorithm::kRsaSha256;
}

}  // namespace

const std::vector<std::string>& DefaultArcSignedHeaders() {
  static const std::vector<std::string> kHeaders = [] {
    std::vector<std::string> h = DefaultDkimSignedHeaders();
    h.push_back("DKIM-Signature");
    return h;
  }();
  return kHeaders;
}

const DkimSigningKey* ChooseArcKey(const std::vector<DkimSigningKey>& keys,
                                   bool prefer_rsa) {
  DkimKeyType first = prefer_rsa ? DkimKeyType::kRsa : DkimKeyType::kEd25519;
  DkimKeyType second = prefer_rsa ? DkimKeyType::kEd25519 : DkimKeyType::kRsa;
  for (DkimKeyType type : {first, second}) {
    for (const DkimSigningKey& k : keys) {
      if (k.key.valid() && k.key.type() == type) return &k;
    }
  }
  return keys.empty() ? nullptr : &keys.front();
}

ArcSealer::ArcSealer(std::vector<DkimSigningKey> keys, int64_t now,
                     ArcSealOptions options)
    : keys_(std::move(keys)),
      now_(now),
      options_(std::move(options)),
      body_(DkimCanon::kRelaxed, std::nullopt) {}

void ArcSealer::Feed(std::string_view chunk) {
  std::string_view body = splitter_.Feed(chunk);
  if (!body.empty()) body_.Update(body);
}

Result<std::string> ArcSealer::Finish(const ArcSealRequest& request) {
  splitter_.Finish();
  if (splitter_.overflow()) return Err("header section too large to seal");
  body_.Finish();
  const DkimSigningKey* key = ChooseArcKey(keys_, options_.prefer_rsa);
  if (key == nullptr || !key->key.valid()) return Err("no key to seal with");
  if (!IsDkimDomainName(key->domain) || !IsDkimDomainName(key->selector)) {
    return Err("the sealing domain and selector must be DNS names");
  }
  if (request.authserv_id.empty()) return Err("no authserv-id to seal with");
  for (char c : request.authserv_id) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return Err("control character in authserv-id");
  }

  const std::string& header = splitter_.header();
  // A header that starts with a continuation line would continue our AAR
  // once the new fields are on top, and break the seal.
  if (!header.empty() && IsWsp(header[0])) {
    return Err("the header section starts with a continuation line");
  }
  std::vector<DkimHeaderField> fields = SplitDkimHeader(header);
  ArcChain chain = CollectArcChain(fields);
  // RFC 8617 5.1 step 1: a chain whose newest seal says cv=fail is over.
  if (chain.ended) {
    return Err("the ARC chain has ended (ARC-Seal i=" +
               std::to_string(chain.highest_instance) +
               " says cv=fail): no set may follow");
  }
  // Step 2, with 4.2.1.1's limit.
  const int instance = chain.highest_instance + 1;
  if (instance > kArcMaxInstance) {
    return Err("the message has ARC sets up to i=" +
               std::to_string(chain.highest_instance) + "; the limit is " +
               std::to_string(kArcMaxInstance));
  }
  // Step 3's cv is the caller's validation; it must fit the fields, or the
  // new seal would be one that no validator accepts.
  if (request.cv == ArcStatus::kNone && chain.status != ArcStatus::kNone) {
    return Err("cv=none, but the message has ARC fields");
  }
  if (request.cv == ArcStatus::kPass && chain.status != ArcStatus::kPass) {
    return Err(chain.status == ArcStatus::kNone
                   ? std::string("cv=pass, but the message has no ARC set")
                   : "cv=pass, but the chain is malformed: " + chain.reason);
  }
  auto aar = AarField(instance, request);
  if (!aar) return tl::unexpected(aar.error());

  // h=: each wanted name as often as it occurs (taken bottom up, RFC 6376
  // 5.4.2), From once more so that a From added later breaks the AMS
  // (RFC 6376 8.15), and From even when absent (RFC 6376 5.4 requires it).
  std::vector<std::string> names;
  bool from_listed = false;
  for (const std::string& wanted : options_.headers) {
    if (IsArcOrAuthResults(wanted)) continue;
    size_t count = 0;
    for (const DkimHeaderField& f : fields) {
      if (IEquals(f.name, wanted)) ++count;
    }
    if (IEquals(wanted, "From")) {
      if (from_listed) continue;
      from_listed = true;
      ++count;
    }
    for (size_t i = 0; i < count; ++i) names.push_back(wanted);
  }
  if (!from_listed) names.insert(names.begin(), "From");

  const std::string algorithm = DkimAlgorithmName(AlgorithmOf(key->key));
  const std::string i_tag = "i=" + std::to_string(instance) + ";";
  const std::string t_tag = "t=" + std::to_string(now_) + ";";

  // RFC 8617 4.1.2: the AMS, a DKIM signature with i= the instance.
  FieldWriter ams("ARC-Message-Signature");
  ams.Add(i_tag);
  ams.Add("a=" + algorithm + ";");
  ams.Add("c=relaxed/relaxed;");
  ams.Add("d=" + key->domain + ";");
  ams.Add("s=" + key->selector + ";");
  ams.Add(t_tag);
  ams.AddList("h=", names);
  ams.Add("bh=" + Base64Encode(body_.digest()) + ";");
  ams.StartSignature();
  auto ams_sig = DkimSign(
      key->key,
      DkimHeaderHashInput(fields, names, ams.text(), DkimCanon::kRelaxed));
  if (!ams_sig) return Err("signing the AMS: " + ams_sig.error().message);
  ams.AddBase64(Base64Encode(*ams_sig));

  // RFC 8617 4.1.3: the seal.
  FieldWriter seal("ARC-Seal");
  seal.Add(i_tag);
  seal.Add("a=" + algorithm + ";");
  seal.Add(std::string("cv=") + ArcStatusName(request.cv) + ";");
  seal.Add("d=" + key->domain + ";");
  seal.Add("s=" + key->selector + ";");
  seal.Add(t_tag);
  seal.StartSignature();
  // RFC 8617 5.1.1: the sets 1..N and the new one, in order; 5.1.2: with
  // cv=fail only the new set, as if it were the only one.
  std::vector<ArcSet> sets;
  if (request.cv != ArcStatus::kFail) sets = chain.sets;
  ArcSet own;
  own.instance = instance;
  own.aar = *aar;
  own.ams = ams.text();
  own.seal = seal.text();
  sets.push_back(own);
  auto seal_sig = DkimSign(key->key, ArcSealHashInput(sets));
  if (!seal_sig) return Err("signing the seal: " + seal_sig.error().message);
  seal.AddBase64(Base64Encode(*seal_sig));

  return seal.text() + "\r\n" + ams.text() + "\r\n" + *aar + "\r\n";
}

Result<std::string> ArcSealMessage(std::string_view message,
                                   const ArcSealRequest& request,
                                   const std::vector<DkimSigningKey>& keys,
                                   int64_t now, ArcSealOptions options) {
  ArcSealer sealer(keys, now, std::move(options));
  sealer.Feed(message);
  return sealer.Finish(request);
}

Result<std::string> SealForwarded(std::string_view message,
                                  std::string_view authserv_id,
                                  const std::vector<DkimSigningKey>& keys,
                                  int64_t now) {
  size_t end = message.find("\r\n\r\n");
  std::string_view header =
      end == std::string_view::npos ? message : message.substr(0, end + 2);
  bool has_arc = false;
  // Our resinfos (RFC 8601 2.2: "authserv-id [version] ; resinfo ; ...",
  // split outside comments and quoted strings), once found.
  std::optional<std::vector<std::string>> ours;
  for (const DkimHeaderField& f : SplitDkimHeader(header)) {
    if (f.name.size() > 4 && IEquals(f.name.substr(0, 4), "arc-")) has_arc = true;
    if (ours || !IEquals(f.name, "authentication-results")) continue;
    std::string_view body = f.text.substr(f.text.find(':') + 1);
    if (!ClaimsAuthServId(body, authserv_id)) continue;
    auto unfolded = Unfold(body);
    if (!unfolded) continue;  // not a field we wrote
    std::vector<std::string> parts = SplitOutside(*unfolded, ';');
    ours.emplace(parts.begin() + (parts.empty() ? 0 : 1), parts.end());
  }
  ArcSealRequest request;
  request.authserv_id = std::string(authserv_id);
  if (!ours) {
    if (has_arc) {
      return Err("ARC fields present but the message was not verified on arrival");
    }
    request.auth_results = "none";
    request.cv = ArcStatus::kNone;
    return ArcSealMessage(message, request, keys, now);
  }
  // The arc= result among ours (RFC 8617 10.1): the chain as it arrived.
  std::optional<ArcStatus> cv;
  for (const std::string& r : *ours) {
    if (!request.auth_results.empty()) request.auth_results += "; ";
    request.auth_results += r;
    if (!cv && IsArcResult(r)) {
      std::vector<std::string> words = SplitOutside(r.substr(r.find('=') + 1), ' ');
      if (!words.empty()) cv = ParseArcStatus(words[0]);
    }
  }
  if (request.auth_results.empty()) request.auth_results = "none";
  if (!cv) {
    if (has_arc) return Err("our Authentication-Results has no arc= result");
    cv = ArcStatus::kNone;
  }
  request.cv = *cv;
  return ArcSealMessage(message, request, keys, now);
}

}  // namespace tern::mailauth
