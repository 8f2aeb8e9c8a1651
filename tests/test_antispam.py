# Spam defences at the SMTP door (issue 15), against the real binary: DNS
# block- and allowlists (RFC 5782) and greylisting. A dnslib server on
# 127.0.0.1 serves the lists; clients connect from different 127.0.0.x
# addresses so that each has a listing of its own.
import smtplib
import signal
import socket
import time

import pytest
from dnslib import QTYPE, TXT, A

from conftest import (PASSWORD, TernServer, build_message, free_port, ipv6_available, shutdown,
                      unique, _LIVE)
from faultkit import start_dns, stop_dns

BLOCKED = "127.0.0.2"       # in bl.test, with a reason
ALLOWED = "127.0.0.3"       # in bl.test and in wl.test: the allowlist wins
REFUSING = "127.0.0.4"      # bl.test answers 127.255.255.254: it refuses us
CLEAN = "127.0.0.5"
GREY = "127.0.0.6"
GREY_NEIGHBOUR = "127.0.0.7"  # the same /24 as GREY
TRUSTED = "127.0.0.9"       # in bl.test, but in trusted_networks


def reversed_name(ip, zone):
    return ".".join(reversed(ip.split("."))) + "." + zone


@pytest.fixture(scope="module")
def dns():
    zone = start_dns()
    zone._add(reversed_name(BLOCKED, "bl.test"), A("127.0.0.2"), QTYPE.A)
    zone._add(reversed_name(BLOCKED, "bl.test"),
              TXT(b"Listed at bl.test: see http://bl.test/" + BLOCKED.encode()), QTYPE.TXT)
    zone._add(reversed_name(ALLOWED, "bl.test"), A("127.0.0.2"), QTYPE.A)
    zone._add(reversed_name(ALLOWED, "wl.test"), A("127.0.10.3"), QTYPE.A)
    zone._add(reversed_name(REFUSING, "bl.test"), A("127.255.255.254"), QTYPE.A)
    zone._add(reversed_name(TRUSTED, "bl.test"), A("127.0.0.2"), QTYPE.A)
    yield zone
    stop_dns(zone)


def server(tmp_path, dns, antispam, **kw):
    srv = TernServer(tmp_path / "srv", sections={
        "dns": {"upstream": [f"127.0.0.1:{dns.port}"]}, "antispam": antispam}, **kw)
    _LIVE.append(srv)
    for u in ("u@example.test", "v@example.test", "w@example.test"):
        srv.add_user(u)
    srv.start()
    return srv


@pytest.fixture
def lists(tmp_path, dns):
    srv = server(tmp_path, dns, {"dnsbl": ["bl.test"], "dnswl": ["wl.test"]},
                 trusted_networks=[TRUSTED + "/32"])
    yield srv
    shutdown(srv)


def smtp_from(srv, source):
    return smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test",
                        source_address=(source, 0), timeout=20)


def rcpt(s, sender, rcpt_to):
    s.ehlo_or_helo_if_needed()
    code, _ = s.mail(sender)
    assert code == 250
    return s.rcpt(rcpt_to)


def test_listed_client_is_refused_at_rcpt_with_the_lists_reason(lists):
    with smtp_from(lists, BLOCKED) as s:
        code, text = rcpt(s, "a@remote.test", "u@example.test")
        assert code == 554
        assert text.decode() == ("5.7.1 Service unavailable; client [127.0.0.2] blocked using "
                                 "bl.test; Listed at bl.test: see http://bl.test/127.0.0.2")
        # Every recipient gets the same answer; DATA has none to take.
        assert s.rcpt("v@example.test")[0] == 554
        assert s.docmd("DATA")[0] == 503  # RFC 5321 3.3: no valid recipient
    log = lists.log_text()
    assert "smtp dnsbl listed client=127.0.0.2 list=bl.test codes=127.0.0.2" in log
    assert "reason=dnsbl" in log


def test_unlisted_clients_and_a_refusing_list_let_mail_through(lists):
    for source in (CLEAN, REFUSING):
        marker = unique("clean")
        with smtp_from(lists, source) as s:
            s.sendmail("a@remote.test", ["u@example.test"],
                       build_message(marker, ["hello"]))
        lists.wait_message("u@example.test", marker)
    # RFC 5782 2.3 / Spamhaus: 127.255.255.x is the list refusing the query,
    # logged as an error, never a listing.
    assert "smtp dnsbl lookup failed client=127.0.0.4 list=bl.test" in lists.log_text()


