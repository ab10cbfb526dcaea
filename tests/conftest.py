"""Shared plumbing for the engine tests: the `lab` command, root-only skipping, and labs
that are always torn down.

Root-only tests carry ``@pytest.mark.root``; when the suite runs unprivileged they are
skipped with a reason before any of their fixtures run. Every lab a test starts goes
through ``Labs``, whose teardown runs ``lab down`` for each of its labs and then, as a
safety net, ``lab clean``, and checks that the lab's state directory is gone.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def _worker_paths() -> None:
    """Under pytest-xdist each worker gets a state root and a results folder of its own
    (under the ones configured): its labs, its launcher, its `lab clean` safety net and
    its `lab ls` never see another worker's. Every `lab` the tests run inherits them.
    Their names start with "_": no lab is named so, so that a `lab ls` or `lab clean` of
    the root they are in never takes them for labs."""
    if WORKER:
        for var, default in (("LAB_STATE_ROOT", "/run/lab"),
                             ("LAB_RESULTS", "/var/lib/lab/results")):
            base = os.environ.get(var, default).rstrip("/")
            if not base.endswith(f"/_{WORKER}"):  # this file may be imported twice
                os.environ[var] = f"{base}/_{WORKER}"


_worker_paths()
STATE_ROOT = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))
_VENV_LAB = Path(sys.executable).with_name("lab")
LAB_CMD = [str(_VENV_LAB)] if _VENV_LAB.exists() else [sys.executable, "-m", "lab.cli"]
# appended to every lab name, so that two test sessions on one machine never collide
SESSION = f"{os.getpid() & 0xffff:04x}"
ROOT_REASON = "needs root: it builds labs in network namespaces"
CLI_TIMEOUT = 90


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root and network namespaces (skipped otherwise)")
    config.addinivalue_line("markers", "slow: takes tens of seconds (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "lab_name(name): the name the lab_up fixture gives its lab")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """How pytest-xdist shares the tests out (``--dist loadgroup``): a test file runs on
    one worker, so that its module labs are built once; a long file whose tests do not
    depend on each other declares ``XDIST_GROUPS = N``: its tests go round robin into N
    groups, each on a worker of its own (with module labs of its own). Those files come
    first, so that the longest work is not what is left at the end."""
    seen: dict[str, int] = {}
    for item in items:
        module = item.module
        groups = getattr(module, "XDIST_GROUPS", 1)
        name = item.nodeid.split("::", 1)[0]
        if groups > 1:
            index = seen.get(name, 0)
            seen[name] = index + 1
            name = f"{name}#{index % groups}"
        item.add_marker(pytest.mark.xdist_group(name))
    items.sort(key=lambda item: getattr(item.module, "XDIST_GROUPS", 1) == 1)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip root-marked tests for non-root users, before their fixtures start anything."""
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip(ROOT_REASON)


@pytest.fixture(scope="session", autouse=True)
def no_launcher_left() -> Iterator[None]:
    """The launcher `lab up` starts (lab.engine.launcher) ends with the session: no
    daemon is left behind by the tests, nor the tmpfs a lab command mounted on the state
    root (lab.engine.stateroot) when no lab is left in it."""
    yield
    if os.geteuid() == 0:
        from lab.engine import launcher, stateroot

        launcher.stop()
        stateroot.release()
        _remove_worker_paths()


def _remove_worker_paths() -> None:
    """A worker's own state root and results folder go with it, unless a lab is left in
    the state root (a leak stays where `lab ls` and `lab clean` find it)."""
    from lab.engine.state import lab_names

    if WORKER and not lab_names():
        shutil.rmtree(STATE_ROOT, ignore_errors=True)
        shutil.rmtree(os.environ["LAB_RESULTS"], ignore_errors=True)


@pytest.fixture(scope="session")
def require_root() -> None:
    """For fixtures that need root whatever their test is marked with."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_REASON)


def run_lab(*args: str, input: bytes | str | None = None, env: dict[str, str] | None = None,
            prefix: list[str] | None = None, timeout: float = CLI_TIMEOUT,
            ) -> subprocess.CompletedProcess:
    """Run the `lab` command; text in and out unless ``input`` is bytes."""
    text = not isinstance(input, bytes)
    return subprocess.run([*(prefix or []), *LAB_CMD, *args], input=input, capture_output=True,
                          text=text, env=env, cwd=PROJECT_ROOT, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def lab_command() -> tuple[list[str], Path]:
    """The `lab` command line and the directory it runs from (for tests that spawn it)."""
    return LAB_CMD, PROJECT_ROOT


@pytest.fixture(scope="session")
def lab_cli():
    """The `run_lab` helper, for tests."""
    return run_lab


def lab_exec(lab: str, node: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return run_lab("exec", "--lab", lab, node, "--", *cmd, **kw)


def node_run(lab: str, node: str, *cmd: str, input: str | None = None,
             timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """A command in a node by the library's way in (lab.engine.nodeexec.run, the playbook
    runner's): sealed and recorded as `lab exec` is, without a `lab` process started for
    it (80 ms of CPU each, and the fault and history tests run thousands of commands).
    `lab exec` itself is tested as a user runs it in tests/test_engine_cli.py and
    tests/test_sealed_node.py. Text in and out; rc 124 when ``timeout`` ran out."""
    from lab.engine import nodeexec

    return nodeexec.run(lab, node, list(cmd), timeout=timeout, stdin=input)


@pytest.fixture(scope="session")
def node_exec():
    """``node_exec(lab, node, *cmd)``: `lab exec` in a node, returns the CompletedProcess."""
    return lab_exec


def read_state(lab: str) -> dict:
    return json.loads((STATE_ROOT / lab / "state.json").read_text())


@pytest.fixture(scope="session")
def lab_state():
    """``lab_state(lab)``: the lab's state.json, as recorded by its supervisor."""
    return read_state


