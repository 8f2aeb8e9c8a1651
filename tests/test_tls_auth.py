# TLS and AUTH against the real server with real clients: STARTTLS on the
# SMTP and submission ports, implicit TLS on submissions, SASL PLAIN, LOGIN
# and SCRAM-SHA-256, the STARTTLS injection defence, brute-force throttling,
# SNI and RSA/ECDSA certificates, and certificate reload on SIGHUP.
import base64
import os
import pathlib
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from conftest import (run_tool, PASSWORD, TernServer, build_message, free_port, shutdown,
                      unique, _LIVE)
from scram_client import ScramSha256Client

USER = "u@example.test"
TLS_AUTH = {"delay_step_ms": 20, "max_delay_ms": 200}


def client_context():
    """TLS for test clients: the dev certificate is self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def with_submission(kwargs, tls=None, auth=None):
    """TernServer arguments adding submission and submissions listeners."""
    sub, subs = free_port(), free_port()
    kwargs = dict(kwargs)
    kwargs["extra_listen"] = list(kwargs.get("extra_listen", ())) + [
        (f"127.0.0.1:{sub}", "submission"), (f"127.0.0.1:{subs}", "submissions")]
    sections = dict(kwargs.get("sections", {}))
    sections["tls"] = tls or {"self_signed": True}
    sections["auth"] = dict(TLS_AUTH, **(auth or {}))
    kwargs["sections"] = sections
    return kwargs, sub, subs


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    kwargs, sub, subs = with_submission({})
    s = TernServer(tmp_path_factory.mktemp("tls"), **kwargs)
    s.sub_port, s.subs_port = sub, subs
    _LIVE.append(s)
    try:
        for u in (USER, "v@example.test"):
            s.add_user(u)
        s.start()
    except BaseException:
        shutdown(s)
        raise
    yield s
    shutdown(s)


@pytest.fixture
def tls_server(make_server):
    """Factory for servers with their own TLS/AUTH settings."""
    def factory(tls=None, auth=None, **kwargs):
        kwargs, sub, subs = with_submission(kwargs, tls, auth)
        s = make_server(**kwargs)
        s.sub_port, s.subs_port = sub, subs
        return s
    return factory


def starttls_login(port, user=USER, password=PASSWORD, source=None):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=15,
                     source_address=source)
    s.starttls(context=client_context())
    s.login(user, password)
    return s


# ---------------------------------------------------------------- offers

def test_port25_offers_starttls_and_auth_only_inside_tls(srv):
    with srv.connect() as c:
        r = c.start()
        kw = [t.upper() for t in r.texts[1:]]
        assert "STARTTLS" in kw, r
        assert not any(k.startswith("AUTH") for k in kw), r
        r = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0u@example.test\0x").decode())
        assert (r.code, r.enhanced) == (538, "5.7.11"), r
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test") as s:
        s.starttls(context=client_context())
        s.ehlo()
        assert "starttls" not in s.esmtp_features
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]


def test_submission_requires_auth_before_mail(srv):
    with srv.connect(port=srv.sub_port) as c:
        c.start()
        r = c.cmd("MAIL FROM:<u@example.test>")
        assert (r.code, r.enhanced) == (530, "5.7.0"), r
        r = c.cmd("AUTH LOGIN")
        assert (r.code, r.enhanced) == (538, "5.7.11"), r
    with smtplib.SMTP("127.0.0.1", srv.sub_port, local_hostname="client.test") as s:
        s.starttls(context=client_context())
        s.ehlo()
        code, msg = s.mail("u@example.test")
        assert (code, msg[:5]) == (530, b"5.7.0"), msg


def test_smtplib_starttls_login_send(srv):
    m = unique("sub")
    with starttls_login(srv.sub_port) as s:
        assert s.sendmail(USER, ["v@example.test"],
                          build_message(m, ["hi"], sender=USER, to="v@example.test")) == {}
    d = srv.wait_message("v@example.test", m)
    assert " with ESMTPSA id " in d.received, d.received
    assert "(using TLSv1.3 with cipher TLS_" in d.received, d.received


def test_smtp_ssl_implicit_tls(srv):
    m = unique("ssl")
    with smtplib.SMTP_SSL("127.0.0.1", srv.subs_port, local_hostname="client.test",
                          context=client_context(), timeout=15) as s:
        s.ehlo()
        assert "starttls" not in s.esmtp_features
        s.login(USER, PASSWORD)
        assert s.sendmail(USER, ["v@example.test"],
                          build_message(m, ["x"], sender=USER, to="v@example.test")) == {}
    d = srv.wait_message("v@example.test", m)
    assert " with ESMTPSA id " in d.received, d.received


def test_port25_auth_after_starttls_may_relay(srv):
    m = unique("relay25")
    with starttls_login(srv.port) as s:
        assert s.sendmail(USER, ["far@remote.test"],
                          build_message(m, ["x"], sender=USER, to="far@remote.test")) == {}
    deadline = time.monotonic() + 10
    while "far@remote.test" not in srv.queue_list():
        assert time.monotonic() < deadline, srv.queue_list()
        time.sleep(0.1)


def test_port25_plain_starttls_without_auth(srv):
    m = unique("esmtps")
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test") as s:
        s.starttls(context=client_context())
        assert s.sendmail("a@remote.test", [USER], build_message(m, ["x"])) == {}
    d = srv.wait_message(USER, m)
    assert " with ESMTPS id " in d.received, d.received


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_starttls_auth(srv, mech):
    m = unique("swaks" + mech)
    p = run_tool(["swaks", "--server", f"127.0.0.1:{srv.sub_port}", "--tls",
         "--auth", mech, "--auth-user", USER, "--auth-password", PASSWORD,
         "--from", USER, "--to", "v@example.test", "--header", f"Subject: {m}",
         "--helo", "client.test"],
        capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait_message("v@example.test", m)
    # The password is not in the server's log, the user name and outcome are.
    log = srv.log_text()
    assert PASSWORD not in log
    assert f"mechanism={mech} user={USER}" in log


def test_swaks_implicit_tls(srv):
    m = unique("tlsc")
    p = run_tool(["swaks", "--server", f"127.0.0.1:{srv.subs_port}", "--tlsc",
         "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
         "--from", USER, "--to", "v@example.test", "--header", f"Subject: {m}"],
        capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait_message("v@example.test", m)


def test_msmtp_thunderbird_style(srv, tmp_path):
    """Server 127.0.0.1, submission port, STARTTLS, normal password."""
    m = unique("msmtp")
    conf = tmp_path / "msmtprc"
    conf.write_text(
        "account default\n"
        "host 127.0.0.1\n"
        f"port {srv.sub_port}\n"
        "tls on\ntls_starttls on\ntls_certcheck off\n"
        "auth on\n"
        f"user {USER}\npassword {PASSWORD}\n"
        f"from {USER}\ndomain client.test\n")
    conf.chmod(0o600)
    p = run_tool(["msmtp", "-C", str(conf), "v@example.test"],
                       input=build_message(m, ["via msmtp"], sender=USER,
                                           to="v@example.test"),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait_message("v@example.test", m)


def test_curl_ssl_reqd(srv):
    m = unique("curl")
    p = run_tool(["curl", "-sS", "--ssl-reqd", "-k", f"smtp://127.0.0.1:{srv.sub_port}/client.test",
         "--user", f"{USER}:{PASSWORD}", "--mail-from", USER,
         "--mail-rcpt", "v@example.test", "--upload-file", "-"],
        input=build_message(m, ["via curl"], sender=USER, to="v@example.test"),
        capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait_message("v@example.test", m)


def test_openssl_s_client_starttls(srv):
    p = run_tool(["openssl", "s_client", "-starttls", "smtp", "-connect",
         f"127.0.0.1:{srv.port}", "-quiet"],
        input=b"EHLO client.test\r\nQUIT\r\n", capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert "250-AUTH PLAIN LOGIN SCRAM-SHA-256" in out, out + p.stderr.decode()
    assert "221 2.0.0" in out, out


def test_tls_1_1_is_refused(srv):
    ctx = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", srv.subs_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw) as t:
                t.recv(100)
    ctx = client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", srv.subs_port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as t:
            assert t.version() == "TLSv1.2"
            assert t.recv(100).startswith(b"220 ")


# ---------------------------------------------------------------- injection

def test_starttls_injection_is_not_executed(srv):
    """CVE-2011-0411: RSET sent with STARTTLS must not be answered in TLS."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"220 ")
        raw.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nRSET\r\n")  # one write, one packet
        assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        tls = client_context().wrap_socket(raw)
        tls.settimeout(1.5)
        with pytest.raises(socket.timeout):
            data = tls.recv(4096)
            # Anything arriving here is the injected RSET being answered.
            raise AssertionError(f"reply inside TLS to injected command: {data!r}")
        tls.settimeout(10)
        # RFC 3207 4.2: the session starts over and needs a new EHLO.
        tls.sendall(b"MAIL FROM:<a@remote.test>\r\n")
        assert tls.recv(4096).startswith(b"503 5.5.1"), "state survived STARTTLS"
        tls.sendall(b"EHLO client.test\r\n")
        reply = b""
        while b"\r\n250 " not in reply:
            reply += tls.recv(4096)
        assert b"STARTTLS" not in reply
        tls.sendall(b"QUIT\r\n")


