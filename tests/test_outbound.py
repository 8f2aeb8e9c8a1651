# Outbound delivery over loopback only: a dnslib server on 127.0.0.1 serves
# the test zones (MX and A records pointing at 127.0.0.x), aiosmtpd sinks on
# those addresses answer as scripted, and Tern delivers, retries and bounces.
import asyncio
import email
import email.policy
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

from conftest import (run_tool, _LIVE, PASSWORD, TernServer, build_message, free_port,
                      shutdown, unique)

TTL = 1


# ---------------------------------------------------------------- DNS

class Zone(BaseResolver):
    """Authoritative answers for the test zones; everything else NXDOMAIN."""

    def __init__(self):
        self.records = {}  # name -> list of RR
        self.lock = threading.Lock()

    @staticmethod
    def _name(n):
        n = n.lower()
        return n if n.endswith(".") else n + "."

    def add(self, name, rdata, rtype):
        with self.lock:
            self.records.setdefault(self._name(name), []).append(
                RR(self._name(name), rtype, rdata=rdata, ttl=TTL))

    def mx(self, domain, *hosts):
        for pref, host in hosts:
            self.add(domain, MX(self._name(host) if host != "." else ".", pref),
                     QTYPE.MX)

    def a(self, host, *ips):
        for ip in ips:
            self.add(host, A(ip), QTYPE.A)

    def cname(self, host, target):
        self.add(host, CNAME(self._name(target)), QTYPE.CNAME)

    def resolve(self, request, handler):
        reply = request.reply()
        qname = self._name(str(request.q.qname))
        qtype = request.q.qtype
        with self.lock:
            rrs = list(self.records.get(qname, []))
            # Follow one CNAME, as a recursive resolver would.
            cn = [r for r in rrs if r.rtype == QTYPE.CNAME]
            if cn and qtype != QTYPE.CNAME:
                reply.add_answer(cn[0])
                target = str(cn[0].rdata.label).lower()
                rrs = list(self.records.get(target, []))
            if not rrs and not cn:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
        for r in rrs:
            if r.rtype == qtype:
                reply.add_answer(r)
        return reply


@pytest.fixture(scope="module")
def dns():
    zone = Zone()
    port = free_port()
    udp = DNSServer(zone, port=port, address="127.0.0.1")
    tcp = DNSServer(zone, port=port, address="127.0.0.1", tcp=True)
    udp.start_thread()
    tcp.start_thread()
    zone.port = port
    yield zone
    udp.stop()
    tcp.stop()


# ---------------------------------------------------------------- SMTP sinks

class Handler:
    """Records what arrives; answers as told. `script` maps a stage (MAIL,
    RCPT, DATA) to a reply, or to a list of replies used one per call
    (None = accept)."""

    def __init__(self, script=None):
        self.script = dict(script or {})
        self.envelopes = []
        self.calls = {"MAIL": 0, "RCPT": 0, "DATA": 0}
        self.sessions = 0

    def _scripted(self, stage):
        n = self.calls[stage]
        self.calls[stage] += 1
        answer = self.script.get(stage)
        if isinstance(answer, list):
            answer = answer[n] if n < len(answer) else None
        if callable(answer):
            answer = answer(n)
        return answer

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        r = self._scripted("MAIL")
        if r:
            return r
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        r = self._scripted("RCPT")
        if isinstance(r, dict):
            r = r.get(address)
        if r:
            return r
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        r = self._scripted("DATA")
        if r:
            return r
        self.envelopes.append({
            "at": time.monotonic(),
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "data": envelope.original_content,
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "tls": session.ssl is not None,
            "auth": getattr(session, "auth_data", None),
        })
        return "250 2.0.0 accepted"

    def wait(self, count=1, timeout=15):
        deadline = time.monotonic() + timeout
        while len(self.envelopes) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"sink got {len(self.envelopes)} message(s), want {count}")
            time.sleep(0.05)
        return self.envelopes


