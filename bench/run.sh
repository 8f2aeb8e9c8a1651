#!/usr/bin/env bash
# Tern benchmark harness (`make bench`): compares Tern with a private Postfix
# instance and with smtp-sink (the ceiling of the load tool) on loopback,
# then writes build/bench/results.{md,json} and throughput.png.
#
# Usage (as root, after `scripts/deps.sh bench` and a build):
#   bench/run.sh              full run: 3 rounds of every cell, ~55 min on 2 cores
#   QUICK=1 bench/run.sh      3 cells, 1 round, 1-3 min (+1-2 min mail authentication,
#                             ~3 min milter with rspamd)
# Knobs (environment): ROUNDS, CELLS="SIZE:SESSIONS:new|reuse ...",
#   SERVERS="tern postfix sink", TARGET_SECS (length of one run),
#   LAT_SECS, LAT_RATE (msgs/s; default half of Tern's peak), IDLE_CONNS,
#   TERN_PORT/POSTFIX_PORT/SINK_PORT (2727/2626/2828), TERN_DIRECT (0/1:
#   [delivery] direct_local; unset: the default), BUILD (build dir),
#   TERN, PARSER_BENCH (binaries; default $BUILD/tern, $BUILD/tern_parser_bench),
#   KEEP=1 (keep the temp dir), SETTLE (seconds of quiet before each run), DELIVERY_TIMEOUT, RUN_TIMEOUT (seconds),
#   NICE=-10 (priority over other work on a shared machine).
# Mail authentication cell (MAILAUTH=0 skips it, MAILAUTH=only runs it
#   alone): MA_ROUNDS, MA_CELLS
#   ("SESSIONS:new|reuse ..."; default "32:new"), TERN_AUTH_PORT (2729),
#   POSTFIX_AUTH_PORT (2627), DNS_ADDR (127.0.53.1; its port 53 serves the
#   zone), OPENDKIM_PORT/OPENDMARC_PORT (8891/8893, loopback).
# Milter cell, Tern and Postfix with one private rspamd as their milter
#   (MILTER=0 skips it, MILTER=only runs it alone): MI_ROUNDS, MI_CELLS
#   ("SESSIONS:new|reuse ..."; default "8:new 32:new 32:reuse", QUICK
#   "8:new 32:new"), TERN_MILTER_PORT (2733), POSTFIX_MILTER_PORT (2628),
#   RSPAMD_PORT (11342, loopback), RSPAMD_PIN (server: rspamd shares the
#   servers' core, as the mail authentication milters do; load: the other
#   core), RSPAMD_HS_CACHE (compiled Hyperscan databases, kept between runs;
#   default $BUILD/bench/rspamd-hs-cache). MILTER=only also runs the plain
#   tern and postfix (SERVERS), which the cell compares with.
# IMAP cells against a private Dovecot (IMAP=0 skips them, IMAP=only runs
#   them alone): IMAP_ROUNDS, IMAP_MESSAGES (10000), IMAP_CELLS
#   ("select fetch search append"), IMAP_APPEND_CLIENTS (8),
#   IMAP_APPEND_PER_CLIENT, IMAP_IDLE_CONNS (1000; QUICK 300), IMAP_IDLE_SECS
#   (300, QUICK 90: opening connections stops then), IMAP_WAKE_SAMPLES,
#   TERN_IMAP_PORT/TERN_IMAP_SMTP_PORT/DOVECOT_IMAP_PORT (2144/2731/2145).
# Relaying cell, 10,000 messages for 100 remote domains whose MX hosts are
#   smtp-sinks (RELAY=0 skips it, RELAY=only runs it alone; bench/relay_cell.sh):
#   RELAY_ROUNDS, RELAY_COUNT (10000), RELAY_DOMAINS (100, at most 250),
#   RELAY_SESSIONS (32), TERN_RELAY_PORT/POSTFIX_RELAY_PORT (2740/2742),
#   RELAY_SINK_PORT (2741), RELAY_NET (127.0.74: sinks on .1 to .N),
#   RELAY_DNS (127.0.74.253; its port 53 serves the zone).
# Scaling cell, the 1 KiB 32-session cell against Tern with threads = 1
#   and 2, unpinned (SCALE=0 skips it, SCALE=only runs it alone):
#   SCALE_ROUNDS, TERN_SCALE_PORT (2791, and 2792).
# Huge-message cell, one 50 MiB message relayed to a sink on loopback by Tern
#   and by Postfix, memory growth and times (bench/huge.py; HUGE=0 skips it,
#   HUGE=only runs it alone): HUGE_MIB (50), HUGE_ROUNDS (3; QUICK 1),
#   TERN_HUGE_PORT (2760), POSTFIX_HUGE_PORT (2761), HUGE_SINK
#   (127.0.76.1:2762, loopback).
# TLS cell, STARTTLS with an ECDSA certificate, Tern against Postfix (TLS=0
#   skips it, TLS=only runs it alone): knobs in bench/tls_cell.sh.
# Huge-queue cell (BIGQUEUE=0 skips it, BIGQUEUE=only runs it alone):
#   BIGQUEUE_N deferred messages (1000000) written by $BUILD/tern_spoolgen,
#   Tern restarted on them (bench/bigqueue.py); ports BIGQ_PORT/BIGQ_SINK_PORT
#   (2770/2771). Needs ~8 KiB of disk per message under /tmp (removed after).
# Exit status: 0 when every run worked (targets missed or not), 1 when a
# run had errors or lost messages, 2 when the set-up failed.
# Every target address is loopback; nothing under /etc is touched.
set -euo pipefail
# The whole script is one block, so bash parses it completely before running
# it: editing this file during a run cannot change the running copy.
{

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
BUILD=${BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=$BUILD/bench
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source tree
TERN=${TERN:-$BUILD/tern}
PARSER_BENCH=${PARSER_BENCH:-$BUILD/tern_parser_bench}

QUICK=${QUICK:-0}
[ "$QUICK" = 0 ] && QUICK=
if [ -n "$QUICK" ]; then
  ROUNDS=${ROUNDS:-1}
  CELLS=${CELLS:-"1024:1:new 1024:32:new 102400:32:new"}
  TARGET_SECS=${TARGET_SECS:-2.5}
  LAT_SECS=${LAT_SECS:-5}
else
  ROUNDS=${ROUNDS:-3}
  if [ -z "${CELLS:-}" ]; then
    CELLS=
    for size in 1024 102400; do
      for mode in new reuse; do
        for s in 1 8 32 128; do CELLS+="$size:$s:$mode "; done
      done
    done
  fi
  TARGET_SECS=${TARGET_SECS:-5}
  LAT_SECS=${LAT_SECS:-10}
fi
# X=only (for any cell X below) runs only the cells so marked.
ONLY=
for v in MAILAUTH MILTER IMAP RELAY HUGE SCALE TLS BIGQUEUE; do
  [ "${!v:-}" = only ] && ONLY+=" $v"
done
# MAILAUTH=only: the mail authentication cell alone (no plain cells,
# latency, idle or parser runs; only the plain Tern among SERVERS).
PLAIN=1
if [ "${MAILAUTH:-}" = only ]; then PLAIN=; SERVERS=${SERVERS:-tern}; MILTER=0; fi
# MILTER=only: the milter cell alone (the plain Tern and Postfix, which
# the cell compares with, among SERVERS; no mail authentication or IMAP cells).
if [ "${MILTER:-}" = only ]; then PLAIN=; SERVERS=${SERVERS:-"tern postfix"}; MAILAUTH=0; IMAP=0; fi
SERVERS=${SERVERS:-"tern postfix sink"}
# IMAP=only: the IMAP cells alone (no SMTP servers, cells or tests).
IMAP=${IMAP:-1}
[ "$IMAP" = 0 ] && IMAP=
if [ "$IMAP" = only ]; then PLAIN=; SERVERS=; MAILAUTH=0; MILTER=0; fi
# The newer cells (relay, huge; each starts its own servers): on unless
# X=0, or unless another cell is marked X=only.
new_cell() {  # NAME: prints 1 when the cell runs
  local v=${!1:-1}
  if [ "$v" = only ]; then echo 1
  elif [ "$v" != 0 ] && [ -z "$ONLY" ]; then echo 1
  fi
}
HUGE=$(new_cell HUGE)
RELAY=$(new_cell RELAY)
SCALE=$(new_cell SCALE)
TLS=$(new_cell TLS)
BIGQUEUE=$(new_cell BIGQUEUE)
# QUICK: a tenth of the messages.
[ -n "$QUICK" ] && BIGQUEUE_N=${BIGQUEUE_N:-100000}
export BIGQUEUE_N=${BIGQUEUE_N:-1000000}
SCALE_ROUNDS=${SCALE_ROUNDS:-$ROUNDS}
TERN_SCALE_PORT=${TERN_SCALE_PORT:-2791}   # and the next port
if [ -n "$ONLY" ]; then
  case " $ONLY " in
    *" MAILAUTH "*|*" MILTER "*|*" IMAP "*) ;;
    *) PLAIN=; SERVERS=; MAILAUTH=0; MILTER=0; IMAP= ;;   # only newer cells
  esac
fi
HUGE_MIB=${HUGE_MIB:-50}
HUGE_ROUNDS=${HUGE_ROUNDS:-$([ -n "$QUICK" ] && echo 1 || echo 3)}
TERN_HUGE_PORT=${TERN_HUGE_PORT:-2760}
POSTFIX_HUGE_PORT=${POSTFIX_HUGE_PORT:-2761}
HUGE_SINK=${HUGE_SINK:-127.0.76.1:2762}
[ "${MAILAUTH:-}" = only ] && IMAP=
RELAY_ROUNDS=${RELAY_ROUNDS:-$ROUNDS}
RELAY_COUNT=${RELAY_COUNT:-10000}
RELAY_DOMAINS=${RELAY_DOMAINS:-100}
RELAY_SESSIONS=${RELAY_SESSIONS:-32}
TERN_RELAY_PORT=${TERN_RELAY_PORT:-2740}
POSTFIX_RELAY_PORT=${POSTFIX_RELAY_PORT:-2742}
RELAY_SINK_PORT=${RELAY_SINK_PORT:-2741}
RELAY_NET=${RELAY_NET:-127.0.74}
RELAY_DNS=${RELAY_DNS:-127.0.74.253}
IMAP_ROUNDS=${IMAP_ROUNDS:-$ROUNDS}
IMAP_MESSAGES=${IMAP_MESSAGES:-10000}
IMAP_CELLS=${IMAP_CELLS:-"select fetch search append"}
IMAP_APPEND_CLIENTS=${IMAP_APPEND_CLIENTS:-8}
if [ -n "$QUICK" ]; then
  # Opening 1,000 takes Tern 10+ minutes on a 10,000-message INBOX
  # (docs/performance.md, IMAP): QUICK opens fewer.
  IMAP_IDLE_CONNS=${IMAP_IDLE_CONNS:-300}
  IMAP_IDLE_SECS=${IMAP_IDLE_SECS:-90}
  IMAP_APPEND_PER_CLIENT=${IMAP_APPEND_PER_CLIENT:-50}
  IMAP_WAKE_SAMPLES=${IMAP_WAKE_SAMPLES:-50}
