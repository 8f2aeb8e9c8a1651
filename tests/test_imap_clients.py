# Real IMAP clients against Tern's IMAP server over imaps on loopback:
# mbsync (isync), mutt, offlineimap3, imapfilter and curl. Each client's
# configuration lives in the test's tmp dir (HOME points there), the
# server's self-signed certificate is given to the client as the one to
# trust (or, where the client can only pin, by its fingerprint), and every
# test checks the effect on both sides: the client's local copy and what
# Tern reports over IMAP (tests/imap_client.py) afterwards.
import fcntl
import hashlib
import os
import pathlib
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

import conftest
from conftest import PASSWORD, build_message, free_port, run_tool, to_lf, unique
from imap_client import Raw, fetch_map, literal_of, wait_until

CLIENT_TIMEOUT = 30


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    ports = {"imaps": free_port(), "plain": free_port()}
    s = conftest.TernServer(
        tmp_path_factory.mktemp("imapc"),
        extra_listen=[
            (f"127.0.0.1:{ports['imaps']}", "imaps"),
            # For the checks on the server side only (tests/imap_client.py).
            (f"127.0.0.1:{ports['plain']}", "imap", {"allow_plaintext_auth": True}),
        ],
        sections={"tls": {"self_signed": True}})
    s.imap_ports = ports
    conftest._LIVE.append(s)
    try:
        s.start()
    except BaseException:
        conftest.shutdown(s)
        raise
    s.cert = s.data_dir / "tls" / "cert.pem"
    assert s.cert.is_file(), s.cert
    yield s
    conftest.shutdown(s)


def new_user(srv):
    address = f"{unique('c')}@example.test"
    srv.add_user(address)
    return address


def deliver(srv, user, subject=None, body=None):
    """Sends one message through Tern's SMTP; returns (subject, stored LF bytes)."""
    marker = subject or unique("msg")
    data = build_message(marker, body or ["hello " + marker, "second line"], to=user)
    with srv.smtplib() as s:
        assert s.sendmail("sender@remote.test", [user], data) == {}
    return marker, srv.wait_message(user, marker).raw


def session(srv, user):
    c = Raw(srv.imap_ports["plain"])
    c.login(user, PASSWORD)
    return c


