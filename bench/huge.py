#!/usr/bin/python3
"""Huge-message cell: one message of --size-mib MiB sent to a server that
relays it to a sink on loopback, and the memory that costs the server.

Runs, per round:
  tern         a Tern of its own (started here: [[route]] to the sink, so no
               DNS), the message relayed to the sink;
  tern-local   the same Tern, the message for a local mailbox (Maildir);
  postfix      a Postfix instance that bench/run.sh started (relayhost = the
               sink), when --postfix-port is given.
For each: the time from MAIL FROM to the 250 after the final dot
(receive_s), to the sink's end of data (relayed_s) or the Maildir file
(delivered_s), and the memory growth during the transfer:
  Tern: VmHWM (peak RSS, reset through /proc/PID/clear_refs just before)
        minus VmRSS before, and the sampled VmRSS peak minus before;
  Postfix: the sum of Pss (smaps_rollup) over the instance's processes,
        sampled every few ms, peak minus before; and the largest VmHWM of a
        single process of the instance.
The sink (in this process) does not keep the message: it dot-unstuffs and
hashes it as it arrives, and the hash must match what was sent. It offers
no CHUNKING (Postfix's client has no BDAT), so both servers use DATA.

Writes one JSON object per (server, round) to --out (JSON lines)."""

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from benchlib import log, rss_kib, status_kib, tree_pids, wait_smtp

DOMAIN = "far.bench.test"   # routed to the sink


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return None


