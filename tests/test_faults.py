# Faults (issue 7): a full or read-only spool, a full mail store, and
# kill -9 in the middle of local delivery, outbound delivery and a POP3
# UPDATE. Small tmpfs mounts stand in for full disks (the tests run as
# root; they skip when mounting is not permitted). The rule checked
# everywhere: mail that got a 250 is never lost and never half-written;
# mail that could not be stored gets a 4xx, never a 250.
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import (_LIVE, PASSWORD, TernServer, dot_stuff, free_port,
                      shutdown, to_lf, unique)
from faultkit import (IN_CREATE, IN_MOVED_TO, Inotify, Peer, Tmpfs,
                      maildir_messages, start_dns, stop_dns, stall, wait_for)

FAST_DELIVERY = {
    "retry_first": 1,
    "retry_max": 2,
    "max_lifetime": 3600,
    "delay_warning": 0,
    "connect_timeout": 2,
    "greeting_timeout": 3,
    "command_timeout": 3,
    "data_init_timeout": 3,
    "data_block_timeout": 3,
    "final_timeout": 3,
}


class Rig:
    """Servers, tmpfs mounts, a fake DNS and SMTP peers for one test; torn
    down in that order (servers first, so nothing holds a mount)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.servers = []
        self.mounts = []
        self.peers = []
        self.dns = start_dns()
        self.mx_port = free_port()

    def server(self, users=("u@example.test",), aliases=(), delivery=None, **kw):
        d = dict(FAST_DELIVERY, mx_port=self.mx_port)
        d.update(delivery or {})
        sections = {"delivery": d, "dns": {"upstream": [f"127.0.0.1:{self.dns.port}"]}}
        sections.update(kw.pop("sections", {}))
        srv = TernServer(self.tmp_path / f"srv{len(self.servers)}",
                         trusted_networks=["127.0.0.0/8"], sections=sections, **kw)
        self.servers.append(srv)
        _LIVE.append(srv)
        for u in users:
            srv.add_user(u)
        for a, t in aliases:
            srv.add_alias(a, t)
        return srv

    def mount(self, path, size):
        t = Tmpfs(path, size)
        self.mounts.append(t)
        return t

    def peer(self, ip, plans=({},), caps=()):
        p = Peer(ip, self.mx_port, plans, caps)
        self.peers.append(p)
        return p

    def close(self):
        errors = []
        for srv in self.servers:
            try:
                shutdown(srv)
            except AssertionError as e:
                errors.append(str(e))
        for p in self.peers:
            p.close()
        for t in reversed(self.mounts):
            t.close()
        stop_dns(self.dns)
        if errors:
            pytest.fail("\n".join(errors))


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


# ---------------------------------------------------------------- helpers

def make_message(marker, size, to="u@example.test", sender="sender@remote.test"):
    """About `size` octets (CRLF), numbered lines, an END line: a copy that
    lost anything is easy to tell."""
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {marker}\r\n"
            f"Message-ID: <{marker}@faults.test>\r\nX-Marker: {marker}\r\n\r\n")
    filler = "abcdefghij" * 7
    lines = []
    total = len(head)
    i = 0
    while total < size:
        line = f"{marker} {i:07d} {filler}"
        if i % 97 == 0:
            line = "." + line  # dot-stuffing on the way in and out
        lines.append(line)
        total += len(line) + 2
        i += 1
    return (head + "\r\n".join(lines) + f"\r\nEND {marker}\r\n").encode()


def transaction(c, sender, rcpts, data):
    """MAIL, RCPT, DATA and the content; the reply that ended it."""
    r = c.cmd(f"MAIL FROM:<{sender}>")
    assert r.code == 250, r
    for rc in rcpts:
        r = c.cmd(f"RCPT TO:<{rc}>")
        assert r.code == 250, r
    r = c.cmd("DATA")
    if r.code != 354:
        return r
    c.send(dot_stuff(data) + b".\r\n")
    return c.reply()


def submit(srv, sender, rcpts, data):
    with srv.connect() as c:
        c.start()
        r = transaction(c, sender, rcpts, data)
        c.cmd("QUIT")
    return r


def queued_id(reply):
    assert reply.code == 250, reply
    m = re.search(r"queued as (\S+)", reply.text)
    assert m, reply
    return m.group(1)


def entry(srv, qid):
    for e in srv.queue_json():
        if e["id"] == qid:
            return e
    return None


def wait_queue_empty(srv, timeout=15):
    wait_for(lambda: srv.queue_json() == [], timeout, "an empty queue", srv)


def copies(srv, address, marker):
    """Messages in `address`'s Maildir with X-Marker `marker`."""
    return [m for m in maildir_messages(srv, address) if m["X-Marker"] == marker]


