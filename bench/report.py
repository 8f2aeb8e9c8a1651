#!/usr/bin/python3
"""Turns the raw benchmark records into the report: a table on stdout,
results.md and results.json in --outdir, and throughput.png (gnuplot).
With --peak SERVER it only prints that server's best 1 KiB rate (median
over rounds), which run.sh uses to set the load of the latency test."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

from benchlib import read_jsonl
from tls_report import tls_md, tls_summary, tls_text

NAMES = {"tern": "Tern", "postfix": "Postfix", "sink": "smtp-sink",
         "tern-nocheck": "Tern, no checks", "tern-auth": "Tern, SPF+DKIM+DMARC",
         "postfix-auth": "Postfix + OpenDKIM, OpenDMARC, policyd-spf",
         "tern-nomilter": "Tern, no milter", "tern-milter": "Tern + rspamd",
         "postfix-nomilter": "Postfix, no milter", "postfix-milter": "Postfix + rspamd"}
MA_SERVERS = ("tern-nocheck", "tern-auth", "postfix-auth")
MI_SERVERS = ("tern-nomilter", "tern-milter", "postfix-nomilter", "postfix-milter")
SERVERS = ("tern", "postfix", "sink")


def size_name(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def aggregate(runs):
    """(server, size, sessions, mode) -> medians over the clean rounds."""
    groups = {}
    for r in runs:
        if r.get("round", 0) < 1:
            continue
        key = (r["server"], r["size"], r["sessions"], r["mode"])
        groups.setdefault(key, []).append(r)
    cells = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.get("ok")]
        cpu = [r["cpu_per_1k"] for r in ok if r.get("cpu_per_1k") is not None]
        cells[key] = {
            "server": key[0], "size": key[1], "sessions": key[2], "mode": key[3],
            "rounds": len(rs), "ok_rounds": len(ok),
            "rate": statistics.median([r["rate"] for r in ok]) if ok else None,
            "e2e_rate": (statistics.median([r["e2e_rate"] for r in ok])
                         if ok and all("e2e_rate" in r for r in ok) else None),
            "rates": [r["rate"] for r in ok],
            "cpu_per_1k": statistics.median(cpu) if cpu else None,
            "errors": [r.get("error", "") for r in rs if not r.get("ok")],
        }
    return cells


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=0, suffix=""):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}{suffix}"


def cell_rows(cells):
    keys = sorted({(k[1], k[3], k[2]) for k in cells}, key=lambda t: (t[0], t[1] != "new", t[2]))
    rows = []
    for size, mode, sessions in keys:
        get = lambda s: cells.get((s, size, sessions, mode), {})
        t, p, k = get("tern"), get("postfix"), get("sink")
        rows.append({
            "size": size, "mode": mode, "sessions": sessions,
            "tern": t.get("rate"), "postfix": p.get("rate"), "sink": k.get("rate"),
            "tern_vs_postfix": ratio(t.get("rate"), p.get("rate")),
            "tern_vs_sink": ratio(t.get("rate"), k.get("rate")),
            "tern_cpu_per_1k": t.get("cpu_per_1k"), "postfix_cpu_per_1k": p.get("cpu_per_1k"),
            "tern_e2e": t.get("e2e_rate"), "postfix_e2e": p.get("e2e_rate"),
            "rounds": max(x.get("ok_rounds", 0) for x in (t, p, k)) if (t or p or k) else 0,
            "errors": sum(len(x.get("errors", [])) for x in (t, p, k)),
        })
    return rows


def find_row(rows, size, sessions, modes=("new", "reuse")):
    for m in modes:
        for r in rows:
            if r["size"] == size and r["sessions"] == sessions and r["mode"] == m:
                return r
    return None


def targets(rows, lat, idle):
    out = []

    def add(name, value, goal, passed):
        out.append({"target": name, "measured": value, "goal": goal,
                    "result": "n/a" if passed is None else ("PASS" if passed else "FAIL")})

    r = find_row(rows, 1024, 32, ("new",))
    v = r and r["tern_vs_postfix"]
    add("1 KiB, 32 sessions, new conn: Tern/Postfix throughput",
        fmt(v, 2, "x"), ">= 4x", None if v is None else v >= 4)
    v = r and r["tern_vs_sink"]
    add("1 KiB, 32 sessions, new conn: Tern/smtp-sink throughput",
        fmt(v, 2, "x"), ">= 0.8x", None if v is None else v >= 0.8)
    v = ratio(r and r["tern_cpu_per_1k"], r and r["postfix_cpu_per_1k"])
    add("1 KiB, 32 sessions, new conn: Tern/Postfix CPU per message",
        fmt(v, 2, "x"), "<= 0.5x", None if v is None else v <= 0.5)
    v = idle.get("per_conn_kib") if idle else None
    add("idle connection memory (Tern)", fmt(v, 1, " KiB"), "< 32 KiB",
        None if v is None else v < 32)
    r = find_row(rows, 102400, 32)
    v = r and r["tern_vs_postfix"]
    add(f"100 KiB, 32 sessions{', ' + r['mode'] + ' conn' if r else ''}: Tern/Postfix throughput",
        fmt(v, 2, "x"), ">= 3x", None if v is None else v >= 3)
    t = lat.get("tern") if lat else None
    v = t.get("p99_ms") if t else None
    add("final-dot latency p99 at half peak (Tern)", fmt(v, 2, " ms"), "<= 10 ms",
        None if v is None else v <= 10)
    return out


def mailauth_rows(cells):
    """One row per (sessions, mode) of the mail authentication cell."""
    rows = []
    for sessions, mode in sorted({(k[2], k[3]) for k in cells}):
        get = lambda s: cells.get((s, 1024, sessions, mode), {})
        n, a, p = get("tern-nocheck"), get("tern-auth"), get("postfix-auth")
        rows.append({
            "sessions": sessions, "mode": mode,
            "tern_nocheck": n.get("rate"), "tern_auth": a.get("rate"), "postfix_auth": p.get("rate"),
            "tern_auth_vs_postfix_auth": ratio(a.get("rate"), p.get("rate")),
            "tern_auth_vs_nocheck": ratio(a.get("rate"), n.get("rate")),
            # What the rate ratio would be if Tern were bound by its core.
            "cpu_nocheck_vs_auth": ratio(n.get("cpu_per_1k"), a.get("cpu_per_1k")),
            "tern_nocheck_cpu_per_1k": n.get("cpu_per_1k"),
            "tern_auth_cpu_per_1k": a.get("cpu_per_1k"),
            "postfix_auth_cpu_per_1k": p.get("cpu_per_1k"),
            "rates": {s: get(s).get("rates", []) for s in MA_SERVERS},
            "dns_per_msg": {s: get(s).get("dns_per_msg") for s in MA_SERVERS},
            "auth_pass": {s: get(s).get("auth_pass") for s in MA_SERVERS},
            "rounds": max((x.get("ok_rounds", 0) for x in (n, a, p)), default=0),
            "errors": sum(len(x.get("errors", [])) for x in (n, a, p)),
        })
    return rows


def mailauth_targets(rows, lat):
    out = []

    def add(name, value, goal, passed):
        out.append({"target": name, "measured": value, "goal": goal,
                    "result": "n/a" if passed is None else ("PASS" if passed else "FAIL")})

    r = next((x for x in rows if x["sessions"] == 32 and x["mode"] == "new"), rows[0] if rows else None)
    label = f"{r['sessions']} sessions, {r['mode']} conn" if r else "-"
    v = r and r["tern_auth_vs_postfix_auth"]
    add(f"mail auth, 1 KiB signed, {label}: Tern/Postfix+milters throughput",
        fmt(v, 2, "x"), ">= 5x", None if v is None else v >= 5)
    t = lat.get("tern-auth") if lat else None
    v = t.get("p99_ms") if t else None
    add("mail auth: final-dot latency p99 at half of Tern's peak (checks on)",
        fmt(v, 2, " ms"), "< 10 ms", None if v is None else v < 10)
    v = r and r["tern_auth_vs_nocheck"]
    cost = None if v is None else 1 - v
    add(f"mail auth, {label}: cost of the checks (1 - Tern with/without)",
        fmt(None if cost is None else cost * 100, 1, "%"), "< 30%",
        None if cost is None else cost < 0.30)
    return out


def aggregate_mailauth(runs):
    cells = aggregate(runs)
    # dns_per_msg and auth_pass: medians / sums over the clean rounds.
    for key, c in cells.items():
        ok = [r for r in runs if r.get("round", 0) >= 1 and r.get("ok") and
              (r["server"], r["size"], r["sessions"], r["mode"]) == key]
        d = [r["dns_per_msg"] for r in ok if r.get("dns_per_msg") is not None]
        c["dns_per_msg"] = statistics.median(d) if d else None
        a = [r["auth_pass"] for r in ok if r.get("auth_pass") is not None]
        c["auth_pass"] = sum(a) if a else None
    return cells


def aggregate_milter(runs):
    cells = aggregate(runs)
    # rspamd's CPU (medians) and the messages checked for its header (sums).
    for key, c in cells.items():
        ok = [r for r in runs if r.get("round", 0) >= 1 and r.get("ok") and
              (r["server"], r["size"], r["sessions"], r["mode"]) == key]
        h = [r["helper_cpu_per_1k"] for r in ok if r.get("helper_cpu_per_1k") is not None]
        c["helper_cpu_per_1k"] = statistics.median(h) if h else None
        c["header_checked"] = sum(r.get("header_checked", 0) for r in ok)
        c["header_found"] = sum(r.get("header_found", 0) for r in ok)
        c["messages"] = sum(r.get("count", 0) for r in ok)
        c["delivered"] = sum(r.get("delivered", 0) for r in ok)
    return cells


def milter_rows(cells):
    """One row per (sessions, mode) of the milter cell. CPU in ms per
    message (s per 1,000 messages); rspamd's measured during each server's
    runs."""
    def diff(a, b):
        return a - b if a is not None and b is not None else None

    def add(a, b):
        return a + b if a is not None and b is not None else None

    rows = []
    for sessions, mode in sorted({(k[2], k[3]) for k in cells}, key=lambda t: (t[1] != "new", t[0])):
        get = lambda s: cells.get((s, 1024, sessions, mode), {})
        c = {s: get(s) for s in MI_SERVERS}
        row = {"sessions": sessions, "mode": mode}
        for s in MI_SERVERS:
            k = s.replace("-", "_")
            row[k] = c[s].get("rate")
            row[k + "_cpu_ms"] = c[s].get("cpu_per_1k")
            row[k + "_rspamd_cpu_ms"] = c[s].get("helper_cpu_per_1k")
            row[k + "_total_cpu_ms"] = add(c[s].get("cpu_per_1k"), c[s].get("helper_cpu_per_1k"))
        row["tern_vs_postfix"] = ratio(row["tern_milter"], row["postfix_milter"])
        row["tern_vs_postfix_nomilter"] = ratio(row["tern_nomilter"], row["postfix_nomilter"])
        row["tern_milter_vs_nomilter"] = ratio(row["tern_milter"], row["tern_nomilter"])
        row["postfix_milter_vs_nomilter"] = ratio(row["postfix_milter"], row["postfix_nomilter"])
        # The milter's CPU cost to each MTA itself (rspamd's own not included).
        row["tern_milter_cost_cpu_ms"] = diff(row["tern_milter_cpu_ms"], row["tern_nomilter_cpu_ms"])
        row["postfix_milter_cost_cpu_ms"] = diff(row["postfix_milter_cpu_ms"],
                                                 row["postfix_nomilter_cpu_ms"])
        row["rates"] = {s: c[s].get("rates", []) for s in MI_SERVERS}
        row["header"] = {s: [c[s].get("header_found"), c[s].get("header_checked")]
                         for s in ("tern-milter", "postfix-milter")}
        row["messages"] = {s: [c[s].get("delivered"), c[s].get("messages")] for s in MI_SERVERS}
        row["rounds"] = max((x.get("ok_rounds", 0) for x in c.values()), default=0)
        row["errors"] = sum(len(x.get("errors", [])) for x in c.values())
        rows.append(row)
    return rows


def milter_targets(rows, runs):
    out = []

    def add(name, value, goal, passed):
        out.append({"target": name, "measured": value, "goal": goal,
                    "result": "n/a" if passed is None else ("PASS" if passed else "FAIL")})

    for r in rows:
        if r["mode"] != "new" and any(x["mode"] == "new" for x in rows):
            continue
        v = r["tern_vs_postfix"]
        add(f"milter (rspamd), 1 KiB, {r['sessions']} sessions, {r['mode']} conn: "
            f"Tern/Postfix throughput, both with rspamd", fmt(v, 2, "x"), ">= 1.5x",
            None if v is None else v >= 1.5)
    counted = [r for r in runs if r.get("round", 0) >= 1]
    bad = [r for r in counted if not r.get("ok")]
    add("milter (rspamd): runs with every message delivered (and rspamd's header on each)",
        f"{len(counted) - len(bad)} of {len(counted)}", "all",
        None if not counted else not bad)
    return out


def milter_md(rows, lat, env, runs):
    md = ["## Milter (rspamd)", ""]
    pin = env.get("rspamd_pin", "server")
    md.append(f"One private rspamd {env.get('rspamd_version', '?')} (the distribution's defaults; "
              f"one proxy worker in milter mode with self_scan, no redis, DNS to a closed port, "
              f"rbl/asn/fuzzy/update off; milter_headers adds X-Spamd-Result, X-Rspamd-Server, "
              f"X-Spam-Status) on the {'servers’' if pin == 'server' else 'load generator’s'} "
              f"core, milter for both Tern (`[[milter]]`, on_error tempfail) and a second "
              f"Postfix (`smtpd_milters`, protocol 6, default action tempfail). The same "
              f"smtp-source 1 KiB messages to each server in turn, with the plain Tern (and "
              f"the plain Postfix, when it runs) at the same cells. A run counts only if every "
              f"message reached the Maildir and, with the milter, carries X-Spamd-Result. "
              f"Server CPU excludes rspamd; rspamd's CPU (its process tree or cgroup) is "
              f"measured over each server's runs. Medians of {env.get('milter_rounds', '?')} "
              f"round(s).")
    md.append("")
    md.append("| sessions | connection | Tern msgs/s | Tern + rspamd msgs/s | Postfix msgs/s "
              "| Postfix + rspamd msgs/s | Tern/Postfix, both with rspamd | Tern with/without "
              "milter | Postfix with/without | CPU ms/msg Tern: alone / with milter / + rspamd "
              "| CPU ms/msg Postfix: alone / with milter / + rspamd | rspamd CPU ms/msg "
              "(Tern's / Postfix's runs) | rounds |")
    md.append("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        md.append(f"| {r['sessions']} | {'new per message' if r['mode'] == 'new' else 'reused'} "
                  f"| {fmt(r['tern_nomilter'])} | {fmt(r['tern_milter'])} | {fmt(r['postfix_nomilter'])} "
                  f"| {fmt(r['postfix_milter'])} | **{fmt(r['tern_vs_postfix'], 2, 'x')}** "
                  f"| {fmt(r['tern_milter_vs_nomilter'], 2, 'x')} | {fmt(r['postfix_milter_vs_nomilter'], 2, 'x')} "
                  f"| {fmt(r['tern_nomilter_cpu_ms'], 3)} / {fmt(r['tern_milter_cpu_ms'], 3)} / "
                  f"{fmt(r['tern_milter_total_cpu_ms'], 3)} "
                  f"| {fmt(r['postfix_nomilter_cpu_ms'], 3)} / {fmt(r['postfix_milter_cpu_ms'], 3)} / "
                  f"{fmt(r['postfix_milter_total_cpu_ms'], 3)} "
                  f"| {fmt(r['tern_milter_rspamd_cpu_ms'], 3)} / {fmt(r['postfix_milter_rspamd_cpu_ms'], 3)} "
                  f"| {r['rounds']} |")
    md.append("")
    for r in rows:
        md.append(f"- {r['sessions']} sessions, {r['mode']}: the milter costs Tern "
                  f"{fmt(r['tern_milter_cost_cpu_ms'], 3)} ms of its own CPU per message and "
                  f"Postfix {fmt(r['postfix_milter_cost_cpu_ms'], 3)} ms (with minus without), "
                  f"rspamd's scan {fmt(r['tern_milter_rspamd_cpu_ms'], 3)} / "
                  f"{fmt(r['postfix_milter_rspamd_cpu_ms'], 3)} ms more. Rates of the rounds: " +
                  "; ".join(f"{NAMES[s]} {', '.join(fmt(v) for v in r['rates'][s]) or '-'}"
                            for s in MI_SERVERS) +
                  ". With rspamd's header: " + ", ".join(
                      f"{NAMES[s]} {h[0] if h[0] is not None else '-'} of {h[1] if h[1] is not None else '-'}"
                      for s, h in r["header"].items()) + ".")
    md.append("")
    ex = next((r.get("header_example") for r in runs if r.get("header_example")), None)
    if ex:
        md.append(f"rspamd's verdict on a delivered message (X-Spamd-Result, first 200 "
                  f"characters): `{ex}`.")
        md.append("")
    if lat:
        md.append("The milter round-trip in the final-dot latency: Tern with rspamd and the plain "
                  "Tern at the same offered load (half of Tern with rspamd's median peak), 1 KiB "
                  "over 32 persistent connections (bench/latency.py):")
        md.append("")
        md.append("| server | offered msgs/s | achieved msgs/s | samples | p50 ms | p90 ms | p99 ms "
                  "| max ms | late starts | errors |")
        md.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s, d in lat.items():
            md.append(f"| {NAMES.get(s, s)} | {d['offered_rate']} | {d['achieved_rate']} "
                      f"| {d['samples']} | {fmt(d['p50_ms'], 2)} | {fmt(d['p90_ms'], 2)} "
                      f"| {fmt(d['p99_ms'], 2)} | {fmt(d['max_ms'], 2)} | {d['late_starts']} "
                      f"| {d['errors']} |")
        md.append("")
        a, b = lat.get("tern-milter"), lat.get("tern-nomilter")
        if a and b and a.get("p50_ms") is not None and b.get("p50_ms") is not None:
            md.append(f"The milter adds {a['p50_ms'] - b['p50_ms']:.2f} ms at p50 and "
                      f"{fmt(diff_or_none(a.get('p90_ms'), b.get('p90_ms')), 2)} ms at p90.")
            md.append("")
    return md


def bigqueue_targets(b):
    """The huge-queue cell's goals (issue 18)."""
    out = []

    def add(name, value, goal, passed):
        out.append({"target": name, "measured": value, "goal": goal,
                    "result": "n/a" if passed is None else ("PASS" if passed else "FAIL")})

    n = f"{b.get('n', 0):,} deferred"
    v = b.get("restart_to_220_secs")
    add(f"{n}: restart to 220", fmt(v, 2, " s"), "< 10 s", None if v is None else v < 10)
    v = max(b.get("rss_recovered_mib") or 0, b.get("rss_end_mib") or 0) or None
    add(f"{n}: RSS after restart (recovered)", fmt(v, 0, " MiB"), "< 300 MiB",
        None if v is None else v < 300)
    v = b.get("list_full_first_line_secs")
    add(f"{n}: `tern queue list` first line", fmt(v, 2, " s"), "< 1 s",
        None if v is None else v < 1)
    return out


