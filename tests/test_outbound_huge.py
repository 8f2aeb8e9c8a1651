# Huge messages on the outbound path: Tern sends the queued file in pieces
# (src/delivery/outbound.cc, kBodyChunk = 256 KiB), dot-stuffing DATA as it
# goes or passing the bytes on in one BDAT. These tests relay a message of
# some 20 MiB built to hit the piece boundaries in the awkward places
# (a line's leading "." as the first octet of a piece, CR and LF in
# different pieces, lines longer than a piece) to streaming sinks on
# loopback, and compare what arrives with what was sent, octet for octet.
import hashlib
import socket
import threading
import time

import pytest

from conftest import _LIVE, TernServer, free_port, shutdown

PIECE = 256 * 1024          # Tern's kBodyChunk
PIECES = 80                 # ~20 MiB
SINK_IP = "127.0.0.1"


class StreamSink:
    """An SMTP server that never keeps a message: it hashes the content
    (dot-unstuffed for DATA) as it arrives. With chunking=True it offers
    CHUNKING (RFC 3030) and takes BDAT."""

    def __init__(self, chunking):
        self.chunking = chunking
        self.port = free_port(SINK_IP)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((SINK_IP, self.port))
        self.sock.listen(8)
        self.messages = []   # dicts: sha256, size, head, via, error
        self.commands = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stop = True
        self.sock.close()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb", buffering=1 << 16)
        say = lambda text: conn.sendall(text.encode() + b"\r\n")
        try:
            say("220 sink.test ESMTP")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line.split(b" ", 1)[0].strip().upper()
                self.commands.append(line.decode("ascii", "replace").strip())
                if verb in (b"EHLO", b"HELO"):
                    caps = ["sink.test", "PIPELINING", "8BITMIME", "SIZE 104857600"]
                    if self.chunking:
                        caps.append("CHUNKING")
                    say("\r\n".join(f"250-{c}" for c in caps[:-1]) + f"\r\n250 {caps[-1]}")
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    say("250 2.0.0 ok")
                elif verb == b"DATA":
                    say("354 go ahead")
                    self._data(f)
                    say("250 2.0.0 queued")
                elif verb == b"BDAT":
                    words = line.split()
                    self._bdat(f, int(words[1]))
                    say("250 2.0.0 queued")
                elif verb == b"QUIT":
                    say("221 2.0.0 bye")
                    return
                else:
                    say("500 5.5.1 unknown")
        except OSError:
            pass
        finally:
            conn.close()

    def _data(self, f):
        h = hashlib.sha256()
        size = 0
        head = b""
        while True:
            line = f.readline()
            if not line:
                raise OSError("EOF in DATA")
            if line == b".\r\n":
                break
            if line.startswith(b"."):   # RFC 5321 4.5.2
                line = line[1:]
            h.update(line)
            size += len(line)
            if len(head) < 8192:
                head += line
        self.messages.append({"sha256": h.hexdigest(), "size": size,
                              "head": head, "via": "DATA"})

    def _bdat(self, f, n):
        h = hashlib.sha256()
        head = b""
        left = n
        while left:
            piece = f.read(min(left, 1 << 20))
            if not piece:
                raise OSError("EOF in BDAT")
            h.update(piece)
            left -= len(piece)
            if len(head) < 8192:
                head += piece[:8192]
        self.messages.append({"sha256": h.hexdigest(), "size": n,
                              "head": head, "via": "BDAT"})

    def wait(self, count=1, timeout=25, srv=None):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"sink got {len(self.messages)} message(s), want {count}"
                    + (f"\n{srv.log_tail()}" if srv else ""))
            time.sleep(0.05)
        return self.messages


