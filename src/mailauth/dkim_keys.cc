// DKIM key files: generation with private modes from the first byte
// (O_EXCL, 0600, no umask race), listing by file name, and loading.
#include "mailauth/dkim_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "common/strings.h"
#include "mailauth/dkim_record.h"

namespace tern::mailauth {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSuffix = ".pem";

Result<void> MakePrivateDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Err("cannot create " + dir + ": " + std::strerror(errno));
  }
  // An existing folder may have been made by hand with a looser mode.
  if (::chmod(dir.c_str(), 0700) != 0) {
    return Err("cannot set mode of " + dir + ": " + std::strerror(errno));
  }
  return {};
}

Result<void> WritePrivateFile(const std::string& path,
                              const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Err("cannot create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(path.c_str());
      return Err("cannot write " + path + ": " + why);
    }
    done += static_cast<size_t>(n);
  }
  // A key that vanished after a crash would leave the DNS record orphaned.
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Err("cannot sync " + path);
  }
  return {};
}

// "SELECTOR.ALGORITHM.pem" -> selector and type.
bool ParseKeyFileName(const std::string& name, std::string* selector,
                      DkimKeyType* type) {
  std::string_view n = name;
  if (n.size() <= 4 || n.substr(n.size() - 4) != kSuffix) return false;
  n.remove_suffix(4);
  size_t dot = n.rfind('.');
  if (dot == std::string_view::npos) return false;
  std::string_view alg = n.substr(dot + 1);
  if (alg == "ed25519") {
    *type = DkimKeyType::kEd25519;
  } else if (alg == "rsa") {
    *type = DkimKeyType::kRsa;
  } else {
    return false;
  }
  *selector = std::string(n.substr(0, dot));
  return IsDkimDomainName(*selector);
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Err("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Result<std::vector<DkimKeyFile>> ListDomain(const std::string& data_dir,
                                            const std::string& domain) {
  std::vector<DkimKeyFile> out;
  std::error_code ec;
  fs::path dir = fs::path(DkimKeyRoot(data_dir)) / domain;
  if (!fs::is_directory(dir, ec)) return out;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    DkimKeyFile f;
    if (!entry.is_regular_file(ec)) continue;
    if (!ParseKeyFileName(entry.path().filename().string(), &f.selector,
                          &f.type)) {
      continue;
    }
    f.domain = domain;
    f.path = entry.path().string();
    struct stat st;
    if (::stat(f.path.c_str(), &st) == 0) f.created = st.st_mtime;
    out.push_back(std::move(f));
  }
  if (ec) return Err("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(),
            [](const DkimKeyFile& a, const DkimKeyFile& b) {
              return std::tie(a.created, a.selector) <
                     std::tie(b.created, b.selector);
            });
  return out;
}

}  // namespace

std::string DkimKeyRoot(const std::string& data_dir) {
  return data_dir + "/dkim";
}

std::string DefaultDkimSelector(DkimKeyType type, int64_t now) {
  time_t t = static_cast<time_t>(now);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "t%Y%m", &tm);
  return std::string(buf) + (type == DkimKeyType::kEd25519 ? "e" : "r");
}

Result<std::string> DkimKeyRecordText(const DkimKey& key) {
  auto p = DkimPublicKeyRecordValue(key);
  if (!p) return tl::unexpected(p.error());
  return std::string("v=DKIM1; k=") + DkimKeyTypeName(key.type()) + "; p=" + *p;
}

std::string DkimZoneLine(const std::string& name, const std::string& text) {
  std::string line = name + ". IN TXT";
  for (size_t i = 0; i < text.size(); i += 255) {
    // The record text is base64 and tag syntax: no '"' or '\' to escape.
    line += " \"" + text.substr(i, 255) + "\"";
  }
  return line;
}

