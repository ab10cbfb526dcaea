"""A class of 30 on this machine: the classroom server's labs, terminals and keystroke echo.

    sudo .venv/bin/python bench/classroom_bench.py [--trainees 30] [--keys 20] [--rounds 3]

`lab serve` runs on a free loopback port; the instructor starts a class (one lab per
trainee, ``--parallel`` built at once) and the bench times how long until every lab is
up. Then every trainee's terminal is opened at once (a websocket per trainee, each a
shell sealed in the ext-ws node of that trainee's lab), and each types ``--keys`` keys at
typing pace, all together, timing each key from send to its echo on the websocket.

The instructor's dashboard stays open throughout (its event stream is read, so the server
asks every lab's supervisor for its live view once a second). Baseline, in the same run
and under the same load: the same typing on shells opened
directly on the node's terminal (nodeshell.open_lab_shell, a pty read and written by this
process, no server and no websocket). Both are measured ``--rounds`` times, alternating;
the figures are p50/p95 over all samples and the median of the rounds' p95. The server's
RSS is read from /proc at each stage. Everything is taken down at the end (the server
takes its labs down when it gets SIGTERM; the bench checks that it did).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from labcli import LAB_CMD, PROJECT_ROOT, run_lab

from lab.web.client import Session, read_until

NODE = "ext-ws"
PROMPT = rf":{NODE}\] "


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Server:
    def __init__(self, prefix: str, parallel: int) -> None:
        self.prefix = prefix
        self.proc = subprocess.Popen(
            [*LAB_CMD, "serve", "--listen", "127.0.0.1:0", "--lab-prefix", prefix,
             "--parallel", str(parallel)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=PROJECT_ROOT)
        for line in self.proc.stdout:
            found = re.search(r"instructor link: (\S+)", line)
            if found:
                self.link = found.group(1)
                break
        else:
            raise RuntimeError("lab serve did not start")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=300)
        return out


def start_class(instructor: Session, count: int) -> tuple[float, list[dict]]:
    started = time.monotonic()
    instructor.post_ok("/instructor/class", {"scenario": "mail-server-down", "count": count})
    while True:
        snap = instructor.snapshot()
        if snap["phase"] != "starting":
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    failed = [t for t in snap["trainees"] if t["lab_state"] != "up"]
    if failed:
        raise RuntimeError(f"{len(failed)} labs did not come up: {failed[0]['error']}")
    return took, snap["trainees"]


class WebTerminal:
    """A trainee's browser terminal, scripted."""

    def __init__(self, instructor: Session, trainee: dict) -> None:
        link = instructor.base + trainee["link"]
        self.session = Session(link)
        self.session.login(link)
        self.name = trainee["trainee"]

    def open(self) -> None:
        self.ws = self.session.terminal(self.name, NODE, cols=200)
        read_until(self.ws, PROMPT, timeout=60)

    def key(self, data: bytes) -> float:
        sent = time.perf_counter()
        self.ws.send(data)
        seen = b""
        while data not in seen:
            seen += self.ws.recv(timeout=30)
        return time.perf_counter() - sent

    def clear(self) -> None:
        self.ws.send(b"\x15")  # Ctrl-U: an empty line again
        time.sleep(0.2)
        while True:
            try:
                self.ws.recv(timeout=0.1)
            except TimeoutError:
                return

    def close(self) -> None:
        self.ws.close()


class DirectShell:
    """The baseline: the same node's shell on its own terminal, no server in between."""

    def __init__(self, lab: str) -> None:
        from lab.engine import nodeshell

        self.shell = nodeshell.open_lab_shell(lab, NODE, 24, 200,
                                              {"TERM": "xterm-256color", "LANG": "C.UTF-8"})
        self.read_until(PROMPT.encode())

    def read_until(self, want: bytes, timeout: float = 30) -> None:
        import select

        seen = b""
        deadline = time.monotonic() + timeout
        while not re.search(want, seen):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.shell.master], [], [], left)[0]:
                raise TimeoutError(f"{want!r} not seen")
            seen += os.read(self.shell.master, 65536)

    def key(self, data: bytes) -> float:
        sent = time.perf_counter()
        os.write(self.shell.master, data)
        self.read_until(re.escape(data))
        return time.perf_counter() - sent

    def clear(self) -> None:
        import select

        os.write(self.shell.master, b"\x15")
        time.sleep(0.2)
        while select.select([self.shell.master], [], [], 0.1)[0]:
            os.read(self.shell.master, 65536)

    def close(self) -> None:
        self.shell.close()


class Dashboard:
    """The instructor's dashboard left open: its event stream read throughout (so the
    server polls every supervisor once a second, as during a real class)."""

    def __init__(self, instructor: Session) -> None:
        import urllib.request

        request = urllib.request.Request(instructor.base + "/instructor/events")
        self.stream = instructor.opener.open(request, timeout=60)
        self.events = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.stream:
                self.events += line.startswith(b"data: ")
        except (OSError, ValueError, AttributeError):
            return  # closed under the reader (http.client's way of saying so varies)

    def close(self) -> None:
        self.stream.close()


