#!/usr/bin/python3
"""A small, fast DNS server for the mail authentication cell: answers the
records of a zone file (JSON, written by mailauth_prep.py) over UDP and TCP
on one loopback address, and counts every question it is asked.

It stands in for the recursive resolver of both servers under test (Tern's
[dns] upstream, OpenDKIM's resolver, and the /etc/resolv.conf that the
Postfix instance sees), so it sets RA and answers with AA. Answers are
encoded once at start; a query costs a dictionary look-up and a copy of
its ID and question. Names outside the zone get NXDOMAIN.

  dnsserver.py serve --zone ZONE.json --address 127.0.53.1 --port 53
  dnsserver.py stats 127.0.53.1 53     # prints the counters as JSON

The counters are read with a TXT query for STATS_NAME (not counted)."""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

STATS_NAME = "counters.dnsbench.invalid"
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
          28: "AAAA", 33: "SRV", 41: "OPT", 255: "ANY"}
TYPE_CODES = {v: k for k, v in QTYPES.items()}


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode("ascii")
            out += bytes([len(b)]) + b
    return out + b"\x00"


def txt_rdata(text):
    """One TXT record: the text cut into strings of at most 255 octets."""
    data = text.encode("ascii")
    out = b""
    for i in range(0, max(len(data), 1), 255):
        chunk = data[i:i + 255]
        out += bytes([len(chunk)]) + chunk
    return out


def rdata(rtype, value):
    if rtype == "TXT":
        return txt_rdata(value)
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, value)
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, value)
    if rtype == "MX":
        pref, host = value.split()
        return struct.pack("!H", int(pref)) + wire_name(host)
    raise ValueError(f"record type {rtype} not supported")


def parse_question(msg):
    """(question bytes, lower-case name, qtype, qclass, end offset) of a query."""
    i = 12
    labels = []
    while True:
        n = msg[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[i + 1:i + 1 + n])
        i += 1 + n
    qtype, qclass = struct.unpack_from("!HH", msg, i)
    i += 4
    name = b".".join(labels).decode("ascii", "replace").lower()
    return msg[12:i], name, qtype, qclass, i


class Zone:
    def __init__(self, spec):
        self.origin = spec["origin"].rstrip(".").lower()
        self.ttl = int(spec.get("ttl", 300))
        # name -> type -> [rdata]
        self.records = {}
        for rec in spec["records"]:
            name = rec["name"].rstrip(".").lower()
            self.records.setdefault(name, {}).setdefault(rec["type"], []).append(
                rdata(rec["type"], rec["value"]))
        soa = spec.get("soa", {})
        self.soa_rdata = (wire_name(soa.get("mname", "ns." + self.origin)) +
                          wire_name(soa.get("rname", "hostmaster." + self.origin)) +
                          struct.pack("!IIIII", 1, 3600, 600, 86400, self.ttl))
        self.cache = {}

    def in_zone(self, name):
        return name == self.origin or name.endswith("." + self.origin)

    def answer_tail(self, name, qtype):
        """(rcode, ancount, nscount, record bytes) for a question; the answer
        records point back at the question's name (offset 12)."""
        key = (name, qtype)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        types = self.records.get(name)
        tname = QTYPES.get(qtype, str(qtype))
        if types is not None and tname in types:
            body = b""
            for rd in types[tname]:
                body += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, self.ttl, len(rd)) + rd
            res = (0, len(types[tname]), 0, body)
        elif self.in_zone(name):
            # NODATA or NXDOMAIN, with the SOA for negative caching (RFC 2308).
            soa = (wire_name(self.origin) + struct.pack("!HHIH", 6, 1, self.ttl, len(self.soa_rdata))
                   + self.soa_rdata)
            res = (0 if types is not None else 3, 0, 1, soa)
        else:
            res = (3, 0, 0, b"")
        self.cache[key] = res
        return res


