// DKIM signing keys on disk: DATA_DIR/dkim/DOMAIN/SELECTOR.ALGORITHM.pem
// (PKCS#8 PEM, mode 0600, folders 0700), their creation, listing, removal,
// the DNS records to publish, and loading them for the server.
//
// Every key file of a domain signs: during a rotation the old and the new
// selector both sign, so mail verifies whichever record a receiver sees;
// removing the old file ends the rotation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "mailauth/dkim_crypto.h"
#include "mailauth/dkim_sign.h"

namespace tern::mailauth {

struct DkimKeyFile {
  std::string domain;  // lower case
  std::string selector;
  DkimKeyType type = DkimKeyType::kEd25519;
  std::string path;
  int64_t created = 0;  // the file's modification time, Unix seconds
};

// DATA_DIR/dkim.
std::string DkimKeyRoot(const std::string& data_dir);

// "t" + year and month + "e" (Ed25519) or "r" (RSA), e.g. "t202612e":
// sorts by age, tells the algorithm, and leaves room for one rotation a
// month without --selector.
std::string DefaultDkimSelector(DkimKeyType type, int64_t now);

// The key record text, "v=DKIM1; k=ed25519; p=..." (RFC 6376 3.6.1).
Result<std::string> DkimKeyRecordText(const DkimKey& key);

// A zone file line publishing `text` at `name`: the text is cut into
// character-strings of at most 255 octets (RFC 1035 3.3.14; RFC 6376
// 3.6.2.2 joins them back).
std::string DkimZoneLine(const std::string& name, const std::string& text);

struct NewDkimKey {
  DkimKeyFile file;
  std::string record_name;  // SELECTOR._domainkey.DOMAIN
  std::string record_text;
};

// Generates a key and stores it; refuses to replace an existing selector.
// RSA keys need 1024 to 4096 bits (RFC 8301 3.2; 2048 is the default).
Result<NewDkimKey> CreateDkimKey(const std::string& data_dir,
                                 const std::string& domain,
                                 const std::string& selector, DkimKeyType type,
                                 int rsa_bits);

// The TXT record text of a stored key (its public half, DkimKeyRecordText).
Result<std::string> DkimKeyFileRecordText(const DkimKeyFile& file);

// Every key file, sorted by domain, then creation time, then selector.
// Files that do not follow the naming are skipped.
Result<std::vector<DkimKeyFile>> ListDkimKeys(const std::string& data_dir);

// Deletes the key files of one selector.
Result<void> RemoveDkimKey(const std::string& data_dir,
                           const std::string& domain,
                           const std::string& selector);

// The keys the server signs a domain's mail with; none is not an error.
// A key file that cannot be read or parsed is.
Result<std::vector<DkimSigningKey>> LoadDkimSigningKeys(
    const std::string& data_dir, const std::string& domain);

// All domains' keys, by domain.
Result<std::map<std::string, std::vector<DkimSigningKey>>>
LoadAllDkimSigningKeys(const std::string& data_dir);

}  // namespace tern::mailauth
