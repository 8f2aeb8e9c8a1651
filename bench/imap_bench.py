#!/usr/bin/python3
"""IMAP cells of the benchmark: Tern's IMAP server against a private
Dovecot, each on its own copy of the same 10,000-message Maildir, plain
IMAP on loopback (raw sockets, no imaplib: responses are timed to the
tagged OK and every literal is read).

    imap_bench.py populate --maildir DIR [--count 10000] [--info FILE]
    imap_bench.py cell --server NAME --port P --cell CELL --round R --out FILE ...
    imap_bench.py idle --server NAME --port P --pids SPEC --count N --out FILE
    imap_bench.py wake --server NAME --port P (--smtp-port P | --maildir DIR) --out FILE

Cells (one JSON line each in --out):
  select   LOGIN, then the time of SELECT INBOX (the first one builds the
           server's index: run with --round 0 and it is recorded as such)
  fetch    SELECT, then the time of FETCH 1:* (UID FLAGS RFC822.SIZE
           INTERNALDATE ENVELOPE BODYSTRUCTURE) to the tagged OK, every
           untagged FETCH counted
  search   SELECT, then UID SEARCH TEXT <word>; the UIDs' count is recorded
  append   --clients connections APPEND --per-client messages of ~4 KiB
           each to the folder "Append" (synchronizing literals); rate over
           the wall time of all of them
Standard library only."""

import argparse
import base64
import json
import os
import random
import re
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, log, tree_pids  # noqa: E402

USER = "user@bench.test"
PASSWORD = "bench-password"
SEARCH_WORD = "zebrafish"
FETCH_ITEMS = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)"


class ImapError(Exception):
    pass


class Imap:
    """A minimal IMAP client: tagged commands, untagged responses with
    literals, synchronizing literals for APPEND, IDLE."""

    def __init__(self, port, host="127.0.0.1", timeout=600):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.n = 0
        self.bytes_in = 0
        greeting = self.read_line()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting {greeting[:80]!r}")

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ImapError("connection closed by the server")
        self.bytes_in += len(data)
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def read_line(self):
        """One response line with its literals inlined (CRLF removed).
        The buffer is consumed by offset, so a long response costs no
        quadratic copying (the client must not be the bottleneck)."""
        out = b""
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            while i < 0:
                self._fill()
                i = self.buf.find(b"\r\n", self.pos)
            line = bytes(self.buf[self.pos:i])
            self.pos = i + 2
            out += line
            if not line.endswith(b"}"):
                return out
            m = re.search(rb"\{(\d+)\+?\}$", line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) - self.pos < n:
                self._fill()
            out += b"\r\n" + bytes(self.buf[self.pos:self.pos + n])
            self.pos += n

    def send(self, data):
        self.sock.sendall(data)

    def command(self, text, untagged=None):
        """Sends a command; returns (status line, number of untagged lines).
        untagged(line) is called for each untagged line when given."""
        self.n += 1
        tag = b"a%d" % self.n
        self.send(tag + b" " + text.encode() + b"\r\n")
        return self.wait_tagged(tag, untagged)

    def wait_tagged(self, tag, untagged=None):
        count = 0
        while True:
            line = self.read_line()
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise ImapError(f"{line[:200]!r}")
                return line, count
            if line.startswith(b"+"):
                raise ImapError(f"unexpected continuation {line[:80]!r}")
            count += 1
            if untagged:
                untagged(line)

    def login(self):
        self.command(f'LOGIN "{USER}" "{PASSWORD}"')

    def append(self, folder, msg):
        self.n += 1
        tag = b"a%d" % self.n
        self.send(tag + b" APPEND " + folder.encode() + b" {%d}\r\n" % len(msg))
        line = self.read_line()
        if not line.startswith(b"+"):
            raise ImapError(f"APPEND: {line[:200]!r}")
        self.send(msg + b"\r\n")
        return self.wait_tagged(tag)

    def close(self):
        try:
            self.send(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()


# --- the Maildir -------------------------------------------------------------

FIRST = ["Anna", "Bernd", "Chloé", "Dmitri", "Élodie", "Farid", "Greta", "Hiroshi",
         "Ingrid", "José", "Kai", "Lena", "Miguel", "Noor", "Olaf", "Priya", "Quentin",
         "Rosa", "Søren", "Tomasz", "Uma", "Viktor", "Wen", "Xavier", "Yusuf", "Zoë"]
LAST = ["Müller", "Smith", "Dubois", "Kowalski", "Tanaka", "García", "Jensen", "Nguyen",
        "Rossi", "Novák", "Öztürk", "Brown", "Silva", "Larsen", "Ivanova"]
DOMAINS = ["example.com", "mail.example.org", "lists.example.net", "corp.example",
           "university.example.edu", "shop.example"]
WORDS = ("the of and to in is that for it as with was on be by this are from at or an have "
         "not they which one you had were but all we can her has there been if more when will "
         "would who so no meeting project report budget schedule review draft invoice release "
         "server deploy customer contract quarter team update question answer monday friday "
         "attached please thanks regards version build test result issue ticket change plan "
         "design proposal deadline office travel lunch call notes summary agenda").split()
SUBJECTS = ["Meeting notes", "Re: Budget for next quarter", "Invoice {n}", "Release {n} is out",
            "Fwd: Travel plans", "Question about the contract", "Weekly report", "Re: Re: lunch?",
            "[dev] build failure on main", "Your order {n} has shipped", "Agenda for Monday",
            "Draft proposal v{n}", "Re: Ticket #{n}"]
ENC_SUBJECTS = ["Grüße aus München", "Réunion de l'équipe", "Привет из Москвы", "会議の議事録",
                "Ελληνικά νέα", "Año nuevo, vida nueva", "Ça marche très bien"]


def enc_word(text, rng):
    raw = text.encode()
    if rng.random() < 0.5:
        return "=?UTF-8?B?" + base64.b64encode(raw).decode() + "?="
    q = "".join(chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else
                "_" if b == 32 else f"={b:02X}" for b in raw)
    return "=?UTF-8?Q?" + q + "?="


def addr(rng, encoded=False):
    f, l = rng.choice(FIRST), rng.choice(LAST)
    local = (f + "." + l).lower().encode("ascii", "ignore").decode() or "someone"
    email = f"{local}@{rng.choice(DOMAINS)}"
    name = f"{f} {l}"
    if not name.isascii() or encoded:
        return f"{enc_word(name, rng)} <{email}>"
    return f'"{name}" <{email}>'


def paragraph(rng, words, word=False):
    w = [rng.choice(WORDS) for _ in range(words)]
    if word:
        w.insert(rng.randrange(len(w)), SEARCH_WORD)
    lines, line = [], []
    for x in w:
        line.append(x)
        if len(line) >= 12:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def b64_lines(data):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + 76] for i in range(0, len(s), 76)) + "\n"


