# DMARC aggregate reports (RFC 7489 7.2, appendix C) for mail the server
# receives (issue 17): messages from test domains whose DMARC records have
# rua=mailto:dmarc@example.test (a local mailbox) are counted per domain
# and day, kept across a restart, and sent on `tern report dmarc --send`
# as gzipped XML, which the test opens and checks against what it sent.
# RFC 7489 7.1: a domain outside example.test's organization gets its
# report only when <domain>._report._dmarc.example.test says v=DMARC1.
import email
import email.policy
import gzip
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import build_message, shutdown, unique
from test_mailauth import dkim_sign, keypair, server, txt  # noqa: F401
from test_outbound import dns  # noqa: F401

RUA = "dmarc@example.test"


@pytest.fixture(scope="module")
def world(dns, keypair):  # noqa: F811
    _, record = keypair
    # ver.test: SPF and DKIM for 127.0.0.0/8, p=quarantine, reports to
    # example.test, which agrees to take them (7.1).
    txt(dns, "ver.test", "v=spf1 ip4:127.0.0.0/8 -all")
    txt(dns, "sel._domainkey.ver.test", record)
    txt(dns, "_dmarc.ver.test", f"v=DMARC1; p=quarantine; adkim=s; rua=mailto:{RUA}")
    txt(dns, "ver.test._report._dmarc.example.test", "v=DMARC1")
    # unver.test: reports to example.test, which never agreed.
    txt(dns, "unver.test", "v=spf1 ip4:127.0.0.0/8 -all")
    txt(dns, "_dmarc.unver.test", f"v=DMARC1; p=none; rua=mailto:{RUA}")
    # sub.example.test: same organizational domain as the rua: no check.
    txt(dns, "_dmarc.sub.example.test", f"v=DMARC1; p=none; rua=mailto:{RUA}!10m")
    # tiny.test: accepted by example.test, but the rua takes at most 1 KiB
    # (RFC 7489 6.4 "!1k"), less than any report mail: not sent.
    txt(dns, "tiny.test", "v=spf1 ip4:127.0.0.0/8 -all")
    txt(dns, "_dmarc.tiny.test", f"v=DMARC1; p=none; rua=mailto:{RUA}!1k")
    txt(dns, "tiny.test._report._dmarc.example.test", "v=DMARC1")
    # other.test: SPF passes for us, no DMARC (a forwarder's bounce domain).
    txt(dns, "other.test", "v=spf1 ip4:127.0.0.0/8 -all")
    # nodmarc-rua.test: DMARC without rua: nothing to record.
    txt(dns, "_dmarc.norua.test", "v=DMARC1; p=none")
    return dns


def send(srv, mail_from, data):
    with srv.connect() as c:
        c.start("client.test")
        return c.send_message(mail_from, ["u@example.test"], data)


def msg(from_header, marker):
    return build_message(marker, [f"dmarc report {marker}"], sender=from_header,
                         to="u@example.test")


def reports_in(srv):
    """The report mails in the rua mailbox: {policy domain: (headers, XML root)}."""
    out = {}
    for raw in srv.messages(RUA):
        m = email.message_from_bytes(raw, policy=email.policy.default)
        subject = " ".join(str(m["Subject"]).split())
        found = re.fullmatch(r"Report Domain: (\S+) Submitter: example\.test "
                             r"Report-ID: <(\S+)>", subject)
        assert found, subject
        parts = [p for p in m.walk() if p.get_content_type() == "application/gzip"]
        assert len(parts) == 1, m
        name = parts[0].get_filename()
        assert re.fullmatch(rf"example\.test!{re.escape(found[1])}!\d+!\d+\.xml\.gz", name), name
        assert parts[0]["Content-Transfer-Encoding"] == "base64"
        root = ET.fromstring(gzip.decompress(parts[0].get_content()))
        assert root.findtext("report_metadata/report_id") == found[2]
        out[found[1]] = (m, root, name)
    return out


def rows(root):
    out = []
    for rec in root.findall("record"):
        out.append({
            "ip": rec.findtext("row/source_ip"),
            "count": int(rec.findtext("row/count")),
            "disposition": rec.findtext("row/policy_evaluated/disposition"),
            "dkim": rec.findtext("row/policy_evaluated/dkim"),
            "spf": rec.findtext("row/policy_evaluated/spf"),
            "header_from": rec.findtext("identifiers/header_from"),
            "envelope_from": rec.findtext("identifiers/envelope_from"),
            "auth_dkim": [(d.findtext("domain"), d.findtext("selector"), d.findtext("result"))
                          for d in rec.findall("auth_results/dkim")],
            "auth_spf": [(s.findtext("domain"), s.findtext("scope"), s.findtext("result"))
                         for s in rec.findall("auth_results/spf")],
        })
    return sorted(out, key=lambda r: (r["dkim"], r["count"]))


