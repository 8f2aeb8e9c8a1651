# The `tern` command line: users and aliases (also while the server runs),
# `tern sendmail` in its usual forms, and reading a Maildir with mailbox.
import mailbox
import re
import time

from conftest import PASSWORD, build_message, to_lf, unique
from faultkit import wait_for


def rcpt_reply(srv, address):
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        return c.cmd(f"RCPT TO:<{address}>")


def test_version(server):
    """`tern --version`: version and git revision, exit 0; the server logs
    the same line when it starts."""
    import subprocess
    from conftest import TERN_BIN
    p = subprocess.run([TERN_BIN, "--version"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip()
    assert re.fullmatch(r"tern \d+\.\d+\.\d+ \((unknown|[0-9a-f]{7,}(-dirty)?)\)", line), line
    assert f"{line} ready:" in server.log_text()


def test_user_list(server):
    out = server.cli("user", "list").stdout
    for u in ("u@example.test", "v@example.test", "w@example.test"):
        assert u in out, out
    assert PASSWORD not in out


def test_user_add_while_running(server):
    addr = f"{unique('new')}@example.test"
    r = rcpt_reply(server, addr)
    assert (r.code, r.enhanced) == (550, "5.1.1"), r
    server.add_user(addr)
    assert addr in server.cli("user", "list").stdout
    # no restart, no signal: the very next RCPT must be accepted
    r = rcpt_reply(server, addr)
    assert r.code == 250, r
    m = unique("welcome")
    with server.connect() as c:
        c.start()
        assert c.send_message("s@remote.test", [addr], build_message(m, ["hi"])).code == 250
    server.wait_message(addr, m)


def test_user_del_while_running(server):
    addr = f"{unique('gone')}@example.test"
    server.add_user(addr)
    assert rcpt_reply(server, addr).code == 250
    server.cli("user", "del", addr)
    assert addr not in server.cli("user", "list").stdout
    r = rcpt_reply(server, addr)
    assert (r.code, r.enhanced) == (550, "5.1.1"), r


def test_user_add_refuses_foreign_domain(server):
    p = server.cli("user", "add", "someone@not-ours.test", input=PASSWORD + "\n",
                   check=False)
    assert p.returncode != 0, p.stdout


def test_alias_add_list_del_while_running(server):
    alias = f"{unique('team')}@example.test"
    assert rcpt_reply(server, alias).code == 550
    server.add_alias(alias, ["v@example.test", "w@example.test"])
    out = server.cli("alias", "list").stdout
    assert alias in out and "v@example.test" in out and "w@example.test" in out, out
    m = unique("team")
    with server.connect() as c:
        c.start()
        assert c.send_message("s@remote.test", [alias], build_message(m, ["team"])).code == 250
    server.wait_message("v@example.test", m)
    server.wait_message("w@example.test", m)
    server.cli("alias", "del", alias)
    assert alias not in server.cli("alias", "list").stdout
    r = rcpt_reply(server, alias)
    assert (r.code, r.enhanced) == (550, "5.1.1"), r


def test_sendmail_basic(server):
    m = unique("sendmail")
    msg = f"Subject: {m}\n\nbody {m}\n"
    p = server.cli("sendmail", "-f", "a@example.test", "u@example.test", input=msg)
    assert p.returncode == 0
    raw = server.wait_messages("u@example.test", f"body {m}")[0]
    assert b"\r" not in raw
    assert raw.startswith(b"Return-Path: <a@example.test>\nDelivered-To: u@example.test\n"), raw[:200]
    parsed = mailbox.MaildirMessage(raw)
    assert parsed["Subject"] == m
    assert parsed.get_payload().strip() == f"body {m}"
    # The Received: header names the queue id the server logs delivery under.
    found = re.search(rb"with ESMTP id ([0-9A-Z]{16})\n", raw)
    assert found, raw[:300]
    assert found.group(1).decode() in server.log_text()


def test_sendmail_crlf_input(server):
    m = unique("sendmailcrlf")
    msg = f"Subject: {m}\r\n\r\nline1\r\nline2\r\n"
    server.cli("sendmail", "-f", "a@example.test", "u@example.test", input=msg)
    raw = server.wait_messages("u@example.test", m)[0]
    assert b"\r" not in raw
    assert raw.endswith(b"\n\nline1\nline2\n"), raw


def test_sendmail_dash_t(server):
    m = unique("dasht")
    msg = (f"From: a@example.test\nTo: u@example.test\nCc: Vee <v@example.test>\n"
           f"Bcc: w@example.test\nSubject: {m}\n\nto three\n")
    server.cli("sendmail", "-t", "-f", "a@example.test", input=msg)
    for u in ("u@example.test", "v@example.test", "w@example.test"):
        server.wait_message(u, m)
    assert server.messages("x@example.test", m) == []


def test_sendmail_dash_t_removes_bcc(server):
    m = unique("bcc")
    msg = (f"From: a@example.test\nTo: u@example.test\nBcc: w@example.test\n"
           f"Subject: {m}\n\nsecret copy\n")
    server.cli("sendmail", "-t", "-f", "a@example.test", input=msg)
    for u in ("u@example.test", "w@example.test"):
        d = server.wait_message(u, m)
        assert d.parsed()["Bcc"] is None, f"Bcc: header delivered to {u}"


def test_sendmail_dash_i_and_dot_lines(server):
    m = unique("dashi")
    msg = f"Subject: {m}\n\nbefore\n.\nafter the dot\n..two\n"
    server.cli("sendmail", "-i", "-f", "a@example.test", "u@example.test", input=msg)
    raw = server.wait_messages("u@example.test", m)[0]
    assert raw.endswith(b"\nbefore\n.\nafter the dot\n..two\n"), raw


def test_sendmail_default_sender(server):
    m = unique("nosender")
    server.cli("sendmail", "u@example.test", input=f"Subject: {m}\n\nx\n")
    raw = server.wait_messages("u@example.test", m)[0]
    assert raw.startswith(b"Return-Path: <"), raw[:100]


def test_sendmail_unknown_local_user(server):
    m = unique("nouser")
    p = server.cli("sendmail", "-f", "a@example.test", "nosuchuser@example.test",
                   input=f"Subject: {m}\n\nx\n", check=False)
    assert p.returncode != 0
    assert "5.1.1" in p.stderr, p.stderr
    # and a mix of good and bad recipients queues nothing
    p = server.cli("sendmail", "-f", "a@example.test", "u@example.test",
                   "nosuchuser@example.test", input=f"Subject: {m}\n\nx\n", check=False)
    assert p.returncode != 0
    server.assert_no_message("u@example.test", m)


def test_sendmail_8bit_body(server):
    m = unique("sm8bit")
    body = "Grüße, naïve café\n".encode("utf-8") + b"\xe9\xff raw\n"
    msg = f"Subject: {m}\n\n".encode() + body
    server.cli("sendmail", "-f", "a@example.test", "u@example.test", input=msg)
    raw = server.wait_messages("u@example.test", m)[0]
    assert raw.endswith(b"\n\n" + body), raw


def test_maildir_readable_by_mailbox_module(server):
    m = unique("mbox")
    data = build_message(m, ["line one", "line two"], sender="s@remote.test")
    with server.connect() as c:
        c.start()
        assert c.send_message("s@remote.test", ["v@example.test"], data).code == 250
    server.wait_message("v@example.test", m)
    md = mailbox.Maildir(str(server.maildir("v@example.test")), create=False)
    found = [msg for msg in md if msg["Subject"] == m]
    assert len(found) == 1
    msg = found[0]
    assert msg["Return-Path"] == "<s@remote.test>"
    assert msg["Delivered-To"] == "v@example.test"
    assert msg["Received"].startswith("from client.test")
    assert msg.get_payload() == "line one\nline two\n"
    # every file in the Maildir parses and has the trace headers
    for key, msg in md.items():
        assert msg["Return-Path"] is not None, key
        assert msg["Received"] is not None, key
    # Nothing left lying in tmp/. Direct delivery links the copy into
    # new/ before the 250 and drops its tmp/ name after a later flush: the
    # committer's tidy-up flush comes 200 ms after the last commit, later
    # under a sanitizer or load.
    tmp = server.maildir("v@example.test") / "tmp"
    wait_for(lambda: not list(tmp.iterdir()), 10, "tmp/ to be empty", server)


def test_sendmail_while_server_down(make_server):
    srv = make_server(users=["u@example.test"])
    assert srv.stop() == 0
    m = unique("offline")
    srv.cli("sendmail", "-f", "a@example.test", "u@example.test",
            input=f"Subject: {m}\n\nqueued while down\n")
    time.sleep(0.5)
    assert srv.messages("u@example.test", m) == []
    srv.start()
    srv.wait_message("u@example.test", m)


def test_cli_errors(server):
    p = server.cli("frobnicate", check=False)
    assert p.returncode != 0
    p = server.cli("user", "del", "never-existed@example.test", check=False)
    assert p.returncode != 0


def test_data_dir_override(server, tmp_path):
    other = tmp_path / "otherdata"
    p = server.cli("user", "add", "solo@example.test", "--data-dir", str(other),
                   input=PASSWORD + "\n")
    assert p.returncode == 0
    assert "solo@example.test" in server.cli("user", "list", "--data-dir",
                                             str(other)).stdout
    assert "solo@example.test" not in server.cli("user", "list").stdout
    assert "u@example.test" not in server.cli("user", "list", "--data-dir",
                                              str(other)).stdout


def test_user_add_refuses_path_tricks(server):
    for bad in ("../../evil@example.test", "a/b@example.test", "..@example.test"):
        p = server.cli("user", "add", bad, input=PASSWORD + "\n", check=False)
        assert p.returncode != 0, f"{bad} accepted"
    assert not (server.data_dir / "evil").exists()
    assert not (server.data_dir.parent / "evil").exists()
    assert "evil" not in server.cli("user", "list").stdout
