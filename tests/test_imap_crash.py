# IMAP durability (issue 14): `kill -9` while clients APPEND, STORE and
# EXPUNGE, then after a restart every acknowledged APPEND is there with the
# UID it was given (unless its expunge was acknowledged too), no UID is
# given twice within its UIDVALIDITY, every acknowledged flag change is
# kept; and a 10,000-message folder works (SELECT, FETCH, SEARCH, EXPUNGE).
import os
import random
import re
import threading
import time

import pytest

import conftest
from conftest import PASSWORD, free_port, unique
from imap_client import Raw, fetch_map, literal_of


def start(tmp_path):
    port = free_port()
    s = conftest.TernServer(
        tmp_path,
        extra_listen=[(f"127.0.0.1:{port}", "imap", {"allow_plaintext_auth": True})])
    s.imap_port = port
    conftest._LIVE.append(s)
    s.start()
    return s


def login(srv, user):
    c = Raw(srv.imap_port, timeout=10)
    c.login(user, PASSWORD)
    return c


class Worker(threading.Thread):
    """Runs `step` until the connection dies, recording what was acked."""

    def __init__(self, srv, user, step):
        super().__init__(daemon=True)
        self.srv, self.user, self.step = srv, user, step
        self.acked = []
        self.error = None

    def run(self):
        try:
            c = login(self.srv, self.user)
            c.ok("SELECT INBOX")
            n = 0
            while True:
                n += 1
                self.step(c, n, self.acked)
        except (EOFError, OSError, AssertionError, IndexError, ValueError) as e:
            self.error = e


def search_uids(c):
    untagged, _ = c.cmd("UID SEARCH ALL")
    for r in untagged:  # other untagged data (EXISTS, EXPUNGE) may come too
        if r.startswith(b"* SEARCH"):
            return [int(x) for x in r.split()[2:]]
    return []


def appender(c, n, acked):
    marker = unique("crash")
    msg = (f"Subject: {marker}\r\nMessage-ID: <{marker}@t>\r\n\r\n" + "x" * (n % 700) +
           "\r\n").encode()
    c.send(f"A{n} APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    _, t = c.collect(f"A{n}")
    m = re.match(rb"A\d+ OK \[APPENDUID (\d+) (\d+)\]", t)
    assert m, t
    acked.append((marker, int(m.group(1)), int(m.group(2))))


def flagger(c, n, acked):
    uids = search_uids(c)
    if not uids:
        c.ok("NOOP")
        return
    uid = random.choice(uids)
    kw = f"$k{n}"
    untagged, t = c.cmd(f"UID STORE {uid} +FLAGS ({kw} \\Flagged)")
    if b" OK " in t and any(kw.encode() in r for r in untagged):
        acked.append((uid, kw))


def expunger(c, n, acked):
    uids = search_uids(c)
    if len(uids) < 5:
        c.ok("NOOP")
        return
    uid = uids[len(uids) // 2]
    c.ok(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
    # Tried: a kill between the expunge and its OK may take it away
    # without an acknowledgement, which is allowed.
    acked.append(("tried", uid))
    untagged, t = c.cmd(f"UID EXPUNGE {uid}")
    if b" OK " in t:
        acked.append(uid)


def test_kill9_during_append_store_expunge(tmp_path):
    srv = start(tmp_path)
    user = f"{unique('c')}@example.test"
    srv.add_user(user)
    appended, flags, expunged = [], [], []
    uidvalidity = None
    for rnd, delay in enumerate((0.7, 1.3, 0.4, 2.0)):
        workers = [Worker(srv, user, appender), Worker(srv, user, appender),
                   Worker(srv, user, flagger), Worker(srv, user, expunger)]
        for w in workers:
            w.start()
        time.sleep(delay)
        srv.kill9()
        for w in workers:
            w.join(10)
        appended += workers[0].acked + workers[1].acked
        flags += workers[2].acked
        expunged += workers[3].acked
        srv.start()

    c = login(srv, user)
    untagged, _ = c.ok("SELECT INBOX")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(untagged)).group(1))
    untagged, _ = c.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])")
    present = {}
    for r in untagged:
        m = re.search(rb"UID (\d+)", r)
        if not m:
            continue
        uid = int(m.group(1))
        subj = re.search(rb"Subject: (\S+)", r)
        present[uid] = (subj.group(1).decode() if subj else None, r)
    gone = {u for u in expunged if not isinstance(u, tuple)}
    maybe_gone = {u[1] for u in expunged if isinstance(u, tuple)}
    assert appended, "no APPEND was acknowledged before the kills"
    assert flags and gone, (len(flags), len(gone))
    print(f"acknowledged before the kills: {len(appended)} APPENDs, "
          f"{len(flags)} STOREs, {len(gone)} EXPUNGEs")
    seen_uids = {}
    for marker, v, uid in appended:
        assert v == uv, "UIDVALIDITY changed over a crash"
        # A UID is given once (RFC 9051 2.3.1.1).
        assert uid not in seen_uids, (uid, marker, seen_uids.get(uid))
        seen_uids[uid] = marker
        if uid in gone:
            assert uid not in present
            continue
        if uid in maybe_gone and uid not in present:
            continue
        assert uid in present, f"acknowledged APPEND {marker} (UID {uid}) lost"
        assert present[uid][0] == marker, (uid, marker, present[uid][0])
    for uid, kw in flags:
        if uid in present:
            assert kw.encode() in present[uid][1], (uid, kw, present[uid][1])
    # Never reused after the crashes either.
    msg = b"Subject: after\r\n\r\nx\r\n"
    _, t = c.cmd(f"APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg)
    new_uid = int(re.search(rb"APPENDUID \d+ (\d+)", t).group(1))
    assert new_uid > max(u for _, _, u in appended), (new_uid, t)
    c.close()
    conftest.shutdown(srv)


def test_ten_thousand_messages(tmp_path):
    srv = start(tmp_path)
    user = f"{unique('big')}@example.test"
    srv.add_user(user)
    md = srv.maildir(user)
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    # Files dropped into new/ as another delivery agent would.
    base = int(time.time())
    for i in range(10000):
        name = f"{base}.M{i}P1.bench"
        body = (f"From: s{i % 50}@remote.test\nSubject: message {i}"
                f"{' needle' if i % 1000 == 7 else ''}\n\nbody {i}\n")
        (md / "new" / name).write_text(body)
    c = login(srv, user)
    t0 = time.monotonic()
    untagged, _ = c.ok("SELECT INBOX")
    first_select = time.monotonic() - t0
    assert b"* 10000 EXISTS\r\n" in untagged
    untagged, _ = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE)")
    f = fetch_map(untagged)
    assert len(f) == 10000 and b"UID 10000 " in f[10000]
    untagged, _ = c.ok("SEARCH SUBJECT needle")
    assert untagged == [b"* SEARCH " + b" ".join(str(i + 1).encode()
                                                 for i in range(10000) if i % 1000 == 7) +
                        b"\r\n"], untagged
    c.ok("STORE 1:5000 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = c.ok("EXPUNGE")
    assert len(untagged) == 5000
    untagged, _ = c.ok("FETCH 1 (UID)")
    assert untagged == [b"* 1 FETCH (UID 5001)\r\n"]
    c.close()
    c = login(srv, user)
    t0 = time.monotonic()
    untagged, _ = c.ok("SELECT INBOX")
    second_select = time.monotonic() - t0
    assert b"* 5000 EXISTS\r\n" in untagged
    c.close()
    print(f"10k folder: first SELECT {first_select:.2f}s, later SELECT {second_select:.3f}s")
    conftest.shutdown(srv)
