"""The supervisor's end of the trainee channel (protocol: lab.engine.channel).

Serves the trainee verbs to the Unix user the attempt is bound to (host socket, caller
known by SO_PEERCRED) and to whoever is inside a node of the lab (the node's socket).
Commands and shells it starts are sealed in their node (lab.engine.seal) and recorded in
the attempt; a command whose caller goes away is killed with its process group.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import threading
import traceback
from pathlib import Path
from typing import Any

from lab.engine import channel, nodeshell, seal
from lab.engine.nodeexec import node_env
from lab.engine.relay import exit_code
from lab.errors import LabError

SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
SEND_TIMEOUT = 2.0


class Caller:
    """Who is on the other end: a host user (uid) or a node of this lab."""

    def __init__(self, uid: int | None = None, node: str | None = None) -> None:
        self.uid, self.node = uid, node


class TraineeChannel:
    def __init__(self, sup) -> None:
        self.sup = sup
        self.listeners: list[socket.socket] = []
        self.paths: list[Path] = []
        self.tasks: set[asyncio.Task] = set()

    # --- listening -------------------------------------------------------------------
    def start(self) -> None:
        public = channel.public_dir()
        public.mkdir(mode=0o755, exist_ok=True)
        public.chmod(0o755)
        self._listen(channel.public_socket(self.sup.lab), None)
        for name, files in self.sup.files.items():
            self._listen(files.socket_dir / "lab.sock", name)

    def _listen(self, path: Path, node: str | None) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock.bind(str(path))
        path.chmod(0o666)
        sock.listen(16)
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock, node)
        self.listeners.append(sock)
        self.paths.append(path)

    def _accept(self, listener: socket.socket, node: str | None) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._serve(conn, node))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.listeners:
            loop.remove_reader(sock.fileno())
            sock.close()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for task in self.tasks:
            task.cancel()

    # --- one connection --------------------------------------------------------------
    async def _serve(self, conn: socket.socket, node: str | None) -> None:
        fds: list[int] = []
        try:
            body, fds = await _receive(conn)
            if body is None:
                return
            caller = Caller(node=node) if node else Caller(uid=_peer_uid(conn))
            op = body.pop("op", None)
            if op not in channel.TRAINEE_OPS:
                raise LabError(f"`{op}` is not something a trainee can ask",
                               hint="trainee verbs: " + ", ".join(channel.TRAINEE_OPS[1:]))
            if op != "hello":
                self._authorize(caller)
            if op == "exec":
                await self._exec(conn, body, fds)
            elif op == "shell":
                await self._shell(conn, body)
            else:
                result = getattr(self, f"op_{op}")(caller, **body)
                if asyncio.iscoroutine(result):
                    result = await result
                await _send(conn, channel.reply(result))
        except LabError as e:
            await _send(conn, channel.reply(error=e))
        except TypeError as e:  # wrong arguments for an op
            await _send(conn, channel.reply(error=LabError(f"bad request: {e}")))
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as e:  # noqa: BLE001 - a bad request must not take the lab down
            traceback.print_exc()
            await _send(conn, channel.reply(error=LabError(f"internal error: {e}")))
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()

    def _authorize(self, caller: Caller) -> None:
        if caller.node is not None or caller.uid == 0:
            return
        if self.sup.trainee_uid is None or caller.uid != self.sup.trainee_uid:
            raise LabError(f"lab {self.sup.lab} is not yours",
                           hint="`lab ls` lists your labs")

    # --- the verbs -------------------------------------------------------------------
    def op_hello(self, caller: Caller) -> dict[str, Any]:
        try:
            self._authorize(caller)
            yours = True
        except LabError:
            yours = False
        nodes = sorted(self.sup.inits) if yours else []
        return {"lab": self.sup.lab, "yours": yours, "node": caller.node, "nodes": nodes}

    def op_ticket(self, caller: Caller) -> dict[str, Any]:
        return self.sup.op_ticket()

    def op_hint(self, caller: Caller) -> dict[str, Any]:
        return self.sup.op_hint()

    def op_submit(self, caller: Caller, cause: str, node: str) -> dict[str, Any]:
        return self.sup.op_submit(cause, node)

    async def op_score(self, caller: Caller, html: bool = False) -> dict[str, Any]:
        from lab.engine.state import results_root

        scored = await self.sup.op_score(str(results_root()))
        if not html:
            scored.pop("html", None)
        scored.pop("path", None)  # where records are kept is the instructor's business
        return scored

    async def op_probe(self, caller: Caller, names: list[str] | None = None) -> list[dict]:
        return await self.sup.op_probe(names)

    async def op_service(self, caller: Caller, node: str, kind: str, action: str) -> str:
        return await self.sup.op_service(node, kind, action)

    # --- commands and shells -----------------------------------------------------------
    async def _exec(self, conn: socket.socket, body: dict[str, Any], fds: list[int]) -> None:
        node, argv = body.get("node"), body.get("argv")
        init = self.sup.init_of(node)
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise LabError("no command given", hint="lab exec NODE -- CMD [ARGS...]")
        if len(fds) != 3 or not all(seal.safe_stdio(fd) for fd in fds):
            raise LabError("exec needs stdin, stdout and stderr as pipes or Unix sockets")
        self.sup.op_record(node, argv)
        proc = seal.spawn(init, argv, node_env(self.sup.lab, node, _dict(body.get("env"))),
                          *fds)
        for fd in fds:
            os.close(fd)
        fds.clear()
        await _send(conn, channel.reply("started"))
        code = await self._supervise(conn, proc.pid, proc.wait)
        await _send(conn, {"exit": exit_code(code)})

    async def _shell(self, conn: socket.socket, body: dict[str, Any]) -> None:
        node = body.get("node")
        init = self.sup.init_of(node)
        rows, cols = int(body.get("rows", 24)), int(body.get("cols", 80))
        shell = nodeshell.open_shell(init, self.sup.lab, node,
                                     node_env(self.sup.lab, node, _dict(body.get("env"))),
                                     rows, cols)
        loop = asyncio.get_running_loop()
        try:
            await _send(conn, channel.reply({"node": node}), [shell.master])
            _in_thread(self._record_lines, shell, loop)
            code = await self._supervise(conn, shell.pid, shell.wait)
        finally:
            shell.close()
        if self.sup.inits[node].alive():  # else: the node went down, the client says so
            await _send(conn, {"exit": exit_code(code)})

    def _record_lines(self, shell: nodeshell.NodeShell, loop) -> None:
        """(In a thread of its own) record each line typed, as it comes."""
        for argv, line in shell.commands():
            loop.call_soon_threadsafe(self.sup.op_record, shell.node, argv, line)

    async def _supervise(self, conn: socket.socket, pgid: int, wait) -> int:
        """Wait for the process; forward the signals the client asks for; kill its
        process group if the client goes away."""
        loop = asyncio.get_running_loop()
        done = _in_thread(wait)
        while True:
            ask = loop.create_task(_receive(conn))
            finished, _ = await asyncio.wait({done, ask}, return_when=asyncio.FIRST_COMPLETED)
            if done in finished:
                ask.cancel()  # and let it unregister its reader before the socket closes
                await asyncio.gather(ask, return_exceptions=True)
                return done.result()
            body, fds = ask.result()
            for fd in fds:
                os.close(fd)
            if body is None:
                _kill_group(pgid, signal.SIGKILL)
                return await done
            if body.get("signal") in SIGNALS:
                _kill_group(pgid, body["signal"])


def _in_thread(fn, *args) -> asyncio.Future:
    """Run a blocking call in a daemon thread of its own (it may block until the node
    goes down: it must not hold up the loop's shutdown as the default executor would)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(_settle, future, None, e)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, daemon=True).start()
    return future


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


async def _receive(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    loop = asyncio.get_running_loop()
    fd = conn.fileno()
    while True:
        try:
            data, anc, _flags, _ = conn.recvmsg(channel.MAX_MESSAGE,
                                                socket.CMSG_SPACE(channel.MAX_FDS * 4))
            return channel.decode(data, anc)
        except BlockingIOError:
            pass
        except ConnectionError:
            return None, []
        ready = loop.create_future()
        loop.add_reader(fd, _settle, ready, None, None)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


async def _send(conn: socket.socket, body: dict[str, Any], fds: list[int] | None = None
                ) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        conn.settimeout(SEND_TIMEOUT)  # a client that does not read stalls nobody for long
        channel.send(conn, body, fds)
        conn.setblocking(False)
