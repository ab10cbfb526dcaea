"""docs/design.md rule 4: nothing a trainee can reach from a lab shell names the applied faults.

For every scenario in scenarios/ (seed fixed) and for every fault of the catalog forced
with ``lab start --fault``, the lab is started and from EVERY node's shell
(``lab exec NODE -- sh -c SCRIPT``, one shell command per node) the test greps every
surface a trainee can reach that the lab created or touched:

* files: the whole /etc (the node's overlay over the host's /etc), /var/mail,
  /var/spool, /var/log and /run; files under /tmp and /root changed since the lab
  started;
* the command lines and environments of the processes the lab runs (every process in
  the node's network namespace and every process carrying LAB_INSTANCE=<lab>, which
  includes the supervisor that holds the answer key);
* ``nft list ruleset``, ``ip addr``, ``ip route`` as the node sees them;
* ``ls -A`` of /run/lab and /var/lib/lab/results, which must be empty inside a node;

for every fault name of the catalog, every cause id of the applied faults (and of the
red herrings) and the word "fault" (case-insensitive, as a whole word: "default" is
not a hit).

Excluded on purpose, and why:
* the project's own source tree (PROJECT_ROOT, the checkout) is visible from nodes (the
  node commands netguard/mailq run from its virtualenv) and names every fault of the
  catalog, but not which one is applied; it is not one of the surfaces searched;
* under /tmp and /root, files older than the lab and entries that existed before it
  started: the host's /tmp and /root are shared with the nodes and hold other
  sessions' files (toolchains, docs, other engineers' playbook results) that the lab
  never touched;
* processes of other labs and test sessions on the same host (their names and
  command lines may contain "fault": e.g. a lab called t-faults-...).

The patterns travel on stdin into a file under /dev/shm (not searched), so neither the
grep's arguments nor the shell's command line contains them; the `lab exec` runs with
an environment free of PYTEST_* variables (PYTEST_CURRENT_TEST names the test id).
"""
from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import PROJECT_ROOT, STATE_ROOT, run_lab

from lab.errors import LabError
from lab.model.topology import load_topology

pytestmark = [pytest.mark.root, pytest.mark.slow]

SEED = 7
FORCED_ON = {"mail-dmz": "inbound-bounces", "isp-relay": "isp-relay-bounce"}  # forced faults


def nodes_of(scenario: str) -> list[str]:
    """Every node of the topology the scenario builds."""
    from lab.engine.attempt import load

    _path, sc = load(scenario)
    return list(load_topology(PROJECT_ROOT / "topologies" / f"{sc.topology}.yaml").nodes)


def _forced_on(fault: str) -> str:
    """The scenario a forced fault starts on: the reference's, else isp-relay's (the
    faults of that shape need its roles)."""
    from lab.faults import CATALOG as FAULTS
    from lab.model.roles import derive_roles

    for topology, scenario in FORCED_ON.items():
        roles = derive_roles(load_topology(PROJECT_ROOT / "topologies" / f"{topology}.yaml"))
        try:
            FAULTS[fault].answer(FAULTS[fault].resolve(roles), roles)
        except LabError:
            continue
        return scenario
    raise AssertionError(f"{fault} applies to no reference topology")