def test_handshake_garbage_closes(srv):
    with srv.connect() as c:
        c.start()
        r = c.cmd("STARTTLS")
        assert r.code == 220, r
        c.send(b"this is not a TLS record\r\n" * 20)
        assert c.wait_closed(10)
    srv.check_alive()


# ---------------------------------------------------------------- SASL

def scram_login(sock_reply, send, user, password):
    client = ScramSha256Client(user, password)
    r = send("AUTH SCRAM-SHA-256 " + base64.b64encode(client.client_first()).decode())
    assert r.code == 334, r
    server_first = base64.b64decode(r.text)
    r = send(base64.b64encode(client.client_final(server_first)).decode())
    if r.code != 334:
        return r
    client.verify_server_final(base64.b64decode(r.text))
    return send("")


def test_scram_sha256_independent_client(srv):
    with socket.create_connection(("127.0.0.1", srv.subs_port), timeout=10) as raw:
        tls = client_context().wrap_socket(raw)
        f = tls.makefile("rb")

        class R:
            def __init__(self):
                lines = []
                while True:
                    line = f.readline().decode().rstrip("\r\n")
                    lines.append(line)
                    if line[3:4] != "-":
                        break
                self.code = int(lines[-1][:3])
                self.text = lines[-1][4:]
                self.lines = lines

            def __repr__(self):
                return repr(self.lines)

        def send(line):
            tls.sendall(line.encode() + b"\r\n")
            return R()

        assert R().code == 220
        assert send("EHLO client.test").code == 250
        r = scram_login(None, send, USER, "wrong password")
        assert (r.code, r.text[:5]) == (535, "5.7.8"), r
        r = scram_login(None, send, USER, PASSWORD)
        assert (r.code, r.text[:5]) == (235, "2.7.0"), r
        m = unique("scram")
        assert send("MAIL FROM:<u@example.test>").code == 250
        assert send("RCPT TO:<v@example.test>").code == 250
        assert send("DATA").code == 354
        tls.sendall(build_message(m, ["scram"], sender=USER, to="v@example.test") + b".\r\n")
        assert R().code == 250
        send("QUIT")
    srv.wait_message("v@example.test", m)


