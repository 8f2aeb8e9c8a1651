# Relay control against the real server: nobody without a login relays, and
# the address tricks that once turned servers into open relays are refused
# (never routed) for everyone, each with its reply code and a log line.
import smtplib
import ssl

import pytest

from conftest import run_tool, PASSWORD, TernServer, free_port, shutdown, unique, _LIVE

USER = "u@example.test"

# (recipient, unauthenticated reply, authenticated reply). Codes are
# "code enhanced"; 250 means accepted.
BATTERY = [
    ("u@example.test", "250 2.1.5", "250 2.1.5"),
    ("U@EXAMPLE.TEST", "250 2.1.5", "250 2.1.5"),              # mixed case
    ('"u"@example.test', "250 2.1.5", "250 2.1.5"),            # needless quotes
    ("far@remote.test", "554 5.7.1", "250 2.1.5"),             # plain relay
    ("u%remote.test@example.test", "554 5.7.1", "554 5.7.1"),  # percent hack
    ("u%remote.test@EXAMPLE.Test", "554 5.7.1", "554 5.7.1"),
    ("remote.test!u@example.test", "554 5.7.1", "554 5.7.1"),  # bang path
    ('"u@remote.test"@example.test', "554 5.7.1", "554 5.7.1"),
    ("u@remote.test@example.test", "501 5.1.3", "501 5.1.3"),  # two @
    ("@example.test:far@remote.test", "554 5.7.1", "250 2.1.5"),  # source route
    ("@remote.test,@x.test:u@example.test", "250 2.1.5", "250 2.1.5"),
    ("u@[192.0.2.1]", "554 5.7.1", "554 5.7.1"),               # IP literals
    ("u@[127.0.0.1]", "554 5.7.1", "554 5.7.1"),
    ("u@[IPv6:2001:db8::1]", "554 5.7.1", "554 5.7.1"),
    ("u@example.test.", "501 5.1.3", "501 5.1.3"),              # trailing dot
    ("far@remote.test.", "501 5.1.3", "501 5.1.3"),
    ("nosuch@example.test", "550 5.1.1", "550 5.1.1"),
    ("nosuch%remote.test@example.test", "554 5.7.1", "554 5.7.1"),
    # A '%' at a foreign domain is that domain's business: relaying rules
    # apply as for any remote address.
    ("a%b@remote.test", "554 5.7.1", "250 2.1.5"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    sub = free_port()
    s = TernServer(tmp_path_factory.mktemp("relay"),
                   extra_listen=[(f"127.0.0.1:{sub}", "submission")],
                   # The battery is one session of many refusals.
                   smtp={"max_errors": 100},
                   sections={"tls": {"self_signed": True}})
    s.sub_port = sub
    _LIVE.append(s)
    try:
        s.add_user(USER)
        s.start()
    except BaseException:
        shutdown(s)
        raise
    yield s
    shutdown(s)


def context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def reply_of(code, msg):
    return f"{code} {msg.decode()[:5]}"


def run_battery(s, column):
    got = {}
    for rcpt, *expected in BATTERY:
        s.rset()
        code, msg = s.mail("sender@remote.test" if column == 0 else USER)
        assert code == 250, msg
        code, msg = s.docmd(f"RCPT TO:<{rcpt}>")
        got[rcpt] = reply_of(code, msg)
    want = {rcpt: row[column] for rcpt, *row in BATTERY}
    assert got == want


def test_unauthenticated_battery(srv):
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test") as s:
        s.ehlo()
        run_battery(s, 0)
    log = srv.log_text()
    for trick in ("u%remote.test@example.test", "remote.test!u@example.test",
                  '"u@remote.test"@example.test'):
        assert f"relay trick refused client=127.0.0.1 user= rcpt=<{trick}>" in log, trick
    assert "rcpt=<far@remote.test>" in log
    assert "rcpt=<u@[192.0.2.1]> reason=address-literal" in log
    assert "arg=<u@remote.test@example.test> reason=syntax" in log
    assert "arg=<u@example.test.> reason=syntax" in log


def test_unauthenticated_over_tls_is_still_unauthenticated(srv):
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test") as s:
        s.starttls(context=context())
        s.ehlo()
        run_battery(s, 0)


def test_authenticated_battery(srv):
    with smtplib.SMTP("127.0.0.1", srv.sub_port, local_hostname="client.test") as s:
        s.starttls(context=context())
        s.login(USER, PASSWORD)
        run_battery(s, 1)
    assert f"relay trick refused client=127.0.0.1 user={USER} " in srv.log_text()


def test_trusted_network_may_relay_but_not_use_tricks(make_server):
    s = make_server(users=[USER], trusted_networks=["127.0.0.0/8"])
    with s.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<app@example.test>").code == 250
        assert c.cmd("RCPT TO:<far@remote.test>").code == 250
        r = c.cmd("RCPT TO:<u%remote.test@example.test>")
        assert (r.code, r.enhanced) == (554, "5.7.1"), r
        r = c.cmd("RCPT TO:<remote.test!u@example.test>")
        assert (r.code, r.enhanced) == (554, "5.7.1"), r


def test_swaks_without_login_cannot_relay(srv):
    import subprocess
    m = unique("openrelay")
    p = run_tool(["swaks", "--server", f"127.0.0.1:{srv.port}", "--tls", "--from",
         "spammer@remote.test", "--to", "victim@elsewhere.test",
         "--header", f"Subject: {m}"],
        capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "554 5.7.1" in p.stdout, p.stdout
    assert m not in srv.queue_list()
