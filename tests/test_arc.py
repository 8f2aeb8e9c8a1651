# ARC (RFC 8617) against an independent implementation: dkimpy
# (python3-dkim, with python3-nacl and python3-authres) seals what
# `tern check arc` must verify and verifies what `tern arc seal` adds, over
# one, two and three hops with Tern and dkimpy taking turns; tampered
# copies fail on both sides. Key records come from test_dkim.py's dnslib
# server on 127.0.0.1 (the config's [dns] upstream); dkimpy reads the same
# records through its dnsfunc hook.
import re

import pytest

from conftest import TernServer
# `zone` is test_dkim's module fixture (the dnslib server), used here too.
from test_dkim import dkim, need_dkimpy, zone, zone_line_records  # noqa: F401

TERN_DOMAIN = "lists.test"     # Tern's sealing domain
TERN_ID = "mx.lists.test"      # and its authserv-id
OTHER_DOMAIN = "forward.test"  # dkimpy's
OTHER_ID = "mx.forward.test"

MESSAGE = (
    b"From: Alice Example <alice@origin.test>\r\n"
    b"To: list@lists.test\r\n"
    b"Subject: Minutes of the   meeting\r\n"
    b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <minutes@origin.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"The minutes are attached.  \r\n"
    b"\r\n"
    b"Alice\r\n")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tern(tmp_path_factory, zone):
    """A configuration (no server runs): data dir and [dns] for the CLI."""
    return TernServer(tmp_path_factory.mktemp("arc"),
                      sections={"dns": {"upstream": [f"127.0.0.1:{zone.port}"]}})


@pytest.fixture(scope="module")
def keys(tern, zone):
    """Keys made by `tern dkim keygen` and published: Ed25519 and RSA for
    Tern's domain, RSA (what dkimpy's arc_sign uses) for dkimpy's."""
    found = {}
    for domain, algorithm, selector in [(TERN_DOMAIN, "ed25519", "ted"),
                                        (TERN_DOMAIN, "rsa", "trsa"),
                                        (OTHER_DOMAIN, "rsa", "py")]:
        out = tern.cli("dkim", "keygen", domain, "--algorithm", algorithm,
                       "--selector", selector).stdout
        (name, text), = zone_line_records(out)
        zone.set(name, text)
        path = re.search(r"^; \w+ key (\S+)$", out, re.M).group(1)
        found[selector] = path
    return found


# ---------------------------------------------------------------- helpers

def check(tern, message):
    """`tern check arc`: (result, [(i, d), ...]) and stderr."""
    p = tern.cli("check", "arc", input=message)
    lines = p.stdout.splitlines()
    assert lines and lines[0] in ("none", "pass", "fail"), p.stdout + p.stderr
    instances = []
    for line in lines[1:]:
        m = re.match(r"^i=(\d+) d=(\S+)$", line)
        assert m, f"unexpected output line {line!r}"
        instances.append((int(m.group(1)), m.group(2)))
    return lines[0], instances, p.stderr


def result(tern, message):
    return check(tern, message)[0]


def tern_seal(tern, keys, message, selector="trsa", cv=None, auth_results=None,
              check=True):
    args = ["arc", "seal", "--domain", TERN_DOMAIN, "--selector", selector,
            "--key", keys[selector], "--authserv-id", TERN_ID]
    if cv is not None:
        args += ["--cv", cv]
    if auth_results is not None:
        args += ["--auth-results", auth_results]
    p = tern.cli(*args, input=message, check=check)
    return p if not check else p.stdout.encode()


def dkimpy_seal(message, keys, arc_result):
    """One hop of dkimpy: the hop's Authentication-Results (which dkimpy
    turns into the AAR, taking cv= from its arc= result), then its set."""
    need_dkimpy()
    with open(keys["py"], "rb") as f:
        key = f.read()
    # dkimpy reads every Authentication-Results of its authserv-id: the
    # previous hop's, left in place, would make two arc= results, which it
    # takes as a failed chain. A receiving MTA removes them anyway (RFC
    # 8601 5).
    head, sep, body = message.partition(b"\r\n\r\n")
    own = f"Authentication-Results: {OTHER_ID};".encode()
    kept, dropping = [], False
    for line in head.split(b"\r\n"):
        if not line[:1].isspace():
            dropping = line.startswith(own)
        if not dropping:
            kept.append(line)
    ar = (f"Authentication-Results: {OTHER_ID}; spf=pass "
          f"smtp.mailfrom=origin.test; arc={arc_result}\r\n").encode()
    message = ar + b"\r\n".join(kept) + sep + body
    fields = dkim.arc_sign(message, b"py", OTHER_DOMAIN.encode(), key,
                           OTHER_ID.encode())
    assert fields, "dkimpy did not seal"
    return b"".join(fields) + message


