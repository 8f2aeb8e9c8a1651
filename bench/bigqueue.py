#!/usr/bin/env python3
"""Huge-queue cell (issue 18): Tern restarting with N messages deferred.

The queue is filled by `tern_spoolgen` (the queue's own encoders, so the
files are what the server writes after a 451), every message for a route
whose relay (`Sink451` below, on loopback) answers 451 to each RCPT. Then:

- restart: seconds from exec of `tern serve` to the SMTP port's 220,
  and until the log says recovery finished;
- RSS (VmRSS) at the 220, once recovery is done, and the peak (VmHWM);
- `tern queue list`: seconds to its first line (full listing, `--limit 50`
  and a `--domain` filter), and to its end for the full listing;
- retry spread: RCPTs the sink sees per second during the first
  SPREAD_SECS seconds after the 220 (a stampede would show as one huge
  second).

Usage: bigqueue.py TERN_BIN SPOOLGEN_BIN WORKDIR OUT_JSON [N]
(N defaults to BIGQUEUE_N or 1,000,000). Ports: BIGQ_PORT (SMTP, 2770)
and BIGQ_SINK_PORT (2771). The spool is deleted at the end unless
BIGQ_KEEP=1.
"""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import log, wait_smtp  # noqa: E402

PORT = int(os.environ.get("BIGQ_PORT", "2770"))
SINK_PORT = int(os.environ.get("BIGQ_SINK_PORT", "2771"))
SPREAD_SECS = int(os.environ.get("BIGQ_SPREAD_SECS", "30"))


