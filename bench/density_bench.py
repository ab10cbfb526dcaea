"""How many labs one machine holds: memory and idle CPU per lab, and `lab up` as labs pile up.

    sudo .venv/bin/python bench/density_bench.py [--labs N] [--wave W] [--idle S] [--sample K]

Starts labs (topology mail-dmz, names PREFIX-1...) in waves of W at once up to N (default
300), and at 1 and at every hundred labs running (and at N) measures, with the labs idle:
  * `lab up` of one more lab, timed alone once the machine is idle (median of --probe
    runs; the first is the baseline the later ones are compared with);
  * PSS per lab: the sum of /proc/PID/smaps_rollup's Pss over the lab's processes (those
    carrying LAB_INSTANCE=<lab> or living in one of its network namespaces), median over
    the labs; the supervisor's own; the launcher's (shared by all, said apart); and
    the lab's state files (memory too where the state root is a tmpfs);
  * idle CPU per lab over --idle seconds: utime+stime (and the children's the labs
    reaped) of every lab process, as % of one core per lab.
At the top it runs `lab verify` in --sample labs picked at random. A `lab up` that fails
is counted and the fill goes on; a wave in which every `lab up` fails stops it there,
saying at which count, with the kernel limits that usually cause it. Then it
takes every lab down (in waves) and checks nothing is left: no process marked with one of
its labs, no state directory, no mount under the state root, no named network namespace,
no bridge on the host, and no state folder of a lab down left undeleted (trash).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labcli import load_average, run_lab, timed_lab

from lab.engine.stateroot import file_system, mounts

STATE_ROOT = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))
TICKS = os.sysconf("SC_CLK_TCK")
LIMITS = {  # what usually stops a machine full of namespaces first
    "pid_max": "/proc/sys/kernel/pid_max",
    "threads-max": "/proc/sys/kernel/threads-max",
    "inotify max_user_instances": "/proc/sys/fs/inotify/max_user_instances",
    "file-nr (open, free, max)": "/proc/sys/fs/file-nr",
    "neighbour gc_thresh3": "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
    "user namespaces max_net_namespaces": "/proc/sys/user/max_net_namespaces",
    "user namespaces max_mnt_namespaces": "/proc/sys/user/max_mnt_namespaces",
    "user namespaces max_pid_namespaces": "/proc/sys/user/max_pid_namespaces",
}


def read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


class Procs:
    """One pass over /proc: every process's owner lab (by marker or namespace)."""

    def __init__(self, labs: list[str]) -> None:
        netns = {}
        for lab in labs:
            try:
                state = json.loads((STATE_ROOT / lab / "state.json").read_text())
            except (OSError, ValueError):
                continue
            netns.update({rec["netns"]: lab for rec in state["nodes"].values()})
        wanted = set(labs)
        self.owner: dict[int, str] = {}
        self.supervisors = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            lab = self._marker(pid, wanted)
            if lab is None:
                try:
                    lab = netns.get(os.stat(f"/proc/{pid}/ns/net").st_ino)
                except OSError:
                    continue
            if lab is not None:
                self.owner[pid] = lab

    @staticmethod
    def _marker(pid: int, wanted: set[str]) -> str | None:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        for var in env:
            if var.startswith(b"LAB_INSTANCE="):
                lab = var[len(b"LAB_INSTANCE="):].decode(errors="replace")
                return lab if lab in wanted else None
        return None

    def by_lab(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for pid, lab in self.owner.items():
            out.setdefault(lab, []).append(pid)
        return out


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def state_kb(folder: Path) -> int:
    """What a lab's state folder occupies (KB allocated): memory where the state root is a
    tmpfs (lab.engine.stateroot), which no process's PSS shows."""
    total = 0
    for path, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_blocks * 512
            except OSError:
                continue
    return total // 1024


def cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime: the process's CPU and that of its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11:15])


def launcher_pss() -> int:
    marker = f"LAB_LAUNCHER_FOR={STATE_ROOT}".encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                    return pss_kb(int(entry.name))
            except OSError:
                continue
    return 0


class Density:
    def __init__(self, prefix: str, wave: int) -> None:
        self.prefix = prefix
        self.wave = wave
        self.labs: list[str] = []
        self.failed: list[str] = []  # labs whose `lab up` failed (taken down again)
        self.count = 0

    def up(self) -> tuple[str, float, str]:
        self.count += 1
        name = f"{self.prefix}-{self.count}"
        self.labs.append(name)
        took, p = timed_lab("up", "mail-dmz", "--lab", name, check=False, timeout=300)
        return name, took, "" if p.returncode == 0 else (p.stderr.strip() or f"rc {p.returncode}")

    def fill(self, target: int) -> str:
        """Start labs W at a time until ``target`` run. A lab that fails is taken down and
        counted (``failed``); a wave in which every lab fails stops the fill: its first
        error, the limit reached."""
        while len(self.labs) < target:
            n = min(self.wave, target - len(self.labs))
            with ThreadPoolExecutor(max_workers=n) as pool:
                results = list(pool.map(lambda _: self.up(), range(n)))
            errors = [f"{name}: {err}" for name, _, err in results if err]
            for name, _, err in results:
                if err:  # `lab up` removed what it had started
                    self.failed.append(f"{name}: {err}")
                    self.labs.remove(name)
            if len(errors) == n:
                return errors[0]
        return ""

    def probe(self, runs: int, alone: bool = False) -> tuple[float, str]:
        """`lab up` of one more lab: the median of ``runs``; all stay up, or (``alone``)
        all but the last are taken down again, so that the count grows by one. Each
        `lab up` waits until the machine is idle (``settle``): it times a lab joining N
        idle labs, not one racing the last wave's tail."""
        times: list[float] = []
        failures = 0
        while len(times) < runs:
            settle()
            name, took, err = self.up()
            if err:  # counted as in fill(); two in a row stop the probe
                self.failed.append(f"{name}: {err}")
                self.labs.remove(name)
                failures += 1
                if failures == 2:
                    return float("nan"), err
                continue
            failures = 0
            times.append(took)
            i = len(times) - 1
            if alone and i < runs - 1:
                run_lab("down", "--lab", name)
                self.labs.remove(name)
        return statistics.median(times), ""

    def measure(self, idle: float) -> dict:
        procs = Procs(self.labs).by_lab()
        start = {pid: cpu_ticks(pid) for pids in procs.values() for pid in pids}
        time.sleep(idle)
        end = {pid: cpu_ticks(pid) for pid in start}
        used = sum(max(0, end[pid] - start[pid]) for pid in start)
        per_lab = [sum(pss_kb(pid) for pid in pids) for pids in procs.values()]
        sups = [pss_kb(self.supervisor(lab)) for lab in procs]
        state = [state_kb(STATE_ROOT / lab) for lab in procs]
        return {"labs": len(procs), "pss": statistics.median(per_lab) / 1024 if per_lab else 0,
                "pss_max": max(per_lab, default=0) / 1024,
                "supervisor": statistics.median(sups) / 1024 if sups else 0,
                "state": statistics.median(state) / 1024 if state else 0,
                "launcher": launcher_pss() / 1024,
                "processes": statistics.median(len(p) for p in procs.values()) if procs else 0,
                "cpu": 100.0 * used / TICKS / idle / max(1, len(procs))}

    @staticmethod
    def supervisor(lab: str) -> int:
        try:
            return json.loads((STATE_ROOT / lab / "state.json").read_text())["supervisor"]["pid"]
        except (OSError, ValueError, KeyError):
            return 0

    def verify(self, sample: int) -> tuple[int, int, float]:
        picked = random.sample(self.labs, min(sample, len(self.labs)))
        times, passed = [], 0
        for lab in picked:
            took, p = timed_lab("verify", "--lab", lab, check=False)
            times.append(took)
            passed += p.returncode == 0
        return passed, len(picked), statistics.median(times) if times else 0.0

    def down_all(self) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.wave) as pool:
            list(pool.map(lambda lab: run_lab("down", "--lab", lab, timeout=300), self.labs))
        if any((STATE_ROOT / lab).exists() for lab in self.labs):
            run_lab("clean", timeout=300)
        return time.perf_counter() - started

    def leftovers(self) -> dict[str, int]:
        every = self.labs + [f.split(":")[0] for f in self.failed]
        marked = len(Procs(every).owner)
        states = sum((STATE_ROOT / lab).exists() for lab in every)
        inside = f"{os.path.realpath(STATE_ROOT)}/"  # the state root's own tmpfs is no lab's
        mounted = sum(point.startswith(inside) for _source, point, _kind in mounts())
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"],
                                 capture_output=True, text=True, check=False).stdout
        return {"processes": marked, "state dirs": states, "mounts": mounted,
                "named netns": len(netns.split()), "host bridges": len(bridges.splitlines()),
                "trash": trash_left()}


