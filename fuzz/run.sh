#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS from
# a scratch copy of its seed corpus, after replaying its kept crash inputs.
# Usage: fuzz/run.sh [TARGET...]   (default: all; see fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_WORK=${FUZZ_WORK:-$FUZZ_BUILD/fuzz-work}
ALL_TARGETS=(smtp_session smtp_data smtp_address rfc5322 sasl base64
  pop3_session config smtp_client_reply crlf spf dkim_tags dkim_canon dmarc
  arc imap_command mime milter_reply milter_message)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")

if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$FUZZ_BUILD" -G Ninja -DTERN_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$FUZZ_BUILD" --target tern_fuzzers -j "${JOBS:-$(nproc)}"

failed=()
for t in "${targets[@]}"; do
  bin="$FUZZ_BUILD/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "no fuzz target $t" >&2; exit 2; }
  work="$FUZZ_WORK/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  echo "=== $t"

  # Kept crash inputs first: each must now run clean.
  mapfile -t kept < <(find "fuzz/regressions/$t" -type f 2>/dev/null | sort)
  if [ ${#kept[@]} -gt 0 ]; then
    if "$bin" -artifact_prefix="$work/artifacts/" "${kept[@]}" \
        >"$work/regressions.log" 2>&1; then
      echo "regressions: ${#kept[@]} inputs pass"
    else
      echo "regressions: FAIL (see $work/regressions.log)"
      grep -m3 -E "property failed|ERROR:|runtime error|SUMMARY" \
        "$work/regressions.log" || true
      failed+=("$t(regression)")
    fi
  fi

  # Fuzz from a copy so new corpus entries do not land in the repository.
  cp fuzz/corpus/"$t"/* "$work/corpus/"
  args=(-max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10
    -artifact_prefix="$work/artifacts/")
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  case $t in
    smtp_session|pop3_session|arc|imap_command) args+=(-max_len=16384) ;;
  esac
  if "$bin" "${args[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "$work/fuzz.log" | tail -1 || true
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" \
    "$work/fuzz.log" || true
  if [ $status = CRASH ]; then
    grep -m5 -E "property failed|ERROR:|runtime error|SUMMARY" "$work/fuzz.log" || true
    echo "crash input(s): $(ls "$work"/artifacts/* 2>/dev/null | tr '\n' ' ')"
    echo "log: $work/fuzz.log; keep the input under fuzz/regressions/$t/"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${FUZZ_SECONDS}s each, no crash"