def test_auth_cancel_and_wrong_password(srv):
    with smtplib.SMTP_SSL("127.0.0.1", srv.subs_port, local_hostname="client.test",
                          context=client_context()) as s:
        s.ehlo()
        code, msg = s.docmd("AUTH", "LOGIN")
        assert code == 334 and base64.b64decode(msg) == b"Username:", msg
        code, msg = s.docmd("*")
        assert (code, msg[:5]) == (501, b"5.0.0"), msg
        code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0u@example.test\0not the password").decode())
        assert (code, msg[:5]) == (535, b"5.7.8"), msg
        code, msg = s.docmd("AUTH", "NTLM")
        assert (code, msg[:5]) == (504, b"5.5.4"), msg
        code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0u@example.test\0" + PASSWORD.encode()).decode())
        assert (code, msg[:5]) == (235, b"2.7.0"), msg
        code, msg = s.docmd("AUTH", "PLAIN =")
        assert (code, msg[:5]) == (503, b"5.5.1"), msg
    assert "not the password" not in srv.log_text()


def test_plaintext_auth_when_allowed_on_loopback(tls_server):
    port = free_port()
    s = tls_server(users=[USER], extra_listen=[
        (f"127.0.0.1:{port}", "submission", {"allow_plaintext_auth": True})])
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test") as c:
        c.ehlo()
        assert "auth" in c.esmtp_features
        c.login(USER, PASSWORD)
        assert c.mail(USER)[0] == 250
    # The other listeners still refuse it.
    with smtplib.SMTP("127.0.0.1", s.sub_port, local_hostname="client.test") as c:
        c.ehlo()
        assert "auth" not in c.esmtp_features


