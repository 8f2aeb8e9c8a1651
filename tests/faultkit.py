# Helpers for the fault-injection tests (test_faults.py, test_peers.py):
# small tmpfs mounts to fill up or make read-only, an inotify watch to kill
# the server at an exact file-system event, a fake DNS server for the test
# zones, and a scripted SMTP peer on 127.0.0.x that can misbehave at any
# stage (stall, reset, flood, drip, bad replies). Everything stays on
# loopback.
import ctypes
import ctypes.util
import errno
import mailbox
import os
import select
import socket
import struct
import subprocess
import threading
import time

import pytest
from dnslib import MX, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

from conftest import free_port, need_tool


def wait_for(pred, timeout=15, what="condition", srv=None, interval=0.05):
    """Polls `pred` until it returns something true; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f"\n{srv.log_tail()}" if srv else ""))
        if srv is not None:
            srv.check_alive()
        time.sleep(interval)


# ---------------------------------------------------------------- tmpfs

class Tmpfs:
    """A tmpfs of `size` bytes mounted at `path` (created), unmounted by
    close(). Skips the test when mounting is not permitted."""

    def __init__(self, path, size):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        need_tool("mount")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                            "tmpfs", self.path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            msg = p.stderr.strip()
            if os.geteuid() != 0 or "permission" in msg.lower() or "not permitted" in msg.lower():
                pytest.skip(f"cannot mount a tmpfs at {self.path} ({msg}): "
                            "these tests need root or CAP_SYS_ADMIN")
            raise AssertionError(f"mount tmpfs at {self.path}: {msg}")
        self.mounted = True
        self.fillers = []

    def free_bytes(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0, name=None):
        """Writes a filler file until only about `leave` bytes are free
        (0: until ENOSPC). Returns the filler's path."""
        name = name or f".filler{len(self.fillers)}"
        path = os.path.join(self.path, name)
        self.fillers.append(path)
        chunk = b"\0" * 65536
        with open(path, "wb", buffering=0) as f:
            while True:
                room = self.free_bytes() - leave
                if room <= 0:
                    break
                try:
                    f.write(chunk[:min(len(chunk), room)])
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        return path

    def unfill(self):
        for p in self.fillers:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.fillers = []

    def remount(self, opt):
        subprocess.run(["mount", "-o", f"remount,{opt}", self.path], check=True)

    def close(self):
        if not self.mounted:
            return
        # Lazy: a server killed a moment ago may still hold files open.
        for _ in range(50):
            p = subprocess.run(["umount", self.path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            if p.returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", self.path])
        self.mounted = False


@pytest.fixture
def tmpfs():
    """Factory: tmpfs(path, size) -> Tmpfs, unmounted after the test."""
    made = []

    def factory(path, size):
        t = Tmpfs(path, size)
        made.append(t)
        return t

    yield factory
    for t in reversed(made):
        t.close()


# ---------------------------------------------------------------- inotify

IN_CREATE = 0x100
IN_MOVED_TO = 0x80
IN_CLOSE_WRITE = 0x8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class Inotify:
    """A minimal inotify reader: watch directories, wait for one event."""

    def __init__(self):
        self.fd = _libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wds = {}
        self.events = []

    def watch(self, path, mask):
        wd = _libc.inotify_add_watch(self.fd, str(path).encode(), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.wds[wd] = str(path)

    def wait(self, timeout):
        """(directory, name, mask) of the next event, or None on timeout."""
        if not self.events:
            r, _, _ = select.select([self.fd], [], [], timeout)
            if not r:
                return None
            data = os.read(self.fd, 65536)
            off = 0
            while off < len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, off)
                name = data[off + 16:off + 16 + length].rstrip(b"\0").decode()
                self.events.append((self.wds.get(wd), name, mask))
                off += 16 + length
        return self.events.pop(0)

    def close(self):
        os.close(self.fd)


# ---------------------------------------------------------------- DNS

class Zone(BaseResolver):
    """Answers for the test zones (MX and A records); NXDOMAIN otherwise."""

    def __init__(self):
        self.records = {}
        self.lock = threading.Lock()

    @staticmethod
    def _name(n):
        n = n.lower()
        return n if n.endswith(".") else n + "."

    def _add(self, name, rdata, rtype):
        with self.lock:
            self.records.setdefault(self._name(name), []).append(
                RR(self._name(name), rtype, rdata=rdata, ttl=1))

    def mx(self, domain, host, pref=10):
        self._add(domain, MX(self._name(host), pref), QTYPE.MX)

    def a(self, host, ip):
        self._add(host, A(ip), QTYPE.A)

    def route(self, domain, ip):
        """MX for `domain` -> mx.`domain` -> ip."""
        self.mx(domain, f"mx.{domain}")
        self.a(f"mx.{domain}", ip)

    def resolve(self, request, handler):
        reply = request.reply()
        qname = self._name(str(request.q.qname))
        with self.lock:
            rrs = list(self.records.get(qname, []))
        if not rrs:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for r in rrs:
            if r.rtype == request.q.qtype:
                reply.add_answer(r)
        return reply


def start_dns():
    zone = Zone()
    port = free_port()
    zone.servers = [DNSServer(zone, port=port, address="127.0.0.1"),
                    DNSServer(zone, port=port, address="127.0.0.1", tcp=True)]
    for s in zone.servers:
        s.start_thread()
    zone.port = port
    return zone


def stop_dns(zone):
    for s in zone.servers:
        s.stop()


# ---------------------------------------------------------------- SMTP peer

class Stop(Exception):
    """Ends a peer connection (raised by actions that take it over)."""


class PeerConn:
    def __init__(self, peer, sock, number):
        self.peer = peer
        self.sock = sock
        self.number = number
        self.buf = b""
        self.log = []  # lines received

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Stop("client closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.rstrip(b"\r").decode("utf-8", "replace")
        self.log.append(line)
        return line

    def data(self, limit=None):
        """Reads DATA content up to the lone dot; returns it unstuffed.
        With `limit`, stops reading after that many bytes (returns None)."""
        out = []
        got = 0
        while True:
            while b"\r\n" not in self.buf:
                if limit is not None and got + len(self.buf) >= limit:
                    return None
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise Stop("client closed during DATA")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            got += len(line) + 2
            if line == b".":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line + b"\r\n")

    def wait_closed(self):
        """Says nothing until the client closes or the peer stops."""
        self.sock.settimeout(0.2)
        while not self.peer.stopping.is_set():
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
        raise Stop("stalled until closed")

    def reset(self):
        """Closes with a TCP RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()
        raise Stop("reset")


# Actions a plan may give for a stage instead of the normal reply.
def stall(conn):
    conn.wait_closed()


def reset(conn):
    conn.reset()


def close(conn):
    conn.sock.close()
    raise Stop("closed")


def flood(conn, prefix=b"220 "):
    """A reply line that never ends, as fast as the client takes it."""
    conn.send(prefix)
    chunk = b"x" * 65536
    try:
        while not conn.peer.stopping.is_set():
            conn.sock.sendall(chunk)
            conn.peer.flooded += len(chunk)
    except OSError:
        pass
    raise Stop("flood ended")


def drip(interval, prefix=b"220 ", unit=b"x"):
    """A reply that never ends: `unit` every `interval` seconds (an octet
    of an endless line, or one more line of an endless multi-line reply)."""
    def action(conn):
        conn.send(prefix)
        try:
            while not conn.peer.stopping.is_set():
                time.sleep(interval)
                conn.sock.sendall(unit)
                conn.peer.dripped += 1
        except OSError:
            pass
        raise Stop("drip ended")
    return action


def later(delay, data):
    """Waits, sends `data`, then stalls until closed."""
    def run(conn):
        time.sleep(delay)
        conn.send(data)
        conn.wait_closed()
    return run


def then(reply, action):
    """Sends `reply` (a str gets CRLF), then carries on with `action`."""
    def run(conn):
        conn.send(reply.encode() + b"\r\n" if isinstance(reply, str) else reply)
        action(conn)
    return run


class Peer:
    """A scripted SMTP server on ip:port. Connection n follows plans[n]
    (the last plan repeats). A plan maps a stage to what happens there
    instead of the normal reply: a reply (str or raw bytes, sent as given
    plus CRLF for str) or an action (a callable taking the PeerConn, e.g.
    stall, reset, flood). Stages: greeting, ehlo, starttls, mail, rcpt,
    data, body (called with the connection after `body_limit` octets of
    the message), dot. `caps` lists extra EHLO keywords (a plan's "caps"
    replaces them for its connection)."""

    def __init__(self, ip, port, plans=({},), caps=()):
        self.ip = ip
        self.port = port
        self.plans = list(plans)
        self.caps = list(caps)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.connections = 0
        self.delivered = []   # dicts: from, to, data (after a 250 to the dot)
        self.bodies = []      # every complete body received, answered or not
        self.stages = []      # (connection number, stage) reached
        self.flooded = 0
        self.dripped = 0
        self.stopping = threading.Event()
        self.socks = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((ip, port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def set_plans(self, *plans):
        with self.lock:
            self.plans = list(plans)
            self.connections = 0

    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                n = self.connections
                self.connections += 1
                plan = self.plans[min(n, len(self.plans) - 1)]
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(PeerConn(self, s, n), plan),
                             daemon=True).start()

    def _reached(self, conn, stage):
        with self.cond:
            self.stages.append((conn.number, stage))
            self.cond.notify_all()

    def wait_stage(self, stage, count=1, timeout=15):
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(1 for _, s in self.stages if s == stage) >= count, timeout)
        assert ok, f"peer {self.ip}: stage {stage!r} not reached {count}x; saw {self.stages}"

    def wait_delivered(self, count=1, timeout=15):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.delivered) >= count, timeout)
        assert ok, (f"peer {self.ip}: {len(self.delivered)} message(s) delivered, "
                    f"want {count}; stages {self.stages}")
        return list(self.delivered)

    def _do(self, conn, plan, stage, normal):
        self._reached(conn, stage)
        what = plan.get(stage, normal)
        if callable(what):
            what(conn)
            return False
        if isinstance(what, str):
            what = what.encode() + b"\r\n"
        conn.send(what)
        return True

    def _serve(self, conn, plan):
        try:
            self._session(conn, plan)
        except (Stop, OSError):
            pass
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass

    def _session(self, conn, plan):
        self._do(conn, plan, "greeting", f"220 peer-{self.ip} ESMTP")
        sender, rcpts = None, []
        while True:
            line = conn.line()
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                caps = [f"peer-{self.ip}"] + list(plan.get("caps", self.caps))
                text = "".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n"
                self._do(conn, plan, "ehlo", text.encode())
            elif verb == "STARTTLS":
                self._do(conn, plan, "starttls", "220 2.0.0 go ahead")
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip().split(" ")[0].strip("<>")
                rcpts = []
                self._do(conn, plan, "mail", "250 2.1.0 ok")
            elif verb == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip().split(" ")[0].strip("<>"))
                self._do(conn, plan, "rcpt", "250 2.1.5 ok")
            elif verb == "DATA":
                if not self._do(conn, plan, "data", "354 go ahead"):
                    return
                limit = plan.get("body_limit")
                body = conn.data(limit)
                if body is None:
                    self._do(conn, plan, "body", "")
                    return
                with self.lock:
                    self.bodies.append(body)
                final = plan.get("dot", "250 2.0.0 ok")
                if not self._do(conn, plan, "dot", final):
                    return
                if isinstance(final, str) and final.startswith("250 "):
                    with self.cond:
                        self.delivered.append({"from": sender, "to": rcpts,
                                               "data": body})
                        self.cond.notify_all()
            elif verb == "RSET" or verb == "NOOP":
                conn.send("250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                conn.send("221 2.0.0 bye\r\n")
                return
            else:
                conn.send("502 5.5.2 what\r\n")

    def close(self):
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------- Maildir

def maildir_messages(srv, address):
    """Every message in new/ and cur/ of `address`, parsed with mailbox."""
    md = srv.maildir(address)
    for _ in range(20):
        # Tern creates tmp/, new/ and cur/ on first delivery; a message may
        # be renamed while we read. Try again in those cases.
        if not all((md / sub).is_dir() for sub in ("tmp", "new", "cur")):
            return []
        try:
            box = mailbox.Maildir(str(md), create=False)
            return [box.get_message(key) for key in box.keys()]
        except (FileNotFoundError, KeyError):
            time.sleep(0.01)
    raise AssertionError(f"{md}: cannot list the Maildir")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
