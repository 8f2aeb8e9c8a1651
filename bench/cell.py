#!/usr/bin/python3
"""One throughput measurement: runs smtp-source once against one server,
times it, waits until the server's Maildir holds every message, and appends
a JSON record (rate, CPU per 1,000 messages, errors) to --out.
Exit status: 0 when the run was clean, 1 when smtp-source failed or a
message was lost or duplicated."""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time

from benchlib import (append_jsonl, cpu_seconds, log, maildir_clear, maildir_count,
                      maildir_move, read_jsonl)

# First guess at msgs/s when nothing has been measured yet for a server.
DEFAULT_RATE = {1024: 500.0, 102400: 150.0}


def choose_count(args):
    """Messages for this run so it lasts about --target-secs: from the last
    rate seen for this exact cell, else for this server and size."""
    if args.count != "auto":
        return int(args.count)
    prev = [r for r in read_jsonl(args.out)
            if r.get("server") == args.server and r.get("size") == args.size and r.get("ok")]
    same = [r for r in prev if r["sessions"] == args.sessions and r["mode"] == args.mode]
    if same:
        rate = same[-1]["rate"]
    elif prev:
        # More sessions usually go faster, though far from linearly.
        rate = prev[-1]["rate"] * min(4.0, max(0.25, args.sessions / prev[-1]["sessions"])) ** 0.5
    else:
        rate = DEFAULT_RATE.get(args.size, 1e6 / max(args.size, 1))
    n = int(rate * args.target_secs)
    min_count = args.min_count or (500 if args.size <= 10240 else 150)
    n = max(n, min_count, 4 * args.sessions)
    n = min(n, args.max_count or (20000 if args.size <= 10240 else 3000))
    # A round number keeps the logs readable.
    step = 100 if n >= 1000 else 10
    return max(step, (n // step) * step)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--server", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, required=True, help="payload bytes (-l)")
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--mode", choices=("new", "reuse"), required=True,
                    help="new: one connection per message; reuse: smtp-source -d")
    ap.add_argument("--count", default="auto")
    ap.add_argument("--target-secs", type=float, default=5.0)
    ap.add_argument("--min-count", type=int, default=0,
                    help="default: 500 for 1 KiB, 150 for 100 KiB")
    ap.add_argument("--max-count", type=int, default=0,
                    help="default: 20000 for 1 KiB, 3000 for 100 KiB")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--maildir", default="", help="Maildir to count deliveries in")
    ap.add_argument("--archive", default="",
                    help="move delivered messages into a new folder under this one")
    ap.add_argument("--cpu", default="none", help="benchlib.cpu_seconds spec of the server")
    ap.add_argument("--load-cpus", default="", help="taskset CPU list for smtp-source")
    ap.add_argument("--sender", default="sender@client.test")
    ap.add_argument("--rcpt", default="user@bench.test")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--delivery-timeout", type=float, default=180.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    count = choose_count(args)
    cmd = ["/usr/sbin/smtp-source", "-s", str(args.sessions), "-l", str(args.size),
           "-m", str(count), "-f", args.sender, "-t", args.rcpt,
           "-M", "client.bench.test", "-S", "tern bench"]
    if args.mode == "reuse":
        cmd.append("-d")
    cmd.append(f"{args.host}:{args.port}")
    if args.load_cpus:
        cmd = ["taskset", "-c", args.load_cpus] + cmd

    rec = {"server": args.server, "size": args.size, "sessions": args.sessions,
           "mode": args.mode, "count": count, "round": args.round, "ok": False,
           "error": "", "cmd": " ".join(cmd)}
    base = maildir_count(args.maildir) if args.maildir else 0
    cpu0 = cpu_seconds(args.cpu)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    log(f"{args.server}: {args.size} B x {count} msgs, {args.sessions} sessions, "
        f"{args.mode} connection (round {args.round})")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        rec["error"] = f"smtp-source timed out after {args.timeout:.0f} s"
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec["wall_s"] = round(wall, 4)
    rec["rate"] = round(count / wall, 1) if wall > 0 else 0.0
    rec["client_cpu_s"] = round((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3)
    rec["rc"] = p.returncode
    text = (out + err).strip()
    if text:
        rec["output"] = text[-2000:]
    if not rec["error"] and p.returncode != 0:
        rec["error"] = f"smtp-source exit {p.returncode}: {text[-300:]}"
    elif not rec["error"] and any(w in text for w in ("fatal", "error", "warning")):
        rec["error"] = f"smtp-source reported: {text[-300:]}"

    # Durability is the server's promise: count what actually reached the
    # mailbox, waiting for the delivery stage to drain.
    if args.maildir:
        # After a failed run the number sent is unknown: do not wait long.
        deadline = time.monotonic() + (5 if rec["error"] else args.delivery_timeout)
        n = maildir_count(args.maildir) - base
        while n < count and time.monotonic() < deadline:
            time.sleep(0.05)
            n = maildir_count(args.maildir) - base
        rec["delivery_wait_s"] = round(time.monotonic() - t0 - wall, 3)
        # Sent and in the mailbox: the rate the whole server sustains.
        rec["e2e_rate"] = round(count / (time.monotonic() - t0), 1)
        # Late duplicates show up a moment later; look once more.
        time.sleep(0.2)
        n = maildir_count(args.maildir) - base
        rec["delivered"] = n
        if not rec["error"] and n != count:
            rec["error"] = (f"Maildir grew by {n}, expected {count} "
                            f"(waited {args.delivery_timeout:.0f} s)")
    try:
        cpu1 = cpu_seconds(args.cpu)
    except (OSError, RuntimeError) as e:
        cpu1 = None
        if not rec["error"]:
            rec["error"] = f"server CPU not readable (process gone?): {e}"
    if cpu0 is not None and cpu1 is not None:
        rec["cpu_s"] = round(cpu1 - cpu0, 3)
        rec["cpu_per_1k"] = round((cpu1 - cpu0) / count * 1000, 4)
    rec["ok"] = not rec["error"]
    if args.maildir and args.archive:
        # Keep the Maildir small for the next run; delete only when the
        # disk runs short (see maildir_move for why not always).
        os.makedirs(args.archive, exist_ok=True)
        if shutil.disk_usage(args.archive).free > 10 * 2**30:
            maildir_move(args.maildir, os.path.join(
                args.archive, f"{args.server}-{time.time_ns()}"))
        else:
            maildir_clear(args.maildir)
    append_jsonl(args.out, rec)
    cpu_txt = f", server CPU {rec['cpu_per_1k']:.3f} s/1k msgs" if "cpu_per_1k" in rec else ""
    if rec["ok"]:
        log(f"{args.server}: {rec['rate']:.0f} msgs/s ({wall:.2f} s){cpu_txt}")
        return 0
    log(f"{args.server}: FAILED: {rec['error']}")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
