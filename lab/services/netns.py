"""Sockets inside another network namespace, and commands run inside a node.

One process serves every node of a lab: to make a socket "in" a node, switch this thread
into the node's network namespace with setns(2), create the socket, and switch back.
The socket stays in the namespace it was created in, whichever thread uses it later.
Python 3.11 has no os.setns, hence ctypes.
"""
from __future__ import annotations

import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from lab.services.base import SocketFactory

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the body in the network namespace at ``path`` (/proc/PID/ns/net, /run/netns/X)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def socket_factory(path: str) -> SocketFactory:
    """A NodeContext socket factory for the network namespace at ``path``."""

    def make(family: int, type_: int, proto: int = 0) -> socket.socket:
        with in_netns(path):
            sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        return sock

    return make


def node_runner(pid: int):
    """Run argv inside the namespaces of process ``pid`` -> (rc, stdout, stderr)."""

    def run(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        proc = subprocess.run(["mnexec", "-a", str(pid), *argv], input=stdin,
                              capture_output=True, text=True, timeout=30, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    return run
