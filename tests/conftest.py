# Shared fixtures for Tern's integration tests: start the real `tern serve`
# on free loopback ports with a throw-away data dir, drive its CLI, talk SMTP
# over raw sockets, and read what lands in the Maildirs.
import email
import email.policy
import email.utils
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TERN_BIN = os.environ.get("TERN_BIN") or str(REPO / "build" / "tern")

HOSTNAME = "mx.example.test"
DOMAIN = "example.test"
PASSWORD = "correct horse battery staple"

DEFAULT_SMTP = {
    "max_message_size": 52428800,
    "max_recipients": 100,
    "max_connections": 1000,
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

# Servers alive right now; their log tails are attached to failing reports.
_LIVE = []

# What ASan, LSan, UBSan and TSan print (make test-asan, make test-tsan): one
# in a server's log or a command's stderr fails the test.
_SANITIZER = re.compile(
    r"(ERROR|WARNING|FATAL): (Address|Leak|Thread|UndefinedBehavior)Sanitizer"
    r"|runtime error:")


def sanitizer_report(text):
    """The first sanitizer report in `text` (a log or stderr), or None."""
    m = _SANITIZER.search(text)
    return text[max(0, m.start() - 300):m.start() + 8000] if m else None


# ---------------------------------------------------------------- helpers

# ---------------------------------------------------------------- tools

# Every outside program the tests call, with the Debian package that ships
# it (scripts/deps.sh test installs them all).
_PACKAGE_OF = {
    "swaks": "swaks", "curl": "curl", "msmtp": "msmtp", "fetchmail": "fetchmail",
    "getmail": "getmail6", "mount": "mount", "umount": "mount",
    "postfix": "postfix", "openssl": "openssl",
    "mbsync": "isync", "mutt": "mutt", "offlineimap": "offlineimap3",
    "imapfilter": "imapfilter", "pebble": "pebble", "nsd": "nsd",
    "nsd-checkconf": "nsd", "ldns-keygen": "ldnsutils",
    "ldns-signzone": "ldnsutils", "ldns-key2ds": "ldnsutils",
}
# swaks features (as `swaks --support` names them) and the Perl modules'
# packages they need; swaks only Recommends these.
_SWAKS_FEATURE_PACKAGE = {
    "TLS": "libnet-ssleay-perl libio-socket-ssl-perl",
    "IPv6": "libio-socket-inet6-perl",
}
_checked_tools = {}


def need_tool(name, *features):
    """Fail the test with the package to install when `name` (or one of
    its `features`, for swaks) is missing: never an obscure error later."""
    key = (name, features)
    if key in _checked_tools:
        problem = _checked_tools[key]
    else:
        problem = None
        if shutil.which(name) is None:
            problem = (f"{name} is not installed: install the Debian package "
                       f"{_PACKAGE_OF.get(name, name)} (scripts/deps.sh test does)")
        elif name == "swaks" and features:
            support = subprocess.run(["swaks", "--support"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True).stdout
            for f in features:
                if not re.search(rf"^=== {re.escape(f)} supported", support, re.M):
                    problem = (f"swaks has no {f} support: install the Debian "
                               f"packages {_SWAKS_FEATURE_PACKAGE[f]} "
                               f"(scripts/deps.sh test does)")
                    break
        _checked_tools[key] = problem
    if problem:
        pytest.fail(problem, pytrace=False)


def run_tool(argv, **kwargs):
    """subprocess.run for an outside program, after need_tool()."""
    features = ()
    if argv[0] == "swaks":
        if any(a in ("--tls", "--tlsc", "--tls-on-connect", "--tls-optional")
               for a in argv):
            features += ("TLS",)
        if any(a.startswith("::") or a.startswith("[") for a in argv):
            features += ("IPv6",)
    need_tool(argv[0], *features)
    return subprocess.run(argv, **kwargs)


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, e.g. tls certificates
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot encode {v!r} as TOML")


def unique(prefix="m"):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def build_message(subject, body_lines, sender="sender@remote.test",
                  to="u@example.test", extra_headers=()):
    """An RFC 5322 message as CRLF bytes (what an SMTP client sends)."""
    headers = [
        f"From: <{sender}>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: <{uuid.uuid4().hex}@client.test>",
    ]
    headers += list(extra_headers)
    text = "\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body_lines) + "\r\n"
    return text.encode("utf-8")


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


class Delivered:
    """A Maildir file split into Tern's trace fields and the message proper."""

    def __init__(self, raw: bytes):
        self.raw = raw
        lines = raw.split(b"\n")
        fields = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1] += b" " + line.strip()
                i += 1
                continue
            if len(fields) == 3:
                break
            fields.append(line)
            i += 1
        self.fields = [f.decode("utf-8", "replace") for f in fields]
        self.rest = b"\n".join(lines[i:])

    @property
    def return_path(self):
        return self.fields[0] if self.fields else ""

    @property
    def delivered_to(self):
        return self.fields[1] if len(self.fields) > 1 else ""

    @property
    def received(self):
        return " ".join(self.fields[2].split()) if len(self.fields) > 2 else ""

    def parsed(self):
        return email.message_from_bytes(self.raw, policy=email.policy.compat32)


# ---------------------------------------------------------------- raw SMTP

class Reply:
    def __init__(self, lines):
        self.lines = lines
        self.code = int(lines[-1][:3])
        texts = [ln[4:] for ln in lines]
        self.texts = texts
        self.text = "\n".join(texts)
        first = texts[-1].split(" ", 1)[0] if texts else ""
        parts = first.split(".")
        self.enhanced = first if (len(parts) == 3 and all(p.isdigit() for p in parts)) else ""

    def __repr__(self):
        return "Reply(" + " | ".join(self.lines) + ")"


class SMTPConn:
    """A minimal SMTP client on a raw socket, for exact-byte tests."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            line = self.read_line()
            assert len(line) >= 3 and line[:3].isdigit(), f"malformed reply line {line!r}"
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return Reply(lines)
            assert line[3] == "-", f"malformed reply line {line!r}"

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def greet(self):
        r = self.reply()
        assert r.code == 220, r
        return r

    def ehlo(self, name="client.test"):
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, r
        return r

    def start(self, name="client.test"):
        self.greet()
        return self.ehlo(name)

    def wait_closed(self, timeout=5):
        """True when the server closes the connection within `timeout`."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    return True
                if not chunk:
                    return True
                self.buf += chunk
            return False
        finally:
            self.sock.settimeout(10)

    def pending_replies(self, wait=1.0):
        """Replies that arrive within `wait` seconds (for 'no more replies')."""
        end = time.monotonic() + wait
        self.sock.settimeout(0.1)
        try:
            while time.monotonic() < end:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                self.buf += chunk
        finally:
            self.sock.settimeout(10)
        out = []
        while b"\r\n" in self.buf:
            out.append(self.read_line())
        return out

    def send_message(self, sender, rcpts, data: bytes):
        """One classic transaction; returns the final reply (after '.')."""
        r = self.cmd(f"MAIL FROM:<{sender}>")
        assert r.code == 250, r
        for rc in rcpts:
            r = self.cmd(f"RCPT TO:<{rc}>")
            assert r.code == 250, r
        r = self.cmd("DATA")
        assert r.code == 354, r
        self.send(dot_stuff(data) + b".\r\n")
        return self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dot_stuff(data: bytes) -> bytes:
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    out = []
    for line in data.split(b"\r\n")[:-1]:
        if line.startswith(b"."):
            line = b"." + line
        out.append(line + b"\r\n")
    return b"".join(out)


# ---------------------------------------------------------------- server

class TernServer:
    def __init__(self, base, *, smtp=None, extra_listen=(), domains=None,
                 sections=None, **top):
        self.base = pathlib.Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.base / "var"
        self.config_path = self.base / "tern.toml"
        self.log_path = self.base / "server.log"
        self.port = free_port()
        self.hostname = HOSTNAME
        self.top = {
            "hostname": HOSTNAME,
            "data_dir": str(self.data_dir),
            "domains": list(domains or [DOMAIN]),
            "trusted_networks": [],
            "threads": 1,
            "delivery_threads": 2,
            "shutdown_grace": 5,
        }
        self.top.update(top)
        self.smtp = dict(DEFAULT_SMTP)
        self.smtp.update(smtp or {})
        self.listen = [(f"127.0.0.1:{self.port}", "smtp")] + list(extra_listen)
        # Extra TOML tables, e.g. {"tls": {"self_signed": True}, "pop3": {...}}.
        self.sections = dict(sections or {})
        # Outbound delivery must never ask a resolver off this machine: by
        # default DNS goes to a closed loopback port, so lookups fail and
        # remote mail stays queued.
        self.sections.setdefault("dns", {"upstream": ["127.0.0.1:9"]})
        # With no DNS, every SPF check would wait for the resolver's
        # timeouts (17 s): inbound mail authentication is for the tests
        # that serve DNS (test_mailauth.py and others turn it on).
        self.sections.setdefault("mailauth", {"verify": False})
        self.proc = None
        self.expect_down = True
        self.exit_codes = []
        self.write_config()

    # -- configuration
    def write_config(self):
        out = []
        for k, v in self.top.items():
            out.append(f"{k} = {toml_value(v)}")
        out.append("")
        out.append("[log]")
        out.append('level = "info"')
        # A listener is (address, service) or (address, service, {options}).
        for addr, service, *opts in self.listen:
            out.append("")
            out.append("[[listen]]")
            out.append(f"address = {toml_value(addr)}")
            out.append(f"service = {toml_value(service)}")
            for k, v in (opts[0] if opts else {}).items():
                out.append(f"{k} = {toml_value(v)}")
        out.append("")
        out.append("[smtp]")
        for k, v in self.smtp.items():
            out.append(f"{k} = {toml_value(v)}")
        for name, table in self.sections.items():
            out.append("")
            out.append(f"[{name}]")
            for k, v in table.items():
                out.append(f"{k} = {toml_value(v)}")
        self.config_path.write_text("\n".join(out) + "\n", encoding="utf-8")

    # -- CLI
    def cli(self, *args, input=None, check=True, timeout=30):
        if isinstance(input, str):
            input = input.encode("utf-8")
        cmd = [TERN_BIN, *args, "--config", str(self.config_path)]
        p = subprocess.run(cmd, input=input if input is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        p.stdout = p.stdout.decode("utf-8", "replace")
        p.stderr = p.stderr.decode("utf-8", "replace")
        report = sanitizer_report(p.stderr)
        if report:
            raise AssertionError(f"{' '.join(cmd)}: sanitizer report\n{report}")
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {p.returncode}\n"
                f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def add_user(self, address, password=PASSWORD):
        return self.cli("user", "add", address, input=password + "\n")

    def add_alias(self, alias, targets):
        if isinstance(targets, str):
            targets = [targets]
        return self.cli("alias", "add", alias, ",".join(targets))

    def queue_list(self):
        return self.cli("queue", "list").stdout

    def queue_json(self):
        out = self.cli("queue", "list", "--json").stdout
        try:
            return json.loads(out)
        except ValueError as e:
            raise AssertionError(f"`tern queue list --json` is not JSON: {e}\n{out!r}")

    # -- process
    def start(self, timeout=10):
        assert os.path.exists(TERN_BIN), f"no tern binary at {TERN_BIN}"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [TERN_BIN, "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.expect_down = False
        if self not in _LIVE:
            _LIVE.append(self)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.expect_down = True
                raise AssertionError(
                    f"tern serve exited with {rc} during start-up\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    # Read the greeting and say QUIT so the probe does not
                    # linger in per-IP connection counts.
                    s.settimeout(3)
                    buf = b""
                    while b"\r\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if buf.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        try:
                            while s.recv(4096):
                                pass
                        except OSError:
                            pass
                        time.sleep(0.05)
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"tern serve not accepting on port {self.port} after {timeout}s\n"
            f"{self.log_tail()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM, wait (kill after `timeout`); returns the exit code."""
        if self.proc is None:
            return None
        self.expect_down = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        return rc

    def terminate(self):
        """Sends SIGTERM without waiting (the test watches what happens)."""
        self.expect_down = True
        self.proc.send_signal(signal.SIGTERM)

    def kill9(self):
        self.expect_down = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def check_alive(self):
        if not self.expect_down and self.proc is not None:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(
                    f"tern serve died unexpectedly with {rc}\n{self.log_tail()}")

    # -- logs
    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        text = self.log_text()
        report = sanitizer_report(text)
        if report:  # its start says what went wrong; the tail would not
            return report
        lines = text.splitlines()
        return "\n".join(lines[-n:])

    # -- mail store
    def maildir(self, address):
        local, domain = address.rsplit("@", 1)
        return self.data_dir / "mail" / domain.lower() / local / "Maildir"

    def message_files(self, address):
        md = self.maildir(address)
        files = []
        for sub in ("new", "cur"):
            d = md / sub
            if d.is_dir():
                files += sorted(p for p in d.iterdir() if p.is_file())
        return files

    def messages(self, address, contains=None):
        out = []
        for p in self.message_files(address):
            try:
                raw = p.read_bytes()
            except FileNotFoundError:  # moved new -> cur meanwhile
                continue
            if contains is None or _as_bytes(contains) in raw:
                out.append(raw)
        return out

    def wait_messages(self, address, contains=None, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages(address, contains)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{address}: expected {count} message(s) containing {contains!r} "
                    f"in {self.maildir(address)} within {timeout}s, found {len(got)}")
            self.check_alive()
            time.sleep(0.05)

    def wait_message(self, address, contains, timeout=10):
        got = self.wait_messages(address, contains, 1, timeout)
        assert len(got) == 1, f"{address}: {len(got)} copies of {contains!r}"
        return Delivered(got[0])

    def assert_no_message(self, address, contains, settle=1.5):
        time.sleep(settle)
        got = self.messages(address, contains)
        assert not got, f"{address}: unexpected message containing {contains!r}: {got[:1]!r}"

    # -- clients
    def connect(self, host="127.0.0.1", port=None, timeout=10):
        return SMTPConn(port or self.port, host=host, timeout=timeout)

    def smtplib(self, local_hostname="client.test", timeout=10):
        import smtplib
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname=local_hostname,
                            timeout=timeout)


def _as_bytes(x):
    return x if isinstance(x, bytes) else x.encode("utf-8")


def launch(base, users=(), aliases=(), **kwargs):
    """Create a server in `base`, add users/aliases, start it."""
    srv = TernServer(base, **kwargs)
    _LIVE.append(srv)
    for u in users:
        srv.add_user(u)
    for a, t in aliases:
        srv.add_alias(a, t)
    srv.start()
    return srv


def shutdown(srv):
    try:
        died = (not srv.expect_down and srv.proc is not None
                and srv.proc.poll() is not None)
        rc = srv.proc.returncode if died else None
        srv.stop()
        if died:
            raise AssertionError(
                f"tern serve died during the test with exit code {rc}\n{srv.log_tail()}")
        # Leaks are reported at exit, so only after the SIGTERM above.
        report = sanitizer_report(srv.log_text())
        if report:
            raise AssertionError(f"sanitizer report in {srv.log_path}:\n{report}")
    finally:
        if srv in _LIVE:
            _LIVE.remove(srv)


DEFAULT_USERS = ("u@example.test", "v@example.test", "w@example.test",
                 "x@example.test", "victim@example.test")


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(users=..., aliases=..., smtp={...}, **top)."""
    made = []

    def factory(users=DEFAULT_USERS, aliases=(), **kwargs):
        base = tmp_path / f"srv{len(made)}"
        srv = TernServer(base, **kwargs)
        made.append(srv)
        _LIVE.append(srv)
        for u in users:
            srv.add_user(u)
        for a, t in aliases:
            srv.add_alias(a, t)
        srv.start()
        return srv

    yield factory
    errors = []
    for srv in made:
        try:
            shutdown(srv)
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server shared by a module, with the default users."""
    srv = TernServer(tmp_path_factory.mktemp("tern"))
    _LIVE.append(srv)
    try:
        for u in DEFAULT_USERS:
            srv.add_user(u)
        srv.start()
    except BaseException:
        shutdown(srv)
        raise
    yield srv
    shutdown(srv)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(_LIVE):
            # Other programs a test runs (a mail filter) may be listed too,
            # under a label of their own.
            label = getattr(srv, "log_label", "tern server log")
            rep.sections.append((f"{label} (tail) {srv.log_path}", srv.log_tail()))


def check_trace(d, sender, rcpt, helo="client.test", ip="127.0.0.1",
                single_rcpt=True, proto="ESMTP"):
    """Asserts Tern's trace fields on a delivered message."""
    assert b"\r" not in d.raw, "Maildir files must use LF line ends"
    assert d.return_path == f"Return-Path: <{sender}>", d.fields
    assert d.delivered_to == f"Delivered-To: {rcpt}", d.fields
    rec = d.received
    assert rec.startswith(f"Received: from {helo} ([{ip}])"), rec
    assert f"by {HOSTNAME} (Tern) with {proto} id " in rec, rec
    if single_rcpt:
        assert f"for <{rcpt}>;" in rec, rec
    # RFC 5322 date after the semicolon
    date = rec.rsplit(";", 1)[1].strip()
    assert email.utils.parsedate_tz(date) is not None, f"bad date in {rec!r}"


def queue_id_of(d):
    """The queue id named in Tern's Received: header."""
    import re
    m = re.search(r"\bid <?([A-Za-z0-9._+-]+)>?", d.received)
    assert m, f"no id in {d.received!r}"
    return m.group(1)
