# `tern queue list` on a queue of a few dozen messages deferred by a next
# hop that answers 451 (paging, filters by sender, recipient, domain and
# age), and recovery: after a restart (clean or SIGKILL) every deferred
# message is still queued and is tried again; a big spool is recovered in
# the background while new mail is accepted.
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import TERN_BIN, TernServer, shutdown, unique, _LIVE

SENDERS = ["alice@one.test", "bob@two.test", ""]  # "" is the null sender
DOMAINS = ["r0.test", "r1.test", "r2.test"]


class Sink451:
    """The next hop (a [[route]] relay on loopback): greets, takes MAIL and
    answers every RCPT with 451; counts the RCPTs per address."""

    def __init__(self, pipelining=False):
        self.pipelining = pipelining
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.tries = {}
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn):
        f = conn.makefile("rb")
        send = lambda line: conn.sendall(line.encode() + b"\r\n")
        try:
            send("220 sink.remote.test ESMTP")
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    send("250-sink.remote.test\r\n250 PIPELINING" if self.pipelining
                         else "250 sink.remote.test")
                elif verb == "RCPT":
                    addr = line[line.find("<") + 1:line.find(">")].lower()
                    with self.lock:
                        self.tries[addr] = self.tries.get(addr, 0) + 1
                    send("451 4.3.0 sink: try again later")
                elif verb == "DATA":
                    # what Postfix answers when every RCPT was refused
                    send("554 5.5.1 Error: no valid recipients")
                elif verb == "QUIT":
                    send("221 bye")
                    break
                else:
                    send("250 ok")
        except OSError:
            pass
        finally:
            conn.close()

    def count(self, addr):
        with self.lock:
            return self.tries.get(addr.lower(), 0)

    def close(self):
        self.sock.close()


def start_server(base, sink, retry_first=300):
    srv = TernServer(base, trusted_networks=["127.0.0.0/8"],
                     sections={"delivery": {"mta_sts": False, "tlsrpt": False,
                                            "retry_first": retry_first,
                                            "retry_max": max(retry_first, 4)}})
    with open(srv.config_path, "a", encoding="utf-8") as f:
        f.write(f'\n[[route]]\ndomain = "*"\nrelay = "127.0.0.1:{sink.port}"\n')
    _LIVE.append(srv)
    srv.add_user("u@example.test")
    srv.start()
    return srv


def submit(srv, sender, rcpt, marker):
    with srv.connect() as c:
        c.start()
        assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"From: <{sender or 'mailer-daemon@one.test'}>\r\nTo: <{rcpt}>\r\n"
               f"Subject: {marker}\r\n\r\n{marker}\r\n.\r\n".encode())
        r = c.reply()
        assert r.code == 250, r


def listing(srv, *args, check=True):
    return srv.cli("queue", "list", *args, check=check)


def listed_json(srv, *args):
    p = listing(srv, "--json", *args)
    return json.loads(p.stdout), p.stderr


def wait_deferred(srv, n, timeout=30):
    """Until n messages are queued and each had an attempt answered 451."""
    deadline = time.monotonic() + timeout
    while True:
        entries, _ = listed_json(srv)
        done = [e for e in entries if e["attempts"] >= 1 and "451" in e["last_error"]]
        if len(done) >= n:
            return entries
        assert time.monotonic() < deadline, (len(done), entries[:3])
        time.sleep(0.3)


@pytest.fixture(scope="module")
def queued(tmp_path_factory):
    """36 messages deferred by the sink: 12 per sender (one of them <>), a
    third to each recipient domain; 6 more arrive 5 s later (for the age
    filters), not waited for."""
    sink = Sink451()
    srv = start_server(tmp_path_factory.mktemp("qlist"), sink)
    m = unique("ql")
    sent = []
    for i in range(36):
        sender = SENDERS[i % 3]
        rcpt = f"{m}-{i}@{DOMAINS[(i // 3) % 3]}"
        submit(srv, sender, rcpt, f"{m} {i}")
        sent.append((sender, rcpt))
    wait_deferred(srv, 36)
    time.sleep(5)
    late = []
    for i in range(6):
        rcpt = f"{m}-late{i}@r0.test"
        submit(srv, "carol@three.test", rcpt, f"{m} late {i}")
        late.append(rcpt)
    yield srv, sink, sent, late
    shutdown(srv)
    sink.close()


def ids_of(entries):
    return [e["id"] for e in entries]