# ---------------------------------------------------------------- brute force

def test_brute_force_is_slowed_then_cut_off(tls_server):
    s = tls_server(users=[USER], auth={"max_failures": 10, "delay_step_ms": 60,
                                       "max_delay_ms": 2000, "window": 600,
                                       "lockout": 600})
    bad = "AUTH PLAIN " + base64.b64encode(b"\0u@example.test\0guess").decode()
    times, codes = [], []
    conn = None
    for i in range(20):
        if conn is None:
            conn = smtplib.SMTP_SSL("127.0.0.1", s.subs_port, local_hostname="client.test",
                                    context=client_context(), timeout=30)
            conn.ehlo()
        t0 = time.monotonic()
        try:
            code, msg = conn.docmd(*bad.split(" ", 1))
        except smtplib.SMTPServerDisconnected:
            code, msg = 0, b""
        times.append(time.monotonic() - t0)
        codes.append((code, msg[:5]))
        if code != 535:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    assert codes[0] == (535, b"5.7.8"), codes
    # Slowed: each failure waits longer than the one before (60 ms more a
    # step). Averages of three attempts, early against late, so that the
    # password check's own time, which varies on a loaded machine, does
    # not decide: the delays alone differ by about 0.35 s. The tenth
    # failure may already be answered by the cut-off, without a delay.
    early, late = sum(times[0:3]) / 3, sum(times[6:9]) / 3
    assert late > early + 0.25, times
    # Cut off: after the limit every attempt gets 421 4.7.0.
    assert (421, b"4.7.0") in codes, codes
    first_cut = codes.index((421, b"4.7.0"))
    assert first_cut <= 11, codes
    assert all(c in ((421, b"4.7.0"), (0, b"")) for c in codes[first_cut:]), codes
    # Even the right password is refused from this IP now...
    with smtplib.SMTP_SSL("127.0.0.1", s.subs_port, local_hostname="client.test",
                          context=client_context()) as c:
        c.ehlo()
        code, msg = c.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0u@example.test\0" + PASSWORD.encode()).decode())
        assert (code, msg[:5]) == (421, b"4.7.0"), msg
    # ...but another client IP logs in fine.
    c = smtplib.SMTP_SSL("127.0.0.1", s.subs_port, local_hostname="client.test",
                         context=client_context(), source_address=("127.0.0.2", 0))
    c.login(USER, PASSWORD)
    assert c.mail(USER)[0] == 250
    c.quit()
    log = s.log_text()
    assert "guess" not in log
    assert "reason=too-many-failures" in log


# ---------------------------------------------------------------- certificates