class Sinks:
    """aiosmtpd servers on 127.0.0.x:port, stopped at the end of a test."""

    def __init__(self, port):
        self.port = port
        self.controllers = []
        self.raw = []

    def smtp(self, ip, script=None, name=None, **kwargs):
        h = Handler(script)
        c = Controller(h, hostname=ip, port=self.port,
                       server_hostname=name or f"sink-{ip}",
                       ready_timeout=5, **kwargs)
        c.start()
        self.controllers.append(c)
        return h

    def raw_server(self, ip, mode):
        """mode 'drop': accept and close; 'stall': accept and say nothing."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, self.port))
        s.listen(16)
        state = {"accepted": 0, "conns": [], "stop": False}

        def loop():
            while not state["stop"]:
                try:
                    c, _ = s.accept()
                except OSError:
                    return
                state["accepted"] += 1
                if mode == "drop":
                    c.close()
                else:
                    state["conns"].append(c)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.raw.append((s, state))
        return state

    def close(self):
        for c in self.controllers:
            try:
                c.stop()
            except Exception:
                pass
        for s, state in self.raw:
            state["stop"] = True
            s.close()
            for c in state["conns"]:
                c.close()


@pytest.fixture(scope="module")
def mx_port():
    return free_port()


@pytest.fixture
def sinks(mx_port):
    s = Sinks(mx_port)
    yield s
    s.close()


# ---------------------------------------------------------------- Tern

FAST_DELIVERY = {
    "retry_first": 1,
    "retry_max": 2,
    "max_lifetime": 3600,
    "delay_warning": 0,
    "connect_timeout": 3,
    "greeting_timeout": 3,
    "command_timeout": 5,
    "data_init_timeout": 5,
    "data_block_timeout": 5,
    "final_timeout": 5,
}


@pytest.fixture
def tern(tmp_path, dns, mx_port):
    """Factory: tern(delivery={...}, routes=[{...}]) -> running TernServer."""
    made = []

    def factory(delivery=None, routes=(), users=("u@example.test",),
                sections=None, **top):
        d = dict(FAST_DELIVERY, mx_port=mx_port)
        d.update(delivery or {})
        tables = {"delivery": d, "dns": {"upstream": [f"127.0.0.1:{dns.port}"]}}
        tables.update(sections or {})
        srv = TernServer(tmp_path / f"tern{len(made)}",
                         trusted_networks=["127.0.0.0/8"], sections=tables,
                         **top)
        if routes:
            with open(srv.config_path, "a", encoding="utf-8") as f:
                for r in routes:
                    f.write("\n[[route]]\n")
                    for k, v in r.items():
                        f.write(f"{k} = {json.dumps(v)}\n")
        made.append(srv)
        _LIVE.append(srv)
        for u in users:
            srv.add_user(u)
        srv.start()
        return srv

    yield factory
    for srv in made:
        shutdown(srv)


def submit(srv, sender, rcpts, marker, extra_headers=(), mail_params="",
           rcpt_params=""):
    data = build_message(marker, [f"outbound test {marker}", ".leading dot"],
                         sender=sender or "mailer-daemon@example.test",
                         to=rcpts[0], extra_headers=extra_headers)
    with srv.connect() as c:
        c.start()
        r = c.cmd(f"MAIL FROM:<{sender}>{mail_params}")
        assert r.code == 250, r
        for rc in rcpts:
            r = c.cmd(f"RCPT TO:<{rc}>{rcpt_params}")
            assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        from conftest import dot_stuff
        c.send(dot_stuff(data) + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
    return data


def wait_queue_empty(srv, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        js = srv.queue_json()
        if not js:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"queue not empty: {js}\n{srv.log_tail()}")
        time.sleep(0.1)


def wait_for(pred, timeout=15, what="condition", srv=None):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f"\n{srv.log_tail()}" if srv else ""))
        time.sleep(0.1)


def dsn_of(srv, user, marker, timeout=15):
    """The DSN about `marker` in `user`'s Maildir, parsed."""
    d = srv.wait_message(user, marker, timeout=timeout)
    msg = email.message_from_bytes(d.raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg["Content-Type"]
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    # message/delivery-status: a list of field blocks (per message, then
    # per recipient).
    blocks = parts[1].get_payload()
    per_message = blocks[0]
    per_rcpt = blocks[1:]
    return msg, parts, per_message, per_rcpt


# ---------------------------------------------------------------- tests

def test_delivers_to_best_mx(dns, sinks, tern):
    dns.mx("best.test", (20, "mx2.best.test"), (10, "mx1.best.test"))
    dns.a("mx1.best.test", "127.0.0.11")
    dns.a("mx2.best.test", "127.0.0.12")
    first = sinks.smtp("127.0.0.11")
    second = sinks.smtp("127.0.0.12")
    srv = tern()
    m = unique("best")
    data = submit(srv, "u@example.test", ["someone@best.test"], m)
    env = first.wait()[0]
    assert env["to"] == ["someone@best.test"]
    assert env["from"] == "u@example.test"
    # The body goes out unchanged (dot-stuffing undone by the peer), with
    # the Received: field Tern added on receipt in front.
    assert env["data"].endswith(data), env["data"][-200:]
    assert env["data"].startswith(b"Received: from ")
    wait_queue_empty(srv)
    assert second.envelopes == []


def test_fallback_when_first_mx_refuses_connections(dns, sinks, tern):
    dns.mx("fb1.test", (10, "mx1.fb1.test"), (20, "mx2.fb1.test"))
    dns.a("mx1.fb1.test", "127.0.0.13")  # nothing listens there
    dns.a("mx2.fb1.test", "127.0.0.14")
    second = sinks.smtp("127.0.0.14")
    srv = tern()
    submit(srv, "u@example.test", ["x@fb1.test"], unique("fb1"))
    assert second.wait()[0]["to"] == ["x@fb1.test"]
    wait_queue_empty(srv)


def test_fallback_when_first_mx_answers_4xx(dns, sinks, tern):
    dns.mx("fb2.test", (10, "mx1.fb2.test"), (20, "mx2.fb2.test"))
    dns.a("mx1.fb2.test", "127.0.0.15")
    dns.a("mx2.fb2.test", "127.0.0.16")
    first = sinks.smtp("127.0.0.15", {"MAIL": "451 4.3.2 busy, try another"})
    second = sinks.smtp("127.0.0.16")
    srv = tern()
    submit(srv, "u@example.test", ["x@fb2.test"], unique("fb2"))
    second.wait()
    assert first.calls["MAIL"] >= 1
    wait_queue_empty(srv)


def test_fallback_past_dropping_and_stalling_hosts(dns, sinks, tern):
    dns.mx("fb3.test", (10, "mx1.fb3.test"), (20, "mx2.fb3.test"),
           (30, "mx3.fb3.test"))
    dns.a("mx1.fb3.test", "127.0.0.17")
    dns.a("mx2.fb3.test", "127.0.0.18")
    dns.a("mx3.fb3.test", "127.0.0.19")
    dropper = sinks.raw_server("127.0.0.17", "drop")
    staller = sinks.raw_server("127.0.0.18", "stall")
    third = sinks.smtp("127.0.0.19")
    srv = tern()
    submit(srv, "u@example.test", ["x@fb3.test"], unique("fb3"))
    third.wait(timeout=20)
    assert dropper["accepted"] >= 1 and staller["accepted"] >= 1
    wait_queue_empty(srv)


def test_implicit_mx(dns, sinks, tern):
    dns.a("implicit.test", "127.0.0.20")
    sink = sinks.smtp("127.0.0.20")
    srv = tern()
    submit(srv, "u@example.test", ["x@implicit.test"], unique("impl"))
    assert sink.wait()[0]["to"] == ["x@implicit.test"]


def test_mx_pointing_at_cname(dns, sinks, tern):
    dns.mx("cn.test", (10, "alias.cn.test"))
    dns.cname("alias.cn.test", "real.cn.test")
    dns.a("real.cn.test", "127.0.0.21")
    sink = sinks.smtp("127.0.0.21")
    srv = tern()
    submit(srv, "u@example.test", ["x@cn.test"], unique("cname"))
    sink.wait()


def test_null_mx_bounces(dns, sinks, tern):
    dns.mx("nullmx.test", (0, "."))
    srv = tern()
    m = unique("nullmx")
    submit(srv, "u@example.test", ["x@nullmx.test"], m)
    msg, parts, per_msg, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert per_rcpt[0]["Action"] == "failed"
    assert per_rcpt[0]["Status"] == "5.1.10"
    assert "556" in per_rcpt[0]["Diagnostic-Code"]
    assert "null MX" in per_rcpt[0]["Diagnostic-Code"]
    wait_queue_empty(srv)


def test_mx_ip_literal_is_unusable(dns, sinks, tern):
    dns.mx("iplit.test", (10, "127.0.0.22"))
    sink = sinks.smtp("127.0.0.22")
    srv = tern()
    m = unique("iplit")
    submit(srv, "u@example.test", ["x@iplit.test"], m)
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert per_rcpt[0]["Status"] == "5.4.4"
    assert sink.envelopes == []


def test_nonexistent_domain_bounces(dns, sinks, tern):
    srv = tern()
    m = unique("nx")
    submit(srv, "u@example.test", ["x@does-not-exist.test"], m)
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert per_rcpt[0]["Status"] == "5.1.2"


def test_5xx_bounce_carries_remote_text(dns, sinks, tern):
    dns.mx("rej.test", (10, "mx.rej.test"))
    dns.a("mx.rej.test", "127.0.0.23")
    sinks.smtp("127.0.0.23",
               {"RCPT": {"gone@rej.test": "550 5.1.1 <gone@rej.test>: mailbox unavailable here"}})
    srv = tern()
    m = unique("rej")
    data = submit(srv, "u@example.test", ["gone@rej.test"], m)
    msg, parts, per_msg, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert msg["From"].addresses[0].username == "MAILER-DAEMON"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
    assert per_msg["Arrival-Date"]
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; gone@rej.test"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Remote-MTA"] == "dns; mx.rej.test"
    assert r["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert "mailbox unavailable here" in r["Diagnostic-Code"]
    assert "mailbox unavailable here" in parts[0].get_content()
    # RET not given: the whole message comes back.
    assert parts[2].get_content_type() == "message/rfc822"
    returned = parts[2].get_payload()[0]
    assert returned["Subject"] == m
    # The DSN itself came from the null sender.
    d = srv.wait_message("u@example.test", m)
    assert d.return_path == "Return-Path: <>"
    wait_queue_empty(srv)


def test_ret_hdrs_and_envid(dns, sinks, tern):
    dns.mx("hdrs.test", (10, "mx.hdrs.test"))
    dns.a("mx.hdrs.test", "127.0.0.24")
    sinks.smtp("127.0.0.24", {"RCPT": "550 5.7.1 not here"})
    srv = tern()
    m = unique("hdrs")
    submit(srv, "u@example.test", ["x@hdrs.test"], m,
           mail_params=" RET=HDRS ENVID=env123",
           rcpt_params=" NOTIFY=FAILURE ORCPT=rfc822;orig@hdrs.test")
    msg, parts, per_msg, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert per_msg["Original-Envelope-Id"] == "env123"
    assert per_rcpt[0]["Original-Recipient"] == "rfc822; orig@hdrs.test"
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert m in parts[2].get_content()
    assert "outbound test" not in parts[2].get_content()


def test_notify_never_and_success(dns, sinks, tern):
    dns.mx("notify.test", (10, "mx.notify.test"))
    dns.a("mx.notify.test", "127.0.0.25")
    sinks.smtp("127.0.0.25", {"RCPT": {"bad@notify.test": "550 5.1.1 nope"}})
    srv = tern()
    m = unique("never")
    submit(srv, "u@example.test", ["bad@notify.test"], m,
           rcpt_params=" NOTIFY=NEVER")
    wait_queue_empty(srv)
    srv.assert_no_message("u@example.test", m, settle=1.0)
    # NOTIFY=SUCCESS to a peer without DSN: a "relayed" report.
    m2 = unique("success")
    submit(srv, "u@example.test", ["good@notify.test"], m2,
           rcpt_params=" NOTIFY=SUCCESS")
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m2)
    assert per_rcpt[0]["Action"] == "relayed"
    assert per_rcpt[0]["Status"].startswith("2.")


