"""Starting, finding, stopping and cleaning up labs: the library behind the `lab` command."""
from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.engine import control, interrupts, stateroot, trash
from lab.engine.channel import public_socket
from lab.engine.procs import kill_owned, netns_inode
from lab.engine.state import (
    NODE_PATH,
    OWNER_ENV,
    LabState,
    ProcRef,
    check_lab_name,
    lab_dir,
    lab_names,
    state_root,
)
from lab.errors import Interrupted, LabError, went_down
from lab.paths import PROJECT_ROOT, SCENARIO_DIR, TOPOLOGY_DIR  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # loaded where a topology is read: `lab exec` and the trainee verbs need none
    from lab.model.topology import Topology

UP_TIMEOUT = 60.0
STARTING = "starting"  # `lab up`'s own PID and start time until the lab is ready
STOPPING = "stopping"  # `lab down`'s own PID and start time while the lab goes down
CLAIM_PREFIX = ".claim-"  # a lab directory being prepared, renamed into place when complete

# command -> Debian package that provides it
DEPENDENCIES = {
    "mnexec": "mininet",
    "ip": "iproute2",
    "brctl": "bridge-utils",
    "ifconfig": "net-tools",
    "mount": "mount",
    "sysctl": "procps",
    "bwrap": "bubblewrap",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces)",
                       hint="run it with sudo")


def proc_hides_processes() -> bool:
    """Whether the host's /proc hides other users' processes (hidepid=invisible or 2)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        fields = line.split()
        if len(fields) > 3 and fields[1] == "/proc" and fields[2] == "proc":
            opts = fields[3].split(",")
            return "hidepid=invisible" in opts or "hidepid=2" in opts
    return False


def require_dependencies() -> None:
    missing = [f"{cmd} (package {pkg})" for cmd, pkg in DEPENDENCIES.items()
               if shutil.which(cmd) is None]
    if missing:
        raise LabError("missing dependency: " + ", ".join(missing),
                       hint="`sudo make install` installs everything the lab needs")


def resolve_file(ref: str, directory: Path, what: str) -> Path:
    """A file by path, or by name from one of the project's folders."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or os.sep in ref:
        if not path.is_file():
            raise LabError(f"no {what} file {ref}")
        return path
    candidate = directory / f"{ref}.yaml"
    if not candidate.is_file():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise LabError(f"unknown {what} '{ref}'", hint=f"known: {known}")
    return candidate


def resolve_topology(ref: str) -> Path:
    return resolve_file(ref, TOPOLOGY_DIR, "topology")


def is_running(lab: str) -> bool:
    try:
        return LabState.load(lab).supervisor.alive()
    except LabError:
        return False


def _marker_alive(directory: Path, marker: str) -> bool:
    """The process named in a marker file (STARTING, STOPPING) is still alive."""
    try:
        pid, start = (int(x) for x in (directory / marker).read_text().split())
    except (OSError, ValueError):
        return False
    return ProcRef(pid, start).alive()


def _write_marker(directory: Path, marker: str) -> None:
    me = ProcRef.of(os.getpid())
    tmp = directory / f".{marker}.tmp"
    tmp.write_text(f"{me.pid} {me.start}\n")
    os.replace(tmp, directory / marker)


def is_starting(lab: str) -> bool:
    """`lab up` (or `lab start`) claimed the name, is alive and the lab is not ready yet."""
    return _marker_alive(lab_dir(lab), STARTING)


def is_stopping(lab: str) -> bool:
    """A `lab down` of this lab is under way."""
    return _marker_alive(lab_dir(lab), STOPPING)


def phase(lab: str) -> str:
    """starting, running, stopping or dead. The markers are read before the state, so that
    a lab recording its state between the two reads is never taken for dead."""
    starting, stopping = is_starting(lab), is_stopping(lab)
    if stopping:
        return "stopping"
    if starting:
        return "starting"
    return "running" if is_running(lab) else "dead"


def running_labs() -> list[str]:
    return [lab for lab in lab_names() if is_running(lab)]


def pick_lab(lab: str | None) -> str:
    """The lab a command is about: the one named, or the only one running."""
    if lab is not None:
        check_lab_name(lab)
        now = phase(lab)
        if now == "running":
            return lab
        if now == "stopping":
            raise LabError(f"lab '{lab}' is being taken down (by a `lab down` under way)")
        if now == "starting":
            raise LabError(f"lab '{lab}' is still starting", hint="try again once `lab up` "
                           "(or `lab start`) has said it is up")
        if lab_dir(lab).exists() and _gone_soon(lab):
            raise LabError(f"lab '{lab}' is not running (it has just been taken down)")
        if lab_dir(lab).exists():
            raise LabError(f"lab '{lab}' is not running (its supervisor died)",
                           hint="`lab clean` removes what it left")
        raise LabError(f"unknown lab '{lab}'", hint="`lab ls` lists running labs")
    labs = running_labs()
    if not labs:
        raise LabError("no lab is running", hint="start one with `lab up mail-dmz`")
    if len(labs) > 1:
        raise LabError(f"{len(labs)} labs are running: {', '.join(labs)}",
                       hint="name one with --lab NAME")
    return labs[0]