def dkimpy_verify(message, zone):
    """dkimpy's chain validation: (cv, [AS d= per instance, newest first])."""
    need_dkimpy()
    cv, results, reason = dkim.arc_verify(message, dnsfunc=zone.dnsfunc)
    status = cv.decode() if cv is not None else "ended"  # dkimpy: None
    return status, [r["as-domain"].decode() for r in results]


def tamper_body(message):
    return message.replace(b"minutes are", b"minutes were", 1)


def tamper_header(message):
    return message.replace(b"Subject: Minutes", b"Subject: Hours", 1)


def tamper_aar(message, instance):
    """Adds a comment to the AAR of `instance`."""
    marker = f"ARC-Authentication-Results: i={instance};".encode()
    assert marker in message
    return message.replace(marker, marker + b" (edited)", 1)


TAMPERS = [tamper_body, tamper_header, lambda m: tamper_aar(m, 1)]


# ---------------------------------------------------------------- Tern seals

def test_unsealed_message_is_none(tern, keys):
    assert check(tern, MESSAGE)[:2] == ("none", [])


def test_dkimpy_verifies_tern_seal(tern, keys, zone):
    sealed = tern_seal(tern, keys, MESSAGE, "trsa", cv="none",
                       auth_results="spf=pass smtp.mailfrom=origin.test; "
                                    "dkim=none")
    assert sealed.endswith(MESSAGE)
    header = sealed.split(b"\r\n\r\n")[0].decode()
    assert header.startswith("ARC-Seal: i=1; a=rsa-sha256; cv=none;")
    names = [l.split(":")[0] for l in header.split("\r\n") if not l[:1].isspace()]
    assert names[:3] == ["ARC-Seal", "ARC-Message-Signature",
                         "ARC-Authentication-Results"]
    assert all(len(l) <= 78 for l in header.split("\r\n")), header
    assert f"ARC-Authentication-Results: i=1; {TERN_ID};" in header
    assert "arc=none" in header

    assert dkimpy_verify(sealed, zone) == ("pass", [TERN_DOMAIN])
    assert check(tern, sealed)[:2] == ("pass", [(1, TERN_DOMAIN)])
    for tamper in TAMPERS:
        bad = tamper(sealed)
        assert dkimpy_verify(bad, zone)[0] == "fail", tamper
        assert result(tern, bad) == "fail", tamper


def test_ed25519_seals(tern, keys, zone):
    """Tern verifies its Ed25519 seals; dkimpy's ARC knows only rsa-sha256,
    which is why Tern seals with RSA when a domain has both keys."""
    sealed = tern_seal(tern, keys, MESSAGE, "ted", cv="none")
    assert sealed.startswith(b"ARC-Seal: i=1; a=ed25519-sha256; cv=none;")
    assert check(tern, sealed)[:2] == ("pass", [(1, TERN_DOMAIN)])
    twice = tern_seal(tern, keys, sealed, "ted")
    assert check(tern, twice)[:2] == ("pass", [(1, TERN_DOMAIN), (2, TERN_DOMAIN)])
    for tamper in TAMPERS:
        assert result(tern, tamper(twice)) == "fail", tamper
    need_dkimpy()
    cv, _, reason = dkim.arc_verify(sealed, dnsfunc=zone.dnsfunc)
    assert cv == b"fail" and "ed25519-sha256" in reason


def test_tern_seals_twice(tern, keys, zone):
    once = tern_seal(tern, keys, MESSAGE, "trsa", cv="none")
    # No --cv: the second hop verifies the chain itself (through DNS).
    twice = tern_seal(tern, keys, once, "trsa",
                      auth_results="spf=fail smtp.mailfrom=origin.test")
    assert b"ARC-Seal: i=2; a=rsa-sha256; cv=pass;" in twice
    assert b"arc=pass" in twice
    assert dkimpy_verify(twice, zone) == ("pass", [TERN_DOMAIN, TERN_DOMAIN])
    assert check(tern, twice)[:2] == ("pass", [(1, TERN_DOMAIN), (2, TERN_DOMAIN)])
    for tamper in TAMPERS + [lambda m: tamper_aar(m, 2)]:
        bad = tamper(twice)
        assert dkimpy_verify(bad, zone)[0] == "fail", tamper
        assert result(tern, bad) == "fail", tamper


def test_lf_input_stays_lf(tern, keys, zone):
    lf = MESSAGE.replace(b"\r\n", b"\n")
    sealed = tern_seal(tern, keys, lf, "trsa", cv="none")
    assert b"\r" not in sealed and sealed.endswith(lf)
    assert result(tern, sealed) == "pass"
    assert dkimpy_verify(sealed.replace(b"\n", b"\r\n"), zone)[0] == "pass"


# ---------------------------------------------------------------- dkimpy seals