def trash_left(wait: float = 120.0) -> int:
    """State folders of labs taken down still not deleted after ``wait`` seconds (`lab
    down` returns before its files are deleted: lab.engine.trash)."""
    from lab.engine.trash import piles

    deadline = time.monotonic() + wait
    while piles() and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(piles())


def settle(idle: float = 0.9, longest: float = 30.0) -> float:
    """Wait until the CPUs were at least ``idle`` idle over half a second (what the
    labs started last, the kernel's work on their namespaces and the deletion of the
    labs taken down leave running for a while), at most ``longest`` seconds; how long
    it waited."""
    def ticks() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    started = time.monotonic()
    while time.monotonic() - started < longest:
        idle0, all0 = ticks()
        time.sleep(0.5)
        idle1, all1 = ticks()
        if all1 > all0 and (idle1 - idle0) / (all1 - all0) >= idle:
            break
    return time.monotonic() - started


def checkpoints(total: int) -> list[int]:
    return sorted({1, *range(100, total, 100), total})


def run(args: argparse.Namespace) -> int:
    bench = Density(args.prefix, args.wave)
    print(f"density benchmark: up to {args.labs} labs of mail-dmz, waves of {args.wave}; "
          f"load average {load_average()}", flush=True)
    first, stopped = None, ""
    try:
        for mark in checkpoints(args.labs):
            stopped = bench.fill(mark - args.probe) if mark > 1 else ""
            up, err = (float("nan"), stopped) if stopped else \
                bench.probe(args.probe, alone=mark == 1)
            if err:
                stopped = err
                break
            first = first or up
            m = bench.measure(args.idle)
            print(f"{m['labs']:4d} labs: lab up {up:.2f} s ({up / first:.2f}x the first); "
                  f"PSS per lab {m['pss']:.1f} MB (max {m['pss_max']:.1f}; supervisor "
                  f"{m['supervisor']:.1f}; {m['processes']:.0f} processes); state files "
                  f"{m['state']:.1f} MB (on {file_system(STATE_ROOT)[2]}); launcher "
                  f"{m['launcher']:.1f} MB shared; idle CPU {m['cpu']:.3f} % of a core per lab;"
                  f" load average {load_average()}", flush=True)
        if stopped:
            print(f"stopped at {len(bench.labs)} labs started: {stopped}")
            print("limits: " + "; ".join(f"{k} {read(v)}" for k, v in LIMITS.items()))
            print("memory: " + " ".join(read("/proc/meminfo").splitlines()[:3]))
        if bench.failed:
            print(f"{len(bench.failed)} lab ups failed (the fill went on): "
                  + "; ".join(bench.failed[:3]))
        passed, tried, took = bench.verify(args.sample)
        print(f"lab verify at the top: {passed}/{tried} labs pass (median {took:.2f} s)")
    finally:
        took = bench.down_all()
        print(f"all {len(bench.labs)} labs down in {took:.1f} s; left behind: "
              f"{bench.leftovers()}")
    return 1 if stopped else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labs", type=int, default=300)
    parser.add_argument("--wave", type=int, default=10, help="labs started at once")
    parser.add_argument("--idle", type=float, default=10.0, help="CPU window, seconds")
    parser.add_argument("--sample", type=int, default=5, help="labs verified at the top")
    parser.add_argument("--probe", type=int, default=3, help="timed lab ups per checkpoint")
    parser.add_argument("--prefix", default="dn")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("density_bench: needs root (it builds labs)", file=sys.stderr)
        return 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
