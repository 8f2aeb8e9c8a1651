"""The TLS cell's part of the report (bench/tls_cell.sh, tls_load.py):
STARTTLS throughput of Tern, Postfix and the TLS sink with full and resumed
handshakes, and the memory of idle TLS sessions. Used by report.py."""

import json
import statistics

SERVERS = (("tern-tls", "Tern"), ("postfix-tls", "Postfix"), ("tls-sink", "TLS sink"))
MODES = ((False, "full handshake"), (True, "resumed (TLS 1.3 ticket)"))


def _med(vals, digits=1):
    return round(statistics.median(vals), digits) if vals else None


def _fmt(v, digits=0, suffix=""):
    return "-" if v is None else f"{v:,.{digits}f}{suffix}"


def tls_summary(runs, idle_paths):
    rows = []
    for resume, name in MODES:
        row = {"resume": resume, "mode": name, "rates": {}, "cpu_per_1k": {}, "resumed": {}}
        for server, _ in SERVERS:
            ok = [r for r in runs if r.get("server") == server and r.get("resume") == resume
                  and r.get("ok") and r.get("round", 0) >= 1]
            row["rates"][server] = [r["rate"] for r in ok]
            row[server] = _med([r["rate"] for r in ok])
            row["cpu_per_1k"][server] = _med([r["cpu_per_1k"] for r in ok if "cpu_per_1k" in r], 3)
            row["resumed"][server] = sum(r.get("resumed", 0) for r in ok), sum(r.get("sent", 0) for r in ok)
        t, p, s = row["tern-tls"], row["postfix-tls"], row["tls-sink"]
        row["tern_vs_postfix"] = round(t / p, 2) if t and p else None
        row["tern_vs_sink"] = round(t / s, 2) if t and s else None
        rows.append(row)
    idle = {}
    for path in idle_paths:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        idle[d.get("tls", "?")] = d
    targets = []

    def add(name, value, goal, passed):
        targets.append({"target": name, "measured": value, "goal": goal,
                        "result": "n/a" if passed is None else ("PASS" if passed else "FAIL")})

    for row in rows:
        v = row["tern_vs_postfix"]
        add(f"TLS 1 KiB, 32 sessions, STARTTLS {row['mode']}: Tern/Postfix throughput",
            _fmt(v, 2, "x"), ">= 4x", None if v is None else v >= 4)
    for mode in ("starttls", "implicit"):
        v = idle.get(mode, {}).get("per_conn_kib")
        add(f"idle TLS session memory ({mode}, Tern)", _fmt(v, 1, " KiB"), "<= 20 KiB",
            None if v is None else v <= 20)
    failed = [r for r in runs if not r.get("ok")]
    return {"rows": rows, "idle": idle, "targets": targets, "failed": failed, "runs": runs}


def tls_text(tls):
    out = ["", "TLS (STARTTLS, ECDSA P-256, 1 KiB, new connection per message; msgs/s, median "
           "of rounds; server CPU s per 1,000 messages):"]
    for row in tls["rows"]:
        out.append(f"  {row['mode']}: " + ", ".join(
            f"{n} {_fmt(row[s])} (cpu {_fmt(row['cpu_per_1k'][s], 3)})" for s, n in SERVERS)
            + f"; Tern/Postfix {_fmt(row['tern_vs_postfix'], 2, 'x')}")
    for mode, d in tls["idle"].items():
        out.append(f"  idle TLS sessions ({mode}): {d.get('connections')} to Tern, VmRSS "
                   f"{d.get('rss_before_kib')} -> {d.get('rss_idle_kib')} KiB: "
                   f"{_fmt(d.get('per_conn_kib'), 1)} KiB each")
    for r in tls["failed"][:10]:
        out.append(f"  FAILED {r.get('server')} resume={r.get('resume')} round {r.get('round')}: "
                   f"{r.get('error')}")
    return out


def tls_md(tls):
    md = ["## TLS", "",
          "The 1 KiB inbound cell over STARTTLS (RFC 3207): 32 sessions, a new TCP connection "
          "and TLS session per message, both servers with the same ECDSA P-256 certificate "
          "(Postfix: `smtpd_tls_security_level = may`, tlsmgr for its ticket keys). "
          "smtp-source cannot do STARTTLS, so `tern_tls_load` (bench/tls_load.cc, a thread per "
          "session, on the load core) sends the mail; its own ceiling is the TLS sink row (the "
          "same generator against `tern_tls_load --sink` on the server core). Resumed: each "
          "session offers the TLS 1.3 ticket of its previous connection.", "",
          "| handshake | Tern msgs/s | Postfix msgs/s | TLS sink msgs/s | Tern/Postfix | Tern/sink "
          "| CPU s/1k msgs (Tern / Postfix) | resumed (Tern / Postfix) |",
          "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for row in tls["rows"]:
        res = row["resumed"]
        md.append(f"| {row['mode']} | {_fmt(row['tern-tls'])} | {_fmt(row['postfix-tls'])} "
                  f"| {_fmt(row['tls-sink'])} | {_fmt(row['tern_vs_postfix'], 2, 'x')} "
                  f"| {_fmt(row['tern_vs_sink'], 2, 'x')} "
                  f"| {_fmt(row['cpu_per_1k']['tern-tls'], 3)} / {_fmt(row['cpu_per_1k']['postfix-tls'], 3)} "
                  f"| {res['tern-tls'][0]}/{res['tern-tls'][1]} / "
                  f"{res['postfix-tls'][0]}/{res['postfix-tls'][1]} |")
    md.append("")
    for row in tls["rows"]:
        md.append(f"Rates of the rounds ({row['mode']}): " + "; ".join(
            f"{n} {', '.join(_fmt(v) for v in row['rates'][s]) or '-'}" for s, n in SERVERS) + ".")
    md.append("")
    if tls["idle"]:
        md.append("Idle TLS sessions (`bench/idle.py --tls`, a fresh Tern each): the VmRSS growth "
                  "divided by the sessions, each left idle after its TLS handshake and EHLO.")
        md.append("")
        md.append("| TLS | sessions | VmRSS before KiB | VmRSS idle KiB | KiB per session |")
        md.append("|---|--:|--:|--:|--:|")
        for mode, d in tls["idle"].items():
            md.append(f"| {mode} | {d.get('connections')} | {d.get('rss_before_kib')} "
                      f"| {d.get('rss_idle_kib')} | {_fmt(d.get('per_conn_kib'), 1)} |")
        md.append("")
    return md
