"""docs/design.md rule 4: nothing a trainee can reach from a lab shell names the applied faults.

For every fault of the catalog forced with ``lab start --fault`` (here) and for every
scenario in scenarios/ (seed fixed; in tests/test_history_lab.py, in the lab whose
traces it checks), the lab is started and from EVERY node's shell (``sh -c SCRIPT``
run as ``lab exec NODE`` runs it, one shell command per node) the test greps every
surface a trainee can reach that the lab created or touched:

* files: the whole /etc (the node's overlay over the host's /etc), /var/mail,
  /var/spool, /var/log and /run; files under /tmp and /root changed since the lab
  started;
* the command lines and environments of the processes the node can see (every process
  in the node's network namespace and every process carrying LAB_INSTANCE=<lab>; in a
  sealed node these are the node's own: the supervisor that holds the answer key is in
  no node's PID namespace, and the node's init is out of a node process's reach);
* ``nft list ruleset``, ``ip addr``, ``ip route`` as the node sees them;
* ``ls -A`` of /run/lab and /var/lib/lab/results, which must be empty inside a node;

for every fault name of the catalog, every cause id of the applied faults (and of the
red herrings) and the word "fault" (case-insensitive, as a whole word: "default" is
not a hit).

Excluded on purpose, and why:
* the `lab` package (lab/, read-only in every node: the node commands netguard, mailq
  and lab run from it) names every fault of the catalog, but not which one is applied;
  it is not one of the surfaces searched (the rest of the checkout is not in the nodes);
* under /tmp and /root, files older than the lab and entries that existed before it
  started (kept from the time nodes shared the host's /tmp and /root; a sealed node's
  are its own and empty at start, so the filter changes nothing).

Processes of other labs and test sessions are out of a node's sight (its own PID
namespace), as is the supervisor that holds the answer key.

The patterns (and the lab's start and name) travel on stdin into a file under /dev/shm
(not searched), so neither the grep's arguments nor the shell's command line contains
them. The scan enters each node the way `lab exec` does (lab.engine.nodeexec, sealed and
recorded), and its commands get the node's own environment, never the caller's (not
PYTEST_CURRENT_TEST, which names the test id); the `lab start` runs with an environment
free of PYTEST_* variables.
"""
from __future__ import annotations

import os
import time

import pytest
from conftest import PROJECT_ROOT, STATE_ROOT, run_lab
from hidden_scan import CATALOG, clean_env, leaks, old_entries, scan

from lab.errors import LabError
from lab.model.topology import load_topology

XDIST_GROUPS = 3  # every test has labs of its own: they share out freely

pytestmark = [pytest.mark.root, pytest.mark.slow]

SEED = 7
FORCED_ON = {"mail-dmz": "inbound-bounces", "isp-relay": "isp-relay-bounce"}  # forced faults


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


def test_scan_finds_what_is_there(labs):
    """Positive control: the same scan does find a word planted in a node's /var/log, the
    lab's own name in its processes' environment and an interface name in `ip addr`."""
    lab = labs.up("kh-control")
    since, old = int(time.time()) - 1, old_entries()
    # a process of the node that the scan can read (the node's init is out of its reach)
    p = run_lab("exec", "--lab", lab, "mx", "--", "sh", "-c",
                "echo 'queue ok canaryword' > /var/log/canary.log; "
                "mkdir /tmp/new; echo 'canaryword' > /tmp/new/canary.txt; "
                "sleep 120 </dev/null >/dev/null 2>&1 &", env=clean_env())
    assert p.returncode == 0, p.stderr
    hits = scan(lab, "mx", ["canaryword", lab, "eth0"], since, old)
    assert any(h.startswith("HIT file /var/log/canary.log") for h in hits), hits
    assert any(h.startswith("HIT new /tmp/new/canary.txt") for h in hits), hits
    assert any(h.startswith("HIT proc ") and h.endswith(lab) for h in hits), hits
    assert any(h.startswith("HIT ip addr: ") for h in hits), hits
    # the lab's own records stay hidden (another test session's state root under /run, if
    # one runs on this machine with LAB_STATE_ROOT set, is not this lab's)
    own = (str(STATE_ROOT), os.environ.get("LAB_RESULTS", "/var/lib/lab/results"))
    assert not any(root in h for root in own for h in hits), hits


# every scenario's own lab is scanned by tests/test_history_lab.py, once its traces are
# checked (one lab per scenario for both); here, every fault of the catalog forced
CASES = [pytest.param(_forced_on(f), f, id=f"forced-{i:02d}")
         for i, f in enumerate(sorted(CATALOG))]


def test_patterns_exclude_project_tree():
    """The exclusion is real: the project tree does name the faults, so it must stay out of
    the surfaces. (Where the tree lies is CI's choice, e.g. a clone under /tmp: the scan
    of /tmp and /root skips entries older than the lab it checks, so it is out either way.)"""
    hits = [f for f in CATALOG if f in (PROJECT_ROOT / "lab" / "faults").joinpath(
        f"{CATALOG[f][0]}.py").read_text()]
    assert hits, "the catalog's modules should name their faults"


@pytest.mark.parametrize("scenario,forced", CASES)
def test_answer_key_hidden(scenario, forced, labs, request):
    # the parameter ids and lab names are neutral (forced-NN), so that pytest's own reporting
    # of a test id never puts a fault name into a process visible to the nodes
    lab = labs.claim(f"kh-{request.node.callspec.id[-14:]}")
    since = int(time.time()) - 1
    old = old_entries()
    p = run_lab("start", scenario, "--seed", str(SEED), "--lab", lab, "--trainee", "trainee",
                "--fault", forced, env=clean_env())
    assert p.returncode == 0, p.stderr
    assert "TICKET:" in p.stdout
    # nothing a node shell reaches names the fault, nor does the ticket shown to the trainee
    found = leaks(lab, scenario, forced, since, old, p.stdout)
    assert not found, f"answer key visible to the trainee: {found}"
