# Tern's milter client (Sendmail milter protocol v6) against a real rspamd:
# Debian's package, run privately by tests/rspamd_peer.py as a proxy worker
# in milter mode. rspamd refuses the GTUBE test string with its own reply,
# adds its headers to the mail it passes, scans the submission port's mail
# too, replaces the verdict fields a message arrived with, can have Tern hold
# a message in quarantine, and Tern answers 451 4.7.1 while the milter is
# down (on_error = "tempfail").
import email
import email.policy
import smtplib

import pytest

from conftest import PASSWORD, build_message, free_port, unique
from faultkit import wait_for
from rspamd_peer import RspamdPeer, milter_negotiate, milter_scan

# The Generic Test for Unsolicited Bulk Email: rspamd's action for it is
# reject, with the reply "554 5.7.1 Gtube pattern".
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# The headers the peer's milter_headers module adds (rspamd_peer.py).
RSPAMD_HEADERS = ("X-Spamd-Result", "X-Rspamd-Server", "X-Spam-Status")


@pytest.fixture(scope="module")
def hs_cache(tmp_path_factory):
    """Compiled Hyperscan databases, shared by this module's rspamd
    instances: only the first start compiles them."""
    return tmp_path_factory.mktemp("rspamd-hs")


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory, hs_cache):
    peer = RspamdPeer(tmp_path_factory.mktemp("rspamd"), hs_cache=hs_cache)
    peer.start()
    print(f"rspamd answered on port {peer.port} after {peer.startup_seconds:.1f}s")
    yield peer
    peer.stop()


def milter_server(make_server, peer, route=None):
    """Tern with `peer` as its one milter, and an authenticated submission
    listener beside port 25; `route`: one [[route]] table."""
    sub = free_port()
    top = {}
    if route:  # an array of tables, written inline like the milter's
        top["route"] = [route]
    srv = make_server(
        milter=[{"address": f"127.0.0.1:{peer.port}", "on_error": "tempfail",
                 "timeout": 10}],
        extra_listen=[(f"127.0.0.1:{sub}", "submission", {"allow_plaintext_auth": True})],
        **top)
    srv.sub_port = sub
    return srv


def submission(srv):
    s = smtplib.SMTP("127.0.0.1", srv.sub_port, local_hostname="client.test", timeout=30)
    s.login("u@example.test", PASSWORD)
    return s


def assert_gtube_refused(err, peer):
    code, text = err.smtp_code, err.smtp_error.decode("utf-8", "replace")
    assert 500 <= code < 600, (code, text, peer.log_tail())
    # rspamd's own reply, passed on as it came.
    assert code == 554, (code, text)
    assert text.startswith("5.7.1 "), text
    assert "Gtube pattern" in text, text


def assert_scanned_headers(d_raw, marker):
    """rspamd's headers in the delivered file's header section, folded
    lines and all in the file's line ends (Maildir files are LF-only: a
    CR anywhere means rspamd's bare-LF folding was not normalised)."""
    assert b"\r" not in d_raw, f"CR in a Maildir file: {d_raw[:2000]!r}"
    head, sep, body = d_raw.partition(b"\n\n")
    assert sep, "no end of the header section"
    for name in RSPAMD_HEADERS:
        assert f"\n{name}: ".encode() in head, f"no {name} header in\n{head.decode()}"
    # Every line of the header section is a field or a continuation.
    for line in head.split(b"\n"):
        assert line[:1] in (b" ", b"\t") or b":" in line, f"broken header line {line!r}"
    msg = email.message_from_bytes(d_raw, policy=email.policy.compat32)
    result = " ".join(msg["X-Spamd-Result"].split())
    assert result.startswith("default: False ["), result
    assert "MIME_GOOD" in result, result
    assert msg["X-Spam-Status"].startswith("No, score="), msg["X-Spam-Status"]
    assert msg["Subject"] == marker
    assert body.startswith(b"a clean message"), body


