// Lookups in the account directory, all from the in-memory snapshot:
// resolving an address for delivery (aliases expanded, "user+tag", role
// addresses and system users to the postmaster, catch-alls) and sender
// ownership.
#include <pwd.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "auth/directory.h"
#include "auth/directory_impl.h"
#include "common/mutex.h"
#include "common/strings.h"

namespace tern::auth {
namespace {

using internal::Address;
using internal::Roles;
using internal::Snapshot;

// Alias chains deeper than this are almost certainly a configuration mistake.
constexpr int kMaxAliasDepth = 10;

// Splits at the last '@' (a quoted local part may itself contain '@').
std::optional<Address> SplitAddress(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return std::nullopt;
  return Address{std::string(address.substr(0, at)),
                 ToLower(address.substr(at + 1))};
}

// RFC 5321 4.5.1 (postmaster), RFC 2142 2 and 4 (abuse), and the sender
// name of our own bounces, where people reply to them.
constexpr std::string_view kRoleNames[] = {"postmaster", "abuse",
                                           "mailer-daemon"};

// One Resolve call: walks alias targets depth-first, collecting mailboxes
// and remote addresses without duplicates.
class Expander {
 public:
  // `quiet` silences the warnings about broken aliases, for callers that
  // walk every alias and are not about delivering anything. Without `roles`
  // role addresses and system users resolve only through explicit entries
  // (ownership checks: they must not make the postmaster own root@).
  Expander(const Snapshot& snapshot,
           const std::unordered_set<std::string>& local_domains,
           bool quiet = false, const Roles* roles = nullptr)
      : snapshot_(snapshot),
        local_domains_(local_domains),
        quiet_(quiet),
        roles_(roles) {}

  // The whole lookup of an address at one of our domains: explicit
  // entries, then a role or system user name (to the postmaster), then
  // the catch-all.
  void ResolveTop(const std::string& local, const std::string& domain) {
    if (ResolveLocal(local, domain, 0)) return;
    if (ResolveRole(local, 0)) return;
    ResolveCatchAll(domain, 0);
  }

  // Explicit entries only (an alias or an account, "user+tag" as "user");
  // false when none matched `local@domain`.
  bool ResolveLocal(const std::string& local, const std::string& domain,
                    int depth) {
    std::vector<std::string> candidates{local};
    size_t plus = local.find('+');
    if (plus != std::string::npos && plus > 0) {
      candidates.push_back(local.substr(0, plus));  // user+tag -> user
    }
    for (const std::string& candidate : candidates) {
      std::string key = ToLower(candidate) + "@" + domain;
      if (auto alias = snapshot_.aliases.find(key);
          alias != snapshot_.aliases.end()) {
        if (expanded_.insert(key).second) {
          for (const std::string& target : alias->second) {
            Expand(target, depth + 1);
          }
        } else if (auto account = snapshot_.accounts.find(key);
                   account != snapshot_.accounts.end()) {
          // A loop back to an alias that shadows a real mailbox (e.g.
          // "a@d -> a@d, b@remote" to keep a copy) ends in that mailbox.
          AddMailbox(account->second);
        }
        return true;
      }
      if (auto account = snapshot_.accounts.find(key);
          account != snapshot_.accounts.end()) {
        AddMailbox(account->second);
        return true;
      }
    }
    return false;
  }

  bool ResolveCatchAll(const std::string& domain, int depth) {
    std::string key = "@" + domain;
    auto alias = snapshot_.aliases.find(key);
    if (alias == snapshot_.aliases.end()) return false;
    expanded_.insert(key);
    for (const std::string& target : alias->second) {
      Expand(target, depth + 1);
    }
    return true;
  }

  // A role or system user name (its +tag ignored) goes to the postmaster:
  // the configured address, or the fallback mailbox when that is unset or
  // leads nowhere. Once per lookup, so a postmaster setting that names a
  // role itself cannot loop.
  bool ResolveRole(const std::string& local, int depth) {
    if (roles_ == nullptr || postmaster_done_) return false;
    std::string name = ToLower(local.substr(0, local.find('+')));
    if (roles_->names.count(name) == 0) return false;
    postmaster_done_ = true;
    size_t before = mailboxes_.size() + remote_.size();
    if (!roles_->postmaster.empty()) Expand(roles_->postmaster, depth + 1);
    if (mailboxes_.size() + remote_.size() == before) {
      if (roles_->fallback.empty()) return false;
      AddMailbox(roles_->fallback);
    }
    return true;
  }

