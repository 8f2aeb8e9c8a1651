# Mail filters (Sendmail milter protocol v6) against the real binary: Tern is
# the MTA side, the filter is tests/milter_peer.py on pymilter, i.e. on
# sendmail's libmilter. The filter's verdicts at MAIL, RCPT and end of
# message, its message modifications, quarantine, the macros Tern sends,
# several filters in a row, and what on_error does when a filter is
# unreachable, dies or hangs.
import importlib.util
import json
import pathlib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import (DEFAULT_USERS, HOSTNAME, PASSWORD, _LIVE, build_message,
                      free_port, unique)

PEER = pathlib.Path(__file__).resolve().with_name("milter_peer.py")

# Recipients the filter refuses by their local part; they exist, so that
# Tern's own recipient checks let them through to the filter.
USERS = DEFAULT_USERS + ("mreject@example.test", "mtempfail@example.test",
                         "mreply@example.test")


# ---------------------------------------------------------------- the filter

class MilterPeer:
    """tests/milter_peer.py in a process of its own, and what it recorded."""

    log_label = "milter peer log"

    def __init__(self, base, unix=False, tag="", hang_seconds=30):
        self.base = pathlib.Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.record_dir = self.base / "records"
        self.log_path = self.base / "milter.log"
        self.tag = tag
        self.hang_seconds = hang_seconds
        self.sock_dir = None
        if unix:
            # A socket path has room for about 100 bytes: not under tmp_path.
            self.sock_dir = tempfile.mkdtemp(prefix="tern-milter-")
            self.sock_path = str(pathlib.Path(self.sock_dir) / "peer.sock")
            self.spec = "unix:" + self.sock_path
            self.address = "unix:" + self.sock_path
        else:
            self.port = free_port()
            self.spec = f"inet:{self.port}@127.0.0.1"
            self.address = f"127.0.0.1:{self.port}"
        self.proc = None
        self.expect_exit = False  # set by tests that make it die

    def start(self, timeout=10):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(PEER), "--socket", self.spec,
                 "--record", str(self.record_dir), "--tag", self.tag,
                 "--hang-seconds", str(self.hang_seconds)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"milter peer exited with {self.proc.returncode} "
                                     f"at start-up\n{self.log_tail()}")
            if self._listening():
                return self
            time.sleep(0.05)
        raise AssertionError(f"milter peer not listening on {self.spec}\n{self.log_tail()}")

    def _listening(self):
        # A bare connection and close: libmilter makes no filter object
        # (and no record) before option negotiation.
        try:
            if self.sock_dir:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect(self.sock_path)
            else:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        """Ends the process; returns a complaint if it had died unasked."""
        complaint = None
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is not None and not self.expect_exit:
                complaint = f"milter peer died during the test with {rc}\n{self.log_tail()}"
            if rc is None:
                # libmilter's SIGTERM handling waits seconds for its
                # threads; the filter keeps nothing worth a clean exit.
                self.proc.kill()
                self.proc.wait()
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        return complaint

    def wait_exit(self, timeout=5):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"milter peer still running after {timeout}s")

    def log_tail(self, n=40):
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-n:])

    # -- records: one JSON file per SMTP connection, rewritten on each event
    def connections(self):
        out = []
        if not self.record_dir.is_dir():
            return out
        for p in sorted(self.record_dir.glob("conn-*.json")):
            try:
                out.append(json.loads(p.read_text("utf-8")))
            except (ValueError, FileNotFoundError):
                continue  # replaced under us; it will be read next time
        return sorted(out, key=lambda c: c["seq"])

    def wait(self, pred, what, timeout=5):
        """Polls the records until pred(connections) is truthy; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            got = pred(self.connections())
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"milter peer: no {what} within {timeout}s; records: "
                    f"{json.dumps(self.connections(), indent=1)[:4000]}")
            time.sleep(0.05)

    def message(self, marker, timeout=5):
        """(connection, message) of the message whose Subject has `marker`,
        once the filter has answered its end of message."""
        def find(conns):
            for c in conns:
                for m in c["messages"]:
                    if any(n.lower() == "subject" and marker in v for n, v in m["headers"]) \
                            and any(w == "eom" for w, _ in m["verdicts"]):
                        return c, m
            return None
        return self.wait(find, f"message {marker!r}", timeout)

    def message_from(self, sender_part, timeout=5):
        """(connection, message) of the transaction whose MAIL FROM has
        `sender_part`, once the filter has answered MAIL."""
        def find(conns):
            for c in conns:
                for m in c["messages"]:
                    if sender_part in m["mail"] and m["verdicts"]:
                        return c, m
            return None
        return self.wait(find, f"transaction from {sender_part!r}", timeout)


@pytest.fixture
def milter_peer(tmp_path):
    """Factory: milter_peer(unix=False, tag="", hang_seconds=30) -> a
    running MilterPeer; each is stopped at the end of the test."""
    if importlib.util.find_spec("Milter") is None:
        pytest.fail(f"pymilter is missing from {sys.executable}: install the Debian "
                    "package python3-milter (scripts/deps.sh test does)", pytrace=False)
    peers = []

    def factory(**kwargs):
        peer = MilterPeer(tmp_path / f"milter{len(peers)}", **kwargs)
        peers.append(peer)
        _LIVE.append(peer)
        return peer.start()

    yield factory
    complaints = []
    for peer in peers:
        complaint = peer.stop()
        if complaint:
            complaints.append(complaint)
        if peer in _LIVE:
            _LIVE.remove(peer)
    if complaints:
        pytest.fail("\n".join(complaints))


def milter_server(make_server, *filters, on_error="tempfail", timeout=5, **kwargs):
    """A Tern server with `filters` (MilterPeers or addresses) in a row."""
    entries = [{"address": f if isinstance(f, str) else f.address,
                "on_error": on_error, "timeout": timeout} for f in filters]
    kwargs.setdefault("users", USERS)
    return make_server(milter=entries, **kwargs)


@pytest.fixture
def pair(make_server, milter_peer):
    """A server with one well-behaved filter (on_error tempfail)."""
    peer = milter_peer()
    srv = milter_server(make_server, peer)
    srv.peer = peer
    return srv


# ---------------------------------------------------------------- helpers

def queued_id(reply):
    m = re.search(r"queued as (\S+)", reply.text)
    assert reply.code == 250 and m, reply
    return m.group(1)


def message_with(marker, actions=(), body=("hello", "world"), sender="a@remote.test",
                 to="u@example.test", extra=()):
    return build_message(marker, list(body), sender=sender, to=to,
                         extra_headers=[f"X-Test-Action: {a}" for a in actions] + list(extra))


def send(srv, data, sender="a@remote.test", rcpts=("u@example.test",)):
    """One message in an SMTP connection of its own; the reply to its end."""
    with srv.connect() as c:
        c.start()
        reply = c.send_message(sender, list(rcpts), data)
        c.cmd("QUIT")
    return reply


def norm(value):
    return " ".join(value.split())


def delivered_headers(d):
    """(name, value) of a delivered message's fields, past Tern's
    Return-Path and Delivered-To."""
    items = d.parsed().items()
    assert [n for n, _ in items[:2]] == ["Return-Path", "Delivered-To"], items[:3]
    return [(n, norm(v)) for n, v in items[2:]]


def body_of(d):
    return d.raw.split(b"\n\n", 1)[1]


def queue_entries(srv):
    return srv.queue_json()


# ---------------------------------------------------------------- what it sees

def test_filter_sees_the_connection_envelope_headers_body_and_macros(pair):
    srv, peer = pair, pair.peer
    marker = unique("seen")
    data = message_with(marker, body=["hello", ".a line with a leading dot", "world"])
    with srv.connect() as c:
        c.start("client.test")
        client_port = c.sock.getsockname()[1]
        reply = c.send_message("a@remote.test", ["u@example.test"], data)
        qid = queued_id(reply)
        c.cmd("QUIT")
    srv.wait_message("u@example.test", marker)
    conn, msg = peer.message(marker)

    assert conn["connect"]["family"] == "inet"
    assert conn["connect"]["address"] == ["127.0.0.1", client_port]
    macros = conn["connect"]["macros"]
    assert macros.get("j") == HOSTNAME, macros
    assert macros.get("{daemon_name}") == "smtp", macros
    assert macros.get("{client_addr}") == "127.0.0.1", macros
    assert macros.get("{client_port}") == str(client_port), macros
    assert conn["helo"]["name"] == "client.test"

    assert msg["mail"].strip("<>") == "a@remote.test"
    assert msg["macros"]["mail"].get("{mail_addr}") == "a@remote.test", msg["macros"]
    # Port 25 without AUTH: no login to tell.
    assert not msg["macros"]["mail"].get("{auth_authen}"), msg["macros"]
    assert [r["addr"].strip("<>") for r in msg["rcpts"]] == ["u@example.test"]
    assert msg["rcpts"][0]["macros"].get("{rcpt_addr}") == "u@example.test"

    # {i} is the queue id Tern gave in its 250.
    assert msg["macros"]["eom"].get("{i}") == qid, msg["macros"]
    for stage in ("data", "eoh"):
        assert msg["macros"].get(stage, {}).get("{i}", qid) == qid, msg["macros"]

    # Tern's Received: comes first, then the client's fields in order,
    # values without the one space after the colon.
    names = [n for n, _ in msg["headers"]]
    assert names[0] == "Received", msg["headers"]
    received = msg["headers"][0][1]
    assert f"by {HOSTNAME} (Tern)" in received and qid in received, received
    client_fields = [n for n in names[1:] if n in ("From", "To", "Subject", "Date", "Message-ID")]
    assert client_fields == ["From", "To", "Subject", "Date", "Message-ID"], names
    assert dict(msg["headers"]).get("Subject") == marker, msg["headers"]
    # The body with CRLF line ends and no dot-stuffing.
    assert msg["body"] == "hello\r\n.a line with a leading dot\r\nworld\r\n"
    assert conn["events"][:9] == ["negotiate", "connect", "helo", "mail", "rcpt",
                                  "data", "eoh", "body", "eom"], conn["events"]
    # After QUIT, Tern closes the filter's connection.
    peer.wait(lambda cs: all(c["closed"] for c in cs), "close after QUIT")


def test_filter_is_connected_at_the_first_mail_and_kept_for_the_session(pair):
    srv, peer = pair, pair.peer
    m1, m3 = unique("first"), unique("third")
    with srv.connect() as c:
        c.start()
        assert c.cmd("NOOP").code == 250
        time.sleep(0.5)  # nothing may happen: there is nothing to wait for
        assert peer.connections() == [], "connected to the filter before MAIL"
        assert queued_id(c.send_message("a@remote.test", ["u@example.test"],
                                        message_with(m1)))
        # A transaction given up with RSET.
        assert c.cmd("MAIL FROM:<b@remote.test>").code == 250
        assert c.cmd("RCPT TO:<v@example.test>").code == 250
        assert c.cmd("RSET").code == 250
        assert queued_id(c.send_message("c@remote.test", ["w@example.test"],
                                        message_with(m3, to="w@example.test")))
        conns = peer.connections()
        assert len(conns) == 1, conns
        c.cmd("QUIT")
    srv.wait_message("u@example.test", m1)
    srv.wait_message("w@example.test", m3)
    conn = peer.wait(lambda cs: cs and cs[0]["closed"] and cs[0], "close after QUIT")
    assert len(peer.connections()) == 1
    events = conn["events"]
    assert events.count("negotiate") == 1 and events.count("connect") == 1, events
    assert events.count("helo") == 1, events
    mails = [i for i, e in enumerate(events) if e == "mail"]
    assert len(mails) == 3, events
    assert "abort" in events[mails[1]:mails[2]], events
    assert [m["mail"].strip("<>") for m in conn["messages"]] == \
        ["a@remote.test", "b@remote.test", "c@remote.test"]
    assert conn["messages"][1]["aborted"] is True


# ---------------------------------------------------------------- verdicts

def test_reject_and_tempfail_at_mail(pair):
    srv, peer = pair, pair.peer
    dom = unique("d") + ".test"
    with srv.connect() as c:
        c.start()
        r = c.cmd(f"MAIL FROM:<milter-reject@{dom}>")
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        r = c.cmd(f"MAIL FROM:<milter-tempfail@{dom}>")
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        r = c.cmd(f"MAIL FROM:<milter-reply@{dom}>")
        assert r.lines == ["553 5.7.1 Sender refused by the test filter"], r
        # The session goes on, with the same filter.
        marker = unique("after")
        assert queued_id(c.send_message("a@remote.test", ["u@example.test"],
                                        message_with(marker)))
        c.cmd("QUIT")
    srv.wait_message("u@example.test", marker)
    assert len(peer.connections()) == 1
    _, msg = peer.message_from(f"milter-reject@{dom}")
    assert msg["verdicts"] == [["mail", "reject"]]


def test_recipients_refused_one_by_one(pair):
    srv = pair
    marker = unique("rcpts")
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        r = c.cmd("RCPT TO:<mreject@example.test>")
        assert (r.code, r.enhanced) == (550, "5.7.1"), r
        r = c.cmd("RCPT TO:<mtempfail@example.test>")
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        r = c.cmd("RCPT TO:<mreply@example.test>")
        assert r.lines == ["550 5.7.1 Not this one, says the filter"], r
        assert c.cmd("RCPT TO:<v@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(message_with(marker) + b".\r\n")
        queued_id(c.reply())
        c.cmd("QUIT")
    srv.wait_message("u@example.test", marker)
    srv.wait_message("v@example.test", marker)
    for refused in ("mreject", "mtempfail", "mreply"):
        assert srv.messages(f"{refused}@example.test", marker) == []


def test_pipelined_commands_get_the_filters_answers_in_order(pair):
    srv = pair
    marker = unique("pipelined")
    with srv.connect() as c:
        c.start()
        c.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<u@example.test>\r\n"
               "RCPT TO:<mreject@example.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\n")
        mail, r1, r2, r3, data = c.replies(5)
        assert [mail.code, r1.code, r2.code, r3.code, data.code] == [250, 250, 550, 250, 354], \
            (mail, r1, r2, r3, data)
        assert r2.enhanced == "5.7.1", r2
        c.send(message_with(marker, ["addheader X-Pipelined yes"]) + b".\r\n")
        queued_id(c.reply())
        c.cmd("QUIT")
    for rcpt in ("u@example.test", "v@example.test"):
        d = srv.wait_message(rcpt, marker)
        assert ("X-Pipelined", "yes") in delivered_headers(d)


def test_bdat_message_is_filtered_like_data(pair):
    srv, peer = pair, pair.peer
    marker = unique("bdat")
    data = message_with(marker, ["addheader X-Chunked yes"])
    half = len(data) // 2
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        c.send(f"BDAT {half}\r\n".encode() + data[:half])
        assert c.reply().code == 250
        c.send(f"BDAT {len(data) - half} LAST\r\n".encode() + data[half:])
        qid = queued_id(c.reply())
        c.cmd("QUIT")
    d = srv.wait_message("u@example.test", marker)
    assert ("X-Chunked", "yes") in delivered_headers(d)
    _, msg = peer.message(marker)
    assert msg["body"] == "hello\r\nworld\r\n"
    assert msg["macros"]["eom"].get("{i}") == qid


def test_large_body_reaches_the_filter_whole(pair):
    srv, peer = pair, pair.peer
    marker = unique("large")
    # About 240 KB: several body packets of at most 64 KB.
    lines = [f"{i:06d} " + "x" * 72 for i in range(3000)]
    queued_id(send(srv, message_with(marker, ["addheader X-Large yes"], body=lines)))
    d = srv.wait_message("u@example.test", marker)
    assert ("X-Large", "yes") in delivered_headers(d)
    assert body_of(d) == "\n".join(lines).encode() + b"\n"
    _, msg = peer.message(marker)
    assert msg["body"] == "\r\n".join(lines) + "\r\n"


def test_null_sender_reaches_the_filter(pair):
    srv, peer = pair, pair.peer
    marker = unique("bounce")
    queued_id(send(srv, message_with(marker, sender="mailer-daemon@remote.test"), sender=""))
    d = srv.wait_message("u@example.test", marker)
    assert d.return_path == "Return-Path: <>", d.fields
    _, msg = peer.message(marker)
    assert msg["mail"] == "<>", msg["mail"]
    assert not msg["macros"]["mail"].get("{mail_addr}"), msg["macros"]


@pytest.mark.parametrize("action,code,enhanced,lines", [
    ("reject", 550, "5.7.1", None),
    ("tempfail", 451, "4.7.1", None),
    ("reply", 554, "5.7.1", ["554 5.7.1 Spam refused by the test filter"]),
    ("multiline", 554, "5.7.1", ["554-5.7.1 Spam refused by the test filter,",
                                 "554 5.7.1 which has more to say on a second line"]),
])
def test_refusal_at_end_of_data(pair, action, code, enhanced, lines):
    srv, peer = pair, pair.peer
    marker = unique(action)
    r = send(srv, message_with(marker, [action]))
    assert (r.code, r.enhanced) == (code, enhanced), r
    if lines is not None:
        assert r.lines == lines, r
    _, msg = peer.message(marker)
    assert msg["verdicts"][-1] == ["eom", action if action in ("reject", "tempfail")
                                   else "reject"]
    srv.assert_no_message("u@example.test", marker)
    assert queue_entries(srv) == []


def test_accept_ends_filtering_of_the_message(pair):
    srv = pair
    marker = unique("accept")
    r = send(srv, message_with(marker, ["accept", "addheader X-Not-Reached yes"]))
    queued_id(r)
    d = srv.wait_message("u@example.test", marker)
    assert "X-Not-Reached" not in [n for n, _ in delivered_headers(d)]


def test_discard_answers_250_and_delivers_nothing(pair):
    srv = pair
    marker = unique("discard")
    r = send(srv, message_with(marker, ["discard"]))
    assert r.code == 250, r
    deadline = time.monotonic() + 5
    while "discard" not in srv.log_text().lower() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "discard" in srv.log_text().lower()
    srv.assert_no_message("u@example.test", marker)
    assert queue_entries(srv) == []


def test_quarantine_holds_the_message_until_released(pair):
    srv = pair
    marker = unique("quarantine")
    reason = "looks like " + unique("spam")
    qid = queued_id(send(srv, message_with(marker, [f"quarantine {reason}"])))

    def held():
        return [e for e in queue_entries(srv) if e["id"] == qid]

    deadline = time.monotonic() + 5
    while not held() and time.monotonic() < deadline:
        time.sleep(0.1)
    [entry] = held()
    assert entry["held"] is True, entry
    assert entry["last_error"].startswith("quarantined:"), entry
    assert reason in entry["last_error"], entry
    row = [ln for ln in srv.queue_list().splitlines() if ln.startswith(qid)]
    assert row and "held" in row[0] and "quarantined:" in row[0], srv.queue_list()
    srv.assert_no_message("u@example.test", marker, settle=1.0)

    srv.cli("queue", "release", qid)
    srv.wait_message("u@example.test", marker)
    deadline = time.monotonic() + 5
    while held() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held() == []


def junk_files(srv, address, marker):
    junk = srv.maildir(address) / ".Junk"
    return [p for sub in ("new", "cur") if (junk / sub).is_dir()
            for p in (junk / sub).iterdir() if marker.encode() in p.read_bytes()]


def test_spam_verdict_of_a_filter_files_into_junk(pair):
    """A spam verdict field the filter writes (rspamd's X-Spam: Yes,
    SpamAssassin's X-Spam-Flag: YES) sends the message to Junk; the same
    field in the message as it arrived does not."""
    srv = pair
    for field in ("X-Spam Yes", "X-Spam-Flag YES"):
        marker = unique("junk")
        queued_id(send(srv, message_with(marker, [f"addheader {field}"])))
        deadline = time.monotonic() + 10
        while not junk_files(srv, "u@example.test", marker):
            assert time.monotonic() < deadline, f"{field}: not in Junk"
            time.sleep(0.05)
        assert not srv.messages("u@example.test", marker), "also in INBOX"
    marker = unique("forged")
    queued_id(send(srv, message_with(marker, extra=["X-Spam: yes", "X-Spam-Flag: YES"])))
    srv.wait_message("u@example.test", marker)
    assert not junk_files(srv, "u@example.test", marker)


# ---------------------------------------------------------------- modifications

def test_header_modifications(pair):
    srv, peer = pair, pair.peer
    marker = unique("headers")
    actions = ["addheader X-Added added by the filter",
               "insheader 1 X-Inserted inserted by the filter",
               "chgheader Subject 1 changed " + marker,
               "chgheader X-Dup 2 second changed",
               "chgheader X-Remove-Me 1"]
    data = message_with(marker, actions,
                        extra=["X-Dup: one", "X-Dup: two", "X-Remove-Me: gone soon"])
    queued_id(send(srv, data))
    d = srv.wait_message("u@example.test", "changed " + marker)
    _, msg = peer.message(marker)

    # What the filter saw, with its changes made: insheader's index counts
    # from the first field it saw (Tern's Received:), addheader appends.
    want = [(n, norm(v)) for n, v in msg["headers"]]
    want.insert(1, ("X-Inserted", "inserted by the filter"))
    want = [(n, "changed " + marker) if n == "Subject" else (n, v) for n, v in want]
    dups = [i for i, (n, _) in enumerate(want) if n == "X-Dup"]
    want[dups[1]] = ("X-Dup", "second changed")
    want = [(n, v) for n, v in want if n != "X-Remove-Me"]
    want.append(("X-Added", "added by the filter"))
    assert delivered_headers(d) == want
    assert b"\nX-Added: added by the filter\n" in d.raw
    assert b"\nSubject: changed " + marker.encode() + b"\n" in d.raw
    assert body_of(d) == b"hello\nworld\n"


def test_body_replacement(pair):
    srv = pair
    marker = unique("body")
    queued_id(send(srv, message_with(marker, ["replacebody the filter wrote\\nthis body"],
                                     body=["the original", "body"])))
    d = srv.wait_message("u@example.test", marker)
    assert body_of(d) == b"the filter wrote\nthis body\n"
    assert b"the original" not in d.raw


def test_sender_and_recipient_changes(pair):
    srv = pair
    marker = unique("envelope")
    data = message_with(marker, ["chgfrom <changed@remote.test>",
                                 "addrcpt <w@example.test>",
                                 "delrcpt <v@example.test>"])
    queued_id(send(srv, data, rcpts=("u@example.test", "v@example.test")))
    du = srv.wait_message("u@example.test", marker)
    dw = srv.wait_message("w@example.test", marker)
    assert du.return_path == "Return-Path: <changed@remote.test>", du.fields
    assert dw.return_path == "Return-Path: <changed@remote.test>", dw.fields
    assert dw.delivered_to == "Delivered-To: w@example.test", dw.fields
    srv.assert_no_message("v@example.test", marker)


def test_filters_run_in_order_each_seeing_the_previous_changes(make_server, milter_peer):
    first, second = milter_peer(tag="first"), milter_peer(tag="second")
    srv = milter_server(make_server, first, second)
    marker = unique("chain")
    data = message_with(marker, [
        "@first replacebody rewritten by the first filter",
        "@first addheader X-Test-Action @second addheader X-Chained yes",
        "@second addheader X-Second yes"])
    qid = queued_id(send(srv, data))
    d = srv.wait_message("u@example.test", marker)
    _, m1 = first.message(marker)
    _, m2 = second.message(marker)
    assert m1["body"] == "hello\r\nworld\r\n"
    assert m2["body"] == "rewritten by the first filter\r\n"
    assert ["X-Test-Action", "@second addheader X-Chained yes"] in \
        [[n, v.strip()] for n, v in m2["headers"]], m2["headers"]
    assert m1["macros"]["eom"].get("{i}") == qid
    assert m2["macros"]["eom"].get("{i}") == qid
    headers = delivered_headers(d)
    assert ("X-Chained", "yes") in headers and ("X-Second", "yes") in headers, headers
    assert body_of(d) == b"rewritten by the first filter\n"


def test_a_refusal_by_the_first_filter_spares_the_second(make_server, milter_peer):
    first, second = milter_peer(tag="first"), milter_peer(tag="second")
    srv = milter_server(make_server, first, second)
    refused, passed = unique("refused"), unique("passed")
    r = send(srv, message_with(refused, ["@first reply", "@second addheader X-Second yes"]))
    assert r.lines == ["554 5.7.1 Spam refused by the test filter"], r
    queued_id(send(srv, message_with(passed, ["@second addheader X-Second yes"])))
    d = srv.wait_message("u@example.test", passed)
    assert ("X-Second", "yes") in delivered_headers(d)
    second.message(passed)
    seen = [m for c in second.connections() for m in c["messages"]
            if any(refused in v for _, v in m["headers"])]
    assert seen == [], "the second filter was shown a message the first refused"
    srv.assert_no_message("u@example.test", refused, settle=0.5)


def test_unix_socket_filter(make_server, milter_peer):
    peer = milter_peer(unix=True)
    srv = milter_server(make_server, peer)
    marker = unique("unix")
    queued_id(send(srv, message_with(marker, ["addheader X-Via unix socket"])))
    d = srv.wait_message("u@example.test", marker)
    assert ("X-Via", "unix socket") in delivered_headers(d)
    conn, _ = peer.message(marker)
    assert conn["connect"]["macros"].get("{client_addr}") == "127.0.0.1"


# ---------------------------------------------------------------- listeners

def test_submission_passes_the_login_to_the_filter(make_server, milter_peer):
    peer = milter_peer()
    sub = free_port()
    srv = milter_server(make_server, peer, extra_listen=[
        (f"127.0.0.1:{sub}", "submission", {"allow_plaintext_auth": True})])
    marker = unique("sub")
    with smtplib.SMTP("127.0.0.1", sub, local_hostname="client.test", timeout=10) as s:
        s.login("u@example.test", PASSWORD)
        assert s.mail("u@example.test")[0] == 250
        assert s.rcpt("v@example.test")[0] == 250
        code, text = s.data(message_with(marker, ["addheader X-Filtered yes"],
                                         sender="u@example.test", to="v@example.test"))
        assert code == 250, text
    d = srv.wait_message("v@example.test", marker)
    assert ("X-Filtered", "yes") in delivered_headers(d)
    conn, msg = peer.message(marker)
    assert conn["connect"]["macros"].get("{daemon_name}") == "submission"
    assert msg["macros"]["mail"].get("{auth_authen}") == "u@example.test", msg["macros"]
    assert msg["macros"]["mail"].get("{auth_type}", "").upper() == "PLAIN", msg["macros"]


def test_starttls_session_tells_the_filter_its_tls(make_server, milter_peer):
    peer = milter_peer()
    srv = milter_server(make_server, peer, sections={"tls": {"self_signed": True}})
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    marker = unique("tls")
    with srv.smtplib() as s:
        s.starttls(context=ctx)
        version = s.sock.version()
        cipher = s.sock.cipher()[0]
        s.sendmail("a@remote.test", ["u@example.test"], message_with(marker))
    srv.wait_message("u@example.test", marker)
    conn, _ = peer.message(marker)
    helo = conn["helo"]
    assert helo["name"] == "client.test"
    assert helo["macros"].get("{tls_version}") == version, helo
    assert helo["macros"].get("{cipher}") == cipher, helo


# ---------------------------------------------------------------- failures

@pytest.mark.parametrize("on_error,code,enhanced,unix", [
    ("tempfail", 451, "4.7.1", False), ("reject", 550, "5.7.1", False),
    ("tempfail", 451, "4.7.1", True)])
def test_unreachable_filter_refuses_at_mail(make_server, tmp_path, on_error, code, enhanced,
                                            unix):
    address = f"unix:{tmp_path}/no-such.sock" if unix else f"127.0.0.1:{free_port()}"
    srv = milter_server(make_server, address, on_error=on_error)
    with srv.connect() as c:
        c.start()
        r = c.cmd("MAIL FROM:<a@remote.test>")
        assert (r.code, r.enhanced) == (code, enhanced), r


def test_unreachable_filter_with_on_error_accept_lets_mail_through(make_server):
    srv = milter_server(make_server, f"127.0.0.1:{free_port()}", on_error="accept")
    marker = unique("unfiltered")
    queued_id(send(srv, message_with(marker, ["reject"])))
    srv.wait_message("u@example.test", marker)


@pytest.mark.parametrize("on_error,code,enhanced", [
    ("tempfail", 451, "4.7.1"), ("reject", 550, "5.7.1")])
def test_filter_dying_mid_message_refuses_it_and_keeps_nothing(
        make_server, milter_peer, on_error, code, enhanced):
    peer = milter_peer()
    srv = milter_server(make_server, peer, on_error=on_error)
    marker = unique("die")
    with srv.connect() as c:
        c.start()
        r = c.send_message("a@remote.test", ["u@example.test"], message_with(marker, ["die"]))
        assert (r.code, r.enhanced) == (code, enhanced), r
        peer.expect_exit = True
        assert peer.wait_exit() == 3
        # The filter is gone: the next transaction finds nobody listening.
        r = c.cmd("MAIL FROM:<a@remote.test>")
        assert (r.code, r.enhanced) == (code, enhanced), r
        c.cmd("QUIT")
    srv.assert_no_message("u@example.test", marker)
    assert srv.message_files("u@example.test") == []
    assert queue_entries(srv) == []


def test_filter_dying_mid_message_with_accept_delivers_unmodified(make_server, milter_peer):
    peer = milter_peer()
    srv = milter_server(make_server, peer, on_error="accept")
    marker = unique("die")
    data = message_with(marker, ["die", "addheader X-Never yes"])
    queued_id(send(srv, data))
    peer.expect_exit = True
    assert peer.wait_exit() == 3
    d = srv.wait_message("u@example.test", marker)
    assert "X-Never" not in [n for n, _ in delivered_headers(d)]
    assert body_of(d) == b"hello\nworld\n"


def test_hanging_filter_times_out_with_451(make_server, milter_peer):
    peer = milter_peer(hang_seconds=30)
    srv = milter_server(make_server, peer, on_error="tempfail", timeout=2)
    marker, after = unique("hang"), unique("after")
    with srv.connect() as c:
        c.start()
        started = time.monotonic()
        r = c.send_message("a@remote.test", ["u@example.test"],
                           message_with(marker, ["hang"]))
        took = time.monotonic() - started
        assert (r.code, r.enhanced) == (451, "4.7.1"), r
        assert 1.5 <= took < 6, f"the timeout of 2 s took {took:.1f} s"
        # The next transaction of the session meets the filter afresh
        # (milter_client.h: a failed filter is connected again at MAIL).
        queued_id(c.send_message("a@remote.test", ["u@example.test"],
                                 message_with(after, ["addheader X-Again yes"])))
        c.cmd("QUIT")
    d = srv.wait_message("u@example.test", after)
    assert ("X-Again", "yes") in delivered_headers(d)
    srv.assert_no_message("u@example.test", marker)
    assert queue_entries(srv) == []


def test_progress_keeps_a_slow_filter_alive(make_server, milter_peer):
    peer = milter_peer()
    srv = milter_server(make_server, peer, on_error="tempfail", timeout=1)
    marker = unique("progress")
    started = time.monotonic()
    r = send(srv, message_with(marker, ["progress 4 0.5", "addheader X-Slow yes"]))
    took = time.monotonic() - started
    queued_id(r)
    assert took >= 2, took
    d = srv.wait_message("u@example.test", marker)
    assert ("X-Slow", "yes") in delivered_headers(d)
