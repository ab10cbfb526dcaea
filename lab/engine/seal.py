"""Sealed nodes: what a person or a playbook runs in a node stays in that node.

At build, every host node gets one *init*: bubblewrap (``bwrap``), started inside the
node's Mininet namespaces, builds the node's root file system from an allowlist
(pivot_root: the host's /usr read-only, the node's own /etc layer, /var/mail, /var/spool
and /var/log, private /tmp, /root and /run, a minimal /dev, a fresh /proc with the
kernel's knobs read-only) and runs a tiny shell loop as PID 1 of new PID, UTS, IPC and
cgroup namespaces. That loop holds the node's namespaces and reaps orphans; when it dies
the kernel kills every process of the node, so no shell outlives its node.

Everything run for a person then joins the init: the caller points its own thread's
``pid_for_children`` at the init's PID namespace (setns(2)), so the child it forks is
born inside the node while the caller still knows it by its host PID (to signal its
process group and wait for it); the child is ``nsenter`` (network, mount, UTS, IPC,
cgroup) -> ``setpriv`` (bounding set ``CAPABILITIES``, no inheritable or ambient
capabilities, no_new_privs) -> ``setsid`` when it needs a terminal -> ``env -C /root``
-> the command. docs/security.md says what this protects and how it is tested.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lab.engine.nodebin import MOUNT_POINT, NODE_SOCKET_DIR
from lab.engine.state import ProcRef
from lab.errors import LabError

if TYPE_CHECKING:  # the CLI that joins nodes need not load the models
    from lab.engine.layout import NodeFiles

# What container runtimes grant by default, minus MKNOD (no device cgroup here), plus
# NET_ADMIN and NET_RAW (ip, nft, tc, tcpdump, ping). Never SYS_ADMIN, SYS_PTRACE,
# SYS_MODULE, SYS_RAWIO, DAC_READ_SEARCH, SYS_BOOT.
CAPABILITIES = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid",
                "setpcap", "setfcap", "net_bind_service", "sys_chroot", "audit_write",
                "net_raw", "net_admin")

HOME = "/root"

# /proc entries masked or made read-only as container runtimes do; only those this
# kernel has are touched
PROC_MASKED_FILES = ("kcore", "keys", "key-users", "timer_list", "timer_stats", "sched_debug",
                     "latency_stats", "sysrq-trigger", "kallsyms", "kmsg", "kpagecount",
                     "kpageflags", "kpagecgroup")
PROC_MASKED_DIRS = ("acpi", "asound", "scsi")
PROC_READ_ONLY = ("fs", "bus", "irq")
SYS_MASKED_DIRS = ("firmware", "devices/virtual/powercap", "kernel/security", "kernel/debug")

# tmpfs sizes (bytes): a node cannot fill the machine's memory through them
TMPFS = {"/tmp": (256 << 20, "1777"), "/var/tmp": (64 << 20, "1777"), "/root": (64 << 20, "0700"),
         "/run": (16 << 20, "0755"), "/dev/shm": (64 << 20, "1777")}

# PID 1 of the node: ignores what a node process could send it, says it is ready, then
# only reaps orphans (a sleeping child keeps `wait` blocking)
INIT_SCRIPT = ('trap "" INT TERM HUP QUIT USR1 USR2 PIPE; echo ready; '
               'exec </dev/null >/dev/null 2>&1; while :; do sleep 86400 & wait; done')
READY_TIMEOUT = 20.0
STATUS_FD = "{status_fd}"  # filled in by start_init: where bwrap says its init's PID

CLONE_NEWPID = 0x20000000
_libc = ctypes.CDLL(None, use_errno=True)


def _tmpfs(path: str) -> list[str]:
    size, perms = TMPFS[path]
    return ["--size", str(size), "--perms", perms, "--tmpfs", path]


def _system() -> list[str]:
    """The host's programs and libraries, read-only: /usr, and /bin, /lib... as the host
    has them (symbolic links into /usr on a merged-/usr system)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _proc() -> list[str]:
    """A fresh /proc of the node's PID namespace; the kernel's knobs read-only except the
    node's own network ones; what would tell about the host masked."""
    args = ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
            "--bind", "/proc/sys/net", "/proc/sys/net"]
    for name in PROC_READ_ONLY:
        if os.path.isdir(f"/proc/{name}"):
            args += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    for name in PROC_MASKED_FILES:
        if os.path.exists(f"/proc/{name}"):
            args += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    for name in PROC_MASKED_DIRS:
        if os.path.isdir(f"/proc/{name}"):
            args += ["--perms", "0555", "--tmpfs", f"/proc/{name}", "--remount-ro", f"/proc/{name}"]
    return args


