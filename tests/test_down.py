"""`lab down` returns once the lab is gone for every purpose a user can see: every process
of it dead, its name free, its sockets gone. Its files are deleted afterwards, by a
detached process (lab.engine.trash); trash whose deleter is gone (a crash between the
rename and the delete) is removed by `lab clean`, and by the launcher when it starts.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.engine import launcher, trash
from lab.engine.channel import public_socket
from lab.engine.procs import kill_owned, owned_processes
from lab.engine.state import ProcRef, lab_dir
from lab.paths import TOPOLOGY_DIR

pytestmark = pytest.mark.root


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether ``check()`` comes true before ``timeout`` (polled; no timing asserted)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def listed(lab_cli) -> list[str]:
    return [row["lab"] for row in json.loads(lab_cli("ls", "--json").stdout)]


def piles_of(lab: str) -> list[Path]:
    return [p for p in trash.piles() if p.name.startswith(f"{trash.PREFIX}{lab}-")]


def recorded(state: dict) -> tuple[ProcRef, dict[int, int]]:
    """The lab's supervisor and its namespaces (inode -> cookie), as recorded."""
    return (ProcRef(**state["supervisor"]),
            {rec["netns"]: rec["cookie"] for rec in state["nodes"].values()})


@pytest.fixture
def gone_by_down(labs, lab_cli, lab_state) -> dict:
    """A lab taken down with `lab down`; what was recorded, and what was seen at once
    after the command returned (before anything else ran)."""
    lab = labs.up("t-dn-again")
    supervisor, netns = recorded(lab_state(lab))
    result = lab_cli("down", "--lab", lab)
    seen = {"owned": owned_processes(lab, netns), "supervisor": supervisor.alive(),
            "folder": lab_dir(lab).exists(), "public": public_socket(lab).exists()}
    return {"lab": lab, "result": result, "seen": seen}


def test_after_down_returns_nothing_of_the_lab_runs(gone_by_down, labs, lab_cli):
    assert gone_by_down["result"].returncode == 0, gone_by_down["result"].stderr
    assert gone_by_down["seen"] == {"owned": [], "supervisor": False, "folder": False,
                                    "public": False}
    lab = gone_by_down["lab"]
    assert lab not in listed(lab_cli)
    assert labs.up("t-dn-again") == lab  # the name is free at once
    assert lab_cli("exec", "--lab", lab, "admin", "--", "true").returncode == 0


def test_the_files_of_a_lab_down_are_deleted_after(gone_by_down):
    assert eventually(lambda: not piles_of(gone_by_down["lab"]))


def test_a_supervisor_killed_after_freeing_the_name_leaves_trash_lab_clean_removes(
        labs, lab_cli, lab_state):
    """The state a supervisor leaves when it is killed (SIGKILL) between renaming the
    lab's folder and starting its deleter: every process dead, the folder in the trash."""
    lab = labs.up("t-dn-crash")
    supervisor, netns = recorded(lab_state(lab))
    os.kill(supervisor.pid, signal.SIGKILL)
    assert eventually(lambda: not supervisor.alive(), timeout=10)
    assert kill_owned(lab, netns) == []  # what its teardown had done before the rename
    pile = trash.discard(lab_dir(lab))
    assert pile is not None and pile.is_dir()
    assert lab not in listed(lab_cli)
    assert lab_cli("clean").returncode == 0
    assert not pile.exists()


def make_pile(state_root: Path, name: str) -> Path:
    """A trash folder as a lab's state leaves one: nested folders and files."""
    pile = state_root / f"{trash.PREFIX}{name}-{os.getpid()}-1"
    for node in ("mx", "dns"):
        (pile / "nodes" / node / "etc").mkdir(parents=True)
        (pile / "nodes" / node / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (pile / "state.json").write_text("{}")
    return pile


@pytest.fixture
def pile(state_root: Path) -> Iterator[Path]:
    path = make_pile(state_root, "t-dn-pile")
    yield path
    subprocess.run(["rm", "-rf", "--", str(path)], check=True)


@pytest.fixture
def deleter(pile: Path) -> Iterator[subprocess.Popen]:
    """A process that says (LAB_TRASH=) it is deleting ``pile``."""
    proc = subprocess.Popen(["sleep", "60"], env={trash.MARK: str(pile)})
    yield proc
    proc.kill()
    proc.wait()


def test_clean_leaves_trash_that_is_being_deleted_alone(pile, deleter, lab_cli):
    p = lab_cli("clean")
    assert p.returncode == 0 and "state folder" not in p.stdout, p.stdout
    assert pile.is_dir()


def test_clean_removes_trash_whose_deleter_is_gone(pile, lab_cli):
    p = lab_cli("clean")
    assert p.returncode == 0, p.stderr
    assert "deleted 1 state folder(s) of labs taken down that nothing was deleting" in p.stdout
    assert not pile.exists()


def test_the_launcher_has_trash_whose_deleter_is_gone_deleted_when_it_starts(pile):
    launcher.stop()
    name, _yaml = launcher.load_topology(TOPOLOGY_DIR / "mail-dmz.yaml", None)  # starts one
    assert name == "mail-dmz"
    assert eventually(lambda: not pile.exists())


def test_trash_is_never_taken_for_a_lab(pile, lab_cli):
    assert [lab for lab in listed(lab_cli) if lab.startswith((trash.PREFIX, "t-dn-pile"))] == []