def test_private_rspamd_speaks_milter(rspamd):
    """The peer itself, before Tern: it negotiates milter v6, passes clean
    mail with its headers and refuses GTUBE."""
    version, actions, _ = milter_negotiate(rspamd.port)
    assert version == 6
    assert actions & 0x01, "rspamd should ask to add headers (SMFIF_ADDHDRS)"
    replies = milter_scan(rspamd.port, build_message("probe", ["clean text"]))
    assert replies[-1] == (b"a", b""), replies
    added = [d.split(b"\0")[0].decode() for c, d in replies if c == b"h"]
    assert sorted(added) == sorted(RSPAMD_HEADERS), replies
    replies = milter_scan(rspamd.port, build_message("probe", ["spam", GTUBE]))
    assert replies == [(b"y", b"554 5.7.1 Gtube pattern\0")], replies


def test_gtube_is_refused_at_end_of_data_with_rspamds_reply(make_server, rspamd):
    srv = milter_server(make_server, rspamd)
    marker = unique("gtube")
    with srv.smtplib(timeout=30) as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("sender@remote.test", ["u@example.test"],
                       build_message(marker, ["Test spam:", GTUBE]))
        assert_gtube_refused(refused.value, rspamd)
        # Only that transaction failed: the session goes on, and the next
        # message is scanned afresh and passes.
        clean = unique("after-gtube")
        s.sendmail("sender@remote.test", ["u@example.test"],
                   build_message(clean, ["a clean message after the refused one"]))
    srv.wait_message("u@example.test", clean)
    srv.assert_no_message("u@example.test", marker)


def test_clean_mail_is_delivered_with_rspamds_headers(make_server, rspamd):
    srv = milter_server(make_server, rspamd)
    marker = unique("clean")
    with srv.smtplib(timeout=30) as s:
        s.ehlo()
        s.mail("sender@remote.test")
        assert s.rcpt("u@example.test")[0] == 250
        code, text = s.data(build_message(marker, ["a clean message", "", "second paragraph"]))
        assert code == 250, (code, text)
    d = srv.wait_message("u@example.test", marker)
    assert_scanned_headers(d.raw, marker)
    # Tern's own trace fields stay first; rspamd's are added once.
    assert d.return_path == "Return-Path: <sender@remote.test>", d.fields
    for name in RSPAMD_HEADERS:
        assert d.raw.count(f"\n{name}: ".encode()) == 1, name


def test_rspamd_down_defers_at_mail_from(make_server, tmp_path, hs_cache):
    peer = RspamdPeer(tmp_path / "rspamd", hs_cache=hs_cache)
    peer.start()
    try:
        srv = milter_server(make_server, peer)
        before = unique("before")
        with srv.smtplib(timeout=30) as s:
            s.sendmail("sender@remote.test", ["u@example.test"],
                       build_message(before, ["a clean message while rspamd runs"]))
        srv.wait_message("u@example.test", before)

        peer.stop()
        marker = unique("down")
        with srv.smtplib(timeout=30) as s:
            s.ehlo()
            code, text = s.mail("sender@remote.test")
            assert code == 451, (code, text)
            assert text.decode().startswith("4.7.1 "), text
            # No transaction: no recipient, no data.
            assert s.rcpt("u@example.test")[0] == 503
        # The submission port too: its mail is scanned as well.
        with submission(srv) as s:
            code, text = s.mail("u@example.test")
            assert code == 451, (code, text)
            assert text.decode().startswith("4.7.1 "), text
        srv.assert_no_message("u@example.test", marker)

        # Back up on the same port: the next transaction reaches it again.
        peer.start()
        after = unique("after")
        with srv.smtplib(timeout=30) as s:
            s.sendmail("sender@remote.test", ["u@example.test"],
                       build_message(after, ["a clean message", "rspamd is back"]))
        d = srv.wait_message("u@example.test", after)
        assert_scanned_headers(d.raw, after)
    finally:
        peer.stop()


def test_submission_is_scanned_too(make_server, rspamd):
    srv = milter_server(make_server, rspamd)
    marker = unique("sub-gtube")
    with submission(srv) as s:
        # Outbound: to a remote recipient, refused like inbound mail.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("u@example.test", ["someone@remote.test"],
                       build_message(marker, ["Test spam:", GTUBE], sender="u@example.test",
                                     to="someone@remote.test"))
        assert_gtube_refused(refused.value, rspamd)
        # And to a local one, with rspamd's headers on the way through.
        clean = unique("sub-clean")
        s.sendmail("u@example.test", ["v@example.test"],
                   build_message(clean, ["a clean message from a user"],
                                 sender="u@example.test", to="v@example.test"))
    d = srv.wait_message("v@example.test", clean)
    assert_scanned_headers(d.raw, clean)


