#!/usr/bin/python3
"""Abuse under load (hardening issue 7): one Tern server, many attackers and
one well-behaved client, all at the same time.

    /usr/bin/python3 tests/abuse/abuse.py --short     # CI form, about a minute
    /usr/bin/python3 tests/abuse/abuse.py             # long form, several minutes

Starts one `tern serve` (TERN_BIN, else build/tern) on loopback with SMTP
(port 25 style: plain + STARTTLS), submission (STARTTLS), submissions
(implicit TLS), POP3 (STLS) and POP3S, IMAP and IMAPS, and the web
listeners http, https (implicit TLS) and admin, production limits except
where the profile says otherwise, and then runs together:

  slowloris   N connections that send one byte every few seconds and never
              finish a line (or a TLS handshake), spread round-robin over
              source addresses 127.0.0.10 and up; refused ones retry. The
              web listeners get their share: an HTTP request dripped a byte
              at a time (inside TLS on https), which must end in a 408 or a
              close within [http] idle_timeout; over the limit a 503 (a
              close on https). They reconnect and start over.
  garbage     random bytes, 1 MB lines without CRLF (commands and message
              text), NUL bytes, a TLS ClientHello on plaintext ports,
              plaintext on the implicit-TLS ports, half-closed connections
              and clients that pipeline and never read (127.0.0.4-6). On
              the web listeners: random bytes (400), a 1 MB request line
              (414) or header (431), too many fields (431), a huge declared
              Content-Length or chunked body (413), bad Host fields and
              versions (400, 505), pipelined and keep-alive floods (100
              answers, then the connection is closed).
  brute force wrong passwords for the good user's account over SMTP AUTH
              (465 and 587+STARTTLS) and POP3 (995 and 110+STLS) from
              127.0.0.3.
  relay       every relay trick, unauthenticated on port 25 (plain and
              after STARTTLS) and authenticated on 587 (127.0.0.7).
  good client from 127.0.0.1: M messages, half by authenticated submission
              with STARTTLS and half to port 25, read back by POP3 (STLS and
              POP3S alternately) and compared byte for byte; meanwhile
              /health from the admin listener and the Thunderbird autoconfig
              document over http and https, checked (200, the right ports).

Source addresses: the server limits connections per IP (SMTP 50, POP3 20,
the web listeners 20 together) and in total. A real deployment sees
attackers and users at different addresses, so every attacker role has its
own 127.0.0.x and the good client is 127.0.0.1. The slowloris crowd is
larger than the server's total limit: the server refuses what is beyond it
with 421 (or -ERR [SYS/TEMP], an HTTP 503 on the web listeners) and must
still serve the good client.

Checks (all generous: this is a correctness test, not a benchmark): every
message delivered intact, none lost, each within a bound; no wrong password
accepted, the attacker locked out; every relay trick refused with 5xx; every
web request of the good client answered; the server alive at the end,
answering a fresh connection, no crash or sanitizer report in its log, a
clean exit on SIGTERM; peak RSS under a bound.
Numbers go to stdout as a table and to a JSON file (build/abuse/ or --out).
Exit status 0 when every check passed.
"""
import argparse
import asyncio
import base64
import concurrent.futures
import email.utils
import hashlib
import http.client
import json
import os
import pathlib
import poplib
import random
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree

REPO = pathlib.Path(__file__).resolve().parents[2]
HOSTNAME = "mx.example.test"
DOMAIN = "example.test"
GOOD_USER = "good@example.test"
SINK_USER = "sink@example.test"      # target of garbage message text
PASSWORD = "correct horse battery staple"
GOOD_IP = "127.0.0.1"
BRUTE_IP = "127.0.0.3"
GARBAGE_IPS = ("127.0.0.4", "127.0.0.5", "127.0.0.6")
RELAY_IP = "127.0.0.7"
SLOW_BASE = 10                       # slowloris from 127.0.0.10 up

PROFILES = {
    # CI: a smaller total limit so that the slowloris crowd still fills it.
    # The web listeners likewise (40 in all, not 500), with a short idle
    # timeout so that dripped requests end in 408 several times a run.
    "short": dict(slowloris=300, slow_ips=10, max_connections=200,
                  messages=200, passwords=500, min_seconds=40,
                  drip=(2.0, 4.0), never_read_cap=10, big_line=1 << 20,
                  deadline=240, slowloris_http=60, http_max_connections=40,
                  http_idle_timeout=10),
    # The default limits (1000 in total, 50 per IP; web 500 and 20 with the
    # 30 s idle timeout), twice as many slowloris connections, and long
    # enough to pass command_timeout.
    "long": dict(slowloris=2000, slow_ips=50, max_connections=1000,
                 messages=1000, passwords=500, min_seconds=330,
                 drip=(3.0, 5.0), never_read_cap=40, big_line=4 << 20,
                 deadline=900, slowloris_http=1000, http_max_connections=500,
                 http_idle_timeout=30),
}

SMTP_LIMITS = {
    "max_message_size": 52428800,
    "max_recipients": 100,
    "max_connections_per_ip": 50,
    "max_errors": 10,
    "command_line_limit": 512,
    "text_line_limit": 1000,
    "max_received_headers": 100,
    "command_timeout": 300,
    "data_block_timeout": 180,
    "final_timeout": 600,
    "vrfy": False,
    "expn": False,
}

# The shipped defaults, written out so the report says what was tested.
AUTH_LIMITS = {"max_failures": 10, "window": 600, "lockout": 900,
               "delay_step_ms": 250, "max_delay_ms": 5000}
POP3_LIMITS = {"idle_timeout": 600, "max_errors": 10,
               "max_connections_per_ip": 20}
IMAP_LIMITS = {"max_errors": 10, "max_connections_per_ip": 20}
# [http]: max_connections and idle_timeout come from the profile.
HTTP_LIMITS = {"max_connections_per_ip": 20}
WEB_SERVICES = ("http", "https", "admin")
AUTOCONFIG_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"

# The goal for the real build; under ASan (make test-asan sets
# ASAN_OPTIONS) shadow memory, redzones and the 256 MiB quarantine of
# freed blocks come on top.
RSS_BOUND_MIB = 1024 if "ASAN_OPTIONS" in os.environ else 512
E2E_BOUND_S = 120      # each message: from 250 to seen by POP3
ACCEPT_BOUND_S = 60    # each message: MAIL FROM .. 250 after the dot


def now():
    return time.monotonic()


def http_close_bound(idle_timeout):
    """Seconds after which a web connection that stopped sending must be
    gone (408 or a close): [http] idle_timeout, then as much again (at
    least 10 s). On a busy machine the https handshake (not counted in the
    timeout) and this process, which drives thousands of connections, may
    be that slow; a server that never times out, or ignores the configured
    timeout in the short profile, still fails."""
    return idle_timeout + max(10, idle_timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    raise TypeError(v)


def tls_client():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def summary(values):
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 4),
            "p99": round(percentile(values, 99), 4), "max": round(max(values), 4)}


# ---------------------------------------------------------------- server

class Server:
    """One `tern serve` with every listener on 127.0.0.1."""

    def __init__(self, base, binary, profile):
        self.base = pathlib.Path(base)
        self.bin = binary
        self.data = self.base / "var"
        self.config = self.base / "tern.toml"
        self.log = self.base / "server.log"
        self.ports = {name: free_port() for name in
                      ("smtp", "submission", "submissions", "pop3", "pop3s",
                       "imap", "imaps") + WEB_SERVICES}
        smtp = dict(SMTP_LIMITS, max_connections=profile["max_connections"])
        web = dict(HTTP_LIMITS, max_connections=profile["http_max_connections"],
                   idle_timeout=profile["http_idle_timeout"])
        lines = [
            f"hostname = {toml(HOSTNAME)}",
            f"data_dir = {toml(str(self.data))}",
            f"domains = {toml([DOMAIN])}",
            "trusted_networks = []",
            "threads = 1",
            "delivery_threads = 2",
            "shutdown_grace = 5",
            "", "[log]", 'level = "info"',
        ]
        for service, port in self.ports.items():
            lines += ["", "[[listen]]", f'address = "127.0.0.1:{port}"',
                      f"service = {toml(service)}"]
        for table, values in (("smtp", smtp), ("tls", {"self_signed": True}),
                              ("auth", AUTH_LIMITS), ("pop3", POP3_LIMITS),
                              ("imap", IMAP_LIMITS), ("http", web),
                              ("dns", {"upstream": ["127.0.0.1:9"]}),
                              # No DNS here (upstream is the discard port):
                              # SPF at MAIL would wait out the resolver's
                              # timeouts (~17 s) for every unauthenticated
                              # sender, which measures unbound, not Tern.
                              ("mailauth", {"verify": False})):
            lines += ["", f"[{table}]"] + [f"{k} = {toml(v)}" for k, v in values.items()]
        self.base.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.smtp_limits = smtp
        self.http_limits = web

    def cli(self, *args, stdin=b""):
        p = subprocess.run([self.bin, *args, "--config", str(self.config)],
                           input=stdin, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"tern {' '.join(args)}: {p.stderr.decode(errors='replace')}")
        return p.stdout.decode(errors="replace")

    def add_user(self, address):
        self.cli("user", "add", address, stdin=(PASSWORD + "\n").encode())

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.bin, "serve", "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = now() + 20
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tern serve exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-3000:])
            try:
                if probe_greeting(self.ports["smtp"]).startswith("220"):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("tern serve did not start:\n" + self.log_text()[-3000:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "killed after SIGTERM timeout"
        return self.proc.returncode

    def log_text(self):
        try:
            return self.log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


def probe_greeting(port, source=GOOD_IP, timeout=10):
    """Greeting line of a fresh connection (then QUIT: SMTP and POP3 alike)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        try:
            s.sendall(b"QUIT\r\n")
            s.recv(4096)
        except OSError:
            pass
        return buf.split(b"\r\n")[0].decode(errors="replace")


def probe_http(port, path="/health", source=GOOD_IP, timeout=10):
    """Status line of a GET on a fresh connection ("HTTP/1.1 200 OK")."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(http_request("GET", path, host="127.0.0.1", close=True))
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\r\n")[0].decode(errors="replace")


class MemorySampler(threading.Thread):
    """VmRSS/VmHWM and open descriptors of the server every 0.5 s."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_flag = threading.Event()
        self.samples = []  # (t, rss_kib, hwm_kib, fds, threads)

    def read(self):
        rss = hwm = threads = 0
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        return (now(), rss, hwm, fds, threads)

    def run(self):
        while not self.stop_flag.is_set():
            s = self.read()
            if s:
                self.samples.append(s)
            self.stop_flag.wait(0.5)

    def report(self):
        if not self.samples:
            return {}
        t0 = self.samples[0][0]
        peak = max(self.samples, key=lambda s: s[1])
        return {
            "samples": len(self.samples),
            "rss_start_mib": round(self.samples[0][1] / 1024, 1),
            "rss_peak_mib": round(peak[1] / 1024, 1),
            "rss_peak_at_s": round(peak[0] - t0, 1),
            "rss_end_mib": round(self.samples[-1][1] / 1024, 1),
            "hwm_mib": round(max(s[2] for s in self.samples) / 1024, 1),
            "fds_peak": max(s[3] for s in self.samples),
            "threads_peak": max(s[4] for s in self.samples),
        }


# ---------------------------------------------------------------- helpers

class Counter(dict):
    def add(self, key, n=1):
        self[key] = self.get(key, 0) + n


def reply_key(line):
    """'421 4.7.0 ...' -> '421 4.7.0'; '-ERR [AUTH] ...' -> '-ERR [AUTH]';
    'HTTP/1.1 503 Service Unavailable' -> 'HTTP 503'."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    parts = line.split()
    if not parts:
        return "(empty)"
    if parts[0].startswith("HTTP/") and len(parts) > 1 and parts[1].isdigit():
        return f"HTTP {parts[1]}"
    if parts[0] in ("+OK", "-ERR"):
        if len(parts) > 1 and parts[1].startswith("["):
            return f"{parts[0]} {parts[1]}"
        return parts[0]
    if len(parts) > 1 and re.fullmatch(r"\d\.\d{1,3}\.\d{1,3}", parts[1]):
        return f"{parts[0][:3]} {parts[1]}"
    return parts[0][:3] if parts[0][:3].isdigit() else "(other)"


def http_request(method, path, host=DOMAIN, headers=(), body=b"", close=False):
    """The bytes of one HTTP/1.1 request (host None: no Host field)."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_head(head):
    """(status, headers with lower-case names) of a response head, or None."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", lines[0] + b" ")
    if not m:
        return None
    headers = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(b":")
        headers[name.strip().lower().decode(errors="replace")] = \
            value.strip().decode(errors="replace")
    return int(m.group(1)), headers


def http_responses(data):
    """The complete responses at the start of `data`: [(status, headers
    with lower-case names, body)]; what does not parse ends the list."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        parsed = http_head(head)
        if parsed is None:
            break
        status, headers = parsed
        n = 0
        if status >= 200 and status not in (204, 304):
            try:
                n = int(headers.get("content-length", "0"))
            except ValueError:
                break
        if len(rest) < n:
            break
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def is_http_refusal(responses):
    """The answer of a web listener over its connection limits."""
    return len(responses) == 1 and responses[0][0] == 503 and \
        "retry-after" in responses[0][1]


def client_hello():
    """The bytes of a real TLS ClientHello (Python's own)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_client().wrap_bio(inc, out, server_hostname=HOSTNAME)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


async def open_conn(port, ip, timeout=10, **kw):
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0), **kw), timeout)