def append(srv, user, folder, subject, flags=""):
    """APPENDs a message on the server side; returns its CRLF bytes."""
    msg = build_message(subject, ["appended " + subject], to=user)
    with session(srv, user) as c:
        c.send(f"A1 APPEND {folder} ({flags}) {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        _, t = c.collect("A1")
        assert t.startswith(b"A1 OK"), t
    return msg


def server_view(srv, user, folder):
    """{uid: (flags set, CRLF bytes)} of `folder`, as Tern reports it."""
    with session(srv, user) as c:
        c.ok(f"EXAMINE {folder}")
        untagged, _ = c.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
    out = {}
    for r in fetch_map(untagged).values():
        uid = int(re.search(rb"UID (\d+)", r).group(1))
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", r).group(1).decode().split())
        out[uid] = (flags, literal_of(r, b"BODY[]"))
    return out


def by_subject(view, subject):
    got = [(uid, flags, body) for uid, (flags, body) in view.items()
           if f"Subject: {subject}\r\n".encode() in body]
    assert len(got) == 1, f"{len(got)} messages with subject {subject} in {sorted(view)}"
    return got[0]


def client(argv, home, what, timeout=CLIENT_TIMEOUT, **kwargs):
    """Runs an IMAP client with HOME=home; fails with its output."""
    env = dict(os.environ, HOME=str(home), LC_ALL="C.UTF-8")
    env.pop("MAIL", None)
    try:
        p = run_tool(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        pytest.fail(f"{what} did not finish within {timeout}s; its output:\n{out[-6000:]}")
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, f"{what} exited {p.returncode}:\n{out[-6000:]}"
    return out


def maildir_files(d):
    d = pathlib.Path(d)
    return sorted(p for sub in ("new", "cur") if (d / sub).is_dir()
                  for p in (d / sub).iterdir() if p.is_file())


def maildir_flags(p):
    return p.name.split(":2,", 1)[1] if ":2," in p.name else ""


def set_maildir_flags(p, flags):
    """Renames a Maildir file into cur/ with `flags` (as a reader would)."""
    base = p.name.split(":2,", 1)[0]
    q = p.parent.parent / "cur" / f"{base}:2,{''.join(sorted(flags))}"
    p.rename(q)
    return q


def local_message(d, subject):
    got = [p for p in maildir_files(d) if f"\nSubject: {subject}\n".encode() in p.read_bytes()]
    assert len(got) == 1, f"{len(got)} local copies of {subject} in {d}: {maildir_files(d)}"
    return got[0]


def without_header(raw, name):
    """`raw` without the header field `name` (clients add their own ids)."""
    head, sep, body = raw.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not ln.lower().startswith(name.lower() + b":")]
    return b"\n".join(lines) + sep + body


# ------------------------------------------------------------------ mbsync

def test_mbsync_both_ways(srv, tmp_path):
    user = new_user(srv)
    s1, stored1 = deliver(srv, user)
    s2, stored2 = deliver(srv, user)
    with session(srv, user) as c:
        c.ok("CREATE Work")
    s3 = unique("work")
    append(srv, user, "Work", s3, flags="\\Seen")
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        "IMAPAccount tern\n"
        "Host 127.0.0.1\n"
        f"Port {srv.imap_ports['imaps']}\n"
        f"User {user}\n"
        f'Pass "{PASSWORD}"\n'
        "SSLType IMAPS\n"
        # The self-signed certificate, trusted as it is (no CA, no host name).
        f"CertificateFile {srv.cert}\n"
        "\n"
        "IMAPStore remote\n"
        "Account tern\n"
        "\n"
        "MaildirStore local\n"
        f"Path {local}/\n"
        f"Inbox {local}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel tern\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns INBOX Work\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n"
        "Sync All\n")
    mbsync = ["mbsync", "-V", "-c", str(rc), "tern"]
    client(mbsync, tmp_path, "mbsync (first sync)")

    # Far to near: the messages, byte for byte (mbsync adds its X-TUID).
    inbox = maildir_files(local / "INBOX")
    assert len(inbox) == 2, inbox
    m1, m2 = local_message(local / "INBOX", s1), local_message(local / "INBOX", s2)
    assert without_header(m1.read_bytes(), b"X-TUID") == stored1
    assert without_header(m2.read_bytes(), b"X-TUID") == stored2
    w = local_message(local / "Work", s3)
    assert "S" in maildir_flags(w), w.name  # \Seen came along
    assert b"appended " + s3.encode() in w.read_bytes()

    # Near to far: a flag, a deletion and a new message.
    set_maildir_flags(m1, set(maildir_flags(m1)) | {"F"})
    set_maildir_flags(m2, set(maildir_flags(m2)) | {"T"})
    s4 = unique("local")
    new = build_message(s4, ["written locally " + s4], to=user)
    (local / "Work" / "new" / f"{int(time.time())}.{unique('n')}.client").write_bytes(to_lf(new))
    client(mbsync, tmp_path, "mbsync (second sync)")

    view = server_view(srv, user, "INBOX")
    assert len(view) == 1, f"INBOX on the server after the sync: {sorted(view)}"
    _, flags, body = by_subject(view, s1)
    assert "\\Flagged" in flags, flags
    assert to_lf(body) == stored1
    work = server_view(srv, user, "Work")
    assert len(work) == 2, sorted(work)
    _, _, body = by_subject(work, s4)
    assert without_header(to_lf(body), b"X-TUID") == to_lf(new)
    # And the deletion reached the Maildir on the server too.
    assert len(srv.messages(user, s2)) == 0
    assert len(maildir_files(local / "INBOX")) == 1


# ------------------------------------------------------------------ mutt

