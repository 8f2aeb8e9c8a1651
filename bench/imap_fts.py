#!/usr/bin/env python3
"""Times UID SEARCH TEXT/BODY on a large generated INBOX: the first search,
the searches that go on building the full-text index (each spends at most
two seconds on it) until every message is indexed, then searches on the
complete index, and the size of tern-imap.sqlite with its WAL. Not part of
`make bench`; see docs/performance.md, IMAP.

    TERN_BIN=build/tern python3 bench/imap_fts.py [messages]   # default 100000
"""
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import conftest  # noqa: E402
from conftest import PASSWORD, free_port  # noqa: E402
from imap_client import Raw  # noqa: E402

WORDS = ("report meeting budget quarter figures invoice travel project draft "
         "review team lunch server update release schedule customer order "
         "delivery account payment reminder agenda minutes proposal contract "
         "Grüße Köln Straße café naïve résumé").split()


def message(rng, i):
    subject = " ".join(rng.choice(WORDS) for _ in range(4))
    lines = []
    for _ in range(rng.randint(8, 30)):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))))
    if i % 500 == 7:
        lines.insert(rng.randint(0, len(lines)), "the zanzibar needle is here")
    return (f"From: s{i % 97}@remote.test\nTo: u@example.test\n"
            f"Subject: {subject} {i}\nMessage-ID: <{i}@gen.test>\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: 8bit\n\n" + "\n".join(lines) + "\n").encode()


def timed(c, command):
    t0 = time.monotonic()
    untagged, _ = c.ok(command)
    return time.monotonic() - t0, untagged


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    base = Path(tempfile.mkdtemp(prefix="tern-fts-bench-"))
    port = free_port()
    srv = conftest.TernServer(
        base, extra_listen=[(f"127.0.0.1:{port}", "imap", {"allow_plaintext_auth": True})])
    srv.start()
    try:
        user = "big@example.test"
        srv.add_user(user)
        md = srv.maildir(user)
        for sub in ("new", "cur", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        rng = random.Random(14)
        stamp = int(time.time()) - n
        total = 0
        for i in range(n):
            data = message(rng, i)
            total += len(data)
            p = md / "cur" / f"{stamp + i}.M{i}P1.gen:2,S"
            p.write_bytes(data)
        print(f"{n} messages, {total / 1e6:.0f} MB")
        c = Raw(port, timeout=3600)
        c.login(user, PASSWORD)
        t, _ = timed(c, "SELECT INBOX")
        print(f"SELECT (first, builds the index rows): {t * 1000:.0f} ms")
        want = sum(1 for i in range(n) if i % 500 == 7)
        db = md / "tern-imap.sqlite"

        def indexed():
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
            try:
                return con.execute("SELECT count(*) FROM textindex").fetchone()[0]
            finally:
                con.close()

        def search(label, cmd, expect=None):
            t, untagged = timed(c, cmd)
            hits = len(untagged[0].split()) - 2 if untagged else 0
            if expect is not None:
                assert hits == expect, (cmd, hits, expect)
            if label:
                print(f"{label}: {t * 1000:.0f} ms, {hits} UIDs")
            return t

        search("UID SEARCH TEXT zanzibar (first: starts the full-text index)",
               "UID SEARCH TEXT zanzibar", want)
        rounds, spent = 0, 0.0
        while indexed() < n:
            spent += search(None, "UID SEARCH TEXT zanzibar", want)
            rounds += 1
            assert rounds < 10000
        print(f"UID SEARCH TEXT zanzibar until all {n} are indexed: "
              f"{rounds} more searches, {spent * 1000:.0f} ms")
        again = [search(None, "UID SEARCH TEXT zanzibar", want) for _ in range(5)]
        print(f"UID SEARCH TEXT zanzibar (index complete, median of 5): "
              f"{statistics.median(again) * 1000:.0f} ms, {want} UIDs")
        for label, cmd, expect in [
                ("UID SEARCH BODY \"needle is\"", "UID SEARCH BODY \"needle is\"", want),
                ("UID SEARCH TEXT report (matches nearly all)", "UID SEARCH TEXT report", None),
                # Common words in a rare order: every trigram is in nearly
                # every message, the phrase in few.
                ("UID SEARCH TEXT \"lunch budget invoice travel\" (common trigrams, rare phrase)",
                 "UID SEARCH TEXT \"lunch budget invoice travel\"", None),
                ("UID SEARCH TEXT zq (two letters: scan)", "UID SEARCH TEXT zq", 0)]:
            search(label, cmd, expect)
        wal = sum(p.stat().st_size for p in md.glob("tern-imap.sqlite-*"))
        size = db.stat().st_size + wal
        print(f"tern-imap.sqlite with WAL: {size / 1e6:.0f} MB (WAL and shm {wal / 1e6:.0f} MB)")
        c.close()
    finally:
        conftest.shutdown(srv)
        import shutil
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
