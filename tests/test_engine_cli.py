"""`lab exec` and `lab shell`: what the trainee's commands see and return, and the errors
a user gets when the lab, the node or the privileges are not there."""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

LAB = "LAB"  # stands for the module's lab in parametrized command lines
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def lab(module_labs) -> str:
    return module_labs.up("t-cli")


@pytest.mark.parametrize(("cmd", "code"), [
    (["true"], 0),
    (["false"], 1),
    (["sh", "-c", "exit 7"], 7),
    (["no-such-command-here"], 127),
])
def test_exec_passes_exit_code_through(lab, node_exec, cmd, code):
    assert node_exec(lab, "admin", *cmd).returncode == code


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_exec_is_binary_safe(lab, node_exec, stream):
    data = os.urandom(1 << 20)
    cmd = ["cat"] if stream == "stdout" else ["sh", "-c", "cat >&2"]
    p = node_exec(lab, "mx", *cmd, input=data)
    assert p.returncode == 0
    assert getattr(p, stream) == data
    assert getattr(p, "stderr" if stream == "stdout" else "stdout") == b""


def test_exec_passes_stdin_through(lab, node_exec):
    p = node_exec(lab, "fw", "sh", "-c", "read a; read b; echo \"$b $a\"", input="one\ntwo\n")
    assert (p.returncode, p.stdout, p.stderr) == (0, "two one\n", "")


def test_exec_runs_inside_the_node(lab, node_exec):
    assert node_exec(lab, "ns-int", "cat", "/etc/hostname").stdout == "ns-int\n"


def test_exec_passes_only_terminal_and_locale_environment(lab, node_exec):
    """Whatever launched `lab` (a test runner, a CI job) stays out of the node."""
    env = {**os.environ, "LANG": "C.UTF-8", "SOME_CALLER_SECRET": "x", "TERM": "vt100"}
    seen = dict(line.split("=", 1) for line in
                node_exec(lab, "mx", "env", env=env).stdout.splitlines() if "=" in line)
    assert "SOME_CALLER_SECRET" not in seen
    assert (seen["LANG"], seen["TERM"], seen["LAB_NODE"], seen["HOME"]) == (
        "C.UTF-8", "vt100", "mx", "/root")


def error_text(p: subprocess.CompletedProcess) -> list[str]:
    assert p.returncode == 1
    assert p.stdout == ""
    return p.stderr.splitlines()


def test_exec_unknown_lab(node_exec):
    assert error_text(node_exec("t-no-such-lab", "admin", "true")) == [
        "lab: error: unknown lab 't-no-such-lab'", "hint: `lab ls` lists running labs"]


def test_exec_unknown_node(lab, node_exec):
    lines = error_text(node_exec(lab, "nosuch", "true"))
    assert lines[0] == f"lab: error: unknown node 'nosuch' in lab '{lab}'"
    assert lines[1].startswith("hint: nodes: admin, dns-root, ") and len(lines) == 2


def test_exec_no_command(lab, lab_cli):
    assert error_text(lab_cli("exec", "--lab", lab, "admin", "--")) == [
        "lab: error: no command given", "hint: lab exec NODE -- CMD [ARGS...]"]


def test_exec_with_no_lab_running(lab_cli, tmp_path):
    env = {**os.environ, "LAB_STATE_ROOT": str(tmp_path)}
    assert error_text(lab_cli("exec", "admin", "--", "true", env=env)) == [
        "lab: error: no lab is running", "hint: start one with `lab up mail-dmz`"]


@pytest.mark.parametrize("args", [
    ["status", "--lab", LAB],
    ["down", "--lab", LAB],
    ["up", "mail-dmz", "--lab", "t-cli-nobody"],  # refused before it would claim the name
    ["clean"],
], ids=lambda a: "_".join(a))
def test_not_root_gets_one_line_error_and_hint(lab, lab_cli, node_exec, args):
    """An instructor's verb: refused for any other user (tests/test_trainee.py has the
    trainee's side)."""
    p = lab_cli(*[lab if a == LAB else a for a in args], prefix=NOBODY)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines()[0] == (f"lab: error: `lab {args[0]}` is for instructors "
                                        "(root on the host)")
    assert p.stderr.splitlines()[1].startswith("hint: a trainee can run: lab ls, ticket")
    assert node_exec(lab, "admin", "true").returncode == 0  # and the lab is untouched


@pytest.mark.parametrize("args", [
    ["exec", "--lab", LAB, "admin", "--", "true"],
    ["shell", "--lab", LAB, "admin"],
], ids=lambda a: "_".join(a))
def test_not_root_refused_on_a_lab_not_bound_to_them(lab, lab_cli, node_exec, args):
    """A lab brought up by root with no attempt bound to a user is nobody else's."""
    p = lab_cli(*[lab if a == LAB else a for a in args], prefix=NOBODY)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines() == [f"lab: error: lab {lab} is not yours",
                                     "hint: `lab ls` lists your labs"]


@pytest.mark.parametrize("args", [["exec", "admin", "--", "true"], ["ticket"]],
                         ids=lambda a: "_".join(a))
def test_not_root_with_no_lab_of_theirs(lab, lab_cli, args):
    p = lab_cli(*args, prefix=NOBODY)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.splitlines()[0] == "lab: error: no lab of yours is running"


def test_not_root_ls_lists_no_lab(lab, lab_cli):
    p = lab_cli("ls", prefix=NOBODY)
    assert (p.returncode, p.stdout, p.stderr) == (0, "no lab of yours is running\n", "")


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    """Read a pty until ``needle`` shows up; everything read so far."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {needle!r} within {timeout} s; got {data!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            chunk = b""
        if not chunk:
            raise AssertionError(f"pty closed before {needle!r}; got {data!r}")
        data += chunk
    return data


@pytest.fixture
def shell_in_pty(lab, lab_command):
    """``open(node)``: `lab shell NODE` on a fresh pty; (process, pty master fd)."""
    cmd, cwd = lab_command
    opened: list[tuple[subprocess.Popen, int]] = []

    def open_shell(node: str) -> tuple[subprocess.Popen, int]:
        master, slave = pty.openpty()
        proc = subprocess.Popen([*cmd, "shell", "--lab", lab, node], stdin=slave,
                                stdout=slave, stderr=slave, start_new_session=True, cwd=cwd, env={**os.environ, "TERM": "dumb"})
        os.close(slave)
        opened.append((proc, master))
        return proc, master

    yield open_shell
    for proc, master in opened:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("node", ["mx", "ext-ws"])
def test_shell_prompt_names_lab_and_node(shell_in_pty, lab, node):
    proc, fd = shell_in_pty(node)
    prompt = f"[{lab}:{node}]".encode()
    read_until(fd, prompt)
    os.write(fd, b"cat /etc/hostname\n")
    out = read_until(fd, prompt)
    assert f"\r\n{node}\r\n".encode() in out
    os.write(fd, b"exit 0\n")
    assert proc.wait(timeout=10) == 0


def test_supervisor_does_not_inherit_the_callers_environment(labs, lab_cli, lab_state):
    """Every node can read the supervisor's environment; under sudo the caller's holds the
    whole command line (`lab start ... --fault NAME`)."""
    name = labs.claim("t-cli-env")
    env = {**os.environ, "SUDO_COMMAND": "lab start x --fault dns-wrong-address"}
    assert lab_cli("up", "mail-dmz", "--lab", name, env=env).returncode == 0
    pid = lab_state(name)["supervisor"]["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [e for e in environ if e.startswith(b"SUDO_")]
    assert f"LAB_INSTANCE={name}".encode() in environ
