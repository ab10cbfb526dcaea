"""What sealing costs a command in a node: `lab exec NODE -- true`, sealed, against the
unsealed way (mnexec into the node's Mininet namespaces) measured in the same run.

    sudo .venv/bin/python bench/exec_bench.py [--runs N] [--node NODE]

Prints medians over N runs of:
  * `lab exec NODE -- true`, CLI process start to exit (sealed: nsenter + setpriv into the
    node's init, lab.engine.seal), and as the baseline the same CLI steps ending the old
    way (`mnexec -a PID env -- true`, what `lab exec` did before sealing);
  * the join alone, from one process (no CLI start-up): seal.spawn of `true` against
    `mnexec -a PID env -- true`;
  * `true` through the trainee channel (the supervisor starts it; pipes passed with
    SCM_RIGHTS), from one process.
One lab is brought up for the run and taken down at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from labcli import LAB_CMD, PROJECT_ROOT, run_lab

STATE_ROOT = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))

# the old `lab exec`: the CLI's start-up and checks, then exec mnexec (as before sealing)
UNSEALED_CLI = r'''
import os, sys
from lab import cli  # the same imports as the `lab` command
from lab.engine import lifecycle, nodeexec
from lab.engine.state import LabState
lab, node = sys.argv[1], sys.argv[2]
lab = lifecycle.pick_lab(lab)
pid = LabState.load(lab).nodes[node].pid
nodeexec.record(lab, node, ["true"])
os.execvpe("mnexec", ["mnexec", "-a", str(pid), "env", "--", "true"],
           nodeexec.node_env(lab, node))
'''


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_cmd(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - started)
    return out


def time_call(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def interleaved(a, b, runs: int) -> tuple[list[float], list[float]]:
    """Alternate the two so that load from elsewhere falls on both alike."""
    xs, ys = [], []
    for _ in range(runs):
        xs += a(1)
        ys += b(1)
    return xs, ys


def report(name: str, sealed: list[float], unsealed: list[float]) -> None:
    s, u = median_ms(sealed), median_ms(unsealed)
    print(f"{name:<34} sealed {s:7.1f} ms   unsealed {u:7.1f} ms   "
          f"added {s - u:+6.1f} ms   ratio {s / u:4.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--node", default="mx")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (it brings a lab up)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(PROJECT_ROOT))
    from lab.engine import channel, seal
    from lab.engine.nodeexec import node_env

    lab = f"b{os.getpid()}-exec"
    p = run_lab("up", "mail-dmz", "--lab", lab)
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
        return 1
    try:
        rec = json.loads((STATE_ROOT / lab / "state.json").read_text())["nodes"][args.node]
        env = node_env(lab, args.node)
        cli = [*LAB_CMD, "exec", "--lab", lab, args.node, "--", "true"]
        old = [sys.executable, "-c", UNSEALED_CLI, lab, args.node]
        print(f"{args.runs} runs each, node {args.node}; medians")
        report("lab exec NODE -- true (CLI)", *interleaved(
            lambda n: time_cmd(cli, n), lambda n: time_cmd(old, n), args.runs))

        def sealed_join() -> None:
            seal.spawn(rec["init"], ["true"], env, stdout=subprocess.DEVNULL).wait()

        def mnexec_join() -> None:
            subprocess.run(["mnexec", "-a", str(rec["pid"]), "env", "--", "true"], env=env,
                           stdout=subprocess.DEVNULL, check=True)

        report("join alone (one process)", *interleaved(
            lambda n: time_call(sealed_join, n), lambda n: time_call(mnexec_join, n),
            args.runs))

        def through_channel() -> None:
            sock, _ = channel.connect(lab)
            with sock:
                r, w = os.pipe()
                channel.send(sock, {"op": "exec", "node": args.node, "argv": ["true"]},
                             [r, w, w])
                os.close(r)
                os.close(w)
                channel.receive(sock)
                channel.receive(sock)

        report("trainee channel exec (one process)", *interleaved(
            lambda n: time_call(through_channel, n), lambda n: time_call(mnexec_join, n),
            args.runs))
    finally:
        run_lab("down", "--lab", lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
