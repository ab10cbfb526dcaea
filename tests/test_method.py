"""Method credit: shell lines read as bash would, wrappers looked through, playbook probes
as the tools they stand for, nodes credited when a command ran on them or addressed
them, "DNS first" meaning the first diagnostic command. Root-free."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from lab.model.rubric import Rubric
from lab.model.topology import load_topology
from lab.playbooks.hooks import probe_argv
from lab.scoring.addresses import address_map, nodes_addressed
from lab.scoring.attempt import Attempt, FaultKey
from lab.scoring.commands import Invocation, invocations
from lab.scoring.items import Clock
from lab.scoring.method import addressed, dns_first, path_nodes, runs, tool_count

ROOT = Path(__file__).resolve().parents[1]
TOPO = load_topology(ROOT / "topologies" / "mail-dmz.yaml")
ADDRESSES = address_map(TOPO)
T0 = 1_780_000_000.0


def programs(line: str) -> list[str]:
    """What a line typed into `lab shell` ran (recorded with its words and the line)."""
    return [i.program for i in invocations([], line)]


# --- the shell lines of the issue, typed into `lab shell` --------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    ("for i in 1 2 3; do dig @203.0.113.$i example.net; done", ["dig", "dig", "dig"]),
    ("while true; do netguard -An | tail -3; sleep 1; done", ["netguard", "tail", "sleep"]),
    ("if [ -d /var/spool/mailq/data ]; then ls /var/spool/mailq/data; fi", ["ls"]),
    ("[ -f /etc/resolv.conf ] && cat /etc/resolv.conf", ["cat"]),
    ("nft add rule inet netguard output meta mark 0x4e47ffff accept", ["nft"]),
    ("date +%H:%M; echo 19:3", ["date"]),
    ("netguard -An | grep 10.1.0.25", ["netguard", "grep"]),
    ("sudo timeout 5 nft list ruleset", ["nft"]),
    ("sudo -u root env LANG=C timeout -s KILL 5 dig mx example.net", ["dig"]),
    ("sh -c 'netguard -An | grep 10.1.0.25'", ["netguard", "grep"]),
    ("bash -lc \"dig +short mail.example.net && nft list ruleset\"", ["dig", "nft"]),
    ("sudo sh -c 'sh -c \"host mail.example.net\"'", ["host"]),
    ("(cd /var/log && grep -i reject mail.log)", ["grep"]),
    ("echo $(dig +short mail.example.net) `host 10.1.0.25`", ["dig", "host"]),
    ("diff <(dig @203.0.113.53 mail.example.net) <(dig @10.1.0.53 mail.example.net)",
     ["dig", "dig", "diff"]),
    ("case $(hostname) in fw) nft list ruleset;; *) ip route;; esac",
     ["hostname", "nft", "ip"]),
    ("time dig example.net", ["dig"]),
    ("watch -n1 'netguard -An | tail'", ["netguard", "tail"]),
    ("xargs -n1 dig < names", ["dig"]),
    ("X=1 nslookup mail.example.net 2>/dev/null | head", ["nslookup", "head"]),
    ("nc 10.1.0.25 25 <<< quit", ["nc"]),
    ("cat <<EOF\n$(dig mail.example.net)\nEOF", ["cat", "dig"]),
    ("export A=1; cd /tmp; true; test -f x; pwd", []),
    ("f() { dig a; }; f", ["dig", "f"]),
    ("echo 'unbalanced quote", []),
    ("$CMD example.net", []),
])
def test_shell_lines(line: str, expected: list[str]) -> None:
    assert programs(line) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["dig", "MX", "example.net"], ["dig"]),
    (["/usr/bin/nslookup", "-type=mx", "example.net"], ["nslookup"]),
    (["sudo", "timeout", "5", "nft", "list", "ruleset"], ["nft"]),
    (["sh", "-c", "netguard -An | grep 10.1.0.25"], ["netguard", "grep"]),
    (["bash", "-c", "ls /var/spool/mailq/data && cat x; env A=1 ping -c1 h"],
     ["ls", "cat", "ping"]),
    (["nft", "add", "rule", "inet", "netguard", "forward", "ip", "daddr", "10.1.0.25",
      "accept"], ["nft"]),
    (["tshark", "-Y", "(tcp.port==25)"], ["tshark"]),  # an argv is not shell text
    (["sh", "-c", "echo $(dig +short mail.example.net); nft list ruleset;"],
     ["dig", "nft"]),
    ([], []),
])
def test_argv_from_lab_exec(argv: list[str], expected: list[str]) -> None:
    assert [i.program for i in invocations(argv)] == expected


@pytest.mark.parametrize(("argv", "expected"), [
    # records that kept only the words of a typed line (before the line was kept)
    (["netguard", "-An", "|", "tail", "-3"], ["netguard", "tail"]),
    (["for", "i", "in", "1", "2;", "do", "dig", "@10.1.0.$i;", "done"], ["dig", "dig"]),
])
def test_split_lines_of_older_records(argv: list[str], expected: list[str]) -> None:
    assert [i.program for i in invocations(argv)] == expected


def test_loop_values_reach_the_body() -> None:
    line = "for h in 10.1.0.25 10.1.0.53; do ping -c1 $h; done"
    assert [i.args for i in invocations([], line)] == [("-c1", "10.1.0.25"), ("-c1", "10.1.0.53")]


@pytest.mark.parametrize(("kind", "args", "expected"), [
    ("dns", {"server": "203.0.113.53", "name": "example.net", "type": "MX", "recurse": False},
     Invocation("dig", ("@203.0.113.53", "example.net", "MX"), "dns probe")),
    ("dns", {"name": "mail.example.net"}, Invocation("dig", ("mail.example.net", "A"),
                                                     "dns probe")),
    ("tcp", {"host": "10.1.0.25", "port": 25}, Invocation("nc", ("-z", "10.1.0.25", "25"),
                                                          "tcp probe")),
    ("smtp", {"host": "203.0.113.25", "rcpt_to": "postmaster@example.net"},
     Invocation("swaks", ("--server", "203.0.113.25:25"), "smtp probe")),
    ("ping", {"host": "10.1.0.1", "count": 2}, Invocation("ping", ("10.1.0.1",), "ping probe")),
    ("arp", {"host": "10.1.0.25"}, Invocation("arping", ("10.1.0.25",), "arp probe")),
])
def test_playbook_probes_count_as_their_tool(kind: str, args: dict, expected: Invocation) -> None:
    """The argv the playbook runner records for a built-in probe (lab/playbooks/hooks.py)."""
    argv = probe_argv(kind, {**args, "timeout": 3.0})
    assert argv[0] == sys.executable
    assert invocations(argv) == [expected]


def test_a_probe_argv_of_unknown_kind_is_just_python() -> None:
    argv = [sys.executable, "-m", "lab.playbooks.probe", "bogus", json.dumps({})]
    assert [i.program for i in invocations(argv)] == [Path(sys.executable).name]


# --- which node a command addressed ------------------------------------------------------

@pytest.mark.parametrize(("line", "nodes"), [
    ("dig @203.0.113.11 net NS", ["dns-tld"]),
    ("dig @ns.example.net. mail.example.net", ["ns-ext", "ns-int"]),
    ("dig mail.example.net", []),  # a query about a name does not address that host
    ("kdig @203.0.113.53 example.net SOA", ["ns-ext"]),
    ("nslookup mail.example.net 203.0.113.53", ["ns-ext"]),
    ("nslookup -type=mx example.net 10.1.0.53", ["ns-int"]),
    ("host -t mx example.net 203.0.113.9", ["resolver"]),
    ("telnet 10.1.0.25 25", ["mx"]),
    ("nc -z -w 2 203.0.113.25 25", ["fw", "mx"]),
    ("ping -c 3 mail.example.com", ["mx-ext"]),
    ("swaks --server mail.example.net --to postmaster@example.net", ["fw", "mx"]),
    ("swaks --server=10.1.0.25:25 --to postmaster@example.net", ["mx"]),
    ("openssl s_client -connect 10.1.0.25:25 -starttls smtp", ["mx"]),
    ("curl smtp://203.0.113.20:25", ["mx-ext"]),
    ("ping -c1 fw", ["fw"]),
    ("grep 10.1.0.25 /var/log/mail.log", []),  # mentions, does not address
    ("ping -c1 203.0.113.200", []),  # nobody's address
])
def test_addressed(line: str, nodes: list[str]) -> None:
    found = [n for inv in invocations([], line) for n in addressed(inv, ADDRESSES)]
    assert sorted(found) == nodes


def test_address_map_comes_from_the_topology() -> None:
    assert ADDRESSES["203.0.113.25"] == ["fw", "mx"]  # fw's alias, static NAT to mx
    assert ADDRESSES["mail.example.net"] == ["fw", "mx"]  # public view and split view
    assert ADDRESSES["10.1.0.53"] == ["ns-int"]
    assert "mail" not in ADDRESSES  # mail.example.net or mail.example.com: ambiguous
    assert nodes_addressed("@203.0.113.53", ADDRESSES) == ["ns-ext"]


def test_address_map_follows_a_variant() -> None:
    """A topology variant that moves an address moves the credit: nothing hard-coded."""
    topo = load_topology(ROOT / "topologies" / "mail-dmz.yaml", variant="inbound-to")
    assert address_map(topo)["mail.example.net"] == ["fw", "mx"]
    moved = load_topology(ROOT / "topologies" / "mail-dmz.yaml", overrides={
        "nodes": {"mx": {"interfaces": [{"segment": "lan", "address": "10.1.0.26/24"}]}}})
    assert address_map(moved)["10.1.0.26"] == ["mx"] and "10.1.0.25" not in address_map(moved)


# --- the method items --------------------------------------------------------------------

def attempt(commands: list[tuple[float, str, str]],
            faults: list[FaultKey] | None = None) -> Attempt:
    a = Attempt(scenario="s", lab="l", seed=1, trainee="t", started=T0, ticket="x",
                time_limit=20, faults=faults or [FaultKey("f", {}, "dns-mx-missing", "ns-ext")],
                addresses=ADDRESSES)
    for t, node, line in commands:
        a.record_command(node, shlex.split(line), T0 + t * 60, line=line)
    return a


@pytest.mark.parametrize(("commands", "points", "words"), [
    ([(1, "ext-ws", "dig MX example.net"), (2, "fw", "nft list ruleset")], 8,
     "DNS checked first (dig on ext-ws at 01:00)"),
    ([(0.5, "ext-ws", "clear"), (0.6, "ext-ws", "cd /tmp; echo hi"),
      (1, "ext-ws", "host example.net")], 8, "DNS checked first (host on ext-ws"),
    ([(1, "fw", "nft list ruleset"), (2, "ext-ws", "dig MX example.net")], 0,
     "not a DNS query (nft on fw at 01:00; first DNS query: dig on ext-ws at 02:00)"),
    # the case: DNS came fourth
    ([(1, "fw", "cat /etc/resolv.conf"), (2, "fw", "netguard -An"), (3, "fw", "ping -c1 mx"),
      (4, "fw", "dig mail.example.net")], 0, "not a DNS query (cat on fw at 01:00"),
    ([(1, "fw", "netguard -An | grep 25")], 0, "no DNS query at all"),
    ([(1, "ext-ws", "timeout 5 dig +short mail.example.net | head -1")], 8, "dig on ext-ws"),
    ([], 0, "no diagnostic command was run"),
])
def test_dns_first(commands: list, points: int, words: str) -> None:
    item = dns_first(runs(attempt(commands)), Rubric(), Clock(T0))
    assert item.points == points and words in item.reason


def test_dns_first_counts_a_playbook_dns_probe() -> None:
    a = attempt([])
    a.record_command("ext-ws", probe_argv("dns", {"name": "example.net", "type": "MX"}), T0 + 1)
    item = dns_first(runs(a), Rubric(), Clock(T0))
    assert item.points == 8 and "dig (dns probe) on ext-ws" in item.reason


def test_tool_count_counts_programs_only() -> None:
    a = attempt([(1, "fw", "for i in 1 2; do dig @203.0.113.$i x; done"),
                 (2, "fw", ("[ -f /x ] && nft add rule inet netguard output meta mark "
                            "0x4e47ffff accept; date +%H:%M; echo 19:3"))])
    item = tool_count(runs(a), Rubric())
    assert item.data["tools"] == ["date", "dig", "nft"] and item.points == 4


@pytest.mark.parametrize(("commands", "points", "examined"), [
    ([(1, "fw", "dig @203.0.113.53 example.net MX"), (2, "fw", "telnet 10.1.0.25 25")], 8,
     {"fw": "ran commands there", "ns-ext": "addressed by dig from fw",
      "mx": "addressed by telnet from fw"}),
    ([(1, "ext-ws", "dig mail.example.net")], 0, {}),
    ([(1, "ext-ws", "swaks --server mail.example.net --to a@example.net")], 5,
     {"fw": "addressed by swaks from ext-ws", "mx": "addressed by swaks from ext-ws"}),
])
def test_path_nodes_ran_on_or_addressed(commands: list, points: int, examined: dict) -> None:
    faults = [FaultKey("a", {}, "dns-mx-missing", "ns-ext"),
              FaultKey("b", {}, "nat-static-wrong-host", "fw", ["fw", "mx"])]
    item = path_nodes(attempt(commands, faults), runs(attempt(commands, faults)), Rubric())
    assert item.points == points and item.data["examined"] == examined
