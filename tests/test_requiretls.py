# REQUIRETLS (RFC 8689) over loopback only: Tern takes the MAIL parameter
# on TLS sessions only, and passes such a message on only over TLS to a
# next hop whose certificate verifies and whose name is vouched for (here
# by an MTA-STS policy from test_mta_sts.py's HTTPS server); otherwise the
# message bounces, and the report carries nothing of it. "TLS-Required: No"
# sets an MTA-STS policy aside for one message.
import email
import email.policy
import smtplib
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from conftest import build_message, free_port, unique
from test_mta_sts import PolicyServer, _leaf, _openssl, _server_ctx, publish
from test_outbound import (Handler, dns, mx_port, sinks, submit, tern,  # noqa: F401
                           wait_for, wait_queue_empty)

HTTPS_IP = "127.0.0.70"
MX_NAMES = ["mx.rtls1.test", "mx.rtls2.test", "mx.rtls3.test", "mx.rtls4.test"]


@pytest.fixture(scope="module")
def rpki(tmp_path_factory):
    d = tmp_path_factory.mktemp("rtls-pki")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca), "-days", "2", "-subj", "/CN=Tern REQUIRETLS test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    https = _leaf(d, ca, ca_key, "https",
                  ["mta-sts.rtls2.test", "mta-sts.rtls3.test", "mta-sts.rtls4.test"])
    mx = _leaf(d, ca, ca_key, "mx", MX_NAMES)
    return {"ca": str(ca), "https": _server_ctx(*https), "mx": _server_ctx(*mx)}


@pytest.fixture(scope="module")
def https_port():
    return free_port(HTTPS_IP)


@pytest.fixture(scope="module")
def web(rpki, https_port):
    s = PolicyServer(HTTPS_IP, https_port, rpki["https"])
    yield s
    s.close()


