"""`lab evidence`: a postmortem bundle from a lab with a fault. Each part is checked: the
captures read back with scapy, the logs, queues, zone files, resolv.conf files, the
firewall's ruleset, `lab status`, index.md and its timeline; the bundle is bounded, root
only, and names no fault. The timeline's log formats are checked without a lab."""
from __future__ import annotations

import stat
import subprocess
import threading
from pathlib import Path

import pytest

from lab.evidence.timeline import parse_time, timeline
from lab.faults import CATALOG
from tests.conftest import lab_exec, run_lab

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# --- the timeline, without a lab ---------------------------------------------------------------


@pytest.mark.parametrize(("line", "when", "rest"), [
    ("Nov 30 22:10:43 mail postfix/smtpd[12]: connect from x", "2026-11-30 22:10:43",
     "mail postfix/smtpd[12]: connect from x"),
    ("Dec  1 07:00:00 relay postfix/qmgr[3]: removed", "2026-12-01 07:00:00",
     "relay postfix/qmgr[3]: removed"),
    ("30-Nov-2026 22:10:43.123 zone example.org/IN: loaded serial 7", "2026-11-30 22:10:43",
     "zone example.org/IN: loaded serial 7"),
    ("2026-11-30T22:14:35 D tcp 172.16.25.25:1 192.168.10.25:25 rule=default",
     "2026-11-30 22:14:35", "D tcp 172.16.25.25:1 192.168.10.25:25 rule=default"),
])
def test_the_three_log_time_formats(line, when, rest):
    got = parse_time(line, 2026)
    assert got is not None and (str(got[0]), got[1]) == (when, rest)


def test_lines_without_a_time_are_left_out_and_the_rest_merged_in_order():
    logs = [("mail", "/var/log/mail.log", "Nov 30 10:00:02 b\n  continued\nNov 30 10:00:05 d\n"),
            ("gw", "/var/log/netguard/conn.log", "2026-11-30T10:00:01 a\n2026-11-30T10:00:03 c\n")]
    events = timeline(logs, 2026, 0)
    assert [(e.node, e.text) for e in events] == [("gw", "a"), ("mail", "b"), ("gw", "c"),
                                                  ("mail", "d")]
    assert [e.text for e in timeline(logs, 2026, 2)] == ["c", "d"]


# --- a bundle from a lab with a fault ----------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(module_labs, tmp_path_factory) -> dict:
    """isp-relay with the DMZ permit gone, and a partner's mail sent during the capture:
    it reaches the relay, which cannot hand it on."""
    lab = module_labs.up("t-evid", topology="isp-relay")
    out = tmp_path_factory.mktemp("ev") / "bundle"
    p = run_lab("fault", "apply", "fw-dmz-permit-missing", "--lab", lab)
    assert p.returncode == 0, p.stderr

    def send() -> None:
        lab_exec(lab, "laptop", "swaks", "--server", "198.51.100.25", "--to",
                 "jsmith@example.org", "--from", "a@partner.test", "--timeout", "5")

    sender = threading.Timer(1.0, send)
    sender.start()
    p = run_lab("evidence", "--lab", lab, "--out", str(out), "--capture", "6")
    sender.join()
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout and "dmz, inet, lan captures" in p.stdout
    return {"lab": lab, "out": out}


def pcap_syns(path: Path) -> list[tuple[str, str, int]]:
    from scapy.all import IP, TCP, rdpcap

    return [(p[IP].src, p[IP].dst, p[TCP].dport) for p in rdpcap(str(path))
            if p.haslayer(TCP) and p[TCP].flags & 0x02 and not p[TCP].flags & 0x10]


@pytest.mark.root
def test_every_segment_is_captured_and_the_captures_read_back(bundle):
    pcaps = bundle["out"] / "pcaps"
    assert sorted(p.name for p in pcaps.iterdir()) == ["dmz.pcap", "inet.pcap", "lan.pcap"]
    inet = pcap_syns(pcaps / "inet.pcap")
    dmz = pcap_syns(pcaps / "dmz.pcap")
    assert ("198.51.100.100", "198.51.100.25", 25) in inet  # swaks to the public MX address
    assert ("198.51.100.100", "172.16.25.25", 25) in dmz  # ... through the static NAT
    assert ("172.16.25.25", "192.168.10.25", 25) in dmz  # the relay tries the mail server
    assert ("172.16.25.25", "192.168.10.25", 25) not in pcap_syns(pcaps / "lan.pcap")


