# POP3 against the real server: RFC 1939 commands and states through Python's
# poplib (plain on loopback with the allowance, STLS, POP3S) and raw sockets,
# with mail delivered through Tern's own SMTP; deletion rules, [IN-USE],
# TOP, dot-stuffing, 8-bit round trips, UIDL stability, AUTH and limits.
import base64
import poplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import run_tool, PASSWORD, build_message, free_port, unique
from scram_client import ScramSha256Client


def pop3_server(make_server, pop3=None, **kwargs):
    ports = {"plain": free_port(), "strict": free_port(), "ssl": free_port()}
    srv = make_server(
        users=(),
        extra_listen=[
            (f"127.0.0.1:{ports['plain']}", "pop3", {"allow_plaintext_auth": True}),
            (f"127.0.0.1:{ports['strict']}", "pop3"),
            (f"127.0.0.1:{ports['ssl']}", "pop3s"),
        ],
        sections={"tls": {"self_signed": True}, "pop3": dict(pop3 or {})},
        **kwargs)
    srv.pop3_ports = ports
    return srv


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # One server for the module (make_server is function-scoped).
    import conftest
    ports = {"plain": free_port(), "strict": free_port(), "ssl": free_port()}
    s = conftest.TernServer(
        tmp_path_factory.mktemp("pop3"),
        extra_listen=[
            (f"127.0.0.1:{ports['plain']}", "pop3", {"allow_plaintext_auth": True}),
            (f"127.0.0.1:{ports['strict']}", "pop3"),
            (f"127.0.0.1:{ports['ssl']}", "pop3s"),
        ],
        sections={"tls": {"self_signed": True}})
    s.pop3_ports = ports
    conftest._LIVE.append(s)
    try:
        s.start()
    except BaseException:
        conftest.shutdown(s)
        raise
    yield s
    conftest.shutdown(s)


def no_verify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def new_user(srv, prefix="p"):
    address = f"{unique(prefix)}@example.test"
    srv.add_user(address)
    return address


def deliver(srv, user, lines=None, raw=None, **kw):
    """Sends through Tern's SMTP; returns (marker, sent CRLF bytes)."""
    marker = unique("msg")
    data = raw if raw is not None else build_message(marker, lines or ["hello " + marker], to=user)
    if raw is not None:
        data = data.replace(b"MARKER", marker.encode())
    with srv.smtplib() as s:
        assert s.sendmail("sender@remote.test", [user], data, **kw) == {}
    srv.wait_message(user, marker)
    return marker, data


def login(srv, user, port="plain"):
    p = poplib.POP3("127.0.0.1", srv.pop3_ports[port], timeout=10)
    p.user(user)
    p.pass_(PASSWORD)
    return p


def body_of(lines):
    return b"\r\n".join(lines) + b"\r\n"


class Raw:
    """Line-level POP3 client for what poplib hides."""

    def __init__(self, port, tls=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            self.sock = no_verify().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def multi(self):
        out = []
        while True:
            line = self.line()
            if line == ".":
                return out
            out.append(line)

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, socket.timeout):
            return False
        finally:
            self.sock.settimeout(10)

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- protocol

def test_capa_needs_tls_for_passwords(srv):
    c = Raw(srv.pop3_ports["strict"])
    assert c.greeting.startswith("+OK ")
    assert c.cmd("CAPA").startswith("+OK")
    caps = c.multi()
    for cap in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"):
        assert cap in caps, caps
    assert "USER" not in caps and not any(x.startswith("SASL") for x in caps), caps
    assert any(x.startswith("IMPLEMENTATION") for x in caps), caps
    assert c.cmd("USER u@example.test").startswith("-ERR [AUTH]")
    assert c.cmd("AUTH PLAIN").startswith("-ERR [AUTH]")
    assert c.cmd("QUIT").startswith("+OK")
    c.close()

    c = Raw(srv.pop3_ports["plain"])
    c.cmd("CAPA")
    caps = c.multi()
    assert "USER" in caps and "SASL PLAIN LOGIN SCRAM-SHA-256" in caps, caps
    assert "STLS" in caps
    c.close()