def assert_whole(msg, data):
    """A Maildir copy holds the sent message, LF line ends, nothing lost."""
    raw = msg.as_bytes() if hasattr(msg, "as_bytes") else msg
    assert raw.endswith(to_lf(data)), (
        f"copy is not the whole message: {len(raw)} octets, ends {raw[-120:]!r}")


def dir_names(path):
    try:
        return sorted(n for n in os.listdir(path))
    except FileNotFoundError:
        return []


def spool_ids(srv):
    return [n for n in dir_names(srv.data_dir / "queue" / "msg") if not n.startswith(".")]


# ---------------------------------------------------------------- full spool

def test_full_spool_refuses_with_452_and_keeps_queued_mail(rig):
    srv = rig.server()
    fs = rig.mount(srv.data_dir / "queue", "4m")
    rig.dns.route("far.test", "127.0.0.60")  # nothing listens there yet
    srv.start()

    # Mail already queued (remote, deferred: connection refused).
    m1 = unique("queued")
    d1 = make_message(m1, 120_000, to="x@far.test", sender="u@example.test")
    id1 = queued_id(submit(srv, "u@example.test", ["x@far.test"], d1))
    wait_for(lambda: (entry(srv, id1) or {}).get("attempts", 0) >= 1, 10,
             "the first delivery attempt", srv)

    fs.fill()
    assert fs.free_bytes() < 4096
    with srv.connect() as c:
        c.start()
        # In memory until the commit, and BDAT: refused with 452 4.3.1.
        r = transaction(c, "u@example.test", ["x@far.test"],
                        make_message(unique("full"), 2_000, to="x@far.test"))
        assert (r.code, r.enhanced) == (452, "4.3.1"), r
        # Streamed to the spool (> 64 KiB): refused too (452 once the
        # queue reports the errno, see test_full_spool_streamed_message_gets_452).
        r = transaction(c, "u@example.test", ["x@far.test"],
                        make_message(unique("full"), 300_000, to="x@far.test"))
        assert r.code in (451, 452) and r.enhanced.startswith("4.3."), r
        data = make_message(unique("bdat"), 5_000, to="x@far.test")
        assert c.cmd("MAIL FROM:<u@example.test>").code == 250
        assert c.cmd("RCPT TO:<x@far.test>").code == 250
        c.send(f"BDAT {len(data)} LAST\r\n".encode() + data)
        r = c.reply()
        assert (r.code, r.enhanced) == (452, "4.3.1"), r
        # The session goes on.
        assert c.cmd("NOOP").code == 250
        assert c.cmd("RSET").code == 250
    # New connections are fine too.
    with srv.connect() as c:
        c.start()
        assert c.cmd("NOOP").code == 250
    # `tern sendmail` cannot queue either, and says so (EX_TEMPFAIL).
    p = srv.cli("sendmail", "-f", "u@example.test", "x@far.test",
                input=f"Subject: {unique('sm')}\n\nbody\n", check=False)
    assert p.returncode == 75, (p.returncode, p.stderr)

    # Nothing of the refused messages stays in the spool; the queued one
    # is still there, pending.
    assert spool_ids(srv) == [id1]
    e = entry(srv, id1)
    assert e and e["recipients"][0]["state"] == "pending", e
    srv.check_alive()

    # Space returns: new mail is taken again...
    fs.unfill()
    m2 = unique("after")
    d2 = make_message(m2, 3_000, to="x@far.test")
    id2 = queued_id(submit(srv, "u@example.test", ["x@far.test"], d2))
    # ... and everything queued is delivered once the peer is up.
    peer = rig.peer("127.0.0.60")
    srv.cli("queue", "flush")
    got = peer.wait_delivered(2, timeout=20)
    by_marker = {}
    for g in got:
        for m, d in ((m1, d1), (m2, d2)):
            if m.encode() in g["data"]:
                by_marker.setdefault(m, []).append(g)
                assert g["data"].endswith(d), f"{m}: delivered copy differs"
    assert sorted(by_marker) == sorted([m1, m2]), got
    wait_queue_empty(srv)
    # No bounce or delay report went to the sender.
    assert maildir_messages(srv, "u@example.test") == []
    assert id2 not in spool_ids(srv)


