# Direct local delivery (issue 18, [delivery] direct_local): mail whose
# recipients are all local mailboxes is written into their Maildirs before
# the 250, without a queue file; everything else (remote recipients,
# aliases that forward, NOTIFY=SUCCESS, quarantine, large messages) takes
# the queue as before. Whether a message had a queue file is watched with
# inotify on queue/msg/, so the tests see which path was taken. The rule
# stays: a 250 means the message is in every Maildir or in the queue.
import os
import re
import signal
import threading
import time

import pytest

from conftest import PASSWORD, free_port, to_lf, unique
from faultkit import IN_CREATE, IN_MOVED_TO, Inotify, maildir_messages, wait_for
from imap_client import Raw, fetch_map, literal_of
from test_faults import (Rig, check_maildir_files, copies, entry, make_message,
                         queued_id, submit, wait_queue_empty)

USERS = ("u@example.test", "v@example.test", "w@example.test")


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


class SpoolWatch:
    """Counts files that appear in queue/msg/ (created, or renamed in from
    the pool of spent files)."""

    def __init__(self, srv):
        self.ino = Inotify()
        self.ino.watch(srv.data_dir / "queue" / "msg", IN_CREATE | IN_MOVED_TO)

    def names(self, wait=0.3):
        out = []
        while True:
            ev = self.ino.wait(wait)
            if ev is None:
                return out
            out.append(ev[1])

    def close(self):
        self.ino.close()


def direct_server(rig, direct=True, users=USERS, **kw):
    delivery = dict(kw.pop("delivery", {}))
    delivery["direct_local"] = direct
    srv = rig.server(users=users, delivery=delivery, **kw)
    srv.start()
    return srv


def test_local_mail_has_no_queue_file(rig):
    srv = direct_server(rig)
    watch = SpoolWatch(srv)
    try:
        m = unique("direct")
        data = make_message(m, 2000, to=USERS[0])
        qid = queued_id(submit(srv, "s@remote.test", [USERS[0]], data))
        # Already in the Maildir when the 250 came: no waiting.
        got = copies(srv, USERS[0], m)
        assert len(got) == 1, f"{len(got)} copies right after the 250"
        assert watch.names() == [], "a queue file was made for local mail"
        raw = got[0].as_bytes()
        assert raw.startswith(b"Return-Path: <s@remote.test>\nDelivered-To: "
                              + USERS[0].encode() + b"\n"), raw[:200]
        assert raw.endswith(to_lf(data))
        assert f"queue {qid}: <{USERS[0]}> delivered to {USERS[0]}" in srv.log_text()
        assert srv.queue_json() == []
        # The tmp/ name of the linked copy goes after a later flush.
        wait_for(lambda: not os.listdir(srv.maildir(USERS[0]) / "tmp"), 5,
                 "tmp/ emptied", srv)
    finally:
        watch.close()


def test_direct_and_queued_copies_are_alike(rig):
    """The same message through both paths: the same file layout, name
    fields and headers (the Received line differs only in id and time)."""
    files = []
    for direct in (True, False):
        srv = direct_server(rig, direct=direct, users=(USERS[0],))
        watch = SpoolWatch(srv)
        m = "alike"
        data = make_message(m, 5000, to=USERS[0])
        submit(srv, "s@remote.test", [USERS[0]], data)
        wait_for(lambda: srv.message_files(USERS[0]), 10, "the copy", srv)
        wait_queue_empty(srv)
        made = watch.names()
        watch.close()
        assert (made == []) == direct, (direct, made)
        [p] = srv.message_files(USERS[0])
        files.append((p.name, p.read_bytes()))
        srv.stop()

    def shape(name, raw):
        size = re.search(r",S=(\d+),W=(\d+)", name)
        assert size and int(size.group(1)) == len(raw), (name, len(raw))
        head, _, body = raw.partition(b"\n\n")
        keys = [ln.split(b":")[0] for ln in head.split(b"\n") if ln[:1] not in (b" ", b"\t")]
        return int(size.group(1)), int(size.group(2)), keys, body
    a, b = shape(*files[0]), shape(*files[1])
    assert a[2] == b[2], (a[2], b[2])
    assert a[3] == b[3]
    # Received: carries the queue id (same length) and the time.
    assert abs(a[0] - b[0]) <= 2 and abs(a[1] - b[1]) <= 2, (a[:2], b[:2])


def test_several_local_recipients_and_an_alias(rig):
    srv = direct_server(rig, aliases=[("team@example.test", [USERS[1], USERS[2]])])
    watch = SpoolWatch(srv)
    try:
        m = unique("many")
        rcpts = [USERS[0], USERS[1], "team@example.test"]
        queued_id(submit(srv, "s@remote.test", rcpts, make_message(m, 3000)))
        assert watch.names() == []
        for u in USERS:
            got = copies(srv, u, m)
            # v is both a recipient and in the alias: one copy.
            assert len(got) == 1, f"{u}: {len(got)} copies"
            assert got[0]["Delivered-To"] == u
        check_maildir_files(srv, USERS[0])
    finally:
        watch.close()


