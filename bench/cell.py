#!/usr/bin/python3
"""One throughput measurement: runs smtp-source once against one server,
times it, waits until the server's Maildir holds every message, and appends
a JSON record (rate, CPU per 1,000 messages, errors) to --out.
With --message-file it sends that file (smtp-source -F) instead of a
generated message; --auth-check then requires every delivered message to
carry Authentication-Results with spf, dkim and dmarc all "pass", and
--dns records how many questions the cell's DNS server was asked.
--header NAME requires every delivered message to carry that header (the
milter cell: rspamd's X-Spamd-Result), and --helper-cpu measures a
helper's CPU (rspamd) beside the server's, recorded on its own.
Exit status: 0 when the run was clean, 1 when smtp-source failed or a
message was lost or duplicated."""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time

from benchlib import (append_jsonl, auth_summary, cpu_by_name, cpu_seconds, header_summary, log,
                      maildir_clear,
                      maildir_count, maildir_move, maildir_names, read_jsonl)

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
        rate = args.guess_rate or DEFAULT_RATE.get(args.size, 1e6 / max(args.size, 1))
    n = int(rate * args.target_secs)
    min_count = args.min_count or (500 if args.size <= 10240 else 150)
    n = max(n, min_count, 4 * args.sessions)
    n = min(n, args.max_count or (20000 if args.size <= 10240 else 3000))
    # A round number keeps the logs readable.
    step = 100 if n >= 1000 else 10
    return max(step, (n // step) * step)


def dns_queries(spec):
    """Questions answered so far by dnsserver.py at ADDRESS:PORT, or None."""
    if not spec:
        return None
    from dnsserver import stats
    host, _, port = spec.rpartition(":")
    try:
        return stats(host, int(port))["queries"]
    except (OSError, RuntimeError, ValueError) as e:
        log(f"DNS counters not readable from {spec}: {e}")
        return None


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
    ap.add_argument("--guess-rate", type=float, default=0.0,
                    help="msgs/s to size the first run of this server with")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--maildir", default="", help="Maildir to count deliveries in")
    ap.add_argument("--archive", default="",
                    help="move delivered messages into a new folder under this one")
    ap.add_argument("--cpu", default="none", help="benchlib.cpu_seconds spec of the server")
    ap.add_argument("--load-cpus", default="", help="taskset CPU list for smtp-source")
    ap.add_argument("--sender", default="sender@client.test")
    ap.add_argument("--rcpt", default="user@bench.test")
    ap.add_argument("--helo", default="client.bench.test")
    ap.add_argument("--message-file", default="",
                    help="send this message (smtp-source -F, LF line ends) instead of -l SIZE")
    ap.add_argument("--auth-check", action="store_true",
                    help="every delivered message must show spf, dkim and dmarc pass")
    ap.add_argument("--header", default="",
                    help="every delivered message must carry this header")
    ap.add_argument("--helper-cpu", default="",
                    help="benchlib.cpu_seconds spec of a helper (rspamd), recorded on its own")
    ap.add_argument("--dns", default="", help="ADDRESS:PORT of dnsserver.py: count its queries")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--delivery-timeout", type=float, default=180.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    count = choose_count(args)
    cmd = ["/usr/sbin/smtp-source", "-s", str(args.sessions)]
    if args.message_file:
        cmd += ["-F", args.message_file]
    else:
        cmd += ["-l", str(args.size), "-S", "tern bench"]
    cmd += ["-m", str(count), "-f", args.sender, "-t", args.rcpt, "-M", args.helo]
    if args.mode == "reuse":
        cmd.append("-d")
    cmd.append(f"{args.host}:{args.port}")
    if args.load_cpus:
        cmd = ["taskset", "-c", args.load_cpus] + cmd

    rec = {"server": args.server, "size": args.size, "sessions": args.sessions,
           "mode": args.mode, "count": count, "round": args.round, "ok": False,
           "error": "", "cmd": " ".join(cmd)}
    base = maildir_count(args.maildir) if args.maildir else 0
    before = (maildir_names(args.maildir) if args.maildir and (args.auth_check or args.header)
              else set())
    dns0 = dns_queries(args.dns)
    by_name0 = cpu_by_name(args.cpu)
    cpu0 = cpu_seconds(args.cpu)
    helper0 = cpu_seconds(args.helper_cpu) if args.helper_cpu else None
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
    if helper0 is not None:
        try:
            helper1 = cpu_seconds(args.helper_cpu)
            rec["helper_cpu_s"] = round(helper1 - helper0, 3)
            rec["helper_cpu_per_1k"] = round((helper1 - helper0) / count * 1000, 4)
        except (OSError, RuntimeError) as e:
            if not rec["error"]:
                rec["error"] = f"helper CPU not readable (process gone?): {e}"
    by_name1 = cpu_by_name(args.cpu)
    if by_name1:
        # Per process name, ms per message (live processes only).
        rec["cpu_ms_per_msg_by_name"] = {
            k: round((v - by_name0.get(k, 0.0)) / count * 1000, 3)
            for k, v in by_name1.items() if v - by_name0.get(k, 0.0) > 0}
    dns1 = dns_queries(args.dns)
    if dns0 is not None and dns1 is not None:
        rec["dns_queries"] = dns1 - dns0
        rec["dns_per_msg"] = round((dns1 - dns0) / count, 2)
    if args.auth_check and args.maildir:
        # A cell where the checks did not run is an error, not a result.
        a = auth_summary(args.maildir, maildir_names(args.maildir) - before)
        rec["auth_checked"] = a["checked"]
        rec["auth_with_ar"] = a["with_ar"]
        rec["auth_pass"] = a["all_pass"]
        if not rec["error"] and (a["checked"] == 0 or a["all_pass"] != a["checked"]):
            rec["error"] = (f"{a['all_pass']} of {a['checked']} delivered messages show "
                            f"spf, dkim and dmarc pass ({a['with_ar']} have "
                            f"Authentication-Results; e.g. {a['failed_example']})")
    if args.header and args.maildir:
        # A milter cell where the milter did not see the mail is an error.
        h = header_summary(args.maildir, maildir_names(args.maildir) - before, args.header)
        rec["header"] = args.header
        rec["header_checked"] = h["checked"]
        rec["header_found"] = h["with_header"]
        rec["header_example"] = h["example"]
        if not rec["error"] and (h["checked"] == 0 or h["with_header"] != h["checked"]):
            rec["error"] = (f"{h['with_header']} of {h['checked']} delivered messages carry "
                            f"{args.header} (e.g. not {h['missing_example']})")
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
        extra = ""
        if "auth_pass" in rec:
            extra += f", {rec['auth_pass']}/{rec['auth_checked']} show spf+dkim+dmarc pass"
        if "header_found" in rec:
            extra += f", {rec['header_found']}/{rec['header_checked']} carry {args.header}"
        if "helper_cpu_per_1k" in rec:
            extra += f", helper CPU {rec['helper_cpu_per_1k']:.3f} s/1k msgs"
        if "dns_per_msg" in rec:
            extra += f", {rec['dns_per_msg']} DNS queries/msg"
        log(f"{args.server}: {rec['rate']:.0f} msgs/s ({wall:.2f} s){cpu_txt}{extra}")
        return 0
    log(f"{args.server}: FAILED: {rec['error']}")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