def muttrc(srv, user, home, extra=""):
    rc = home / "muttrc"
    rc.write_text(
        f'set imap_user="{user}"\n'
        f'set imap_pass="{PASSWORD}"\n'
        # GnuTLS mutt: a certificate in certificate_file is trusted as it
        # is; the host name (127.0.0.1) is not in it.
        f'set certificate_file="{srv.cert}"\n'
        "set ssl_verify_host=no\n"
        f'set folder="imaps://127.0.0.1:{srv.imap_ports["imaps"]}/"\n'
        'set spoolfile="+INBOX"\n'
        'set header_cache=""\n'
        'set message_cachedir=""\n'
        "set imap_check_subscribed=no\n"
        "set timeout=5 imap_keepalive=30\n" + extra)
    return rc


def deflated_sessions(srv, user):
    """The session log lines of `user` that ran under COMPRESS=DEFLATE."""
    return [ln for ln in srv.log_text().splitlines()
            if "imap session " in ln and f"user={user} " in ln and " deflate_out=" in ln]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_mutt_batch_send_saves_to_sent(srv, tmp_path, deflate):
    # Batch mode (stdin not a terminal): mutt "sends" through a sendmail
    # stand-in and APPENDs its copy to the IMAP Sent folder ($record).
    # With $imap_deflate mutt asks for COMPRESS=DEFLATE (RFC 4978).
    user = new_user(srv)
    sent = tmp_path / "sent.eml"
    sm = tmp_path / "sendmail.sh"
    sm.write_text(f"#!/bin/sh\ncat > {sent}\n")
    sm.chmod(0o755)
    rc = muttrc(srv, user, tmp_path,
                'set record="+Sent" copy=yes\n'
                f'set from="{user}" sendmail="{sm}"\n' +
                ("set imap_deflate=yes\n" if deflate else ""))
    subject = unique("mutt-sent")
    argv = ["mutt", "-n", "-F", str(rc), "-d", "2", "-s", subject, "rcpt@remote.test"]
    env = dict(os.environ, HOME=str(tmp_path), LC_ALL="C.UTF-8")
    p = run_tool(argv, input=f"body of {subject}\n".encode(), env=env,
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=CLIENT_TIMEOUT)
    out = p.stdout.decode("utf-8", "replace") + mutt_trace(tmp_path)
    assert p.returncode == 0, out
    assert sent.is_file(), out
    view = server_view(srv, user, "Sent")
    assert len(view) == 1, (sorted(view), out)
    _, flags, body = by_subject(view, subject)
    assert "\\Seen" in flags, flags
    # The copy is the message mutt handed to sendmail. mutt writes the Date:
    # header afresh for each copy, so it may differ by a second (seen in CI).
    def undated(b):
        return re.sub(rb"(?m)^Date: [^\n]*\n", b"", b)
    assert undated(to_lf(body)) == undated(sent.read_bytes()), out
    assert to_lf(body).startswith(b"Date: "), out
    if deflate:
        assert wait_until(lambda: deflated_sessions(srv, user)), out


def mutt_trace(home):
    """The IMAP lines of mutt's debug log (-d 2 writes ~/.muttdebug0)."""
    log = home / ".muttdebug0"
    if not log.is_file():
        return "\n(no .muttdebug0)"
    lines = [ln for ln in log.read_text("utf-8", "replace").splitlines()
             if re.search(r"\] \d+[<>] ", ln) or "msg_fetch" in ln or "error" in ln.lower()]
    return "\nmutt's IMAP trace (.muttdebug0):\n" + "\n".join(ln[:300] for ln in lines[-80:])


