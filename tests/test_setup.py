# `tern setup DOMAIN` and `tern check dns DOMAIN` (issue 16), against the
# real binary. The zone text that setup prints is parsed with dnspython
# (python3-dnspython); the check tests serve exactly its published records
# (or a damaged copy) from a python3-dnslib server on 127.0.0.1, the
# configuration's [dns] upstream, and read what the check reports.
import base64
import os
import re
import stat
import subprocess
import time

import pytest
from dnslib import AAAA, MX, QTYPE, SRV, TXT, A

import conftest
from conftest import TernServer, free_port
from faultkit import start_dns, stop_dns

try:
    import dns.rdatatype
    import dns.reversename
    import dns.zone
except ImportError:  # pragma: no cover
    dns = None

DOMAIN = "new.test"
HOST = "mx.new.test"
IP4 = "192.0.2.7"
IP6 = "2001:db8::7"
REPORTS = "dmarc@reports.test"
ARGS = ("--hostname", HOST, "--ip", IP4, "--ip", IP6, "--report-to", REPORTS)

# Client listeners and the SRV owner label of each (RFC 6186, RFC 8314);
# ports that are nobody's default, so the records must come from the
# configuration. No pop3 listener: no _pop3._tcp record.
SERVICES = {
    "submission": ("_submission._tcp", 15870),
    "submissions": ("_submissions._tcp", 14650),
    "imap": ("_imap._tcp", 11430),
    "imaps": ("_imaps._tcp", 19930),
    "pop3s": ("_pop3s._tcp", 19950),
}


@pytest.fixture(autouse=True, scope="module")
def _need_dnspython():
    if dns is None:
        pytest.fail("dnspython is not installed: install the Debian package "
                    "python3-dnspython (scripts/deps.sh test does)", pytrace=False)


def make_config(base, upstream="127.0.0.1:9"):
    """A configuration (the server is never started: the commands only
    read it) with the client listeners above."""
    listen = [(f"127.0.0.1:{port}", service) for service, (_, port) in SERVICES.items()]
    return TernServer(base, extra_listen=listen, sections={
        "tls": {"self_signed": True}, "dns": {"upstream": [upstream]}})


def domains_line(srv):
    lines = [ln for ln in srv.config_path.read_text().splitlines()
             if ln.startswith("domains")]
    assert len(lines) == 1, lines
    return lines[0]


def configured_domains(srv):
    return re.findall(r'"([^"]*)"', domains_line(srv))


def key_files(srv, domain=DOMAIN):
    return key_files_in(srv.data_dir, domain)


def key_files_in(data_dir, domain=DOMAIN):
    d = data_dir / "dkim" / domain
    if not d.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def parse_zone(text, origin=DOMAIN):
    return dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)


def records(zone):
    """{(name without the final dot, TYPE): [value, ...]} of a parsed zone;
    TXT values are the strings joined, others their presentation form."""
    out = {}
    for name, node in zone.nodes.items():
        for rds in node.rdatasets:
            kind = dns.rdatatype.to_text(rds.rdtype)
            for rd in rds:
                if kind == "TXT":
                    value = b"".join(rd.strings).decode()
                else:
                    value = rd.to_text()
                out.setdefault((name.to_text().rstrip("."), kind), []).append(value)
    return out


def dkim_dns(srv, domain=DOMAIN):
    """{selector name: record text} as `tern dkim dns DOMAIN` prints them."""
    out = {}
    for line in srv.cli("dkim", "dns", domain).stdout.splitlines():
        if not line or line.startswith(";"):
            continue
        m = re.match(r"(\S+)\s+IN\s+TXT\s+(.*)$", line)
        assert m, line
        out[m.group(1).rstrip(".")] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    return out


def tags(text):
    return dict(t.strip().split("=", 1) for t in text.split(";") if t.strip())


# ------------------------------------------------------------- tern setup

