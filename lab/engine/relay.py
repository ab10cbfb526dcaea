"""Moving bytes between the caller's terminal or files and a process sealed in a node.

Nothing of the caller's but a pipe, a Unix socket or /dev/null is handed into a node
(``seal.safe_stdio``): a file, a directory or a terminal is relayed through a pipe
instead (``Stdio``), and an interactive shell gets a terminal of the node's own whose
master end ``terminal`` relays to the caller's terminal.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import termios
import threading
import tty
from collections.abc import Iterator

from lab.engine.seal import safe_stdio

CHUNK = 65536


def _pump(src: int, dst: int, stop: int | None = None) -> None:
    """Copy ``src`` to ``dst`` until EOF (or ``stop`` becomes readable); close ``dst`` if
    it is our pipe end."""
    try:
        while True:
            waiting = [src] if stop is None else [src, stop]
            if stop is not None and stop in select.select(waiting, [], [])[0]:
                return
            data = os.read(src, CHUNK)
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view):]
    except OSError:
        return  # the other side went away (EPIPE, EIO): nothing more to copy


class Stdio:
    """The three standard streams for a node process: the caller's own where safe, else a
    pipe whose other end a thread pumps. ``child`` are the fds to give the process;
    call ``started()`` once it runs and ``finish()`` once it has exited."""

    def __init__(self, fds: tuple[int, int, int] = (0, 1, 2)) -> None:
        self.child: list[int] = []
        self._ours: list[int] = []  # pipe ends the child got (closed here after the start)
        self._threads: list[threading.Thread] = []
        self._stop_r, self._stop_w = os.pipe()
        for index, fd in enumerate(fds):
            if safe_stdio(fd):
                self.child.append(fd)
                continue
            r, w = os.pipe()
            if index == 0:
                self.child.append(r)
                self._ours.append(r)
                target = (fd, w, self._stop_r)
                daemon = True
            else:
                self.child.append(w)
                self._ours.append(w)
                target = (r, fd, None)
                daemon = False
            self._threads.append(threading.Thread(target=self._copy, args=target, daemon=daemon))

    @staticmethod
    def _copy(src: int, dst: int, stop: int | None) -> None:
        _pump(src, dst, stop)
        # our pipe end is the one that is not the caller's stream
        os.close(dst if stop is not None else src)

    def started(self) -> None:
        for fd in self._ours:
            os.close(fd)
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        """Let the output pumps drain to EOF; stop feeding input."""
        os.write(self._stop_w, b"x")
        for thread in self._threads:
            if not thread.daemon:
                thread.join()
        os.close(self._stop_w)


def forward_signals(send) -> dict:
    """Route SIGINT, SIGTERM, SIGHUP and SIGQUIT to ``send(signum)``; the old handlers."""
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        old[sig] = signal.signal(sig, lambda signum, _frame: send(signum))
    return old


def restore_signals(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def exit_code(returncode: int) -> int:
    """A Popen return code as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


# --- terminals -----------------------------------------------------------------------


def window_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of a terminal; 24x80 when ``fd`` is not one."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 24, 80
    return (rows or 24), (cols or 80)


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Resize the terminal whose master is ``fd`` (the shell gets SIGWINCH)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def terminal(master: int, stdin: int = 0, stdout: int = 1, stop: int | None = None) -> None:
    """Relay the caller's terminal to a node terminal's ``master`` until the node side
    closes it (or ``stop`` becomes readable): keys in, output out, the window size
    followed."""
    def resize(*_args) -> None:
        with contextlib.suppress(OSError):
            set_window_size(master, *window_size(stdin))

    resize()
    old = signal.signal(signal.SIGWINCH, resize) if os.isatty(stdin) else None
    watched = [master, stdin] + ([stop] if stop is not None else [])
    try:
        with raw_mode(stdin):
            while True:
                try:
                    ready = select.select(watched, [], [])[0]
                except InterruptedError:
                    continue
                if stop is not None and stop in ready:
                    return
                if master in ready and not _copy_once(master, stdout):
                    return
                if stdin in ready and not _copy_once(stdin, master):
                    watched.remove(stdin)  # the caller's input ended: keep showing output
    finally:
        if old is not None:
            signal.signal(signal.SIGWINCH, old)


def _copy_once(src: int, dst: int) -> bool:
    try:
        data = os.read(src, CHUNK)
    except OSError:
        return False  # EIO: every process of the node holding the terminal is gone
    if not data:
        return False
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view):]
    return True