def test_full_spool_streamed_message_gets_452(rig):
    srv = rig.server()
    fs = rig.mount(srv.data_dir / "queue", "4m")
    srv.start()
    fs.fill()
    with srv.connect() as c:
        c.start()
        r = transaction(c, "s@remote.test", ["u@example.test"],
                        make_message(unique("full"), 300_000))
        assert (r.code, r.enhanced) == (452, "4.3.1"), r


def test_read_only_spool_refuses_with_4xx(rig):
    srv = rig.server()
    fs = rig.mount(srv.data_dir / "queue", "4m")
    rig.dns.route("ro.test", "127.0.0.61")
    srv.start()
    m1 = unique("queued")
    d1 = make_message(m1, 5_000, to="x@ro.test")
    id1 = queued_id(submit(srv, "u@example.test", ["x@ro.test"], d1))
    wait_for(lambda: (entry(srv, id1) or {}).get("attempts", 0) >= 1, 10,
             "the first delivery attempt", srv)

    # Root ignores file modes, so an unwritable spool is a read-only mount.
    fs.remount("ro")
    try:
        with srv.connect() as c:
            c.start()
            for size in (2_000, 300_000):
                r = transaction(c, "u@example.test", ["x@ro.test"],
                                make_message(unique("ro"), size, to="x@ro.test"))
                assert r.code in (451, 452) and r.enhanced.startswith("4.3."), r
            assert c.cmd("NOOP").code == 250
        # Local mail cannot be queued either (the spool is the only way in).
        r = submit(srv, "s@remote.test", ["u@example.test"],
                   make_message(unique("rolocal"), 1_000))
        assert r.code in (451, 452), r
        with srv.connect() as c:
            c.start()
    finally:
        fs.remount("rw")
    m2 = unique("rw")
    d2 = make_message(m2, 2_000)
    queued_id(submit(srv, "s@remote.test", ["u@example.test"], d2))
    msgs = wait_for(lambda: copies(srv, "u@example.test", m2), 10, "local delivery", srv)
    assert_whole(msgs[0], d2)
    peer = rig.peer("127.0.0.61")
    srv.cli("queue", "flush")
    got = peer.wait_delivered(1, timeout=20)
    assert got[0]["data"].endswith(d1)
    wait_queue_empty(srv)


def test_spool_out_of_inodes_refuses_with_452(rig):
    srv = rig.server()
    fs = rig.mount(srv.data_dir / "queue", "4m,nr_inodes=64")
    srv.start()
    # Every inode taken (no message has been delivered, so the spool has
    # no spent file to reuse).
    names = []
    for i in range(100):
        try:
            open(os.path.join(fs.path, f".inode{i}"), "wb").close()
            names.append(os.path.join(fs.path, f".inode{i}"))
        except OSError:
            break
    else:
        pytest.fail("nr_inodes had no effect")
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        r = c.cmd("DATA")
        assert (r.code, r.enhanced) == (452, "4.3.1"), r
        data = make_message(unique("bdat"), 1_000)
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        c.send(f"BDAT {len(data)} LAST\r\n".encode() + data)
        r = c.reply()
        assert (r.code, r.enhanced) == (452, "4.3.1"), r
        assert c.cmd("NOOP").code == 250
    for n in names:
        os.unlink(n)
    m = unique("inodes")
    d = make_message(m, 2_000)
    queued_id(submit(srv, "s@remote.test", ["u@example.test"], d))
    got = wait_for(lambda: copies(srv, "u@example.test", m), 10, "delivery", srv)
    assert_whole(got[0], d)


