"""The state root in memory.

A lab's state is some 400 small files (node layers, TLS keys, node commands) made at
`lab up`, and then a few new files per message its mail servers handle (queue files,
written to a temporary name and renamed into place); all of it goes with the lab, and
none of it is meant to outlive the machine's boot. On a file system on disk each new
file costs far more than in memory: 0.1 to 0.9 ms on the virtual disk where this was
measured (an ext4 mounted with ``discard``), against 9 to 24 us on a tmpfs; a
`lab start` spent 13 % of its CPU time on it (bench/stateroot_bench.py). The default
state root, /run/lab, is on a tmpfs wherever /run is one (a standard Debian); where it is
not (a container, a virtual machine whose /run is a folder of its root disk) the first
lab command mounts a tmpfs of its own on the state root, and `lab clean` unmounts it once
no lab is left in it.

``LAB_STATE_TMPFS=off`` keeps the state root where it is (benchmarks measure with and
without). The file system is mounted only on a state root that holds nothing alive (no
lab, no lab being made or deleted, no launcher), so that it never hides a running lab's
files; labs started before it keep working where they are.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from lab.engine.state import NODE_PATH, state_root
from lab.errors import LabError

ENV = "LAB_STATE_TMPFS"
SOURCE = "lab-state"  # the mount's source name: how the lab knows the file system is its own
OPTIONS = "mode=0711,size=25%"  # a quarter of the machine's memory at most, used as written
TRASH_WAIT = 5.0  # seconds `release` waits for the state folders being deleted


def enabled() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "no", "false")


def _unescape(field: str) -> str:
    """A path as /proc/self/mounts writes it (space, tab, newline, backslash in octal)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts() -> list[tuple[str, str, str]]:
    """(source, mount point, file system type) of every mount this process sees."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append((_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    return out


def file_system(path: Path) -> tuple[str, str, str]:
    """The mount ``path`` is on: (source, mount point, type) of the innermost one."""
    real = os.path.realpath(path)
    best = ("", "/", "")
    for source, point, kind in mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[1]):
            best = (source, point, kind)
    return best


def in_memory(path: Path) -> bool:
    return file_system(path)[2] == "tmpfs"


def own_mount(root: Path) -> bool:
    """Whether ``root`` is a tmpfs the lab mounted itself (not one an administrator did)."""
    source, point, kind = file_system(root)
    return kind == "tmpfs" and source == SOURCE and point == os.path.realpath(root)


def _vacant(root: Path) -> bool:
    """Nothing alive in ``root``: only what the lab makes again when needed (the shared
    /etc layer, the launcher's and the trainee channel's folders) and no launcher
    answering. Anything else (a lab, a lab being made or deleted, another state root
    inside it: a test worker's) keeps the root as it is."""
    from lab.engine import launcher
    from lab.engine.channel import PUBLIC_DIR
    from lab.engine.layout import HIDDEN_LAYERS

    remade = {HIDDEN_LAYERS, PUBLIC_DIR, launcher.home().name}
    if any(entry.name not in remade for entry in root.iterdir()):
        return False
    try:
        launcher.connect().close()
    except OSError:
        return True
    return False


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """The state root's folder locked (flock): two lab commands starting at once do not
    both mount."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env={"PATH": NODE_PATH}, capture_output=True, text=True,
                          check=False)


def prepare() -> Path:
    """The state root, made if missing (0711: trainees pass through to their sockets,
    list nothing), on a tmpfs unless it is one already, ``LAB_STATE_TMPFS=off`` says
    not to, or something alive is in it."""
    root = state_root()
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # whatever the umask
    if not enabled() or in_memory(root):
        return root
    with _locked(root):
        if in_memory(root) or not _vacant(root):
            return root
        p = _run("mount", "-t", "tmpfs", "-o", OPTIONS, SOURCE, str(root))
        if p.returncode != 0:
            raise LabError(f"cannot mount a tmpfs on the state root {root}: "
                           f"{p.stderr.strip() or p.returncode}",
                           hint=f"{ENV}=off keeps the state on its file system")
    return root


def release() -> bool:
    """Unmount the state root's tmpfs if the lab mounted it and nothing alive is left in
    it (`lab clean`, the end of a test session); whether it did. Not under the lock: an
    open folder of the file system would keep it busy (two at once: one unmounts, the
    other's fails)."""
    from lab.engine import trash

    root = state_root()
    if not root.is_dir() or not own_mount(root):
        return False
    trash.sweep(wait=True)
    deadline = time.monotonic() + TRASH_WAIT
    while trash.piles() and time.monotonic() < deadline:  # the last `lab down`'s `rm`
        time.sleep(0.02)
    return _vacant(root) and _run("umount", str(root)).returncode == 0
