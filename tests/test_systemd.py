# systemd readiness (dist/tern.service is Type=notify): `tern serve` sends
# READY=1 once it accepts, RELOADING=1 then READY=1 around a SIGHUP reload,
# STOPPING=1 at shutdown, each with a STATUS= line, as datagrams to the
# socket named in $NOTIFY_SOCKET (sd_notify(3)). Here the test plays the
# service manager's part with a socket of its own.
import os
import signal
import socket
import struct

import pytest

from conftest import TernServer, _LIVE, shutdown


class NotifySocket:
    """An AF_UNIX datagram socket like systemd's, with the sender's
    credentials (systemd accepts only the main PID's messages)."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(10)

    def recv(self):
        """(fields, pid) of the next message: fields as a dict."""
        data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("iII", payload[:12])
        fields = {}
        for line in data.decode("utf-8").split("\n"):
            if line:
                key, _, value = line.partition("=")
                fields[key] = value
        return fields, pid

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    yield ns
    ns.close()


def test_ready_reload_stopping(tmp_path, notify):
    srv = TernServer(tmp_path / "srv")
    _LIVE.append(srv)
    try:
        srv.start()  # returns once the server answers 220
        msg, pid = notify.recv()
        assert msg.get("READY") == "1", msg
        assert pid == srv.proc.pid
        assert "serving 1 listener(s)" in msg.get("STATUS", ""), msg

        srv.proc.send_signal(signal.SIGHUP)
        msg, pid = notify.recv()
        assert msg.get("RELOADING") == "1", msg
        assert int(msg["MONOTONIC_USEC"]) > 0
        assert pid == srv.proc.pid
        msg, _ = notify.recv()
        assert msg.get("READY") == "1", msg
        assert msg.get("STATUS") == "serving; config reloaded"

        # A reload that fails keeps the old config; the server is ready again
        # and says why in its status.
        with open(srv.config_path, "a", encoding="utf-8") as f:
            f.write("no_such_key = 1\n")
        srv.proc.send_signal(signal.SIGHUP)
        msg, _ = notify.recv()
        assert msg.get("RELOADING") == "1", msg
        msg, _ = notify.recv()
        assert msg.get("READY") == "1", msg
        assert "reload failed" in msg.get("STATUS", ""), msg
        assert "no_such_key" in msg["STATUS"]
        with srv.connect() as c:
            c.greet()

        assert srv.stop() == 0
        msg, pid = notify.recv()
        assert msg.get("STOPPING") == "1", msg
        assert pid == srv.proc.pid
    finally:
        shutdown(srv)


def test_no_service_manager_listening(tmp_path, monkeypatch):
    # A socket nobody listens on: every message fails and is ignored.
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    srv = TernServer(tmp_path / "srv")
    _LIVE.append(srv)
    try:
        srv.start()
        srv.proc.send_signal(signal.SIGHUP)
        with srv.connect() as c:
            c.greet()
        assert srv.stop() == 0
        assert "config reloaded" in srv.log_text()
    finally:
        shutdown(srv)
