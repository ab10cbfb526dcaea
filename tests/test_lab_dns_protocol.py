"""Issue 11, DNS in the reference lab: every server answers EDNS as BIND does, Unbound (a
resolver the project did not write, run inside a node and bound to its address) resolves
the whole hierarchy with QNAME minimisation on and off, zone transfers are refused by
default, and one node holding many stalled TCP connections does not shut out another.

One module-scoped mail-dmz lab; every query stays inside the lab.
"""
from __future__ import annotations

import re
import select
import subprocess

import pytest
from conftest import LAB_CMD, PROJECT_ROOT

from lab.services.dns import MAX_TCP_PER_CLIENT

pytestmark = pytest.mark.root

LAB = "t11-dnsp"
VENV_PY = str(PROJECT_ROOT / ".venv" / "bin" / "python")
EXT_WS = "203.0.113.100"
SERVERS = [  # (a node that may ask it, the server): authoritative and recursive
    ("ext-ws", "203.0.113.10"),  # dns-root
    ("ext-ws", "203.0.113.11"),  # dns-tld
    ("ext-ws", "203.0.113.53"),  # ns-ext
    ("ext-ws", "203.0.113.9"),   # resolver
    ("admin", "10.1.0.53"),      # ns-int (split)
]


def dig(x, node: str, *args: str) -> str:
    p = x(node, "dig", "+time=2", "+tries=1", *args)
    assert p.returncode == 0, f"dig {args} in {node}: {p.stdout}{p.stderr}"
    return p.stdout


@pytest.mark.parametrize(("node", "server"), SERVERS)
def test_edns_version_1_is_badvers_everywhere(x, node, server):
    out = dig(x, node, f"@{server}", "+edns=1", "+noednsneg", "example.net", "SOA")
    assert "status: BADVERS" in out and "; EDNS: version: 0, flags:; udp: 1232" in out, out


@pytest.mark.parametrize(("node", "server"), SERVERS)
def test_do_bit_is_copied_everywhere(x, node, server):
    out = dig(x, node, f"@{server}", "+dnssec", "example.net", "SOA")
    assert "status: NOERROR" in out and "; EDNS: version: 0, flags: do; udp: 1232" in out, out


def test_zone_transfer_is_refused_by_default(x):
    out = dig(x, "ext-ws", "@203.0.113.53", "AXFR", "example.net")
    assert "; Transfer failed." in out and "SOA" not in out, out


# --- Unbound -----------------------------------------------------------------------------------

UNBOUND = r"""
set -u
d=$(mktemp -d /tmp/lab-unbound.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
cat > "$d/root.hints" <<EOF
.                       3600000 NS a.root-servers.example.
a.root-servers.example. 3600000 A  203.0.113.10
EOF
cat > "$d/unbound.conf" <<EOF
server:
  interface: $1
  access-control: $1/32 allow
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$d"
  pidfile: ""
  use-syslog: no
  logfile: ""
  num-threads: 1
  so-reuseport: no
  module-config: "iterator"
  root-hints: "$d/root.hints"
  qname-minimisation: $2
EOF
unbound -d -c "$d/unbound.conf" &
pid=$!
for _ in $(seq 50); do
  dig +time=1 +tries=1 "@$1" . NS >/dev/null 2>&1 && break
  sleep 0.1
done
shift 2
for q in "$@"; do
  echo "== $q"
  dig +time=3 +tries=1 "@$EXT" $q
done
"""

QUESTIONS = {
    "mail.example.net A": ("NOERROR", ["203.0.113.25"]),
    "example.net MX": ("NOERROR", ["10 mail.example.net."]),
    "ws.example.com A": ("NOERROR", ["203.0.113.100"]),
    "mail.example.com A": ("NOERROR", ["203.0.113.20"]),
    "nosuchhost.example.net A": ("NXDOMAIN", []),
    "example.net TXT": ("NOERROR", []),
    "example.net DS": ("NOERROR", []),  # no DS at the parent: NODATA, not a referral
}


def _results(out: str) -> dict[str, tuple[str, list[str]]]:
    results = {}
    for block in out.split("== ")[1:]:
        question, _, body = block.partition("\n")
        m = re.search(r"status: ([A-Z]+)", body)
        answer = re.search(r";; ANSWER SECTION:\n(.*?)\n\n", body, re.DOTALL)
        data = [" ".join(line.split()[4:]) for line in answer.group(1).splitlines()] \
            if answer else []
        results[question] = (m.group(1) if m else "no answer", data)
    return results


@pytest.mark.parametrize("qname_minimisation", ["yes", "no"])
def test_unbound_resolves_the_whole_hierarchy(x, qname_minimisation):
    p = x("ext-ws", "env", f"EXT={EXT_WS}", "bash", "-c", UNBOUND, "unbound-test", EXT_WS,
          qname_minimisation, *QUESTIONS, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _results(p.stdout) == QUESTIONS, p.stdout + p.stderr


# --- TCP: one client cannot lock the others out ------------------------------------------------

HOLD = r"""
import socket, sys, time
target, count = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((target, 53))
        socks.append(s)
    except OSError:
        pass
time.sleep(0.3)
alive = 0
for s in socks:
    s.setblocking(False)
    try:
        s.recv(1)  # b"" or an error: the server closed it
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print(alive, flush=True)
sys.stdin.read()  # hold every connection until the test is done
"""


@pytest.mark.parametrize("server", ["203.0.113.53", "203.0.113.9"])
def test_stalled_tcp_connections_from_one_node_do_not_shut_out_another(lab, x, server):
    holder = subprocess.Popen(
        [*LAB_CMD, "exec", "--lab", lab, "ext-ws", "--", VENV_PY, "-c", HOLD, server, "70"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        assert ready, "the connections were not opened in time"
        alive = int(holder.stdout.readline())
        out = dig(x, "mx-ext", f"@{server}", "+tcp", "mail.example.net")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert alive == MAX_TCP_PER_CLIENT  # what one client may hold; the rest closed at once
    assert "status: NOERROR" in out and "(TCP)" in out and "203.0.113.25" in out, out