def make_message(marker, size):
    """About `size` octets of 7-bit CRLF text: 76- and 990-octet lines (no
    line over 998: Postfix's client would fold it), every 97th line
    starting with a "." (stuffed on the wire)."""
    head = (f"X-Huge-Bench: {marker}\r\nFrom: <sender@bench.test>\r\n"
            f"To: <sink@{DOMAIN}>\r\nSubject: huge message {marker}\r\n"
            f"Message-ID: <{marker}@bench.test>\r\n"
            f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n").encode()
    short = b"0123456789 The quick brown fox jumps over the lazy dog 0123456789 abcdefg\r\n"
    long_ = (b"x" * 988) + b"\r\n"
    block = bytearray()
    for i in range(97):
        line = long_ if i % 7 == 3 else short
        block += (b"." + line[1:]) if i == 0 else line
    n = max(1, (size - len(head)) // len(block))
    return head + bytes(block) * n


def dot_stuff(data):
    # The message is CRLF lines throughout: a "." after CRLF (and at the
    # very start) gets another.
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b".\r\n"


class Sink:
    """A streaming SMTP sink (no CHUNKING): hashes each message from its
    X-Huge-Bench line on, notes when its final dot arrived."""

    def __init__(self, ip, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.done = {}   # marker -> {"t": monotonic, "sha256": ..., "size": ...}
        self.cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb", buffering=1 << 20)
        say = lambda text: conn.sendall(text.encode() + b"\r\n")
        try:
            say("220 sink.bench.test ESMTP")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    say("250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                        "250 SIZE 1073741824")
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    say("250 2.0.0 ok")
                elif verb == b"DATA":
                    say("354 go ahead")
                    self._data(f)
                    say("250 2.0.0 ok")
                elif verb == b"QUIT":
                    say("221 2.0.0 bye")
                    return
                else:
                    say("502 5.5.1 not here")
        except OSError:
            pass
        finally:
            conn.close()

    def _data(self, f):
        h = None
        marker = None
        size = 0
        while True:
            line = f.readline()
            if not line:
                raise OSError("EOF in DATA")
            if line == b".\r\n":
                break
            if line[:1] == b".":
                line = line[1:]
            if h is None and line.startswith(b"X-Huge-Bench: "):
                h = hashlib.sha256()
                marker = line.split()[1].decode()
            if h is not None:
                h.update(line)
                size += len(line)
        t = time.monotonic()
        with self.cond:
            self.done[marker] = {"t": t, "sha256": h.hexdigest() if h else None, "size": size}
            self.cond.notify_all()

    def wait(self, marker, timeout):
        with self.cond:
            self.cond.wait_for(lambda: marker in self.done, timeout)
            return self.done.get(marker)


class Sampler:
    """Samples memory of some processes every `interval` seconds."""

    def __init__(self, pids_fn, interval, pss):
        self.pids_fn = pids_fn
        self.interval = interval
        self.pss = pss
        self.peak_sum = 0
        self.peak_hwm = {}   # pid -> largest VmHWM seen
        self.samples = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self):
        total = 0
        for pid in self.pids_fn():
            v = pss_kib(pid) if self.pss else status_kib(pid, "VmRSS")
            if v is None:
                continue
            total += v
            hwm = status_kib(pid, "VmHWM")
            if hwm is not None:
                self.peak_hwm[pid] = max(self.peak_hwm.get(pid, 0), hwm)
        return total

    def _run(self):
        while not self.stop:
            self.peak_sum = max(self.peak_sum, self.snapshot())
            self.samples += 1
            time.sleep(self.interval)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop = True
        self.thread.join()
        self.peak_sum = max(self.peak_sum, self.snapshot())


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux 4.0+, clear_refs "5")."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise OSError("connection closed")
        lines.append(line.decode("latin-1").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] == b" ":
            return int(lines[-1][:3]), lines


def send(port, rcpt, wire, timeout):
    """One transaction; returns (t_mail, t_accepted)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        code, _ = read_reply(f)
        assert code == 220, code
        s.sendall(b"EHLO client.bench.test\r\n")
        code, lines = read_reply(f)
        assert code == 250, lines
        t0 = time.monotonic()
        s.sendall(f"MAIL FROM:<sender@bench.test> SIZE={len(wire)}\r\n".encode())
        code, lines = read_reply(f)
        assert code == 250, lines
        s.sendall(f"RCPT TO:<{rcpt}>\r\n".encode())
        code, lines = read_reply(f)
        assert code == 250, lines
        s.sendall(b"DATA\r\n")
        code, lines = read_reply(f)
        assert code == 354, lines
        view = memoryview(wire)
        for off in range(0, len(wire), 1 << 20):
            s.sendall(view[off:off + (1 << 20)])
        code, lines = read_reply(f)
        t1 = time.monotonic()
        assert code == 250, lines
        s.sendall(b"QUIT\r\n")
        try:
            read_reply(f)
        except OSError:
            pass
        return t0, t1


def maildir_new(path):
    try:
        return set(os.listdir(os.path.join(path, "new")))
    except FileNotFoundError:
        return set()


class Tern:
    def __init__(self, args):
        self.dir = os.path.join(args.work, "tern-huge")
        self.conf = os.path.join(args.work, "tern-huge.toml")
        self.log_path = os.path.join(args.logs, "tern-huge.log")
        self.port = args.tern_port
        self.maildir = os.path.join(self.dir, "mail", "bench.test", "user", "Maildir")
        os.makedirs(self.dir, exist_ok=True)
        sink_ip, sink_port = args.sink.rsplit(":", 1)
        size = max(64, args.size_mib * 2) * 1024 * 1024
        with open(self.conf, "w") as f:
            f.write(f'''# Tern huge-message cell (generated by bench/huge.py)
hostname = "mx.bench.test"
data_dir = "{self.dir}"
domains = ["bench.test"]
trusted_networks = ["127.0.0.0/8"]
threads = 1
delivery_threads = 1

[log]
level = "warn"

[[listen]]
address = "127.0.0.1:{self.port}"
service = "smtp"

[smtp]
max_message_size = {size}

[mailauth]
verify = false

# Never a resolver off this machine; the route needs none.
[dns]
upstream = ["127.0.0.1:9"]

[[route]]
domain = "{DOMAIN}"
relay = "{sink_ip}:{sink_port}"
tls = "none"
''')
        subprocess.run([args.tern, "user", "add", "user@bench.test", "--config", self.conf],
                       input=b"bench-password\n", check=True, timeout=60,
                       stdout=subprocess.DEVNULL)
        cmd = [args.tern, "serve", "--config", self.conf]
        if args.server_cpus:
            cmd = ["taskset", "-c", args.server_cpus] + cmd
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        if not wait_smtp("127.0.0.1", self.port, 30):
            self.stop()
            raise RuntimeError("Tern (huge) did not start")
        self.pid = self.proc.pid   # taskset execs Tern: the same pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def postfix_pids(spec):
    kind, _, arg = spec.partition(":")
    if kind == "cg":
        try:
            with open(os.path.join(arg, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []
    return tree_pids(int(arg))


def run_one(args, server, sink, wire, marker, want):
    """One transfer; returns the record."""
    rec = {"server": server, "size": len(want), "marker": marker}
    if server.startswith("tern"):
        pid = args.tern_obj.pid
        time.sleep(args.settle)
        rss0 = rss_kib(pid)
        rec["rss_before_kib"] = rss0
        rec["hwm_reset"] = reset_hwm(pid)
        sampler = Sampler(lambda: [pid], 0.005, pss=False)
    else:
        time.sleep(args.settle)
        pids = lambda: postfix_pids(args.postfix_pids)
        sampler = Sampler(pids, 0.01, pss=True)
        rss0 = sampler.snapshot()
        sampler.peak_hwm = {}
        rec["pss_before_kib"] = rss0
    rcpt = "user@bench.test" if server == "tern-local" else f"sink@{DOMAIN}"
    before = maildir_new(args.tern_obj.maildir) if server == "tern-local" else None
    port = args.postfix_port if server == "postfix" else args.tern_port
    sampler.start()
    try:
        t0, t1 = send(port, rcpt, wire, args.timeout)
        rec["receive_s"] = round(t1 - t0, 3)
        if server == "tern-local":
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                fresh = maildir_new(args.tern_obj.maildir) - before
                if fresh:
                    rec["delivered_s"] = round(time.monotonic() - t0, 3)
                    path = os.path.join(args.tern_obj.maildir, "new", fresh.pop())
                    with open(path, "rb") as f:
                        got = f.read()
                    i = got.find(b"X-Huge-Bench: ")
                    # (a Maildir file may have LF line ends)
                    rec["ok"] = i >= 0 and got[i:] in (want, want.replace(b"\r\n", b"\n"))
                    os.unlink(path)
                    break
                time.sleep(0.005)
            else:
                rec["ok"] = False
                rec["error"] = "not delivered to the Maildir in time"
        else:
            got = sink.wait(marker, args.timeout)
            if got is None:
                rec["ok"] = False
                rec["error"] = "not relayed to the sink in time"
            else:
                rec["relayed_s"] = round(got["t"] - t0, 3)
                rec["ok"] = got["sha256"] == hashlib.sha256(want).hexdigest()
                if not rec["ok"]:
                    rec["error"] = f"the sink got {got['size']} octets that differ from the {len(want)} sent"
        time.sleep(0.2)  # the tail of the transfer (Tern: its queue clean-up)
    finally:
        sampler.finish()
    if server.startswith("tern"):
        hwm = status_kib(args.tern_obj.pid, "VmHWM") if rec["hwm_reset"] else None
        rec["hwm_after_kib"] = hwm
        rec["rss_peak_sampled_kib"] = sampler.peak_sum
        peak = max(hwm or 0, sampler.peak_sum)
        rec["growth_mib"] = round((peak - rss0) / 1024, 1)
    else:
        rec["pss_peak_kib"] = sampler.peak_sum
        rec["growth_mib"] = round((sampler.peak_sum - rss0) / 1024, 1)
        rec["largest_process_hwm_mib"] = round(max(sampler.peak_hwm.values(), default=0) / 1024, 1)
    rec["samples"] = sampler.samples
    return rec


# --- report (bench/report.py --huge FILE calls this) ---------------------

HUGE_NAMES = {"tern": "Tern, relayed", "tern-local": "Tern, to a Maildir",
              "postfix": "Postfix, relayed"}
GOAL_MIB = 16


def report(path):
    """The cell's part of the report: {"rows", "targets", "text", "md",
    "runs"} from the records in `path`."""
    import statistics
    runs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    rows = []
    for server in ("tern", "tern-local", "postfix"):
        ok = [r for r in runs if r.get("server") == server and r.get("ok")]
        if not ok:
            continue
        med = lambda k: (statistics.median([r[k] for r in ok if r.get(k) is not None])
                         if any(r.get(k) is not None for r in ok) else None)
        rows.append({
            "server": server, "rounds": len(ok),
            "size_mib": round(ok[0]["size"] / 1048576, 1),
            "growth_mib_max": max(r["growth_mib"] for r in ok),
            "growth_mib_median": med("growth_mib"),
            "receive_s": med("receive_s"),
            "done_s": med("relayed_s") if server != "tern-local" else med("delivered_s"),
            # Peak RSS of the process (Tern) or of the largest process
            # of the instance (Postfix), whole, not growth.
            "peak_mib": (max(r.get("largest_process_hwm_mib", 0) for r in ok)
                         if server == "postfix" else
                         round(max((r.get("hwm_after_kib") or r.get("rss_peak_sampled_kib") or 0)
                                   for r in ok) / 1024, 1)),
        })
    failed = [r for r in runs if not r.get("ok")]
    by = {r["server"]: r for r in rows}
    f1 = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    targets = []
    t = by.get("tern")
    targets.append({"target": "huge message (relayed): Tern's RSS growth",
                    "measured": f"{f1(t and t['growth_mib_max'])} MiB",
                    "goal": f"< {GOAL_MIB} MiB",
                    "result": "n/a" if not t else
                    ("PASS" if t["growth_mib_max"] < GOAL_MIB and not failed else "FAIL")})
    text = ["", "Huge message (one message relayed to a sink on loopback; growth: "
            "peak memory during the transfer minus before; max over rounds):"]
    for r in rows:
        extra = (f", peak RSS {f1(r['peak_mib'])} MiB"
                 + (" (largest process)" if r["server"] == "postfix" else ""))
        text.append(f"  {HUGE_NAMES[r['server']]}: {r['size_mib']} MiB, growth "
                    f"{f1(r['growth_mib_max'])} MiB{extra}; received in {f1(r['receive_s'], 2)} s, "
                    f"{'in the Maildir' if r['server'] == 'tern-local' else 'at the sink'} after "
                    f"{f1(r['done_s'], 2)} s ({r['rounds']} rounds)")
    for r in failed:
        text.append(f"  FAILED {r.get('server')} round {r.get('round')}: {r.get('error')}")
    md = ["## Huge message", "",
          "One message (7-bit text, lines up to 990 octets, every 97th line starting "
          "with a dot) sent over one connection, relayed to a sink on loopback that hashes "
          "it as it arrives (it must match), by a Tern with a `[[route]]` to the sink and by "
          "Postfix with `relayhost` (bench/huge.py). Received: MAIL FROM to the 250 after "
          "the final dot; relayed: to the sink's end of data (Maildir: to the file in "
          "`new/`). Memory growth is the peak during the transfer minus the figure just "
          "before: Tern's VmHWM (reset through clear_refs) over its VmRSS; Postfix's "
          "sum of Pss over the instance's processes, sampled every 10 ms. Peak RSS: Tern's "
          "VmHWM, whole; the largest VmHWM of a Postfix process. Median times, largest "
          "figures over the rounds.", "",
          "| server | size MiB | memory growth MiB | peak RSS MiB | received s "
          "| relayed / delivered s | rounds |",
          "|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        md.append(f"| {HUGE_NAMES[r['server']]} | {r['size_mib']} | {f1(r['growth_mib_max'])} "
                  f"| {f1(r['peak_mib'])} | {f1(r['receive_s'], 2)} "
                  f"| {f1(r['done_s'], 2)} | {r['rounds']} |")
    for r in failed:
        md.append(f"\nFAILED: {HUGE_NAMES.get(r.get('server'), r.get('server'))} round "
                  f"{r.get('round')}: {r.get('error')}")
    md.append("")
    return {"rows": rows, "targets": targets, "text": text, "md": md, "runs": runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--logs", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size-mib", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tern-port", type=int, default=2760)
    ap.add_argument("--sink", default="127.0.76.1:2762")
    ap.add_argument("--postfix-port", type=int, default=0)
    ap.add_argument("--postfix-pids", default="",
                    help="cg:CGROUP_DIR or tree:MASTER_PID (the Postfix instance)")
    ap.add_argument("--server-cpus", default="", help="taskset CPU list for Tern")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    args.logs = args.logs or args.work
    os.makedirs(args.work, exist_ok=True)
    sink_ip, sink_port = args.sink.rsplit(":", 1)
    if not sink_ip.startswith("127."):
        sys.exit("the sink must be on a loopback address")

    # run.sh's clean-up sends TERM: Tern (ours) is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    size = args.size_mib * 1024 * 1024
    sink = Sink(sink_ip, int(sink_port))
    args.tern_obj = Tern(args)
    servers = ["tern", "tern-local"] + (["postfix"] if args.postfix_port else [])
    failed = False
    try:
        log(f"huge: {args.size_mib} MiB message, {args.rounds} round(s), servers {' '.join(servers)}")
        for rnd in range(1, args.rounds + 1):
            for server in servers:
                marker = f"{server}-{rnd}-{os.getpid()}"
                want = make_message(marker, size)
                wire = dot_stuff(want)
                try:
                    rec = run_one(args, server, sink, wire, marker, want)
                except (OSError, AssertionError) as e:
                    rec = {"server": server, "ok": False, "error": str(e)}
                del want, wire
                rec["round"] = rnd
                if not rec.get("ok"):
                    failed = True
                log(f"huge {server} round {rnd}: " + json.dumps(
                    {k: v for k, v in rec.items() if k not in ("marker",)}))
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if args.tern_obj.proc.poll() is not None:
                log("huge: Tern exited")
                failed = True
                break
    finally:
        args.tern_obj.stop()
        sink.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
