"""The one way into a node for a person or a playbook: record the command, then run it
sealed in the node (lab.engine.seal). `lab exec` and `lab shell` as root, the trainee
channel and the playbook runner all come through here."""
from __future__ import annotations

import os
import signal
import subprocess

from lab.engine import control, lifecycle, seal
from lab.engine.relay import Stdio, exit_code, forward_signals, restore_signals
from lab.engine.state import NODE_PATH, OWNER_ENV
from lab.errors import LabError

# what a command in a node inherits from the caller's environment: the terminal and
# locale, nothing else (not whatever tool or test launched `lab`)
PASSED_ENV = ("TERM", "LANG", "LANGUAGE", "TZ", "COLUMNS", "LINES", "COLORTERM")


def node_env(lab: str, node: str, caller: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command in a node: the caller's terminal and locale settings
    (from ``caller``, default this process's environment) and the node's own."""
    caller = os.environ if caller is None else caller
    env = {k: v for k, v in caller.items() if k in PASSED_ENV or k.startswith("LC_")}
    env.update({"PATH": NODE_PATH, "HOME": seal.HOME, "USER": "root", "LOGNAME": "root",
                "SHELL": "/bin/bash", OWNER_ENV: lab, "LAB_NODE": node})
    return env


def record(lab: str, node: str, argv: list[str], line: str | None = None) -> None:
    """Tell the supervisor what was run (kept in the attempt's record); ``line`` is a
    shell line as typed, which scoring parses as bash would."""
    try:
        control.request(lab, "record", timeout=5, node=node, argv=argv, line=line)
    except LabError:
        pass  # recording must never stand in the way of the command


def execute(lab: str, node: str, argv: list[str]) -> int:
    """`lab exec` as root: record, run sealed with this process's stdin, stdout and
    stderr (relayed through pipes unless safe to hand in), pass on Ctrl-C and
    termination, return the exit status."""
    init = lifecycle.node_init(lab, node)
    record(lab, node, argv)
    stdio = Stdio()
    proc = seal.spawn(init, argv, node_env(lab, node), *stdio.child, die_with_parent=True)
    stdio.started()
    old = forward_signals(lambda signum: _signal_group(proc.pid, signum))
    try:
        code = proc.wait()
    finally:
        restore_signals(old)
        stdio.finish()
    return exit_code(code)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def run(lab: str, node: str, argv: list[str], timeout: float = 10.0,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """Record and run a command in a node; returns rc, stdout, stderr (text).

    A command that outlives ``timeout`` is killed (with what it started in its session)
    and reported with rc 124, like timeout(1), so a playbook can tell "no answer" from a
    failure.
    """
    init = lifecycle.node_init(lab, node)
    record(lab, node, argv)
    proc = seal.spawn(init, argv, node_env(lab, node),
                      stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(timed out after {timeout:g} s)".encode()
        return subprocess.CompletedProcess(argv, 124, _text(out), _text(err))
    return subprocess.CompletedProcess(argv, exit_code(proc.returncode), _text(out), _text(err))


def _text(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace")