def type_together(terminals: list, keys: int, rng: random.Random) -> list[float]:
    """Every terminal types ``keys`` keys at once, 50-150 ms apart; the echo times."""
    samples: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def typist(term, seed: int) -> None:
        pace = random.Random(seed)
        mine = []
        try:
            for _ in range(keys):
                time.sleep(pace.uniform(0.05, 0.15))
                mine.append(term.key(b"x"))
            term.clear()
        except BaseException as e:  # noqa: BLE001 - reported after the others finish
            errors.append(e)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=typist, args=(t, rng.random())) for t in terminals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return samples


def all_at_once(calls: list[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def timed(what: str, fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    took = time.monotonic() - started
    print(f"{what}: {took:.2f} s", flush=True)
    return took


def open_terminals(instructor: Session, trainees: list[dict], pid: int) -> list[WebTerminal]:
    terminals = [WebTerminal(instructor, t) for t in trainees]
    timed(f"{len(terminals)} web terminals opened at once (to the prompt)",
          lambda: all_at_once([t.open for t in terminals]))
    missing = [t.name for t in terminals if not hasattr(t, "ws")]
    if missing:
        raise RuntimeError(f"terminals not opened: {missing}")
    print(f"server RSS, {len(terminals)} terminals open: {rss_mb(pid):.0f} MB")
    return terminals


def echo_rounds(terminals: list, direct: list, keys: int, rounds: int
                ) -> dict[str, tuple[list[float], list[float]]]:
    """Both ways in turn, ``rounds`` times: per way every sample and each round's p95."""
    rng = random.Random(1)
    got: dict[str, tuple[list[float], list[float]]] = {"web": ([], []), "direct": ([], [])}
    for n in range(1, rounds + 1):
        line = []
        for way, terms in (("direct", direct), ("web", terminals)):
            samples = type_together(terms, keys, rng)
            got[way][0].extend(samples)
            got[way][1].append(percentile(samples, 0.95))
            line.append(f"{way} p50 {percentile(samples, 0.5):.1f} ms p95 "
                        f"{got[way][1][-1]:.1f} ms ({len(samples)} keys)")
        print(f"round {n}: " + "; ".join(line), flush=True)
    return got


def report(got: dict[str, tuple[list[float], list[float]]], terminals: int) -> None:
    names = {"web": "web (websocket via lab serve)",
             "direct": "baseline (the node's pty, directly)"}
    print(f"\nkeystroke echo, {len(got['web'][0])} keys over {terminals} browser terminals "
          "at once:")
    for way, (samples, p95s) in got.items():
        print(f"  {names[way]}: p50 {percentile(samples, 0.5):.1f} ms, p95 "
              f"{percentile(samples, 0.95):.1f} ms (median of the rounds' p95: "
              f"{statistics.median(p95s):.1f} ms)")
    ratio = percentile(got["web"][0], 0.95) / max(percentile(got["direct"][0], 0.95), 1e-3)
    print(f"  ratio of p95 (web / direct): {ratio:.1f}")


def take_down(server: Server, terminals: list, direct: list) -> None:
    """Close everything; the server takes its labs down; check that it did."""
    from lab.engine.state import lab_names

    for term in terminals:
        if hasattr(term, "ws"):
            term.close()
    for shell in direct:
        shell.close()
    stopped = time.monotonic()
    out = server.stop().strip()
    print(f"server stopped in {time.monotonic() - stopped:.1f} s: "
          f"{out.splitlines()[-1] if out else ''}")
    left = [lab for lab in lab_names() if lab.startswith(f"{server.prefix}-")]
    for lab in left:
        run_lab("down", "--lab", lab)
    print(f"labs left by the server: {len(left)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainees", type=int, default=30)
    parser.add_argument("--keys", type=int, default=20, help="keys per terminal per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4, help="labs built at once")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the classroom bench builds labs: run it as root")
    print(f"load average at start: {loadavg()}")
    server = Server(f"wbb{os.getpid() % 10000}", args.parallel)
    pid = server.proc.pid
    terminals: list = []
    direct: list = []
    try:
        instructor = Session(server.link)
        instructor.login(server.link)
        print(f"server RSS, idle: {rss_mb(pid):.0f} MB")
        took, trainees = start_class(instructor, args.trainees)
        print(f"{args.trainees} labs up in {took:.1f} s ({args.parallel} built at once, "
              f"{took / args.trainees:.2f} s per lab)")
        print(f"server RSS, {args.trainees} labs up: {rss_mb(pid):.0f} MB")
        terminals = open_terminals(instructor, trainees, pid)
        direct = [DirectShell(t["lab"]) for t in trainees]
        watching = Dashboard(instructor)
        got = echo_rounds(terminals, direct, args.keys, args.rounds)
        print(f"server RSS, after typing: {rss_mb(pid):.0f} MB; the open dashboard got "
              f"{watching.events} updates meanwhile")
        watching.close()
        report(got, len(terminals))
    finally:
        take_down(server, terminals, direct)
        print(f"load average at the end: {loadavg()}")
    return 0


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
