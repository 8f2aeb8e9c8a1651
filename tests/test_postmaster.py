# Mail that must reach a person with no configuration at all (issue 11):
# postmaster at every local domain and bare <Postmaster> (RFC 5321 4.5.1),
# abuse (RFC 2142), the machine's system users (root, cron's MAILTO), the
# `postmaster` setting, and bounces that cannot be delivered (double bounces
# go to the postmaster instead of vanishing).
import email
import email.policy
import os
import pwd
import time

import pytest

from conftest import PASSWORD, build_message, unique
from test_outbound import dns, mx_port, sinks, submit, tern  # noqa: F401

ADMIN = "admin@example.test"


def rcpt_reply(srv, rcpt, sender="s@remote.test"):
    with srv.connect() as c:
        c.start()
        assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
        return c.cmd(f"RCPT TO:<{rcpt}>")


def send(srv, rcpts, marker, sender="s@remote.test"):
    data = build_message(marker, [f"postmaster test {marker}"], sender=sender,
                         to=rcpts[0])
    with srv.connect() as c:
        c.start()
        r = c.send_message(sender, rcpts, data)
        assert r.code == 250, r
    return data


def a_system_user():
    """A login name of this machine that is not one of the role names."""
    for name in ("root", "daemon", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    pytest.skip("no system user found in the passwd database")


# ---------------------------------------------------------------- no config

@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """No `postmaster` setting, no accounts, no aliases: nothing configured."""
    from conftest import _LIVE, TernServer, shutdown
    srv = TernServer(tmp_path_factory.mktemp("bare"),
                     domains=["example.test", "other.test"])
    _LIVE.append(srv)
    try:
        srv.start()
    except BaseException:
        shutdown(srv)
        raise
    yield srv
    shutdown(srv)


def test_bare_postmaster_without_any_configuration(bare):
    m = unique("bare")
    data = build_message(m, ["to the bare postmaster"])
    with bare.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        r = c.cmd("RCPT TO:<Postmaster>")
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(data + b".\r\n")
        assert c.reply().code == 250
    # The fallback mailbox: postmaster@<first domain> under data_dir/mail.
    d = bare.wait_message("postmaster@example.test", m)
    assert d.delivered_to == "Delivered-To: postmaster@example.test"
    log = bare.log_text()
    assert "postmaster is not set" in log, log[-2000:]


@pytest.mark.parametrize("rcpt", ["postmaster@example.test", "POSTMASTER@Example.Test",
                                  "postmaster@other.test", "abuse@example.test",
                                  "Abuse@other.test"])
def test_role_addresses_at_every_domain(bare, rcpt):
    m = unique("role")
    send(bare, [rcpt], m)
    bare.wait_message("postmaster@example.test", m)


def test_system_user_goes_to_postmaster(bare):
    user = a_system_user()
    m = unique("sys")
    send(bare, [f"{user}@example.test"], m)
    bare.wait_message("postmaster@example.test", m)


def test_unknown_users_are_still_refused(bare):
    r = rcpt_reply(bare, "no-such-person-here@example.test")
    assert (r.code, r.enhanced) == (550, "5.1.1"), r


# ---------------------------------------------------------------- configured

@pytest.fixture
def admin_srv(make_server):
    return make_server(users=(ADMIN, "u@example.test"), postmaster=ADMIN,
                       domains=["example.test", "other.test"])


@pytest.mark.parametrize("rcpt", ["postmaster", "postmaster@example.test",
                                  "postmaster@other.test", "abuse@example.test",
                                  "mailer-daemon@example.test"])
def test_postmaster_setting_receives_role_mail(admin_srv, rcpt):
    m = unique("cfg")
    data = build_message(m, ["to the configured postmaster"])
    with admin_srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(data + b".\r\n")
        assert c.reply().code == 250
    admin_srv.wait_message(ADMIN, m)
    assert not admin_srv.maildir("postmaster@example.test").exists()
    assert "postmaster is not set" not in admin_srv.log_text()


def test_explicit_alias_wins_over_the_setting(admin_srv):
    admin_srv.add_alias("abuse@example.test", "u@example.test")
    m = unique("alias")
    send(admin_srv, ["abuse@example.test"], m)
    admin_srv.wait_message("u@example.test", m)
    assert admin_srv.messages(ADMIN, m) == []
    # Other roles still go to the setting.
    m2 = unique("alias")
    send(admin_srv, ["postmaster@example.test"], m2)
    admin_srv.wait_message(ADMIN, m2)


def test_sendmail_to_a_bare_system_user(admin_srv):
    """cron's MAILTO=root: `sendmail root` reaches the postmaster."""
    user = a_system_user()
    m = unique("cron")
    admin_srv.cli("sendmail", user, input=f"Subject: {m}\n\ncron output\n")
    d = admin_srv.wait_message(ADMIN, m)
    assert f"Delivered-To: {ADMIN}" in d.delivered_to


def test_postmaster_setting_is_checked(tmp_path):
    from conftest import TernServer
    srv = TernServer(tmp_path / "bad", postmaster="not an address")
    p = srv.cli("user", "list", check=False)
    assert p.returncode != 0
    assert "postmaster" in p.stderr and "not an address" in p.stderr, p.stderr


# ---------------------------------------------------------------- bounces

def dsn_parts(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return msg, msg.get_payload()


def test_bounce_for_a_system_user_reaches_the_postmaster(tern, dns, sinks):  # noqa: F811
    """`echo hi | tern sendmail friend@nowhere.test` run by root: the mail
    fails, its bounce goes to root@example.test, which is the postmaster."""
    user = pwd.getpwuid(os.getuid()).pw_name
    srv = tern(users=(ADMIN,), postmaster=ADMIN)
    dns.mx("refuses.test", (10, "mx.refuses.test"))
    dns.a("mx.refuses.test", "127.0.0.41")
    sinks.smtp("127.0.0.41", {"RCPT": "550 5.1.1 no such user"})
    m = unique("sysbounce")
    srv.cli("sendmail", "friend@refuses.test", input=f"Subject: {m}\n\nhi\n")
    got = srv.wait_messages(ADMIN, m, timeout=20)
    msg, _ = dsn_parts(got[0])
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["To"] == f"<{user}@example.test>"
    assert "friend@refuses.test" in got[0].decode()


def test_double_bounce_goes_to_the_postmaster(tern, dns, sinks):  # noqa: F811
    """A bounce (sender <>) that its recipient refuses is reported to the
    postmaster, never silently dropped."""
    srv = tern(users=(ADMIN,), postmaster=ADMIN)
    dns.mx("gone.test", (10, "mx.gone.test"))
    dns.a("mx.gone.test", "127.0.0.42")
    sink = sinks.smtp("127.0.0.42", {"RCPT": "550 5.1.1 mailbox gone"})
    m = unique("double")
    submit(srv, "", ["sender@gone.test"], m)
    got = srv.wait_messages(ADMIN, m, timeout=20)
    assert len(got) == 1
    msg, parts = dsn_parts(got[0])
    assert msg["Subject"] == "Postmaster notify: undeliverable bounce"
    assert msg["To"] == "<postmaster@example.test>"
    assert msg.get_content_type() == "multipart/report"
    status = parts[1].get_payload()
    text = "\n".join(str(p) for p in status)
    assert "Final-Recipient: rfc822; sender@gone.test" in text
    assert "Status: 5.1.1" in text
    assert m in got[0].decode()  # the failed bounce is attached
    assert sink.envelopes == []
    log = srv.log_text()
    assert "double bounce" in log


def test_undeliverable_double_bounce_is_logged_not_looped(tern, dns, sinks):  # noqa: F811
    """When the postmaster itself is unreachable the notice is dropped with
    an error in the log: one attempt, no loop."""
    srv = tern(users=(), postmaster="pm@down.test")
    dns.mx("down.test", (10, "mx.down.test"))
    dns.mx("gone2.test", (10, "mx.down.test"))
    dns.a("mx.down.test", "127.0.0.43")
    sink = sinks.smtp("127.0.0.43", {"RCPT": "550 5.1.1 nobody here"})
    m = unique("triple")
    submit(srv, "", ["sender@gone2.test"], m)
    deadline = time.monotonic() + 20
    while "the postmaster cannot be told either" not in srv.log_text():
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.1)
    time.sleep(1.5)
    log = srv.log_text()
    assert log.count("the postmaster cannot be told either") == 1, log[-3000:]
    # The bounce was tried once, the postmaster notice once; nothing more.
    assert sink.calls["RCPT"] == 2, sink.calls
