# Mail authentication through the server, end to end (issue 13): SPF at
# MAIL, DKIM while the message streams, DMARC after the final dot, the
# Authentication-Results header in the mailbox, forged claims of our
# authserv-id removed; and on the way out, DKIM signatures that dkimpy
# verifies at a test sink. DNS is a python3-dnslib server on 127.0.0.1.
import email
import time
import email.policy
import os
import re
import smtplib
import subprocess

import pytest
from dnslib import QTYPE, TXT

from conftest import PASSWORD, TernServer, build_message, free_port, shutdown, unique, _LIVE
from test_outbound import FAST_DELIVERY, Zone, dns, mx_port, sinks  # noqa: F401

try:
    import dkim  # python3-dkim
except ImportError:
    dkim = None

HOST = "mx.example.test"


def txt(zone, name, *texts):
    chunks = []
    for t in texts:
        b = t.encode()
        chunks.append([b[i:i + 255] for i in range(0, len(b), 255)] or [b""])
    for c in chunks:
        zone.add(name, TXT(c), QTYPE.TXT)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    """An RSA key for dkimpy to sign with, and its DNS record text."""
    if dkim is None:
        pytest.fail("dkimpy is not installed: install the Debian package "
                    "python3-dkim (scripts/deps.sh test does)", pytrace=False)
    d = tmp_path_factory.mktemp("key")
    key = d / "k.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"],
                   check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64
    return key.read_bytes(), "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()


@pytest.fixture(scope="module")
def world(dns, keypair):  # noqa: F811
    """Sender domains with SPF, DKIM and DMARC records."""
    _, record = keypair
    # good.test: everything passes for 127.0.0.1.
    txt(dns, "good.test", "v=spf1 ip4:127.0.0.0/8 -all")
    txt(dns, "sel._domainkey.good.test", record)
    txt(dns, "_dmarc.good.test", "v=DMARC1; p=reject")
    # strict.test: p=reject, SPF that 127.0.0.1 fails.
    txt(dns, "strict.test", "v=spf1 ip4:192.0.2.1 -all")
    txt(dns, "_dmarc.strict.test", "v=DMARC1; p=reject")
    # quiet.test: p=quarantine.
    txt(dns, "_dmarc.quiet.test", "v=DMARC1; p=quarantine")
    # nodmarc.test: SPF -all, no DMARC.
    txt(dns, "nodmarc.test", "v=spf1 ip4:192.0.2.1 -all")
    # other.test: SPF passes for us, no DMARC (a list or forwarder).
    txt(dns, "other.test", "v=spf1 ip4:127.0.0.0/8 -all")
    return dns


def server(tmp_path, dns, mailauth=None, **top):  # noqa: F811
    m = {"verify": True}
    m.update(mailauth or {})
    srv = TernServer(tmp_path / "srv", sections={
        "dns": {"upstream": [f"127.0.0.1:{dns.port}"]}, "mailauth": m}, **top)
    _LIVE.append(srv)
    srv.add_user("u@example.test")
    srv.start()
    return srv


@pytest.fixture
def srv(tmp_path, world):
    s = server(tmp_path, world)
    yield s
    shutdown(s)


def message(sender_header, marker, extra=()):
    return build_message(marker, [f"mailauth {marker}"], sender=sender_header,
                         to="u@example.test", extra_headers=extra)


