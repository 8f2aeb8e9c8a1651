#!/usr/bin/env bash
# Installs Tern: what `make install` runs, and what `make deb` stages its
# package with (DESTDIR set, PREFIX=/usr). docs/operations.md lists where
# each file goes.
#
# Usage: [PREFIX=/usr/local] [DESTDIR=] [UNITDIR=...] scripts/install.sh BINARY
#
#   $PREFIX/sbin/tern             the binary
#   UNITDIR/tern.service          the systemd unit, its ExecStart pointed at
#                                 that binary; UNITDIR is /lib/systemd/system
#                                 for PREFIX=/usr (the distribution's place),
#                                 /usr/local/lib/systemd/system for
#                                 /usr/local (systemd reads both), and
#                                 /etc/systemd/system for any other prefix
#   /etc/tern/tern.toml           etc/tern.example.toml, only when there is
#                                 no config yet: an administrator's file is
#                                 never overwritten
#
# Every path is under $DESTDIR. With DESTDIR empty (a real install, as
# root) it also creates the system user `tern` and its data folder
# /var/lib/tern (mode 0700), and tells a running systemd about the unit. It
# never enables or starts the service: the example config needs a real host
# name, domains and certificates first.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: [PREFIX=...] [DESTDIR=...] $0 BINARY" >&2
  exit 2
fi
bin=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}
prefix=${prefix%/}
destdir=${DESTDIR:-}
if [[ -z $prefix || $prefix != /* ]]; then
  echo "install: PREFIX must be an absolute path" >&2
  exit 2
fi
case $prefix in
  /usr) unitdir=/lib/systemd/system ;;
  /usr/local) unitdir=/usr/local/lib/systemd/system ;;
  *) unitdir=/etc/systemd/system ;;
esac
unitdir=${UNITDIR:-$unitdir}
if [[ ! -x $bin ]]; then
  echo "install: no executable at $bin (run make build first)" >&2
  exit 1
fi
if [[ -z $destdir && $(id -u) -ne 0 ]]; then
  echo "install: run as root, or stage it with DESTDIR=..." >&2
  exit 1
fi

say() { echo "install: $*"; }

install -d -m 0755 "$destdir$prefix/sbin" "$destdir$unitdir" "$destdir/etc/tern"
install -m 0755 "$bin" "$destdir$prefix/sbin/tern"
say "$destdir$prefix/sbin/tern"

# The unit in the repository runs /usr/sbin/tern (the package's path).
unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed "s|^ExecStart=/usr/sbin/tern |ExecStart=$prefix/sbin/tern |" \
  "$repo/dist/tern.service" >"$unit"
install -m 0644 "$unit" "$destdir$unitdir/tern.service"
say "$destdir$unitdir/tern.service"

config=$destdir/etc/tern/tern.toml
if [[ -e $config ]]; then
  say "$config exists: kept as it is (the example is etc/tern.example.toml)"
else
  # Readable by all: the server reads it again as `user` on SIGHUP, and it
  # holds no secrets (certificate keys live in files of their own).
  install -m 0644 "$repo/etc/tern.example.toml" "$config"
  say "$config (from etc/tern.example.toml: set hostname, domains, certificates)"
fi

[[ -n $destdir ]] && exit 0

if ! getent passwd tern >/dev/null; then
  group=(--user-group)
  getent group tern >/dev/null && group=(--gid tern)  # one made by hand
  useradd --system "${group[@]}" --home-dir /var/lib/tern --no-create-home \
    --shell /usr/sbin/nologin --comment "Tern mail server" tern
  say "created the system user tern"
fi
if [[ ! -d /var/lib/tern ]]; then
  install -d -m 0700 -o tern -g tern /var/lib/tern
  say "created /var/lib/tern"
fi
# A booted systemd has this folder; a chroot or a container without it has not.
if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
fi
say "done. Edit $config, then: systemctl enable --now tern"
say "to serve as the system's sendmail: ln -sf $prefix/sbin/tern /usr/sbin/sendmail"
