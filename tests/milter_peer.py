#!/usr/bin/env python3
# A mail filter for Tern's milter tests (test_milter.py), built on pymilter,
# which wraps sendmail's own libmilter: what Tern speaks to it is checked by
# the reference implementation of the filter side of the protocol.
#
#   python3 tests/milter_peer.py --socket inet:PORT@127.0.0.1 --record DIR
#   python3 tests/milter_peer.py --socket unix:/path/to/socket --record DIR
#
# What it does is decided by the mail it sees:
#   MAIL FROM local part  milter-reject -> reject, milter-tempfail -> tempfail,
#                         milter-reply -> 553 5.7.1 with a text
#   RCPT TO local part    mreject... -> reject that recipient, mtempfail... ->
#                         tempfail it, mreply... -> 550 5.7.1 with a text
#   X-Test-Action: headers, each one action, done in order at end of message:
#     accept | reject | reply | multiline | tempfail | discard
#     quarantine REASON
#     addheader NAME VALUE | insheader INDEX NAME VALUE
#     chgheader NAME INDEX [VALUE]        (no VALUE deletes the field)
#     replacebody TEXT                    ("\n" in TEXT starts a new line)
#     chgfrom ADDR | addrcpt ADDR | delrcpt ADDR
#     die        the process exits at the first body chunk, without a reply
#     hang       sleeps (--hang-seconds) before going on
#     progress [COUNT [INTERVAL]]  sends progress COUNT times, INTERVAL apart
#   The first of accept, reject, reply, multiline, tempfail and discard ends
#   the list: it is the answer to the end of the message. An action written
#   "@TAG ACTION" is done only by the filter started with --tag TAG (for
#   tests with several filters in a row).
#
# It records what it saw, one JSON file per SMTP connection (rewritten after
# every event, so a test can read it while the filter hangs): the macros of
# each stage, the connect and HELO arguments, and each message's envelope,
# header fields, body, and the filter's verdicts.
import argparse
import json
import os
import sys
import time

import Milter

# The macros asked for at each stage (when the MTA lets a filter choose) and
# recorded there.
STAGE_MACROS = {
    "connect": (Milter.M_CONNECT, ["j", "{daemon_name}", "{client_addr}",
                                   "{client_port}", "{client_name}", "v"]),
    "helo": (Milter.M_HELO, ["{tls_version}", "{cipher}"]),
    "mail": (Milter.M_ENVFROM, ["{mail_addr}", "{auth_type}", "{auth_authen}"]),
    "rcpt": (Milter.M_ENVRCPT, ["{rcpt_addr}"]),
    "data": (Milter.M_DATA, ["{i}"]),
    "eoh": (Milter.M_EOH, ["{i}"]),
    "eom": (Milter.M_EOM, ["{i}"]),
}

VERDICT_NAMES = {
    Milter.CONTINUE: "continue", Milter.ACCEPT: "accept", Milter.REJECT: "reject",
    Milter.TEMPFAIL: "tempfail", Milter.DISCARD: "discard",
}

OPTIONS = None  # the command line, set in main()