@pytest.mark.root
def test_logs_queues_zones_resolv_conf_ruleset_and_status(bundle):
    out = bundle["out"]
    nodes = {p.name for p in (out / "nodes").iterdir()}
    assert {"gw", "relay", "mail", "ns-int", "isp-ns", "laptop", "admin"} <= nodes
    for node in nodes:
        assert (out / "nodes" / node / "resolv.conf").read_text().startswith(("search",
                                                                              "nameserver"))
    assert "Connection timed out" in (out / "nodes/relay/mailq.txt").read_text()
    assert "jsmith@example.org" in (out / "nodes/relay/mailq.txt").read_text()
    assert "status=deferred" in (out / "nodes/relay/log/mail.log").read_text()
    conn = (out / "nodes/gw/log/netguard/conn.log").read_text()
    assert " D tcp 172.16.25.25:" in conn and " 192.168.10.25:25 rule=default" in conn
    ruleset = (out / "nodes/gw/ruleset.nft").read_text()
    assert "table inet netguard" in ruleset and "relay-to-mail" not in ruleset
    assert "$INCLUDE example.org.hosts" in (out / "nodes/isp-ns/bind/db.example.org").read_text()
    assert (out / "nodes/isp-ns/bind/example.org.hosts").is_file()
    assert "loaded serial" in (out / "nodes/ns-int/log/named.log").read_text()
    assert f"lab {bundle['lab']} (topology isp-relay)" in (out / "status.txt").read_text()


@pytest.mark.root
def test_the_index_lists_the_files_and_builds_a_timeline(bundle):
    out = bundle["out"]
    index = (out / "index.md").read_text()
    assert index.startswith(f"# Evidence from lab {bundle['lab']}\n")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    for rel in files:
        if rel != "index.md":
            assert f"| [{rel}]({rel}) | {(out / rel).stat().st_size} |" in index
    timeline_part = index.split("## Timeline")[1]
    rows = [ln for ln in timeline_part.splitlines() if ln.startswith("| 20")]
    assert rows == sorted(rows, key=lambda r: r[2:21])  # oldest first
    assert any("| relay | /var/log/mail.log |" in r and "status=deferred" in r for r in rows)
    assert any("| gw | /var/log/netguard/conn.log |" in r and "rule=default" in r for r in rows)


@pytest.mark.root
def test_the_bundle_is_root_only_and_names_no_fault(bundle):
    out = bundle["out"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    names = set(CATALOG) | {c.id for f in CATALOG.values() for c in f.causes}
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [n for n in names if n.encode() in data], path


@pytest.mark.root
def test_what_evidence_refuses(bundle):
    lab = bundle["lab"]
    p = run_lab("evidence", "--lab", lab, "--out", str(bundle["out"]), "--capture", "0")
    assert p.returncode == 1 and "exists and is not an empty directory" in p.stderr
    p = run_lab("evidence", "--lab", lab, "--out", str(bundle["out"]) + "-x", "--capture", "301")
    assert p.returncode == 1 and "between 0 and 300 seconds" in p.stderr
    assert not Path(str(bundle["out"]) + "-x").exists()
    p = run_lab("evidence", "--lab", lab, "--out", "/tmp/never", prefix=NOBODY)
    assert p.returncode == 1 and "is for instructors" in p.stderr


@pytest.mark.root
def test_without_a_capture_there_are_no_pcaps(bundle, tmp_path):
    out = tmp_path / "quick"
    p = run_lab("evidence", "--lab", bundle["lab"], "--out", str(out), "--capture", "0")
    assert p.returncode == 0, p.stderr
    assert not (out / "pcaps").exists() and (out / "index.md").is_file()
    assert "capture: 0 s" in (out / "index.md").read_text()


@pytest.mark.root
def test_no_tcpdump_is_left_running(bundle):
    """The captures end with the command (tcpdump processes of this lab are gone)."""
    lab = bundle["lab"]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    pids = [ln.split()[0] for ln in ps.stdout.splitlines() if "tcpdump" in ln]
    mine = [pid for pid in pids
            if f"LAB_INSTANCE={lab}".encode() in _environ(pid)]
    assert mine == []


def _environ(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""

