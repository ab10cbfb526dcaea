"""Progress of long CLI runs (many labs started, the playbook matrix) on stderr.

On a terminal: a rich progress bar (done/total, elapsed time, what is running now) with
each finished item's line printed above it. Anywhere else (a pipe, a log file, CI): the
same lines, one per event, and no bar, so that logs stay plain text.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO


class Progress:
    """``with Progress(total, "starting labs") as p: p.begin(name); p.done(line)``; safe
    to call from worker threads."""

    def __init__(self, total: int, what: str, stream: TextIO | None = None,
                 force_terminal: bool | None = None) -> None:
        self.total, self.what = total, what
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.running: list[str] = []
        self.finished = 0
        terminal = self.stream.isatty() if force_terminal is None else force_terminal
        self.bar = _RichBar(self.stream, total, what) if terminal else None

    def __enter__(self) -> Self:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def note(self, line: str) -> None:
        """A line for the reader (above the bar on a terminal)."""
        with self.lock:
            if self.bar is not None:
                self.bar.print(line)
            else:
                print(line, file=self.stream, flush=True)

    def begin(self, name: str, line: str | None = None) -> None:
        """Work on ``name`` has started (``line`` is printed only without a bar)."""
        with self.lock:
            self.running.append(name)
            if self.bar is not None:
                self.bar.update(self.finished, self.running)
            elif line:
                print(line, file=self.stream, flush=True)

    def done(self, name: str, line: str | Callable[[int], str]) -> None:
        """Work on ``name`` has finished; ``line`` says how (or makes that line from the
        count finished so far, this one included)."""
        with self.lock:
            if name in self.running:
                self.running.remove(name)
            self.finished += 1
            if callable(line):
                line = line(self.finished)
            if self.bar is not None:
                self.bar.print(line)
                self.bar.update(self.finished, self.running)
            else:
                print(line, file=self.stream, flush=True)


class _RichBar:
    def __init__(self, stream: TextIO, total: int, what: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self.what = what
        self.progress = RichProgress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[now]}"),
            console=self.console, transient=False)
        self.task = self.progress.add_task(what, total=total, now="")

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def print(self, line: str) -> None:
        self.progress.console.print(line, markup=False)

    def update(self, finished: int, running: list[str]) -> None:
        now = ", ".join(running[:3]) + (f" +{len(running) - 3}" if len(running) > 3 else "")
        self.progress.update(self.task, completed=finished, now=now)
