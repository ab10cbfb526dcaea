"""Everything a lab creates is removed by it (docs/design.md, hard rule 2): after `lab down`, and
after a supervisor killed with SIGKILL followed by `lab clean` (also when the lab's copy of
its topology file no longer parses).

Each way of tearing down is done once (a module fixture per way); each leftover kind is
its own test.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import STATE_ROOT

pytestmark = pytest.mark.root

WAYS = ["down", "kill-clean", "kill-garbage-clean"]
LAB_FOR = {"down": "t-cl-down", "kill-clean": "t-cl-kill", "kill-garbage-clean": "t-cl-garbage"}


def start_time(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(pid: int, start: int) -> bool:
    return start_time(pid) == start


def wait_gone(pid: int, start: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not alive(pid, start)


def host_pid(netns: int, node_pid: int) -> int:
    """The host PID of the process that is ``node_pid`` in a node's own PID namespace
    (a node's processes live in a PID namespace of their own: `$!` there is not the
    host's number)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino != netns:
                continue
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue
        nspids = [ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")]
        if nspids and len(nspids[0]) > 1 and nspids[0][-1] == str(node_pid):
            return int(entry.name)
    raise AssertionError(f"no process {node_pid} in namespace {netns}")


def background(node_exec, lab: str, node: str, keep_marker: bool = True) -> tuple[int, int]:
    """Start a detached `sleep` in a node (optionally without the lab's env marker); its
    host PID and start time."""
    strip = "" if keep_marker else "env -u LAB_INSTANCE "
    p = node_exec(lab, node, "sh", "-c",
                  f"{strip}sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
    assert p.returncode == 0, p.stderr
    netns = json.loads((STATE_ROOT / lab / "state.json").read_text())["nodes"][node]["netns"]
    pid = host_pid(netns, int(p.stdout))
    return pid, start_time(pid)


def kill_mine(pid: int, start: int) -> None:
    """Stop a process this test started, if (and only if) it is still that process."""
    if alive(pid, start):
        os.kill(pid, signal.SIGKILL)


def kill_supervisor(state: dict) -> None:
    sup = state["supervisor"]
    os.kill(sup["pid"], signal.SIGKILL)
    assert wait_gone(sup["pid"], sup["start"])


def namespace_holders(kind: str, inodes: set[int], lab: str) -> list[int]:
    """Processes living in one of these namespaces. Namespace inode numbers are reused
    once a namespace is freed, so a process of another lab (labs may run beside the
    suite) that got a recycled inode is not counted."""
    held = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(f"/proc/{entry.name}/ns/{kind}").st_ino not in inodes:
                    continue
                env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            markers = [e for e in env if e.startswith(b"LAB_INSTANCE=")]
            if not markers or f"LAB_INSTANCE={lab}".encode() in markers:
                held.append(int(entry.name))
    return held


def marked_processes(lab: str) -> list[int]:
    marker = f"LAB_INSTANCE={lab}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in env and start_time(int(entry.name)) is not None:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module", params=WAYS)
def torn_down(request, module_labs, lab_cli, lab_state, node_exec, host_view, state_root):
    """A lab brought up, given a background process, then torn down one way; what was
    recorded before and seen after."""
    way = request.param
    before = host_view()
    lab = module_labs.up(LAB_FOR[way])
    orphan = background(node_exec, lab, "mx")
    state = lab_state(lab)
    if way == "down":
        result = lab_cli("down", "--lab", lab)
    else:
        kill_supervisor(state)
        if way == "kill-garbage-clean":
            (state_root / lab / "topology.yaml").write_text("nodes: [\n  {: -\n\t@garbage")
        result = lab_cli("clean")
    yield {"lab": lab, "way": way, "state": state, "result": result, "before": before,
           "after": host_view(), "orphan": orphan}
    kill_mine(*orphan)


def test_teardown_command_succeeds(torn_down):
    r = torn_down["result"]
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_no_recorded_process_left(torn_down):
    state = torn_down["state"]
    procs = [state["supervisor"], *state["nodes"].values()]
    assert [p["pid"] for p in procs if alive(p["pid"], p["start"])] == []


def test_no_process_with_the_lab_marker_left(torn_down):
    assert marked_processes(torn_down["lab"]) == []


def test_background_process_stopped(torn_down):
    assert wait_gone(*torn_down["orphan"], timeout=1.0)


@pytest.mark.parametrize("kind", ["net", "mnt"])
def test_no_namespace_left(torn_down, kind):
    inodes = {rec[f"{kind}ns"] for rec in torn_down["state"]["nodes"].values()}
    assert namespace_holders(kind, inodes, torn_down["lab"]) == []


@pytest.mark.parametrize("what", ["links", "bridges"])
def test_no_interface_or_bridge_left_in_host(torn_down, what):
    assert sorted(set(torn_down["after"][what]) - set(torn_down["before"][what])) == []


def test_no_host_mount_left(torn_down, state_root):
    needle = str(state_root / torn_down["lab"])
    assert [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if needle in ln] == []


def test_no_state_dir_left(torn_down, state_root):
    assert not (state_root / torn_down["lab"]).exists()


@pytest.mark.lab_name("t-cl-ls")
def test_ls_shows_killed_lab_as_dead(lab_up, lab_cli, lab_state):
    kill_supervisor(lab_state(lab_up))
    rows = {r["lab"]: r for r in json.loads(lab_cli("ls", "--json").stdout)}
    assert rows[lab_up]["running"] is False
    line = [ln for ln in lab_cli("ls").stdout.splitlines() if ln.split()[:1] == [lab_up]]
    assert len(line) == 1 and "dead" in line[0]


@pytest.mark.lab_name("t-cl-busy")
def test_clean_leaves_running_lab_alone(lab_up, lab_cli, node_exec):
    assert lab_cli("clean").returncode == 0
    assert node_exec(lab_up, "admin", "true").returncode == 0


@pytest.mark.parametrize("way", [
    "down",
    "kill-clean",
])
def test_unmarked_node_process_is_stopped(way, labs, lab_cli, lab_state, node_exec, request):
    lab = labs.up(f"t-cl-unmarked-{way}")
    pid, start = background(node_exec, lab, "mx", keep_marker=False)
    request.addfinalizer(lambda: kill_mine(pid, start))
    state = lab_state(lab)
    if way == "down":
        assert lab_cli("down", "--lab", lab).returncode == 0
    else:
        kill_supervisor(state)
        assert lab_cli("clean").returncode == 0
    assert wait_gone(pid, start, timeout=1.0)
    assert namespace_holders("net", {state["nodes"]["mx"]["netns"]}, lab) == []


def test_clean_leaves_a_lab_that_is_still_starting_alone(labs, lab_cli, lab_command, state_root):
    """Between `lab up` claiming the name and the supervisor recording itself, the lab
    has no state yet; `lab clean` must not take that for a dead lab."""
    import subprocess

    name = labs.claim("t-cl-starting")
    cmd, cwd = lab_command
    up = subprocess.Popen([*cmd, "up", "mail-dmz", "--lab", name], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (state_root / name).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert (state_root / name).exists()
    listed = {r["lab"]: r for r in json.loads(lab_cli("ls", "--json").stdout)}
    cleaned = lab_cli("clean")
    _out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    assert f"cleaned lab {name}" not in cleaned.stdout
    assert listed[name]["state"] in ("starting", "running")
    assert lab_cli("exec", "--lab", name, "admin", "--", "true").returncode == 0


@pytest.fixture
def stranger():
    """A process in a network namespace of its own that belongs to no lab."""
    import subprocess

    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            assert time.monotonic() < deadline, "unshare did not make its namespace"
            time.sleep(0.005)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("same_cookie", [True, False], ids=["its-namespace", "inode-reused"])
def test_a_namespace_inode_counts_only_with_its_cookie(stranger, same_cookie):
    """A lab's teardown looks for processes in its namespaces by inode number, which the
    kernel hands to the next new namespace as soon as one is gone: another lab starting
    beside it lost a node shell that way (its build then hung). The recorded cookie
    decides."""
    from lab.engine.procs import netns_cookie, netns_inode, owned_processes

    ino, cookie = netns_inode(stranger), netns_cookie(stranger)
    assert cookie
    recorded = {ino: cookie if same_cookie else cookie + 1}
    assert (stranger in owned_processes("t-cl-nobody", recorded)) is same_cookie