def test_aggregate_reports_for_a_day_of_traffic(tmp_path, world, keypair):
    srv = server(tmp_path, world, mailauth={"dmarc_reports": True})
    try:
        srv.add_user(RUA)
        # ver.test: two signed messages that pass, one forged that fails
        # (quarantined: delivered to Junk).
        for _ in range(2):
            m = unique("ver-pass")
            data = dkim_sign(msg("alice@ver.test", m), keypair, domain="ver.test")
            assert send(srv, "alice@ver.test", data).code == 250
        m = unique("ver-fail")
        assert send(srv, "bounce@other.test", msg("ceo@ver.test", m)).code == 250
        # unver.test, tiny.test and sub.example.test: one each; norua.test:
        # not counted.
        assert send(srv, "x@unver.test", msg("x@unver.test", unique("unver"))).code == 250
        assert send(srv, "x@tiny.test", msg("x@tiny.test", unique("tiny"))).code == 250
        assert send(srv, "b@other.test", msg("y@sub.example.test", unique("sub"))).code == 250
        assert send(srv, "x@other.test", msg("x@norua.test", unique("norua"))).code == 250
        srv.wait_messages("u@example.test", "dmarc report", count=6)

        # The day survives a restart (saved at stop), and `tern report
        # dmarc` reads it without the server.
        srv.stop()
        table = srv.cli("report", "dmarc").stdout
        assert re.search(r"^ver\.test \(p=quarantine .*adkim=s.*\): 3 messages", table, re.M), table
        assert re.search(r"^unver\.test .*: 1 messages", table, re.M), table
        assert "norua.test" not in table
        xml_text = srv.cli("report", "dmarc", "--xml").stdout
        assert xml_text.count("<feedback>") == 4, xml_text
        srv.start()

        # While the server runs, --send sends today's reports as well.
        out = srv.cli("report", "dmarc", "--send").stdout
        assert "sent 2 skipped 2" in out, out + srv.log_tail()
        srv.wait_messages(RUA, "Report Domain", count=2, timeout=20)
        srv.assert_no_message(RUA, "Report Domain: unver.test", settle=1.0)
        got = reports_in(srv)
        assert set(got) == {"ver.test", "sub.example.test"}, got.keys()
        log = srv.log_text()
        assert re.search(r"dmarc report domain=unver\.test to=dmarc@example\.test skipped: "
                         r"the destination does not accept", log), log[-3000:]
        assert re.search(r"dmarc report domain=tiny\.test to=dmarc@example\.test skipped: "
                         r"\d+ octets, limit 1024", log), log[-3000:]

        mail, root, name = got["ver.test"]
        meta = root.find("report_metadata")
        assert meta.findtext("org_name") == "example.test"
        assert meta.findtext("email") == "postmaster@example.test"
        begin = int(meta.findtext("date_range/begin"))
        end = int(meta.findtext("date_range/end"))
        assert begin % 86400 == 0 and begin < end < begin + 86400
        assert name == f"example.test!ver.test!{begin}!{end}.xml.gz"
        pp = root.find("policy_published")
        assert (pp.findtext("domain"), pp.findtext("p"), pp.findtext("adkim"),
                pp.findtext("aspf"), pp.findtext("pct")) == ("ver.test", "quarantine", "s",
                                                             "r", "100")
        r = rows(root)
        assert len(r) == 2, r
        fail, ok = r
        assert ok == {"ip": "127.0.0.1", "count": 2, "disposition": "none", "dkim": "pass",
                      "spf": "pass", "header_from": "ver.test", "envelope_from": "ver.test",
                      "auth_dkim": [("ver.test", "sel", "pass")],
                      "auth_spf": [("ver.test", "mfrom", "pass")]}, ok
        assert fail == {"ip": "127.0.0.1", "count": 1, "disposition": "quarantine",
                        "dkim": "fail", "spf": "fail", "header_from": "ver.test",
                        "envelope_from": "other.test", "auth_dkim": [],
                        "auth_spf": [("other.test", "mfrom", "pass")]}, fail

        _, root, _ = got["sub.example.test"]
        r = rows(root)
        assert [(x["count"], x["disposition"], x["dkim"], x["spf"], x["header_from"])
                for x in r] == [(1, "none", "fail", "fail", "sub.example.test")], r

        # Sent days are gone: a second run has nothing to send.
        out = srv.cli("report", "dmarc", "--send").stdout
        assert "nothing to send" in out, out
    finally:
        shutdown(srv)


def test_send_needs_reports_on(tmp_path, world):
    srv = server(tmp_path, world)
    try:
        r = srv.cli("report", "dmarc", "--send", check=False)
        assert r.returncode != 0 and "dmarc_reports" in r.stderr, r.stderr
    finally:
        shutdown(srv)
