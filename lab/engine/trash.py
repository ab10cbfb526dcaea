"""A lab's state folder, out of the way at once and deleted afterwards.

Deleting a lab's state (some 400 files: node layers, TLS, node commands) takes longer
than the rest of `lab down` together on a busy disk. So the supervisor renames the folder
into the state root under a name no lab can have (``.trash-...``: a lab's name starts
with a letter or a digit; the same file system, so the rename is one atomic step that
frees the lab's name) and a detached ``rm`` deletes it while `lab down` returns.

The deleter carries ``LAB_TRASH=<the folder>`` in its environment (and not the lab's own
mark): that is how a folder still being deleted is told from one whose deleter is gone
(the supervisor killed between the rename and the start of ``rm``, the machine stopped).
`lab clean` deletes those, and the launcher has them deleted when it starts.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from lab.engine.state import NODE_PATH, state_root

PREFIX = ".trash-"
MARK = "LAB_TRASH"  # LAB_TRASH=<folder> in the environment of the `rm` deleting it


def discard(directory: Path) -> Path | None:
    """Rename ``directory`` (in the state root) to a trash name; the new path, None if
    there was no such folder."""
    trash = state_root() / f"{PREFIX}{directory.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(directory, trash)
    except FileNotFoundError:
        return None
    return trash


def _rm(trash: Path) -> list[str]:
    """Never past a mount point: a mount left in this namespace is not deleted through."""
    return ["rm", "-rf", "--one-file-system", "--", str(trash)]


def delete_later(trash: Path) -> None:
    """Start deleting ``trash`` in a detached process; nobody waits for it."""
    subprocess.Popen(_rm(trash), env={"PATH": NODE_PATH, MARK: str(trash)}, cwd="/",
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def delete_now(trash: Path) -> None:
    """Delete ``trash`` and return when done (what cannot be deleted stays, silently)."""
    subprocess.run(_rm(trash), env={"PATH": NODE_PATH}, cwd="/", check=False,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def piles() -> list[Path]:
    """Every trash folder in the state root, being deleted or not."""
    root = state_root()
    return sorted(root.glob(f"{PREFIX}*")) if root.is_dir() else []


def sweep(wait: bool) -> list[Path]:
    """Delete the trash whose deleter is gone: now (``wait``), or by detached deleters.
    The folders it took on."""
    from lab.engine.procs import mark_values

    found = piles()
    busy = mark_values(MARK) if found else set()
    orphans = [p for p in found if str(p) not in busy]
    for trash in orphans:
        (delete_now if wait else delete_later)(trash)
    return orphans
