// A credential store that passes lookups through and remembers the user
// name asked about, so that a failed login can be logged by name without
// looking at the SASL payload (which may hold a password). One per
// connection; SMTP and POP3 (and IMAP) wrap the server's store with it.
#pragma once

#include <string>

#include "auth/sasl.h"

namespace tern::auth {

class RecordingCredentials : public CredentialStore {
 public:
  explicit RecordingCredentials(CredentialStore& inner) : inner_(inner) {}

  PasswordCheck CheckPassword(const std::string& user,
                              const std::string& password) override {
    user_ = user;
    return inner_.CheckPassword(user, password);
  }
  ScramAnswer Scram(const std::string& user) override {
    user_ = user;
    return inner_.Scram(user);
  }
  // Printable and bounded: it goes into a log line.
  std::string user() const {
    std::string u = user_.substr(0, 128);
    for (char& c : u) {
      if (static_cast<unsigned char>(c) < 32 || c == 127) c = '?';
    }
    return u;
  }
  void clear() { user_.clear(); }

 private:
  CredentialStore& inner_;
  std::string user_;
};

}  // namespace tern::auth