def test_retry_after_451_then_success(dns, sinks, tern):
    dns.mx("retry.test", (10, "mx.retry.test"))
    dns.a("mx.retry.test", "127.0.0.26")
    sink = sinks.smtp("127.0.0.26", {"DATA": ["451 4.3.0 come back later"]})
    srv = tern()
    submit(srv, "u@example.test", ["x@retry.test"], unique("retry"))
    sink.wait(timeout=20)
    assert sink.calls["DATA"] == 2
    wait_queue_empty(srv)


def test_expiry_bounces_with_dsn(dns, sinks, tern):
    dns.mx("expire.test", (10, "mx.expire.test"))
    dns.a("mx.expire.test", "127.0.0.27")
    sinks.smtp("127.0.0.27", {"DATA": "451 4.3.0 always later"})
    srv = tern(delivery={"max_lifetime": 3})
    m = unique("expire")
    submit(srv, "u@example.test", ["x@expire.test"], m)
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m, timeout=25)
    assert per_rcpt[0]["Action"] == "failed"
    assert per_rcpt[0]["Status"] == "4.4.7"
    assert "always later" in per_rcpt[0]["Diagnostic-Code"]
    wait_queue_empty(srv)


def test_delay_warning(dns, sinks, tern):
    dns.mx("delay.test", (10, "mx.delay.test"))
    dns.a("mx.delay.test", "127.0.0.28")
    sink = sinks.smtp("127.0.0.28",
                      {"DATA": ["451 4.3.0 later"] * 4})
    srv = tern(delivery={"delay_warning": 2})
    m = unique("delay")
    submit(srv, "u@example.test", ["x@delay.test"], m)
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m, timeout=20)
    assert per_rcpt[0]["Action"] == "delayed"
    assert per_rcpt[0]["Will-Retry-Until"]
    sink.wait(timeout=30)  # delivered in the end, one warning only
    wait_queue_empty(srv)
    assert len(srv.messages("u@example.test", m)) == 1