def make_message(i, rng, when):
    """One message with LF line ends (as Tern's Maildir delivery writes them)."""
    kind = rng.random()
    has_word = rng.random() < 0.02
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))
    subj = rng.choice(SUBJECTS).format(n=rng.randrange(100, 9999))
    if rng.random() < 0.08:
        subj = enc_word(rng.choice(ENC_SUBJECTS), rng)
    hdr = [f"Return-Path: <bounce-{i}@{rng.choice(DOMAINS)}>",
           f"Delivered-To: {USER}",
           f"Received: from mta{rng.randrange(1, 9)}.example.net (mta.example.net [192.0.2.{rng.randrange(1, 250)}])\n"
           f"\tby mx.bench.test (Tern) with ESMTPS id {i:08x}; {date}",
           f"Received: from [10.0.0.{rng.randrange(1, 250)}] by mta.example.net; {date}",
           f"Date: {date}",
           f"From: {addr(rng, rng.random() < 0.05)}",
           f"To: {addr(rng)}" + (f", {addr(rng)}" if rng.random() < 0.3 else ""),
           ]
    if rng.random() < 0.25:
        hdr.append(f"Cc: {addr(rng)}")
    hdr.append(f"Subject: {subj}")
    hdr.append(f"Message-ID: <{i}.{rng.randrange(10**9)}@{rng.choice(DOMAINS)}>")
    if rng.random() < 0.4:
        hdr.append(f"In-Reply-To: <{rng.randrange(i + 1)}.prev@{rng.choice(DOMAINS)}>")
    if rng.random() < 0.2:
        hdr.append(f"List-Id: <dev.lists.example.net>")
    hdr.append("MIME-Version: 1.0")
    body_words = rng.choice([40, 80, 150, 300, 600, 1200])
    if kind < 0.55:  # plain text, 7bit or quoted-printable
        if rng.random() < 0.7:
            hdr += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
            body = paragraph(rng, body_words, has_word)
        else:
            hdr += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"]
            body = paragraph(rng, body_words, has_word).replace("the", "th=C3=A9", 3)
    elif kind < 0.80:  # multipart/alternative: text and HTML
        b = f"=_alt_{i}"
        text = paragraph(rng, body_words, has_word)
        html = "<html><body><p>" + paragraph(rng, body_words).replace("\n", "</p>\n<p>") + "</p></body></html>\n"
        hdr.append(f'Content-Type: multipart/alternative; boundary="{b}"')
        body = (f"--{b}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n{text}\n"
                f"--{b}\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{html}\n"
                f"--{b}--\n")
    elif kind < 0.96:  # multipart/mixed with one or two base64 attachments
        b = f"=_mix_{i}"
        hdr.append(f'Content-Type: multipart/mixed; boundary="{b}"')
        body = (f"This is a multi-part message in MIME format.\n\n--{b}\n"
                f"Content-Type: text/plain; charset=utf-8\n\n{paragraph(rng, body_words // 2, has_word)}\n")
        for _ in range(rng.choice([1, 1, 2])):
            ext, ctype = rng.choice([("pdf", "application/pdf"), ("png", "image/png"),
                                     ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                                     ("zip", "application/zip")])
            size = rng.choice([2000, 6000, 15000, 40000, 90000])
            fname = rng.choice(["report", "scan", "Übersicht", "invoice", "photo"]) + f"_{i}.{ext}"
            disp = (f'attachment; filename="{fname}"' if fname.isascii() else
                    f"attachment; filename*=UTF-8''{''.join('%%%02X' % c for c in fname.encode())}")
            body += (f"--{b}\nContent-Type: {ctype}; name=\"{fname if fname.isascii() else 'file.' + ext}\"\n"
                     f"Content-Disposition: {disp}\nContent-Transfer-Encoding: base64\n\n"
                     f"{b64_lines(rng.randbytes(size))}\n")
        body += f"--{b}--\n"
    else:  # a forwarded message (message/rfc822 inside multipart/mixed)
        b = f"=_fwd_{i}"
        inner = (f"Date: {date}\nFrom: {addr(rng)}\nTo: {addr(rng)}\nSubject: {rng.choice(SUBJECTS).format(n=i)}\n"
                 f"Message-ID: <inner.{i}@example.com>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
                 f"{paragraph(rng, body_words, has_word)}")
        hdr.append(f'Content-Type: multipart/mixed; boundary="{b}"')
        body = (f"--{b}\nContent-Type: text/plain; charset=us-ascii\n\nForwarded message below.\n\n"
                f"--{b}\nContent-Type: message/rfc822\n\n{inner}\n--{b}--\n")
    return ("\n".join(hdr) + "\n\n" + body).encode(), has_word


