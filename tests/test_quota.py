# Storage quotas (RFC 9208 with issue 14's "SMTP also enforces it"): the
# config's default and an account's own (`tern user quota`), SMTP's
# 552 5.2.2 at RCPT for a full mailbox, IMAP GETQUOTAROOT/GETQUOTA and
# NO [OVERQUOTA] for APPEND and COPY.
import re
import smtplib
import time

import pytest

import conftest
from conftest import PASSWORD, build_message, free_port, unique
from imap_client import Raw


@pytest.fixture
def srv(make_server):
    port = free_port()
    s = make_server(users=(),
                    extra_listen=[(f"127.0.0.1:{port}", "imap",
                                   {"allow_plaintext_auth": True})],
                    sections={"quota": {"storage": 20000}})
    s.imap_port = port
    return s


def send(srv, user, size):
    marker = unique("q")
    data = build_message(marker, ["x" * 70] * (size // 72), to=user)
    line = f"delivered to {user}: "
    before = srv.log_text().count(line)
    with srv.smtplib() as s:
        s.sendmail("sender@remote.test", [user], data)
    srv.wait_message(user, marker)
    # The file shows in new/ before the delivery agent tells the quota
    # cache; its log line comes after that.
    deadline = time.monotonic() + 10
    while srv.log_text().count(line) == before:
        assert time.monotonic() < deadline, "no delivery log line"
        time.sleep(0.02)


def rcpt_reply(srv, user):
    with srv.smtplib() as s:
        s.ehlo()
        s.mail("sender@remote.test")
        return s.rcpt(user)


def test_smtp_refuses_a_full_mailbox(srv):
    user = f"{unique('q')}@example.test"
    srv.add_user(user)
    assert rcpt_reply(srv, user)[0] == 250
    send(srv, user, 12000)
    assert rcpt_reply(srv, user)[0] == 250  # 12 KB of 20 KB
    send(srv, user, 12000)
    code, text = rcpt_reply(srv, user)
    assert (code, text[:10]) == (552, b"5.2.2 <" + user.encode()[:3]), (code, text)
    assert b"Mailbox full" in text
    # Its own quota overrides the default: unlimited, then tiny.
    out = srv.cli("user", "quota", user, "0").stdout
    assert out.startswith(f"{user} quota: unlimited (own) used: "), out
    assert rcpt_reply(srv, user)[0] == 250
    out = srv.cli("user", "quota", user, "1M").stdout
    assert "quota: 1048576 (own)" in out
    assert rcpt_reply(srv, user)[0] == 250
    out = srv.cli("user", "quota", user, "default").stdout
    assert "quota: 20000 (default)" in out
    assert rcpt_reply(srv, user)[0] == 552
    p = srv.cli("user", "quota", "nobody@example.test", check=False)
    assert p.returncode != 0 and "no such user" in p.stderr
    # An alias spreading to several accounts is not refused for one of them.
    other = f"{unique('q')}@example.test"
    srv.add_user(other)
    srv.add_alias("team@example.test", [user, other])
    assert rcpt_reply(srv, "team@example.test")[0] == 250


def test_imap_quota(srv):
    user = f"{unique('q')}@example.test"
    srv.add_user(user)
    send(srv, user, 12000)
    c = Raw(srv.imap_port)
    c.login(user, PASSWORD)
    untagged, t = c.cmd("CAPABILITY")
    assert b" QUOTA " in untagged[0] and b"QUOTA=RES-STORAGE" in untagged[0]
    untagged, _ = c.ok("GETQUOTAROOT INBOX")
    assert untagged[0] == b'* QUOTAROOT INBOX ""\r\n', untagged
    m = re.match(rb'\* QUOTA "" \(STORAGE (\d+) 19\)\r\n', untagged[1])
    assert m and 11 <= int(m.group(1)) <= 14, untagged
    untagged, _ = c.ok('GETQUOTA ""')
    assert untagged[0].startswith(b'* QUOTA "" (STORAGE ')
    _, t = c.cmd('SETQUOTA "" (STORAGE 100)')
    assert b"NO [NOPERM]" in t, t
    msg = b"Subject: big\r\n\r\n" + b"y" * 15000 + b"\r\n"
    _, t = c.cmd(f"APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg)
    assert b"NO [OVERQUOTA]" in t, t
    small = b"Subject: small\r\n\r\nhi\r\n"
    _, t = c.cmd(f"APPEND INBOX {{{len(small)}+}}\r\n".encode() + small)
    assert b"OK [APPENDUID" in t, t
    c.ok("SELECT INBOX")
    _, t = c.cmd("COPY 1 Trash")  # 12 KB more: over 20 KB
    assert b"NO [OVERQUOTA]" in t, t
    c.ok("MOVE 1 Trash")  # moving adds nothing
    c.close()
