#!/usr/bin/python3
"""The relaying cell: mail submitted for many remote domains, relayed by the
server under test to smtp-sink instances that stand for those domains' MX
hosts, measured from the first submission to the moment the server's
queue is empty (every message has had its remote 250).

  relay.py zone --out ZONE.json --domains 100 --net 127.0.74
      the zone for dnsserver.py: dNNN.relay.test MX 10 mxNNN.relay.test,
      mxNNN.relay.test A 127.0.74.(NNN+1)
  relay.py run --port P --queue DIR [--queue DIR ...] --count 10000
          --domains 100 --sessions 32 --size 1024 --sink-port 2741
          --cpu SPEC --out RESULT.json
      submits COUNT messages round-robin over the domains on SESSIONS
      pipelining connections, then waits for the queue directories to hold
      no files; samples the established connections to the sinks meanwhile
  relay.py sinks FILE...      sums smtp-sink -c counters (msgs, sessions)
  relay.py report FILE...     Markdown table of run results

Standard library only; run with /usr/bin/python3."""

import argparse
import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def domain(i):
    return f"d{i:03d}.relay.test"


def cmd_zone(a):
    recs = []
    for i in range(a.domains):
        mx = f"mx{i:03d}.relay.test"
        recs.append({"name": domain(i), "type": "MX", "value": f"10 {mx}"})
        recs.append({"name": mx, "type": "A", "value": f"{a.net}.{i + 1}"})
    with open(a.out, "w") as f:
        json.dump({"origin": "relay.test", "ttl": 3600, "records": recs}, f)


def count_files(dirs):
    n = 0
    for d in dirs:
        stack = [d]
        while stack:
            p = stack.pop()
            try:
                with os.scandir(p) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        else:
                            n += 1
            except FileNotFoundError:
                pass
    return n


def sink_connections(port):
    """Established TCP connections whose remote end is :port (the
    server's side of each connection to a sink), by remote address."""
    by_addr = {}
    hexport = f"{port:04X}"
    for path in ("/proc/net/tcp",):
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                rem, st = parts[2], parts[3]
                if st != "01" or not rem.endswith(":" + hexport):
                    continue
                ip = socket.inet_ntoa(bytes.fromhex(rem.split(":")[0])[::-1])
                by_addr[ip] = by_addr.get(ip, 0) + 1
    return by_addr


async def read_replies(reader, n):
    """Reads n SMTP replies; returns their codes."""
    codes = []
    while len(codes) < n:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] == b"-":
            continue
        codes.append(int(line[:3]))
    return codes


async def session(host, port, queue, body, errors, accepted):
    reader, writer = await asyncio.open_connection(host, port)
    await read_replies(reader, 1)
    writer.write(b"EHLO injector.bench.test\r\n")
    await read_replies(reader, 1)
    while True:
        try:
            i = queue.pop()
        except IndexError:
            break
        rcpt = f"u{i}@{domain(i % ARGS.domains)}"
        writer.write(f"MAIL FROM:<sender@injector.bench.test>\r\nRCPT TO:<{rcpt}>\r\n"
                     "DATA\r\n".encode())
        codes = await read_replies(reader, 3)
        if codes[0] != 250 or codes[1] != 250 or codes[2] != 354:
            errors.append(f"{rcpt}: {codes}")
            writer.write(b"RSET\r\n")
            await read_replies(reader, 1)
            continue
        writer.write(body)
        code = (await read_replies(reader, 1))[0]
        if code != 250:
            errors.append(f"{rcpt}: DATA {code}")
        else:
            accepted[0] += 1
    writer.write(b"QUIT\r\n")
    try:
        await read_replies(reader, 1)
    except ConnectionError:
        pass
    writer.close()


def make_body(size):
    head = (b"From: sender@injector.bench.test\r\nTo: someone@relay.test\r\n"
            b"Subject: relay bench\r\n\r\n")
    line = b"x" * 76 + b"\r\n"
    body = head
    while len(body) < size:
        body += line
    return body + b".\r\n"


async def inject(a, state):
    queue = list(range(a.count))[::-1]
    body = make_body(a.size)
    errors, accepted = [], [0]
    tasks = [session("127.0.0.1", a.port, queue, body, errors, accepted)
             for _ in range(a.sessions)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, Exception):
            errors.append(f"session: {r!r}")
    state["accepted"] = accepted[0]
    state["errors"] = errors


def cmd_run(a):
    global ARGS
    ARGS = a
    state = {}
    cpu0 = benchlib.cpu_seconds(a.cpu)
    t0 = time.monotonic()
    asyncio.run(inject(a, state))
    t_acc = time.monotonic()
    # The queue empties when every message had its remote 250. Sample the
    # connections to the sinks while waiting.
    max_total, max_per_dest, samples, busy_sum = 0, 0, 0, 0
    dests_seen = set()
    deadline = t_acc + a.timeout
    left = None
    while time.monotonic() < deadline:
        conns = sink_connections(a.sink_port)
        total = sum(conns.values())
        max_total = max(max_total, total)
        if conns:
            max_per_dest = max(max_per_dest, max(conns.values()))
        dests_seen.update(conns)
        samples += 1
        busy_sum += total
        left = count_files(a.queue)
        if left == 0:
            break
        time.sleep(0.02)
    t_done = time.monotonic()
    cpu1 = benchlib.cpu_seconds(a.cpu)
    res = {
        "server": a.label, "count": a.count, "domains": a.domains,
        "sessions": a.sessions, "size": a.size, "accepted": state["accepted"],
        "errors": state["errors"][:10], "error_count": len(state["errors"]),
        "accept_s": round(t_acc - t0, 3), "relay_s": round(t_done - t0, 3),
        "left_in_queue": left,
        "msgs_per_s": round(a.count / (t_done - t0), 1) if left == 0 else None,
        "cpu_s": None if cpu0 is None else round(cpu1 - cpu0, 3),
        "max_connections": max_total, "max_per_destination": max_per_dest,
        "avg_connections": round(busy_sum / max(samples, 1), 1),
        "destinations_seen": len(dests_seen),
        "ok": left == 0 and not state["errors"] and state["accepted"] == a.count,
    }
    with open(a.out, "w") as f:
        json.dump(res, f)
    print(json.dumps(res))
    return 0 if res["ok"] else 1