def test_headers_the_message_arrived_with_are_replaced_by_rspamds(make_server, rspamd):
    """rspamd deletes spam verdict fields a sender wrote (SMFIR_CHGHEADER
    with an empty value) before adding its own; a forged X-Spam: Yes does
    not send the message to Junk."""
    srv = milter_server(make_server, rspamd)
    marker = unique("forged")
    with srv.smtplib(timeout=30) as s:
        s.sendmail("sender@remote.test", ["u@example.test"],
                   build_message(marker, ["a clean message with forged verdicts"],
                                 extra_headers=["X-Spam-Status: No, score=-99.00 (forged)",
                                                "X-Spam: Yes",
                                                "X-Spamd-Result: forged"]))
    d = srv.wait_message("u@example.test", marker)
    assert b"forged)" not in d.raw and b"X-Spamd-Result: forged" not in d.raw, d.raw.decode()
    assert b"\nX-Spam: " not in d.raw, d.raw.decode()
    assert_scanned_headers(d.raw, marker)
    for name in RSPAMD_HEADERS:
        assert d.raw.count(f"\n{name}: ".encode()) == 1, name


def test_quarantine_holds_the_message_until_released(make_server, tmp_path, hs_cache):
    """With quarantine_on_reject, rspamd answers GTUBE with SMFIR_QUARANTINE
    and accept: the client gets 250, the message waits in the queue, held,
    until `tern queue release`."""
    peer = RspamdPeer(tmp_path / "rspamd", hs_cache=hs_cache,
                      proxy_options={"quarantine_on_reject": "yes"})
    peer.start()
    try:
        srv = milter_server(make_server, peer)
        marker = unique("quarantine")
        with srv.smtplib(timeout=30) as s:
            s.ehlo()
            s.mail("sender@remote.test")
            assert s.rcpt("u@example.test")[0] == 250
            code, text = s.data(build_message(marker, ["Test spam:", GTUBE]))
            assert code == 250, (code, text)
        srv.assert_no_message("u@example.test", marker)
        entries = srv.queue_json()
        assert len(entries) == 1, entries
        e = entries[0]
        assert e["held"] is True, e
        assert e["last_error"] == "quarantined: Spam message quarantined", e
        assert [r["address"] for r in e["recipients"]] == ["u@example.test"], e
        listing = srv.queue_list()
        assert e["id"] in listing and "quarantined: Spam message quarantined" in listing, listing

        srv.cli("queue", "release", e["id"])
        d = srv.wait_message("u@example.test", marker, timeout=20)
        assert GTUBE.encode() in d.raw
        wait_for(lambda: srv.queue_json() == [], 10, "the released message to leave the queue",
                 srv)
    finally:
        peer.stop()


class _Sink:
    """An SMTP server that keeps the bytes of each message as they came."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content)
        return "250 2.0.0 accepted"


def test_relayed_mail_carries_rspamds_headers_in_crlf(make_server, rspamd):
    """Submitted mail to another domain leaves with rspamd's headers, and
    their folding (bare LF from rspamd) goes out as CRLF like every other
    line (RFC 5321 2.3.8)."""
    from aiosmtpd.controller import Controller
    sink = _Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, ready_timeout=5)
    controller.start()
    try:
        srv = milter_server(make_server, rspamd,
                            route={"domain": "remote.test", "relay": f"[127.0.0.1]:{sink_port}"})
        marker = unique("relayed")
        with submission(srv) as s:
            s.sendmail("u@example.test", ["someone@remote.test"],
                       build_message(marker, ["a clean message", "for another domain"],
                                     sender="u@example.test", to="someone@remote.test"))
        wait_for(lambda: sink.messages, 20, "the relayed message at the sink", srv)
        data = sink.messages[0]
        assert b"\n" not in data.replace(b"\r\n", b""), f"bare LF on the wire: {data!r}"
        assert b"\r" not in data.replace(b"\r\n", b""), f"bare CR on the wire: {data!r}"
        assert_scanned_headers(data.replace(b"\r\n", b"\n"), marker)
    finally:
        controller.stop()
