#!/usr/bin/python3
"""Set-up of the mail authentication cell: a sender domain with SPF, DKIM
and DMARC records, and DKIM-signed 1 KiB messages from it.

Writes into --dir:
  key.pem        the domain's RSA-2048 signing key (openssl genrsa)
  zone.json      the zone for dnsserver.py: SPF "ip4:127.0.0.0/8 -all" for
                 the domain and for the HELO name, the DKIM key record, and
                 DMARC p=reject with strict alignment
  message.txt    one signed message, LF line ends, for smtp-source -F (which
                 sends every line with CRLF)
  pool/NNNN.eml  --pool distinct signed messages, CRLF, for latency.py
  prep.json      what was made (domain, selector, sizes)

The body is --size bytes (1 KiB by default, like the plain 1 KiB cells);
headers and the DKIM-Signature come on top."""

import argparse
import base64
import json
import os
import subprocess
import sys
import time

try:
    import dkim  # python3-dkim (dkimpy)
except ImportError:
    dkim = None


def make_key(path):
    subprocess.run(["openssl", "genrsa", "-out", path, "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def build(n, args, stamp):
    """One unsigned message, CRLF line ends, --size bytes of body."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    head = (f"From: Bench Sender <{args.sender}>\r\n"
            f"To: <{args.rcpt}>\r\n"
            f"Subject: mail authentication bench {n}\r\n"
            f"Date: {date}\r\n"
            f"Message-ID: <{stamp}.{n}@{args.domain}>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    line = f"message {n:06d} " + "abcdefghijklmnopqrstuvwxyz0123456789" * 2
    line = line[:76] + "\r\n"
    body = line * (args.size // len(line))
    rest = args.size - len(body)
    if rest > 0:
        body += "z" * max(rest - 2, 0) + "\r\n"
    return (head + body).encode("ascii")


def sign(data, args, key):
    sig = dkim.sign(data, args.selector.encode(), args.domain.encode(), key,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"from", b"to", b"subject", b"date",
                                     b"message-id", b"mime-version", b"content-type"])
    return sig + data


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--domain", default="client.test")
    ap.add_argument("--selector", default="bench")
    ap.add_argument("--helo", default="mta.client.test")
    ap.add_argument("--sender", default="sender@client.test")
    ap.add_argument("--rcpt", default="user@bench.test")
    ap.add_argument("--size", type=int, default=1024, help="body bytes")
    ap.add_argument("--pool", type=int, default=200, help="signed messages for latency.py")
    args = ap.parse_args()
    if dkim is None:
        print("mailauth_prep.py: dkimpy missing (Debian package python3-dkim)", file=sys.stderr)
        return 2
    os.makedirs(os.path.join(args.dir, "pool"), exist_ok=True)
    key_path = os.path.join(args.dir, "key.pem")
    record = make_key(key_path)
    with open(key_path, "rb") as f:
        key = f.read()

    spf = "v=spf1 ip4:127.0.0.0/8 -all"
    zone = {"origin": args.domain, "ttl": 3600, "records": [
        {"name": args.domain, "type": "TXT", "value": spf},
        {"name": args.domain, "type": "MX", "value": f"10 {args.helo}"},
        {"name": args.helo, "type": "A", "value": "127.0.0.1"},
        {"name": args.helo, "type": "TXT", "value": spf},
        {"name": f"{args.selector}._domainkey.{args.domain}", "type": "TXT", "value": record},
        {"name": f"_dmarc.{args.domain}", "type": "TXT",
         "value": "v=DMARC1; p=reject; adkim=s; aspf=s"},
    ]}
    with open(os.path.join(args.dir, "zone.json"), "w") as f:
        json.dump(zone, f, indent=1)

    stamp = time.time_ns()
    one = sign(build(0, args, stamp), args, key)
    with open(os.path.join(args.dir, "message.txt"), "wb") as f:
        f.write(one.replace(b"\r\n", b"\n"))
    for n in range(1, args.pool + 1):
        with open(os.path.join(args.dir, "pool", f"{n:04d}.eml"), "wb") as f:
            f.write(sign(build(n, args, stamp), args, key))
    info = {"domain": args.domain, "selector": args.selector, "helo": args.helo,
            "sender": args.sender, "rcpt": args.rcpt, "body_bytes": args.size,
            "message_bytes": len(one), "pool": args.pool, "spf": spf,
            "dmarc": zone["records"][-1]["value"]}
    with open(os.path.join(args.dir, "prep.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
