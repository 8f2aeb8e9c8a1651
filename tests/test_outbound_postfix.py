# Outbound delivery to a real MTA: a private Postfix instance (its own
# config, queue and mail folders under the test's tmp dir) listening on a
# 127.0.0.x loopback address, found through the test DNS zone's MX record.
import os
import pathlib
import shutil
import smtplib
import subprocess
import time

import pytest

from conftest import PASSWORD, build_message, free_port, need_tool, unique
from test_outbound import (dns, dsn_of, mx_port, sinks, submit,  # noqa: F401
                           tern, wait_for, wait_queue_empty)

POSTFIX_IP = "127.0.0.50"

MASTER_CF = """\
{listen} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@pytest.fixture
def postfix(tmp_path, mx_port):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root")
    need_tool("postfix")
    # Postfix's daemons run as user postfix: pytest's tmp dirs (mode 0700,
    # root's) are out of their reach, so the instance lives in /tmp itself.
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix="tern-postfix-", dir="/tmp"))
    os.chmod(base, 0o755)
    conf, spool, data, mail = (base / n for n in ("conf", "spool", "data", "mail"))
    for d in (conf, spool, data, mail):
        d.mkdir(parents=True)
    import pwd
    pw = pwd.getpwnam("postfix")
    for d in (data, mail):
        os.chown(d, pw.pw_uid, pw.pw_gid)
    log = base / "postfix.log"
    (conf / "vmailbox").write_text("someone@remote.test someone/\n")
    (conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.remote.test
mydomain = remote.test
myorigin = remote.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = remote.test
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
alias_maps =
alias_database =
maillog_file = {log}
maillog_file_prefixes = {base}
biff = no
smtputf8_enable = yes
""")
    (conf / "master.cf").write_text(
        MASTER_CF.format(listen=f"{POSTFIX_IP}:{mx_port}"))
    env = dict(os.environ, MAIL_CONFIG=str(conf))
    r = subprocess.run(["postfix", "-c", str(conf), "start"], env=env,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.fail(f"postfix start failed: {r.stdout}\n{r.stderr}")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with smtplib.SMTP(POSTFIX_IP, mx_port, timeout=2) as s:
                    s.noop()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("postfix is not answering\n"
                                + (log.read_text() if log.exists() else ""))
                time.sleep(0.2)
        yield {"mail": mail, "log": log}
    finally:
        subprocess.run(["postfix", "-c", str(conf), "stop"], env=env,
                       capture_output=True, timeout=60)
        time.sleep(0.5)
        shutil.rmtree(base, ignore_errors=True)


def maildir_messages(root):
    out = []
    for sub in ("new", "cur"):
        d = pathlib.Path(root) / "someone" / sub
        if d.is_dir():
            out += [p.read_bytes() for p in d.iterdir() if p.is_file()]
    return out


def test_submission_reaches_postfix_and_bad_address_bounces(dns, tern,  # noqa: F811
                                                           postfix):
    dns.mx("remote.test", (10, "mx.remote.test"))
    dns.a("mx.remote.test", POSTFIX_IP)
    sub_port = free_port()
    srv = tern(extra_listen=[(f"127.0.0.1:{sub_port}", "submission",
                              {"allow_plaintext_auth": True})])
    m = unique("postfix")
    # Authenticated submission when the server offers AUTH (issue 4), else
    # from the trusted network.
    msg = build_message(m, ["to a real MTA", ".dot line"], sender="u@example.test",
                        to="someone@remote.test")
    with smtplib.SMTP("127.0.0.1", sub_port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.has_extn("auth"), "submission offers no AUTH"
        s.login("u@example.test", PASSWORD)
        s.sendmail("u@example.test", ["someone@remote.test"], msg)
    wait_for(lambda: any(m.encode() in x for x in maildir_messages(postfix["mail"])),
             timeout=20, what="delivery into the Postfix mailbox", srv=srv)
    got = [x for x in maildir_messages(postfix["mail"]) if m.encode() in x][0]
    assert b"\n..dot line" not in got and b"\n.dot line" in got
    assert b"by mx.example.test (Tern)" in got  # our Received: kept
    wait_queue_empty(srv)
    # A bad address: Postfix refuses it, the sender gets a readable bounce.
    m2 = unique("pfbounce")
    submit(srv, "u@example.test", ["nobody@remote.test"], m2)
    _, parts, _, per_rcpt = dsn_of(srv, "u@example.test", m2, timeout=20)
    assert per_rcpt[0]["Action"] == "failed"
    assert per_rcpt[0]["Status"].startswith("5.1.")
    assert per_rcpt[0]["Remote-MTA"] == "dns; mx.remote.test"
    assert "nobody@remote.test" in parts[0].get_content()
    wait_queue_empty(srv)