def _gone_soon(lab: str, wait: float = 0.5) -> bool:
    """The lab's directory disappears within ``wait`` seconds (an orderly down finishing)."""
    deadline = time.monotonic() + wait
    while lab_dir(lab).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def up(ref: str, lab: str | None = None, variant: str | None = None,
       overrides: dict | None = None) -> LabState:
    """Build a lab from a topology (with a variant and overrides laid over it) and return
    once every node is up and every service healthy.

    Ctrl-C while building stops the build and removes everything (Interrupted says so);
    Ctrl-C after the lab came up leaves it up (Interrupted with ``lab_is_up``)."""
    require_root()
    require_dependencies()
    path = resolve_topology(ref)
    name, text = _load(path, variant, overrides)
    lab = check_lab_name(lab if lab is not None else name)
    with interrupts.held() as ctrl_c:
        files = {"topology.yaml": text, "source": str(path.resolve()) + "\n"}
        _claim(lab, files)
        try:
            if ctrl_c.hit:
                raise Interrupted(f"lab '{lab}' was not built: nothing was started")
            _start_supervisor(lab, ctrl_c)
        except BaseException:
            if lab_dir(lab).exists():  # not yet removed by a failed build's own cleanup
                clean_one(lab, force=True)
            raise
        (lab_dir(lab) / STARTING).unlink(missing_ok=True)
    if ctrl_c.hit:
        raise Interrupted(f"lab '{lab}' is up (it was ready before Ctrl-C)",
                          hint=f"`lab down --lab {lab}` takes it down", lab_is_up=lab)
    return LabState.load(lab)


def _load(path: Path, variant: str | None, overrides: dict | None) -> tuple[str, str]:
    """The topology's name and its YAML for the supervisor: loaded by the launcher, which
    has the models imported, unless there are overrides or no launcher is to be had."""
    if overrides is None and os.environ.get("LAB_LAUNCHER") != "off":
        from lab.engine import launcher

        with contextlib.suppress(launcher.Unavailable):
            return launcher.load_topology(path, variant)
    from lab.model.topology import load_topology

    topo = load_topology(path, variant, overrides)
    return topo.name, topology_yaml(topo)


def topology_yaml(topo: Topology) -> str:
    """The topology as the supervisor reads it (lab_dir/topology.yaml)."""
    import yaml

    return yaml.safe_dump(topo.model_dump(mode="json", exclude={"variants"}), sort_keys=False)


def _claim(lab: str, files: dict[str, str]) -> None:
    """Create the lab's directory with ``files`` and the STARTING marker in one step (a
    prepared directory renamed into place), so that no one sees it half made."""
    root = stateroot.prepare()
    tmp = Path(tempfile.mkdtemp(prefix=f"{CLAIM_PREFIX}{lab}-", dir=root))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
        _write_marker(tmp, STARTING)
        os.rename(tmp, lab_dir(lab))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise LabError(f"cannot create the state of lab '{lab}': {e.strerror}") from None
        if phase(lab) != "dead":
            raise LabError(f"lab '{lab}' is already running",
                           hint="pick another name with --lab NAME, or `lab down` it") from None
        raise LabError(f"lab '{lab}' left state behind (its supervisor died)",
                       hint="`lab clean` removes it") from None


def supervisor_env(lab: str) -> dict[str, str]:
    """The supervisor's environment, which its node shells inherit and every node can read
    (/proc/PID/environ): the lab's own settings only. Not the caller's: under sudo that
    holds SUDO_COMMAND, the whole `lab start ... --fault NAME` line (docs/design.md, rule 4)."""
    env = {k: v for k, v in os.environ.items()
           if k in ("LANG", "TZ") or k.startswith(("LC_", "LAB_"))}
    env.update({"PATH": NODE_PATH, "HOME": "/root", OWNER_ENV: lab,
                "SETUPTOOLS_USE_DISTUTILS": "stdlib"})  # Mininet's distutils: see launcher_env
    return env