SCRIPT = r"""
set -u
P=$(mktemp /dev/shm/kh.XXXXXX) || exit 90
O=$(mktemp /dev/shm/kh.XXXXXX) || exit 90
trap 'rm -f "$P" "$O"' EXIT
# stdin: the patterns, a line "--", then the /tmp and /root entries older than the lab
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


def _scenarios() -> list[str]:
    p = run_lab("scenarios")
    assert p.returncode == 0, p.stderr
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


CATALOG = _catalog()
SCENARIOS = _scenarios()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


def _applied_causes(scenario: str | None, forced: str | None) -> set[str]:
    """Every cause id of the faults this start may apply (every candidate of the pools,
    whatever the seed draws, and the red herrings)."""
    from lab.engine.lifecycle import SCENARIO_DIR
    from lab.model.scenario import load_scenario

    if forced:
        return set(CATALOG[forced][1])
    sc = load_scenario(SCENARIO_DIR / f"{scenario}.yaml", set(CATALOG))
    return {cause for _, ref in sc.fault_refs() for cause in CATALOG[ref.fault][1]}


def _patterns(causes: set[str]) -> list[str]:
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


def _scan(lab: str, node: str, patterns: list[str], since: int, old: list[str]) -> list[str]:
    env = {**_clean_env(), "SINCE": str(since), "LAB": lab}
    # SINCE/LAB reach the node's shell through `lab exec`'s environment; the patterns
    # and the old entries go through stdin (see the module docstring)
    stdin = "\n".join([*patterns, "--", *old]) + "\n"
    p = run_lab("exec", "--lab", lab, node, "--", "sh", "-c", SCRIPT, input=stdin, env=env,
                timeout=60)
    assert "SCANNED" in p.stdout, f"scan on {node} did not finish: rc={p.returncode} {p.stderr}"
    return [line for line in p.stdout.splitlines() if line.startswith("HIT")]


def _scan_all(lab: str, nodes: list[str], patterns: list[str], since: int,
              old: list[str]) -> dict[str, list[str]]:
    """Every node scanned at once (one lab at a time; the nodes in parallel)."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        futures = {node: pool.submit(_scan, lab, node, patterns, since, old) for node in nodes}
        return {node: f.result() for node, f in futures.items()}


def test_scan_finds_what_is_there(labs):
    """Positive control: the same scan does find a word planted in a node's /var/log, the
    lab's own name in its processes' environment and an interface name in `ip addr`."""
    lab = labs.up("kh-control")
    since, old = int(time.time()) - 1, old_entries()
    p = run_lab("exec", "--lab", lab, "mx", "--", "sh", "-c",
                "echo 'queue ok canaryword' > /var/log/canary.log", env=_clean_env())
    assert p.returncode == 0, p.stderr
    hits = _scan(lab, "mx", ["canaryword", lab, "eth0"], since, old)
    assert any(h.startswith("HIT file /var/log/canary.log") for h in hits), hits
    assert any(h.startswith("HIT proc ") and h.endswith(lab) for h in hits), hits
    assert any(h.startswith("HIT ip addr: ") for h in hits), hits
    # the lab's own records stay hidden (another test session's state root under /run, if
    # one runs on this machine with LAB_STATE_ROOT set, is not this lab's)
    own = (str(STATE_ROOT), os.environ.get("LAB_RESULTS", "/var/lib/lab/results"))
    assert not any(root in h for root in own for h in hits), hits


CASES = ([pytest.param(sc, None, id=f"scenario-{sc}") for sc in SCENARIOS]
         + [pytest.param(_forced_on(f), f, id=f"forced-{i:02d}")
            for i, f in enumerate(sorted(CATALOG))])


def test_patterns_exclude_project_tree():
    """The exclusion is real: the project tree does name the faults, so it must stay out of
    the surfaces. (Where the tree lies is CI's choice, e.g. a clone under /tmp: the scan
    of /tmp and /root skips entries older than the lab it checks, so it is out either way.)"""
    hits = [f for f in CATALOG if f in (PROJECT_ROOT / "lab" / "faults").joinpath(
        f"{CATALOG[f][0]}.py").read_text()]
    assert hits, "the catalog's modules should name their faults"


@pytest.mark.parametrize("scenario,forced", CASES)
def test_answer_key_hidden(scenario, forced, labs, request):
    # the parameter ids and lab names are neutral (forced-NN), so that pytest's own reporting of a test
    # id never puts a fault name into a process visible to the nodes
    lab = labs.claim(f"kh-{request.node.callspec.id[-14:]}")
    since = int(time.time()) - 1
    old = old_entries()
    args = ["start", scenario, "--seed", str(SEED), "--lab", lab, "--trainee", "trainee"]
    if forced:
        args += ["--fault", forced]
    p = run_lab(*args, env=_clean_env())
    assert p.returncode == 0, p.stderr
    assert "TICKET:" in p.stdout
    patterns = _patterns(_applied_causes(scenario, forced))
    found = _scan_all(lab, nodes_of(scenario), patterns, since, old)
    leaks = {node: hits for node, hits in found.items() if hits}
    assert not leaks, f"answer key visible from node shells: {leaks}"
    # the ticket itself is shown to the trainee: it must not name a fault either
    word = re.compile(r"(?i)\b(" + "|".join(map(re.escape, patterns)) + r")\b")
    assert not word.search(p.stdout), p.stdout
