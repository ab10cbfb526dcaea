"""Running the classroom server (`lab serve`): uvicorn on a socket bound here, until
SIGINT or SIGTERM; then every lab the server started goes down, also after an error.

The listening socket is bound before uvicorn starts, so that a port in use is a clear
error and port 0 gives a free port whose number the links can carry. uvicorn's own
signal handling stops it gracefully (open terminals are closed, dashboards' streams
end); once it has returned, the labs go down with further Ctrl-C held back.
"""
from __future__ import annotations

import contextlib
import ipaddress
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from lab.engine import batch
from lab.engine.state import check_lab_name
from lab.errors import LabError
from lab.web.app import Web, create_app
from lab.web.classops import ClassOps


class Stopped(Exception):
    """SIGINT or SIGTERM reached the server (after uvicorn's graceful shutdown)."""


@dataclass
class Options:
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    lab_prefix: str | None = None
    parallel: int = batch.DEFAULT_PARALLEL


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not sep or not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise LabError(f"--listen {text!r}: not ADDRESS:PORT",
                       hint="for example 127.0.0.1:8080 (port 0: any free port)") from None
    return host, number


def check_prefix(prefix: str) -> None:
    """Lab names PREFIX-N stay valid for the classes of a long server run."""
    try:
        check_lab_name(f"{prefix}-9999")
    except LabError as e:
        raise LabError(f"--lab-prefix {prefix!r}: {e.message} once numbered", hint=e.hint
                       ) from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise LabError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def links_base(opts: Options, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if opts.public_url:
        return opts.public_url.rstrip("/")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_config(web: Web) -> uvicorn.Config:
    """uvicorn for the classroom: no access log (the links carry tokens); the scheme and
    client address from X-Forwarded-* headers only when a reverse proxy on this machine
    sends them."""
    return uvicorn.Config(create_app(web), log_level="warning", access_log=False,
                          proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                          ws_max_size=1 << 20, timeout_graceful_shutdown=5)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, web: Web) -> None:
        super().__init__(config)
        self.web = web

    def handle_exit(self, sig: int, frame) -> None:
        self.web.stopping.set()  # the dashboards' streams end, so shutdown need not wait
        super().handle_exit(sig, frame)


def run(opts: Options, say: Callable[[str], None]) -> list[str]:
    """Serve until stopped; returns the labs that were taken down at the end."""
    host, port = parse_listen(opts.listen)
    sock = bind(host, port)
    prefix = opts.lab_prefix or f"cls-{secrets.token_hex(2)}"
    check_prefix(prefix)
    ops = ClassOps(prefix, opts.parallel)
    web = Web(ops, public_url=opts.public_url)
    server = _Server(make_config(web), web)
    base = links_base(opts, sock)
    say(f"classroom server on {base} (labs {prefix}-N); stop it with Ctrl-C")
    say(f"instructor link: {base}/i/{web.keys.instructor}")
    with _stop_signals() as stopped:
        try:
            server.run(sockets=[sock])
        except Stopped:
            pass
        finally:
            stopped.set()  # from here on Ctrl-C and SIGTERM wait: the labs must go down
            sock.close()
            left = ops.teardown()
    return left


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM as one ``Stopped`` exception, then ignored: uvicorn handles them
    while it runs and gives the signal back once it has shut down; a half-done teardown
    would leave labs behind."""
    stopped = threading.Event()

    def stop(signum, frame) -> None:
        if not stopped.is_set():
            stopped.set()
            raise Stopped()

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
