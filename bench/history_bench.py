"""What a lab's history costs: idle CPU with the background mail running, against the same
labs without it, and the time the replay adds to `lab start`.

    sudo .venv/bin/python bench/history_bench.py [--labs N] [--seconds S] [--runs R]
                                                 [--scenario NAME]

Idle: brings up 3N labs of the reference topology at once: N with ``LAB_HISTORY=off``
(the baseline), N with history, N with history at F times its rates
(``LAB_HISTORY_RATE=F``); waits for them to settle, then samples the CPU time (on-CPU
nanoseconds from /proc/PID/schedstat) of each lab's processes (its supervisor and every
process whose environment carries LAB_INSTANCE=<lab>) over S seconds. Prints, per group, the median and
the mean per lab in % of one core, the ratio with/without, and how many messages the
servers handled meanwhile (message-id lines added to the labs' mail.log files). The median
shows an idle lab; the mean carries the traffic, a message every few minutes per lab, too
few in a minute to weigh: the busy group's mean, its extra over the baseline divided by
F, gives the traffic's cost at its normal rates.

Start: `lab start SCENARIO` R times with history and R times without, interleaved: the
median wall time of each, their ratio, the replay's own time from the supervisor's
log, and the CPU time of each `lab start` in core-seconds, every process it started
counted (bench/cpumeter.py). Every lab it starts is taken down before it exits.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from cpumeter import CpuMeter
from labcli import LAB_CMD, PROJECT_ROOT, lab_pids, load_average

STATE_ROOT = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))
PREFIX = f"hb{os.getpid() % 10000}"
TICK = os.sysconf("SC_CLK_TCK")


def lab(*args: str, history: bool = True, rate: float = 1.0,
        timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HISTORY": "on" if history else "off",
           "LAB_HISTORY_RATE": str(rate)}
    p = subprocess.run([*LAB_CMD, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                       env=env, timeout=timeout, check=False)
    if p.returncode != 0:
        raise SystemExit(f"lab {' '.join(args)} failed: {p.stderr.strip()}")
    return p


def cpu_seconds(pids: set[int]) -> float:
    """CPU time the processes have used: /proc/PID/schedstat's nanoseconds on a CPU (the
    tick counts of /proc/PID/stat, 10 ms each, cannot see an idle lab's microseconds)."""
    total = 0.0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
        except FileNotFoundError:
            continue  # gone
        except OSError:  # no schedstat: the ticks of utime + stime
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def messages(name: str) -> int:
    """message-id lines in every mail.log of the lab (each message a server handled)."""
    return sum(p.read_text(errors="replace").count(": message-id=")
               for p in (STATE_ROOT / name / "nodes").glob("*/var/log/mail.log"))


GROUPS = (("without", "off", 1.0), ("with", "on", 1.0), ("busy", "on", None))


def idle(n: int, seconds: float, settle: float, busy: float, started: list[str]) -> None:
    groups: dict[str, list[str]] = {g: [] for g, _, _ in GROUPS}
    for i in range(n):
        for group, history, rate in GROUPS:
            name = f"{PREFIX}-{group}{i}"
            started.append(name)
            lab("up", "mail-dmz", "--lab", name, history=history == "on",
                rate=busy if rate is None else rate)
            groups[group].append(name)
    time.sleep(settle)
    pids = {name: lab_pids(name) for names in groups.values() for name in names}
    before = {name: (cpu_seconds(p), messages(name)) for name, p in pids.items()}
    time.sleep(seconds)
    after = {name: (cpu_seconds(p), messages(name)) for name, p in pids.items()}
    print(f"idle: {n} labs per group, {seconds:.0f} s, "
          f"{sum(len(p) for p in pids.values()) / len(pids):.0f} processes per lab")
    means, medians = {}, {}
    for group, names in groups.items():
        pct = [100 * (after[m][0] - before[m][0]) / seconds for m in names]
        sent = sum(after[m][1] - before[m][1] for m in names)
        medians[group], means[group] = statistics.median(pct), statistics.mean(pct)
        label = {"without": "without history", "with": "with history",
                 "busy": f"with history x{busy:g}"}[group]
        print(f"  {label}: median {medians[group]:.4f} %, mean {means[group]:.4f} %, "
              f"max {max(pct):.4f} % of a core per lab; {sent} messages handled")
    traffic = (means["busy"] - means["without"]) / busy
    print(f"  the traffic at its normal rates: {traffic:.4f} % of a core per lab "
          f"(busy group's extra / {busy:g}); a lab with history idles at "
          f"{means['without'] + traffic:.4f} %")


def start_times(scenario: str, runs: int, started: list[str], meter: CpuMeter) -> None:
    took: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    replays: list[float] = []
    for i in range(runs):
        for history in (True, False):
            name = f"{PREFIX}-s{i}{'h' if history else 'n'}"
            started.append(name)
            t0, c0 = time.perf_counter(), meter.usage()
            lab("start", scenario, "--seed", str(i + 1), "--lab", name, history=history)
            took[history].append(time.perf_counter() - t0)
            cpu[history].append(meter.usage() - c0)
            log = (STATE_ROOT / name / "supervisor.log").read_text()
            m = re.search(r"replayed in ([\d.]+) s", log)
            if history and m:
                replays.append(float(m.group(1)))
            lab("down", "--lab", name)
            started.remove(name)
    on, off = statistics.median(took[True]), statistics.median(took[False])
    print(f"lab start {scenario}, {runs} runs each: median {on:.2f} s with history, "
          f"{off:.2f} s without (ratio {on / off:.2f}); the replay itself: median "
          f"{statistics.median(replays):.2f} s")
    print(f"  CPU per lab start: median {statistics.median(cpu[True]):.2f} core-s with history, "
          f"{statistics.median(cpu[False]):.2f} without; load average {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", type=int, default=6, help="labs per group (idle)")
    parser.add_argument("--seconds", type=float, default=60.0, help="idle measurement")
    parser.add_argument("--settle", type=float, default=10.0, help="pause before measuring")
    parser.add_argument("--busy", type=float, default=60.0, help="F: the busy group's rate factor")
    parser.add_argument("--runs", type=int, default=5, help="lab start runs per group")
    parser.add_argument("--scenario", default="nat-inbound")
    args = parser.parse_args()
    started: list[str] = []
    print(f"history benchmark; load average {load_average()}")
    meter = CpuMeter()
    try:
        if args.labs:
            idle(args.labs, args.seconds, args.settle, args.busy, started)
        for name in list(started):
            lab("down", "--lab", name)
            started.remove(name)
        if args.runs:
            start_times(args.scenario, args.runs, started, meter)
    finally:
        for name in started:
            subprocess.run([*LAB_CMD, "down", "--lab", name], capture_output=True,
                           cwd=PROJECT_ROOT, check=False)
        meter.close()


if __name__ == "__main__":
    main()
