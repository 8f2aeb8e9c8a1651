#!/usr/bin/env bash
# Installs Tern's .deb into clean Debian bookworm roots, as a new
# administrator would, and checks the result. Two parts, both on
# scripts/fresh-root.sh's cached root (minbase plus make, git and
# ca-certificates):
#
# 1. In a chroot: `apt install ./tern_*.deb`. The package's Depends pull in
#    every library the binary needs (it runs); the postinst made the user
#    tern and /var/lib/tern; the packaged config parses; `tern serve`
#    started as root drops to tern on the packaged layout; a reinstall and
#    a purge work (config removed, user and data kept).
# 2. Under a booted systemd (systemd-nspawn, private network): the unit
#    itself. The postinst enables it without starting it; `systemctl start`
#    returns once Tern sends READY=1 (Type=notify) with the sandbox in
#    force, ports 25 and 80 answer and so do /health and /metrics on the
#    admin listener, the server runs as tern with no capabilities left;
#    `systemctl reload` reloads (STATUS= says so); an upgrade restarts it;
#    stop is clean; removal stops and disables it. --no-boot skips this
#    part (it needs systemd-nspawn, package systemd-container, installed
#    here when missing).
#
# Usage (as root, from anywhere in the repository):
#   scripts/deb-check.sh [--no-boot]             builds the package first
#                                                (`make deb`: the normal
#                                                build, then packaging)
#   scripts/deb-check.sh [--no-boot] --deb FILE  checks FILE (CI: the package
#                                                built in the root where
#                                                `make test` ran)
# `PREBUILT=FILE scripts/deb-check.sh` packages that binary without building.
set -euo pipefail

deb=
boot=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --deb)
      [[ $# -ge 2 && -f $2 ]] || { echo "deb-check: --deb needs a .deb file" >&2; exit 2; }
      deb=$(realpath "$2")
      shift 2
      ;;
    --no-boot) boot=0; shift ;;
    *) echo "usage: $0 [--no-boot] [--deb FILE]" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then
  echo "deb-check: run as root (it installs into root file systems)" >&2
  exit 2
fi
repo=$(git rev-parse --show-toplevel)
cd "$repo"

share=$(mktemp -d)
boot_root=
cleanup() {
  rm -rf "$share"
  if [[ -n $boot_root ]]; then
    if mountpoint -q "$boot_root" && ! umount -R "$boot_root"; then
      echo "deb-check: cannot unmount $boot_root; not removing it" >&2
    else
      rmdir "$boot_root"
    fi
  fi
}
trap cleanup EXIT
if [[ -z $deb ]]; then
  build=${BUILD:-build}
  make deb BUILD="$build"
  built=("$build"/tern_*.deb)
  deb=$(realpath "${built[0]}")
fi
cp "$deb" "$share/"
start=$SECONDS

# ---- 1. chroot: install, run, purge.
# Runs inside the root, from /share. The server gets a random high port on
# loopback: the chroot shares this machine's network.
cat >"$share/check.sh" <<'EOF'
set -euo pipefail
step() { echo "deb-check: $*"; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
before=$(dpkg-query -W -f='${Package}\n' | wc -l)
apt install -y ./tern_*.deb >/root/apt.log 2>&1 || { cat /root/apt.log; exit 1; }
after=$(dpkg-query -W -f='${Package}\n' | wc -l)
step "apt install ./tern_*.deb: tern and $((after - before - 1)) packages it depends on"
step "tern --version: $(tern --version)"
step "user: $(id tern)"
[[ $(stat -c '%U %a' /var/lib/tern) == "tern 700" ]] || { ls -ld /var/lib/tern; exit 1; }
grep -q '^ExecStart=/usr/sbin/tern serve --config /etc/tern/tern.toml$' \
  /lib/systemd/system/tern.service
dpkg-query -W -f='${Conffiles}\n' tern | grep -q /etc/tern/tern.toml

# The packaged config parses, and the README's first steps work with it
# (as root: the server hands the file to tern when it starts).
echo secret | tern --config /etc/tern/tern.toml user add admin@example.com >/dev/null
tern --config /etc/tern/tern.toml user list | grep -q admin@example.com
step "the packaged config parses; tern user add / user list work with it"

# The example config's listeners need certificates: a small config on the
# same data folder and user.
port=$((20000 + RANDOM % 20000))
cat >/root/smoke.toml <<TOML
hostname = "mx.example.com"
data_dir = "/var/lib/tern"
user = "tern"
domains = ["example.com"]
postmaster = "admin@example.com"
[[listen]]
address = "127.0.0.1:$port"
service = "smtp"
[dns]
upstream = ["127.0.0.1:9"]
[mailauth]
verify = false
TOML
tern serve --config /root/smoke.toml 2>/root/serve.log &
pid=$!
banner=
for _ in $(seq 50); do
  banner=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && read -r -t 5 line <&3 &&
             printf 'QUIT\r\n' >&3 && echo "$line") 2>/dev/null) && break
  sleep 0.1