def test_mixed_local_and_remote_goes_through_the_queue(rig):
    # No DNS answers: the remote recipient stays queued.
    srv = direct_server(rig, sections={"dns": {"upstream": ["127.0.0.1:9"]}})
    watch = SpoolWatch(srv)
    try:
        m = unique("mixed")
        qid = queued_id(submit(srv, "s@remote.test", [USERS[0], "far@remote.test"],
                               make_message(m, 3000)))
        assert qid in watch.names(), "no queue file for a remote recipient"
        wait_for(lambda: copies(srv, USERS[0], m), 10, "the local copy", srv)
        e = wait_for(lambda: entry(srv, qid), 10, "the queue entry", srv)
        states = {r["address"]: r["state"] for r in e["recipients"]}
        assert states == {USERS[0]: "delivered", "far@remote.test": "pending"}, e
        time.sleep(1.5)  # a retry would make a second copy
        assert len(copies(srv, USERS[0], m)) == 1
    finally:
        watch.close()


def test_success_dsn_and_big_messages_take_the_queue(rig):
    srv = direct_server(rig, sections={"dns": {"upstream": ["127.0.0.1:9"]}})
    watch = SpoolWatch(srv)
    try:
        m = unique("notify")
        with srv.connect() as c:
            c.start()
            assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
            assert c.cmd(f"RCPT TO:<{USERS[0]}> NOTIFY=SUCCESS").code == 250
            assert c.cmd("DATA").code == 354
            c.send(make_message(m, 1000) + b".\r\n")
            qid = queued_id(c.reply())
            c.cmd("QUIT")
        assert qid in watch.names()
        wait_for(lambda: copies(srv, USERS[0], m), 10, "the copy", srv)
        # The success DSN goes back to the (remote) sender: queued.
        wait_for(lambda: [e for e in srv.queue_json() if e["id"] != qid],
                 10, "the success DSN in the queue", srv)

        big = unique("big")
        qid = queued_id(submit(srv, "s@remote.test", [USERS[1]],
                               make_message(big, 200_000)))
        assert qid in watch.names(), "a message over 64 KiB is streamed to the spool"
        got = wait_for(lambda: copies(srv, USERS[1], big), 10, "the big copy", srv)
        assert len(got) == 1
    finally:
        watch.close()


def test_detail_folder_and_junk_folder(rig):
    srv = direct_server(rig)
    md = srv.maildir(USERS[0])
    m0 = unique("warm")
    submit(srv, "s@remote.test", [USERS[0]], make_message(m0, 300))
    for sub in ("cur", "new", "tmp"):
        os.makedirs(md / ".Work" / sub, exist_ok=True)
    watch = SpoolWatch(srv)
    try:
        m = unique("work")
        submit(srv, "s@remote.test", ["u+Work@example.test"], make_message(m, 800))
        assert watch.names() == []
        found = [p for p in (md / ".Work" / "new").iterdir()
                 if m.encode() in p.read_bytes()]
        assert len(found) == 1
    finally:
        watch.close()


def test_imap_sees_direct_mail(rig):
    port = free_port()
    srv = direct_server(rig, extra_listen=[
        (f"127.0.0.1:{port}", "imap", {"allow_plaintext_auth": True})],
        sections={"tls": {"self_signed": True}})
    m = unique("imap")
    data = make_message(m, 1500, to=USERS[0])
    with Raw(port) as c:
        c.login(USERS[0], PASSWORD)
        c.ok("SELECT INBOX")
        c.send("I1 IDLE\r\n")
        assert c.read_response() == b"+ idling\r\n"
        submit(srv, "s@remote.test", [USERS[0]], data)
        # The direct path tells IMAP sessions as the queue's delivery does.
        c.sock.settimeout(5)
        assert c.read_response() == b"* 1 EXISTS\r\n"
        c.send("DONE\r\n")
        c.collect("I1")
        untagged, _ = c.ok("FETCH 1 (BODY.PEEK[])")
        body = literal_of(fetch_map(untagged)[1], b"BODY[]")
        assert body.endswith(data), body[-200:]