def dkim_sign(data, keypair, domain="good.test"):
    key, _ = keypair
    sig = dkim.sign(data, b"sel", domain.encode(), key,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig + data


def send(srv, mail_from, data):
    with srv.connect() as c:
        c.start()
        return c.send_message(mail_from, ["u@example.test"], data)


def auth_results(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [" ".join(v.split()) for v in msg.get_all("Authentication-Results", [])]


def test_signed_message_from_spf_passing_domain(srv, keypair):
    m = unique("good")
    data = dkim_sign(message("alice@good.test", m), keypair)
    r = send(srv, "alice@good.test", data)
    assert r.code == 250, r
    raw = srv.wait_messages("u@example.test", m)[0]
    ar = auth_results(raw)
    assert len(ar) == 1, ar
    assert ar[0].startswith(f"{HOST};"), ar
    assert "spf=pass smtp.mailfrom=alice@good.test" in ar[0], ar
    # RFC 7208 2.3: the HELO name is checked on its own too (no SPF record
    # for the test client's name: none).
    assert re.search(r"spf=none smtp\.helo=\S+", ar[0]), ar
    assert "dkim=pass header.d=good.test header.s=sel" in ar[0], ar
    assert "dmarc=pass header.from=good.test" in ar[0], ar
    # The stored message is the one sent, after our trace fields.
    assert raw.endswith(data.replace(b"\r\n", b"\n"))
    log = srv.log_text()
    assert re.search(r"smtp spf client=127\.0\.0\.1 .* result=pass", log)
    assert re.search(r"smtp mailauth .* spf=pass dkim=pass/good\.test dmarc=pass/good\.test "
                     r"action=accept", log), log[-2000:]


def test_forged_from_of_reject_domain_is_refused(srv):
    m = unique("forged")
    data = message("ceo@strict.test", m)
    r = send(srv, "someone@other.test", data)
    assert (r.code, r.enhanced) == (550, "5.7.1"), r
    assert "DMARC" in r.text and "strict.test" in r.text, r
    srv.assert_no_message("u@example.test", m)
    assert "action=reject" in srv.log_text()


def test_quarantine_policy_marks_as_junk(srv):
    m = unique("quiet")
    r = send(srv, "x@other.test", message("boss@quiet.test", m))
    assert r.code == 250, r
    # Delivered into the account's Junk folder (a Maildir++ folder IMAP
    # shows with \Junk), not the INBOX.
    junk = srv.maildir("u@example.test") / ".Junk"
    deadline = time.monotonic() + 10
    found = []
    while not found and time.monotonic() < deadline:
        found = [p for sub in ("new", "cur") if (junk / sub).is_dir()
                 for p in (junk / sub).iterdir() if m.encode() in p.read_bytes()]
        time.sleep(0.05)
    assert len(found) == 1, f"{m} not in {junk}"
    raw = found[0].read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg["X-Spam"].startswith("yes"), msg["X-Spam"]
    assert "dmarc=fail" in auth_results(raw)[0]
    assert not srv.messages("u@example.test", m)  # not in the INBOX


def test_our_authserv_id_claims_are_removed(srv, keypair):
    m = unique("claims")
    forged = [f"Authentication-Results: {HOST}; dkim=pass header.d=bank.test",
              f"Authentication-Results: (comment) {HOST.upper()}.;\r\n spf=pass",
              "Authentication-Results: elsewhere.test; spf=fail"]
    data = dkim_sign(message("alice@good.test", m, extra=forged), keypair)
    assert send(srv, "alice@good.test", data).code == 250
    raw = srv.wait_messages("u@example.test", m)[0]
    ar = auth_results(raw)
    assert len(ar) == 2, ar  # ours, and the other host's
    assert any(a.startswith("elsewhere.test;") for a in ar), ar
    assert not any("bank.test" in a for a in ar), ar
    # Removing unsigned fields kept the signature valid.
    assert "dkim=pass" in [a for a in ar if a.startswith(HOST)][0]


def test_null_sender_checks_helo(srv):
    m = unique("bounce")
    with srv.connect() as c:
        c.start("good.test")
        r = c.send_message("", ["u@example.test"], message("mailer@good.test", m))
        assert r.code == 250, r
    ar = auth_results(srv.wait_messages("u@example.test", m)[0])[0]
    assert "spf=pass smtp.helo=good.test" in ar, ar


def test_spf_fail_is_recorded_by_default(srv):
    m = unique("spffail")
    r = send(srv, "x@nodmarc.test", message("x@nodmarc.test", m))
    assert r.code == 250, r
    ar = auth_results(srv.wait_messages("u@example.test", m)[0])[0]
    assert "spf=fail smtp.mailfrom=x@nodmarc.test" in ar and "dmarc=none" in ar, ar


def test_spf_fail_without_dmarc_rejected_when_configured(tmp_path, world):
    s = server(tmp_path, world, {"spf_fail": "reject"})
    try:
        with s.connect() as c:
            c.start()
            r = c.cmd("MAIL FROM:<x@nodmarc.test>")
            assert (r.code, r.enhanced) == (550, "5.7.23"), r
            # A domain with DMARC gets its say after the message instead.
            r = c.cmd("MAIL FROM:<x@strict.test>")
            assert r.code == 250, r
    finally:
        shutdown(s)


def test_trusted_clients_are_not_checked(tmp_path, world):
    s = server(tmp_path, world, trusted_networks=["127.0.0.0/8"])
    try:
        m = unique("trusted")
        assert send(s, "ceo@strict.test", message("ceo@strict.test", m)).code == 250
        assert auth_results(s.wait_messages("u@example.test", m)[0]) == []
    finally:
        shutdown(s)


def test_check_message_cli_prints_the_header(srv, keypair, tmp_path):
    m = unique("cli")
    data = dkim_sign(message("alice@good.test", m), keypair)
    p = srv.cli("check", "message", "--ip", "127.0.0.1", "--helo", "client.test",
                "--mail-from", "alice@good.test", input=data)
    out = " ".join(p.stdout.split())
    assert out.startswith(f"Authentication-Results: {HOST};"), p.stdout
    assert "spf=pass" in out and "dkim=pass" in out and "dmarc=pass" in out, out
    p = srv.cli("check", "dmarc", "--ip", "127.0.0.1", "--helo", "client.test",
                "--mail-from", "someone@other.test", input=message("ceo@strict.test", m))
    assert p.stdout.splitlines()[0] == "dmarc=fail header.from=strict.test policy=reject", \
        p.stdout


def arc_seal(srv, dns, data, sealer, keys={}):  # noqa: F811,B006
    """`data` as a mailing list at `sealer` passes it on: sealed with an
    ARC set (RFC 8617) that says DMARC passed there, key published."""
    if (srv, sealer) not in keys:
        out = srv.cli("dkim", "keygen", sealer, "--algorithm", "rsa",
                      "--selector", "arc").stdout
        for line in out.splitlines():
            mt = re.match(r'^(\S+)\. IN TXT ((?:"[^"]*"\s*)+)$', line)
            if mt:
                txt(dns, mt.group(1), "".join(re.findall(r'"([^"]*)"', mt.group(2))))
        keys[(srv, sealer)] = re.search(r"^; \w+ key (\S+)$", out, re.M).group(1)
    key = keys[(srv, sealer)]
    return srv.cli("arc", "seal", "--domain", sealer, "--selector", "arc", "--key", key,
                   "--authserv-id", "mx." + sealer, "--auth-results",
                   "spf=pass smtp.mailfrom=ceo@strict.test; dmarc=pass header.from=strict.test",
                   input=data).stdout.encode()


def test_trusted_arc_sealer_overrides_dmarc_reject(tmp_path, world):
    """A list re-sends a p=reject domain's mail (DMARC fails here, as the
    list's envelope and changes break it): a valid ARC chain whose last
    sealer is in arc_trusted_sealers lets it in, recorded as overridden;
    the same chain from a sealer not on the list does not."""
    s = server(tmp_path, world, mailauth={"arc_trusted_sealers": ["lists.example"]})
    try:
        m = unique("arc")
        data = arc_seal(s, world, message("ceo@strict.test", m), "lists.example")
        r = send(s, "bounces@other.test", data)
        assert r.code == 250, r
        ar = auth_results(s.wait_messages("u@example.test", m)[0])
        assert len(ar) == 1, ar
        assert "arc=pass smtp.remote-ip=127.0.0.1" in ar[0], ar
        assert "dmarc=fail" in ar[0] and "overridden by ARC sealer lists.example" in ar[0], ar
        assert re.search(r"mailauth .* arc=pass/lists\.example \(dmarc overridden by arc\) "
                         r"action=accept", s.log_text())
        # An untrusted sealer's chain passes too, but is only recorded.
        m = unique("arc-untrusted")
        data = arc_seal(s, world, message("ceo@strict.test", m), "elsewhere.example")
        r = send(s, "bounces@other.test", data)
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        # A tampered chain from the trusted sealer fails and is refused.
        m = unique("arc-tampered")
        data = arc_seal(s, world, message("ceo@strict.test", m), "lists.example")
        data = data.replace(b"mailauth ", b"mailauth tampered ", 1)
        r = send(s, "bounces@other.test", data)
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        assert re.search(r"mailauth .* arc=fail/lists\.example .*action=reject", s.log_text())
    finally:
        shutdown(s)


# ---------------------------------------------------------------- outbound

def test_submission_leaves_with_two_signatures(tmp_path, world, sinks, mx_port):  # noqa: F811
    """A message submitted with AUTH leaves through outbound delivery with
    an Ed25519 and an RSA signature of example.test that dkimpy verifies."""
    dns = world
    sub_port = free_port()
    srv = TernServer(tmp_path / "out", sections={
        "dns": {"upstream": [f"127.0.0.1:{dns.port}"]},
        "delivery": dict(FAST_DELIVERY, mx_port=mx_port),
        "mailauth": {"verify": True}},
        extra_listen=[(f"127.0.0.1:{sub_port}", "submission",
                       {"allow_plaintext_auth": True})])
    _LIVE.append(srv)
    try:
        srv.add_user("u@example.test")
        out = srv.cli("dkim", "keygen", "example.test").stdout
        records = {}
        for line in out.splitlines():
            mt = re.match(r'^(\S+)\.\s+(?:\d+\s+)?IN\s+TXT\s+(.*)$', line.strip())
            if mt:
                records[mt.group(1)] = "".join(re.findall(r'"([^"]*)"', mt.group(2)))
        assert len(records) == 2, out
        for name, text in records.items():
            txt(dns, name, text)
        dns.mx("far.test", (10, "mx.far.test"))
        dns.a("mx.far.test", "127.0.0.61")
        sink = sinks.smtp("127.0.0.61")
        srv.start()
        assert "dkim: 2 key(s) for example.test" in srv.log_text()
        m = unique("signed")
        data = build_message(m, ["signed on the way out"], sender="u@example.test",
                             to="friend@far.test")
        with smtplib.SMTP("127.0.0.1", sub_port, timeout=10) as c:
            c.ehlo("client.test")
            c.login("u@example.test", PASSWORD)
            c.sendmail("u@example.test", ["friend@far.test"], data)
        env = sink.wait(1, timeout=20)[0]
        got = env["data"]
        sigs = [ln for ln in got.split(b"\r\n") if ln.lower().startswith(b"dkim-signature:")]
        assert len(sigs) == 2, got[:2000]

        def dnsfunc(name, timeout=5):
            n = name.decode().rstrip(".")
            return records.get(n, "").encode()
        d = dkim.DKIM(got)
        assert d.verify(idx=0, dnsfunc=dnsfunc), d.logger
        assert d.verify(idx=1, dnsfunc=dnsfunc)
        assert b"a=ed25519-sha256" in got and b"a=rsa-sha256" in got
    finally:
        shutdown(srv)


# ---------------------------------------------------------------- SRS

def test_alias_forward_uses_srs_and_bounces_come_back(tmp_path, world, keypair, sinks,  # noqa: F811
                                                      mx_port):  # noqa: F811
    """An alias forwarding to a remote address sends with an SRS MAIL FROM
    (so the next hop's SPF sees our domain) and an ARC set that dkimpy's
    verifier accepts (RFC 8617: what we saw on arrival, for the next
    hop); a bounce to that address reaches the original sender; a forged
    one is refused."""
    dns = world
    dns.mx("far.test", (10, "mx.far.test"))
    dns.a("mx.far.test", "127.0.0.62")
    dns.mx("good.test", (10, "mx.good.test"))
    dns.a("mx.good.test", "127.0.0.63")
    far = sinks.smtp("127.0.0.62")
    home = sinks.smtp("127.0.0.63")
    srv = TernServer(tmp_path / "fwd", sections={
        "dns": {"upstream": [f"127.0.0.1:{dns.port}"]},
        "delivery": dict(FAST_DELIVERY, mx_port=mx_port),
        "mailauth": {"verify": True}})
    _LIVE.append(srv)
    try:
        srv.add_user("u@example.test")
        srv.add_alias("fwd@example.test", ["friend@far.test", "u@example.test"])
        out = srv.cli("dkim", "keygen", "example.test", "--algorithm", "rsa",
                      "--selector", "fwd").stdout
        records = {}
        for line in out.splitlines():
            mt = re.match(r'^(\S+)\.\s+(?:\d+\s+)?IN\s+TXT\s+(.*)$', line.strip())
            if mt:
                records[mt.group(1)] = "".join(re.findall(r'"([^"]*)"', mt.group(2)))
                txt(dns, mt.group(1), records[mt.group(1)])
        srv.start()
        m = unique("srs")
        data = build_message(m, ["forwarded"], sender="alice@good.test", to="fwd@example.test")
        data = dkim_sign(data, keypair)
        with srv.connect() as c:
            c.start()
            assert c.send_message("alice@good.test", ["fwd@example.test"], data).code == 250
        env = far.wait(1, timeout=20)[0]
        srs = env["from"]
        assert re.fullmatch(r"SRS0=[^=]+=[^=]+=good\.test=alice@example\.test", srs, re.I), srs
        # The forwarded copy carries our ARC set, i=1, cv=none, whose AAR
        # repeats our findings; dkimpy validates the chain.
        got = env["data"]
        assert got.startswith(b"ARC-Seal: i=1;"), got[:300]
        assert b"cv=none" in got.split(b"\r\n")[0] + got.split(b"\r\n")[1], got[:300]
        aar = re.search(rb"ARC-Authentication-Results: i=1; mx\.example\.test;(.*?)\r\n(?=\S)",
                        got, re.S)
        assert aar and b"dkim=pass" in aar.group(1) and b"dmarc=pass" in aar.group(1), got[:1500]

        def dnsfunc(name, timeout=5):
            n = name.decode().rstrip(".")
            return records[n].encode() if n in records else None
        cv, results, reason = dkim.arc_verify(got, dnsfunc=dnsfunc)
        assert cv == b"pass", (cv, reason, results)
        assert [r["as-domain"] for r in results] == [b"example.test"], results
        local = srv.wait_messages("u@example.test", m)[0]  # the local copy keeps the sender
        assert b"ARC-Seal" not in local, local[:500]
        # The bounce comes back to the SRS address and goes on to alice.
        bounce = build_message(unique("bounce"), ["undeliverable"],
                               sender="MAILER-DAEMON@far.test", to=srs)
        with srv.connect() as c:
            c.start("mx.far.test")
            assert c.cmd("MAIL FROM:<>").code == 250
            r = c.cmd(f"RCPT TO:<{srs}>")
            assert r.code == 250, r
            assert c.cmd("DATA").code == 354
            c.send(bounce + b".\r\n")
            assert c.reply().code == 250
        got = home.wait(1, timeout=20)[0]
        assert got["to"] == ["alice@good.test"], got
        assert got["from"] in ("", "<>"), got  # aiosmtpd keeps the brackets of <>
        # A forged hash, or a made-up SRS address, is no way to relay.
        forged = re.sub(r"^SRS0=([^=]+)=", lambda mt: "SRS0=" + ("A" * len(mt.group(1))) + "=",
                        srs, flags=re.I)
        with srv.connect() as c:
            c.start()
            assert c.cmd("MAIL FROM:<>").code == 250
            r = c.cmd(f"RCPT TO:<{forged}>")
            assert (r.code, r.enhanced) == (550, "5.1.1"), r
            r = c.cmd("RCPT TO:<SRS0=abcdef=AB=victim.test=x@example.test>")
            assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert "srs: " in srv.log_text() and "refused" in srv.log_text()
    finally:
        shutdown(srv)


def test_sendmail_signs_with_the_domains_keys(srv):
    """`tern sendmail` signs what it queues for our domains (run by root,
    which can read the keys)."""
    if os.geteuid() != 0:
        pytest.skip("reading the keys under data_dir/dkim needs root here")
    srv.cli("dkim", "keygen", "example.test")
    m = unique("sendmail")
    srv.cli("sendmail", "u@example.test",
            input=f"From: u@example.test\nTo: u@example.test\nSubject: {m}\n\nsigned\n")
    raw = srv.wait_messages("u@example.test", m)[0]
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    sigs = msg.get_all("DKIM-Signature", [])
    assert len(sigs) == 2, raw[:1500]
    assert all("d=example.test" in " ".join(s.split()) for s in sigs), sigs


def test_claims_are_removed_for_trusted_clients_too(tmp_path, world):
    """RFC 8601 5: not only strangers' mail loses forged claims of our
    authserv-id; mail that is not checked (trusted clients) too."""
    s = server(tmp_path, world, trusted_networks=["127.0.0.0/8"])
    try:
        m = unique("trustedclaim")
        data = message("x@other.test", m, extra=[
            f"Authentication-Results: {HOST}; dmarc=pass header.from=bank.test"])
        assert send(s, "x@other.test", data).code == 250
        assert auth_results(s.wait_messages("u@example.test", m)[0]) == []
        assert "Authentication-Results claiming" in s.log_text()
    finally:
        shutdown(s)
