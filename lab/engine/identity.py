"""What /proc shows of a process: its command line and environment, set after a fork.

A supervisor forked by the launcher (lab.engine.launcher) would otherwise show the
launcher's. ``ps``, `lab clean` and every ownership check (lab.engine.procs) read these.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path


class _MmMap(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end")] + [
        ("auxv", ctypes.c_void_p), ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


PR_SET_MM, PR_SET_MM_MAP = 35, 14
_identity: ctypes.Array | None = None  # the strings /proc/self/{cmdline,environ} point at


def set_identity(argv: list[str], env: dict[str, str]) -> None:
    """Make /proc/self/cmdline and /proc/self/environ show ``argv`` and ``env`` (needs
    CAP_SYS_RESOURCE: root)."""
    global _identity
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sbrk.restype = ctypes.c_void_p
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()

    def stat(n: int) -> int:  # proc(5) numbers the fields from 1; ``fields`` starts at 3
        return int(fields[n - 3])

    args = b"".join(a.encode() + b"\0" for a in argv)
    environ = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
    strings = ctypes.create_string_buffer(args + environ, len(args) + len(environ))
    base = ctypes.addressof(strings)
    mm = _MmMap(stat(26), stat(27), stat(45), stat(46), stat(47), libc.sbrk(0), stat(28),
                base, base + len(args), base + len(args), base + len(args) + len(environ),
                None, 0, 0xFFFFFFFF)
    if libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_MM_MAP): {os.strerror(err)}")
    _identity = strings  # kept for the process's life (the old strings only now let go)