Result<NewDkimKey> CreateDkimKey(const std::string& data_dir,
                                 const std::string& domain_in,
                                 const std::string& selector, DkimKeyType type,
                                 int rsa_bits) {
  std::string domain = ToLower(domain_in);
  if (!domain.empty() && domain.back() == '.') domain.pop_back();
  if (!IsDkimDomainName(domain) || domain.find('.') == std::string::npos) {
    return Err("not a domain name: " + domain_in);
  }
  if (!IsDkimDomainName(selector)) {
    return Err("not a valid selector (letters, digits, '-', '_', dots): " +
               selector);
  }
  if (type == DkimKeyType::kRsa && (rsa_bits < 1024 || rsa_bits > 4096)) {
    return Err("RSA keys must have 1024 to 4096 bits (2048 recommended)");
  }
  auto existing = ListDomain(data_dir, domain);
  if (!existing) return tl::unexpected(existing.error());
  for (const DkimKeyFile& f : *existing) {
    // One selector, one key record: reusing a name would replace the key
    // mail already in transit was signed with.
    if (IEquals(f.selector, selector)) {
      return Err("selector " + selector + " already exists for " + domain +
                 " (" + f.path + "); choose another with --selector");
    }
  }
  std::string root = DkimKeyRoot(data_dir);
  if (auto ok = MakePrivateDir(root); !ok) return tl::unexpected(ok.error());
  std::string dir = root + "/" + domain;
  if (auto ok = MakePrivateDir(dir); !ok) return tl::unexpected(ok.error());

  auto key = GenerateDkimKey(type, rsa_bits);
  if (!key) return tl::unexpected(key.error());
  auto pem = DkimPrivateKeyPem(*key);
  if (!pem) return tl::unexpected(pem.error());
  auto record = DkimKeyRecordText(*key);
  if (!record) return tl::unexpected(record.error());

  NewDkimKey out;
  out.file.domain = domain;
  out.file.selector = selector;
  out.file.type = type;
  out.file.path = dir + "/" + selector + "." + DkimKeyTypeName(type) + kSuffix;
  out.file.created = static_cast<int64_t>(std::time(nullptr));
  if (auto ok = WritePrivateFile(out.file.path, *pem); !ok) {
    return tl::unexpected(ok.error());
  }
  out.record_name = selector + "._domainkey." + domain;
  out.record_text = std::move(*record);
  return out;
}

Result<std::vector<DkimKeyFile>> ListDkimKeys(const std::string& data_dir) {
  std::vector<DkimKeyFile> out;
  std::error_code ec;
  fs::path root = DkimKeyRoot(data_dir);
  if (!fs::is_directory(root, ec)) return out;
  std::vector<std::string> domains;
  for (const fs::directory_entry& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory(ec))
      domains.push_back(entry.path().filename().string());
  }
  if (ec) return Err("cannot list " + root.string() + ": " + ec.message());
  std::sort(domains.begin(), domains.end());
  for (const std::string& domain : domains) {
    auto files = ListDomain(data_dir, domain);
    if (!files) return tl::unexpected(files.error());
    out.insert(out.end(), files->begin(), files->end());
  }
  return out;
}

Result<void> RemoveDkimKey(const std::string& data_dir,
                           const std::string& domain_in,
                           const std::string& selector) {
  std::string domain = ToLower(domain_in);
  auto files = ListDomain(data_dir, domain);
  if (!files) return tl::unexpected(files.error());
  bool found = false;
  for (const DkimKeyFile& f : *files) {
    if (f.selector != selector) continue;
    if (::unlink(f.path.c_str()) != 0) {
      return Err("cannot remove " + f.path + ": " + std::strerror(errno));
    }
    found = true;
  }
  if (!found) return Err("no key with selector " + selector + " for " + domain);
  return {};
}

Result<std::string> DkimKeyFileRecordText(const DkimKeyFile& file) {
  auto pem = ReadFile(file.path);
  if (!pem) return tl::unexpected(pem.error());
  auto key = ParseDkimPrivateKeyPem(*pem);
  if (!key) return Err(file.path + ": " + key.error().message);
  return DkimKeyRecordText(*key);
}

Result<std::vector<DkimSigningKey>> LoadDkimSigningKeys(
    const std::string& data_dir, const std::string& domain_in) {
  std::string domain = ToLower(domain_in);
  auto files = ListDomain(data_dir, domain);
  if (!files) return tl::unexpected(files.error());
  std::vector<DkimSigningKey> keys;
  for (const DkimKeyFile& f : *files) {
    auto pem = ReadFile(f.path);
    if (!pem) return tl::unexpected(pem.error());
    auto key = ParseDkimPrivateKeyPem(*pem);
    if (!key) return Err(f.path + ": " + key.error().message);
    if (key->type() != f.type) {
      return Err(f.path + ": the key is " + DkimKeyTypeName(key->type()) +
                 ", the file name says " + DkimKeyTypeName(f.type));
    }
    if (key->type() == DkimKeyType::kRsa && key->bits() < 1024) {
      // RFC 8301 3.2: signers MUST use at least 1024 bits.
      return Err(f.path + ": RSA key of " + std::to_string(key->bits()) +
                 " bits; at least 1024 required");
    }
    keys.push_back(DkimSigningKey{domain, f.selector, std::move(*key)});
  }
  return keys;
}

Result<std::map<std::string, std::vector<DkimSigningKey>>>
LoadAllDkimSigningKeys(const std::string& data_dir) {
  std::map<std::string, std::vector<DkimSigningKey>> out;
  auto files = ListDkimKeys(data_dir);
  if (!files) return tl::unexpected(files.error());
  for (const DkimKeyFile& f : *files) {
    if (out.count(f.domain)) continue;
    auto keys = LoadDkimSigningKeys(data_dir, f.domain);
    if (!keys) return tl::unexpected(keys.error());
    out.emplace(f.domain, std::move(*keys));
  }
  return out;
}

}  // namespace tern::mailauth