def test_null_sender_failure_is_not_bounced_but_told_the_postmaster(dns, sinks, tern):
    """RFC 5321 4.5.5: a bounce is never bounced; with no `postmaster` set
    the double bounce lands in the fallback postmaster mailbox, once, and
    nothing goes back out (tests/test_postmaster.py has the rest)."""
    dns.mx("nobounce.test", (10, "mx.nobounce.test"))
    dns.a("mx.nobounce.test", "127.0.0.29")
    sink = sinks.smtp("127.0.0.29", {"RCPT": "550 5.1.1 no such user"})
    srv = tern()
    m = unique("nullsender")
    submit(srv, "", ["x@nobounce.test"], m)
    got = srv.wait_messages("postmaster@example.test", m, timeout=15)
    wait_queue_empty(srv)
    assert len(got) == 1
    assert b"Subject: Postmaster notify: undeliverable bounce" in got[0]
    assert sink.calls["RCPT"] == 1 and sink.envelopes == []
    for p in (srv.data_dir / "mail").rglob("*"):
        if p.is_file() and "/postmaster/" not in str(p):
            assert m.encode() not in p.read_bytes(), p


def test_one_transaction_per_destination(dns, sinks, tern):
    dns.mx("multi-a.test", (10, "mx.multi-a.test"))
    dns.a("mx.multi-a.test", "127.0.0.30")
    dns.mx("multi-b.test", (10, "mx.multi-b.test"))
    dns.a("mx.multi-b.test", "127.0.0.31")
    a = sinks.smtp("127.0.0.30")
    b = sinks.smtp("127.0.0.31")
    srv = tern()
    submit(srv, "u@example.test",
           ["one@multi-a.test", "two@multi-a.test", "three@multi-b.test"],
           unique("multi"))
    ea = a.wait()
    eb = b.wait()
    assert len(ea) == 1 and sorted(ea[0]["to"]) == ["one@multi-a.test",
                                                    "two@multi-a.test"]
    assert len(eb) == 1 and eb[0]["to"] == ["three@multi-b.test"]
    wait_queue_empty(srv)


