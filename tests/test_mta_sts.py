# MTA-STS (RFC 8461) for outbound delivery, over loopback only: the dnslib
# zone of test_outbound.py serves _mta-sts TXT, MX and A records; an HTTPS
# server on 127.0.0.60 serves the policies with a certificate from a test
# CA (made here with openssl); aiosmtpd sinks on 127.0.0.6x present
# certificates from that CA, a self-signed one, or no STARTTLS at all.
import http.server
import json
import ssl
import threading
import time

import pytest
from dnslib import QTYPE, TXT

from conftest import free_port, run_tool, unique
from test_outbound import (dns, mx_port, sinks, submit, tern,  # noqa: F401 (fixtures)
                           wait_for, wait_queue_empty)

HTTPS_IP = "127.0.0.60"
DOWN_IP = "127.0.0.69"  # the HTTPS server that goes away (cache test)

# Names the test CA certifies: the policy hosts and the good MX hosts.
POLICY_DOMAINS = ["sts1.test", "sts2.test", "sts3.test", "sts3b.test",
                  "sts4.test", "sts5.test", "sts6.test", "sts7.test",
                  "sts8.test", "sts9.test"]
MX_NAMES = ["mx.sts1.test", "mx.sts2.test", "mx.sts3.test", "rogue.sts3.test",
            "mx.sts3b.test", "mx.sts4.test", "mx.sts5.test", "mx.sts6.test",
            "rogue.sts6.test", "mx.sts7.test", "rogue.sts7.test",
            "rogue.sts8.test", "mx.sts8.test"]


# ---------------------------------------------------------------- test CA

def _openssl(*args):
    run_tool(["openssl", *args], check=True, capture_output=True)


def _leaf(d, ca, ca_key, name, sans):
    key, csr, cert, ext = (d / f"{name}.key", d / f"{name}.csr",
                           d / f"{name}.pem", d / f"{name}.ext")
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans) +
                   "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={sans[0]}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return str(cert), str(key)


def _server_ctx(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("sts-pki")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca), "-days", "2", "-subj", "/CN=Tern MTA-STS test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    https = _leaf(d, ca, ca_key, "https", [f"mta-sts.{x}" for x in POLICY_DOMAINS])
    mx = _leaf(d, ca, ca_key, "mx", MX_NAMES)
    # Not from the CA: verification must fail.
    bad_cert, bad_key = d / "self.pem", d / "self.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(bad_key),
             "-out", str(bad_cert), "-days", "2", "-subj", "/CN=mx.sts4.test",
             "-addext", "subjectAltName=DNS:mx.sts4.test")
    return {"ca": str(ca), "https": _server_ctx(*https), "mx": _server_ctx(*mx),
            "self": _server_ctx(str(bad_cert), str(bad_key))}


# ---------------------------------------------------------------- HTTPS

class PolicyServer:
    """HTTPS on ip:port; `policies` maps a Host to (status, content type,
    body, extra headers); `gets` counts requests per Host."""

    def __init__(self, ip, port, ctx):
        self.policies = {}
        self.gets = {}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                outer.gets[host] = outer.gets.get(host, 0) + 1
                entry = outer.policies.get(host)
                if entry is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                status, ctype, body, headers = entry
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((ip, port), H)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, domain, mode, mx, max_age=86400, status=200,
              ctype="text/plain", headers=None):
        body = "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (
            mode, "".join(f"mx: {m}\r\n" for m in mx), max_age)
        self.policies[f"mta-sts.{domain}"] = (status, ctype, body, headers or {})

    def fetched(self, domain):
        return self.gets.get(f"mta-sts.{domain}", 0)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def https_port():
    return free_port(HTTPS_IP)


@pytest.fixture(scope="module")
def web(pki, https_port):
    s = PolicyServer(HTTPS_IP, https_port, pki["https"])
    yield s
    s.close()


def set_txt(zone, domain, record):
    """Replaces the TXT records at _mta-sts.domain."""
    name = zone._name(f"_mta-sts.{domain}")
    with zone.lock:
        rrs = zone.records.get(name, [])
        zone.records[name] = [r for r in rrs if r.rtype != QTYPE.TXT]
    zone.add(name, TXT(record), QTYPE.TXT)


def publish(zone, web, domain, mode, mx, policy_id="1", ip=HTTPS_IP, **kw):
    set_txt(zone, domain, f"v=STSv1; id={policy_id};")
    zone.a(f"mta-sts.{domain}", ip)
    if web is not None:
        web.serve(domain, mode, mx, **kw)


@pytest.fixture
def sts_tern(tern, pki, https_port):
    def factory(**delivery):
        d = {"ca_file": pki["ca"], "mta_sts_port": https_port}
        d.update(delivery)
        return tern(delivery=d)
    return factory


def trace_tls(srv, rcpt):
    p = srv.cli("trace", rcpt, "--json", check=False)
    if p.returncode != 0:
        return []
    return [e.get("tls", "") for e in json.loads(p.stdout)
            if e.get("event") == "delivery" and e.get("result") == "delivered"]


