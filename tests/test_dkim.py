# DKIM against independent implementations: dkimpy (python3-dkim, with
# python3-nacl for Ed25519) and OpenDKIM (opendkim in test mode, keys from
# opendkim-genkey) sign what `tern check dkim` must verify, and verify what
# `tern dkim sign` produces; tampered copies must fail on both sides. Key
# records come from a python3-dnslib server on 127.0.0.1 that the config's
# [dns] upstream points at; dkimpy and OpenDKIM get the same records
# without DNS (a dnsfunc, TestDNSData).
import base64
import os
import pathlib
import re
import shutil
import stat
import subprocess
import threading

import pytest
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSServer

from conftest import TERN_BIN, TernServer, free_port, run_tool

try:
    import dkim  # python3-dkim
    import nacl.signing  # noqa: F401  (python3-nacl: dkimpy's Ed25519)
except ImportError:  # reported by the tests that need it, with the package
    dkim = None

DOMAIN = "example.test"
CANONS = ["simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed"]

MESSAGE = (
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: Bob <bob@remote.test>\r\n"
    b"Cc: carol@remote.test\r\n"
    b"Subject: Quarterly   numbers\r\n"
    b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <q4-numbers@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"X-Unsigned: anything\r\n"
    b"\r\n"
    b"Hello Bob,  \r\n"
    b"\r\n"
    b"the numbers are\tattached.\r\n"
    b".leading dot stays after unstuffing\r\n"
    b"\r\n"
    b"\r\n")

# RFC 8463 appendix A.3, signed with both of its keys (A.2).
RFC8463_SIGNED = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
    b"\r\n")
RFC8463_RECORDS = {
    "brisbane._domainkey.football.example.com":
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    "test._domainkey.football.example.com":
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6"
        "NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/"
        "e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTI"
        "KT+l/K4w3QIDAQAB",
}


def need_dkimpy():
    if dkim is None:
        pytest.fail("dkimpy is missing: install the Debian packages python3-dkim "
                    "and python3-nacl (scripts/deps.sh test does)", pytrace=False)