def test_bounce_waits_for_space_in_the_spool(rig):
    # A remote 550 needs a DSN, and DSNs are queued through the spool: with
    # the spool full the report must wait, not vanish.
    srv = rig.server()
    fs = rig.mount(srv.data_dir / "queue", "4m")
    rig.dns.route("bounce.test", "127.0.0.63")
    srv.start()
    m = unique("bounce")
    d = make_message(m, 30_000, to="x@bounce.test", sender="u@example.test")
    qid = queued_id(submit(srv, "u@example.test", ["x@bounce.test"], d))
    wait_for(lambda: (entry(srv, qid) or {}).get("attempts", 0) >= 1, 10,
             "the first delivery attempt", srv)
    fs.fill()
    peer = rig.peer("127.0.0.63", plans=[{"rcpt": "550 5.1.1 no such user"}])
    srv.cli("queue", "flush")
    wait_for(lambda: "cannot queue a DSN" in srv.log_text(), 10,
             "a DSN that could not be queued", srv)
    assert qid in spool_ids(srv)
    assert maildir_messages(srv, "u@example.test") == []
    fs.unfill()
    wait_for(lambda: [x for x in maildir_messages(srv, "u@example.test")
                      if m in x.as_string()], 15, "the DSN", srv)
    wait_queue_empty(srv)
    dsns = [x for x in maildir_messages(srv, "u@example.test") if m in x.as_string()]
    assert len(dsns) == 1, f"{len(dsns)} reports"
    assert dsns[0].get_content_type() == "multipart/report"
    assert "5.1.1" in dsns[0].as_string()
    assert peer.delivered == []


# ---------------------------------------------------------------- full Maildir

def hold(srv, qid):
    srv.cli("queue", "hold", qid)
    wait_for(lambda: (entry(srv, qid) or {}).get("held"), 10, f"{qid} held", srv)


@pytest.mark.parametrize("size,leave", [(100_000, 0), (1_500_000, 300_000)],
                         ids=["in-memory-copy", "streamed-copy-cut-short"])
def test_full_maildir_keeps_message_queued(rig, size, leave):
    user = "u@example.test"
    srv = rig.server(users=(user,))
    fs = rig.mount(srv.data_dir / "mail", "4m")
    srv.start()
    m0 = unique("warm")
    submit(srv, "s@remote.test", [user], make_message(m0, 500))
    wait_for(lambda: copies(srv, user, m0), 10, "the first message", srv)

    fs.fill(leave=leave)
    m = unique("big")
    data = make_message(m, size)
    qid = queued_id(submit(srv, "s@remote.test", [user], data))
    e = wait_for(lambda: (x := entry(srv, qid)) and x["attempts"] >= 2 and x,
                 15, "two failed delivery attempts", srv)
    assert e["recipients"][0]["state"] == "pending", e
    assert "space" in e["last_error"].lower(), e
    # Held, so no attempt runs while we look: nothing of it in the Maildir,
    # not even in tmp/.
    hold(srv, qid)
    assert [x["X-Marker"] for x in maildir_messages(srv, user)] == [m0]
    md = srv.maildir(user)
    assert dir_names(md / "tmp") == [], dir_names(md / "tmp")
    assert len(dir_names(md / "new")) + len(dir_names(md / "cur")) == 1

    fs.unfill()
    srv.cli("queue", "release", qid)
    got = wait_for(lambda: copies(srv, user, m), 15, "delivery after space returned", srv)
    wait_queue_empty(srv)
    got = copies(srv, user, m)
    assert len(got) == 1, f"{len(got)} copies"
    assert_whole(got[0], data)
    assert dir_names(md / "tmp") == []


