# The relaying cell, sourced by bench/run.sh (it uses its helpers:
# start_tern, start_postfix, settle_fs, log, die, PIN_SERVER, PIN_LOAD).
#
# RELAY_COUNT messages (10,000) are submitted for RELAY_DOMAINS (100)
# remote domains over RELAY_SESSIONS (32) pipelining connections from
# 127.0.0.1, which both servers trust for relaying. A DNS server
# (dnsserver.py on $RELAY_DNS:53) gives each domain an MX host on its own
# address, $RELAY_NET.1 to .100, where an smtp-sink listens on
# $RELAY_SINK_PORT. Tern is pointed at the DNS server with [dns] upstream
# and at the sinks' port with [delivery] mx_port; Postfix finds the same
# MX hosts through the same DNS server (a private resolv.conf, bind-mounted
# in its own mount namespace) and the port with smtp_tcp_port. Each run starts fresh sinks,
# whose counters then give the number of messages and SMTP sessions
# (connections) they saw: connection reuse. relay.py samples the
# connections to the sinks meanwhile (most at once, most to one domain).

RELAY_DIR=
RELAY_DNS_PID=
RELAY_SINK_PIDS=()


relay_start_sinks() {
  local i
  RELAY_SINK_PIDS=()
  rm -f "$RELAY_DIR"/sink-*.out
  for i in $(seq "$RELAY_DOMAINS"); do
    "${PIN_LOAD[@]}" /usr/sbin/smtp-sink -c -u nobody -m 1000 "$RELAY_NET.$i:$RELAY_SINK_PORT" 1024 \
      >"$RELAY_DIR/sink-$i.out" 2>&1 &
    RELAY_SINK_PIDS+=($!)
  done
  for i in $(seq "$RELAY_DOMAINS"); do
    "$PY" "$BENCH/benchlib.py" wait-smtp "$RELAY_NET.$i" "$RELAY_SINK_PORT" "$START_TIMEOUT" ||
      die "smtp-sink on $RELAY_NET.$i:$RELAY_SINK_PORT did not start"
  done
}

relay_stop_sinks() {
  local p
  for p in "${RELAY_SINK_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${RELAY_SINK_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  RELAY_SINK_PIDS=()
}

relay_cleanup() {
  relay_stop_sinks
  stop_pid "$TERN_RELAY_PID" "Tern (relay)"
  stop_pid "$RELAY_DNS_PID" "DNS server (relay)"
}

run_relay() {
  local started=$SECONDS
  RELAY_DIR=$WORK/relay
  mkdir -p "$RELAY_DIR"
  "$PY" "$BENCH/relay.py" zone --out "$RELAY_DIR/zone.json" --domains "$RELAY_DOMAINS" \
    --net "$RELAY_NET" || die "relay.py zone failed"
  "${PIN_LOAD[@]}" "$PY" "$BENCH/dnsserver.py" serve --zone "$RELAY_DIR/zone.json" \
    --address "$RELAY_DNS" --port 53 >"$WORK/logs/relay-dns.log" 2>&1 &
  RELAY_DNS_PID=$!
  local i
  for i in $(seq 50); do
    "$PY" "$BENCH/dnsserver.py" query "$RELAY_DNS" 53 d000.relay.test MX >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$PY" "$BENCH/dnsserver.py" query "$RELAY_DNS" 53 d000.relay.test MX >/dev/null 2>&1 ||
    die "the relay DNS server on $RELAY_DNS:53 does not answer"

  # Tern, as a new user would set it up for relaying from one network.
  start_tern tern-relay "$TERN_RELAY_PORT" "[dns]
upstream = [\"$RELAY_DNS\"]

[delivery]
mx_port = $RELAY_SINK_PORT" 'trusted_networks = ["127.0.0.1/32"]'

  # Postfix: the same DNS server, through a private resolv.conf.
  printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$RELAY_DNS" >"$RELAY_DIR/resolv.conf"
  PF_WRAP=(unshare -m --propagation private -- sh -c
    'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$RELAY_DIR/resolv.conf")
  start_postfix postfix-relay "$POSTFIX_RELAY_PORT" 127.0.0.0/8 "
disable_dns_lookups = no
smtp_host_lookup = dns
smtp_tcp_port = $RELAY_SINK_PORT
smtp_tls_security_level = none"
  PF_WRAP=()

  local round server port cpu queue rc
  for round in $(seq "$RELAY_ROUNDS"); do
    for server in tern postfix; do
      case $server in
        tern) port=$TERN_RELAY_PORT; cpu=pid:$TERN_RELAY_PID
              queue=(--queue "$WORK/tern-relay/queue/msg") ;;
        postfix) port=$POSTFIX_RELAY_PORT; cpu=${PF_CPU[postfix-relay]}
              queue=()
              for i in incoming active deferred maildrop hold; do
                queue+=(--queue "$WORK/postfix-relay/spool/$i")
              done ;;
      esac
      relay_start_sinks
      settle_fs
      log "relay round $round: $server, $RELAY_COUNT messages for $RELAY_DOMAINS domains, $RELAY_SESSIONS sessions"
      rc=0
      "${PIN_LOAD[@]}" "$PY" "$BENCH/relay.py" run --port "$port" "${queue[@]}" \
        --count "$RELAY_COUNT" --domains "$RELAY_DOMAINS" --sessions "$RELAY_SESSIONS" \
        --size 1024 --sink-port "$RELAY_SINK_PORT" --cpu "$cpu" --label "$server" \
        --timeout "$RUN_TIMEOUT" --out "$RELAY_DIR/run.json" >&2 || rc=$?
      # Both servers close idle connections to the sinks within seconds
      # (Tern after about one, Postfix's connection cache after two): then
      # every session has ended and the sinks' counters are complete.
      sleep 3
      relay_stop_sinks
      "$PY" "$BENCH/relay.py" sinks "$RELAY_DIR"/sink-*.out |
        "$PY" "$BENCH/relay.py" merge "$RELAY_DIR/run.json"
      "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); r["round"]=int(sys.argv[2]); print(json.dumps(r))' \
        "$RELAY_DIR/run.json" "$round" >>"$WORK/relay.jsonl"
      "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["ok"] else 1)' \
        "$RELAY_DIR/run.json" || { FAILED=1; log "relay run of $server failed: $(cat "$RELAY_DIR/run.json")"; }
    done
  done
  "$PY" "$BENCH/relay.py" report "$WORK/relay.jsonl" >"$WORK/relay.md" || FAILED=1
  cat "$WORK/relay.md" >&2
  stop_postfix postfix-relay
  relay_cleanup
  log "relay cell took $((SECONDS - started)) s"
}
