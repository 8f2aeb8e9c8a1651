# What the server must refuse, with exact reply codes and enhanced status
# codes: command sequence errors, syntax errors, unknown users, relaying,
# bare LF, SMTP smuggling, mail loops, over-long lines, too many errors.
import time

import pytest

from conftest import build_message, unique


def expect(reply, code, enhanced=None):
    assert reply.code == code, reply
    if enhanced is not None:
        if enhanced.endswith(".x"):
            assert reply.enhanced.startswith(enhanced[:-1]), reply
        else:
            assert reply.enhanced == enhanced, reply


def test_rcpt_before_mail(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("RCPT TO:<u@example.test>"), 503, "5.5.1")


def test_data_without_mail_or_rcpt(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        r = c.cmd("DATA")
        expect(r, 503)
        assert r.enhanced.startswith("5.5."), r
        # still usable
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: late\r\n\r\nok\r\n.\r\n")
        expect(c.reply(), 250)


def test_bdat_without_rcpt(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        c.send(b"BDAT 4 LAST\r\nabcd")
        r = c.reply()
        expect(r, 503)
        # the 4 octets were consumed, not parsed as a command
        expect(c.cmd("NOOP"), 250)


def test_second_mail_without_rset(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        expect(c.cmd("MAIL FROM:<b@remote.test>"), 503, "5.5.1")


def test_mail_before_ehlo(server):
    with server.connect() as c:
        c.greet()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")


@pytest.mark.parametrize("line", [
    "MAIL FROM:a@remote.test",
    "MAIL FROM:<a@remote.test",
    "MAIL FROM:<a b@remote.test>",
    "MAIL FROM:<@remote.test>",
    "MAIL FROM:<a@>",
    "MAIL TO:<a@remote.test>",
    "MAIL",
])
def test_mail_syntax_errors(server, line):
    with server.connect() as c:
        c.start()
        r = c.cmd(line)
        assert r.code == 501, r
        # 5.5.x for command syntax; RFC 3463 5.1.7 for a bad sender address
        assert r.enhanced.startswith("5.5.") or r.enhanced == "5.1.7", r
        # the session survives and a proper MAIL works
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)


@pytest.mark.parametrize("line", [
    "RCPT TO:u@example.test",
    "RCPT TO:<u@example.test",
    "RCPT TO:<>",
    "RCPT FROM:<u@example.test>",
])
def test_rcpt_syntax_errors(server, line):
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        r = c.cmd(line)
        assert r.code == 501, r
        # 5.5.x for command syntax; RFC 3463 5.1.3 for a bad recipient address
        assert r.enhanced.startswith("5.5.") or r.enhanced == "5.1.3", r
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)


def test_unknown_mail_parameter(server):
    with server.connect() as c:
        c.start()
        r = c.cmd("MAIL FROM:<a@remote.test> FROBNICATE=yes")
        # RFC 5321 4.1.1.11: unrecognised parameters get 555
        assert r.code in (555, 501), r
        assert r.enhanced == "5.5.4", r


def test_ehlo_without_domain(server):
    with server.connect() as c:
        c.greet()
        r = c.cmd("EHLO")
        assert r.code == 501, r
        assert r.enhanced.startswith("5.5."), r


def test_unknown_verb(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("FROBNICATE now"), 500, "5.5.1")
        expect(c.cmd("NOOP"), 250)


def test_unknown_local_user(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        expect(c.cmd("RCPT TO:<nosuchuser@example.test>"), 550, "5.1.1")
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)


def test_relay_denied(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        expect(c.cmd("RCPT TO:<someone@elsewhere.test>"), 554, "5.7.1")
        # a local domain as a subdomain trick is still remote
        expect(c.cmd("RCPT TO:<someone@example.test.evil.test>"), 554, "5.7.1")
        # source routes are ignored, not followed (RFC 5321 4.1.1.3)
        r = c.cmd("RCPT TO:<@example.test:someone@elsewhere.test>")
        assert r.code >= 500, r
        # nothing accepted, so DATA is refused
        expect(c.cmd("DATA"), 503)


def test_percent_hack_is_not_relayed(server):
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        r = c.cmd("RCPT TO:<someone%elsewhere.test@example.test>")
        assert r.code >= 500, r


def test_bare_lf_in_data(server):
    marker = unique("barelf")
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(f"Subject: {marker}\r\n\r\nline one\nline two\r\n.\r\n")
        expect(c.reply(), 554, "5.6.0")
    server.assert_no_message("u@example.test", marker)


def test_smtp_smuggling(server):
    """A body with a non-CRLF '.' line must not end the data (CVE-2023-51764
    and friends): no second message, to any recipient."""
    variants = ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r.\r"]
    markers = []
    for v in variants:
        outer = unique("outer")
        smuggled = unique("smuggled")
        markers.append((outer, smuggled))
        with server.connect() as c:
            c.start()
            expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
            expect(c.cmd("RCPT TO:<u@example.test>"), 250)
            expect(c.cmd("DATA"), 354)
            c.send(f"Subject: {outer}\r\n\r\nhello{v}"
                   "MAIL FROM:<x@evil.test>\r\n"
                   "RCPT TO:<victim@example.test>\r\n"
                   "DATA\r\n"
                   f"Subject: {smuggled}\r\n\r\nevil\r\n.\r\n")
            r = c.reply()
            assert r.code in (250, 554), (repr(v), r)
            more = c.pending_replies(0.5)
            assert more == [], f"variant {v!r}: extra replies {more}"
            # a NOOP answers exactly once: the server is in command state
            expect(c.cmd("NOOP"), 250)
    time.sleep(1.5)
    for outer, smuggled in markers:
        assert server.messages("victim@example.test", smuggled) == [], smuggled
        got = server.messages("u@example.test", outer)
        assert len(got) <= 1
        for raw in server.messages("u@example.test", smuggled):
            # only inside the outer message, never as a message of its own
            assert outer.encode() in raw
    assert server.messages("victim@example.test") == []


def test_too_many_received_headers(server):
    marker = unique("loop")
    hops = [f"Received: from hop{i}.test by hop{i+1}.test; Mon, 1 Jan 2024 00:00:00 +0000"
            for i in range(101)]
    data = build_message(marker, ["looping"], extra_headers=hops)
    with server.connect() as c:
        c.start()
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(data + b".\r\n")
        expect(c.reply(), 554, "5.4.6")
        # and with BDAT
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)
        c.send(f"BDAT {len(data)} LAST\r\n".encode() + data)
        expect(c.reply(), 554, "5.4.6")
    server.assert_no_message("u@example.test", marker)


def test_some_received_headers_are_fine(server):
    marker = unique("hops")
    hops = [f"Received: from hop{i}.test by hop{i+1}.test; Mon, 1 Jan 2024 00:00:00 +0000"
            for i in range(50)]
    data = build_message(marker, ["fifty hops"], extra_headers=hops)
    with server.connect() as c:
        c.start()
        expect(c.send_message("a@remote.test", ["u@example.test"], data), 250)
    server.wait_message("u@example.test", marker)


def test_long_command_line(server):
    with server.connect() as c:
        c.start()
        r = c.cmd("MAIL FROM:<" + "a" * 2000 + "@remote.test>")
        assert r.code == 500, r
        assert r.enhanced.startswith("5.5."), r
        # exactly one reply, and the session is still usable
        assert c.pending_replies(0.5) == []
        expect(c.cmd("NOOP"), 250)
        expect(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        r = c.cmd("NOOP " + "z" * 5000)
        assert r.code == 500, r
        expect(c.cmd("RCPT TO:<u@example.test>"), 250)


def test_too_many_errors(make_server):
    srv = make_server(users=["u@example.test"], smtp={"max_errors": 3})
    with srv.connect() as c:
        c.start()
        codes = []
        for _ in range(6):
            try:
                r = c.cmd("BOGUS")
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            codes.append(r.code)
            if r.code == 421:
                break
        assert 421 in codes, codes
        assert codes.index(421) <= 3, codes
        assert codes[:2] == [500, 500], codes
        assert c.wait_closed()


@pytest.mark.parametrize("line", [
    "MAIL FROM:<a@remote.test> RET=EVERYTHING",
    "MAIL FROM:<a@remote.test> RET=HDRS RET=FULL",
    "MAIL FROM:<a@remote.test> BODY=9BIT",
    "MAIL FROM:<a@remote.test> SIZE=abc",
])
def test_bad_mail_parameters(server, line):
    with server.connect() as c:
        c.start()
        r = c.cmd(line)
        assert r.code in (501, 555), r
        assert r.enhanced.startswith("5.5."), r


@pytest.mark.parametrize("param", ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES",
                                   "ORCPT=no-type-here"])
def test_bad_rcpt_parameters(server, param):
    with server.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = c.cmd(f"RCPT TO:<u@example.test> {param}")
        assert r.code in (501, 555), r
        assert r.enhanced.startswith("5.5."), r


def test_data_line_too_long(server):
    marker = unique("longline")
    with server.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\n".encode() + b"q" * 1200 + b"\r\n.\r\n")
        r = c.reply()
        assert 500 <= r.code < 600, r
        # the session goes on
        expect(c.cmd("NOOP"), 250)
    server.assert_no_message("u@example.test", marker, settle=1.0)


def test_utf8_remote_domain_is_not_relayed(server):
    with server.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test> SMTPUTF8").code == 250
        expect(c.cmd("RCPT TO:<x@exämple.test>"), 554, "5.7.1")
