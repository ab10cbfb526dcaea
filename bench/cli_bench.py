"""What a `lab` command costs before it does its work: wall time and CPU (core-seconds,
the command and every process it waited for) of the commands a trainee, a playbook and
the test suite run most, against the virtual environment's Python doing nothing, in the
same run.

    sudo .venv/bin/python bench/cli_bench.py [--runs N]

Prints, per command, the median over N runs of its wall time and CPU, and the CPU above
the baseline (`python -c pass` in the same virtual environment). One attempt is started
for the run (`lab start nat-inbound`) and taken down at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from labcli import LAB_CMD, PROJECT_ROOT, load_average, run_lab

LAB = f"clib{os.getpid() % 10000}"
COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "lab --help": [*LAB_CMD, "--help"],
    "lab ls": [*LAB_CMD, "ls"],
    "lab exec mx -- true": [*LAB_CMD, "exec", "--lab", LAB, "mx", "--", "true"],
    "lab status": [*LAB_CMD, "status", "--lab", LAB],
    "lab ticket": [*LAB_CMD, "ticket", "--lab", LAB],
    "lab fault check": [*LAB_CMD, "fault", "check", "fw-smtp-permit-missing", "--lab", LAB],
    "lab submit": [*LAB_CMD, "submit", "fw-smtp-permit-missing", "--node", "fw", "--lab", LAB],
}


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU (user + system, with the children it waited for) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}")
    return took, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("cli_bench: needs root (it starts an attempt)", file=sys.stderr)
        return 1
    p = run_lab("start", "nat-inbound", "--seed", "1", "--lab", LAB, timeout=300)
    if p.returncode != 0:
        print(f"cli_bench: lab start failed: {p.stderr.strip()}", file=sys.stderr)
        return 1
    try:
        print(f"CLI benchmark: medians of {args.runs} runs each; load average "
              f"{load_average()}")
        rows = {}
        for _ in range(args.runs):  # interleaved: the load of the moment hits all alike
            for name, argv in COMMANDS.items():
                rows.setdefault(name, []).append(measure(argv))
        base = statistics.median(cpu for _, cpu in rows["python -c pass (baseline)"])
        print(f"{'command':28} {'wall':>9} {'CPU':>9} {'CPU over baseline':>18}")
        for name, runs in rows.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{name:28} {wall * 1000:7.1f}ms {cpu * 1000:7.1f}ms "
                  f"{(cpu - base) * 1000:16.1f}ms")
        print(f"load average at the end {load_average()}")
    finally:
        run_lab("down", "--lab", LAB, timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
