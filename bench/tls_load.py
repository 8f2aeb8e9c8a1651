#!/usr/bin/python3
"""TLS throughput cell: sends --count messages of --size bytes over
STARTTLS (RFC 3207), one new TCP connection and TLS session per message,
from --sessions concurrent sessions, and appends a JSON record (msgs/s,
server CPU per 1,000 messages, handshakes resumed) to --out.
smtp-source cannot do STARTTLS, hence this generator: --binary
tern_tls_load (bench/tls_load.cc: a thread per session, blocking OpenSSL),
or without it --procs Python processes, each running its share of the
sessions as threads (several times slower: its ceiling is below Tern's).

--resume: every session offers the TLS session (a TLS 1.3 ticket, RFC 8446
2.2) of its previous connection, so the server may skip the certificate
and the key exchange signature; the record counts how many handshakes the
server actually resumed. Without it every connection is a full handshake.

`tls_load.py sink --port P --cert C --key K`: a TLS SMTP sink (accepts
everything, stores nothing; --procs processes on one SO_REUSEPORT port)
to measure the generator's own ceiling.

Exit status: 0 when the run was clean, 1 when a message failed or was lost."""

import argparse
import json
import multiprocessing
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from benchlib import append_jsonl, cpu_seconds, log, maildir_count


def make_message(size, sender, rcpt):
    """A message of about `size` bytes, CRLF lines, nothing to dot-stuff."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: tern tls bench\r\n"
            f"Message-ID: <tls-bench@client.bench.test>\r\n\r\n").encode()
    line = b"x" * 78 + b"\r\n"
    lines = max(1, (size - len(head)) // len(line))
    return head + line * lines


class Failure(Exception):
    pass


def reply(f, code):
    """Reads one reply (all its lines); raises unless it starts with code."""
    while True:
        line = f.readline(4096)
        if not line:
            raise Failure(f"connection closed, expected {code.decode()}")
        if line[3:4] != b"-":
            break
    if not line.startswith(code):
        raise Failure(f"expected {code.decode()}, got {line[:80]!r}")


def one_message(args, ctx, session, data):
    """One connection: EHLO, STARTTLS, EHLO, a pipelined MAIL/RCPT/DATA
    (RFC 2920), the message, QUIT. Returns (session, resumed)."""
    s = socket.create_connection((args.host, args.port), timeout=30)
    try:
        f = s.makefile("rb")
        reply(f, b"220")
        s.sendall(b"EHLO " + args.helo.encode() + b"\r\n")
        reply(f, b"250")
        s.sendall(b"STARTTLS\r\n")
        reply(f, b"220")
        f.close()
        t = ctx.wrap_socket(s, server_hostname="mx.bench.test", session=session)
        s = t
        f = t.makefile("rb")
        t.sendall(b"EHLO " + args.helo.encode() + b"\r\n")
        reply(f, b"250")
        t.sendall(f"MAIL FROM:<{args.sender}>\r\nRCPT TO:<{args.rcpt}>\r\nDATA\r\n".encode())
        reply(f, b"250")
        reply(f, b"250")
        reply(f, b"354")
        t.sendall(data + b".\r\nQUIT\r\n")
        reply(f, b"250")
        reply(f, b"221")
        f.close()
        return t.session, t.session_reused
    finally:
        s.close()


def worker(args, sessions, counter, lock, results):
    """One process: `sessions` threads taking message numbers from the
    shared counter until --count are taken."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    data = make_message(args.size, args.sender, args.rcpt)
    sent = resumed = 0
    errors = []
    mu = threading.Lock()

    def run():
        nonlocal sent, resumed
        session = None
        while True:
            with lock:
                if counter.value >= args.count:
                    return
                counter.value += 1
            try:
                new, reused = one_message(args, ctx, session, data)
            except (OSError, Failure, ssl.SSLError) as e:
                with mu:
                    errors.append(str(e))
                session = None
                continue
            if args.resume:
                session = new
            with mu:
                sent += 1
                resumed += bool(reused)

    threads = [threading.Thread(target=run) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((sent, resumed, errors[:5], len(errors)))


def run_cell(args):
    rec = {"server": args.server, "size": args.size, "sessions": args.sessions,
           "resume": bool(args.resume), "count": args.count, "round": args.round,
           "procs": args.procs, "ok": False, "error": ""}
    base = maildir_count(args.maildir) if args.maildir else 0
    cpu0 = cpu_seconds(args.cpu)
    counter = multiprocessing.Value("l", 0, lock=False)
    lock = multiprocessing.Lock()
    results = multiprocessing.Queue()
    procs = min(args.procs, args.sessions)
    share = [args.sessions // procs + (i < args.sessions % procs) for i in range(procs)]
    mode = "resumed" if args.resume else "full"
    log(f"{args.server}: {args.size} B x {args.count} msgs over STARTTLS, {args.sessions} "
        f"sessions, {mode} handshakes (round {args.round})")
    t0 = time.monotonic()
    sent = resumed = nerr = 0
    examples = []
    if args.binary:
        rec["generator"] = os.path.basename(args.binary)
        cmd = [args.binary, "--host", args.host, "--port", str(args.port),
               "--sessions", str(args.sessions), "--count", str(args.count),
               "--size", str(args.size), "--sender", args.sender, "--rcpt", args.rcpt,
               "--helo", args.helo] + (["--resume"] if args.resume else [])
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=args.timeout)
            d = json.loads(p.stdout)
            sent, resumed, nerr = d["sent"], d["resumed"], d["errors"]
            if d.get("error_example"):
                examples.append(d["error_example"])
        except (subprocess.TimeoutExpired, ValueError, KeyError) as e:
            nerr = max(1, args.count - sent)
            examples.append(f"{args.binary}: {e}")
    else:
        rec["generator"] = "python"
        ps = [multiprocessing.Process(target=worker, args=(args, n, counter, lock, results))
              for n in share]
        for p in ps:
            p.start()
        for _ in ps:
            s, r, ex, ne = results.get(timeout=args.timeout)
            sent, resumed, nerr = sent + s, resumed + r, nerr + ne
            examples += ex
        for p in ps:
            p.join()
    wall = time.monotonic() - t0
    rec.update(wall_s=round(wall, 4), sent=sent, resumed=resumed,
               rate=round(sent / wall, 1) if wall > 0 else 0.0)
    if nerr:
        rec["error"] = f"{nerr} messages failed, e.g. {examples[:3]}"
    if args.maildir:
        deadline = time.monotonic() + (5 if rec["error"] else args.delivery_timeout)
        n = maildir_count(args.maildir) - base
        while n < sent and time.monotonic() < deadline:
            time.sleep(0.05)
            n = maildir_count(args.maildir) - base
        rec["delivered"] = n
        if not rec["error"] and n != sent:
            rec["error"] = f"Maildir grew by {n}, expected {sent}"
    cpu1 = cpu_seconds(args.cpu)
    if cpu0 is not None and cpu1 is not None and sent:
        rec["cpu_s"] = round(cpu1 - cpu0, 3)
        rec["cpu_per_1k"] = round((cpu1 - cpu0) / sent * 1000, 4)
    # How many resume is the server's choice (Postfix resumes about every
    # other one of these connections); none at all means it is broken.
    if args.resume and not rec["error"] and sent and resumed == 0:
        rec["error"] = f"none of {sent} handshakes resumed"
    rec["ok"] = not rec["error"]
    append_jsonl(args.out, rec)
    cpu_txt = f", server CPU {rec['cpu_per_1k']:.3f} s/1k msgs" if "cpu_per_1k" in rec else ""
    if rec["ok"]:
        log(f"{args.server}: {rec['rate']:.0f} msgs/s ({wall:.2f} s){cpu_txt}, "
            f"{resumed}/{sent} resumed")
        return 0
    log(f"{args.server}: FAILED: {rec['error']}")
    return 1


# --- the sink ----------------------------------------------------------------

def sink_conn(conn, ctx):
    try:
        f = conn.makefile("rb")
        conn.sendall(b"220 sink.bench.test ESMTP\r\n")
        tls = False
        data = False
        while True:
            line = f.readline(65536)
            if not line:
                return
            if data:
                if line == b".\r\n":
                    data = False
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                continue
            cmd = line[:4].upper()
            if cmd == b"EHLO":
                conn.sendall(b"250-sink.bench.test\r\n250-PIPELINING\r\n"
                             + (b"" if tls else b"250-STARTTLS\r\n") + b"250 8BITMIME\r\n")
            elif cmd == b"STAR" and not tls:
                conn.sendall(b"220 2.0.0 Ready\r\n")
                f.close()
                conn = ctx.wrap_socket(conn, server_side=True)
                f = conn.makefile("rb")
                tls = True
            elif cmd == b"DATA":
                data = True
                conn.sendall(b"354 go\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"250 2.0.0 Ok\r\n")
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def sink_proc(args):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    ls.bind((args.host, args.port))
    ls.listen(1024)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=sink_conn, args=(conn, ctx), daemon=True).start()


def run_sink(args):
    ps = [multiprocessing.Process(target=sink_proc, args=(args,), daemon=True)
          for _ in range(args.procs)]
    for p in ps:
        p.start()
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    for p in ps:
        p.terminate()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="one measurement")
    r.add_argument("--server", required=True)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--size", type=int, default=1024)
    r.add_argument("--sessions", type=int, default=32)
    r.add_argument("--count", type=int, default=2000)
    r.add_argument("--resume", action="store_true", help="offer the previous TLS session")
    r.add_argument("--procs", type=int, default=4, help="generator processes")
    r.add_argument("--binary", default="",
                   help="tern_tls_load (C++, bench/tls_load.cc) instead of the Python workers")
    r.add_argument("--round", type=int, default=1)
    r.add_argument("--maildir", default="", help="Maildir to count deliveries in")
    r.add_argument("--cpu", default="none", help="benchlib.cpu_seconds spec of the server")
    r.add_argument("--sender", default="sender@client.test")
    r.add_argument("--rcpt", default="user@bench.test")
    r.add_argument("--helo", default="client.bench.test")
    r.add_argument("--timeout", type=float, default=600.0)
    r.add_argument("--delivery-timeout", type=float, default=120.0)
    r.add_argument("--out", required=True)
    s = sub.add_parser("sink", help="a TLS SMTP sink")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--procs", type=int, default=4)
    args = ap.parse_args()
    if args.what == "sink":
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
        return run_sink(args)
    return run_cell(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