def _start_supervisor(lab: str, ctrl_c: interrupts.Held) -> None:
    d = lab_dir(lab)
    read_fd, write_fd = os.pipe()
    # the log is read back through a handle of its own: a supervisor that fails renames
    # the lab's folder away (lab.engine.trash), its log with it
    with open(d / "supervisor.log", "wb") as log, open(d / "supervisor.log", "rb") as log_reader:
        try:
            proc = _spawn(lab, write_fd, log.fileno())
        finally:
            os.close(write_fd)
        try:
            message = _read_until_eof(read_fd, UP_TIMEOUT, ctrl_c)
            if message.startswith("ready"):
                return
            died = None if ctrl_c.hit else proc.exit_status()
            proc.kill()
        finally:
            proc.close()
        log_tail = log_reader.read().decode(errors="replace")[-2000:]
    clean_one(lab, force=True)
    if ctrl_c.hit:
        raise Interrupted(f"the build of lab '{lab}' was stopped; everything it had started "
                          "is removed")
    if message.startswith("error: "):
        raise LabError(message[len("error: "):].strip())
    last = (log_tail.strip().splitlines() or [""])[-1]
    raise LabError(f"lab '{lab}' did not come up: {_death(died, last)}",
                   hint="everything it had started is removed")


def _spawn(lab: str, ready_fd: int, log_fd: int):
    """The lab's supervisor, forked by the launcher (lab.engine.launcher); a fresh
    interpreter when the launcher cannot be had (LAB_LAUNCHER=off asks for that)."""
    if os.environ.get("LAB_LAUNCHER") != "off":
        from lab.engine import launcher

        try:
            return launcher.launch(lab, supervisor_env(lab), ready_fd, log_fd)
        except launcher.Unavailable:
            pass
    return _Interpreter(subprocess.Popen(
        [sys.executable, "-m", "lab.engine.supervisor", lab, str(ready_fd)],
        pass_fds=(ready_fd,), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
        start_new_session=True, env=supervisor_env(lab), cwd="/"))


@dataclass
class _Interpreter:
    """A supervisor started as a fresh interpreter (the launcher's ``Launched``, alike)."""

    popen: subprocess.Popen

    def exit_status(self) -> int | None:
        """How it ended on its own (the ready pipe closed), None if it still runs."""
        try:
            return self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()

    def close(self) -> None:
        pass


def _death(status: int | None, last: str) -> str:
    """Why the supervisor did not say it is ready (``last``: its log's last line)."""
    if status is None:
        return f"not ready after {UP_TIMEOUT:.0f} s" + (f" (its log ends: {last})" if last else "")
    if status < 0:
        said = f" (its log ends: {last})" if last else ""
        return f"its supervisor was killed by {signal.Signals(-status).name}{said}"
    return last or f"its supervisor ended without a word (exit status {status})"


def _read_until_eof(fd: int, timeout: float, ctrl_c: interrupts.Held) -> str:
    """What the supervisor says on the ready pipe; "" when time is up or on Ctrl-C."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if ctrl_c.hit or left <= 0:  # a lab that said it is ready is up, Ctrl-C or not
                return data.decode(errors="replace") if data.startswith(b"ready") else ""
            if not select.select([fd], [], [], min(left, 0.1))[0]:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
    finally:
        os.close(fd)


def down(lab: str, timeout: float = 10.0) -> None:
    """Stop a running lab: its supervisor kills everything it built, frees the lab's
    name, answers and ends (the files are deleted after: lab.engine.trash)."""
    state = LabState.load(lab)
    with contextlib.suppress(OSError):  # others learn that this is an orderly down
        _write_marker(lab_dir(lab), STOPPING)
    try:
        control.request(lab, "down")
    except LabError:
        pass  # not answering: fall through to removal by ownership
    if not _wait_gone(state.supervisor, timeout) or _left_behind(lab, state.supervisor):
        clean_one(lab, force=True)


def _wait_gone(proc: ProcRef, timeout: float) -> bool:
    """Wait (a pidfd: no polling) until ``proc`` has ended; False if it still runs."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return True
    try:
        if proc.alive():  # the pidfd is this process's, not a later one's with its PID
            select.select([fd], [], [], timeout)
        return not proc.alive()
    finally:
        os.close(fd)


def _left_behind(lab: str, supervisor: ProcRef) -> bool:
    """The lab's state folder is still there, and still this lab's (not one claimed by
    a `lab up` of the same name since)."""
    if not lab_dir(lab).exists() or is_starting(lab):
        return False
    try:
        return LabState.load(lab).supervisor == supervisor
    except LabError:
        return lab_dir(lab).exists()


@dataclass
class Cleaned:
    lab: str
    killed: int


@dataclass
class CleanReport:
    labs: list[Cleaned]
    trash: list[Path]  # state folders of labs taken down that nothing was deleting
    unmounted: bool = False  # the state root's own tmpfs, nothing being left in it


def clean_one(lab: str, force: bool = False) -> Cleaned:
    """Remove what a lab left: its processes (by ownership) and its state directory."""
    try:
        state = LabState.load(lab)
    except LabError:
        state = None
    if state is not None and state.supervisor.alive() and not force:
        raise LabError(f"lab '{lab}' is running", hint="stop it with `lab down`")
    if state is not None and force and state.supervisor.alive():
        os.kill(state.supervisor.pid, 9)
    netns = _recorded_netns(state)
    return Cleaned(lab, _remove(lab, netns))