def cmd_sinks(a):
    msgs = sess = 0
    for p in a.files:
        try:
            with open(p, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        last = data.replace(b"\n", b"\r").split(b"\r")
        fields = {}
        for rec in reversed(last):
            if rec.startswith(b"sess="):
                fields = dict(kv.split(b"=") for kv in rec.split())
                break
        msgs += int(fields.get(b"mesg", 0))
        sess += int(fields.get(b"sess", 0))
    print(json.dumps({"sink_msgs": msgs, "sink_sessions": sess}))


def cmd_merge(a):
    """Adds the sink counters (JSON on stdin) to a run result."""
    with open(a.result) as f:
        res = json.load(f)
    res.update(json.load(sys.stdin))
    if res.get("sink_msgs") is not None and res["sink_msgs"] != res["count"]:
        res["ok"] = False
        res.setdefault("errors", []).append(
            f"sinks got {res['sink_msgs']} messages, expected {res['count']}")
    with open(a.result, "w") as f:
        json.dump(res, f)


def cmd_report(a):
    rows = []
    for p in a.files:
        rows.extend(benchlib.read_jsonl(p))
    if not rows:
        return
    print("| server | round | msgs | domains | accepted in s | relayed in s | msgs/s "
          "| CPU s/1k msgs | connections (sink sessions) | msgs per connection "
          "| max concurrent | max per destination | ok |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for r in rows:
        cpu = r.get("cpu_s")
        sess = r.get("sink_sessions")
        cpu_txt = "-" if cpu is None else f"{cpu * 1000 / r['count']:.3f}"
        per_conn = f"{r['count'] / sess:.1f}" if sess else "-"
        ok = "yes" if r.get("ok") else "NO"
        print(f"| {r['server']} | {r.get('round', 1)} | {r['count']:,} | {r['domains']} "
              f"| {r['accept_s']:.2f} | {r['relay_s']:.2f} | {r['msgs_per_s'] or '-'} "
              f"| {cpu_txt} | {sess if sess is not None else '-'} | {per_conn} "
              f"| {r['max_connections']} | {r['max_per_destination']} | {ok} |")
    by = {}
    for r in rows:
        if r.get("ok") and r.get("msgs_per_s"):
            by.setdefault(r["server"], []).append(r["msgs_per_s"])
    if "tern" in by and "postfix" in by:
        t = sorted(by["tern"])[len(by["tern"]) // 2]
        p = sorted(by["postfix"])[len(by["postfix"]) // 2]
        print(f"\nTern/Postfix (median msgs/s): **{t / p:.2f}x** ({t} against {p}).")


def cmd_scale_report(a):
    """The scaling cell (cell.py records of tern-t1 and tern-t2)."""
    rows = []
    for p in a.files:
        rows.extend(benchlib.read_jsonl(p))
    by = {}
    for r in rows:
        if not r.get("error") and r.get("rate"):
            by.setdefault(r["server"], []).append(r)
    print("1 KiB messages, 32 sessions, a new connection per message; neither "
          "server pinned, the load generator on its own core.\n")
    print("| Tern | rounds | msgs/s (median) | CPU s/1k msgs |")
    print("|---|--:|--:|--:|")
    med = {}
    for name, label in (("tern-t1", "threads = 1"), ("tern-t2", "threads = 2")):
        rs = sorted(by.get(name, []), key=lambda r: r["rate"])
        if not rs:
            print(f"| {label} | 0 | - | - |")
            continue
        m = rs[len(rs) // 2]
        med[name] = m["rate"]
        cpu = m.get("cpu_s")
        cpu_txt = f"{cpu * 1000 / m['count']:.3f}" if cpu and m.get("count") else "-"
        print(f"| {label} | {len(rs)} | {m['rate']:,.0f} | {cpu_txt} |")
    if len(med) == 2:
        print(f"\nA second thread (and core) gives **{med['tern-t2'] / med['tern-t1']:.2f}x**.")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    z = sub.add_parser("zone")
    z.add_argument("--out", required=True)
    z.add_argument("--domains", type=int, default=100)
    z.add_argument("--net", default="127.0.74")
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--queue", action="append", required=True)
    r.add_argument("--count", type=int, default=10000)
    r.add_argument("--domains", type=int, default=100)
    r.add_argument("--sessions", type=int, default=32)
    r.add_argument("--size", type=int, default=1024)
    r.add_argument("--sink-port", type=int, default=2741)
    r.add_argument("--cpu", default="none")
    r.add_argument("--label", required=True)
    r.add_argument("--timeout", type=float, default=300)
    r.add_argument("--out", required=True)
    s = sub.add_parser("sinks")
    s.add_argument("files", nargs="*")
    m = sub.add_parser("merge")
    m.add_argument("result")
    rp = sub.add_parser("report")
    rp.add_argument("files", nargs="*")
    sr = sub.add_parser("scale-report")
    sr.add_argument("files", nargs="*")
    a = ap.parse_args()
    return {"scale-report": cmd_scale_report, "zone": cmd_zone, "run": cmd_run, "sinks": cmd_sinks, "merge": cmd_merge,
            "report": cmd_report}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
