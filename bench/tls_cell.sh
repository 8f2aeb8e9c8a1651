# TLS cell of bench/run.sh (sourced by it; TLS=0 skips it, TLS=only runs
# it alone). The 1 KiB inbound cell over STARTTLS with an ECDSA P-256
# certificate: a Tern and a private Postfix with the same certificate, and
# a TLS SMTP sink (tern_tls_load --sink: the generator's own ceiling),
# each with a full handshake per connection and with TLS 1.3 session
# resumption; then the memory of idle TLS sessions on a fresh Tern, after
# STARTTLS and on an implicit-TLS (submissions) port.
# Knobs: TLS_ROUNDS ($ROUNDS), TLS_COUNT (messages per run; 3000, QUICK
#   1000), TLS_SESSIONS (32), TLS_LOAD (the generator and sink binary,
#   default $BUILD/tern_tls_load, built from bench/tls_load.cc),
#   TLS_IDLE_CONNS (2000), TERN_TLS_PORT/TERN_TLS_SUBS_PORT (2750/2751),
#   POSTFIX_TLS_PORT (2752), TLS_SINK_PORT (2753).
# Writes $WORK/tls.jsonl (one record per run) and $WORK/tls-idle-*.json.

# (MA_ROUNDS holds $ROUNDS from before TLS=only zeroed it.)
TLS_ROUNDS=${TLS_ROUNDS:-$MA_ROUNDS}
if [ -n "$QUICK" ]; then TLS_COUNT=${TLS_COUNT:-1000}; else TLS_COUNT=${TLS_COUNT:-3000}; fi
TLS_SESSIONS=${TLS_SESSIONS:-32}
TLS_LOAD=${TLS_LOAD:-$BUILD/tern_tls_load}
TLS_IDLE_CONNS=${TLS_IDLE_CONNS:-2000}
TERN_TLS_PORT=${TERN_TLS_PORT:-2750}
TERN_TLS_SUBS_PORT=${TERN_TLS_SUBS_PORT:-2751}
POSTFIX_TLS_PORT=${POSTFIX_TLS_PORT:-2752}
TLS_SINK_PORT=${TLS_SINK_PORT:-2753}
TLS_RUNS=$WORK/tls.jsonl
TLS_IDLE_FILES=()
TERN_TLS_PID=
TLS_SINK_PID=

tls_tern_toml() {
  cat <<EOF
[mailauth]
verify = false

[tls]
certificates = [ { cert = "$TLS_DIR/cert.pem", key = "$TLS_DIR/key.pem" } ]

[[listen]]
address = "127.0.0.1:$TERN_TLS_SUBS_PORT"
service = "submissions"
EOF
}

# The idle sessions' memory needs a Tern that has served nothing yet
# (freed memory would be reused): a fresh one per measurement.
tls_idle() {  # mode port
  local mode=$1 port=$2 f=$WORK/tls-idle-$1.json rc=0
  stop_pid "$TERN_TLS_PID" "tern-tls"
  rm -rf "$WORK/tern-tls"
  start_tern tern-tls "$TERN_TLS_PORT" "$(tls_tern_toml)"
  log "idle TLS sessions ($mode): $TLS_IDLE_CONNS to a fresh tern-tls"
  "${PIN_LOAD[@]}" "$PY" "$BENCH/idle.py" --port "$port" --pid "$TERN_TLS_PID" \
    --count "$TLS_IDLE_CONNS" --tls "$mode" --check-port "$TERN_TLS_PORT" --out "$f" || rc=$?
  [ $rc -eq 0 ] || { FAILED=1; log "idle TLS session test ($mode) failed"; }
  [ -f "$f" ] && TLS_IDLE_FILES+=("$f")
}

run_tls() {
  : >"$TLS_RUNS"
  if [ ! -x "$TLS_LOAD" ]; then
    log "no $TLS_LOAD (cmake --build $BUILD --target tern_tls_load): no TLS cell"
    FAILED=1
    return 0
  fi
  TLS_DIR=$WORK/tls
  mkdir -p "$TLS_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=mx.bench.test -addext subjectAltName=DNS:mx.bench.test \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>"$WORK/logs/tls-cert.log" ||
    die "cannot make the TLS certificate (see $WORK/logs/tls-cert.log)"
  chmod 0644 "$TLS_DIR/cert.pem"
  # Postfix: its own ticket keys and session cache come from tlsmgr.
  start_postfix postfix-tls "$POSTFIX_TLS_PORT" 127.0.0.0/8 "
smtpd_tls_cert_file = $TLS_DIR/cert.pem
smtpd_tls_key_file = $TLS_DIR/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtpd_tls_session_cache_database = btree:$WORK/postfix-tls/data/smtpd_scache
" "tlsmgr    unix  -       -       n       1000?   1       tlsmgr"
  start_tern tern-tls "$TERN_TLS_PORT" "$(tls_tern_toml)"
  log "starting the TLS sink on 127.0.0.1:$TLS_SINK_PORT ($TLS_LOAD --sink)"
  "${PIN_SERVER[@]}" "$TLS_LOAD" --sink --port "$TLS_SINK_PORT" \
    --cert "$TLS_DIR/cert.pem" --key "$TLS_DIR/key.pem" >"$WORK/logs/tls-sink.log" 2>&1 &
  TLS_SINK_PID=$!
  "$PY" "$BENCH/benchlib.py" wait-smtp 127.0.0.1 "$TLS_SINK_PORT" "$START_TIMEOUT" ||
    die "the TLS sink did not start"

  local round resume server port cpu md rc
  for round in $(seq "$TLS_ROUNDS"); do
    log "=== TLS (STARTTLS, ECDSA P-256), round $round of $TLS_ROUNDS ==="
    for resume in "" --resume; do
      for server in tern-tls postfix-tls tls-sink; do
        case $server in
          tern-tls) port=$TERN_TLS_PORT; cpu=pid:$TERN_TLS_PID; md=${TERN_MAILDIR_OF[tern-tls]} ;;
          postfix-tls) port=$POSTFIX_TLS_PORT; cpu=${PF_CPU[postfix-tls]}; md=${PF_MAILDIR[postfix-tls]} ;;
          tls-sink) port=$TLS_SINK_PORT; cpu=tree:$TLS_SINK_PID; md= ;;
        esac
        settle_fs
        rc=0
        ( cd "$BENCH" && "${PIN_LOAD[@]}" "$PY" tls_load.py run --server "$server" --port "$port" \
            --count "$TLS_COUNT" --sessions "$TLS_SESSIONS" --binary "$TLS_LOAD" --round "$round" \
            $resume --cpu "$cpu" ${md:+--maildir "$md"} --out "$TLS_RUNS" ) || rc=$?
        [ $rc -eq 0 ] || { FAILED=1; log "$server: TLS run failed"; }
        if [ -n "$md" ]; then
          ( cd "$BENCH" && "$PY" -c 'import sys; from benchlib import maildir_clear; maildir_clear(sys.argv[1])' "$md" ) || true
        fi
      done
    done
  done
  stop_pid "$TLS_SINK_PID" "TLS sink"
  stop_postfix postfix-tls
  tls_idle starttls "$TERN_TLS_PORT"
  tls_idle implicit "$TERN_TLS_SUBS_PORT"
  stop_pid "$TERN_TLS_PID" "tern-tls"
}
