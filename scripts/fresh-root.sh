#!/usr/bin/env bash
# Runs a command (default: `make test`) on a copy of this repository inside a
# clean Debian bookworm root (minbase plus make, git and ca-certificates),
# built from Debian's packages with mmdebstrap. Nothing installed on this
# machine leaks in, so a missing install step fails here as it would on a new
# user's machine. CI runs `make test` this way (.ci/run).
#
# Usage (as root, from anywhere in the repository):
#   scripts/fresh-root.sh [--worktree] [--share DIR] [COMMAND...]
#   scripts/fresh-root.sh --tarball
#     --worktree   include uncommitted changes to tracked files (default: HEAD
#                  only, which is what CI sees)
#     --share DIR  mount DIR of this machine at /share in the root (read and
#                  write): files for the command, or results it leaves for
#                  later (CI takes the .deb that `make deb` builds there)
#     --tarball    only print the path of today's root tarball (building it
#                  if needed), for scripts that start the root another way
#
# The root and the packages it downloads are cached for the day under
# $TERN_FRESH_DIR (default /var/tmp/tern-fresh): the first run of a day builds
# the root (2-4 minutes); later runs reuse it and install from the cached
# .deb files. The command runs in private mount and PID namespaces: /proc,
# /sys, /dev and a fresh /tmp are mounted for it alone, and every process it
# leaves behind (a test's daemon, say) ends with it. Output goes to the
# terminal and to $TERN_FRESH_DIR/last-run.log.
set -euo pipefail

worktree=0
share=
tarball_only=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --worktree) worktree=1; shift ;;
    --tarball) tarball_only=1; shift ;;
    --share)
      [[ $# -ge 2 && -d $2 ]] || { echo "fresh-root: --share needs a folder" >&2; exit 2; }
      share=$(cd "$2" && pwd)
      shift 2
      ;;
    *) break ;;
  esac
done
cmd=${*:-make test}

if [[ $(id -u) -ne 0 ]]; then
  echo "fresh-root: run as root (it builds a root file system and chroots into it)" >&2
  exit 2
fi
repo=$(git rev-parse --show-toplevel)
dir=${TERN_FRESH_DIR:-/var/tmp/tern-fresh}
today=$(date +%F)
mkdir -p "$dir"

need() {  # need COMMAND PACKAGE: install PACKAGE on this machine when COMMAND is missing
  command -v "$1" >/dev/null && return 0
  echo "fresh-root: installing $2 on this machine" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}
need mmdebstrap mmdebstrap
need unshare util-linux

# One root and one package cache per day: Debian's archive moves on, and a
# stale root would hide what a new user gets today.
tarball=$dir/rootfs-$today.tar
debs=$dir/debs-$today
if [[ ! -s $tarball ]]; then
  find "$dir" -maxdepth 1 -name 'rootfs-*.tar*' ! -name "rootfs-$today.tar" -delete
  echo "fresh-root: building a bookworm minbase root (cached for today in $dir)" >&2
  if ! mmdebstrap --variant=minbase --format=tar --include=make,git,ca-certificates \
      bookworm "$tarball.part" >"$dir/mmdebstrap.log" 2>&1; then
    tail -20 "$dir/mmdebstrap.log" >&2
    echo "fresh-root: mmdebstrap failed (log: $dir/mmdebstrap.log)" >&2
    rm -f "$tarball.part"
    exit 2
  fi
  mv "$tarball.part" "$tarball"
fi
if [[ $tarball_only -eq 1 ]]; then
  echo "$tarball"
  exit 0
fi
for old in "$dir"/debs-*; do
  [[ -d $old && $old != "$debs" ]] && rm -rf "$old"
done
mkdir -p "$debs/partial"

root=$(mktemp -d "$dir/root.XXXXXX")
cleanup() {
  # The namespaces are gone once the command has ended, and their mounts with
  # them; refuse to delete anything still mounted below the root.
  if grep -q " $root/" /proc/mounts; then
    echo "fresh-root: mounts remain under $root; not removing it" >&2
  else
    rm -rf "$root"
  fi
}
trap cleanup EXIT
tar -C "$root" -xf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf"
[[ -n $share ]] && mkdir -p "$root/share"

# The project, as a clone: only what git tracks, as a fresh checkout has it.
rev=HEAD
if [[ $worktree -eq 1 ]]; then
  rev=$(git -C "$repo" stash create)
  rev=${rev:-HEAD}
elif [[ -n $(git -C "$repo" status --porcelain --untracked-files=no) ]]; then
  echo "fresh-root: note: uncommitted changes are not included (--worktree includes them)"
fi
rev=$(git -C "$repo" rev-parse "$rev")
git clone -q --no-hardlinks "$repo" "$root/root/tern"
git -C "$root/root/tern" checkout -q "$rev"
echo "fresh-root: running '$cmd' on $(git -C "$repo" rev-parse --short "$rev") in a clean bookworm root"

start=$SECONDS
set +e
unshare --mount --pid --fork --propagation private bash -euc '
  root=$1 debs=$2 cmd=$3 share=$4
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/tmp"
  mount --bind "$debs" "$root/var/cache/apt/archives"
  if [[ -n $share ]]; then mount --bind "$share" "$root/share"; fi
  exec chroot "$root" /bin/bash -lc "cd /root/tern && CI=true $cmd"
' fresh-root "$root" "$debs" "$cmd" "$share" 2>&1 | tee "$dir/last-run.log"
rc=${PIPESTATUS[0]}
set -e
echo "fresh-root: '$cmd' exited $rc after $((SECONDS - start)) s"
exit "$rc"
