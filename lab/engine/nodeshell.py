"""An interactive shell sealed in a node, on a terminal of the node's own.

The library API behind `lab shell` (as root), the trainee channel's `shell` and any
later terminal (a web classroom): ``open_shell`` gives a ``NodeShell`` whose ``master``
is the pty's master end (read the output, write the keys, ``resize``), whose
``process`` is bash sealed in the node, and whose ``commands()`` yields each command
line typed, to be recorded in the attempt.

bash writes its last history line to a pipe after every command (PROMPT_COMMAND); the
pty is opened in the node's own devpts (through the init's root), so `tty` and `ps` in
the node show /dev/pts/N and no terminal of the host ever enters the node.
"""
from __future__ import annotations

import fcntl
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from lab.engine import seal
from lab.engine.relay import set_window_size

# <asm-generic/ioctls.h>: unlock a pty (unlockpt), open the peer of a pty master
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def node_pty(init: int) -> tuple[int, int]:
    """A new pty of the node's devpts: (master, slave), both close-on-exec."""
    master = os.open(f"/proc/{init}/root/dev/pts/ptmx",
                     os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    return master, slave


@dataclass
class NodeShell:
    lab: str
    node: str
    master: int
    process: subprocess.Popen
    history: int  # read end of the pipe bash writes "N  command line" to
    _closed: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        """bash's PID on the host (it leads its own session in the node)."""
        return self.process.pid

    def resize(self, rows: int, cols: int) -> None:
        set_window_size(self.master, rows, cols)

    def commands(self) -> Iterator[tuple[list[str], str]]:
        """Each command line typed, as an argv and as typed, until bash exits (blocking)."""
        with os.fdopen(os.dup(self.history), "r", errors="replace") as lines:
            last = None
            for line in lines:
                typed, last = parse_history(line, last)
                if typed is not None:
                    yield typed

    def wait(self) -> int:
        return self.process.wait()

    def close(self) -> None:
        """End the shell (and what it started in its session) and free the fds."""
        if self._closed:
            return
        self._closed = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGHUP)
                self.process.wait(timeout=2)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.process.kill()
            self.process.wait()
        for fd in (self.master, self.history):
            os.close(fd)


def parse_history(line: str, last: str | None
                  ) -> tuple[tuple[list[str], str] | None, str | None]:
    """One ``history 1`` line -> ((argv, the line as typed) or None when it repeats the
    last, new last)."""
    parts = line.strip().split(None, 1)
    if len(parts) != 2 or not parts[0].isdigit() or parts[0] == last:
        return None, last
    try:
        argv = shlex.split(parts[1])
    except ValueError:
        argv = [parts[1]]
    return (argv, parts[1]), parts[0]


def shell_env(lab: str, node: str, base: dict[str, str], history_fd: int) -> dict[str, str]:
    return {**base, "PS1": f"[{lab}:{node}] \\w\\$ ", "HISTFILE": "/dev/null",
            "PROMPT_COMMAND": f"history 1 >&{history_fd} 2>/dev/null"}


def open_shell(init: int, lab: str, node: str, env: dict[str, str], rows: int = 24,
               cols: int = 80) -> NodeShell:
    """bash sealed in the node whose init is ``init``, on a new pty of the node. ``env``
    is the node environment (lab.engine.nodeexec.node_env); the caller owns the result
    and must ``close()`` it."""
    master, slave = node_pty(init)
    hist_r, hist_w = os.pipe()
    try:
        set_window_size(master, rows, cols)
        proc = seal.spawn(init, ["bash", "--norc", "-i"], shell_env(lab, node, env, hist_w),
                          stdin=slave, stdout=slave, stderr=slave, pass_fds=(hist_w,),
                          ctty=True)
    except BaseException:
        for fd in (master, hist_r):
            os.close(fd)
        raise
    finally:
        os.close(slave)
        os.close(hist_w)
    return NodeShell(lab, node, master, proc, hist_r)


def open_lab_shell(lab: str, node: str, rows: int = 24, cols: int = 80,
                   caller_env: dict[str, str] | None = None) -> NodeShell:
    """``open_shell`` for a root caller outside the supervisor (`lab shell`, a web
    terminal): the node's init from the lab's state; ``caller_env`` gives TERM, LANG...
    (default: this process's)."""
    from lab.engine import lifecycle, nodeexec

    init = lifecycle.node_init(lab, node)
    return open_shell(init, lab, node, nodeexec.node_env(lab, node, caller_env), rows, cols)


def record_commands(shell: NodeShell) -> None:
    """Record each line typed in ``shell`` in its lab's attempt, until bash exits
    (blocking: run it in a thread of its own)."""
    from lab.engine import nodeexec

    for argv, line in shell.commands():
        nodeexec.record(shell.lab, shell.node, argv, line=line)