def run_in_pty(argv, env, timeout, give_up_keys=b"q"):
    """Runs an interactive program on a pseudo-terminal; returns (exit
    code or None, what it drew). After `timeout` it is sent `give_up_keys`,
    then killed."""
    conftest.need_tool(argv[0])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    os.close(slave)
    out = b""
    gave_up = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the program closed the terminal
                    chunk = b""
                out += chunk
                if chunk:
                    continue
            if p.poll() is not None:
                break
            if time.monotonic() > deadline:
                if gave_up:
                    p.kill()
                    p.wait()
                    break
                gave_up = True
                os.write(master, give_up_keys)
                deadline = time.monotonic() + 3
    finally:
        os.close(master)
    screen = re.sub(r"\x1b[\[()][0-9;?]*[A-Za-z=>]?|\x1b[=>]|[\x0e\x0f\x07]", " ",
                    out.decode("utf-8", "replace"))
    return (None if gave_up else p.returncode), screen


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_mutt_reads_saves_and_flags(srv, tmp_path, deflate):
    # mutt on a terminal, driven by `push`: open message 1 (\Seen), save it
    # to =Archive (created on the fly) which marks it deleted, flag
    # message 2, sync (expunge) and quit; also under COMPRESS=DEFLATE.
    user = new_user(srv)
    s1, stored1 = deliver(srv, user)
    s2, stored2 = deliver(srv, user)
    rc = muttrc(srv, user, tmp_path,
                "set sort=mailbox-order confirmcreate=no confirmappend=no delete=yes\n"
                "set quit=yes move=no mark_old=no wait_key=no pager_stop=yes\n"
                "set index_format='%4C %Z %-20.20L %s'\n" +
                ("set imap_deflate=yes\n" if deflate else ""))
    env = dict(os.environ, HOME=str(tmp_path), TERM="vt100", LC_ALL="C.UTF-8")
    keys = ("<display-message><exit><save-message>=Archive<enter>"
            "<next-undeleted><flag-message><sync-mailbox><quit>")
    code, screen = run_in_pty(["mutt", "-n", "-F", str(rc), "-d", "2", "-e", f'push "{keys}"'],
                              env, timeout=30)
    trace = mutt_trace(tmp_path)
    why = f"\nmutt's screen (tail):\n{screen[-2500:]}" + trace
    if "[Msgs:0]" in screen and re.search(r"BODY\[HEADER\.FIELDS \([^)]*\)\] \{0\}", trace):
        pytest.fail("mutt lists no messages in INBOX (2 there): Tern answered its "
                    "BODY.PEEK[HEADER.FIELDS (...)] with an empty literal {0}, and mutt "
                    "drops a message whose header fetch is empty (msg_fetch_header: "
                    "ignoring fetch response with no body)" + why, pytrace=False)
    assert code == 0, f"mutt did not finish its keys (exit {code}){why}"
    # What mutt showed at the end: message 2's subject in the index (the
    # pager's screen is never drawn, the keys are all queued).
    assert s2 in screen, f"mutt's index does not show {s2}{why}"
    archive = server_view(srv, user, "Archive")
    assert len(archive) == 1, f"Archive: {sorted(archive)}{why}"
    _, flags, body = by_subject(archive, s1)
    assert to_lf(body) == stored1
    assert "\\Seen" in flags, flags
    inbox = server_view(srv, user, "INBOX")
    assert len(inbox) == 1, f"INBOX still has {sorted(inbox)}{why}"
    _, flags, body = by_subject(inbox, s2)
    assert to_lf(body) == stored2
    assert flags == {"\\Flagged"}, flags
    if deflate:
        assert wait_until(lambda: deflated_sessions(srv, user)), why


# ------------------------------------------------------------------ offlineimap

def cert_sha256(srv):
    import ssl
    der = ssl.PEM_cert_to_DER_cert(srv.cert.read_text())
    return hashlib.sha256(der).hexdigest()