def bigqueue_md(b):
    """The huge-queue cell: restart, memory, listing, retry spread."""
    md = ["## Huge queue", ""]
    md.append(f"{b.get('n', 0):,} messages deferred (written by `tern_spoolgen`, one recipient "
              "each, every retry already due), their next hop a loopback server answering "
              "451 to every RCPT; then `tern serve` started on that spool (bench/bigqueue.py).")
    md.append("")
    md.append("| measure | Tern |")
    md.append("|---|--:|")
    rows = [("exec to the first 220", "restart_to_220_secs", " s", 2),
            ("exec to recovery done (log)", "recovered_secs", " s", 1),
            ("RSS at the first 220", "rss_at_220_mib", " MiB", 0),
            ("RSS once recovered", "rss_recovered_mib", " MiB", 0),
            ("RSS peak (VmHWM)", "rss_peak_mib", " MiB", 0),
            ("`tern queue list`: first line", "list_full_first_line_secs", " s", 3),
            ("`tern queue list`: whole listing", "list_full_total_secs", " s", 1),
            ("`tern queue list --limit 50`: first line", "list_limit_first_line_secs", " s", 3),
            ("`tern queue list --domain D --limit 20`: first line",
             "list_domain_first_line_secs", " s", 3),
            ("delivery attempts, busiest second of the first "
             f"{len(b.get('attempts_per_sec') or [])} s", "attempts_max_per_sec", "", 0),
            ("delivery attempts in those seconds", "attempts_in_window", "", 0)]
    for label, key, unit, digits in rows:
        md.append(f"| {label} | {fmt(b.get(key), digits, unit)} |")
    md.append("")
    if b.get("attempts_per_sec"):
        md.append("Delivery attempts per second from the first 220 on: "
                  + " ".join(str(x) for x in b["attempts_per_sec"]) + ".")
        md.append("")
    return md


