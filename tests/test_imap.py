# IMAP4rev2 (RFC 9051) against the real server: login rules, folders, flags,
# APPEND/COPY/MOVE with UIDPLUS, EXPUNGE rules between sessions, IDLE woken
# by SMTP delivery, POP3 and IMAP on one mailbox, CONDSTORE/QRESYNC,
# SEARCH/ESEARCH, SORT and THREAD (RFC 5256), with Python's imaplib, curl and a raw client
# (tests/imap_client.py) over both ports.
import imaplib
import os
import poplib
import re
import socket
import subprocess
import time
import zlib

import pytest

import conftest
from conftest import PASSWORD, build_message, free_port, run_tool, unique
from imap_client import Raw, fetch_map, literal_of, no_verify, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    ports = {"imap": free_port(), "imaps": free_port(), "plain": free_port(),
             "pop3s": free_port()}
    s = conftest.TernServer(
        tmp_path_factory.mktemp("imap"),
        extra_listen=[
            (f"127.0.0.1:{ports['imap']}", "imap"),
            (f"127.0.0.1:{ports['imaps']}", "imaps"),
            (f"127.0.0.1:{ports['plain']}", "imap", {"allow_plaintext_auth": True}),
            (f"127.0.0.1:{ports['pop3s']}", "pop3s"),
        ],
        sections={"tls": {"self_signed": True}})
    s.imap_ports = ports
    conftest._LIVE.append(s)
    try:
        s.start()
    except BaseException:
        conftest.shutdown(s)
        raise
    yield s
    conftest.shutdown(s)


def new_user(srv):
    address = f"{unique('i')}@example.test"
    srv.add_user(address)
    return address


def deliver(srv, user, subject=None, body=None, raw=None):
    marker = subject or unique("msg")
    if raw is not None:
        data = raw.replace(b"MARKER", marker.encode())
    else:
        data = build_message(marker, body or ["hello " + marker], to=user)
    with srv.smtplib() as s:
        assert s.sendmail("sender@remote.test", [user], data) == {}
    srv.wait_message(user, marker)
    return marker, data


def session(srv, user, port="plain"):
    c = Raw(srv.imap_ports[port], tls=(port == "imaps"))
    c.login(user, PASSWORD)
    return c


def imaps(srv, user):
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.imap_ports["imaps"], ssl_context=no_verify())
    m.login(user, PASSWORD)
    return m


# ------------------------------------------------------------------ login

def test_greeting_and_logindisabled_before_starttls(srv):
    user = new_user(srv)
    with Raw(srv.imap_ports["imap"]) as c:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
        assert b"STARTTLS" in c.greeting and b"LOGINDISABLED" in c.greeting
        assert b"AUTH=" not in c.greeting
        _, t = c.cmd(f'LOGIN "{user}" "{PASSWORD}"')
        assert t.startswith(b"T1 NO [PRIVACYREQUIRED]"), t
        _, t = c.cmd("AUTHENTICATE PLAIN")
        assert b" NO " in t, t
        _, t = c.cmd("SELECT INBOX")
        assert b" BAD " in t, t
        c.starttls()
        untagged, t = c.ok("CAPABILITY")
        assert b"AUTH=PLAIN" in untagged[0] and b"AUTH=SCRAM-SHA-256" in untagged[0]
        assert b"LOGINDISABLED" not in untagged[0] and b"STARTTLS" not in untagged[0]
        _, t = c.login(user, PASSWORD)
        # RFC 9051 6.2.3: the new capabilities come with the OK.
        assert re.match(rb"T\d+ OK \[CAPABILITY IMAP4rev1 IMAP4rev2 ", t), t
        assert b"IDLE" in t and b"UIDPLUS" in t and b"MOVE" in t and b"CONDSTORE" in t


def test_imaplib_starttls_and_imaps(srv):
    user = new_user(srv)
    m = imaplib.IMAP4("127.0.0.1", srv.imap_ports["imap"])
    m.starttls(no_verify())
    assert m.login(user, PASSWORD)[0] == "OK"
    assert m.select("INBOX") == ("OK", [b"0"])
    m.logout()
    m = imaps(srv, user)
    typ, data = m.list()
    assert typ == "OK"
    names = {d.decode() for d in data}
    # Every account has the special-use folders (RFC 6154).
    for want in ('(\\HasNoChildren) "/" INBOX', '(\\HasNoChildren \\Sent) "/" Sent',
                 '(\\HasNoChildren \\Drafts) "/" Drafts',
                 '(\\HasNoChildren \\Trash) "/" Trash',
                 '(\\HasNoChildren \\Junk) "/" Junk'):
        assert want in names, names
    m.logout()


def test_wrong_password_and_sasl(srv):
    user = new_user(srv)
    with Raw(srv.imap_ports["imaps"], tls=True) as c:
        _, t = c.cmd(f'LOGIN "{user}" "wrong"')
        assert t.startswith(b"T1 NO [AUTHENTICATIONFAILED]"), t
        # SASL-IR (RFC 4959): PLAIN in one line.
        import base64
        ir = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        _, t = c.cmd(f"AUTHENTICATE PLAIN {ir}")
        assert t.startswith(b"T2 OK"), t
    with Raw(srv.imap_ports["imaps"], tls=True) as c:
        # Without an initial response: "+ " then the client's line.
        c.send("A1 AUTHENTICATE PLAIN\r\n")
        assert c.read_response() == b"+ \r\n"
        c.send(base64.b64encode(f"\0{user}\0{PASSWORD}".encode()) + b"\r\n")
        _, t = c.collect("A1")
        assert t.startswith(b"A1 OK"), t
    with Raw(srv.imap_ports["imaps"], tls=True) as c:
        c.send("A1 AUTHENTICATE PLAIN\r\n")
        c.read_response()
        c.send("*\r\n")  # RFC 9051 6.2.2: cancelled -> BAD
        _, t = c.collect("A1")
        assert t.startswith(b"A1 BAD"), t