def _dev() -> list[str]:
    """null, zero, full, random, urandom, tty, a devpts of the node's own, shm: no disk,
    no other device of the host."""
    return ["--dev", "/dev", *_tmpfs("/dev/shm"), "--remount-ro", "/dev"]


def _sys() -> list[str]:
    args = ["--ro-bind", "/sys", "/sys"]
    for name in SYS_MASKED_DIRS:
        if os.path.isdir(f"/sys/{name}"):
            args += ["--perms", "0555", "--tmpfs", f"/sys/{name}", "--remount-ro", f"/sys/{name}"]
    return args


def code_dirs() -> list[str]:
    """What the lab's node commands (netguard, mailq, lab...) need to run: the `lab`
    package and the Python environment it is installed in, read-only. Not the project's
    checkout: scenarios, playbooks, tests and git history stay out of the nodes."""
    import lab

    dirs = [str(Path(lab.__file__).resolve().parent)]
    prefix = Path(sys.prefix).resolve()
    if not prefix.is_relative_to("/usr"):
        dirs.append(str(prefix))
    return dirs


def seal_command(node: str, files: NodeFiles, node_bin: Path) -> list[str]:
    """The bwrap command line that builds a node's sealed root and runs its init. It runs
    in the node's Mininet namespaces, where /etc is the node's layer (overlayfs)."""
    args = ["bwrap", "--unshare-pid", "--unshare-uts", "--unshare-ipc", "--unshare-cgroup-try",
            "--hostname", node, "--as-pid-1", "--die-with-parent", "--cap-add", "ALL",
            "--json-status-fd", STATUS_FD]
    args += _system()
    args += ["--bind", "/etc", "/etc", "--dir", "/var"]
    for inside, host in files.private().items():
        args += ["--bind", str(host), inside]
    args += ["--symlink", "../run", "/var/run", "--symlink", "../run/lock", "/var/lock"]
    for path in ("/tmp", "/var/tmp", "/root", "/run"):
        args += _tmpfs(path)
    args += ["--dir", "/run/lock", "--ro-bind", str(node_bin), MOUNT_POINT,
             "--ro-bind", str(files.socket_dir), NODE_SOCKET_DIR]
    args += _proc() + _dev() + _sys()
    for d in code_dirs():
        args += ["--ro-bind", d, d]
    return args + ["--remount-ro", "/", "--chdir", "/", "--", "/bin/sh", "-c", INIT_SCRIPT]


def seal_all(mininet_pids: dict[str, int], files: dict[str, NodeFiles], node_bin: Path
             ) -> dict[str, ProcRef]:
    """Seal every host node (all started at once); node -> its init. Call from the main
    thread: each init dies with the thread that started it."""
    return wait_all(start_all(mininet_pids, files, node_bin))


