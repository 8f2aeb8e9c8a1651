# The web listeners (issue 16): client autoconfig as Thunderbird, Outlook
# and Apple devices fetch it, the MTA-STS policy with curl, the admin
# listener's /metrics read with Prometheus' own text parser (before and
# after real traffic) and /health, and the HTTP rules a client depends on
# (Host, keep-alive, HEAD, limits, garbage), over raw sockets.
import imaplib
import plistlib
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conftest
from conftest import DOMAIN, HOSTNAME, PASSWORD, free_port, need_tool

SERVICES = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s",
            "http", "https", "admin")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    ports = {s: free_port() for s in SERVICES}
    s = conftest.TernServer(
        tmp_path_factory.mktemp("http"),
        extra_listen=[(f"127.0.0.1:{p}", name) for name, p in ports.items()],
        sections={"tls": {"self_signed": True}, "http": {"idle_timeout": 3}})
    s.ports = ports
    conftest._LIVE.append(s)
    try:
        for u in conftest.DEFAULT_USERS:
            s.add_user(u)
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


def request(srv, service, path, host, method="GET", body=None, headers=None):
    """One request with urllib: (status, headers, body bytes)."""
    scheme = "https" if service == "https" else "http"
    url = f"{scheme}://127.0.0.1:{srv.ports[service]}{path}"
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Host", host)
    for k, v in (headers or {}).items():
        req.add_header(k, v)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None

    opener = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPSHandler(context=no_verify()))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw(srv, service, data, read_until_close=True, timeout=10):
    """Sends bytes on a fresh connection and returns all it reads."""
    s = socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


# ------------------------------------------------------------- autoconfig

def servers(root, kind):
    return [{c.tag: c.text for c in el} | {"type": el.get("type")}
            for el in root.iter(kind)]


@pytest.mark.parametrize("service,path,host", [
    ("http", "/mail/config-v1.1.xml?emailaddress=u%40example.test",
     "autoconfig.example.test"),
    ("https", "/.well-known/autoconfig/mail/config-v1.1.xml", DOMAIN),
])
def test_thunderbird_autoconfig(srv, service, path, host):
    status, headers, body = request(srv, service, path, host)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider.get("id") == DOMAIN
    assert provider.findtext("domain") == DOMAIN
    incoming = servers(root, "incomingServer")
    outgoing = servers(root, "outgoingServer")
    p = srv.ports
    # Implicit TLS first (RFC 8314), then STARTTLS; IMAP before POP3.
    assert [(s["type"], int(s["port"]), s["socketType"]) for s in incoming] == [
        ("imap", p["imaps"], "SSL"), ("imap", p["imap"], "STARTTLS"),
        ("pop3", p["pop3s"], "SSL"), ("pop3", p["pop3"], "STARTTLS")]
    assert [(s["type"], int(s["port"]), s["socketType"]) for s in outgoing] == [
        ("smtp", p["submissions"], "SSL"), ("smtp", p["submission"], "STARTTLS")]
    for s in incoming + outgoing:
        assert s["hostname"] == HOSTNAME
        assert s["username"] == "%EMAILADDRESS%"
        assert s["authentication"] == "password-cleartext"


def test_autoconfig_follows_to_a_working_login(srv):
    # What a client does with the document: log in where it says.
    _, _, body = request(srv, "http", "/mail/config-v1.1.xml", "autoconfig.example.test")
    imap = servers(ET.fromstring(body), "incomingServer")[0]
    c = imaplib.IMAP4_SSL("127.0.0.1", int(imap["port"]), ssl_context=no_verify())
    try:
        c.login(imap["username"].replace("%EMAILADDRESS%", "u@example.test"), PASSWORD)
    finally:
        c.logout()
    smtp = servers(ET.fromstring(body), "outgoingServer")[0]
    with smtplib.SMTP_SSL("127.0.0.1", int(smtp["port"]), context=no_verify(),
                          timeout=10) as s:
        s.login("u@example.test", PASSWORD)


def test_autoconfig_for_other_domains_is_not_found(srv):
    assert request(srv, "https", "/.well-known/autoconfig/mail/config-v1.1.xml",
                   "other.test")[0] == 404
    assert request(srv, "http", "/mail/config-v1.1.xml?emailaddress=a%40other.test",
                   "autoconfig.example.test")[0] == 404
    assert request(srv, "http", "/mail/config-v1.1.xml", "autoconfig.example.test",
                   method="POST", body=b"x")[0] == 405


