"""Helpers shared by the benchmark scripts: logging, CPU accounting of a
server (one pid, a process tree, or a cgroup) and Maildir message counts.
Standard library only; run with /usr/bin/python3."""

import json
import math
import os
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _stat(pid):
    """Fields of /proc/PID/stat after the command name, which may itself
    hold spaces or parentheses. Index 0 is field 3 (state) of proc(5)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def _ppid_utime_stime(pid):
    f = _stat(pid)
    return int(f[1]), int(f[11]), int(f[12]), int(f[13]), int(f[14])


def pid_alive(pid):
    try:
        return _stat(pid)[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False


def _tree_ticks(root):
    """utime+stime of root and all its live descendants, plus what root has
    reaped from exited children (cutime+cstime)."""
    children = {}
    times = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid, ut, st, cut, cst = _ppid_utime_stime(int(name))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        pid = int(name)
        children.setdefault(ppid, []).append(pid)
        times[pid] = (ut + st, cut + cst)
    if root not in times:
        raise RuntimeError(f"process {root} is gone")
    total = times[root][1]
    todo = [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, (0, 0))[0]
        todo.extend(children.get(pid, []))
    return total


def cpu_seconds(spec):
    """CPU seconds used so far by what `spec` names:
      pid:N        one process (all its threads) and its reaped children
      tree:N       process N and every live descendant (+ reaped children)
      cg2:DIR      a cgroup v2 directory (cpu.stat usage_usec)
      cg1:DIR      a cgroup v1 cpuacct directory (cpuacct.usage)
      none         not measured (returns None)
    Several specs joined with "+" are added up (a Postfix instance and
    the milters it calls)."""
    if "+" in spec:
        parts = [cpu_seconds(s) for s in spec.split("+")]
        return None if any(p is None for p in parts) else sum(parts)
    kind, _, arg = spec.partition(":")
    if kind == "none" or not kind:
        return None
    if kind == "pid":
        _, ut, st, cut, cst = _ppid_utime_stime(int(arg))
        return (ut + st + cut + cst) / CLK_TCK
    if kind == "tree":
        return _tree_ticks(int(arg)) / CLK_TCK
    if kind == "cg2":
        with open(os.path.join(arg, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
        raise RuntimeError(f"no usage_usec in {arg}/cpu.stat")
    if kind == "cg1":
        with open(os.path.join(arg, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9
    raise ValueError(f"unknown cpu spec {spec!r}")


def cpu_by_name(spec):
    """CPU seconds of the live processes a cg2:/cg1: spec holds, added up by
    process name (smtpd, cleanup, opendkim, policyd-spf, ...); {} for
    other specs. Processes that have exited are missing: an estimate of
    where the time goes, not an account."""
    out = {}
    for part in spec.split("+"):
        kind, _, arg = part.partition(":")
        if kind not in ("cg2", "cg1"):
            continue
        try:
            with open(os.path.join(arg, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    s = f.read()
                name = s[s.index("(") + 1:s.rindex(")")]
                fields = s[s.rindex(")") + 2:].split()
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
            except (OSError, ValueError, IndexError):
                continue
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def status_kib(pid, key):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...); None when the
    process is gone or has no such field."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _files(d):
    try:
        return [e.path for e in os.scandir(d) if e.is_file() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []


def maildir_count(path):
    """Messages delivered to a Maildir (new/ and cur/)."""
    return sum(len(_files(os.path.join(path, sub))) for sub in ("new", "cur"))


def maildir_names(path):
    """Names (sub/file) of the messages in a Maildir."""
    return {sub + "/" + os.path.basename(p) for sub in ("new", "cur")
            for p in _files(os.path.join(path, sub))}


AUTH_METHODS = ("spf", "dkim", "dmarc")


def auth_results(path):
    """The results an Authentication-Results header (or several, one per
    milter) of a delivered message records: {"spf": "pass", ...} plus
    "headers": how many such headers there were."""
    import re
    with open(path, "rb") as f:
        head = f.read(65536).replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    text = re.sub(rb"\n[ \t]+", b" ", head).decode("latin-1")
    out = {"headers": 0}
    for line in text.split("\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() != "authentication-results":
            continue
        out["headers"] += 1
        for m in re.finditer(r"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)", value, re.I):
            out.setdefault(m.group(1).lower(), m.group(2).lower())
    return out


def auth_summary(path, names):
    """Counts over the messages `names` of Maildir `path`: with at least one
    Authentication-Results header, and with spf, dkim and dmarc all pass."""
    n = headers = passed = 0
    example = None
    for name in sorted(names):
        try:
            r = auth_results(os.path.join(path, name))
        except FileNotFoundError:
            continue
        n += 1
        headers += r["headers"] > 0
        ok = all(r.get(m) == "pass" for m in AUTH_METHODS)
        passed += ok
        if not ok and example is None:
            example = r
    return {"checked": n, "with_ar": headers, "all_pass": passed, "failed_example": example}


def header_values(path, name):
    """The values of header `name` (unfolded) in a delivered message."""
    import re
    with open(path, "rb") as f:
        head = f.read(65536).replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    text = re.sub(rb"\n[ \t]+", b" ", head).decode("latin-1")
    want = name.lower()
    return [v.strip() for n, _, v in (line.partition(":") for line in text.split("\n"))
            if n.strip().lower() == want]


def header_summary(path, names, name):
    """Counts over the messages `names` of Maildir `path`: how many carry
    header `name`; the first value seen, and the first message without it."""
    n = found = 0
    example = missing = None
    for m in sorted(names):
        try:
            vals = header_values(os.path.join(path, m), name)
        except FileNotFoundError:
            continue
        n += 1
        if vals:
            found += 1
            if example is None:
                example = vals[0][:200]
        elif missing is None:
            missing = m
    return {"checked": n, "with_header": found, "example": example, "missing_example": missing}


def maildir_move(path, dest):
    """Moves delivered messages out of the way (into dest, same file
    system). Unlike deleting, this frees no inodes: on ext4 without a
    journal, inodes freed in the last minutes make every later file
    creation scan past them (recently_deleted()), which would slow the
    next server's run."""
    os.makedirs(dest, exist_ok=True)
    for sub in ("new", "cur"):
        for p in _files(os.path.join(path, sub)):
            try:
                os.rename(p, os.path.join(dest, sub + "." + os.path.basename(p)))
            except FileNotFoundError:
                pass


