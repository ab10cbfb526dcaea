"""The launcher (lab.engine.launcher): supervisors forked from one process that holds their
imports, each with its own command line and environment; started by `lab up`, ended by
`lab clean`, by an idle timeout or when the lab's code changes; LAB_LAUNCHER=off starts
a fresh interpreter instead. Each test runs in a state root of its own, so that it alone
starts and stops the launcher it looks at."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LAB_CMD, PROJECT_ROOT, session_name

from lab.engine.layout import HIDDEN_LAYERS

pytestmark = pytest.mark.root

MARK = "LAB_LAUNCHER_FOR"


def environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def launchers(root: Path) -> list[int]:
    """The launchers of ``root``: processes with its mark, not counting the children a
    launcher forks (one answering a request may still be ending when its answer is in)."""
    mark = f"{MARK}={root}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if mark in environ(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    forked = set()
    for pid in found:
        try:
            if parent(pid) in found:
                forked.add(pid)
        except OSError:
            forked.add(pid)  # gone while looked at: not a launcher still running
    return [pid for pid in found if pid not in forked]


class Root:
    """`lab` in a state root of its own; everything it started is gone afterwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.labs: list[str] = []

    def lab(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*LAB_CMD, *args], capture_output=True, text=True,
                              cwd=PROJECT_ROOT, timeout=120, check=False,
                              env={**os.environ, "LAB_STATE_ROOT": str(self.path), **env})

    def up(self, name: str, *extra: str, **env: str) -> tuple[str, int]:
        """A lab up in this root: its name and its supervisor's PID."""
        name = session_name(name)
        self.labs.append(name)
        p = self.lab("up", "mail-dmz", "--lab", name, *extra, **env)
        assert p.returncode == 0, p.stderr
        state = json.loads((self.path / name / "state.json").read_text())
        return name, state["supervisor"]["pid"]

    def close(self) -> None:
        for name in self.labs:
            if (self.path / name).exists():
                self.lab("down", "--lab", name)
        assert self.lab("clean").returncode == 0
        assert not [n for n in self.labs if (self.path / n).exists()]
        assert launchers(self.path) == []


ROOTS = itertools.count(1)


