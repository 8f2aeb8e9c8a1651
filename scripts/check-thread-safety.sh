#!/usr/bin/env bash
# Clang's thread-safety analysis over every source file of the binary
# (`make check-thread-safety`). The analysis runs in clang's semantic
# checks, so each file is only parsed and checked (-fsyntax-only): no code
# is generated and nothing is linked, which takes about half the time of a
# build. The compile commands come from CMake, so the flags, include paths
# and definitions are the build's own.
# Usage: scripts/check-thread-safety.sh BUILD_DIR [JOBS]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [JOBS]}
jobs=${2:-$(nproc)}
cd "$(dirname "$0")/.."
CXX=clang++ cmake -S . -B "$build" -G Ninja \
  -DTERN_SANITIZE=OFF -DTERN_TSAN=OFF -DTERN_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g0" \
  -DCMAKE_CXX_FLAGS="-Wthread-safety -Werror=thread-safety" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
# One shell command per source file of ours: the compile command with its
# output removed and -fsyntax-only added. Files generated in the build
# folder (the version stamp, the embedded example config) hold no locks
# and some exist only once built: they are left out.
/usr/bin/python3 - "$build/compile_commands.json" "$PWD/src/" >"$build/tsa-commands" <<'PY'
import json, os, shlex, sys
for entry in json.load(open(sys.argv[1])):
    path = os.path.join(entry["directory"], entry["file"])
    if not os.path.realpath(path).startswith(sys.argv[2]):
        continue
    args = shlex.split(entry["command"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a == "-c":
            continue
        out.append(a)
    out.insert(1, "-fsyntax-only")
    print("cd " + shlex.quote(entry["directory"]) + " && " + " ".join(map(shlex.quote, out)))
PY
n=$(wc -l <"$build/tsa-commands")
echo "thread-safety analysis of $n files, $jobs at a time"
tr '\n' '\0' <"$build/tsa-commands" | xargs -0 -P "$jobs" -n 1 bash -c
echo "thread-safety analysis: no findings"
