#!/usr/bin/python3
"""POP3 rates of Tern and a private Dovecot (dovecot-pop3d) on the same
Maildir of N messages: first login (index build), then repeated sessions of
login + STAT + LIST + UIDL + QUIT, then RETR of every message. Everything
runs on loopback ports with configs and data in a temp dir; the system's
Dovecot service and /etc/dovecot are not touched.

    bench/pop3_compare.py --tern build/tern [--messages 10000] [--sessions 20]
"""
import argparse
import os
import poplib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

USER = "bench@example.test"
PASSWORD = "bench-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(100).startswith(b"+OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


def make_maildir(md, n):
    """N messages as Tern writes them (LF line ends, ",S=" size field)."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    body = "".join(f"line {i} of a plain text body, some words to fill it\n"
                   for i in range(30))
    t = int(time.time())
    for i in range(n):
        msg = (f"Return-Path: <s@remote.test>\nDelivered-To: {USER}\n"
               f"Received: from client.test by mx.example.test (Tern); {i}\n"
               f"From: <s@remote.test>\nTo: <{USER}>\nSubject: message {i}\n"
               f"Message-ID: <{i}@bench>\n\n{body}")
        name = f"{t}.M{i}P1Q{i}.mx.example.test,S={len(msg)}"
        with open(os.path.join(md, "new", name), "w") as f:
            f.write(msg)


def session(port, what):
    p = poplib.POP3("127.0.0.1", port, timeout=120)
    p.user(USER)
    p.pass_(PASSWORD)
    spent = 0.0
    if what == "list":
        t0 = time.monotonic()
        p.stat()
        p.list()
        p.uidl()
        spent = time.monotonic() - t0
    elif what == "retr":
        n = p.stat()[0]
        for i in range(1, n + 1):
            p.retr(i)
    p.quit()
    return spent


def measure(name, port, sessions, n):
    t0 = time.monotonic()
    session(port, "login")
    first = time.monotonic() - t0
    t0 = time.monotonic()
    commands = 0.0
    for _ in range(sessions):
        commands += session(port, "list")
    per = (time.monotonic() - t0) / sessions
    commands /= sessions
    t0 = time.monotonic()
    session(port, "retr")
    retr = time.monotonic() - t0
    print(f"{name:8} first login {first * 1000:8.1f} ms | "
          f"login+STAT+LIST+UIDL+QUIT {per * 1000:7.1f} ms ({1 / per:6.1f}/s), "
          f"of which STAT+LIST+UIDL {commands * 1000:6.1f} ms | "
          f"RETR all {n} {retr:6.2f} s ({n / retr:7.0f} msg/s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tern", required=True)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--sessions", type=int, default=20)
    args = ap.parse_args()
    tern = os.path.abspath(args.tern)
    base = tempfile.mkdtemp(prefix="tern-pop3-bench-")
    os.chmod(base, 0o755)
    procs = []
    try:
        data = os.path.join(base, "var")
        md = os.path.join(data, "mail", "example.test", "bench", "Maildir")
        tern_port, smtp_port, dove_port = free_port(), free_port(), free_port()
        cfg = os.path.join(base, "tern.toml")
        with open(cfg, "w") as f:
            f.write(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n'
                    'domains = ["example.test"]\n'
                    f'[[listen]]\naddress = "127.0.0.1:{smtp_port}"\nservice = "smtp"\n'
                    f'[[listen]]\naddress = "127.0.0.1:{tern_port}"\nservice = "pop3"\n'
                    'allow_plaintext_auth = true\n[log]\nlevel = "warn"\n')
        subprocess.run([tern, "user", "add", USER, "--config", cfg],
                       input=PASSWORD + "\n", text=True, check=True)
        make_maildir(md, args.messages)

        # Dovecot reads the same Maildir as "nobody".
        nobody = pwd.getpwnam("nobody")
        for root, dirs, files in os.walk(os.path.join(data, "mail")):
            os.chown(root, nobody.pw_uid, nobody.pw_gid)
            for x in files:
                os.chown(os.path.join(root, x), nobody.pw_uid, nobody.pw_gid)
        dv = os.path.join(base, "dovecot")
        os.makedirs(dv)
        # Argon2id like Tern's (libsodium "interactive": 64 MiB), so both
        # pay the same for a password check.
        hashed = subprocess.run(
            ["doveadm", "-c", "/dev/null", "pw", "-s", "ARGON2ID", "-p", PASSWORD],
            capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(dv, "passwd"), "w") as f:
            f.write(f"{USER}:{hashed}\n")
        conf = os.path.join(dv, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"""base_dir = {dv}/run
state_dir = {dv}/state
log_path = {dv}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = nobody
default_internal_user = nobody
passdb {{
  driver = passwd-file
  args = {dv}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={dv}/home
}}
mail_location = maildir:{md}
first_valid_uid = 1
pop3_uidl_format = %f
service pop3-login {{
  inet_listener pop3 {{
    port = {dove_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
""")
        procs.append(subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf]))
        procs.append(subprocess.Popen([tern, "serve", "--config", cfg]))
        wait_port(tern_port)
        os.chmod(data, 0o755)  # Tern makes it 0700; Dovecot runs as nobody
        wait_port(dove_port)
        print(f"{args.messages} messages, {args.sessions} sessions each")
        measure("tern", tern_port, args.sessions, args.messages)
        measure("dovecot", dove_port, args.sessions, args.messages)
        # Second round: both now have warm caches and messages in cur/.
        measure("tern", tern_port, args.sessions, args.messages)
        measure("dovecot", dove_port, args.sessions, args.messages)
    except Exception:
        log = os.path.join(base, "dovecot", "dovecot.log")
        if os.path.exists(log):
            print(open(log).read()[-3000:])
        raise
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