  Resolution Finish() {
    Resolution result;
    result.kind = mailboxes_.empty() && remote_.empty()
                      ? Resolution::Kind::kUnknown
                      : Resolution::Kind::kLocal;
    result.mailboxes = std::move(mailboxes_);
    result.remote = std::move(remote_);
    return result;
  }

 private:
  void Expand(const std::string& target, int depth) {
    if (depth > kMaxAliasDepth) {
      if (quiet_) return;
      spdlog::warn("directory: alias chain deeper than {} at {}; cut",
                   kMaxAliasDepth, target);
      return;
    }
    auto parts = SplitAddress(target);
    if (!parts || parts->local.empty()) {
      if (quiet_) return;
      spdlog::warn("directory: alias target {} is not an address; skipped",
                   target);
      return;
    }
    if (local_domains_.count(parts->domain) == 0) {
      std::string remote = parts->local + "@" + parts->domain;
      if (seen_remote_.insert(remote).second) remote_.push_back(remote);
      return;
    }
    if (!ResolveLocal(parts->local, parts->domain, depth) &&
        !ResolveRole(parts->local, depth) && !quiet_) {
      spdlog::warn("directory: alias target {} is not a local mailbox; skipped",
                   target);
    }
  }

  void AddMailbox(const std::string& canonical) {
    if (seen_mailboxes_.insert(canonical).second) {
      mailboxes_.push_back(canonical);
    }
  }

