# ACME (issue 16) end to end against Pebble, the ACME test server Debian
# packages: Tern orders a certificate with HTTP-01 and with TLS-ALPN-01,
# installs it without a restart, renews it, and keeps serving the saved
# one when the CA is gone. The certificates are checked as a client would:
# a full chain verification up to Pebble's root and the host name.
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

import conftest
import faultkit
from conftest import DOMAIN, HOSTNAME, free_port, need_tool

NAMES = [HOSTNAME, f"mta-sts.{DOMAIN}"]


class Pebble:
    """A private Pebble on loopback ports, resolving names through `dns`."""

    def __init__(self, base, dns_port, http_port, tls_port):
        need_tool("openssl")
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = base / "pebble-cert.pem", base / "pebble-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(self.key), "-out",
             str(self.cert), "-days", "2", "-subj", "/CN=pebble.test", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)
        self.port, self.mgmt = free_port(), free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(self.cert), "privateKey": str(self.key),
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        (base / "pebble.json").write_text(json.dumps(config))
        self.log = open(base / "pebble.log", "wb")
        # No random validation delay; every order needs its challenges
        # (no authorization reuse). Pebble still rejects 5% of nonces,
        # which the client must retry (RFC 8555 6.5).
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_AUTHZREUSE="0")
        self.proc = subprocess.Popen(
            ["pebble", "-config", str(base / "pebble.json"),
             "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=base)
        faultkit.wait_for(self.ready, timeout=20, what="pebble listening")

    def ready(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def root(self):
        """Pebble's issuing root (a new one every run)."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt}/roots/0",
                                    context=ctx, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def acme_setup(tmp_path):
    """(start(challenge, **acme) -> server, pebble) with DNS for our names."""
    need_tool("pebble")
    zone = faultkit.start_dns()
    for name in NAMES:
        zone.a(name, "127.0.0.1")
    made = []

    def start(challenge, listeners=("http", "https", "imaps"), **acme):
        ports = {s: free_port() for s in listeners}
        pebble = Pebble(tmp_path / "pebble", zone.port, ports.get("http", free_port()),
                        ports.get("https", free_port()))
        section = {"directory": pebble.directory, "contact": f"admin@{DOMAIN}",
                   "names": NAMES, "challenge": challenge, "ca_file": str(pebble.cert)}
        section.update(acme)
        srv = conftest.TernServer(
            tmp_path / "srv",
            extra_listen=[(f"127.0.0.1:{p}", s) for s, p in ports.items()],
            sections={"acme": section})
        srv.ports = ports
        conftest._LIVE.append(srv)
        made.append((srv, pebble))
        srv.start()
        return srv, pebble

    yield start
    for srv, pebble in made:
        try:
            conftest.shutdown(srv)
        finally:
            pebble.stop()
    faultkit.stop_dns(zone)


def installed(srv, count=1, timeout=60):
    """Waits for the count-th 'installed' line; returns the serials so far,
    as bare hex without leading zeros (the log prints whole bytes, so a
    serial may start with 0; Python's getpeercert() drops it)."""
    pattern = re.compile(r"acme: certificate for \S+ installed \(serial ([0-9A-F]+)")
    serials = []

    def enough():
        serials[:] = [format(int(s, 16), "X") for s in pattern.findall(srv.log_text())]
        return len(serials) >= count
    faultkit.wait_for(enough, timeout=timeout, what=f"{count} ACME certificate(s)",
                      srv=srv)
    return serials


def served(port, root_pem, name, serial):
    """Waits until a strict client gets the certificate `serial` (the
    manager logs "installed" before the io threads have swapped it in)."""
    def check():
        try:
            return verified_peer(port, root_pem, name)[0] == serial
        except (ssl.SSLError, OSError):
            return False
    faultkit.wait_for(check, timeout=20, what=f"certificate {serial} served on {port}")


def verified_peer(port, root_pem, name):
    """Handshakes as a strict client (chain to `root_pem`, host `name`)."""
    ctx = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
            return format(int(cert["serialNumber"], 16), "X"), cert


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_issue_and_serve(acme_setup, challenge):
    listeners = ("http", "https", "imaps") if challenge == "http-01" else ("https", "imaps")
    srv, pebble = acme_setup(challenge, listeners)
    serial = installed(srv)[0]
    root = pebble.root()
    served(srv.ports["imaps"], root, HOSTNAME, serial)
    # Every TLS listener serves it, for each of its names, with the chain.
    for name in NAMES:
        got, cert = verified_peer(srv.ports["imaps"], root, name)
        assert got == serial
        assert ("DNS", name) in cert["subjectAltName"]
    got, _ = verified_peer(srv.ports["https"], root, f"mta-sts.{DOMAIN}")
    assert got == serial
    # The MTA-STS policy, fetched as a sending MTA does (RFC 8461 3.3:
    # HTTPS with a valid certificate for mta-sts.DOMAIN).
    ctx = ssl.create_default_context(cadata=root)
    with socket.create_connection(("127.0.0.1", srv.ports["https"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=f"mta-sts.{DOMAIN}") as tls:
            tls.sendall(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.{DOMAIN}"
                        "\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and b"version: STSv1" in reply
    # The files: one chain-and-key file, private; the account key kept.
    acme_dir = srv.data_dir / "acme"
    assert (acme_dir / "certificate.pem").stat().st_mode & 0o077 == 0
    assert (acme_dir / "account.key").stat().st_mode & 0o077 == 0
    assert f"answering {challenge} for {HOSTNAME}" in srv.log_text()


def test_renewal_swaps_without_dropping_connections(acme_setup):
    # Pebble's certificates last five years: with renew_days above that,
    # every check renews, so a renewal happens within seconds.
    srv, pebble = acme_setup("http-01", renew_days=3650, check_interval=2)
    installed(srv, 1)
    root = pebble.root()

    def verifies():
        try:
            return verified_peer(srv.ports["imaps"], root, HOSTNAME)[0]
        except (ssl.SSLError, OSError):
            return None
    faultkit.wait_for(verifies, timeout=20, what="an ACME certificate served", srv=srv)
    ctx = ssl.create_default_context(cadata=root)
    raw = socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=10)
    held = ctx.wrap_socket(raw, server_hostname=HOSTNAME)
    first = format(int(held.getpeercert()["serialNumber"], 16), "X")
    try:
        assert held.recv(4096).startswith(b"* OK")
        serials = installed(srv, 3, timeout=120)
        assert len(set(serials)) == len(serials) and first in serials, (first, serials)
        # New handshakes get a newer one; the connection made before the
        # swap still works on its old certificate.
        faultkit.wait_for(lambda: verifies() not in (None, first), timeout=30,
                          what="a renewed certificate served", srv=srv)
        held.sendall(b"a1 NOOP\r\n")
        reply = b""
        while b"a1 " not in reply:
            chunk = held.recv(4096)
            assert chunk, reply
            reply += chunk
        assert b"a1 OK" in reply
        assert format(int(held.getpeercert()["serialNumber"], 16), "X") == first
    finally:
        held.close()


def test_saved_certificate_survives_a_restart_without_the_ca(acme_setup):
    srv, pebble = acme_setup("http-01", check_interval=2)
    serial = installed(srv)[0]
    root = pebble.root()
    pebble.stop()
    srv.stop()
    srv.start()
    assert verified_peer(srv.ports["imaps"], root, HOSTNAME)[0] == serial
    # Still valid for years: no order is attempted, so no error either.
    faultkit.wait_for(lambda: "more days" in srv.log_text(), timeout=10,
                      what="the saved certificate found valid", srv=srv)
    assert "acme: renewing" not in srv.log_text()