def test_setup_prints_the_zone_adds_the_domain_and_makes_keys(tmp_path):
    srv = make_config(tmp_path / "srv")
    os.chmod(srv.config_path, 0o640)
    before = srv.config_path.read_text()
    p = srv.cli("setup", DOMAIN, *ARGS)
    zone = parse_zone(p.stdout)
    got = records(zone)

    # The configuration: the domain added to the one domains line, nothing
    # else changed, its permissions kept.
    assert configured_domains(srv) == ["example.test", DOMAIN]
    after = srv.config_path.read_text()
    assert [ln for ln in after.splitlines() if not ln.startswith("domains")] == \
        [ln for ln in before.splitlines() if not ln.startswith("domains")]
    assert stat.S_IMODE(os.stat(srv.config_path).st_mode) == 0o640
    assert not list(srv.config_path.parent.glob("*.tern-setup")), "temporary file left"
    assert f"added {DOMAIN}" in p.stderr, p.stderr

    # Two keys, one Ed25519 and one RSA, which `tern dkim dns` shows too.
    keys = key_files(srv)
    assert len(keys) == 2, keys
    assert any(n.endswith(".ed25519.pem") for n in keys), keys
    assert any(n.endswith(".rsa.pem") for n in keys), keys
    dkim = dkim_dns(srv)
    assert len(dkim) == 2, dkim
    assert sorted(k.split("=", 1)[1] for r in dkim.values() for k in r.split("; ")
                  if k.startswith("k=")) == ["ed25519", "rsa"], dkim

    expected = {
        (DOMAIN, "MX"): [f"10 {HOST}."],
        (HOST, "A"): [IP4],
        (HOST, "AAAA"): [IP6],
        (DOMAIN, "TXT"): None,             # SPF, checked below
        (f"_dmarc.{DOMAIN}", "TXT"): None,
        (f"_smtp._tls.{DOMAIN}", "TXT"): None,
    }
    for name, text in dkim.items():
        expected[(name, "TXT")] = [text]
    for label, port in SERVICES.values():
        expected[(f"{label}.{DOMAIN}", "SRV")] = None
    # Exactly these records are published: nothing more, nothing less.
    assert sorted(got) == sorted(expected), p.stdout
    for key, want in expected.items():
        if want is not None:
            assert got[key] == want, (key, got[key])

    spf = got[(DOMAIN, "TXT")]
    assert len(spf) == 1 and spf[0].startswith("v=spf1 ") and " mx " in spf[0] + " ", spf
    assert spf[0].split()[-1] == "-all", spf
    dmarc = got[(f"_dmarc.{DOMAIN}", "TXT")]
    assert len(dmarc) == 1 and dmarc[0].startswith("v=DMARC1;"), dmarc
    assert tags(dmarc[0])["rua"] == f"mailto:{REPORTS}", dmarc
    assert tags(dmarc[0])["p"] in ("none", "quarantine", "reject"), dmarc
    tlsrpt = got[(f"_smtp._tls.{DOMAIN}", "TXT")]
    assert len(tlsrpt) == 1 and tlsrpt[0].startswith("v=TLSRPTv1;"), tlsrpt
    assert tags(tlsrpt[0])["rua"] == f"mailto:{REPORTS}", tlsrpt

    # One SRV record per configured client service, on its configured port;
    # implicit TLS preferred (RFC 8314 5.1).
    for service, (label, port) in SERVICES.items():
        (srv_rec,) = got[(f"{label}.{DOMAIN}", "SRV")]
        prio, weight, rport, target = srv_rec.split()
        assert (int(rport), target) == (port, f"{HOST}."), (service, srv_rec)
        if service.endswith("s") and service[:-1] in SERVICES:
            plain = got[(f"{SERVICES[service[:-1]][0]}.{DOMAIN}", "SRV")][0]
            assert int(prio) < int(plain.split()[0]), (srv_rec, plain)

    # The records not to publish yet are comments: not in the zone, but
    # there for the reader, and valid records once uncommented.
    names = {n.to_text().rstrip(".") for n in zone.nodes}
    for name in (f"_mta-sts.{DOMAIN}", f"mta-sts.{DOMAIN}", f"autoconfig.{DOMAIN}",
                 f"autodiscover.{DOMAIN}"):
        assert name not in names, name
    assert not [k for k in got if k[1] in ("CNAME", "PTR")], got
    commented = [ln[2:] for ln in p.stdout.splitlines()
                 if re.match(r"; \S+\. \d+ IN [A-Z]+ ", ln)]
    later = records(dns.zone.from_text("\n".join(commented) + "\n", origin=".",
                                       relativize=False, check_origin=False))
    assert later[(f"mta-sts.{DOMAIN}", "CNAME")] == [f"{HOST}."], later
    assert later[(f"autoconfig.{DOMAIN}", "CNAME")] == [f"{HOST}."], later
    assert later[(f"autodiscover.{DOMAIN}", "CNAME")] == [f"{HOST}."], later
    assert later[(f"_mta-sts.{DOMAIN}", "TXT")][0].startswith("v=STSv1; id="), later
    for ip in (IP4, IP6):
        ptr = dns.reversename.from_address(ip).to_text().rstrip(".")
        assert later[(ptr, "PTR")] == [f"{HOST}."], (ip, later)


