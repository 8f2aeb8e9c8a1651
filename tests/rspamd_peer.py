# A private rspamd for the milter tests (test_rspamd.py): Debian's rspamd
# package with its distribution defaults, run in the foreground from a
# throw-away directory with its own config, databases, run dir and log. Only
# a proxy worker in milter mode listens (on a free loopback port) and scans
# the mail itself ("self_scan"), so no normal or controller worker is
# needed. No redis, and no lookups off this machine: rspamd's resolver asks
# a closed loopback port, and the modules that only query outside services
# are switched off. Also a minimal milter (Sendmail milter protocol v6)
# client, to check that the peer answers before Tern talks to it.
import os
import signal
import socket
import struct
import subprocess
import time

from conftest import free_port, need_tool

# rspamd's defaults as Debian installs them.
SYSTEM_CONFDIR = "/etc/rspamd"

# The top file: the distribution's common part (metrics, actions, groups,
# modules.d/*) and its option defaults, with our local.d / override.d on
# top, one log file, and the milter proxy as the only worker.
_TOP_CONF = """\
# Written by tests/rspamd_peer.py: a private rspamd for one test.
.include "$CONFDIR/common.conf"

options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}

logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}

worker "rspamd_proxy" {{
    bind_socket = "127.0.0.1:{port}";
    milter = yes;
    timeout = 120s;
    count = 1;
    upstream "local" {{
        default = yes;
        self_scan = yes;
    }}
{proxy_extra}}}
"""

# Merged into the distribution's options: DNS goes to the discard port on
# loopback (nothing listens there: every lookup fails at once).
_LOCAL_OPTIONS = """\
dns {
    nameserver = ["127.0.0.1:9"];
    timeout = 0.5s;
    retransmits = 1;
}
"""

# Replacing the distribution's values. The C filters without fuzzy_check:
# its default rule names rspamd's public fuzzy servers, which it would
# resolve with the system's resolver while loading the config.
# hs_cache_dir: the compiled Hyperscan databases (the URL suffix list alone
# takes some 20 s to compile) are kept where the next instance finds them.
_OVERRIDE_OPTIONS = """\
filters = "chartable,dkim,regexp";
hs_cache_dir = "{hs_cache}";
"""

# Modules that only ask services on the internet (DNS lists, ASN zones,
# rule updates): off, so that nothing waits on them.
_DISABLED_MODULES = ("rbl", "asn", "rspamd_update", "fuzzy_check")

# Headers rspamd adds to the mail it passes, through the milter. By default
# the module leaves out mail from local addresses and from authenticated
# users, which is all the mail of these tests.
_MILTER_HEADERS = """\
use = ["x-spamd-result", "x-rspamd-server", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
"""


class RspamdPeer:
    """rspamd in the foreground, milter proxy on 127.0.0.1:`port`."""

    def __init__(self, base, hs_cache=None, proxy_options=None):
        """`proxy_options`: more settings of the proxy worker, e.g.
        {"quarantine_on_reject": "yes"} (values written as they are)."""
        need_tool("rspamd")
        self.base = os.path.abspath(str(base))
        self.confdir = os.path.join(self.base, "conf")
        self.dbdir = os.path.join(self.base, "db")
        self.rundir = os.path.join(self.base, "run")
        self.logdir = os.path.join(self.base, "log")
        self.hs_cache = os.path.abspath(str(hs_cache)) if hs_cache else self.dbdir
        for d in (self.confdir, os.path.join(self.confdir, "local.d"),
                  os.path.join(self.confdir, "override.d"),
                  self.dbdir, self.rundir, self.logdir, self.hs_cache):
            os.makedirs(d, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(self.logdir, "rspamd.log")
        self.out_path = os.path.join(self.logdir, "stdout.log")
        self.proxy_options = dict(proxy_options or {})
        self.proc = None
        self.startup_seconds = None
        self.write_config()

    def _write(self, rel, text):
        with open(os.path.join(self.confdir, rel), "w", encoding="utf-8") as f:
            f.write(text)

    def write_config(self):
        extra = "".join(f"    {k} = {v};\n" for k, v in self.proxy_options.items())
        self._write("rspamd.conf", _TOP_CONF.format(port=self.port, proxy_extra=extra))
        self._write("local.d/options.inc", _LOCAL_OPTIONS)
        self._write("override.d/options.inc",
                    _OVERRIDE_OPTIONS.format(hs_cache=self.hs_cache))
        self._write("local.d/milter_headers.conf", _MILTER_HEADERS)
        for m in _DISABLED_MODULES:
            self._write(f"override.d/{m}.conf", "enabled = false;\n")

    def argv(self):
        argv = ["rspamd", "-f", "-c", os.path.join(self.confdir, "rspamd.conf"),
                f"--var=CONFDIR={SYSTEM_CONFDIR}",
                f"--var=LOCAL_CONFDIR={self.confdir}",
                f"--var=DBDIR={self.dbdir}",
                f"--var=RUNDIR={self.rundir}",
                f"--var=LOGDIR={self.logdir}"]
        if os.geteuid() == 0:
            # rspamd will not run its workers as root unless told to; the
            # alternative (-u _rspamd) would need every directory above our
            # temporary ones opened to that user.
            argv.append("--insecure")
        return argv

    def start(self, timeout=120):
        """Starts rspamd and waits until its milter port negotiates."""
        started = time.monotonic()
        with open(self.out_path, "ab") as out:
            # A session of its own: stop() signals the whole group, so no
            # worker outlives its master.
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = started + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"rspamd exited with {rc} during start-up\n"
                                     f"{self.log_tail()}")
            try:
                milter_negotiate(self.port, timeout=5)
                self.startup_seconds = time.monotonic() - started
                return self
            except (OSError, EOFError, AssertionError) as e:
                last = e
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"rspamd's milter port {self.port} not answering after "
                             f"{timeout}s ({last})\n{self.log_tail()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM to rspamd's process group, SIGKILL after `timeout`; returns
        once nothing listens on the milter port."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group is ours alone
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # workers the master did not take down
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return
            time.sleep(0.05)
        raise AssertionError(f"rspamd's port {self.port} still accepts after stop")

    def log_text(self):
        text = ""
        for p in (self.out_path, self.log_path):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                pass
        return text

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])