def test_offlineimap_sync_and_flags(srv, tmp_path):
    user = new_user(srv)
    s1, stored1 = deliver(srv, user)
    s2, stored2 = deliver(srv, user)
    local = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        "[general]\n"
        "accounts = tern\n"
        f"metadata = {tmp_path / 'offlineimap-meta'}\n"
        "\n"
        "[Account tern]\n"
        "localrepository = local\n"
        "remoterepository = remote\n"
        "\n"
        "[Repository local]\n"
        "type = Maildir\n"
        f"localfolders = {local}\n"
        "\n"
        "[Repository remote]\n"
        "type = IMAP\n"
        "remotehost = 127.0.0.1\n"
        f"remoteport = {srv.imap_ports['imaps']}\n"
        "ssl = yes\n"
        # offlineimap checks the host name against the certificate (which
        # names mx.example.test); pinning the certificate is its way out.
        f"cert_fingerprint = {cert_sha256(srv)}\n"
        f"remoteuser = {user}\n"
        f"remotepass = {PASSWORD}\n"
        "folderfilter = lambda folder: folder == 'INBOX'\n"
        "maxconnections = 1\n"
        "holdconnectionopen = no\n")
    oimap = ["offlineimap", "-c", str(rc), "-o", "-u", "basic"]
    out = client(oimap, tmp_path, "offlineimap (first sync)")
    m1 = local_message(local / "INBOX", s1)
    m2 = local_message(local / "INBOX", s2)
    assert len(maildir_files(local / "INBOX")) == 2, out
    # offlineimap stores the message as fetched (it adds no header of its
    # own when the server has UIDPLUS), with LF line ends.
    assert without_header(m1.read_bytes(), b"X-OfflineIMAP") == stored1, out
    assert without_header(m2.read_bytes(), b"X-OfflineIMAP") == stored2, out
    assert maildir_flags(m1) == "" and maildir_flags(m2) == ""

    # Local: flag and read message 1. Server: read message 2.
    set_maildir_flags(m1, {"F", "S"})
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 2 +FLAGS (\\Seen)")
    out = client(oimap, tmp_path, "offlineimap (second sync)")
    view = server_view(srv, user, "INBOX")
    assert by_subject(view, s1)[1] == {"\\Flagged", "\\Seen"}, (view, out)
    assert by_subject(view, s2)[1] == {"\\Seen"}, out
    assert maildir_flags(local_message(local / "INBOX", s2)) == "S", out
    assert maildir_flags(local_message(local / "INBOX", s1)) == "FS", out


# ------------------------------------------------------------------ imapfilter

def imapfilter(srv, user, home, lua):
    # imapfilter trusts the certificates a user accepted before, kept in
    # ~/.imapfilter/certificates: the self-signed one is put there. It
    # names mx.example.test, not 127.0.0.1, hence hostnames = false.
    store = home / ".imapfilter"
    store.mkdir(exist_ok=True)
    (store / "certificates").write_bytes(srv.cert.read_bytes())
    rc = home / "config.lua"
    rc.write_text(
        "options.timeout = 20\n"
        "options.hostnames = false\n"
        "options.create = true\n"
        "tern = IMAP {\n"
        "  server = '127.0.0.1',\n"
        f"  port = {srv.imap_ports['imaps']},\n"
        f"  username = '{user}',\n"
        f"  password = '{PASSWORD}',\n"
        "  ssl = 'auto',\n"
        "}\n" + lua)
    return client(["imapfilter", "-c", str(rc), "-d", str(home / "imapfilter.debug")],
                  home, "imapfilter")


def imapfilter_trace(home):
    p = home / "imapfilter.debug"
    if not p.is_file():
        return "\n(no imapfilter debug file)"
    # The conversation after login, without the blank lines between.
    text = p.read_text("utf-8", "replace")
    text = text[text.find("SELECT"):] if "SELECT" in text else text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\nimapfilter's debug log:\n" + "\n".join(lines[-40:])


