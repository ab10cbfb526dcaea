"""The one way into a node for a trainee or a playbook: record the command, then run it
inside the node's namespaces (`lab exec`, `lab shell` and the playbook runner use this)."""
from __future__ import annotations

import os
import subprocess

from lab.engine import control, lifecycle
from lab.engine.state import NODE_PATH, OWNER_ENV
from lab.errors import LabError

# what a command in a node inherits from the caller's environment: the terminal and
# locale, nothing else (not whatever tool or test launched `lab`)
PASSED_ENV = ("TERM", "LANG", "LANGUAGE", "TZ", "COLUMNS", "LINES", "COLORTERM")


def node_env(lab: str, node: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
    env.update({"PATH": NODE_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root",
                "SHELL": "/bin/bash", OWNER_ENV: lab, "LAB_NODE": node})
    return env


def enter(lab: str, node: str) -> tuple[list[str], dict[str, str]]:
    """The command prefix that enters the node, and the environment to run with."""
    pid = lifecycle.node_pid(lab, node)
    env = node_env(lab, node)
    # env(1) reports a command it cannot find with 127, as a shell would (mnexec says 1)
    return ["mnexec", "-a", str(pid), "env", "--"], env


def record(lab: str, node: str, argv: list[str], line: str | None = None) -> None:
    """Tell the supervisor what was run (kept in the attempt's record); ``line`` is a
    shell line as typed, which scoring parses as bash would."""
    try:
        control.request(lab, "record", timeout=5, node=node, argv=argv, line=line)
    except LabError:
        pass  # recording must never stand in the way of the command


def run(lab: str, node: str, argv: list[str], timeout: float = 10.0,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """Record and run a command in a node; returns rc, stdout, stderr (text).

    A command that outlives ``timeout`` is killed and reported with rc 124, like
    timeout(1), so a playbook can tell "no answer" from a failure.
    """
    prefix, env = enter(lab, node)
    record(lab, node, argv)
    try:
        return subprocess.run(prefix + argv, input=stdin, capture_output=True, text=True,
                              env=env, timeout=timeout, check=False,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        err += f"\n(timed out after {timeout:g} s)"
        return subprocess.CompletedProcess(prefix + argv, 124, out, err)
    except FileNotFoundError as e:
        raise LabError(f"cannot run in node {node}: {e}") from None
