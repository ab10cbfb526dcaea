"""The search for a lab's answer key from its node shells (tests/test_answer_key_hidden.py
says what is searched and why): shared by that file's forced faults and by
tests/test_history_lab.py, which scans each scenario's own lab once its traces are
checked (one lab per scenario serves both)."""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from conftest import PROJECT_ROOT, node_run

from lab.model.topology import load_topology

SCRIPT = r"""
set -u
# stdin: "SINCE LAB" (the lab's start, seconds since the epoch, and its name), the
# patterns, a line "--", then the /tmp and /root entries older than the lab
read -r SINCE LAB || exit 90
[ -n "$SINCE" ] && [ -n "$LAB" ] || exit 91
P=$(mktemp /dev/shm/kh.XXXXXX) || exit 90
O=$(mktemp /dev/shm/kh.XXXXXX) || exit 90
trap 'rm -f "$P" "$O"' EXIT
awk -v p="$P" -v o="$O" '$0 == "--" { rest = 1; next } { print > (rest ? o : p) }'
hits() { grep -aoiw -f "$P" | sort -u | sed "s|^|HIT $1: |"; }
grep -rIsoiw -f "$P" /etc /var/mail /var/spool /var/log /run 2>/dev/null \
  | sed 's|^|HIT file |' | head -50
find /tmp /root -mindepth 1 -maxdepth 1 2>/dev/null | grep -vxF -f "$O" \
  | while IFS= read -r top; do
      find "$top" -xdev -type f -newermt "@$SINCE" 2>/dev/null
    done | while IFS= read -r f; do grep -IsoiwH -f "$P" "$f" | sed 's|^|HIT new |'; done \
  | head -50
me=$(readlink /proc/self/ns/net)
{ ls -l /proc/[0-9]*/ns/net 2>/dev/null | awk -v me="$me" '$NF == me { print $(NF-2) }' \
    | sed 's|/ns/net$||'
  grep -lsax "LAB_INSTANCE=$LAB" /proc/[0-9]*/environ -z | sed 's|/environ$||'
} | sort -u | while IFS= read -r d; do
    [ "$d" = "/proc/$$" ] && continue
    echo "$d/cmdline"; echo "$d/environ"
  done > "$O.procs"
[ -s "$O.procs" ] || echo "HIT none: no process of the lab found (the scan is broken)"
xargs grep -aoiwH -f "$P" < "$O.procs" 2>/dev/null | sort -u | sed 's|^|HIT proc |' | head -50
rm -f "$O.procs"
nft list ruleset 2>/dev/null | hits "nft list ruleset"
ip addr | hits "ip addr"
ip route show table all | hits "ip route"
for d in /run/lab /var/lib/lab/results; do
  n=$(ls -A "$d" 2>/dev/null | wc -l)
  [ "$n" = 0 ] || echo "HIT ls $d: $(ls -A "$d" | head -5 | tr '\n' ' ')"
done
echo SCANNED
"""


def _catalog() -> dict[str, tuple[str, set[str]]]:
    """fault name -> (family, the causes it declares), from the library (the CLI does not
    print answer keys)."""
    from lab.faults import CATALOG

    return {name: (fault.family, {c.id for c in fault.causes})
            for name, fault in CATALOG.items()}


CATALOG = _catalog()


def nodes_of(scenario: str) -> list[str]:
    """Every node of the topology the scenario builds."""
    from lab.engine.attempt import load

    _path, sc = load(scenario)
    return list(load_topology(PROJECT_ROOT / "topologies" / f"{sc.topology}.yaml").nodes)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


def applied_causes(scenario: str | None, forced: str | None) -> set[str]:
    """Every cause id of the faults this start may apply (every candidate of the pools,
    whatever the seed draws, and the red herrings)."""
    from lab.engine.lifecycle import SCENARIO_DIR
    from lab.model.scenario import load_scenario

    if forced:
        return set(CATALOG[forced][1])
    sc = load_scenario(SCENARIO_DIR / f"{scenario}.yaml", set(CATALOG))
    return {cause for _, ref in sc.fault_refs() for cause in CATALOG[ref.fault][1]}


def patterns_for(causes: set[str]) -> list[str]:
    return sorted(set(CATALOG) | causes | {"fault"})


def old_entries() -> list[str]:
    """The /tmp and /root entries that exist before the lab starts: not the lab's."""
    out = []
    for top in ("/tmp", "/root"):
        try:
            out += [os.path.join(top, name) for name in os.listdir(top)]
        except OSError:
            pass
    return out


def scan(lab: str, node: str, patterns: list[str], since: int, old: list[str]) -> list[str]:
    """One node's hits. Everything the script needs goes through stdin, not its command
    line or its environment (tests/test_answer_key_hidden.py says why; a node command's
    environment is the node's own, whatever the caller's: lab.engine.nodeexec)."""
    stdin = "\n".join([f"{since} {lab}", *patterns, "--", *old]) + "\n"
    p = node_run(lab, node, "sh", "-c", SCRIPT, input=stdin, timeout=60)
    assert "SCANNED" in p.stdout, f"scan on {node} did not finish: rc={p.returncode} {p.stderr}"
    assert not p.stderr.strip(), f"scan on {node}: {p.stderr}"  # no part of it failed
    return [line for line in p.stdout.splitlines() if line.startswith("HIT")]


def scan_all(lab: str, nodes: list[str], patterns: list[str], since: int,
             old: list[str]) -> dict[str, list[str]]:
    """Every node scanned at once (one lab at a time; the nodes in parallel)."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        futures = {node: pool.submit(scan, lab, node, patterns, since, old) for node in nodes}
        return {node: f.result() for node, f in futures.items()}


def leaks(lab: str, scenario: str, forced: str | None, since: int, old: list[str],
          shown: str) -> dict[str, list[str]]:
    """What names the applied faults: hits from every node of the lab (by node), and
    from ``shown`` (what the trainee was shown, e.g. the ticket) under "ticket"."""
    patterns = patterns_for(applied_causes(scenario, forced))
    found = scan_all(lab, nodes_of(scenario), patterns, since, old)
    word = re.compile(r"(?i)\b(" + "|".join(map(re.escape, patterns)) + r")\b")
    found["ticket"] = sorted(set(word.findall(shown)))
    return {where: hits for where, hits in found.items() if hits}