  const Snapshot& snapshot_;
  const std::unordered_set<std::string>& local_domains_;
  const bool quiet_;
  const Roles* roles_;
  bool postmaster_done_ = false;
  std::unordered_set<std::string> expanded_;
  std::unordered_set<std::string> seen_mailboxes_;
  std::unordered_set<std::string> seen_remote_;
  std::vector<std::string> mailboxes_;
  std::vector<std::string> remote_;
};

// True when `local@domain` (domain lower case, ours) is an alias whose
// expansion reaches the mailbox `account` (canonical). Catch-alls do not
// count: they would make every unknown address at the domain someone's.
bool AliasReaches(const Snapshot& snapshot,
                  const std::unordered_set<std::string>& local_domains,
                  const std::string& local, const std::string& domain,
                  const std::string& account) {
  Expander expander(snapshot, local_domains, /*quiet=*/true);
  expander.ResolveLocal(local, domain, 0);
  Resolution result = expander.Finish();
  return std::find(result.mailboxes.begin(), result.mailboxes.end(), account) !=
         result.mailboxes.end();
}

bool GrantMatches(std::string_view pattern, const std::string& lower_address,
                  const std::string& domain) {
  if (pattern.substr(0, 2) == "*@") {
    return IEquals(pattern.substr(2), domain);
  }
  return IEquals(pattern, lower_address);
}

}  // namespace

void Directory::Impl::SetRoles(LocalRouting routing) {
  auto fresh = std::make_shared<Roles>();
  fresh->postmaster = std::move(routing.postmaster);
  if (!domains.empty()) fresh->fallback = "postmaster@" + domains.front();
  for (std::string_view name : kRoleNames) fresh->names.emplace(name);
  for (const std::string& user : routing.system_users) {
    fresh->names.insert(ToLower(user));
  }
  WriterMutexLock lock(snapshot_mu);
  roles = std::move(fresh);
}

LocalRouting LocalRouting::FromSystem(std::string postmaster) {
  LocalRouting routing;
  routing.postmaster = std::move(postmaster);
  // getpwent() walks the passwd database (files, or whatever NSS says).
  setpwent();
  while (struct passwd* pw = getpwent()) {
    if (pw->pw_name != nullptr && pw->pw_name[0] != '\0') {
      routing.system_users.emplace_back(pw->pw_name);
    }
  }
  endpwent();
  return routing;
}

void Directory::SetRouting(LocalRouting routing) {
  impl_->SetRoles(std::move(routing));
}

void Directory::SetForwardingHook(ForwardingHook hook) {
  auto fresh = hook ? std::make_shared<const ForwardingHook>(std::move(hook))
                    : nullptr;
  WriterMutexLock lock(impl_->snapshot_mu);
  impl_->forwarding = std::move(fresh);
}

std::string Directory::FallbackPostmaster() const {
  return impl_->CurrentRoles()->fallback;
}

Result<std::vector<std::string>> Directory::OwnedAddresses(
    const std::string& account) {
  RefreshIfChanged();
  std::shared_ptr<const Snapshot> snapshot = impl_->Current();
  std::string key = ToLower(account);
  auto found = snapshot->accounts.find(key);
  if (found == snapshot->accounts.end()) return Err("no such user " + account);
  const std::string& canonical = found->second;

  std::vector<std::string> aliases;
  for (const auto& [alias, targets] : snapshot->aliases) {
    if (alias == key) continue;  // an alias shadowing the account itself
    auto parts = SplitAddress(alias);
    if (!parts || parts->local.empty()) continue;  // catch-all
    if (AliasReaches(*snapshot, impl_->domain_set, parts->local, parts->domain,
                     canonical)) {
      auto name = snapshot->alias_names.find(alias);
      aliases.push_back(name != snapshot->alias_names.end() ? name->second
                                                            : alias);
    }
  }
  std::sort(aliases.begin(), aliases.end(),
            [](const std::string& a, const std::string& b) {
              return ToLower(a) < ToLower(b);
            });

  std::vector<std::string> owned{canonical};
  owned.insert(owned.end(), aliases.begin(), aliases.end());
  if (auto grants = snapshot->grants.find(key);
      grants != snapshot->grants.end()) {
    owned.insert(owned.end(), grants->second.begin(), grants->second.end());
  }
  return owned;
}

bool Directory::Owns(const std::string& account, const std::string& address) {
  // RFC 5321 4.5.5: the null reverse-path belongs to bounces, not to users.
  if (address.empty()) return false;
  RefreshIfChanged();
  std::shared_ptr<const Snapshot> snapshot = impl_->Current();
  std::string account_key = ToLower(account);
  auto found = snapshot->accounts.find(account_key);
  if (found == snapshot->accounts.end()) return false;
  const std::string& canonical = found->second;

  std::optional<Address> parts = SplitAddress(address);
  if (!parts || parts->local.empty() || parts->domain.empty()) return false;

  std::vector<std::string> locals{parts->local};
  size_t plus = parts->local.find('+');
  if (plus != std::string::npos && plus > 0) {
    locals.push_back(parts->local.substr(0, plus));  // user+tag -> user
  }
  auto grants = snapshot->grants.find(account_key);
  for (const std::string& local : locals) {
    std::string lower = ToLower(local) + "@" + parts->domain;
    if (lower == account_key) return true;
    if (grants != snapshot->grants.end()) {
      for (const std::string& pattern : grants->second) {
        if (GrantMatches(pattern, lower, parts->domain)) return true;
      }
    }
  }
  // Resolving applies the tag fallback itself.
  return impl_->IsLocal(parts->domain) &&
         AliasReaches(*snapshot, impl_->domain_set, parts->local, parts->domain,
                      canonical);
}

Resolution Directory::Resolve(const std::string& address) {
  RefreshIfChanged();
  std::shared_ptr<const Snapshot> snapshot = impl_->Current();

  std::optional<Address> parts = SplitAddress(address);
  if (!parts) {
    // RFC 5321 4.1.1.3: "postmaster" without a domain must be accepted.
    if (IEquals(address, "postmaster") && !impl_->domains.empty()) {
      parts = Address{"postmaster", impl_->domains.front()};
    } else {
      return Resolution{Resolution::Kind::kUnknown, {}, {}};
    }
  }
  if (!impl_->IsLocal(parts->domain)) return Resolution{};
  if (IStartsWith(parts->local, "SRS0=") || IStartsWith(parts->local, "SRS1=")) {
    if (auto hook = impl_->CurrentForwarding()) {
      std::optional<std::string> target = (*hook)(address);
      if (!target) return Resolution{Resolution::Kind::kUnknown, {}, {}};
      return Resolution{Resolution::Kind::kLocal, {}, {*target}};
    }
  }
  if (parts->local.empty())
    return Resolution{Resolution::Kind::kUnknown, {}, {}};

  std::shared_ptr<const Roles> roles = impl_->CurrentRoles();
  Expander expander(*snapshot, impl_->domain_set, false, roles.get());
  expander.ResolveTop(parts->local, parts->domain);
  Resolution result = expander.Finish();
  if (result.kind == Resolution::Kind::kUnknown &&
      (snapshot->aliases.count(ToLower(parts->local) + "@" + parts->domain) ||
       snapshot->aliases.count("@" + parts->domain))) {
    spdlog::warn("directory: {} matches an alias that leads to no mailbox",
                 address);
  }
  return result;
}

bool Directory::IsLocalDomain(const std::string& domain) const {
  return impl_->IsLocal(ToLower(domain));
}

}  // namespace tern::auth
