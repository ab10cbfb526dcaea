"""The launcher: one process per state root that holds the supervisor's imports and forks
a supervisor for each lab, so that a lab does not wait for a new interpreter to start and
import Mininet, the models, asyncio and cryptography (bench/engine_bench.py).

Started on demand by `lab up` (``python -m lab.engine.launcherproc``, in the lab's own
environment: ``launcher_env``, never the caller's), it listens on a root-only socket in
``<state root>/_launcher/`` and ends once it has had no supervisor alive and no request
for ``IDLE`` seconds; `lab clean` ends an idle one at once. It carries
``LAB_LAUNCHER_FOR=<state root>`` in its environment: how it is found and stopped by
ownership, like everything a lab starts.

A request is one JSON line (the lab and the supervisor's environment) with two file
descriptors (the ready pipe's write end, the supervisor's log); or, from `lab up` before
it claims a lab, a topology to load (``load_topology``), or from `lab start` a scenario to
check (``check_scenario``): a child does it and answers. The launcher forks; the
child points /proc/self/cmdline and /proc/self/environ at the supervisor's own argv and
environment (lab.engine.identity: what `ps`, `lab clean` and ownership checks read;
never the launcher's or a caller's) and runs the supervisor. This module is the client
side (`lab up`, `lab clean`); lab.engine.launcherproc is the process.
"""
from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from lab.engine.state import NODE_PATH, ProcRef, state_root
from lab.errors import LabError

IDLE = 20.0  # seconds without a supervisor alive or a request before the launcher ends
MARK = "LAB_LAUNCHER_FOR"  # LAB_LAUNCHER_FOR=<state root> in the launcher's environment
START_TIMEOUT = 10.0
REPLY_TIMEOUT = 60.0  # the launcher answers right after it forks


def home() -> Path:
    return state_root() / "_launcher"


def socket_path() -> Path:
    return home() / "sock"


def launcher_env() -> dict[str, str]:
    """The launcher's environment: the lab's settings (LANG, TZ, LC_*, LAB_*) only, and
    the standard-library distutils for Mininet (the virtual environment's setuptools shim
    would import pkg_resources for it: 0.1 s)."""
    env = {k: v for k, v in os.environ.items()
           if k in ("LANG", "TZ") or k.startswith(("LC_", "LAB_"))}
    env.update({"PATH": NODE_PATH, "HOME": "/root", MARK: str(state_root()),
                "SETUPTOOLS_USE_DISTUTILS": "stdlib"})
    return env


# --- the client side (`lab up`) -------------------------------------------------------