def test_scram_sha_256(srv):
    import base64
    from scram_client import ScramSha256Client
    user = new_user(srv)
    with Raw(srv.imap_ports["imaps"], tls=True) as c:
        sc = ScramSha256Client(user, PASSWORD)
        c.send(b"A1 AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(sc.client_first()) + b"\r\n")
        line = c.read_response()
        assert line.startswith(b"+ "), line
        final = sc.client_final(base64.b64decode(line[2:].strip()))
        c.send(base64.b64encode(final) + b"\r\n")
        line = c.read_response()
        assert line.startswith(b"+ "), line
        sc.verify_server_final(base64.b64decode(line[2:].strip()))
        c.send(b"\r\n")
        _, t = c.collect("A1")
        assert t.startswith(b"A1 OK"), t


# ------------------------------------------------------------------ messages

def test_delivered_mail_fetch(srv):
    user = new_user(srv)
    marker, sent = deliver(srv, user)
    with session(srv, user) as c:
        untagged, t = c.ok("SELECT INBOX")
        assert b"* 1 EXISTS\r\n" in untagged
        assert any(r.startswith(b"* OK [UIDVALIDITY ") for r in untagged)
        assert any(r.startswith(b"* OK [UIDNEXT 2]") for r in untagged)
        assert any(r.startswith(b"* OK [PERMANENTFLAGS (") for r in untagged)
        assert t.startswith(b"T2 OK [READ-WRITE]"), t
        untagged, _ = c.ok("FETCH 1 (UID FLAGS RFC822.SIZE INTERNALDATE)")
        r = untagged[0]
        assert re.match(rb'\* 1 FETCH \(UID 1 FLAGS \(\) RFC822.SIZE (\d+) INTERNALDATE "', r), r
        size = int(re.search(rb"RFC822.SIZE (\d+)", r).group(1))
        untagged, _ = c.ok("FETCH 1 BODY.PEEK[]")
        whole = literal_of(untagged[0], b"BODY[]")
        assert len(whole) == size
        assert whole.endswith(sent)  # our trace headers come first
        untagged, _ = c.ok("FETCH 1 (FLAGS)")
        assert b"FLAGS ()" in untagged[0]  # PEEK left \Seen alone
        untagged, _ = c.ok("FETCH 1 BODY[TEXT]")
        assert literal_of(untagged[0], b"BODY[TEXT]") == sent.split(b"\r\n\r\n", 1)[1]
        assert b"FLAGS (\\Seen)" in untagged[0]  # RFC 9051 6.4.5
        untagged, _ = c.ok("FETCH 1 BODY.PEEK[]<10.20>")
        assert b"BODY[]<10> {20}" in untagged[0]
        assert literal_of(untagged[0], b"BODY[]<10>") == whole[10:30]
        # Sequence numbers past the end are an error; UIDs are not.
        _, t = c.cmd("FETCH 2 FLAGS")
        assert b" BAD " in t, t
        untagged, t = c.ok("UID FETCH 5:* FLAGS")
        assert untagged == [b"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\n"], untagged
    # \Seen is also in the Maildir file name, for mutt and Dovecot.
    files = srv.message_files(user)
    assert len(files) == 1 and files[0].parent.name == "cur"
    assert files[0].name.endswith(":2,S"), files[0].name


def test_store_expunge_close_unselect(srv):
    user = new_user(srv)
    for _ in range(4):
        deliver(srv, user)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        untagged, _ = c.ok("STORE 1:2 +FLAGS (\\Deleted $Important)")
        assert b"* 1 FETCH (FLAGS (\\Deleted $Important))\r\n" in untagged, untagged
        assert any(r.startswith(b"* FLAGS (") and b"$Important" in r for r in untagged)
        untagged, _ = c.ok("STORE 2 -FLAGS.SILENT (\\Deleted)")
        assert untagged == []
        untagged, _ = c.ok("UID STORE 3 FLAGS (\\Flagged)")
        assert untagged == [b"* 3 FETCH (FLAGS (\\Flagged) UID 3)\r\n"], untagged
        untagged, t = c.ok("EXPUNGE")
        assert untagged == [b"* 1 EXPUNGE\r\n"], untagged
        untagged, _ = c.ok("UID FETCH 1:* (FLAGS)")
        assert [fetch_map(untagged)[k] for k in (1, 2, 3)] == [
            b"* 1 FETCH (FLAGS ($Important) UID 2)\r\n",
            b"* 2 FETCH (FLAGS (\\Flagged) UID 3)\r\n",
            b"* 3 FETCH (FLAGS () UID 4)\r\n"]
        # UID EXPUNGE (RFC 4315) removes only the named \Deleted ones.
        c.ok("STORE 1:3 +FLAGS (\\Deleted)")
        untagged, _ = c.ok("UID EXPUNGE 3")
        assert untagged == [b"* 2 EXPUNGE\r\n"], untagged
        # UNSELECT leaves \Deleted messages; CLOSE expunges them silently.
        c.ok("UNSELECT")
        untagged, _ = c.ok("SELECT INBOX")
        assert b"* 2 EXISTS\r\n" in untagged
        untagged, _ = c.ok("CLOSE")
        assert untagged == []
        untagged, _ = c.ok("EXAMINE INBOX")
        assert b"* 0 EXISTS\r\n" in untagged
        _, t = c.cmd("STORE 1 +FLAGS (\\Seen)")
        assert b" BAD " in t or b" NO " in t
    # Flags survive a new session (and a restart would read the same index).
    deliver(srv, user)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS ($Later \\Answered)")
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        untagged, _ = c.ok("FETCH 1 FLAGS")
        assert untagged == [b"* 1 FETCH (FLAGS (\\Answered $Later))\r\n"], untagged


def test_append_multiappend_and_trycreate(srv):
    user = new_user(srv)
    msg = b"From: a@example.org\r\nSubject: appended\r\n\r\nline one\r\nline two\r\n"
    with session(srv, user) as c:
        # Synchronizing literal: "+" before the octets.
        c.send(f'A1 APPEND Drafts (\\Draft $X) "07-Feb-2024 10:11:12 +0100" {{{len(msg)}}}\r\n')
        assert c.read_response().startswith(b"+ ")
        c.send(msg + b"\r\n")
        _, t = c.collect("A1")
        m = re.match(rb"A1 OK \[APPENDUID (\d+) (\d+)\]", t)
        assert m, t
        # LITERAL+ and MULTIAPPEND (RFC 3502): two messages, one command.
        c.send(f"A2 APPEND Drafts {{{len(msg)}+}}\r\n".encode() + msg +
               f" (\\Seen) {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        _, t = c.collect("A2")
        assert re.match(rb"A2 OK \[APPENDUID \d+ 2:3\]", t), t
        _, t = c.cmd(f"APPEND NoSuchFolder {{{len(msg)}+}}\r\n".encode() + msg)
        assert b"NO [TRYCREATE]" in t, t
        untagged, _ = c.ok("SELECT Drafts")
        assert b"* 3 EXISTS\r\n" in untagged
        untagged, _ = c.ok("FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        f = fetch_map(untagged)
        assert b'INTERNALDATE "07-Feb-2024 09:11:12 +0000"' in f[1], f[1]
        assert b"FLAGS (\\Draft $X)" in f[1] and b"FLAGS (\\Seen)" in f[3]
        for k in (1, 2, 3):
            assert literal_of(f[k], b"BODY[]") == msg
            assert b"RFC822.SIZE %d" % len(msg) in f[k]


def test_large_append_streams(srv):
    user = new_user(srv)
    body = b"".join(b"line %07d of a large message, padded to look like text\r\n" % i
                    for i in range(60000))
    msg = b"Subject: big\r\n\r\n" + body
    assert len(msg) > 3 * 1024 * 1024
    with session(srv, user) as c:
        c.send(f"A1 APPEND INBOX {{{len(msg)}}}\r\n")
        assert c.read_response().startswith(b"+ ")
        c.send(msg + b"\r\n")
        _, t = c.collect("A1")
        assert t.startswith(b"A1 OK [APPENDUID"), t
        c.ok("SELECT INBOX")
        untagged, _ = c.ok("FETCH 1 (RFC822.SIZE BODY.PEEK[])")
        assert literal_of(untagged[0], b"BODY[]") == msg
    # Above APPENDLIMIT: refused before the octets are sent (RFC 7889).
    with session(srv, user) as c:
        c.send("A1 APPEND INBOX {99999999999}\r\n")
        r = c.read_response()
        assert r.startswith(b"A1 NO [TOOBIG]") or r.startswith(b"A1 BAD"), r
        c.ok("NOOP")


def test_folders_copy_move(srv):
    user = new_user(srv)
    for _ in range(3):
        deliver(srv, user)
    with session(srv, user) as c:
        c.ok("CREATE Work/Projects/")
        _, t = c.cmd("CREATE Work/Projects")
        assert b"NO [ALREADYEXISTS]" in t, t
        _, t = c.cmd("CREATE INBOX")
        assert b" NO " in t
        c.ok("CREATE Archive2 (USE (\\Archive))")  # RFC 6154 CREATE-SPECIAL-USE
        untagged, _ = c.ok('LIST "" "*"')
        names = b"".join(untagged)
        assert b'(\\HasChildren) "/" Work\r\n' in names, names
        assert b'(\\HasNoChildren) "/" Work/Projects\r\n' in names
        assert b'(\\HasNoChildren \\Archive) "/" Archive2\r\n' in names
        untagged, _ = c.ok('LIST "" "%"')
        assert not any(b"Work/Projects" in r for r in untagged)
        untagged, _ = c.ok('LIST "Work/" "%"')
        assert untagged == [b'* LIST (\\HasNoChildren) "/" Work/Projects\r\n'], untagged
        untagged, _ = c.ok('LIST "" ""')
        assert untagged == [b'* LIST (\\Noselect) "/" ""\r\n']
        untagged, _ = c.ok('LIST (SPECIAL-USE) "" "*"')
        assert len(untagged) == 5, untagged  # Drafts Sent Trash Junk Archive2
        untagged, _ = c.ok('LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN))')
        assert untagged[1] == b"* STATUS INBOX (MESSAGES 3 UNSEEN 3)\r\n", untagged
        c.ok("SUBSCRIBE Work/Projects")
        untagged, _ = c.ok('LSUB "" "*"')
        assert untagged == [b'* LSUB () "/" Work/Projects\r\n'], untagged
        untagged, _ = c.ok('LIST (SUBSCRIBED) "" "Work/*"')
        assert untagged == [b'* LIST (\\HasNoChildren \\Subscribed) "/" Work/Projects\r\n'], untagged

        c.ok("SELECT INBOX")
        _, t = c.ok("COPY 1:2 Work/Projects")
        assert re.search(rb"\[COPYUID \d+ 1:2 1:2\]", t), t
        _, t = c.cmd("COPY 1 Nowhere")
        assert b"NO [TRYCREATE]" in t
        untagged, t = c.ok("UID MOVE 2:3 Trash")
        assert re.match(rb"\* OK \[COPYUID \d+ 2:3 1:2\]", untagged[0]), untagged
        assert untagged[1:] == [b"* 2 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"], untagged
        untagged, _ = c.ok("STATUS Work/Projects (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED)")
        assert re.match(rb"\* STATUS Work/Projects \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+ "
                        rb"UNSEEN 2 SIZE \d+ DELETED 0\)", untagged[0]), untagged
        c.ok("RENAME Work/Projects Work/Done")
        untagged, _ = c.ok("STATUS Work/Done (MESSAGES)")
        assert untagged == [b"* STATUS Work/Done (MESSAGES 2)\r\n"]
        _, t = c.cmd("DELETE Work")
        assert b"NO [HASCHILDREN]" in t, t
        c.ok("DELETE Work/Done")
        _, t = c.cmd("STATUS Work/Done (MESSAGES)")
        assert b"NO [NONEXISTENT]" in t, t
    # The folder is a Maildir++ subfolder that other readers see.
    md = srv.maildir(user)
    assert (md / ".Trash" / "cur").is_dir() and (md / ".Archive2").is_dir()


def test_international_folder_names(srv):
    user = new_user(srv)
    with session(srv, user) as c:
        c.ok("CREATE &AMk-t&AOk-")  # "Été" in modified UTF-7
        untagged, _ = c.ok('LIST "" "&AMk-*"')
        assert untagged == [b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-\r\n'], untagged
        c.ok("ENABLE UTF8=ACCEPT")
        untagged, _ = c.ok('LIST "" "\xc3\x89*"'.encode("latin-1").decode("utf-8"))
        assert untagged == ['* LIST (\\HasNoChildren) "/" "Été"\r\n'.encode()], untagged


# ------------------------------------------------------------------ sessions

def test_two_sessions_see_each_others_changes(srv):
    user = new_user(srv)
    for _ in range(3):
        deliver(srv, user)
    with session(srv, user) as a, session(srv, user) as b:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        a.ok("STORE 2 +FLAGS (\\Flagged)")
        untagged, _ = b.ok("NOOP")
        assert untagged == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"], untagged
        a.ok("STORE 1 +FLAGS (\\Deleted)")
        a.ok("EXPUNGE")
        # RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH...
        untagged, _ = b.ok("FETCH 1:3 (FLAGS)")
        assert not any(b"EXPUNGE" in r for r in untagged), untagged
        assert len(fetch_map(untagged)) == 3
        untagged, _ = b.ok("SEARCH ALL")
        assert not any(b"EXPUNGE" in r for r in untagged), untagged
        # ...but at the next command that allows it.
        untagged, _ = b.ok("NOOP")
        assert b"* 1 EXPUNGE\r\n" in untagged, untagged
        deliver(srv, user)
        untagged, _ = b.ok("NOOP")
        assert b"* 3 EXISTS\r\n" in untagged, untagged


def test_idle_woken_by_delivery(srv):
    user = new_user(srv)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        c.send("I1 IDLE\r\n")
        assert c.read_response() == b"+ idling\r\n"
        data = build_message("idle-wake", ["wake up"], to=user)
        with srv.smtplib() as s:
            s.sendmail("sender@remote.test", [user], data)
            sent = time.monotonic()
        c.sock.settimeout(5)
        r = c.read_response()
        waited = time.monotonic() - sent
        assert r == b"* 1 EXISTS\r\n", r
        assert waited < 1.0, waited  # the promise: within a second
        c.send("DONE\r\n")
        _, t = c.collect("I1")
        assert t == b"I1 OK IDLE terminated\r\n", t
    with session(srv, user) as a, session(srv, user) as b:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        b.send("I1 IDLE\r\n")
        assert b.read_response() == b"+ idling\r\n"
        a.ok("STORE 1 +FLAGS (\\Deleted)")
        assert b.read_response() == b"* 1 FETCH (UID 1 FLAGS (\\Deleted))\r\n"
        a.ok("EXPUNGE")
        assert b.read_response() == b"* 1 EXPUNGE\r\n"  # allowed in IDLE
        b.send("DONE\r\n")
        b.collect("I1")


def test_pop3_deletion_shows_in_imap(srv):
    user = new_user(srv)
    deliver(srv, user)
    deliver(srv, user)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        # POP3's lock does not keep IMAP out, nor the reverse.
        p = poplib.POP3_SSL("127.0.0.1", srv.imap_ports["pop3s"], context=no_verify())
        p.user(user)
        p.pass_(PASSWORD)
        assert p.stat()[0] == 2
        c.ok("NOOP")
        p.dele(1)
        p.quit()
        untagged = wait_until(lambda: c.ok("NOOP")[0], timeout=6)
        assert untagged == [b"* 1 EXPUNGE\r\n"], untagged


def test_condstore_qresync(srv):
    user = new_user(srv)
    for _ in range(3):
        deliver(srv, user)
    with session(srv, user) as c:
        untagged, _ = c.ok("ENABLE QRESYNC")
        assert untagged == [b"* ENABLED QRESYNC\r\n"], untagged
        untagged, _ = c.ok("SELECT INBOX")
        hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(untagged)).group(1))
        uv = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(untagged)).group(1))
        untagged, _ = c.ok("STORE 2 +FLAGS (\\Seen)")
        m = re.match(rb"\* 2 FETCH \(FLAGS \(\\Seen\) UID 2 MODSEQ \((\d+)\)\)", untagged[0])
        assert m and int(m.group(1)) > hms, untagged
        untagged, _ = c.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
        assert list(fetch_map(untagged)) == [2], untagged
        _, t = c.cmd(f"STORE 1,2 (UNCHANGEDSINCE {hms}) +FLAGS (\\Flagged)")
        assert t.startswith(b"T") and b"OK [MODIFIED 2]" in t, t
        c.ok("STORE 3 +FLAGS (\\Deleted)")
        untagged, _ = c.ok("EXPUNGE")
        assert untagged == [b"* VANISHED 3\r\n"], untagged  # RFC 7162 3.2.10
        c.ok("UNSELECT")
        untagged, _ = c.ok(f"SELECT INBOX (QRESYNC ({uv} {hms}))")
        text = b"".join(untagged)
        assert b"* VANISHED (EARLIER) 3\r\n" in text, untagged
        assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\) MODSEQ", text), untagged
        assert re.search(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ", text), untagged


def test_search_and_esearch(srv):
    user = new_user(srv)
    for _ in range(4):
        deliver(srv, user)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 2,4 +FLAGS (\\Seen)")
        untagged, _ = c.ok("SEARCH UNSEEN")
        assert untagged == [b"* SEARCH 1 3\r\n"], untagged
        untagged, _ = c.ok("UID SEARCH OR SEEN UID 1 NOT SMALLER 1")
        assert untagged == [b"* SEARCH 1 2 4\r\n"], untagged
        untagged, t = c.ok("SEARCH RETURN (MIN MAX COUNT) ALL")
        tag = t.split()[0]
        assert untagged == [b'* ESEARCH (TAG "%s") MIN 1 MAX 4 COUNT 4\r\n' % tag], untagged
        untagged, _ = c.ok("SEARCH RETURN (SAVE) SEEN")
        assert untagged == []
        untagged, _ = c.ok("FETCH $ (UID)")
        assert list(fetch_map(untagged)) == [2, 4], untagged
        _, t = c.cmd("SEARCH CHARSET KOI8-R ALL")
        assert b"NO [BADCHARSET" in t, t
        untagged, _ = c.ok("ENABLE IMAP4rev2")
        untagged, t = c.ok("UID SEARCH SEEN")
        tag = t.split()[0]
        assert untagged == [b'* ESEARCH (TAG "%s") UID ALL 2,4\r\n' % tag], untagged


def test_sort_and_thread(srv):
    user = new_user(srv)
    u = unique("t")

    def message(subject, date, extra=""):
        head = (f"From: <sender@remote.test>\r\nTo: <{user}>\r\nSubject: {subject}\r\n"
                f"Date: {date}\r\n{extra}X-Marker: MARKER\r\n\r\nbody\r\n")
        return head.encode()

    # A first message to expunge, so that UIDs are not sequence numbers.
    deliver(srv, user, raw=message("gone", "Mon, 1 Jan 2024 08:00:00 +0000"))
    root, reply1, reply2 = (f"<{n}-{u}@client.test>" for n in ("root", "r1", "r2"))
    mails = [
        message("plan", "Mon, 1 Jan 2024 10:00:00 +0000", f"Message-ID: {root}\r\n"),
        message("Re: plan", "Mon, 1 Jan 2024 12:00:00 +0100",  # 11:00 UTC
                f"Message-ID: {reply1}\r\nIn-Reply-To: {root}\r\n"),
        message("Re: plan", "Mon, 1 Jan 2024 12:00:00 +0000",
                f"Message-ID: {reply2}\r\nReferences: {root}\r\n {reply1}\r\n"),
        message("apple", "Sun, 31 Dec 2023 08:00:00 +0000"),
        message("Re: apple", "Tue, 2 Jan 2024 08:00:00 +0000"),
    ]
    for m in mails:
        deliver(srv, user, raw=m)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS (\\Deleted)")
        c.ok("EXPUNGE")
        untagged, _ = c.ok("CAPABILITY")
        caps = untagged[0].split()
        for cap in (b"SORT", b"THREAD=REFERENCES", b"THREAD=ORDEREDSUBJECT", b"ESORT"):
            assert cap in caps, untagged
        untagged, _ = c.ok("SORT (REVERSE DATE) UTF-8 ALL")
        assert untagged == [b"* SORT 5 3 2 1 4\r\n"], untagged
        untagged, _ = c.ok("UID SORT (SUBJECT) UTF-8 ALL")
        assert untagged == [b"* SORT 5 6 2 3 4\r\n"], untagged
        untagged, _ = c.ok("UID SORT (SUBJECT REVERSE ARRIVAL) US-ASCII SUBJECT plan")
        assert untagged == [b"* SORT 4 3 2\r\n"], untagged
        # The reply chain is one thread; "Re: apple" has no references but
        # joins "apple" by its subject (RFC 5256 4 step 6).
        untagged, _ = c.ok("THREAD REFERENCES UTF-8 ALL")
        assert untagged == [b"* THREAD (4 5)(1 2 3)\r\n"], untagged
        untagged, _ = c.ok("UID THREAD REFERENCES UTF-8 ALL")
        assert untagged == [b"* THREAD (5 6)(2 3 4)\r\n"], untagged
        untagged, _ = c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")
        assert untagged == [b"* THREAD (4 5)(1 (2)(3))\r\n"], untagged
        untagged, t = c.ok("SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL")
        tag = t.split()[0]
        assert untagged == [b'* ESEARCH (TAG "%s") MIN 4 MAX 5 COUNT 5\r\n' % tag], untagged
        _, t = c.cmd("SORT (DATE) KOI8-R ALL")
        assert b"NO [BADCHARSET" in t, t
        _, t = c.cmd("THREAD NOSUCH UTF-8 ALL")
        assert re.match(rb"T\d+ BAD", t), t


def test_bad_commands(srv):
    user = new_user(srv)
    with session(srv, user) as c:
        _, t = c.cmd("FROBNICATE")
        assert re.match(rb"T\d+ BAD", t), t
        _, t = c.cmd("FETCH 1 FLAGS")
        assert re.match(rb"T\d+ BAD", t), t  # nothing selected
        c.send("* NOOP\r\n")
        r = c.read_response()
        assert r.startswith(b"* BAD"), r
        c.ok("NOOP")
        untagged, t = c.cmd("LOGOUT")
        assert untagged == [b"* BYE Logging out\r\n"]
        assert t.endswith(b" OK LOGOUT completed\r\n"), t


def test_curl_reads_over_imaps(srv):
    user = new_user(srv)
    marker, sent = deliver(srv, user)
    url = f"imaps://127.0.0.1:{srv.imap_ports['imaps']}/INBOX;UID=1"
    p = run_tool(["curl", "-sSk", "--max-time", "20", "-u", f"{user}:{PASSWORD}", url],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(sent), p.stdout[-200:]


MULTIPART = (
    b"From: =?UTF-8?Q?J=C3=BCrgen?= <jurgen@remote.test>\r\n"
    b"To: Team: a@example.test, \"B, Jr\" <b@example.test>;\r\n"
    b"Subject: MARKER report\r\n"
    b"Date: Tue, 03 Dec 2024 10:00:00 +0100\r\n"
    b"Message-ID: <mp-1@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=FC=DFe aus K=F6ln, quarterly figures attached\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
    b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgcICQ==\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@remote.test\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1--\r\n")


def test_mime_fetch_and_text_search(srv):
    user = new_user(srv)
    marker, sent = deliver(srv, user, raw=MULTIPART)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        untagged, _ = c.ok("FETCH 1 (ENVELOPE BODYSTRUCTURE)")
        r = untagged[0]
        assert (b'"Tue, 03 Dec 2024 10:00:00 +0100" "' + marker.encode() + b' report" '
                b'(("=?UTF-8?Q?J=C3=BCrgen?=" NIL "jurgen" "remote.test")) ') in r, r
        # A group in To (RFC 9051 7.5.2 address structure).
        assert (b'((NIL NIL "Team" NIL)(NIL NIL "a" "example.test")'
                b'("B, Jr" NIL "b" "example.test")(NIL NIL NIL NIL))') in r, r
        assert b'"<mp-1@remote.test>"' in r
        assert b'("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" ' in r, r
        assert b'("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 16 NIL ' \
               b'("attachment" ("filename" "data.bin"))' in r, r
        assert b'"mixed" ("boundary" "b1")' in r
        untagged, _ = c.ok("FETCH 1 (BODY.PEEK[1] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] "
                           "BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2] "
                           "BODY.PEEK[HEADER.FIELDS (Subject Message-ID)])")
        r = untagged[0]
        assert literal_of(r, b"BODY[1]") == b"Gr=FC=DFe aus K=F6ln, quarterly figures attached"
        assert literal_of(r, b"BODY[3.HEADER]") == b"From: inner@remote.test\r\nSubject: inner\r\n\r\n"
        assert literal_of(r, b"BODY[3.TEXT]") == b"inner body"
        assert literal_of(r, b"BODY[2.MIME]").startswith(b"Content-Type: application/octet-stream")
        assert literal_of(r, b"BINARY[2]") == bytes(range(10))
        assert b"BINARY.SIZE[2] 10" in r
        assert literal_of(r, b"BODY[HEADER.FIELDS (Subject Message-ID)]") == (
            b"Subject: " + marker.encode() + b" report\r\nMessage-ID: <mp-1@remote.test>\r\n\r\n")
        # SEARCH decodes headers and bodies (RFC 2047, quoted-printable,
        # ISO-8859-1 to UTF-8) and folds case.
        untagged, _ = c.cmd(b"SEARCH CHARSET UTF-8 FROM {7+}\r\nJ\xc3\xbcrgen")
        assert untagged == [b"* SEARCH 1\r\n"], untagged
        untagged, _ = c.cmd(b"SEARCH CHARSET UTF-8 BODY {5+}\r\nk\xc3\xb6ln")
        assert untagged == [b"* SEARCH 1\r\n"], untagged
        untagged, _ = c.ok("SEARCH TEXT QUARTERLY SUBJECT report")
        assert untagged == [b"* SEARCH 1\r\n"], untagged
        untagged, _ = c.ok("SEARCH OR BODY nowhere-to-be-found HEADER Message-ID mp-2")
        assert untagged == [b"* SEARCH\r\n"], untagged
        untagged, _ = c.ok("SEARCH SENTON 3-Dec-2024 HEADER X-Missing \"\"")
        assert untagged == [b"* SEARCH\r\n"], untagged
        untagged, _ = c.ok("SEARCH SENTON 3-Dec-2024")
        assert untagged == [b"* SEARCH 1\r\n"], untagged


def test_detail_delivers_into_an_existing_folder(srv):
    user = new_user(srv)
    local, domain = user.split("@")
    with session(srv, user) as c:
        c.ok("CREATE Lists")
        c.ok("SELECT Lists")
        c.send("I1 IDLE\r\n")
        assert c.read_response() == b"+ idling\r\n"
        marker, _ = deliver_to(srv, f"{local}+Lists@{domain}", user, folder=".Lists")
        c.sock.settimeout(5)
        assert c.read_response() == b"* 1 EXISTS\r\n"
        c.send("DONE\r\n")
        c.collect("I1")
        untagged, _ = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject)]")
        assert marker.encode() in untagged[0]
    # No such folder: the INBOX, as before.
    marker, _ = deliver_to(srv, f"{local}+nothere@{domain}", user)
    assert srv.messages(user, marker)


def deliver_to(srv, rcpt, user, folder=None):
    marker = unique("msg")
    data = build_message(marker, ["hello"], to=rcpt)
    with srv.smtplib() as s:
        assert s.sendmail("sender@remote.test", [rcpt], data) == {}
    md = srv.maildir(user) / folder if folder else srv.maildir(user)
    found = wait_until(lambda: [p for sub in ("new", "cur") if (md / sub).is_dir()
                                for p in (md / sub).iterdir()
                                if marker.encode() in p.read_bytes()])
    assert found, f"{marker} not delivered into {md}"
    return marker, data


def test_envelope_and_bodystructure_are_cached(srv):
    user = new_user(srv)
    deliver(srv, user, raw=MULTIPART)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        first, _ = c.ok("FETCH 1 (ENVELOPE BODYSTRUCTURE BODY)")
    # Messages never change, so the renderings come from the index's cache
    # next time: a file rewritten behind our back (which no Maildir reader
    # may do) shows it, as its text is new but its ENVELOPE is not.
    for p in srv.message_files(user):
        p.write_bytes(b"Subject: rewritten\n\nx\n")
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        again, _ = c.ok("FETCH 1 (ENVELOPE BODYSTRUCTURE BODY)")
        assert again == first, (again, first)
        untagged, _ = c.ok("FETCH 1 BODY.PEEK[HEADER]")
        assert b"Subject: rewritten" in untagged[0], untagged


FTS_MESSAGE = (b"From: <a@remote.test>\r\nTo: <u@example.test>\r\nSubject: MARKER %s\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: quoted-printable\r\n\r\n%s\r\n")


def search_uids(c, criteria):
    """UID SEARCH; criteria as bytes (literals allowed)."""
    untagged, tagged = c.cmd(b"UID SEARCH CHARSET UTF-8 " + criteria)
    assert tagged.split()[1] == b"OK", (criteria, tagged)
    line = [u for u in untagged if u.startswith(b"* SEARCH")]
    assert len(line) == 1, untagged
    return [int(n) for n in line[0].split()[2:]]


def test_search_text_with_the_full_text_index(srv):
    """SEARCH TEXT and BODY through the store's trigram index answer as the
    scan does (RFC 9051 6.4.4): `NOT NOT key` is never narrowed by the index,
    so it is the reference."""
    user = new_user(srv)
    bodies = [(b"alpha", b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, quarterly figures"),
              (b"beta zebra", b"=C3=84RGER mit der Zebra-Herde"),
              (b"gamma", b"plain ascii zebra ab \"quoted\""),
              (b"delta zebra", b"nothing here")]
    for subject, body in bodies:
        deliver(srv, user, raw=FTS_MESSAGE % (subject, body))

    def lit(text):
        data = text.encode()
        return b"{%d+}\r\n" % len(data) + data

    with session(srv, user) as c:
        c.ok("SELECT INBOX")

        def check(key, needle, expected=None):
            got = search_uids(c, key + b" " + lit(needle))
            reference = search_uids(c, b"NOT NOT " + key + b" " + lit(needle))
            assert got == reference, (key, needle, got, reference)
            if expected is not None:
                assert got == expected, (key, needle, got)
            return got

        check(b"TEXT", "zebra", [2, 3, 4])
        check(b"BODY", "zebra", [2, 3])
        check(b"BODY", "ZEBRA-h", [2])
        check(b"BODY", "ärger", [2])
        check(b"TEXT", "KÖLN", [1])
        check(b"BODY", "grüße aus", [1])
        check(b"BODY", "\"quoted\"", [3])
        check(b"TEXT", "no such text anywhere", [])
        check(b"BODY", "ab", [3])   # too short for trigrams: scanned
        check(b"BODY", "z", [2, 3])
        check(b"TEXT", "ö", [1])
        check(b"TEXT", "Subject", [1, 2, 3, 4])
        # False candidates of the index, dropped by the check: a BODY needle
        # in the header only, and every trigram of the needle but not the
        # needle ("zebra ab" and "ascii" in 3).
        check(b"BODY", "Subject", [])
        check(b"BODY", "beta zebra", [])
        check(b"TEXT", "zebra ascii", [])
        check(b"TEXT", "beta zebra", [2])
        # Inside AND and OR, and with other keys.
        assert search_uids(c, b"OR BODY zebra BODY quarterly") == [1, 2, 3]
        assert search_uids(c, b"NOT BODY zebra") == [1, 4]
        assert search_uids(c, b"BODY zebra SUBJECT gamma") == [3]
        assert search_uids(c, b"(BODY zebra TEXT beta)") == [2]
        # The index was built by the first SEARCH.
        import sqlite3
        db = sqlite3.connect(srv.maildir(user) / "tern-imap.sqlite")
        try:
            assert db.execute("SELECT count(*) FROM textindex").fetchone()[0] == 4
        finally:
            db.close()
        # Expunged messages leave the index; new mail is indexed at the
        # next SEARCH.
        c.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        check(b"BODY", "zebra", [2])
        deliver(srv, user, raw=FTS_MESSAGE % (b"epsilon", b"another zebra"))
        c.ok("NOOP")
        check(b"BODY", "zebra", [2, 5])
        check(b"TEXT", "epsilon", [5])
        untagged, _ = c.ok("SEARCH BODY zebra")
        assert untagged == [b"* SEARCH 2 4\r\n"], untagged


# ------------------------------------------------------------------ COMPRESS

class Deflated:
    """The client half of COMPRESS=DEFLATE (RFC 4978) on a Raw connection:
    raw DEFLATE (no zlib header: wbits -15) both ways, each send ending in
    a sync flush, responses inflated as they come."""

    def __init__(self, sock):
        self.sock = sock
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buf = b""

    def encode(self, data):
        if isinstance(data, str):
            data = data.encode()
        return self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data):
        self.sock.sendall(self.encode(data))

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unread {self.buf!r}")
        self.buf += self.inflate.decompress(chunk)

    def readline(self):
        while b"\n" not in self.buf:
            self._more()
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read(self, n):
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def plain_line(sock):
    """One CRLF line read octet by octet: nothing after it is taken."""
    line = b""
    while not line.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            raise EOFError(f"connection closed after {line!r}")
        line += b
    return line


def start_compress(c, before=b"", after=b""):
    """COMPRESS DEFLATE on `c`, whose reader holds nothing (every earlier
    command was answered). `before`: plain commands pipelined ahead of it;
    `after`: commands sent deflated in the same write, right behind it.
    Returns the plain lines up to the tagged OK."""
    tag = c.tag()
    d = Deflated(c.sock)
    c.sock.sendall(before + f"{tag} COMPRESS DEFLATE\r\n".encode() +
                   (d.encode(after) if after else b""))
    lines = []
    while True:
        line = plain_line(c.sock)
        lines.append(line)
        if line.startswith(tag.encode() + b" "):
            break
    # RFC 4978 3: everything after this CRLF is compressed, both ways.
    assert line == f"{tag} OK DEFLATE active\r\n".encode(), lines
    c.f = d
    c.send = d.send
    return lines


def session_log(srv, user):
    lines = [l for l in srv.log_text().splitlines()
             if "imap session " in l and f"user={user} " in l]
    return lines[-1] if lines else None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("port", ["plain", "imaps"])
def test_compress_deflate(srv, port):
    user = new_user(srv)
    marker, sent = deliver(srv, user)
    # RFC 4978 5: command-auth, so not before login.
    with Raw(srv.imap_ports[port], tls=(port == "imaps")) as c:
        assert b"COMPRESS" not in c.greeting
        _, t = c.cmd("COMPRESS DEFLATE")
        assert t == b"T1 BAD Log in first\r\n", t
    with Raw(srv.imap_ports[port], tls=(port == "imaps")) as c:
        _, t = c.login(user, PASSWORD)
        assert b" COMPRESS=DEFLATE " in t, t  # in the post-login CAPABILITY
        _, t = c.cmd("COMPRESS LZW")
        assert t == b"T2 BAD Unknown compression algorithm\r\n", t
        # A plain command pipelined ahead of COMPRESS is answered plain;
        # commands in the same packet right behind it are compressed and
        # must be inflated, not taken as they are (RFC 4978 3).
        lines = start_compress(
            c, before=b"P0 NOOP\r\n",
            after=b"P1 SELECT INBOX\r\nP2 FETCH 1 (FLAGS BODY.PEEK[])\r\nP3 NOOP\r\n")
        assert lines[0] == b"P0 OK NOOP completed\r\n", lines
        untagged, t = c.collect("P1")
        assert t.startswith(b"P1 OK [READ-WRITE]"), t
        assert b"* 1 EXISTS\r\n" in untagged
        untagged, t = c.collect("P2")
        assert t == b"P2 OK FETCH completed\r\n", t
        assert literal_of(untagged[0], b"BODY[]").endswith(sent)
        _, t = c.collect("P3")
        assert t == b"P3 OK NOOP completed\r\n", t

        # APPEND with a synchronizing literal ("+" comes back compressed),
        # then a large one with LITERAL+ that the server streams to disk
        # in pieces while it is still inflating the rest.
        msg = b"From: a@example.org\r\nSubject: squeezed\r\n\r\nsmall body\r\n"
        c.send(f"A1 APPEND INBOX {{{len(msg)}}}\r\n")
        assert c.read_response().startswith(b"+ ")
        c.send(msg + b"\r\n")
        _, t = c.collect("A1")
        assert re.match(rb"A1 OK \[APPENDUID \d+ 2\]", t), t
        big = b"Subject: big\r\n\r\n" + b"".join(
            b"line %07d of a large message, padded to look like text\r\n" % i
            for i in range(50000))
        assert len(big) > 2 * 1024 * 1024
        c.send(f"A2 APPEND INBOX {{{len(big)}+}}\r\n".encode() + big + b"\r\nA3 NOOP\r\n")
        untagged, t = c.collect("A2")
        assert re.match(rb"A2 OK \[APPENDUID \d+ 3\]", t), t
        _, t = c.collect("A3")
        assert t == b"A3 OK NOOP completed\r\n", t
        untagged, _ = c.ok("NOOP")
        untagged, _ = c.ok("FETCH 2:3 (RFC822.SIZE BODY.PEEK[])")
        f = fetch_map(untagged)
        assert literal_of(f[2], b"BODY[]") == msg
        assert literal_of(f[3], b"BODY[]") == big  # several output pieces

        # Once on, it stays on (RFC 5530 3 COMPRESSIONACTIVE).
        _, t = c.cmd("COMPRESS DEFLATE")
        assert re.match(rb"T\d+ NO \[COMPRESSIONACTIVE\]", t), t
        untagged, _ = c.ok("CAPABILITY")
        assert b"COMPRESS=DEFLATE" in untagged[0]
        untagged, t = c.cmd("LOGOUT")
        assert untagged == [b"* BYE Logging out\r\n"], untagged
        assert t.endswith(b" OK LOGOUT completed\r\n"), t
    # The session line tells how much deflate saved, each way.
    line = wait_until(lambda: session_log(srv, user))
    m = re.search(r" deflate_out=(\d+)/(\d+) deflate_in=(\d+)/(\d+) end=closed ", line)
    assert m, line
    out_plain, out_wire, in_plain, in_wire = map(int, m.groups())
    assert out_plain > len(big) and out_wire < out_plain / 5, line
    assert in_plain > len(big) and in_wire < in_plain / 5, line


def test_compress_garbage_and_bomb(srv):
    user = new_user(srv)
    # A stream that is not DEFLATE (reserved block type 11) ends the
    # connection, with a log line; the server goes on.
    with session(srv, user) as c:
        start_compress(c)
        c.sock.sendall(b"\x07" + os.urandom(200))
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
    line = wait_until(lambda: session_log(srv, user))
    assert " end=bad-compression " in line, line
    assert re.search(rf"imap compression error client=127\.0\.0\.1 listener=imap "
                     r"error=", srv.log_text())
    # zlib framing (78 9c) is not what RFC 4978 asks for: refused too.
    with session(srv, user) as c:
        start_compress(c)
        c.sock.sendall(zlib.compress(b"Z1 NOOP\r\n"))
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()

    # A bomb: 64 MiB of one octet in a line, about 64 KiB on the wire. It is
    # inflated a piece at a time and the reader drops the over-long line,
    # so the server neither buffers it nor stops answering.
    with session(srv, user) as c:
        start_compress(c)
        before = rss_kib(srv.proc.pid)
        z = c.f.deflate
        wire = (z.compress(b"B0 NOOP ") + z.compress(b"A" * (64 << 20)) +
                z.compress(b"\r\nB1 NOOP\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
        assert len(wire) < 256 * 1024
        c.sock.sendall(wire)
        r = c.read_response()
        assert r.startswith(b"B0 BAD [LIMIT] Command line too long"), r
        _, t = c.collect("B1")
        assert t == b"B1 OK NOOP completed\r\n", t
        grown = rss_kib(srv.proc.pid) - before
        assert grown < 32 * 1024, f"server grew by {grown} KiB"
        c.ok("NOOP")
    assert srv.running()
    with session(srv, user) as c:
        c.ok("NOOP")