def test_allowlisted_and_trusted_clients_skip_the_blocklists(lists):
    marker = unique("allowed")
    with smtp_from(lists, ALLOWED) as s:
        s.sendmail("a@remote.test", ["u@example.test"], build_message(marker, ["hi"]))
    lists.wait_message("u@example.test", marker)
    assert "smtp dnswl client=127.0.0.3 list=wl.test" in lists.log_text()
    marker = unique("trusted")
    with smtp_from(lists, TRUSTED) as s:
        s.sendmail("a@remote.test", ["u@example.test"], build_message(marker, ["hi"]))
    lists.wait_message("u@example.test", marker)
    assert "client=127.0.0.9 list=" not in lists.log_text()


def test_submission_from_a_listed_address_is_not_screened(tmp_path, dns):
    """A user logged in on the submission port may sit behind a listed
    address (a hotel network): only port 25 strangers meet the lists."""
    sub = free_port()
    srv = server(tmp_path, dns, {"dnsbl": ["bl.test"], "greylist": True},
                 extra_listen=[(f"127.0.0.1:{sub}", "submission", {"allow_plaintext_auth": True})])
    try:
        marker = unique("sub")
        with smtplib.SMTP("127.0.0.1", sub, local_hostname="client.test",
                          source_address=(BLOCKED, 0), timeout=20) as s:
            s.login("u@example.test", PASSWORD)
            s.sendmail("u@example.test", ["v@example.test"],
                       build_message(marker, ["x"], sender="u@example.test"))
        srv.wait_message("v@example.test", marker)
    finally:
        shutdown(srv)


@pytest.fixture
def grey(tmp_path, dns):
    srv = server(tmp_path, dns, {"greylist": True, "greylist_delay": 2, "dnswl": ["wl.test"]})
    yield srv
    shutdown(srv)


def test_greylisting_defers_new_triplets_until_the_delay(grey):
    with smtp_from(grey, GREY) as s:
        code, text = rcpt(s, "a@remote.test", "u@example.test")
        assert code == 451
        assert text.decode() == ("4.7.1 <u@example.test>: Greylisted, "
                                 "try again in 2 seconds")
        assert s.rcpt("v@example.test")[0] == 451      # its own triplet
        s.rset()
        # Too early: still deferred, with the time left.
        code, text = rcpt(s, "a@remote.test", "u@example.test")
        assert code == 451 and b"try again in" in text
    time.sleep(2.5)
    marker = unique("grey")
    with smtp_from(grey, GREY) as s:
        code, _ = rcpt(s, "a@remote.test", "u@example.test")
        assert code == 250
        assert s.rcpt("v@example.test")[0] == 250
        assert s.rcpt("w@example.test")[0] == 451      # a new triplet
        code, _ = s.data(build_message(marker, ["after the delay"]))
        assert code == 250
    grey.wait_message("u@example.test", marker)
    grey.wait_message("v@example.test", marker)
    grey.assert_no_message("w@example.test", marker)
    # The triplet is the client's /24: a neighbour passes as well; a
    # different sender is a new triplet (case does not matter).
    with smtp_from(grey, GREY_NEIGHBOUR) as s:
        assert rcpt(s, "A@Remote.TEST", "U@example.test")[0] == 250
        s.rset()
        assert rcpt(s, "b@remote.test", "u@example.test")[0] == 451
    assert "reason=greylist" in grey.log_text()


def test_greylisting_survives_a_restart_and_spares_allowlisted_clients(grey):
    with smtp_from(grey, GREY) as s:
        assert rcpt(s, "c@remote.test", "u@example.test")[0] == 451
    time.sleep(2.5)
    grey.stop()
    grey.start()
    with smtp_from(grey, GREY) as s:
        assert rcpt(s, "c@remote.test", "u@example.test")[0] == 250
    # A DNSWL-listed client is never greylisted (and bl.test is not
    # configured here, so its listing there does not matter).
    marker = unique("wl")
    with smtp_from(grey, ALLOWED) as s:
        s.sendmail("d@remote.test", ["u@example.test"], build_message(marker, ["x"]))
    grey.wait_message("u@example.test", marker)


def test_trusted_network_skips_greylisting(tmp_path, dns):
    srv = server(tmp_path, dns, {"greylist": True, "greylist_delay": 300},
                 trusted_networks=["127.0.0.8/32"])
    try:
        marker = unique("trusted")
        with smtp_from(srv, "127.0.0.8") as s:
            s.sendmail("e@remote.test", ["u@example.test"], build_message(marker, ["x"]))
        srv.wait_message("u@example.test", marker)
        with smtp_from(srv, CLEAN) as s:
            assert rcpt(s, "e@remote.test", "u@example.test")[0] == 451
    finally:
        shutdown(srv)