def diff_or_none(a, b):
    return a - b if a is not None and b is not None else None


def plot(outdir, cells):
    """throughput.png: msgs/s against sessions, new-connection mode."""
    gnuplot = shutil.which("gnuplot")
    series = []
    for size in sorted({k[1] for k in cells}):
        for server in SERVERS:
            pts = sorted((k[2], c["rate"]) for k, c in cells.items()
                         if k[0] == server and k[1] == size and k[3] == "new" and c["rate"])
            if pts:
                series.append((f"{NAMES[server]} {size_name(size)}", server, size, pts))
    if not series:
        return None, "no data to plot"
    dat = os.path.join(outdir, "throughput.dat")
    with open(dat, "w") as f:
        for title, _, _, pts in series:
            f.write(f"# {title}\n")
            for s, rate in pts:
                f.write(f"{s} {rate}\n")
            f.write("\n\n")
    colors = {"tern": "#1f77b4", "postfix": "#d62728", "sink": "#7f7f7f"}
    sizes = sorted({s[2] for s in series})
    plots = []
    for i, (title, server, size, _) in enumerate(series):
        dash = 1 if size == sizes[0] else 2
        plots.append(f"'{dat}' index {i} using 1:2 with linespoints lw 2 pt 7 "
                     f"lc rgb '{colors[server]}' dt {dash} title '{title}'")
    png = os.path.join(outdir, "throughput.png")
    gp = os.path.join(outdir, "throughput.gp")
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 960,600 font 'sans,11'
set output '{png}'
set title 'SMTP throughput, one connection per message (loopback, servers on one core)'
set xlabel 'concurrent sessions (smtp-source -s)'
set ylabel 'messages per second (median of rounds)'
set logscale x 2
set xrange [0.8:160]
set offsets 0, 0, graph 0.05, graph 0.05
set logscale y 10
set grid
set key outside right top
plot {', '.join(plots)}
""")
    if not gnuplot:
        return None, "gnuplot not installed"
    p = subprocess.run([gnuplot, gp], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return None, f"gnuplot failed: {p.stderr.strip()[:300]}"
    return png, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--peak", help="print this server's best 1 KiB rate and exit")
    ap.add_argument("--env")
    ap.add_argument("--outdir")
    ap.add_argument("--latency", nargs="*", default=[])
    ap.add_argument("--idle")
    ap.add_argument("--parser")
    ap.add_argument("--mailauth", help="runs of the mail authentication cell (JSON lines)")
    ap.add_argument("--mailauth-latency", nargs="*", default=[])
    ap.add_argument("--mailauth-info", help="prep.json of mailauth_prep.py")
    ap.add_argument("--mailauth-dns", help="dnsserver.py counters at the end")
    ap.add_argument("--milter", help="runs of the milter cell (JSON lines)")
    ap.add_argument("--milter-latency", nargs="*", default=[])
    ap.add_argument("--imap", help="IMAP cell runs (imap_bench.py cell, JSON lines)")
    ap.add_argument("--imap-idle", help="imap_bench.py idle records")
    ap.add_argument("--imap-wake", help="imap_bench.py wake records")
    ap.add_argument("--imap-info", help="the populated Maildir (info.json)")
    ap.add_argument("--imap-secs", help="seconds the IMAP part took")
    ap.add_argument("--section", action="append", default=[], metavar="TITLE=FILE",
                    help="a Markdown section written by a cell's own script "
                         "(relay.py report, ...), added at the end under ### TITLE")
    ap.add_argument("--huge", help="huge-message cell records (bench/huge.py, JSON lines)")
    ap.add_argument("--tls", help="runs of the TLS cell (tls_load.py, JSON lines)")
    ap.add_argument("--tls-idle", nargs="*", default=[], help="idle.py --tls results")
    ap.add_argument("--bigqueue", help="bench/bigqueue.py result (JSON)")
    args = ap.parse_args()

    runs = read_jsonl(args.runs)
    cells = aggregate(runs)
    if args.peak:
        rates = [c["rate"] for k, c in cells.items()
                 if k[0] == args.peak and k[1] == 1024 and c["rate"]]
        print(round(max(rates), 1) if rates else 0)
        return 0

    env = json.load(open(args.env)) if args.env else {}
    with open("/proc/loadavg") as f:
        env["loadavg_end"] = " ".join(f.read().split()[:3])
    lat = {}
    for p in args.latency:
        d = json.load(open(p))
        lat[d["server"]] = d
    idle = json.load(open(args.idle)) if args.idle else None
    parser = json.load(open(args.parser)) if args.parser else None
    rows = cell_rows(cells)
    tg = targets(rows, lat, idle) if rows or lat or idle else []
    ma_runs = read_jsonl(args.mailauth) if args.mailauth else []
    ma_rows = mailauth_rows(aggregate_mailauth(ma_runs)) if args.mailauth else []
    ma_lat = {}
    for p in args.mailauth_latency:
        d = json.load(open(p))
        ma_lat[d["server"]] = d
    ma_info = load_json(args.mailauth_info)
    ma_dns = load_json(args.mailauth_dns)
    if args.mailauth:
        tg += mailauth_targets(ma_rows, ma_lat)
    mi_runs = read_jsonl(args.milter) if args.milter else []
    mi_rows = milter_rows(aggregate_milter(mi_runs)) if args.milter else []
    mi_lat = {}
    for p in args.milter_latency:
        d = json.load(open(p))
        mi_lat[d["server"]] = d
    if args.milter:
        tg += milter_targets(mi_rows, mi_runs)
    imap = None
    if args.imap:
        imap = imap_summary(read_jsonl_opt(args.imap), read_jsonl_opt(args.imap_idle),
                            read_jsonl_opt(args.imap_wake), load_json(args.imap_info),
                            load_text(args.imap_secs))
        tg += imap["targets"]
    huge = None
    if args.huge:  # the cell's own file knows its records
        from huge import report as huge_report
        huge = huge_report(args.huge)
        tg += huge["targets"]
    tls = tls_summary(read_jsonl(args.tls), args.tls_idle) if args.tls else None
    if tls:
        tg += tls["targets"]
    os.makedirs(args.outdir, exist_ok=True)
    png, plot_note = plot(args.outdir, cells)

    failed_runs = [r for r in runs + ma_runs + mi_runs if not r.get("ok")]
    imap_failed = [r for r in (imap["runs"] if imap else []) if not r.get("ok")]
    # --- text ---------------------------------------------------------------
    hdr = ("size", "conn", "sess", "Tern/s", "Postfix/s", "sink/s", "T/P", "T/sink",
           "T cpu/1k", "P cpu/1k", "T e2e/s", "P e2e/s", "rounds")
    table = [hdr]
    for r in rows:
        table.append((size_name(r["size"]), r["mode"], str(r["sessions"]), fmt(r["tern"]),
                      fmt(r["postfix"]), fmt(r["sink"]), fmt(r["tern_vs_postfix"], 2, "x"),
                      fmt(r["tern_vs_sink"], 2, "x"), fmt(r["tern_cpu_per_1k"], 3, " s"),
                      fmt(r["postfix_cpu_per_1k"], 3, " s"), fmt(r["tern_e2e"]),
                      fmt(r["postfix_e2e"]), str(r["rounds"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(hdr))]
    text = ["", "Throughput (messages/s accepted, median of rounds; CPU seconds per 1,000 "
            "messages; e2e: sent and in the Maildir)"]
    for row in table:
        text.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    if lat:
        text.append("")
        text.append(f"Final-dot latency at a fixed load (one disk flush here: "
                    f"{env.get('fsync_probe', '?')}):")
        for s, d in lat.items():
            text.append(f"  {NAMES.get(s, s)}: offered {d['offered_rate']} msgs/s, achieved "
                        f"{d['achieved_rate']}: p50 {fmt(d['p50_ms'], 2)} ms, p99 "
                        f"{fmt(d['p99_ms'], 2)} ms, max {fmt(d['max_ms'], 2)} ms, errors {d['errors']}")
    if idle:
        text.append("")
        text.append(f"Idle connections: {idle['connections']} to Tern, VmRSS {idle['rss_before_kib']} "
                    f"-> {idle['rss_idle_kib']} KiB: {fmt(idle['per_conn_kib'], 1)} KiB each")
    if parser:
        text.append("")
        text.append("Parser micro-benchmarks:")
        for b in parser.get("benchmarks", []):
            text.append("  " + bench_line(b))
    if args.mailauth:
        text.append("")
        text.append("Mail authentication (1 KiB signed messages; msgs/s, median of rounds):")
        for r in ma_rows:
            text.append(f"  {r['sessions']} sessions, {r['mode']} conn: Tern no checks "
                        f"{fmt(r['tern_nocheck'])}, Tern checks {fmt(r['tern_auth'])}, Postfix+milters "
                        f"{fmt(r['postfix_auth'])}; Tern/Postfix {fmt(r['tern_auth_vs_postfix_auth'], 2, 'x')}, "
                        f"checks keep {fmt(r['tern_auth_vs_nocheck'], 2, 'x')} of Tern's rate")
        for s, d in ma_lat.items():
            text.append(f"  latency {NAMES.get(s, s)}: offered {d['offered_rate']} msgs/s: p50 "
                        f"{fmt(d['p50_ms'], 2)} ms, p99 {fmt(d['p99_ms'], 2)} ms, errors {d['errors']}")
    if args.milter:
        text.append("")
        text.append("Milter (rspamd; 1 KiB; msgs/s, median of rounds; CPU ms per message):")
        for r in mi_rows:
            text.append(f"  {r['sessions']} sessions, {r['mode']} conn: Tern {fmt(r['tern_nomilter'])}, "
                        f"Tern+rspamd {fmt(r['tern_milter'])}, Postfix {fmt(r['postfix_nomilter'])}, "
                        f"Postfix+rspamd {fmt(r['postfix_milter'])}; Tern/Postfix with rspamd "
                        f"{fmt(r['tern_vs_postfix'], 2, 'x')}; CPU Tern {fmt(r['tern_milter_cpu_ms'], 3)} "
                        f"+ rspamd {fmt(r['tern_milter_rspamd_cpu_ms'], 3)}, Postfix "
                        f"{fmt(r['postfix_milter_cpu_ms'], 3)} + rspamd "
                        f"{fmt(r['postfix_milter_rspamd_cpu_ms'], 3)}")
        for s, d in mi_lat.items():
            text.append(f"  latency {NAMES.get(s, s)}: offered {d['offered_rate']} msgs/s: p50 "
                        f"{fmt(d['p50_ms'], 2)} ms, p99 {fmt(d['p99_ms'], 2)} ms, errors {d['errors']}")
    if imap:
        text.append("")
        text += imap_text(imap)
    if huge:
        text += huge["text"]
    if tls:
        text += tls_text(tls)
    text.append("")
    text.append("Targets:")
    for t in tg:
        text.append(f"  {t['result']:4}  {t['target']}: {t['measured']} (goal {t['goal']})")
    if failed_runs:
        text.append("")
        text.append(f"{len(failed_runs)} run(s) FAILED:")
        for r in failed_runs[:20]:
            text.append(f"  {r['server']} {size_name(r['size'])} s={r['sessions']} {r['mode']} "
                        f"round {r.get('round')}: {r.get('error')}")
    for r in imap_failed[:20]:
        text.append(f"  IMAP {r['server']} {r['cell']} round {r.get('round')}: FAILED: {r.get('error')}")
    print("\n".join(text))

    # --- markdown -------------------------------------------------------------
    md = ["# Tern benchmark results", ""]
    md.append(f"Run {env.get('date', '?')} at git {env.get('git', '?')}"
              f"{' (QUICK: 1 round, 3 cells)' if env.get('quick') else ''}, "
              f"{env.get('rounds', '?')} round(s), servers run in turn Tern/Postfix/smtp-sink per cell.")
    md.append("")
    md.append(f"- CPU: {env.get('cpu_model', '?')}, {env.get('cores', '?')} cores; "
              f"servers pinned to CPU {env.get('server_cpus') or '-'}, "
              f"load generator to CPU {env.get('load_cpus') or '-'}")
    md.append(f"- Kernel: {env.get('kernel', '?')}; OS: {env.get('os', '?')}")
    md.append(f"- Disk (data of Tern and Postfix): {env.get('disk', '?')} "
              f"(Tern on {env.get('disk_tern', '?')}, Postfix on {env.get('disk_postfix', '?')}); "
              f"{env.get('fs', '?')}")
    md.append(f"- Disk flush (fsync of a new 4 KiB file, 50 times): "
              f"{env.get('fsync_probe', '?')}. Every 250 after DATA waits for at least "
              f"one flush (shared by a group commit).")
    md.append(f"- Postfix {env.get('postfix_version', '?')} (private instance, virtual Maildir "
              f"delivery); Tern {env.get('tern_version', '?')} (threads = 1, delivery_threads = 1)")
    md.append(f"- Load average at start {env.get('loadavg_start', '?')}, at end "
              f"{env.get('loadavg_end', '?')}: other work on the machine makes numbers noisy.")
    md.append("- Throughput (msgs/s): messages accepted per second of smtp-source wall time; "
              "e2e msgs/s: the same messages over the time until the last one was in the "
              "Maildir. A run counts only if smtp-source reported no error and the server's "
              "Maildir grew by exactly the number sent. CPU includes delivery (measured once "
              "the Maildir is complete); Postfix CPU covers every process of the instance.")
    md.append("")
    if rows:  # none with MAILAUTH=only
        md.append("## Throughput")
        md.append("")
        md.append("| size | connection | sessions | Tern msgs/s | Postfix msgs/s | smtp-sink msgs/s "
                  "| Tern/Postfix | Tern/sink | Tern CPU s/1k msgs | Postfix CPU s/1k msgs "
                  "| Tern e2e msgs/s | Postfix e2e msgs/s | rounds |")
        md.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for r in rows:
            md.append(f"| {size_name(r['size'])} | {'new per message' if r['mode'] == 'new' else 'reused'} "
                      f"| {r['sessions']} | {fmt(r['tern'])} | {fmt(r['postfix'])} | {fmt(r['sink'])} "
                      f"| {fmt(r['tern_vs_postfix'], 2, 'x')} | {fmt(r['tern_vs_sink'], 2, 'x')} "
                      f"| {fmt(r['tern_cpu_per_1k'], 3)} | {fmt(r['postfix_cpu_per_1k'], 3)} "
                      f"| {fmt(r['tern_e2e'])} | {fmt(r['postfix_e2e'])} | {r['rounds']} |")
        md.append("")
        if png:
            md.append("![throughput against sessions](throughput.png)")
        else:
            md.append(f"(no plot: {plot_note})")
        md.append("")
    if lat:
        md.append("## Final-dot latency")
        md.append("")
        md.append("Time from writing `\\r\\n.\\r\\n` to reading the 250 reply, 1 KiB messages over "
                  "persistent connections, at a fixed offered load of half of Tern's peak 1 KiB rate "
                  "(bench/latency.py).")
        md.append("")
        md.append("| server | offered msgs/s | achieved msgs/s | samples | p50 ms | p90 ms | p99 ms "
                  "| max ms | late starts | errors |")
        md.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s, d in lat.items():
            md.append(f"| {NAMES.get(s, s)} | {d['offered_rate']} | {d['achieved_rate']} "
                      f"| {d['samples']} | {fmt(d['p50_ms'], 2)} | {fmt(d['p90_ms'], 2)} "
                      f"| {fmt(d['p99_ms'], 2)} | {fmt(d['max_ms'], 2)} | {d['late_starts']} "
                      f"| {d['errors']} |")
        md.append("")
    if idle:
        md.append("## Idle connections")
        md.append("")
        md.append(f"{idle['connections']} idle connections to Tern (each greeted with 220) in "
                  f"{idle['open_secs']} s: VmRSS {idle['rss_before_kib']} KiB before, "
                  f"{idle['rss_idle_kib']} KiB with them open, {idle['rss_after_close_kib']} KiB "
                  f"after closing; **{fmt(idle['per_conn_kib'], 1)} KiB per connection**; "
                  f"fds {idle['fds_before']} -> {idle['fds_idle']}, {idle['threads']} threads, "
                  f"errors {idle['errors']}.")
        md.append("")
    if parser:
        md.append("## Parser micro-benchmarks")
        md.append("")
        md.append("```")
        for b in parser.get("benchmarks", []):
            md.append(bench_line(b))
        md.append("```")
        md.append("")
    if args.mailauth:
        md += mailauth_md(ma_rows, ma_lat, ma_info, ma_dns, env, ma_runs)
    if args.milter:
        md += milter_md(mi_rows, mi_lat, env, mi_runs)
    if imap:
        md += imap_md(imap, env)
    if huge:
        md += huge["md"]
    if tls:
        md += tls_md(tls)
    bigq = load_json(args.bigqueue) if args.bigqueue else None
    if bigq:
        md += bigqueue_md(bigq)
        tg += bigqueue_targets(bigq)
    md.append("## Targets")
    md.append("")
    md.append("| result | target | measured | goal |")
    md.append("|---|---|--:|--:|")
    for t in tg:
        md.append(f"| {t['result']} | {t['target']} | {t['measured']} | {t['goal']} |")
    md.append("")
    if failed_runs or imap_failed:
        md.append("## Failed runs")
        md.append("")
        for r in imap_failed:
            md.append(f"- IMAP {NAMES.get(r['server'], r['server'])} {r['cell']}, round "
                      f"{r.get('round')}: {r.get('error')}")
        for r in failed_runs:
            md.append(f"- {NAMES.get(r['server'], r['server'])} {size_name(r['size'])}, "
                      f"{r['sessions']} sessions, {r['mode']}, round {r.get('round')}: "
                      f"{r.get('error')}")
        md.append("")
    sections = {}
    for spec in args.section:
        title, _, path = spec.partition("=")
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError as e:
            text = f"(no results: {e})"
        sections[title] = text
        md += ["", f"### {title}", "", text, ""]
    with open(os.path.join(args.outdir, "results.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(args.outdir, "results.json"), "w") as f:
        json.dump({"env": env, "cells": rows, "targets": tg, "latency": lat, "idle": idle,
                   "sections": sections,
                   "parser": parser, "runs": runs,
                   "mailauth": {"cells": ma_rows, "latency": ma_lat, "info": ma_info,
                                "dns": ma_dns, "runs": ma_runs} if args.mailauth else None,
                   "milter": {"cells": mi_rows, "latency": mi_lat, "runs": mi_runs}
                   if args.milter else None,
                   "imap": imap,
                   "huge": {k: huge[k] for k in ("rows", "runs")} if huge else None,
                   "tls": tls,
                   "bigqueue": bigq},
                  f, indent=1)
    return 0


def load_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (TypeError, OSError):
        return None


def read_jsonl_opt(path):
    try:
        return read_jsonl(path) if path and os.path.exists(path) else []
    except (OSError, ValueError):
        return []


# --- IMAP ------------------------------------------------------------------------
# Rows: (key, label, cell, first?, unit). Time cells are compared as
# Dovecot's time / Tern's (= Tern's rate / Dovecot's); APPEND by rate.
IMAP_ROWS = [
    ("select_first", "SELECT INBOX, first (builds the index)", "select", True, "ms"),
    ("select", "SELECT INBOX, warm", "select", False, "ms"),
    ("fetch_first", "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE), first", "fetch", True, "ms"),
    ("fetch", "the same FETCH, later runs", "fetch", False, "ms"),
    ("search", "UID SEARCH TEXT <word>", "search", False, "ms"),
    ("append", "APPEND ~4 KiB messages", "append", False, "msgs/s"),
]
NAMES.update({"tern-imap": "Tern", "dovecot": "Dovecot"})


def imap_summary(runs, idle, wake, info, secs):
    rows = []
    for key, label, cell, first, unit in IMAP_ROWS:
        row = {"key": key, "label": label, "unit": unit}
        for server in ("tern-imap", "dovecot"):
            rs = [r for r in runs if r.get("server") == server and r.get("cell") == cell
                  and bool(r.get("first")) == first]
            ok = [r for r in rs if r.get("ok")]
            name = "tern" if server == "tern-imap" else "dovecot"
            if unit == "ms":
                vals = [r["secs"] * 1000 for r in ok]
            else:
                vals = [r["rate"] for r in ok]
            cpu = [r["server_cpu"] * 1000 for r in ok if r.get("server_cpu") is not None]
            if unit == "msgs/s":
                cpu = [r["server_cpu"] * 1000 / r["messages"] for r in ok if r.get("server_cpu") is not None]
            row[name] = statistics.median(vals) if vals else None
            row[name + "_all"] = vals
            row[name + "_cpu_ms"] = statistics.median(cpu) if cpu else None
            row[name + "_errors"] = len(rs) - len(ok)
            if cell == "search" and ok:
                row[name + "_hits"] = ok[-1].get("hits")
            if cell == "append" and ok:
                row["clients"] = ok[-1].get("clients")
                row["messages"] = ok[-1].get("messages")
                row["message_bytes"] = ok[-1].get("message_bytes")
        t, d = row["tern"], row["dovecot"]
        if unit == "ms":
            row["ratio"] = d / t if t and d else None
        else:
            row["ratio"] = t / d if t and d else None
        row["rounds"] = len(row["tern_all"])
        rows.append(row)
    idle_by = {r["server"]: r for r in idle}
    wake_by = {r["server"]: r for r in wake}
    tg = []

    def add(name, value, goal, passed):
        tg.append({"target": name, "measured": value, "goal": goal,
                   "result": "-" if passed is None else ("PASS" if passed else "FAIL")})
    for row in rows:
        r = row["ratio"]
        add(f"IMAP {row['label']}: Tern/Dovecot", fmt(r, 2, "x"), ">= 2x",
            None if r is None else r >= 2)
    ti = idle_by.get("tern-imap")
    v = ti.get("rss_per_conn_kib") if ti else None
    add(f"IMAP memory per connection in IDLE (Tern, {ti['connections'] if ti else '?'} connections)",
        fmt(v, 1, " KiB"), "< 32 KiB", None if v is None else v < 32)
    tw = wake_by.get("tern-imap")
    v = tw.get("p99_ms") if tw else None
    add("IMAP wake-up, SMTP 250 to * EXISTS in IDLE, p99 (Tern)", fmt(v, 1, " ms"), "< 50 ms",
        None if v is None else v < 50)
    return {"rows": rows, "idle": idle_by, "wake": wake_by, "info": info, "secs": secs,
            "targets": tg, "runs": runs}


def imap_text(imap):
    out = ["IMAP (median of rounds; Tern/Dovecot = Dovecot's time / Tern's, or rate / rate):"]
    for row in imap["rows"]:
        d = 1 if row["unit"] == "ms" else 0
        out.append(f"  {row['label']}: Tern {fmt(row['tern'], d)} {row['unit']}, Dovecot "
                   f"{fmt(row['dovecot'], d)} {row['unit']}: {fmt(row['ratio'], 2, 'x')}")
    for s, r in imap["idle"].items():
        out.append(f"  {NAMES.get(s, s)}: {r['connections']} connections in IDLE: RSS "
                   f"{fmt(r['rss_per_conn_kib'], 1)} KiB, PSS {fmt(r['pss_per_conn_kib'], 1)} KiB per connection")
    for s, r in imap["wake"].items():
        out.append(f"  {NAMES.get(s, s)} wake-up ({r['method']}): p50 {fmt(r['p50_ms'], 1)} ms, p99 "
                   f"{fmt(r['p99_ms'], 1)} ms, max {fmt(r['max_ms'], 1)} ms ({r['samples']} samples)")
    if imap["secs"]:
        out.append(f"  the IMAP part took {imap['secs']} s")
    return out


def imap_md(imap, env):
    info = imap["info"] or {}
    md = ["## IMAP", ""]
    md.append(f"Tern's IMAP server and a private Dovecot {env.get('dovecot_version', '?')} (own "
              f"config, base_dir and passwd-file; `ssl = no`, plain LOGIN on loopback), each on its "
              f"own copy of the same Maildir: {info.get('messages', '?')} messages, "
              f"{fmt((info.get('bytes') or 0) / 1e6, 1)} MB (plain, multipart/alternative, "
              f"attachments, forwarded messages, encoded words), all in `cur/`. Servers on the "
              f"server core, the driver (bench/imap_bench.py, raw sockets) on the other; each "
              f"cell opens a new connection and LOGINs before the timed command. Round 0 is "
              f"each server's first SELECT (its index is built) and first FETCH; the other "
              f"rows are medians of {env.get('imap_rounds', '?')} round(s). Tern/Dovecot is "
              f"Dovecot's time over Tern's (or Tern's rate over Dovecot's): above 1x Tern is faster.")
    md.append("")
    md.append("| cell | Tern | Dovecot | Tern/Dovecot | Tern CPU ms | Dovecot CPU ms | rounds |")
    md.append("|---|--:|--:|--:|--:|--:|--:|")
    for row in imap["rows"]:
        d = 1 if row["unit"] == "ms" else 0
        label = row["label"]
        cpu_unit = ""
        if row["key"] == "append" and row.get("clients"):
            label += f" ({row['clients']} clients, {row['messages']} messages of {row['message_bytes']} B)"
            cpu_unit = " per msg"
        if row["key"] == "search" and row.get("tern_hits") is not None:
            label += f" ({row.get('tern_hits')} / {row.get('dovecot_hits')} UIDs found)"
        md.append(f"| {label} | {fmt(row['tern'], d)} {row['unit']} | {fmt(row['dovecot'], d)} {row['unit']} "
                  f"| {fmt(row['ratio'], 2, 'x')} | {fmt(row['tern_cpu_ms'], 1)}{cpu_unit} "
                  f"| {fmt(row['dovecot_cpu_ms'], 1)}{cpu_unit} | {row['rounds']} |")
    md.append("")
    if imap["idle"]:
        md.append("Connections in IDLE (LOGIN, SELECT INBOX, IDLE; memory of every process of the "
                  "server: Tern is one process, Dovecot one imap process per connection; per "
                  "connection: the growth from half of them to all, divided by the second half):")
        md.append("")
        md.append("| server | connections | processes | RSS before → half → all KiB | RSS per conn KiB "
                  "| PSS before → with them KiB | PSS per conn KiB | errors |")
        md.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        for s, r in imap["idle"].items():
            md.append(f"| {NAMES.get(s, s)} | {r['connections']} | {r['procs_before']} → {r['procs_idle']} "
                      f"| {r['rss_before_kib']} → {r.get('rss_half_kib', '-')} → {r['rss_idle_kib']} "
                      f"| {fmt(r['rss_per_conn_kib'], 1)} "
                      f"| {r['pss_before_kib']} → {r['pss_idle_kib']} | {fmt(r['pss_per_conn_kib'], 1)} "
                      f"| {r['errors']} |")
        md.append("")
    if imap["wake"]:
        md.append("Wake-up in IDLE: Tern from the SMTP 250 after the final dot (its own SMTP listener) "
                  "to `* n EXISTS`; Dovecot from the start of writing the file into `tmp/` (then "
                  "fsync, rename into `new/`, as an MDA does) to `* n EXISTS`. One message at a "
                  "time, 20–100 ms apart.")
        md.append("")
        md.append("| server | delivery | samples | p50 ms | p90 ms | p99 ms | max ms | errors |")
        md.append("|---|---|--:|--:|--:|--:|--:|--:|")
        for s, r in imap["wake"].items():
            md.append(f"| {NAMES.get(s, s)} | {r['method']} | {r['samples']} | {fmt(r['p50_ms'], 1)} "
                      f"| {fmt(r['p90_ms'], 1)} | {fmt(r['p99_ms'], 1)} | {fmt(r['max_ms'], 1)} "
                      f"| {r['errors']} |")
        md.append("")
    if imap["secs"]:
        md.append(f"The IMAP part took {imap['secs']} s.")
        md.append("")
    return md


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (TypeError, OSError, ValueError):
        return None


def mailauth_md(rows, lat, info, dns, env, runs):
    md = ["## Mail authentication", ""]
    if info:
        md.append(f"DKIM-signed messages ({info['body_bytes']} B body, {info['message_bytes']} B "
                  f"with headers and an RSA-2048 `DKIM-Signature`) from `{info['sender']}`; the "
                  f"domain publishes SPF `{info['spf']}` and DMARC `{info['dmarc']}` on the bench's "
                  f"DNS server. smtp-source sends the same message file (-F) to each server: Tern "
                  f"without checks, Tern with `[mailauth] verify = true`, and Postfix with "
                  f"OpenDKIM and OpenDMARC as milters and policyd-spf as policy service. A run "
                  f"counts only if every delivered message of the checking servers carries "
                  f"Authentication-Results with spf, dkim and dmarc `pass`.")
        md.append("")
    if env.get("mailauth_versions"):
        md.append(f"Packages: {env['mailauth_versions']}.")
        md.append("")
    md.append("| sessions | connection | Tern no checks msgs/s | Tern checks msgs/s | Postfix+milters msgs/s "
              "| Tern/Postfix (checks) | Tern with/without checks | Tern CPU per msg without/with "
              "(the rate ratio if CPU-bound) | CPU s/1k msgs (Tern no checks / checks / "
              "Postfix+milters) | DNS queries/msg (Tern / Postfix) | rounds |")
    md.append("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        dq = r["dns_per_msg"]
        md.append(f"| {r['sessions']} | {'new per message' if r['mode'] == 'new' else 'reused'} "
                  f"| {fmt(r['tern_nocheck'])} | {fmt(r['tern_auth'])} | {fmt(r['postfix_auth'])} "
                  f"| {fmt(r['tern_auth_vs_postfix_auth'], 2, 'x')} | {fmt(r['tern_auth_vs_nocheck'], 2, 'x')} "
                  f"| {fmt(r['cpu_nocheck_vs_auth'], 2, 'x')} "
                  f"| {fmt(r['tern_nocheck_cpu_per_1k'], 3)} / {fmt(r['tern_auth_cpu_per_1k'], 3)} / "
                  f"{fmt(r['postfix_auth_cpu_per_1k'], 3)} "
                  f"| {fmt(dq.get('tern-auth'), 2)} / {fmt(dq.get('postfix-auth'), 2)} | {r['rounds']} |")
    md.append("")
    for r in rows:
        md.append(f"Rates of the rounds ({r['sessions']} sessions, {r['mode']}): " + "; ".join(
            f"{NAMES[s]} {', '.join(fmt(v) for v in r['rates'][s]) or '-'}" for s in MA_SERVERS) + ".")
    md.append("")
    last = [r for r in runs if r.get("server") == "postfix-auth" and r.get("ok")
            and r.get("cpu_ms_per_msg_by_name") and r.get("round", 0) >= 1]
    if last:
        r = last[-1]
        md.append(f"Where Postfix's CPU goes (round {r['round']}, {r['sessions']} sessions, ms per "
                  f"message by process name, live processes of its cgroup; total "
                  f"{fmt(r.get('cpu_per_1k'), 2)} ms): " + ", ".join(
                      f"{k} {v:.2f}" for k, v in sorted(r["cpu_ms_per_msg_by_name"].items(),
                                                         key=lambda kv: -kv[1])[:8]) + ".")
        md.append("")
    if lat:
        md.append("Final-dot latency with 200 distinct signed messages in turn, at half of the peak "
                  "rate of Tern with checks (both Terns at the same offered load):")
        md.append("")
        md.append("| server | offered msgs/s | achieved msgs/s | samples | p50 ms | p90 ms | p99 ms "
                  "| max ms | late starts | errors |")
        md.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s, d in lat.items():
            md.append(f"| {NAMES.get(s, s)} | {d['offered_rate']} | {d['achieved_rate']} "
                      f"| {d['samples']} | {fmt(d['p50_ms'], 2)} | {fmt(d['p90_ms'], 2)} "
                      f"| {fmt(d['p99_ms'], 2)} | {fmt(d['max_ms'], 2)} | {d['late_starts']} "
                      f"| {d['errors']} |")
        md.append("")
    if dns:
        md.append(f"DNS server: {dns.get('queries')} questions in all ({dns.get('udp')} UDP, "
                  f"{dns.get('tcp')} TCP): " + ", ".join(
                      f"{k} {v}" for k, v in sorted(dns.get("by_question", {}).items(),
                                                     key=lambda kv: -kv[1])) + ".")
        md.append("")
    return md


def bench_line(b):
    name = b.get("name", "?")
    t = b.get("cpu_time", b.get("real_time", 0))
    unit = b.get("time_unit", "ns") + " cpu"
    extra = []
    if "bytes_per_second" in b:
        extra.append(f"{b['bytes_per_second'] / 1e6:,.1f} MB/s")
    if "items_per_second" in b:
        extra.append(f"{b['items_per_second'] / 1e6:,.2f} M items/s")
    return f"{name:40} {t:12,.0f} {unit}  {'  '.join(extra)}"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
