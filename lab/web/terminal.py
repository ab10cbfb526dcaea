"""A browser terminal: a websocket relayed to a shell sealed in a node.

The shell is lab.engine.nodeshell's (bash in the node, on a terminal of the node's own
devpts; each line typed is recorded in the attempt as `lab shell` records it). The pty's
master end is read on the event loop (add_reader) and its output sent as binary frames;
binary frames from the browser are keystrokes, text frames are JSON control messages
(``{"resize": [rows, cols]}``). When the shell ends the browser gets
``{"ended": "why"}`` as a text frame: the shell exited, the attempt is finished, or the
lab went down (lifecycle.check_node_up's words), and never a prompt of the host.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading

from starlette.websockets import WebSocket

from lab.engine import lifecycle, nodeshell
from lab.errors import LabError

SHELL_ENV = {"TERM": "xterm-256color", "LANG": "C.UTF-8"}
CHUNK = 65536
HIGH_WATER = 64  # chunks queued for a slow browser before the pty is no longer read
MAX_INPUT = 65536  # bytes in one keystroke frame (a paste)
MAX_ROWS, MAX_COLS = 500, 1000


def clamp_size(rows: object, cols: object) -> tuple[int, int]:
    """A window size from the browser, within what a terminal may be."""
    def one(value: object, top: int, default: int) -> int:
        try:
            return min(max(int(value), 2), top)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return default
    return one(rows, MAX_ROWS, 24), one(cols, MAX_COLS, 80)


class Terminal:
    """One websocket and the shell behind it; ``stop()`` ends it from any thread."""

    def __init__(self, ws: WebSocket, lab: str, node: str) -> None:
        self.ws, self.lab, self.node = ws, lab, node
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        self.why = ""
        self.output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reading = False

    def stop(self, why: str = "the attempt is finished; this terminal is closed") -> None:
        def set_() -> None:
            self.why = self.why or why
            self.stopped.set()
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to stop
            self.loop.call_soon_threadsafe(set_)

    async def run(self, rows: int, cols: int) -> None:
        shell = await asyncio.to_thread(nodeshell.open_lab_shell, self.lab, self.node,
                                        rows, cols, SHELL_ENV)
        threading.Thread(target=nodeshell.record_commands, args=(shell,), daemon=True,
                         name=f"record-{self.lab}-{self.node}").start()
        os.set_blocking(shell.master, False)
        self.shell = shell
        self._read_on()
        tasks = [asyncio.create_task(self._send_output()),
                 asyncio.create_task(self._receive_input()),
                 asyncio.create_task(self.stopped.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._read_off()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(shell.close)
        await self._say_ended()

    # --- pty -> browser ----------------------------------------------------------------
    def _read_on(self) -> None:
        if not self.reading:
            self.loop.add_reader(self.shell.master, self._readable)
            self.reading = True

    def _read_off(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.shell.master)
            self.reading = False

    def _readable(self) -> None:
        try:
            data = os.read(self.shell.master, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and everything on its terminal are gone
            data = b""
        if not data:
            self._read_off()
            self.output.put_nowait(None)
            return
        self.output.put_nowait(data)
        if self.output.qsize() > HIGH_WATER:
            self._read_off()  # a browser that does not keep up slows the shell, not us

    async def _send_output(self) -> None:
        while True:
            data = await self.output.get()
            if data is None:
                self.why = self.why or await asyncio.to_thread(self._why_ended)
                return
            while not self.output.empty() and len(data) < CHUNK:
                more = self.output.get_nowait()
                if more is None:
                    self.output.put_nowait(None)
                    break
                data += more
            await self.ws.send_bytes(data)
            if not self.reading and self.output.qsize() < HIGH_WATER // 2:
                self._read_on()

    def _why_ended(self) -> str:
        try:
            lifecycle.check_node_up(self.lab, self.node, "the shell")
        except LabError as e:
            return e.message
        return f"the shell in {self.node} has ended"

    # --- browser -> pty ----------------------------------------------------------------
    async def _receive_input(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._write(message["bytes"][:MAX_INPUT])
            elif message.get("text") is not None:
                self._control(message["text"])

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.shell.master, view):]
            except BlockingIOError:
                await asyncio.sleep(0.01)  # the terminal's input buffer is full

    def _control(self, text: str) -> None:
        try:
            body = json.loads(text)
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("resize"), list):
            self.shell.resize(*clamp_size(*(body["resize"] + [None, None])[:2]))

    async def _say_ended(self) -> None:
        with contextlib.suppress(Exception):  # the browser may have gone already
            await self.ws.send_text(json.dumps({"ended": self.why or "the terminal closed"}))
            await self.ws.close()
