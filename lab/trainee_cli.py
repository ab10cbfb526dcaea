"""`lab exec`, `lab shell` and `lab ls` for a trainee: through the trainee channel."""
from __future__ import annotations

import os
import socket

from lab import access
from lab.engine import channel, relay
from lab.engine.nodeexec import PASSED_ENV
from lab.errors import LabError, went_down


def _caller_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}


def _ended(lab: str | None, node: str, what: str) -> LabError:
    """Why the supervisor closed the connection without an exit status."""
    name = lab or "this lab"
    try:
        channel.request(lab, "hello")
    except LabError:
        return went_down(name, node, what, whole_lab=True)
    return went_down(name, node, what, whole_lab=False)


def execute(lab: str | None, node: str, argv: list[str]) -> int:
    """Run ``argv`` in ``node``: this process's stdin, stdout and stderr go with the
    request (through pipes where they are files or terminals), Ctrl-C and termination
    are passed on, the command's exit status comes back."""
    lab = access.trainee_lab(lab)
    sock, _ = channel.connect(lab)
    stdio = relay.Stdio()
    with sock:
        try:
            channel.send(sock, {"op": "exec", "node": node, "argv": argv,
                                "env": _caller_env()}, stdio.child)
        finally:
            stdio.started()
        try:
            channel.result_of(_receive(sock), lab or "this lab")
            old = relay.forward_signals(lambda signum: _send_signal(sock, signum))
            try:
                body = _receive(sock)
            finally:
                relay.restore_signals(old)
        finally:
            stdio.finish()
    if body is None or "exit" not in body:
        raise _ended(lab, node, "the command")
    return int(body["exit"])


def shell(lab: str | None, node: str) -> int:
    """An interactive shell in ``node`` on a terminal of the node's own, relayed here."""
    lab = access.trainee_lab(lab)
    sock, _ = channel.connect(lab)
    rows, cols = relay.window_size(0)
    with sock:
        channel.send(sock, {"op": "shell", "node": node, "rows": rows, "cols": cols,
                            "env": _caller_env()})
        body, fds = channel.receive(sock)
        try:
            channel.result_of(body, lab or "this lab")
            if len(fds) != 1:
                raise LabError("the supervisor sent no terminal")
            relay.terminal(fds[0])
        finally:
            for fd in fds:
                os.close(fd)
        body = _receive(sock)
    if body is None or "exit" not in body:
        raise _ended(lab, node, "the shell")
    return int(body["exit"])


def _receive(sock: socket.socket) -> dict | None:
    body, fds = channel.receive(sock)
    for fd in fds:
        os.close(fd)
    return body


def _send_signal(sock: socket.socket, signum: int) -> None:
    try:
        channel.send(sock, {"signal": int(signum)})
    except OSError:
        pass


def list_labs() -> list[dict]:
    """The labs bound to this user (inside a node: the node's own)."""
    if channel.in_node():
        return [channel.request(None, "hello")]
    return [access.hello(lab) for lab in access.my_labs()]
