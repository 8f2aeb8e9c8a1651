"""`tern trace`: the message trace after a delivered, a bounced and a
refused message, by queue id, Message-ID and address, in both output
forms; and what the trace files must never hold (bodies, passwords)."""
import json
import re
import socket
import threading
import time

import pytest

from conftest import PASSWORD, TernServer, _LIVE, build_message, shutdown, unique


class RefusingPeer:
    """A remote SMTP server on loopback (the [[route]] relay) that takes
    mail for everyone but nobody@remote.test, refused with 550 at RCPT."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn):
        f = conn.makefile("rb")
        send = lambda line: conn.sendall(line.encode() + b"\r\n")
        try:
            send("220 peer.remote.test ESMTP")
            in_data = False
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if in_data:
                    if line == ".":
                        in_data = False
                        send("250 2.0.0 taken")
                    continue
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    send("250 peer.remote.test")
                elif verb == "RCPT":
                    if "nobody@remote.test" in line.lower():
                        send("550 5.1.1 <nobody@remote.test>: no such user here")
                    else:
                        send("250 2.1.5 ok")
                elif verb == "DATA":
                    in_data = True
                    send("354 go ahead")
                elif verb == "QUIT":
                    send("221 bye")
                    break
                else:
                    send("250 ok")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture
def srv(tmp_path):
    peer = RefusingPeer()
    s = TernServer(tmp_path / "tern", trusted_networks=["127.0.0.1/32"],
                   sections={"delivery": {"retry_first": 1, "retry_max": 2,
                                          "delay_warning": 0, "connect_timeout": 3}})
    with open(s.config_path, "a", encoding="utf-8") as f:
        f.write("\n[[route]]\n")
        f.write('domain = "remote.test"\n')
        f.write(f'relay = "127.0.0.1:{peer.port}"\n')
        f.write('tls = "none"\n')
    _LIVE.append(s)
    try:
        for u in ("u@example.test", "v@example.test"):
            s.add_user(u)
        s.start()
    except BaseException:
        shutdown(s)
        peer.close()
        raise
    yield s
    shutdown(s)
    peer.close()


def trace_json(srv, what, check=True):
    p = srv.cli("trace", what, "--json", check=check)
    return json.loads(p.stdout) if p.returncode == 0 else None


def wait_trace(srv, what, pred, timeout=15):
    end = time.time() + timeout
    events = None
    while time.time() < end:
        events = trace_json(srv, what, check=False)
        if events and pred(events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"trace for {what} never matched: {events}\n{srv.log_tail()}")


def kinds(events):
    return [e["event"] for e in events]


def test_delivered_message(srv):
    m = unique("trace")
    msgid = f"<{m}@client.test>"
    body = f"the secret body text {m}"
    data = build_message(m, [body], sender="s@remote.test", to="u@example.test")
    data = re.sub(rb"Message-ID: <[^>]*>", f"Message-ID: {msgid}".encode(), data)
    with srv.smtplib() as c:
        c.sendmail("s@remote.test", ["u@example.test"], data)
    srv.wait_message("u@example.test", m)

    events = wait_trace(srv, "u@example.test", lambda ev: "done" in kinds(ev))
    received = [e for e in events if e["event"] == "received"]
    assert len(received) == 1, events
    r = received[0]
    qid = r["id"]
    assert r["from"] == "s@remote.test" and r["rcpts"] == ["u@example.test"]
    assert r["message_id"] == msgid
    assert r["client"] == "127.0.0.1" and r["helo"] == "client.test"
    assert r["listener"] == "smtp" and r["size"] > len(body)
    delivery = [e for e in events if e["event"] == "delivery"]
    assert [(d["rcpt"], d["destination"], d["result"]) for d in delivery] == \
        [("u@example.test", "local", "delivered")]
    done = [e for e in events if e["event"] == "done"]
    assert done[0]["delivered"] == ["u@example.test"]
    assert all(e["time"].endswith("Z") for e in events)

    # The same story by queue id and by Message-ID, with or without brackets.
    assert trace_json(srv, qid) == events
    assert trace_json(srv, msgid) == events
    assert trace_json(srv, msgid.strip("<>")) == events
    # By the sender's address too.
    assert trace_json(srv, "S@Remote.Test") == events

    text = srv.cli("trace", qid).stdout
    assert text.startswith(f"message {qid} {msgid}\n"), text
    assert "received from <s@remote.test> for <u@example.test>" in text
    assert "client 127.0.0.1 (client.test) on smtp" in text
    assert "delivered <u@example.test> (local" in text
    assert "left the queue: delivered to <u@example.test>" in text
    assert body not in text


def test_bounced_message(srv):
    # A remote 550 at RCPT fails one recipient; the other is taken. The
    # DSN goes back to the local sender.
    m = unique("bounce")
    data = build_message(m, [f"body of {m}"], sender="v@example.test",
                         to="nobody@remote.test")
    with srv.smtplib() as c:
        c.sendmail("v@example.test", ["nobody@remote.test", "else@remote.test"], data)
    srv.wait_message("v@example.test", "nobody@remote.test")

    events = wait_trace(srv, "nobody@remote.test",
                        lambda ev: "bounce" in kinds(ev) and kinds(ev).count("done") >= 2)
    qid = next(e["id"] for e in events if e["event"] == "received")
    deliveries = {e["rcpt"]: e for e in events
                  if e["event"] == "delivery" and e["id"] == qid}
    failed = deliveries["nobody@remote.test"]
    assert (failed["destination"], failed["result"]) == ("remote", "failed"), failed
    assert "550 5.1.1" in failed["reply"] and "127.0.0.1" in failed["host"], failed
    sent = deliveries["else@remote.test"]
    assert (sent["destination"], sent["result"]) == ("remote", "delivered"), sent
    bounce = next(e for e in events if e["event"] == "bounce")
    assert bounce["id"] == qid and bounce["to"] == "v@example.test"
    assert bounce["actions"] == ["failed <nobody@remote.test>"]
    # The DSN's own story follows: delivered to the sender's mailbox.
    dsn = [e for e in events if e.get("id") == bounce["dsn"]]
    assert ("delivery", "v@example.test", "delivered") in \
        [(e["event"], e.get("rcpt"), e.get("result")) for e in dsn], events

    text = srv.cli("trace", qid).stdout
    assert f"message {qid}" in text
    assert "failed <nobody@remote.test> (remote via " in text
    assert f"DSN {bounce['dsn']} to <v@example.test>: failed <nobody@remote.test>" in text
    assert f"message {bounce['dsn']} (delivery status notification for {qid})" in text
    assert "left the queue: delivered to <else@remote.test>; failed for " \
           "<nobody@remote.test>" in text


def test_refused_recipient(srv):
    with srv.connect() as c:
        c.start()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        r = c.cmd("RCPT TO:<nosuchuser@example.test>")
        assert r.code == 550, r
        c.cmd("QUIT")

    events = wait_trace(srv, "nosuchuser@example.test", lambda ev: True, timeout=5)
    assert len(events) == 1, events
    e = events[0]
    assert e["event"] == "refused" and e["stage"] == "rcpt"
    assert e["from"] == "s@remote.test" and e["rcpts"] == ["nosuchuser@example.test"]
    assert e["reply"].startswith("550 5.1.1"), e
    assert e["client"] == "127.0.0.1"

    text = srv.cli("trace", "nosuchuser@example.test").stdout
    assert text.startswith("refusal\n"), text
    assert "refused at rcpt, from <s@remote.test> to <nosuchuser@example.test>: 550 5.1.1" \
        in text


def test_nothing_matches(srv):
    p = srv.cli("trace", "nobody-at-all@example.test", check=False)
    assert p.returncode == 1
    assert "nothing in the trace for nobody-at-all@example.test" in p.stderr
    assert p.stdout == ""


def test_no_bodies_or_passwords_in_the_trace(srv):
    # The message text never reaches the trace, nor does an AUTH line
    # (this listener offers no AUTH without TLS; the line is refused).
    m = unique("private")
    secret = f"confidential-{m}"
    data = build_message(m, [secret, "more " + secret], sender="s@remote.test",
                         to="u@example.test")
    with srv.smtplib() as c:
        c.sendmail("s@remote.test", ["u@example.test"], data)
    srv.wait_message("u@example.test", m)
    wait_trace(srv, "u@example.test", lambda ev: "done" in kinds(ev))
    with srv.connect() as c:
        c.start()
        c.cmd("AUTH PLAIN " + "AHVAZXhhbXBsZS50ZXN0AA==")  # refused or not offered
        c.cmd("QUIT")
    files = sorted((srv.data_dir / "trace").glob("*.jsonl"))
    assert files, "no trace files"
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert secret not in text
        assert PASSWORD not in text
        assert "AHVAZXhhbXBsZS50ZXN0AA" not in text
        for line in text.splitlines():
            json.loads(line)  # every line is one JSON object
        assert re.fullmatch(r"\d{4}-\d\d-\d\d\.jsonl", f.name)