def maildir_clear(path):
    for sub in ("new", "cur"):
        for p in _files(os.path.join(path, sub)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def append_jsonl(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_vals))
    return sorted_vals[max(0, min(len(sorted_vals), rank) - 1)]


def wait_smtp(host, port, timeout, greeting=b"220", bye=b"QUIT\r\n"):
    """Waits until HOST:PORT answers with a 220 greeting (or `greeting`:
    b"* OK" for IMAP); True on success."""
    import socket
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(max(0.5, min(5, deadline - time.monotonic())))
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(greeting):
                    try:
                        s.sendall(bye)
                        s.recv(512)
                    except OSError:
                        pass
                    return True
                last = data[:100].decode("latin-1")
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    log(f"no {greeting.decode()} greeting from {host}:{port} within {timeout:.0f} s ({last.strip()})")
    return False


def port_free(host, port):
    """True when nothing listens on HOST:PORT (we could bind it)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def udp_port_free(host, port):
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def fsync_probe(directory, n=50):
    """What one flush costs on this disk: create a 4 KiB file and fsync it;
    n times. Returns (p50_ms, p99_ms, max_ms). The
    files stay (they go with the temp dir): freeing inodes now would slow
    later file creation on ext4 without a journal."""
    os.makedirs(directory, exist_ok=True)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    times = []
    try:
        for i in range(n):
            fd = os.open(os.path.join(directory, f"probe{i}"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"x" * 4096)
                t = time.perf_counter()
                os.fsync(fd)
                times.append((time.perf_counter() - t) * 1000)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)
    times.sort()
    return percentile(times, 50), percentile(times, 99), times[-1]


def tree_pids(root):
    """ROOT and its live descendants."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(_ppid_utime_stime(int(name))[0], []).append(int(name))
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _main(argv):
    """Small command line for run.sh: wait-smtp HOST PORT SECS | cpu SPEC |
    count MAILDIR | rss PID | port-free HOST PORT | udp-port-free HOST PORT |
    fsync-probe DIR | auth-check MAILDIR | wait-imap HOST PORT SECS |
    tree-pids PID"""
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "fsync-probe":
        p50, p99, mx = fsync_probe(argv[2])
        print(f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {mx:.2f} ms")
        return 0
    if cmd == "port-free":
        return 0 if port_free(argv[2], int(argv[3])) else 1
    if cmd == "udp-port-free":
        return 0 if udp_port_free(argv[2], int(argv[3])) else 1
    if cmd == "auth-check":
        # auth-check MAILDIR: one line of JSON, exit 1 unless every message passed.
        names = maildir_names(argv[2])
        r = auth_summary(argv[2], names)
        print(json.dumps(r))
        return 0 if r["checked"] and r["all_pass"] == r["checked"] else 1
    if cmd == "wait-smtp":
        return 0 if wait_smtp(argv[2], int(argv[3]), float(argv[4])) else 1
    if cmd == "wait-imap":
        return 0 if wait_smtp(argv[2], int(argv[3]), float(argv[4]), b"* OK", b"a LOGOUT\r\n") else 1
    if cmd == "tree-pids":
        print(" ".join(str(p) for p in tree_pids(int(argv[2]))))
        return 0
    if cmd == "cpu":
        print(cpu_seconds(argv[2]))
        return 0
    if cmd == "count":
        print(maildir_count(argv[2]))
        return 0
    if cmd == "rss":
        print(rss_kib(int(argv[2])))
        return 0
    print(_main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