class Server:
    def __init__(self, zone):
        self.zone = zone
        self.lock = threading.Lock()
        self.total = 0
        self.udp = 0
        self.tcp = 0
        self.by_name = {}
        self.started = time.time()

    def stats(self):
        with self.lock:
            return {"queries": self.total, "udp": self.udp, "tcp": self.tcp,
                    "by_question": {f"{n} {QTYPES.get(t, t)}": c
                                    for (n, t), c in sorted(self.by_name.items())},
                    "uptime_s": round(time.time() - self.started, 1)}

    def respond(self, msg, tcp):
        if len(msg) < 17:
            return None
        try:
            question, name, qtype, qclass, end = parse_question(msg)
        except (ValueError, IndexError, struct.error):
            return None
        qid = msg[0:2]
        flags_in = msg[2]
        rd = flags_in & 0x01
        opcode = (flags_in >> 3) & 0x0F
        if opcode != 0:
            # NOTIMP for anything but a standard query.
            return (qid + bytes([0x80 | (flags_in & 0x79), 0x04]) +
                    struct.pack("!HHHH", 1, 0, 0, 0) + question)
        if name == STATS_NAME:
            text = json.dumps(self.stats(), separators=(",", ":"))
            rd_ = txt_rdata(text)
            body = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 0, len(rd_)) + rd_
            return (qid + bytes([0x84 | rd, 0x80]) + struct.pack("!HHHH", 1, 1, 0, 0) +
                    question + body)
        with self.lock:
            self.total += 1
            if tcp:
                self.tcp += 1
            else:
                self.udp += 1
            k = (name, qtype)
            self.by_name[k] = self.by_name.get(k, 0) + 1
        rcode, an, ns, tail = self.zone.answer_tail(name, qtype)
        arcount = msg[10] << 8 | msg[11]
        opt = b""
        if arcount and msg[end:end + 3] == b"\x00\x00\x29":
            # EDNS(0) asked for: say we take 1232-octet answers, no DO bit.
            opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
        # QR AA (RD copied), RA, rcode.
        head = qid + bytes([0x84 | rd, 0x80 | rcode]) + struct.pack(
            "!HHHH", 1, an, ns, 1 if opt else 0)
        resp = head + question + tail + opt
        if not tcp and len(resp) > 512 and not opt:
            # Truncated: retry over TCP (RFC 1035 4.2.1).
            return qid + bytes([0x86 | rd, 0x80 | rcode]) + struct.pack("!HHHH", 1, 0, 0, 0) + question
        return resp

    def serve_udp(self, sock):
        recv = sock.recvfrom
        send = sock.sendto
        respond = self.respond
        while True:
            try:
                msg, peer = recv(4096)
            except InterruptedError:
                continue
            resp = respond(msg, False)
            if resp is not None:
                try:
                    send(resp, peer)
                except OSError:
                    pass

    def serve_tcp(self, lsock):
        while True:
            conn, _ = lsock.accept()
            threading.Thread(target=self.tcp_conn, args=(conn,), daemon=True).start()

    def tcp_conn(self, conn):
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                while len(buf) < 2:
                    d = conn.recv(4096)
                    if not d:
                        return
                    buf += d
                n = struct.unpack("!H", buf[:2])[0]
                while len(buf) < 2 + n:
                    d = conn.recv(4096)
                    if not d:
                        return
                    buf += d
                msg, buf = buf[2:2 + n], buf[2 + n:]
                resp = self.respond(msg, True)
                if resp is None:
                    return
                conn.sendall(struct.pack("!H", len(resp)) + resp)
        except OSError:
            pass
        finally:
            conn.close()


def serve(args):
    with open(args.zone) as f:
        zone = Zone(json.load(f))
    server = Server(zone)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    udp.bind((args.address, args.port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((args.address, args.port))
    tcp.listen(128)
    threading.Thread(target=server.serve_tcp, args=(tcp,), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"dnsserver: zone {zone.origin} on {args.address}:{args.port} (udp, tcp)",
          file=sys.stderr, flush=True)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))
    server.serve_udp(udp)


def query(address, port, name, qtype, timeout=2.0):
    """One UDP query; returns (rcode, [TXT strings joined per record]) for
    TXT, or the raw answer count for other types."""
    qid = os.urandom(2)
    msg = qid + b"\x01\x00" + struct.pack("!HHHH", 1, 0, 0, 0) + wire_name(name) + \
        struct.pack("!HH", TYPE_CODES.get(qtype, 16), 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (address, port))
        resp, _ = s.recvfrom(65535)
    rcode = resp[3] & 0x0F
    ancount = struct.unpack_from("!H", resp, 6)[0]
    _, _, _, _, i = parse_question(resp)
    texts = []
    for _ in range(ancount):
        # Our own answers use a 2-octet pointer for the name.
        if resp[i] & 0xC0:
            i += 2
        else:
            while resp[i]:
                i += 1 + resp[i]
            i += 1
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", resp, i)
        i += 10
        rd = resp[i:i + rdlen]
        i += rdlen
        if rtype == 16:
            parts, j = [], 0
            while j < len(rd):
                parts.append(rd[j + 1:j + 1 + rd[j]])
                j += 1 + rd[j]
            texts.append(b"".join(parts).decode("ascii", "replace"))
    return rcode, texts


def stats(address, port):
    rcode, texts = query(address, port, STATS_NAME, "TXT")
    if rcode != 0 or not texts:
        raise RuntimeError(f"no counters from {address}:{port} (rcode {rcode})")
    return json.loads(texts[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--zone", required=True)
    s.add_argument("--address", default="127.0.53.1")
    s.add_argument("--port", type=int, default=53)
    s.add_argument("--ready", help="write the pid here once listening")
    st = sub.add_parser("stats")
    st.add_argument("address")
    st.add_argument("port", type=int)
    q = sub.add_parser("query")
    q.add_argument("address")
    q.add_argument("port", type=int)
    q.add_argument("name")
    q.add_argument("type", nargs="?", default="TXT")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args)
    elif args.cmd == "stats":
        print(json.dumps(stats(args.address, args.port), indent=1))
    else:
        rcode, texts = query(args.address, args.port, args.name, args.type)
        print(json.dumps({"rcode": rcode, "txt": texts}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