def test_partial_recipient_failure(dns, sinks, tern):
    dns.mx("part.test", (10, "mx.part.test"))
    dns.a("mx.part.test", "127.0.0.32")
    sink = sinks.smtp("127.0.0.32", {"RCPT": {"bad@part.test": "550 5.1.1 unknown"}})
    srv = tern()
    m = unique("partial")
    submit(srv, "u@example.test", ["ok@part.test", "bad@part.test"], m)
    assert sink.wait()[0]["to"] == ["ok@part.test"]
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert [r["Final-Recipient"] for r in per_rcpt] == ["rfc822; bad@part.test"]
    wait_queue_empty(srv)


def test_connection_reuse(dns, sinks, tern):
    dns.mx("reuse.test", (10, "mx.reuse.test"))
    dns.a("mx.reuse.test", "127.0.0.33")
    sink = sinks.smtp("127.0.0.33")
    srv = tern(delivery={"max_connections_per_destination": 1})
    # Hold the messages so they go out together.
    ids = []
    for i in range(5):
        submit(srv, "u@example.test", [f"r{i}@reuse.test"], unique("reuse"))
    sink.wait(5)
    wait_queue_empty(srv)
    assert sink.sessions < 5, sink.sessions


def test_waiting_destination_takes_an_idle_connection_slot(dns, sinks, tern):
    # Issue 18: with every connection slot taken, a connection that only
    # idles (waiting for more mail for its own destination) is given up at
    # once for a destination whose mail waits. Before, it kept its slot
    # for its whole idle period and new mail for its own destination went
    # out on it first, while the other destination waited.
    dns.mx("slot-a.test", (10, "mx.slot-a.test"))
    dns.a("mx.slot-a.test", "127.0.0.47")
    dns.mx("slot-b.test", (10, "mx.slot-b.test"))
    dns.a("mx.slot-b.test", "127.0.0.48")
    a = sinks.smtp("127.0.0.47")
    b = sinks.smtp("127.0.0.48")
    srv = tern(delivery={"max_connections": 1})
    submit(srv, "u@example.test", ["x@slot-a.test"], unique("slot-a1"))
    a.wait(1)
    # The connection to A now idles, holding the only slot.
    submit(srv, "u@example.test", ["x@slot-b.test"], unique("slot-b"))
    submit(srv, "u@example.test", ["y@slot-a.test"], unique("slot-a2"))
    b.wait(1)
    a.wait(2)
    wait_queue_empty(srv)
    # B's message went first, and A's second message needed a new
    # connection: the idle one had been handed over.
    assert b.envelopes[0]["at"] < a.envelopes[1]["at"]
    assert a.sessions == 2, a.sessions