@pytest.fixture
def root() -> Root:
    # beside the session's labs (a tmpfs, as /run is); a leading "_": no lab's name
    path = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab")) / f"_lt-{os.getpid()}-{next(ROOTS)}"
    r = Root(path)
    yield r
    r.close()
    deadline = time.monotonic() + 30  # a lab down's files are deleted after it returns
    while list(path.glob(".trash-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    for leftover in ("_launcher", "_trainee"):
        for f in (path / leftover).glob("*") if (path / leftover).is_dir() else []:
            f.unlink()
        if (path / leftover).is_dir():
            (path / leftover).rmdir()
    shutil.rmtree(path / HIDDEN_LAYERS, ignore_errors=True)  # what the labs' /etc hid
    path.rmdir()


def test_supervisor_is_forked_by_the_launcher_with_its_own_identity(root):
    name, sup = root.up("t-launch")
    (launcher,) = launchers(root.path)
    assert parent(sup) == launcher
    assert cmdline(sup) == [sys.executable, "-m", "lab.engine.supervisor", name,
                            cmdline(sup)[-1]]
    env = environ(sup)
    assert f"LAB_INSTANCE={name}".encode() in env
    assert not [e for e in env if e.startswith(f"{MARK}=".encode())]
    assert cmdline(launcher) == [sys.executable, "-m", "lab.engine.launcherproc"]
    assert root.lab("verify", "--lab", name).returncode == 0


def test_callers_command_line_and_environment_stay_out(root):
    """The launcher is started by a `lab up` run under sudo with secrets in its
    environment: neither it nor the supervisors it forks carry them."""
    _, sup = root.up("t-launch-env", SUDO_COMMAND="lab start x --fault dns-wrong-address",
                        SOME_CALLER_SECRET="x")
    (launcher,) = launchers(root.path)
    for pid in (sup, launcher):
        text = b"\0".join(environ(pid)) + "\0".join(cmdline(pid)).encode()
        assert b"SUDO_" not in text and b"SOME_CALLER_SECRET" not in text
        assert b"--fault" not in text


def test_labs_share_one_launcher_and_clean_ends_it(root):
    _, first = root.up("t-launch-a")
    _, second = root.up("t-launch-b")
    (launcher,) = launchers(root.path)
    assert parent(first) == parent(second) == launcher
    assert root.lab("clean").stdout == "nothing to clean\n"
    assert launchers(root.path) == []
    assert root.lab("ls").stdout.count("running") == 2  # the labs do not need it


def test_launcher_off_starts_a_fresh_interpreter(root):
    name, sup = root.up("t-launch-off", LAB_LAUNCHER="off")
    assert launchers(root.path) == []
    assert cmdline(sup)[1:4] == ["-m", "lab.engine.supervisor", name]
    assert root.lab("verify", "--lab", name).returncode == 0


@pytest.mark.parametrize("changed", ["state.py", "launcherproc.py"])  # a module it imports;
def test_a_launcher_whose_code_changed_is_replaced(root, changed):  # the one it runs as
    root.up("t-launch-c1")
    (old,) = launchers(root.path)
    module = PROJECT_ROOT / "lab" / "engine" / changed
    stamp = module.stat()
    try:
        os.utime(module, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
        _, sup = root.up("t-launch-c2")
    finally:
        os.utime(module, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    (new,) = launchers(root.path)
    assert new != old and parent(sup) == new


def test_a_killed_launcher_leaves_the_labs_up_and_is_replaced(root):
    name, _ = root.up("t-launch-k1")
    (launcher,) = launchers(root.path)
    os.kill(launcher, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while launchers(root.path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert root.lab("verify", "--lab", name).returncode == 0
    _, sup = root.up("t-launch-k2")
    (new,) = launchers(root.path)
    assert new != launcher and parent(sup) == new


BAD_TOPOLOGY = """\
name: t-bad
segments:
  lan: {}
nodes:
  a:
    interfaces:
      - {segment: lan, address: 198.51.100.5/24}
"""


@pytest.mark.parametrize("args", [("BAD",), ("mail-dmz", "--variant", "nosuch")],
                         ids=["invalid-file", "unknown-variant"])
def test_a_topology_loaded_by_the_launcher_fails_as_a_local_load_does(root, tmp_path, args):
    """`lab up` has the launcher load the topology (it has the models imported): the
    error and its hint are those of a load in `lab up` itself, and nothing is built."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_TOPOLOGY)
    args = tuple(str(bad) if a == "BAD" else a for a in args)
    local = root.lab("up", *args, LAB_LAUNCHER="off")
    assert launchers(root.path) == []
    through = root.lab("up", *args)
    assert len(launchers(root.path)) == 1
    assert local.returncode == through.returncode == 1
    assert "hint: " in local.stderr and through.stderr == local.stderr
    assert [p.name for p in root.path.iterdir() if not p.name.startswith("_")] == []


@pytest.mark.parametrize("args", [("nosuch",), ("nat-inbound", "--fault", "bogus"),
                                  ("nat-inbound", "--fault", "host-gateway-wrong:gateway=nosuch")],
                         ids=["unknown-scenario", "unknown-fault", "bad-fault-params"])
def test_a_scenario_checked_by_the_launcher_fails_as_a_local_check_does(root, args):
    """`lab start` has the launcher check the scenario and its forced faults: the error
    and its hint are those of the checks in `lab start` itself, and nothing is built."""
    lab = session_name("x")
    local = root.lab("start", *args, "--lab", lab, LAB_LAUNCHER="off")
    assert launchers(root.path) == []
    through = root.lab("start", *args, "--lab", lab)
    assert len(launchers(root.path)) == 1
    assert local.returncode == through.returncode == 1
    assert "hint: " in local.stderr and through.stderr == local.stderr
    assert [p.name for p in root.path.iterdir() if not p.name.startswith("_")] == []


@pytest.mark.parametrize("scenario,faults", [("tls-required", []),
                                             ("nat-inbound", ["nat-static-wrong-host"])])
def test_the_launchers_scenario_check_gives_what_a_local_check_gives(root, monkeypatch,
                                                                     scenario, faults):
    from lab.engine import launcher
    from lab.engine.attempt import check_here

    monkeypatch.setenv("LAB_STATE_ROOT", str(root.path))
    monkeypatch.chdir(PROJECT_ROOT)
    path, plan, forced = check_here(scenario, faults)
    reply = launcher.check_scenario(scenario, faults)
    assert reply == {"path": str(path), "forced": forced,
                     "plan": {"name": plan.name, "topology": plan.topology,
                              "variant": plan.variant, "overrides": plan.overrides}}
    assert len(launchers(root.path)) == 1