def bare(address):
    """`<Local@Domain>` -> `Local@Domain`."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


def local_part(address):
    return bare(address).rsplit("@", 1)[0].lower()


def log(*words):
    print(time.strftime("%H:%M:%S"), os.getpid(), *words, file=sys.stderr, flush=True)


class PeerMilter(Milter.Base):
    def __init__(self):
        self.record = {"seq": Milter.uniqueID(), "pid": os.getpid(), "tag": OPTIONS.tag,
                       "events": [],
                       "connect": None, "helo": None, "messages": [], "closed": False}
        self.path = os.path.join(OPTIONS.record,
                                 f"conn-{os.getpid()}-{self.record['seq']:05d}.json")
        self.msg = None

    # -- recording
    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.record, f, indent=1)
        os.replace(tmp, self.path)

    def event(self, name):
        self.record["events"].append(name)
        log(f"conn {self.record['seq']}: {name}")

    def macros(self, stage):
        out = {}
        for name in STAGE_MACROS[stage][1]:
            value = self.getsymval(name)
            if value is not None:
                out[name] = value
        return out

    def verdict(self, where, rc):
        if self.msg is not None:
            self.msg["verdicts"].append([where, VERDICT_NAMES.get(rc, str(rc))])
        self.save()
        return rc

    # -- negotiation: every action the MTA offers, and the macros above
    def negotiate(self, opts):
        self._actions, offered, _, _ = opts
        self.record["offered"] = {"actions": opts[0], "protocol": offered}
        if self._actions & Milter.SETSYMLIST:
            for stage, names in STAGE_MACROS.values():
                # pymilter's setsymlist() stops at 5 names; libmilter has no
                # such limit (and passes bytes where the context wants a str), so go
                # to the context directly.
                self._ctx.setsymlist(stage, " ".join(names))
        opts[1] = self._protocol = offered & ~self.protocol_mask()
        opts[2] = opts[3] = 0
        self.event("negotiate")
        self.save()
        return Milter.CONTINUE

    # -- callbacks
    def connect(self, hostname, family, hostaddr):
        self.event("connect")
        fam = {2: "inet", 10: "inet6", 1: "unix"}.get(int(family), str(family))
        self.record["connect"] = {"hostname": hostname, "family": fam,
                                  "address": hostaddr, "macros": self.macros("connect")}
        self.save()
        return Milter.CONTINUE

    def hello(self, name):
        self.event("helo")
        self.record["helo"] = {"name": name, "macros": self.macros("helo")}
        self.save()
        return Milter.CONTINUE

    def envfrom(self, sender, *params):
        self.event("mail")
        self.msg = {"mail": sender, "mail_params": list(params), "rcpts": [],
                    "headers": [], "body": "", "macros": {"mail": self.macros("mail")},
                    "verdicts": [], "actions_done": [], "aborted": False}
        self.record["messages"].append(self.msg)
        lp = local_part(sender)
        if lp == "milter-reject":
            return self.verdict("mail", Milter.REJECT)
        if lp == "milter-tempfail":
            return self.verdict("mail", Milter.TEMPFAIL)
        if lp == "milter-reply":
            self.setreply("553", "5.7.1", "Sender refused by the test filter")
            return self.verdict("mail", Milter.REJECT)
        return self.verdict("mail", Milter.CONTINUE)

    def envrcpt(self, rcpt, *params):
        self.event("rcpt")
        self.msg["rcpts"].append({"addr": rcpt, "params": list(params),
                                  "macros": self.macros("rcpt")})
        lp = local_part(rcpt)
        if lp.startswith("mreject"):
            return self.verdict("rcpt " + rcpt, Milter.REJECT)
        if lp.startswith("mtempfail"):
            return self.verdict("rcpt " + rcpt, Milter.TEMPFAIL)
        if lp.startswith("mreply"):
            self.setreply("550", "5.7.1", "Not this one, says the filter")
            return self.verdict("rcpt " + rcpt, Milter.REJECT)
        return self.verdict("rcpt " + rcpt, Milter.CONTINUE)

    def data(self):
        self.event("data")
        self.msg["macros"]["data"] = self.macros("data")
        self.save()
        return Milter.CONTINUE

    def header(self, name, value):
        self.msg["headers"].append([name, value])
        self.save()
        return Milter.CONTINUE

    def eoh(self):
        self.event("eoh")
        self.msg["macros"]["eoh"] = self.macros("eoh")
        self.save()
        return Milter.CONTINUE

    def actions(self):
        out = []
        for name, value in self.msg["headers"]:
            if name.lower() != "x-test-action":
                continue
            value = value.strip()
            if value.startswith("@"):
                tag, _, value = value[1:].partition(" ")
                if tag != OPTIONS.tag:
                    continue
            out.append(value.strip())
        return out

    def body(self, chunk):
        if not self.msg["body"]:
            self.event("body")
        self.msg["body"] += chunk.decode("utf-8", "replace")
        self.save()
        if "die" in self.actions():
            self.die()
        return Milter.CONTINUE

    def die(self):
        log(f"conn {self.record['seq']}: dying as asked")
        os._exit(3)

    def eom(self):
        self.event("eom")
        self.msg["macros"]["eom"] = self.macros("eom")
        self.save()
        for action in self.actions():
            word, _, rest = action.partition(" ")
            word = word.lower()
            rest = rest.strip()
            self.msg["actions_done"].append(action)
            self.save()
            if word == "accept":
                return self.verdict("eom", Milter.ACCEPT)
            if word == "reject":
                return self.verdict("eom", Milter.REJECT)
            if word == "tempfail":
                return self.verdict("eom", Milter.TEMPFAIL)
            if word == "discard":
                return self.verdict("eom", Milter.DISCARD)
            if word == "reply":
                self.setreply("554", "5.7.1", "Spam refused by the test filter")
                return self.verdict("eom", Milter.REJECT)
            if word == "multiline":
                self.setreply("554", "5.7.1", "Spam refused by the test filter,",
                              "which has more to say on a second line")
                return self.verdict("eom", Milter.REJECT)
            if word == "quarantine":
                self.quarantine(rest)
            elif word == "addheader":
                name, _, value = rest.partition(" ")
                self.addheader(name, value)
            elif word == "insheader":
                index, name, value = (rest.split(" ", 2) + ["", ""])[:3]
                self.addheader(name, value, int(index))
            elif word == "chgheader":
                name, index, value = (rest.split(" ", 2) + ["", ""])[:3]
                self.chgheader(name, int(index), value)
            elif word == "replacebody":
                text = rest.replace("\\n", "\r\n") + "\r\n"
                self.replacebody(text.encode("utf-8"))
            elif word == "chgfrom":
                self.chgfrom(rest)
            elif word == "addrcpt":
                self.addrcpt(rest)
            elif word == "delrcpt":
                # The recipient as the MTA gave it to envrcpt, as real
                # filters do.
                seen = [r["addr"] for r in self.msg["rcpts"]
                        if bare(r["addr"]).lower() == bare(rest).lower()]
                self.delrcpt(seen[0] if seen else rest)
            elif word == "die":
                self.die()
            elif word == "hang":
                time.sleep(OPTIONS.hang_seconds)
            elif word == "progress":
                args = rest.split()
                count = int(args[0]) if args else 4
                interval = float(args[1]) if len(args) > 1 else 0.5
                for _ in range(count):
                    time.sleep(interval)
                    self.progress()
            else:
                log(f"conn {self.record['seq']}: unknown action {action!r}")
        return self.verdict("eom", Milter.CONTINUE)

    def abort(self):
        self.event("abort")
        if self.msg is not None:
            self.msg["aborted"] = True
        self.save()
        return Milter.CONTINUE

    def close(self):
        self.event("close")
        self.record["closed"] = True
        self.save()
        return Milter.CONTINUE


def main():
    global OPTIONS
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--socket", required=True,
                   help="libmilter socket: inet:PORT@HOST or unix:/path")
    p.add_argument("--record", required=True, help="directory for the JSON records")
    p.add_argument("--hang-seconds", type=float, default=60.0)
    p.add_argument("--tag", default="", help="this filter's name for @TAG actions")
    OPTIONS = p.parse_args()
    os.makedirs(OPTIONS.record, exist_ok=True)
    Milter.factory = PeerMilter
    log(f"listening on {OPTIONS.socket}, libmilter {Milter.getversion()}")
    Milter.runmilter("tern-test-peer", OPTIONS.socket, timeout=300)
    log("stopped")


if __name__ == "__main__":
    main()
