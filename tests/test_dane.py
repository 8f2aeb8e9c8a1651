# DANE for outbound SMTP (RFC 7672) against a DNSSEC-signed zone made for
# this run: keys from ldns-keygen, the zone signed with ldns-signzone and
# served by a private nsd on a loopback port, its DS record handed to Tern
# as [dns] trust_anchor. Sinks are aiosmtpd servers on 127.0.0.8x with
# certificates from a test CA. Loopback only.
import hashlib
import json
import re
import subprocess
import time

import pytest

from conftest import _LIVE, TernServer, free_port, need_tool, run_tool, shutdown, unique
from test_outbound import FAST_DELIVERY, Sinks, submit, wait_for

ZONE = "test."
PLAIN_ZONE = "plain.invalid."  # unsigned: no trust anchor covers it

# Sink addresses, one per MX host.
IP = {
    "mx-ee": "127.0.0.81",
    "mx-bad": "127.0.0.82",
    "mx-nostls": "127.0.0.83",
    "mx-ta": "127.0.0.84",
    "mx-bogus": "127.0.0.85",
    "mx-plain": "127.0.0.86",
    "mx-tawrong": "127.0.0.87",
    "mx-tadomain": "127.0.0.88",
    "mx-notlsa": "127.0.0.89",
    "mx-unusable": "127.0.0.90",
    "mx-unusable-plain": "127.0.0.91",
}


def _run(argv, cwd=None):
    p = run_tool(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n"
                             f"{p.stdout}\n{p.stderr}")
    return p.stdout


# ---------------------------------------------------------------- test PKI

class Pki:
    """A test CA and leaf certificates made with the openssl CLI."""

    def __init__(self, d):
        self.d = d
        self.ca_key = d / "ca.key"
        self.ca = d / "ca.pem"
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(self.ca_key),
              "-out", str(self.ca), "-days", "2", "-subj", "/CN=Tern DANE test CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def leaf(self, name, dns_names):
        """Returns (key, cert, chain) paths; chain = leaf + CA (RFC 7672
        3.2.1: a DANE-TA server sends its trust anchor in the chain)."""
        key, csr = self.d / f"{name}.key", self.d / f"{name}.csr"
        cert, chain = self.d / f"{name}.pem", self.d / f"{name}-chain.pem"
        ext = self.d / f"{name}.ext"
        ext.write_text("subjectAltName=" +
                       ",".join(f"DNS:{n}" for n in dns_names) + "\n")
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
              "-out", str(csr), "-subj", f"/CN={dns_names[0]}"])
        _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca),
              "-CAkey", str(self.ca_key), "-CAcreateserial", "-out", str(cert),
              "-days", "2", "-extfile", str(ext)])
        chain.write_text(cert.read_text() + self.ca.read_text())
        return key, cert, chain

    def spki_sha256(self, cert):
        """TLSA selector 1, matching type 1 (RFC 6698 2.1.2, 2.1.3)."""
        pub = _run(["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"])
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                             input=pub.encode(), stdout=subprocess.PIPE,
                             check=True).stdout
        return hashlib.sha256(der).hexdigest()

    def cert_sha256(self, cert):
        """TLSA selector 0, matching type 1: the whole certificate."""
        der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                             stdout=subprocess.PIPE, check=True).stdout
        return hashlib.sha256(der).hexdigest()


def tls_context(key, chain):
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(chain), str(key))
    return ctx


# ---------------------------------------------------------------- signed DNS

def keygen(d, zone, ksk):
    argv = ["ldns-keygen", "-a", "ECDSAP256SHA256"] + (["-k"] if ksk else []) + [zone]
    return _run(argv, cwd=d).strip()  # the base name, "Ktest.+013+12345"