def tool(name, package):
    """Path of an outside program (OpenDKIM's live in /usr/sbin), or fail
    with the Debian package that ships it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: install the Debian package {package} "
                    "(scripts/deps.sh test does)", pytrace=False)
    return path


# ---------------------------------------------------------------- DNS

class KeyZone(BaseResolver):
    """TXT records by name, each kept as its 255-octet character-strings;
    every other name is NXDOMAIN."""

    def __init__(self):
        self.records = {}
        self.failing = set()  # names answered with SERVFAIL
        self.lock = threading.Lock()

    @staticmethod
    def _name(n):
        n = n.lower()
        return n if n.endswith(".") else n + "."

    def set(self, name, *texts):
        with self.lock:
            self.records[self._name(name)] = [
                [t[i:i + 255] for i in range(0, max(len(t), 1), 255)] for t in texts]

    def text(self, name):
        with self.lock:
            recs = self.records.get(self._name(name))
        return ["".join(parts) for parts in recs] if recs else []

    def all(self):
        with self.lock:
            return {n.rstrip("."): ["".join(p) for p in r] for n, r in self.records.items()}

    def resolve(self, request, handler):
        reply = request.reply()
        qname = self._name(str(request.q.qname))
        with self.lock:
            recs = self.records.get(qname)
            failing = qname in self.failing
        if failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif recs is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for parts in recs:
                reply.add_answer(RR(qname, QTYPE.TXT, ttl=1,
                                    rdata=TXT([p.encode() for p in parts])))
        return reply

    # dkimpy's resolver hook: the joined text of the record, or None.
    def dnsfunc(self, name, timeout=5):
        texts = self.text(name.decode() if isinstance(name, bytes) else name)
        return texts[0].encode() if texts else None


def zone_line_records(output):
    """(name, text) pairs from `tern dkim keygen`/`dns` zone file lines."""
    out = []
    for line in output.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        m = re.match(r'^(\S+)\. IN TXT ((?:"[^"]*"\s*)+)$', line)
        assert m, f"not a zone file TXT line: {line!r}"
        strings = re.findall(r'"([^"]*)"', m.group(2))
        assert all(len(s) <= 255 for s in strings), line
        out.append((m.group(1), "".join(strings)))
    return out


@pytest.fixture(scope="module")
def zone():
    z = KeyZone()
    port = free_port()
    servers = [DNSServer(z, port=port, address="127.0.0.1"),
               DNSServer(z, port=port, address="127.0.0.1", tcp=True)]
    for s in servers:
        s.start_thread()
    z.port = port
    for name, text in RFC8463_RECORDS.items():
        z.set(name, text)
    yield z
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def tern(tmp_path_factory, zone):
    """A configuration (no server runs): data dir and [dns] for the CLI."""
    return TernServer(tmp_path_factory.mktemp("dkim"),
                      sections={"dns": {"upstream": [f"127.0.0.1:{zone.port}"]}})


@pytest.fixture(scope="module")
def keys(tern, zone):
    """Tern's default keys for example.test (Ed25519 and RSA-2048), published."""
    out = tern.cli("dkim", "keygen", DOMAIN).stdout
    records = zone_line_records(out)
    assert len(records) == 2, out
    found = {}
    for line in out.splitlines():
        m = re.match(r"^; (ed25519|rsa) key (\S+)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    for name, text in records:
        zone.set(name, text)
        selector = name.split("._domainkey.")[0]
        alg = "ed25519" if "k=ed25519" in text else "rsa"
        found[alg + "_selector"] = selector
    return found


@pytest.fixture(scope="module")
def genkey(tmp_path_factory, zone):
    """An RSA-2048 key made by opendkim-genkey, published as it suggests."""
    d = tmp_path_factory.mktemp("genkey")
    run_tool([tool("opendkim-genkey", "opendkim-tools"), "-D", str(d), "-d", DOMAIN,
              "-s", "odk", "-b", "2048"], check=True)
    txt = (d / "odk.txt").read_text()
    text = "".join(re.findall(r'"([^"]*)"', txt))
    assert "p=" in text, txt
    zone.set(f"odk._domainkey.{DOMAIN}", text)
    return d / "odk.private"


# ---------------------------------------------------------------- helpers

def check(tern, message):
    """`tern check dkim` lines: [(result, d, s)], or ["none"]."""
    p = tern.cli("check", "dkim", input=message)
    lines = p.stdout.splitlines()
    if lines == ["none"]:
        return lines
    out = []
    for line in lines:
        m = re.match(r"^(pass|fail|neutral|policy|permerror|temperror) d=(\S*) s=(\S*)$",
                     line)
        assert m, f"unexpected output line {line!r} (stderr: {p.stderr})"
        out.append(m.groups())
    return out


def results(tern, message):
    return [r for r, _, _ in check(tern, message)]


def tern_sign(tern, message, selector, key, algorithm=None):
    args = ["dkim", "sign", "--domain", DOMAIN, "--selector", selector, "--key", str(key)]
    if algorithm:
        args += ["--algorithm", algorithm]
    p = subprocess.run([TERN_BIN, *args], input=message, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def ed25519_seed(pem_path):
    """dkimpy wants the 32-octet seed in base64; PKCS#8 ends with it."""
    pem = pathlib.Path(pem_path).read_text(encoding="ascii")
    der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
    assert len(der) == 48, "not an Ed25519 PKCS#8 key"
    return base64.b64encode(der[-32:])


def dkimpy_sign(message, selector, key, canon="relaxed/relaxed",
                algorithm=b"rsa-sha256", **kwargs):
    need_dkimpy()
    h, b = canon.encode().split(b"/")
    sig = dkim.sign(message, selector.encode(), DOMAIN.encode(), key,
                    canonicalize=(h, b), signature_algorithm=algorithm, **kwargs)
    return sig + message


def dkimpy_verify(message, zone, minkey=1024):
    """One bool per DKIM-Signature, in header order."""
    need_dkimpy()
    d = dkim.DKIM(message, minkey=minkey)
    count = len(re.findall(rb"(?im)^dkim-signature:", message.split(b"\r\n\r\n")[0]))
    out = []
    for i in range(count):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=zone.dnsfunc)))
        except dkim.DKIMException:  # some failures are raised, not returned
            out.append(False)
    return out


def opendkim_conf(tmp_path, lines):
    conf = tmp_path / f"opendkim-{len(list(tmp_path.iterdir()))}.conf"
    conf.write_text("\n".join(["Syslog no", "RequireSafeKeys false", *lines]) + "\n")
    return conf