class RequireTlsHandler(Handler):
    """A sink that offers REQUIRETLS once TLS is up (RFC 8689 4.1)."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname,
                                              responses)
        if session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses


class RequireTlsSMTP(SMTP):
    """aiosmtpd refuses MAIL parameters it does not know (555) before a
    handler sees them; this one lets REQUIRETLS through to the handler,
    which records it with the other MAIL options."""

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None and self.session.ssl is not None:
            result.pop("REQUIRETLS", None)
        return result


class RequireTlsController(Controller):
    def factory(self):
        return RequireTlsSMTP(self.handler, **self.SMTP_kwargs)


def sink_at(sinks, ip, ctx, offer_requiretls=True):
    h = RequireTlsHandler() if offer_requiretls else Handler()
    kind = RequireTlsController if offer_requiretls else Controller
    c = kind(h, hostname=ip, port=sinks.port, server_hostname=f"sink-{ip}",
             ready_timeout=5, tls_context=ctx)
    c.start()
    sinks.controllers.append(c)
    return h


@pytest.fixture
def rtern(tern, rpki, https_port):
    def factory(**delivery):
        d = {"ca_file": rpki["ca"], "mta_sts_port": https_port}
        d.update(delivery)
        return tern(delivery=d, sections={"tls": {"self_signed": True}})
    return factory


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send_requiretls(srv, rcpt, marker, extra_headers=()):
    data = build_message(marker, [f"private text {marker}"], sender="u@example.test",
                         to=rcpt, extra_headers=extra_headers)
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test",
                      timeout=10) as c:
        c.starttls(context=client_ctx())
        c.ehlo()
        assert c.has_extn("requiretls")
        c.sendmail("u@example.test", [rcpt], data, mail_options=["REQUIRETLS"])


def dsn(srv, contains):
    d = srv.wait_message("u@example.test", contains, timeout=20)
    return d.raw.decode("utf-8", "replace"), email.message_from_bytes(
        d.raw, policy=email.policy.default)


def test_requiretls_is_offered_and_taken_only_over_tls(rtern):
    srv = rtern()
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test",
                      timeout=10) as c:
        c.ehlo()
        assert not c.has_extn("requiretls")
        code, msg = c.docmd("MAIL", "FROM:<u@example.test> REQUIRETLS")
        assert (code, msg[:6]) == (530, b"5.7.10"), msg
        c.rset()
        c.starttls(context=client_ctx())
        c.ehlo()
        assert c.has_extn("requiretls")
        code, msg = c.docmd("MAIL", "FROM:<u@example.test> REQUIRETLS=1")
        assert code == 501, msg
        c.rset()
    # Local delivery is not affected.
    m = unique("rtls-local")
    send_requiretls(srv, "u@example.test", m)
    srv.wait_message("u@example.test", m)


def test_unverified_next_hop_bounces_and_the_report_is_redacted(dns, sinks, rtern,
                                                                tmp_path):
    # An insecure MX, no MTA-STS policy, a certificate from nobody we
    # trust: the message must not go, and bounces with 5.7.10.
    dns.mx("rtls1.test", (10, "mx.rtls1.test"))
    dns.a("mx.rtls1.test", "127.0.0.71")
    key, cert = str(tmp_path / "self.key"), str(tmp_path / "self.pem")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "1",
             "-subj", "/CN=mx.rtls1.test", "-addext", "subjectAltName=DNS:mx.rtls1.test")
    sink = sink_at(sinks, "127.0.0.71", _server_ctx(cert, key))
    srv = rtern()
    rcpt, m = f"{unique('who')}@rtls1.test", unique("rtls-secret")
    send_requiretls(srv, rcpt, m)
    raw, msg = dsn(srv, rcpt)
    assert "5.7.10" in raw and "REQUIRETLS" in raw, raw
    assert m not in raw, "the report gave away the message"
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == ["text/plain", "message/delivery-status"], types
    assert sink.calls["MAIL"] == 0 and not sink.envelopes
    wait_queue_empty(srv)


def test_verified_next_hop_offering_requiretls_gets_it(dns, sinks, web, rpki, rtern):
    publish(dns, web, "rtls2.test", "enforce", ["mx.rtls2.test"], ip=HTTPS_IP)
    dns.mx("rtls2.test", (10, "mx.rtls2.test"))
    dns.a("mx.rtls2.test", "127.0.0.72")
    sink = sink_at(sinks, "127.0.0.72", rpki["mx"])
    srv = rtern()
    m = unique("rtls-ok")
    send_requiretls(srv, "x@rtls2.test", m)
    env = sink.wait()[0]
    assert env["tls"] is True
    assert "REQUIRETLS" in env["mail_options"], env["mail_options"]
    assert m.encode() in env["data"]
    wait_queue_empty(srv)


def test_next_hop_without_requiretls_bounces_with_5_7_30(dns, sinks, web, rpki, rtern):
    publish(dns, web, "rtls3.test", "enforce", ["mx.rtls3.test"], ip=HTTPS_IP)
    dns.mx("rtls3.test", (10, "mx.rtls3.test"))
    dns.a("mx.rtls3.test", "127.0.0.73")
    sink = sink_at(sinks, "127.0.0.73", rpki["mx"], offer_requiretls=False)
    srv = rtern()
    rcpt, m = f"{unique('who')}@rtls3.test", unique("rtls-noext")
    send_requiretls(srv, rcpt, m)
    raw, _ = dsn(srv, rcpt)
    assert "5.7.30" in raw, raw
    assert m not in raw
    assert sink.calls["MAIL"] == 0 and not sink.envelopes


def test_tls_required_no_sets_an_mta_sts_policy_aside(dns, sinks, web, rtern):
    # enforce, and the only MX offers no STARTTLS at all.
    publish(dns, web, "rtls4.test", "enforce", ["mx.rtls4.test"], ip=HTTPS_IP)
    dns.mx("rtls4.test", (10, "mx.rtls4.test"))
    dns.a("mx.rtls4.test", "127.0.0.74")
    sink = sinks.smtp("127.0.0.74")
    srv = rtern()
    held, relaxed = unique("rtls-held"), unique("rtls-relaxed")
    submit(srv, "u@example.test", ["x@rtls4.test"], held)
    wait_for(lambda: "required by mta-sts enforce" in srv.log_text(),
             what="the policy holds the plain message back", srv=srv)
    submit(srv, "u@example.test", ["y@rtls4.test"], relaxed,
           extra_headers=["TLS-Required: No"])
    env = sink.wait()[0]
    assert relaxed.encode() in env["data"] and env["tls"] is False
    assert "TLS-Required: No: DANE and MTA-STS set aside" in srv.log_text()
    # The other message is still waiting: the relaxed connection was not
    # lent to it.
    assert len(sink.envelopes) == 1
    assert "x@rtls4.test" in str(srv.queue_json())