def _recorded_netns(state: LabState | None) -> dict[int, int]:
    """The lab's namespaces (inode -> cookie) as recorded: after a crash an inode number
    may be another lab's by now, so only those with a cookie to check them by."""
    if state is None:
        return {}
    return {rec.netns: rec.cookie for rec in state.nodes.values() if rec.cookie}


def _remove(lab: str, netns: dict[int, int]) -> int:
    from lab.engine.procs import owned_processes

    found = len(owned_processes(lab, netns))
    free_lab(lab, netns, wait=True)
    return found


def free_lab(lab: str, netns: dict[int, int], wait: bool) -> None:
    """Kill every process the lab owns, remove its public socket and rename its state
    folder away (lab.engine.trash), which frees its name; the folder is deleted now
    (``wait``) or by a detached process. If some process would not stop, LabError and
    nothing else is touched: the folder stays for `lab clean`."""
    left = kill_owned(lab, netns)
    if left:
        raise LabError(f"lab '{lab}': processes {left} would not stop",
                       hint="`lab clean` tries again")
    public_socket(lab).unlink(missing_ok=True)
    pile = trash.discard(lab_dir(lab))
    if pile is not None:
        (trash.delete_now if wait else trash.delete_later)(pile)


def clean(lab: str | None = None) -> CleanReport:
    """Clean every lab (or the one named) whose supervisor is gone; labs still starting
    are left alone. Also delete the state folders of labs taken down that nothing is
    deleting (lab.engine.trash: a crash between a down's rename and its delete)."""
    require_root()
    _clean_claims()
    swept = trash.sweep(wait=True)
    names = [check_lab_name(lab)] if lab is not None else lab_names()
    if lab is not None and not lab_dir(lab).exists():
        raise LabError(f"unknown lab '{lab}'", hint="`lab ls` lists labs")
    cleaned = [clean_one(name) for name in names
               if not is_running(name) and not is_starting(name)]
    if lab is None and not any(is_starting(name) for name in lab_names()):
        from lab.engine import launcher

        launcher.stop()  # running labs do not need it; the next `lab up` starts one
    unmounted = lab is None and stateroot.release()
    return CleanReport(cleaned, swept, unmounted)


def _clean_claims() -> None:
    """Remove lab directories that were being prepared by a `lab up` that is gone."""
    root = state_root()
    for tmp in root.glob(f"{CLAIM_PREFIX}*") if root.is_dir() else []:
        if not _marker_alive(tmp, STARTING):
            shutil.rmtree(tmp, ignore_errors=True)


def node_init(lab: str, node: str) -> int:
    """The host PID of a node's sealed init (what a person's command joins), checked
    against the record."""
    state = LabState.load(lab)
    rec = state.nodes.get(node)
    if rec is None or rec.kind != "host":
        hosts = sorted(n for n, r in state.nodes.items() if r.kind == "host")
        raise LabError(f"unknown node '{node}' in lab '{lab}'", hint="nodes: " + ", ".join(hosts))
    if not rec.init_proc.alive() or netns_inode(rec.init) != rec.netns:
        if is_stopping(lab) or not lab_dir(lab).exists():  # a down renames the folder away
            raise LabError(f"lab '{lab}' is being taken down (by a `lab down` under way)")
        raise LabError(f"node '{node}' of lab '{lab}' is gone", hint="`lab down` then `lab up`")
    return rec.init


def check_node_up(lab: str, node: str, what: str, wait: float = 1.0) -> None:
    """After a shell or command in a node ended: raise if it ended because the lab (or the
    node) went down, so that nobody mistakes it for a normal exit. A node going down is
    seen through its init: gone, or exiting (the kernel is killing its processes)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            running = is_running(lab)
            init = LabState.load(lab).nodes[node].init_proc if running else None
        except (LabError, KeyError):
            running, init = False, None
        if not running or is_stopping(lab):  # an orderly down under way says so first
            raise went_down(lab, node, what, whole_lab=True)
        if init is None or not init.alive() or _exiting(init.pid):
            if time.monotonic() < deadline:
                time.sleep(0.02)  # `lab down` may be under way: let it say so
                continue
            raise went_down(lab, node, what, whole_lab=False)
        return


def _exiting(pid: int) -> bool:
    """The kernel's PF_EXITING flag: a node's init stays "alive" while the kernel kills
    the rest of its PID namespace."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return bool(int(fields[6]) & 0x4)


def load(ref: str) -> Topology:
    """A topology file checked with every one of its variants (`lab validate`)."""
    from lab.model.topology import check_topology_file

    return check_topology_file(resolve_topology(ref))
