"""Services benchmark: the reference lab with every service healthy, one end-to-end mail
probe, and the lab's memory.

    sudo .venv/bin/python bench/services_bench.py [--runs N] [--topology NAME]

Prints medians over N runs (default 5) of:
  * `lab up TOPOLOGY` wall time, CLI process start to exit; `lab up` returns only when
    every service is healthy, which the bench checks afterwards with `lab status --json`;
  * one end-to-end probe: swaks in ext-ws sends to jsmith@example.net (DNS through the
    resolver, static NAT and the smtp-in rule on fw, mx's local delivery) until the
    message is in mx's /var/mail/jsmith (a poller inside mx, started beforehand, watches
    the file);
  * total RSS of the running lab: the supervisor plus every process whose environment
    carries LAB_INSTANCE=<lab> (VmRSS from /proc/PID/status);
and, as baselines in the same run, the RSS of a bare `python3 -c 'import time;
time.sleep(5)'`, and `lab up` time and RSS of the same topology with every `services:`
block removed. Every lab it starts is taken down before it exits.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from labcli import LAB_CMD, PROJECT_ROOT, lab_pids, run_lab, topology_path

STATE_ROOT = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))
PREFIX = f"b3-{os.getpid()}"


def lab(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return run_lab(*args, timeout=timeout)


def must(p: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if p.returncode != 0:
        raise SystemExit(f"{what} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p



def without_services(src: Path, dest_dir: Path) -> Path:
    topo = yaml.safe_load(src.read_text())
    for node in topo["nodes"].values():
        node.pop("services", None)
    dest = dest_dir / f"{src.stem}-bare.yaml"
    dest.write_text(yaml.safe_dump(topo, sort_keys=False))
    return dest


def vmrss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0  # gone, or a kernel thread


def lab_rss_mb(name: str) -> tuple[float, int]:
    status = json.loads(must(lab("status", "--lab", name, "--json"), "lab status").stdout)
    pids = lab_pids(name) | {int(status["supervisor"])}
    return sum(vmrss_kb(p) for p in pids) / 1024, len(pids)


def check_healthy(name: str, expect_services: bool) -> None:
    status = json.loads(must(lab("status", "--lab", name, "--json"), "lab status").stdout)
    services = [(n, s["kind"], s["healthy"]) for n, v in status["nodes"].items()
                for s in v.get("services", [])]
    if expect_services and not services:
        raise SystemExit(f"{name}: no services reported")
    sick = [f"{k} on {n}" for n, k, ok in services if not ok]
    if sick:
        raise SystemExit(f"{name}: lab up returned with unhealthy services: {', '.join(sick)}")


def timed_up(name: str, topology: str, started: list[str]) -> float:
    started.append(name)
    t0 = time.perf_counter()
    must(lab("up", topology, "--lab", name), f"lab up {name}")
    return time.perf_counter() - t0


def down(name: str, started: list[str]) -> None:
    must(lab("down", "--lab", name), f"lab down {name}")
    started.remove(name)


def probe(name: str) -> float:
    """swaks from ext-ws to jsmith@example.net until it is in mx's mailbox; seconds."""
    subject = f"bench-{secrets.token_hex(4)}"
    poll = (f"i=0; until grep -qs 'Subject: {subject}' /var/mail/jsmith; do "
            "i=$((i+1)); [ $i -gt 3000 ] && exit 1; sleep 0.005; done")
    waiter = subprocess.Popen([*LAB_CMD, "exec", "--lab", name, "mx", "--", "sh", "-c", poll],
                              cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # the poller is running inside mx by now
        t0 = time.perf_counter()
        must(lab("exec", "--lab", name, "ext-ws", "--", "swaks", "--silent", "2", "--server",
                 "mail.example.net", "--from", "jsmith@example.com", "--to",
                 "jsmith@example.net", "--header", f"Subject: {subject}"), "swaks")
        rc = waiter.wait(timeout=30)
        elapsed = time.perf_counter() - t0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    if rc != 0:
        raise SystemExit("probe: message never reached mx's /var/mail/jsmith")
    return elapsed


def bare_python_rss_mb() -> float:
    p = subprocess.Popen(["python3", "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.5)
        return vmrss_kb(p.pid) / 1024
    finally:
        p.terminate()
        p.wait()


def fmt(values: list[float], unit: str, digits: int = 3) -> str:
    med = statistics.median(values)
    return (f"median {med:.{digits}f} {unit}  (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f}, n={len(values)})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--topology", default="mail-dmz")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: it builds labs in network namespaces", file=sys.stderr)
        return 2
    src = topology_path(args.topology)
    up_s, probe_s, rss, nprocs = [], [], [], []
    bare_up, bare_rss, py_rss = [], [], []
    started: list[str] = []
    with tempfile.TemporaryDirectory(prefix="b3-") as d:
        bare = without_services(src, Path(d))
        try:
            for i in range(args.runs):
                name = f"{PREFIX}-s{i}"
                up_s.append(timed_up(name, str(src), started))
                check_healthy(name, expect_services=True)
                mb, n = lab_rss_mb(name)
                rss.append(mb)
                nprocs.append(n)
                probe_s.append(probe(name))
                down(name, started)

                name = f"{PREFIX}-b{i}"
                bare_up.append(timed_up(name, str(bare), started))
                check_healthy(name, expect_services=False)
                bare_rss.append(lab_rss_mb(name)[0])
                down(name, started)

                py_rss.append(bare_python_rss_mb())
        finally:
            for name in started:
                lab("down", "--lab", name)
            leftover = [n for n in started if (STATE_ROOT / n).exists()]
            if leftover:
                print(f"warning: labs left behind: {leftover}", file=sys.stderr)
    print(f"services bench: topology {src.name}, {args.runs} runs")
    print(f"  lab up, every service healthy     {fmt(up_s, 's')}   target < 1.5 s")
    print(f"  end-to-end probe (inbound mail)   {fmt(probe_s, 's')}")
    print(f"  lab RSS, all processes            {fmt(rss, 'MB', 1)}   target < 150 MB"
          f"   ({statistics.median(nprocs):.0f} processes)")
    print("  baselines:")
    print(f"  lab up without services           {fmt(bare_up, 's')}")
    print(f"  lab RSS without services          {fmt(bare_rss, 'MB', 1)}")
    print(f"  bare python3 sleep RSS            {fmt(py_rss, 'MB', 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