def populate(args):
    md = args.maildir
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    rng = random.Random(args.seed)
    now = int(time.time())
    start = now - 3 * 365 * 86400
    total = 0
    words = 0
    kinds = {}
    for i in range(args.count):
        when = start + (now - start - 3600) * i // args.count + rng.randrange(3600)
        msg, has_word = make_message(i, rng, when)
        words += has_word
        total += len(msg)
        # An old mailbox: every file in cur/, most of them read.
        flags = rng.choices(["S", "", "FS", "RS"], [70, 20, 5, 5])[0]
        name = f"{when}.M{i}P1Q{i}.mx.bench.test,S={len(msg)}:2,{flags}"
        path = os.path.join(md, "cur", name)
        with open(path, "wb") as f:
            f.write(msg)
        os.utime(path, (when, when))
    info = {"messages": args.count, "bytes": total, "with_word": words, "word": SEARCH_WORD,
            "seed": args.seed}
    log(f"populated {md}: {args.count} messages, {total / 1e6:.1f} MB, "
        f"{words} contain '{SEARCH_WORD}'")
    if args.info:
        with open(args.info, "w") as f:
            json.dump(info, f)


# --- cells -------------------------------------------------------------------

def append_message(i, rng):
    body = paragraph(rng, 660)  # ~4 KiB with the header
    msg = (f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
           f"From: {addr(rng)}\r\nTo: <{USER}>\r\nSubject: appended message {i}\r\n"
           f"Message-ID: <append.{i}.{rng.randrange(10**9)}@bench.test>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body.replace("\n", "\r\n"))
    return msg.encode()


def select(c, folder="INBOX"):
    exists = []

    def untagged(line):
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            exists.append(int(m.group(1)))
    c.command(f"SELECT {folder}", untagged)
    return exists[-1] if exists else None


def run_cell(args):
    rec = {"server": args.server, "cell": args.cell, "round": args.round,
           "first": args.round == 0, "ok": False}
    t_all = time.monotonic()
    cpu = {}

    def mark():   # the start of the timed part: server CPU from here
        if args.cpu:
            cpu["0"] = cpu_seconds(args.cpu)
        return time.monotonic()

    def done():   # its end
        if args.cpu:
            rec["server_cpu"] = round(cpu_seconds(args.cpu) - cpu["0"], 3)
        return time.monotonic()
    try:
        if args.cell == "select":
            c = Imap(args.port)
            c.login()
            t0 = mark()
            n = select(c)
            rec["secs"] = done() - t0
            rec["exists"] = n
            c.close()
            rec["ok"] = n == args.expect if args.expect else n is not None
            if not rec["ok"]:
                rec["error"] = f"EXISTS {n}, expected {args.expect}"
        elif args.cell == "fetch":
            c = Imap(args.port)
            c.login()
            n = select(c)
            b0 = c.bytes_in
            fetches = [0]
            bad = []

            def untagged(line):
                if b" FETCH (" in line[:20]:
                    fetches[0] += 1
                    if b"BODYSTRUCTURE (" not in line or b"ENVELOPE (" not in line:
                        bad.append(line[:200])
            t0, p0 = mark(), time.process_time()
            c.command(f"FETCH 1:* {FETCH_ITEMS}", untagged)
            rec["secs"] = done() - t0
            rec["client_cpu"] = time.process_time() - p0
            rec["bytes"] = c.bytes_in - b0
            rec["fetched"] = fetches[0]
            rec["exists"] = n
            c.close()
            rec["ok"] = fetches[0] == n and not bad
            if not rec["ok"]:
                rec["error"] = f"{fetches[0]} FETCH responses for {n} messages; {len(bad)} incomplete: {bad[:2]!r}"
        elif args.cell == "search":
            c = Imap(args.port)
            c.login()
            select(c)
            uids = []

            def untagged(line):
                if line.startswith(b"* SEARCH"):
                    uids.extend(line.split()[2:])
            t0 = mark()
            c.command(f"UID SEARCH TEXT {SEARCH_WORD}", untagged)
            rec["secs"] = done() - t0
            rec["hits"] = len(uids)
            c.close()
            rec["ok"] = args.expect is None or len(uids) == args.expect
            if not rec["ok"]:
                rec["error"] = f"{len(uids)} UIDs, expected {args.expect}"
        elif args.cell == "append":
            rng = random.Random(args.round * 1000 + 7)
            msgs = [append_message(i, rng) for i in range(args.clients * args.per_client)]
            rec["message_bytes"] = int(statistics.mean(len(m) for m in msgs))
            before = status_messages(args.port, "Append")
            conns = []
            for _ in range(args.clients):
                c = Imap(args.port)
                c.login()
                conns.append(c)
            errors = []
            barrier = threading.Barrier(args.clients + 1)

            def worker(k):
                barrier.wait()
                try:
                    for j in range(args.per_client):
                        conns[k].append("Append", msgs[k * args.per_client + j])
                except Exception as e:  # noqa: BLE001
                    errors.append(f"client {k}: {e}")
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
            for t in threads:
                t.start()
            t0 = mark()
            barrier.wait()
            for t in threads:
                t.join()
            secs = done() - t0
            for c in conns:
                c.close()
            after = status_messages(args.port, "Append")
            count = args.clients * args.per_client
            rec.update({"secs": secs, "messages": count, "clients": args.clients,
                        "rate": count / secs, "folder_before": before, "folder_after": after})
            rec["ok"] = not errors and after - before == count
            if not rec["ok"]:
                rec["error"] = f"errors {errors[:3]}; folder grew by {after - before}, sent {count}"
        else:
            raise SystemExit(f"unknown cell {args.cell}")
    except (OSError, ImapError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    rec["wall"] = time.monotonic() - t_all
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    what = (f"{rec.get('rate', 0):.0f} msgs/s" if args.cell == "append"
            else f"{rec.get('secs', 0) * 1000:.1f} ms")
    log(f"imap {args.server} {args.cell}{' (first)' if rec['first'] else ''} round {args.round}: "
        f"{what}{'' if rec['ok'] else ' FAILED: ' + rec.get('error', '')}")
    return 0 if rec["ok"] else 1


def status_messages(port, folder):
    c = Imap(port)
    c.login()
    got = []

    def untagged(line):
        m = re.search(rb"MESSAGES (\d+)", line)
        if m:
            got.append(int(m.group(1)))
    c.command(f"STATUS {folder} (MESSAGES)", untagged)
    c.close()
    return got[0]


def setup(args):
    """Creates the folder APPEND writes to (once per server)."""
    c = Imap(args.port)
    c.login()
    caps = []
    c.command("CAPABILITY", lambda line: caps.append(line.decode(errors="replace")))
    c.command("CREATE Append")
    c.close()
    log(f"imap {args.server}: {caps[0][:300] if caps else '?'}")
    return 0


# --- memory of idle connections ------------------------------------------------

def procs_of(spec):
    """pid:N -> [N]; tree:N -> N and its live descendants."""
    kind, _, arg = spec.partition(":")
    return [int(arg)] if kind == "pid" else tree_pids(int(arg))


def memory(spec):
    """(processes, sum of VmRSS KiB, sum of Pss KiB)."""
    n = rss = pss = 0
    for p in procs_of(spec):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            n += 1
        except OSError:
            continue
    return n, rss, pss


def idle(args):
    conns = []
    errors = []
    lock = threading.Lock()
    todo = list(range(args.count))

    deadline = [0.0]

    def opener():
        while True:
            with lock:
                if not todo or len(errors) > 20 or time.monotonic() > deadline[0]:
                    return
                todo.pop()
            try:
                c = Imap(args.port, timeout=300)
                c.login()
                select(c, args.folder)
                c.n += 1
                c.send(b"i IDLE\r\n")
                line = c.read_line()
                if not line.startswith(b"+"):
                    raise ImapError(f"IDLE: {line[:80]!r}")
                with lock:
                    conns.append(c)
            except (OSError, ImapError) as e:
                with lock:
                    errors.append(str(e))
    time.sleep(args.settle)
    before = memory(args.pids)
    log(f"imap {args.server} idle: {before[0]} processes, RSS {before[1]} KiB, PSS {before[2]} KiB before; "
        f"opening {args.count} connections (LOGIN, SELECT {args.folder}, IDLE)")
    t0 = time.monotonic()
    deadline[0] = t0 + args.open_timeout

    def open_until(left):
        # Leaves `left` connections in `todo` for a later call.
        keep = todo[:left]
        del todo[:left]
        threads = [threading.Thread(target=opener) for _ in range(args.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        todo.extend(keep)

    # Half the connections, then the rest: the memory per connection is
    # the difference between the two, both taken in the steady state a
    # server reaches with connections in IDLE (a server that gives freed
    # heap back when sessions go idle would otherwise show its own
    # leftovers from the cells before as negative figures).
    open_until(args.count - args.count // 2)
    time.sleep(args.settle)
    half = memory(args.pids)
    n_half = len(conns)
    open_until(0)
    open_secs = time.monotonic() - t0
    time.sleep(args.settle)
    during = memory(args.pids)
    n = len(conns)
    for c in conns:
        try:
            c.send(b"DONE\r\n")
        except OSError:
            pass
        c.sock.close()
    time.sleep(args.settle)
    after = memory(args.pids)
    if n < args.count and not errors:
        errors.append(f"only {n} of {args.count} connections in IDLE after {args.open_timeout:.0f} s")
    rec = {"server": args.server, "connections": n, "requested": args.count, "folder": args.folder,
           "open_secs": round(open_secs, 2), "open_timeout": args.open_timeout,
           "procs_before": before[0], "procs_idle": during[0], "procs_after": after[0],
           "rss_before_kib": before[1], "rss_idle_kib": during[1], "rss_after_kib": after[1],
           "pss_before_kib": before[2], "pss_idle_kib": during[2], "pss_after_kib": after[2],
           "rss_half_kib": half[1], "pss_half_kib": half[2], "connections_half": n_half,
           "rss_per_conn_kib": (during[1] - half[1]) / (n - n_half) if n > n_half else None,
           "pss_per_conn_kib": (during[2] - half[2]) / (n - n_half) if n > n_half else None,
           "rss_per_conn_from_start_kib": (during[1] - before[1]) / n if n else None,
           "errors": len(errors), "error_examples": errors[:5]}
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    log(f"imap {args.server} idle: {n} connections in IDLE after {open_secs:.1f} s: {during[0]} processes, "
        f"RSS {during[1]} KiB ({rec['rss_per_conn_kib'] or 0:.1f} KiB/conn), PSS {during[2]} KiB "
        f"({rec['pss_per_conn_kib'] or 0:.1f} KiB/conn); {len(errors)} errors {errors[:2]}")
    return 0 if n == args.count and not errors else 1


# --- wake-up latency ---------------------------------------------------------------

class Smtp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        self.reply()
        self.cmd(b"EHLO client.bench.test")

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise ImapError("SMTP connection closed")
            if line[3:4] != b"-":
                if line[:1] not in (b"2", b"3"):
                    raise ImapError(f"SMTP {line!r}")
                return line

    def cmd(self, line):
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def send(self, msg):
        self.cmd(b"MAIL FROM:<sender@client.test>")
        self.cmd(b"RCPT TO:<" + USER.encode() + b">")
        self.cmd(b"DATA")
        self.sock.sendall(msg + b"\r\n.\r\n")
        return self.reply()


def wake(args):
    c = Imap(args.port)
    c.login()
    n = select(c, "INBOX")
    c.send(b"i IDLE\r\n")
    if not c.read_line().startswith(b"+"):
        raise ImapError("IDLE refused")
    smtp = Smtp(args.smtp_port) if args.smtp_port else None
    rng = random.Random(5)
    samples, errors = [], []
    own = None
    if args.maildir and args.owner:
        own = tuple(int(x) for x in args.owner.split(":"))
    for i in range(args.samples):
        time.sleep(rng.uniform(args.gap_min, args.gap_max))
        msg = append_message(100000 + i, rng)
        if smtp:
            smtp.send(msg)
            t0 = time.monotonic()   # the 250 after the final dot
        else:
            # Delivery as an MDA does it: a file in tmp/, flushed, renamed into new/.
            t0 = time.monotonic()   # before the file is written
            name = f"{int(time.time())}.M{i}P{os.getpid()}.bench,S={len(msg)}"
            tmp = os.path.join(args.maildir, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(msg.replace(b"\r\n", b"\n"))
                f.flush()
                os.fsync(f.fileno())
                if own:
                    os.fchown(f.fileno(), *own)
            os.rename(tmp, os.path.join(args.maildir, "new", name))
        want = n + i + 1
        c.sock.settimeout(args.timeout)
        try:
            while True:
                line = c.read_line()
                m = re.match(rb"\* (\d+) EXISTS", line)
                if m and int(m.group(1)) >= want:
                    break
            samples.append((time.monotonic() - t0) * 1000)
        except (OSError, ImapError) as e:
            errors.append(f"message {i}: no EXISTS within {args.timeout} s ({e})")
            break
    c.send(b"DONE\r\n")
    c.close()

    def pct(p):
        s = sorted(samples)
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else None
    rec = {"server": args.server, "samples": len(samples), "method": "smtp" if smtp else "maildir",
           "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": max(samples, default=None),
           "min_ms": min(samples, default=None), "errors": len(errors), "error_examples": errors[:3]}
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    log(f"imap {args.server} wake ({rec['method']}): {len(samples)} samples, p50 {rec['p50_ms'] or 0:.1f} ms, "
        f"p99 {rec['p99_ms'] or 0:.1f} ms, max {rec['max_ms'] or 0:.1f} ms; errors {errors[:1]}")
    return 0 if not errors else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("populate")
    p.add_argument("--maildir", required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--info")
    p = sub.add_parser("setup")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("cell")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cell", required=True, choices=["select", "fetch", "search", "append"])
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--expect", type=int, help="EXISTS (select) or UIDs found (search)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=100)
    p.add_argument("--cpu")
    p.add_argument("--out", required=True)
    p = sub.add_parser("idle")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pids", required=True, help="pid:N (one process) or tree:N (N and descendants)")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--folder", default="INBOX")
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--open-timeout", type=float, default=300.0,
                   help="stop opening more connections after this many seconds")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("wake")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--smtp-port", type=int)
    p.add_argument("--maildir")
    p.add_argument("--owner", help="uid:gid of the delivered files (Maildir delivery)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--gap-min", type=float, default=0.02)
    p.add_argument("--gap-max", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.what == "populate":
        populate(args)
        return 0
    if args.what == "setup":
        return setup(args)
    if args.what == "cell":
        return run_cell(args)
    if args.what == "idle":
        return idle(args)
    return wake(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