def test_poplib_plain_stat_list_uidl_retr(srv):
    user = new_user(srv)
    m1, d1 = deliver(srv, user, ["first"])
    m2, d2 = deliver(srv, user, ["second", "", "more"])
    p = login(srv, user)
    count, total = p.stat()
    assert count == 2
    resp, listing, _ = p.list()
    sizes = [int(x.split()[1]) for x in listing]
    assert sum(sizes) == total
    resp, uidls, _ = p.uidl()
    assert len({u.split()[1] for u in uidls}) == 2
    for i, (marker, sent) in enumerate([(m1, d1), (m2, d2)], start=1):
        resp, lines, octets = p.retr(i)
        assert resp.startswith(b"+OK %d octets" % sizes[i - 1])
        got = body_of(lines)
        assert len(got) == sizes[i - 1]
        assert got.endswith(sent), "message body differs from what was sent"
        assert b"Return-Path: <sender@remote.test>\r\n" in got
    p.quit()
    # Retrieved messages are in cur/ and marked seen (Maildir).
    md = srv.maildir(user)
    assert not list((md / "new").iterdir())
    names = sorted(x.name for x in (md / "cur").iterdir())
    assert len(names) == 2 and all(n.endswith(":2,S") for n in names), names
    # Nothing deleted.
    assert len(srv.message_files(user)) == 2


def test_poplib_stls(srv):
    user = new_user(srv)
    marker, _ = deliver(srv, user)
    p = poplib.POP3("127.0.0.1", srv.pop3_ports["strict"], timeout=10)
    p.stls(context=no_verify())
    p.user(user)
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    assert marker.encode() in body_of(p.retr(1)[1])
    p.quit()


def test_poplib_ssl(srv):
    user = new_user(srv)
    marker, _ = deliver(srv, user)
    p = poplib.POP3_SSL("127.0.0.1", srv.pop3_ports["ssl"], context=no_verify(),
                        timeout=10)
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps, caps
    p.user(user)
    p.pass_(PASSWORD)
    assert marker.encode() in body_of(p.retr(1)[1])
    p.quit()


def test_stls_discards_pipelined_plaintext(srv):
    c = Raw(srv.pop3_ports["strict"])
    c.sock.sendall(b"STLS\r\nCAPA\r\n")
    assert c.line().startswith("+OK")
    tls = no_verify().wrap_socket(c.sock)
    c.sock = tls
    # The CAPA sent before the handshake must not be answered.
    assert c.cmd("NOOP").startswith("-ERR Not logged in")
    c.close()


def test_wrong_password(srv):
    user = new_user(srv)
    p = poplib.POP3("127.0.0.1", srv.pop3_ports["plain"], timeout=10)
    p.user(user)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert b"[AUTH]" in e.value.args[0]
    p.user(user)
    p.pass_(PASSWORD)
    p.quit()


def test_dele_rset_keeps_message(srv):
    user = new_user(srv)
    deliver(srv, user)
    p = login(srv, user)
    p.dele(1)
    assert p.stat() == (0, 0)
    p.rset()
    assert p.stat()[0] == 1
    p.quit()
    assert len(srv.message_files(user)) == 1


def test_dele_then_dropped_connection_keeps_message(srv):
    user = new_user(srv)
    deliver(srv, user)
    c = Raw(srv.pop3_ports["plain"])
    c.cmd(f"USER {user}")
    assert c.cmd(f"PASS {PASSWORD}").startswith("+OK")
    assert c.cmd("DELE 1").startswith("+OK")
    c.close()  # no QUIT
    time.sleep(0.3)
    assert len(srv.message_files(user)) == 1
    # And the lock went with the connection.
    p = login(srv, user)
    assert p.stat()[0] == 1
    p.quit()


def test_dele_then_quit_removes_message(srv):
    user = new_user(srv)
    m1, _ = deliver(srv, user, ["one"])
    m2, _ = deliver(srv, user, ["two"])
    p = login(srv, user)
    uid2 = p.uidl(2).split()[2]
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    files = srv.message_files(user)
    assert len(files) == 1 and m2.encode() in files[0].read_bytes()
    assert not (srv.maildir(user) / "tern-expunge").exists()
    # UIDL stays the same for the remaining message, numbers shift.
    p = login(srv, user)
    assert p.uidl(1).split()[2] == uid2
    p.quit()