def opendkim_verify(message, zone, tmp_path):
    """OpenDKIM's verdicts ("pass", "fail", ...) per signature, read from the
    Authentication-Results field it would add (test mode, -vvv)."""
    data = tmp_path / "testdnsdata"
    data.write_text("".join(f"{n} {t[0]}\n" for n, t in zone.all().items() if t))
    conf = opendkim_conf(tmp_path, ["Mode v", f"TestDNSData file:{data}"])
    msg = tmp_path / "verify.eml"
    msg.write_bytes(message)
    p = run_tool([tool("opendkim", "opendkim"), "-x", str(conf), "-t", str(msg), "-vvv"],
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    verdicts = re.findall(r"dkim=(\w+)", p.stdout)
    assert verdicts, p.stdout
    return verdicts


def opendkim_sign(message, selector, key, tmp_path, canon="relaxed/relaxed",
                  algorithm="rsa-sha256"):
    """The message with the DKIM-Signature OpenDKIM (test mode) adds."""
    conf = opendkim_conf(tmp_path, [
        "Mode s", f"Domain {DOMAIN}", f"Selector {selector}", f"KeyFile {key}",
        f"Canonicalization {canon}", f"SignatureAlgorithm {algorithm}"])
    msg = tmp_path / "sign.eml"
    msg.write_bytes(message)
    p = run_tool([tool("opendkim", "opendkim"), "-x", str(conf), "-t", str(msg), "-vvv"],
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    m = re.search(r"INSHEADER: idx=0 hname='DKIM-Signature' hvalue='([^']*)'", p.stdout)
    assert m, p.stdout
    field = "DKIM-Signature: " + m.group(1).replace("\n", "\r\n") + "\r\n"
    return field.encode() + message


def tamper_body(message):
    return message.replace(b"numbers are", b"numbers were", 1)


def tamper_header(message):
    return message.replace(b"Subject: Quarterly", b"Subject: Yearly", 1)


# ---------------------------------------------------------------- keys and CLI

def test_keygen_writes_private_files_and_prints_records(tern, keys):
    for alg in ("ed25519", "rsa"):
        path = keys[alg]
        assert re.search(rf"/dkim/{DOMAIN}/t\d{{6}}[er]\.{alg}\.pem$", path), path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert keys["ed25519_selector"].endswith("e")
    assert keys["rsa_selector"].endswith("r")
    # RSA-2048's record needs two character-strings.
    out = tern.cli("dkim", "dns", DOMAIN).stdout
    rsa_line = [l for l in out.splitlines() if "k=rsa" in l][0]
    assert rsa_line.count('" "') == 1, rsa_line
    listing = tern.cli("dkim", "list").stdout.splitlines()
    assert listing[0].split() == ["DOMAIN", "SELECTOR", "ALGORITHM", "CREATED", "DNS", "RECORD"]
    rows = {tuple(l.split()[1:3]) for l in listing[1:]}
    assert (keys["ed25519_selector"], "ed25519") in rows
    assert (keys["rsa_selector"], "rsa") in rows
    assert all(f"._domainkey.{DOMAIN}" in l for l in listing[1:])


def test_keygen_rotation_and_refusals(tmp_path):
    srv = TernServer(tmp_path / "rot")
    first = srv.cli("dkim", "keygen", "rot.test", "--algorithm", "ed25519").stdout
    assert len(zone_line_records(first)) == 1
    # The same (default) selector again is refused, the old key stays.
    again = srv.cli("dkim", "keygen", "rot.test", "--algorithm", "ed25519", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    # A second selector is a rotation: both keys are listed.
    srv.cli("dkim", "keygen", "rot.test", "--selector", "next", "--algorithm", "ed25519")
    listing = srv.cli("dkim", "list").stdout
    assert len(listing.splitlines()) == 3 and " next " in listing
    bad = srv.cli("dkim", "keygen", "rot.test", "--selector", "x", check=False)
    assert bad.returncode == 1 and "--algorithm" in bad.stderr
    bad = srv.cli("dkim", "keygen", "rot.test", "--algorithm", "dsa", check=False)
    assert bad.returncode == 1
    srv.cli("dkim", "remove", "rot.test", "next")
    assert " next " not in srv.cli("dkim", "list").stdout


def test_unsigned_message_is_none(tern):
    assert check(tern, MESSAGE) == ["none"]


def test_rfc8463_example_passes_through_dns(tern, zone):
    assert check(tern, RFC8463_SIGNED) == [
        ("pass", "football.example.com", "brisbane"),
        ("pass", "football.example.com", "test")]
    # LF line ends, as in a saved file, are read as CRLF.
    lf = RFC8463_SIGNED.replace(b"\r\n", b"\n")
    assert results(tern, lf) == ["pass", "pass"]


# ---------------------------------------------------------------- others sign, Tern verifies

@pytest.mark.parametrize("canon", CANONS)
def test_tern_verifies_dkimpy_rsa(tern, genkey, canon):
    signed = dkimpy_sign(MESSAGE, "odk", genkey.read_bytes(), canon)
    assert check(tern, signed) == [("pass", DOMAIN, "odk")]
    assert results(tern, tamper_body(signed)) == ["fail"]
    assert results(tern, tamper_header(signed)) == ["fail"]


@pytest.mark.parametrize("canon", CANONS)
def test_tern_verifies_dkimpy_ed25519(tern, keys, canon):
    signed = dkimpy_sign(MESSAGE, keys["ed25519_selector"], ed25519_seed(keys["ed25519"]),
                         canon, algorithm=b"ed25519-sha256")
    assert check(tern, signed) == [("pass", DOMAIN, keys["ed25519_selector"])]
    assert results(tern, tamper_body(signed)) == ["fail"]
    assert results(tern, tamper_header(signed)) == ["fail"]


# OpenDKIM 2.11's Ed25519 signatures with simple header canonicalization
# fail everywhere (OpenDKIM's own verifier and dkimpy included), so Ed25519
# is taken with relaxed headers only.
@pytest.mark.parametrize("alg,canon", [
    ("rsa", "simple/simple"), ("rsa", "relaxed/simple"), ("rsa", "relaxed/relaxed"),
    ("ed25519", "relaxed/simple"), ("ed25519", "relaxed/relaxed")])
def test_tern_verifies_opendkim(tern, genkey, keys, tmp_path, alg, canon):
    if alg == "rsa":
        selector, key, algorithm = "odk", genkey, "rsa-sha256"
    else:
        selector, key, algorithm = keys["ed25519_selector"], keys["ed25519"], "ed25519-sha256"
    signed = opendkim_sign(MESSAGE, selector, key, tmp_path, canon, algorithm)
    assert f"c={canon};" in signed.decode()
    assert check(tern, signed) == [("pass", DOMAIN, selector)]
    assert results(tern, tamper_body(signed)) == ["fail"]
    assert results(tern, tamper_header(signed)) == ["fail"]


def test_body_length_tag(tern, genkey):
    signed = dkimpy_sign(MESSAGE, "odk", genkey.read_bytes(), length=True)
    assert b"l=" in signed.split(b"\r\n\r\n")[0]
    assert results(tern, signed) == ["pass"]
    # Text after the signed length is not covered (RFC 6376 8.2)...
    assert results(tern, signed + b"appended by a mailing list\r\n") == ["pass"]
    # ...a change inside it is.
    assert results(tern, tamper_body(signed)) == ["fail"]


def test_weak_crypto_never_passes(tern, zone, tmp_path):
    need_dkimpy()
    # RFC 8301 3.1: rsa-sha1; 3.2: RSA keys under 1024 bits.
    small = tmp_path / "small.pem"
    run_tool(["openssl", "genrsa", "-out", str(small), "512"], check=True,
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pub = run_tool(["openssl", "rsa", "-in", str(small), "-pubout", "-outform", "DER"],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    zone.set(f"small._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode())
    signed = dkimpy_sign(MESSAGE, "small", small.read_bytes())
    # The signature itself is right.
    assert dkimpy_verify(signed, zone, minkey=512) == [True]
    assert check(tern, signed) == [("policy", DOMAIN, "small")]
    sha1 = dkimpy_sign(MESSAGE, "small", small.read_bytes(), algorithm=b"rsa-sha1")
    assert check(tern, sha1) == [("policy", DOMAIN, "small")]


def test_key_record_problems(tern, zone, keys):
    signed = dkimpy_sign(MESSAGE, "gone", ed25519_seed(keys["ed25519"]),
                         algorithm=b"ed25519-sha256")
    # No record at all, then a revoked one (empty p=), then a wrong k=.
    assert check(tern, signed) == [("permerror", DOMAIN, "gone")]
    zone.set(f"gone._domainkey.{DOMAIN}", "v=DKIM1; k=ed25519; p=")
    assert results(tern, signed) == ["permerror"]
    ed_record = zone.text(f"{keys['ed25519_selector']}._domainkey.{DOMAIN}")[0]
    zone.set(f"gone._domainkey.{DOMAIN}", ed_record.replace("k=ed25519", "k=rsa"))
    assert results(tern, signed) == ["permerror"]
    zone.set(f"gone._domainkey.{DOMAIN}", ed_record)
    assert results(tern, signed) == ["pass"]


def test_failing_dns_is_temperror(tern, zone, keys):
    signed = dkimpy_sign(MESSAGE, "flaky", ed25519_seed(keys["ed25519"]),
                         algorithm=b"ed25519-sha256")
    with zone.lock:
        zone.failing.add(f"flaky._domainkey.{DOMAIN}.")
    assert check(tern, signed) == [("temperror", DOMAIN, "flaky")]


def test_signatures_are_reported_in_header_order(tern, keys, genkey):
    m = dkimpy_sign(MESSAGE, "odk", genkey.read_bytes())
    m = dkimpy_sign(m, "nokey", genkey.read_bytes())
    m = tern_sign(tern, m, keys["ed25519_selector"], keys["ed25519"])
    assert check(tern, m) == [("pass", DOMAIN, keys["ed25519_selector"]),
                              ("permerror", DOMAIN, "nokey"),
                              ("pass", DOMAIN, "odk")]


# ---------------------------------------------------------------- Tern signs, others verify

@pytest.mark.parametrize("alg", ["ed25519", "rsa"])
def test_others_verify_tern(tern, zone, keys, tmp_path, alg):
    selector = keys[alg + "_selector"]
    algorithm = "ed25519-sha256" if alg == "ed25519" else "rsa-sha256"
    signed = tern_sign(tern, MESSAGE, selector, keys[alg], algorithm)
    header = signed.split(b"\r\n\r\n")[0].decode()
    assert signed.endswith(MESSAGE)
    assert f"a={algorithm};" in header and "c=relaxed/relaxed;" in header
    assert re.search(r"\bt=\d+;", header)
    assert all(len(l) <= 78 for l in header.split("\r\n")), header
    h = re.sub(r"\s", "", re.search(r"\bh=([^;]*);", header).group(1))
    assert h == "From:From:To:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type"

    assert dkimpy_verify(signed, zone) == [True]
    assert opendkim_verify(signed, zone, tmp_path) == ["pass"]
    assert check(tern, signed) == [("pass", DOMAIN, selector)]

    for bad in (tamper_body(signed), tamper_header(signed),
                # A second From: on top: From is signed once more than it
                # occurs, so this breaks the signature.
                signed.replace(b"From: Alice", b"From: Mallory <m@evil.test>\r\nFrom: Alice", 1)):
        assert dkimpy_verify(bad, zone) == [False]
        assert opendkim_verify(bad, zone, tmp_path) == ["fail"]
        assert results(tern, bad) == ["fail"]


def test_tern_signs_with_opendkim_genkey_key(tern, zone, genkey, tmp_path):
    signed = tern_sign(tern, MESSAGE, "odk", genkey)
    assert dkimpy_verify(signed, zone) == [True]
    assert opendkim_verify(signed, zone, tmp_path) == ["pass"]
    # The traditional "BEGIN RSA PRIVATE KEY" form too.
    traditional = tmp_path / "odk-traditional.pem"
    run_tool(["openssl", "rsa", "-in", str(genkey), "-traditional", "-out", str(traditional)],
             check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert "BEGIN RSA PRIVATE KEY" in traditional.read_text()
    signed = tern_sign(tern, MESSAGE, "odk", traditional, "rsa-sha256")
    assert dkimpy_verify(signed, zone) == [True]
    # The algorithm must fit the key.
    p = subprocess.run([TERN_BIN, "dkim", "sign", "--domain", DOMAIN, "--selector",
                        "odk", "--key", str(genkey), "--algorithm", "ed25519-sha256"],
                       input=MESSAGE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 1 and b"rsa" in p.stderr


def test_both_default_keys_sign_and_lf_input_stays_lf(tern, zone, keys, tmp_path):
    lf = MESSAGE.replace(b"\r\n", b"\n")
    once = tern_sign(tern, lf, keys["rsa_selector"], keys["rsa"])
    twice = tern_sign(tern, once, keys["ed25519_selector"], keys["ed25519"])
    assert b"\r" not in twice and twice.endswith(lf)
    crlf = twice.replace(b"\n", b"\r\n")
    assert dkimpy_verify(crlf, zone) == [True, True]
    assert opendkim_verify(crlf, zone, tmp_path) == ["pass", "pass"]
    assert check(tern, twice) == [("pass", DOMAIN, keys["ed25519_selector"]),
                                  ("pass", DOMAIN, keys["rsa_selector"])]