def queue_text(srv):
    return json.dumps(srv.queue_json())


# ---------------------------------------------------------------- tests

def test_enforce_delivers_over_verified_tls(dns, sinks, web, pki, sts_tern):
    publish(dns, web, "sts1.test", "enforce", ["mx.sts1.test"])
    dns.mx("sts1.test", (10, "mx.sts1.test"))
    dns.a("mx.sts1.test", "127.0.0.61")
    sink = sinks.smtp("127.0.0.61", tls_context=pki["mx"])
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts1.test"], unique("sts1"))
    env = sink.wait()[0]
    assert env["tls"] is True
    wait_queue_empty(srv)
    assert web.fetched("sts1.test") == 1
    wait_for(lambda: any("verified mta-sts enforce" in t
                         for t in trace_tls(srv, "x@sts1.test")),
             what="trace tls says mta-sts", srv=srv)
    log = srv.log_text()
    assert "TLS with mx.sts1.test[127.0.0.61]" in log
    assert "verified mta-sts enforce" in log
    assert "policy of sts1.test fetched: id 1, mode enforce" in log
    assert (srv.data_dir / "mta-sts" / "sts1.test.policy").exists()


def test_enforce_defers_when_starttls_is_stripped(dns, sinks, web, sts_tern):
    publish(dns, web, "sts2.test", "enforce", ["mx.sts2.test"])
    dns.mx("sts2.test", (10, "mx.sts2.test"))
    dns.a("mx.sts2.test", "127.0.0.62")
    sink = sinks.smtp("127.0.0.62")  # no tls_context: no STARTTLS offered
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts2.test"], unique("sts2"))
    wait_for(lambda: "required by mta-sts enforce" in queue_text(srv),
             what="deferral recorded", srv=srv)
    text = queue_text(srv)
    assert "4.7.4" in text, text
    js = srv.queue_json()
    assert js[0]["recipients"][0]["state"] == "pending"
    # Tern did connect, and never sent MAIL FROM in plain text.
    assert sink.sessions >= 1
    assert sink.calls["MAIL"] == 0 and sink.envelopes == []


def test_enforce_skips_mx_hosts_the_policy_does_not_list(dns, sinks, web, pki, sts_tern):
    publish(dns, web, "sts3.test", "enforce", ["mx.sts3.test"])
    # The preferred MX is not in the policy (a forged MX answer, say).
    dns.mx("sts3.test", (5, "rogue.sts3.test"), (10, "mx.sts3.test"))
    dns.a("rogue.sts3.test", "127.0.0.63")
    dns.a("mx.sts3.test", "127.0.0.64")
    rogue = sinks.smtp("127.0.0.63", tls_context=pki["mx"])
    good = sinks.smtp("127.0.0.64", tls_context=pki["mx"])
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts3.test"], unique("sts3"))
    assert good.wait()[0]["tls"] is True
    wait_queue_empty(srv)
    assert rogue.sessions == 0 and rogue.envelopes == []
    assert "rogue.sts3.test is not an MX host the policy of sts3.test allows" in srv.log_text()


def test_enforce_defers_when_no_mx_host_matches(dns, sinks, web, pki, sts_tern):
    publish(dns, web, "sts3b.test", "enforce", ["*.elsewhere.test"])
    dns.mx("sts3b.test", (10, "mx.sts3b.test"))
    dns.a("mx.sts3b.test", "127.0.0.65")
    sink = sinks.smtp("127.0.0.65", tls_context=pki["mx"])
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts3b.test"], unique("sts3b"))
    wait_for(lambda: "is allowed by its MTA-STS policy" in queue_text(srv),
             what="deferral recorded", srv=srv)
    assert "4.7.5" in queue_text(srv)
    assert sink.sessions == 0


def test_testing_mode_delivers_and_reports(dns, sinks, web, pki, sts_tern):
    publish(dns, web, "sts4.test", "testing", ["mx.sts4.test"])
    dns.mx("sts4.test", (10, "mx.sts4.test"))
    dns.a("mx.sts4.test", "127.0.0.66")
    sink = sinks.smtp("127.0.0.66", tls_context=pki["self"])  # not from the CA
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts4.test"], unique("sts4"))
    assert sink.wait()[0]["tls"] is True
    wait_queue_empty(srv)
    wait_for(lambda: "mta-sts testing: mx.sts4.test[127.0.0.66]" in srv.log_text(),
             what="testing failure logged", srv=srv)
    log = srv.log_text()
    assert "certificate-not-trusted (delivered anyway; enforce would defer)" in log
    wait_for(lambda: any("unverified" in t and "mta-sts testing" in t
                         for t in trace_tls(srv, "x@sts4.test")),
             what="trace tls says mta-sts testing", srv=srv)


