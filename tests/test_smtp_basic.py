# SMTP happy paths against the real server: greeting, EHLO, delivery through
# smtplib, swaks, curl and msmtp, pipelining, 8BITMIME, SMTPUTF8, BDAT and
# dot-stuffing, and the simple commands (NOOP, RSET, HELP, VRFY, EXPN, QUIT).
import smtplib
import subprocess

import pytest

from conftest import (run_tool, HOSTNAME, Delivered, build_message, check_trace, to_lf,
                      unique)


@pytest.fixture(scope="module")
def srv(server):
    server.add_user("jösé@example.test")
    return server


def test_greeting_and_ehlo(srv):
    with srv.connect() as c:
        g = c.reply()
        assert g.code == 220
        assert g.lines[-1].startswith(f"220 {HOSTNAME} ESMTP"), g
        r = c.cmd("EHLO client.test")
        assert r.code == 250, r
        assert r.texts[0].split()[0] == HOSTNAME, r
        keywords = [t.upper() for t in r.texts[1:]]
        for ext in ("SIZE 52428800", "PIPELINING", "8BITMIME", "SMTPUTF8",
                    "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"):
            assert ext in keywords, f"{ext} missing from EHLO: {r}"
        q = c.cmd("QUIT")
        assert q.code == 221 and q.enhanced == "2.0.0", q
        assert c.wait_closed()


def test_helo_is_accepted(srv):
    with srv.connect() as c:
        c.greet()
        r = c.cmd("HELO old.client.test")
        assert r.code == 250, r
        assert len(r.lines) == 1, "HELO must not list extensions"
        marker = unique("helo")
        data = build_message(marker, ["plain old SMTP"])
        r = c.send_message("s@remote.test", ["u@example.test"], data)
        assert r.code == 250, r
    d = srv.wait_message("u@example.test", marker)
    check_trace(d, "s@remote.test", "u@example.test", helo="old.client.test",
                proto="SMTP")


def test_smtplib_delivery_headers_and_body(srv):
    marker = unique("smtplib")
    data = build_message(marker, ["Hello,", "", "this is " + marker, "-- ", "sig"])
    with srv.smtplib() as s:
        refused = s.sendmail("sender@remote.test", ["u@example.test"], data)
        assert refused == {}
    d = srv.wait_message("u@example.test", marker)
    check_trace(d, "sender@remote.test", "u@example.test")
    assert d.rest == to_lf(data)
    # and it parses as mail
    m = d.parsed()
    assert m["Subject"] == marker
    assert m["Delivered-To"] == "u@example.test"
    # the message is not delivered anywhere else
    assert srv.messages("v@example.test", marker) == []


def test_null_sender(srv):
    marker = unique("bounce")
    data = build_message(marker, ["a bounce"])
    with srv.smtplib() as s:
        s.ehlo()
        code, _ = s.mail("<>")
        assert code == 250
        code, _ = s.rcpt("u@example.test")
        assert code == 250
        code, resp = s.data(data)
        assert code == 250, resp
    d = srv.wait_message("u@example.test", marker)
    assert d.return_path == "Return-Path: <>"


def test_two_recipients_two_copies(srv):
    marker = unique("multi")
    data = build_message(marker, ["to two"])
    with srv.smtplib() as s:
        assert s.sendmail("s@remote.test", ["u@example.test", "v@example.test"], data) == {}
    du = srv.wait_message("u@example.test", marker)
    dv = srv.wait_message("v@example.test", marker)
    assert du.delivered_to == "Delivered-To: u@example.test"
    assert dv.delivered_to == "Delivered-To: v@example.test"
    assert du.rest == dv.rest == to_lf(data)
    # With two recipients the Received: header must not name one of them.
    assert "for <u@example.test>" not in du.received
    assert "for <v@example.test>" not in du.received