def test_second_login_gets_in_use(srv):
    user = new_user(srv)
    deliver(srv, user)
    p = login(srv, user)
    q = poplib.POP3("127.0.0.1", srv.pop3_ports["plain"], timeout=10)
    q.user(user)
    with pytest.raises(poplib.error_proto) as e:
        q.pass_(PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]")
    q.quit()
    p.quit()
    q = login(srv, user)
    q.quit()


def test_top(srv):
    user = new_user(srv)
    marker, sent = deliver(srv, user, ["line 1", "line 2", "line 3"])
    p = login(srv, user)
    resp, lines, _ = p.top(1, 0)
    assert lines[-1] == b"" and b"line 1" not in lines
    assert any(l.startswith(b"Subject: " + marker.encode()) for l in lines)
    resp, lines, _ = p.top(1, 2)
    assert lines[-3:] == [b"", b"line 1", b"line 2"]
    resp, lines, _ = p.top(1, 100)
    assert lines[-3:] == [b"line 1", b"line 2", b"line 3"]
    p.quit()
    # TOP is not a retrieval: the message stays in new/.
    assert len(list((srv.maildir(user) / "new").iterdir())) == 1


def test_dot_lines_arrive_intact(srv):
    user = new_user(srv)
    body = [".", "..", ".leading dot", "a.b", "...", ". trailing"]
    marker, sent = deliver(srv, user, body)
    c = Raw(srv.pop3_ports["plain"])
    c.cmd(f"USER {user}")
    c.cmd(f"PASS {PASSWORD}")
    assert c.cmd("RETR 1").startswith("+OK")
    wire = c.multi()
    # On the wire every line starting with "." carries one more.
    assert wire[-6:] == ["..", "...", "..leading dot", "a.b", "....", ".. trailing"]
    c.cmd("QUIT")
    p = login(srv, user)
    assert body_of(p.retr(1)[1]).endswith(sent)
    p.quit()


def test_8bit_content_round_trips(srv):
    user = new_user(srv)
    payload = bytes(b for b in range(1, 256) if b not in (10, 13))
    raw = (b"From: <sender@remote.test>\r\nTo: <" + user.encode() +
           b">\r\nSubject: MARKER\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" +
           b"\r\n".join(payload[i:i + 60] for i in range(0, len(payload), 60)) +
           b"\r\n\xc3\xa9t\xc3\xa9\r\n")
    marker, sent = deliver(srv, user, raw=raw, mail_options=["BODY=8BITMIME"])
    p = login(srv, user)
    got = body_of(p.retr(1)[1])
    assert got.endswith(sent)
    size = int(p.list(1).split()[2])
    assert size == len(got)
    p.quit()


def test_new_mail_shows_up_in_next_session(srv):
    user = new_user(srv)
    deliver(srv, user, ["one"])
    p = login(srv, user)
    assert p.stat()[0] == 1
    deliver(srv, user, ["two"])
    assert p.stat()[0] == 1
    uidls = p.uidl()[1]
    p.quit()
    p = login(srv, user)
    assert p.stat()[0] == 2
    assert p.uidl()[1][0] == uidls[0]
    p.quit()


def test_pipelining(srv):
    user = new_user(srv)
    deliver(srv, user)
    c = Raw(srv.pop3_ports["plain"])
    c.sock.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nRETR 1\r\n"
                   "NOOP\r\nQUIT\r\n".encode())
    assert c.line().startswith("+OK")            # USER
    assert c.line().startswith("+OK Logged in")  # PASS
    assert c.line().startswith("+OK 1 ")         # STAT
    assert c.line().startswith("+OK") and len(c.multi()) == 1
    assert c.line().startswith("+OK") and c.multi()
    assert c.line() == "+OK"
    assert c.line().startswith("+OK")
    assert c.closed()