def huge_message(marker):
    """~PIECES x 256 KiB of CRLF lines. Around every multiple of PIECE (in
    the message as received; Tern's own header fields in front shift it by
    less than 4 KiB) sits a run of ".\\r\\n" or ".x.\\r\\n" lines, so that
    some boundary cuts before a line's leading ".", some before a "." in
    mid-line, some between CR and LF (boundaries() checks). Lines longer
    than a piece, some starting with ".", cross boundaries whole; 8-bit
    text is in there too."""
    out = bytearray()
    out += (f"From: <sender@example.test>\r\nTo: <rcpt@far.test>\r\n"
            f"Subject: huge {marker}\r\nMessage-ID: <{marker}@example.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n").encode()
    filler = (b"The quick brown fox jumps over the lazy dog. "
              b"\xc3\xa9t\xc3\xa9 0123456789 abcdefghij\r\n")
    for k in range(1, PIECES + 1):
        edge = k * PIECE
        if k % 10 == 5:
            # A line of 300 KiB, starting with "." and crossing an edge.
            out += b"." + b"L" * (300 * 1024) + b"\r\n"
        while len(out) < edge - 4096:
            out += filler
        out += b"\r\n"
        # Period 3 and 5 runs: 2 x PIECE is coprime with both, so every
        # phase of each comes up at some boundary.
        run = b".\r\n" if k % 2 else b".x.\r\n"
        out += run * (8192 // len(run))
        out += b"..\r\n...\r\n.. .\r\n"
    out += b"last line, then a line with a lone dot\r\n.\r\n"
    return bytes(out)


def boundaries(sent):
    """What the piece boundaries of the message as Tern sent it (its
    fields on top included) fell between."""
    seen = set()
    for pos in range(PIECE, len(sent), PIECE):
        a, b = sent[pos - 1:pos], sent[pos:pos + 1]
        if a == b"\r" and b == b"\n":
            seen.add("CR|LF")
        elif a == b"\n" and b == b".":
            seen.add("line start|.")
        elif b == b"." and a != b"\n":
            seen.add("mid-line|.")
    return seen


def stuff(data):
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                    for l in lines[:-1]) + b".\r\n"


@pytest.fixture
def relay_to():
    made = []

    def factory(tmp_path, sink):
        srv = TernServer(
            tmp_path / f"tern{len(made)}",
            trusted_networks=["127.0.0.0/8"],
            smtp={"max_message_size": 64 * 1024 * 1024,
                  "text_line_limit": 1024 * 1024},
            sections={"delivery": {"retry_first": 1, "retry_max": 2,
                                   "delay_warning": 0}})
        with open(srv.config_path, "a", encoding="utf-8") as f:
            f.write(f'\n[[route]]\ndomain = "far.test"\n'
                    f'relay = "{SINK_IP}:{sink.port}"\ntls = "none"\n')
        made.append(srv)
        _LIVE.append(srv)
        srv.start()
        return srv

    yield factory
    for srv in made:
        shutdown(srv)


def send(srv, data):
    with srv.connect(timeout=60) as c:
        c.start()
        assert c.cmd("MAIL FROM:<sender@example.test> BODY=8BITMIME").code == 250
        assert c.cmd("RCPT TO:<rcpt@far.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(stuff(data))
        r = c.reply()
        assert r.code == 250, r


def check_arrived(sink, data, srv):
    got = sink.wait(1, srv=srv)[0]
    # Tern puts its Received field (and nothing else here) on top: the
    # message follows it, octet for octet.
    extra = got["size"] - len(data)
    assert 0 < extra < 4096, (got["size"], len(data))
    assert got["head"][:extra].startswith(b"Received: "), got["head"][:200]
    assert got["head"][extra:extra + 200] == data[:200]
    want = hashlib.sha256(got["head"][:extra] + data).hexdigest()
    assert got["sha256"] == want, "the relayed message differs from the one sent"
    got["sent"] = got["head"][:extra] + data
    return got


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
def test_huge_message_relayed_exactly(tmp_path, relay_to, chunking):
    sink = StreamSink(chunking)
    try:
        srv = relay_to(tmp_path, sink)
        data = huge_message(f"huge-{'bdat' if chunking else 'data'}")
        assert len(data) > PIECES * PIECE
        send(srv, data)
        got = check_arrived(sink, data, srv)
        assert got["via"] == ("BDAT" if chunking else "DATA")
        # The message did put boundaries where a streaming stuffer can err.
        assert boundaries(got["sent"]) == {"CR|LF", "line start|.", "mid-line|."}
        # BDAT carries the whole message in one chunk with its exact size.
        bdat = [c for c in sink.commands if c.upper().startswith("BDAT")]
        assert bdat == ([f"BDAT {got['size']} LAST"] if chunking else [])
        deadline = time.monotonic() + 10
        while srv.queue_json() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not srv.queue_json(), srv.log_tail()
    finally:
        sink.close()


def test_stuffing_edge_cases_small(tmp_path, relay_to):
    # Small messages whose only line is a dot, whose last line lacks
    # nothing, and so on: the same path at the smallest sizes.
    sink = StreamSink(False)
    try:
        srv = relay_to(tmp_path, sink)
        bodies = [b"Subject: a\r\n\r\n.\r\n", b"Subject: b\r\n\r\n..\r\n.x\r\n",
                  b"Subject: c\r\n\r\n"]
        for i, body in enumerate(bodies):
            send(srv, body)
            got = sink.wait(i + 1, srv=srv)[i]
            extra = got["size"] - len(body)
            assert got["head"][extra:] == body
    finally:
        sink.close()