# ---------------------------------------------------------------- milter

# Sendmail milter protocol version 6 (libmilter's mfdef.h).
SMFI_VERSION = 6
ALL_ACTIONS = 0x1ff       # SMFIF_ADDHDRS ... SMFIF_SETSYMLIST
ALL_PROTOCOL = 0x1fffff   # every SMFIP_NO* / SMFIP_NR_* step an MTA may offer
# The SMFIP_NR_* bit by which a milter asks not to answer each step.
_NO_REPLY = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000,
             b"T": 0x10000, b"L": 0x80, b"N": 0x40000, b"B": 0x80000}


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("milter closed the connection")
        buf += chunk
    return buf


def milter_send(sock, cmd, data=b""):
    sock.sendall(struct.pack("!I", len(data) + 1) + cmd + data)


def milter_recv(sock):
    (length,) = struct.unpack("!I", _recv_exact(sock, 4))
    body = _recv_exact(sock, length)
    return body[:1], body[1:]


def milter_negotiate(port, timeout=5):
    """Option negotiation (SMFIC_OPTNEG) on 127.0.0.1:`port`; returns the
    milter's (version, actions, protocol)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        milter_send(s, b"O", struct.pack("!III", SMFI_VERSION, ALL_ACTIONS, ALL_PROTOCOL))
        cmd, data = milter_recv(s)
        assert cmd == b"O" and len(data) >= 12, f"unexpected negotiation reply {cmd!r} {data!r}"
        return struct.unpack("!III", data[:12])


def milter_scan(port, message: bytes, sender="sender@remote.test",
                rcpt="u@example.test", macros=None, timeout=20):
    """One whole transaction through the milter, as an MTA would run it
    (connect, HELO, MAIL, RCPT, DATA, headers, body, end of message);
    `macros` maps a step's command (b"M" ...) to {name: value}, sent
    before that step as SMFIC_MACRO. Returns the milter's replies to the
    end of message, as (cmd, data)."""
    head, _, body = message.partition(b"\r\n\r\n")
    headers = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1] += b"\r\n" + line
        else:
            name, _, value = line.partition(b":")
            headers.append([name, value.lstrip(b" ")])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        milter_send(s, b"O", struct.pack("!III", SMFI_VERSION, ALL_ACTIONS, ALL_PROTOCOL))
        cmd, data = milter_recv(s)
        assert cmd == b"O", cmd
        _, _, protocol = struct.unpack("!III", data[:12])
        z = b"\0"
        steps = [
            (b"C", b"client.test" + z + b"4" + struct.pack("!H", 40000) + b"127.0.0.1" + z),
            (b"H", b"client.test" + z),
            (b"M", b"<" + sender.encode() + b">" + z),
            (b"R", b"<" + rcpt.encode() + b">" + z),
            (b"T", b""),
        ]
        steps += [(b"L", n + z + v + z) for n, v in headers]
        steps += [(b"N", b""), (b"B", body)]
        for cmd, data in steps:
            for name, value in (macros or {}).get(cmd, {}).items():
                milter_send(s, b"D", cmd + name.encode() + z + value.encode() + z)
            milter_send(s, cmd, data)
            if protocol & _NO_REPLY[cmd]:
                continue
            rcmd, rdata = milter_recv(s)
            assert rcmd == b"c", f"milter answered {rcmd!r} {rdata!r} to {cmd!r}"
        milter_send(s, b"E")
        replies = []
        while True:
            rcmd, rdata = milter_recv(s)
            replies.append((rcmd, rdata))
            if rcmd in (b"a", b"c", b"r", b"t", b"d", b"y"):
                break
        milter_send(s, b"Q")
        return replies
