"""The trainee channel: how a trainee without root reaches the supervisor of their lab.

Each running lab listens on two kinds of Unix sockets (SOCK_SEQPACKET: one message per
send, file descriptors travel with the message that carries them):

* ``<state root>/_trainee/<lab>.sock`` on the host, mode 0666; the supervisor identifies
  the caller by SO_PEERCRED and serves only the Unix user the attempt is bound to
  (`lab start --trainee NAME`) and root;
* ``/run/lab-node/lab.sock`` inside every node of the lab: whoever is in the node is in
  the lab, so the caller is identified by which node's socket it used.

Both offer only the trainee verbs (``TRAINEE_OPS``), never the root control socket's.
Messages are JSON objects. A request is ``{"op": OP, ...}``; a reply is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "hint": ...}``.
``exec`` sends its stdin, stdout and stderr with the request (SCM_RIGHTS; only pipes,
Unix sockets and /dev/null are accepted, see ``seal.safe_stdio``), gets
``{"ok": true, "result": "started"}``, may then send ``{"signal": N}`` (SIGINT, SIGTERM,
SIGHUP, SIGQUIT go to the command's process group) and ends with ``{"exit": CODE}``;
closing the connection kills the command. ``shell`` gets the reply with the master end of
a new terminal of the node (SCM_RIGHTS), relays it, and ends with ``{"exit": CODE}`` -
or with the connection closed and no exit, when the lab or the node went down.
"""
from __future__ import annotations

import array
import json
import os
import socket
from pathlib import Path
from typing import Any

from lab.engine.nodebin import NODE_SOCKET
from lab.engine.state import check_lab_name, state_root
from lab.errors import LabError

PUBLIC_DIR = "_trainee"  # never a lab name: lab names start with a letter or digit
MAX_MESSAGE = 1 << 20
MAX_FDS = 3
TRAINEE_OPS = ("hello", "ticket", "hint", "submit", "score", "probe", "service", "exec",
               "shell")


def public_dir() -> Path:
    return state_root() / PUBLIC_DIR


def public_socket(lab: str) -> Path:
    return public_dir() / f"{lab}.sock"


def in_node() -> bool:
    """Whether this process runs inside a node of a lab (its trainee channel is there)."""
    return os.path.exists(NODE_SOCKET)


# --- messages ------------------------------------------------------------------------


def send(sock: socket.socket, body: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(body).encode()
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sock.sendmsg([data], anc)
    else:
        sock.sendmsg([data])


def decode(data: bytes, anc: list) -> tuple[dict[str, Any] | None, list[int]]:
    """A received message and its fds (None at end of stream). Every fd received is
    returned (the caller closes them), even when the message is malformed."""
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds += list(arr)
    if not data:
        return None, fds
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    return (body if isinstance(body, dict) else {}), fds


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, anc, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4))
    return decode(data, anc)


def reply(result: Any = None, error: LabError | None = None) -> dict[str, Any]:
    if error is not None:
        return {"ok": False, "error": error.message, "hint": error.hint}
    return {"ok": True, "result": result}


def result_of(body: dict[str, Any] | None, lab: str) -> Any:
    if body is None:
        raise LabError(f"the supervisor of lab '{lab}' closed the connection")
    if not body.get("ok"):
        raise LabError(body.get("error", "unknown error"), hint=body.get("hint", ""))
    return body.get("result")


# --- the client ----------------------------------------------------------------------


def connect(lab: str | None) -> tuple[socket.socket, str]:
    """A connection to a lab's trainee channel (inside a node: the node's own lab)."""
    path = NODE_SOCKET if in_node() else str(public_socket(check_lab_name(lab or "")))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        if in_node():
            raise LabError("this lab's supervisor is not answering") from None
        raise LabError(f"unknown lab '{lab}'", hint="`lab ls` lists your labs") from None
    return sock, lab or "this lab"


def request(lab: str | None, op: str, fds: list[int] | None = None, **args: Any) -> Any:
    """One request on a new connection; its result, or its error raised."""
    sock, name = connect(lab)
    with sock:
        send(sock, {"op": op, **args}, fds)
        body, extra = receive(sock)
        for fd in extra:
            os.close(fd)
    return result_of(body, name)


def labs() -> list[str]:
    """The running labs that have a trainee channel on this host."""
    d = public_dir()
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".sock")] for p in d.glob("*.sock"))