async def open_web(srv, service, ip, timeout=10):
    """A connection to a web listener, TLS first on https. A refused https
    client is closed during the handshake: that raises WebRefused."""
    if service != "https":
        return await open_conn(srv.ports[service], ip, timeout)
    try:
        return await open_conn(srv.ports[service], ip, timeout, ssl=tls_client(),
                               server_hostname=HOSTNAME)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
            asyncio.IncompleteReadError, ssl.SSLError) as e:
        raise WebRefused(type(e).__name__) from e


class WebRefused(Exception):
    pass


async def read_lines(reader, timeout, limit=64):
    """Lines until EOF, `limit` lines or `timeout` seconds; (lines, eof)."""
    lines = []
    end = now() + timeout
    while len(lines) < limit:
        left = end - now()
        if left <= 0:
            return lines, False
        try:
            line = await asyncio.wait_for(reader.readline(), left)
        except (asyncio.TimeoutError, TimeoutError):
            return lines, False
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            return lines, True
        if not line:
            return lines, True
        lines.append(line.rstrip(b"\r\n"))
    return lines, False


def close_writer(writer):
    try:
        writer.transport.abort()
    except Exception:
        pass


# ---------------------------------------------------------------- slowloris

class Slowloris:
    """N connections kept open by one byte every few seconds."""

    def __init__(self, srv, profile, stop):
        self.srv = srv
        self.n = profile["slowloris"]
        self.n_http = profile["slowloris_http"]
        self.ips = [f"127.0.0.{SLOW_BASE + i}" for i in range(profile["slow_ips"])]
        self.drip = profile["drip"]
        self.stop = stop
        # A dripped web request ends within this (408 or a close).
        self.http_bound = http_close_bound(srv.http_limits["idle_timeout"])
        self.http = {"accepted": 0, "refused": Counter(), "connect_errors": Counter(),
                     "closed_by_server": Counter(), "by_service": Counter(),
                     "close_after": [], "unexpected": []}
        self.attempts = 0
        self.accepted = 0
        self.refused = Counter()        # by the refusal's reply
        self.connect_errors = Counter()
        self.closed_by_server = Counter()  # by the last line the server sent
        self.close_after = []           # seconds held before the server closed
        self.held = 0
        self.held_peak = 0
        self.bytes_sent = 0
        self.by_service = Counter()
        self.ramp_seconds = None
        self.hello = client_hello()

    def plan(self, i):
        # Mostly port 25; some on every other mail listener (the web
        # listeners have their own crowd, after these).
        r = i % 20
        if r < 11:
            return "smtp"
        if r < 13:
            return "submission"
        if r < 15:
            return "pop3"
        if r < 16:
            return "imap"
        if r < 18:
            return "submissions"
        if r < 19:
            return "pop3s"
        return "imaps"

    async def one(self, i, ramp_done):
        service = self.plan(i)
        ip = self.ips[i % len(self.ips)]
        port = self.srv.ports[service]
        tls_port = service in ("submissions", "pop3s", "imaps")
        first = True
        while not self.stop.is_set():
            if not first:
                await asyncio.sleep(random.uniform(4, 8))
                if self.stop.is_set():
                    break
            first = False
            self.attempts += 1
            try:
                reader, writer = await open_conn(port, ip)
            except (OSError, asyncio.TimeoutError) as e:
                self.connect_errors.add(type(e).__name__)
                continue
            try:
                if tls_port:
                    # No greeting before TLS: a refused connection is closed
                    # at once (SMTP) or gets a plaintext -ERR (POP3).
                    lines, eof = await read_lines(reader, 0.3, 1)
                    if eof or lines:
                        self.refused.add(reply_key(lines[0]) if lines else "closed")
                        continue
                    payload = self.hello
                else:
                    lines, eof = await read_lines(reader, 15, 1)
                    if not lines or not (lines[0].startswith(b"220") or
                                         lines[0].startswith(b"+OK") or
                                         lines[0].startswith(b"* OK")):
                        self.refused.add(reply_key(lines[0]) if lines else "closed")
                        continue
                    payload = {"pop3": b"USER ", "imap": b"a LOGIN "}.get(
                        service, b"EHLO ") + b"slowloris" * 200
                self.accepted += 1
                self.by_service.add(service)
                self.held += 1
                self.held_peak = max(self.held_peak, self.held)
                t0 = now()
                last = b""
                k = 0
                try:
                    while not self.stop.is_set():
                        try:
                            data = await asyncio.wait_for(reader.read(4096),
                                                          random.uniform(*self.drip))
                        except (asyncio.TimeoutError, TimeoutError):
                            data = None
                        except ConnectionError:
                            data = b""
                        if data == b"":
                            text = last.split(b"\r\n")
                            text = [x for x in text if x]
                            self.closed_by_server.add(reply_key(text[-1]) if text and
                                                      not tls_port else "eof")
                            self.close_after.append(now() - t0)
                            break
                        if data:
                            last = (last + data)[-512:]
                        writer.write(payload[k % len(payload):k % len(payload) + 1])
                        k += 1
                        self.bytes_sent += 1
                finally:
                    self.held -= 1
            finally:
                close_writer(writer)

    def web_plan(self, j):
        # Half on http, a quarter each on https and admin.
        return ("http", "https", "http", "admin")[j % 4]

    async def one_http(self, j):
        """A web client that sends a request a byte at a time: the server
        must answer 408 or close within its idle timeout (the deadline runs
        from the last answer, not from the last byte); refused, it gets a
        503 (or, on https, a close)."""
        service = self.web_plan(j)
        ip = self.ips[j % len(self.ips)]
        h = self.http
        payload = (f"GET {AUTOCONFIG_PATH} HTTP/1.1\r\nHost: {DOMAIN}\r\n"
                   f"X-Slow: ").encode() + b"slowloris" * 200
        first = True
        while not self.stop.is_set():
            if not first:
                await asyncio.sleep(random.uniform(4, 8))
                if self.stop.is_set():
                    break
            first = False
            self.attempts += 1
            try:
                reader, writer = await open_web(self.srv, service, ip)
            except WebRefused:
                h["refused"].add("closed (tls)")
                self.refused.add("closed (tls)")
                continue
            except (OSError, asyncio.TimeoutError) as e:
                h["connect_errors"].add(type(e).__name__)
                self.connect_errors.add(type(e).__name__)
                continue
            try:
                if service != "https":
                    # No greeting: a refused client gets its 503 at once.
                    lines, eof = await read_lines(reader, 0.3, 1)
                    if eof or lines:
                        key = reply_key(lines[0]) if lines else "closed"
                        h["refused"].add(key)
                        self.refused.add(key)
                        continue
                self.accepted += 1
                h["accepted"] += 1
                self.by_service.add(service)
                self.held += 1
                self.held_peak = max(self.held_peak, self.held)
                t0 = now()
                wall0 = time.time()
                last = b""
                k = 0
                try:
                    while not self.stop.is_set():
                        try:
                            data = await asyncio.wait_for(reader.read(4096),
                                                          random.uniform(*self.drip))
                        except (asyncio.TimeoutError, TimeoutError):
                            data = None
                        except OSError:   # reset, TLS EOF without close_notify
                            data = b""
                        # Judged when a read found nothing, twice: when this
                        # process lags, a read may time out with the answer
                        # already here.
                        if data is None and now() - t0 > self.http_bound:
                            try:
                                data = await asyncio.wait_for(reader.read(4096), 5)
                            except (asyncio.TimeoutError, TimeoutError):
                                pass
                            except OSError:
                                data = b""
                        if data is None and now() - t0 > self.http_bound:
                            h["unexpected"].append(
                                f"{service}: still open {now() - t0:.1f} s after "
                                f"connecting, {k} bytes sent, got {last[:60]!r}")
                            break
                        if data == b"":
                            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", last)
                            key = f"HTTP {statuses[-1].decode()}" if statuses else "eof"
                            h["closed_by_server"].add(key)
                            h["by_service"].add(f"{service} {key}")
                            h["close_after"].append(now() - t0)
                            # By the server's clock: when it wrote the 408.
                            date = re.findall(rb"\r\nDate: ([^\r\n]+)", last)
                            sent = (email.utils.parsedate_to_datetime(
                                date[-1].decode()).timestamp() - wall0) if date else 0
                            # 503: refused after all (the answer was late).
                            if key not in ("HTTP 408", "HTTP 503", "eof"):
                                h["unexpected"].append(
                                    f"{service}: {key} to a partial request: {last[:120]!r}")
                            elif sent > self.http_bound:
                                h["unexpected"].append(
                                    f"{service}: {key} sent {sent:.0f} s after connecting")
                            break
                        if data:
                            last = (last + data)[-512:]
                        writer.write(payload[k % len(payload):k % len(payload) + 1])
                        k += 1
                        self.bytes_sent += 1
                finally:
                    self.held -= 1
            finally:
                close_writer(writer)

    async def run(self, ramp_done):
        tasks = []
        t0 = now()
        # Ramp up in batches so the accept backlog never overflows.
        for i in range(self.n):
            tasks.append(asyncio.create_task(self.one(i, ramp_done)))
            if i % 100 == 99:
                await asyncio.sleep(0.15)
        for j in range(self.n_http):
            tasks.append(asyncio.create_task(self.one_http(j)))
            if j % 100 == 99:
                await asyncio.sleep(0.15)
        total = self.n + self.n_http
        # Wait until each has been accepted or refused once.
        while self.accepted + sum(self.refused.values()) + \
                sum(self.connect_errors.values()) < total and now() - t0 < 60:
            await asyncio.sleep(0.1)
        self.ramp_seconds = round(now() - t0, 2)
        ramp_done.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    def report(self):
        h = self.http
        return {
            "target": self.n + self.n_http,
            "source_ips": f"{self.ips[0]}-{self.ips[-1]} ({len(self.ips)})",
            "attempts": self.attempts,
            "accepted": self.accepted,
            "accepted_by_service": dict(self.by_service),
            "refused": dict(self.refused),
            "connect_errors": dict(self.connect_errors),
            "held_peak": self.held_peak,
            "held_at_end": self.held,
            "closed_by_server": dict(self.closed_by_server),
            "held_before_close_s": summary(self.close_after),
            "bytes_dripped": self.bytes_sent,
            "ramp_seconds": self.ramp_seconds,
            # The web listeners' part of the crowd (also counted above).
            "http": {
                "target": self.n_http,
                "max_connections": self.srv.http_limits["max_connections"],
                "accepted": h["accepted"],
                "refused": dict(h["refused"]),
                "connect_errors": dict(h["connect_errors"]),
                "closed_by_server": dict(h["closed_by_server"]),
                "closed_by_server_by_service": dict(h["by_service"]),
                "held_before_close_s": summary(h["close_after"]),
                "close_bound_s": self.http_bound,
                "unexpected": h["unexpected"][:50],
            },
        }


