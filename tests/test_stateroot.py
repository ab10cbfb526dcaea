"""The state root in memory (lab.engine.stateroot): on a file system on disk, the first lab
command mounts a tmpfs of its own on the state root, `lab clean` unmounts it once no lab is
left; it never mounts over something alive, never twice, and never unmounts a tmpfs it did
not mount. Each test has a state root of its own in a folder on disk."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, SESSION, run_lab

from lab.engine import stateroot

pytestmark = pytest.mark.root

DISK_CANDIDATES = (Path("/var/tmp"), Path("/var/lib"), PROJECT_ROOT)


def _disk_folder() -> Path | None:
    for base in DISK_CANDIDATES:
        if base.is_dir() and not stateroot.in_memory(base):
            return base
    return None


def mounts_at(path: Path) -> list[tuple[str, str, str]]:
    real = os.path.realpath(path)
    return [m for m in stateroot.mounts() if m[1] == real]


@pytest.fixture
def disk_root(request) -> Iterator[tuple[Path, dict[str, str]]]:
    """A state root (not yet made) in a folder on disk, the environment that selects it,
    and at the end: its labs cleaned, its launcher stopped, every mount on it gone."""
    base = _disk_folder()
    if base is None:
        pytest.skip(f"no folder on a disk file system among {DISK_CANDIDATES}")
    root = base / f"lab-stateroot-{SESSION}-{request.node.name[:24].replace('[', '-')}"
    results = base / f"lab-stateroot-results-{SESSION}"
    env = {**os.environ, "LAB_STATE_ROOT": str(root), "LAB_RESULTS": str(results)}
    yield root, env
    run_lab("clean", env=env)
    while mounts_at(root):  # a test's own mount, or one a failed check left
        subprocess.run(["umount", str(root)], check=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(root), str(results)], check=True)


def test_first_lab_mounts_a_tmpfs_and_clean_unmounts_it(disk_root):
    root, env = disk_root
    p = run_lab("up", "mail-dmz", "--lab", "sr1", env=env)
    assert p.returncode == 0, p.stderr
    assert mounts_at(root) == [(stateroot.SOURCE, os.path.realpath(root), "tmpfs")]
    assert (root / "sr1" / "state.json").is_file()  # the lab's state is in it
    p = run_lab("down", "--lab", "sr1", env=env)
    assert p.returncode == 0, p.stderr
    p = run_lab("clean", env=env)
    assert p.returncode == 0, p.stderr
    assert "unmounted the state root's tmpfs" in p.stdout
    assert mounts_at(root) == []
    assert list(root.iterdir()) == []  # nothing was written to the disk beneath


def test_clean_leaves_it_while_a_lab_runs(disk_root):
    root, env = disk_root
    assert run_lab("up", "mail-dmz", "--lab", "sr2", env=env).returncode == 0
    p = run_lab("clean", env=env)
    assert p.returncode == 0 and "unmounted" not in p.stdout, p.stdout
    assert len(mounts_at(root)) == 1
    p = run_lab("exec", "--lab", "sr2", "mx", "--", "true", env=env)
    assert p.returncode == 0, p.stderr  # the lab still works
    assert run_lab("down", "--lab", "sr2", env=env).returncode == 0


def test_off_keeps_the_state_on_disk(disk_root):
    root, env = disk_root
    env = {**env, stateroot.ENV: "off"}
    p = run_lab("up", "mail-dmz", "--lab", "sr3", env=env)
    assert p.returncode == 0, p.stderr
    assert mounts_at(root) == []
    assert (root / "sr3" / "state.json").is_file()
    assert run_lab("down", "--lab", "sr3", env=env).returncode == 0


def _prepare(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    code = "from lab.engine import stateroot; stateroot.prepare()"
    return [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT)
            for _ in range(count)]


def test_many_at_once_mount_once(disk_root):
    root, env = disk_root
    procs = _prepare(env, 8)
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    assert len(mounts_at(root)) == 1


def test_never_mounts_over_something_alive(disk_root):
    """A folder the lab does not make again (here another state root inside it, as a test
    worker's) keeps the state root as it is: a mount would hide it."""
    root, env = disk_root
    (root / "_gw9").mkdir(parents=True)
    assert [p.wait(timeout=60) for p in _prepare(env, 1)] == [0]
    assert mounts_at(root) == []


def test_never_unmounts_a_tmpfs_it_did_not_mount(disk_root):
    root, env = disk_root
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "admins-own", str(root)], check=True)
    assert [p.wait(timeout=60) for p in _prepare(env, 1)] == [0]
    p = run_lab("clean", env=env)
    assert p.returncode == 0 and "unmounted" not in p.stdout, p.stdout
    assert mounts_at(root) == [("admins-own", os.path.realpath(root), "tmpfs")]