def start_all(mininet_pids: dict[str, int], files: dict[str, NodeFiles], node_bin: Path
              ) -> dict[str, tuple[subprocess.Popen, int]]:
    """Start sealing every host node; ``wait_all`` waits for them (main thread only)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TZ", "LAB_INSTANCE")}
    env["HOME"] = HOME
    return {name: start_init(pid, seal_command(name, files[name], node_bin), env)
            for name, pid in mininet_pids.items()}


def wait_all(procs: dict[str, tuple[subprocess.Popen, int]]) -> dict[str, ProcRef]:
    """The inits started by ``start_all``, once each said it is ready: node -> init."""
    inits: dict[str, ProcRef] = {}
    try:
        for name, (proc, status) in procs.items():
            inits[name] = ProcRef.of(wait_ready(name, proc, status))
    except BaseException:
        for proc, _status in procs.values():
            proc.kill()
        raise
    return inits


def start_init(mininet_pid: int, argv: list[str], env: dict[str, str]
               ) -> tuple[subprocess.Popen, int]:
    """Start a node's init (``seal_command``) inside the Mininet namespaces of
    ``mininet_pid``; the process and the read end of bwrap's status pipe. Call from the
    main thread: bwrap dies with the thread that started it."""
    status_r, status_w = os.pipe()
    argv = [a.replace(STATUS_FD, str(status_w)) for a in argv]
    try:
        proc = subprocess.Popen(["nsenter", "-t", str(mininet_pid), "-n", "-m", "--", *argv],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd="/", pass_fds=(status_w,))
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)
    return proc, status_r


def wait_ready(node: str, proc: subprocess.Popen, status: int,
               timeout: float = READY_TIMEOUT) -> int:
    """Wait for an init started by ``start_init`` to report ready; its host PID."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"ready\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                proc.kill()
                raise LabError(f"sealing node {node} timed out")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                err = proc.stderr.read().decode(errors="replace").strip()
                raise LabError(f"sealing node {node} failed: {err or 'bwrap exited'}")
            data += chunk
        # bwrap wrote the child's PID before the child could say it is ready
        line = os.read(status, 4096).decode(errors="replace").splitlines()[0]
        return int(json.loads(line)["child-pid"])
    except (ValueError, KeyError, IndexError):
        raise LabError(f"sealing node {node}: bwrap did not say its init's PID") from None
    finally:
        os.close(status)
        proc.stdout.close()
        proc.stderr.close()


# --- joining a node ------------------------------------------------------------------


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def pid_namespace(init: int) -> Iterator[None]:
    """Children this thread forks in the body are born in the PID namespace of ``init``."""
    target = os.open(f"/proc/{init}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, CLONE_NEWPID)
        try:
            yield
        finally:
            _setns(home, CLONE_NEWPID)
    finally:
        os.close(target)
        os.close(home)


def join_command(init: int, argv: list[str], ctty: bool = False,
                 die_with_parent: bool = False) -> list[str]:
    """``argv`` run sealed in the node whose init is ``init`` (the caller must fork it
    inside ``pid_namespace(init)``). ``ctty``: stdin is a terminal the command makes its
    controlling terminal (a shell)."""
    cmd = ["nsenter", "-t", str(init), "-n", "-m", "-u", "-i", "-C", "--",
           "setpriv", "--bounding-set=-all," + ",".join("+" + c for c in CAPABILITIES),
           "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--clear-groups"]
    if die_with_parent:
        cmd.append("--pdeathsig=KILL")
    cmd.append("--")
    if ctty:
        cmd += ["setsid", "--ctty", "--"]
    # cwd is set inside the node: a directory opened outside it would be a way out
    return cmd + ["env", f"--chdir={HOME}", "--", *argv]


def spawn(init: int, argv: list[str], env: dict[str, str], stdin=None, stdout=None,
          stderr=None, pass_fds: tuple[int, ...] = (), ctty: bool = False,
          die_with_parent: bool = False) -> subprocess.Popen:
    """Start ``argv`` sealed in a node. Without ``ctty`` it leads a session of its own (no
    controlling terminal from outside the node); ``Popen.pid`` is its host PID and its
    process group's id."""
    cmd = join_command(init, argv, ctty, die_with_parent)
    with pid_namespace(init):
        return subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                                pass_fds=pass_fds, start_new_session=not ctty, cwd="/")


# --- what may be handed to a node ----------------------------------------------------

_SAFE_CHAR_DEVICES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)}  # null zero full random urandom


def safe_stdio(fd: int) -> bool:
    """Whether ``fd`` may become a node process's stdin/stdout/stderr as it is: a pipe,
    a Unix socket or /dev/null-like device. Not a file, a directory or a terminal of the
    host: a node process could reopen it through /proc/self/fd with more rights (root
    there has CAP_DAC_OVERRIDE), walk out of a directory, or read a terminal's keys."""
    import socket

    st = os.fstat(fd)
    if stat.S_ISFIFO(st.st_mode):
        return True
    if stat.S_ISCHR(st.st_mode):
        return (os.major(st.st_rdev), os.minor(st.st_rdev)) in _SAFE_CHAR_DEVICES
    if stat.S_ISSOCK(st.st_mode):
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            return False
        with sock:
            return sock.family == socket.AF_UNIX
    return False
