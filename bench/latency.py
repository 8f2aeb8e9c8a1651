#!/usr/bin/python3
"""Final-dot latency of an SMTP server under a fixed load: sends messages at
--rate per second (an open-loop schedule, one message every 1/rate s) over a
pool of persistent connections, and times each message from the moment the
last byte of "\\r\\n.\\r\\n" is written to the moment its 250 reply is read.
Raw sockets and one selector loop; no pipelining, so every step waits for
its reply. Writes a JSON summary (p50/p99 in ms) to --out.
With --pool DIR it sends the messages in DIR (CRLF files, e.g. the
DKIM-signed ones of mailauth_prep.py) in turn instead of generated ones."""

import argparse
import json
import selectors
import socket
import sys
import time

from benchlib import log, maildir_count, percentile

now = time.perf_counter


class Conn:
    """One client connection and where it is in the SMTP dialogue."""

    def __init__(self, n, addr):
        self.n = n
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.sock.connect_ex(addr)
        self.state = "greeting"
        self.inbuf = b""
        self.out = b""
        self.t_dot = 0.0     # when the final dot was written
        self.t_start = 0.0   # when the message was scheduled
        self.msgno = 0
        self.events = selectors.EVENT_READ


def build_body(n, size, sender, rcpt):
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: latency probe {n}\r\n"
            f"Message-ID: <{n}.{time.time_ns()}@client.bench.test>\r\n\r\n")
    line = "x" * 78 + "\r\n"
    body = line * (size // len(line)) + "y" * (size % len(line)) + "\r\n"
    return (head + body + ".\r\n").encode()


def load_pool(directory):
    """Every file in directory, dot-stuffed and ended with CRLF.CRLF."""
    import os
    out = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        if data.startswith(b"."):
            data = b"." + data
        out.append(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    if not out:
        raise SystemExit(f"latency.py: no messages in {directory}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--server", default="server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="messages per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds not sampled")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--sender", default="sender@client.test")
    ap.add_argument("--rcpt", default="user@bench.test")
    ap.add_argument("--helo", default="client.bench.test")
    ap.add_argument("--pool", default="", help="directory of messages to send in turn")
    ap.add_argument("--maildir", default="", help="check that every accepted message arrives")
    ap.add_argument("--delivery-timeout", type=float, default=120.0)
    ap.add_argument("--peak", type=float, default=0.0, help="recorded in the output only")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    addr = (args.host, args.port)
    sel = selectors.DefaultSelector()
    conns = []
    idle = []
    samples = []
    errors = []
    stats = {"sent": 0, "ok": 0, "late": 0, "max_lag": 0.0}
    base = maildir_count(args.maildir) if args.maildir else 0
    mail_cmd = f"MAIL FROM:<{args.sender}>\r\n".encode()
    rcpt_cmd = f"RCPT TO:<{args.rcpt}>\r\n".encode()
    pool = load_pool(args.pool) if args.pool else None

    def send(c, data):
        c.out += data
        flush(c)

    def flush(c):
        try:
            while c.out:
                n = c.sock.send(c.out)
                c.out = c.out[n:]
        except BlockingIOError:
            pass
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        if events != c.events:
            sel.modify(c.sock, events, c)
            c.events = events
        if not c.out and c.state == "body" and not c.t_dot:
            c.t_dot = now()

    def open_conn(n):
        c = Conn(n, addr)
        sel.register(c.sock, selectors.EVENT_READ, c)
        conns.append(c)
        return c

    def drop(c, why):
        errors.append(why)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        if c in conns:
            conns.remove(c)
        if c in idle:
            idle.remove(c)
        if len(errors) < 1000 and not stopping[0]:
            open_conn(c.n)   # keep the pool at full size

    def on_reply(c, code, text):
        st = c.state
        if st == "greeting":
            if code != 220:
                return drop(c, f"greeting: {text}")
            c.state = "ehlo"
            send(c, f"EHLO {args.helo}\r\n".encode())
        elif st == "ehlo":
            if code != 250:
                return drop(c, f"EHLO: {text}")
            c.state = "idle"
            idle.append(c)
        elif st == "mail":
            if code != 250:
                return drop(c, f"MAIL: {text}")
            c.state = "rcpt"
            send(c, rcpt_cmd)
        elif st == "rcpt":
            if code != 250 and code != 251:
                return drop(c, f"RCPT: {text}")
            c.state = "data"
            send(c, b"DATA\r\n")
        elif st == "data":
            if code != 354:
                return drop(c, f"DATA: {text}")
            c.state = "body"
            c.t_dot = 0.0
            send(c, pool[c.msgno % len(pool)] if pool else
                 build_body(c.msgno, args.size, args.sender, args.rcpt))
        elif st == "body":
            t = now()
            if code != 250:
                return drop(c, f"final dot: {text}")
            stats["ok"] += 1
            if c.t_start - t0 >= args.warmup and c.t_dot:
                samples.append(t - c.t_dot)
            c.state = "idle"
            idle.append(c)
        elif st == "quit":
            c.state = "closed"
        else:
            drop(c, f"unexpected reply in state {st}: {text}")

    def on_read(c):
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            return drop(c, f"recv: {e}")
        if not data:
            if c.state == "quit" or c.state == "closed":
                sel.unregister(c.sock)
                c.state = "closed"
                return
            return drop(c, f"connection closed by server in state {c.state}")
        c.inbuf += data
        while True:
            i = c.inbuf.find(b"\n")
            if i < 0:
                break
            line = c.inbuf[:i + 1].rstrip(b"\r\n")
            c.inbuf = c.inbuf[i + 1:]
            if len(line) >= 4 and line[3:4] == b"-":
                continue   # continuation of a multi-line reply
            try:
                code = int(line[:3])
            except ValueError:
                return drop(c, f"bad reply line {line[:80]!r}")
            on_reply(c, code, line.decode("latin-1"))
            if c.state == "closed" or c not in conns:
                return

    stopping = [False]
    for i in range(args.conns):
        open_conn(i)
    # Wait for every connection to be ready before the clock starts.
    ready_by = now() + 30
    while len(idle) < len(conns) and now() < ready_by:
        for key, ev in sel.select(0.1):
            c = key.data
            if ev & selectors.EVENT_WRITE:
                flush(c)
            if ev & selectors.EVENT_READ:
                on_read(c)
    if len(idle) < args.conns:
        log(f"{args.server}: only {len(idle)} of {args.conns} connections ready")

    log(f"{args.server}: {args.rate:.0f} msgs/s for {args.duration:.0f} s over "
        f"{args.conns} connections, {args.size} B messages")
    interval = 1.0 / args.rate
    t0 = now()
    end = t0 + args.duration
    k = 0  # next scheduled message
    while True:
        t = now()
        if t < end:
            while t0 + k * interval <= t:
                if not idle:
                    break
                due = t0 + k * interval
                lag = t - due
                if lag > 0.005:
                    stats["late"] += 1
                stats["max_lag"] = max(stats["max_lag"], lag)
                c = idle.pop()
                c.state = "mail"
                c.msgno = k
                c.t_start = due
                stats["sent"] += 1
                k += 1
                send(c, mail_cmd)
            wait = max(0.0, min(t0 + k * interval - now(), 0.05))
        else:
            busy = [c for c in conns if c.state not in ("idle", "closed")]
            if not busy or t > end + 30:
                break
            wait = 0.05
        for key, ev in sel.select(wait):
            c = key.data
            if ev & selectors.EVENT_WRITE:
                flush(c)
            if ev & selectors.EVENT_READ and c in conns:
                on_read(c)
    elapsed = now() - t0
    stopping[0] = True
    in_flight = [c for c in conns if c.state not in ("idle", "closed")]
    if in_flight:
        errors.append(f"{len(in_flight)} messages unanswered 30 s after the load ended")
    for c in list(conns):
        if c.state == "idle":
            c.state = "quit"
            try:
                c.sock.send(b"QUIT\r\n")
            except OSError:
                pass
    quit_by = now() + 5
    while any(c.state == "quit" for c in conns) and now() < quit_by:
        for key, ev in sel.select(0.1):
            if ev & selectors.EVENT_READ:
                on_read(key.data)
    for c in conns:
        c.sock.close()

    delivered = None
    if args.maildir:
        deadline = time.monotonic() + args.delivery_timeout
        while True:
            delivered = maildir_count(args.maildir) - base
            if delivered >= stats["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if delivered != stats["ok"]:
            errors.append(f"{stats['ok']} messages accepted, {delivered} delivered")

    samples.sort()
    ms = lambda v: None if v is None else round(v * 1000, 3)
    res = {
        "server": args.server, "offered_rate": round(args.rate, 1),
        "achieved_rate": round(stats["sent"] / elapsed, 1) if elapsed else 0,
        "peak_rate": args.peak, "duration_s": round(elapsed, 2), "conns": args.conns,
        "size": args.size, "sent": stats["sent"], "accepted": stats["ok"],
        "delivered": delivered, "samples": len(samples),
        "late_starts": stats["late"], "max_start_lag_ms": ms(stats["max_lag"]),
        "p50_ms": ms(percentile(samples, 50)), "p90_ms": ms(percentile(samples, 90)),
        "p99_ms": ms(percentile(samples, 99)), "p999_ms": ms(percentile(samples, 99.9)),
        "max_ms": ms(samples[-1] if samples else None),
        "mean_ms": ms(sum(samples) / len(samples) if samples else None),
        "errors": len(errors), "error_examples": errors[:5],
    }
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"{args.server}: {res['achieved_rate']} msgs/s achieved, final-dot latency "
        f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms "
        f"({len(samples)} samples, {res['late_starts']} late starts, {len(errors)} errors)")
    if errors:
        for e in errors[:5]:
            log(f"{args.server}: error: {e}")
    return 1 if errors or not samples else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