def test_plain_listing_unchanged(queued):
    srv, _, sent, late = queued
    text = srv.queue_list()
    lines = text.splitlines()
    assert lines[0].split() == ["ID", "AGE", "SENDER", "RECIPIENTS", "NEXT", "LAST", "ERROR"]
    assert len(lines) == 1 + len(sent) + len(late), text
    for _, rcpt in sent:
        assert rcpt in text
    # one block: every row's second column starts where the header's does
    col = lines[0].index("AGE")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[1:]), text


def test_paging_with_limit_and_after(queued):
    srv, _, sent, late = queued
    everything, _ = listed_json(srv)
    all_ids = ids_of(everything)
    assert all_ids == sorted(all_ids) and len(all_ids) == len(sent) + len(late)
    pages, after = [], None
    while True:
        args = ["--limit", "10"] + (["--after", after] if after else [])
        page, err = listed_json(srv, *args)
        if not page:
            break
        assert len(page) <= 10
        if len(page) == 10:
            assert f"next page: --after {page[-1]['id']}" in err, err
        else:
            assert "next page" not in err, err
        pages.append(ids_of(page))
        after = page[-1]["id"]
    assert [i for p in pages for i in p] == all_ids
    assert [len(p) for p in pages] == [10, 10, 10, 10, 2]
    # the table pages the same way
    text = listing(srv, "--limit", "3").stdout.splitlines()
    assert [line.split()[0] for line in text[1:]] == all_ids[:3]
    assert listing(srv, "--after", all_ids[-1]).stdout == "No matching messages\n"


def test_filter_by_sender(queued):
    srv, _, sent, late = queued
    for part, want in (("alice", "alice@one.test"), ("BOB@TWO.TEST", "bob@two.test")):
        entries, _ = listed_json(srv, "--sender", part)
        assert len(entries) == 12, entries
        assert {e["sender"] for e in entries} == {want}
    entries, _ = listed_json(srv, "--sender", "<>")
    assert len(entries) == 12 and {e["sender"] for e in entries} == {""}
    table = listing(srv, "--sender", "<>").stdout.splitlines()
    assert len(table) == 13 and all(line.split()[2] == "<>" for line in table[1:])
    assert listing(srv, "--sender", "nobody@nowhere.test").stdout == "No matching messages\n"


def test_filter_by_recipient_and_domain(queued):
    srv, _, sent, late = queued
    rcpt = sent[7][1]
    entries, _ = listed_json(srv, "--recipient", rcpt.upper())
    assert [e["recipients"][0]["address"] for e in entries] == [rcpt]
    for d in DOMAINS:
        want = sorted(r for _, r in sent if r.endswith("@" + d))
        want += [r for r in late if r.endswith("@" + d)]
        for arg in (d, "@" + d, d.upper()):
            entries, _ = listed_json(srv, "--domain", arg)
            got = [e["recipients"][0]["address"] for e in entries]
            assert sorted(got) == sorted(want), (arg, got)
    # a domain is matched whole, not as a part
    entries, _ = listed_json(srv, "--domain", "0.test")
    assert entries == []
    # filters combine, and --limit counts matches
    entries, _ = listed_json(srv, "--sender", "alice", "--domain", "r1.test")
    assert entries and all(e["sender"] == "alice@one.test" and
                           e["recipients"][0]["address"].endswith("@r1.test")
                           for e in entries)
    assert len(entries) == sum(1 for s, r in sent if s == "alice@one.test" and r.endswith("@r1.test"))
    entries, _ = listed_json(srv, "--domain", "r2.test", "--limit", "2")
    assert len(entries) == 2


def test_filter_by_age(queued):
    srv, _, sent, late = queued
    entries, _ = listed_json(srv)
    late_set = set(late)
    ages = {e["recipients"][0]["address"]: e["age"] for e in entries}
    newest_sent = min(a for r, a in ages.items() if r not in late_set)
    oldest_late = max(a for r, a in ages.items() if r in late_set)
    assert newest_sent - oldest_late >= 4, ages
    # between the two groups, whatever time this machine took to get here
    cut = f"{oldest_late + 2}s"
    old, _ = listed_json(srv, "--older-than", cut)
    assert {e["recipients"][0]["address"] for e in old} == {r for _, r in sent}
    young, _ = listed_json(srv, "--newer-than", cut)
    assert {e["recipients"][0]["address"] for e in young} == late_set
    both, _ = listed_json(srv, "--newer-than", "1d")
    assert len(both) == len(sent) + len(late)
    assert listing(srv, "--older-than", "1h").stdout == "No matching messages\n"
    assert listed_json(srv, "--older-than", "1h")[0] == []
    # minutes, and both bounds at once
    assert ids_of(listed_json(srv, "--older-than", "0m", "--newer-than", "1h")[0]) == ids_of(both)