done
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
if [[ $banner != 220* || $uid != "$(id -u tern)" || $rc -ne 0 ]]; then
  echo "deb-check: serve failed: banner '$banner', uid $uid, exit $rc" >&2
  cat /root/serve.log >&2
  exit 1
fi
[[ $(stat -c %U /var/lib/tern/tern.db) == tern ]]
step "tern serve: '${banner%$'\r'}' as uid $uid (tern), root's tern.db handed over, exit 0 on SIGTERM"

apt install -y --reinstall ./tern_*.deb >/root/apt.log 2>&1 || { cat /root/apt.log; exit 1; }
apt-get purge -y tern >/root/apt.log 2>&1 || { cat /root/apt.log; exit 1; }
test ! -e /etc/tern/tern.toml
test -d /var/lib/tern && id tern >/dev/null
step "reinstall, purge: config removed, user tern and /var/lib/tern kept"
EOF
"$repo/scripts/fresh-root.sh" --share "$share" 'cd /share && bash check.sh'

[[ $boot -eq 1 ]] || exit 0

# ---- 2. a booted systemd: the unit.
if ! command -v systemd-nspawn >/dev/null; then
  echo "deb-check: installing systemd-container on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    systemd-container >/dev/null
fi
tarball=$("$repo/scripts/fresh-root.sh" --tarball)
# fresh-root.sh's package cache of the day (debs-DATE beside rootfs-DATE.tar).
debs=${tarball/rootfs-/debs-}
debs=${debs%.tar}
cache=()
[[ -d $debs ]] && cache=(--bind="$debs:/var/cache/apt/archives")
boot_root=$(mktemp -d "$(dirname "$tarball")/boot.XXXXXX")
# In memory (about 450 MB with systemd): unpacking and removing that many
# files on disk took longer than the whole check.
mount -t tmpfs -o mode=0755,size=2g tern-deb-check "$boot_root"
tar -C "$boot_root" -xf "$tarball"
cp /etc/resolv.conf "$boot_root/etc/resolv.conf"
echo tern-deb-check >"$boot_root/etc/hostname"
cp "$deb" "$boot_root/root/"
# No machined nor D-Bus needed on this machine: --register=no --keep-unit.
nspawn=(systemd-nspawn -q --register=no --keep-unit -D "$boot_root" "${cache[@]}")

echo "deb-check: installing systemd in a second clean root"
"${nspawn[@]}" /bin/bash -ec '
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends systemd systemd-sysv >/dev/null
  # The booted root has no network: fetch what the package needs now.
  apt-get install -y -qq --download-only /root/tern_*.deb >/dev/null
' </dev/null >"$boot_root/setup.log" 2>&1 || { cat "$boot_root/setup.log"; exit 1; }

# Runs once the root has booted (a oneshot unit), then powers it off.
cat >"$boot_root/root/boot-check.sh" <<'EOF'
#!/bin/bash
set -euo pipefail
exec >/root/boot-check.log 2>&1
trap 'echo "FAILED at line $LINENO"; journalctl -u tern --no-pager -o cat | tail -30' ERR
trap 'systemctl poweroff --no-block' EXIT
step() { echo "deb-check: $*"; }
prop() { systemctl show tern -p "$1" --value; }
export DEBIAN_FRONTEND=noninteractive
cd /root
apt install -y ./tern_*.deb >/root/apt.log 2>&1 || { cat /root/apt.log; false; }
[[ $(systemctl is-enabled tern) == enabled ]]
[[ $(prop ActiveState) == inactive ]]
step "installed under systemd: tern.service enabled, not started"

