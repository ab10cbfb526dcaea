"""What the state root's file system costs a lab: `lab up` and `lab start` with the state
on a folder of a disk file system (``LAB_STATE_TMPFS=off``) against the same folder with
the tmpfs the lab mounts on it (lab.engine.stateroot), interleaved in one run.

    sudo .venv/bin/python bench/stateroot_bench.py [--runs R] [--scenario NAME] [--disk DIR]

Two state roots under DIR (default /var/tmp, which must be on disk): one kept on disk, one
that the first lab command mounts a tmpfs on. For each, R times: `lab up mail-dmz` then
`lab down`, and `lab start SCENARIO` then `lab down`. Prints the median wall time and CPU
time (core-seconds of every process the commands started: bench/cpumeter.py) of each, and
the ratio in memory / on disk. Also a microbenchmark of the file system operation that
differs: creating, writing and renaming a small file, as a mail server queues a message.
Both state roots are cleaned and removed at the end (the tmpfs unmounted).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from cpumeter import CpuMeter
from labcli import load_average, run_lab, timed_lab

from lab.engine import stateroot

PREFIX = f"sr{os.getpid() % 10000}"


def create_rename_us(folder: Path, count: int = 500) -> float:
    """Microseconds to create, write 3 KB to and rename one file in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i in range(count):
        tmp = folder / f"{i}.tmp"
        with open(tmp, "wb") as f:
            f.write(b"x" * 3000)
        os.replace(tmp, folder / str(i))
    took = (time.perf_counter() - started) / count * 1e6
    subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], check=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenario", default="nat-inbound")
    parser.add_argument("--disk", type=Path, default=Path("/var/tmp"),
                        help="a folder on a disk file system for the two state roots")
    args = parser.parse_args()
    if stateroot.in_memory(args.disk):
        raise SystemExit(f"{args.disk} is on a tmpfs: pass --disk with a folder on disk")
    roots = {"on disk": args.disk / f"{PREFIX}-disk", "in memory": args.disk / f"{PREFIX}-mem"}
    envs = {kind: {**os.environ, "LAB_STATE_ROOT": str(root),
                   "LAB_RESULTS": str(args.disk / f"{PREFIX}-results"),
                   stateroot.ENV: "off" if kind == "on disk" else "on"}
            for kind, root in roots.items()}
    ops = {"lab up mail-dmz": ("up", "mail-dmz"),
           f"lab start {args.scenario}": ("start", args.scenario, "--seed", "1")}
    wall = {(op, kind): [] for op in ops for kind in roots}
    cpu = {(op, kind): [] for op in ops for kind in roots}
    meter = CpuMeter()
    try:
        for i in range(args.runs):
            for op, argv in ops.items():
                for kind, env in envs.items():
                    name = f"{PREFIX}-{i}"
                    c0 = meter.usage()
                    took, _ = timed_lab(*argv, "--lab", name, env=env)
                    cpu[op, kind].append(meter.usage() - c0)
                    wall[op, kind].append(took)
                    timed_lab("down", "--lab", name, env=env)
                    time.sleep(0.3)  # the down's detached `rm` ends before the next count
        mounted = stateroot.file_system(roots["in memory"])[2]
        # in the state roots themselves, the lab's tmpfs still mounted on the second
        files_us = {kind: create_rename_us(root / "files") for kind, root in roots.items()}
    finally:
        for env in envs.values():
            run_lab("clean", env=env)
        meter.close()
    print(f"state roots under {args.disk} ({stateroot.file_system(args.disk)[2]}); the "
          f"in-memory one was on {mounted}; {args.runs} runs each, interleaved")
    for op in ops:
        d, m = (statistics.median(wall[op, k]) for k in roots)
        cd, cm = (statistics.median(cpu[op, k]) for k in roots)
        print(f"{op}: wall {d:.3f} s on disk, {m:.3f} s in memory (ratio {m / d:.2f}); "
              f"CPU {cd:.2f} core-s on disk, {cm:.2f} in memory (ratio {cm / cd:.2f})")
    print(f"create + write 3 KB + rename one file: {files_us['on disk']:.0f} us on disk, "
          f"{files_us['in memory']:.0f} us in memory; load average {load_average()}")
    for root in roots.values():
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)
    subprocess.run(["rm", "-rf", str(args.disk / f"{PREFIX}-results")], check=True)


if __name__ == "__main__":
    main()