# ---------------------------------------------------------------- garbage

class Garbage:
    """Malformed input of every kind, round after round."""

    def __init__(self, srv, profile, stop):
        self.srv = srv
        self.stop = stop
        self.big = profile["big_line"]
        self.never_read_cap = profile["never_read_cap"]
        self.never_read_held = []    # writers held open, never read
        self.kinds = {}         # kind -> Counter of outcomes
        self.bytes_sent = 0
        self.rounds = 0
        self.failures = []      # expectation misses
        self.hello = client_hello()
        self.ip_i = 0

    def ip(self):
        self.ip_i += 1
        return GARBAGE_IPS[self.ip_i % len(GARBAGE_IPS)]

    def note(self, kind, outcome):
        self.kinds.setdefault(kind, Counter()).add(outcome)

    def expect(self, kind, ok, detail):
        if not ok:
            self.failures.append(f"{kind}: {detail}")
        self.note(kind, "ok" if ok else "UNEXPECTED")

    async def send(self, writer, data, chunk=65536):
        for i in range(0, len(data), chunk):
            writer.write(data[i:i + chunk])
            await asyncio.wait_for(writer.drain(), 60)
        self.bytes_sent += len(data)

    async def greet(self, service):
        reader, writer = await open_conn(self.srv.ports[service], self.ip())
        lines, eof = await read_lines(reader, 15, 1)
        if not lines or not (lines[0][:1] in (b"2", b"+") or lines[0].startswith(b"* OK")):
            close_writer(writer)
            return None, None, lines
        return reader, writer, lines

    async def exchange(self, service, data, wait=10, limit=64):
        """Connect, greeting, send `data`, collect replies; (lines, eof)."""
        reader, writer, first = await self.greet(service)
        if reader is None:
            return None, first
        try:
            await self.send(writer, data)
            lines, eof = await read_lines(reader, wait, limit)
            return lines, eof
        finally:
            close_writer(writer)

    # Each check: what is sent and what a correct server answers.
    async def random_bytes(self, service):
        kind = f"random-bytes/{service}"
        lines, eof = await self.exchange(service, os.urandom(32768), wait=10)
        if lines is None:
            return self.note(kind, "refused")
        # Whatever it made of the noise, it answered with errors, never 2xx
        # beyond what a random line could mean, and it did not hang.
        self.note(kind, "closed" if eof else "open")
        for ln in lines:
            self.note(kind, "reply " + reply_key(ln))

    async def long_line(self, service):
        kind = f"1MB-line/{service}"
        if service == "imap":
            # The reader refuses the line (tagged BAD) and resynchronizes:
            # the next command is answered.
            lines, eof = await self.exchange(
                service, b"a1 NOOP " + b"x" * self.big + b"\r\na2 NOOP\r\n",
                wait=30, limit=2)
            if lines is None:
                return self.note(kind, "refused")
            ok = (len(lines) == 2 and lines[0].startswith(b"a1 BAD") and
                  lines[1].startswith(b"a2 OK"))
            return self.expect(kind, ok, f"replies {lines}")
        probe = b"\r\nNOOP\r\n" if service != "pop3" else b"\r\nCAPA\r\n"
        lines, eof = await self.exchange(service, b"NOOP " + b"x" * self.big + probe,
                                         wait=30, limit=2)
        if lines is None:
            return self.note(kind, "refused")
        keys = [reply_key(x) for x in lines]
        if service == "pop3":
            ok = len(keys) == 2 and keys[0].startswith("-ERR") and keys[1] == "+OK"
        else:
            ok = keys[:2] == ["500 5.5.2", "250 2.0.0"]
        self.expect(kind, ok, f"replies {keys}")

    async def long_text_line(self):
        kind = "1MB-line/message-text"
        reader, writer, _ = await self.greet("smtp")
        if reader is None:
            return self.note(kind, "refused")
        try:
            await self.send(writer, b"EHLO garbage.test\r\nMAIL FROM:<g@remote.test>\r\n"
                            b"RCPT TO:<" + SINK_USER.encode() + b">\r\nDATA\r\n")
            lines, _ = await read_lines(reader, 15, 64)
            await self.send(writer, b"Subject: long line\r\n\r\n" + b"y" * self.big +
                            b"\r\n.\r\n")
            final, _ = await read_lines(reader, 30, 1)
            keys = [reply_key(x) for x in final]
            # RFC 5321 4.5.3.1.6: 1000 octets per text line; refused whole.
            self.expect(kind, keys == ["554 5.6.0"], f"final reply {keys}")
        finally:
            close_writer(writer)

    async def nul_bytes(self):
        kind = "NUL/command"
        lines, eof = await self.exchange(
            "smtp", b"EHLO a\0b.test\r\nMAIL FROM:<a\0@remote.test>\r\n" +
            b"\0" * 4096 + b"\r\nNOOP\r\n", wait=10, limit=4)
        if lines is None:
            return self.note(kind, "refused")
        keys = [reply_key(x) for x in lines]
        self.expect(kind, keys == ["500 5.5.2"] * 3 + ["250 2.0.0"], f"replies {keys}")
        kind = "NUL/pop3"
        lines, eof = await self.exchange("pop3", b"USER a\0b\r\nCAPA\r\n", wait=10,
                                         limit=1)
        if lines is None:
            return self.note(kind, "refused")
        self.expect(kind, bool(lines) and lines[0].startswith(b"-ERR"),
                    f"replies {lines[:1]}")

    async def nul_text(self):
        kind = "NUL/message-text"
        reader, writer, _ = await self.greet("smtp")
        if reader is None:
            return self.note(kind, "refused")
        try:
            await self.send(writer, b"EHLO garbage.test\r\nMAIL FROM:<g@remote.test>\r\n"
                            b"RCPT TO:<" + SINK_USER.encode() + b">\r\nDATA\r\n")
            await read_lines(reader, 15, 64)
            await self.send(writer, b"Subject: nul\r\n\r\nnul \0 here\r\n\0\0\0\r\n.\r\n")
            final, _ = await read_lines(reader, 30, 1)
            # Accepting (8-bit data) or refusing are both fine; record it.
            self.note(kind, "final " + (reply_key(final[0]) if final else "none"))
        finally:
            close_writer(writer)

    async def hello_on_plain(self, service):
        kind = f"ClientHello/{service}"
        lines, eof = await self.exchange(service, self.hello, wait=5)
        if lines is None:
            return self.note(kind, "refused")
        ok = all(not x.startswith(b"2") and not x.startswith(b"3") and
                 not x.startswith(b"+OK") for x in lines)
        self.expect(kind, ok, f"replies {lines[:3]}")
        self.note(kind, "closed" if eof else "open-after-5s")

    async def plain_on_tls(self, service):
        kind = f"plaintext/{service}"
        try:
            reader, writer = await open_conn(self.srv.ports[service], self.ip())
        except (OSError, asyncio.TimeoutError):
            return self.note(kind, "connect-failed")
        t0 = now()
        try:
            text = {"submissions": b"EHLO plain.test\r\n",
                    "https": http_request("GET", "/")}.get(service, b"USER x\r\n")
            await self.send(writer, text * 4)
            data = b""
            eof = False
            try:
                while len(data) < 65536:
                    chunk = await asyncio.wait_for(reader.read(4096), 35)
                    if not chunk:
                        eof = True
                        break
                    data += chunk
            except (asyncio.TimeoutError, TimeoutError):
                pass
            except ConnectionError:
                eof = True
            # A TLS alert at most; never a plaintext protocol reply.
            ok = eof and not data.startswith((b"220", b"250", b"+OK", b"HTTP/"))
            if data.startswith(b"-ERR [SYS/TEMP] Too many"):
                return self.note(kind, "refused")
            self.expect(kind, ok, f"eof={eof} data={data[:40]!r}")
            self.note(kind, f"closed<{int(now() - t0) + 1}s")
        finally:
            close_writer(writer)

    async def half_close(self, service):
        kind = f"half-close/{service}"
        try:
            reader, writer = await open_conn(self.srv.ports[service], self.ip())
        except (OSError, asyncio.TimeoutError):
            return self.note(kind, "connect-failed")
        try:
            if service in ("smtp", "submission"):
                writer.write(b"EHLO half.test\r\nMAIL FROM:<h@remote.test>\r\n")
            elif service == "pop3":
                writer.write(b"CAPA\r\n")
            elif service == "imap":
                writer.write(b"a CAPABILITY\r\n")
            elif service in ("http", "admin"):
                # A request cut short, then our FIN.
                writer.write(b"GET /health HTTP/1.1\r\nHost: a\r\n")
            writer.write_eof()
            lines, eof = await read_lines(reader, 20, 200)
            self.expect(kind, eof, f"not closed after our FIN ({lines[-1:]})")
        finally:
            close_writer(writer)

    async def never_read(self, service):
        """Pipelines commands and never reads: held until the end."""
        kind = f"never-read/{service}"
        if len(self.never_read_held) >= self.never_read_cap:
            return
        reader, writer, _ = await self.greet(service)
        if reader is None:
            return self.note(kind, "refused")
        cmd = {"pop3": b"CAPA\r\n", "imap": b"a NOOP\r\n"}.get(service, b"NOOP\r\n")
        sent = 0
        try:
            # Until the socket buffers on both sides are full.
            for _ in range(64):
                writer.write(cmd * 16384)
                sent += len(cmd) * 16384
                await asyncio.wait_for(writer.drain(), 2)
        except (asyncio.TimeoutError, TimeoutError):
            self.note(kind, "blocked (buffers full)")
        except ConnectionError:
            self.note(kind, "closed by server")
            close_writer(writer)
            return
        self.bytes_sent += sent
        self.never_read_held.append((kind, reader, writer))

    # ---- the web listeners: no greeting, one answer per request. Blocking
    # sockets in a thread of their own: a server that answers and closes
    # before it has read everything resets the connection, and what it
    # said must still be read then (asyncio drops it when a write fails).

    def web_connect(self, service):
        sock = socket.create_connection(("127.0.0.1", self.srv.ports[service]), timeout=10,
                                        source_address=(self.ip(), 0))
        if service != "https":
            return sock
        try:
            return tls_client().wrap_socket(sock, server_hostname=HOSTNAME)
        except (ssl.SSLError, ConnectionError) as e:
            # A refused client is closed during the handshake.
            sock.close()
            raise WebRefused(type(e).__name__) from e

    def web_talk(self, service, data, wait=5, until_answer=True):
        """Connects to a web listener, sends `data` (in pieces, stopping at
        the first answer with `until_answer`), then reads until the server
        closes or `wait` passes. (responses, eof, raw), or (None, how it
        was refused, None)."""
        try:
            sock = self.web_connect(service)
        except WebRefused:
            return None, "refused", None
        except OSError as e:
            return None, f"connect {type(e).__name__}", None
        got = bytearray()
        eof = False
        with sock:
            try:
                for i in range(0, len(data), 65536):
                    if until_answer:
                        # Anything from the server yet? (Not select(): TLS
                        # 1.3 session tickets make a socket readable.)
                        sock.settimeout(0)
                        try:
                            chunk = sock.recv(65536)
                        except (ssl.SSLWantReadError, BlockingIOError):
                            chunk = None
                        sock.settimeout(10)
                        if chunk is not None:
                            got += chunk
                            eof = not chunk
                            break
                    sock.sendall(data[i:i + 65536])
                    self.bytes_sent += len(data[i:i + 65536])
            except OSError:
                pass   # reset (or stuck) while we sent: read what it said
            end = now() + wait
            while not eof and now() < end:
                sock.settimeout(max(0.01, end - now()))
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    break
                except OSError:
                    chunk = b""   # a reset, after what came before it
                if not chunk:
                    eof = True
                    break
                got += chunk
        return http_responses(bytes(got)), eof, bytes(got)

    def web_check(self, kind, service, data, statuses, **kw):
        """`data` must get exactly `statuses`, the last one saying
        "Connection: close", and then the server must close."""
        responses, eof, raw = self.web_talk(service, data, **kw)
        if responses is None:
            return self.note(kind, eof)
        if is_http_refusal(responses):
            return self.note(kind, "refused")
        codes = [r[0] for r in responses]
        said_close = bool(responses) and responses[-1][1].get("connection") == "close"
        ok = codes == statuses and said_close and eof
        shown = codes if len(codes) <= 5 else f"{codes[:3]}... ({len(codes)})"
        self.expect(kind, ok, f"statuses {shown}, Connection: close {said_close}, "
                              f"closed {eof}, {raw[:100]!r}")

    def web_keep_alive(self, service, path, host):
        """One request at a time on one connection, more than the server
        answers on one: 100 answers of 200, then it closes."""
        kind = f"keep-alive/{service}"
        try:
            sock = self.web_connect(service)
        except WebRefused:
            return self.note(kind, "refused")
        except OSError:
            return self.note(kind, "connect-failed")
        codes, closing, eof = [], [], False
        with sock, sock.makefile("rb") as f:
            for _ in range(120):
                try:
                    sock.sendall(http_request("GET", path, host=host))
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = f.readline(65536)
                        if not line:
                            break
                        head += line
                except OSError:
                    head = b""
                parsed = http_head(head) if head.endswith(b"\r\n\r\n") else None
                if parsed is None:
                    eof = not head
                    break
                status, headers = parsed
                try:
                    body = f.read(int(headers.get("content-length", "0")))
                except (OSError, ValueError):
                    break
                if not codes and is_http_refusal([(status, headers, body)]):
                    return self.note(kind, "refused")
                codes.append(status)
                closing.append(headers.get("connection") == "close")
        ok = codes == [200] * 100 and closing[-1] and not any(closing[:-1]) and eof
        said_close = closing.index(True) + 1 if True in closing else None
        self.expect(kind, ok, f"{len(codes)} answers {sorted(set(codes))}, "
                              f"Connection: close on answer {said_close}, closed {eof}")

    def web_checks(self):
        """Every web check once, one connection at a time: the attackers'
        addresses then hold a web connection or two each, fewer than the
        slowloris addresses, so the fair share admits them."""
        big = self.big
        ac = http_request("GET", AUTOCONFIG_PATH)
        checks = [
            ("random-bytes/http", "http", os.urandom(32768), [400]),
            ("random-bytes/admin", "admin", os.urandom(32768), [400]),
            ("random-bytes/https", "https", os.urandom(32768), [400]),
            ("ClientHello/http", "http", self.hello, [400]),
            ("NUL/http", "http", b"GET /\0 HTTP/1.1\r\nHost: example.test\r\n\r\n",
             [400]),
            # 16 KiB of request line and fields at most.
            ("1MB-request-line/http", "http", b"GET /" + b"x" * big +
             b" HTTP/1.1\r\nHost: example.test\r\n\r\n", [414]),
            ("1MB-request-line/https", "https", b"GET /" + b"x" * big +
             b" HTTP/1.1\r\nHost: example.test\r\n\r\n", [414]),
            ("1MB-request-line-no-CRLF/http", "http", b"GET /" + b"x" * big, [414]),
            ("1MB-header/http", "http", b"GET / HTTP/1.1\r\nHost: example.test\r\n"
             b"X-Big: " + b"x" * big + b"\r\n\r\n", [431]),
            ("1MB-header/admin", "admin", b"GET /health HTTP/1.1\r\nHost: a\r\n"
             b"X-Big: " + b"x" * big + b"\r\n\r\n", [431]),
            ("too-many-fields/https", "https", http_request(
                "GET", AUTOCONFIG_PATH, headers=[(f"X-F{i}", "y") for i in range(200)]),
             [431]),
            # 64 KiB of body at most: refused before it is sent.
            ("huge-Content-Length/http", "http", http_request(
                "POST", "/", headers=[("Content-Length", "99999999999")]), [413]),
            ("huge-Content-Length/https", "https", http_request(
                "POST", "/autodiscover/autodiscover.xml",
                headers=[("Content-Type", "text/xml"),
                         ("Content-Length", str(1 << 30))]) + b"<" * 65536, [413]),
            ("huge-chunked-body/https", "https", http_request(
                "POST", "/autodiscover/autodiscover.xml",
                headers=[("Transfer-Encoding", "chunked")]) +
             b"10000\r\n" + b"x" * 65536 + b"\r\n" + b"10000\r\n" + b"x" * 65536 +
             b"\r\n0\r\n\r\n", [413]),
            # RFC 9112 3.2: exactly one Host field in HTTP/1.1.
            ("two-Host-fields/https", "https", http_request(
                "GET", AUTOCONFIG_PATH, headers=[("Host", "evil.test")]), [400]),
            ("no-Host-field/http", "http", http_request("GET", AUTOCONFIG_PATH, host=None),
             [400]),
            ("HTTP-2.0/http", "http", b"GET / HTTP/2.0\r\nHost: example.test\r\n\r\n",
             [505]),
            # Pipelined at once, as many as one connection is answered
            # (the last answer says close).
            ("pipelined/http", "http", ac * 100, [200] * 100,
             {"until_answer": False, "wait": 10}),
            ("pipelined/https", "https", ac * 100, [200] * 100,
             {"until_answer": False, "wait": 10}),
            ("pipelined/admin", "admin", http_request("GET", "/health", host="a") * 100,
             [200] * 100, {"until_answer": False, "wait": 10}),
        ]
        for kind, service, data, statuses, *kw in checks:
            if self.stop.is_set():
                return
            self.web_check(kind, service, data, statuses, **(kw[0] if kw else {}))
        # More than that: the server closes after 100 with requests unread,
        # which resets the connection, and the reset may destroy answers
        # before the client has them (RFC 9112 9.6). So: only 200s, at most
        # 100, then closed.
        kind = "pipelined-over-limit/http"
        responses, eof, raw = self.web_talk("http", ac * 150, wait=10, until_answer=False)
        if responses is None or is_http_refusal(responses):
            self.note(kind, "refused")
        else:
            codes = [r[0] for r in responses]
            self.expect(kind, eof and len(codes) <= 100 and set(codes) <= {200},
                        f"{len(codes)} answers {sorted(set(codes))}, closed {eof}")
            self.note(kind, "100 answers" if len(codes) == 100 else "fewer answers")
        self.web_keep_alive("admin", "/health", "127.0.0.1")
        self.web_keep_alive("https", AUTOCONFIG_PATH, DOMAIN)

    async def web(self):
        await asyncio.to_thread(self.web_checks)

    async def misc(self):
        kind = "huge-AUTH-line"
        lines, eof = await self.exchange("smtp", b"AUTH PLAIN " + b"A" * (1 << 20) +
                                         b"\r\nNOOP\r\n", wait=10, limit=2)
        if lines is not None:
            keys = [reply_key(x) for x in lines]
            self.expect(kind, len(keys) == 2 and keys[0][:1] == "5" and
                        keys[1] == "250 2.0.0", f"replies {keys}")
        kind = "BDAT-nonsense"
        lines, eof = await self.exchange(
            "smtp", b"EHLO g.test\r\nBDAT 99999999999999999999999 LAST\r\n"
            b"BDAT -1\r\nBDAT 10\r\n0123456789NOOP\r\n", wait=10, limit=16)
        if lines is not None:
            keys = [reply_key(x) for x in lines if not x.startswith(b"250-")]
            self.expect(kind, len(keys) >= 4 and all(k[:1] == "5" for k in keys[1:4]),
                        f"replies {keys}")

    async def run(self):
        while not self.stop.is_set():
            self.rounds += 1
            jobs = []
            for service in ("smtp", "submission", "pop3", "imap"):
                jobs += [self.random_bytes(service), self.long_line(service),
                         self.hello_on_plain(service), self.half_close(service),
                         self.never_read(service)]
            for service in ("submissions", "pop3s", "imaps", "https"):
                jobs += [self.plain_on_tls(service), self.half_close(service)]
            jobs += [self.half_close("http"), self.half_close("admin")]
            jobs += [self.long_text_line(), self.nul_bytes(), self.nul_text(),
                     self.misc(), self.web()]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    self.note("client-side exception", type(r).__name__)
            try:
                await asyncio.wait_for(self.stop.wait(), 2)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        still = 0
        for kind, reader, writer in self.never_read_held:
            if not writer.transport.is_closing():
                still += 1
            close_writer(writer)
        self.never_read_open_at_end = still

    def report(self):
        return {
            "rounds": self.rounds,
            "bytes_sent": self.bytes_sent,
            "never_read_held": len(self.never_read_held),
            "kinds": {k: dict(v) for k, v in sorted(self.kinds.items())},
            "unexpected": self.failures[:50],
        }