def test_bad_options_are_refused(queued):
    srv, *_ = queued
    for args, what in ((["--older-than", "5x"], "--older-than: not a duration: 5x"),
                       (["--newer-than", "h"], "--newer-than: not a duration: h"),
                       (["--after", "not-an-id"], "--after: not a queue id: not-an-id")):
        p = listing(srv, *args, check=False)
        assert p.returncode == 1, p
        assert p.stderr.strip() == f"tern: {what}", p.stderr
        assert p.stdout == ""


def test_show_reads_one_message(queued):
    srv, _, sent, _ = queued
    entries, _ = listed_json(srv, "--recipient", sent[4][1])
    p = srv.cli("queue", "show", entries[0]["id"])
    assert f"<{sent[4][1]}> pending" in p.stdout
    assert "451 4.3.0 sink: try again later" in p.stdout
    p = srv.cli("queue", "show", "0000000000000000", check=False)
    assert p.returncode == 1 and "no such message: 0000000000000000" in p.stderr


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_restart_keeps_and_retries_deferred(tmp_path, how):
    """Deferred messages survive a restart (clean or SIGKILL) and are all
    tried again afterwards."""
    sink = Sink451()
    srv = start_server(tmp_path / "srv", sink, retry_first=2)
    try:
        m = unique("rq")
        rcpts = [f"{m}-{i}@{DOMAINS[i % 3]}" for i in range(24)]
        for i, r in enumerate(rcpts):
            submit(srv, SENDERS[i % 2], r, f"{m} {i}")
        before = {e["id"] for e in wait_deferred(srv, 24)}
        if how == "stop":
            assert srv.stop() == 0
        else:
            srv.kill9()
        tries = {r: sink.count(r) for r in rcpts}
        assert all(n >= 1 for n in tries.values()), tries
        srv.start()
        after = {e["id"] for e in listed_json(srv)[0]}
        assert after == before
        deadline = time.monotonic() + 30
        while any(sink.count(r) <= tries[r] for r in rcpts):
            assert time.monotonic() < deadline, {r: (tries[r], sink.count(r)) for r in rcpts}
            time.sleep(0.3)
        assert {e["id"] for e in listed_json(srv)[0]} == before
        assert "queue: recovered 24 message(s)" in srv.log_text()
    finally:
        shutdown(srv)
        sink.close()


def test_pipelined_data_refusal_does_not_bounce_a_451(tmp_path):
    """With PIPELINING, DATA goes out before the RCPT replies are known; a
    next hop that refused every RCPT with 451 answers DATA with 554 (RFC
    2920 3.1). The recipient is deferred, not bounced."""
    sink = Sink451(pipelining=True)
    srv = start_server(tmp_path / "srv", sink)
    try:
        m = unique("pipe")
        submit(srv, "alice@one.test", f"{m}@r0.test", m)
        entries = wait_deferred(srv, 1)
        assert [e["recipients"] for e in entries] == [
            [{"address": f"{m}@r0.test", "state": "pending"}]]
        assert "bounced" not in srv.log_text()
        assert f"<{m}@r0.test> deferred via 127.0.0.1: 451 4.3.0" in srv.log_text()
    finally:
        shutdown(srv)
        sink.close()


SPOOLGEN = os.path.join(os.path.dirname(TERN_BIN), "tern_spoolgen")


@pytest.mark.skipif(not os.path.exists(SPOOLGEN), reason="no tern_spoolgen next to tern")
def test_accepts_mail_while_recovering_a_big_spool(tmp_path):
    """20,000 deferred messages (not due for an hour): the server answers
    220 once it has their names and reads them in the background (new mail
    may arrive meanwhile); the new message is listed beside all of them,
    and none of them is tried before its time."""
    sink = Sink451()
    srv = start_server(tmp_path / "srv", sink)
    try:
        assert srv.stop() == 0
        n = 20000
        subprocess.run([SPOOLGEN, str(srv.data_dir), str(n), "10", "3600"],
                       check=True, stdout=subprocess.DEVNULL)
        srv.start(timeout=30)
        m = unique("during")
        submit(srv, "dave@four.test", f"{m}@r1.test", m)
        text = srv.log_text()
        assert f"queue: recovering {n} message(s) in the background" in text
        deadline = time.monotonic() + 120
        while f"queue: recovered {n} message(s)" not in srv.log_text():
            assert time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.3)
        entries, _ = listed_json(srv, "--recipient", m)
        assert len(entries) == 1
        # the generated ones are all there, and none was due: no attempts
        gen = listing(srv, "--domain", "d3.bigq.test").stdout.splitlines()
        assert len(gen) == 1 + n // 10
        assert sum(sink.tries.values()) <= 1  # only the new message
    finally:
        shutdown(srv)
        sink.close()
