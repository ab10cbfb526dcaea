"""The launcher process (``python -m lab.engine.launcherproc``): see lab.engine.launcher.

It imports what a supervisor needs once, then serves requests on its socket: for each,
it forks; the child makes a session of its own, takes the supervisor's own argv and
environment (lab.engine.identity), and runs ``lab.engine.supervisor.main``. The launcher
answers the child's PID, and its exit status later if `lab up` still waits on it. A
topology `lab up` asks to have loaded, and a scenario `lab start` asks to have checked, is
dealt with in a forked child too (answer_child). It
never runs a lab's code itself, and it ends when idle or when its code has changed.
"""
from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.engine import trash
from lab.engine.identity import set_identity
from lab.engine.launcher import IDLE, START_TIMEOUT, connect, home, socket_path
from lab.engine.procs import reaped_children
from lab.engine.state import proc_start_time


class CodeStamp:
    """The modification times of the lab's modules the launcher has loaded: a launcher
    whose code was changed under it (an update, a developer's edit) ends instead of
    forking, and `lab up` starts a new one."""

    def __init__(self) -> None:
        self.files = {path: _mtime(path) for path in _lab_files()}

    def changed(self) -> bool:
        return any(_mtime(path) != stamp for path, stamp in self.files.items())


def _lab_files() -> list[str]:
    """The lab's modules loaded, this one included: run with ``-m``, it is ``__main__``."""
    return [m.__file__ for m in list(sys.modules.values())
            if _in_lab(getattr(m, "__spec__", None) and m.__spec__.name)
            and getattr(m, "__file__", None)]


def _in_lab(name: str | None) -> bool:
    return name is not None and (name == "lab" or name.startswith("lab."))


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


class Launcher:
    def __init__(self, server: socket.socket, lock: int) -> None:
        self.server = server
        self.lock = lock  # the state root's launcher lock: held while this process lives
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, socket.socket | None] = {}  # pid -> `lab up` waiting on it
        self.last = time.monotonic()
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        self.running = True
        self.code = CodeStamp()
        self.sel.register(server, selectors.EVENT_READ, self._accept)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._reap)

    def _stop(self, *_: object) -> None:
        self.running = False

    def serve(self) -> None:
        while self.running:
            idle = not self.children and time.monotonic() - self.last > IDLE
            if idle:
                break
            for key, _ in self.sel.select(timeout=1.0):
                key.data()
        # from now on nobody connects to this launcher: a `lab up` starts the next one,
        # which binds the path once this one has ended (the lock)
        socket_path().unlink(missing_ok=True)

    def _accept(self) -> None:
        conn, _ = self.server.accept()
        self.last = time.monotonic()
        if self.code.changed():  # never fork a supervisor from code that is no longer there
            print("launcher: the lab's code changed; ending", flush=True)
            socket_path().unlink(missing_ok=True)
            conn.close()
            self.running = False
            return
        try:
            msg, fds = _receive(conn)
            if msg is None:  # a connection that only checks the launcher is there
                conn.close()
                return
        except (OSError, ValueError) as e:
            print(f"launcher: request refused: {e}", flush=True)
            conn.close()
            return
        kind = next((k for k in CHILDREN if isinstance(msg, dict) and k in msg), None)
        if kind is not None:
            self._answer(CHILDREN[kind], msg[kind], fds, conn)
            return
        try:
            lab, env = msg["lab"], msg["env"]
            if len(fds) != 2 or not isinstance(lab, str) or not isinstance(env, dict):
                raise ValueError("expected a lab, its environment, the ready pipe and the log")
            pid = self._fork(lambda: _child(lab, env, fds, conn))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"launcher: request refused: {e}", flush=True)
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.children[pid] = conn
        start = proc_start_time(pid) or 0
        try:
            conn.sendall(json.dumps({"pid": pid, "start": start}).encode() + b"\n")
        except OSError:
            self.children[pid] = None
            conn.close()
        self._reap()  # a child that died at once

    def _fork(self, run: Callable[[], int]) -> int:
        """A child that runs ``run`` and ends with its status: never back into the loop."""
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.close_in_child()
                code = run()
            except BaseException:  # noqa: BLE001 - the child must never return into the loop
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        return pid

    def _answer(self, work: Callable[[dict], dict], request: dict, fds: list[int],
                conn: socket.socket) -> None:
        """Fork a child that does ``work`` for `lab up` or `lab start` and answers it
        (answer_child)."""
        for fd in fds:
            os.close(fd)
        pid = self._fork(lambda: answer_child(work, request, conn))
        conn.close()
        self.children[pid] = None

    def _reap(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.wake_r, 4096)
        for pid, status in reaped_children():
            self.last = time.monotonic()
            conn = self.children.pop(pid, None)
            if conn is not None:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
                conn.close()

    def close_in_child(self) -> None:
        """What the launcher holds that a supervisor must not."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        self.sel.close()
        self.server.close()
        os.close(self.lock)  # a supervisor must not hold the lock (flock: shared on fork)
        os.close(self.wake_r)
        for conn in self.children.values():
            if conn is not None:
                conn.close()


def _receive(conn: socket.socket) -> tuple[dict | None, list[int]]:
    conn.settimeout(5.0)
    fds = array.array("i")
    msg, ancdata, _flags, _addr = conn.recvmsg(1 << 16, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    got = list(fds)
    if not msg and not got:
        return None, []
    try:
        return json.loads(msg), got
    except ValueError:
        for fd in got:
            os.close(fd)
        raise


def _child(lab: str, env: dict[str, str], fds: list[int], conn: socket.socket) -> int:
    """In the forked child: become the lab's supervisor."""
    ready_fd, log_fd = fds
    conn.close()
    os.setsid()
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    argv = [sys.executable, "-m", "lab.engine.supervisor", lab, str(ready_fd)]
    os.environ.clear()
    os.environ.update(env)
    set_identity(argv, env)
    sys.argv = argv[2:]
    gc.enable()
    from lab.engine.supervisor import main

    return main([lab, str(ready_fd)])