# Production ports on the container's own loopback; a self-signed
# certificate made in the data folder that the postinst gave to tern.
cat >/etc/tern/tern.toml <<TOML
hostname = "mx.example.test"
data_dir = "/var/lib/tern"
user = "tern"
domains = ["example.test"]
postmaster = "admin@example.test"
[[listen]]
address = "127.0.0.1:25"
service = "smtp"
[[listen]]
address = "127.0.0.1:993"
service = "imaps"
[[listen]]
address = "127.0.0.1:80"
service = "http"
[[listen]]
address = "127.0.0.1:2981"
service = "admin"
[tls]
self_signed = true
[dns]
upstream = ["127.0.0.1:9"]
[mailauth]
verify = false
TOML
echo secret | tern --config /etc/tern/tern.toml user add admin@example.test >/dev/null
systemctl start tern
[[ $(prop ActiveState) == active ]]
status=$(prop StatusText)
[[ $status == serving* ]]
pid=$(prop MainPID)
banner=$( (exec 3<>/dev/tcp/127.0.0.1/25 && read -r -t 5 line <&3 &&
           printf 'QUIT\r\n' >&3 && echo "$line") )
[[ $banner == 220* ]]
[[ $(awk '/^Uid:/ {print $2}' "/proc/$pid/status") == "$(id -u tern)" ]]
[[ $(awk '/^CapEff:/ {print $2}' "/proc/$pid/status") == 0000000000000000 ]]
[[ $(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status") == 1 ]]
http_get() {  # http_get PORT PATH: the response, headers and body
  (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
   printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$2" >&3 &&
   timeout 5 cat <&3)
}
[[ $(http_get 2981 /health) == *$'\r\n\r\nok'* ]]
http_get 2981 /metrics | grep -q '^tern_start_time_seconds '
[[ $(http_get 80 /health) == "HTTP/1.1 "* ]]
step "systemctl start: READY=1 received (status '$status'); port 25 '${banner%$'\r'}';" \
  "port 80 answers; /health and /metrics on the admin listener;" \
  "runs as tern, no capabilities, no_new_privs"

sed -i 's/^domains = .*/domains = ["example.test", "example.org"]/' /etc/tern/tern.toml
systemctl reload tern
for _ in $(seq 50); do
  [[ $(prop StatusText) == "serving; config reloaded" ]] && break
  sleep 0.1
done
[[ $(prop StatusText) == "serving; config reloaded" ]]
[[ $(prop MainPID) == "$pid" && $(prop ActiveState) == active ]]
journalctl -u tern --no-pager -o cat | grep -q 'config reloaded'
step "systemctl reload: SIGHUP, RELOADING=1 then READY=1 (status '$(prop StatusText)')"

apt install -y --reinstall ./tern_*.deb >/root/apt.log 2>&1 || { cat /root/apt.log; false; }
[[ $(prop ActiveState) == active && $(prop MainPID) != "$pid" ]]
step "upgrade (reinstall): the postinst restarted the server"

systemctl stop tern
[[ $(prop Result) == success && $(prop ExecMainStatus) == 0 ]]
systemctl start tern
apt-get remove -y tern >/root/apt.log 2>&1 || { cat /root/apt.log; false; }
[[ $(systemctl is-active tern || true) == inactive ]]
if systemctl is-enabled tern >/dev/null 2>&1; then false; fi
step "stop: exit 0; remove: stopped and disabled"
echo PASSED
EOF
chmod 0755 "$boot_root/root/boot-check.sh"
cat >"$boot_root/etc/systemd/system/tern-deb-check.service" <<'EOF'
[Unit]
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/root/boot-check.sh
[Install]
WantedBy=multi-user.target
EOF
ln -s ../tern-deb-check.service \
  "$boot_root/etc/systemd/system/multi-user.target.wants/tern-deb-check.service"

echo "deb-check: booting it (systemd-nspawn --boot --private-network)"
rc=0
timeout 300 "${nspawn[@]}" --private-network --boot </dev/null \
  >"$boot_root/boot.log" 2>&1 || rc=$?
if ! grep -q '^PASSED$' "$boot_root/root/boot-check.log" 2>/dev/null; then
  echo "deb-check: the systemd check failed (systemd-nspawn exited $rc)" >&2
  cat "$boot_root/root/boot-check.log" >&2 || tail -30 "$boot_root/boot.log" >&2
  exit 1
fi
grep '^deb-check: ' "$boot_root/root/boot-check.log"
echo "deb-check: passed in $((SECONDS - start)) s"