def test_swaks(srv):
    marker = unique("swaks")
    p = run_tool(["swaks", "--server", f"127.0.0.1:{srv.port}", "--to", "u@example.test",
         "--from", "swaks@remote.test", "--helo", "swaks.test",
         "--header", f"Subject: {marker}", "--body", f"body {marker}",
         "--timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out
    d = srv.wait_message("u@example.test", f"body {marker}")
    check_trace(d, "swaks@remote.test", "u@example.test", helo="swaks.test")
    assert d.parsed()["Subject"] == marker


def test_swaks_pipelining(srv):
    marker = unique("swakspipe")
    p = run_tool(["swaks", "--pipeline", "--server", f"127.0.0.1:{srv.port}",
         "--to", "u@example.test,v@example.test", "--from", "swaks@remote.test",
         "--helo", "swaks.test", "--header", f"Subject: {marker}",
         "--body", f"pipelined {marker}", "--timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out
    srv.wait_message("u@example.test", f"pipelined {marker}")
    srv.wait_message("v@example.test", f"pipelined {marker}")


def test_curl(srv, tmp_path):
    marker = unique("curl")
    data = build_message(marker, ["sent by curl", "." + marker, "end"],
                         sender="curl@remote.test")
    f = tmp_path / "mail.eml"
    f.write_bytes(data)
    p = run_tool(["curl", "-sS", "--max-time", "15", f"smtp://127.0.0.1:{srv.port}/curl.test",
         "--mail-from", "curl@remote.test", "--mail-rcpt", "u@example.test",
         "--upload-file", str(f)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode("utf-8", "replace")
    d = srv.wait_message("u@example.test", marker)
    check_trace(d, "curl@remote.test", "u@example.test", helo="curl.test")
    assert d.rest == to_lf(data)


def test_msmtp(srv, tmp_path):
    marker = unique("msmtp")
    data = build_message(marker, ["sent by msmtp"], sender="msmtp@remote.test")
    rc = tmp_path / "msmtprc"
    rc.write_text("")
    rc.chmod(0o600)
    p = run_tool(["msmtp", f"--file={rc}", "--host=127.0.0.1", f"--port={srv.port}",
         "--auth=off", "--tls=off", "--domain=msmtp.test",
         "--from=msmtp@remote.test", "u@example.test"],
        input=data.replace(b"\r\n", b"\n"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode("utf-8", "replace")
    d = srv.wait_message("u@example.test", marker)
    check_trace(d, "msmtp@remote.test", "u@example.test", helo="msmtp.test")
    assert d.parsed()["Subject"] == marker


def test_pipelined_transaction_in_one_write(srv):
    marker = unique("pipe")
    data = build_message(marker, ["pipelined"])
    with srv.connect() as c:
        c.start()
        # RFC 2920: MAIL, RCPTs and DATA in a single write.
        c.send("MAIL FROM:<p@remote.test>\r\n"
               "RCPT TO:<u@example.test>\r\n"
               "RCPT TO:<nobody-here@example.test>\r\n"
               "RCPT TO:<v@example.test>\r\n"
               "DATA\r\n")
        r = c.replies(5)
        assert [x.code for x in r] == [250, 250, 550, 250, 354], r
        assert r[2].enhanced == "5.1.1", r[2]
        c.send(data + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
    srv.wait_message("u@example.test", marker)
    srv.wait_message("v@example.test", marker)


def test_several_messages_on_one_connection(srv):
    markers = [unique("conn") for _ in range(4)]
    with srv.connect() as c:
        c.start()
        for i, m in enumerate(markers):
            c.send(f"MAIL FROM:<seq{i}@remote.test>\r\n"
                   "RCPT TO:<w@example.test>\r\nDATA\r\n")
            r = c.replies(3)
            assert [x.code for x in r] == [250, 250, 354], r
            c.send(build_message(m, [f"number {i}"]) + b".\r\n")
            r = c.reply()
            assert r.code == 250, r
            if i == 1:
                assert c.cmd("RSET").code == 250
        assert c.cmd("QUIT").code == 221
    for i, m in enumerate(markers):
        d = srv.wait_message("w@example.test", m)
        assert d.return_path == f"Return-Path: <seq{i}@remote.test>"


def test_whole_session_pipelined_with_bdat(srv):
    # With CHUNKING, a client may pipeline whole transactions (BDAT needs no 354).
    markers = [unique("bdatpipe") for _ in range(3)]
    msgs = [build_message(m, [f"chunked {m}", ".leading dot stays"]) for m in markers]
    with srv.connect() as c:
        c.start()
        blob = b""
        for m in msgs:
            blob += (b"MAIL FROM:<bp@remote.test>\r\nRCPT TO:<x@example.test>\r\n"
                     + f"BDAT {len(m)} LAST\r\n".encode() + m)
        blob += b"QUIT\r\n"
        c.send(blob)
        r = c.replies(10)
        assert [x.code for x in r] == [250, 250, 250] * 3 + [221], r
    for m, data in zip(markers, msgs):
        d = srv.wait_message("x@example.test", m)
        assert d.rest == to_lf(data)


def test_bdat_chunks(srv):
    marker = unique("bdat")
    data = build_message(marker, ["first line", ".dot line is not stuffed in BDAT",
                                  "..two dots", "x" * 900, "last line"])
    # cut at awkward places, including between CR and LF
    cr = data.index(b"\r\n", 100)
    cuts = [0, 7, cr + 1, cr + 50, len(data) - 3, len(data)]
    chunks = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<bdat@remote.test> BODY=8BITMIME").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        for ch in chunks[:-1]:
            c.send(f"BDAT {len(ch)}\r\n".encode() + ch)
            r = c.reply()
            assert r.code == 250, r
        last = chunks[-1]
        c.send(f"BDAT {len(last)} LAST\r\n".encode() + last)
        r = c.reply()
        assert r.code == 250, r
        # BDAT 0 LAST ends an otherwise complete message too
        m2 = unique("bdat0")
        d2 = build_message(m2, ["zero-length last chunk"])
        assert c.cmd("MAIL FROM:<bdat@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        c.send(f"BDAT {len(d2)}\r\n".encode() + d2)
        assert c.reply().code == 250
        r = c.cmd("BDAT 0 LAST")
        assert r.code == 250, r
    d = srv.wait_message("u@example.test", marker)
    assert d.rest == to_lf(data)
    check_trace(d, "bdat@remote.test", "u@example.test")
    assert srv.wait_message("u@example.test", m2).rest == to_lf(d2)


def test_data_after_bdat_is_refused(srv):
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        c.send(b"BDAT 5\r\nabcde")
        assert c.reply().code == 250
        r = c.cmd("DATA")
        assert r.code == 503, r


def test_8bitmime_stored_byte_for_byte(srv):
    marker = unique("8bit")
    body = (b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x82\xac\r\n"
            b"latin-1 bytes: \xe9\xe8\xff\xa0\r\n")
    data = (f"From: <s@remote.test>\r\nTo: <u@example.test>\r\nSubject: {marker}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body
    with srv.smtplib() as s:
        assert s.sendmail("s@remote.test", ["u@example.test"], data,
                          mail_options=["BODY=8BITMIME"]) == {}
    d = srv.wait_message("u@example.test", marker)
    assert d.rest == to_lf(data)


def test_smtputf8_address_and_content(srv):
    marker = unique("utf8")
    data = (f"From: andré <andré@remote.test>\r\nTo: jösé@example.test\r\n"
            f"Subject: {marker} ünïcödé\r\n\r\nnaïve café ☕ {marker}\r\n").encode("utf-8")
    with srv.smtplib() as s:
        refused = s.sendmail("andré@remote.test", ["jösé@example.test"], data,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    d = srv.wait_message("jösé@example.test", marker)
    assert d.return_path == "Return-Path: <andré@remote.test>"
    assert d.delivered_to == "Delivered-To: jösé@example.test"
    assert d.rest == to_lf(data)
    assert srv.maildir("jösé@example.test").is_dir()


def test_utf8_address_without_smtputf8_is_refused(srv):
    with srv.connect() as c:
        c.start()
        r = c.cmd("MAIL FROM:<andré@remote.test>")
        assert 500 <= r.code < 600, r
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = c.cmd("RCPT TO:<jösé@example.test>")
        assert 500 <= r.code < 600, r


def test_dot_stuffing_raw(srv):
    marker = unique("dots")
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<d@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nbefore\r\n..x\r\n...\r\n..\r\n. \r\nafter\r\n.\r\n")
        r = c.reply()
        assert r.code == 250, r
    d = srv.wait_message("u@example.test", marker)
    assert d.rest == f"Subject: {marker}\n\nbefore\n.x\n..\n.\n \nafter\n".encode()


def test_dot_line_via_smtplib(srv):
    marker = unique("dotline")
    data = build_message(marker, ["before", ".", "after the lone dot", ".hidden"])
    with srv.smtplib() as s:
        assert s.sendmail("s@remote.test", ["u@example.test"], data) == {}
    d = srv.wait_message("u@example.test", marker)
    assert d.rest == to_lf(data)
    assert b"\n.\nafter the lone dot\n.hidden\n" in d.rest


def test_empty_body_message(srv):
    marker = unique("empty")
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<e@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n.\r\n")
        assert c.reply().code == 250
    d = srv.wait_message("u@example.test", marker)
    assert d.rest == f"Subject: {marker}\n".encode()


def test_simple_commands(srv):
    with srv.connect() as c:
        c.start()
        r = c.cmd("NOOP")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        r = c.cmd("RSET")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        r = c.cmd("HELP")
        assert r.code == 214, r
        r = c.cmd("VRFY u@example.test")
        assert r.code == 252, r
        r = c.cmd("EXPN list@example.test")
        assert r.code == 502, r
        # RSET really resets: RCPT after RSET needs a new MAIL
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RSET").code == 250
        r = c.cmd("RCPT TO:<u@example.test>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r
        # lower-case verbs are fine (RFC 5321 2.4)
        assert c.cmd("noop").code == 250
        r = c.cmd("QUIT")
        assert (r.code, r.enhanced) == (221, "2.0.0"), r
        assert c.wait_closed()


def test_smtplib_noop_rset_quit(srv):
    s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=10)
    assert s.ehlo()[0] == 250
    assert s.has_extn("pipelining") and s.has_extn("chunking")
    assert s.noop()[0] == 250
    assert s.rset()[0] == 250
    code, _ = s.verify("u@example.test")
    assert code == 252
    assert s.quit()[0] == 221


def test_dsn_parameters_accepted(srv):
    marker = unique("dsn")
    with srv.connect() as c:
        c.start()
        r = c.cmd("MAIL FROM:<dsn@remote.test> RET=HDRS ENVID=QQ314159")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<u@example.test> NOTIFY=SUCCESS,FAILURE "
                  "ORCPT=rfc822;u@example.test")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<v@example.test> NOTIFY=NEVER")
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(build_message(marker, ["with DSN parameters"]) + b".\r\n")
        assert c.reply().code == 250
    srv.wait_message("u@example.test", marker)
    srv.wait_message("v@example.test", marker)


def test_ehlo_resets_transaction(srv):
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        c.ehlo("again.test")
        r = c.cmd("DATA")
        assert r.code == 503, r
        # and a new MAIL is allowed without RSET
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250


def test_maildir_file_names(srv):
    marker = unique("names")
    with srv.connect() as c:
        c.start()
        for i in range(5):
            assert c.send_message("n@remote.test", ["x@example.test"],
                                  build_message(f"{marker}-{i}", ["n"])).code == 250
    srv.wait_messages("x@example.test", marker, count=5)
    names = [p.name for p in srv.message_files("x@example.test")]
    assert len(names) == len(set(names))
    for p in srv.message_files("x@example.test"):
        assert p.parent.name == "new", p
        assert not p.name.startswith("."), p
        assert "/" not in p.name
        # Maildir++ ",S=<size>" must be the real size when present
        import re
        m = re.search(r",S=(\d+)", p.name)
        if m:
            assert int(m.group(1)) == p.stat().st_size, p


def test_byte_at_a_time(srv):
    # Every boundary of the line and body readers: one octet per segment.
    import socket as _s
    marker = unique("bytewise")
    data = build_message(marker, ["slow", "..stuffed", "end"])
    script = (b"EHLO slow.test\r\nMAIL FROM:<slow@remote.test>\r\n"
              b"RCPT TO:<u@example.test>\r\nDATA\r\n")
    with srv.connect() as c:
        c.greet()
        c.sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
        for i in range(len(script)):
            c.send(script[i:i + 1])
        r = c.replies(4)
        assert [x.code for x in r] == [250, 250, 250, 354], r
        body = data + b".\r\n"
        for i in range(len(body)):
            c.send(body[i:i + 1])
        r = c.reply()
        assert r.code == 250, r
    d = srv.wait_message("u@example.test", marker)
    assert d.rest == to_lf(data).replace(b"\n..stuffed\n", b"\n.stuffed\n")


def test_command_line_limit_boundary(srv):
    # RFC 5321 4.5.3.1.4: 512 octets including CRLF must be accepted.
    with srv.connect() as c:
        c.start()
        line = "NOOP " + "a" * (510 - 5)
        assert len(line) + 2 == 512
        assert c.cmd(line).code == 250


def test_quoted_local_part(srv):
    marker = unique("quoted")
    with srv.connect() as c:
        c.start()
        # The sender is remote: unauthenticated clients may not claim a
        # local domain in MAIL FROM (issue 4, sender identity).
        r = c.send_message('"s"@remote.test', ['"u"@example.test'],
                           build_message(marker, ["quoted"]))
        assert r.code == 250, r
    srv.wait_message("u@example.test", marker)


def test_large_message(srv):
    marker = unique("large")
    line = "0123456789abcdefghijklmnopqrstuvwxyz" * 2
    data = build_message(marker, [f"{i:07d} {line}" for i in range(60000)])  # ~5 MB
    assert len(data) > 4_500_000
    with srv.smtplib(timeout=60) as s:
        assert s.sendmail("big@remote.test", ["v@example.test"], data) == {}
    d = srv.wait_message("v@example.test", marker, timeout=20)
    assert d.rest == to_lf(data)


def test_client_vanishes_mid_data(srv):
    marker = unique("vanish")
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nhalf a mess")
    srv.assert_no_message("u@example.test", marker, settle=1.0)
    srv.check_alive()
    with srv.connect() as c:
        assert c.start().code == 250


def test_smtputf8_received_keyword(srv):
    marker = unique("utf8proto")
    data = f"Subject: {marker}\r\n\r\nü\r\n".encode()
    with srv.smtplib() as s:
        assert s.sendmail("a@remote.test", ["jösé@example.test"], data,
                          mail_options=["SMTPUTF8"]) == {}
    d = srv.wait_message("jösé@example.test", marker)
    # RFC 6531 3.7.3
    assert " with UTF8SMTP id " in d.received, d.received