def test_testing_mode_reports_a_missing_starttls(dns, sinks, web, sts_tern):
    publish(dns, web, "sts9.test", "testing", ["mx.sts9.test"])
    dns.mx("sts9.test", (10, "mx.sts9.test"))
    dns.a("mx.sts9.test", "127.0.0.75")
    sink = sinks.smtp("127.0.0.75")  # no STARTTLS
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts9.test"], unique("sts9"))
    assert sink.wait()[0]["tls"] is False
    wait_queue_empty(srv)
    assert web.fetched("sts9.test") == 1
    assert ("mta-sts testing: mx.sts9.test[127.0.0.75]:%d: starttls-not-supported"
            % sinks.port) in srv.log_text()


def test_policy_cached_and_refetched_when_id_changes(dns, sinks, web, pki, sts_tern):
    publish(dns, web, "sts5.test", "enforce", ["mx.sts5.test"], policy_id="first")
    dns.mx("sts5.test", (10, "mx.sts5.test"))
    dns.a("mx.sts5.test", "127.0.0.67")
    sink = sinks.smtp("127.0.0.67", tls_context=pki["mx"])
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts5.test"], unique("sts5a"))
    sink.wait(1)
    wait_queue_empty(srv)
    submit(srv, "u@example.test", ["x@sts5.test"], unique("sts5b"))
    sink.wait(2)
    wait_queue_empty(srv)
    assert web.fetched("sts5.test") == 1
    # A new id in DNS: fetched again (once the old answer, TTL 1 s, has left
    # the resolver caches, which count in whole seconds).
    set_txt(dns, "sts5.test", "v=STSv1; id=second;")
    time.sleep(2.5)
    submit(srv, "u@example.test", ["x@sts5.test"], unique("sts5c"))
    sink.wait(3)
    wait_queue_empty(srv)
    assert web.fetched("sts5.test") == 2
    assert "policy of sts5.test fetched: id second" in srv.log_text()


def test_cached_policy_used_when_the_policy_server_is_down(dns, sinks, pki, https_port,
                                                           sts_tern):
    down = PolicyServer(DOWN_IP, https_port, pki["https"])
    try:
        publish(dns, down, "sts6.test", "enforce", ["mx.sts6.test"], ip=DOWN_IP)
        dns.mx("sts6.test", (5, "rogue.sts6.test"), (10, "mx.sts6.test"))
        dns.a("rogue.sts6.test", "127.0.0.68")
        dns.a("mx.sts6.test", "127.0.0.70")
        rogue = sinks.smtp("127.0.0.68", tls_context=pki["mx"])
        good = sinks.smtp("127.0.0.70", tls_context=pki["mx"])
        srv = sts_tern()
        submit(srv, "u@example.test", ["x@sts6.test"], unique("sts6a"))
        good.wait(1)
        wait_queue_empty(srv)
        assert down.fetched("sts6.test") == 1
    finally:
        down.close()
    # The policy server is gone, Tern restarts (the cache is on disk) and
    # the id changes, so Tern tries to fetch and fails: the cached policy
    # still keeps the rogue MX out.
    srv.stop()
    srv.start()
    set_txt(dns, "sts6.test", "v=STSv1; id=2;")
    time.sleep(2.5)
    submit(srv, "u@example.test", ["x@sts6.test"], unique("sts6b"))
    good.wait(2)
    wait_queue_empty(srv)
    assert rogue.sessions == 0 and rogue.envelopes == []
    assert "the cached policy (id 1) stays in force" in srv.log_text()


def test_policy_with_wrong_content_type_or_redirect_is_ignored(dns, sinks, web, pki,
                                                               sts_tern):
    # Both policies would keep the rogue MX out; neither may be used.
    publish(dns, web, "sts7.test", "enforce", ["mx.sts7.test"], ctype="text/html")
    dns.mx("sts7.test", (5, "rogue.sts7.test"), (10, "mx.sts7.test"))
    dns.a("rogue.sts7.test", "127.0.0.71")
    dns.a("mx.sts7.test", "127.0.0.72")
    publish(dns, web, "sts8.test", "enforce", ["mx.sts8.test"], status=301,
            headers={"Location": f"https://mta-sts.sts7.test/.well-known/mta-sts.txt"})
    dns.mx("sts8.test", (5, "rogue.sts8.test"), (10, "mx.sts8.test"))
    dns.a("rogue.sts8.test", "127.0.0.73")
    dns.a("mx.sts8.test", "127.0.0.74")
    rogue7 = sinks.smtp("127.0.0.71", tls_context=pki["mx"])
    rogue8 = sinks.smtp("127.0.0.73", tls_context=pki["mx"])
    srv = sts_tern()
    submit(srv, "u@example.test", ["x@sts7.test"], unique("sts7"))
    submit(srv, "u@example.test", ["x@sts8.test"], unique("sts8"))
    rogue7.wait(1)
    rogue8.wait(1)
    wait_queue_empty(srv)
    log = srv.log_text()
    assert 'Content-Type "text/html" is not text/plain' in log
    assert "HTTP status 301" in log
    assert web.fetched("sts8.test") == 1 and web.fetched("sts7.test") == 1