@pytest.fixture(scope="session")
def state_root() -> Path:
    return STATE_ROOT


def session_name(name: str) -> str:
    """A lab name made unique to this test session: ``t-build`` -> ``t-build-1a2b``."""
    return f"{name}-{SESSION}"


@pytest.fixture(scope="session")
def unique_name():
    """``unique_name(name)``: the session's own variant of a lab name."""
    return session_name


class Labs:
    """Starts labs for a test and takes every one of them down afterwards."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def claim(self, name: str) -> str:
        """The session's name for lab ``name``, torn down (if it exists) at the end."""
        self.names.append(session_name(name))
        return self.names[-1]

    def up(self, name: str, topology: str = "mail-dmz") -> str:
        """Start a lab; its real name (``name`` plus the session suffix)."""
        name = self.claim(name)
        p = run_lab("up", topology, "--lab", name)
        assert p.returncode == 0, f"lab up {name} failed: {p.stderr}"
        return name

    def down(self, name: str) -> subprocess.CompletedProcess:
        return run_lab("down", "--lab", name)

    def close(self) -> None:
        for name in reversed(self.names):
            if (STATE_ROOT / name).exists():
                self.down(name)
        if any((STATE_ROOT / n).exists() for n in self.names):
            # safety net, only when needed: `lab clean` also kills labs that other sessions
            # are bringing up at this moment (see the engine notes in the report)
            run_lab("clean")
        left = [n for n in self.names if (STATE_ROOT / n).exists()]
        self.names = []
        assert not left, f"labs left state behind: {left}"


@pytest.fixture
def labs(require_root) -> Iterator[Labs]:
    """A function-scoped lab starter: ``labs.up(name)``; all are torn down afterwards."""
    started = Labs()
    yield started
    started.close()


@pytest.fixture(scope="module")
def module_labs(require_root) -> Iterator[Labs]:
    """Like ``labs``, for labs shared by the tests of one module."""
    started = Labs()
    yield started
    started.close()


def default_lab_name(nodeid: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", nodeid.rsplit("::", 1)[-1].lower()).strip("-")[:14]
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:6]
    return f"t-{stem}-{digest}".replace("--", "-")


@pytest.fixture
def lab_up(request: pytest.FixtureRequest, labs: Labs) -> Iterator[str]:
    """A running mail-dmz lab for one test; yields its name (``@pytest.mark.lab_name(NAME)``
    picks the name, else one is derived from the test id; the session suffix is added)."""
    marker = request.node.get_closest_marker("lab_name")
    name = marker.args[0] if marker else default_lab_name(request.node.nodeid)
    yield labs.up(name)


def _ip_json(*args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def host_snapshot() -> dict:
    """What the host's own network namespace holds: interfaces, bridges, IPv4 addresses,
    routes (all tables), named namespaces and the nftables ruleset. Left out: the named
    namespaces tests/netns_helpers.py makes, which tests on other workers add and remove
    at any moment (no lab makes a named namespace)."""
    from netns_helpers import PREFIX

    links = _ip_json("link", "show")
    return {
        "links": sorted(link["ifname"] for link in links),
        "bridges": sorted(b["ifname"] for b in _ip_json("link", "show", "type", "bridge")),
        "addresses": sorted(f"{a['local']}/{a['prefixlen']}" for link in _ip_json("addr", "show")
                            for a in link.get("addr_info", []) if a.get("family") == "inet"),
        "routes": _ip_json("-4", "route", "show", "table", "all"),
        "netns": sorted(n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True, check=True).stdout.split("\n")
                        if not n.startswith(PREFIX)),
        "nft": subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                              check=False).stdout,
    }


@pytest.fixture(scope="session")
def host_view():
    """``host_view()``: a snapshot of the host namespace (see ``host_snapshot``)."""
    return host_snapshot


@pytest.fixture(scope="module")
def lab(module_labs, request) -> str:
    """One reference lab for a whole test module, named by the module's ``LAB``."""
    return module_labs.up(request.module.LAB)


@pytest.fixture(scope="module")
def x(lab, node_exec):
    """``x(node, *cmd, input=None)``: run a command in a node of this module's lab."""

    def run(node: str, *cmd: str, **kw):
        return node_exec(lab, node, *cmd, **kw)

    return run


_TMUX_SERVERS = itertools.count(1)


class Tmux:
    """A tmux server of the test's own: a terminal a person would type into."""

    def __init__(self) -> None:
        self.socket = f"lt-{os.getpid()}-{next(_TMUX_SERVERS)}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True).stdout

    def start(self, command: list[str]) -> None:
        line = " ".join(subprocess.list2cmdline([a]) for a in command)
        self.run("new-session", "-d", "-s", "t", "-x", "120", "-y", "30",
                 f"cd {PROJECT_ROOT} && {line}; echo EXIT=$?; sleep 600")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (screen := self.screen()):
            assert time.monotonic() < deadline, f"no {text!r} on the screen:\n{screen}"
            time.sleep(0.1)
        return screen

    def type(self, keys: str) -> None:
        self.run("send-keys", "-t", "t", keys, "Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False,
                       capture_output=True)


@pytest.fixture
def tmux():
    """A terminal of the test's own (tmux): start a command, type, read the screen."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    term = Tmux()
    yield term
    term.close()
