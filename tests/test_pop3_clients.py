# Real POP3 clients against Tern: fetchmail (POP3S, set up as a new user
# would: server 127.0.0.1, the POP3S port, SSL) and getmail6 (POP3S, and
# plain POP3 on a loopback listener that allows it) download mail that swaks
# and smtplib sent through Tern's SMTP.
import mailbox
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from conftest import need_tool, run_tool, PASSWORD, build_message, free_port, unique


@pytest.fixture
def srv(make_server):
    ports = {"plain": free_port(), "ssl": free_port()}
    s = make_server(
        users=(),
        extra_listen=[(f"127.0.0.1:{ports['plain']}", "pop3",
                       {"allow_plaintext_auth": True}),
                      (f"127.0.0.1:{ports['ssl']}", "pop3s")],
        sections={"tls": {"self_signed": True}})
    s.pop3_ports = ports
    return s


def swaks(srv, to, marker):
    out = run_tool(["swaks", "--server", f"127.0.0.1:{srv.port}", "--to", to,
         "--from", "sender@remote.test", "--header", f"Subject: {marker}",
         "--body", f"sent with swaks {marker}\n.leading dot line\n"],
        capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    srv.wait_message(to, marker)


def test_fetchmail_pop3s_into_mbox(srv, tmp_path):
    user = f"{unique('fm')}@example.test"
    srv.add_user(user)
    markers = [unique("swaks") for _ in range(3)]
    for m in markers:
        swaks(srv, user, m)
    home = tmp_path / "home"
    home.mkdir()
    mbox = tmp_path / "inbox.mbox"
    mda = tmp_path / "mda.py"
    # fetchmail hands each message to an MDA; this one appends to an mbox.
    mda.write_text(
        "import mailbox, sys\n"
        f"box = mailbox.mbox({str(mbox)!r})\n"
        "box.add(mailbox.mboxMessage(sys.stdin.buffer.read()))\n"
        "box.flush()\n")
    rc = home / ".fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 service {srv.pop3_ports['ssl']} protocol pop3\n"
        f'  user "{user}" there password "{PASSWORD}" is "nobody" here\n'
        "  ssl no sslcertck\n"  # the dev certificate is self-signed
        f'  mda "/usr/bin/python3 {mda}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home))
    out = run_tool(["fetchmail", "-f", str(rc), "--nodetach", "-v"],
                         capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    got = [m.as_bytes() for m in mailbox.mbox(str(mbox))]
    assert len(got) == 3
    for m in markers:
        assert any(m.encode() in g for g in got), m
    assert all(b"\n.leading dot line\n" in g for g in got)
    # fetchmail deletes what it fetched (its default): QUIT ran UPDATE.
    assert srv.message_files(user) == []


@pytest.mark.parametrize("retriever,port", [("SimplePOP3SSLRetriever", "ssl"),
                                            ("SimplePOP3Retriever", "plain")])
def test_getmail_into_maildir(srv, tmp_path, retriever, port):
    # getmail refuses to deliver as root; it delivers as "nobody" into a
    # Maildir that user can write.
    user = f"{unique('gm')}@example.test"
    srv.add_user(user)
    markers = [unique("gm") for _ in range(2)]
    for m in markers:
        with srv.smtplib() as s:
            s.sendmail("sender@remote.test", [user], build_message(m, ["body " + m], to=user))
        srv.wait_message(user, m)
    top = tempfile.mkdtemp(prefix="tern-getmail-")
    os.chmod(top, 0o755)
    md = __import__("pathlib").Path(top) / "Maildir"
    nobody = pwd.getpwnam("nobody")
    for sub in ("", "tmp", "new", "cur"):
        (md / sub).mkdir(exist_ok=True)
        os.chown(md / sub, nobody.pw_uid, nobody.pw_gid)
    rc = tmp_path / "getmailrc"
    extra = ""
    rc.write_text(
        "[retriever]\n"
        f"type = {retriever}\n"
        "server = 127.0.0.1\n"
        f"port = {srv.pop3_ports[port]}\n"
        f"username = {user}\n"
        f"password = {PASSWORD}\n"
        f"{extra}"
        "[destination]\n"
        "type = Maildir\n"
        f"path = {md}/\n"
        "user = nobody\n"
        "[options]\n"
        "delete = true\n"
        "read_all = true\n"
        "verbose = 2\n")
    state = tmp_path / "getmail-state"
    state.mkdir()
    # getmail itself, run through a wrapper that closes a race of its own
    # (a delivery child that exits before getmail watches for it leaves
    # getmail waiting out its timeout): see getmail_waitpid.py.
    need_tool("getmail")
    shim = os.path.join(os.path.dirname(__file__), "getmail_waitpid.py")
    out = subprocess.run(["/usr/bin/python3", shim, f"--rcfile={rc}",
                          f"--getmaildir={state}"], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    got = [p.read_bytes() for p in (md / "new").iterdir()]
    shutil.rmtree(top)
    assert len(got) == 2, out.stdout.decode()
    for m in markers:
        assert any(m.encode() in g for g in got), m
    assert srv.message_files(user) == []