# ---------------------------------------------------------------- brute force

class SourcePOP3(poplib.POP3):
    def __init__(self, host, port, source, timeout=30):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


class SourcePOP3SSL(poplib.POP3_SSL):
    def __init__(self, host, port, source, timeout=30):
        self._source = source
        super().__init__(host, port, timeout=timeout, context=tls_client())

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


class BruteForce:
    """Wrong passwords for the good user's account from one address."""

    def __init__(self, srv, total, stop):
        self.srv = srv
        self.total = total
        self.stop = stop
        self.lock = threading.Lock()
        self.issued = 0
        self.outcomes = {"smtp": Counter(), "pop3": Counter()}
        self.successes = 0
        self.conn_refused = Counter()
        self.seconds = None
        self.right_password_after = None
        self.first_lockout_at = None

    def take(self):
        with self.lock:
            if self.issued >= self.total:
                return None
            self.issued += 1
            return self.issued

    def smtp_connect(self, port_name):
        if port_name == "submissions":
            conn = smtplib.SMTP_SSL("127.0.0.1", self.srv.ports["submissions"],
                                    local_hostname="brute.test", timeout=30,
                                    context=tls_client(), source_address=(BRUTE_IP, 0))
        else:
            conn = smtplib.SMTP("127.0.0.1", self.srv.ports["submission"],
                                local_hostname="brute.test", timeout=30,
                                source_address=(BRUTE_IP, 0))
            conn.starttls(context=tls_client())
        conn.ehlo()
        return conn

    def smtp_worker(self, port_name):
        conn = None
        while True:
            n = self.take()
            if n is None:
                break
            blob = base64.b64encode(
                f"\0{GOOD_USER}\0wrong-{n}-{random.random()}".encode()).decode()
            key = "no answer"
            # Connection trouble (the server closing after too many errors,
            # a refused connection) is retried: each attempt gets an answer.
            for _ in range(10):
                try:
                    if conn is None:
                        conn = self.smtp_connect(port_name)
                    code, msg = conn.docmd("AUTH", "PLAIN " + blob)
                except smtplib.SMTPConnectError as e:
                    self.conn_refused.add(f"connect {e.smtp_code}")
                    conn = None
                    time.sleep(0.2)
                    continue
                except (smtplib.SMTPServerDisconnected, OSError, ssl.SSLError):
                    self.conn_refused.add("disconnected before AUTH answer")
                    conn = None
                    continue
                key = reply_key(f"{code} {msg.decode(errors='replace')}")
                if code == 235:
                    self.successes += 1
                if code == 421 and self.first_lockout_at is None:
                    self.first_lockout_at = n
                if code != 535:
                    try:
                        conn.close()
                    except Exception:
                        pass
                    conn = None
                break
            self.outcomes["smtp"].add(key)
        if conn is not None:
            try:
                conn.quit()
            except Exception:
                pass

    def pop3_connect(self, port_name):
        if port_name == "pop3s":
            return SourcePOP3SSL("127.0.0.1", self.srv.ports["pop3s"], BRUTE_IP)
        conn = SourcePOP3("127.0.0.1", self.srv.ports["pop3"], BRUTE_IP)
        conn.stls(context=tls_client())
        return conn

    def pop3_worker(self, port_name):
        conn = None
        while True:
            n = self.take()
            if n is None:
                break
            key = "no answer"
            for _ in range(10):
                try:
                    if conn is None:
                        conn = self.pop3_connect(port_name)
                    conn.user(GOOD_USER)
                except (poplib.error_proto, OSError, EOFError, ssl.SSLError) as e:
                    # Refused (-ERR [SYS/TEMP]) or closed after too many
                    # errors: not an answer to a password.
                    text = e.args[0] if e.args and isinstance(e.args[0], bytes) else b""
                    self.conn_refused.add(reply_key(text) if text else type(e).__name__)
                    conn = None
                    time.sleep(0.05)
                    continue
                try:
                    conn.pass_(f"wrong-{n}-{random.random()}")
                    key = "+OK"
                    self.successes += 1
                except poplib.error_proto as e:
                    text = e.args[0] if e.args and isinstance(e.args[0], bytes) else b""
                    key = reply_key(text) + (" (locked out)" if b"Too many failed" in text
                                             else "")
                    if b"Too many failed" in text:
                        if self.first_lockout_at is None:
                            self.first_lockout_at = n
                        conn = None
                except (OSError, EOFError, ssl.SSLError):
                    conn = None
                    continue
                break
            self.outcomes["pop3"].add(key)
        if conn is not None:
            try:
                conn.quit()
            except Exception:
                pass

    def right_password_from_locked_ip(self):
        out = {}
        try:
            with smtplib.SMTP_SSL("127.0.0.1", self.srv.ports["submissions"],
                                  local_hostname="brute.test", timeout=30,
                                  context=tls_client(), source_address=(BRUTE_IP, 0)) as c:
                c.ehlo()
                blob = base64.b64encode(f"\0{GOOD_USER}\0{PASSWORD}".encode()).decode()
                code, msg = c.docmd("AUTH", "PLAIN " + blob)
                out["smtp"] = reply_key(f"{code} {msg.decode(errors='replace')}")
        except (smtplib.SMTPException, OSError) as e:
            out["smtp"] = f"error {type(e).__name__}"
        try:
            p = SourcePOP3SSL("127.0.0.1", self.srv.ports["pop3s"], BRUTE_IP)
            p.user(GOOD_USER)
            try:
                p.pass_(PASSWORD)
                out["pop3"] = "+OK"
                p.quit()
            except poplib.error_proto as e:
                out["pop3"] = reply_key(e.args[0])
        except (OSError, poplib.error_proto) as e:
            out["pop3"] = f"error {type(e).__name__}"
        return out

    def run(self):
        t0 = now()
        workers = [threading.Thread(target=self.smtp_worker, args=(p,))
                   for p in ("submissions", "submission")]
        workers += [threading.Thread(target=self.pop3_worker, args=(p,))
                    for p in ("pop3s", "pop3")]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.seconds = round(now() - t0, 2)
        self.right_password_after = self.right_password_from_locked_ip()

    def report(self):
        return {
            "source_ip": BRUTE_IP,
            "attempts": self.issued,
            "smtp": dict(self.outcomes["smtp"]),
            "pop3": dict(self.outcomes["pop3"]),
            "connections_refused": dict(self.conn_refused),
            "accepted_wrong_passwords": self.successes,
            "locked_out_by_attempt": self.first_lockout_at,
            "right_password_from_locked_ip": self.right_password_after,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------- relay tricks

# (what is tried, the command) — every one must get a 5xx.
RELAY_RCPTS = [
    "far@remote.test",                      # plain relay
    "FAR@Remote.TEST",                      # mixed case
    "u%remote.test@example.test",           # percent hack
    "u%remote.test@EXAMPLE.Test",           # percent hack, mixed case
    "good%remote.test@example.test",        # percent hack on a real user
    "remote.test!good@example.test",        # bang path
    "remote.test!far@remote.test",          # bang path at a foreign domain
    '"far@remote.test"@example.test',       # quoted local part with @
    '"good@remote.test"@EXAMPLE.TEST',
    "@example.test:far@remote.test",        # source route, foreign final
    "@a.test,@b.test:far@remote.test",      # source route, several hops
    "@example.test,@mx.example.test:far@remote.test",
    "far@[192.0.2.1]",                      # foreign IP literal
    "good@[127.0.0.1]",                     # our own IP literal
    "far@[IPv6:2001:db8::1]",
    "far%remote.test@[127.0.0.1]",
    "good@example.test.",                   # trailing dot
    "far@remote.test.",
    "good@example.test..",
    "far@remote.test@example.test",         # a@b@c
    "good@example.test@remote.test",
    "far@remote.test%example.test",
]
# Tricks that an authenticated user may not use either (a plain foreign
# address or a source route to one is what a logged-in user may send to).
AUTH_RELAY_RCPTS = [
    "u%remote.test@example.test",
    "u%remote.test@EXAMPLE.Test",
    "good%remote.test@example.test",
    "remote.test!good@example.test",
    '"far@remote.test"@example.test',
    '"good@remote.test"@EXAMPLE.TEST',
    "far@[192.0.2.1]",
    "good@[127.0.0.1]",
    "far@[IPv6:2001:db8::1]",
    "far%remote.test@[127.0.0.1]",
    "good@example.test.",
    "far@remote.test.",
    "good@example.test..",
    "far@remote.test@example.test",
    "good@example.test@remote.test",
    "far@remote.test%example.test",
]
LOCAL_SENDERS = ["good@example.test", "GOOD@EXAMPLE.TEST", "nobody@example.test",
                 "good@example.test.", '"good"@example.test', "@x.test:good@example.test"]


class RelayTricks:
    def __init__(self, srv, stop):
        self.srv = srv
        self.stop = stop
        self.results = {}     # (mode, command) -> Counter of replies
        self.tried = 0
        self.not_refused = []
        self.rounds = 0
        self.errors = Counter()

    def record(self, mode, what, code, msg):
        key = reply_key(f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}")
        self.results.setdefault(f"{mode} {what}", Counter()).add(key)
        self.tried += 1
        if not (500 <= code <= 599):
            self.not_refused.append(f"{mode} {what}: {key}")

    def connect(self, mode):
        port = self.srv.ports["submission" if mode == "auth-587" else "smtp"]
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="relay.test", timeout=30,
                         source_address=(RELAY_IP, 0))
        if mode in ("starttls-25", "auth-587"):
            s.starttls(context=tls_client())
        s.ehlo()
        if mode == "auth-587":
            s.login(GOOD_USER, PASSWORD)
        return s

    def one(self, mode, sender, rcpt=None):
        for attempt in range(20):
            try:
                with self.connect(mode) as s:
                    code, msg = s.docmd("MAIL", f"FROM:<{sender}>")
                    if rcpt is None:
                        self.record(mode, f"MAIL FROM:<{sender}>", code, msg)
                        return
                    if code != 250:
                        raise RuntimeError(f"MAIL FROM:<{sender}> got {code} {msg!r}")
                    code, msg = s.docmd("RCPT", f"TO:<{rcpt}>")
                    self.record(mode, f"RCPT TO:<{rcpt}>", code, msg)
                    if code == 250:
                        s.rset()
                    return
            except smtplib.SMTPConnectError as e:
                self.errors.add(f"connect {e.smtp_code}")
            except (smtplib.SMTPServerDisconnected, OSError) as e:
                self.errors.add(type(e).__name__)
            time.sleep(0.5)
        self.errors.add("gave up")

    def run_round(self):
        for rcpt in RELAY_RCPTS:
            self.one("plain-25", "sender@remote.test", rcpt)
            self.one("starttls-25", "sender@remote.test", rcpt)
        for rcpt in AUTH_RELAY_RCPTS:
            self.one("auth-587", GOOD_USER, rcpt)
        for sender in LOCAL_SENDERS:
            self.one("plain-25", sender)
        # Submission without AUTH: nothing at all.
        try:
            with smtplib.SMTP("127.0.0.1", self.srv.ports["submission"],
                              local_hostname="relay.test", timeout=30,
                              source_address=(RELAY_IP, 0)) as s:
                s.starttls(context=tls_client())
                s.ehlo()
                code, msg = s.docmd("MAIL", "FROM:<good@example.test>")
                self.record("noauth-587", "MAIL FROM:<good@example.test>", code, msg)
        except (smtplib.SMTPException, OSError) as e:
            self.errors.add(type(e).__name__)

    def run(self):
        while True:
            self.rounds += 1
            self.run_round()
            if self.stop.wait(1.0):
                break

    def report(self):
        return {
            "source_ip": RELAY_IP,
            "rounds": self.rounds,
            "commands_tried": self.tried,
            "distinct_tricks": len(self.results),
            "not_refused": self.not_refused[:50],
            "client_errors": dict(self.errors),
            "replies": {k: dict(v) for k, v in sorted(self.results.items())},
        }


