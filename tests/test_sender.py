# Sender identity against the real server: an authenticated user may use
# only owned addresses in MAIL FROM, From: and Sender: (own address, plus
# tags, aliases and admin grants), and outsiders on port 25 may not claim
# our domains in MAIL FROM.
import smtplib
import ssl

import pytest

from conftest import (PASSWORD, TernServer, build_message, free_port, shutdown,
                      unique, _LIVE)

USER = "u@example.test"
OTHER = "v@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    sub = free_port()
    s = TernServer(tmp_path_factory.mktemp("sender"),
                   extra_listen=[(f"127.0.0.1:{sub}", "submission")],
                   sections={"tls": {"self_signed": True}},
                   smtp={"max_errors": 100})
    s.sub_port = sub
    _LIVE.append(s)
    try:
        s.add_user(USER)
        s.add_user(OTHER)
        s.add_alias("sales@example.test", USER)
        s.cli("user", "grant", USER, "*@shop.test")
        s.start()
    except BaseException:
        shutdown(s)
        raise
    yield s
    shutdown(s)


def login(srv, user=USER):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = smtplib.SMTP("127.0.0.1", srv.sub_port, local_hostname="client.test")
    s.starttls(context=ctx)
    s.login(user, PASSWORD)
    return s


def send_raw(s, sender, headers, marker, rcpt=OTHER):
    """MAIL/RCPT/DATA with exactly these header lines; returns the reply."""
    s.rset()
    code, msg = s.mail(sender)
    assert code == 250, msg
    code, msg = s.rcpt(rcpt)
    assert code == 250, msg
    data = "\r\n".join(headers + [f"Subject: {marker}", "", "body " + marker, ""])
    code, msg = s.data(data.encode("utf-8"))
    return f"{code} {msg.decode()[:5]}"


@pytest.mark.parametrize("sender,expected", [
    (USER, 250),
    ("U@Example.Test", 250),            # case does not matter
    ("u+lists@example.test", 250),      # a tag of an owned address
    ("sales@example.test", 250),        # an alias reaching the account
    ("anything@shop.test", 250),        # granted pattern
    (OTHER, 553),                       # another user
    ("boss@remote.test", 553),          # a foreign address
    ("sales@shop.test.example", 553),
    ("", 553),                          # <> is for bounces, not users
])
def test_mail_from_must_be_owned(srv, sender, expected):
    with login(srv) as s:
        code, msg = s.mail(sender) if sender else s.docmd("MAIL FROM:<>")
        assert code == expected, msg
        if expected != 250:
            assert msg.startswith(b"5.7.1"), msg


def test_forged_from_header_is_refused_after_data(srv):
    with login(srv) as s:
        m = unique("forged")
        r = send_raw(s, USER, [f"From: Boss <{OTHER}>", f"To: {OTHER}"], m)
        assert r == "550 5.7.1", r
        ok = unique("honest")
        assert send_raw(s, USER, [f"From: Me <{USER}>", f"To: {OTHER}"], ok) == "250 2.0.0"
    srv.wait_message(OTHER, ok)
    srv.assert_no_message(OTHER, m, settle=0.5)
    assert f"field=From address=<{OTHER}>" in srv.log_text()


@pytest.mark.parametrize("headers,expected", [
    # several From: mailboxes, one foreign
    ([f"From: {USER}, Boss <{OTHER}>"], "550 5.7.1"),
    ([f"From: Team: {USER}, {OTHER};"], "550 5.7.1"),
    ([f"From: {USER}", f"From: {OTHER}"], "550 5.7.1"),
    # all owned
    ([f"From: {USER}, Sales <sales@example.test>", f"Sender: {USER}"], "250 2.0.0"),
    # encoded words hide nothing: only the addr-spec counts
    ([f"From: =?utf-8?q?{OTHER.replace('@', '=40')}?= <{USER}>"], "250 2.0.0"),
    ([f"From: =?utf-8?q?{USER.replace('@', '=40')}?= <{OTHER}>"], "550 5.7.1"),
    ([f"From: =?utf-8?q?{USER.replace('@', '=40')}?="], "550 5.7.1"),
    ([f"From: =?utf-8?b?PHVAZXhhbXBsZS50ZXN0Pg==?= <{OTHER}>"], "550 5.7.1"),
    # display names and comments that look like addresses
    ([f'From: "{OTHER}" <{USER}>'], "250 2.0.0"),
    ([f'From: "{USER}" <{OTHER}>'], "550 5.7.1"),
    ([f"From: {OTHER} ({USER})"], "550 5.7.1"),
    ([f"From: {USER} ({OTHER})"], "250 2.0.0"),
    # quoted local parts and folding
    ([f'From: "u@example.test"@remote.test'], "550 5.7.1"),
    ([f"From: Me <{USER}>,", f"\t<{OTHER}>"], "550 5.7.1"),
    # Sender: forgery, and a Sender: with two mailboxes
    ([f"From: {USER}", f"Sender: {OTHER}"], "550 5.7.1"),
    ([f"From: {USER}", f"Sender: {USER}, {USER}"], "550 5.7.1"),
    # unparseable
    (["From: just a name"], "550 5.7.1"),
])
def test_from_and_sender_headers(srv, headers, expected):
    with login(srv) as s:
        assert send_raw(s, USER, headers, unique("hdr")) == expected


def test_other_user_cannot_send_as_u(srv):
    with login(srv, OTHER) as s:
        code, msg = s.mail(USER)
        assert (code, msg[:5]) == (553, b"5.7.1"), msg
        code, msg = s.mail("sales@example.test")
        assert (code, msg[:5]) == (553, b"5.7.1"), msg


def test_unauthenticated_local_sender_refused_on_port_25(srv):
    with srv.connect() as c:
        c.start()
        r = c.cmd(f"MAIL FROM:<{USER}>")
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        r = c.cmd("MAIL FROM:<Someone@EXAMPLE.TEST>")
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        # Bounces and outside senders are fine, and From: is not checked.
        m = unique("outside")
        data = build_message(m, ["x"], sender=USER)
        assert c.send_message("friend@remote.test", [OTHER], data).code == 250
    srv.wait_message(OTHER, m)
    assert "reason=local-domain-unauthenticated" in srv.log_text()


def test_trusted_network_may_use_local_sender(make_server):
    s = make_server(users=[USER], trusted_networks=["127.0.0.0/8"])
    with s.connect() as c:
        c.start()
        assert c.cmd(f"MAIL FROM:<{USER}>").code == 250


def test_grant_and_revoke_take_effect_at_once(srv):
    with login(srv) as s:
        assert s.mail("info@newshop.test")[0] == 553
    srv.cli("user", "grant", USER, "info@newshop.test")
    try:
        with login(srv) as s:
            assert s.mail("info@newshop.test")[0] == 250
    finally:
        srv.cli("user", "revoke", USER, "info@newshop.test")
    with login(srv) as s:
        assert s.mail("info@newshop.test")[0] == 553