def make_cert(directory, name, kind, cn):
    """A self-signed certificate via the openssl tool: kind 'rsa' or 'ec'."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    alg = ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run_tool(["openssl", "req", "-x509", *alg, "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return {"cert": str(cert), "key": str(key)}


def peer_cert(port, server_name=None, ciphers=None, tls12=False):
    ctx = client_context()
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as t:
            der = t.getpeercert(binary_form=True)
            t.recv(100)
            return ssl.DER_cert_to_PEM_cert(der)


def cert_pem(path):
    return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(pathlib.Path(path).read_text()))


def test_sni_and_rsa_ecdsa_side_by_side(tls_server, tmp_path):
    ec = make_cert(tmp_path, "mx-ec", "ec", "mx.example.test")
    rsa = make_cert(tmp_path, "mx-rsa", "rsa", "mx.example.test")
    other = make_cert(tmp_path, "other", "ec", "mail.other.test")
    s = tls_server(users=[USER], tls={"certificates": [ec, rsa, other]})
    assert peer_cert(s.subs_port, "mx.example.test", "ECDHE-ECDSA-AES128-GCM-SHA256",
                     tls12=True) == cert_pem(ec["cert"])
    assert peer_cert(s.subs_port, "mx.example.test", "ECDHE-RSA-AES128-GCM-SHA256",
                     tls12=True) == cert_pem(rsa["cert"])
    assert peer_cert(s.subs_port, "mail.other.test") == cert_pem(other["cert"])
    assert peer_cert(s.subs_port, "MAIL.OTHER.TEST") == cert_pem(other["cert"])
    # No or an unknown name: the first certificate.
    assert peer_cert(s.subs_port, None) == cert_pem(ec["cert"])
    assert peer_cert(s.subs_port, "unknown.test") == cert_pem(ec["cert"])


def test_certificates_reload_on_sighup_without_dropping_sessions(tls_server, tmp_path):
    first = make_cert(tmp_path, "first", "ec", "mx.example.test")
    live = {"cert": str(tmp_path / "live.pem"), "key": str(tmp_path / "live.key")}
    pathlib.Path(live["cert"]).write_text(pathlib.Path(first["cert"]).read_text())
    pathlib.Path(live["key"]).write_text(pathlib.Path(first["key"]).read_text())
    s = tls_server(users=[USER, "v@example.test"], tls={"certificates": [live]})
    assert peer_cert(s.subs_port) == cert_pem(first["cert"])
    old = starttls_login(s.sub_port)  # a session begun before the reload

    second = make_cert(tmp_path, "second", "rsa", "mx.example.test")
    pathlib.Path(live["cert"]).write_text(pathlib.Path(second["cert"]).read_text())
    pathlib.Path(live["key"]).write_text(pathlib.Path(second["key"]).read_text())
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while peer_cert(s.subs_port) != cert_pem(second["cert"]):
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.1)
    m = unique("reload")
    assert old.sendmail(USER, ["v@example.test"],
                        build_message(m, ["x"], sender=USER, to="v@example.test")) == {}
    old.quit()
    s.wait_message("v@example.test", m)

    # A broken file keeps the old certificates in service.
    pathlib.Path(live["key"]).write_text("garbage\n")
    s.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "tls reload failed" in s.log_text()
    assert peer_cert(s.subs_port) == cert_pem(second["cert"])


def test_dev_self_signed_certificate_is_generated_once(tls_server):
    s = tls_server(users=[USER])
    cert = s.data_dir / "tls" / "cert.pem"
    key = s.data_dir / "tls" / "key.pem"
    assert cert.exists() and key.exists()
    assert key.stat().st_mode & 0o077 == 0
    assert "generated a self-signed certificate for mx.example.test" in s.log_text()
    assert peer_cert(s.subs_port) == cert_pem(cert)
    text = run_tool(["openssl", "x509", "-noout", "-text", "-in", str(cert)],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:mx.example.test" in text
    assert "prime256v1" in text or "P-256" in text
    before = cert.read_bytes()
    s.stop()
    s.start()
    assert cert.read_bytes() == before


def test_silent_client_gets_no_endless_handshake(tls_server):
    s = tls_server(users=[USER], smtp={"command_timeout": 2})
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", s.subs_port), timeout=10) as raw:
        assert raw.recv(100) == b""  # closed without a byte, no TLS, no 220
    assert time.monotonic() - t0 < 6
    assert "smtp tls handshake failed client=127.0.0.1 listener=submissions error=timeout" \
        in s.log_text()


def test_directory_unavailable_gives_454_not_a_strike(srv):
    """RFC 4954 6: when the account database cannot be read the client gets
    454 4.7.0 (try later), not 535, and it does not count towards lockout."""
    import sqlite3
    path = srv.data_dir / "tern.db"
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    saved = path.read_bytes()
    try:
        # The file emptied under the running server: its queries now fail
        # ("no such table"), as with a damaged or vanished database.
        os.truncate(path, 0)
        for _ in range(3):  # three would be strikes if they counted
            with smtplib.SMTP_SSL("127.0.0.1", srv.subs_port, local_hostname="client.test",
                                  context=client_context(), timeout=30) as s:
                s.ehlo()
                code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(
                    b"\0u@example.test\0" + PASSWORD.encode()).decode())
                assert (code, msg[:5]) == (454, b"4.7.0"), msg
    finally:
        path.write_bytes(saved)
        # A write through SQLite moves the schema cookie and the WAL index,
        # so the server's connection reads the restored file afresh.
        db = sqlite3.connect(str(path))
        db.execute("CREATE TABLE test_touch (x)")
        db.execute("DROP TABLE test_touch")
        db.commit()
        db.close()
    assert "password check failed" in srv.log_text()
    assert PASSWORD not in srv.log_text()
    # The database is back: the same login works at once (no strike, no delay).
    start = time.monotonic()
    with smtplib.SMTP_SSL("127.0.0.1", srv.subs_port, local_hostname="client.test",
                          context=client_context()) as s:
        s.login(USER, PASSWORD)
    assert time.monotonic() - start < 5


def _starttls_session(ctx, port, session=None, name="resume.test"):
    """One STARTTLS connection offering `session` (made with `ctx`): (the
    TLS session the server gave, whether it resumed the offered one, the
    TLS version). Reads the EHLO reply after the handshake, by which time a
    TLS 1.3 server's tickets are in."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"220")
        raw.sendall(b"EHLO client.test\r\n")
        while (line := f.readline())[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220")
        f.close()
        with ctx.wrap_socket(raw, server_hostname=name, session=session) as t:
            g = t.makefile("rb")
            t.sendall(b"EHLO client.test\r\n")
            while (line := g.readline())[3:4] == b"-":
                pass
            assert line.startswith(b"250"), line
            t.sendall(b"QUIT\r\n")
            assert g.readline().startswith(b"221")
            return t.session, t.session_reused, t.version()


def test_starttls_session_resumption(srv):
    # RFC 8446 2.2: the ticket of one connection lets the next skip the
    # certificate and its signature; the server logs which handshakes resumed.
    ctx = client_context()
    first, reused, version = _starttls_session(ctx, srv.port)
    assert version == "TLSv1.3" and not reused
    assert first is not None and first.has_ticket, first
    second, reused, _ = _starttls_session(ctx, srv.port, first)
    assert reused, "the server did not resume the offered session"
    # The new connection's own ticket works as well, and on another port
    # of the same server (one ticket key per certificate context).
    _, reused, _ = _starttls_session(ctx, srv.sub_port, second)
    assert reused
    # Without a session offered there is nothing to resume.
    _, reused, _ = _starttls_session(ctx, srv.port)
    assert not reused
    deadline = time.monotonic() + 5
    while srv.log_text().count("resumed=yes") < 2:
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.05)
    assert "resumed=no" in srv.log_text()