class SignedDns:
    """nsd serving the signed zone test. and the unsigned plain.invalid."""

    def __init__(self, d, mx_port, pki):
        for tool in ("nsd", "ldns-keygen", "ldns-signzone", "ldns-key2ds"):
            need_tool(tool)
        self.d = d
        self.port = free_port()
        self.certs = {}
        # Leaf certificates. DANE-EE ignores names (RFC 7672 3.1.1): that
        # sink's certificate names some other host.
        self.certs["mx-ee"] = pki.leaf("mx-ee", ["not-the-mx.example"])
        self.certs["mx-bad"] = pki.leaf("mx-bad", ["mx-bad.test"])
        self.certs["mx-ta"] = pki.leaf("mx-ta", ["mx-ta.test"])
        self.certs["mx-tawrong"] = pki.leaf("mx-tawrong", ["elsewhere.example"])
        # RFC 7672 3.2.2: the next-hop domain is a reference identifier.
        self.certs["mx-tadomain"] = pki.leaf("mx-tadomain", ["tadomain.test"])
        self.certs["mx-bogus"] = pki.leaf("mx-bogus", ["mx-bogus.test"])
        self.certs["mx-plain"] = pki.leaf("mx-plain", ["mx.plain.invalid"])
        self.certs["mx-notlsa"] = pki.leaf("mx-notlsa", ["mx-notlsa.test"])
        self.certs["mx-unusable"] = pki.leaf("mx-unusable", ["mx-unusable.test"])
        ee = pki.spki_sha256(self.certs["mx-ee"][1])
        ca = pki.cert_sha256(pki.ca)
        bogus_real = pki.spki_sha256(self.certs["mx-bogus"][1])
        tlsa = f"_{mx_port}._tcp"
        wrong = "00" * 32
        lines = [
            f"$ORIGIN {ZONE}", "$TTL 60",
            "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
            "@ IN NS ns.test.",
            "ns IN A 127.0.0.1",
            # DANE-EE(3) SPKI(1) SHA2-256(1) that matches.
            "ee IN MX 10 mx-ee", f"mx-ee IN A {IP['mx-ee']}",
            f"{tlsa}.mx-ee IN TLSA 3 1 1 {ee}",
            # A record that matches nothing.
            "bad IN MX 10 mx-bad", f"mx-bad IN A {IP['mx-bad']}",
            f"{tlsa}.mx-bad IN TLSA 3 1 1 {wrong}",
            # The first MX fails DANE, the second passes.
            "fallback IN MX 10 mx-bad", "fallback IN MX 20 mx-ee",
            # TLSA published, STARTTLS not offered.
            "nostls IN MX 10 mx-nostls", f"mx-nostls IN A {IP['mx-nostls']}",
            f"{tlsa}.mx-nostls IN TLSA 3 1 1 {ee}",
            # DANE-TA(2) Cert(0) SHA2-256(1): the test CA.
            "ta IN MX 10 mx-ta", f"mx-ta IN A {IP['mx-ta']}",
            f"{tlsa}.mx-ta IN TLSA 2 0 1 {ca}",
            "tawrong IN MX 10 mx-tawrong", f"mx-tawrong IN A {IP['mx-tawrong']}",
            f"{tlsa}.mx-tawrong IN TLSA 2 0 1 {ca}",
            "tadomain IN MX 10 mx-tadomain", f"mx-tadomain IN A {IP['mx-tadomain']}",
            f"{tlsa}.mx-tadomain IN TLSA 2 0 1 {ca}",
            # Signed, without TLSA records (a secure denial).
            "notlsa IN MX 10 mx-notlsa", f"mx-notlsa IN A {IP['mx-notlsa']}",
            # Only PKIX-EE(1), unusable for SMTP (RFC 7672 3.1): TLS
            # without authentication, but TLS.
            "unusable IN MX 10 mx-unusable", f"mx-unusable IN A {IP['mx-unusable']}",
            f"{tlsa}.mx-unusable IN TLSA 1 1 1 {ee}",
            "unusableplain IN MX 10 mx-unusable-plain",
            f"mx-unusable-plain IN A {IP['mx-unusable-plain']}",
            f"{tlsa}.mx-unusable-plain IN TLSA 1 1 1 {ee}",
            # Signed with a digest that matches nothing; tampered below.
            "bogus IN MX 10 mx-bogus", f"mx-bogus IN A {IP['mx-bogus']}",
            f"{tlsa}.mx-bogus IN TLSA 3 1 1 {'11' * 32}",
        ]
        zonefile = d / "test.zone"
        zonefile.write_text("\n".join(lines) + "\n")
        ksk = keygen(d, ZONE, ksk=True)
        zsk = keygen(d, ZONE, ksk=False)
        _run(["ldns-signzone", "-o", ZONE, str(zonefile), ksk, zsk], cwd=d)
        signed = d / "test.zone.signed"
        # A man in the middle's change: the TLSA data now matches the sink,
        # the signature no longer matches the data, so the answer is bogus.
        text = signed.read_text()
        pat = re.compile(r"^(" + re.escape(f"{tlsa}.mx-bogus.test.") +
                         r"\s.*TLSA\s+3 1 1 )" + "11" * 32 + r"\s*$",
                         re.M | re.I)
        text, n = pat.subn(lambda m: m.group(1) + bogus_real, text)
        assert n == 1, "the TLSA record to tamper with was not found"
        signed.write_text(text)
        # The trust anchor: the KSK's DS (RFC 4034 5), SHA-256.
        self.anchor = d / "anchor.ds"
        self.anchor.write_text(_run(["ldns-key2ds", "-n", "-2", f"{ksk}.key"], cwd=d))
        # An anchor for a key that never signed anything: all of test. bogus.
        other = keygen(d, ZONE, ksk=True)
        self.wrong_anchor = d / "wrong-anchor.ds"
        self.wrong_anchor.write_text(
            _run(["ldns-key2ds", "-n", "-2", f"{other}.key"], cwd=d))
        plain = d / "plain.zone"
        plain.write_text("\n".join([
            f"$ORIGIN {PLAIN_ZONE}", "$TTL 60",
            "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
            "@ IN NS ns.test.",
            "@ IN MX 10 mx",
            f"mx IN A {IP['mx-plain']}",
            # Unsigned records count for nothing (RFC 7672 2.2): were this
            # one used, delivery would fail.
            f"{tlsa}.mx IN TLSA 3 1 1 {wrong}",
        ]) + "\n")
        conf = d / "nsd.conf"
        conf.write_text(f"""server:
    ip-address: 127.0.0.1@{self.port}
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{d}"
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: "{ZONE}"
    zonefile: "{signed}"
zone:
    name: "{PLAIN_ZONE}"
    zonefile: "{plain}"
""")
        _run(["nsd-checkconf", str(conf)])
        self.proc = subprocess.Popen(["nsd", "-d", "-c", str(conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout=10):
        from dnslib import DNSRecord
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                log = (self.d / "nsd.log").read_text() if (self.d / "nsd.log").exists() else ""
                raise AssertionError(f"nsd exited {self.proc.returncode}:\n{out}\n{log}")
            try:
                q = DNSRecord.question("mx-ee.test.", "A")
                r = DNSRecord.parse(q.send("127.0.0.1", self.port, timeout=0.5))
                if r.rr:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("nsd did not answer")
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def mx_port():
    return free_port()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def signed(tmp_path_factory, mx_port, pki):
    s = SignedDns(tmp_path_factory.mktemp("dnssec"), mx_port, pki)
    yield s
    s.stop()


@pytest.fixture
def sinks(mx_port):
    s = Sinks(mx_port)
    yield s
    s.close()


@pytest.fixture
def tern(tmp_path, signed, mx_port):
    made = []

    def factory(anchor=None):
        d = dict(FAST_DELIVERY, mx_port=mx_port)
        srv = TernServer(tmp_path / f"tern{len(made)}",
                         trusted_networks=["127.0.0.0/8"],
                         sections={"delivery": d,
                                   "dns": {"upstream": [f"127.0.0.1:{signed.port}"],
                                           "trust_anchor": str(anchor or signed.anchor)}})
        made.append(srv)
        _LIVE.append(srv)
        srv.add_user("u@example.test")
        srv.start()
        return srv

    yield factory
    for srv in made:
        shutdown(srv)


def tls_sink(sinks, signed, host, **kw):
    key, _, chain = signed.certs[host]
    return sinks.smtp(IP[host], tls_context=tls_context(key, chain),
                      require_starttls=True, name=f"{host}.test", **kw)


def delivery_events(srv, rcpt):
    p = srv.cli("trace", rcpt, "--json", check=False)
    if p.returncode != 0:
        return []
    return [e for e in json.loads(p.stdout) if e.get("event") == "delivery"]


def queued_text(srv):
    return json.dumps(srv.queue_json())


def assert_deferred(srv, marker_re, sink_handlers, what):
    """The message stays queued with a reply matching `marker_re`, and no
    sink ever saw MAIL FROM."""
    wait_for(lambda: re.search(marker_re, queued_text(srv)),
             what=what, srv=srv)
    js = srv.queue_json()
    assert js and all(r["state"] == "pending" for r in js[0]["recipients"]), js
    for h in sink_handlers:
        assert h.calls["MAIL"] == 0 and h.envelopes == []


# ---------------------------------------------------------------- cases

def test_dane_ee_match_delivers(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-ee")
    srv = tern()
    m = unique("daneee")
    submit(srv, "u@example.test", ["x@ee.test"], m)
    env = sink.wait()[0]
    assert env["tls"] is True and m.encode() in env["data"]
    wait_for(lambda: "dane-ee verified" in srv.log_text(), what="DANE in log", srv=srv)
    wait_for(lambda: any("dane-ee verified" in e.get("tls", "")
                         for e in delivery_events(srv, "x@ee.test")),
             what="DANE in the trace", srv=srv)
    assert "DANE dane (1 usable TLSA record)" in srv.log_text()


def test_tlsa_mismatch_defers_without_mail_from(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-bad")
    srv = tern()
    submit(srv, "u@example.test", ["x@bad.test"], unique("danebad"))
    assert_deferred(srv, r"4\.7\.5 Server certificate not verified \(DANE\)",
                    [sink], "DANE failure recorded")
    # The handshake happened (so the failure is the certificate's, not a
    # connection problem), and nothing followed it.
    assert sink.sessions >= 1
    assert "dane failed" in srv.log_text()


def test_failed_dane_host_falls_back_to_next_mx(signed, sinks, tern):
    bad = tls_sink(sinks, signed, "mx-bad")
    good = tls_sink(sinks, signed, "mx-ee")
    srv = tern()
    m = unique("danefb")
    submit(srv, "u@example.test", ["x@fallback.test"], m)
    assert m.encode() in good.wait()[0]["data"]
    assert bad.sessions >= 1 and bad.calls["MAIL"] == 0


def test_no_starttls_under_dane_is_never_plaintext(signed, sinks, tern):
    sink = sinks.smtp(IP["mx-nostls"], name="mx-nostls.test")
    srv = tern()
    submit(srv, "u@example.test", ["x@nostls.test"], unique("danenotls"))
    assert_deferred(srv, r"4\.7\.4 TLS is required, but was not offered by host "
                    r"mx-nostls\.test", [sink], "4.7.4 recorded")
    assert sink.sessions >= 1


def test_dane_ta_with_mx_name_delivers(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-ta")
    srv = tern()
    m = unique("daneta")
    submit(srv, "u@example.test", ["x@ta.test"], m)
    assert m.encode() in sink.wait()[0]["data"]
    wait_for(lambda: "dane-ta verified" in srv.log_text(), what="DANE-TA in log",
             srv=srv)


def test_dane_ta_accepts_next_hop_domain_name(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-tadomain")
    srv = tern()
    m = unique("danetad")
    submit(srv, "u@example.test", ["x@tadomain.test"], m)
    assert m.encode() in sink.wait()[0]["data"]
    wait_for(lambda: "mx-tadomain.test[127.0.0.88]" in srv.log_text() and
             "dane-ta verified" in srv.log_text(), what="DANE-TA in log", srv=srv)


def test_dane_ta_wrong_name_defers(signed, sinks, tern):
    # The chain ends at the TLSA-named CA, but the certificate names
    # neither the MX host nor the domain (RFC 7672 3.2.2).
    sink = tls_sink(sinks, signed, "mx-tawrong")
    srv = tern()
    submit(srv, "u@example.test", ["x@tawrong.test"], unique("danetaw"))
    assert_deferred(srv, r"4\.7\.5 Server certificate not verified \(DANE\).*"
                    r"hostname mismatch", [sink], "name check failure recorded")


def test_insecure_zone_is_opportunistic(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-plain")
    srv = tern()
    m = unique("daneplain")
    submit(srv, "u@example.test", [f"x@{PLAIN_ZONE.rstrip('.')}"], m)
    env = sink.wait()[0]
    assert env["tls"] is True and m.encode() in env["data"]
    wait_for(lambda: "no DANE: MX answer insecure" in srv.log_text(),
             what="why no DANE, in the log", srv=srv)
    assert "unverified" in srv.log_text()
    wait_for(lambda: any("no DANE: MX answer insecure" in e.get("tls", "")
                         for e in delivery_events(srv, f"x@{PLAIN_ZONE.rstrip('.')}")),
             what="why no DANE, in the trace", srv=srv)


def test_signed_zone_without_tlsa_is_opportunistic(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-notlsa")
    srv = tern()
    m = unique("danenotlsa")
    submit(srv, "u@example.test", ["x@notlsa.test"], m)
    assert m.encode() in sink.wait()[0]["data"]
    wait_for(lambda: "no DANE: no TLSA records" in srv.log_text(),
             what="why no DANE, in the log", srv=srv)


def test_unusable_tlsa_means_tls_without_authentication(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-unusable")
    srv = tern()
    m = unique("daneunusable")
    submit(srv, "u@example.test", ["x@unusable.test"], m)
    env = sink.wait()[0]
    assert env["tls"] is True and m.encode() in env["data"]
    wait_for(lambda: "DANE: no usable TLSA record" in srv.log_text(),
             what="unusable TLSA in the log", srv=srv)


def test_unusable_tlsa_still_requires_starttls(signed, sinks, tern):
    sink = sinks.smtp(IP["mx-unusable-plain"], name="mx-unusable-plain.test")
    srv = tern()
    submit(srv, "u@example.test", ["x@unusableplain.test"], unique("daneunplain"))
    assert_deferred(srv, r"4\.7\.4 TLS is required, but was not offered by host "
                    r"mx-unusable-plain\.test", [sink], "4.7.4 recorded")


def test_bogus_tlsa_answer_skips_the_host(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-bogus")
    srv = tern()
    submit(srv, "u@example.test", ["x@bogus.test"], unique("danebogus"))
    assert_deferred(srv, r"4\.7\.5 MX host mx-bogus\.test skipped \(DANE\): "
                    r"TLSA answer bogus", [sink], "bogus TLSA recorded")
    # Not even a connection: the host is unusable (RFC 7672 2.1.1).
    assert sink.sessions == 0


def test_wrong_trust_anchor_defers(signed, sinks, tern):
    sink = tls_sink(sinks, signed, "mx-ee")
    srv = tern(anchor=signed.wrong_anchor)
    submit(srv, "u@example.test", ["x@ee.test"], unique("daneanchor"))
    assert_deferred(srv, r"4\.4\.3 DNS lookup of MX for ee\.test failed: "
                    r"DNSSEC validation failed", [sink], "bogus MX recorded")
    assert sink.sessions == 0
