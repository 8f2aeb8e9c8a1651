# Durability under kill -9: many clients send unique messages while the
# server is killed and restarted at random moments. Every message that got
# a 250 after its data must end up in a Maildir, whole; duplicates are
# allowed (at-least-once) but must stay rare.
import email
import email.policy
import os
import random
import smtplib
import threading
import time

from conftest import _LIVE, TernServer, shutdown

N_THREADS = 16
KILLS = 5
USERS = [f"c{i}@example.test" for i in range(4)]


def make_message(marker, rcpt, rng):
    lines = []
    target = rng.randint(200, 24000)
    n = 0
    while sum(len(x) + 2 for x in lines) < target:
        lines.append(f"{marker} line {n:05d} " + "abcdefghij" * 5)
        n += 1
    nlines = len(lines)
    if rng.random() < 0.2:
        lines.insert(len(lines) // 2, ".")  # a lone dot inside the body
    head = [
        f"From: <sender@remote.test>",
        f"To: <{rcpt}>",
        f"Subject: {marker}",
        f"Message-ID: <{marker}@crash.test>",
        f"X-Tern-Marker: {marker}",
        f"X-Tern-Lines: {nlines}",
    ]
    text = "\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + f"\r\nEND {marker}\r\n"
    return text.encode()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}
        self.acked = {}
        self.refused = 0
        self.errors = 0


def client(tid, port, stop, stats, seed):
    rng = random.Random(seed)
    seq = 0
    s = None
    while not stop.is_set():
        try:
            if s is None:
                s = smtplib.SMTP("127.0.0.1", port, local_hostname=f"t{tid}.test",
                                 timeout=5)
                code, _ = s.ehlo()
                if code != 250:
                    raise smtplib.SMTPException(f"EHLO {code}")
            marker = f"crash-{tid:02d}-{seq:05d}-{rng.getrandbits(32):08x}"
            seq += 1
            rcpt = USERS[rng.randrange(len(USERS))]
            msg = make_message(marker, rcpt, rng)
            with stats.lock:
                stats.attempted[marker] = rcpt
            code, _ = s.mail(f"t{tid}@remote.test")
            if code != 250:
                raise smtplib.SMTPException(f"MAIL {code}")
            code, _ = s.rcpt(rcpt)
            if code != 250:
                raise smtplib.SMTPException(f"RCPT {code}")
            code, resp = s.data(msg)
            if code == 250:
                with stats.lock:
                    stats.acked[marker] = rcpt
            else:
                with stats.lock:
                    stats.refused += 1
                raise smtplib.SMTPException(f"DATA {code} {resp!r}")
            if rng.random() < 0.15:
                s.quit()
                s = None
            time.sleep(rng.uniform(0.03, 0.12))  # a steady, not a flooding, load
        except (smtplib.SMTPException, OSError):
            with stats.lock:
                stats.errors += 1
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
            s = None
            time.sleep(0.02 + rng.random() * 0.1)
    if s is not None:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


def check_file(p, user):
    """(marker, None) for a good file, (None, problem) otherwise."""
    raw = p.read_bytes()
    if not raw:
        return None, f"{p}: empty file"
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    marker = msg["X-Tern-Marker"]
    if not marker:
        return None, f"{p}: no marker header ({len(raw)} bytes)"
    marker = marker.strip()
    body = msg.get_payload()
    if not isinstance(body, str) or not body.endswith(f"END {marker}\n"):
        return None, f"{p}: truncated body ({len(raw)} bytes)"
    nlines = int(msg["X-Tern-Lines"])
    got = body.count(f"{marker} line ")
    if got != nlines:
        return None, f"{p}: {got} of {nlines} lines"
    if msg["Delivered-To"] != user or msg["To"] != f"<{user}>":
        return None, f"{p}: delivered to the wrong mailbox"
    return marker, None


_good = {}  # file name -> marker, for files already checked