def test_full_maildir_alias_delivers_each_copy_once(rig):
    a, b = "a@example.test", "b@example.test"
    srv = rig.server(users=(a, b), aliases=[("team@example.test", [a, b])])
    fs = rig.mount(srv.data_dir / "mail", "4m")
    srv.start()
    for u in (a, b):
        m0 = unique("warm")
        submit(srv, "s@remote.test", [u], make_message(m0, 500, to=u))
        wait_for(lambda: copies(srv, u, m0), 10, "the first message", srv)

    # Room for one copy, not two.
    size = 400_000
    fs.fill(leave=600_000)
    m = unique("team")
    data = make_message(m, size, to="team@example.test")
    qid = queued_id(submit(srv, "s@remote.test", ["team@example.test"], data))
    wait_for(lambda: len(copies(srv, a, m)) + len(copies(srv, b, m)) >= 1, 10,
             "the copy that fits", srv)
    e = wait_for(lambda: (x := entry(srv, qid)) and x["attempts"] >= 1 and x,
                 10, "a deferred attempt", srv)
    hold(srv, qid)
    have = {u: len(copies(srv, u, m)) for u in (a, b)}
    assert sorted(have.values()) == [0, 1], have
    missing = a if have[a] == 0 else b
    e = entry(srv, qid)
    states = {r["address"]: r["state"] for r in e["recipients"]}
    # The alias is done; the mailbox that was full waits on its own.
    assert states.get(missing) == "pending", e
    assert states.get("team@example.test") == "delivered", e

    fs.unfill()
    srv.cli("queue", "release", qid)
    wait_for(lambda: copies(srv, missing, m), 15, "the second copy", srv)
    wait_queue_empty(srv)
    for u in (a, b):
        got = copies(srv, u, m)
        assert len(got) == 1, f"{u}: {len(got)} copies"
        assert_whole(got[0], data)


def test_read_only_maildir_defers(rig):
    user = "u@example.test"
    srv = rig.server(users=(user,))
    fs = rig.mount(srv.data_dir / "mail", "4m")
    srv.start()
    m0 = unique("warm")
    submit(srv, "s@remote.test", [user], make_message(m0, 500))
    wait_for(lambda: copies(srv, user, m0), 10, "the first message", srv)
    fs.remount("ro")
    try:
        m = unique("ro")
        data = make_message(m, 20_000)
        qid = queued_id(submit(srv, "s@remote.test", [user], data))
        e = wait_for(lambda: (x := entry(srv, qid)) and x["attempts"] >= 1 and x,
                     10, "a failed delivery attempt", srv)
        assert e["recipients"][0]["state"] == "pending", e
        assert "read-only" in e["last_error"].lower(), e
        hold(srv, qid)
    finally:
        fs.remount("rw")
    srv.cli("queue", "release", qid)
    wait_for(lambda: copies(srv, user, m), 15, "delivery after remount", srv)
    wait_queue_empty(srv)
    got = copies(srv, user, m)
    assert len(got) == 1
    assert_whole(got[0], data)


# ---------------------------------------------------------------- kill -9

