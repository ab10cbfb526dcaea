"""How long the exercise operations take: faults, `lab start`, `lab score`.

    sudo .venv/bin/python bench/exercise_bench.py [--runs N] [--scenario NAME]

Prints medians over N runs (default 5) of:
  * for every fault of the catalog, apply and revert as the supervisor does them: the
    control request ``control.request(lab, "fault", ...)`` timed from this process (no
    CLI process start), and the wall time of the CLI `lab fault apply|revert NAME`;
  * `lab start SCENARIO` wall time, process start to the ticket printed (and exit);
  * `lab score` wall time, including the end-to-end probes, on a healthy lab (started
    with the scenario and one forced fault, which is reverted before scoring);
  * as a baseline in the same run, `lab up mail-dmz` wall time.
Targets (issue 4): fault apply / revert < 50 ms median, start < 2 s, score < 1 s.
Every lab it starts is taken down before it exits.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from labcli import timed_lab

PREFIX = f"xb{os.getpid() & 0xffff:04x}"
FORCED = "dns-wrong-address"


class Bench:
    def __init__(self) -> None:
        self.labs: list[str] = []
        self.count = 0

    def name(self) -> str:
        self.count += 1
        lab = f"{PREFIX}-{self.count}"
        self.labs.append(lab)
        return lab

    def lab(self, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
        return timed_lab(*args, timeout=180, check=check)

    def down(self, lab: str) -> None:
        self.lab("down", "--lab", lab, check=False)
        self.labs.remove(lab)

    def close(self) -> None:
        for lab in list(self.labs):
            self.down(lab)


def median_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:8.1f}" if xs else "     n/a"


def faults(b: Bench, runs: int) -> list[tuple[str, str, str, str, str]]:
    from lab.engine import control
    from lab.errors import LabError
    from lab.faults import CATALOG

    lab = b.name()
    b.lab("up", "mail-dmz", "--lab", lab)
    rows = []
    try:
        for name in sorted(CATALOG):
            t = {"apply": [], "revert": [], "cli-apply": [], "cli-revert": []}
            error = ""
            for _ in range(runs):
                for action in ("apply", "revert"):
                    t0 = time.perf_counter()
                    try:
                        control.request(lab, "fault", timeout=60, action=action, name=name,
                                        params={})
                    except LabError as e:
                        error = e.message
                    t[action].append(time.perf_counter() - t0)
            for _ in range(runs):
                for action in ("apply", "revert"):
                    dt, p = b.lab("fault", action, name, "--lab", lab, check=False)
                    if p.returncode != 0:
                        error = error or p.stderr.strip().splitlines()[0]
                    t[f"cli-{action}"].append(dt)
            rows.append((name, median_ms(t["apply"]), median_ms(t["revert"]),
                         median_ms(t["cli-apply"]), median_ms(t["cli-revert"]) +
                         (f"  ERROR {error}" if error else "")))
    finally:
        b.down(lab)
    return rows


def start_and_score(b: Bench, runs: int, scenario: str) -> tuple[list[float], list[float]]:
    starts, scores = [], []
    with tempfile.TemporaryDirectory(prefix="exbench-") as results:
        for _ in range(runs):
            lab = b.name()
            dt, p = b.lab("start", scenario, "--seed", "1", "--lab", lab)
            assert "TICKET:" in p.stdout
            starts.append(dt)
            b.down(lab)
        for _ in range(runs):
            lab = b.name()
            b.lab("start", scenario, "--seed", "1", "--fault", FORCED, "--lab", lab)
            b.lab("fault", "revert", FORCED, "--lab", lab)
            dt, p = b.lab("score", "--lab", lab, "--results", results)
            scores.append(dt)
            b.down(lab)
    return starts, scores


def baseline(b: Bench, runs: int) -> list[float]:
    ups = []
    for _ in range(runs):
        lab = b.name()
        dt, _ = b.lab("up", "mail-dmz", "--lab", lab)
        ups.append(dt)
        b.down(lab)
    return ups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenario", default="inbound-bounces")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    b = Bench()
    try:
        rows = faults(b, args.runs)
        starts, scores = start_and_score(b, args.runs, args.scenario)
        ups = baseline(b, args.runs)
    finally:
        b.close()
    print(f"medians over {args.runs} runs (ms); fault times on a running mail-dmz lab")
    print(f"{'FAULT':<26} {'apply':>8} {'revert':>8} {'cli-apply':>9} {'cli-revert':>10}")
    for name, a, r, ca, cr in rows:
        print(f"{name:<26} {a} {r} {ca:>9} {cr:>10}")
    allapply = [float(r[1]) for r in rows if r[1].strip() != "n/a"]
    allrevert = [float(r[2]) for r in rows if r[2].strip() != "n/a"]
    print(f"{'(median of the faults)':<26} {statistics.median(allapply):8.1f} "
          f"{statistics.median(allrevert):8.1f}   target < 50 ms each (control request)")
    print()
    print(f"{'OPERATION (CLI wall time)':<44} {'median ms':>10}  target")
    print(f"{'lab start ' + args.scenario + ' (to ticket)':<44} {median_ms(starts):>10}  < 2000")
    print(f"{'lab score incl. probes (healthy lab)':<44} {median_ms(scores):>10}  < 1000")
    print(f"{'baseline: lab up mail-dmz':<44} {median_ms(ups):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
