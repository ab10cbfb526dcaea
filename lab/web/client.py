"""A small client of the classroom server, for scripts, tests and benchmarks: log in with
a link, call the JSON routes with the CSRF token and Origin a browser would send, read
the dashboard's first event, open a node's terminal over the websocket.

It talks to the server only at the address in the link (never through a proxy from the
environment)."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


class Session:
    """A browser-like session: cookies kept, redirects followed."""

    def __init__(self, link: str) -> None:
        parts = urlsplit(link)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""
        self.home = ""

    def login(self, link: str) -> str:
        """Follow a personal link; returns the page it leads to and keeps its CSRF token."""
        status, body, url = self.get(link)
        if status != 200:
            raise PermissionError(f"{link}: HTTP {status}")
        self.home = urlsplit(url).path
        found = CSRF_META.search(body)
        self.csrf = found.group(1) if found else ""
        return body

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        url = path if "://" in path else self.base + path
        return self._open(urllib.request.Request(url, headers=headers or {}))

    def post(self, path: str, body: dict[str, Any] | None = None, csrf: str | None = None,
             origin: str | None = "") -> tuple[int, str]:
        """POST JSON as the page does; ``csrf`` and ``origin`` override what it sends
        (None: leave the header out)."""
        headers = {"Content-Type": "application/json"}
        token = self.csrf if csrf is None else csrf
        if token:
            headers["X-CSRF-Token"] = token
        sent_origin = self.base if origin == "" else origin
        if sent_origin is not None:
            headers["Origin"] = sent_origin
        request = urllib.request.Request(self.base + path, json.dumps(body or {}).encode(),
                                         headers, method="POST")
        status, text, _ = self._open(request)
        return status, text

    def post_ok(self, path: str, body: dict[str, Any] | None = None) -> Any:
        status, text = self.post(path, body)
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {text[:200]}")
        return json.loads(text)

    def _open(self, request: urllib.request.Request) -> tuple[int, str, str]:
        try:
            with self.opener.open(request, timeout=180) as response:
                return response.status, response.read().decode(), response.url
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace"), e.url

    def snapshot(self) -> dict[str, Any]:
        """The instructor's dashboard as its first server-sent event says it."""
        request = urllib.request.Request(self.base + "/instructor/events")
        with self.opener.open(request, timeout=30) as response:
            for raw in response:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    return json.loads(line[len("data: "):])
        raise RuntimeError("the event stream ended without data")

    def terminal(self, trainee: str, node: str, origin: str | None = "",
                 rows: int = 24, cols: int = 80) -> ClientConnection:
        """A websocket to a node's shell (raises websockets' InvalidStatus if refused)."""
        scheme = "wss" if self.base.startswith("https") else "ws"
        host = urlsplit(self.base).netloc
        return connect(f"{scheme}://{host}/trainee/{trainee}/term/{node}?rows={rows}&cols={cols}",
                       origin=self.base if origin == "" else origin, proxy=None,
                       additional_headers={"Cookie": self.cookie()}, open_timeout=30,
                       compression=None)


def read_until(ws: ClientConnection, pattern: str, timeout: float = 20.0) -> str:
    """Terminal output until ``pattern`` (a regex) shows; raises TimeoutError."""
    import time

    seen = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{pattern!r} not seen in: {seen[-500:]!r}")
        message = ws.recv(timeout=left)
        seen += message.decode(errors="replace") if isinstance(message, bytes) else message
    return seen
