"""A class starting at once: N labs started by N `lab up` (or `lab start SCENARIO`) run
together, as a classroom server or N trainees at the same minute would.

    sudo .venv/bin/python bench/class_bench.py [--labs 30] [--runs 3] [--scenario NAME]

Prints, per run (median over --runs): the time until every lab is ready (the last `lab
up` or `lab start` returned), the median and slowest single command, then the time to
take them all down at once; as a baseline in the same run, one `lab up` alone. Every lab
it starts is taken down before it exits.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from cpumeter import CpuMeter
from labcli import load_average, run_lab, timed_lab

PREFIX = f"cl{os.getpid() % 10000}"


def one_class(labs: int, scenario: str | None, run: int, meter: CpuMeter) -> dict:
    names = [f"{PREFIX}-{run}-{i}" for i in range(1, labs + 1)]

    def start(name: str) -> tuple[float, int, str]:
        args = ("start", scenario, "--lab", name) if scenario else ("up", "mail-dmz",
                                                                     "--lab", name)
        took, p = timed_lab(*args, check=False, timeout=600)
        return took, p.returncode, p.stderr.strip()[-300:]

    started, cpu = time.perf_counter(), meter.usage()
    try:
        with ThreadPoolExecutor(max_workers=labs) as pool:
            results = list(pool.map(start, names))
        ready, up_cpu = time.perf_counter() - started, meter.usage() - cpu
    finally:
        began, cpu = time.perf_counter(), meter.usage()
        with ThreadPoolExecutor(max_workers=labs) as pool:
            list(pool.map(lambda n: run_lab("down", "--lab", n, timeout=300), names))
        down, down_cpu = time.perf_counter() - began, meter.usage() - cpu
    failed = [err for _, rc, err in results if rc != 0]
    return {"ready": ready, "median": statistics.median(r[0] for r in results),
            "slowest": max(r[0] for r in results), "failed": failed, "down": down,
            "cpu": up_cpu / labs, "down_cpu": down_cpu / labs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labs", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", help="`lab start SCENARIO` instead of `lab up mail-dmz`")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("class_bench: needs root (it builds labs)", file=sys.stderr)
        return 1
    what = f"lab start {args.scenario}" if args.scenario else "lab up mail-dmz"
    print(f"class benchmark: {args.labs} x `{what}` at once; load average {load_average()}")
    meter = CpuMeter()
    try:
        alone, alone_cpu, runs = [], [], []
        for run in range(args.runs):
            cpu = meter.usage()
            took, _ = timed_lab("up", "mail-dmz", "--lab", f"{PREFIX}-alone")
            alone.append(took)
            alone_cpu.append(meter.usage() - cpu)
            run_lab("down", "--lab", f"{PREFIX}-alone")
            r = one_class(args.labs, args.scenario, run, meter)
            runs.append(r)
            print(f"run {run + 1}: all {args.labs} ready in {r['ready']:.2f} s (median command "
                  f"{r['median']:.2f} s, slowest {r['slowest']:.2f} s, {len(r['failed'])} "
                  f"failed); all down in {r['down']:.2f} s; CPU per lab {r['cpu']:.2f} "
                  f"core-s up, {r['down_cpu']:.2f} down; load average {load_average()}",
                  flush=True)
            for err in r["failed"][:3]:
                print(f"  failed: {err}")
    finally:
        meter.close()
    med = statistics.median
    print(f"median of {args.runs}: {args.labs} labs ready in {med(r['ready'] for r in runs):.2f} s"
          f" ({med(r['ready'] for r in runs) / med(alone):.1f}x one `lab up` alone, "
          f"{med(alone):.2f} s); down {med(r['down'] for r in runs):.2f} s; CPU per lab "
          f"{med(r['cpu'] for r in runs):.2f} core-s ({med(alone_cpu):.2f} for the lab up "
          f"alone), down {med(r['down_cpu'] for r in runs):.2f}")
    return 1 if any(r["failed"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