def test_auth_plain_login_and_scram(srv):
    user = new_user(srv)
    deliver(srv, user)
    c = Raw(srv.pop3_ports["plain"])
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    assert c.cmd(f"AUTH PLAIN {token}").startswith("+OK Logged in")
    c.cmd("QUIT")
    c.close()

    c = Raw(srv.pop3_ports["plain"])
    assert c.cmd("AUTH LOGIN").startswith("+ ")
    assert c.cmd(base64.b64encode(user.encode()).decode()).startswith("+ ")
    assert c.cmd(base64.b64encode(PASSWORD.encode()).decode()).startswith("+OK")
    c.cmd("QUIT")
    c.close()

    c = Raw(srv.pop3_ports["plain"])
    scram = ScramSha256Client(user, PASSWORD)
    first = base64.b64encode(scram.client_first()).decode()
    r = c.cmd(f"AUTH SCRAM-SHA-256 {first}")
    assert r.startswith("+ "), r
    final = scram.client_final(base64.b64decode(r[2:]))
    r = c.cmd(base64.b64encode(final).decode())
    assert r.startswith("+ "), r  # server-final as a last challenge
    scram.verify_server_final(base64.b64decode(r[2:]))
    assert c.cmd("").startswith("+OK Logged in")
    c.cmd("QUIT")
    c.close()

    c = Raw(srv.pop3_ports["plain"])
    bad = base64.b64encode(f"\0{user}\0nope".encode()).decode()
    assert c.cmd(f"AUTH PLAIN {bad}").startswith("-ERR [AUTH]")
    assert c.cmd("AUTH PLAIN").startswith("+ ")
    assert c.cmd("*").startswith("-ERR")
    c.close()


def test_bad_commands_close_the_session(srv):
    c = Raw(srv.pop3_ports["plain"])
    for _ in range(9):
        assert c.cmd("BOGUS").startswith("-ERR")
    assert c.cmd("BOGUS").startswith("-ERR")
    assert c.closed()


def test_long_command_line(srv):
    c = Raw(srv.pop3_ports["plain"])
    assert c.cmd("USER " + "a" * 300).startswith("-ERR")
    assert c.cmd("NOOP").startswith("-ERR Not logged in")
    c.close()


def test_curl_pop3_and_pop3s(srv):
    user = new_user(srv)
    marker, sent = deliver(srv, user)
    creds = f"{user}:{PASSWORD}"
    out = run_tool(["curl", "-s", "-S", "--max-time", "20", "-u", creds,
         f"pop3://127.0.0.1:{srv.pop3_ports['plain']}/"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [b"1", str(len(body_of(
        poplib_retr(srv, user)))).encode()]
    out = run_tool(["curl", "-s", "-S", "-k", "--max-time", "20", "-u", creds,
         f"pop3s://127.0.0.1:{srv.pop3_ports['ssl']}/1"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith(sent)
    # STLS on the strict port (curl's --ssl-reqd).
    out = run_tool(["curl", "-s", "-S", "-k", "--ssl-reqd", "--max-time", "20", "-u", creds,
         f"pop3://127.0.0.1:{srv.pop3_ports['strict']}/1"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith(sent)


def poplib_retr(srv, user):
    p = login(srv, user)
    lines = p.retr(1)[1]
    p.quit()
    return lines


def test_idle_timeout_deletes_nothing(make_server):
    srv = pop3_server(make_server, pop3={"idle_timeout": 2})
    user = new_user(srv)
    deliver(srv, user)
    c = Raw(srv.pop3_ports["plain"])
    c.cmd(f"USER {user}")
    c.cmd(f"PASS {PASSWORD}")
    assert c.cmd("DELE 1").startswith("+OK")
    assert c.line().startswith("-ERR")  # autologout notice
    assert c.closed()
    assert len(srv.message_files(user)) == 1


def test_login_delay_and_expire_capabilities(make_server):
    srv = pop3_server(make_server, pop3={"login_delay": 60, "expire": "NEVER"})
    user = new_user(srv)
    c = Raw(srv.pop3_ports["plain"])
    c.cmd("CAPA")
    caps = c.multi()
    assert "LOGIN-DELAY 60" in caps and "EXPIRE NEVER" in caps, caps
    c.close()
    login(srv, user).quit()
    p = poplib.POP3("127.0.0.1", srv.pop3_ports["plain"], timeout=10)
    p.user(user)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_(PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [LOGIN-DELAY]")