def scan(srv):
    """marker -> copies, and a list of problems with files in new/ and cur/."""
    counts = {}
    problems = []
    for u in USERS:
        for p in srv.message_files(u):
            key = (u, p.name.split(":")[0])
            marker = _good.get(key)
            if marker is None:
                try:
                    marker, problem = check_file(p, u)
                except FileNotFoundError:
                    continue
                if problem:
                    problems.append(problem)
                    continue
                _good[key] = marker
            counts[marker] = counts.get(marker, 0) + 1
    return counts, problems


def queue_entries(js):
    if isinstance(js, list):
        return js
    if isinstance(js, dict):
        out = []
        for v in js.values():
            if isinstance(v, list):
                out += v
        return out
    return [js]


def test_kill9_loses_no_acknowledged_message(tmp_path):
    seed = int(os.environ.get("TERN_CRASH_SEED", str(int(time.time() * 1000))))
    print(f"crash test seed {seed} (set TERN_CRASH_SEED to repeat)")
    rng = random.Random(seed)
    t_start = time.monotonic()
    srv = TernServer(tmp_path / "srv", delivery_threads=2)
    _LIVE.append(srv)
    try:
        for u in USERS:
            srv.add_user(u)
        srv.start()

        stats = Stats()
        stop = threading.Event()
        threads = [threading.Thread(target=client,
                                    args=(i, srv.port, stop, stats, seed * 100 + i),
                                    daemon=True)
                   for i in range(N_THREADS)]
        for t in threads:
            t.start()

        acked_at_kill = []
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.5))
            srv.kill9()
            with stats.lock:
                acked_at_kill.append(len(stats.acked))
            srv.start(timeout=10)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=15)
        assert not any(t.is_alive() for t in threads), "client threads hung"

        acked = dict(stats.acked)
        t_clients = time.monotonic() - t_start
        print(f"clients done after {t_clients:.1f}s")
        print(f"attempted {len(stats.attempted)}, acknowledged {len(acked)}, "
              f"refused {stats.refused}, client errors {stats.errors}, "
              f"acked at kills {acked_at_kill}")
        assert len(acked) >= 30, "too few messages acknowledged for a meaningful test"

        # Let delivery finish: every acknowledged marker in a Maildir ...
        deadline = time.monotonic() + 25
        while True:
            counts, problems = scan(srv)
            missing = [m for m in acked if m not in counts]
            if not missing or time.monotonic() > deadline:
                break
            srv.check_alive()
            time.sleep(0.25)
        print(f"delivery check done after {time.monotonic() - t_start:.1f}s")
        # ... and the queue empty.
        deadline = time.monotonic() + 10
        while True:
            left = queue_entries(srv.queue_json())
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        counts, problems = scan(srv)
        missing = sorted(m for m in acked if m not in counts)
        unknown = sorted(m for m in counts if m not in stats.attempted)
        dups = {m: c for m, c in counts.items() if c > 1}
        extra = sum(c - 1 for c in dups.values())
        rate = extra / max(1, len(counts))
        delivered_unacked = sum(1 for m in counts if m not in acked)
        print(f"delivered {len(counts)} distinct, {delivered_unacked} without ack, "
              f"{len(dups)} duplicated ({extra} extra copies, {rate:.2%}), "
              f"queue left {len(left)}, {time.monotonic() - t_start:.1f}s")

        assert not problems, "damaged Maildir files:\n" + "\n".join(problems[:20])
        assert not missing, (f"{len(missing)} acknowledged messages lost, e.g. "
                             f"{missing[:10]} (seed {seed})")
        assert not unknown, f"messages nobody sent: {unknown[:10]}"
        assert rate <= 0.05, f"duplicate rate {rate:.2%}: {sorted(dups.items())[:10]}"
        assert not left, f"queue not empty after delivery: {left[:5]}"
        assert srv.stop() == 0
        for u in USERS:
            tmp = srv.maildir(u) / "tmp"
            # leftovers in tmp/ are allowed after kill -9, but never in new/
            assert tmp.is_dir()
    finally:
        shutdown(srv)