def test_tern_verifies_dkimpy_one_hop(tern, keys, zone):
    sealed = dkimpy_seal(MESSAGE, keys, "none")
    assert dkimpy_verify(sealed, zone) == ("pass", [OTHER_DOMAIN])
    assert check(tern, sealed)[:2] == ("pass", [(1, OTHER_DOMAIN)])
    for tamper in TAMPERS:
        assert result(tern, tamper(sealed)) == "fail", tamper


def test_tern_verifies_dkimpy_two_hops(tern, keys, zone):
    twice = dkimpy_seal(dkimpy_seal(MESSAGE, keys, "none"), keys, "pass")
    assert dkimpy_verify(twice, zone)[0] == "pass"
    assert check(tern, twice)[:2] == ("pass", [(1, OTHER_DOMAIN), (2, OTHER_DOMAIN)])
    for tamper in TAMPERS + [lambda m: tamper_aar(m, 2)]:
        assert result(tern, tamper(twice)) == "fail", tamper


def test_mixed_hops(tern, keys, zone):
    """dkimpy, then Tern (verifying dkimpy's set itself), then dkimpy again."""
    first = dkimpy_seal(MESSAGE, keys, "none")
    second = tern_seal(tern, keys, first, "trsa",
                       auth_results="spf=pass smtp.mailfrom=origin.test")
    assert b"ARC-Seal: i=2; a=rsa-sha256; cv=pass;" in second
    assert dkimpy_verify(second, zone) == ("pass", [TERN_DOMAIN, OTHER_DOMAIN])
    assert check(tern, second)[:2] == ("pass", [(1, OTHER_DOMAIN), (2, TERN_DOMAIN)])
    third = dkimpy_seal(second, keys, "pass")
    assert dkimpy_verify(third, zone)[0] == "pass"
    assert check(tern, third)[:2] == (
        "pass", [(1, OTHER_DOMAIN), (2, TERN_DOMAIN), (3, OTHER_DOMAIN)])
    for tamper in TAMPERS + [lambda m: tamper_aar(m, 2)]:
        bad = tamper(third)
        assert dkimpy_verify(bad, zone)[0] == "fail", tamper
        assert result(tern, bad) == "fail", tamper


# ---------------------------------------------------------------- failures

def test_broken_chain_is_sealed_as_failed(tern, keys, zone):
    broken = tamper_body(dkimpy_seal(MESSAGE, keys, "none"))
    status, _, stderr = check(tern, broken)
    assert status == "fail" and "body hash mismatch" in stderr
    # RFC 8617 5.1.2: Tern seals it with cv=fail, over its own set only.
    marked = tern_seal(tern, keys, broken, "trsa")
    assert b"ARC-Seal: i=2; a=rsa-sha256; cv=fail;" in marked
    assert b"arc=fail" in marked
    status, instances, stderr = check(tern, marked)
    assert (status, instances) == ("fail", [(1, OTHER_DOMAIN), (2, TERN_DOMAIN)])
    assert "ARC-Seal i=2 says cv=fail" in stderr
    # dkimpy calls such a chain ended (None); never a pass.
    assert dkimpy_verify(marked, zone)[0] in ("fail", "ended")
    # Nobody seals after a cv=fail (RFC 8617 5.1).
    p = tern_seal(tern, keys, marked, "trsa", check=False)
    assert p.returncode == 1 and "has ended" in p.stderr


def test_key_problems(tern, keys, zone):
    sealed = tern_seal(tern, keys, MESSAGE, "ted", cv="none")
    # The seal names a selector nobody published.
    orphan = sealed.replace(b"s=ted;", b"s=gone;")
    status, _, stderr = check(tern, orphan)
    assert status == "fail" and "no key record at gone._domainkey.lists.test" in stderr
    # Revoked.
    zone.set(f"gone._domainkey.{TERN_DOMAIN}", "v=DKIM1; k=ed25519; p=")
    assert "key revoked" in check(tern, orphan)[2]
    # SERVFAIL: still fail (RFC 8617 5.2.1), said to be temporary, and a
    # seal is refused rather than made with cv=fail.
    with zone.lock:
        zone.failing.add(f"gone._domainkey.{TERN_DOMAIN}.")
    status, _, stderr = check(tern, orphan)
    assert status == "fail" and "temporary" in stderr
    p = tern_seal(tern, keys, orphan, "trsa", check=False)
    assert p.returncode == 1 and "try again" in p.stderr
    with zone.lock:
        zone.failing.discard(f"gone._domainkey.{TERN_DOMAIN}.")


def test_seal_refuses_a_cv_that_contradicts_the_message(tern, keys):
    p = tern_seal(tern, keys, MESSAGE, cv="pass", check=False)
    assert p.returncode == 1 and "no ARC set" in p.stderr
    once = tern_seal(tern, keys, MESSAGE, cv="none")
    p = tern_seal(tern, keys, once, cv="none", check=False)
    assert p.returncode == 1 and "cv=none" in p.stderr
    p = tern_seal(tern, keys, MESSAGE, cv="maybe", check=False)
    assert p.returncode == 1
