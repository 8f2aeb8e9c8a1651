# Resource limits: SIZE (declared and actual), recipients per message,
# connections per IP, the idle command timeout.
import smtplib
import time

from conftest import build_message, unique


def test_declared_size_too_big(server):
    with server.connect() as c:
        c.start()
        r = c.cmd("MAIL FROM:<a@remote.test> SIZE=999999999999")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        r = c.cmd("MAIL FROM:<a@remote.test> SIZE=52428801")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        r = c.cmd("MAIL FROM:<a@remote.test> SIZE=99999999999999999999999999")
        assert r.code in (552, 501, 555), r
        r = c.cmd("MAIL FROM:<a@remote.test> SIZE=1000")
        assert r.code == 250, r


def test_actual_size_too_big(make_server):
    srv = make_server(users=["u@example.test"], smtp={"max_message_size": 10000})
    big = unique("big")
    small = unique("small")
    big_data = build_message(big, ["y" * 70] * 300)  # ~21 KB
    with srv.connect() as c:
        r = c.start()
        assert "SIZE 10000" in [t.upper() for t in r.texts[1:]], r
        # declared over the configured limit
        r = c.cmd(f"MAIL FROM:<a@remote.test> SIZE={len(big_data)}")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        # not declared, sent anyway with DATA
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(big_data + b".\r\n")
        r = c.reply()
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        # not declared, sent with BDAT
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        half = len(big_data) // 2
        c.send(f"BDAT {half}\r\n".encode() + big_data[:half])
        r1 = c.reply()
        if r1.code == 250:
            rest = big_data[half:]
            c.send(f"BDAT {len(rest)} LAST\r\n".encode() + rest)
            r = c.reply()
        else:
            r = r1
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        # the connection is still good for a message that fits
        assert c.cmd("RSET").code == 250
        r = c.send_message("a@remote.test", ["u@example.test"],
                           build_message(small, ["fits"]))
        assert r.code == 250, r
    srv.wait_message("u@example.test", small)
    srv.assert_no_message("u@example.test", big, settle=1.0)


def test_too_many_recipients(make_server):
    users = ["u@example.test", "v@example.test", "w@example.test", "x@example.test"]
    srv = make_server(users=users, smtp={"max_recipients": 3})
    marker = unique("rcpts")
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        for u in users[:3]:
            r = c.cmd(f"RCPT TO:<{u}>")
            assert r.code == 250, r
        r = c.cmd(f"RCPT TO:<{users[3]}>")
        assert (r.code, r.enhanced) == (452, "4.5.3"), r
        assert c.cmd("DATA").code == 354
        c.send(build_message(marker, ["three of four"]) + b".\r\n")
        assert c.reply().code == 250
    for u in users[:3]:
        srv.wait_message(u, marker)
    srv.assert_no_message(users[3], marker, settle=1.0)


def test_connections_per_ip(make_server):
    srv = make_server(users=["u@example.test"], smtp={"max_connections_per_ip": 2})
    time.sleep(0.3)  # let the readiness probe's session end
    c1 = srv.connect()
    c2 = srv.connect()
    try:
        assert c1.reply().code == 220
        assert c2.reply().code == 220
        with srv.connect() as c3:
            r = c3.reply()
            assert (r.code, r.enhanced) == (421, "4.7.0"), r
            assert c3.wait_closed()
        # the first two still work
        assert c1.cmd("EHLO one.test").code == 250
        assert c2.cmd("EHLO two.test").code == 250
        # a slot frees up when a client leaves
        assert c1.cmd("QUIT").code == 221
        assert c1.wait_closed()
    finally:
        c1.close()
    time.sleep(0.3)
    with srv.connect() as c4:
        r = c4.reply()
        assert r.code == 220, r
    c2.close()


def test_idle_client_times_out(make_server):
    srv = make_server(users=["u@example.test"], smtp={"command_timeout": 2,
                                                       "data_block_timeout": 3})
    with srv.connect(timeout=15) as c:
        t0 = time.monotonic()
        c.greet()
        r = c.reply()  # we send nothing at all
        elapsed = time.monotonic() - t0
        assert (r.code, r.enhanced) == (421, "4.4.2"), r
        assert 1.5 <= elapsed <= 5.0, elapsed
        assert c.wait_closed(3)
    # activity resets the timer: a NOOP every second keeps the session alive
    with srv.connect(timeout=15) as c:
        c.start()
        for _ in range(4):
            time.sleep(1.0)
            assert c.cmd("NOOP").code == 250
    # a timeout in the middle of a transaction delivers nothing
    marker = unique("stalled")
    with srv.connect(timeout=15) as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\npartial")
        assert c.wait_closed(15)
    srv.assert_no_message("u@example.test", marker, settle=0.5)


def test_smtplib_declares_size(make_server):
    # smtplib sends SIZE= itself; a too-big message is refused at MAIL.
    srv = make_server(users=["u@example.test"], smtp={"max_message_size": 2000})
    data = build_message(unique("sz"), ["z" * 70] * 60)
    with srv.smtplib() as s:
        try:
            s.sendmail("a@remote.test", ["u@example.test"], data)
        except smtplib.SMTPSenderRefused as e:
            assert e.smtp_code == 552
            assert e.smtp_error.startswith(b"5.3.4"), e.smtp_error
        else:
            raise AssertionError("oversized message accepted")


def test_max_connections_total(make_server):
    srv = make_server(users=["u@example.test"], smtp={"max_connections": 3})
    time.sleep(0.3)
    conns = [srv.connect() for _ in range(3)]
    try:
        for c in conns:
            assert c.reply().code == 220
        with srv.connect() as extra:
            r = extra.reply()
            assert r.code == 421, r
            assert extra.wait_closed()
    finally:
        for c in conns:
            c.close()


def test_data_block_timeout(make_server):
    srv = make_server(users=["u@example.test"],
                      smtp={"command_timeout": 30, "data_block_timeout": 2})
    marker = unique("datato")
    with srv.connect(timeout=15) as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        t0 = time.monotonic()
        c.send(f"Subject: {marker}\r\n\r\nhalf a messa")
        r = c.reply()
        elapsed = time.monotonic() - t0
        assert (r.code, r.enhanced) == (421, "4.4.2"), r
        assert 1.5 <= elapsed <= 6, elapsed
        assert c.wait_closed(3)
    srv.assert_no_message("u@example.test", marker, settle=0.5)


def test_fifty_concurrent_sessions(server):
    import threading
    marker = unique("conc")
    results = []

    def one(i):
        try:
            with server.connect(timeout=20) as c:
                c.start(f"c{i}.test")
                time.sleep(0.5)  # hold the connection so they overlap
                r = c.send_message(f"c{i}@remote.test", ["w@example.test"],
                                   build_message(f"{marker}-{i:02d}", ["hi"]))
                results.append(r.code)
        except Exception as e:  # reported below
            results.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(45)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(250) == 45, results
    server.wait_messages("w@example.test", marker, count=45)