def check_maildir_files(srv, address):
    """Every file in new/ and cur/ is a whole message: it parses, has our
    marker header and ends with its END line."""
    problems = []
    for p in srv.message_files(address):
        raw = p.read_bytes()
        m = re.search(rb"^X-Marker: (\S+)$", raw, re.M)
        if not m:
            problems.append(f"{p}: no marker ({len(raw)} octets)")
            continue
        if not raw.endswith(b"\nEND " + m.group(1) + b"\n"):
            problems.append(f"{p}: truncated ({len(raw)} octets)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("moment", ["copy-in-tmp", "first-rename", "last-rename"])
def test_kill9_during_local_delivery(rig, moment):
    users = [f"k{i}@example.test" for i in range(4)]
    srv = rig.server(users=users)
    srv.start()
    for u in users:  # the Maildirs exist before we watch them
        m0 = unique("warm")
        submit(srv, "s@remote.test", [u], make_message(m0, 300, to=u))
        wait_for(lambda: copies(srv, u, m0), 10, "the first message", srv)

    ino = Inotify()
    for u in users:
        md = srv.maildir(u)
        ino.watch(md / "tmp", IN_CREATE)
        ino.watch(md / "new", IN_MOVED_TO)
    m = unique("kill")
    data = make_message(m, 3_000_000, to=users[0])
    killed = threading.Event()
    seen = []

    def killer():
        renames = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ev = ino.wait(0.5)
            if ev is None:
                continue
            d, name, mask = ev
            seen.append((d, name))
            if moment == "copy-in-tmp" and d.endswith("/tmp"):
                break
            if mask & IN_MOVED_TO:  # a copy renamed into new/
                renames += 1
                if moment == "first-rename" or renames == len(users):
                    break
        else:
            return
        os.kill(srv.proc.pid, signal.SIGKILL)
        killed.set()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        reply = submit(srv, "s@remote.test", users, data)
    except (OSError, EOFError):
        reply = None  # killed before the reply got out: then not acknowledged
    t.join(25)
    ino.close()
    assert killed.is_set(), f"no kill at {moment}; events {seen[:10]}"
    srv.kill9()  # reap
    # Delivery starts once the message is durable, so it must arrive even
    # if the kill beat the 250 to the client.
    assert reply is None or reply.code == 250, reply

    srv.start()
    for u in users:
        wait_for(lambda: copies(srv, u, m), 20, f"{u}: delivery after restart", srv)
    wait_queue_empty(srv)
    print(f"kill at {moment}: events before the kill {len(seen)}, 250 seen "
          f"{reply is not None}, copies {[len(copies(srv, u, m)) for u in users]}")
    for u in users:
        got = copies(srv, u, m)
        assert 1 <= len(got) <= 2, f"{u}: {len(got)} copies"
        for g in got:
            assert_whole(g, data)
        check_maildir_files(srv, u)


@pytest.mark.parametrize("where", ["before-final-reply", "mid-body"])
def test_kill9_during_outbound_delivery(rig, where):
    srv = rig.server()
    rig.dns.route("kill.test", "127.0.0.62")
    if where == "before-final-reply":
        first = {"dot": stall}
        size = 50_000
    else:
        # Stops reading after 64 KiB of a 2 MB message: Tern's write blocks.
        first = {"body_limit": 65536, "body": stall}
        size = 2_000_000
    peer = rig.peer("127.0.0.62", plans=[first, {}])
    srv.start()
    m = unique("out")
    data = make_message(m, size, to="x@kill.test", sender="u@example.test")
    qid = queued_id(submit(srv, "u@example.test", ["x@kill.test"], data))
    peer.wait_stage("dot" if where == "before-final-reply" else "body")
    srv.kill9()
    assert qid in spool_ids(srv)
    srv.start()
    got = peer.wait_delivered(1, timeout=20)
    assert got[0]["to"] == ["x@kill.test"]
    assert got[0]["data"].endswith(data)
    wait_queue_empty(srv)
    assert maildir_messages(srv, "u@example.test") == []  # no bounce


# ---------------------------------------------------------------- POP3 UPDATE

class Pop:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        assert self.line().startswith("+OK")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def multi(self):
        out = []
        while (line := self.line()) != ".":
            out.append(line)
        return out

    def login(self, user):
        assert self.cmd(f"USER {user}").startswith("+OK")
        r = self.cmd(f"PASS {PASSWORD}")
        assert r.startswith("+OK"), r

    def uidl(self):
        assert self.cmd("UIDL").startswith("+OK")
        return {int(n): u for n, u in (x.split() for x in self.multi())}

    def close(self):
        self.sock.close()


def write_maildir(srv, user, count):
    """`count` whole messages straight into new/ (another MDA's way)."""
    md = srv.maildir(user)
    for sub in ("tmp", "new", "cur"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        m = unique("pop")
        body = make_message(m, 600 + 37 * i, to=user).replace(b"\r\n", b"\n")
        (md / "new" / f"17000000{i:02d}.M{i}P1.faults,S={len(body)}").write_bytes(body)


IN_DELETE = 0x200

# When to kill: a delay after QUIT, or a file-system event of the UPDATE
# (the journal renamed into place, the n-th message unlinked, the journal
# removed), caught with inotify so each window is hit on every run.
POP3_KILLS = [("delay", 0), ("journal", "written"), ("unlinked", 1),
              ("unlinked", 20), ("unlinked", 45), ("journal", "removed"),
              ("delay", 0.002), ("delay", 0.05)]


def test_kill9_during_pop3_update_is_all_or_nothing(rig):
    pop_port = free_port()
    users = [f"pop{i}@example.test" for i in range(len(POP3_KILLS))]
    srv = rig.server(users=users, extra_listen=[
        (f"127.0.0.1:{pop_port}", "pop3", {"allow_plaintext_auth": True})])
    total, doomed_n = 60, 45
    for u in users:
        write_maildir(srv, u, total)
    srv.start()
    outcomes = []
    for (kind, arg), user in zip(POP3_KILLS, users):
        md = srv.maildir(user)
        p = Pop(pop_port)
        p.login(user)
        before = p.uidl()
        assert len(before) == total
        doomed = {before[n] for n in range(1, doomed_n + 1)}
        p.sock.sendall(b"".join(f"DELE {n}\r\n".encode() for n in range(1, doomed_n + 1)))
        for _ in range(doomed_n):
            assert p.line().startswith("+OK")
        killer = None
        if kind != "delay":
            ino = Inotify()
            ino.watch(md, IN_MOVED_TO | IN_DELETE)
            ino.watch(md / "new", IN_DELETE)
            pid = srv.proc.pid

            fired = threading.Event()

            def kill_at_event(ino=ino, kind=kind, arg=arg, pid=pid, fired=fired):
                unlinked = 0
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    ev = ino.wait(0.5)
                    if ev is None:
                        continue
                    d, name, mask = ev
                    if name == "tern-expunge":
                        if (arg == "written" and mask & IN_MOVED_TO) or (
                                arg == "removed" and mask & IN_DELETE):
                            break
                    elif d.endswith("/new") and mask & IN_DELETE:
                        unlinked += 1
                        if kind == "unlinked" and unlinked >= arg:
                            break
                else:
                    return
                os.kill(pid, signal.SIGKILL)
                fired.set()

            killer = threading.Thread(target=kill_at_event, daemon=True)
            killer.start()
        p.sock.sendall(b"QUIT\r\n")
        if killer is not None:
            killer.join(12)
            ino.close()
            assert fired.is_set(), f"{kind} {arg}: the event never came"
        else:
            if arg:
                time.sleep(arg)
            os.kill(srv.proc.pid, signal.SIGKILL)
        srv.kill9()
        # What the client saw before the kill.
        p.sock.settimeout(0.5)
        try:
            got_ok = p.line().startswith("+OK")
        except (OSError, EOFError):
            got_ok = False
        p.close()
        journal = (md / "tern-expunge").exists()
        files_at_kill = len(srv.message_files(user))

        srv.start()
        p = Pop(pop_port)
        p.login(user)
        after = set(p.uidl().values())
        assert p.cmd("QUIT").startswith("+OK")
        p.close()
        everything = set(before.values())
        if after == everything:
            outcome = "none"
        elif after == everything - doomed:
            outcome = "all"
        else:
            raise AssertionError(
                f"kill at {kind} {arg}: partial UPDATE: {len(everything - after)} gone, "
                f"{len(doomed - (everything - after))} DELEd ones kept, "
                f"{len((everything - after) - doomed)} others lost")
        if got_ok:
            assert outcome == "all", "+OK to QUIT, but the deletions were undone"
        if kind != "delay":
            # Killed after the journal was in place: the deletions are
            # decided, and the next login finished them.
            assert outcome == "all", (kind, arg, journal, outcome)
        # The files agree with what the session showed, and are whole.
        assert len(srv.message_files(user)) == len(after)
        assert not (md / "tern-expunge").exists()
        check_maildir_files(srv, user)
        outcomes.append((kind, arg, outcome, got_ok, journal, files_at_kill))
    print("POP3 kill rounds (trigger, outcome, +OK seen, journal at kill, "
          "files at kill):", outcomes)