def test_implicit_tls_session_resumption(srv):
    ctx = client_context()
    session = None
    for attempt in range(2):
        with socket.create_connection(("127.0.0.1", srv.subs_port), timeout=15) as raw:
            with ctx.wrap_socket(raw, server_hostname="resume.test", session=session) as t:
                g = t.makefile("rb")
                assert g.readline().startswith(b"220")
                t.sendall(b"QUIT\r\n")
                assert g.readline().startswith(b"221")
                assert t.session_reused == (attempt == 1)
                session = t.session


def test_client_reset_after_tls_does_not_kill_the_server(srv):
    # The server writes its replies to a connection the client has already
    # reset: the write must fail (EPIPE) rather than raise SIGPIPE, which
    # would end the whole process.
    ctx = client_context()
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as raw:
            f = raw.makefile("rb")
            assert f.readline().startswith(b"220")
            raw.sendall(b"EHLO client.test\r\n")
            while f.readline()[3:4] == b"-":
                pass
            raw.sendall(b"STARTTLS\r\n")
            assert f.readline().startswith(b"220")
            f.close()
            t = ctx.wrap_socket(raw, server_hostname="reset.test")
            t.sendall(b"NOOP\r\n" * 2000)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            t.close()
    time.sleep(0.5)
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=15) as s:
        assert s.noop()[0] == 250