else
  IMAP_IDLE_CONNS=${IMAP_IDLE_CONNS:-1000}
  IMAP_APPEND_PER_CLIENT=${IMAP_APPEND_PER_CLIENT:-150}
  IMAP_WAKE_SAMPLES=${IMAP_WAKE_SAMPLES:-200}
fi
# Opening stops after this long (each connection LOGINs, SELECTs, IDLEs).
IMAP_IDLE_SECS=${IMAP_IDLE_SECS:-300}
TERN_IMAP_PORT=${TERN_IMAP_PORT:-2144}
TERN_IMAP_SMTP_PORT=${TERN_IMAP_SMTP_PORT:-2731}
DOVECOT_IMAP_PORT=${DOVECOT_IMAP_PORT:-2145}
LAT_CONNS=${LAT_CONNS:-32}
IDLE_CONNS=${IDLE_CONNS:-10000}
TERN_PORT=${TERN_PORT:-2727}
# TERN_DIRECT=0 or 1 sets [delivery] direct_local (mail for local
# mailboxes written straight into the Maildirs); unset: the server's default.
TERN_DIRECT_TOML=
case ${TERN_DIRECT:-} in
  0) TERN_DIRECT_TOML=$'[delivery]\ndirect_local = false' ;;
  1) TERN_DIRECT_TOML=$'[delivery]\ndirect_local = true' ;;
esac
POSTFIX_PORT=${POSTFIX_PORT:-2626}
SINK_PORT=${SINK_PORT:-2828}
DELIVERY_TIMEOUT=${DELIVERY_TIMEOUT:-180}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
START_TIMEOUT=${START_TIMEOUT:-30}
PROC_LIMIT=300   # Postfix processes; above the largest session count (128)
MAILAUTH=${MAILAUTH:-1}
[ "$MAILAUTH" = 0 ] && MAILAUTH=
MA_ROUNDS=${MA_ROUNDS:-$ROUNDS}
MA_CELLS=${MA_CELLS:-"32:new"}
TERN_AUTH_PORT=${TERN_AUTH_PORT:-2729}
POSTFIX_AUTH_PORT=${POSTFIX_AUTH_PORT:-2627}
DNS_ADDR=${DNS_ADDR:-127.0.53.1}
OPENDKIM_PORT=${OPENDKIM_PORT:-8891}
OPENDMARC_PORT=${OPENDMARC_PORT:-8893}
MILTER=${MILTER:-1}
[ "$MILTER" = 0 ] && MILTER=
MI_ROUNDS=${MI_ROUNDS:-$ROUNDS}
if [ -n "$QUICK" ]; then MI_CELLS=${MI_CELLS:-"8:new 32:new"}
else MI_CELLS=${MI_CELLS:-"8:new 32:new 32:reuse"}; fi
TERN_MILTER_PORT=${TERN_MILTER_PORT:-2733}
POSTFIX_MILTER_PORT=${POSTFIX_MILTER_PORT:-2628}
RSPAMD_PORT=${RSPAMD_PORT:-11342}
RSPAMD_PIN=${RSPAMD_PIN:-server}
RSPAMD_HS_CACHE=${RSPAMD_HS_CACHE:-$OUT/rspamd-hs-cache}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
has_server() { case " $SERVERS " in *" $1 "*) return 0 ;; esac; return 1; }

# --- clean-up: runs on every exit path, including Ctrl-C -------------------
WORK=
SINK_PID=
TERN_PID=
TERN_AUTH_PID=
TERN_RELAY_PID=
TERN_T1_PID=
TERN_T2_PID=
TERN_MILTER_PID=
RSPAMD_PID=
RSPAMD_TREE=
TERN_IMAP_PID=
DOVECOT_PID=
DOVECOT_TREE=
DNS_PID=
OPENDKIM_PID=
OPENDMARC_PID=
# Postfix instances by tag ("postfix", and "postfix-auth" with milters).
declare -A PF_CONF=() PF_MASTER=() PF_CG=() PF_CPU=() PF_MAILDIR=()
CG_ROOT=
CG_KIND=
CLEANED=

