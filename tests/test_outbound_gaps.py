# Outbound delivery corner cases (issue 17's "outbound gaps"): 8-bit mail
# converted to quoted-printable for a peer without 8BITMIME, opportunistic
# STARTTLS that fails and is retried in plain text, QUIT and close_notify on
# TLS connections, mail that would loop back to us, and an IPv6 MX host.
# Loopback only; the DNS zone, sinks and Tern factory are test_outbound's.
import email
import email.policy
import socket
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from dnslib import AAAA, QTYPE

from conftest import HOSTNAME, build_message, unique
# Fixtures are found by pytest in the module namespace, so importing them
# shares test_outbound's DNS zone server, sinks and Tern factory.
from test_outbound import (Handler, dns, dsn_of, mx_port, selfsigned,  # noqa: F401
                           sinks, submit, tern, wait_for)


class RawPeer:
    """A hand-written SMTP server on (ip, port) for what aiosmtpd cannot do:
    no 8BITMIME, STARTTLS answered and then garbage, TLS with a check for
    the client's close_notify. Records every connection's commands and
    messages. `starttls` is None (not offered), "garbage" (220, then bytes
    that are not TLS), "refuse" (454) or an ssl.SSLContext (a real
    handshake)."""

    def __init__(self, ip, port, starttls=None, extensions=("PIPELINING",)):
        self.starttls = starttls
        self.extensions = list(extensions)
        self.conns = []  # per connection: {"cmds": [...], "data": [...], ...}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(8)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"cmds": [], "data": [], "tls": False, "close_notify": None}
            self.conns.append(rec)
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    def _serve(self, c, rec):
        c.settimeout(10)
        f = c.makefile("rwb")
        try:
            self._session(c, f, rec)
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _session(self, c, f, rec):
        f.write(b"220 rawpeer.test ESMTP\r\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("latin-1")
            rec["cmds"].append(cmd)
            verb = cmd[:4].upper()
            if verb == "EHLO":
                ext = list(self.extensions)
                if self.starttls is not None and not rec["tls"]:
                    ext.append("STARTTLS")
                lines = ["rawpeer.test"] + ext
                out = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
                f.write(out.encode())
            elif cmd.upper() == "STARTTLS" and self.starttls == "refuse":
                f.write(b"454 4.7.0 TLS not available right now\r\n")
            elif cmd.upper() == "STARTTLS":
                f.write(b"220 go ahead\r\n")
                f.flush()
                if self.starttls == "garbage":
                    c.sendall(b"this is not a TLS server hello\r\n" * 4)
                    time.sleep(0.2)
                    return
                c = self.starttls.wrap_socket(c, server_side=True)
                rec["tls"] = True
                f = c.makefile("rwb")
                continue
            elif verb == "DATA":
                f.write(b"354 go on\r\n")
                f.flush()
                body = b""
                while True:
                    dl = f.readline()
                    if not dl or dl == b".\r\n":
                        break
                    body += dl[1:] if dl.startswith(b".") else dl
                rec["data"].append(body)
                f.write(b"250 2.0.0 taken\r\n")
            elif verb == "QUIT":
                f.write(b"221 2.0.0 bye\r\n")
                f.flush()
                if rec["tls"]:
                    # Our close_notify, then wait for the client's: unwrap()
                    # fails when the client just drops the connection.
                    try:
                        c.settimeout(4)
                        c.unwrap()
                        rec["close_notify"] = True
                    except (OSError, ssl.SSLError):
                        rec["close_notify"] = False
                return
            else:
                f.write(b"250 2.0.0 ok\r\n")
            f.flush()

    def messages(self):
        return [d for r in self.conns for d in r["data"]]


def send_8bit(srv, rcpt, marker, body_lines, extra_headers=()):
    data = build_message(marker, body_lines, sender="u@example.test", to=rcpt,
                         extra_headers=extra_headers)
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<u@example.test> BODY=8BITMIME").code == 250
        assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(data + b".\r\n")
        assert c.reply().code == 250
    return data


# ---------------------------------------------------------------- 8BITMIME

def test_8bit_converted_to_quoted_printable(dns, sinks, tern):
    dns.mx("qp.test", (10, "mx.qp.test"))
    dns.a("mx.qp.test", "127.0.0.60")
    peer = RawPeer("127.0.0.60", sinks.port)
    try:
        srv = tern()
        m = unique("qp")
        long_line = "\u00fcber " * 30 + "end"
        text = ["caf\u00e9 cr\u00e8me br\u00fbl\u00e9e = sweet", long_line,
                "trailing space "]
        send_8bit(srv, "x@qp.test", m, text)
        wait_for(lambda: peer.messages(), what="message at the 7-bit peer", srv=srv)
        raw = peer.messages()[0]
        mail = [c for r in peer.conns for c in r["cmds"] if c.startswith("MAIL")]
        assert "BODY=8BITMIME" not in mail[0].upper(), mail
        assert all(b < 128 for b in raw), raw
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert all(len(l) <= 76 for l in body.split(b"\r\n")), body
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Content-Transfer-Encoding"] == "quoted-printable"
        assert msg["Subject"] == m
        assert msg.get_content_type() == "text/plain"
        assert msg.get_content_charset() == "utf-8"
        got = msg.get_content().replace("\r\n", "\n")
        assert got == "\n".join(text) + "\n"
    finally:
        peer.close()


def test_8bit_multipart_converted_part_by_part(dns, sinks, tern):
    dns.mx("qpmulti.test", (10, "mx.qpmulti.test"))
    dns.a("mx.qpmulti.test", "127.0.0.61")
    peer = RawPeer("127.0.0.61", sinks.port)
    try:
        srv = tern()
        m = unique("qpmulti")
        body = ["This is a multipart message.",
                "--sep",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "plain ascii part",
                "--sep",
                "Content-Type: text/html; charset=utf-8",
                "Content-Transfer-Encoding: 8bit",
                "",
                "<p>gr\u00fc\u00dfe</p>",
                "--sep--"]
        send_8bit(srv, "x@qpmulti.test", m, body,
                  extra_headers=["MIME-Version: 1.0",
                                 'Content-Type: multipart/alternative; boundary="sep"'])
        wait_for(lambda: peer.messages(), what="message at the 7-bit peer", srv=srv)
        raw = peer.messages()[0]
        assert all(b < 128 for b in raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert parts[0]["Content-Transfer-Encoding"] is None
        assert parts[1]["Content-Transfer-Encoding"] == "quoted-printable"
        assert parts[1].get_content().strip() == "<p>gr\u00fc\u00dfe</p>"
    finally:
        peer.close()


# ---------------------------------------------------------------- STARTTLS

def test_failed_starttls_handshake_retried_in_plain_text(dns, sinks, tern):
    dns.mx("badtls.test", (10, "mx.badtls.test"))
    dns.a("mx.badtls.test", "127.0.0.62")
    peer = RawPeer("127.0.0.62", sinks.port, starttls="garbage")
    try:
        srv = tern()
        m = unique("badtls")
        submit(srv, "u@example.test", ["x@badtls.test"], m)
        wait_for(lambda: peer.messages(), what="plain-text delivery", srv=srv)
        assert m.encode() in peer.messages()[0]
        first, second = peer.conns[0], peer.conns[1]
        assert "STARTTLS" in first["cmds"] and not first["data"]
        assert "STARTTLS" not in second["cmds"] and second["data"]
        assert "retrying once in plain text" in srv.log_text()
    finally:
        peer.close()


def test_failed_starttls_handshake_not_retried_when_tls_required(dns, sinks, tern):
    dns.mx("badtlsreq.test", (10, "mx.badtlsreq.test"))
    dns.a("mx.badtlsreq.test", "127.0.0.63")
    peer = RawPeer("127.0.0.63", sinks.port, starttls="garbage")
    try:
        srv = tern(delivery={"tls": "required"})
        m = unique("badtlsreq")
        submit(srv, "u@example.test", ["x@badtlsreq.test"], m)
        wait_for(lambda: "TLS handshake failed" in str(srv.queue_json()),
                 what="the TLS failure in the queue", srv=srv)
        time.sleep(1.5)  # room for a wrong plain-text retry to show
        assert peer.messages() == []
        assert all("STARTTLS" in r["cmds"] for r in peer.conns), peer.conns
        js = srv.queue_json()
        assert js and js[0]["recipients"][0]["state"] == "pending"
        assert "retrying once in plain text" not in srv.log_text()
    finally:
        peer.close()


def test_refused_starttls_goes_on_in_plain_text(dns, sinks, tern):
    # RFC 3207 4: after a 454 the client may carry on without TLS; the same
    # connection does (no second one is needed: nothing of TLS happened).
    dns.mx("tls454.test", (10, "mx.tls454.test"))
    dns.a("mx.tls454.test", "127.0.0.69")
    peer = RawPeer("127.0.0.69", sinks.port, starttls="refuse")
    try:
        srv = tern()
        m = unique("tls454")
        submit(srv, "u@example.test", ["x@tls454.test"], m)
        wait_for(lambda: peer.messages(), what="plain-text delivery", srv=srv)
        rec = peer.conns[0]
        assert "STARTTLS" in rec["cmds"] and rec["data"] and not rec["tls"]
        assert m.encode() in rec["data"][0]
    finally:
        peer.close()


def test_quit_and_close_notify_over_tls(dns, sinks, tern, selfsigned):
    ctx, _ = selfsigned
    dns.mx("tlsquit.test", (10, "mx.tlsquit.test"))
    dns.a("mx.tlsquit.test", "127.0.0.64")
    peer = RawPeer("127.0.0.64", sinks.port, starttls=ctx)
    try:
        srv = tern()
        submit(srv, "u@example.test", ["x@tlsquit.test"], unique("tlsquit"))
        wait_for(lambda: peer.conns and peer.conns[0]["close_notify"] is not None,
                 what="the end of the TLS session", srv=srv)
        rec = peer.conns[0]
        assert rec["tls"] and rec["data"]
        assert rec["cmds"][-1] == "QUIT", rec["cmds"]
        assert rec["close_notify"] is True
    finally:
        peer.close()


# ---------------------------------------------------------------- loops

def test_mx_naming_ourselves_bounces_as_loop(dns, sinks, tern):
    # We are the best MX: nothing may be tried (RFC 5321 5.1), not even the
    # worse host that would take the message.
    dns.mx("loop.test", (5, HOSTNAME), (10, "mx2.loop.test"))
    dns.a("mx2.loop.test", "127.0.0.65")
    worse = sinks.smtp("127.0.0.65")
    srv = tern()
    m = unique("loopmx")
    submit(srv, "u@example.test", ["x@loop.test"], m)
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert per_rcpt[0]["Status"] == "5.4.6"
    assert "loops back to myself" in per_rcpt[0]["Diagnostic-Code"]
    assert worse.sessions == 0


def test_better_mx_than_ourselves_is_used(dns, sinks, tern):
    dns.mx("backup.test", (20, HOSTNAME), (10, "mx1.backup.test"),
           (30, "mx3.backup.test"))
    dns.a("mx1.backup.test", "127.0.0.66")
    dns.a("mx3.backup.test", "127.0.0.67")
    best = sinks.smtp("127.0.0.66", script={"MAIL": "451 4.3.0 later"})
    worst = sinks.smtp("127.0.0.67")
    srv = tern()
    m = unique("backupmx")
    submit(srv, "u@example.test", ["x@backup.test"], m)
    wait_for(lambda: best.calls["MAIL"] >= 1, what="the better MX tried", srv=srv)
    time.sleep(1.5)
    # The host worse than us never gets it; the mail waits for the better.
    assert worst.sessions == 0
    js = srv.queue_json()
    assert js and js[0]["recipients"][0]["state"] == "pending"


def test_peer_greeting_with_our_name_bounces_as_loop(dns, sinks, tern):
    dns.mx("mirror.test", (10, "mx.mirror.test"))
    dns.a("mx.mirror.test", "127.0.0.68")
    sink = sinks.smtp("127.0.0.68", name=HOSTNAME)
    srv = tern()
    m = unique("loopgreet")
    submit(srv, "u@example.test", ["x@mirror.test"], m)
    _, _, _, per_rcpt = dsn_of(srv, "u@example.test", m)
    assert per_rcpt[0]["Status"] == "5.4.6"
    assert "mail for mirror.test loops back to myself" in per_rcpt[0]["Diagnostic-Code"]
    assert sink.calls["MAIL"] == 0 and sink.envelopes == []


# ---------------------------------------------------------------- IPv6

def test_ipv6_mx_host(dns, sinks, tern):
    dns.mx("six.test", (10, "mx.six.test"))
    dns.add("mx.six.test", AAAA("::1"), QTYPE.AAAA)  # and no A record
    peers = []

    class PeerHandler(Handler):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            peers.append(session.peer[0])
            return await super().handle_EHLO(server, session, envelope, hostname,
                                             responses)

    h = PeerHandler()
    c = Controller(h, hostname="::1", port=sinks.port, server_hostname="sink-v6",
                   ready_timeout=5)
    c.start()
    sinks.controllers.append(c)
    srv = tern()
    m = unique("ipv6")
    submit(srv, "u@example.test", ["x@six.test"], m)
    env = h.wait()[0]
    assert m.encode() in env["data"]
    assert peers and peers[0] == "::1", peers
