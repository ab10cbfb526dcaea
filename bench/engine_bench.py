"""How long `lab up` and `lab down` take, against bare Mininet building the same network.

    sudo .venv/bin/python bench/engine_bench.py [--runs N] [--topology NAME] [--many M]

Prints medians over N runs of:
  * `lab up TOPOLOGY` wall time, CLI process start to exit (the lab is ready then), and
    `lab down`, with the launcher (lab.engine.launcher: supervisors forked from a process
    that holds their imports) and without it (LAB_LAUNCHER=off: a fresh interpreter per
    supervisor, as before the launcher);
  * the CLI's own start: `lab up`'s wall time minus the time it reports itself;
  * as a baseline in the same run, a subprocess that imports mininet and builds the same
    hosts, LinuxBridge segments, links, addresses, aliases, routes and forwarding
    (controller=None), prints "ready" and stops on SIGTERM: process start to ready, and
    SIGTERM to exit;
and, once, the total time to start M labs one after the other (all running together) and
to take them all down; then the CPU time of a lab up, a lab down and the baseline, in
core-seconds, every process they started counted (bench/cpumeter.py). Everything it starts is torn down before it exits.

The baseline puts each bridge in a namespace of its own, as the engine does, so that it
touches nothing in the host namespace and cannot collide with labs running beside it
(Mininet deletes any host interface with a switch's name).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cpumeter import CpuMeter
from labcli import load_average, run_lab, timed_lab, topology_path

STATE_ROOT = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))
PREFIX = f"b{os.getpid()}"

BASELINE = r'''
import signal, sys, yaml
from mininet.link import Link
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host
from mininet.nodelib import LinuxBridge

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
topo = yaml.safe_load(open(sys.argv[1]))
setLogLevel("error")
net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
              waitConnected=False, switch=LinuxBridge, link=Link)
switches = {seg: net.addSwitch(seg, cls=LinuxBridge, inNamespace=True, dpid=f"{i:x}")
            for i, seg in enumerate(topo["segments"], start=1)}
ports = dict.fromkeys(switches, 0)
hosts = {}
for name, node in topo["nodes"].items():
    hosts[name] = net.addHost(name, cls=Host, ip=node["interfaces"][0]["address"])
    for idx, intf in enumerate(node["interfaces"]):
        ports[intf["segment"]] += 1
        net.addLink(hosts[name], switches[intf["segment"]], intfName1=f"eth{idx}",
                    intfName2=f"{intf['segment']}-p{ports[intf['segment']]}",
                    params1={"ip": intf["address"]})
net.build()
net.start()
for name, node in topo["nodes"].items():
    cmds = [f"ip addr add {a} dev eth{i}"
            for i, intf in enumerate(node["interfaces"]) for a in intf.get("aliases", [])]
    if node.get("forwarding"):
        cmds.append("sysctl -qw net.ipv4.ip_forward=1")
    if node.get("gateway"):
        cmds.append(f"ip route replace default via {node['gateway']}")
    cmds += [f"ip route replace {r['to']} via {r['via']}" for r in node.get("routes", [])]
    if cmds:
        hosts[name].cmd(" && ".join(cmds))
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
net.stop()
'''


class Bench:
    """Runs the measurements; remembers every lab and process it started, to clean up."""

    def __init__(self, topology: str, meter: CpuMeter) -> None:
        self.topology = topology
        self.meter = meter
        self.labs: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.count = 0
        self.cpu: dict[str, list[float]] = {}  # what -> core-seconds, one per run

    def counted(self, what: str, run, *args, **kwargs):
        """``run(...)``, its CPU time (every process it started) added to ``cpu[what]``."""
        before = self.meter.usage()
        result = run(*args, **kwargs)
        self.cpu.setdefault(what, []).append(self.meter.usage() - before)
        return result

    def lab(self, *args: str, env: dict[str, str] | None = None) -> float:
        return timed_lab(*args, env=env)[0]

    def lab_up(self, launcher: bool = True) -> tuple[str, float, float]:
        """A lab up: its name, wall time, and the CLI's own share (wall minus reported)."""
        self.count += 1
        name = f"{PREFIX}-{self.count}"
        self.labs.append(name)
        env = None if launcher else {**os.environ, "LAB_LAUNCHER": "off"}
        took, p = timed_lab("up", self.topology, "--lab", name, env=env)
        reported = re.search(r"\(([0-9.]+) s\)", p.stdout)
        return name, took, took - float(reported.group(1)) if reported else float("nan")

    def lab_down(self, name: str) -> float:
        took = self.lab("down", "--lab", name)
        self.labs.remove(name)
        return took

    def mininet(self, path: Path) -> tuple[float, float]:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", BASELINE, str(path)], text=True,
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/")
        self.procs.append(proc)
        line = proc.stdout.readline()
        up = time.perf_counter() - started
        if line.strip() != "ready":
            raise RuntimeError(f"the Mininet baseline did not come up (exit {proc.wait()})")
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        down = time.perf_counter() - started
        self.procs.remove(proc)
        if code != 0:
            raise RuntimeError(f"the Mininet baseline exited {code}")
        return up, down

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for name in list(self.labs):
            run_lab("down", "--lab", name, timeout=60)
        if any((STATE_ROOT / name).exists() for name in self.labs):
            run_lab("clean", timeout=60)



