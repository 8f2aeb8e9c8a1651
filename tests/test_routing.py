# Recipient routing: +tags, case, aliases (local, catch-all, remote targets),
# the queue for remote recipients, relaying from trusted networks.
import time

import pytest

from conftest import (_LIVE, TernServer, build_message, shutdown, to_lf,
                      unique)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = TernServer(tmp_path_factory.mktemp("routing"),
                   domains=["example.test", "catch.test"])
    _LIVE.append(s)
    try:
        for u in ("u@example.test", "v@example.test", "real@catch.test"):
            s.add_user(u)
        s.add_alias("list@example.test", ["u@example.test", "v@example.test"])
        s.add_alias("@catch.test", ["u@example.test"])
        s.add_alias("fwd@example.test", ["someone@remote.test"])
        s.add_alias("mixed@example.test", ["v@example.test", "other@remote.test"])
        s.start()
    except BaseException:
        shutdown(s)
        raise
    yield s
    shutdown(s)


def send(srv, rcpts, marker, sender="s@remote.test"):
    data = build_message(marker, [f"routing {marker}"], sender=sender)
    with srv.connect() as c:
        c.start()
        r = c.send_message(sender, rcpts, data)
        assert r.code == 250, r
        return data, r


def test_plus_tag(srv):
    m = unique("tag")
    data, _ = send(srv, ["u+newsletter@example.test"], m)
    d = srv.wait_message("u@example.test", m)
    assert d.rest == to_lf(data)
    assert srv.messages("v@example.test", m) == []


def test_unknown_user_with_tag(srv):
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        r = c.cmd("RCPT TO:<nosuchuser+tag@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r


def test_mixed_case(srv):
    m1, m2, m3 = unique("case"), unique("case"), unique("case")
    send(srv, ["U@EXAMPLE.TEST"], m1)
    send(srv, ["u@Example.Test"], m2)
    send(srv, ["U+Tag@example.TEST"], m3)
    for m in (m1, m2, m3):
        srv.wait_message("u@example.test", m)
    # nothing created under a differently-cased directory
    mail = srv.data_dir / "mail"
    assert sorted(p.name for p in mail.iterdir()) == ["example.test"] or \
        sorted(p.name for p in mail.iterdir()) == ["catch.test", "example.test"]
    assert not (mail / "example.test" / "U").exists()


def test_alias_to_two_users(srv):
    m = unique("list")
    send(srv, ["list@example.test"], m)
    du = srv.wait_message("u@example.test", m)
    dv = srv.wait_message("v@example.test", m)
    assert du.rest == dv.rest
    time.sleep(0.5)
    assert len(srv.messages("u@example.test", m)) == 1
    assert len(srv.messages("v@example.test", m)) == 1


def test_alias_and_member_get_one_copy_each(srv):
    # list -> u, v; also sent to u directly: u may get one or two copies but
    # v gets exactly one.
    m = unique("listdup")
    send(srv, ["list@example.test", "u@example.test"], m)
    srv.wait_message("v@example.test", m)
    srv.wait_messages("u@example.test", m)
    time.sleep(0.5)
    assert len(srv.messages("v@example.test", m)) == 1
    assert 1 <= len(srv.messages("u@example.test", m)) <= 2


def test_catch_all(srv):
    m1, m2 = unique("catch"), unique("real")
    send(srv, ["anything-at-all@catch.test"], m1)
    send(srv, ["real@catch.test"], m2)
    srv.wait_message("u@example.test", m1)
    srv.wait_message("real@catch.test", m2)
    # the catch-all does not steal mail for real accounts
    assert srv.messages("u@example.test", m2) == []


def test_catch_all_only_for_its_domain(srv):
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        r = c.cmd("RCPT TO:<anything-at-all@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r


def find_entries(obj, needle):
    """Dicts anywhere inside `obj` whose serialised form mentions `needle`,
    innermost first."""
    import json
    found = []

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
            if needle in json.dumps(o, ensure_ascii=False):
                found.append(o)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(obj)
    return found


def entry_ids(entries):
    ids = []
    for e in entries:
        for k, v in e.items():
            if isinstance(v, str) and k.lower() in ("id", "queue_id", "queueid"):
                ids.append(v)
    return ids


def wait_queued(srv, needle, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        text = srv.queue_list()
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in `tern queue list`:\n{text}")
        time.sleep(0.2)


def test_alias_to_remote_stays_queued(srv):
    m = unique("fwd")
    sender = f"{m}@sender.test"
    _, reply = send(srv, ["fwd@example.test"], m, sender=sender)
    text = wait_queued(srv, sender)
    assert "someone@remote.test" in text or "fwd@example.test" in text, text
    # and it remains there (no local delivery happens for it)
    time.sleep(1.0)
    assert sender in srv.queue_list()
    js = srv.queue_json()
    entries = find_entries(js, sender)
    assert entries, f"{sender} not in JSON queue listing: {js}"
    ids = entry_ids(entries)
    assert ids, f"no id field in queue entry: {entries[0]}"
    assert any(i in reply.text for i in ids), (ids, reply)
    assert srv.messages("u@example.test", m) == []


def test_alias_mixed_local_and_remote(srv):
    m = unique("mixed")
    sender = f"{m}@sender.test"
    send(srv, ["mixed@example.test"], m, sender=sender)
    srv.wait_message("v@example.test", m)
    wait_queued(srv, sender)


def test_remote_recipient_from_trusted_network(make_server):
    srv = make_server(users=["u@example.test"], trusted_networks=["127.0.0.0/8"])
    m = unique("relay")
    sender = f"{m}@example.test"
    data = build_message(m, ["relayed"], sender=sender, to="far@remote.test")
    with srv.connect() as c:
        c.start()
        assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
        r = c.cmd("RCPT TO:<far@remote.test>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<u@example.test>")
        assert r.code == 250, r
        # trusted or not, unknown local users are still refused
        r = c.cmd("RCPT TO:<nosuch@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert c.cmd("DATA").code == 354
        c.send(data + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
    srv.wait_message("u@example.test", m)
    text = wait_queued(srv, "far@remote.test")
    assert sender in text, text
    js = srv.queue_json()
    assert find_entries(js, "far@remote.test"), js


def test_queue_list_empty_json(make_server):
    srv = make_server(users=["u@example.test"])
    js = srv.queue_json()
    # nothing queued: an empty list, or an object whose lists are all empty
    if isinstance(js, dict):
        assert all(not v for v in js.values() if isinstance(v, list)), js
    else:
        assert js == [], js