def test_dsn_params_passed_to_dsn_capable_peer(dns, sinks, tern):
    # aiosmtpd does not announce DSN: parameters must then not be sent.
    dns.mx("nodsn.test", (10, "mx.nodsn.test"))
    dns.a("mx.nodsn.test", "127.0.0.34")
    sink = sinks.smtp("127.0.0.34")
    srv = tern()
    submit(srv, "u@example.test", ["x@nodsn.test"], unique("nodsn"),
           mail_params=" RET=FULL", rcpt_params=" NOTIFY=FAILURE")
    env = sink.wait()[0]
    assert not any("RET=" in o for o in env["mail_options"]), env
    assert not any("NOTIFY=" in o for o in env["rcpt_options"]), env


def test_8bit_header_to_peer_without_8bitmime_bounces(dns, sinks, tern):
    # A raw peer without 8BITMIME: aiosmtpd always announces it, so script
    # a minimal server by hand. An 8-bit body would be converted to
    # quoted-printable (test_outbound_gaps.py); raw 8-bit in a header field
    # cannot be, without SMTPUTF8.
    dns.mx("seven.test", (10, "mx.seven.test"))
    dns.a("mx.seven.test", "127.0.0.35")
    port = sinks.port
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.35", port))
    s.listen(4)

    def serve():
        try:
            c, _ = s.accept()
        except OSError:
            return
        f = c.makefile("rwb")
        f.write(b"220 seven ESMTP\r\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line[:4].upper()
            if cmd == b"EHLO":
                f.write(b"250-seven\r\n250 PIPELINING\r\n")
            elif cmd == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                break
            else:
                f.write(b"250 ok\r\n")
            f.flush()
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        srv = tern()
        m = unique("eightbit")
        data = build_message(m, ["caf\u00e9 cr\u00e8me"], sender="u@example.test",
                             to="x@seven.test",
                             extra_headers=["X-Note: d\u00e9j\u00e0 vu"])
        with srv.connect() as c:
            c.start()
            assert c.cmd("MAIL FROM:<u@example.test> BODY=8BITMIME").code == 250
            assert c.cmd("RCPT TO:<x@seven.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(data + b".\r\n")
            assert c.reply().code == 250
        _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m)
        assert per_rcpt[0]["Status"] == "5.6.3"
        assert "8BITMIME" in per_rcpt[0]["Diagnostic-Code"]
        assert "header" in per_rcpt[0]["Diagnostic-Code"]
    finally:
        s.close()


# ---------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def selfsigned(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    run_tool(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=smtp.provider.test",
         "-addext", "subjectAltName=DNS:smtp.provider.test,DNS:mx.tls.test"],
        check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx, str(cert)


