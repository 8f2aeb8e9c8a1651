#!/usr/bin/env bash
# Installs the Debian packages Tern needs that are missing.
# Usage: scripts/deps.sh build|test|bench|fuzz|deb   (all include build)
set -euo pipefail

# libsystemd-dev: sd_notify(3), for the systemd unit's Type=notify.
build_pkgs=(g++ cmake ninja-build pkg-config make libasio-dev libssl-dev
  libsqlite3-dev libsodium-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  libcli11-dev libexpected-dev libunbound-dev libpsl-dev zlib1g-dev libhttp-parser-dev
  libcurl4-openssl-dev nlohmann-json3-dev libsystemd-dev)
# What the tests call, with what each needs at run time that Debian ships only
# as a Recommends (--no-install-recommends leaves those out): swaks speaks TLS
# through Net::SSLeay and IO::Socket::SSL, SASL through Authen::SASL and IPv6
# through IO::Socket::INET6; fetchmail and msmtp check certificates against
# ca-certificates; the fault tests mount tmpfs with util-linux's mount;
# the SPF tests read the RFC 7208 suite that python3-spf ships (YAML, read
# with python3-yaml). The DKIM tests sign and verify with dkimpy
# (python3-dkim; python3-nacl for its Ed25519) and OpenDKIM (opendkim in
# test mode; opendkim-tools' opendkim-genkey, which runs openssl without
# depending on it). The IMAP client tests run mbsync (isync), mutt,
# offlineimap3 and imapfilter. The milter tests run a private rspamd of their
# own on free ports (tests/rspamd_peer.py), never the system's service: on a
# machine booted with systemd the package starts that service (localhost
# ports 11332-11334), unused by the tests; in a root with no init system
# running (scripts/fresh-root.sh's chroot, a container) invoke-rc.d does not
# start it and the install still succeeds. test_milter.py's own filter
# (tests/milter_peer.py) runs on pymilter (python3-milter, over sendmail's
# libmilter). test_acme.py orders certificates from a private Pebble (the
# ACME test server); test_http.py reads /metrics with python3-prometheus-
# client's parser. test_setup.py parses the zone text `tern setup` prints with
# dnspython (python3-dnspython), as a DNS tool reading it would.
# test_dane.py signs a test zone with ldnsutils (ldns-keygen, ldns-signzone,
# ldns-key2ds) and serves it from a private nsd on a loopback port (never
# the system's service: its own config file, foreground, in a temporary
# folder), because DANE needs DNSSEC-validated answers; on a machine booted
# with systemd the package also starts its own service, which serves no
# zone and which the tests leave alone. The unit
# tests (not the server) need googletest and RapidCheck.
test_pkgs=(libgtest-dev googletest librapidcheck-dev python3 python3-pytest
  python3-aiosmtpd python3-dnslib python3-dnspython python3-spf python3-yaml
  swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl libio-socket-inet6-perl
  curl msmtp mutt openssl procps fetchmail getmail6 postfix ca-certificates mount
  isync offlineimap3 imapfilter
  python3-dkim python3-nacl opendkim opendkim-tools rspamd
  python3-milter pebble python3-prometheus-client nsd ldnsutils)
# The bench's mail authentication cell runs Postfix with OpenDKIM (from the
# test set), OpenDMARC and policyd-spf, and signs its messages with dkimpy.
# Its IMAP cells compare with a private Dovecot imapd (never the system's
# service: run.sh starts its own with its own config). Its milter cell runs
# a private rspamd (from the test set), never the system's service.
bench_pkgs=(gnuplot-nox postal smtpping dovecot-pop3d dovecot-imapd libbenchmark-dev
  opendmarc postfix-policyd-spf-python)
# libFuzzer comes with clang's runtime libraries.
fuzz_pkgs=(clang libclang-rt-14-dev)
# `make deb`: dpkg-shlibdeps (dpkg-dev) computes the package's Depends from
# the libraries the binary links; strip comes with binutils.
deb_pkgs=(dpkg-dev binutils)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  fuzz) want+=("${fuzz_pkgs[@]}") ;;
  deb) want+=("${deb_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench|fuzz|deb" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root, or install these packages first: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix must not ask questions nor start a system mail service of its own.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