# ---------------------------------------------------------------- good client

def make_message(i, sender, marker):
    rnd = random.Random(i)
    lines = []
    for j in range(rnd.randint(3, 300)):
        n = rnd.randint(0, 120)
        line = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 .,-") for _ in range(n))
        if j % 17 == 0:
            line = "." + line          # dot-stuffing on the way in and out
        lines.append(line.rstrip())
    lines.append(f"marker {marker}")
    headers = [
        f"From: <{sender}>",
        f"To: <{GOOD_USER}>",
        f"Subject: abuse {marker}",
        f"Date: {email.utils.formatdate()}",
        f"Message-ID: <{marker}@client.test>",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()


class GoodClient:
    """The user the server is there for, at 127.0.0.1."""

    def __init__(self, srv, total, stop):
        self.srv = srv
        self.total = total
        self.stop = stop
        self.sent = {}       # marker -> dict(data, sha, accepted_at, route)
        self.lock = threading.Lock()
        self.accept_latency = []
        self.e2e = []
        self.refused = Counter()   # connection-level refusals and errors
        self.retries = 0
        self.received = {}   # marker -> count
        self.mismatched = []
        self.unknown = 0
        self.pop3_sessions = 0
        self.pop3_errors = Counter()
        self.send_done = threading.Event()
        self.failed = []
        self.seconds_send = None
        self.seconds_all = None
        # The web side: /health and the autoconfig document, all along.
        self.web_fetches = Counter()
        self.web_failures = Counter()
        self.web_failure_examples = []
        self.web_latency = []

    def open(self, route):
        if route == "submission":
            s = smtplib.SMTP("127.0.0.1", self.srv.ports["submission"],
                             local_hostname="good.test", timeout=60,
                             source_address=(GOOD_IP, 0))
            s.starttls(context=tls_client())
            s.ehlo()
            s.login(GOOD_USER, PASSWORD)
        else:
            s = smtplib.SMTP("127.0.0.1", self.srv.ports["smtp"],
                             local_hostname="good.test", timeout=60,
                             source_address=(GOOD_IP, 0))
            s.ehlo()
        return s

    def sender_worker(self, route, indexes):
        sender = GOOD_USER if route == "submission" else "friend@remote.test"
        conn, per_conn = None, 0
        for i in indexes:
            marker = f"abuse-{i:05d}-{os.urandom(6).hex()}"
            data = make_message(i, sender, marker)
            t_first = now()
            while True:
                if now() - t_first > ACCEPT_BOUND_S * 3:
                    self.failed.append(f"{marker}: not accepted within {ACCEPT_BOUND_S * 3}s")
                    break
                try:
                    if conn is None:
                        conn, per_conn = self.open(route), 0
                    t0 = now()
                    refused = conn.sendmail(sender, [GOOD_USER], data)
                    t1 = now()
                    if refused:
                        raise smtplib.SMTPRecipientsRefused(refused)
                    with self.lock:
                        self.sent[marker] = {"data": data, "accepted_at": t1,
                                             "route": route}
                        self.accept_latency.append(t1 - t0)
                    per_conn += 1
                    if per_conn >= 20:   # new connections keep coming
                        try:
                            conn.quit()
                        except (smtplib.SMTPException, OSError):
                            pass
                        conn = None
                    break
                except smtplib.SMTPConnectError as e:
                    self.refused.add(f"{route} connect {e.smtp_code}")
                except smtplib.SMTPResponseException as e:
                    self.refused.add(f"{route} {e.smtp_code}")
                except (smtplib.SMTPException, OSError) as e:
                    self.refused.add(f"{route} {type(e).__name__}")
                # A real client retries later; this one soon.
                self.retries += 1
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
                time.sleep(0.5)
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def pop3_once(self, use_ssl):
        if use_ssl:
            p = SourcePOP3SSL("127.0.0.1", self.srv.ports["pop3s"], GOOD_IP, timeout=60)
        else:
            p = SourcePOP3("127.0.0.1", self.srv.ports["pop3"], GOOD_IP, timeout=60)
            p.stls(context=tls_client())
        p.user(GOOD_USER)
        p.pass_(PASSWORD)
        self.pop3_sessions += 1
        _, listing, _ = p.uidl()
        for entry in listing:
            num = int(entry.split()[0])
            _, lines, _ = p.retr(num)
            seen = now()
            got = b"\r\n".join(lines) + b"\r\n"
            m = re.search(rb"^Message-ID: <(abuse-[0-9]+-[0-9a-f]+)@client\.test>", got,
                          re.M)
            if not m:
                self.unknown += 1
            else:
                marker = m.group(1).decode()
                with self.lock:
                    info = self.sent.get(marker)
                if info is None:
                    # Seen before its 250 reached us: keep it for later.
                    deadline = now() + 30
                    while info is None and now() < deadline:
                        time.sleep(0.05)
                        with self.lock:
                            info = self.sent.get(marker)
                if info is None:
                    self.unknown += 1
                else:
                    if not got.endswith(info["data"]):
                        self.mismatched.append(marker)
                    if marker not in self.received:
                        self.e2e.append(max(0.0, seen - info["accepted_at"]))
                    self.received[marker] = self.received.get(marker, 0) + 1
            p.dele(num)
        p.quit()

    def reader(self):
        use_ssl = False
        idle_deadline = None
        while True:
            try:
                self.pop3_once(use_ssl)
            except poplib.error_proto as e:
                self.pop3_errors.add(reply_key(e.args[0]) if e.args else "error")
            except (OSError, EOFError, ssl.SSLError) as e:
                self.pop3_errors.add(type(e).__name__)
            use_ssl = not use_ssl
            with self.lock:
                outstanding = len(self.sent) - len(self.received)
            if self.send_done.is_set() and outstanding <= 0:
                break
            if self.send_done.is_set():
                if idle_deadline is None:
                    idle_deadline = now() + E2E_BOUND_S
                if now() > idle_deadline:
                    break
            time.sleep(0.5)

    def check_autoconfig(self, body):
        """What is wrong with an autoconfig document, or None: it must name
        this server and the ports it listens on (the first of each)."""
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as e:
            return f"not XML ({e})"
        provider = root.find("emailProvider")
        if root.tag != "clientConfig" or provider is None or \
                provider.findtext("domain") != DOMAIN:
            return "no emailProvider for " + DOMAIN
        ports = self.srv.ports
        want = {("incomingServer", "imap", str(ports["imaps"]), "SSL"),
                ("incomingServer", "pop3", str(ports["pop3s"]), "SSL"),
                ("outgoingServer", "smtp", str(ports["submissions"]), "SSL"),
                ("outgoingServer", "smtp", str(ports["submission"]), "STARTTLS")}
        have = {(e.tag, e.get("type"), e.findtext("port"), e.findtext("socketType"))
                for e in provider if e.tag in ("incomingServer", "outgoingServer")
                and e.findtext("hostname") == HOSTNAME}
        return None if want <= have else f"servers {sorted(have)}"

    def web_once(self, what):
        if what == "health":
            c = http.client.HTTPConnection("127.0.0.1", self.srv.ports["admin"], timeout=30,
                                           source_address=(GOOD_IP, 0))
            path, host = "/health", "127.0.0.1"
        elif what == "autoconfig-http":
            c = http.client.HTTPConnection("127.0.0.1", self.srv.ports["http"], timeout=30,
                                           source_address=(GOOD_IP, 0))
            path, host = AUTOCONFIG_PATH, DOMAIN
        else:
            c = http.client.HTTPSConnection("127.0.0.1", self.srv.ports["https"], timeout=30,
                                            source_address=(GOOD_IP, 0),
                                            context=tls_client())
            path, host = AUTOCONFIG_PATH, DOMAIN
        self.web_fetches.add(what)
        t0 = now()
        try:
            c.request("GET", path, headers={"Host": host})
            r = c.getresponse()
            body = r.read()
            self.web_latency.append(now() - t0)
            if r.status != 200:
                wrong = f"HTTP {r.status}"
            elif what == "health":
                wrong = None if body == b"ok\n" else f"body {body[:60]!r}"
            elif not (r.getheader("Content-Type") or "").startswith("application/xml"):
                wrong = f"Content-Type {r.getheader('Content-Type')}"
            else:
                wrong = self.check_autoconfig(body)
        except (http.client.HTTPException, OSError) as e:
            wrong = type(e).__name__
        finally:
            c.close()
        if wrong:
            self.web_failures.add(f"{what} {wrong.split(' (')[0][:40]}")
            if len(self.web_failure_examples) < 10:
                self.web_failure_examples.append(f"{what}: {wrong}")

    def web(self):
        """Fetches /health and the autoconfig document (http, https) on new
        connections until the attack is over (run beside run())."""
        while not self.stop.is_set():
            for what in ("health", "autoconfig-http", "autoconfig-https"):
                self.web_once(what)
            self.stop.wait(0.3)

    def run(self):
        t0 = now()
        idx = list(range(self.total))
        workers = [
            threading.Thread(target=self.sender_worker, args=("submission", idx[0::4])),
            threading.Thread(target=self.sender_worker, args=("submission", idx[1::4])),
            threading.Thread(target=self.sender_worker, args=("smtp", idx[2::4])),
            threading.Thread(target=self.sender_worker, args=("smtp", idx[3::4])),
        ]
        reader = threading.Thread(target=self.reader)
        for w in workers:
            w.start()
        reader.start()
        for w in workers:
            w.join()
        self.seconds_send = round(now() - t0, 2)
        self.send_done.set()
        reader.join()
        self.seconds_all = round(now() - t0, 2)

    def report(self):
        lost = [m for m in self.sent if m not in self.received]
        dup = sum(1 for c in self.received.values() if c > 1)
        return {
            "source_ip": GOOD_IP,
            "to_send": self.total,
            "accepted": len(self.sent),
            "received": len(self.received),
            "lost": len(lost),
            "lost_examples": lost[:10],
            "duplicates": dup,
            "mismatched": len(self.mismatched),
            "unknown_messages": self.unknown,
            "not_accepted": self.failed[:10],
            "connection_refusals_and_errors": dict(self.refused),
            "retries": self.retries,
            "pop3_sessions": self.pop3_sessions,
            "pop3_errors": dict(self.pop3_errors),
            "accept_latency_s": summary(self.accept_latency),
            "end_to_end_s": summary(self.e2e),
            "send_seconds": self.seconds_send,
            "total_seconds": self.seconds_all,
            "web": {
                "fetches": dict(self.web_fetches),
                "failures": dict(self.web_failures),
                "failure_examples": self.web_failure_examples,
                "latency_s": summary(self.web_latency),
            },
        }


# ---------------------------------------------------------------- log

CRASH = re.compile(r"(ERROR|WARNING|FATAL): (Address|Leak|Thread|UndefinedBehavior)Sanitizer"
                   r"|runtime error:|terminate called|Assertion .* failed| critical ")


def log_report(text):
    counts = Counter()
    patterns = {
        "connection refused (limit)": r"connection refused client=\S+ reason=limit",
        "connection evicted": r"connection evicted",
        "auth failed": r"auth failed client=",
        "auth refused (locked out)": r"auth refused client=",
        "relay trick refused": r"relay trick refused",
        "tls handshake failed": r"tls handshake failed",
        "session end=timeout": r"session client=\S+ .*end=timeout",
        "session end=shutdown": r"session client=\S+ .*end=shutdown",
        "smtp accepted": r"smtp accepted id=",
        "http requests answered": r"http request client=",
        "http session end=timeout": r"http session client=\S+ .*end=timeout",
        "http connection refused (limit)": r"http connection refused client=\S+ reason=limit",
        "error lines": r"^\S+ error ",
        "warning lines": r"^\S+ warning ",
    }
    for line in text.splitlines():
        for name, pat in patterns.items():
            if re.search(pat, line):
                counts.add(name)
    m = CRASH.search(text)
    errors = [ln for ln in text.splitlines() if re.match(r"^\S+ (error|critical) ", ln)]
    return {"counts": dict(counts), "crash": text[max(0, m.start() - 300):m.start() + 3000]
            if m else None, "error_examples": errors[:10]}


# ---------------------------------------------------------------- main

async def attack(srv, profile, result):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    stop = asyncio.Event()
    tstop = threading.Event()
    ramp_done = asyncio.Event()

    slow = Slowloris(srv, profile, stop)
    garbage = Garbage(srv, profile, stop)
    brute = BruteForce(srv, profile["passwords"], tstop)
    relay = RelayTricks(srv, tstop)
    good = GoodClient(srv, profile["messages"], tstop)

    slow_task = asyncio.create_task(slow.run(ramp_done))
    await ramp_done.wait()
    print(f"slowloris: {slow.accepted} accepted, {sum(slow.refused.values())} refused "
          f"in {slow.ramp_seconds}s; starting the rest", flush=True)
    t0 = now()
    garbage_task = asyncio.create_task(garbage.run())
    brute_f = loop.run_in_executor(None, brute.run)
    relay_f = loop.run_in_executor(None, relay.run)
    good_f = loop.run_in_executor(None, good.run)
    web_f = loop.run_in_executor(None, good.web)

    deadline = t0 + profile["deadline"]
    while now() < deadline:
        done = good_f.done() and brute_f.done()
        if done and now() - t0 >= profile["min_seconds"]:
            break
        await asyncio.sleep(0.5)
    timed_out = now() >= deadline
    result["attack_seconds"] = round(now() - t0, 1)
    result["timed_out"] = timed_out
    # What the server holds just before the attackers leave.
    result["slowloris_held_before_stop"] = slow.held
    tstop.set()
    stop.set()
    for f in (good_f, web_f, brute_f, relay_f):
        try:
            await asyncio.wait_for(asyncio.shield(f), 120)
        except (asyncio.TimeoutError, TimeoutError):
            result.setdefault("stuck", []).append(str(f))
    await asyncio.wait_for(garbage_task, 120)
    await asyncio.wait_for(slow_task, 60)
    result["slowloris"] = slow.report()
    result["garbage"] = garbage.report()
    result["garbage"]["never_read_open_at_end"] = getattr(garbage, "never_read_open_at_end", None)
    result["brute_force"] = brute.report()
    result["relay"] = relay.report()
    result["good_client"] = good.report()


def table(result):
    g = result["good_client"]
    s = result["slowloris"]
    b = result["brute_force"]
    r = result["relay"]
    gb = result["garbage"]
    m = result["memory"]
    lc = result["log"]["counts"]
    rows = [
        ("mode", result["mode"]),
        ("server limits", f"max_connections={result['limits']['max_connections']} "
                          f"per_ip smtp={result['limits']['max_connections_per_ip']} "
                          f"pop3={POP3_LIMITS['max_connections_per_ip']}; "
                          f"http max_connections={result['http']['max_connections']} "
                          f"per_ip={result['http']['max_connections_per_ip']} "
                          f"idle_timeout={result['http']['idle_timeout']}"),
        ("attack window", f"{result['attack_seconds']} s"),
        ("slowloris target / accepted / refused",
         f"{s['target']} / {s['accepted']} / {sum(s['refused'].values())} "
         f"({', '.join(f'{k}: {v}' for k, v in s['refused'].items())})"),
        ("slowloris held peak / before stop", f"{s['held_peak']} / "
                                             f"{result['slowloris_held_before_stop']}"),
        ("slowloris closed by server", ", ".join(f"{k}: {v}" for k, v in
                                                 s["closed_by_server"].items()) or "0"),
        ("web slowloris target / accepted / refused",
         f"{s['http']['target']} / {s['http']['accepted']} / "
         f"{sum(s['http']['refused'].values())} "
         f"({', '.join(f'{k}: {v}' for k, v in s['http']['refused'].items())})"),
        ("web slowloris closed by server", ", ".join(
            f"{k}: {v}" for k, v in s["http"]["closed_by_server"].items()) or "0"),
        ("web slowloris unexpected", str(len(s["http"]["unexpected"]))),
        ("server log: evicted / refused / timeouts",
         f"{lc.get('connection evicted', 0)} / {lc.get('connection refused (limit)', 0)} / "
         f"{lc.get('session end=timeout', 0)}"),
        ("garbage rounds / bytes", f"{gb['rounds']} / {gb['bytes_sent']}"),
        ("garbage unexpected", str(len(gb["unexpected"]))),
        ("wrong passwords (smtp)", ", ".join(f"{k}: {v}" for k, v in b["smtp"].items())),
        ("wrong passwords (pop3)", ", ".join(f"{k}: {v}" for k, v in b["pop3"].items())),
        ("wrong passwords accepted", str(b["accepted_wrong_passwords"])),
        ("right password from locked IP", json.dumps(b["right_password_from_locked_ip"])),
        ("relay tricks tried / not refused", f"{r['commands_tried']} "
                                             f"({r['distinct_tricks']} distinct) / "
                                             f"{len(r['not_refused'])}"),
        ("messages sent / accepted / received",
         f"{g['to_send']} / {g['accepted']} / {g['received']}"),
        ("lost / mismatched / duplicates", f"{g['lost']} / {g['mismatched']} / "
                                           f"{g['duplicates']}"),
        ("good client refusals/errors", json.dumps(g["connection_refusals_and_errors"])),
        ("good client web fetches / failures", f"{sum(g['web']['fetches'].values())} / "
                                               f"{json.dumps(g['web']['failures'])}"),
        ("accept latency p50/p99/max", "/".join(f"{g['accept_latency_s'].get(k, '-')}"
                                                for k in ("p50", "p99", "max")) + " s"),
        ("end-to-end p50/p99/max", "/".join(f"{g['end_to_end_s'].get(k, '-')}"
                                            for k in ("p50", "p99", "max")) + " s"),
        ("server RSS start / peak / end", f"{m.get('rss_start_mib')} / "
                                          f"{m.get('rss_peak_mib')} / "
                                          f"{m.get('rss_end_mib')} MiB (VmHWM "
                                          f"{m.get('hwm_mib')})"),
        ("server fds peak", str(m.get("fds_peak"))),
        ("server alive / fresh SMTP / fresh POP3 / fresh HTTP",
         f"{result['alive_at_end']} / {result['fresh_smtp']!r} / "
         f"{result['fresh_pop3']!r} / {result['fresh_http']!r}"),
        ("exit on SIGTERM", str(result["exit_code"])),
        ("checks", "PASS" if not result["failures"] else
         f"FAIL ({len(result['failures'])})"),
    ]
    w = max(len(k) for k, _ in rows)
    out = [f"{'what'.ljust(w)} | result", f"{'-' * w}-|-{'-' * 40}"]
    out += [f"{k.ljust(w)} | {v}" for k, v in rows]
    return "\n".join(out)


def checks(result):
    f = []
    g = result["good_client"]
    if g["accepted"] != g["to_send"]:
        f.append(f"good client: {g['to_send'] - g['accepted']} message(s) never accepted")
    if g["lost"]:
        f.append(f"good client: {g['lost']} accepted message(s) never arrived")
    if g["mismatched"]:
        f.append(f"good client: {g['mismatched']} message(s) arrived altered")
    turned_away = {k: v for k, v in g["connection_refusals_and_errors"].items()
                   if "connect 421" in k}
    if turned_away:
        # The attackers are at other addresses: fair share must let it in.
        f.append(f"good client turned away at connect: {turned_away}")
    w = g["web"]
    if not w["fetches"]:
        f.append("good client: no web request made")
    if w["failures"]:
        f.append(f"good client web requests failed: {w['failures']} "
                 f"({w['failure_examples'][:3]})")
    if g["unknown_messages"]:
        f.append(f"good mailbox: {g['unknown_messages']} unexpected message(s)")
    lat = g["accept_latency_s"]
    if lat.get("max") is not None and lat["max"] > ACCEPT_BOUND_S:
        f.append(f"accept latency max {lat['max']} s > {ACCEPT_BOUND_S} s")
    e2e = g["end_to_end_s"]
    if e2e.get("max") is not None and e2e["max"] > E2E_BOUND_S:
        f.append(f"end-to-end max {e2e['max']} s > {E2E_BOUND_S} s")
    b = result["brute_force"]
    if b["accepted_wrong_passwords"]:
        f.append(f"{b['accepted_wrong_passwords']} wrong password(s) accepted")
    if b["attempts"] < result["profile"]["passwords"]:
        f.append(f"only {b['attempts']} password attempts made")
    locked = sum(v for k, v in b["smtp"].items() if k.startswith("421")) + \
        sum(v for k, v in b["pop3"].items() if "locked out" in k)
    if not any(k.startswith("421") for k in b["smtp"]) or \
            not any("locked out" in k for k in b["pop3"]):
        f.append(f"brute force not locked out: smtp {b['smtp']} pop3 {b['pop3']}")
    rp = b["right_password_from_locked_ip"] or {}
    if rp.get("smtp") != "421 4.7.0" or not str(rp.get("pop3", "")).startswith("-ERR"):
        f.append(f"the locked-out address logged in with the right password: {rp}")
    r = result["relay"]
    if r["not_refused"]:
        f.append(f"relay tricks not refused: {r['not_refused'][:5]}")
    if r["distinct_tricks"] < len(RELAY_RCPTS) * 2 + len(AUTH_RELAY_RCPTS) + \
            len(LOCAL_SENDERS) + 1:
        f.append(f"relay: only {r['distinct_tricks']} distinct tricks answered "
                 f"({r['client_errors']})")
    gb = result["garbage"]
    if gb["unexpected"]:
        f.append(f"garbage: unexpected answers: {gb['unexpected'][:5]}")
    s = result["slowloris"]
    if s["accepted"] == 0:
        f.append("slowloris: no connection accepted at all")
    if s["http"]["accepted"] == 0:
        f.append("slowloris: no web connection accepted at all")
    if s["http"]["unexpected"]:
        f.append(f"slowloris on the web listeners: {s['http']['unexpected'][:5]}")
    if result["memory"].get("rss_peak_mib", 0) > RSS_BOUND_MIB:
        f.append(f"peak RSS {result['memory']['rss_peak_mib']} MiB > {RSS_BOUND_MIB} MiB")
    if not result["alive_at_end"]:
        f.append("server not running at the end")
    if not str(result["fresh_smtp"]).startswith("220"):
        f.append(f"fresh SMTP connection: {result['fresh_smtp']!r}")
    if not str(result["fresh_pop3"]).startswith("+OK"):
        f.append(f"fresh POP3 connection: {result['fresh_pop3']!r}")
    if not str(result["fresh_http"]).startswith("HTTP/1.1 200"):
        f.append(f"fresh admin /health: {result['fresh_http']!r}")
    if result["exit_code"] != 0:
        f.append(f"exit status after SIGTERM: {result['exit_code']}")
    if result["log"]["crash"]:
        f.append("crash or sanitizer report in the server log")
    if result["timed_out"]:
        f.append("the run hit its deadline")
    if result.get("stuck"):
        f.append(f"client tasks stuck: {result['stuck']}")
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI form (about a minute)")
    ap.add_argument("--out", help="JSON report path (default build/abuse/abuse-MODE.json)")
    ap.add_argument("--bin", default=os.environ.get("TERN_BIN") or str(REPO / "build" / "tern"))
    ap.add_argument("--keep", action="store_true", help="keep the server's data folder")
    args = ap.parse_args()
    mode = "short" if args.short else "long"
    profile = PROFILES[mode]
    out = pathlib.Path(args.out) if args.out else REPO / "build" / "abuse" / f"abuse-{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    # Thousands of sockets here and in the server (which inherits this).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    need = profile["slowloris"] + profile["slowloris_http"] + 500
    if want < need:
        print(f"RLIMIT_NOFILE hard limit {hard} is below {need}", file=sys.stderr)
        return 2
    if not os.path.exists(args.bin):
        print(f"no tern binary at {args.bin} (set TERN_BIN or --bin)", file=sys.stderr)
        return 2

    base = pathlib.Path(tempfile.mkdtemp(prefix=f"tern-abuse-{mode}-"))
    srv = Server(base, args.bin, profile)
    result = {"mode": mode, "profile": profile, "binary": args.bin,
              "limits": srv.smtp_limits, "auth": AUTH_LIMITS, "pop3": POP3_LIMITS,
              "http": srv.http_limits,
              "data_dir": str(base)}
    t_start = now()
    sampler = None
    try:
        srv.add_user(GOOD_USER)
        srv.add_user(SINK_USER)
        srv.start()
        sampler = MemorySampler(srv.proc.pid)
        sampler.start()
        asyncio.run(attack(srv, profile, result))
        time.sleep(1.0)
        result["alive_at_end"] = srv.alive()
        try:
            result["fresh_smtp"] = probe_greeting(srv.ports["smtp"])
        except OSError as e:
            result["fresh_smtp"] = f"error {e}"
        try:
            result["fresh_pop3"] = probe_greeting(srv.ports["pop3"])
        except OSError as e:
            result["fresh_pop3"] = f"error {e}"
        try:
            result["fresh_http"] = probe_http(srv.ports["admin"])
        except OSError as e:
            result["fresh_http"] = f"error {e}"
    finally:
        if sampler:
            sampler.stop_flag.set()
            sampler.join()
        result["memory"] = sampler.report() if sampler else {}
        if srv.proc is not None:
            result["exit_code"] = srv.stop()
        result["log"] = log_report(srv.log_text())
    result["total_seconds"] = round(now() - t_start, 1)
    result["failures"] = checks(result)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"total {result['total_seconds']} s; JSON report: {out}")
    for f in result["failures"]:
        print("FAIL:", f)
    if result["failures"] or args.keep:
        print(f"server data and log kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