def test_pregreet_client_is_refused_and_a_patient_one_is_greeted(tmp_path, dns):
    srv = server(tmp_path, dns, {"pregreet": True, "pregreet_wait_ms": 400})
    try:
        # A bot speaks before the 220 arrives.
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert data.startswith(b"554 5.5.1 "), data
        assert b"220" not in data
        assert "smtp pregreet client=127.0.0.1 bytes=" in srv.log_text()
        # A real client waits for the greeting (RFC 5321 4.3.1) and gets it
        # after the wait.
        started = time.monotonic()
        marker = unique("patient")
        with smtp_from(srv, CLEAN) as s:
            s.sendmail("a@remote.test", ["u@example.test"], build_message(marker, ["x"]))
        assert time.monotonic() - started >= 0.4
        srv.wait_message("u@example.test", marker)
    finally:
        shutdown(srv)


def away_from_window_edge(seconds):
    """Fixed windows of the clock: keep a test's counts inside one."""
    left = seconds - time.time() % seconds
    if left < 10:
        time.sleep(left + 0.5)


def test_user_rate_limits_and_user_show(tmp_path, dns):
    sub = free_port()
    srv = server(tmp_path, dns, {},
                 extra_listen=[(f"127.0.0.1:{sub}", "submission", {"allow_plaintext_auth": True})])
    srv.sections["ratelimit"] = {"user_messages_per_hour": 2, "user_recipients_per_hour": 3}
    srv.stop()
    srv.write_config()
    srv.start()
    try:
        away_from_window_edge(3600)
        with smtplib.SMTP("127.0.0.1", sub, local_hostname="client.test", timeout=20) as s:
            s.login("u@example.test", PASSWORD)
            s.sendmail("u@example.test", ["v@example.test", "w@example.test"],
                       build_message(unique("one"), ["x"], sender="u@example.test"))
            assert s.mail("u@example.test")[0] == 250
            assert s.rcpt("v@example.test")[0] == 250
            code, text = s.rcpt("w@example.test")
            assert code == 451
            assert text.decode().startswith(
                "4.7.1 Too many recipients from u@example.test this hour (limit 3), "
                "try again in ")
            assert s.data(build_message(unique("two"), ["x"], sender="u@example.test"))[0] == 250
            code, text = s.mail("u@example.test")
            assert code == 451
            assert b"Too many messages from u@example.test this hour (limit 2)" in text
        out = srv.cli("user", "show", "u@example.test").stdout
        assert out.splitlines()[0] == "u@example.test"
        assert "sent this hour: 2 messages (limit 2), 3 recipients (limit 3)" in out
        assert "sent today: 2 messages (limit none), 3 recipients (limit none)" in out
        # Another account has its own counts; a SIGHUP keeps them.
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with smtplib.SMTP("127.0.0.1", sub, local_hostname="client.test", timeout=20) as s:
            s.login("v@example.test", PASSWORD)
            assert s.mail("v@example.test")[0] == 250
        assert "sent this hour: 2 messages" in srv.cli("user", "show", "u@example.test").stdout
        assert "reason=ratelimit" in srv.log_text()
    finally:
        shutdown(srv)


def test_connections_per_minute_from_one_address(tmp_path, dns):
    srv = server(tmp_path, dns, {})
    srv.sections["ratelimit"] = {"client_connections_per_minute": 2}
    srv.stop()
    srv.write_config()
    srv.start()
    try:
        away_from_window_edge(60)
        for _ in range(2):
            with smtp_from(srv, CLEAN) as s:
                assert s.noop()[0] == 250
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtp_from(srv, CLEAN)
        assert refused.value.smtp_code == 421
        assert b"4.7.0 Too many connections from [127.0.0.5] this minute" in refused.value.smtp_error
        with smtp_from(srv, GREY) as s:  # another address has its own count
            assert s.noop()[0] == 250
    finally:
        shutdown(srv)


def nibbles(ip6_packed):
    return ".".join(f"{b & 0xf:x}.{b >> 4:x}" for b in reversed(ip6_packed))


def test_ipv6_client_is_looked_up_by_nibbles(tmp_path, dns):
    if not ipv6_available():
        pytest.skip("no IPv6 loopback here")
    # RFC 5782 2.4: ::1 is 1.0.0.0...0.bl6.test (32 nibbles, last first).
    dns._add(nibbles(socket.inet_pton(socket.AF_INET6, "::1")) + ".bl6.test",
             A("127.0.0.4"), QTYPE.A)
    port6 = free_port("::1")
    srv = server(tmp_path, dns, {"dnsbl": ["bl6.test"]},
                 extra_listen=[(f"[::1]:{port6}", "smtp")])
    try:
        with smtplib.SMTP("::1", port6, local_hostname="client.test", timeout=20) as s:
            code, text = rcpt(s, "a@remote.test", "u@example.test")
            assert code == 554
            assert b"client [::1] blocked using bl6.test" in text
        assert "smtp dnsbl listed client=::1 list=bl6.test codes=127.0.0.4" in srv.log_text()
    finally:
        shutdown(srv)