AUTODISCOVER_REQUEST = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{email}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>
"""

NS = {"a": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}


def test_autodiscover_post(srv):
    status, headers, body = request(
        srv, "https", "/autodiscover/autodiscover.xml", "autodiscover.example.test",
        method="POST", body=AUTODISCOVER_REQUEST.format(email="v@example.test").encode(),
        headers={"Content-Type": "text/xml"})
    assert status == 200, body
    root = ET.fromstring(body)
    protocols = {p.findtext("a:Type", namespaces=NS): p
                 for p in root.iterfind(".//a:Protocol", NS)}
    assert set(protocols) == {"IMAP", "POP3", "SMTP"}
    imap = protocols["IMAP"]
    assert imap.findtext("a:Server", namespaces=NS) == HOSTNAME
    assert int(imap.findtext("a:Port", namespaces=NS)) == srv.ports["imaps"]
    assert imap.findtext("a:SSL", namespaces=NS) == "on"
    assert imap.findtext("a:LoginName", namespaces=NS) == "v@example.test"
    smtp = protocols["SMTP"]
    assert int(smtp.findtext("a:Port", namespaces=NS)) == srv.ports["submissions"]
    assert root.find(".//a:Action", NS).text == "settings"


def test_autodiscover_refuses_what_it_cannot_answer(srv):
    path, host = "/Autodiscover/Autodiscover.xml", "autodiscover.example.test"
    assert request(srv, "https", path, host)[0] == 405  # GET
    assert request(srv, "https", path, host, method="POST", body=b"<x/>")[0] == 400
    foreign = AUTODISCOVER_REQUEST.format(email="a@other.test").encode()
    assert request(srv, "https", path, host, method="POST", body=foreign)[0] == 404
    # Markup in the address is neither echoed nor accepted.
    evil = AUTODISCOVER_REQUEST.format(email="a&lt;b@example.test").encode()
    status, _, body = request(srv, "https", path, host, method="POST", body=evil)
    assert status == 404 and b"<b" not in body


def test_apple_profile(srv):
    path = "/mail.mobileconfig?emailaddress=w%40example.test"
    status, headers, body = request(srv, "https", path, HOSTNAME)
    assert status == 200
    assert headers["Content-Type"] == "application/x-apple-aspen-config"
    assert "attachment" in headers["Content-Disposition"]
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration"
    account = profile["PayloadContent"][0]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAccountType"] == "EmailTypeIMAP"
    assert account["EmailAddress"] == "w@example.test"
    assert account["IncomingMailServerHostName"] == HOSTNAME
    assert account["IncomingMailServerPortNumber"] == srv.ports["imaps"]
    assert account["IncomingMailServerUseSSL"] is True
    assert account["OutgoingMailServerPortNumber"] == srv.ports["submissions"]
    assert account["OutgoingMailServerUsername"] == "w@example.test"
    # The same address gets the same identifiers (a re-install replaces).
    again = plistlib.loads(request(srv, "https", path, HOSTNAME)[2])
    assert again["PayloadUUID"] == profile["PayloadUUID"]
    other = plistlib.loads(request(
        srv, "https", "/mail.mobileconfig?emailaddress=u%40example.test", HOSTNAME)[2])
    assert other["PayloadUUID"] != profile["PayloadUUID"]
    assert request(srv, "https", "/mail.mobileconfig", HOSTNAME)[0] == 400


# ---------------------------------------------------------------- MTA-STS

def test_mta_sts_policy_with_curl(srv):
    need_tool("curl")
    port = srv.ports["https"]
    p = subprocess.run(
        ["curl", "-sk", "-D", "-", "--resolve", f"mta-sts.{DOMAIN}:{port}:127.0.0.1",
         f"https://mta-sts.{DOMAIN}:{port}/.well-known/mta-sts.txt"],
        capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"content-type: text/plain" in head.lower()
    # RFC 8461 3.2: version first, CRLF lines, our MX, max_age.
    lines = body.split(b"\r\n")
    assert lines[0] == b"version: STSv1"
    assert b"mode: testing" in lines
    assert f"mx: {HOSTNAME}".encode() in lines
    assert b"max_age: 604800" in lines
    # Only on the policy host, and only over HTTPS.
    assert request(srv, "https", "/.well-known/mta-sts.txt", DOMAIN)[0] == 404
    status, headers, _ = request(srv, "http", "/.well-known/mta-sts.txt",
                                 f"mta-sts.{DOMAIN}")
    assert status == 301
    assert headers["Location"] == f"https://mta-sts.{DOMAIN}/.well-known/mta-sts.txt"


def test_http_redirects_only_to_our_names(srv):
    status, headers, _ = request(srv, "http", "/x?y=1", "evil.test")
    assert status == 301 and headers["Location"] == f"https://{HOSTNAME}/x?y=1"
    status, headers, _ = request(srv, "http", "/", DOMAIN, method="POST", body=b"")
    assert status == 308 and headers["Location"] == f"https://{DOMAIN}/"


# ---------------------------------------------------------------- metrics

def scrape(srv):
    status, headers, body = request(srv, "admin", "/metrics", "127.0.0.1")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_traffic(srv):
    before = scrape(srv)
    # A message for a local user, a refused recipient, a failed AUTH.
    with srv.smtplib() as s:
        s.sendmail("a@remote.test", ["u@example.test"],
                   b"Subject: metrics\r\n\r\nhello\r\n")
        s.ehlo_or_helo_if_needed()
        s.mail("a@remote.test")
        code, _ = s.rcpt("nosuchuser@example.test")
        assert code == 550
        s.rset()
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
        s.starttls(context=no_verify())
        s.ehlo()
        s.user, s.password = "u@example.test", "wrong password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)  # one attempt (login() tries several)
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=no_verify())
    c.login("u@example.test", PASSWORD)
    c.logout()
    srv.wait_message("u@example.test", "metrics")

    deadline = time.monotonic() + 10
    while True:
        after = scrape(srv)
        if value(after, "tern_delivery_attempts_total", destination="local",
                 result="delivered") > value(before, "tern_delivery_attempts_total",
                                             destination="local", result="delivered"):
            break
        assert time.monotonic() < deadline, "delivery never counted"
        time.sleep(0.1)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tern_smtp_messages_accepted_total", listener="smtp") == 1
    assert moved("tern_smtp_refusals_total", listener="smtp", code="550",
                 status="5.1.1") == 1
    assert moved("tern_auth_total", protocol="smtp", result="failure") == 1
    assert moved("tern_auth_total", protocol="imap", result="success") == 1
    assert moved("tern_connections_total", protocol="smtp", listener="smtp") == 1
    assert moved("tern_connections_total", protocol="smtp", listener="submission") == 1
    assert moved("tern_connections_total", protocol="imap", listener="imaps") == 1
    assert moved("tern_tls_handshakes_total", protocol="imap", version="TLSv1.3") == 1
    assert moved("tern_smtp_commit_seconds_count") == 1
    assert moved("tern_delivery_seconds_count", destination="local") == 1
    # Histograms are cumulative and end at +Inf = count.
    assert value(after, "tern_smtp_commit_seconds_bucket", le="+Inf") == \
        value(after, "tern_smtp_commit_seconds_count")
    assert ("tern_queue_messages", ()) in after
    assert value(after, "tern_start_time_seconds") > 1.7e9
    # The scrape itself is counted.
    assert moved("tern_http_requests_total", listener="admin", status="200") >= 1


def test_health(srv):
    status, _, body = request(srv, "admin", "/health", "127.0.0.1")
    assert (status, body) == (200, b"ok\n")
    status, _, _ = request(srv, "admin", "/health", "127.0.0.1", method="POST", body=b"")
    assert status == 405
    assert request(srv, "admin", "/other", "127.0.0.1")[0] == 404


# ---------------------------------------------------------------- HTTP rules

def test_http11_without_host_is_400(srv):
    # RFC 9112 3.2: MUST answer 400 to an HTTP/1.1 request without Host,
    # or with two.
    out = raw(srv, "http", b"GET /mail/config-v1.1.xml HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    out = raw(srv, "http", b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out


def test_keep_alive_pipelining_and_head(srv):
    req = (b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.test\r\n\r\n"
           b"HEAD /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.test\r\n\r\n"
           b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(srv, "http", req)
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.count(b"HTTP/1.1 301 ") == 1, out
    first, rest = out.split(b"</clientConfig>\n", 1)
    length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    # HEAD: the same Content-Length, no body.
    head_part = rest.split(b"HTTP/1.1 301")[0]
    assert f"Content-Length: {length}".encode() in head_part
    assert head_part.endswith(b"\r\n\r\n")
    assert b"Connection: close" in out.split(b"HTTP/1.1 301")[1]


def test_limits_and_garbage(srv):
    big = b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw(srv, "http", big).startswith(b"HTTP/1.1 414 ")
    fields = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 17000 + b"\r\n\r\n"
    assert raw(srv, "http", fields).startswith(b"HTTP/1.1 431 ")
    post = (b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 100000000\r\n\r\n")
    assert raw(srv, "http", post).startswith(b"HTTP/1.1 413 ")
    assert raw(srv, "http", b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(
        b"HTTP/1.1 400 ")
    # Request smuggling: both framings at once is refused.
    both = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert raw(srv, "http", both).startswith(b"HTTP/1.1 400 ")
    srv.check_alive()


def test_expect_continue_and_chunked_body(srv):
    body = AUTODISCOVER_REQUEST.format(email="u@example.test").encode()
    s = socket.create_connection(("127.0.0.1", srv.ports["http"]), timeout=10)
    try:
        s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    finally:
        s.close()
    chunked = (b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    # Port 80 sends Autodiscover to HTTPS (308 keeps the POST).
    assert raw(srv, "http", chunked).startswith(b"HTTP/1.1 308 ")


def test_idle_and_half_requests_time_out(srv):
    # idle_timeout is 3 s here: a half request gets 408, an idle
    # keep-alive connection is closed without a word.
    t = time.monotonic()
    out = raw(srv, "http", b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=15)
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert 2 < time.monotonic() - t < 12
    assert raw(srv, "http", b"", timeout=15) == b""


def test_closing_with_unread_input_loses_no_answer(srv):
    # 150 pipelined requests: the first 100 are answered (the per-
    # connection limit), then the server closes. The unread 50 must not
    # make the kernel reset the connection and destroy the answers the
    # client has not read yet (RFC 9112 9.6: stop sending, drain, close).
    req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    out = raw(srv, "admin", req * 150, timeout=20)
    assert out.count(b"HTTP/1.1 200 OK") == 100, out[-300:]
    assert out.rstrip().endswith(b"ok")
