"""Core-seconds a lab costs: the CPU time of everything a bench starts, from a cgroup.

A lab's work is spread over many processes: the `lab` command, the launcher and the
supervisor it forks, the node shells, the sealed inits, and the hundreds of short-lived
commands they run (ip, sysctl, mount, nft, ping...), some of which are never waited for by
a process still alive. Summing /proc/PID/stat misses those; a cgroup counts them all. The
meter creates a cgroup of its own (cgroup v2, or v1's cpuacct), moves the bench into it
and ends the state root's launcher, so that the launcher the next `lab` command starts,
and every supervisor it forks, is counted too. Its ``usage()`` is the group's total CPU
time (user + system) in seconds; ``close()`` moves the bench back, ends the launcher it
counted and removes the group. Kernel work done by kernel threads (a network namespace's
cleanup after `lab down`) is nobody's and is not counted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


class CpuMeter:
    def __init__(self, name: str = f"lab-bench-{os.getpid()}") -> None:
        from lab.engine import launcher

        if (CGROUP / "cgroup.controllers").exists():  # v2: usage_usec in cpu.stat
            self.parent = CGROUP
            self._read = lambda d: _v2_usage(d / "cpu.stat")
        elif (CGROUP / "cpuacct" / "cpuacct.usage").exists():
            self.parent = CGROUP / "cpuacct"
            self._read = lambda d: int((d / "cpuacct.usage").read_text()) / 1e9
        else:
            raise RuntimeError("no cgroup to count CPU time in (v2, or v1 with cpuacct)")
        self.dir = self.parent / name
        self.dir.mkdir(exist_ok=True)
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))
        launcher.stop()  # the next `lab` command starts one inside the group

    def usage(self) -> float:
        """CPU seconds (user + system) of every process of the group since it was made."""
        return self._read(self.dir)

    def close(self) -> None:
        from lab.engine import launcher

        (self.parent / "cgroup.procs").write_text(str(os.getpid()))
        launcher.stop()
        deadline = time.monotonic() + 10
        while True:  # processes of labs taken down may still be exiting
            try:
                self.dir.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    print(f"cpumeter: {self.dir} still has processes; left in place")
                    return
                time.sleep(0.1)


def _v2_usage(path: Path) -> float:
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise RuntimeError(f"no usage_usec in {path}")