def test_setup_with_an_https_listener_publishes_the_web_names(tmp_path):
    # The https listener serves autoconfig and the MTA-STS policy: their
    # names become records to publish (not comments).
    srv = make_config(tmp_path / "srv")
    srv.listen.append((f"127.0.0.1:{free_port()}", "https"))
    srv.sections["tls"] = {"self_signed": True}
    srv.write_config()
    got = records(parse_zone(srv.cli("setup", DOMAIN, *ARGS).stdout))
    for name in (f"mta-sts.{DOMAIN}", f"autoconfig.{DOMAIN}", f"autodiscover.{DOMAIN}"):
        assert got[(name, "CNAME")] == [f"{HOST}."], got
    assert got[(f"_mta-sts.{DOMAIN}", "TXT")][0].startswith("v=STSv1; id="), got


def test_setup_without_a_config_writes_one(tmp_path):
    # From nothing: the example configuration, with the domain's names,
    # private to root and its group, and usable at once.
    config = tmp_path / "etc" / "tern.toml"
    config.parent.mkdir()
    data = tmp_path / "data"
    cmd = [conftest.TERN_BIN, "setup", DOMAIN, "--hostname", HOST, "--ip", IP4,
           "--config", str(config), "--data-dir", str(data)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "wrote a new configuration" in p.stderr
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o640
    text = config.read_text()
    assert f'hostname = "{HOST}"' in text and f'domains = ["{DOMAIN}"]' in text
    assert f'names = ["{HOST}"]' in text and "example.com" not in text
    got = records(parse_zone(p.stdout))
    assert got[(DOMAIN, "MX")] == [f"10 {HOST}."]
    # The example serves https: the web names are records to publish.
    assert got[(f"autoconfig.{DOMAIN}", "CNAME")] == [f"{HOST}."]
    assert len(key_files_in(data)) == 2
    # A second run finds it and changes nothing.
    p2 = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p2.returncode == 0 and "wrote" not in p2.stderr, p2.stderr
    assert config.read_text() == text


def test_setup_replaces_the_untouched_example_config(tmp_path):
    # The package installs the example as /etc/tern/tern.toml: while it is
    # unedited, setup writes the domain's own; once edited, it only adds.
    config = tmp_path / "tern.toml"
    example = (conftest.REPO / "etc" / "tern.example.toml").read_text()
    config.write_text(example)
    cmd = [conftest.TERN_BIN, "setup", DOMAIN, "--hostname", HOST, "--config", str(config),
           "--data-dir", str(tmp_path / "data"), "--no-keys"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "wrote a new configuration" in p.stderr, p.stderr
    assert f'domains = ["{DOMAIN}"]' in config.read_text()
    config.write_text(example.replace("threads = 0", "threads = 2"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "wrote" not in p.stderr, p.stderr
    assert f'domains = ["example.com", "{DOMAIN}"]' in config.read_text()


def test_second_setup_adds_nothing_and_makes_no_keys(tmp_path):
    srv = make_config(tmp_path / "srv")
    first = srv.cli("setup", DOMAIN, *ARGS)
    keys = key_files(srv)
    config = srv.config_path.read_text()
    # The same domain again, also written in capitals with a final dot.
    for spelling in (DOMAIN, "NEW.Test."):
        again = srv.cli("setup", spelling, *ARGS)
        assert srv.config_path.read_text() == config, spelling
        assert configured_domains(srv).count(DOMAIN) == 1, domains_line(srv)
        assert key_files(srv) == keys, "new DKIM keys made"
        assert "made DKIM key" not in again.stderr, again.stderr
        assert "added" not in again.stderr, again.stderr
        assert records(parse_zone(again.stdout)) == records(parse_zone(first.stdout))


def test_setup_no_keys(tmp_path):
    srv = make_config(tmp_path / "srv")
    p = srv.cli("setup", DOMAIN, "--no-keys", *ARGS)
    assert not (srv.data_dir / "dkim" / DOMAIN).exists()
    assert configured_domains(srv) == ["example.test", DOMAIN]
    got = records(parse_zone(p.stdout))
    assert not [k for k in got if "_domainkey" in k[0]], got
    # It says how to make them.
    assert re.search(r"^; .*_domainkey\." + re.escape(DOMAIN), p.stdout, re.M), p.stdout
    assert f"tern dkim keygen {DOMAIN}" in p.stdout, p.stdout


def test_setup_default_host_is_the_configured_hostname(tmp_path):
    srv = make_config(tmp_path / "srv")
    p = srv.cli("setup", DOMAIN, "--no-keys")
    got = records(parse_zone(p.stdout, origin="."))
    assert got[(DOMAIN, "MX")] == [f"10 {srv.hostname}."], got
    for label, port in SERVICES.values():
        assert got[(f"{label}.{DOMAIN}", "SRV")][0].endswith(f" {port} {srv.hostname}."), got
    assert tags(got[(f"_dmarc.{DOMAIN}", "TXT")][0])["rua"] == f"mailto:postmaster@{DOMAIN}"
    # No --ip: no address record to publish.
    assert not [k for k in got if k[1] in ("A", "AAAA")], got


def test_setup_leaves_a_multiline_domains_array_alone(tmp_path):
    srv = make_config(tmp_path / "srv")
    text = srv.config_path.read_text().replace(
        'domains = ["example.test"]', 'domains = [\n  "example.test",\n]')
    srv.config_path.write_text(text)
    p = srv.cli("setup", DOMAIN, "--no-keys", *ARGS)
    assert srv.config_path.read_text() == text
    assert "spans several lines" in p.stderr and DOMAIN in p.stderr, p.stderr
    assert records(parse_zone(p.stdout))[(DOMAIN, "MX")] == [f"10 {HOST}."]


def test_setup_adds_to_a_domains_line_with_a_comment(tmp_path):
    import tomllib
    srv = make_config(tmp_path / "srv")
    text = srv.config_path.read_text().replace(
        'domains = ["example.test"]', 'domains = ["example.test"]  # [more] later')
    srv.config_path.write_text(text)
    srv.cli("setup", DOMAIN, "--no-keys", *ARGS)
    # What a TOML reader (and Tern) sees, not what the line looks like.
    assert tomllib.loads(srv.config_path.read_text())["domains"] == \
        ["example.test", DOMAIN], domains_line(srv)


# ---------------------------------------------------------- bad input

BAD_DOMAINS = ["not a domain", 'x"]', "nodots", "-"]


@pytest.mark.parametrize("domain", BAD_DOMAINS)
def test_setup_refuses_an_invalid_domain_and_changes_nothing(tmp_path, domain):
    srv = make_config(tmp_path / "srv")
    config = srv.config_path.read_text()
    p = srv.cli("setup", domain, check=False)
    assert p.returncode != 0, p.stdout
    assert "not a domain name" in p.stderr, p.stderr
    assert p.stdout == ""
    assert not (srv.data_dir / "dkim").exists() or not any((srv.data_dir / "dkim").iterdir())
    # A failed command leaves the configuration as it was (and loadable).
    assert configured_domains(srv) == ["example.test"], domains_line(srv)
    assert srv.config_path.read_text() == config
    srv.cli("dkim", "list")  # the configuration still loads


@pytest.mark.parametrize("option,value,complaint", [
    ("--ip", "300.1.1.1", "is not an IP address"),
    ("--ip", "192.0.2", "is not an IP address"),
    ("--ip", "mx.new.test", "is not an IP address"),
    ("--ip", "2001:db8::g", "is not an IP address"),
    ("--hostname", "mx new.test", "is not a host name"),
])
def test_setup_refuses_a_bad_option_and_changes_nothing(tmp_path, option, value, complaint):
    srv = make_config(tmp_path / "srv")
    config = srv.config_path.read_text()
    p = srv.cli("setup", DOMAIN, option, value, check=False)
    assert p.returncode != 0, p.stdout
    assert f'"{value}" {complaint}' in p.stderr, p.stderr
    assert p.stdout == ""
    assert key_files(srv) == {}
    assert configured_domains(srv) == ["example.test"], domains_line(srv)
    assert srv.config_path.read_text() == config


def test_check_dns_refuses_bad_input(tmp_path):
    srv = make_config(tmp_path / "srv")
    p = srv.cli("check", "dns", "not a domain", check=False)
    assert p.returncode != 0 and "not a domain name" in p.stderr, (p.stdout, p.stderr)
    p = srv.cli("check", "dns", DOMAIN, "--ip", "300.1.1.1", check=False)
    assert p.returncode != 0 and "not an IP address" in p.stderr, (p.stdout, p.stderr)


# ---------------------------------------------------------- tern check dns

def serve(zone, published):
    """Serves exactly `published` ({(name, TYPE): [value]}) from `zone`."""
    with zone.lock:
        zone.records = {}
    for (name, kind), values in published.items():
        for v in values:
            if kind == "MX":
                pref, host = v.split()
                zone._add(name, MX(host, int(pref)), QTYPE.MX)
            elif kind == "A":
                zone._add(name, A(v), QTYPE.A)
            elif kind == "AAAA":
                zone._add(name, AAAA(v), QTYPE.AAAA)
            elif kind == "SRV":
                prio, weight, port, target = v.split()
                zone._add(name, SRV(int(prio), int(weight), int(port), target), QTYPE.SRV)
            elif kind == "TXT":
                # A text, cut into 255-octet strings, or the strings.
                if isinstance(v, str):
                    b = v.encode()
                    v = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
                zone._add(name, TXT(v), QTYPE.TXT)
            else:
                raise AssertionError(f"unexpected published record type {kind}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A configuration pointing at a loopback DNS server, the domain set up,
    and its published records as dnspython parsed them."""
    zone = start_dns()
    try:
        srv = make_config(tmp_path_factory.mktemp("check"), f"127.0.0.1:{zone.port}")
        text = srv.cli("setup", DOMAIN, *ARGS).stdout
        zone.srv = srv
        zone.published = records(parse_zone(text))
        yield zone
    finally:
        stop_dns(zone)


class Check:
    def __init__(self, p):
        self.p = p
        self.rc = p.returncode
        self.lines = p.stdout.splitlines()
        # "ok       TYPE NAME" / "MISSING  TYPE NAME"
        self.verdicts = {}
        for ln in self.lines:
            m = re.match(r"(ok|MISSING) +(\S+) (\S+)$", ln)
            if m:
                self.verdicts.setdefault((m.group(3), m.group(2)), []).append(m.group(1))

    def missing(self):
        return sorted(k for k, v in self.verdicts.items() if "MISSING" in v)

    def block(self, name, kind):
        """The want:/have: lines under a MISSING line."""
        i = self.lines.index(f"MISSING  {kind} {name}")
        out = []
        for ln in self.lines[i + 1:]:
            if not ln.startswith(" "):
                break
            out.append(ln.strip())
        return out

    def __repr__(self):
        return f"exit {self.rc}\nstdout:\n{self.p.stdout}\nstderr:\n{self.p.stderr}"


def check(world, published):
    serve(world, published)
    start = time.monotonic()
    c = Check(world.srv.cli("check", "dns", DOMAIN, *ARGS, check=False))
    assert time.monotonic() - start < 10, f"slow check with a DNS server answering\n{c!r}"
    return c


def expected_keys(world):
    keys = []
    for k, vs in world.published.items():
        keys += [k] * len(vs)
    return sorted(keys)


def test_check_dns_all_records_in_place(world):
    c = check(world, world.published)
    assert c.rc == 0, c
    # One line per published record, all ok, and the summary.
    listed = sorted(k for k, v in c.verdicts.items() for _ in v)
    assert listed == expected_keys(world), c
    assert all(v == ["ok"] * len(v) for v in c.verdicts.values()), c
    n = len(expected_keys(world))
    assert c.lines[-1] == f"All {n} records are in place.", c
    assert len(c.lines) == n + 1, c


def damaged(world, key, values=None):
    pub = {k: list(v) for k, v in world.published.items()}
    if values is None:
        del pub[key]
    else:
        pub[key] = values
    return pub


def assert_only_missing(world, c, key):
    assert c.rc == 1, c
    assert c.missing() == [key], c
    n = len(expected_keys(world))
    assert c.lines[-1] == f"1 of {n} records missing or wrong.", c


def dkim_key(world, algo):
    (name,) = [k[0] for k, v in world.published.items()
               if "_domainkey" in k[0] and f"k={algo};" in v[0]]
    return (name, "TXT")


def test_check_dns_dmarc_removed(world):
    key = (f"_dmarc.{DOMAIN}", "TXT")
    c = check(world, damaged(world, key))
    assert_only_missing(world, c, key)
    want, have = c.block(*key)
    assert want == "want: " + world.published[key][0], c
    assert have == "have: no such name", c


def test_check_dns_wrong_dkim_key(world):
    key = dkim_key(world, "ed25519")
    other = base64.b64encode(bytes(range(32))).decode()
    wrong = f"v=DKIM1; k=ed25519; p={other}"
    c = check(world, damaged(world, key, [wrong]))
    assert_only_missing(world, c, key)
    assert other in c.block(*key)[1], c


def test_check_dns_dkim_spacing_and_string_split_do_not_matter(world):
    key = dkim_key(world, "rsa")
    text = world.published[key][0].replace("; ", ";").encode()
    chunks = [text[i:i + 100] for i in range(0, len(text), 100)]  # not at 255
    c = check(world, damaged(world, key, [chunks]))
    assert c.rc == 0, c


def test_check_dns_second_spf_record(world):
    key = (DOMAIN, "TXT")
    # Two SPF records, each fine alone: receivers ignore both (RFC 7208
    # 4.5), and the report says why.
    c = check(world, damaged(world, key, world.published[key] + ["v=spf1 mx a -all"]))
    assert_only_missing(world, c, key)
    assert "more than one" in c.block(*key)[1], c
    # A second one that would not do alone. (Not asserted: the "more than
    # one" note, which Tern prints only when the last SPF record of the
    # answer lets the MX hosts send, so it comes and goes with the order
    # the resolver hands the records over in.)
    c = check(world, damaged(world, key, world.published[key] + ["v=spf1 -all"]))
    assert_only_missing(world, c, key)


def test_check_dns_spf_variants(world):
    key = (DOMAIN, "TXT")
    # Another SPF record that lets the MX hosts send, beside a TXT record of
    # another kind: in place.
    c = check(world, damaged(world, key, ["v=spf1 ip4:192.0.2.0/24 mx ~all",
                                          "site-verification=abc123"]))
    assert c.rc == 0, c
    # An SPF record without mx: wrong.
    c = check(world, damaged(world, key, ["v=spf1 ip4:192.0.2.7 -all"]))
    assert_only_missing(world, c, key)


def test_check_dns_srv_wrong_port(world):
    label, port = SERVICES["imaps"]
    key = (f"{label}.{DOMAIN}", "SRV")
    c = check(world, damaged(world, key, [f"0 1 {port + 1} {HOST}."]))
    assert_only_missing(world, c, key)
    assert c.block(*key) == [f"want: 0 1 {port} {HOST}.", f"have: 0 1 {port + 1} {HOST}."], c


def test_check_dns_srv_other_priority_is_fine_wrong_target_is_not(world):
    label, port = SERVICES["submissions"]
    key = (f"{label}.{DOMAIN}", "SRV")
    c = check(world, damaged(world, key, [f"5 50 {port} {HOST}."]))
    assert c.rc == 0, c
    c = check(world, damaged(world, key, [f"0 1 {port} mail.elsewhere.test."]))
    assert_only_missing(world, c, key)


def test_check_dns_second_dmarc_record(world):
    key = (f"_dmarc.{DOMAIN}", "TXT")
    c = check(world, damaged(world, key, world.published[key] + ["v=DMARC1; p=none"]))
    assert_only_missing(world, c, key)


def test_check_dns_mx_and_address_missing(world):
    # The apex keeps its TXT records: an empty answer, not NXDOMAIN.
    key = (DOMAIN, "MX")
    c = check(world, damaged(world, key))
    assert_only_missing(world, c, key)
    assert c.block(*key)[1] == "have: none", c
    key = (HOST, "AAAA")
    c = check(world, damaged(world, key, ["2001:db8::8"]))
    assert_only_missing(world, c, key)
    assert c.block(*key)[1] == "have: 2001:db8::8", c


def test_check_dns_without_any_answer(tmp_path):
    """Upstream a closed port: every record MISSING, exit 1, and an end."""
    srv = make_config(tmp_path / "srv", f"127.0.0.1:{free_port()}")
    srv.cli("setup", DOMAIN, *ARGS)
    start = time.monotonic()
    c = Check(srv.cli("check", "dns", DOMAIN, *ARGS, check=False, timeout=60))
    took = time.monotonic() - start
    assert c.rc == 1, c
    assert c.verdicts and all(v == ["MISSING"] * len(v) for v in c.verdicts.values()), c
    assert all("lookup failed" in c.block(n, t)[1] for n, t in c.verdicts), c
    assert took < 25, f"took {took:.1f} s\n{c!r}"
