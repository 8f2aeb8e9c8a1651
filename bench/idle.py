#!/usr/bin/python3
"""Idle connection cost: opens --count TCP connections to the server, waits
until each has its 220 greeting, and reports the server's resident memory
(VmRSS of --pid) before and after, per connection in KiB. Then closes them
and checks that the server still answers. Writes a JSON summary to --out.

--tls starttls: each connection also says EHLO, STARTTLS, completes the TLS
handshake and says EHLO again before it is left idle (an SMTP session that
did STARTTLS and waits). --tls implicit: the handshake comes first (a
submissions port, RFC 8314), then the greeting and EHLO. TLS sessions are
set up by a pool of --workers threads with blocking sockets."""

import argparse
import concurrent.futures
import json
import os
import resource
import selectors
import socket
import ssl
import sys
import time

from benchlib import log, rss_kib, wait_smtp


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def read_reply(f):
    """One SMTP reply (its last line) from a file object; b"" on EOF."""
    while True:
        line = f.readline(1024)
        if not line or line[3:4] != b"-":
            return line


def tls_session(host, port, mode, ctx, timeout):
    """A TLS SMTP session left idle after its second EHLO: the socket, or
    raises with what went wrong."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        if mode == "implicit":
            s = ctx.wrap_socket(s, server_hostname="mx.bench.test")
            f = s.makefile("rb")
            if not read_reply(f).startswith(b"220"):
                raise RuntimeError("no 220 greeting")
        else:
            f = s.makefile("rb")
            if not read_reply(f).startswith(b"220"):
                raise RuntimeError("no 220 greeting")
            s.sendall(b"EHLO idle.bench.test\r\n")
            if not read_reply(f).startswith(b"250"):
                raise RuntimeError("EHLO refused")
            s.sendall(b"STARTTLS\r\n")
            if not read_reply(f).startswith(b"220"):
                raise RuntimeError("STARTTLS refused")
            f.close()
            s = ctx.wrap_socket(s, server_hostname="mx.bench.test")
            f = s.makefile("rb")
        s.sendall(b"EHLO idle.bench.test\r\n")
        if not read_reply(f).startswith(b"250"):
            raise RuntimeError("EHLO after TLS refused")
        f.close()
        return s
    except BaseException:
        s.close()
        raise


def open_tls(args, count, deadline):
    """Opens `count` idle TLS sessions: (sockets, errors)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    greeted, errors = [], []
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        futures = [pool.submit(tls_session, args.host, args.port, args.tls, ctx, 30)
                   for _ in range(count)]
        for fut in futures:
            try:
                greeted.append(fut.result(timeout=max(1, deadline - time.monotonic())))
            except Exception as e:  # noqa: BLE001 -- counted and reported
                errors.append(f"tls session: {e}")
    for s in greeted:
        s.settimeout(None)
    return greeted, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="server process to measure")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500, help="connections opened at once")
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--tls", choices=("starttls", "implicit"),
                    help="idle TLS sessions instead of plain connections")
    ap.add_argument("--check-port", type=int,
                    help="plain SMTP port to check the server answers afterwards (default --port)")
    ap.add_argument("--workers", type=int, default=16, help="threads setting up TLS sessions")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 100
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    count = min(args.count, soft - 100)
    if count < args.count:
        log(f"fd limit {soft}: opening {count} connections instead of {args.count}")

    time.sleep(args.settle)
    rss0 = rss_kib(args.pid)
    fds0 = len(os.listdir(f"/proc/{args.pid}/fd"))
    log(f"server pid {args.pid}: VmRSS {rss0} KiB, {fds0} fds before; opening {count} connections")

    sel = selectors.DefaultSelector()
    pending = {}   # socket -> bytes read so far
    greeted = []
    errors = []
    opened = 0
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    if args.tls:
        greeted, errors = open_tls(args, count, deadline)
        opened = count
    while not args.tls and (opened < count or pending) and time.monotonic() < deadline:
        # Keep at most one batch waiting for its greeting; a burst larger
        # than the listen backlog would only measure SYN retransmits.
        while opened < count and len(pending) < args.batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((args.host, args.port))
            if rc not in (0, 115):   # EINPROGRESS
                errors.append(f"connect: {os.strerror(rc)}")
                s.close()
                opened += 1
                continue
            sel.register(s, selectors.EVENT_READ)
            pending[s] = b""
            opened += 1
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                data = s.recv(1024)
            except BlockingIOError:
                continue
            except OSError as e:
                data = b""
                errors.append(f"recv: {e}")
            if not data:
                errors.append("closed before the greeting")
                sel.unregister(s)
                s.close()
                del pending[s]
                continue
            buf = pending[s] + data
            if b"\n" in buf:
                sel.unregister(s)
                del pending[s]
                if buf.startswith(b"220"):
                    greeted.append(s)
                else:
                    errors.append(f"greeting {buf[:60]!r}")
                    s.close()
            else:
                pending[s] = buf
        if len(errors) > 100:
            break
    open_secs = time.monotonic() - t0
    if pending:
        errors.append(f"{len(pending)} connections without a greeting after {args.timeout:.0f} s")
    log(f"{len(greeted)} connections greeted in {open_secs:.1f} s, {len(errors)} errors")

    time.sleep(args.settle)
    rss1 = rss_kib(args.pid)
    fds1 = len(os.listdir(f"/proc/{args.pid}/fd"))
    hwm = status_kib(args.pid, "VmHWM")
    threads = status_kib(args.pid, "Threads")
    n = len(greeted)
    per = (rss1 - rss0) / n if n else None
    log(f"server VmRSS {rss1} KiB, {fds1} fds with {n} idle connections: "
        f"{per:.1f} KiB per connection" if per is not None else "no connections")

    for s in list(pending) + greeted:
        s.close()
    time.sleep(args.settle)
    rss2 = rss_kib(args.pid)
    alive = wait_smtp(args.host, args.check_port or args.port, 30)
    if not alive:
        errors.append("server does not answer after the connections closed")
    res = {
        "tls": args.tls or "none",
        "requested": args.count, "connections": n, "open_secs": round(open_secs, 2),
        "rss_before_kib": rss0, "rss_idle_kib": rss1, "rss_after_close_kib": rss2,
        "vmhwm_kib": hwm, "threads": threads, "fds_before": fds0, "fds_idle": fds1,
        "per_conn_kib": round(per, 2) if per is not None else None,
        "errors": len(errors), "error_examples": errors[:5],
    }
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"after closing: VmRSS {rss2} KiB; server answers: {alive}")
    for e in errors[:5]:
        log(f"error: {e}")
    return 0 if n == count and not errors else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
