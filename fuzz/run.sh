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
  arc imap_command mime milter_reply milter_message http_session downgrade
  mta_sts intent_log)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")

if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$FUZZ_BUILD" -G Ninja -DTERN_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$FUZZ_BUILD" --target tern_fuzzers -j "${JOBS:-$(nproc)}"

# One target: replays its kept crash inputs, then fuzzes. Prints its report
# and writes FAIL lines to $work/status (empty when it passed).
run_target() {
  local t=$1 bin="$FUZZ_BUILD/fuzz/fuzz_$1" work="$FUZZ_WORK/$1" status
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  : >"$work/status"
  echo "=== $t"

  # Kept crash inputs first: each must now run clean.
  local kept
  mapfile -t kept < <(find "fuzz/regressions/$t" -type f 2>/dev/null | sort)
  if [ ${#kept[@]} -gt 0 ]; then
    if "$bin" -artifact_prefix="$work/artifacts/" "${kept[@]}" \
        >"$work/regressions.log" 2>&1; then
      echo "regressions: ${#kept[@]} inputs pass"
    else
      echo "regressions: FAIL (see $work/regressions.log)"
      grep -m3 -E "property failed|ERROR:|runtime error|SUMMARY" \
        "$work/regressions.log" || true
      echo "$t(regression)" >>"$work/status"
    fi
  fi

  # Fuzz from a copy so new corpus entries do not land in the repository.
  cp fuzz/corpus/"$t"/* "$work/corpus/"
  local args=(-max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10
    -artifact_prefix="$work/artifacts/")
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  case $t in
    smtp_session|pop3_session|arc|imap_command|http_session) args+=(-max_len=16384) ;;
  esac
  if "$bin" "${args[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1; then
    status=ok
  else
    status=CRASH
    echo "$t" >>"$work/status"
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "$work/fuzz.log" | tail -1 || true
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" \
    "$work/fuzz.log" || true
  if [ $status = CRASH ]; then
    grep -m5 -E "property failed|ERROR:|runtime error|SUMMARY" "$work/fuzz.log" || true
    echo "crash input(s): $(ls "$work"/artifacts/* 2>/dev/null | tr '\n' ' ')"
    echo "log: $work/fuzz.log; keep the input under fuzz/regressions/$t/"
  fi
}

for t in "${targets[@]}"; do
  [ -x "$FUZZ_BUILD/fuzz/fuzz_$t" ] || { echo "no fuzz target $t" >&2; exit 2; }
done

# FUZZ_PARALLEL targets run at once (default: one per core), each for the
# full FUZZ_SECONDS on its own core; reports print in target order.
parallel=${FUZZ_PARALLEL:-${JOBS:-$(nproc)}}
mkdir -p "$FUZZ_WORK"
pids=()
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  run_target "$t" >"$FUZZ_WORK/$t.report" 2>&1 &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
done
wait || true
failed=()
for t in "${targets[@]}"; do
  cat "$FUZZ_WORK/$t.report"
  if [ -s "$FUZZ_WORK/$t/status" ]; then
    mapfile -t f <"$FUZZ_WORK/$t/status"
    failed+=("${f[@]}")
  elif [ ! -f "$FUZZ_WORK/$t/status" ]; then
    failed+=("$t(did not run)")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${FUZZ_SECONDS}s each, no crash"