stop_pid() {  # pid name: TERM, wait up to 10 s, then KILL
  local pid=$1 name=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$name did not exit; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_postfix() {  # tag
  local tag=$1 conf=${PF_CONF[$1]:-} master=${PF_MASTER[$1]:-} cg=${PF_CG[$1]:-}
  [ -n "$conf" ] || return 0
  if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
    log "stopping $tag (postfix -c $conf stop)"
    timeout 30 postfix -c "$conf" stop >/dev/null 2>&1 || true
    local i
    for i in $(seq 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$master" "$tag master"
  fi
  # Any process of the instance that is left (by cgroup, or by its
  # MAIL_CONFIG environment) is ended here; only ours, never by name.
  local pids=
  if [ -n "$cg" ] && [ -e "$cg/cgroup.procs" ]; then
    pids=$(cat "$cg/cgroup.procs" 2>/dev/null || true)
  else
    pids=$(grep -lsaF "MAIL_CONFIG=$conf" /proc/[0-9]*/environ 2>/dev/null |
           cut -d/ -f3 || true)
  fi
  for p in $pids; do [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null || true; done
  PF_CONF[$tag]=
}

cleanup() {
  local rc=$?
  [ -n "$CLEANED" ] && return
  CLEANED=1
  trap '' INT TERM HUP
  set +e
  log "cleaning up"
  # Helpers still running in the background (none on the normal path).
  local j
  for j in $(jobs -p); do
    case " $j " in
      " $SINK_PID "|" $TERN_PID "|" $TERN_AUTH_PID "|" $TERN_MILTER_PID "|" $RSPAMD_PID "|" $TERN_IMAP_PID "|" $DOVECOT_PID "|" $DNS_PID "|" $OPENDKIM_PID "|" $OPENDMARC_PID ") ;;
      *) kill -TERM "$j" 2>/dev/null ;;
    esac
  done
  [ -n "$RELAY" ] && relay_cleanup
  stop_pid "$TERN_PID" "Tern"
  stop_pid "$TERN_T1_PID" "Tern (threads = 1, unpinned)"
  stop_pid "$TERN_T2_PID" "Tern (threads = 2, unpinned)"
  stop_pid "$TERN_AUTH_PID" "Tern (mail authentication)"
  stop_pid "$TERN_MILTER_PID" "Tern (milter)"
  stop_pid "$TERN_IMAP_PID" "Tern (IMAP)"
  if [ -n "$DOVECOT_PID" ]; then
    # The master ends its children; any left over (by pid, ours only) get KILL.
    DOVECOT_TREE=$("$PY" "$BENCH/benchlib.py" tree-pids "$DOVECOT_PID" 2>/dev/null || true)
    stop_pid "$DOVECOT_PID" "Dovecot"
    # (only if the pid still runs a Dovecot binary: pids can be reused)
    for j in $DOVECOT_TREE; do
      case $(readlink "/proc/$j/exe" 2>/dev/null) in
        /usr/lib/dovecot/*|/usr/sbin/dovecot) kill -KILL "$j" 2>/dev/null ;;
      esac
    done
  fi
  stop_pid "$SINK_PID" "smtp-sink"
  # The milters share postfix-auth's cgroup, whose leftovers get SIGKILL.
  # Both are asked to stop at once: each takes seconds to finish.
  for j in $OPENDKIM_PID $OPENDMARC_PID; do kill -TERM "$j" 2>/dev/null || true; done
  stop_pid "$OPENDKIM_PID" "OpenDKIM"
  stop_pid "$OPENDMARC_PID" "OpenDMARC"
  for j in "${!PF_CONF[@]}"; do stop_postfix "$j"; done
  if [ -n "$RSPAMD_PID" ]; then
    # The main process ends its workers; any left (in its cgroup, or of its
    # process tree and still running rspamd: pids can be reused) get KILL.
    RSPAMD_TREE=$("$PY" "$BENCH/benchlib.py" tree-pids "$RSPAMD_PID" 2>/dev/null || true)
    stop_pid "$RSPAMD_PID" "rspamd"
    [ -n "${PF_CG[rspamd]:-}" ] && RSPAMD_TREE+=" $(cat "${PF_CG[rspamd]}/cgroup.procs" 2>/dev/null)"
    for j in $RSPAMD_TREE; do
      case $(readlink "/proc/$j/exe" 2>/dev/null) in
        */rspamd) kill -KILL "$j" 2>/dev/null ;;
      esac
    done
  fi
  stop_pid "$DNS_PID" "DNS server"
  if [ -n "$CG_ROOT" ] && [ -d "$CG_ROOT" ]; then
    local d
    for d in "$CG_ROOT"/*/ "$CG_ROOT"; do
      [ -d "$d" ] || continue
      for j in $(seq 50); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    done
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    [ -z "${KEEP:-}" ] && log "removing $WORK"
    # Keep the tail of each server log next to the results.
    if [ -d "$WORK/logs" ]; then
      mkdir -p "$OUT/logs"
      for f in "$WORK"/logs/*; do [ -f "$f" ] && tail -n 300 "$f" >"$OUT/logs/$(basename "$f")"; done
    fi
    if [ -n "${KEEP:-}" ]; then
      log "keeping $WORK (KEEP=1)"
    else
      rm -rf "$WORK"
      # Flushed, the freed inodes stay "recently deleted" for 60 s (see
      # settle_fs); the next bench waits that out (wait_for_last_cleanup).
      sync -f "$(dirname "$WORK")" 2>/dev/null || sync
      date +%s >"$OUT/.last-cleanup" 2>/dev/null
    fi
  fi
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
trap 'exit 129' HUP

# --- preflight --------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (Postfix and smtp-sink need it)"
for t in /usr/sbin/smtp-source /usr/sbin/smtp-sink /usr/sbin/postfix /usr/sbin/postconf \
         /usr/sbin/postmap "$PY" taskset timeout; do
  command -v "$t" >/dev/null || die "missing $t: run scripts/deps.sh bench"
done
if has_server tern; then [ -x "$TERN" ] || die "no $TERN: build Tern first (make build)"; fi
getent passwd postfix >/dev/null || die "no user postfix (the Debian postfix package creates it)"
getent group postdrop >/dev/null || die "no group postdrop (the Debian postfix package creates it)"
for port in $TERN_PORT $POSTFIX_PORT $SINK_PORT; do
  if ! "$PY" "$BENCH/benchlib.py" port-free 127.0.0.1 "$port"; then
    die "port $port on loopback is in use; set TERN_PORT/POSTFIX_PORT/SINK_PORT"
  fi
done
if [ -n "$MAILAUTH" ] && ! has_server tern; then
  log "no tern in SERVERS: no mail authentication cell"
  MAILAUTH=
fi
if [ -n "$MAILAUTH" ]; then
  for t in /usr/sbin/opendkim /usr/sbin/opendmarc /usr/bin/policyd-spf unshare mount openssl; do
    command -v "$t" >/dev/null || die "missing $t: run scripts/deps.sh bench (or MAILAUTH=0)"
  done
  "$PY" -c 'import dkim' 2>/dev/null || die "missing dkimpy: run scripts/deps.sh bench (or MAILAUTH=0)"
  case $DNS_ADDR in 127.*) ;; *) die "DNS_ADDR must be a loopback address" ;; esac
  for port in $TERN_AUTH_PORT $POSTFIX_AUTH_PORT $OPENDKIM_PORT $OPENDMARC_PORT; do
    "$PY" "$BENCH/benchlib.py" port-free 127.0.0.1 "$port" ||
      die "port $port on loopback is in use; set TERN_AUTH_PORT/POSTFIX_AUTH_PORT/OPENDKIM_PORT/OPENDMARC_PORT"
  done
  { "$PY" "$BENCH/benchlib.py" port-free "$DNS_ADDR" 53 &&
    "$PY" "$BENCH/benchlib.py" udp-port-free "$DNS_ADDR" 53; } ||
    die "$DNS_ADDR port 53 is in use; set DNS_ADDR to another loopback address"
fi

if [ -n "$MILTER" ] && ! has_server tern; then
  log "no tern in SERVERS: no milter cell"
  MILTER=
fi
if [ -n "$MILTER" ]; then
  command -v rspamd >/dev/null || die "missing rspamd: run scripts/deps.sh bench (or MILTER=0)"
  [ -d /etc/rspamd ] || die "no /etc/rspamd (the distribution's defaults the private rspamd reads)"
  case $RSPAMD_PIN in server|load) ;; *) die "RSPAMD_PIN must be server or load" ;; esac
  for port in $TERN_MILTER_PORT $POSTFIX_MILTER_PORT $RSPAMD_PORT; do
    "$PY" "$BENCH/benchlib.py" port-free 127.0.0.1 "$port" ||
      die "port $port on loopback is in use; set TERN_MILTER_PORT/POSTFIX_MILTER_PORT/RSPAMD_PORT"
  done
fi

if [ -n "$IMAP" ]; then
  for t in /usr/sbin/dovecot /usr/bin/doveadm; do
    command -v "$t" >/dev/null || die "missing $t: run scripts/deps.sh bench (or IMAP=0)"
  done
  [ -x /usr/lib/dovecot/imap ] || die "no Dovecot imap: install dovecot-imapd (scripts/deps.sh bench) or IMAP=0"
  [ -x "$TERN" ] || die "no $TERN: build Tern first (make build)"
  for port in $TERN_IMAP_PORT $TERN_IMAP_SMTP_PORT $DOVECOT_IMAP_PORT; do
    "$PY" "$BENCH/benchlib.py" port-free 127.0.0.1 "$port" ||
      die "port $port on loopback is in use; set TERN_IMAP_PORT/TERN_IMAP_SMTP_PORT/DOVECOT_IMAP_PORT"
  done
fi

if [ -n "$HUGE" ]; then
  [ -x "$TERN" ] || die "no $TERN: build Tern first (make build)"
  case $HUGE_SINK in 127.*:*) ;; *) die "HUGE_SINK must be a loopback address:port" ;; esac
  for port in $TERN_HUGE_PORT $POSTFIX_HUGE_PORT; do
    "$PY" "$BENCH/benchlib.py" port-free 127.0.0.1 "$port" ||
      die "port $port on loopback is in use; set TERN_HUGE_PORT/POSTFIX_HUGE_PORT"
  done
  "$PY" "$BENCH/benchlib.py" port-free "${HUGE_SINK%:*}" "${HUGE_SINK##*:}" ||
    die "$HUGE_SINK is in use; set HUGE_SINK"
fi

NCPU=$(nproc)
# Prefixes, not functions: a background function would run in a subshell
# and $! would not be the server's pid.
if [ "$NCPU" -ge 2 ]; then
  SERVER_CPUS=0; LOAD_CPUS=1
  PIN_SERVER=(taskset -c "$SERVER_CPUS")
  PIN_LOAD=(taskset -c "$LOAD_CPUS")
else
  SERVER_CPUS=; LOAD_CPUS=
  PIN_SERVER=(env)
  PIN_LOAD=(env)
  log "one CPU only: servers and load generator share it (no pinning)"
fi
# NICE=-10 gives the benchmark priority over other work on a shared machine.
if [ -n "${NICE:-}" ]; then
  PIN_SERVER=(nice -n "$NICE" "${PIN_SERVER[@]}")
  PIN_LOAD=(nice -n "$NICE" "${PIN_LOAD[@]}")
  log "servers and load generator run at nice $NICE"
fi

# File descriptors: 10,000 idle connections need that many on both ends.
NOFILE=65536
if ! ulimit -n $NOFILE 2>/dev/null; then
  NOFILE=$(ulimit -Hn)
  [ "$NOFILE" = unlimited ] && NOFILE=1048576
  ulimit -n "$NOFILE"
  log "RLIMIT_NOFILE cannot go to 65536 here (hard limit $NOFILE); using $NOFILE"
fi
if [ "$IDLE_CONNS" -gt $((NOFILE - 200)) ]; then
  IDLE_CONNS=$((NOFILE - 200))
  log "idle connection test reduced to $IDLE_CONNS connections (fd limit)"
fi

mkdir -p "$OUT"
rm -f "$OUT"/results.md "$OUT"/results.json "$OUT"/runs.jsonl "$OUT"/parser_bench.json "$OUT"/mailauth.jsonl "$OUT"/milter.jsonl \
  "$OUT"/imap.jsonl "$OUT"/imap-idle.jsonl "$OUT"/imap-wake.jsonl "$OUT"/huge.jsonl \
  "$OUT"/tls.jsonl "$OUT"/tls-idle-*.json \
  "$OUT"/throughput.png "$OUT"/throughput.dat "$OUT"/throughput.gp
rm -rf "$OUT/logs"
WORK=$(mktemp -d /tmp/tern-bench-XXXX)
chmod 0755 "$WORK"   # the virtual(8) mailbox owner must reach its Maildir
mkdir -p "$WORK/logs"
RUNS=$WORK/runs.jsonl
: >"$RUNS"
log "work dir $WORK, results in $OUT"
log "cells: $CELLS; rounds: $ROUNDS; servers: $SERVERS"

# CPU accounting for Postfix: a cgroup v2 (or v1 cpuacct) holding the whole
# instance, else the process tree under the master.
# Each instance (tag) gets its own group under CG_ROOT.
cg2_mount=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -n "$cg2_mount" ] && mkdir "$cg2_mount/tern-bench-$$" 2>/dev/null; then
  CG_ROOT=$cg2_mount/tern-bench-$$
  if mkdir "$CG_ROOT/probe" 2>/dev/null && [ -e "$CG_ROOT/probe/cpu.stat" ]; then
    CG_KIND=cg2
    rmdir "$CG_ROOT/probe"
  else
    rmdir "$CG_ROOT/probe" "$CG_ROOT" 2>/dev/null || true
    CG_ROOT=
  fi
fi
if [ -z "$CG_KIND" ] && [ -d /sys/fs/cgroup/cpuacct ] &&
   mkdir "/sys/fs/cgroup/cpuacct/tern-bench-$$" 2>/dev/null; then
  CG_ROOT=/sys/fs/cgroup/cpuacct/tern-bench-$$
  CG_KIND=cg1
fi
pf_cgroup() {  # tag: creates the instance's cgroup, sets PF_CG and PF_CPU
  PF_CG[$1]=; PF_CPU[$1]=
  [ -n "$CG_KIND" ] || return 0
  mkdir -p "$CG_ROOT/$1" 2>/dev/null || return 0
  PF_CG[$1]=$CG_ROOT/$1
  PF_CPU[$1]=$CG_KIND:$CG_ROOT/$1
}
[ -n "$CG_KIND" ] && log "Postfix CPU: cgroup ($CG_KIND) under $CG_ROOT" || log "Postfix CPU: process tree of its master"

# --- the machine ------------------------------------------------------------
# ext4 without a journal changes what fsync and file creation cost; say so.
fs_journal() {
  local src fstype
  src=$(findmnt -no SOURCE -T "$1" 2>/dev/null || true)
  fstype=$(findmnt -no FSTYPE -T "$1" 2>/dev/null || true)
  case $fstype in
    ext3|ext4)
      if ls /proc/fs/jbd2 2>/dev/null | grep -q "^$(basename "$src")-"; then echo "$fstype, journal"
      else echo "$fstype, NO journal"; fi ;;
    *) echo "${fstype:-?}" ;;
  esac
}

write_env() {
  local postfix_version tern_version
  postfix_version=$(postconf -d -h mail_version 2>/dev/null || echo "?")
  tern_version="?"
  [ -x "$TERN" ] && tern_version="built $(date -r "$TERN" '+%Y-%m-%d %H:%M')"
  CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  "$PY" - "$WORK/env.json" <<EOF
import json, sys
json.dump({
  "cpu_model": """$CPU_MODEL""", "cores": $NCPU, "kernel": """$(uname -srm)""",
  "os": """$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")""",
  "disk": """$(df -h --output=source,fstype,size,avail,target "$WORK" | awk 'END { printf "%s on %s (%s, %s, %s free)", $1, $5, $2, $3, $4 }')""",
  "fs": """$(fs_journal "$WORK"); mount options $(findmnt -no OPTIONS -T "$WORK" 2>/dev/null)""",
  "fsync_probe": """$FSYNC_PROBE""",
  "disk_tern": """$(df --output=source "$WORK/tern" 2>/dev/null | tail -1)""",
  "disk_postfix": """$(df --output=source "$WORK/postfix" 2>/dev/null | tail -1)""",
  "server_cpus": "$SERVER_CPUS", "load_cpus": "$LOAD_CPUS", "nofile": $NOFILE,
  "postfix_version": """$postfix_version""", "tern_version": """$tern_version""",
  "dovecot_version": """$(dovecot --version 2>/dev/null || echo ?)""",
  "rspamd_version": """$(dpkg-query -W -f='${Version}' rspamd 2>/dev/null || echo ?)""",
  "rspamd_pin": "$RSPAMD_PIN", "milter_rounds": $([ -n "$MILTER" ] && echo "$MI_ROUNDS" || echo 0),
  "mailauth_versions": """$(dpkg-query -W -f='${Package} ${Version}, ' opendkim opendmarc postfix-policyd-spf-python python3-spf python3-dkim 2>/dev/null | sed 's/, $//')""",
  "quick": bool("$QUICK"), "rounds": $ROUNDS, "imap_rounds": $([ -n "$IMAP" ] && echo "$IMAP_ROUNDS" || echo 0), "cells": """$CELLS""".split(),
  "date": """$(date -u +%Y-%m-%dT%H:%M:%SZ)""", "git": """$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo ?)""",
  "loadavg_start": """$(cut -d' ' -f1-3 /proc/loadavg)""",
}, open(sys.argv[1], "w"), indent=1)
EOF
}

# --- smtp-sink ----------------------------------------------------------------
start_sink() {
  log "starting smtp-sink on 127.0.0.1:$SINK_PORT"
  "${PIN_SERVER[@]}" /usr/sbin/smtp-sink -u nobody -m 1000 "127.0.0.1:$SINK_PORT" 1024 \
    >"$WORK/logs/smtp-sink.log" 2>&1 &
  SINK_PID=$!
  "$PY" "$BENCH/benchlib.py" wait-smtp 127.0.0.1 "$SINK_PORT" "$START_TIMEOUT" ||
    die "smtp-sink did not start (see $WORK/logs/smtp-sink.log)"
}

# --- private Postfix instance ----------------------------------------------------
# start_postfix TAG PORT MYNETWORKS [EXTRA_MAIN_CF EXTRA_MASTER_CF]: an
# instance in $WORK/TAG. PF_WRAP (an array) is put in front of `postfix
# start`: the mail authentication instance runs in its own mount namespace.
PF_WRAP=()
start_postfix() {
  local tag=$1 port=$2 mynetworks=$3 extra_main=${4:-} extra_master=${5:-}
  local pf=$WORK/$tag conf=$WORK/$tag/etc
  PF_CONF[$tag]=$conf
  PF_MAILDIR[$tag]=$pf/mail/bench.test/user/Maildir
  pf_cgroup "$tag"
  local cg=${PF_CG[$tag]}
  local vuid vgid
  vuid=$(id -u nobody); vgid=$(id -g nobody)
  mkdir -p "$conf" "$pf/mail/bench.test"
  mkdir -m 0755 "$pf/spool"   # postfix check creates what is inside
  chown -R "$vuid:$vgid" "$pf/mail"
  log "configuring $tag in $conf (queue $pf/spool, port $port)"
  cat >"$conf/main.cf" <<EOF
# Private Postfix instance for the Tern benchmark; removed after the run.
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = $mynetworks
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = bench.test
virtual_mailbox_maps = hash:$conf/vmailbox
virtual_mailbox_base = $pf/mail
virtual_uid_maps = static:$vuid
virtual_gid_maps = static:$vgid
in_flow_delay = 0
default_process_limit = $PROC_LIMIT
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native
disable_dns_lookups = yes
biff = no
append_dot_mydomain = no
maillog_file = $WORK/logs/$tag-maillog
maillog_file_prefixes = $WORK/logs
$extra_main
EOF
  # Only the services a virtual-mailbox-only MTA uses; no chroot.
  cat >"$conf/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n - n - $PROC_LIMIT smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
$extra_master
EOF
  echo "user@bench.test bench.test/user/Maildir/" >"$conf/vmailbox"
  postmap -c "$conf" "hash:$conf/vmailbox"
  log "postfix -c $conf check"
  timeout 60 postfix -c "$conf" check >"$WORK/logs/$tag-check.log" 2>&1 ||
    { cat "$WORK/logs/$tag-check.log" >&2; tail -5 "$WORK/logs/$tag-maillog" >&2; die "postfix check failed"; }
  log "starting $tag (postfix -c $conf start)"
  # The subshell joins the cgroup first, so master and all its children
  # are accounted there; taskset pins them all to the server core.
  ( if [ -n "$cg" ]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi
    exec timeout 60 "${PIN_SERVER[@]}" ${PF_WRAP[@]+"${PF_WRAP[@]}"} postfix -c "$conf" start
  ) >"$WORK/logs/$tag-start.log" 2>&1 ||
    { cat "$WORK/logs/$tag-start.log" >&2; tail -5 "$WORK/logs/$tag-maillog" >&2; die "postfix start failed"; }
  local i master
  for i in $(seq 100); do
    [ -s "$pf/spool/pid/master.pid" ] && break
    sleep 0.1
  done
  master=$(tr -d ' \n' <"$pf/spool/pid/master.pid" 2>/dev/null || true)
  PF_MASTER[$tag]=$master
  [ -n "$master" ] && kill -0 "$master" 2>/dev/null || die "$tag master is not running"
  [ -n "$cg" ] || PF_CPU[$tag]=tree:$master
  "$PY" "$BENCH/benchlib.py" wait-smtp 127.0.0.1 "$port" "$START_TIMEOUT" ||
    die "$tag does not answer on 127.0.0.1:$port (see $WORK/logs/$tag-maillog)"
  log "$tag: Postfix $(postconf -c "$conf" -h mail_version) running, master pid $master"
}

# --- Tern ---------------------------------------------------------------------
# start_tern TAG PORT MAILAUTH_TOML [TOP_LEVEL_TOML]: an instance with its
# data in $WORK/TAG; sets TERN_PID (or TERN_AUTH_PID for tag tern-auth, ...)
# and TERN_MAILDIR_OF.
declare -A TERN_MAILDIR_OF=()
start_tern() {
  local tag=$1 port=$2 mailauth=$3 top=${4:-}
  local dir=$WORK/$tag conf=$WORK/$tag.toml
  TERN_MAILDIR_OF[$tag]=$dir/mail/bench.test/user/Maildir
  mkdir -p "$dir"
  cat >"$conf" <<EOF
# Tern benchmark configuration (generated by bench/run.sh)
hostname = "mx.bench.test"
data_dir = "$dir"
domains = ["bench.test"]
threads = ${TERN_THREADS:-1}
delivery_threads = 1
$top

[log]
level = "warn"

[[listen]]
address = "127.0.0.1:$port"
service = "smtp"

[smtp]
max_connections = 20000
max_connections_per_ip = 20000

$mailauth
$TERN_DIRECT_TOML
EOF
  log "adding user@bench.test to $tag ($TERN user add ... --config $conf)"
  echo "bench-password" | timeout 60 "$TERN" user add user@bench.test --config "$conf" \
    >"$WORK/logs/$tag-useradd.log" 2>&1 ||
    { cat "$WORK/logs/$tag-useradd.log" >&2; die "tern user add failed"; }
  log "starting $tag ($TERN serve --config $conf, nofile $NOFILE)"
  local pin=("${PIN_SERVER[@]}")
  [ -n "${TERN_UNPINNED:-}" ] && pin=(env)
  "${pin[@]}" prlimit --nofile="$NOFILE" "$TERN" serve --config "$conf" \
    >"$WORK/logs/$tag.log" 2>&1 &
  local pid=$!
  case $tag in
    tern) TERN_PID=$pid ;; tern-imap) TERN_IMAP_PID=$pid ;; tern-milter) TERN_MILTER_PID=$pid ;;
    tern-relay) TERN_RELAY_PID=$pid ;; tern-t1) TERN_T1_PID=$pid ;; tern-t2) TERN_T2_PID=$pid ;;
    tern-tls) TERN_TLS_PID=$pid ;;
    *) TERN_AUTH_PID=$pid ;;
  esac
  "$PY" "$BENCH/benchlib.py" wait-smtp 127.0.0.1 "$port" "$START_TIMEOUT" ||
    { tail -20 "$WORK/logs/$tag.log" >&2; die "$tag did not start"; }
  kill -0 "$pid" 2>/dev/null || die "$tag exited"
  log "$tag running, pid $pid ($(cat /proc/$pid/comm))"
}

# Server names of the runs. The mail authentication cell adds tern-nocheck
# (the plain Tern, sent the same signed message), tern-auth (every check on)
# and postfix-auth (OpenDKIM, OpenDMARC, policyd-spf). The milter cell adds
# tern-nomilter and postfix-nomilter (the plain Tern and Postfix), and
# tern-milter and postfix-milter (rspamd as their milter).
server_port() {
  case $1 in
    tern|tern-nocheck|tern-nomilter) echo "$TERN_PORT" ;; postfix|postfix-nomilter) echo "$POSTFIX_PORT" ;;
    sink) echo "$SINK_PORT" ;;
    tern-auth) echo "$TERN_AUTH_PORT" ;; postfix-auth) echo "$POSTFIX_AUTH_PORT" ;;
    tern-milter) echo "$TERN_MILTER_PORT" ;; postfix-milter) echo "$POSTFIX_MILTER_PORT" ;;
    tern-t1) echo "$TERN_SCALE_PORT" ;; tern-t2) echo "$((TERN_SCALE_PORT + 1))" ;;
  esac
}
server_maildir() {
  case $1 in
    tern|tern-nocheck|tern-nomilter) echo "${TERN_MAILDIR_OF[tern]}" ;;
    tern-auth|tern-milter|tern-t1|tern-t2) echo "${TERN_MAILDIR_OF[$1]}" ;;
    postfix|postfix-nomilter) echo "${PF_MAILDIR[postfix]}" ;;
    postfix-auth|postfix-milter) echo "${PF_MAILDIR[$1]}" ;; *) echo "" ;;
  esac
}
server_cpu() {
  case $1 in
    tern|tern-nocheck|tern-nomilter) echo "pid:$TERN_PID" ;; tern-auth) echo "pid:$TERN_AUTH_PID" ;;
    tern-milter) echo "pid:$TERN_MILTER_PID" ;;
    tern-t1) echo "pid:$TERN_T1_PID" ;; tern-t2) echo "pid:$TERN_T2_PID" ;;
    postfix|postfix-nomilter) echo "${PF_CPU[postfix]}" ;; sink) echo "pid:$SINK_PID" ;;
    # rspamd is measured on its own (cell.py --helper-cpu), not in here.
    postfix-milter) echo "${PF_CPU[postfix-milter]}" ;;
    postfix-auth)
      # With a cgroup the milters are in it; otherwise add them up.
      if [ -n "${PF_CG[postfix-auth]}" ]; then echo "${PF_CPU[postfix-auth]}"
      else echo "${PF_CPU[postfix-auth]}+pid:$OPENDKIM_PID+pid:$OPENDMARC_PID"; fi ;;
  esac
}
server_alive() {
  case $1 in
    tern|tern-nocheck|tern-nomilter) kill -0 "$TERN_PID" 2>/dev/null ;;
    tern-auth) kill -0 "$TERN_AUTH_PID" 2>/dev/null ;;
    tern-t1) kill -0 "$TERN_T1_PID" 2>/dev/null ;; tern-t2) kill -0 "$TERN_T2_PID" 2>/dev/null ;;
    tern-milter) kill -0 "$TERN_MILTER_PID" 2>/dev/null && kill -0 "$RSPAMD_PID" 2>/dev/null ;;
    postfix|postfix-nomilter) kill -0 "${PF_MASTER[postfix]}" 2>/dev/null ;;
    postfix-milter) kill -0 "${PF_MASTER[postfix-milter]}" 2>/dev/null && kill -0 "$RSPAMD_PID" 2>/dev/null ;;
    postfix-auth) kill -0 "${PF_MASTER[postfix-auth]}" 2>/dev/null &&
      kill -0 "$OPENDKIM_PID" 2>/dev/null && kill -0 "$OPENDMARC_PID" 2>/dev/null ;;
    sink) kill -0 "$SINK_PID" 2>/dev/null ;;
  esac
}
FAILED=0
declare -A DEAD=()
RUNS_FILE=$RUNS

# Each run starts on a flushed file system. On ext4 without a journal the
# inode allocator skips, checking each one, every inode freed in the last
# 60 seconds (300 while its inode table block is dirty: recently_deleted()
# in fs/ext4/ialloc.c), so a server creating files soon after another one
# deleted thousands pays for the other's deletions (measured here: Tern's
# CPU per message tripled right after the previous bench's clean-up). A
# flush before each run at least makes those blocks clean (60 s, not 300).
# SETTLE=61 waits the window out completely (slow: a minute per run).
# Journaled ext4 skips the check; there a short pause is enough.
settle_fs() {
  local secs=${SETTLE:-}
  if [ -z "$secs" ]; then
    case $(fs_journal "$WORK") in *"NO journal"*) secs=6 ;; *) secs=1 ;; esac
  fi
  sync -f "$WORK" 2>/dev/null || sync
  sleep "$secs"
}

# One smtp-source run; failures are recorded, not fatal.
run_cell() {  # server size sessions mode round [count]
  local server=$1 size=$2 sessions=$3 mode=$4 round=$5 count=${6:-auto}
  if [ -n "${DEAD[$server]:-}" ]; then
    log "$server: skipped ($server is not running)"
    return 0
  fi
  if ! server_alive "$server"; then
    log "$server: process is gone; skipping its remaining runs"
    DEAD[$server]=1; FAILED=1
    "$PY" -c 'import json,sys; print(json.dumps({"server": sys.argv[1], "size": int(sys.argv[2]), "sessions": int(sys.argv[3]), "mode": sys.argv[4], "round": int(sys.argv[5]), "ok": False, "error": "server not running"}))' \
      "$server" "$size" "$sessions" "$mode" "$round" >>"$RUNS_FILE"
    return 0
  fi
  local maildir; maildir=$(server_maildir "$server")
  local rc=0
  settle_fs
  "${PIN_LOAD[@]}" "$PY" "$BENCH/cell.py" --server "$server" --port "$(server_port "$server")" \
    --size "$size" --sessions "$sessions" --mode "$mode" --round "$round" \
    --count "$count" --target-secs "$TARGET_SECS" \
    ${maildir:+--maildir "$maildir" --archive "$WORK/archive"} --cpu "$(server_cpu "$server")" \
    --timeout "$RUN_TIMEOUT" \
    --delivery-timeout "${CELL_DELIVERY_TIMEOUT:-$DELIVERY_TIMEOUT}" --out "$RUNS_FILE" \
    ${CELL_ARGS[@]+"${CELL_ARGS[@]}"} || rc=$?
  [ $rc -eq 0 ] || FAILED=1
}
CELL_ARGS=()   # more cell.py options (the mail authentication cell's)

# --- mail authentication: DNS server, milters, second Postfix and Tern --------
# Both servers check SPF, DKIM and DMARC against one small authoritative DNS
# server (bench/dnsserver.py) on $DNS_ADDR:53 serving client.test, the
# sender's domain. Tern is pointed at it with [dns] upstream. OpenDKIM
# (libunbound), OpenDMARC (libspf2 and the libc resolver) and policyd-spf
# (dnspython) read /etc/resolv.conf, which the bench must not change: they,
# and the Postfix instance that spawns policyd-spf, run in private mount
# namespaces (unshare -m) where a resolv.conf naming $DNS_ADDR is
# bind-mounted over /etc/resolv.conf. Nothing outside those processes sees it.
MA_DIR=
NS_WRAP=()
MA_SERVERS="tern-nocheck tern-auth postfix-auth"
wait_tcp() {  # port seconds: until something listens on 127.0.0.1:port
  local i
  for i in $(seq $(( $2 * 10 ))); do
    "$PY" "$BENCH/benchlib.py" port-free 127.0.0.1 "$1" || return 0
    sleep 0.1
  done
  return 1
}
start_mailauth() {
  MA_DIR=$WORK/mailauth
  mkdir -p "$MA_DIR"
  log "mail authentication: signing key, zone and signed messages (mailauth_prep.py)"
  "$PY" "$BENCH/mailauth_prep.py" --dir "$MA_DIR" --pool 200 >"$MA_DIR/prep.out" ||
    die "mailauth_prep.py failed"
  chmod -R a+rX "$MA_DIR"   # the milters and policyd-spf do not run as root
  # The DNS server stands for the network: it runs on the load generator's core.
  "${PIN_LOAD[@]}" "$PY" "$BENCH/dnsserver.py" serve --zone "$MA_DIR/zone.json" \
    --address "$DNS_ADDR" --port 53 >"$WORK/logs/dnsserver.log" 2>&1 &
  DNS_PID=$!
  local i
  for i in $(seq 50); do
    "$PY" "$BENCH/dnsserver.py" query "$DNS_ADDR" 53 _dmarc.client.test TXT >/dev/null 2>&1 && break
    kill -0 "$DNS_PID" 2>/dev/null || break
    sleep 0.1
  done
  "$PY" "$BENCH/dnsserver.py" query "$DNS_ADDR" 53 _dmarc.client.test TXT >/dev/null 2>&1 ||
    { cat "$WORK/logs/dnsserver.log" >&2; die "the DNS server on $DNS_ADDR:53 does not answer"; }
  log "DNS server for client.test on $DNS_ADDR:53 (udp, tcp), pid $DNS_PID"

  printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS_ADDR" >"$MA_DIR/resolv.conf"
  NS_WRAP=(unshare -m --propagation private -- sh -c \
    'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$MA_DIR/resolv.conf")
  "${NS_WRAP[@]}" cat /etc/resolv.conf 2>&1 | grep -q "^nameserver $DNS_ADDR" ||
    die "cannot give the milters a private resolv.conf (unshare -m and mount --bind need CAP_SYS_ADMIN)"
  grep -q "$DNS_ADDR" /etc/resolv.conf && die "the machine's /etc/resolv.conf changed: stopping"

  # Clients in here would be "internal" (signed, or not checked) by the
  # milters' defaults, which list 127.0.0.1: name an address no client has.
  echo 192.0.2.1 >"$MA_DIR/internal-hosts"
  cat >"$MA_DIR/unbound.conf" <<EOF
# libunbound inside OpenDKIM: ask the bench's DNS server for everything.
server:
  do-not-query-localhost: no
  local-zone: "test." nodefault
forward-zone:
  name: "."
  forward-addr: $DNS_ADDR
EOF
  cat >"$MA_DIR/opendkim.conf" <<EOF
# OpenDKIM for the bench: verify only, on loopback TCP.
Syslog no
Mode v
Socket inet:$OPENDKIM_PORT@127.0.0.1
UserID opendkim
AuthservID postfix.bench.test
AlwaysAddARHeader yes
InternalHosts $MA_DIR/internal-hosts
ResolverConfiguration $MA_DIR/unbound.conf
EOF
  cat >"$MA_DIR/opendmarc.conf" <<EOF
# OpenDMARC for the bench: SPF from policyd-spf's Authentication-Results
# (SPFSelfValidate checks itself only when that header is missing).
Syslog false
Socket inet:$OPENDMARC_PORT@127.0.0.1
UserID opendmarc
AuthservID postfix.bench.test
TrustedAuthservIDs postfix.bench.test
IgnoreHosts $MA_DIR/internal-hosts
RejectFailures true
SPFSelfValidate true
FailureReports false
EOF
  cat >"$MA_DIR/policyd-spf.conf" <<EOF
# policyd-spf for the bench: Authentication-Results, loopback not skipped.
debugLevel = 0
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 192.0.2.1/32
Header_Type = AR
Authserv_Id = postfix.bench.test
EOF
  chmod a+r "$MA_DIR"/*.conf "$MA_DIR/internal-hosts"

  pf_cgroup postfix-auth
  local cg=${PF_CG[postfix-auth]}
  log "starting OpenDKIM (127.0.0.1:$OPENDKIM_PORT) and OpenDMARC (127.0.0.1:$OPENDMARC_PORT)"
  ( if [ -n "$cg" ]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi
    exec "${PIN_SERVER[@]}" "${NS_WRAP[@]}" /usr/sbin/opendkim -f -x "$MA_DIR/opendkim.conf"
  ) >"$WORK/logs/opendkim.log" 2>&1 &
  OPENDKIM_PID=$!
  ( if [ -n "$cg" ]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi
    exec "${PIN_SERVER[@]}" "${NS_WRAP[@]}" /usr/sbin/opendmarc -f -c "$MA_DIR/opendmarc.conf"
  ) >"$WORK/logs/opendmarc.log" 2>&1 &
  OPENDMARC_PID=$!
  wait_tcp "$OPENDKIM_PORT" "$START_TIMEOUT" && kill -0 "$OPENDKIM_PID" 2>/dev/null ||
    { cat "$WORK/logs/opendkim.log" >&2; die "OpenDKIM did not start"; }
  wait_tcp "$OPENDMARC_PORT" "$START_TIMEOUT" && kill -0 "$OPENDMARC_PID" 2>/dev/null ||
    { cat "$WORK/logs/opendmarc.log" >&2; die "OpenDMARC did not start"; }

  # 127.0.0.1 must be neither in mynetworks nor skipped by the milters.
  PF_WRAP=("${NS_WRAP[@]}")
  start_postfix postfix-auth "$POSTFIX_AUTH_PORT" 192.0.2.1/32 "
# Mail authentication: policyd-spf at RCPT, OpenDKIM and OpenDMARC as milters.
smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/policyd-spf
policyd-spf_time_limit = 3600
smtpd_milters = inet:127.0.0.1:$OPENDKIM_PORT, inet:127.0.0.1:$OPENDMARC_PORT
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6" "policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf $MA_DIR/policyd-spf.conf"
  PF_WRAP=()

  start_tern tern-auth "$TERN_AUTH_PORT" "[dns]
upstream = [\"$DNS_ADDR:53\"]

[mailauth]
verify = true"
}

# The mail authentication cell: the same DKIM-signed message to Tern without
# checks, Tern with every check and Postfix with its milters, in turn.
mailauth_args() {  # server: sets CELL_ARGS
  CELL_ARGS=(--message-file "$MA_DIR/message.txt" --helo mta.client.test
             --sender sender@client.test --dns "$DNS_ADDR:53")
  case $1 in *-auth) CELL_ARGS+=(--auth-check) ;; esac
  # Postfix with its milters is an order of magnitude slower: a first run
  # sized for Tern would take half a minute.
  case $1 in postfix-auth) CELL_ARGS+=(--guess-rate 100) ;; esac
}

# --- milter: one private rspamd, a Postfix and a Tern that both use it -------
# rspamd 3.x from the distribution with its defaults (/etc/rspamd), run in
# the foreground (-f, as root with --insecure) with its own top file,
# local.d/override.d, databases, run dir and log under $WORK/rspamd. As in
# tests/rspamd_peer.py: one proxy worker in milter mode scanning the mail
# itself (self_scan), no controller or normal worker, no redis; DNS goes to
# the closed discard port on loopback (every lookup fails at once) and the
# modules that only ask outside services (rbl, asn, rspamd_update,
# fuzzy_check) are off. milter_headers adds X-Spamd-Result,
# X-Rspamd-Server and X-Spam-Status to every message (local ones too), which
# the cell checks for. rspamd's CPU (main, proxy and hs_helper) is measured
# on its own: its cgroup, or its process tree.
RSPAMD_DIR=
MI_SERVERS=
start_milter() {
  RSPAMD_DIR=$WORK/rspamd
  local conf=$RSPAMD_DIR/conf
  mkdir -p "$conf/local.d" "$conf/override.d" "$RSPAMD_DIR/db" "$RSPAMD_DIR/run" \
    "$RSPAMD_DIR/log" "$RSPAMD_HS_CACHE"
  cat >"$conf/rspamd.conf" <<EOF2
# Private rspamd for the Tern benchmark (generated by bench/run.sh).
.include "\$CONFDIR/common.conf"

options {
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/options.inc"
    .include(try=true; priority=10) "\$LOCAL_CONFDIR/override.d/options.inc"
}

logging {
    type = "file";
    filename = "\$LOGDIR/rspamd.log";
    level = "info";
}

worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:$RSPAMD_PORT";
    milter = yes;
    timeout = 120s;
    count = 1;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
}
EOF2
  cat >"$conf/local.d/options.inc" <<EOF2
dns {
    nameserver = ["127.0.0.1:9"];
    timeout = 0.5s;
    retransmits = 1;
}
EOF2
  cat >"$conf/override.d/options.inc" <<EOF2
filters = "chartable,dkim,regexp";
hs_cache_dir = "$RSPAMD_HS_CACHE";
EOF2
  cat >"$conf/local.d/milter_headers.conf" <<EOF2
use = ["x-spamd-result", "x-rspamd-server", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
EOF2
  local m
  for m in rbl asn rspamd_update fuzzy_check; do echo "enabled = false;" >"$conf/override.d/$m.conf"; done

  local pin=("${PIN_SERVER[@]}")
  [ "$RSPAMD_PIN" = load ] && pin=("${PIN_LOAD[@]}")
  pf_cgroup rspamd
  local cg=${PF_CG[rspamd]}
  log "starting rspamd $(dpkg-query -W -f='${Version}' rspamd 2>/dev/null) (milter proxy on 127.0.0.1:$RSPAMD_PORT, on the ${RSPAMD_PIN} core)"
  ( if [ -n "$cg" ]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi
    exec "${pin[@]}" rspamd -f --insecure -c "$conf/rspamd.conf" \
      --var=CONFDIR=/etc/rspamd --var=LOCAL_CONFDIR="$conf" --var=DBDIR="$RSPAMD_DIR/db" \
      --var=RUNDIR="$RSPAMD_DIR/run" --var=LOGDIR="$RSPAMD_DIR/log"
  ) >"$WORK/logs/rspamd-stdout.log" 2>&1 &
  RSPAMD_PID=$!
  [ -n "$cg" ] || PF_CPU[rspamd]=tree:$RSPAMD_PID
  wait_tcp "$RSPAMD_PORT" 60 && kill -0 "$RSPAMD_PID" 2>/dev/null ||
    { tail -20 "$WORK/logs/rspamd-stdout.log" "$RSPAMD_DIR/log/rspamd.log" >&2; die "rspamd did not start"; }
  # The first start compiles the Hyperscan databases (10-20 s; later runs
  # load them from RSPAMD_HS_CACHE): wait until they are loaded, so no
  # run measures the slower matching without them.
  local i
  for i in $(seq 1200); do
    grep -q 'full hyperscan database.*has been loaded' "$RSPAMD_DIR/log/rspamd.log" 2>/dev/null && break
    kill -0 "$RSPAMD_PID" 2>/dev/null || die "rspamd exited (see $WORK/logs/rspamd.log)"
    sleep 0.1
  done
  if grep -q 'full hyperscan database.*has been loaded' "$RSPAMD_DIR/log/rspamd.log"; then
    log "rspamd running, pid $RSPAMD_PID; Hyperscan databases loaded after $((i / 10)) s"
  else
    log "WARNING: rspamd has not reported its Hyperscan databases after 120 s; going on"
  fi
  ln -sf "$RSPAMD_DIR/log/rspamd.log" "$WORK/logs/rspamd.log"

  # Both servers: rspamd as the one milter, tempfail when it fails.
  start_postfix postfix-milter "$POSTFIX_MILTER_PORT" 127.0.0.0/8 "
# Milter cell: rspamd's milter proxy.
smtpd_milters = inet:127.0.0.1:$RSPAMD_PORT
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6"
  start_tern tern-milter "$TERN_MILTER_PORT" "[mailauth]
verify = false

[[milter]]
address = \"127.0.0.1:$RSPAMD_PORT\"
on_error = \"tempfail\"
timeout = 30"
  MI_SERVERS="tern-nomilter tern-milter"
  has_server postfix && MI_SERVERS+=" postfix-nomilter"
  MI_SERVERS+=" postfix-milter"
}

# The milter cell: smtp-source's generated 1 KiB message (the plain cells'),
# rspamd's CPU measured beside each server's, and for the servers with the
# milter every delivered message must carry rspamd's header.
milter_args() {  # server: sets CELL_ARGS
  CELL_ARGS=(--helper-cpu "${PF_CPU[rspamd]}")
  case $1 in *-milter) CELL_ARGS+=(--header X-Spamd-Result) ;; esac
  case $1 in postfix-*) CELL_ARGS+=(--guess-rate 300) ;; esac
}

# --- IMAP: Tern's IMAP server and a private Dovecot on the same Maildir -------
# One Maildir of $IMAP_MESSAGES varied messages (imap_bench.py populate),
# copied for each server: Tern's account Maildir in its own data_dir, and a
# Dovecot (dovecot -F -c with its own base_dir, passwd-file and Maildir,
# mail processes as nobody) that never reads /etc/dovecot. Both are pinned
# like the other servers; the driver runs on the load generator's core.
IMAP_DIR=
IMAP_RUNS=
start_imap() {
  IMAP_DIR=$WORK/imap
  mkdir -p "$IMAP_DIR"
  log "IMAP: writing a $IMAP_MESSAGES-message Maildir (imap_bench.py populate)"
  "${PIN_LOAD[@]}" "$PY" "$BENCH/imap_bench.py" populate --maildir "$IMAP_DIR/Maildir" \
    --count "$IMAP_MESSAGES" --info "$IMAP_DIR/info.json" || die "imap_bench.py populate failed"
  local tmd=$WORK/tern-imap/mail/bench.test/user/Maildir
  mkdir -p "$(dirname "$tmd")"
  cp -a "$IMAP_DIR/Maildir" "$tmd"
  start_tern tern-imap "$TERN_IMAP_SMTP_PORT" "[mailauth]
verify = false

[imap]
max_connections = $((IMAP_IDLE_CONNS + 1000))
max_connections_per_ip = $((IMAP_IDLE_CONNS + 1000))

[[listen]]
address = \"127.0.0.1:$TERN_IMAP_PORT\"
service = \"imap\"
allow_plaintext_auth = true"
  "$PY" "$BENCH/benchlib.py" wait-imap 127.0.0.1 "$TERN_IMAP_PORT" "$START_TIMEOUT" ||
    die "Tern's IMAP listener does not answer on 127.0.0.1:$TERN_IMAP_PORT"

  local dv=$IMAP_DIR/dovecot vuid vgid hashed
  vuid=$(id -u nobody); vgid=$(id -g nobody)
  mkdir -p "$dv/mail"
  cp -a "$IMAP_DIR/Maildir" "$dv/mail/Maildir"
  chown -R "$vuid:$vgid" "$dv/mail"
  # ARGON2ID (64 MiB) like Tern's libsodium hash, so a LOGIN costs both
  # about the same (no timed figure includes one).
  hashed=$(doveadm -c /dev/null pw -s ARGON2ID -p bench-password) || die "doveadm pw failed"
  echo "user@bench.test:$hashed" >"$dv/passwd"
  cat >"$dv/dovecot.conf" <<DOVECOT_CONF
# Private Dovecot for the Tern benchmark (generated by bench/run.sh).
base_dir = $dv/run
state_dir = $dv/state
log_path = $WORK/logs/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = nobody
default_internal_user = nobody
# Room for the idle-connection test (one imap process per connection).
default_process_limit = $((IMAP_IDLE_CONNS + 1000))
default_client_limit = $((4 * IMAP_IDLE_CONNS + 10000))
passdb {
  driver = passwd-file
  args = $dv/passwd
}
userdb {
  driver = static
  args = uid=$vuid gid=$vgid home=$dv/home
}
mail_location = maildir:$dv/mail/Maildir
first_valid_uid = 1
protocol imap {
  mail_max_userip_connections = $((IMAP_IDLE_CONNS + 1000))
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVECOT_IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
  chroot =
}
service anvil {
  chroot =
}
DOVECOT_CONF
  log "starting Dovecot $(dovecot --version | cut -d' ' -f1) (dovecot -F -c $dv/dovecot.conf, port $DOVECOT_IMAP_PORT)"
  "${PIN_SERVER[@]}" prlimit --nofile="$NOFILE" /usr/sbin/dovecot -F -c "$dv/dovecot.conf" \
    >"$WORK/logs/dovecot-stdout.log" 2>&1 &
  DOVECOT_PID=$!
  "$PY" "$BENCH/benchlib.py" wait-imap 127.0.0.1 "$DOVECOT_IMAP_PORT" "$START_TIMEOUT" ||
    { tail -20 "$WORK/logs/dovecot.log" "$WORK/logs/dovecot-stdout.log" >&2; die "Dovecot did not start"; }
  log "Dovecot running, master pid $DOVECOT_PID"
}

imap_port() { case $1 in tern-imap) echo "$TERN_IMAP_PORT" ;; dovecot) echo "$DOVECOT_IMAP_PORT" ;; esac; }
imap_cpu() { case $1 in tern-imap) echo "pid:$TERN_IMAP_PID" ;; dovecot) echo "tree:$DOVECOT_PID" ;; esac; }
imap_alive() { case $1 in tern-imap) kill -0 "$TERN_IMAP_PID" 2>/dev/null ;; dovecot) kill -0 "$DOVECOT_PID" 2>/dev/null ;; esac; }
imap_cell() {  # server cell round
  local server=$1 cell=$2 round=$3 rc=0 expect=
  if ! imap_alive "$server"; then log "$server: not running; IMAP $cell skipped"; FAILED=1; return 0; fi
  case $cell in
    select) expect=$IMAP_MESSAGES ;;
    search) expect=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["with_word"])' "$IMAP_DIR/info.json") ;;
  esac
  # APPEND writes files: a settled file system, as for the SMTP cells.
  if [ "$cell" = append ]; then settle_fs; else sync -f "$WORK" 2>/dev/null || sync; fi
  "${PIN_LOAD[@]}" "$PY" "$BENCH/imap_bench.py" cell --server "$server" --port "$(imap_port "$server")" \
    --cell "$cell" --round "$round" ${expect:+--expect "$expect"} --cpu "$(imap_cpu "$server")" \
    --clients "$IMAP_APPEND_CLIENTS" --per-client "$IMAP_APPEND_PER_CLIENT" --out "$IMAP_RUNS" || rc=$?
  [ $rc -eq 0 ] || FAILED=1
}
run_imap() {
  local started=$SECONDS server round cell rc
  IMAP_RUNS=$WORK/imap.jsonl
  : >"$IMAP_RUNS"
  start_imap
  # Round 0: each server's first SELECT (it builds its index) and first
  # FETCH (Dovecot fills dovecot.index.cache); the rounds are warm.
  log "=== IMAP: first SELECT and first FETCH (round 0) ==="
  for cell in select fetch; do
    for server in tern-imap dovecot; do imap_cell "$server" "$cell" 0; done
  done
  for server in tern-imap dovecot; do
    "$PY" "$BENCH/imap_bench.py" setup --server "$server" --port "$(imap_port "$server")" || FAILED=1
  done
  for round in $(seq "$IMAP_ROUNDS"); do
    log "=== IMAP round $round of $IMAP_ROUNDS ==="
    for cell in $IMAP_CELLS; do
      for server in tern-imap dovecot; do imap_cell "$server" "$cell" "$round"; done
    done
  done
  for server in tern-imap dovecot; do
    imap_alive "$server" || { log "$server: not running; no idle test"; FAILED=1; continue; }
    rc=0
    "${PIN_LOAD[@]}" "$PY" "$BENCH/imap_bench.py" idle --server "$server" --port "$(imap_port "$server")" \
      --pids "$(imap_cpu "$server")" --count "$IMAP_IDLE_CONNS" --open-timeout "$IMAP_IDLE_SECS" \
      --out "$WORK/imap-idle.jsonl" || rc=$?
    [ $rc -eq 0 ] || { FAILED=1; log "$server: IMAP idle test failed"; }
  done
  # Wake-up: Tern gets its mail by SMTP (250 to EXISTS); Dovecot by a file
  # written to tmp/, flushed and renamed into new/ (start of the write to
  # EXISTS), which its IDLE notices through inotify.
  for server in tern-imap dovecot; do
    imap_alive "$server" || { log "$server: not running; no wake-up test"; FAILED=1; continue; }
    rc=0
    if [ "$server" = tern-imap ]; then
      "${PIN_LOAD[@]}" "$PY" "$BENCH/imap_bench.py" wake --server "$server" --port "$TERN_IMAP_PORT" \
        --smtp-port "$TERN_IMAP_SMTP_PORT" --samples "$IMAP_WAKE_SAMPLES" --out "$WORK/imap-wake.jsonl" || rc=$?
    else
      "${PIN_LOAD[@]}" "$PY" "$BENCH/imap_bench.py" wake --server "$server" --port "$DOVECOT_IMAP_PORT" \
        --maildir "$IMAP_DIR/dovecot/mail/Maildir" --owner "$(id -u nobody):$(id -g nobody)" \
        --samples "$IMAP_WAKE_SAMPLES" --out "$WORK/imap-wake.jsonl" || rc=$?
    fi
    [ $rc -eq 0 ] || { FAILED=1; log "$server: IMAP wake-up test failed"; }
  done
  imap_alive tern-imap || { FAILED=1; log "Tern (IMAP) is gone"; }
  imap_alive dovecot || { FAILED=1; log "Dovecot is gone"; }
  log "IMAP part took $((SECONDS - started)) s"
  echo $((SECONDS - started)) >"$WORK/imap-secs"
}

# The relaying cell (run_relay, relay_cleanup).
. "$BENCH/relay_cell.sh"

# === main ======================================================================
log "CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $NCPU cores; kernel $(uname -r)"
log "load average now: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes numbers noisy)"
# A bench run right after another one would pay for the previous run's
# clean-up (tens of thousands of freed inodes; see settle_fs): wait until
# the window has passed.
if [ -f "$OUT/.last-cleanup" ] && [ -z "${SETTLE:-}" ]; then
  last=$(cat "$OUT/.last-cleanup" 2>/dev/null || echo 0)
  wait_s=$(( last + 62 - $(date +%s) ))
  if [ "$wait_s" -gt 0 ] && [ "$wait_s" -le 62 ]; then
    log "waiting ${wait_s}s: the previous bench's clean-up is under a minute old"
    sleep "$wait_s"
  fi
fi
has_server sink && start_sink
has_server postfix && start_postfix postfix "$POSTFIX_PORT" 127.0.0.0/8
# The plain cells measure the SMTP path; the mail-authentication cell
# starts a second Tern with the checks on against its own DNS server.
has_server tern && start_tern tern "$TERN_PORT" "[mailauth]
verify = false"
[ -n "$MAILAUTH" ] && start_mailauth
[ -n "$MILTER" ] && start_milter
# A 250 after DATA waits for at least one flush to this disk (shared by a
# group commit); its cost puts the latency numbers in context.
FSYNC_PROBE=$("$PY" "$BENCH/benchlib.py" fsync-probe "$WORK/fsync-probe" || echo "?")
log "disk flush (fsync of a new 4 KiB file, 50 times): $FSYNC_PROBE"
write_env
for d in "$WORK/tern" "$WORK/postfix"; do
  [ -d "$d" ] && log "disk of $d: $(df -h --output=source,fstype,avail "$d" | tail -1 | tr -s ' ') ($(fs_journal "$d"))"
done
if [ -d "$WORK/tern" ] && [ -d "$WORK/postfix" ] &&
   [ "$(stat -c %d "$WORK/tern")" != "$(stat -c %d "$WORK/postfix")" ]; then
  log "WARNING: Tern and Postfix data are on different file systems"
fi

# A single message to each first: a broken set-up fails here, fast.
log "smoke test: one message to each server"
RUNS_FILE=$WORK/smoke.jsonl
for server in $SERVERS; do
  CELL_DELIVERY_TIMEOUT=30 run_cell "$server" 1024 1 new 0 1
done
if [ -n "$MAILAUTH" ]; then
  for server in $MA_SERVERS; do
    mailauth_args "$server"
    CELL_DELIVERY_TIMEOUT=30 run_cell "$server" 1024 1 new 0 1
  done
  CELL_ARGS=()
fi
if [ -n "$MILTER" ]; then
  for server in $MI_SERVERS; do
    case $server in *-nomilter) continue ;; esac   # the plain servers had theirs
    milter_args "$server"
    CELL_DELIVERY_TIMEOUT=30 run_cell "$server" 1024 1 new 0 1
  done
  CELL_ARGS=()
fi
[ "$FAILED" -eq 0 ] || die "smoke test failed; see the messages above and $OUT/logs"
RUNS_FILE=$RUNS

[ -n "$PLAIN" ] || ROUNDS=0
for round in $(seq "$ROUNDS"); do
  log "=== round $round of $ROUNDS ==="
  for cell in $CELLS; do
    IFS=: read -r size sessions mode <<<"$cell"
    for server in $SERVERS; do
      run_cell "$server" "$size" "$sessions" "$mode" "$round"
    done
  done
done

# Latency at a fixed load: half of Tern's best 1 KiB rate (median over rounds).
LAT_FILES=()
if [ -n "$PLAIN" ] && { has_server tern || has_server postfix; }; then
  peak_server=tern; has_server tern || peak_server=postfix
  PEAK=$("$PY" "$BENCH/report.py" --runs "$RUNS" --peak "$peak_server")
  rate=$("$PY" -c 'import sys; print(int(round(float(sys.argv[2] or float(sys.argv[1]) / 2))))' \
    "$PEAK" "${LAT_RATE:-}")
  if [ "$rate" -lt 1 ]; then
    log "latency: no 1 KiB rate measured for $peak_server; no latency test"
    FAILED=1
    lat_servers=
  else
    log "latency: background load $rate msgs/s (half of $peak_server's peak $PEAK msgs/s), $LAT_SECS s each"
    lat_servers="tern postfix"
  fi
  for server in $lat_servers; do
    has_server "$server" || continue
    if [ -n "${DEAD[$server]:-}" ] || ! server_alive "$server"; then
      log "$server: not running; no latency test"; FAILED=1; continue
    fi
    f=$WORK/latency_$server.json
    rc=0
    settle_fs
    "${PIN_LOAD[@]}" "$PY" "$BENCH/latency.py" --server "$server" --port "$(server_port "$server")" \
      --rate "$rate" --duration "$LAT_SECS" --conns "$LAT_CONNS" --peak "$PEAK" \
      --maildir "$(server_maildir "$server")" --out "$f" || rc=$?
    [ $rc -eq 0 ] || { FAILED=1; log "$server: latency test failed"; }
    [ -f "$f" ] && LAT_FILES+=("$f")
    md=$(server_maildir "$server")
    ( cd "$BENCH" && "$PY" -c 'import sys; from benchlib import maildir_move; maildir_move(*sys.argv[1:])' \
      "$md" "$WORK/archive/latency-$server" ) || true
  done
fi

# Mail authentication: rounds of the cell, then the latency of Tern with its
# checks at half of that Tern's peak (and of the plain Tern at the same rate).
MA_RUNS=$WORK/mailauth.jsonl
: >"$MA_RUNS"
MA_LAT_FILES=()
if [ -n "$MAILAUTH" ]; then
  RUNS_FILE=$MA_RUNS
  for round in $(seq "$MA_ROUNDS"); do
    log "=== mail authentication, round $round of $MA_ROUNDS ==="
    for cell in $MA_CELLS; do
      IFS=: read -r sessions mode <<<"$cell"
      for server in $MA_SERVERS; do
        mailauth_args "$server"
        run_cell "$server" 1024 "$sessions" "$mode" "$round"
      done
    done
  done
  CELL_ARGS=()
  RUNS_FILE=$RUNS
  PEAK=$("$PY" "$BENCH/report.py" --runs "$MA_RUNS" --peak tern-auth)
  rate=$("$PY" -c 'import sys; print(int(round(float(sys.argv[1]) / 2)))' "$PEAK")
  if [ "$rate" -lt 1 ]; then
    log "mail authentication latency: no rate measured for tern-auth; no latency test"
    FAILED=1
  else
    log "mail authentication latency: $rate msgs/s (half of tern-auth's peak $PEAK msgs/s), $LAT_SECS s each"
    for server in tern-auth tern-nocheck; do
      if ! server_alive "$server"; then log "$server: not running; no latency test"; FAILED=1; continue; fi
      f=$WORK/latency_$server.json
      md=$(server_maildir "$server")
      before=$("$PY" "$BENCH/benchlib.py" count "$md")
      rc=0
      settle_fs
      "${PIN_LOAD[@]}" "$PY" "$BENCH/latency.py" --server "$server" --port "$(server_port "$server")" \
        --rate "$rate" --duration "$LAT_SECS" --conns "$LAT_CONNS" --peak "$PEAK" \
        --pool "$MA_DIR/pool" --helo mta.client.test --sender sender@client.test \
        --maildir "$md" --out "$f" || rc=$?
      [ $rc -eq 0 ] || { FAILED=1; log "$server: latency test failed"; }
      if [ "$server" = tern-auth ] && [ "$before" = 0 ]; then
        # The checks must have run on these messages too.
        if ac=$("$PY" "$BENCH/benchlib.py" auth-check "$md"); then
          log "$server: latency messages: $ac"
        else
          log "$server: latency messages lack passing Authentication-Results: $ac"; FAILED=1
        fi
      elif [ "$server" = tern-auth ]; then
        log "$server: $before older messages in its Maildir; latency messages not checked"
      fi
      [ -f "$f" ] && MA_LAT_FILES+=("$f")
      ( cd "$BENCH" && "$PY" -c 'import sys; from benchlib import maildir_move; maildir_move(*sys.argv[1:])' \
        "$md" "$WORK/archive/latency-$server" ) || true
    done
  fi
  "$PY" "$BENCH/dnsserver.py" stats "$DNS_ADDR" 53 >"$WORK/dns-stats.json" 2>/dev/null || true
fi

# Milter: a warm-up (rspamd's first messages cost it several times more
# CPU), rounds of the cell, then the final-dot latency of Tern with the
# milter and of the plain Tern at the same load (half of Tern with the
# milter's peak): the difference is what the milter round-trip adds.
MI_RUNS=$WORK/milter.jsonl
: >"$MI_RUNS"
MI_LAT_FILES=()
if [ -n "$MILTER" ]; then
  RUNS_FILE=$MI_RUNS
  log "=== milter: warm-up (round 0, not counted) ==="
  for server in tern-milter postfix-milter; do
    milter_args "$server"
    run_cell "$server" 1024 8 new 0 500
  done
  for round in $(seq "$MI_ROUNDS"); do
    log "=== milter (rspamd), round $round of $MI_ROUNDS ==="
    for cell in $MI_CELLS; do
      IFS=: read -r sessions mode <<<"$cell"
      for server in $MI_SERVERS; do
        milter_args "$server"
        run_cell "$server" 1024 "$sessions" "$mode" "$round"
      done
    done
  done
  CELL_ARGS=()
  RUNS_FILE=$RUNS
  PEAK=$("$PY" "$BENCH/report.py" --runs "$MI_RUNS" --peak tern-milter)
  rate=$("$PY" -c 'import sys; print(int(round(float(sys.argv[1]) / 2)))' "$PEAK")
  if [ "$rate" -lt 1 ]; then
    log "milter latency: no rate measured for tern-milter; no latency test"
    FAILED=1
  else
    log "milter latency: $rate msgs/s (half of tern-milter's peak $PEAK msgs/s), $LAT_SECS s each"
    for server in tern-milter tern-nomilter; do
      if ! server_alive "$server"; then log "$server: not running; no latency test"; FAILED=1; continue; fi
      f=$WORK/latency_$server.json
      md=$(server_maildir "$server")
      rc=0
      settle_fs
      "${PIN_LOAD[@]}" "$PY" "$BENCH/latency.py" --server "$server" --port "$(server_port "$server")" \
        --rate "$rate" --duration "$LAT_SECS" --conns "$LAT_CONNS" --peak "$PEAK" \
        --maildir "$md" --out "$f" || rc=$?
      [ $rc -eq 0 ] || { FAILED=1; log "$server: latency test failed"; }
      [ -f "$f" ] && MI_LAT_FILES+=("$f")
      ( cd "$BENCH" && "$PY" -c 'import sys; from benchlib import maildir_move; maildir_move(*sys.argv[1:])' \
        "$md" "$WORK/archive/latency-$server" ) || true
    done
  fi
fi

# Idle connections: memory per connection of Tern.
IDLE_FILE=
if [ -n "$PLAIN" ] && has_server tern && [ -z "${DEAD[tern]:-}" ] && server_alive tern; then
  IDLE_FILE=$WORK/idle.json
  log "idle connections: $IDLE_CONNS to Tern"
  rc=0
  "${PIN_LOAD[@]}" "$PY" "$BENCH/idle.py" --port "$TERN_PORT" --pid "$TERN_PID" \
    --count "$IDLE_CONNS" --out "$IDLE_FILE" || rc=$?
  [ $rc -eq 0 ] || { FAILED=1; log "idle connection test failed"; }
  server_alive tern || { FAILED=1; log "Tern died during the idle connection test"; }
fi

# IMAP cells: Tern against a private Dovecot on the same Maildir.
[ -n "$IMAP" ] && run_imap

# Relaying: Tern and Postfix relay to 100 smtp-sink "MX hosts".
[ -n "$RELAY" ] && run_relay

# Scaling with cores: the 1 KiB, 32-session, new-connection cell against
# Tern with threads = 1 and threads = 2, neither pinned (the load
# generator stays on its core, so the servers share the machine with it).
if [ -n "$SCALE" ]; then
  log "=== scaling: threads = 1 and 2, unpinned, $SCALE_ROUNDS round(s) ==="
  TERN_UNPINNED=1 TERN_THREADS=1 start_tern tern-t1 "$TERN_SCALE_PORT" "[mailauth]
verify = false"
  TERN_UNPINNED=1 TERN_THREADS=2 start_tern tern-t2 "$((TERN_SCALE_PORT + 1))" "[mailauth]
verify = false"
  RUNS_FILE=$WORK/scale.jsonl
  for round in $(seq "$SCALE_ROUNDS"); do
    for server in tern-t1 tern-t2; do run_cell "$server" 1024 32 new "$round"; done
  done
  RUNS_FILE=$RUNS
  stop_pid "$TERN_T1_PID" "Tern (threads = 1, unpinned)"
  stop_pid "$TERN_T2_PID" "Tern (threads = 2, unpinned)"
  "$PY" "$BENCH/relay.py" scale-report "$WORK/scale.jsonl" >"$WORK/scale.md" || FAILED=1
  cat "$WORK/scale.md" >&2
fi
# Huge message: a Postfix relaying to the sink (stopped afterwards), and
# bench/huge.py, which starts its own Tern and the sink.
if [ -n "$HUGE" ]; then
  log "=== huge message: $HUGE_MIB MiB, $HUGE_ROUNDS round(s) ==="
  start_postfix postfix-huge "$POSTFIX_HUGE_PORT" 127.0.0.0/8 "relayhost = [${HUGE_SINK%:*}]:${HUGE_SINK##*:}
message_size_limit = $(( (HUGE_MIB * 2 + 16) * 1048576 ))"
  hg_pids=tree:${PF_MASTER[postfix-huge]}
  [ -n "${PF_CG[postfix-huge]}" ] && hg_pids=cg:${PF_CG[postfix-huge]}
  rc=0
  "${PIN_LOAD[@]}" "$PY" "$BENCH/huge.py" --tern "$TERN" --work "$WORK/huge" --logs "$WORK/logs" \
    --out "$WORK/huge.jsonl" --size-mib "$HUGE_MIB" --rounds "$HUGE_ROUNDS" \
    --tern-port "$TERN_HUGE_PORT" --sink "$HUGE_SINK" --postfix-port "$POSTFIX_HUGE_PORT" \
    --postfix-pids "$hg_pids" --server-cpus "$SERVER_CPUS" || rc=$?
  [ $rc -eq 0 ] || { FAILED=1; log "huge-message cell failed (exit $rc)"; }
  stop_postfix postfix-huge
fi

# TLS cell: STARTTLS throughput (full and resumed handshakes) against
# Postfix, and idle TLS session memory.
if [ -n "$TLS" ]; then . "$BENCH/tls_cell.sh"; run_tls; fi

# Parser micro-benchmarks (the binary exists once CMake builds it).
PARSER_FILE=
if [ -z "$PLAIN" ]; then
  :
elif [ -x "$PARSER_BENCH" ]; then
  PARSER_FILE=$OUT/parser_bench.json
  log "parser micro-benchmarks ($PARSER_BENCH)"
  bargs=(--benchmark_out="$PARSER_FILE" --benchmark_out_format=json)
  [ -n "$QUICK" ] && bargs+=(--benchmark_min_time=0.2)
  rc=0
  "${PIN_SERVER[@]}" timeout 600 "$PARSER_BENCH" "${bargs[@]}" >&2 || rc=$?
  [ $rc -eq 0 ] || { FAILED=1; log "tern_parser_bench failed (exit $rc)"; PARSER_FILE=; }
else
  log "no $PARSER_BENCH; skipping parser micro-benchmarks"
fi

BIGQ_FILE=
if [ -n "$BIGQUEUE" ]; then
  if [ -x "$BUILD/tern_spoolgen" ]; then
    log "huge-queue cell: $BIGQUEUE_N deferred messages (bench/bigqueue.py)"
    BIGQ_FILE=$WORK/bigqueue.json
    "$PY" "$BENCH/bigqueue.py" "$TERN" "$BUILD/tern_spoolgen" "$WORK/bigqueue" "$BIGQ_FILE" >&2 ||
      { log "huge-queue cell failed"; FAILED=1; BIGQ_FILE=; }
    rm -rf "$WORK/bigqueue/data"
  else
    log "no $BUILD/tern_spoolgen; skipping the huge-queue cell"
  fi
fi

log "writing the report"
"$PY" "$BENCH/report.py" --runs "$RUNS" --env "$WORK/env.json" --outdir "$OUT" \
  ${LAT_FILES[@]+--latency "${LAT_FILES[@]}"} ${IDLE_FILE:+--idle "$IDLE_FILE"} \
  ${PARSER_FILE:+--parser "$PARSER_FILE"} \
  ${MAILAUTH:+--mailauth "$MA_RUNS" --mailauth-info "$MA_DIR/prep.json" --mailauth-dns "$WORK/dns-stats.json"} \
  ${MA_LAT_FILES[@]+--mailauth-latency "${MA_LAT_FILES[@]}"} \
  ${MILTER:+--milter "$MI_RUNS"} ${MI_LAT_FILES[@]+--milter-latency "${MI_LAT_FILES[@]}"} \
  ${BIGQ_FILE:+--bigqueue "$BIGQ_FILE"} \
  ${RELAY:+--section "Relaying=$WORK/relay.md"} \
  ${SCALE:+--section "Scaling with cores=$WORK/scale.md"} \
  ${HUGE:+--huge "$WORK/huge.jsonl"} \
  ${TLS:+--tls "$WORK/tls.jsonl"} ${TLS_IDLE_FILES[@]+--tls-idle "${TLS_IDLE_FILES[@]}"} \
  ${IMAP:+--imap "$WORK/imap.jsonl" --imap-idle "$WORK/imap-idle.jsonl" --imap-wake "$WORK/imap-wake.jsonl" --imap-info "$WORK/imap/info.json" --imap-secs "$WORK/imap-secs"} \
  || { log "report failed"; FAILED=1; }
cp "$RUNS" "$OUT/runs.jsonl"
[ -n "$MAILAUTH" ] && cp "$MA_RUNS" "$OUT/mailauth.jsonl"
[ -n "$MILTER" ] && cp "$MI_RUNS" "$OUT/milter.jsonl"
[ -n "$IMAP" ] && cp "$WORK"/imap*.jsonl "$OUT/" 2>/dev/null
[ -n "$RELAY" ] && cp "$WORK/relay.jsonl" "$OUT/" 2>/dev/null
[ -n "$SCALE" ] && cp "$WORK/scale.jsonl" "$OUT/" 2>/dev/null
[ -n "$HUGE" ] && { cp "$WORK/huge.jsonl" "$OUT/" 2>/dev/null || true; }
[ -n "$TLS" ] && { cp "$WORK"/tls.jsonl "$WORK"/tls-idle-*.json "$OUT/" 2>/dev/null || true; }
[ -n "$BIGQ_FILE" ] && cp "$BIGQ_FILE" "$OUT/bigqueue.json"

if [ "$FAILED" -ne 0 ]; then
  log "some runs had errors or lost messages (see above and $OUT/results.md)"
  exit 1
fi
log "done: $OUT/results.md, $OUT/results.json, $OUT/throughput.png"
exit 0
}
