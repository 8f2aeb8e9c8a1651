// DKIM signing: one relaxed body hash shared by all keys, then per key a
// DKIM-Signature field, folded first and signed as folded (the b= value is
// appended last, so the signed text and the sent text agree).
#include "mailauth/dkim_sign.h"

#include <utility>

#include "common/base64.h"
#include "common/strings.h"
#include "mailauth/dkim_record.h"

namespace tern::mailauth {
namespace {

constexpr size_t kLineWidth = 78;  // RFC 5322 2.1.1 "SHOULD be no more than 78"

// Builds a folded field: pieces join with `sep`; a piece that would pass
// the line width starts a continuation line instead.
class Folder {
 public:
  explicit Folder(std::string start)
      : text_(std::move(start)), column_(text_.size()) {}
  void Add(std::string_view piece, std::string_view sep) {
    if (column_ + sep.size() + piece.size() > kLineWidth && column_ > 1) {
      text_ += "\r\n ";
      column_ = 1;
    } else {
      text_ += sep;
      column_ += sep.size();
    }
    text_ += piece;
    column_ += piece.size();
  }
  // Base64 may break anywhere (RFC 6376 3.5 b=, base64string with FWS).
  void AddBase64(std::string_view value) {
    while (!value.empty()) {
      if (column_ >= kLineWidth) {
        text_ += "\r\n ";
        column_ = 1;
      }
      size_t n = std::min(value.size(), kLineWidth - column_);
      text_ += value.substr(0, n);
      column_ += n;
      value.remove_prefix(n);
    }
  }
  void NewLine() {
    text_ += "\r\n ";
    column_ = 1;
  }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  size_t column_;
};

}  // namespace

const std::vector<std::string>& DefaultDkimSignedHeaders() {
  static const std::vector<std::string> kHeaders = {
      "From",       "To",           "Cc",          "Subject",
      "Date",       "Message-ID",   "Reply-To",    "In-Reply-To",
      "References", "MIME-Version", "Content-Type"};
  return kHeaders;
}

DkimSigner::DkimSigner(std::vector<DkimSigningKey> keys, int64_t now,
                       DkimSignOptions options)
    : keys_(std::move(keys)),
      now_(now),
      options_(std::move(options)),
      body_(DkimCanon::kRelaxed, std::nullopt) {}

void DkimSigner::Feed(std::string_view chunk) {
  std::string_view body = splitter_.Feed(chunk);
  if (!body.empty()) body_.Update(body);
}

Result<std::string> DkimSigner::Finish() {
  splitter_.Finish();
  if (splitter_.overflow()) return Err("header section too large to sign");
  body_.Finish();
  std::vector<DkimHeaderField> fields = SplitDkimHeader(splitter_.header());

  // h=: each wanted name as often as it occurs (the verifier takes them
  // from the bottom up, RFC 6376 5.4.2), From once more.
  std::vector<std::string> names;
  bool has_from = false;
  for (const std::string& wanted : options_.headers) {
    size_t count = 0;
    for (const DkimHeaderField& f : fields) {
      if (IEquals(f.name, wanted)) ++count;
    }
    bool from = IEquals(wanted, "From");
    has_from = has_from || (from && count > 0);
    if (from) ++count;
    for (size_t i = 0; i < count; ++i) names.push_back(wanted);
  }
  if (!has_from) return Err("the message has no From: field to sign");

  std::string bh = Base64Encode(body_.digest());
  std::string out;
  for (const DkimSigningKey& k : keys_) {
    if (!k.key.valid()) return Err("no key for selector " + k.selector);
    DkimAlgorithm algorithm = k.key.type() == DkimKeyType::kEd25519
                                  ? DkimAlgorithm::kEd25519Sha256
                                  : DkimAlgorithm::kRsaSha256;
    Folder f("DKIM-Signature:");
    f.Add("v=1;", " ");
    f.Add(std::string("a=") + DkimAlgorithmName(algorithm) + ";", " ");
    f.Add("c=relaxed/relaxed;", " ");
    f.Add("d=" + k.domain + ";", " ");
    f.Add("s=" + k.selector + ";", " ");
    f.Add("t=" + std::to_string(now_) + ";", " ");
    if (options_.expire_after) {
      f.Add("x=" + std::to_string(now_ + *options_.expire_after) + ";", " ");
    }
    for (size_t i = 0; i < names.size(); ++i) {
      std::string piece =
          (i == 0 ? "h=" : "") + names[i] + (i + 1 < names.size() ? ":" : ";");
      f.Add(piece, i == 0 ? " " : "");
    }
    f.Add("bh=" + bh + ";", " ");
    f.NewLine();
    f.Add("b=", "");
    // RFC 6376 3.7: what b= signs ends with this field, b= still empty.
    std::string data =
        DkimHeaderHashInput(fields, names, f.text(), DkimCanon::kRelaxed);
    auto signature = DkimSign(k.key, data);
    if (!signature) {
      return Err("signing with " + k.selector + ": " +
                 signature.error().message);
    }
    f.AddBase64(Base64Encode(*signature));
    out += f.text();
    out += "\r\n";
  }
  return out;
}

Result<std::string> DkimSignMessage(std::string_view message,
                                    const std::vector<DkimSigningKey>& keys,
                                    int64_t now, DkimSignOptions options) {
  DkimSigner signer(keys, now, std::move(options));
  signer.Feed(message);
  return signer.Finish();
}

}  // namespace tern::mailauth