class Launched:
    """A supervisor forked by the launcher: its process, and the connection on which the
    launcher will say how it ended."""

    def __init__(self, proc: ProcRef, conn: socket.socket) -> None:
        self.proc = proc
        self.conn = conn

    def exit_status(self, wait: float = 1.0) -> int | None:
        """How the supervisor ended (as Popen.returncode), None if it still runs."""
        self.conn.settimeout(wait)
        try:
            reply = read_line(self.conn)
        except OSError:
            return None
        return reply.get("exit") if reply else None

    def kill(self) -> None:
        if self.proc.alive():
            os.kill(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.conn.close()


class Unavailable(LabError):
    """No launcher took the request (none could be started, or it refused before
    forking): the caller may start the supervisor itself."""


def launch(lab: str, env: dict[str, str], ready_fd: int, log_fd: int) -> Launched:
    """Have the launcher fork the supervisor of ``lab`` (starting the launcher if none
    runs). Unavailable when no launcher took the request; LabError when one took it and
    did not answer (a supervisor may exist: the caller cleans up by ownership)."""
    for attempt in range(2):
        try:
            conn = connect() if attempt == 0 else _start_and_connect()
        except OSError:
            continue
        launched = _request(conn, lab, env, ready_fd, log_fd)
        if launched is not None:
            return launched
    raise Unavailable("the launcher is not answering")


def load_topology(path: Path, variant: str | None) -> tuple[str, str]:
    """The topology at ``path`` (with ``variant``) loaded and validated in a child of the
    launcher, which has the models imported (`lab up` importing them itself spends about
    0.2 s on it): the topology's name and the YAML `lab up` writes for the supervisor.
    LabError as a load in this process raises it; Unavailable when no launcher answered
    (the caller loads the topology itself)."""
    reply = _ask("load", {"path": str(path), "variant": variant})
    return reply["name"], reply["yaml"]


def check_scenario(ref: str, fault_texts: list[str]) -> dict:
    """`lab start`'s checks of a scenario and its forced faults
    (lab.engine.attempt.check_here) done in a child of the launcher, which has the models
    and the fault catalog imported: {"path", "plan", "forced"}. LabError as the checks
    raise it; Unavailable when no launcher answered (the caller checks it itself)."""
    return _ask("scenario", {"ref": ref, "faults": list(fault_texts)})


def _ask(kind: str, request: dict) -> dict:
    """A request answered by a child of the launcher (lab.engine.launcherproc.CHILDREN),
    run in this process's working directory: its reply, or its LabError raised."""
    body = json.dumps({kind: {**request, "cwd": os.getcwd()}}).encode() + b"\n"
    for attempt in range(2):
        try:
            conn = connect() if attempt == 0 else _start_and_connect()
        except OSError:
            continue
        with conn:
            try:
                conn.sendall(body)
                conn.settimeout(REPLY_TIMEOUT)
                reply = read_line(conn)
            except (OSError, ValueError):
                reply = None
        if reply is not None and "error" in reply:
            raise LabError(reply["error"], reply.get("hint", ""))
        if reply is not None and "ok" in reply:
            return reply["ok"]
        if reply is not None:
            break
    raise Unavailable(f"the launcher did not answer the '{kind}' request")


def connect() -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(START_TIMEOUT)
        conn.connect(str(socket_path()))
    except OSError:
        conn.close()
        raise
    return conn


def _start_and_connect() -> socket.socket:
    """Start a launcher and connect to it (or to the one that won, if several started at
    once: the lock), waiting as long as it is alive and loading (a busy machine may take
    seconds: as long as a supervisor of its own would)."""
    import subprocess

    from lab.engine import stateroot

    stateroot.prepare()
    home().mkdir(mode=0o700, exist_ok=True)
    with open(home() / "log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab.engine.launcherproc"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=launcher_env(), cwd="/")
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        try:
            return connect()
        except OSError:
            if proc.poll() is not None and proc.returncode != 0 or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _request(conn: socket.socket, lab: str, env: dict[str, str], ready_fd: int,
             log_fd: int) -> Launched | None:
    """The forked supervisor; None if the launcher refused the request before forking
    (it closes the connection without a word: it is ending, its code changed)."""
    body = json.dumps({"lab": lab, "env": env}).encode() + b"\n"
    fds = array.array("i", [ready_fd, log_fd])
    try:
        conn.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        conn.settimeout(REPLY_TIMEOUT)
        reply = read_line(conn)
    except (BrokenPipeError, ConnectionResetError):
        reply = None
    except (OSError, ValueError) as e:
        conn.close()
        raise LabError(f"the launcher did not answer: {e}") from None
    if reply is None or "pid" not in reply:
        conn.close()
        return None
    return Launched(ProcRef(reply["pid"], reply["start"]), conn)


def read_line(conn: socket.socket) -> dict | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def stop(timeout: float = 5.0) -> int:
    """End the launcher of this state root if it runs (`lab clean`, the test suite's
    end); how many were found. Labs running keep running: a supervisor does not need
    its launcher."""
    from lab.engine.procs import marked_processes, stop_processes

    found = marked_processes(f"{MARK}={state_root()}")
    stop_processes(found, timeout)
    return len(found)
