"""Wall time of the full playbook matrix: every shipped scenario x the three reference
playbooks, with --jobs 1 and with the default jobs (and any other --jobs given).

    sudo .venv/bin/python bench/matrix_bench.py [--jobs 1 2 4] [--seed N]

Runs the matrix through the library (the same code as `lab playbook run`) and prints, per
jobs value: the wall time, the per-run median (lab start, playbook, submit, score, down),
the playbook steps' own median, how many runs were right, and the CPU time per run in
core-seconds, every process counted (bench/cpumeter.py). Each run's lab is torn down
by the matrix itself, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cpumeter import CpuMeter
from labcli import load_average

from lab.engine.attempt import load
from lab.engine.lifecycle import SCENARIO_DIR, require_root
from lab.playbooks.matrix import DEFAULT_JOBS, Matrix, load_playbook_ref, plan

PLAYBOOKS = ("inbound", "outbound", "alerts")


def measure(jobs: int, seed: int, meter: CpuMeter) -> dict:
    playbooks = [load_playbook_ref(p)[1] for p in PLAYBOOKS]
    scenarios = [load(p.stem) for p in sorted(SCENARIO_DIR.glob("*.yaml"))]
    work = plan(playbooks, scenarios, [seed])
    with tempfile.TemporaryDirectory(prefix="pb-bench-") as results:
        started, cpu = time.monotonic(), meter.usage()
        outcomes = Matrix(work, jobs, Path(results)).run()
        wall, cpu = time.monotonic() - started, meter.usage() - cpu
    runs = [o.seconds for o in outcomes]
    steps = [o.result.seconds for o in outcomes if o.result is not None]
    return {"jobs": jobs, "runs": len(outcomes), "wall": wall,
            "run_median": statistics.median(runs),
            "steps_median": statistics.median(steps) if steps else float("nan"),
            "right": sum(o.passed for o in outcomes), "cpu": cpu / len(outcomes),
            "errors": sum(o.verdict == "error" for o in outcomes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, DEFAULT_JOBS])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    require_root()
    print(f"matrix benchmark; load average {load_average()}")
    print(f"{'JOBS':>4} {'RUNS':>4} {'WALL':>8} {'RUN MEDIAN':>10} {'STEPS MEDIAN':>12} "
          f"{'RIGHT':>5} {'ERR':>3} {'CPU/RUN':>8}  LOAD")
    meter = CpuMeter()
    try:
        for jobs in dict.fromkeys(args.jobs):
            r = measure(jobs, args.seed, meter)
            print(f"{r['jobs']:>4} {r['runs']:>4} {r['wall']:>7.1f}s {r['run_median']:>9.2f}s "
                  f"{r['steps_median']:>11.2f}s {r['right']:>5} {r['errors']:>3} "
                  f"{r['cpu']:>7.2f}s  {load_average()}", flush=True)
    finally:
        meter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
