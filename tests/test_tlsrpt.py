# TLS-RPT (RFC 8460) for the mail Tern sends, over loopback only: a short
# reporting period (delivery.tlsrpt_interval) instead of a UTC day; the
# dnslib zone of test_outbound.py serves MX, A, _mta-sts and _smtp._tls
# records; one HTTPS server on 127.0.2.1 serves the MTA-STS policies and
# takes the https: reports; the mailto: reports land in a local Maildir.
# Every report is gunzipped, parsed and checked against the traffic sent.
import email
import gzip
import http.server
import json
import threading
import time
from pathlib import Path

import pytest
from dnslib import QTYPE, TXT

from conftest import free_port, unique
from test_mta_sts import _leaf, _server_ctx, pki, set_txt  # noqa: F401 (fixture)
from test_outbound import (dns, mx_port, sinks, submit, tern,  # noqa: F401 (fixtures)
                           wait_queue_empty)

WEB_IP = "127.0.2.1"
GOOD_MX, BAD_MX, PLAIN_MX = "127.0.2.11", "127.0.2.12", "127.0.2.13"
INTERVAL = 3  # seconds per reporting period


class Web:
    """HTTPS: GET of MTA-STS policies, POST of reports to /tlsrpt."""

    def __init__(self, ip, port, ctx):
        self.policies = {}
        self.posts = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                body = outer.policies.get(host)
                if body is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.posts.append({"path": self.path,
                                    "host": self.headers.get("Host"),
                                    "type": self.headers.get("Content-Type"),
                                    "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((ip, port), H)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def rpt_pki(pki, tmp_path_factory):
    """Certificates from test_mta_sts's test CA for the names used here."""
    d = tmp_path_factory.mktemp("tlsrpt-pki")
    ca = Path(pki["ca"])
    web = _leaf(d, ca, ca.parent / "ca.key", "web",
                ["mta-sts.rpt1.test", "mta-sts.rpt2.test", "reports.rpt2.test"])
    mx = _leaf(d, ca, ca.parent / "ca.key", "mx", ["mx.rpt1.test"])
    return {"ca": pki["ca"], "web": _server_ctx(*web), "mx": _server_ctx(*mx),
            "self": pki["self"]}


@pytest.fixture(scope="module")
def web_port():
    return free_port(WEB_IP)


@pytest.fixture(scope="module")
def web(rpt_pki, web_port):
    w = Web(WEB_IP, web_port, rpt_pki["web"])
    yield w
    w.close()


def sts_policy(mode, mx):
    return "version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: 86400\r\n" % (mode, mx)


def tlsrpt_txt(zone, domain, record):
    zone.add(zone._name(f"_smtp._tls.{domain}"), TXT(record), QTYPE.TXT)


def report_files(srv):
    d = srv.data_dir / "tlsrpt"
    return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []


def attachment(raw):
    """The report of a report message (RFC 8460 5.3), checked on the way."""
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    parts = msg.get_payload()
    assert parts[0].get_content_type() == "text/plain"
    att = parts[1]
    assert att.get_content_type() == "application/tlsrpt+gzip"
    fname = att.get_filename()
    report = json.loads(gzip.decompress(att.get_payload(decode=True)))
    return msg, fname, report


def policies_of(reports, domain):
    """Summed counts per policy type over the reports on `domain`."""
    out = {}
    for r in reports:
        for p in r["policies"]:
            pol = p["policy"]
            assert pol["policy-domain"] == domain
            o = out.setdefault(pol["policy-type"], {"ok": 0, "failed": 0, "details": {},
                                                    "policy": pol})
            o["ok"] += p["summary"]["total-successful-session-count"]
            o["failed"] += p["summary"]["total-failure-session-count"]
            for fd in p.get("failure-details", []):
                key = (fd["result-type"], fd.get("receiving-mx-hostname"),
                       fd.get("receiving-ip"), fd.get("sending-mta-ip"))
                o["details"][key] = o["details"].get(key, 0) + fd["failed-session-count"]
    return out


def test_reports_for_a_period_of_traffic(dns, sinks, web, rpt_pki, web_port, tern):
    # rpt1.test: MTA-STS enforce, a good certificate; reports by mail.
    set_txt(dns, "rpt1.test", "v=STSv1; id=1;")
    dns.a("mta-sts.rpt1.test", WEB_IP)
    web.policies["mta-sts.rpt1.test"] = sts_policy("enforce", "mx.rpt1.test")
    dns.mx("rpt1.test", (10, "mx.rpt1.test"))
    dns.a("mx.rpt1.test", GOOD_MX)
    tlsrpt_txt(dns, "rpt1.test", "v=TLSRPTv1; rua=mailto:tlsrpt@example.test")
    good = sinks.smtp(GOOD_MX, tls_context=rpt_pki["mx"])
    # rpt2.test: MTA-STS testing, a self-signed certificate; reports by https.
    set_txt(dns, "rpt2.test", "v=STSv1; id=1;")
    dns.a("mta-sts.rpt2.test", WEB_IP)
    web.policies["mta-sts.rpt2.test"] = sts_policy("testing", "mx.rpt2.test")
    dns.mx("rpt2.test", (10, "mx.rpt2.test"))
    dns.a("mx.rpt2.test", BAD_MX)
    dns.a("reports.rpt2.test", WEB_IP)
    tlsrpt_txt(dns, "rpt2.test",
               f"v=TLSRPTv1; rua=https://reports.rpt2.test:{web_port}/tlsrpt")
    bad = sinks.smtp(BAD_MX, tls_context=rpt_pki["self"])
    # rpt3.test: no MTA-STS, no STARTTLS; reports by mail.
    dns.mx("rpt3.test", (10, "mx.rpt3.test"))
    dns.a("mx.rpt3.test", PLAIN_MX)
    tlsrpt_txt(dns, "rpt3.test", "v=TLSRPTv1;rua=mailto:tlsrpt@example.test;")
    plain = sinks.smtp(PLAIN_MX)
    # rpt4.test publishes nothing: counted, never reported.
    dns.mx("rpt4.test", (10, "mx.rpt4.test"))
    dns.a("mx.rpt4.test", PLAIN_MX)

    srv = tern(delivery={"ca_file": rpt_pki["ca"], "mta_sts_port": web_port,
                         "tlsrpt_interval": INTERVAL,
                         # One session per message: counts are per session.
                         "max_messages_per_connection": 1},
               users=("u@example.test", "tlsrpt@example.test"))
    for i in range(3):
        submit(srv, "u@example.test", [f"a{i}@rpt1.test"], unique("rpt1"))
    submit(srv, "u@example.test", ["b@rpt2.test"], unique("rpt2"))
    submit(srv, "u@example.test", ["c@rpt3.test"], unique("rpt3"))
    submit(srv, "u@example.test", ["d@rpt4.test"], unique("rpt4"))
    assert all(e["tls"] for e in good.wait(3))
    assert bad.wait()[0]["tls"] is True       # testing: delivered anyway
    assert plain.wait(2)[0]["tls"] is False
    wait_queue_empty(srv)

    # Every period with traffic gets reported once it is over.
    deadline = time.monotonic() + 30
    while True:
        files = report_files(srv)
        if files and all(f["sent"] for f in files):
            break
        assert time.monotonic() < deadline, files
        srv.check_alive()
        time.sleep(0.2)
    want_mail = sum(1 for f in files for d in {p["domain"] for p in f["policies"]}
                    if d in ("rpt1.test", "rpt3.test"))
    want_posts = sum(1 for f in files if any(p["domain"] == "rpt2.test"
                                             for p in f["policies"]))
    assert want_mail >= 2 and want_posts >= 1
    mails = srv.wait_messages("tlsrpt@example.test", "TLS-Report-Domain", want_mail,
                              timeout=20)
    deadline = time.monotonic() + 20
    while len(web.posts) < want_posts:
        assert time.monotonic() < deadline, web.posts
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(web.posts) == want_posts

    by_domain = {}
    for raw in mails:
        msg, fname, report = attachment(raw)
        domain = msg["TLS-Report-Domain"]
        assert msg["TLS-Report-Submitter"] == srv.hostname
        assert msg["Subject"] == (f"Report Domain: {domain} Submitter: {srv.hostname} "
                                  f"Report-ID: <{report['report-id']}>")
        # RFC 8460 5.1: submitter!policy-domain!begin!end!unique-id.json.gz
        parts = fname.split("!")
        assert parts[:2] == [srv.hostname, domain] and fname.endswith(".json.gz")
        assert int(parts[3]) - int(parts[2]) == INTERVAL
        assert report["date-range"]["start-datetime"].endswith("Z")
        assert report["organization-name"] and report["contact-info"]
        by_domain.setdefault(domain, []).append(report)
    assert set(by_domain) == {"rpt1.test", "rpt3.test"}

    r1 = policies_of(by_domain["rpt1.test"], "rpt1.test")
    assert set(r1) == {"sts"}
    assert r1["sts"]["ok"] == 3 and r1["sts"]["failed"] == 0
    assert r1["sts"]["policy"]["mx-host"] == ["mx.rpt1.test"]
    assert "mode: enforce" in r1["sts"]["policy"]["policy-string"]

    r3 = policies_of(by_domain["rpt3.test"], "rpt3.test")
    assert set(r3) == {"no-policy-found"}
    assert r3["no-policy-found"]["ok"] == 0 and r3["no-policy-found"]["failed"] == 1
    [(key, n)] = r3["no-policy-found"]["details"].items()
    assert key[:3] == ("starttls-not-supported", "mx.rpt3.test", PLAIN_MX) and n == 1
    assert key[3].startswith("127.")  # sending-mta-ip: our loopback address

    posted = []
    for p in web.posts:
        assert p["path"] == "/tlsrpt"
        assert p["type"] == "application/tlsrpt+gzip"
        posted.append(json.loads(gzip.decompress(p["body"])))
    r2 = policies_of(posted, "rpt2.test")
    assert set(r2) == {"sts"}
    assert r2["sts"]["ok"] == 0 and r2["sts"]["failed"] == 1
    assert "mode: testing" in r2["sts"]["policy"]["policy-string"]
    [(key, n)] = r2["sts"]["details"].items()
    assert key[:3] == ("certificate-not-trusted", "mx.rpt2.test", BAD_MX) and n == 1

    # rpt4.test was counted but, with no _smtp._tls record, not reported.
    assert any(p["domain"] == "rpt4.test" for f in files for p in f["policies"])

    # `tern report tls` shows the same counts from the files, no server asked.
    day = time.strftime("%Y-%m-%d", time.gmtime(files[0]["start"]))
    shown = json.loads(srv.cli("report", "tls", "--day", day, "--json").stdout)
    cli1 = policies_of([r for r in shown if r["policies"][0]["policy"]["policy-domain"]
                        == "rpt1.test"], "rpt1.test")
    days = {time.strftime("%Y-%m-%d", time.gmtime(f["start"])) for f in files}
    if len(days) == 1:  # the traffic did not straddle midnight
        assert cli1["sts"]["ok"] == 3 and cli1["sts"]["failed"] == 0
    text = srv.cli("report", "tls", "--day", day).stdout
    assert "rpt3.test" in text and "starttls-not-supported mx.rpt3.test" in text


def test_counts_survive_a_restart(dns, sinks, tern):
    # A day-long period: nothing is reported during the test; the counts
    # are saved at stop and picked up again at start.
    dns.mx("rpt5.test", (10, "mx.rpt5.test"))
    dns.a("mx.rpt5.test", "127.0.2.15")
    plain = sinks.smtp("127.0.2.15")  # no STARTTLS
    srv = tern(delivery={"max_messages_per_connection": 1})

    def counts():
        out = []
        for f in report_files(srv):
            for p in f["policies"]:
                if p["domain"] == "rpt5.test":
                    out.append((f["sent"], p["type"], p["ok"], p["failed"],
                                [x[0] for x in p["failures"]]))
        return out

    submit(srv, "u@example.test", ["e@rpt5.test"], unique("rpt5"))
    plain.wait()
    wait_queue_empty(srv)
    srv.stop()
    first = counts()
    assert first == [(False, "no-policy-found", 0, 1, ["starttls-not-supported"])]
    srv.start()
    submit(srv, "u@example.test", ["f@rpt5.test"], unique("rpt5"))
    plain.wait(2)
    wait_queue_empty(srv)
    srv.stop()
    after = counts()
    # Unless the test straddled midnight (UTC), both land in one day.
    assert after == [(False, "no-policy-found", 0, 2, ["starttls-not-supported"])] or \
        len(after) == 2
