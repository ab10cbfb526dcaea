"""Finding and stopping the processes a lab owns, and nothing else.

Ownership is decided per process: it carries the lab's marker in its environment
(everything the supervisor starts inherits it), or it lives in one of the lab's network
namespaces. No process is found by name or command line.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lab.engine.state import OWNER_ENV, proc_start_time


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def mntns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


SO_NETNS_COOKIE = 71


def netns_cookie(pid: int) -> int | None:
    """The kernel's cookie of a process's network namespace: unlike the inode number it
    is never reused while the machine runs, so it names one namespace for good."""
    import socket
    import struct

    from lab.services.netns import in_netns

    try:
        with in_netns(f"/proc/{pid}/ns/net"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            return struct.unpack("Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except OSError:
        return None


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker in env.split(b"\0")


def owned_processes(lab: str, netns: dict[int, int]) -> list[int]:
    """PIDs carrying the lab's marker or living in one of its network namespaces.

    ``netns`` maps the inode number of each of the lab's namespaces to its cookie (0:
    unknown, the inode is trusted). The kernel gives a gone namespace's inode number to
    the next new one at once (another lab's, starting beside this one), so a process in
    one of these inodes counts only if its namespace shows the recorded cookie."""
    marker = f"{OWNER_ENV}={lab}".encode()
    me = os.getpid()
    found, by_netns = [], {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        ino = netns_inode(pid) if netns else None
        if ino in netns:
            by_netns.setdefault(ino, []).append(pid)
        elif _has_marker(pid, marker):
            found.append(pid)
    for ino, pids in by_netns.items():
        if netns[ino] == 0 or _shows_cookie(pids, netns[ino]):
            found += pids
        else:
            found += [pid for pid in pids if _has_marker(pid, marker)]
    return found


def _shows_cookie(pids: list[int], cookie: int) -> bool:
    """Whether the namespace these processes share is the one with ``cookie``."""
    for pid in pids:
        seen = netns_cookie(pid)
        if seen is not None:  # None: the process is gone, ask the next
            return seen == cookie
    return False


def mark_values(name: str) -> set[str]:
    """The values of ``name`` (NAME=VALUE) in the environments of live processes."""
    prefix = f"{name}=".encode()
    me, found = os.getpid(), set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        found.update(v[len(prefix):].decode(errors="replace") for v in env.split(b"\0")
                     if v.startswith(prefix))
    return found


def marked_processes(marker: str) -> list[int]:
    """Live PIDs whose environment holds ``marker`` (NAME=VALUE) exactly."""
    me = os.getpid()
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and int(e.name) != me
            and _has_marker(int(e.name), marker.encode())
            and proc_start_time(int(e.name)) is not None]


def stop_processes(pids: list[int], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is still there after ``timeout``; wait until gone."""
    refs = {pid: proc_start_time(pid) for pid in pids}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        live = {pid: start for pid, start in refs.items()
                if start and proc_start_time(pid) == start}
        if not live:
            return
        for pid in live:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        _reap_children()
        wait_ended(live, time.monotonic() + wait)
        _reap_children()


def kill_owned(lab: str, netns: dict[int, int], timeout: float = 5.0) -> list[int]:
    """SIGKILL every process the lab owns until none is left; return the PIDs it still
    finds after ``timeout`` (none, normally)."""
    deadline = time.monotonic() + timeout
    while True:
        victims = owned_processes(lab, netns)
        live = {pid: start for pid in victims if (start := proc_start_time(pid)) is not None}
        if not live or time.monotonic() > deadline:
            return list(live)
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_children()
        wait_ended(live, deadline)


def wait_ended(procs: dict[int, int], deadline: float) -> None:
    """Return once each process (PID -> start time) has ended (a zombie counts as ended)
    or at ``deadline`` (time.monotonic): the kernel says so through pidfds, so /proc is
    not searched over and over while the processes die."""
    poller, fds, waiting, crowded = select.poll(), [], 0, False
    for pid, start in procs.items():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        except OSError:  # no file descriptor left: the caller looks again, a moment later
            crowded = True
            continue
        fds.append(fd)
        if proc_start_time(pid) == start:  # not ended, and not a later process with its PID
            poller.register(fd, select.POLLIN)
            waiting += 1
    try:
        while waiting and (left := deadline - time.monotonic()) > 0:
            for fd, _event in poller.poll(left * 1000):
                poller.unregister(fd)
                waiting -= 1
    finally:
        for fd in fds:
            os.close(fd)
    if crowded:
        time.sleep(0.005)


def exit_now(code: int) -> None:
    """Leave this process with ``code`` at once, its output flushed, skipping the
    interpreter's clean-up: whoever waits for this process (a shell for `lab exec`, `lab
    down` for the supervisor) would wait for that clean-up too, and nothing is left to
    clean."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def reaped_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child that has ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _reap_children() -> None:
    for _ in reaped_children():
        pass