@pytest.mark.parametrize("moment", ["copy-in-tmp", "first-link", "last-link"])
def test_kill9_during_direct_delivery(rig, moment):
    """Killed between writing the copies and the 250: no damaged file in
    new/, no more than one copy, and nothing left half-done in the queue.
    (The 250 cannot have been sent yet; test_crash.py checks the 250s.)"""
    srv = direct_server(rig)
    for u in USERS:
        m0 = unique("warm")
        submit(srv, "s@remote.test", [u], make_message(m0, 300, to=u))
        wait_for(lambda: copies(srv, u, m0), 10, "the first message", srv)
    ino = Inotify()
    for u in USERS:
        ino.watch(srv.maildir(u) / "tmp", IN_CREATE)
        # Copies are hard-linked into new/ (IN_CREATE there).
        ino.watch(srv.maildir(u) / "new", IN_CREATE | IN_MOVED_TO)
    m = unique("kill")
    data = make_message(m, 20_000, to=USERS[0])
    killed = threading.Event()
    seen = []

    def killer():
        links = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ev = ino.wait(0.5)
            if ev is None:
                continue
            d, name, mask = ev
            seen.append((d, name))
            if moment == "copy-in-tmp" and d.endswith("/tmp"):
                break
            if d.endswith("/new"):
                links += 1
                if moment == "first-link" or links == len(USERS):
                    break
        else:
            return
        os.kill(srv.proc.pid, signal.SIGKILL)
        killed.set()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        reply = submit(srv, "s@remote.test", list(USERS), data)
    except (OSError, EOFError):
        reply = None
    t.join(25)
    ino.close()
    assert killed.is_set(), f"no kill at {moment}; events {seen[:10]}"
    srv.kill9()  # reap
    srv.start()
    if reply is not None and reply.code == 250:
        for u in USERS:
            wait_for(lambda: copies(srv, u, m), 20, f"{u}: the acknowledged copy", srv)
    time.sleep(1.0)
    for u in USERS:
        check_maildir_files(srv, u)
        assert len(copies(srv, u, m)) <= 1, u
    assert srv.queue_json() == []


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_intent_log_is_replayed_at_start(rig):
    """A crash after the flush but before the moves into new/ leaves copies
    in tmp/ and their records in queue/direct.N: at start a copy whose bytes
    match its record is moved into new/, one that does not is removed, and
    a torn last record is ignored."""
    srv = direct_server(rig)
    m0 = unique("warm")
    submit(srv, "s@remote.test", [USERS[0]], make_message(m0, 300))
    assert srv.stop() == 0
    md = srv.maildir(USERS[0])
    rel = md.relative_to(srv.data_dir / "mail")
    good = b"Return-Path: <s@remote.test>\nDelivered-To: u@example.test\n\nreplayed-good\n"
    bad = b"Return-Path: <s@remote.test>\nDelivered-To: u@example.test\n\nreplayed-bad\n"
    (md / "tmp" / "1.good").write_bytes(good)
    (md / "tmp" / "1.bad").write_bytes(bad[:-5])  # its flush never finished
    (md / "tmp" / "1.torn").write_bytes(good)
    lines = [
        f"{crc32c(good):08x}\t{len(good)}\t{rel}/tmp/1.good\t{rel}/new/1.good,S={len(good)}\n",
        f"{crc32c(bad):08x}\t{len(bad)}\t{rel}/tmp/1.bad\t{rel}/new/1.bad,S={len(bad)}\n",
        f"{crc32c(good):08x}\t{len(good)}\t{rel}/tmp/1.torn",
    ]
    with open(srv.data_dir / "queue" / "direct.1", "w") as f:
        f.write("".join(lines))
    srv.start()
    assert (md / "new" / f"1.good,S={len(good)}").read_bytes() == good
    assert not (md / "tmp" / "1.good").exists()
    assert not (md / "tmp" / "1.bad").exists(), "an incomplete copy stayed in tmp/"
    assert not list((md / "new").glob("1.bad*")), "an incomplete copy reached new/"
    assert (md / "tmp" / "1.torn").exists(), "a torn record was acted on"
    assert "intent log replayed, 1 copy(ies) moved into new/" in srv.log_text()
    assert (srv.data_dir / "queue" / "direct.1").stat().st_size == 0


def test_kill9_after_the_intent_is_written(rig):
    """Killed once the intent records are written (the flush may or may not
    have run): after restart every copy is in new/ exactly once, moved there
    either before the kill or by the replay."""
    srv = direct_server(rig)
    for u in USERS:
        m0 = unique("warm")
        submit(srv, "s@remote.test", [u], make_message(m0, 300, to=u))
    ino = Inotify()
    IN_MODIFY = 0x2
    ino.watch(srv.data_dir / "queue", IN_MODIFY)
    m = unique("intent")
    killed = threading.Event()

    def killer():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ev = ino.wait(0.5)
            if ev is not None and ev[1].startswith("direct."):
                os.kill(srv.proc.pid, signal.SIGKILL)
                killed.set()
                return

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        submit(srv, "s@remote.test", list(USERS), make_message(m, 4000))
    except (OSError, EOFError):
        pass
    t.join(25)
    ino.close()
    assert killed.is_set()
    srv.kill9()
    srv.start()
    assert "intent log replayed" in srv.log_text()
    for u in USERS:
        assert len(copies(srv, u, m)) == 1, u
        check_maildir_files(srv, u)
    assert srv.queue_json() == []