class Sink451:
    """An SMTP server that greets, accepts MAIL and answers every RCPT with
    451; it counts the RCPTs per second (the delivery attempts)."""

    def __init__(self, port):
        self.port = port
        self.times = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error = None
        self.thread.start()
        self.ready.wait()
        if self.error:
            raise SystemExit(f"bigqueue: sink on 127.0.0.1:{port}: {self.error} (set BIGQ_SINK_PORT)")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._session, "127.0.0.1", self.port, backlog=512))
        except OSError as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _session(self, reader, writer):
        try:
            writer.write(b"220 sink451.bigq.test ESMTP\r\n")
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink451.bigq.test\r\n250 PIPELINING\r\n")
                elif verb == b"RCPT":
                    self.times.append(time.monotonic())
                    writer.write(b"451 4.3.0 try again later\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                elif verb == b"DATA":
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def write_config(work, data):
    cfg = os.path.join(work, "tern.toml")
    with open(cfg, "w") as f:
        f.write(f'''hostname = "mx.bigq.test"
data_dir = "{data}"
domains = ["bigq.test"]
postmaster = "postmaster@bigq.test"
threads = 1
delivery_threads = 1
[log]
level = "info"
[[listen]]
address = "127.0.0.1:{PORT}"
service = "smtp"
[tls]
self_signed = true
[mailauth]
verify = false
sign = false
srs = false
[delivery]
mta_sts = false
tlsrpt = false
[[route]]
domain = "*"
relay = "127.0.0.1:{SINK_PORT}"
''')
    return cfg


def status_kib(pid, key):
    """benchlib.status_kib, with 0 for a process that is gone."""
    return benchlib.status_kib(pid, key) or 0


def first_line_secs(tern, cfg, args):
    """Seconds until `tern queue list ARGS` prints its first line, seconds
    until it ends, and how many lines it printed."""
    start = time.monotonic()
    p = subprocess.Popen([tern, "queue", "list", "--config", cfg] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = None
    lines = 0
    for _ in p.stdout:
        if first is None:
            first = time.monotonic() - start
        lines += 1
    p.wait()
    return first, time.monotonic() - start, lines


def main(argv):
    tern, spoolgen, work, out = argv[1:5]
    n = int(argv[5]) if len(argv) > 5 else int(os.environ.get("BIGQUEUE_N", "1000000"))
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    logf = os.path.join(work, "tern.log")
    result = {"n": n}
    if os.path.isdir(os.path.join(data, "queue", "msg")) and os.environ.get("BIGQ_REUSE") == "1":
        log(f"bigqueue: reusing the spool in {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)
        t0 = time.monotonic()
        subprocess.run([spoolgen, data, str(n), "100", "0"], check=True,
                       stdout=subprocess.DEVNULL)
        result["generate_secs"] = round(time.monotonic() - t0, 1)
        log(f"bigqueue: {n} deferred messages written in {result['generate_secs']} s")
    cfg = write_config(work, data)
    sink = Sink451(SINK_PORT)
    # Cold-ish start: the spool's pages may be cached from the generator;
    # dropping caches needs root and would touch other users' work.
    subprocess.run(["sync"])
    start = time.monotonic()
    with open(logf, "w") as lf:
        proc = subprocess.Popen([tern, "serve", "--config", cfg], stdout=lf, stderr=lf)
    try:
        ok = False
        deadline = start + 600
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", PORT), timeout=60) as s:
                    s.settimeout(60)
                    if s.recv(512).startswith(b"220"):
                        ok = True
                        s.sendall(b"QUIT\r\n")
                        break
            except OSError:
                time.sleep(0.01)
        if not ok:
            raise SystemExit("bigqueue: no 220 from tern")
        result["restart_to_220_secs"] = round(time.monotonic() - start, 2)
        result["rss_at_220_mib"] = round(status_kib(proc.pid, "VmRSS") / 1024, 1)
        log(f"bigqueue: 220 after {result['restart_to_220_secs']} s, RSS {result['rss_at_220_mib']} MiB")
        # Recovery done: the log line "queue: recovered N message(s)".
        while time.monotonic() < deadline:
            with open(logf, errors="replace") as f:
                if "recovered" in f.read():
                    break
            time.sleep(0.05)
        result["recovered_secs"] = round(time.monotonic() - start, 2)
        result["rss_recovered_mib"] = round(status_kib(proc.pid, "VmRSS") / 1024, 1)
        log(f"bigqueue: recovery done after {result['recovered_secs']} s, RSS {result['rss_recovered_mib']} MiB")
        # Attempts per second from the first 220 on.
        t_end = start + result["restart_to_220_secs"] + SPREAD_SECS
        while time.monotonic() < t_end:
            time.sleep(0.2)
        times = [t - start - result["restart_to_220_secs"] for t in list(sink.times)]
        result["attempts_before_220"] = sum(1 for t in times if t < 0)
        per_sec = [0] * SPREAD_SECS
        for t in times:
            if 0 <= t < SPREAD_SECS:
                per_sec[int(t)] += 1
        result["attempts_per_sec"] = per_sec
        result["attempts_max_per_sec"] = max(per_sec) if per_sec else 0
        result["attempts_in_window"] = sum(per_sec)
        log(f"bigqueue: attempts per second over the first {SPREAD_SECS} s after the 220: {per_sec}")
        for name, args in (("full", []), ("limit", ["--limit", "50"]),
                           ("domain", ["--domain", "d7.bigq.test", "--limit", "20"])):
            first, total, lines = first_line_secs(tern, cfg, args)
            result[f"list_{name}_first_line_secs"] = round(first, 3) if first is not None else None
            result[f"list_{name}_total_secs"] = round(total, 2)
            result[f"list_{name}_lines"] = lines
            log(f"bigqueue: queue list {' '.join(args) or '(all)'}: first line {first} s, "
                f"all {total:.2f} s, {lines} lines")
        result["rss_end_mib"] = round(status_kib(proc.pid, "VmRSS") / 1024, 1)
        result["rss_peak_mib"] = round(status_kib(proc.pid, "VmHWM") / 1024, 1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        sink.stop()
        if os.environ.get("BIGQ_KEEP") != "1":
            shutil.rmtree(data, ignore_errors=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