def test_starttls_opportunistic_with_self_signed(dns, sinks, tern, selfsigned):
    ctx, _ = selfsigned
    dns.mx("tls.test", (10, "mx.tls.test"))
    dns.a("mx.tls.test", "127.0.0.40")
    sink = sinks.smtp("127.0.0.40", tls_context=ctx, require_starttls=True)
    srv = tern()
    submit(srv, "u@example.test", ["x@tls.test"], unique("tlsopp"))
    env = sink.wait()[0]
    assert env["tls"] is True
    wait_for(lambda: "unverified" in srv.log_text(), what="TLS in log", srv=srv)


def test_starttls_required_refuses_self_signed(dns, sinks, tern, selfsigned):
    ctx, _ = selfsigned
    dns.mx("tlsreq.test", (10, "mx.tls.test"))
    sink = sinks.smtp("127.0.0.40", tls_context=ctx, require_starttls=True)
    srv = tern(delivery={"tls": "required"})
    m = unique("tlsreq")
    submit(srv, "u@example.test", ["x@tlsreq.test"], m)
    wait_for(lambda: "not verified" in json.dumps(srv.queue_json()),
             what="TLS failure recorded", srv=srv)
    assert sink.envelopes == []
    js = srv.queue_json()
    assert js and js[0]["recipients"][0]["state"] == "pending"


def test_smarthost_with_starttls_and_auth(dns, sinks, tern, selfsigned):
    ctx, cert = selfsigned
    dns.a("smtp.provider.test", "127.0.0.41")
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.login == b"home" and auth_data.password == b"s3cret"
        return AuthResult(success=ok)

    sink = sinks.smtp("127.0.0.41", name="smtp.provider.test", tls_context=ctx,
                      require_starttls=True, authenticator=authenticator,
                      auth_require_tls=True)
    srv = tern(routes=[{"domain": "*",
                        "relay": f"smtp.provider.test:{sinks.port}",
                        "tls": "required", "ca_file": cert,
                        "auth_user": "home", "auth_password": "s3cret"}])
    # Any domain at all goes to the smarthost, in one transaction.
    submit(srv, "u@example.test", ["a@anywhere.test", "b@elsewhere.test"],
           unique("smarthost"))
    env = sink.wait()[0]
    assert env["tls"] is True
    assert sorted(env["to"]) == ["a@anywhere.test", "b@elsewhere.test"]
    assert seen and seen[0][1:] == (b"home", b"s3cret")
    wait_queue_empty(srv)
    assert "TLSv1" in srv.log_text() and " verified" in srv.log_text()