def measure(bench: Bench, runs: int, many: int) -> list[str]:
    path = topology_path(bench.topology)
    from lab.engine import launcher

    launcher.stop()  # the first lab up starts it: timed on its own
    name, cold, _ = bench.counted("cold", bench.lab_up)
    bench.lab_down(name)
    times: dict[str, list[float]] = {k: [] for k in (
        "up", "down", "cli", "up_off", "down_off", "mn_up", "mn_down")}
    for _ in range(runs):  # interleaved, so drift on the machine hits all alike
        name, took, cli = bench.counted("up", bench.lab_up)
        times["up"].append(took)
        times["cli"].append(cli)
        times["down"].append(bench.counted("down", bench.lab_down, name))
        name, took, _ = bench.counted("up_off", bench.lab_up, launcher=False)
        times["up_off"].append(took)
        times["down_off"].append(bench.lab_down(name))
        up, down = bench.counted("mn", bench.mininet, path)
        times["mn_up"].append(up)
        times["mn_down"].append(down)
    started = time.perf_counter()
    names = [bench.lab_up()[0] for _ in range(many)]
    many_up = time.perf_counter() - started
    started = time.perf_counter()
    for name in names:
        bench.lab_down(name)
    many_down = time.perf_counter() - started
    return render(runs, many, times, cold, many_up, many_down) + render_cpu(bench.cpu)


def render_cpu(cpu: dict[str, list[float]]) -> list[str]:
    """The CPU time of each, in core-seconds (every process it started: bench/cpumeter.py)."""
    med = statistics.median
    return [(f"CPU per lab (median, core-seconds, every process counted): lab up "
             f"{med(cpu['up']):.3f} (no launcher {med(cpu['up_off']):.3f}, first lab up with "
             f"the launcher's start {cpu['cold'][0]:.3f}); lab down {med(cpu['down']):.3f}; "
             f"bare Mininet up and stop {med(cpu['mn']):.3f}")]


def render(runs: int, many: int, t: dict[str, list[float]], cold: float, many_up: float,
           many_down: float) -> list[str]:
    med = statistics.median
    rows = [("what", "lab", "mininet", "lab/mininet")]
    for what, ours, base in (("up (start to ready)", "up", "mn_up"),
                             ("up, no launcher", "up_off", "mn_up"),
                             ("down", "down", "mn_down"),
                             ("down, no launcher", "down_off", "mn_down")):
        rows.append((what, f"{med(t[ours]):.3f} s", f"{med(t[base]):.3f} s",
                     f"{med(t[ours]) / med(t[base]):.2f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"median of {runs} runs; mininet = bare Mininet 2.3, LinuxBridge, controller=None"]
    lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.append(f"lab CLI start (up's wall time minus the time it reports): {med(t['cli']):.3f} s")
    lines.append(f"first lab up, launcher not running yet: {cold:.3f} s")
    lines.append(f"{many} labs, one after the other: up {many_up:.2f} s "
                 f"({many_up / many:.3f} s/lab), down {many_down:.2f} s "
                 f"({many_down / many:.3f} s/lab)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--topology", default="mail-dmz")
    parser.add_argument("--many", type=int, default=20, help="labs up at once (default 20)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("engine_bench: needs root (it builds labs)", file=sys.stderr)
        return 1
    meter = CpuMeter()
    bench = Bench(args.topology, meter)
    before = load_average()
    try:
        lines = measure(bench, args.runs, args.many)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"engine_bench: {e}", file=sys.stderr)
        return 1
    finally:
        bench.close()
        meter.close()
    print(f"engine benchmark: topology {args.topology}; load average before {before}, "
          f"after {load_average()}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