def answer_child(work: Callable[[dict], dict], request: dict, conn: socket.socket) -> int:
    """In a forked child: do ``work`` with the request, in the caller's working
    directory, and answer {"ok": result}, or the LabError as the work in the caller would
    raise it. Any other failure ends the child without an answer: the caller then does
    the work itself."""
    from lab.errors import LabError

    os.chdir(request["cwd"])
    try:
        reply = {"ok": work(request)}
    except LabError as e:
        reply = {"error": e.message, "hint": e.hint}
    with contextlib.suppress(OSError):  # the caller gone (Ctrl-C): nobody to answer
        conn.sendall(json.dumps(reply).encode() + b"\n")
    return 0


def load_topology(request: dict) -> dict:
    """`lab up`: the topology's name and the YAML the supervisor reads."""
    from lab.engine.lifecycle import topology_yaml
    from lab.model.topology import load_topology

    topo = load_topology(Path(request["path"]), request["variant"])
    return {"name": topo.name, "yaml": topology_yaml(topo)}


def check_scenario(request: dict) -> dict:
    """`lab start`: the scenario and its forced faults checked; what starting it needs."""
    from lab.engine.attempt import check_here

    path, scenario, forced = check_here(request["ref"], request["faults"])
    plan = {"name": scenario.name, "topology": scenario.topology,
            "variant": scenario.variant, "overrides": scenario.overrides}
    return {"path": str(path), "plan": plan, "forced": forced}


CHILDREN: dict[str, Callable[[dict], dict]] = {"load": load_topology,
                                               "scenario": check_scenario}

# what a supervisor imports, loaded once before any fork
PRELOAD = ("asyncio", "mininet.link", "mininet.net", "mininet.node", "mininet.nodelib",
           "lab.engine.supervisor", "lab.engine.network", "lab.engine.mnnodes",
           "lab.engine.seal", "lab.engine.status", "lab.engine.exercise",
           "lab.services.host", "lab.faults", "lab.probes", "lab.history.replay",
           "lab.history.messages", "lab.model.roles_derive", "concurrent.futures.thread",
           # loaded on first use: the TLS certificates' backend (3,000 objects made as its
           # binding loads), hostnames' IDNA codec
           "cryptography.hazmat.backends.openssl.backend", "encodings.idna",
           # what the children answering `lab up` and `lab start` use
           "lab.engine.lifecycle", "lab.model.scenario_check", "lab.faults.draw",
           "lab.scoring.causes", "yaml")


def preload() -> None:
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    _warm()


def _warm() -> None:
    """What libraries do once per process at their first use, done once here rather than
    in every supervisor: Mininet counts the CPUs with `grep` and checks the machine's
    limits (a dozen sysctls read), inotify_simple finds the C library with `ldconfig -p`."""
    from inotify_simple import INotify
    from mininet.net import Mininet
    from mininet.util import numCores

    numCores()
    Mininet.init()
    INotify().close()


def _take(lock: int) -> bool:
    """The state root's launcher lock; False if another launcher holds it and answers
    (one that is ending lets go of it in a moment)."""
    deadline = time.monotonic() + START_TIMEOUT / 2
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        try:
            connect().close()
            return False
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def main() -> int:
    gc.disable()  # the children share the launcher's pages while nothing writes to them
    home().mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(home() / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if not _take(lock):
        return 0  # another launcher serves this state root
    # the launcher's own name, and the proof that it can give its children theirs
    set_identity([sys.executable, "-m", "lab.engine.launcherproc"], dict(os.environ))
    preload()
    gc.freeze()
    path = socket_path()
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o077)
    server.bind(str(path))
    os.umask(old)
    server.listen(64)
    trash.sweep(wait=False)  # what a crash left between a lab's down and its delete
    try:
        Launcher(server, lock).serve()
    finally:
        path.unlink(missing_ok=True)  # before the lock is let go: the next one binds anew
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