def test_smarthost_wrong_password_defers(dns, sinks, tern, selfsigned):
    ctx, cert = selfsigned
    dns.a("smtp.provider.test", "127.0.0.41")
    def refuse(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)

    sink = sinks.smtp("127.0.0.41", name="smtp.provider.test", tls_context=ctx,
                      require_starttls=True, authenticator=refuse)
    srv = tern(routes=[{"domain": "*",
                        "relay": f"smtp.provider.test:{sinks.port}",
                        "ca_file": cert, "auth_user": "home",
                        "auth_password": "wrong"}])
    submit(srv, "u@example.test", ["a@anywhere.test"], unique("badauth"))
    wait_for(lambda: "authentication to the relay failed"
             in json.dumps(srv.queue_json()), what="auth failure", srv=srv)
    assert sink.envelopes == []


# ---------------------------------------------------------------- queue control

def entry(srv, needle):
    for e in srv.queue_json():
        if needle in json.dumps(e):
            return e
    return None


def test_queue_survives_restart_and_control(dns, sinks, tern):
    dns.mx("ctl.test", (10, "mx.ctl.test"))
    dns.a("mx.ctl.test", "127.0.0.42")
    sink = sinks.smtp("127.0.0.42", {"DATA": ["451 4.3.0 not now"]})
    srv = tern(delivery={"retry_first": 3600, "retry_max": 3600})
    m = unique("ctl")
    submit(srv, "u@example.test", [f"{m}@ctl.test"], m)
    wait_for(lambda: (entry(srv, m) or {}).get("attempts") == 1,
             what="first attempt", srv=srv)
    before = entry(srv, m)
    assert before["next_attempt"] > time.time() + 3000
    qid = before["id"]
    show = srv.cli("queue", "show", qid).stdout
    assert "451 4.3.0 not now" in show and "mx.ctl.test[127.0.0.42]" in show
    assert f"Subject: {m}" in show
    # Restart: the retry time and attempt count come back; nothing is tried.
    srv.stop()
    r = srv.cli("queue", "flush", check=False)
    assert r.returncode != 0
    assert "server is not running (no control socket at" in r.stderr
    srv.start()
    time.sleep(1.5)
    after = entry(srv, m)
    assert after["attempts"] == 1 and after["next_attempt"] == before["next_attempt"]
    assert sink.calls["DATA"] == 1
    # Hold survives a restart too; a held message is not retried.
    assert "held" in srv.cli("queue", "hold", qid).stdout
    wait_for(lambda: entry(srv, m)["held"], what="held", srv=srv)
    srv.stop()
    srv.start()
    assert "held" in srv.queue_list()
    r = srv.cli("queue", "retry", qid, check=False)
    assert r.returncode != 0 and "on hold" in r.stderr
    srv.cli("queue", "release", qid)
    sink.wait(timeout=15)
    wait_queue_empty(srv)


def test_queue_flush_delete_bounce(dns, sinks, tern):
    dns.mx("ctl2.test", (10, "mx.ctl2.test"))
    dns.a("mx.ctl2.test", "127.0.0.43")
    sink = sinks.smtp("127.0.0.43", {"DATA": ["451 4.3.0 a"] * 3})
    srv = tern(delivery={"retry_first": 3600, "retry_max": 3600})
    ms = [unique("ctl2") for _ in range(3)]
    for m in ms:
        submit(srv, "u@example.test", [f"{m}@ctl2.test"], m)
    wait_for(lambda: all((entry(srv, m) or {}).get("attempts") == 1 for m in ms),
             what="first attempts", srv=srv)
    ids = [entry(srv, m)["id"] for m in ms]
    assert "deleted" in srv.cli("queue", "delete", ids[0]).stdout
    assert "bounced" in srv.cli("queue", "bounce", ids[1]).stdout
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", ms[1])
    assert per_rcpt[0]["Action"] == "failed"
    wait_for(lambda: entry(srv, ms[0]) is None and entry(srv, ms[1]) is None,
             what="delete and bounce", srv=srv)
    srv.cli("queue", "flush")
    sink.wait(1, timeout=15)
    wait_queue_empty(srv)
    r = srv.cli("queue", "retry", "NOSUCHID", check=False)
    assert r.returncode != 0 and "no such message" in r.stderr


def test_control_socket_is_private(dns, tern):
    srv = tern()
    sock = srv.data_dir / "control.sock"
    assert sock.exists()
    assert (os.stat(sock).st_mode & 0o777) == 0o600