def test_imapfilter_moves_by_subject(srv, tmp_path):
    user = new_user(srv)
    wanted = unique("invoice")
    s1, stored1 = deliver(srv, user, subject=f"Your {wanted} is ready")
    s2, stored2 = deliver(srv, user)
    out = imapfilter(srv, user, tmp_path,
                     f"local hits = tern.INBOX:contain_subject('{wanted}')\n"
                     "print('matched ' .. #hits)\n"
                     "hits:move_messages(tern['Invoices'])\n")
    why = f"\nimapfilter said:\n{out}" + imapfilter_trace(tmp_path)
    inbox = server_view(srv, user, "INBOX")
    moved = server_view(srv, user, "Invoices") if "matched 0" not in out else {}
    assert "matched 1" in out, (
        f"imapfilter searched INBOX for the subject (UID SEARCH ... SUBJECT "
        f"\"{wanted}\") and Tern matched nothing, though message 1's Subject: "
        f"holds it{why}")
    assert len(moved) == 1, f"Invoices: {sorted(moved)}{why}"
    assert to_lf(by_subject(moved, s1)[2]) == stored1
    assert len(inbox) == 1 and to_lf(by_subject(inbox, s2)[2]) == stored2, why


def test_imapfilter_flags_and_moves_unseen(srv, tmp_path):
    # Flag searches need no message text: unseen mail gets \Flagged and
    # moves to a new folder; what was read stays.
    user = new_user(srv)
    s1, stored1 = deliver(srv, user)
    s2, _ = deliver(srv, user)
    with session(srv, user) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 2 +FLAGS (\\Seen)")
    out = imapfilter(srv, user, tmp_path,
                     "local new = tern.INBOX:is_unseen()\n"
                     "print('matched ' .. #new)\n"
                     "new:mark_flagged()\n"
                     "new:move_messages(tern['Later'])\n")
    why = f"\nimapfilter said:\n{out}" + imapfilter_trace(tmp_path)
    assert "matched 1" in out, why
    later = server_view(srv, user, "Later")
    assert len(later) == 1, f"Later: {sorted(later)}{why}"
    _, flags, body = by_subject(later, s1)
    assert flags == {"\\Flagged"}, flags
    assert to_lf(body) == stored1
    inbox = server_view(srv, user, "INBOX")
    assert len(inbox) == 1 and by_subject(inbox, s2)[1] == {"\\Seen"}, why


# ------------------------------------------------------------------ curl

def curl(srv, user, path, *args):
    url = f"imaps://127.0.0.1:{srv.imap_ports['imaps']}/{path}"
    p = run_tool(["curl", "-sS", "-k", "--max-time", "20", "-u", f"{user}:{PASSWORD}",
                  *args, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 timeout=CLIENT_TIMEOUT)
    assert p.returncode == 0, f"curl {' '.join(args)} {url}: exit {p.returncode}: {p.stderr!r}"
    return p.stdout


def test_curl_lists_folders(srv):
    user = new_user(srv)
    with session(srv, user) as c:
        c.ok("CREATE Projects/Tern")
    out = curl(srv, user, "").decode()
    lines = out.splitlines()
    for want in ('* LIST (\\HasNoChildren) "/" INBOX',
                 '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
                 '* LIST (\\HasNoChildren \\Sent) "/" Sent',
                 '* LIST (\\HasChildren) "/" Projects',
                 '* LIST (\\HasNoChildren) "/" Projects/Tern'):
        assert want in lines, out
    # curl sends LIST "Projects" *, which is "Projects*" (RFC 9051 6.3.9).
    out = curl(srv, user, "Projects/").decode()
    assert out.splitlines() == ['* LIST (\\HasChildren) "/" Projects',
                                '* LIST (\\HasNoChildren) "/" Projects/Tern'], out


def test_curl_appends_to_drafts(srv, tmp_path):
    user = new_user(srv)
    subject = unique("curl-draft")
    msg = build_message(subject, ["uploaded with curl", ".a line with a dot"], to=user)
    f = tmp_path / "draft.eml"
    f.write_bytes(msg)
    curl(srv, user, "Drafts", "-T", str(f))
    view = server_view(srv, user, "Drafts")
    assert len(view) == 1, sorted(view)
    assert by_subject(view, subject)[2] == msg
    # And curl reads it back by UID.
    uid = by_subject(view, subject)[0]
    assert curl(srv, user, f"Drafts;UID={uid}") == msg
