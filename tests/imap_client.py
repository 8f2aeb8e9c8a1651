# A small raw IMAP client for the tests: exact bytes in and out, literals
# read by their counts, responses split into untagged lines and the tagged
# one. imaplib hides too much (untagged data of other commands, literals
# glued to lines) for checking what the server said and when.
import re
import socket
import ssl
import time

LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n$")


def no_verify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    def __init__(self, port, tls=False, host="127.0.0.1", timeout=15):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = no_verify().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")
        self.n = 0
        self.greeting = self.read_response()

    def starttls(self):
        untagged, tagged = self.cmd("STARTTLS")
        assert tagged.split()[1] == b"OK", tagged
        self.sock = no_verify().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_response(self):
        """One response line with its literals inlined (CRLF kept)."""
        out = b""
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError(f"connection closed; so far {out!r}")
            out += line
            m = LITERAL.search(line)
            if not m:
                return out
            out += self.f.read(int(m.group(1)))

    def tag(self):
        self.n += 1
        return f"T{self.n}"

    def cmd(self, text, tag=None):
        """Sends `tag text`; returns (untagged responses, tagged line)."""
        tag = tag or self.tag()
        self.send(f"{tag} {text}\r\n" if isinstance(text, str) else tag.encode() + b" " + text + b"\r\n")
        return self.collect(tag)

    def collect(self, tag):
        untagged = []
        t = tag.encode() + b" "
        while True:
            r = self.read_response()
            if r.startswith(t):
                return untagged, r
            untagged.append(r)

    def ok(self, text):
        untagged, tagged = self.cmd(text)
        assert tagged.split()[1] == b"OK", (text, tagged, untagged)
        return untagged, tagged

    def login(self, user, password):
        return self.ok(f'LOGIN "{user}" "{password}"')

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def fetch_map(untagged):
    """{seq: response bytes} of the untagged FETCH responses."""
    out = {}
    for r in untagged:
        m = re.match(rb"\* (\d+) FETCH ", r)
        if m:
            out[int(m.group(1))] = r
    return out


def literal_of(response, item):
    """The literal that follows `item` (bytes, e.g. b"BODY[]") in a response."""
    i = response.index(item)
    m = re.compile(rb"~?\{(\d+)\}\r\n").search(response, i)
    n = int(m.group(1))
    return response[m.end():m.end() + n]


def wait_until(fn, timeout=10, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()
