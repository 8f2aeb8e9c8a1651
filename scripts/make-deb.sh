#!/usr/bin/env bash
# Builds the Debian package of a Tern binary (what `make deb` runs):
# tern_VERSION_ARCH.deb in OUTDIR, from `scripts/install.sh` staged with
# PREFIX=/usr, so the package holds exactly what `make install` would put
# on the machine:
#
#   /usr/sbin/tern                    the binary, stripped
#   /lib/systemd/system/tern.service  the unit (dist/tern.service)
#   /etc/tern/tern.toml               the example config, a conffile: dpkg
#                                     keeps an administrator's edits on
#                                     upgrade and removes it only on purge
#
# Depends comes from dpkg-shlibdeps (the libraries the binary links, with
# the versions their packages' symbols files ask for), plus passwd for the
# maintainer scripts' useradd. The maintainer scripts are in dist/debian/.
#
# The version is the binary's own (`tern --version`: 0.2.0 and the git
# revision it was built from), as 0.2.0+gitN.REV with N the number of
# commits up to REV, so that later builds sort later; DEB_VERSION overrides.
#
# Usage: scripts/make-deb.sh BINARY OUTDIR   (no root needed)
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BINARY OUTDIR" >&2
  exit 2
fi
bin=$1
outdir=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
for tool in dpkg-deb dpkg-shlibdeps strip; do
  if ! command -v "$tool" >/dev/null; then
    echo "make-deb: $tool is missing (scripts/deps.sh deb installs it)" >&2
    exit 1
  fi
done

# "tern 0.2.0 (1a2b3c4d5e6f)" or "tern 0.2.0 (1a2b3c4d5e6f-dirty)"
line=$("$bin" --version)
read -r _ upstream revision <<<"$line"
revision=${revision#(}
revision=${revision%)}
revision=${revision%-dirty}
version=${DEB_VERSION:-}
if [[ -z $version ]]; then
  version=$upstream
  if [[ $revision =~ ^[0-9a-f]+$ ]] &&
      count=$(git -C "$repo" rev-list --count "$revision" 2>/dev/null); then
    version+="+git$count.$revision"
  fi
fi
arch=$(dpkg --print-architecture)

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/root
mkdir -m 0755 "$stage"

DESTDIR=$stage PREFIX=/usr "$repo/scripts/install.sh" "$bin" >/dev/null
# Debug info stays in the build (the binary there is several times larger).
strip --strip-unneeded --remove-section=.comment "$stage/usr/sbin/tern"

# dpkg-shlibdeps reads debian/control of a source package; a minimal one in
# a scratch folder is enough for it to name the binary's library packages.
mkdir -p "$work/src/debian"
printf 'Source: tern\n\nPackage: tern\nArchitecture: any\n' >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O -e"$stage/usr/sbin/tern" 2>"$work/shlibdeps.err") || {
  cat "$work/shlibdeps.err" >&2
  exit 1
}
depends=${shlibs#shlibs:Depends=}
if [[ -z $depends || $depends == "$shlibs" ]]; then
  echo "make-deb: dpkg-shlibdeps gave no dependencies: $shlibs" >&2
  exit 1
fi

install -d -m 0755 "$stage/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "$repo/dist/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/tern/tern.toml >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: tern
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-Tern developers <postmaster@localhost>}
Installed-Size: $size
Depends: $depends, passwd
Recommends: dns-root-data
Section: mail
Priority: optional
Description: mail server: SMTP, submission, IMAP and POP3 in one binary
 Tern receives mail over SMTP, takes submissions from logged-in users,
 delivers to local Maildirs and to remote servers, checks and signs mail
 (SPF, DKIM, DMARC, ARC) and serves the mailboxes over IMAP and POP3.
 .
 The package installs the binary, a systemd unit (tern.service: enabled
 on a running systemd but not started, since the example
 /etc/tern/tern.toml needs your host name, domains and certificates
 first), and creates the system user tern and the data folder
 /var/lib/tern.
EOF

# Older packages go, so that ./tern_*.deb names one file.
rm -f "$outdir"/tern_*.deb
deb=$outdir/tern_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "make-deb: $deb"
